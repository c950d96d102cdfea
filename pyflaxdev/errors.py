"""Exceptions: every failure is a :class:`FlaxError`, an ``OSError`` with an errno.

The message says what was wrong in the caller's terms and ends with the errno's
symbolic name, e.g. ``model 'nope' not found (ENOENT)``.  Subclasses follow the
errno and also derive from the matching built-in ``OSError`` subclass where one
exists, so ``except TimeoutError`` or ``except FileNotFoundError`` work too.

:func:`check` is the one place where an ioctl's ``-errno`` becomes an exception
(pygit2's ``check_error`` habit); :func:`open_error` does the same for
``open(2)`` of the device.
"""

from __future__ import annotations

import errno as codes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "AbiMismatch",
    "BufferTooSmall",
    "Busy",
    "Cancelled",
    "DeviceNotFound",
    "FlaxError",
    "Interrupted",
    "InvalidArgument",
    "LabelsTooLarge",
    "ModelExists",
    "ModelGone",
    "ModelNotFound",
    "NotAFlaxDevice",
    "NotAttached",
    "OutOfResources",
    "PermissionDenied",
    "Timeout",
    "WorkerFailed",
    "check",
    "errno_name",
    "error_for",
    "open_error",
]


def errno_name(code: int) -> str:
    """Symbolic name of an errno (``ENOENT``), or its number if unknown."""
    return codes.errorcode.get(code, str(code))


class FlaxError(OSError):
    """Base class of pyflaxdev errors: an ``OSError`` whose message says what was wrong.

    Attributes: ``errno`` (the errno), ``message`` (the full message, also
    ``str(exc)`` and ``strerror``), ``filename`` (the device path, when known).
    A failed vector submission (:meth:`pyflaxdev.Model.submit`) also sets
    ``submitted``, the tickets of the requests queued before the failing one
    (they are under way and must be reaped), and ``index``, the failing
    input's position; other errors leave them ``()`` and ``None``.
    """

    default_errno: ClassVar[int] = codes.EIO
    submitted: tuple[int, ...] = ()
    index: int | None = None

    def __init__(
        self, message: str, errno: int | None = None, *, filename: str | None = None
    ) -> None:
        code = self.default_errno if errno is None else errno
        super().__init__(code, message)
        self.message = message
        if filename is not None:
            self.filename = filename

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.errno), {"filename": self.filename})


class ModelNotFound(FlaxError, FileNotFoundError):
    """No model by that name or id (``ENOENT``)."""

    default_errno = codes.ENOENT


class DeviceNotFound(FlaxError, FileNotFoundError):
    """The device node does not exist or has no module behind it (``ENOENT``, ``ENXIO``)."""

    default_errno = codes.ENOENT


class ModelExists(FlaxError, FileExistsError):
    """A model with that name exists already (``EEXIST``)."""

    default_errno = codes.EEXIST


class InvalidArgument(FlaxError, ValueError):
    """An argument was rejected, by pyflaxdev's checks or by the module (``EINVAL``)."""

    default_errno = codes.EINVAL


class LabelsTooLarge(InvalidArgument):
    """More labels (or label bytes) than the model accepts (``E2BIG``)."""

    default_errno = codes.E2BIG


class Timeout(FlaxError, TimeoutError):
    """A request was not served in time (``ETIMEDOUT``)."""

    default_errno = codes.ETIMEDOUT


class Interrupted(FlaxError, InterruptedError):
    """A signal interrupted a wait that could not be resumed (``EINTR``)."""

    default_errno = codes.EINTR


class WorkerFailed(FlaxError):
    """The worker failed the job, or died too often while holding it (``EIO``).

    ``worker_status`` is the worker's own (positive) error code when it
    failed the job, 0 when its workers went away: the kernel reports a
    worker's code beside ``EIO``, never as the call's errno.
    """

    default_errno = codes.EIO
    worker_status: int = 0


class BufferTooSmall(FlaxError):
    """The result buffer is too small (``ENOSPC``); ``needed`` holds the size required."""

    default_errno = codes.ENOSPC
    needed: int | None = None


class Cancelled(FlaxError):
    """The request was cancelled: its client was closed before the result came (``ECANCELED``)."""

    default_errno = codes.ECANCELED


class AbiMismatch(FlaxError):
    """The module rejects the struct size (``E2BIG``) or does not know the ioctl."""

    default_errno = codes.E2BIG


class NotAFlaxDevice(FlaxError):
    """The file does not answer flaxdev ioctls (``ENOTTY``)."""

    default_errno = codes.ENOTTY


class Busy(FlaxError, BlockingIOError):
    """A resource is in use (``EBUSY``, ``EAGAIN``): e.g. an fd already attached."""

    default_errno = codes.EBUSY


class ModelGone(FlaxError):
    """The model was destroyed while in use (``ENODEV``, ``ESHUTDOWN``)."""

    default_errno = codes.ENODEV


class OutOfResources(FlaxError):
    """The module is out of memory or of model/slot capacity.

    ``ENOMEM``; on create also ``ENOSPC`` (max_models) and ``EDQUOT``
    (max_models_per_user).
    """

    default_errno = codes.ENOMEM


class NotAttached(FlaxError):
    """A worker ioctl on an fd that is not attached as a worker (``ENXIO``)."""

    default_errno = codes.ENXIO


class PermissionDenied(FlaxError, PermissionError):
    """Not allowed (``EACCES``, ``EPERM``; ``EBADF``: a change through an fd open read-only)."""

    default_errno = codes.EACCES


ERRNO_CLASSES: dict[int, type[FlaxError]] = {
    codes.ENOENT: ModelNotFound,
    codes.EEXIST: ModelExists,
    codes.EINVAL: InvalidArgument,
    codes.ETIMEDOUT: Timeout,
    codes.EINTR: Interrupted,
    codes.EIO: WorkerFailed,
    codes.ENOSPC: BufferTooSmall,
    codes.E2BIG: AbiMismatch,
    codes.ENOTTY: NotAFlaxDevice,
    codes.EBUSY: Busy,
    codes.EAGAIN: Busy,
    codes.ENODEV: ModelGone,
    codes.ESHUTDOWN: ModelGone,
    codes.ENOMEM: OutOfResources,
    codes.EACCES: PermissionDenied,
    codes.EPERM: PermissionDenied,
    codes.EBADF: PermissionDenied,
    codes.ENXIO: NotAttached,
    codes.ECANCELED: Cancelled,
}

# Classes that depend on the operation as well as the errno.
_OP_CLASSES: dict[tuple[str, int], type[FlaxError]] = {
    ("MODEL_CREATE", codes.ENOSPC): OutOfResources,
    ("MODEL_CREATE", codes.EDQUOT): OutOfResources,
    ("LABELS_SET", codes.E2BIG): LabelsTooLarge,
    ("VOCAB_SET", codes.E2BIG): InvalidArgument,
}

# Running someone else's model on the control node, or a model on a node open read-only.
_RUN_ELSEWHERE = (
    "model {model!r} is another user's: on the control node only its owner or CAP_SYS_ADMIN"
    " may run it; open its node instead (pyflaxdev.open_model({model!r}), /dev/flax/{model}),"
    " as far as the node's mode allows"
)
_RUN_READ_ONLY = "running model {model!r} needs its node ({path}) open for writing"

# What an errno means for a given operation, in the caller's terms.  Placeholders
# are filled from the context passed to check(); a missing one falls back to the
# generic text.  "{what}" is always available (e.g. "MODEL_GET of model 'x'").
_MESSAGES: dict[tuple[str, int], str] = {
    ("MODEL_GET", codes.ENOENT): "model {model!r} not found",
    ("MODEL_DESTROY", codes.ENOENT): "model {model} not found",
    ("MODEL_CREATE", codes.EEXIST): "model {model!r} already exists",
    ("MODEL_CREATE", codes.ENOSPC): "cannot create model {model!r}: the module's model limit"
    " is reached",
    ("MODEL_CREATE", codes.ENOMEM): "cannot create model {model!r}: no memory for its slot"
    " region (past the memory cgroup's limit, the module's max_region_mb, or the machine's"
    " memory)",
    ("MODEL_CREATE", codes.EDQUOT): "cannot create model {model!r}: you own as many models as"
    " the module's max_models_per_user allows (destroy one, or create it with CAP_SYS_ADMIN)",
    ("MODEL_DESTROY", codes.EPERM): "model {model} is another user's: only its owner or"
    " CAP_SYS_ADMIN may destroy it",
    ("LABELS_SET", codes.EPERM): "model {model!r} is another user's: only its owner or"
    " CAP_SYS_ADMIN may set its labels",
    ("VOCAB_SET", codes.EPERM): "model {model!r} is another user's: only its owner or"
    " CAP_SYS_ADMIN may set its vocabulary",
    ("WORKER_ATTACH", codes.EPERM): "cannot attach to model {model!r}: it is another"
    " user's (only its owner or CAP_SYS_ADMIN may serve it)",
    ("MODEL_CREATE", codes.EINVAL): "model description for {model!r} rejected by the module",
    ("MODEL_CREATE", codes.EPERM): "cannot create model {model!r} for another owner or a group"
    " you are not in: that takes CAP_CHOWN",
    ("MODEL_CREATE", codes.ENOTTY): "{path} is a model's node: create models on the control"
    " node (pyflaxdev.open())",
    **{(op, codes.EPERM): _RUN_ELSEWHERE for op in ("INFER", "SUBMIT")},
    **{(op, codes.EBADF): _RUN_READ_ONLY for op in ("INFER", "SUBMIT")},
    ("INFER", codes.ENOENT): "model {model!r} no longer exists",
    ("INFER", codes.ENODEV): "model {model!r} was destroyed during the request",
    ("INFER", codes.ETIMEDOUT): "inference on model {model!r} timed out after {timeout_ms} ms"
    " (is a worker serving it?)",
    ("INFER", codes.EIO): "the worker failed the request on model {model!r}{worker_detail}",
    ("INFER", codes.ENOSPC): "result of model {model!r} needs {needed} bytes, buffer has {have}",
    ("INFER", codes.EINVAL): "request for model {model!r} rejected by the module",
    ("INFER", codes.EINTR): "inference on model {model!r} interrupted by a signal",
    ("INFER", codes.EAGAIN): "model {model!r} has its max_queue requests under way"
    " (non-blocking fd)",
    ("INFER", codes.ENODATA): "model {model!r} has no vocabulary yet (set it with"
    " FLAX_IOC_VOCAB_SET)",
    ("INFER", codes.EILSEQ): "input text for model {model!r} is not valid UTF-8",
    ("SUBMIT", codes.ENOENT): "model {model!r} no longer exists",
    ("SUBMIT", codes.ENODEV): "model {model!r} was destroyed during the submission",
    ("SUBMIT", codes.EINVAL): "submission to model {model!r} rejected by the module (input"
    " size, a count outside 1 to nslots, or flags)",
    ("SUBMIT", codes.EAGAIN): "model {model!r} has its max_queue requests under way"
    " (non-blocking fd): nothing was queued",
    ("SUBMIT", codes.ETIMEDOUT): "no room on model {model!r} within {timeout_ms} ms"
    " (max_queue requests under way; unreaped results hold their slots)",
    ("SUBMIT", codes.EINTR): "submission to model {model!r} interrupted by a signal",
    ("SUBMIT", codes.ENODATA): "model {model!r} has no vocabulary yet (set it with"
    " FLAX_IOC_VOCAB_SET)",
    ("SUBMIT", codes.EILSEQ): "input text for model {model!r} is not valid UTF-8",
    ("SUBMIT", codes.ENOMEM): "out of memory submitting to model {model!r}",
    ("REAP", codes.EINVAL): "REAP rejected by the module (count 0, flags or a reserved field set)",
    ("REAP", codes.EINTR): "waiting for results interrupted by a signal",
    ("INFER", codes.ECANCELED): "request on model {model!r} cancelled: its client was closed",
    ("VOCAB_SET", codes.EINVAL): "vocabulary of model {model!r} rejected{where}: not a"
    " tokenising model, a bad or duplicate token, or a special token missing",
    ("VOCAB_SET", codes.E2BIG): "vocabulary of model {model!r} is too large{where} (at most"
    " 2 MiB and 131072 tokens)",
    ("VOCAB_SET", codes.EBUSY): "model {model!r} has its vocabulary already (set once)",
    ("VOCAB_SET", codes.ENOENT): "model {model!r} no longer exists",
    ("LABELS_SET", codes.ENOENT): "model {model!r} no longer exists",
    ("LABELS_GET", codes.ENOENT): "model {model!r} no longer exists",
    ("LABELS_SET", codes.EINVAL): "labels of model {model!r} rejected by the module: a label is"
    " empty, longer than 127 bytes or has a control character (the kernel log names the line)",
    ("LABELS_SET", codes.E2BIG): "labels of model {model!r} rejected by the module: more labels"
    " than result elements, or more than 65536 labels or 4 MiB",
    ("LABELS_GET", codes.ENOSPC): "labels of model {model!r} need {needed} bytes, buffer has"
    " {have}",
    ("WORKER_ATTACH", codes.EBUSY): "cannot attach to model {model!r}: it has its maximum"
    " number of workers",
    ("WORKER_ATTACH", codes.EINVAL): "cannot attach to model {model!r}: this fd is already a"
    " worker (one model per fd, attached once)",
    ("WORKER_ATTACH", codes.ENODEV): "model {model!r} was destroyed",
    ("WORKER_ATTACH", codes.ENOENT): "model {model!r} not found",
    ("FETCH", codes.EINVAL): "FETCH on model {model!r} rejected (a completion names a job this"
    " worker does not hold, or bad arguments)",
    ("FETCH", codes.ENODEV): "model {model!r} was destroyed",
    ("COMPLETE", codes.EINVAL): "COMPLETE on model {model!r} rejected (a completion names a job"
    " this worker does not hold)",
}

_GENERIC: dict[int, str] = {
    codes.ENOTTY: "{path} does not understand {op}: not a flax device, or a module without it",
    codes.E2BIG: "{op}: the module is older than pyflaxdev and rejects its larger struct",
    codes.EACCES: "{op} not permitted on {path}",
    codes.EPERM: "{op} not permitted on {path}",
    codes.EBADF: "{op} changes models: it needs {path} open for writing, not read-only",
    codes.EFAULT: "{op}: the module could not access a buffer (pyflaxdev bug)",
    codes.ENXIO: "{op}: this fd is not attached as a worker (WORKER_ATTACH first)",
}


class _Context(dict[str, object]):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def _format(template: str, context: Mapping[str, object]) -> str | None:
    try:
        return template.format_map(_Context(context))
    except (KeyError, IndexError, ValueError):
        return None


def error_for(code: int, op: str, context: Mapping[str, object] | None = None) -> FlaxError:
    """Build the exception for ``op`` (e.g. ``"INFER"``) failing with errno ``code``.

    ``context`` supplies details for the message: ``model``, ``path``,
    ``timeout_ms``, ``needed``, ``have``, ...
    """
    ctx: dict[str, object] = {"op": op, "path": "the device"}
    ctx.update(context or {})
    worker = ctx.get("worker_status")
    ctx["worker_detail"] = (
        f" (the worker's code: {errno_name(worker)})"
        if isinstance(worker, int) and worker
        else " (its workers went away too often)"
        if "worker_status" in ctx
        else ""
    )
    message = None
    for template in (_MESSAGES.get((op, code)), _GENERIC.get(code)):
        if template is not None:
            message = _format(template, ctx)
            if message is not None:
                break
    if message is None:
        subject = f" on model {ctx['model']!r}" if "model" in ctx else ""
        message = f"{op}{subject} failed: {os.strerror(code)}"
    cls = _OP_CLASSES.get((op, code)) or ERRNO_CLASSES.get(code, FlaxError)
    exc = cls(f"{message} ({errno_name(code)})", code)
    path = ctx.get("path")
    if isinstance(path, str) and path != "the device":
        exc.filename = path
    if isinstance(exc, BufferTooSmall) and isinstance(ctx.get("needed"), int):
        exc.needed = ctx["needed"]  # type: ignore[assignment]
    if isinstance(exc, WorkerFailed):
        worker = ctx.get("worker_status")
        exc.worker_status = worker if isinstance(worker, int) else 0
    return exc


def check(result: int, op: str, context: Mapping[str, object] | None = None) -> int:
    """Return ``result`` if it is >= 0, else raise the :class:`FlaxError` for ``-result``."""
    if result >= 0:
        return result
    raise error_for(-result, op, context)


def open_error(path: str, exc: OSError) -> FlaxError:
    """Translate an ``OSError`` from opening the device into a :class:`FlaxError`."""
    code = exc.errno or codes.EIO
    name = errno_name(code)
    node = Path(path).name
    if (
        code in (codes.ENOENT, codes.ENODEV)
        and node != "control"
        and (Path(path).parent / "control").exists()
    ):
        # A model's node beside a live control node: the model is missing, not the module.
        return ModelNotFound(f"model {node!r} not found ({name})", code, filename=path)
    if code in (codes.ENOENT, codes.ENODEV, codes.ENXIO):
        return DeviceNotFound(
            f"cannot open {path}: no such device ({name}); is the flaxdev module loaded?",
            code,
            filename=path,
        )
    if code in (codes.EACCES, codes.EPERM):
        return PermissionDenied(
            f"cannot open {path}: permission denied ({name}); the control node is for the"
            " group 'flax' (usermod -aG flax USER, then log in again); a model's node has"
            " the owner, group and mode its model was created with (ls -l the node)",
            code,
            filename=path,
        )
    return FlaxError(f"cannot open {path}: {os.strerror(code)} ({name})", code, filename=path)
