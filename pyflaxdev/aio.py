"""``asyncio`` front end of asynchronous requests: :class:`AsyncClient`.

::

    async with pyflaxdev.aio.AsyncClient("digits") as client:
        results = await asyncio.gather(*(client.infer(x) for x in images))

An async client opens its own fd on the device in **non-blocking** mode
(``O_NONBLOCK``), so no call ever blocks the event loop: a SUBMIT at the
model's ``max_queue`` fails with ``EAGAIN`` instead of waiting, and the
client then awaits room (the next result reaped on its fd, or a short
back-off, since other fds' requests take room too) and submits the rest; the
wait counts towards the request's timeout, as a blocking SUBMIT's does.  One
reader callback (``loop.add_reader`` on the fd, readable while a result
waits) REAPs without waiting and resolves every awaiting request; requests
carry the client's own ``user_data``.  Cancelling a task that awaits a result
cancels only its future: the result is dropped when it comes.

The client binds to the running loop at its first request and must be used
(and closed) from that loop's thread.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from pyflaxdev.device import Device, model_path
from pyflaxdev.errors import Cancelled, FlaxError, check, error_for
from pyflaxdev.model import Input, Model
from pyflaxdev.results import Result
from pyflaxdev.submit import (
    DEFAULT_REAP_MAX,
    Payload,
    RawResult,
    check_priority,
    decode_result,
    reap_raw,
    request_error,
    submit_all,
)
from pyflaxdev.uapi import lib

__all__ = ["AsyncClient"]

# Back-off while waiting for room that no result of this fd will free.
_ROOM_MIN_S = 0.001
_ROOM_MAX_S = 0.05


@dataclass(frozen=True)
class _Pending:
    future: asyncio.Future[Result | str]
    text: bool
    timeout_ms: int


class AsyncClient:
    """Asynchronous requests to one model, for ``asyncio``.

    ``model`` and ``device`` as for :class:`pyflaxdev.client.Client`; a
    :class:`~pyflaxdev.Device` given is switched to ``O_NONBLOCK`` and
    reaped by this client only.  ``reap_max`` is the most results one REAP
    collects.  An async context manager (``aclose(wait=True)`` on a normal
    exit).
    """

    def __init__(
        self,
        model: Model | str,
        device: Device | str | os.PathLike[str] | None = None,
        *,
        reap_max: int = DEFAULT_REAP_MAX,
    ) -> None:
        if reap_max < 1:
            raise ValueError(f"reap_max must be at least 1, not {reap_max}")
        if isinstance(device, Device):
            self.device, self._owns_device = device, False
        else:
            if device is None:
                device = model.device.path if isinstance(model, Model) else model_path(model)
            self.device, self._owns_device = Device(device), True
        try:
            if isinstance(model, Model):
                self.model = Model(self.device, model.info)
            else:
                self.model = self.device.model(model)
            os.set_blocking(self.device.fileno(), False)
        except BaseException:
            if self._owns_device:
                self.device.close()
            raise
        self._fd = self.device.fileno()
        self._reap_max = reap_max
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._ntext = 0
        self._size = 1
        self._room: list[asyncio.Future[None]] = []
        self._closed = False
        self._broken: FlaxError | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd} pending={self.pending}"
        return f"<pyflaxdev.aio.AsyncClient {self.model.name!r} {state}>"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(wait=exc_type is None)

    @property
    def pending(self) -> int:
        """Requests submitted whose result has not been reaped yet (cancelled ones too)."""
        return len(self._pending)

    @property
    def closed(self) -> bool:
        """True once the client is closed."""
        return self._closed

    def fileno(self) -> int:
        """The client's (non-blocking) fd."""
        return self._fd

    # -- requests ------------------------------------------------------------

    async def infer(
        self, x: Input, *, timeout_ms: int = 0, text: bool = False, priority: int = 0
    ) -> Result | str:
        """Run the model on ``x``: what :meth:`Model.infer` returns (``infer_text`` with ``text``).

        Raises what :meth:`Model.infer` would raise for the same failure
        (:class:`~pyflaxdev.errors.Timeout` when the request or the wait for
        room outlasts ``timeout_ms``, 0: the model's timeout).  ``priority`` as
        for :meth:`Model.infer`.
        """
        (future,) = await self.submit_many([x], timeout_ms=timeout_ms, text=text, priority=priority)
        return await future

    async def infer_many(
        self, xs: Iterable[Input], *, timeout_ms: int = 0, text: bool = False, priority: int = 0
    ) -> list[Result | str]:
        """Run the model on every input (vector SUBMITs); the results in order.

        The first failure is raised (the other requests' results are dropped).
        """
        futures = await self.submit_many(xs, timeout_ms=timeout_ms, text=text, priority=priority)
        return list(await asyncio.gather(*futures))

    async def submit(
        self, x: Input, *, timeout_ms: int = 0, text: bool = False, priority: int = 0
    ) -> asyncio.Future[Result | str]:
        """Queue one request; returns, once it is queued, the future of its result."""
        (future,) = await self.submit_many([x], timeout_ms=timeout_ms, text=text, priority=priority)
        return future

    async def submit_many(
        self, xs: Iterable[Input], *, timeout_ms: int = 0, text: bool = False, priority: int = 0
    ) -> list[asyncio.Future[Result | str]]:
        """Queue one request per input, in vector SUBMITs; returns their futures once queued.

        A future's exception is the :class:`~pyflaxdev.errors.FlaxError` that
        :meth:`Model.infer` would raise: a bad input, a SUBMIT refused by the
        module, the request's failure, or :class:`~pyflaxdev.errors.Timeout`
        when no room came within the timeout.  Cancelling the call while it
        waits for room drops the inputs not queued yet.
        """
        check_priority(priority)
        loop = self._bind()
        items = list(xs)
        futures: list[asyncio.Future[Result | str]] = [loop.create_future() for _ in items]
        payloads: list[Payload] = []
        ids: list[int] = []
        for x, future in zip(items, futures, strict=True):
            try:
                payloads.append(self.model.check_input(x))
            except FlaxError as exc:
                future.set_exception(exc)
                continue
            ident = next(self._ids)
            ids.append(ident)
            self._pending[ident] = _Pending(future, text, timeout_ms)
            self._ntext += 1 if text else 0
        budget_ms = self.model._budget_ms(timeout_ms)
        deadline = time.monotonic() + budget_ms / 1000.0 if budget_ms else None
        done = 0
        delay = _ROOM_MIN_S
        try:
            while done < len(payloads):
                left_ms = timeout_ms
                if deadline is not None and done:
                    left_ms = max(1, int((deadline - time.monotonic()) * 1000.0))
                tickets, code = submit_all(
                    self._fd,
                    self.model.id,
                    payloads[done:],
                    chunk=max(1, self.model.info.nslots),
                    flags=lib.FLAX_INFER_TEXT if text else 0,
                    timeout_ms=left_ms,
                    priority=priority,
                    user_data=ids[done:],
                )
                done += len(tickets)
                if tickets:
                    delay = _ROOM_MIN_S
                if code == errno.EAGAIN:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        code = errno.ETIMEDOUT
                    else:
                        await self._wait_room(delay if left is None else min(delay, left))
                        delay = min(delay * 2, _ROOM_MAX_S)
                        continue
                if code:
                    self._fail(ids[done], self._submit_error(code, timeout_ms))
                    done += 1
        except BaseException:
            for ident in ids[done:]:
                pending = self._take(ident)
                if pending is not None:
                    pending.future.cancel()
            raise
        return futures

    def _bind(self) -> asyncio.AbstractEventLoop:
        if self._broken is not None:
            raise self._broken
        if self._closed:
            raise ValueError(f"request on a closed AsyncClient of {self.model.name!r}")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            loop.add_reader(self._fd, self._on_readable)
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("an AsyncClient is bound to the event loop of its first request")
        return loop

    async def _wait_room(self, delay: float) -> None:
        """Wait until a result is reaped on this fd (room), or ``delay`` seconds."""
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._room.append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=delay)
        finally:
            if waiter in self._room:
                self._room.remove(waiter)
            waiter.cancel()

    def _submit_error(self, code: int, timeout_ms: int) -> FlaxError:
        ctx = {
            "path": self.device.path,
            "model": self.model.name,
            "timeout_ms": self.model._budget_ms(timeout_ms) or "the model's timeout",
        }
        return error_for(code, "SUBMIT", ctx)

    def _take(self, ident: int) -> _Pending | None:
        pending = self._pending.pop(ident, None)
        if pending is not None and pending.text:
            self._ntext -= 1
        return pending

    def _fail(self, ident: int, exc: BaseException) -> None:
        pending = self._take(ident)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(exc)

    # -- the reader callback -------------------------------------------------

    def _on_readable(self) -> None:
        """REAP what is there (without waiting); resolve futures; wake room waiters."""
        try:
            reaped = self._drain()
        except BaseException as exc:
            broken = exc if isinstance(exc, FlaxError) else FlaxError(f"reader failed: {exc!r}")
            self._broken = broken
            self._close(broken)
            if not isinstance(exc, Exception):
                raise
            return
        if reaped:
            for waiter in self._room:
                if not waiter.done():
                    waiter.set_result(None)

    def _drain(self) -> int:
        total = 0
        while True:
            count = min(self._reap_max, max(1, len(self._pending)))
            info = self.model.info
            size = max(self._size, info.result_size, info.text_size if self._ntext else 0)
            result, raws = reap_raw(self._fd, count, size, 0)
            if result == -errno.EINTR:
                continue
            if result < 0:
                check(result, "REAP", {"path": self.device.path})
            for raw in raws:
                self._deliver(raw)
            total += len(raws)
            if len(raws) < count:
                return total

    def _deliver(self, raw: RawResult) -> None:
        self._size = max(self._size, len(raw.data))
        pending = self._take(raw.user_data)
        if pending is None or pending.future.done():
            return  # not this client's, or its task was cancelled: dropped
        if raw.status:
            err = request_error(
                raw.status, self.model, pending.timeout_ms, self.device.path, raw.worker_status
            )
            pending.future.set_exception(err)
            return
        try:
            value = decode_result(self.model, pending.text, raw.data)
        except FlaxError as exc:
            pending.future.set_exception(exc)
            return
        pending.future.set_result(value)

    # -- closing -------------------------------------------------------------

    async def aclose(self, *, wait: bool = False, timeout: float | None = None) -> None:
        """Close the client; with ``wait``, first let outstanding requests finish
        (up to ``timeout`` seconds).  See :meth:`close`."""
        if wait and not self._closed:
            futures = [p.future for p in self._pending.values() if not p.future.done()]
            if futures:
                await asyncio.wait(futures, timeout=timeout)
        self.close()

    def close(self) -> None:
        """Close the client: the reader is removed, every outstanding request's
        future fails with :class:`~pyflaxdev.errors.Cancelled` (``ECANCELED``),
        and the fd is closed (the module cancels its unreaped requests).
        Idempotent; call it from the loop's thread."""
        if not self._closed:
            name = self.model.name
            self._close(Cancelled(f"request on model {name!r} cancelled: client closed"))

    def _close(self, exc: FlaxError) -> None:
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        pending = list(self._pending.values())
        self._pending.clear()
        self._ntext = 0
        for p in pending:
            if not p.future.done():
                p.future.set_exception(exc)
                p.future.exception()  # retrieved: no "never retrieved" log for unawaited ones
        for waiter in self._room:
            waiter.cancel()
        if self._owns_device and not self.device.closed:
            self.device.close()
