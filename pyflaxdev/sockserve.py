"""Baseline Unix-socket servers: the device path of a zoo model, without the device.

``flaxdev bench`` compares ``/dev/flax`` with what a user would write instead:
a plain Unix-socket server that runs each request on its own
(:class:`SocketServer`) and the same server with its own batching
(:class:`BatchingServer`, the strongest user-space alternative).  Both do
exactly what the device path does (:class:`~pyflaxdev.pipeline.Pipeline`: the
kernel's preprocessing, ``jit(apply)`` in-process, the kernel's
postprocessing in numpy) and answer in ``FLAX_IOC_INFER``'s binary format, so
clients and results are the same as with the device.

Protocol
--------
A stream socket (``AF_UNIX``, ``SOCK_STREAM``); every integer little-endian.
A client sends request frames and reads one response frame per request, in
order; a connection serves one request at a time (open one connection per
client thread).

- request: ``u32 length`` + ``length`` bytes of payload, the input exactly as a
  device client sends it: the model's input dtype and shape (``digits``: 64
  uint8; ``null``: 64 float32), or up to ``text_max`` bytes of UTF-8 for a
  text model;
- response: ``i32 status`` (0 or a negative errno) + ``u32 length`` +
  ``length`` bytes of payload: the result as ``FLAX_IOC_INFER`` returns it (a
  ``struct flax_topk_result`` for a chain ending in ``topk``: ``u32 count``,
  ``u32 reserved`` (0), then ``count`` times ``{u32 index, f32 score}``; else
  float32 values), empty when the status is not 0.

A request of the wrong size gets ``-EINVAL`` (text that is not UTF-8:
``-EILSEQ``) and the connection stays usable; a model that fails gives
``-EIO``.  A request frame longer than :data:`~pyflaxdev.sockproto.MAX_FRAME`
(16 MiB), or one cut short, closes the connection.

Modes
-----
:class:`SocketServer` runs a thread per connection; each request runs
``jit(apply)`` at batch 1 in its connection's thread (compiled before the
server accepts).  :class:`BatchingServer`'s connection threads hand their
requests to one batcher thread that forms batches the way Triton's dynamic
batcher does: up to ``max_batch`` requests, waiting at most ``delay_us`` after
the first one of the batch; the batch is padded to the smallest compiled size
that holds it, run once, postprocessed at once, and each result handed back to
its connection thread.  Both count requests and batches
(:class:`ServerStats`).

Serving: :meth:`SocketServer.serve_forever` compiles, removes a stale socket
file, listens, calls ``ready()``, accepts until :meth:`SocketServer.shutdown`
(callable from any thread or a signal handler), then closes every connection,
waits for its threads and unlinks the socket.  The client is
:class:`pyflaxdev.sockproto.SocketClient`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.errors import Busy, FlaxError, InvalidArgument, errno_name
from pyflaxdev.pipeline import Pipeline
from pyflaxdev.sockproto import (
    MAX_FRAME,
    REQUEST_HEADER,
    RESPONSE_HEADER,
    ProtocolError,
    SocketClient,
    StreamBuffer,
    send_frame,
)
from pyflaxdev.worker import block_async_signals

__all__ = [
    "DEFAULT_DELAY_US",
    "DEFAULT_MAX_BATCH",
    "BatchingServer",
    "ServerStats",
    "SocketClient",
    "SocketServer",
]

log = logging.getLogger("pyflaxdev.sockserve")

DEFAULT_MAX_BATCH = 64
DEFAULT_DELAY_US = 500
#: Pending connections the listening socket queues (clients connecting at once).
BACKLOG = 1024
#: How long :meth:`SocketServer.serve_forever` waits for connection threads at the end.
JOIN_TIMEOUT = 10.0

_EMPTY: npt.NDArray[np.uint8] = np.empty(0, dtype=np.uint8)
# accept() failures that pass (out of fds or memory for now, a client gone already).
_ACCEPT_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED}


@dataclass
class ServerStats:
    """Counters of a socket server (updated under the server's lock)."""

    connections: int = 0
    #: Requests run by the model (including failed ones).
    requests: int = 0
    batches: int = 0
    #: Requests answered with an error status without running (wrong size, bad UTF-8).
    invalid: int = 0
    #: Requests the model failed (``-EIO``).
    failed: int = 0

    @property
    def mean_batch(self) -> float:
        """Requests per batch (0 before the first batch)."""
        return self.requests / self.batches if self.batches else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (for JSON)."""
        return {
            "connections": self.connections,
            "requests": self.requests,
            "batches": self.batches,
            "mean_batch": self.mean_batch,
            "invalid": self.invalid,
            "failed": self.failed,
        }

    def summary(self) -> str:
        """One line: requests, batches, mean batch size, invalid and failed requests."""
        return (
            f"served {self.requests} requests in {self.batches} batches (mean batch"
            f" {self.mean_batch:.2f}) on {self.connections} connections, {self.invalid}"
            f" invalid, {self.failed} failed"
        )


class SocketServer:
    """The per-request server: a thread per connection, each request run at batch 1.

    ``pipeline`` must have batch size 1 compiled (``Pipeline(spec, (1,))``).
    """

    mode = "per-request"

    def __init__(self, path: str, pipeline: Pipeline, *, max_frame: int = MAX_FRAME) -> None:
        self.path = path
        self.pipeline = pipeline
        self.max_frame = max_frame
        self.stats = ServerStats()
        self._lock = threading.Lock()  # protects stats and _conns
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._listener: socket.socket | None = None
        self._closing = threading.Event()
        self._failure_logged = False
        self._check_sizes()

    def _check_sizes(self) -> None:
        if 1 not in self.pipeline.sizes:
            raise InvalidArgument(
                f"the per-request server runs at batch 1; compiled sizes are"
                f" {list(self.pipeline.sizes)}"
            )

    # -- lifecycle ---------------------------------------------------------------

    def serve_forever(self, ready: Callable[[], object] | None = None) -> ServerStats:
        """Compile, listen, call ``ready()``, serve until :meth:`shutdown`, clean up.

        Returns the counters.  Raises :class:`~pyflaxdev.errors.Busy` if another
        server listens on the path.
        """
        self.pipeline.warmup()
        listener = _listen(self.path)
        ino = Path(self.path).stat().st_ino
        self._listener = listener
        try:
            self._start()
            if self._closing.is_set():  # shutdown() before the listener existed
                return self.stats
            if ready is not None:
                ready()
            self._accept_loop(listener)
        finally:
            listener.close()
            self._close_connections()
            self._stop()
            _unlink_if(self.path, ino)
        return self.stats

    def shutdown(self) -> None:
        """Stop accepting; :meth:`serve_forever` then closes everything and returns.

        Safe from any thread and from a signal handler.
        """
        self._closing.set()
        listener = self._listener
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept() with EINVAL

    def _start(self) -> None:
        """Start the mode's own threads (none here)."""

    def _stop(self) -> None:
        """Stop the mode's own threads, after every connection thread ended."""

    def _accept_loop(self, listener: socket.socket) -> None:
        count = 0
        while not self._closing.is_set():
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                if self._closing.is_set():
                    return
                if exc.errno not in _ACCEPT_TRANSIENT:
                    raise
                log.warning("accept failed (%s); retrying", errno_name(exc.errno or 0))
                time.sleep(0.05)
                continue
            count += 1
            thread = threading.Thread(
                target=self._serve_connection,
                args=(conn,),
                name=f"flaxdev-sock-{count}",
                daemon=True,
            )
            with self._lock:
                if self._closing.is_set():
                    conn.close()
                    return
                self._conns[conn] = thread
                self.stats.connections += 1
            thread.start()

    def _close_connections(self) -> None:
        with self._lock:
            conns = dict(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes recv() and send()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in conns.values():
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- connections ---------------------------------------------------------------

    def _serve_connection(self, conn: socket.socket) -> None:
        block_async_signals()
        buf = StreamBuffer(conn, REQUEST_HEADER.size + self.pipeline.max_request)
        header = bytearray(RESPONSE_HEADER.size)
        ctx = self._connection_context()
        try:
            while True:
                frame = buf.read_request(self.max_frame)
                if frame is None:
                    return
                _, payload = frame
                status = -errno.EINVAL if payload is None else self.pipeline.check(payload)
                result = _EMPTY
                if status:
                    with self._lock:
                        self.stats.invalid += 1
                else:
                    assert payload is not None
                    status, result = self._execute(payload, ctx)
                RESPONSE_HEADER.pack_into(header, 0, status, result.nbytes)
                send_frame(conn, (header, result))
        except ProtocolError as exc:
            log.debug("closing a connection: %s", exc)
        except OSError as exc:  # reset by the peer, or shut down by close
            log.debug("connection ended: %s", exc)
        finally:
            with self._lock:
                self._conns.pop(conn, None)
            conn.close()

    def _connection_context(self) -> Any:
        """Per-connection state the mode needs (none here)."""
        return None

    def _execute(self, payload: memoryview, ctx: Any) -> tuple[int, npt.NDArray[np.uint8]]:
        """Run one checked request: ``(status, result bytes)``."""
        status, result = 0, _EMPTY
        try:
            result = self.pipeline.infer(payload)
        except Exception:
            status = -errno.EIO
            self._log_failure(1)
        with self._lock:
            self.stats.requests += 1
            self.stats.batches += 1
            self.stats.failed += status != 0
        return status, result

    def _log_failure(self, n: int) -> None:
        """Log the first failure with its traceback, later ones not at all (see stats)."""
        if not self._failure_logged:
            self._failure_logged = True
            log.exception("model failed a batch of %d; answering -EIO (logged once)", n)


class _Request:
    """One request on its way through the batcher; reused by its connection."""

    __slots__ = ("done", "payload", "result", "status")

    def __init__(self) -> None:
        # A plain lock as a one-shot signal: held while the request waits, released
        # by the batcher (cheaper than an Event's condition variable).
        self.done = threading.Lock()
        self.done.acquire()
        self.payload: memoryview = memoryview(b"")
        self.status = 0
        self.result: npt.NDArray[np.uint8] = _EMPTY


class BatchingServer(SocketServer):
    """The batching server: connection threads queue requests for one batcher thread.

    A batch takes up to ``max_batch`` requests (at most the largest compiled
    size), waiting at most ``delay_us`` after its first request.
    """

    mode = "batching"

    def __init__(
        self,
        path: str,
        pipeline: Pipeline,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        delay_us: int = DEFAULT_DELAY_US,
        max_frame: int = MAX_FRAME,
    ) -> None:
        if max_batch < 1:
            raise InvalidArgument(f"max_batch must be at least 1, got {max_batch}")
        if delay_us < 0:
            raise InvalidArgument(f"delay_us must be 0 or more, got {delay_us}")
        self.max_batch = min(max_batch, pipeline.max_batch)
        self.delay_us = delay_us
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._batcher: threading.Thread | None = None
        super().__init__(path, pipeline, max_frame=max_frame)

    def _check_sizes(self) -> None:
        """Any compiled sizes do: a batch is padded to the smallest that holds it."""

    def _start(self) -> None:
        self._batcher = threading.Thread(
            target=self._batch_loop, name="flaxdev-sock-batcher", daemon=True
        )
        self._batcher.start()

    def _stop(self) -> None:
        if self._batcher is not None:
            self._queue.put(None)
            self._batcher.join()
            self._batcher = None

    def _connection_context(self) -> _Request:
        return _Request()

    def _execute(self, payload: memoryview, ctx: Any) -> tuple[int, npt.NDArray[np.uint8]]:
        request: _Request = ctx
        request.payload = payload
        self._queue.put(request)
        request.done.acquire()  # released by the batcher when the result is in
        return request.status, request.result

    def _batch_loop(self) -> None:
        block_async_signals()
        get, get_nowait = self._queue.get, self._queue.get_nowait
        delay = self.delay_us / 1e6
        while True:
            first = get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + delay
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    item = get_nowait()
                except queue.Empty:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        break
                    try:
                        item = get(timeout=wait)
                    except queue.Empty:
                        break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._run_batch(batch)
            if stopping:
                return

    def _run_batch(self, batch: Sequence[_Request]) -> None:
        n = len(batch)
        try:
            results = self.pipeline.infer_batch([r.payload for r in batch])
            for r, row in zip(batch, results, strict=True):
                r.status, r.result = 0, row
        except Exception:
            self._log_failure(n)
            for r in batch:
                r.status, r.result = -errno.EIO, _EMPTY
        with self._lock:
            self.stats.requests += n
            self.stats.batches += 1
            self.stats.failed += n if batch[0].status else 0
        for r in batch:
            r.done.release()


def _listen(path: str) -> socket.socket:
    """A listening socket at ``path``, after removing a stale socket file there."""
    try:
        mode = Path(path).lstat().st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise InvalidArgument(f"{path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:  # ECONNREFUSED: nobody listens, the file is stale
            Path(path).unlink()
        else:
            raise Busy(f"a server already listens on {path} (EADDRINUSE)", errno.EADDRINUSE)
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        code = exc.errno or errno.EIO
        raise FlaxError(
            f"cannot listen on {path}: {exc.strerror or exc} ({errno_name(code)})",
            code,
            filename=path,
        ) from None
    return sock


def _unlink_if(path: str, ino: int) -> None:
    """Remove ``path`` if it is still the socket we bound (inode ``ino``)."""
    with contextlib.suppress(FileNotFoundError):
        if Path(path).lstat().st_ino == ino:
            Path(path).unlink()
