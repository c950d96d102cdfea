"""Asynchronous requests, the ioctl layer: ``FLAX_IOC_SUBMIT`` and ``FLAX_IOC_REAP``.

SUBMIT queues a vector of requests on an fd and returns their tickets at
once; REAP collects finished results into caller buffers, in the order they
finished; ``poll()`` reports the fd readable while a result waits.  Results
are per fd, and closing the fd cancels what it has not reaped.

This module holds the pieces the three front ends share:

- :func:`submit_once` and :func:`submit_all`: one SUBMIT, and a whole vector
  (split into calls of at most ``nslots`` entries, a short ``submitted``
  followed by a SUBMIT of the rest);
- :func:`reap_raw`: one REAP into buffers of one size, with the retry of an
  entry that reports ``-ENOSPC`` (its result stays on the fd) in a buffer of
  the size the module asks for;
- :func:`decode_result`: raw bytes to what :meth:`Model.infer` or
  :meth:`Model.infer_text` would return;
- :class:`RequestTable` and :func:`reap`: the ticket map behind
  :meth:`pyflaxdev.Model.submit` and :meth:`pyflaxdev.Device.reap`.

The front ends are :meth:`Model.submit` / :meth:`Device.reap` (explicit),
:class:`pyflaxdev.client.Client` (``concurrent.futures``) and
:class:`pyflaxdev.aio.AsyncClient` (``asyncio``).

Finished results hold their slots until reaped: on a blocking fd, a SUBMIT
beyond the model's ``max_queue`` waits for room, which reaping (or the
request's timeout) makes; a thread that submits more than ``max_queue``
requests without reaping in between waits until the timeout (``ETIMEDOUT``).
"""

from __future__ import annotations

import errno
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pyflaxdev import ioctls, uapi
from pyflaxdev.errors import FlaxError, InvalidArgument, check, error_for
from pyflaxdev.results import Result
from pyflaxdev.uapi import ffi, lib

if TYPE_CHECKING:
    from pyflaxdev.device import Device
    from pyflaxdev.model import Model

__all__ = [
    "DEFAULT_REAP_MAX",
    "Completion",
    "Payload",
    "RawResult",
    "RequestTable",
    "decode_result",
    "reap",
    "reap_raw",
    "request_error",
    "result_size",
    "submit_all",
    "submit_once",
    "user_data_list",
]

#: A checked input, as :meth:`Model.check_input` returns it.
Payload = bytes | npt.NDArray[Any]

#: Most results one :meth:`Device.reap` collects by default.
DEFAULT_REAP_MAX = 64

# Entry buffer when no request of known size is pending (foreign tickets).
_MIN_RESULT_SIZE = 256
# Re-REAPs of an entry that reported -ENOSPC (the size can grow meanwhile).
_ENOSPC_RETRIES = 3


@dataclass(frozen=True)
class RawResult:
    """One entry of a REAP, undecoded.

    ``status`` is 0 or the request's (positive) errno; ``data`` the result's
    bytes (empty for a failed request); ``worker_status`` the worker's own
    (positive) error code when the worker failed the request (``status``
    ``EIO``), else 0.
    """

    ticket: int
    user_data: int
    status: int
    data: bytes
    worker_status: int = 0


@dataclass(frozen=True, eq=False)
class Completion:
    """A finished request, as :meth:`pyflaxdev.Device.reap` returns it.

    ``ticket`` and ``user_data`` are the request's; ``status`` is 0 or the
    errno it failed with (positive: ``errno.ETIMEDOUT``, ...), as the module
    reported it.  ``result`` is the decoded result: :class:`~pyflaxdev.Classes`
    or a float32 vector, a ``str`` for a text request, the raw ``bytes`` for
    a ticket this fd's :class:`RequestTable` does not know (submitted with a
    raw ioctl), ``None`` when ``error`` is set.  ``error`` is the
    :class:`~pyflaxdev.errors.FlaxError` of a failed request (the class
    :meth:`Model.infer` raises for that errno), or of a result that could not
    be decoded (``status`` 0 then).  ``model`` and ``text`` are what the
    request was submitted with (``None``/``False`` for a foreign ticket).
    """

    ticket: int
    user_data: int
    status: int
    result: Result | str | bytes | None
    error: FlaxError | None = None
    model: Model | None = None
    text: bool = False

    @property
    def ok(self) -> bool:
        """True if the request succeeded and its result was decoded."""
        return self.error is None

    def value(self) -> Result | str | bytes:
        """The result; raises :attr:`error` for a failed request."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


# -- SUBMIT --------------------------------------------------------------------


def user_data_list(user_data: int | Sequence[int] | None, n: int) -> list[int]:
    """``n`` user_data values: 0s for None, ``n`` copies of an int, or the sequence's."""
    if user_data is None:
        return [0] * n
    if isinstance(user_data, int | np.integer):
        values = [int(user_data)] * n
    else:
        values = [int(v) for v in user_data]
        if len(values) != n:
            raise InvalidArgument(f"{len(values)} user_data values for {n} inputs")
    for v in values:
        if not 0 <= v < 1 << 64:
            raise InvalidArgument(f"user_data {v} is not a 64-bit unsigned value")
    return values


def check_priority(priority: int) -> int:
    """``priority`` if it is 0 to ``FLAX_PRIORITY_MAX``, else InvalidArgument saying so."""
    if not 0 <= priority <= lib.FLAX_PRIORITY_MAX:
        raise InvalidArgument(
            f"priority must be 0 (normal) to {lib.FLAX_PRIORITY_MAX} (first), got {priority}"
        )
    return priority


def submit_once(
    fd: int,
    model_id: int,
    payloads: Sequence[Payload],
    *,
    flags: int = 0,
    timeout_ms: int = 0,
    priority: int = 0,
    user_data: Sequence[int] | None = None,
) -> tuple[int, list[int]]:
    """One ``FLAX_IOC_SUBMIT`` of ``payloads`` (1 to the model's nslots).

    Returns ``(result, tickets)``: ``result`` is the number queued (the
    first ``len(tickets)`` entries) or ``-errno`` when nothing was; never
    raises for an errno and never retries.
    """
    n = len(payloads)
    data = list(user_data) if user_data is not None else [0] * n
    entries = ffi.new("struct flax_submit_entry[]", n)
    keep = []
    for i, payload in enumerate(payloads):
        src = ffi.from_buffer(payload)
        keep.append(src)
        entries[i].input = uapi.pointer_value(src)
        entries[i].input_size = len(src)
        entries[i].user_data = data[i]
        entries[i].timeout_ms = timeout_ms
    req = ffi.new("struct flax_submit *")
    req.model_id = model_id
    req.flags = flags
    req.entries = uapi.pointer_value(entries)
    req.count = n
    req.priority = priority
    result = uapi.ioctl(fd, ioctls.SUBMIT, req)
    del keep
    if result < 0:
        return result, []
    done = int(req.submitted)
    if not 0 < done <= n:
        raise FlaxError(f"SUBMIT succeeded with submitted={done} of {n} (module bug)")
    tickets = [int(entries[i].ticket) for i in range(done)]
    if 0 in tickets:
        raise FlaxError("SUBMIT returned ticket 0 (module bug)")
    return done, tickets


def submit_all(
    fd: int,
    model_id: int,
    payloads: Sequence[Payload],
    *,
    chunk: int,
    flags: int = 0,
    timeout_ms: int = 0,
    priority: int = 0,
    user_data: Sequence[int] | None = None,
) -> tuple[list[int], int]:
    """Submit every payload, ``chunk`` (the model's nslots) at most per SUBMIT.

    A short ``submitted`` is followed by a SUBMIT of the rest, ``EINTR`` (of
    a call that queued nothing) by the same call again.  Stops at the first
    call that fails: returns ``(tickets, code)``, the tickets of the first
    ``len(tickets)`` payloads and 0 when all were queued, else the errno
    that the payload at index ``len(tickets)`` failed with.
    """
    if chunk < 1:
        raise InvalidArgument(f"chunk must be at least 1, not {chunk}")
    data = list(user_data) if user_data is not None else [0] * len(payloads)
    tickets: list[int] = []
    while len(tickets) < len(payloads):
        first = len(tickets)
        last = first + chunk
        result, got = submit_once(
            fd,
            model_id,
            payloads[first:last],
            flags=flags,
            timeout_ms=timeout_ms,
            priority=priority,
            user_data=data[first:last],
        )
        if result == -errno.EINTR:
            continue
        if result < 0:
            return tickets, -result
        tickets += got
    return tickets, 0


# -- REAP ----------------------------------------------------------------------


def reap_raw(fd: int, count: int, size: int, timeout_ms: int = 0) -> tuple[int, list[RawResult]]:
    """One ``FLAX_IOC_REAP`` of up to ``count`` results into ``size``-byte buffers.

    Waits up to ``timeout_ms`` for a first result (0: not at all).  An entry
    that reports ``-ENOSPC`` (the result is larger than ``size``; the module
    ends the call there and keeps the result) is reaped again at once, alone,
    in a buffer of the size the module reports (up to 3 times, should it
    grow meanwhile; after that it stays for the next REAP).  Returns
    ``(result, results)``: ``result`` is the fd's pending count after the
    call (``struct flax_reap.pending``) or ``-errno`` when the first REAP
    failed (nothing was reaped); never raises for an errno.
    """
    count = max(1, count)
    size = max(1, size)
    out = ffi.new("char[]", count * size)
    base = uapi.pointer_value(out)
    entries = ffi.new("struct flax_reap_entry[]", count)
    for i in range(count):
        entries[i].output = base + i * size
        entries[i].output_size = size
    req = ffi.new("struct flax_reap *")
    req.entries = uapi.pointer_value(entries)
    req.count = count
    req.timeout_ms = timeout_ms
    result = uapi.ioctl(fd, ioctls.REAP, req)
    if result < 0:
        return result, []
    reaped = int(req.reaped)
    if reaped > count:
        raise FlaxError(f"REAP filled {reaped} of {count} entries (module bug)")
    pending = int(req.pending)
    results: list[RawResult] = []
    for i in range(reaped):
        e = entries[i]
        if int(e.status) == -errno.ENOSPC:
            more, extra = _reap_grown(fd, int(e.output_size), size)
            results += extra
            pending = pending if more is None else more
            break
        results.append(_raw(e, out + i * size, size))
    return pending, results


def _raw(entry: Any, buf: Any, size: int) -> RawResult:
    status = int(entry.status)
    length = int(entry.output_size) if status == 0 else 0
    if length > size:
        raise FlaxError(f"REAP wrote {length} bytes into a {size}-byte buffer (module bug)")
    data = bytes(ffi.buffer(buf, length))
    worker = -int(entry.worker_status)
    return RawResult(int(entry.ticket), int(entry.user_data), -status, data, worker)


def _reap_grown(fd: int, needed: int, had: int) -> tuple[int | None, list[RawResult]]:
    """REAP, alone, the result that did not fit in ``had`` bytes, into ``needed`` bytes.

    Returns the fd's pending count (None if no REAP succeeded) and the result.
    """
    pending: int | None = None
    for _ in range(_ENOSPC_RETRIES):
        if needed <= had:
            raise FlaxError(f"REAP asks for {needed} bytes for a result, had {had} (module bug)")
        out = ffi.new("char[]", needed)
        entry = ffi.new("struct flax_reap_entry *")
        entry.output = uapi.pointer_value(out)
        entry.output_size = needed
        req = ffi.new("struct flax_reap *")
        req.entries = uapi.pointer_value(entry)
        req.count = 1
        if uapi.ioctl(fd, ioctls.REAP, req) < 0:
            break  # it stays on the fd; the next REAP reports the error
        pending = int(req.pending)
        if not req.reaped:
            break
        if int(entry.status) != -errno.ENOSPC:
            return pending, [_raw(entry, out, needed)]
        had, needed = needed, int(entry.output_size)
    return pending, []


# -- decoding ------------------------------------------------------------------


def result_size(model: Model, text: bool) -> int:
    """Bytes of one result buffer for ``model``: its ``text_size`` or ``result_size``."""
    info = model.info
    return max(1, info.text_size if text else info.result_size)


def decode_result(model: Model, text: bool, data: bytes) -> Result | str:
    """Decode a request's raw result as :meth:`Model.infer` (or ``infer_text``) would.

    A binary result that does not fit the model's description (``topk``
    changed through sysfs) makes the description be read again, once.
    """
    if text:
        return data.decode("utf-8", "replace")
    try:
        return model.decode(data)
    except FlaxError:
        model.info = model.device.describe(model.name)
        return model.decode(data)


def request_error(
    code: int,
    model: Model | None,
    timeout_ms: int = 0,
    path: str | None = None,
    worker_status: int = 0,
) -> FlaxError:
    """The exception for a request that finished with errno ``code``.

    The class and message are those of ``FLAX_IOC_INFER`` failing with it
    (``ETIMEDOUT`` gives :class:`~pyflaxdev.errors.Timeout`, ...);
    ``worker_status`` is the worker's own code of a job it failed.
    """
    ctx: dict[str, object] = {"worker_status": worker_status}
    if path is not None:
        ctx["path"] = path
    if model is not None:
        ctx["model"] = model.name
        ctx["timeout_ms"] = model._budget_ms(timeout_ms) or "the model's timeout"
    return error_for(code, "INFER", ctx)


def _complete(raw: RawResult, model: Model, text: bool, timeout_ms: int) -> Completion:
    path = model.device.path
    if raw.status:
        err = request_error(raw.status, model, timeout_ms, path, raw.worker_status)
        return Completion(raw.ticket, raw.user_data, raw.status, None, err, model, text)
    try:
        value = decode_result(model, text, raw.data)
    except FlaxError as exc:
        return Completion(raw.ticket, raw.user_data, 0, None, exc, model, text)
    return Completion(raw.ticket, raw.user_data, 0, value, None, model, text)


def _foreign(raw: RawResult, path: str) -> Completion:
    err = request_error(raw.status, None, 0, path, raw.worker_status) if raw.status else None
    return Completion(raw.ticket, raw.user_data, raw.status, None if err else raw.data, err)


# -- the ticket map of Model.submit / Device.reap ------------------------------


@dataclass(frozen=True)
class _Request:
    model: Model
    text: bool
    timeout_ms: int


class RequestTable:
    """The requests :meth:`Model.submit` queued on one fd and REAP has not returned.

    Maps each ticket to ``(model, text, timeout_ms)`` so that a result, which
    REAP returns with only its ticket and user_data, is decoded with the
    right model's description (one fd may have requests of several models).
    Thread-safe.  A result reaped by one thread before the thread that
    submitted it has recorded its ticket is held back and handed to the next
    :meth:`Device.reap`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[int, _Request] = {}
        self._inflight = 0  # SUBMIT calls whose tickets are not recorded yet
        self._early: dict[int, RawResult] = {}  # reaped before being recorded
        self._ready: deque[Completion] = deque()
        self._size = _MIN_RESULT_SIZE

    def __len__(self) -> int:
        """Requests submitted through the table and not yet handed out by a reap."""
        with self._lock:
            return len(self._requests) + len(self._ready)

    def __contains__(self, ticket: object) -> bool:
        with self._lock:
            return ticket in self._requests

    def tickets(self) -> list[int]:
        """Tickets of the requests not yet reaped."""
        with self._lock:
            return sorted(self._requests)

    def buffer_size(self) -> int:
        """Bytes per REAP buffer: the largest result of any pending request (at least 256)."""
        with self._lock:
            return self._size

    def begin_submit(self) -> None:
        """A SUBMIT is about to be made: hold back unknown tickets until :meth:`end_submit`."""
        with self._lock:
            self._inflight += 1

    def end_submit(self, tickets: Sequence[int], model: Model, text: bool, timeout_ms: int) -> None:
        """Record the tickets of a SUBMIT (made after :meth:`begin_submit`)."""
        request = _Request(model, text, timeout_ms)
        size = result_size(model, text)
        early: list[RawResult] = []
        with self._lock:
            self._inflight -= 1
            self._size = max(self._size, size)
            for ticket in tickets:
                raw = self._early.pop(ticket, None)
                if raw is None:
                    self._requests[ticket] = request
                else:
                    early.append(raw)
            if not self._inflight:
                foreign, self._early = list(self._early.values()), {}
            else:
                foreign = []
        done = [_complete(raw, model, text, timeout_ms) for raw in early]
        done += [_foreign(raw, model.device.path) for raw in foreign]
        with self._lock:
            self._ready.extend(done)

    def take_ready(self, count: int) -> list[Completion]:
        """Up to ``count`` completions held back for the next reap."""
        with self._lock:
            n = min(count, len(self._ready))
            return [self._ready.popleft() for _ in range(n)]

    def complete(self, raw: RawResult, path: str) -> Completion | None:
        """The completion of a reaped result (None: held back, its SUBMIT is under way)."""
        with self._lock:
            request = self._requests.pop(raw.ticket, None)
            if request is None and self._inflight:
                self._early[raw.ticket] = raw
                return None
        if request is None:
            return _foreign(raw, path)
        return _complete(raw, request.model, request.text, request.timeout_ms)

    def grow(self, size: int) -> None:
        """Use buffers of at least ``size`` bytes from now on."""
        with self._lock:
            self._size = max(self._size, size)

    def pending_count(self) -> int:
        """Requests recorded and not yet reaped."""
        with self._lock:
            return len(self._requests)


def reap(device: Device, count: int = DEFAULT_REAP_MAX, timeout_ms: int = 0) -> list[Completion]:
    """``FLAX_IOC_REAP`` on ``device``: up to ``count`` finished requests, decoded.

    See :meth:`pyflaxdev.Device.reap`.  ``EINTR`` is retried with the time
    left (a Python signal handler runs first and may raise).
    """
    if count < 1:
        raise InvalidArgument(f"reap needs count >= 1, not {count}")
    if timeout_ms < 0:
        raise InvalidArgument(f"timeout_ms must be >= 0, not {timeout_ms}")
    table = device.requests
    out = table.take_ready(count)
    if len(out) == count:
        return out
    fd = device.fileno()
    deadline = time.monotonic() + timeout_ms / 1000.0
    wait_ms = 0 if out else timeout_ms
    while True:
        n = min(count - len(out), max(1, table.pending_count()))
        result, raws = reap_raw(fd, n, table.buffer_size(), wait_ms)
        if result == -errno.EINTR:
            if wait_ms:
                wait_ms = max(0, math.ceil((deadline - time.monotonic()) * 1000.0))
            continue
        if result < 0:
            check(result, "REAP", {"path": device.path})
        break
    for raw in raws:
        done = table.complete(raw, device.path)
        if done is not None:
            out.append(done)
        table.grow(len(raw.data))
    return out + table.take_ready(count - len(out))
