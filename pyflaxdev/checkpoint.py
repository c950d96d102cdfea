"""A model version's parameters on disk: Flax msgpack, safetensors, or Orbax.

A version directory of a model repository (:mod:`pyflaxdev.repository`)
holds exactly one of:

``params.msgpack``
    ``flax.serialization.msgpack_serialize`` of the nested dict of arrays.
``params.safetensors``
    The same dict flattened to one tensor per leaf, its path joined with
    ``/`` (``params/Dense_0/kernel``), as ``safetensors.numpy.save`` writes it.
``checkpoint/``
    An Orbax checkpoint of the dict (``orbax.checkpoint.StandardCheckpointer``),
    as training loops write them.

:func:`read` returns the dict with numpy leaves whatever the format;
:func:`write` writes one atomically (the file or directory appears whole, and
replaces the version's parameters in any other format).  The libraries load
only for their own format.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pyflaxdev.errors import InvalidArgument

__all__ = ["FORMATS", "find", "has_params", "read", "write"]

#: Format name -> the file or directory a version holds.
FORMATS: dict[str, str] = {
    "msgpack": "params.msgpack",
    "safetensors": "params.safetensors",
    "orbax": "checkpoint",
}
_BY_FILE = {v: k for k, v in FORMATS.items()}
_SEP = "/"


def has_params(version_dir: Path) -> bool:
    """Whether ``version_dir`` holds parameters in some format."""
    return any((version_dir / name).exists() for name in FORMATS.values())


def find(version_dir: Path) -> Path:
    """The parameters of ``version_dir``; :class:`InvalidArgument` if there are
    none or more than one set (which one is meant would be a guess)."""
    found = [version_dir / name for name in FORMATS.values() if (version_dir / name).exists()]
    if len(found) != 1:
        what = ", ".join(p.name for p in found) if found else "none"
        raise InvalidArgument(
            f"{version_dir}: a version holds one of {', '.join(FORMATS.values())}; found {what}"
        )
    return found[0]


def read(path: Path) -> Any:
    """The nested dict stored at ``path`` (one of :data:`FORMATS`' names), numpy leaves."""
    fmt = _BY_FILE.get(path.name)
    if fmt is None:
        raise InvalidArgument(f"{path}: not a parameters file ({', '.join(FORMATS.values())})")
    try:
        if fmt == "msgpack":
            from flax import serialization

            tree = serialization.msgpack_restore(path.read_bytes())
        elif fmt == "safetensors":
            from safetensors.numpy import load

            tree = _unflatten(load(path.read_bytes()))
        else:
            import orbax.checkpoint as ocp

            with ocp.StandardCheckpointer() as ckpt:
                tree = ckpt.restore(path.resolve())
    except Exception as exc:  # each library's own error for a damaged file
        if isinstance(exc, OSError) and exc.strerror and exc.filename == str(path):
            why = exc.strerror
        else:
            why = f"{type(exc).__name__}: {exc}"
        what = "checkpoint" if fmt == "orbax" else "file"
        raise InvalidArgument(f"{path}: not a readable {fmt} {what}: {why}") from exc
    if not isinstance(tree, Mapping):
        raise InvalidArgument(f"{path}: holds a {type(tree).__name__}, not a dict of arrays")
    return _numpy(tree)


def write(version_dir: Path, tree: Any, fmt: str = "msgpack") -> Path:
    """Store ``tree`` (a nested dict of arrays) in ``version_dir`` as ``fmt``."""
    if fmt not in FORMATS:
        raise InvalidArgument(f"unknown parameters format {fmt!r}; known: {', '.join(FORMATS)}")
    tree = _numpy(tree)
    version_dir.mkdir(parents=True, exist_ok=True)
    path = version_dir / FORMATS[fmt]
    tmp = version_dir / f".{FORMATS[fmt]}.tmp-{os.getpid()}"
    _remove(tmp)
    if fmt == "msgpack":
        from flax import serialization

        tmp.write_bytes(serialization.msgpack_serialize(tree))
    elif fmt == "safetensors":
        from safetensors.numpy import save

        tmp.write_bytes(save(_flatten(tree)))
    else:
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(tmp.resolve(), tree)
            ckpt.wait_until_finished()
    for other in FORMATS.values():
        _remove(version_dir / other)
    tmp.rename(path)  # the version has parameters again, whole
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _flatten(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
    from flax.traverse_util import flatten_dict

    out: dict[str, np.ndarray] = {}
    for path, value in flatten_dict(tree).items():  # type: ignore[no-untyped-call]
        if any(not part or _SEP in part for part in path):
            raise InvalidArgument(f"parameter name {path!r} cannot be stored in safetensors")
        out[_SEP.join(path)] = np.ascontiguousarray(value)
    return out


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    from flax.traverse_util import unflatten_dict

    return unflatten_dict(dict(flat), sep=_SEP)  # type: ignore[no-untyped-call,no-any-return]


def _numpy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _numpy(v) for k, v in tree.items()}
    return np.asarray(tree)
