"""The serving loop's hot path: one C call per FETCH and one per batch's completions.

:class:`FastLoop` wraps ``flax_wloop`` (``bindings/flax_wloop.c``, compiled into
``pyflaxdev._uapi``): FETCH with the pending completions, read and check the
ring entries, mark them consumed -- all in one call with the GIL released --
and expose the held jobs' slots as an ``intp`` numpy view (no copy).  A loop
may run the first jobs it holds and keep the rest for the next batch (see
:meth:`pyflaxdev.runner.BatchRunner.split`).
:class:`pyflaxdev.worker.Worker` stays the explicit, step-by-step layer; this
is what :func:`pyflaxdev.worker.serve` runs on, because per-batch Python work
is most of a small batch's round trip.
"""

from __future__ import annotations

import errno
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.errors import FlaxError, check
from pyflaxdev.region import Region
from pyflaxdev.uapi import ffi, lib

__all__ = ["FastLoop"]


class FastLoop:
    """The C state of a serving loop over an attached worker fd and its mapped region."""

    def __init__(self, fd: int, region: Region, context: dict[str, object]) -> None:
        layout = region.layout
        self._ctx = context
        self._buf: Any = ffi.from_buffer(region.buffer)
        self._c: Any = ffi.gc(
            lib.flax_wloop_new(
                fd,
                self._buf,
                layout.region_size,
                region.worker,
                layout.nslots,
                layout.ring_entries,
                layout.rings_offset,
                layout.ring_stride,
            ),
            lib.flax_wloop_free,
        )
        if self._c == ffi.NULL:
            raise FlaxError(f"cannot set up the worker loop of {context.get('model')!r}")
        self._done = ffi.new("uint32_t *")
        slots = ffi.buffer(lib.flax_wloop_slots(self._c), layout.nslots * 8)
        self.slots_all: npt.NDArray[np.intp] = np.frombuffer(slots, dtype=np.int64).view(np.intp)
        self._base = ffi.cast("char *", self._buf)
        self._in = (self._base + layout.in_offset, layout.in_slot_size, layout.in_bytes)
        self._out = (self._base + layout.out_offset, layout.out_slot_size)

    def fetch(self, max_jobs: int, max_wait_us: int, timeout_ms: int, *, nowait: bool) -> int:
        """FETCH: send the pending completions, take up to ``max_jobs`` more jobs.

        Returns how many came (0: none in ``timeout_ms``, or none queued with
        ``nowait``); they follow the jobs already held in :attr:`slots_all`.
        Returns -1 when interrupted by a signal (the completions are kept and
        sent again by the next call).  Raises the errno's :class:`FlaxError`
        otherwise, with the completions that failed dropped.
        """
        flags = lib.FLAX_FETCH_NOWAIT if nowait else 0
        n: int = lib.flax_wloop_fetch(self._c, max_jobs, max_wait_us, timeout_ms, flags, self._done)
        if n >= 0:
            return n
        if n == -errno.EINTR:
            return -1
        if n == -errno.EBADMSG:
            raise FlaxError(
                f"FETCH of model {self._ctx.get('model')!r}: the ring holds an impossible entry",
                errno.EBADMSG,
            )
        check(n, "FETCH", self._ctx)
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def done(self) -> int:
        """Completions the last FETCH applied."""
        return int(self._done[0])

    @property
    def held(self) -> int:
        """Jobs fetched and not completed; their slots are ``slots_all[:held]``, oldest first."""
        return int(lib.flax_wloop_held(self._c))

    @property
    def limit(self) -> int:
        """The largest batch to run: the last FETCH's ``max_batch`` (the model's setting)."""
        return int(lib.flax_wloop_limit(self._c))

    def complete(self, status: int, n: int) -> None:
        """Queue a completion with ``status`` (0 or a negative errno) for the first ``n`` held
        jobs; the ones after them move to the front."""
        lib.flax_wloop_complete(self._c, status, n)

    @property
    def pending(self) -> int:
        """Completions queued and not yet applied."""
        return int(lib.flax_wloop_pending(self._c))

    def flush(self) -> int:
        """``FLAX_IOC_COMPLETE`` of the pending completions; how many were applied."""
        n: int = lib.flax_wloop_flush(self._c)
        check(n, "COMPLETE", self._ctx)
        return n

    def copy_inputs_to_outputs(self, n: int) -> None:
        """The first ``n`` held jobs' input slot bytes into their output slots (identity)."""
        in_at, in_stride, nbytes = self._in
        out_at, out_stride = self._out
        lib.flax_wloop_copy(self._c, n, out_at, out_stride, in_at, in_stride, nbytes)

    def close(self) -> None:
        """Free the C state and let go of the region's buffer (so it can be unmapped)."""
        if getattr(self, "_c", None) is None:
            return
        c, self._c = self._c, None
        ffi.release(c)
        del self.slots_all, self._base, self._in, self._out
        ffi.release(self._buf)
        self._buf = None
