"""``concurrent.futures`` front end of asynchronous requests: :class:`Client`.

::

    with pyflaxdev.Client("digits") as client:
        futures = [client.submit(x) for x in images]     # return at once
        results = [f.result() for f in futures]           # Classes, as Model.infer
        results = list(client.map(images))                # the same, in order

A client opens its own fd on the device (results are per fd) in blocking
mode: a submission waits for room while the model has ``max_queue`` requests
under way (backpressure), and finished results hold their slots until the
client's reaper thread collects them.  That thread waits in ``poll()`` on the
fd (and on a pipe that wakes it for :meth:`Client.close`), REAPs what is there
without waiting, and resolves the futures.  Requests carry the client's own
``user_data`` (a counter), so a result is matched to its future even when it
is reaped before the SUBMIT that queued it has returned.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import select
import signal
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import wait as wait_futures
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

__all__ = ["Client"]

# How often a closing reaper looks whether the last submissions have returned.
_STOP_POLL_MS = 20
_SYNC_SIGNALS = {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGABRT,
    signal.SIGTRAP,
}


@dataclass(frozen=True)
class _Pending:
    future: Future[Result | str]
    text: bool
    timeout_ms: int


def _settle(future: Future[Result | str], value: Result | str | BaseException) -> None:
    """Resolve ``future`` unless it is done already (cancelled by its owner)."""
    if future.done():
        return
    try:
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)
    except InvalidStateError:  # cancelled meanwhile
        pass


class Client:
    """Asynchronous requests to one model, as ``concurrent.futures.Future`` objects.

    ``model`` is a model name or a :class:`~pyflaxdev.Model` (only its name and
    description are used).  ``device`` is the node to open (a path; default
    the Model's device path, else the model's node ``/dev/flax/<name>``): the
    client opens its own fd and closes it in :meth:`close`.  An open
    :class:`~pyflaxdev.Device` may be given instead; the client then uses
    (and REAPs) its fd and does not close it: nothing else may reap on it.
    ``reap_max`` is the most results one REAP collects.

    Thread-safe: any thread may submit.  A context manager: leaving the
    ``with`` block calls :meth:`close`, with ``wait=True`` unless an
    exception is propagating.
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
        except BaseException:
            if self._owns_device:
                self.device.close()
            raise
        self._fd = self.device.fileno()
        self._reap_max = reap_max
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._ntext = 0
        self._inflight = 0  # submit calls under way
        self._size = 1  # largest result seen
        self._closing = False  # no new submissions
        self._stop = False  # the reaper ends once _inflight is 0
        self._broken: FlaxError | None = None
        self._close_called = False
        self._stop_from_reaper = False  # close() was called by a done-callback
        self._cleaned = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(
            target=self._run, name=f"pyflaxdev-reaper-{self.model.name}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closing else f"fd={self._fd} pending={self.pending}"
        return f"<pyflaxdev.Client {self.model.name!r} {state}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(wait=exc_type is None)

    @property
    def pending(self) -> int:
        """Requests submitted whose future is not resolved by the reaper yet."""
        with self._lock:
            return len(self._pending)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closing

    def fileno(self) -> int:
        """The client's fd."""
        return self._fd

    # -- submitting ----------------------------------------------------------

    def submit(
        self, x: Input, *, timeout_ms: int = 0, text: bool = False, priority: int = 0
    ) -> Future[Result | str]:
        """Queue one request (``FLAX_IOC_SUBMIT``) and return its future at once.

        The future's result is what :meth:`Model.infer` returns (or
        :meth:`Model.infer_text` with ``text``); its exception is the
        :class:`~pyflaxdev.errors.FlaxError` that ``infer`` would raise:
        a bad input (:class:`~pyflaxdev.errors.InvalidArgument`), a SUBMIT
        refused by the module, or the request's own failure (``ETIMEDOUT``:
        :class:`~pyflaxdev.errors.Timeout`, ...).  ``timeout_ms`` (0: the
        model's) runs from the submission; ``priority`` as for
        :meth:`Model.infer`.  Blocks while the model has
        ``max_queue`` requests under way.  Cancelling the future drops the
        result when it comes.  Raises ``ValueError`` if the client is closed.
        """
        return self.submit_many([x], timeout_ms=timeout_ms, text=text, priority=priority)[0]

    def submit_many(
        self, xs: Iterable[Input], *, timeout_ms: int = 0, text: bool = False, priority: int = 0
    ) -> list[Future[Result | str]]:
        """Queue one request per input, in vector SUBMITs of at most ``nslots`` entries.

        Returns one future per input, in order, as :meth:`submit` does.
        """
        items = list(xs)
        check_priority(priority)
        futures: list[Future[Result | str]] = [Future() for _ in items]
        payloads: list[Payload] = []
        owners: list[Future[Result | str]] = []
        for x, future in zip(items, futures, strict=True):
            try:
                payloads.append(self.model.check_input(x))
                owners.append(future)
            except FlaxError as exc:
                future.set_exception(exc)
        with self._lock:
            self._check_open()
            ids = [next(self._ids) for _ in payloads]
            for ident, future in zip(ids, owners, strict=True):
                self._pending[ident] = _Pending(future, text, timeout_ms)
            self._ntext += len(ids) if text else 0
            self._inflight += 1
        done = 0  # payloads queued or failed
        try:
            while done < len(payloads):
                tickets, code = submit_all(
                    self._fd,
                    self.model.id,
                    payloads[done:],
                    chunk=max(1, self.model.info.nslots),
                    flags=lib.FLAX_INFER_TEXT if text else 0,
                    timeout_ms=timeout_ms,
                    priority=priority,
                    user_data=ids[done:],
                )
                done += len(tickets)
                if code:
                    self._fail(ids[done], self._submit_error(code, timeout_ms))
                    done += 1
        except BaseException as exc:
            # Interrupted (KeyboardInterrupt) or a module bug: what was queued
            # is unknown, so the rest is failed and dropped when it comes.
            cause = exc if isinstance(exc, FlaxError) else Cancelled("submission interrupted")
            for ident in ids[done:]:
                self._fail(ident, cause)
            raise
        finally:
            with self._lock:
                self._inflight -= 1
                self._changed.notify_all()
        return futures

    def map(
        self,
        xs: Iterable[Input],
        *,
        timeout: float | None = None,
        timeout_ms: int = 0,
        text: bool = False,
    ) -> Iterator[Result | str]:
        """Submit every input at once (:meth:`submit_many`); yield the results in order.

        As ``Executor.map``: a failed request raises its exception when its
        result is reached; ``timeout`` (seconds, for each result) raises
        ``TimeoutError``.
        """
        futures = self.submit_many(xs, timeout_ms=timeout_ms, text=text)

        def results() -> Iterator[Result | str]:
            for future in futures:
                yield future.result(timeout)

        return results()

    def _check_open(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._closing:
            raise ValueError(f"submit on a closed pyflaxdev.Client of {self.model.name!r}")

    def _submit_error(self, code: int, timeout_ms: int) -> FlaxError:
        ctx = {
            "path": self.device.path,
            "model": self.model.name,
            "timeout_ms": self.model._budget_ms(timeout_ms) or "the model's timeout",
        }
        return error_for(code, "SUBMIT", ctx)

    def _take(self, ident: int) -> _Pending | None:
        with self._lock:
            pending = self._pending.pop(ident, None)
            if pending is not None and pending.text:
                self._ntext -= 1
            return pending

    def _fail(self, ident: int, exc: BaseException) -> None:
        pending = self._take(ident)
        if pending is not None:
            _settle(pending.future, exc)

    # -- the reaper thread ---------------------------------------------------

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals()) - _SYNC_SIGNALS)
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while True:
                with self._lock:
                    stopping = self._stop
                    if stopping and not self._inflight:
                        break
                events = poller.poll(_STOP_POLL_MS if stopping else None)
                for fd, mask in events:
                    if fd == self._wake_r:
                        os.read(self._wake_r, 4096)
                    elif mask & select.POLLNVAL:
                        raise FlaxError("the client's fd was closed under it", errno.EBADF)
                    elif mask & select.POLLIN:
                        self._drain()
                    else:
                        self._drain()  # POLLERR/POLLHUP: REAP reports what is wrong
                        raise FlaxError(
                            f"poll() reports an error condition on {self.device.path}", errno.EIO
                        )
        except BaseException as exc:
            broken = exc if isinstance(exc, FlaxError) else FlaxError(f"reaper failed: {exc!r}")
            with self._lock:
                self._broken = broken
                self._closing = True
            self._fail_all(broken)
        if self._stop_from_reaper:
            self._cleanup()

    def _drain(self) -> None:
        """REAP (without waiting) until nothing is left, resolving futures."""
        while True:
            with self._lock:
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
            if len(raws) < count:
                return

    def _deliver(self, raw: RawResult) -> None:
        with self._lock:
            self._size = max(self._size, len(raw.data))
        pending = self._take(raw.user_data)
        if pending is None or pending.future.done():
            return  # not this client's, failed at submission, or cancelled
        value: Result | str | BaseException
        if raw.status:
            value = request_error(
                raw.status, self.model, pending.timeout_ms, self.device.path, raw.worker_status
            )
        else:
            try:
                value = decode_result(self.model, pending.text, raw.data)
            except FlaxError as exc:
                value = exc
        _settle(pending.future, value)

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
            self._ntext = 0
        for p in pending:
            _settle(p.future, exc)

    # -- closing -------------------------------------------------------------

    def close(self, *, wait: bool = False, timeout: float | None = None) -> None:
        """Stop the client: no new submissions, the reaper thread ends, the fd is closed.

        With ``wait``, first waits (up to ``timeout`` seconds, None: no limit)
        for the outstanding futures: every request ends by its timeout.
        Then waits for submissions under way in other threads to return
        (they may be waiting for room; the reaper keeps reaping meanwhile),
        stops the reaper and fails every future still outstanding with
        :class:`~pyflaxdev.errors.Cancelled` (``ECANCELED``); closing the fd
        cancels those requests in the module.  Idempotent; safe to call from
        a future's done-callback (the reaper thread), where it does not wait.
        """
        on_reaper = threading.current_thread() is self._thread
        with self._lock:
            if self._cleaned:
                return
            first = not self._close_called
            self._close_called = self._closing = True
            outstanding = [p.future for p in self._pending.values()]
        if first and wait and not on_reaper:
            wait_futures(outstanding, timeout)
        with self._lock:
            self._stop = True
            self._wake()
        if on_reaper:
            self._stop_from_reaper = True
            return
        self._thread.join()
        self._cleanup()

    def _wake(self) -> None:
        """Wake the reaper (called with the lock held, before :meth:`_cleanup`)."""
        with contextlib.suppress(BlockingIOError):  # full: it is awake anyway
            os.write(self._wake_w, b"\0")

    def _cleanup(self) -> None:
        with self._lock:
            if self._cleaned:
                return
            self._cleaned = True
            os.close(self._wake_r)
            os.close(self._wake_w)
        self._fail_all(Cancelled(f"request on model {self.model.name!r} cancelled: client closed"))
        if self._owns_device:
            self.device.close()
