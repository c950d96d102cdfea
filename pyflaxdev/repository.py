"""A model repository: one directory per model, a ``config.toml`` and numbered versions.

::

    repo/
      iris/
        config.toml
        model.py              # module = "model.py:make", or "pkg.mod:make" on sys.path
        labels.txt
        1/params.msgpack
        2/params.safetensors  # the highest version is served unless config pins one

``config.toml`` (read with the standard library's ``tomllib``)::

    module = "model.py:make"  # a callable returning a Flax Linen or NNX module
    post = ["softmax", "topk"]
    topk = 3
    labels = "labels.txt"     # one class name per line, relative to the model's directory

    [input]
    shape = [4]
    dtype = "float32"

    [output]
    shape = [3]

    [normalize]               # optional: float32 (x * scale - mean[c]) / std[c]
    scale = 1.0
    mean = [5.8, 3.0, 3.8, 1.2]
    std = [0.8, 0.4, 1.8, 0.8]

    [serving]                 # optional
    batch_sizes = [1, 8, 32]
    buckets = [32, 128]       # text models with [L, D] outputs: lengths a batch is cut to
    timeout_ms = 5000
    version = 2               # default: the highest numbered directory
    workers = 2               # worker threads attached to the model (default 1, at most 4)

    [tokenize]                # a text model instead of [normalize]: the kernel tokenises
    vocab = "vocab.txt"       # WordPiece vocabulary (BERT uncased), beside the config
    text_max = 4096           # most bytes of UTF-8 a request carries (default 4096)

    [node]                    # optional: /dev/flax/<name> when flaxdev serve --create makes it
    owner = "alice"           # a user name or uid (default: whoever creates it)
    group = "flax"            # a group name or gid
    mode = "0660"             # octal (default 0600)

    [about]                   # optional, free-form: how it was trained, accuracy, source...
    heldout_accuracy = 0.967  # (ModelSpec.metadata["about"]; nothing reads it when serving)

A text model's input is ``shape = [2, L]``, ``dtype = "int32"``: the ids and the
attention mask the kernel's tokeniser writes, ``[CLS] ... [SEP]`` padded to ``L``
(docs/tokenizer.md); :mod:`pyflaxdev.wordpiece` computes the same in process.

A top-level ``heldout = "heldout.npz"`` names held-out inputs (array ``x``,
``[n, *input.shape]``) and their class labels (``y``), which
``ModelSpec.heldout()``, ``accuracy()`` and ``flaxdev bench`` use.
:func:`write_config` writes a ``config.toml`` from a dict.

The parameters of a version are ``<N>/params.msgpack`` (Flax's msgpack),
``<N>/params.safetensors`` (one tensor per leaf, named by its path joined with
``/``) or ``<N>/checkpoint/`` (an Orbax checkpoint): one of them, see
:mod:`pyflaxdev.checkpoint`; :func:`save_version` writes any.  They hold the
variables a Linen module's ``apply`` takes (``{"params": ...}``), or an NNX
module's state as a pure dict (``nnx.to_pure_dict(nnx.state(module))``),
restored into the state of the module the factory returns
(``nnx.split``/``nnx.merge``).  :func:`load` turns an entry
into the :class:`~pyflaxdev.models.ModelSpec` that ``flaxdev serve`` serves,
as it serves a shipped model.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

from pyflaxdev import checkpoint
from pyflaxdev.errors import InvalidArgument, ModelNotFound
from pyflaxdev.labels import decode_labels
from pyflaxdev.models.spec import ModelSpec
from pyflaxdev.spec import Normalization, TensorSpec
from pyflaxdev.uapi import lib

__all__ = [
    "CONFIG",
    "PARAMS",
    "check_module",
    "entries",
    "is_entry",
    "latest_version",
    "load",
    "save_version",
    "versions",
    "write_config",
]

CONFIG = "config.toml"
#: ``[serving] workers``' bound: half the kernel's FLAX_MAX_WORKERS, so that a
#: new version's workers attach beside the old ones during a reload.
MAX_WORKERS = lib.FLAX_MAX_WORKERS // 2
PARAMS = "params.msgpack"  # what save_version writes unless told otherwise
_NO_VERSION = "no version (a numbered directory with " + " or ".join(checkpoint.FORMATS.values())

_TOP_KEYS = {"name", "module", "post", "topk", "threshold", "labels", "input", "output"}
_TOP_KEYS |= {"normalize", "tokenize", "serving", "node", "heldout", "about"}
_TABLE_KEYS: dict[str, set[str]] = {
    "input": {"shape", "dtype"},
    "output": {"shape"},
    "normalize": {"scale", "mean", "std", "channel_first", "clamp"},
    "tokenize": {"vocab", "text_max"},
    "serving": {"batch_sizes", "buckets", "timeout_ms", "version", "workers"},
    "node": {"owner", "group", "mode"},
}


def is_entry(path: str | Path) -> bool:
    """Whether ``path`` is a model's directory (it holds a ``config.toml``)."""
    return (Path(path) / CONFIG).is_file()


def entries(repo: str | Path) -> list[Path]:
    """The model directories of repository ``repo``, by name."""
    root = Path(repo)
    if not root.is_dir():
        raise ModelNotFound(f"model repository {root} is not a directory")
    return sorted(p for p in root.iterdir() if is_entry(p))


def versions(entry: str | Path) -> list[int]:
    """The versions of a model's directory: its numbered subdirectories with parameters."""
    return sorted(
        int(p.name) for p in Path(entry).iterdir() if p.name.isdigit() and checkpoint.has_params(p)
    )


def latest_version(entry: str | Path) -> int:
    """The version :func:`load` would serve now (the config's pin, else the highest),
    without importing the model: cheap enough to poll."""
    entry = Path(entry)
    pinned = _read_config(entry).get("serving", {}).get("version")
    known = versions(entry)
    if pinned is not None:
        return int(pinned)
    if not known:
        raise ModelNotFound(f"{entry}: {_NO_VERSION})")
    return known[-1]


def _where(entry: Path, key: str) -> str:
    return f"{entry / CONFIG}: {key}"


def _check_keys(entry: Path, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        raise InvalidArgument(
            f"{entry / CONFIG}: unknown key{'s' if len(unknown) > 1 else ''} {keys} in"
            f" {where}; known: {', '.join(sorted(allowed))}"
        )


def _ints(entry: Path, value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise InvalidArgument(f"{_where(entry, key)} must be a list of integers, not {value!r}")
    return tuple(value)


def _read_config(entry: Path, file: Path | None = None) -> dict[str, Any]:
    try:
        with (file or entry / CONFIG).open("rb") as f:
            config = tomllib.load(f)
    except FileNotFoundError:
        raise ModelNotFound(f"{entry} is not a model's directory: no {CONFIG}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{entry / CONFIG}: {exc}") from None
    _check_keys(entry, config, _TOP_KEYS, "the top level")
    if not isinstance(config.get("about", {}), dict):
        raise InvalidArgument(f"{_where(entry, 'about')} must be a table ([about])")
    for table, allowed in _TABLE_KEYS.items():
        if table in config:
            if not isinstance(config[table], dict):
                raise InvalidArgument(f"{_where(entry, table)} must be a table ([{table}])")
            _check_keys(entry, config[table], allowed, f"[{table}]")
    for key in ("module", "input", "output"):
        if key not in config:
            raise InvalidArgument(f"{entry / CONFIG}: {key!r} is missing")
    return config


def _text(entry: Path, config: Mapping[str, Any], input_spec: TensorSpec) -> tuple[Path, int]:
    """``[tokenize]``: the vocabulary file and ``text_max``, checked against ``[input]``."""
    table = config["tokenize"]
    if "normalize" in config:
        raise InvalidArgument(f"{entry / CONFIG}: [tokenize] and [normalize] exclude each other")
    shape = input_spec.shape
    if input_spec.dtype != np.int32 or len(shape) != 2 or shape[0] != 2 or shape[1] < 2:
        raise InvalidArgument(
            f"{_where(entry, 'input')}: a text model takes shape = [2, L] (ids and mask,"
            f' L >= 2) and dtype = "int32", not {list(shape)} {input_spec.dtype}'
        )
    if "vocab" not in table:
        raise InvalidArgument(f"{_where(entry, 'tokenize.vocab')} is missing (a vocab.txt)")
    vocab = entry / str(table["vocab"])
    if not vocab.is_file():
        raise InvalidArgument(f"{_where(entry, 'tokenize.vocab')}: no file {vocab}")
    text_max = table.get("text_max", lib.FLAX_TEXT_MAX_DEFAULT)
    if not isinstance(text_max, int) or isinstance(text_max, bool) or text_max < 1:
        raise InvalidArgument(
            f"{_where(entry, 'tokenize.text_max')} must be a positive integer, not {text_max!r}"
        )
    return vocab, text_max


def _node(entry: Path, node: Mapping[str, Any]) -> dict[str, int]:
    """``[node]``: owner and group as ids, mode as bits."""
    out: dict[str, int] = {}
    for key, lookup in (("owner", _uid), ("group", _gid)):
        if key in node:
            value = node[key]
            try:
                out[key] = value if isinstance(value, int) else lookup(str(value))
            except KeyError:
                raise InvalidArgument(
                    f"{_where(entry, 'node.' + key)}: no {key} {value!r}"
                ) from None
    if "mode" in node:
        try:
            mode = int(str(node["mode"]), 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            raise InvalidArgument(f"{_where(entry, 'node.mode')} must be octal, 0 to 0777")
        out["mode"] = mode
    return out


def _uid(name: str) -> int:
    import pwd

    return int(name) if name.isdigit() else pwd.getpwnam(name).pw_uid


def _gid(name: str) -> int:
    import grp

    return int(name) if name.isdigit() else grp.getgrnam(name).gr_gid


def _import_factory(entry: Path, ref: str) -> Callable[[], Any]:
    """``"file.py:fn"`` (beside the config) or ``"pkg.mod:fn"`` (importable)."""
    path, sep, attr = ref.rpartition(":")
    if not sep or not path or not attr:
        raise InvalidArgument(f"{_where(entry, 'module')} must be 'file.py:fn' or 'pkg.mod:fn'")
    try:
        if path.endswith(".py"):
            file = entry / path
            name = f"_flaxdev_repo_{entry.name}_{file.stem}".replace("-", "_").replace(".", "_")
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None or not file.is_file():
                raise InvalidArgument(f"{_where(entry, 'module')}: no file {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(path)
    except InvalidArgument:
        raise
    except Exception as exc:  # whatever the user's module raises while it loads
        raise InvalidArgument(
            f"{_where(entry, 'module')}: importing {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InvalidArgument(f"{_where(entry, 'module')}: {path} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return]


class NnxApply:
    """``apply(state, x)`` of an NNX module: merge its graph with ``state`` and call it."""

    def __init__(self, graphdef: Any) -> None:
        self.graphdef = graphdef

    def apply(self, state: Any, x: Any) -> Any:
        """The module's ``__call__(x)`` with ``state`` as its variables."""
        from flax import nnx

        return nnx.merge(self.graphdef, state)(x)


class _Loaded:
    """The factory's module, built once: what to serve and how to restore parameters."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        from flax import nnx

        module = factory()
        self.template: Any = None
        self.apply: Any = module
        self.nnx = isinstance(module, nnx.Module)
        if self.nnx:
            graphdef, self.template = nnx.split(module)
            self.apply = NnxApply(graphdef)
        elif not callable(getattr(module, "apply", None)):
            raise InvalidArgument(f"the model factory returned {module!r}, not a Flax module")

    def restore(self, path: Path) -> Any:
        from flax import nnx

        tree = checkpoint.read(path)
        if not self.nnx:
            return tree
        state = self.template
        nnx.replace_by_pure_dict(state, tree)
        return state


def load(entry: str | Path, *, version: int | None = None) -> ModelSpec:
    """The model of directory ``entry`` as a :class:`ModelSpec` (its module and
    parameters load when first used); ``version`` overrides the config's."""
    entry = Path(entry).resolve()
    config = _read_config(entry)
    name = str(config.get("name", entry.name))
    serving = config.get("serving", {})
    known = versions(entry)
    if not known:
        raise ModelNotFound(f"{entry}: {_NO_VERSION})")
    chosen = version if version is not None else serving.get("version", known[-1])
    if chosen not in known:
        raise ModelNotFound(f"{entry}: no version {chosen}; there are {known}")
    try:
        input_spec = TensorSpec.of(
            _ints(entry, config["input"].get("shape"), "input.shape"),
            config["input"].get("dtype", "float32"),
        )
    except TypeError as exc:
        raise InvalidArgument(f"{_where(entry, 'input.dtype')}: {exc}") from None
    output_spec = TensorSpec.of(_ints(entry, config["output"].get("shape"), "output.shape"), "f4")
    norm = None
    if "normalize" in config:
        n = config["normalize"]
        norm = Normalization.of((float(n.get("scale", 1.0)), n["mean"], n["std"]))
        clamp = tuple(n["clamp"]) if "clamp" in n else None
        norm = replace(norm, channel_first=bool(n.get("channel_first", False)), clamp=clamp)
    text = _text(entry, config, input_spec) if "tokenize" in config else None
    labels: tuple[str, ...] = ()
    if "labels" in config:
        try:
            raw = (entry / str(config["labels"])).read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"{_where(entry, 'labels')}: {exc.strerror}") from None
        labels = decode_labels(raw.rstrip(b"\n") + b"\n" if raw.strip() else b"")
    workers = serving.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise InvalidArgument(
            f"{_where(entry, 'serving.workers')} must be an integer from 1 to {MAX_WORKERS},"
            f" not {workers!r}"
        )
    factory = _import_factory(entry, str(config["module"]))
    params_path = checkpoint.find(entry / str(chosen))
    loaded: list[_Loaded] = []

    def built() -> _Loaded:
        if not loaded:
            loaded.append(_Loaded(factory))
        return loaded[0]

    heldout: list[tuple[Any, Any]] = []

    def load_heldout() -> tuple[Any, Any]:
        if "heldout" not in config:
            raise InvalidArgument(f"model {name!r} from {entry} has no held-out data")
        if not heldout:
            heldout.append(_read_heldout(entry, str(config["heldout"]), input_spec))
        return heldout[0]

    sizes = serving.get("batch_sizes")
    buckets = serving.get("buckets")
    text_fields: dict[str, Any] = {}
    if text is not None:
        vocab, text_max = text
        if buckets is not None:
            from pyflaxdev.buckets import Buckets

            try:
                Buckets.plan(_ints(entry, buckets, "serving.buckets"), input_spec.shape[1])
            except InvalidArgument as exc:
                raise InvalidArgument(f"{_where(entry, 'serving.buckets')}: {exc}") from None
            if output_spec.shape[:1] != input_spec.shape[1:]:
                raise InvalidArgument(
                    f"{_where(entry, 'serving.buckets')}: buckets cut the sequence, so the"
                    f" output must be one row per token, [{input_spec.shape[1]}, D],"
                    f" not {list(output_spec.shape)}"
                )
        text_fields = {
            "tokenize": True,
            "text_max": text_max,
            "load_vocab": vocab.read_bytes,
            "tokenizer": functools.partial(_wordpiece, vocab, input_spec.shape[1]),
        }
    elif buckets is not None:
        raise InvalidArgument(f"{_where(entry, 'serving.buckets')}: only a text model has buckets")
    return ModelSpec(
        name=name,
        input=input_spec,
        output=output_spec,
        normalize=norm,
        post=tuple(config.get("post", ())),
        topk=int(config.get("topk", 0)),
        labels=labels,
        make_module=lambda: built().apply,
        load_params=lambda: built().restore(params_path),
        load_heldout=load_heldout,
        metadata={
            "about": config.get("about", {}),
            "repository": str(entry),
            "version": chosen,
            "versions": known,
            "node": _node(entry, config.get("node", {})),
            "workers": workers,
        },
        batch_sizes=_ints(entry, sizes, "serving.batch_sizes") if sizes is not None else None,
        buckets=_ints(entry, buckets, "serving.buckets") if buckets is not None else None,
        timeout_ms=int(serving.get("timeout_ms", 0)),
        **text_fields,
    )


def _wordpiece(vocab: Path, max_len: int, texts: Any) -> Any:
    from pyflaxdev import wordpiece

    return wordpiece.tokenize(vocab, texts, max_len)


def _read_heldout(entry: Path, file: str, input_spec: TensorSpec) -> tuple[Any, Any]:
    """``heldout``'s arrays: ``x`` ``[n, *input.shape]`` (input dtype), ``y`` int64 ``[n]``."""
    try:
        with np.load(entry / file, allow_pickle=False) as data:
            x, y = data["x"], data["y"].astype(np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidArgument(f"{_where(entry, 'heldout')}: {entry / file}: {exc}") from None
    if x.shape[1:] != input_spec.shape or x.dtype != input_spec.dtype or y.shape != x.shape[:1]:
        raise InvalidArgument(
            f"{_where(entry, 'heldout')}: {entry / file} holds x {x.dtype}{list(x.shape)} and"
            f" y{list(y.shape)}, not [n, *input.shape] of {input_spec.dtype} and [n]"
        )
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def check_module(spec: ModelSpec) -> None:
    """Raise :class:`InvalidArgument` unless ``spec``'s module maps its input to as many
    values as its config's output (traced with ``jax.eval_shape``: nothing compiles),
    so that ``flaxdev serve`` refuses a mismatch before it creates anything."""
    import jax

    where = spec.metadata.get("repository", spec.name)
    dtype = np.float32 if spec.normalize is not None else spec.input.dtype
    x = jax.ShapeDtypeStruct((1, *spec.input.shape), dtype)  # type: ignore[no-untyped-call]
    module, params = spec.module, spec.params  # their own errors name their files
    try:
        out = jax.eval_shape(module.apply, params, x)
    except Exception as exc:  # the user's module, on an input of the config's shape
        raise InvalidArgument(
            f"{where}/{CONFIG}: the module cannot take input.shape {list(spec.input.shape)}:"
            f" {type(exc).__name__}: {exc}"
        ) from exc
    got = int(np.prod(out.shape[1:])) if out.shape else 0
    if not out.shape or out.shape[0] != 1 or got != spec.output.size:
        raise InvalidArgument(
            f"{where}/{CONFIG}: output.shape is {list(spec.output.shape)}, but the module"
            f" gives {list(out.shape[1:])} per input"
        )


def save_version(entry: str | Path, version: int, variables: Any, *, fmt: str = "msgpack") -> Path:
    """Write version ``version`` of a model's directory: ``variables`` (a Linen
    module's variables, or an NNX module, whose state is saved) in format ``fmt``
    (``msgpack``, ``safetensors`` or ``orbax``: :data:`pyflaxdev.checkpoint.FORMATS`)."""
    from flax import nnx

    if version < 1:
        raise InvalidArgument(f"versions are numbered from 1, not {version}")
    if isinstance(variables, nnx.Module):
        tree = nnx.to_pure_dict(nnx.state(variables))
    else:
        tree = variables
    return checkpoint.write(Path(entry) / str(version), tree, fmt)


def _toml(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # shortest repr: reads back as the same double
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml(v, key) for v in list(value)) + "]"
    raise InvalidArgument(f"config key {key!r}: cannot write {type(value).__name__} as TOML")


def _toml_table(table: Mapping[str, Any], prefix: str) -> list[str]:
    lines = [f"{k} = {_toml(v, k)}" for k, v in table.items() if not isinstance(v, Mapping)]
    for k, v in table.items():
        if isinstance(v, Mapping):
            lines += ["", f"[{prefix}{k}]", *_toml_table(v, f"{prefix}{k}.")]
    return lines


def write_config(entry: str | Path, config: Mapping[str, Any]) -> Path:
    """Write ``entry/config.toml`` from ``config`` (tables as dicts; strings, numbers,
    booleans and lists of them as values), then read it back as :func:`load` does:
    an unknown key or a missing one is refused before the file is in place."""
    entry = Path(entry)
    entry.mkdir(parents=True, exist_ok=True)
    tmp = entry / f".{CONFIG}.tmp"
    tmp.write_text("\n".join(_toml_table(config, "")).lstrip("\n") + "\n", encoding="utf-8")
    try:
        _read_config(entry, tmp)
        tmp.replace(entry / CONFIG)
    finally:
        tmp.unlink(missing_ok=True)
    return entry / CONFIG
