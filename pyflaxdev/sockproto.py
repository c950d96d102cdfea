"""Frames of the ``flaxdev sockserve`` protocol, and a blocking client.

The protocol is described in :mod:`pyflaxdev.sockserve`: a request is
``u32 length`` + payload, a response ``i32 status`` + ``u32 length`` +
payload, little-endian.  :class:`StreamBuffer` reads a stream socket with
``recv_into`` into one preallocated buffer (usually one ``recv`` per frame,
however the peer splits or batches its writes) and hands out views of it;
:class:`SocketClient` is the client used by the tests and by ``flaxdev
bench``'s Python load.  Nothing here imports JAX.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from pyflaxdev.errors import FlaxError, errno_name

__all__ = [
    "MAX_FRAME",
    "REQUEST_HEADER",
    "RESPONSE_HEADER",
    "ProtocolError",
    "SocketClient",
    "StreamBuffer",
    "send_frame",
]

#: ``u32 length`` before a request's payload.
REQUEST_HEADER = struct.Struct("<I")
#: ``i32 status`` (0 or a negative errno) and ``u32 length`` before a response's payload.
RESPONSE_HEADER = struct.Struct("<iI")
#: Longest payload accepted; a longer frame closes the connection.
MAX_FRAME = 16 << 20
#: Smallest receive buffer (several small frames fit in one ``recv``).
MIN_BUFFER = 64 << 10


class ProtocolError(FlaxError):
    """The peer broke the framing: closed inside a frame, or a frame over :data:`MAX_FRAME`."""

    default_errno = errno.EPROTO


class StreamBuffer:
    """Receives a stream socket into one buffer of at least ``capacity`` bytes.

    :meth:`take` returns a view of the buffer that stays valid until the next
    call of :meth:`take`, :meth:`fill` or :meth:`skip`.
    """

    def __init__(self, sock: socket.socket, capacity: int) -> None:
        self.sock = sock
        self._buf = bytearray(max(capacity, MIN_BUFFER))
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    @property
    def capacity(self) -> int:
        """Most bytes :meth:`take` can return at once."""
        return len(self._buf)

    @property
    def buffered(self) -> int:
        """Bytes received and not taken yet."""
        return self._end - self._start

    def fill(self, need: int) -> bool:
        """Receive until ``need`` bytes are buffered; False if the peer closed first."""
        if need > len(self._buf):
            raise ValueError(f"cannot buffer {need} bytes in {len(self._buf)}")
        if self._start == self._end:
            self._start = self._end = 0
        while self._end - self._start < need:
            if len(self._buf) - self._start < need:  # move the partial frame to the front
                have = self._end - self._start
                self._buf[:have] = self._buf[self._start : self._end]
                self._start, self._end = 0, have
            got = self.sock.recv_into(self._view[self._end :])
            if got == 0:
                return False
            self._end += got
        return True

    def reserve(self, capacity: int) -> None:
        """Grow the buffer to at least ``capacity`` bytes, keeping what is buffered."""
        if capacity <= len(self._buf):
            return
        pending = self._buf[self._start : self._end]
        self._buf = bytearray(capacity)
        self._buf[: len(pending)] = pending
        self._view = memoryview(self._buf)
        self._start, self._end = 0, len(pending)

    def take(self, n: int) -> memoryview:
        """The next ``n`` buffered bytes (call :meth:`fill` first)."""
        view = self._view[self._start : self._start + n]
        self._start += n
        return view

    def unpack(self, header: struct.Struct) -> tuple[Any, ...]:
        """Take and unpack a buffered header."""
        values = header.unpack_from(self._buf, self._start)
        self._start += header.size
        return values

    def skip(self, n: int) -> bool:
        """Receive and drop ``n`` bytes; False if the peer closed first."""
        while n:
            if self._start == self._end and not self.fill(1):
                return False
            step = min(n, self._end - self._start)
            self._start += step
            n -= step
        return True

    def read_request(self, limit: int = MAX_FRAME) -> tuple[int, memoryview | None] | None:
        """The next request frame: ``(length, payload)``, or None if the peer closed
        between frames.

        ``payload`` is None when it does not fit the buffer (it was received and
        dropped: the caller answers it as a wrong size).  Raises
        :class:`ProtocolError` for a frame over ``limit`` or one cut short.
        """
        if not self.fill(REQUEST_HEADER.size):
            if self.buffered:
                raise ProtocolError("connection closed inside a request header")
            return None
        (length,) = self.unpack(REQUEST_HEADER)
        if length > limit:
            raise ProtocolError(f"request of {length} bytes exceeds the limit of {limit}")
        if length > self.capacity:
            if not self.skip(length):
                raise ProtocolError("connection closed inside a request")
            return length, None
        if not self.fill(length):
            raise ProtocolError("connection closed inside a request")
        return length, self.take(length)


def send_frame(sock: socket.socket, parts: Sequence[Any]) -> None:
    """Send the buffers of ``parts`` in one ``sendmsg`` (the rest, if any, with ``sendall``)."""
    sent = sock.sendmsg(parts)
    total = sum(memoryview(p).nbytes for p in parts)
    if sent == total:
        return
    for p in parts:
        view = memoryview(p).cast("B")
        if sent >= view.nbytes:
            sent -= view.nbytes
            continue
        sock.sendall(view[sent:])
        sent = 0


class SocketClient:
    """A blocking client of a ``flaxdev sockserve`` server: one connection, one request
    at a time.

    ``with SocketClient(path) as c: status, payload = c.infer(x_bytes)``;
    ``status`` is 0 or a negative errno (``-EINVAL`` for an input of the wrong
    size); ``payload`` is what ``FLAX_IOC_INFER`` would return (decode it with
    :mod:`pyflaxdev.results`).  Connection failures raise :class:`FlaxError`.
    """

    def __init__(self, path: str, *, timeout: float | None = None) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            code = exc.errno or errno.EIO
            raise FlaxError(
                f"cannot connect to {path}: {exc.strerror or exc} ({errno_name(code)})",
                code,
                filename=path,
            ) from None
        self._buffer = StreamBuffer(self._sock, MIN_BUFFER)
        self._header = bytearray(REQUEST_HEADER.size)

    def __enter__(self) -> SocketClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def fileno(self) -> int:
        """The socket's fd."""
        return self._sock.fileno()

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def infer(self, payload: bytes | bytearray | memoryview) -> tuple[int, bytes]:
        """Send one request and wait for its response: ``(status, payload)``."""
        view = memoryview(payload).cast("B")
        REQUEST_HEADER.pack_into(self._header, 0, view.nbytes)
        try:
            send_frame(self._sock, (self._header, view))
            buf = self._buffer
            if not buf.fill(RESPONSE_HEADER.size):
                raise self._closed()
            status, length = buf.unpack(RESPONSE_HEADER)
            if length > MAX_FRAME:
                raise ProtocolError(f"response of {length} bytes from {self.path} is too long")
            buf.reserve(length)
            if not buf.fill(length):
                raise self._closed()
            return int(status), bytes(buf.take(length))
        except FlaxError:
            raise
        except OSError as exc:
            code = exc.errno or (errno.ETIMEDOUT if isinstance(exc, TimeoutError) else errno.EIO)
            raise FlaxError(
                f"request to {self.path} failed: {exc.strerror or exc} ({errno_name(code)})",
                code,
                filename=self.path,
            ) from None

    def _closed(self) -> FlaxError:
        return FlaxError(
            f"server at {self.path} closed the connection (ECONNRESET)",
            errno.ECONNRESET,
            filename=self.path,
        )
