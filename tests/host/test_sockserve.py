"""The baseline Unix-socket servers (``flaxdev sockserve``) against in-process references.

Each server runs in a background thread of this process on a temporary
socket; clients are :class:`SocketClient` threads (and raw sockets for the
framing cases).  Results are decoded with :mod:`pyflaxdev.results` and
compared with :meth:`ModelSpec.reference_result` (``jit(apply)`` at batch 1,
numpy softmax and top-k), which shares no code with the servers' batched
numpy postprocessing and encoder.  The CLI runs as a subprocess with the
``null`` model (no JAX, starts in well under a second).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from pyflaxdev import models
from pyflaxdev.commands.serve import READY_MARK
from pyflaxdev.errors import Busy, FlaxError, InvalidArgument
from pyflaxdev.pipeline import Pipeline
from pyflaxdev.results import decode_classes, decode_vector
from pyflaxdev.sockproto import MAX_FRAME, ProtocolError, StreamBuffer
from pyflaxdev.sockserve import BatchingServer, SocketClient, SocketServer

SCORE_TOL = 1e-6
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running(server: SocketServer) -> Iterator[SocketServer]:
    """``server.serve_forever()`` in a thread, ready on entry, shut down and joined on exit."""
    ready = threading.Event()
    errors: list[BaseException] = []

    def run():
        try:
            server.serve_forever(ready.set)
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(300), "server did not start"
    if errors:
        raise errors[0]
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(30)
        assert not thread.is_alive(), "server did not stop"
        if errors:
            raise errors[0]


def run_clients(path: str, payloads: list[bytes], clients: int) -> list[tuple[int, bytes]]:
    """Send every payload once from ``clients`` concurrent connections; results in order."""
    out: list[tuple[int, bytes] | None] = [None] * len(payloads)
    failures: list[BaseException] = []
    start = threading.Barrier(clients)

    def client(c: int) -> None:
        try:
            with SocketClient(path, timeout=60) as conn:
                start.wait()
                for i in range(c, len(payloads), clients):
                    out[i] = conn.infer(payloads[i])
        except BaseException as exc:
            failures.append(exc)
            start.abort()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    done = [r for r in out if r is not None]
    assert len(done) == len(payloads)
    return done


# -- digits: servers and references ---------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return models.get("digits")


@pytest.fixture(scope="module")
def heldout(digits):
    x, _ = digits.heldout()
    return x


@pytest.fixture(scope="module")
def references(digits, heldout):
    """spec.reference_result of every held-out image (one at a time)."""
    return [digits.reference_result(x) for x in heldout]


@pytest.fixture(scope="module")
def sock_dir(tmp_path_factory):
    # AF_UNIX paths are limited to 107 bytes: keep them short.
    return Path(tmp_path_factory.mktemp("sock"))


@pytest.fixture(scope="module")
def per_request(digits, sock_dir):
    with running(SocketServer(str(sock_dir / "per"), Pipeline(digits, (1,)))) as server:
        yield server


@pytest.fixture(scope="module")
def batching(digits, sock_dir):
    pipeline = Pipeline(digits, (1, 2, 4, 8, 16, 32, 64))
    server = BatchingServer(str(sock_dir / "batch"), pipeline, max_batch=64, delay_us=2000)
    with running(server) as s:
        yield s


@pytest.fixture(params=["per_request", "batching"])
def server(request):
    return request.getfixturevalue(request.param)


def check_results(digits, results, references):
    for i, ((status, payload), ref) in enumerate(zip(results, references, strict=True)):
        assert status == 0, i
        got = decode_classes(payload, digits.topk)
        assert np.array_equal(got.indices, ref.indices), (i, got, ref)
        np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=SCORE_TOL, err_msg=str(i))


def test_per_request_server_matches_reference(digits, heldout, references, per_request):
    before = per_request.stats.requests
    results = run_clients(per_request.path, [x.tobytes() for x in heldout], clients=6)
    check_results(digits, results, references)
    assert per_request.stats.requests - before == len(heldout)


def test_batching_server_batches_and_matches_reference(digits, heldout, references, batching):
    stats = batching.stats
    requests, batches = stats.requests, stats.batches
    results = run_clients(batching.path, [x.tobytes() for x in heldout], clients=16)
    check_results(digits, results, references)
    served = stats.requests - requests
    formed = stats.batches - batches
    assert served == len(heldout)
    assert formed < served, f"{served} requests in {formed} batches: no batching happened"
    assert stats.failed == 0


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x01" * 63, b"\x01" * 65, bytes(4096), bytes(200_000)],  # the last > the buffer
    ids=["empty", "short", "long", "4k", "200k"],
)
def test_wrong_size_is_einval_and_the_connection_stays(digits, heldout, references, server, bad):
    invalid = server.stats.invalid
    with SocketClient(server.path, timeout=30) as conn:
        assert conn.infer(bad) == (-errno.EINVAL, b"")
        check_results(digits, [conn.infer(heldout[0].tobytes())], references[:1])
        assert conn.infer(bad) == (-errno.EINVAL, b"")
    assert server.stats.invalid - invalid == 2


def test_pipelined_frames_answer_in_order(digits, heldout, references, server):
    """Several requests in one write (a valid one between invalid ones) get their
    responses in order."""
    frames = b""
    sent = [heldout[1].tobytes(), b"xy", heldout[2].tobytes(), heldout[3].tobytes()]
    for p in sent:
        frames += struct.pack("<I", len(p)) + p
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(server.path)
        s.sendall(frames)
        buf = StreamBuffer(s, 1 << 16)
        got = []
        for _ in sent:
            assert buf.fill(8)
            status, n = struct.unpack("<iI", buf.take(8))
            assert buf.fill(n)
            got.append((status, bytes(buf.take(n))))
    assert got[1] == (-errno.EINVAL, b"")
    for (status, payload), i in zip((got[0], got[2], got[3]), (1, 2, 3), strict=True):
        assert status == 0
        assert np.array_equal(decode_classes(payload, 3).indices, references[i].indices)


def test_oversized_frame_closes_only_that_connection(heldout, server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(server.path)
        s.sendall(struct.pack("<I", MAX_FRAME + 1))
        assert s.recv(16) == b""  # closed without a response
    with SocketClient(server.path, timeout=30) as conn:
        assert conn.infer(heldout[0].tobytes())[0] == 0


def test_frame_cut_short_closes_the_connection(heldout, per_request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(per_request.path)
        s.sendall(struct.pack("<I", 64) + b"\0" * 10)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(16) == b""
    with SocketClient(per_request.path, timeout=30) as conn:
        assert conn.infer(heldout[0].tobytes())[0] == 0


def test_shutdown_closes_clients_and_unlinks_the_socket(digits, sock_dir, heldout):
    path = sock_dir / "short-lived"
    server = SocketServer(str(path), Pipeline(digits, (1,)))
    with running(server):
        idle = SocketClient(str(path), timeout=30)
        assert idle.infer(heldout[0].tobytes())[0] == 0
        assert path.exists()
    assert not path.exists()
    with pytest.raises(FlaxError) as info:  # closed: EOF, or EPIPE on the send
        idle.infer(heldout[0].tobytes())
    assert info.value.errno in (errno.ECONNRESET, errno.EPIPE)
    idle.close()
    assert server.stats.connections == 1 and server.stats.requests == 1


def test_per_request_server_needs_batch_size_one(sock_dir):
    with pytest.raises(InvalidArgument, match="batch 1"):
        SocketServer(str(sock_dir / "x"), Pipeline(models.get("null"), (2, 4)))


# -- null: echo -------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [False, True], ids=["per-request", "batching"])
def test_null_echo_is_bit_exact(sock_dir, batch):
    spec = models.get("null")
    x, _ = spec.heldout()
    # Every bit pattern survives, NaNs (quiet and signalling) and infinities included.
    rng = np.random.default_rng(1)
    odd = rng.integers(0, 2**32, size=(8, 64), dtype=np.uint64).astype(np.uint32)
    odd[:, :4] = [0x7F800001, 0xFFC00000, 0x7F800000, 0x80000000]
    payloads = [v.tobytes() for v in x] + [v.tobytes() for v in odd]
    path = str(sock_dir / f"null-{batch}")
    if batch:
        server: SocketServer = BatchingServer(path, Pipeline(spec, (1, 2, 4, 8, 16)), max_batch=16)
    else:
        server = SocketServer(path, Pipeline(spec, (1,)))
    with running(server):
        results = run_clients(path, payloads, clients=8)
        with SocketClient(path) as conn:
            assert conn.infer(bytes(255)) == (-errno.EINVAL, b"")
    assert results == [(0, p) for p in payloads]
    assert server.stats.requests == len(payloads)
    assert server.stats.invalid == 1


# -- a text model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_spec():
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    from pyflaxdev.models import minilm

    try:
        minilm.model_dir()
    except InvalidArgument as exc:
        pytest.skip(str(exc))
    return minilm.spec(32)  # short: quick to compile


@pytest.mark.parametrize("batch", [False, True], ids=["per-request", "batching"])
def test_text_model_matches_reference(minilm_spec, sock_dir, batch):
    """minilm: UTF-8 in, the kernel's mean-pooled unit vector (384 float32) out."""
    from pyflaxdev.models import minilm

    spec = minilm_spec
    texts = [*minilm.SENTENCES, "", "a much longer text " * 20]  # empty, truncated
    path = str(sock_dir / f"text-{batch}")
    if batch:
        server: SocketServer = BatchingServer(
            path, Pipeline(spec, (1, 4), buckets=spec.buckets), max_batch=4, delay_us=5000
        )
    else:
        server = SocketServer(path, Pipeline(spec, (1,), buckets=spec.buckets))
    with running(server):
        results = run_clients(path, [t.encode() for t in texts], clients=4)
        with SocketClient(path, timeout=60) as conn:
            assert conn.infer(b"caf\xe9") == (-errno.EILSEQ, b"")  # Latin-1, not UTF-8
            assert conn.infer(b"x" * (spec.text_max + 1)) == (-errno.EINVAL, b"")
            status, payload = conn.infer(b"x" * spec.text_max)  # the longest text
            assert status == 0 and len(payload) == 384 * 4
    for text, (status, payload) in zip(texts, results, strict=True):
        assert status == 0, text
        got = decode_vector(payload, 384)
        np.testing.assert_allclose(got, spec.reference_result(text), rtol=0, atol=SCORE_TOL)
    assert server.stats.invalid == 2
    if batch:
        assert server.stats.batches < server.stats.requests


# -- stale and busy socket paths, the CLI --------------------------------------------------


def test_stale_socket_is_replaced_and_a_live_one_is_not(sock_dir):
    path = sock_dir / "stale"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    spec = models.get("null")
    with running(SocketServer(str(path), Pipeline(spec, (1,)))):
        with SocketClient(str(path)) as conn:
            assert conn.infer(bytes(256)) == (0, bytes(256))
        with pytest.raises(Busy, match="already listens"):
            SocketServer(str(path), Pipeline(spec, (1,))).serve_forever()
        assert path.exists()  # the failed second server left ours alone
    regular = sock_dir / "regular"
    regular.write_text("keep me")
    with pytest.raises(InvalidArgument, match="not a socket"):
        SocketServer(str(regular), Pipeline(spec, (1,))).serve_forever()
    assert regular.read_text() == "keep me"


def test_client_connect_error_is_a_flax_error(sock_dir):
    with pytest.raises(FlaxError, match="cannot connect") as info:
        SocketClient(str(sock_dir / "nobody"))
    assert info.value.errno == errno.ENOENT


@pytest.mark.parametrize("extra", [[], ["--batch", "--max-batch", "8", "--delay-us", "100"]])
def test_cli_serves_until_sigterm(sock_dir, extra):
    path = sock_dir / f"cli{len(extra)}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pyflaxdev", "sockserve", "null", "--socket", str(path), *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if READY_MARK in line or not line:
                break
        assert READY_MARK in lines[-1], "".join(lines)
        assert ("batching" if extra else "per-request") in lines[-1]
        with SocketClient(str(path), timeout=30) as conn:
            x = np.arange(64, dtype=np.float32).tobytes()
            assert conn.infer(x) == (0, x)
            assert conn.infer(b"") == (-errno.EINVAL, b"")
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(30) == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "served 1 requests in 1 batches (mean batch 1.00)" in rest
    assert "1 invalid" in rest
    assert not path.exists()


# -- framing -------------------------------------------------------------------------------


def test_stream_buffer_reads_frames_however_they_arrive():
    a, b = socket.socketpair()
    with a, b:
        sizes = [0, 1, 100, 70_000, 5, 64] + [61] * 2000  # more than a buffer's worth
        payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
        data = b"".join(struct.pack("<I", len(p)) + p for p in payloads)
        buf = StreamBuffer(b, 1 << 16)  # 64 KiB: the 70000-byte frame is dropped

        def send():
            for i in range(0, len(data), 997):  # odd chunks: frames straddle reads
                a.sendall(data[i : i + 997])
            a.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=send)
        t.start()
        got = []
        while (frame := buf.read_request()) is not None:
            n, view = frame
            got.append((n, None if view is None else bytes(view)))
        t.join()
    expect = [(len(p), None if len(p) > (1 << 16) else p) for p in payloads]
    assert got == expect


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00", "inside a request header"),
        (struct.pack("<I", 10) + b"abc", "inside a request"),
        (struct.pack("<I", MAX_FRAME + 1), "exceeds the limit"),
    ],
)
def test_stream_buffer_protocol_errors(data, match):
    a, b = socket.socketpair()
    with a, b:
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError, match=match) as info:
            StreamBuffer(b, 1 << 16).read_request()
    assert info.value.errno == errno.EPROTO
