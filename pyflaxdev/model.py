"""A client's handle on one model: :meth:`Model.infer` (``FLAX_IOC_INFER``).

``infer`` checks the input's dtype and shape first, for a message that names
the model and what it expects; the module checks the size again.  It is safe
to call from several threads at once on one :class:`~pyflaxdev.device.Device`
(each call has its own buffers; the GIL is released while the call waits).

Settings may change through sysfs while a handle lives (``topk`` changes the
result's size): an ``ENOSPC`` makes :meth:`Model.infer` re-read the
description once and retry, and :meth:`Model.infer_text` retry with the size
the module reports.  Labels are read once per handle, when a class result
first needs them (:meth:`Model.labels` reads them again).

``EINTR`` handling: an interrupted INFER has given its slot back, so it is
resubmitted with the *remaining* time of the original timeout (the model's
timeout when none was given); when none remains it fails with
:class:`~pyflaxdev.errors.Timeout`.  A Python signal handler that raises
(``KeyboardInterrupt``) ends the call instead.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pyflaxdev import ioctls, submit, uapi
from pyflaxdev.errors import BufferTooSmall, InvalidArgument, check, error_for
from pyflaxdev.labels import check_labels, decode_labels, encode_labels
from pyflaxdev.results import Result, decode_classes, decode_vector
from pyflaxdev.spec import ModelInfo, Normalization
from pyflaxdev.uapi import ffi, lib

if TYPE_CHECKING:
    from pyflaxdev.device import Device

__all__ = ["Input", "Model"]

Input = bytes | bytearray | memoryview | npt.ArrayLike

# First LABELS_GET buffer; a larger set is read again at the size reported.
_LABELS_GUESS = 4096
# Retries of a call whose size changed meanwhile (labels or topk set through sysfs).
_SIZE_RETRIES = 3


class Model:
    """A model on an open node, as found by ``Device.model(name)`` or opened
    with :func:`pyflaxdev.open_model` (which gives it its own fd).

    A context manager: leaving the ``with`` block calls :meth:`close`.
    """

    def __init__(self, device: Device, info: ModelInfo) -> None:
        self.device = device
        self.info = info
        #: Whether :meth:`close` closes :attr:`device` (``open_model``'s fd).
        self.owns_device = False
        self._labels: tuple[str, ...] | None = None  # None: not read yet

    def close(self) -> None:
        """Close the handle's fd if it owns one (:func:`pyflaxdev.open_model`)."""
        if self.owns_device:
            self.device.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def id(self) -> int:
        """The model's id."""
        return self.info.id

    @property
    def name(self) -> str:
        """The model's name."""
        return self.info.name

    def __repr__(self) -> str:
        i = self.info
        post = "+".join(i.post) or "raw"
        return f"<pyflaxdev.Model {i.name!r} id={i.id} {i.input} -> {i.output} ({post})>"

    # -- inference -----------------------------------------------------------

    def infer(self, x: Input, *, timeout_ms: int = 0, priority: int = 0) -> Result:
        """Run the model on one input and return its postprocessed result.

        ``x`` is an array of the model's input dtype with its input shape (or
        the flat vector of as many elements), or bytes of exactly the input
        size.  Returns :class:`~pyflaxdev.results.Classes` (with the model's
        labels, if it has any) for a chain ending in topk, argmax or
        threshold, else a float32 vector.  ``timeout_ms`` 0 means the model's
        timeout; a longer one is capped to it by the module.  ``priority``, 0
        (normal) to ``FLAX_PRIORITY_MAX``: queued requests of a higher one are
        served first.
        """
        data = self.check_input(x)
        submit.check_priority(priority)
        try:
            raw = self.infer_bytes(data, timeout_ms=timeout_ms, priority=priority)
        except BufferTooSmall as exc:
            # topk grew through sysfs: the module refused before running the job.
            self.info = self.device.describe(self.name)
            size = max(self.info.result_size, exc.needed or 0)
            raw = self.infer_bytes(data, timeout_ms=timeout_ms, output_size=size, priority=priority)
        return self.decode(raw)

    def infer_text(self, x: Input, *, timeout_ms: int = 0, priority: int = 0) -> str:
        """Run the model on one input and return the module's text result
        (``FLAX_INFER_TEXT``): ``"<label>\\t<score>\\n"`` per class, or the values
        separated by spaces and a newline."""
        data = self.check_input(x)
        submit.check_priority(priority)
        size = self.info.text_size
        for attempt in range(_SIZE_RETRIES):
            try:
                raw = self.infer_bytes(
                    data,
                    timeout_ms=timeout_ms,
                    output_size=size,
                    flags=lib.FLAX_INFER_TEXT,
                    priority=priority,
                )
            except BufferTooSmall as exc:
                # The job ran and its text was lost; run it again with room.
                if attempt == _SIZE_RETRIES - 1 or not exc.needed or exc.needed <= size:
                    raise
                size = exc.needed
                continue
            return raw.decode("utf-8", "replace")
        raise AssertionError("unreachable")  # pragma: no cover

    def submit(
        self,
        inputs: Sequence[Input],
        *,
        timeout_ms: int = 0,
        text: bool = False,
        priority: int = 0,
        user_data: int | Sequence[int] | None = None,
    ) -> list[int]:
        """``FLAX_IOC_SUBMIT``: queue one request per input and return their tickets at once.

        Collect the results with :meth:`Device.reap
        <pyflaxdev.device.Device.reap>` on this model's device (results are
        per fd).  Every input is checked first (:meth:`check_input`; nothing
        is queued if one is bad).  The inputs go in SUBMIT calls of at most
        ``nslots`` entries; ``text`` asks for text results
        (``FLAX_INFER_TEXT``); ``timeout_ms`` (0: the model's) runs from the
        submission, and a request not finished by then is reaped with
        ``ETIMEDOUT``.  ``user_data`` (an int for all, or one per input; 0 by
        default) comes back with each result.  ``priority`` as for :meth:`infer`.

        A short ``submitted`` is followed by a SUBMIT of the rest.  When a
        SUBMIT queues nothing, the :class:`~pyflaxdev.errors.FlaxError` of the
        input at fault is raised (as ``FLAX_IOC_INFER`` would raise it; a
        non-blocking fd at ``max_queue`` gives :class:`~pyflaxdev.errors.Busy`,
        ``EAGAIN``) with ``submitted``, the tickets already queued (reap them
        like any other), and ``index``, the position of that input.  On a
        blocking fd, a SUBMIT waits for room while the model has ``max_queue``
        requests under way; finished results hold their slots until reaped.
        """
        payloads = [self.check_input(x) for x in inputs]
        submit.check_priority(priority)
        values = submit.user_data_list(user_data, len(payloads))
        if not payloads:
            return []
        flags = lib.FLAX_INFER_TEXT if text else 0
        table = self.device.requests
        table.begin_submit()
        tickets: list[int] = []
        try:
            tickets, code = submit.submit_all(
                self.device.fileno(),
                self.id,
                payloads,
                chunk=max(1, self.info.nslots),
                flags=flags,
                timeout_ms=timeout_ms,
                priority=priority,
                user_data=values,
            )
        finally:
            table.end_submit(tickets, self, text, timeout_ms)
        if code:
            ctx = {
                "path": self.device.path,
                "model": self.name,
                "timeout_ms": self._budget_ms(timeout_ms) or "the model's timeout",
            }
            exc = error_for(code, "SUBMIT", ctx)
            exc.submitted = tuple(tickets)
            exc.index = len(tickets)
            raise exc
        return tickets

    def check_input(self, x: Input) -> npt.NDArray[Any] | bytes:
        """Validate ``x`` against the model's input spec; return it C-contiguous.

        A tokenising model takes text: ``str`` (sent as UTF-8) or bytes of at
        most ``info.text_max`` bytes.
        """
        spec = self.info.input
        if self.info.pre_op == "tokenize":
            return self._check_text(x)
        if isinstance(x, bytes | bytearray | memoryview):
            data = bytes(x)
            if len(data) != spec.nbytes:
                raise InvalidArgument(
                    f"input for {self.name!r} must be {spec.nbytes} bytes ({spec}), got {len(data)}"
                )
            return data
        arr = x if isinstance(x, np.ndarray) else _from_sequence(x, spec.dtype, self.name)
        if arr.dtype != spec.dtype:
            raise InvalidArgument(
                f"input for {self.name!r} must be {spec}, got {arr.dtype} {list(arr.shape)}"
            )
        if arr.shape != spec.shape and arr.shape != (spec.size,):
            raise InvalidArgument(
                f"input for {self.name!r} must be {spec}, got {arr.dtype} {list(arr.shape)}"
            )
        return np.ascontiguousarray(arr)

    def _check_text(self, x: Input) -> bytes:
        if isinstance(x, str):
            data = x.encode("utf-8")
        elif isinstance(x, bytes | bytearray | memoryview):
            data = bytes(x)
        else:
            raise InvalidArgument(f"input for {self.name!r} must be text (str or UTF-8 bytes)")
        if len(data) > self.info.text_max:
            raise InvalidArgument(
                f"input for {self.name!r} is {len(data)} bytes of text, at most"
                f" {self.info.text_max}"
            )
        return data

    def infer_bytes(
        self,
        data: bytes | npt.NDArray[Any],
        *,
        timeout_ms: int = 0,
        output_size: int | None = None,
        flags: int = 0,
        priority: int = 0,
    ) -> bytes:
        """``FLAX_IOC_INFER`` with no checks: send ``data``, return the raw result bytes.

        ``output_size`` sets the result buffer (default: the model's
        ``result_size``), e.g. to provoke ``ENOSPC``; ``flags`` are
        ``FLAX_INFER_*`` flags; ``priority`` goes as it is.
        """
        size = self.info.result_size if output_size is None else output_size
        out = ffi.new("char[]", max(size, 1))
        src = ffi.from_buffer(data)
        req = ffi.new("struct flax_infer *")
        req.model_id = self.info.id
        req.flags = flags
        req.input = uapi.pointer_value(src)
        req.input_size = len(src)
        req.output = uapi.pointer_value(out)
        req.output_size = size
        req.timeout_ms = timeout_ms
        req.priority = priority
        fd = self.device.fileno()
        start = time.monotonic()
        result = uapi.ioctl(fd, ioctls.INFER, req)
        if result == -errno.EINTR:
            result = self._resubmit(fd, req, size, timeout_ms, start)
        if result < 0:
            check(
                result,
                "INFER",
                {
                    "path": self.device.path,
                    "model": self.name,
                    "timeout_ms": self._budget_ms(timeout_ms) or "the model's timeout",
                    "needed": int(req.output_size),
                    "have": size,
                    "worker_status": -int(req.worker_status),
                },
            )
        return bytes(ffi.buffer(out, min(int(req.output_size), size)))

    def _budget_ms(self, timeout_ms: int) -> int:
        """The request's effective timeout: the shorter of ``timeout_ms`` and the model's."""
        model_ms = self.info.timeout_ms
        return min(timeout_ms, model_ms) if timeout_ms and model_ms else timeout_ms or model_ms

    def _resubmit(self, fd: int, req: Any, size: int, timeout_ms: int, start: float) -> int:
        """Resubmit an INFER interrupted by a signal, with what is left of its timeout."""
        budget_ms = self._budget_ms(timeout_ms)
        deadline = start + budget_ms / 1000.0
        while True:
            if budget_ms:  # else no timeout is known: wait as long as the module allows
                remaining_ms = math.ceil((deadline - time.monotonic()) * 1000.0)
                if remaining_ms <= 0:
                    return -errno.ETIMEDOUT
                req.timeout_ms = remaining_ms
            req.output_size = size
            result: int = uapi.ioctl(fd, ioctls.INFER, req)
            if result != -errno.EINTR:
                return result

    def decode(self, raw: bytes) -> Result:
        """Decode a raw INFER result according to the model's post chain."""
        if self.info.returns_classes:
            return decode_classes(raw, self.info.max_entries, self._cached_labels())
        return decode_vector(raw, self.info.vec_elems)

    # -- vocabulary ------------------------------------------------------------

    def set_vocab(self, data: bytes) -> int:
        """``FLAX_IOC_VOCAB_SET``: a tokenising model's vocabulary (a BERT ``vocab.txt``:
        one token a line, its id the line number), once per model.  Returns the
        number of tokens.  A rejected vocabulary raises with ``bad_line`` set to
        the 1-based line at fault (0: not one line's fault).
        """
        keep = ffi.from_buffer(data) if data else ffi.NULL
        req = ffi.new("struct flax_vocab_set *")
        req.model_id = self.id
        req.data = uapi.pointer_value(keep) if data else 0
        req.size = len(data)
        result = uapi.ioctl(self.device.fileno(), ioctls.VOCAB_SET, req)
        if result < 0:
            line = int(req.bad_line)
            ctx = {"path": self.device.path, "model": self.name}
            ctx["where"] = f" at line {line}" if line else ""
            exc = error_for(-result, "VOCAB_SET", ctx)
            exc.bad_line = line  # type: ignore[attr-defined]
            raise exc
        return int(req.count)

    # -- labels --------------------------------------------------------------

    def _cached_labels(self) -> tuple[str, ...]:
        if self._labels is None:
            self._labels = self._read_labels()
        return self._labels

    def labels(self) -> list[str]:
        """``FLAX_IOC_LABELS_GET``: the model's class names (empty if it has none)."""
        self._labels = self._read_labels()
        return list(self._labels)

    def _read_labels(self) -> tuple[str, ...]:
        size = _LABELS_GUESS
        ctx = {"model": self.name}
        for attempt in range(_SIZE_RETRIES):
            buf = ffi.new("char[]", size)
            req = ffi.new("struct flax_labels *")
            req.model_id = self.id
            req.data = uapi.pointer_value(buf)
            req.size = size
            try:
                self.device.ioctl(
                    ioctls.LABELS_GET, req, op="LABELS_GET", context={**ctx, "have": size}
                )
            except BufferTooSmall:
                if attempt == _SIZE_RETRIES - 1:
                    raise
                size = int(req.size)
                continue
            return decode_labels(bytes(ffi.buffer(buf, int(req.size))))
        raise AssertionError("unreachable")  # pragma: no cover

    def set_labels(self, labels: Iterable[str] | None, *, validate: bool = True) -> None:
        """``FLAX_IOC_LABELS_SET``: name the classes (label ``i`` names element ``i``);
        ``None`` or an empty sequence removes the labels.

        Raises :class:`~pyflaxdev.errors.InvalidArgument` for an empty label, one
        with a newline or other control character or longer than 127 bytes of
        UTF-8, and :class:`~pyflaxdev.errors.LabelsTooLarge` for more labels than
        result elements (or 65536).  ``validate=False`` leaves the checks to the
        module.
        """
        items = tuple(labels or ())
        if validate:
            items = check_labels(items, self.info.vec_elems, model=self.name)
        data = encode_labels(items)
        keep = ffi.from_buffer(data) if data else ffi.NULL
        req = ffi.new("struct flax_labels *")
        req.model_id = self.id
        req.data = uapi.pointer_value(keep) if data else 0
        req.size = len(data)
        self.device.ioctl(ioctls.LABELS_SET, req, op="LABELS_SET", context={"model": self.name})
        self._labels = items

    # -- model management ----------------------------------------------------

    def refresh(self) -> Model:
        """Re-read the description (``FLAX_IOC_MODEL_GET``); returns a new handle."""
        return self.device.model(self.name)

    def normalization(self) -> Normalization | None:
        """The model's normalisation parameters as the module holds them."""
        return self.device.normalization(self.name)

    def destroy(self) -> None:
        """Destroy the model (``FLAX_IOC_MODEL_DESTROY``)."""
        self.device.destroy_model(self)


def _from_sequence(x: npt.ArrayLike, dtype: np.dtype[Any], name: str) -> npt.NDArray[Any]:
    """Convert a list-like input to the model's dtype, refusing values that do not fit."""
    try:
        arr = np.asarray(x)
        if arr.dtype.kind in "iub" and dtype.kind in "iu":
            info = np.iinfo(dtype)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise InvalidArgument(
                    f"input for {name!r} has values outside {dtype} range [{info.min}, {info.max}]"
                )
            return arr.astype(dtype)
        if dtype.kind == "f" and arr.dtype.kind in "iubf":
            return arr.astype(dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, InvalidArgument):
            raise
        raise InvalidArgument(f"input for {name!r} is not numeric: {exc}") from None
    return arr
