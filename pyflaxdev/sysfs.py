"""The module's sysfs tree: ``/sys/class/misc/flax/models/<name>/``, one value per file.

:func:`read_status` reads a model's directory into a typed
:class:`ModelStatus` (specs, live settings, queue state, statistics with both
histograms); :func:`set_setting` writes one setting (the model's owner and
root may) and :func:`reset_stats` zeroes the statistics.  :func:`read_model`
and :func:`models` give the raw strings.  Only the files named here are read.
docs/ABI/sysfs-flaxdev documents every file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pyflaxdev.errors import (
    DeviceNotFound,
    FlaxError,
    InvalidArgument,
    ModelNotFound,
    PermissionDenied,
    errno_name,
)
from pyflaxdev.labels import decode_labels, encode_labels
from pyflaxdev.uapi import ffi, lib

__all__ = [
    "BATCH_BUCKETS",
    "FIELDS",
    "LATENCY_BUCKETS",
    "SETTINGS",
    "SYSFS_ROOT",
    "ModelStatus",
    "QueueState",
    "Settings",
    "Specs",
    "Statistics",
    "batch_bucket_names",
    "latency_bucket_names",
    "model_dir",
    "models",
    "read_all",
    "read_model",
    "read_status",
    "reset_stats",
    "set_setting",
    "sysfs_root",
]

SYSFS_ROOT = Path("/sys/class/misc") / ffi.string(lib.FLAX_DEVICE_NAME).decode()

#: Buckets of ``batch_hist`` (1, 2, 3-4, 5-8, ... jobs) and ``latency_hist``
#: (<1 us, [1, 2) us, [2, 4) us, ..., the last unbounded).
BATCH_BUCKETS = 13
LATENCY_BUCKETS = 24

_SPECS = (
    "id",
    "input_shape",
    "input_dtype",
    "output_shape",
    "pre_op",
    "post_ops",
    "nslots",
    "result_size",
    "text_size",
)
#: The writable settings (``labels`` besides).
SETTINGS = (
    "topk",
    "threshold",
    "timeout_ms",
    "max_batch",
    "max_queue_delay_us",
    "max_queue",
    "norm_mean",
    "norm_std",
)
_QUEUE = ("queued", "in_flight", "workers")
_COUNTERS = (
    "requests",
    "completed",
    "errors",
    "timeouts",
    "batches",
    "batched",
    "queue_ns",
    "compute_ns",
    "pre_ns",
    "post_ns",
    "total_ns",
)
_HISTS = ("batch_hist", "latency_hist")

#: Every attribute read, in display order (``labels`` is read separately).
FIELDS = (*_SPECS, *SETTINGS, *_QUEUE, *_COUNTERS, *_HISTS)


def batch_bucket_names() -> list[str]:
    """Names of the ``batch_hist`` buckets: ``1``, ``2``, ``3-4``, ..., ``2049+``."""
    names = ["1", "2"]
    for b in range(2, BATCH_BUCKETS):
        lo, hi = 2 ** (b - 1) + 1, 2**b
        names.append(f"{lo}+" if b == BATCH_BUCKETS - 1 else f"{lo}-{hi}")
    return names


def latency_bucket_names() -> list[str]:
    """Names of the ``latency_hist`` buckets in µs: ``<1``, ``1-2``, ``2-4``, ..., ``4194304+``."""
    names = ["<1"]
    for b in range(1, LATENCY_BUCKETS):
        lo, hi = 2 ** (b - 1), 2**b
        names.append(f"{lo}+" if b == LATENCY_BUCKETS - 1 else f"{lo}-{hi}")
    return names


def sysfs_root() -> Path:
    """The device's sysfs directory (``$FLAXDEV_SYSFS`` overrides, for tests)."""
    override = os.environ.get("FLAXDEV_SYSFS")
    return Path(override) if override else SYSFS_ROOT


def _models_dir(root: Path | None) -> Path:
    root = sysfs_root() if root is None else root
    if not root.is_dir():
        raise DeviceNotFound(f"{root} not found: is the flaxdev module loaded? (ENOENT)")
    return root / "models"


def model_dir(name: str, root: Path | None = None) -> Path:
    """The sysfs directory of model ``name``; :class:`ModelNotFound` if there is none."""
    directory = _models_dir(root) / name
    if not name or "/" in name or name in (".", "..") or not directory.is_dir():
        raise ModelNotFound(f"model {name!r} not found in {directory.parent} (ENOENT)")
    return directory


def _read(directory: Path, name: str) -> str | None:
    try:
        return (directory / name).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def read_model(directory: Path, *, every: bool = False) -> dict[str, str | None]:
    """The attributes of one model directory as strings; ``None`` for an unreadable one.

    Missing files are left out.  ``every`` is accepted for compatibility; every
    attribute is read anyway.
    """
    del every
    return {name: _read(directory, name) for name in FIELDS if (directory / name).exists()}


def models(root: Path | None = None, *, every: bool = False) -> dict[str, dict[str, str | None]]:
    """All models' raw attributes, by model name (sorted).

    Raises :class:`DeviceNotFound` when the sysfs directory does not exist.
    """
    mdir = _models_dir(root)
    if not mdir.is_dir():
        return {}
    return {d.name: read_model(d, every=every) for d in sorted(mdir.iterdir()) if d.is_dir()}


# -- typed view -----------------------------------------------------------------


def _int(raw: dict[str, str | None], key: str) -> int | None:
    value = raw.get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(raw: dict[str, str | None], key: str) -> float | None:
    value = raw.get(key)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _ints(raw: dict[str, str | None], key: str) -> list[int] | None:
    value = raw.get(key)
    try:
        return [int(v) for v in value.split()] if value is not None else None
    except ValueError:
        return None


def _floats(raw: dict[str, str | None], key: str) -> list[float] | None:
    value = raw.get(key)
    try:
        return [float(v) for v in value.split()] if value is not None else None
    except ValueError:
        return None


def _words(raw: dict[str, str | None], key: str) -> list[str] | None:
    value = raw.get(key)
    if value is None:
        return None
    return [] if value == "none" else value.split()


@dataclass(frozen=True)
class Specs:
    """What the model is (fixed at creation): sysfs's read-only description."""

    id: int | None
    input_shape: list[int] | None
    input_dtype: str | None
    output_shape: list[int] | None
    pre_op: str | None
    post_ops: list[str] | None
    nslots: int | None
    result_size: int | None
    text_size: int | None


@dataclass(frozen=True)
class Settings:
    """The live settings, writable by root (:func:`set_setting`)."""

    topk: int | None
    threshold: float | None
    timeout_ms: int | None
    max_batch: int | None
    max_queue_delay_us: int | None
    max_queue: int | None
    norm_mean: list[float] | None
    norm_std: list[float] | None


@dataclass(frozen=True)
class QueueState:
    """Requests queued for a worker, requests under way (holding a slot), workers attached."""

    queued: int | None
    in_flight: int | None
    workers: int | None


@dataclass(frozen=True)
class Statistics:
    """Counters since creation or the last reset (times in ns, summed over requests)."""

    requests: int | None
    completed: int | None
    errors: int | None
    timeouts: int | None
    batches: int | None
    batched: int | None
    queue_ns: int | None
    compute_ns: int | None
    pre_ns: int | None
    post_ns: int | None
    total_ns: int | None
    batch_hist: list[int] | None
    latency_hist: list[int] | None

    @property
    def mean_batch(self) -> float | None:
        """Mean jobs per FETCH that took any (``batched / batches``)."""
        if not self.batches or self.batched is None:
            return None
        return self.batched / self.batches

    def _per_request_us(self, ns: int | None, n: int | None) -> float | None:
        return ns / n / 1000.0 if ns is not None and n else None

    @property
    def mean_latency_us(self) -> float | None:
        """Mean end-to-end time of a request, in µs (``total_ns / requests``)."""
        return self._per_request_us(self.total_ns, self.requests)

    @property
    def mean_queue_us(self) -> float | None:
        """Mean time a fetched job waited in the queue, in µs (``queue_ns / batched``)."""
        return self._per_request_us(self.queue_ns, self.batched)

    @property
    def mean_compute_us(self) -> float | None:
        """Mean time a job spent with a worker, in µs (``compute_ns / batched``)."""
        return self._per_request_us(self.compute_ns, self.batched)

    def derived(self) -> dict[str, float | None]:
        """The derived means, by name (``mean_batch``, ``mean_latency_us``, ...)."""
        return {
            "mean_batch": self.mean_batch,
            "mean_latency_us": self.mean_latency_us,
            "mean_queue_us": self.mean_queue_us,
            "mean_compute_us": self.mean_compute_us,
        }


@dataclass(frozen=True)
class ModelStatus:
    """A model's whole sysfs directory, typed; a value is None when its file is missing
    or unreadable."""

    name: str
    path: str
    specs: Specs
    settings: Settings
    queue: QueueState
    stats: Statistics
    labels: list[str] | None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: ``name``, ``path``, ``specs``, ``settings``, ``queue``,
        ``stats`` (with ``mean_batch``, ``mean_latency_us``, ``mean_queue_us``,
        ``mean_compute_us``), ``labels``."""
        out = asdict(self)
        out["stats"].update(self.stats.derived())
        return out


def _str(raw: dict[str, str | None], key: str) -> str | None:
    return raw.get(key)


_Parser = Callable[[dict[str, str | None], str], Any]
_PARSERS: dict[str, _Parser] = {
    "input_dtype": _str,
    "pre_op": _str,
    "post_ops": _words,
    "input_shape": _ints,
    "output_shape": _ints,
    "batch_hist": _ints,
    "latency_hist": _ints,
    "threshold": _float,
    "norm_mean": _floats,
    "norm_std": _floats,
}


def _fields(cls: type[Any], raw: dict[str, str | None]) -> Any:
    """An instance of the dataclass ``cls`` with each field parsed from ``raw``."""
    return cls(**{k: _PARSERS.get(k, _int)(raw, k) for k in cls.__dataclass_fields__})


def _read_labels(directory: Path) -> list[str] | None:
    try:
        return list(decode_labels((directory / "labels").read_bytes()))
    except OSError:
        return None


def status_of(directory: Path) -> ModelStatus:
    """Read one model directory into a :class:`ModelStatus`."""
    raw = read_model(directory)
    return ModelStatus(
        name=directory.name,
        path=str(directory),
        specs=_fields(Specs, raw),
        settings=_fields(Settings, raw),
        queue=_fields(QueueState, raw),
        stats=_fields(Statistics, raw),
        labels=_read_labels(directory),
    )


def read_status(name: str, root: Path | None = None) -> ModelStatus:
    """Model ``name``'s sysfs directory as a :class:`ModelStatus`."""
    return status_of(model_dir(name, root))


def read_all(root: Path | None = None) -> list[ModelStatus]:
    """Every model's :class:`ModelStatus`, by name; :class:`DeviceNotFound` without the module."""
    mdir = _models_dir(root)
    if not mdir.is_dir():
        return []
    return [status_of(d) for d in sorted(mdir.iterdir()) if d.is_dir()]


# -- writing ----------------------------------------------------------------------


def _format(key: str, value: Any) -> bytes:
    if key == "labels":
        items = [value] if isinstance(value, str) else list(value or ())
        return encode_labels(items)
    if key in ("norm_mean", "norm_std"):
        values = [value] if isinstance(value, int | float) else list(value)
        return (" ".join(repr(float(v)) for v in values) + "\n").encode()
    if key == "threshold":
        return f"{float(value)!r}\n".encode()
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"sysfs setting {key} takes an integer, got {value!r}")
    return f"{value}\n".encode()


def _write(path: Path, data: bytes, what: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)  # as `echo >` does
    except OSError as exc:
        raise _write_error(exc, path, what) from None
    try:
        written = os.write(fd, data)
    except OSError as exc:
        raise _write_error(exc, path, what) from None
    finally:
        os.close(fd)
    if written != len(data):
        raise FlaxError(f"{what}: short write to {path} ({written} of {len(data)} bytes)")


def _write_error(exc: OSError, path: Path, what: str) -> FlaxError:
    code = exc.errno or errno.EIO
    name = errno_name(code)
    if code in (errno.EACCES, errno.EPERM):
        return PermissionDenied(
            f"{what}: {path} is writable by the model's owner and root only ({name})", code
        )
    if code == errno.ENOENT:
        return ModelNotFound(f"{what}: {path} does not exist ({name})", code)
    if code in (errno.EINVAL, errno.E2BIG, errno.ERANGE):
        return InvalidArgument(f"{what}: rejected by the module ({name})", code)
    return FlaxError(f"{what}: writing {path} failed: {os.strerror(code)} ({name})", code)


def set_setting(
    name: str,
    key: str,
    value: int | float | Sequence[float] | Iterable[str],
    *,
    root: Path | None = None,
) -> None:
    """Write one live setting of model ``name`` (its owner and root may).

    ``key`` is one of :data:`SETTINGS` or ``labels``: ``topk``, ``timeout_ms``,
    ``max_batch``, ``max_queue_delay_us``, ``max_queue`` take an int,
    ``threshold`` a float, ``norm_mean``/``norm_std`` one float per pair,
    ``labels`` a sequence of str (in one write, so less than a page; larger
    sets go through :meth:`pyflaxdev.Model.set_labels`).  The module checks the
    whole new configuration and keeps the old one on :class:`InvalidArgument`.
    """
    if key not in (*SETTINGS, "labels"):
        raise InvalidArgument(
            f"{key!r} is not a writable setting; writable: {', '.join((*SETTINGS, 'labels'))}"
        )
    directory = model_dir(name, root)
    _write(directory / key, _format(key, value), f"setting {key} of model {name!r} to {value!r}")


def reset_stats(name: str, *, root: Path | None = None) -> None:
    """Zero model ``name``'s statistics (its owner and root may): writes 0 to ``requests``."""
    _write(model_dir(name, root) / "requests", b"0\n", f"resetting statistics of model {name!r}")


def read_state(name: str, *, root: Path | None = None) -> str:
    """Model ``name``'s ``state``: ``running``, ``draining`` or ``drained``."""
    path = model_dir(name, root) / "state"
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise _write_error(exc, path, f"reading the state of model {name!r}") from None


def set_state(name: str, state: str, *, root: Path | None = None) -> None:
    """Write model ``name``'s ``state``: ``drain`` (new requests fail with EAGAIN, those
    under way finish) or ``run`` (its owner and root may)."""
    if state not in ("drain", "run"):
        raise InvalidArgument(f"state takes drain or run, not {state!r}")
    _write(model_dir(name, root) / "state", f"{state}\n".encode(), f"{state} model {name!r}")
