"""A client's handle on one model: :meth:`Model.infer` (``FLAX_IOC_INFER``).

``infer`` checks the input's dtype and shape first, for a message that names
the model and what it expects; the module checks the size again.  It is safe
to call from several threads at once on one :class:`~pyflaxdev.device.Device`
(each call has its own buffers; the GIL is released while the call waits).

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
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pyflaxdev import ioctls, uapi
from pyflaxdev.errors import InvalidArgument, check
from pyflaxdev.results import Result, decode_topk, decode_vector
from pyflaxdev.spec import ModelInfo, Normalization
from pyflaxdev.uapi import ffi

if TYPE_CHECKING:
    from pyflaxdev.device import Device

__all__ = ["Input", "Model"]

Input = bytes | bytearray | memoryview | npt.ArrayLike


class Model:
    """A model on an open device, as found by ``Device.model(name)``."""

    def __init__(self, device: Device, info: ModelInfo) -> None:
        self.device = device
        self.info = info

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

    def infer(self, x: Input, *, timeout_ms: int = 0) -> Result:
        """Run the model on one input and return its postprocessed result.

        ``x`` is an array of the model's input dtype with its input shape (or
        the flat vector of as many elements), or bytes of exactly the input
        size.  Returns :class:`~pyflaxdev.results.TopK` for a chain ending in
        top-k, else a float32 vector.  ``timeout_ms`` 0 means the model's
        timeout; a longer one is capped to it by the module.
        """
        return self.decode(self.infer_bytes(self.check_input(x), timeout_ms=timeout_ms))

    def check_input(self, x: Input) -> npt.NDArray[Any] | bytes:
        """Validate ``x`` against the model's input spec; return it C-contiguous."""
        spec = self.info.input
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

    def infer_bytes(
        self,
        data: bytes | npt.NDArray[Any],
        *,
        timeout_ms: int = 0,
        output_size: int | None = None,
    ) -> bytes:
        """``FLAX_IOC_INFER`` with no checks: send ``data``, return the raw result bytes.

        ``output_size`` sets the result buffer (default: the model's
        ``result_size``), e.g. to provoke ``ENOSPC``.
        """
        size = self.info.result_size if output_size is None else output_size
        out = ffi.new("char[]", max(size, 1))
        src = ffi.from_buffer(data)
        req = ffi.new("struct flax_infer *")
        req.model_id = self.info.id
        req.input = uapi.pointer_value(src)
        req.input_size = len(src)
        req.output = uapi.pointer_value(out)
        req.output_size = size
        req.timeout_ms = timeout_ms
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
        if self.info.returns_topk:
            return decode_topk(raw, self.info.topk)
        return decode_vector(raw, self.info.output.size)

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
