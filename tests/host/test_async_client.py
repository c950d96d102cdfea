"""Asynchronous requests (SUBMIT, REAP, poll) against a fake kernel, without the device.

``FakeKernel`` replaces ``pyflaxdev.uapi.ioctl`` and implements MODEL_GET,
LABELS_GET, SUBMIT and REAP as the UAPI header (and flax_job.c) specify them,
strictly: a wrong request number (struct size), a wrong struct type, a
non-zero reserved field or flag, a count out of range, an input of the wrong
size or a bad pointer fails as the module would fail it.  The "device" is a
FIFO opened read-write, so its fd is pollable: the fake keeps one byte in it
while a result waits (readable, like EPOLLIN of the real fd).  Results are
finished by the test (``finish``), in any order, or at once (``auto``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import ioctls, uapi
from pyflaxdev.aio import AsyncClient
from pyflaxdev.client import Client
from pyflaxdev.errors import (
    Busy,
    Cancelled,
    FlaxError,
    InvalidArgument,
    ModelGone,
    Timeout,
    WorkerFailed,
)
from pyflaxdev.spec import MAX_WAIT_US
from pyflaxdev.submit import RequestTable, reap_raw, submit_once
from pyflaxdev.uapi import ffi, lib

# -- the fake kernel -------------------------------------------------------------


@dataclass
class FakeModel:
    id: int
    name: str
    in_dtype: int
    in_dims: tuple[int, ...]
    out_dims: tuple[int, ...]
    post: tuple[int, ...]
    topk: int = 0
    nslots: int = 4
    max_queue: int = 0
    timeout_ms: int = 1000
    text_size: int = 64

    @property
    def in_size(self) -> int:
        n = int(np.prod(self.in_dims))
        return n * (4 if self.in_dtype == lib.FLAX_DTYPE_FLOAT32 else 1)

    @property
    def result_size(self) -> int:
        if self.topk:
            return 8 + 8 * self.topk
        return 4 * int(np.prod(self.out_dims))

    def compute(self, data: bytes, text: bool) -> bytes:
        """A deterministic result: classes from the input bytes, or a vector."""
        if self.topk:
            idx = [data[i % len(data)] % 10 for i in range(self.topk)]
            scores = [1.0 / (i + 2) for i in range(self.topk)]
            if text:
                return "".join(f"{i}\t{s:.6g}\n" for i, s in zip(idx, scores, strict=True)).encode()
            out = struct.pack("=II", self.topk, 0)
            for i, s in zip(idx, scores, strict=True):
                out += struct.pack("=If", i, s)
            return out
        x = np.frombuffer(data, dtype=np.float32)
        vec = np.array([x[0], x[1], x[0] + x[1]], dtype=np.float32)
        if text:
            return (" ".join(f"{v:.6g}" for v in vec) + "\n").encode()
        return vec.tobytes()


@dataclass
class Req:
    fd: int
    ticket: int
    user_data: int
    model: FakeModel
    text: bool
    data: bytes
    timeout_ms: int
    status: int | None = None  # None: under way
    result: bytes = b""


@dataclass
class FakeKernel:
    models: dict[int, FakeModel]
    auto: bool = False
    lock: threading.Condition = field(default_factory=threading.Condition)
    reqs: dict[int, Req] = field(default_factory=dict)  # unreaped, every fd
    done: dict[int, list[int]] = field(default_factory=dict)  # fd -> tickets, finishing order
    next_ticket: int = 1
    calls: list[tuple[str, int]] = field(default_factory=list)  # (op, count)
    reap_sizes: list[list[int]] = field(default_factory=list)
    fail_entry: dict[bytes, int] = field(default_factory=dict)  # input -> SUBMIT errno

    # -- helpers for the tests

    def submitted(self, fd: int | None = None) -> list[Req]:
        with self.lock:
            return [r for r in self.reqs.values() if fd is None or r.fd == fd]

    def wait_submitted(self, n: int, timeout: float = 5.0) -> list[Req]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len([r for r in self.reqs.values() if r.status is None]) < n:
                left = deadline - time.monotonic()
                assert left > 0, "requests were not submitted"
                self.lock.wait(left)
            return [r for r in self.reqs.values() if r.status is None]

    def finish(self, ticket: int, status: int = 0, data: bytes | None = None) -> None:
        with self.lock:
            req = self.reqs[ticket]
            assert req.status is None, "finished twice"
            req.status = status
            req.result = b"" if status else (data or req.model.compute(req.data, req.text))
            queue = self.done.setdefault(req.fd, [])
            if not queue:
                os.write(req.fd, b"!")  # readable while a result waits
            queue.append(ticket)
            self.lock.notify_all()

    def _under_way(self, model: FakeModel) -> int:
        # unreaped requests hold their slots, as in the module
        return sum(1 for r in self.reqs.values() if r.model is model)

    # -- the ioctl

    def ioctl(self, fd: int, request: int, arg: object) -> int:
        if request == ioctls.MODEL_GET:
            return self._model_get(arg)
        if request == ioctls.LABELS_GET:
            assert ffi.typeof(arg) is ffi.typeof("struct flax_labels *")
            arg.size = 0
            arg.count = 0
            return 0
        if request == ioctls.SUBMIT:
            assert ffi.typeof(arg) is ffi.typeof("struct flax_submit *")
            return self._submit(fd, arg)
        if request == ioctls.REAP:
            assert ffi.typeof(arg) is ffi.typeof("struct flax_reap *")
            return self._reap(fd, arg)
        return -errno.ENOTTY

    def _model_get(self, desc: object) -> int:
        name = ffi.string(desc.name).decode()
        model = next((m for m in self.models.values() if m.name == name), None)
        if model is None:
            return -errno.ENOENT
        desc.id = model.id
        for spec, dtype, dims in (
            (desc.input, model.in_dtype, model.in_dims),
            (desc.output, lib.FLAX_DTYPE_FLOAT32, model.out_dims),
        ):
            spec.dtype = dtype
            spec.ndim = len(dims)
            for i, d in enumerate(dims):
                spec.dims[i] = d
        for i, op in enumerate(model.post):
            desc.post_ops[i] = op
        desc.topk = model.topk
        desc.nslots = model.nslots
        desc.max_queue = model.max_queue
        desc.timeout_ms = model.timeout_ms
        desc.result_size = model.result_size
        desc.text_size = model.text_size
        return 0

    def _submit(self, fd: int, req: object) -> int:
        if (
            req.flags & ~lib.FLAX_INFER_TEXT
            or req.entry_size not in (0, lib.FLAX_SUBMIT_ENTRY_SIZE_VER0)
            or req.priority > lib.FLAX_PRIORITY_MAX
        ):
            return -errno.EINVAL
        model = self.models.get(req.model_id)
        if model is None:
            return -errno.ENOENT
        if not 1 <= req.count <= model.nslots or not req.entries:
            return -errno.EINVAL
        self.calls.append(("SUBMIT", int(req.count)))
        entries = ffi.cast("struct flax_submit_entry *", req.entries)
        nonblock = not os.get_blocking(fd)
        submitted, ret = 0, 0
        with self.lock:
            for i in range(req.count):
                e = entries[i]
                if e.input_size != model.in_size or not e.input:
                    ret = -errno.EINVAL
                    break
                data = bytes(ffi.buffer(ffi.cast("char *", e.input), e.input_size))
                if data in self.fail_entry:
                    ret = -self.fail_entry[data]
                    break
                limit = model.max_queue or model.nslots
                deadline = time.monotonic() + (e.timeout_ms or model.timeout_ms) / 1000.0
                while self._under_way(model) >= limit:
                    if nonblock:
                        ret = -errno.EAGAIN
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        ret = -errno.ETIMEDOUT
                        break
                    self.lock.wait(left)
                if ret:
                    break
                ticket = self.next_ticket
                self.next_ticket += 1
                text = bool(req.flags & lib.FLAX_INFER_TEXT)
                self.reqs[ticket] = Req(
                    fd, ticket, int(e.user_data), model, text, data, int(e.timeout_ms)
                )
                e.ticket = ticket
                submitted += 1
                self.lock.notify_all()
        if not submitted:
            return ret
        req.submitted = submitted
        if self.auto:
            for e in range(submitted):
                self.finish(int(entries[e].ticket))
        return 0

    def _reap(self, fd: int, req: object) -> int:
        if req.flags or req.reserved or getattr(req, "__pad0") or not req.count or not req.entries:
            return -errno.EINVAL
        if req.entry_size not in (0, ffi.sizeof("struct flax_reap_entry")):
            return -errno.EINVAL
        self.calls.append(("REAP", int(req.count)))
        entries = ffi.cast("struct flax_reap_entry *", req.entries)
        self.reap_sizes.append([int(entries[i].output_size) for i in range(req.count)])
        with self.lock:
            queue = self.done.setdefault(fd, [])
            if req.timeout_ms and not queue:
                self.lock.wait_for(lambda: bool(queue), req.timeout_ms / 1000.0)
            reaped = 0
            while reaped < req.count and queue:
                e = entries[reaped]
                r = self.reqs[queue[0]]
                e.ticket, e.user_data, e.status = r.ticket, r.user_data, r.status
                reaped += 1
                if r.status:
                    e.output_size = 0
                elif len(r.result) > e.output_size:
                    e.status = -errno.ENOSPC
                    e.output_size = len(r.result)
                    break  # kept for the next REAP
                else:
                    assert e.output, "NULL output buffer"
                    ffi.memmove(ffi.cast("char *", e.output), r.result, len(r.result))
                    e.output_size = len(r.result)
                queue.pop(0)
                del self.reqs[r.ticket]
                self.lock.notify_all()  # room
            if not queue and reaped:
                assert os.read(fd, 1) == b"!"  # the byte finish() wrote: not readable now
            req.reaped = reaped
            req.pending = sum(1 for r in self.reqs.values() if r.fd == fd)
        return 0


def cls_model(**kw: object) -> FakeModel:
    base: dict[str, object] = {
        "id": 7,
        "name": "cls",
        "in_dtype": lib.FLAX_DTYPE_UINT8,
        "in_dims": (4,),
        "out_dims": (10,),
        "post": (lib.FLAX_POST_SOFTMAX, lib.FLAX_POST_TOPK),
        "topk": 3,
    }
    base.update(kw)
    return FakeModel(**base)  # type: ignore[arg-type]


def vec_model(**kw: object) -> FakeModel:
    base: dict[str, object] = {
        "id": 9,
        "name": "vec",
        "in_dtype": lib.FLAX_DTYPE_FLOAT32,
        "in_dims": (2,),
        "out_dims": (3,),
        "post": (),
    }
    base.update(kw)
    return FakeModel(**base)  # type: ignore[arg-type]


@pytest.fixture
def fake(monkeypatch):
    kernel = FakeKernel({7: cls_model(), 9: vec_model()})
    monkeypatch.setattr(uapi, "ioctl", kernel.ioctl)
    return kernel


@pytest.fixture
def devpath(tmp_path):
    path = tmp_path / "flax"
    os.mkfifo(path)
    return str(path)


@pytest.fixture
def dev(fake, devpath):
    with pyflaxdev.open(devpath) as d:
        yield d


def u8(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint8)


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def readable(fd: int) -> bool:
    import select

    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


# -- structs and numbers ---------------------------------------------------------


def test_struct_sizes_are_the_published_ones():
    assert ffi.sizeof("struct flax_submit") == lib.FLAX_SUBMIT_SIZE_VER0 == 32
    assert lib.FLAX_REAP_SIZE_VER0 == 32
    assert ffi.sizeof("struct flax_reap") == lib.FLAX_REAP_SIZE_VER1 == 40
    assert ffi.sizeof("struct flax_submit_entry") == lib.FLAX_SUBMIT_ENTRY_SIZE_VER0 == 32
    assert lib.FLAX_REAP_ENTRY_SIZE_VER0 == 32
    assert ffi.sizeof("struct flax_reap_entry") == lib.FLAX_REAP_ENTRY_SIZE_VER1 == 40


@pytest.mark.parametrize(
    ("struct_name", "layout"),
    [
        ("flax_submit_entry", {"input": 0, "user_data": 8, "input_size": 16,
                               "timeout_ms": 20, "ticket": 24}),
        ("flax_reap_entry", {"output": 0, "ticket": 8, "user_data": 16,
                             "output_size": 24, "status": 28,
                             "worker_status": 32, "reserved": 36}),
        ("flax_submit", {"model_id": 0, "flags": 4, "entries": 8, "count": 16,
                         "submitted": 20, "priority": 24, "entry_size": 28}),
        ("flax_reap", {"entries": 0, "count": 8, "flags": 12, "timeout_ms": 16,
                       "reaped": 20, "pending": 24, "reserved": 28,
                       "entry_size": 32, "__pad0": 36}),
    ],
)  # fmt: skip
def test_entry_layouts(struct_name, layout):
    ctype = ffi.typeof(f"struct {struct_name}")
    assert {name: f.offset for name, f in ctype.fields} == layout
    assert dict(ffi.typeof("struct flax_reap_entry").fields)["status"].type.cname == "int32_t"


def test_request_numbers():
    assert ioctls.SUBMIT == lib.FLAX_IOC_SUBMIT
    assert ioctls.REAP == lib.FLAX_IOC_REAP
    assert (ioctls.SUBMIT >> 16) & 0x3FFF == lib.FLAX_SUBMIT_SIZE_VER0
    assert (ioctls.REAP >> 16) & 0x3FFF == lib.FLAX_REAP_SIZE_VER1


def test_max_wait_us_comes_from_the_header():
    assert MAX_WAIT_US == lib.FLAX_MAX_WAIT_US == 10_000_000


def test_errors_for_submit_and_reap():
    from pyflaxdev.errors import error_for

    exc = error_for(errno.EAGAIN, "SUBMIT", {"model": "cls"})
    assert isinstance(exc, Busy)
    assert "max_queue" in str(exc)
    assert "(EAGAIN)" in str(exc)
    assert isinstance(error_for(errno.ECANCELED, "INFER", {"model": "m"}), Cancelled)
    assert "interrupted" in str(error_for(errno.EINTR, "REAP"))
    assert FlaxError("x").submitted == ()
    assert FlaxError("x").index is None


# -- the fake is strict ------------------------------------------------------------


def test_fake_rejects_bad_structs(fake, dev):
    fd = dev.fileno()
    req = ffi.new("struct flax_submit *")
    req.model_id = 7
    req.count = 1
    entries = ffi.new("struct flax_submit_entry[]", 1)
    req.entries = uapi.pointer_value(entries)
    req.entry_size = 8
    assert uapi.ioctl(fd, ioctls.SUBMIT, req) == -errno.EINVAL
    req.entry_size = 0
    req.priority = lib.FLAX_PRIORITY_MAX + 1
    assert uapi.ioctl(fd, ioctls.SUBMIT, req) == -errno.EINVAL
    req.priority = 0
    assert uapi.ioctl(fd, ioctls.SUBMIT, req) == -errno.EINVAL  # input_size 0
    wrong_size = ioctls.with_size(ioctls.IOCTLS["SUBMIT"], 24)
    assert uapi.ioctl(fd, wrong_size, req) == -errno.ENOTTY
    with pytest.raises(AssertionError):
        uapi.ioctl(fd, ioctls.REAP, req)  # a flax_submit given to REAP
    reap = ffi.new("struct flax_reap *")
    assert uapi.ioctl(fd, ioctls.REAP, reap) == -errno.EINVAL  # count 0
    # submit_once with too many entries: the module's count check
    n, tickets = submit_once(fd, 7, [bytes(4)] * 5)
    assert (n, tickets) == (-errno.EINVAL, [])


# -- Model.submit and Device.reap --------------------------------------------------


def test_submit_returns_tickets_and_reap_decodes_out_of_order(fake, dev):
    cls, vec = dev.model("cls"), dev.model("vec")
    t_cls = cls.submit([u8(1, 2, 3, 4), u8(5, 6, 7, 8)], user_data=[11, 12])
    t_vec = vec.submit([f32(1, 2)], user_data=99)
    t_txt = cls.submit([u8(3, 3, 3, 3)], text=True)
    assert len(set(t_cls + t_vec + t_txt)) == 4
    assert 0 not in t_cls + t_vec + t_txt
    assert dev.requests.tickets() == sorted(t_cls + t_vec + t_txt)
    assert dev.reap(timeout_ms=0) == []
    assert not readable(dev.fileno())
    # finish in another order than submitted
    for t in (t_vec[0], t_cls[1], t_txt[0], t_cls[0]):
        fake.finish(t)
    assert readable(dev.fileno())
    done = dev.reap(max=8)
    assert [c.ticket for c in done] == [t_vec[0], t_cls[1], t_txt[0], t_cls[0]]
    assert [c.user_data for c in done] == [99, 12, 0, 11]
    assert all(c.ok and c.status == 0 for c in done)
    vec_res, cls2, txt, cls1 = (c.value() for c in done)
    np.testing.assert_array_equal(vec_res, f32(1, 2, 3))
    assert isinstance(cls1, pyflaxdev.Classes)
    assert cls1.indices.tolist() == [1, 2, 3]
    assert cls2.indices.tolist() == [5, 6, 7]
    assert txt == "3\t0.5\n3\t0.333333\n3\t0.25\n"
    assert done[0].model is not None and done[0].model.name == "vec"
    assert done[2].text
    assert len(dev.requests) == 0
    assert not readable(dev.fileno())


def test_reap_max_and_buffer_sizes(fake, dev):
    cls, vec = dev.model("cls"), dev.model("vec")
    tickets = cls.submit([u8(i, i, i, i) for i in range(3)]) + vec.submit([f32(0, 1)])
    for t in tickets:
        fake.finish(t)
    first = dev.reap(max=2)
    assert [c.ticket for c in first] == tickets[:2]
    assert fake.calls[-1] == ("REAP", 2)
    rest = dev.reap()
    assert [c.ticket for c in rest] == tickets[2:]
    # every buffer fits the largest pending result (cls: 32 bytes)
    assert all(size >= 32 for sizes in fake.reap_sizes for size in sizes)


def test_reap_waits_for_a_first_result(fake, dev):
    (t,) = dev.model("vec").submit([f32(2, 2)])
    timer = threading.Timer(0.05, fake.finish, (t,))
    timer.start()
    start = time.monotonic()
    done = dev.reap(timeout_ms=5000)
    timer.join()
    assert [c.ticket for c in done] == [t]
    assert time.monotonic() - start < 4


@pytest.mark.parametrize(
    ("code", "cls"),
    [(errno.ETIMEDOUT, Timeout), (errno.EIO, WorkerFailed), (errno.ENODEV, ModelGone)],
)
def test_errors_per_request(fake, dev, code, cls):
    model = dev.model("cls")
    ok, bad = model.submit([u8(1, 1, 1, 1), u8(2, 2, 2, 2)], timeout_ms=50)
    fake.finish(bad, -code)
    fake.finish(ok)
    failed, good = dev.reap()
    assert failed.ticket == bad
    assert failed.status == code
    assert failed.result is None
    assert isinstance(failed.error, cls)
    assert failed.error.errno == code
    assert "'cls'" in str(failed.error)
    with pytest.raises(cls):
        failed.value()
    assert good.ok
    if code == errno.ETIMEDOUT:
        assert "50 ms" in str(failed.error)


def test_enospc_text_result_is_reaped_again_bigger(fake, dev):
    model = dev.model("cls")
    t1, t2 = model.submit([u8(1, 2, 3, 4), u8(4, 3, 2, 1)], text=True)
    long_text = ("label-with-a-long-name\t0.5\n" * 12).encode()  # > 256 bytes
    fake.finish(t1)
    fake.finish(t2, data=long_text)
    done = dev.reap()
    assert [c.ticket for c in done] == [t1, t2]
    assert done[1].value() == long_text.decode()
    # the second REAP took that one result alone, in a buffer of its size
    assert fake.calls[-1] == ("REAP", 1)
    assert fake.reap_sizes[-1] == [len(long_text)]


def test_enospc_binary_result_rereads_description(fake, dev):
    model = dev.model("cls")
    (t,) = model.submit([u8(1, 2, 3, 4)])
    fake.models[7].topk = 5  # grown through sysfs after the submission
    fake.finish(t)
    (done,) = dev.reap()
    assert done.ok, done.error
    assert done.value().indices.tolist() == [1, 2, 3, 4, 1]
    assert model.info.topk == 5  # re-read once to decode


def test_short_submit_nonblocking_raises_with_what_was_queued(fake, dev):
    fake.models[7].max_queue = 2
    os.set_blocking(dev.fileno(), False)
    model = dev.model("cls")
    with pytest.raises(Busy) as info:
        model.submit([u8(i, 0, 0, 0) for i in range(3)])
    exc = info.value
    assert exc.errno == errno.EAGAIN
    assert len(exc.submitted) == 2
    assert exc.index == 2
    assert sorted(exc.submitted) == dev.requests.tickets()
    assert [c for c, _ in fake.calls].count("SUBMIT") == 2  # the rest was tried again


def test_entry_error_mid_vector(fake, dev):
    model = dev.model("cls")
    fake.fail_entry[bytes(u8(9, 9, 9, 9))] = errno.EILSEQ
    with pytest.raises(FlaxError) as info:
        model.submit([u8(1, 1, 1, 1), u8(9, 9, 9, 9), u8(2, 2, 2, 2)])
    assert info.value.errno == errno.EILSEQ
    assert info.value.index == 1
    assert len(info.value.submitted) == 1


def test_submit_chunks_by_nslots_while_another_thread_reaps(fake, dev):
    # 9 requests, 4 slots: the third SUBMIT waits for room, which reaping makes
    model = dev.model("cls")
    fake.auto = True
    got = []

    def reaper():
        deadline = time.monotonic() + 5
        while len(got) < 9 and time.monotonic() < deadline:
            got.extend(dev.reap(timeout_ms=20))

    thread = threading.Thread(target=reaper)
    thread.start()
    tickets = model.submit([u8(i, 0, 0, 0) for i in range(9)])
    thread.join()
    assert len(tickets) == 9
    assert [n for op, n in fake.calls if op == "SUBMIT"] == [4, 4, 1]
    assert sorted(c.ticket for c in got) == sorted(tickets)
    assert all(c.ok and c.model is model for c in got)
    assert [c.value().indices[0] for c in sorted(got, key=lambda c: c.ticket)] == list(range(9))


def test_submit_checks_inputs_first(fake, dev):
    model = dev.model("cls")
    before = len(fake.calls)
    with pytest.raises(InvalidArgument):
        model.submit([u8(1, 1, 1, 1), u8(1, 2)])
    assert len(fake.calls) == before  # nothing submitted
    assert model.submit([]) == []


def test_user_data_checks(fake, dev):
    model = dev.model("cls")
    with pytest.raises(InvalidArgument):
        model.submit([u8(1, 1, 1, 1)], user_data=[1, 2])
    with pytest.raises(InvalidArgument):
        model.submit([u8(1, 1, 1, 1)], user_data=-1)
    (t,) = model.submit([u8(1, 1, 1, 1)], user_data=2**64 - 1)
    fake.finish(t)
    assert dev.reap()[0].user_data == 2**64 - 1


def test_foreign_ticket_comes_back_raw(fake, dev):
    n, (t,) = submit_once(dev.fileno(), 9, [f32(1, 1).tobytes()], user_data=[5])
    assert n == 1
    fake.finish(t)
    (done,) = dev.reap()
    assert done.model is None
    assert done.result == f32(1, 1, 2).tobytes()


def test_table_holds_back_results_reaped_before_their_ticket_is_recorded(fake, dev):
    table = RequestTable()
    model = dev.model("vec")
    table.begin_submit()
    _, (t,) = submit_once(dev.fileno(), 9, [f32(1, 3).tobytes()])
    fake.finish(t)
    _, (raw,) = reap_raw(dev.fileno(), 4, 64)
    assert table.complete(raw, dev.path) is None  # SUBMIT still under way: held back
    table.end_submit([t], model, False, 0)
    (done,) = table.take_ready(4)
    assert done.ticket == t
    np.testing.assert_array_equal(done.value(), f32(1, 3, 4))


# -- concurrent.futures ------------------------------------------------------------


def test_client_futures_out_of_order(fake, devpath):
    with Client("cls", devpath) as client:
        futures = [client.submit(u8(i, i + 1, i + 2, i + 3)) for i in range(3)]
        text = client.submit(u8(1, 1, 1, 1), text=True)
        reqs = fake.wait_submitted(4)  # as many as the model's 4 slots
        for r in reversed(reqs):
            fake.finish(r.ticket)
        assert [f.result(5).indices.tolist() for f in futures] == [
            [i, i + 1, i + 2] for i in range(3)
        ]
        assert text.result(5).startswith("1\t0.5\n")
        assert client.pending == 0
    assert client.closed


def test_client_errors_and_cancel(fake, devpath):
    client = Client("cls", devpath)
    try:
        good, bad, dropped = (client.submit(u8(i, 0, 0, 0)) for i in range(3))
        invalid = client.submit(u8(1))
        with pytest.raises(InvalidArgument):
            invalid.result(0)
        reqs = {r.data[0]: r.ticket for r in fake.wait_submitted(3)}
        assert dropped.cancel()
        fake.finish(reqs[1], -errno.ETIMEDOUT)
        fake.finish(reqs[2])
        fake.finish(reqs[0])
        assert good.result(5).indices.tolist() == [0, 0, 0]
        with pytest.raises(Timeout) as info:
            bad.result(5)
        assert info.value.errno == errno.ETIMEDOUT
        deadline = time.monotonic() + 5
        while client.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.pending == 0  # the cancelled one's result was dropped
    finally:
        client.close()


def test_client_map_with_backpressure(fake, devpath):
    fake.models[7].max_queue = 2
    stop = threading.Event()

    def worker():  # finishes whatever is under way, like a serving worker
        while not stop.is_set():
            for r in fake.submitted():
                if r.status is None:
                    fake.finish(r.ticket)
            time.sleep(0.002)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        with Client("cls", devpath) as client:
            results = list(client.map([u8(i, 0, 0, 0) for i in range(10)], timeout=10))
    finally:
        stop.set()
        thread.join()
    assert [r.indices.tolist()[0] for r in results] == list(range(10))


def test_client_enospc(fake, devpath):
    with Client("cls", devpath) as client:
        future = client.submit(u8(1, 2, 3, 4), text=True)
        (r,) = fake.wait_submitted(1)
        fake.finish(r.ticket, data=b"x" * 500)
        assert future.result(5) == "x" * 500


def test_client_close_fails_pending_futures(fake, devpath):
    threads = threading.active_count()
    client = Client("cls", devpath)
    futures = client.submit_many([u8(i, 0, 0, 0) for i in range(3)])
    fake.wait_submitted(3)
    fd = client.fileno()
    start = time.monotonic()
    client.close()
    assert time.monotonic() - start < 2
    for f in futures:
        with pytest.raises(Cancelled) as info:
            f.result(0)
        assert info.value.errno == errno.ECANCELED
    assert threading.active_count() == threads
    assert client.device.closed
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    with pytest.raises(ValueError, match="closed"):
        client.submit(u8(1, 1, 1, 1))
    client.close()  # idempotent


def test_client_close_wait_and_from_callback(fake, devpath):
    client = Client("vec", devpath)
    first = client.submit(f32(1, 1))
    second = client.submit(f32(2, 2))
    reqs = fake.wait_submitted(2)
    closed = threading.Event()

    def on_done(_f):
        client.close()  # from the reaper thread: must not deadlock
        closed.set()

    first.add_done_callback(on_done)
    fake.finish(reqs[0].ticket)
    assert closed.wait(5)
    client._thread.join(5)
    assert not client._thread.is_alive()
    np.testing.assert_array_equal(first.result(0), f32(1, 1, 2))
    with pytest.raises(Cancelled):
        second.result(5)

    client = Client("vec", devpath)
    future = client.submit(f32(3, 3))
    # the first client's unreaped request is still there: a closed fd's are not
    (r,) = [r for r in fake.wait_submitted(2) if r.data == f32(3, 3).tobytes()]
    threading.Timer(0.05, fake.finish, (r.ticket,)).start()
    client.close(wait=True, timeout=5)
    np.testing.assert_array_equal(future.result(0), f32(3, 3, 6))


# -- asyncio -----------------------------------------------------------------------


def test_async_many_awaits_out_of_order(fake, devpath):
    async def main():
        async with AsyncClient("cls", devpath) as client:
            assert not os.get_blocking(client.fileno())
            fake.models[7].nslots = 8
            client.model.info = client.device.describe("cls")
            tasks = [asyncio.ensure_future(client.infer(u8(i, 1, 2, 3))) for i in range(6)]
            while len(fake.submitted()) < 6:
                await asyncio.sleep(0.001)
            for r in reversed(fake.submitted()):
                fake.finish(r.ticket)
            results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
            assert client.pending == 0
        return results

    results = asyncio.run(main())
    assert [r.indices.tolist() for r in results] == [[i, 1, 2] for i in range(6)]


def test_async_cancellation_does_not_break_others(fake, devpath):
    async def main():
        client = AsyncClient("vec", devpath)
        a = asyncio.ensure_future(client.infer(f32(1, 0)))
        b = asyncio.ensure_future(client.infer(f32(2, 0)))
        c = asyncio.ensure_future(client.infer(f32(3, 0), text=True))
        while len(fake.submitted()) < 3:
            await asyncio.sleep(0.001)
        b.cancel()
        await asyncio.sleep(0)
        for r in fake.submitted():
            fake.finish(r.ticket)
        ra, rc = await asyncio.wait_for(asyncio.gather(a, c), 5)
        with pytest.raises(asyncio.CancelledError):
            await b
        assert client.pending == 0  # b's result was reaped and dropped
        client.close()
        return ra, rc

    ra, rc = asyncio.run(main())
    np.testing.assert_array_equal(ra, f32(1, 0, 1))
    assert rc == "3 0 3\n"


def test_async_errors_and_enospc(fake, devpath):
    async def main():
        async with AsyncClient("cls", devpath) as client:
            bad = asyncio.ensure_future(client.infer(u8(1, 0, 0, 0)))
            big = asyncio.ensure_future(client.infer(u8(2, 0, 0, 0), text=True))
            while len(fake.submitted()) < 2:
                await asyncio.sleep(0.001)
            reqs = {r.data[0]: r.ticket for r in fake.submitted()}
            fake.finish(reqs[1], -errno.EIO)
            fake.finish(reqs[2], data=b"y" * 300)
            with pytest.raises(WorkerFailed):
                await asyncio.wait_for(bad, 5)
            assert await asyncio.wait_for(big, 5) == "y" * 300
            with pytest.raises(InvalidArgument):
                await client.infer(u8(1))

    asyncio.run(main())


def test_async_eagain_waits_for_room(fake, devpath):
    fake.models[7].max_queue = 2

    async def main():
        async with AsyncClient("cls", devpath) as client:

            async def worker():
                while True:
                    for r in fake.submitted():
                        if r.status is None:
                            fake.finish(r.ticket)
                    await asyncio.sleep(0.001)

            w = asyncio.ensure_future(worker())
            try:
                results = await asyncio.wait_for(
                    client.infer_many([u8(i, 0, 0, 0) for i in range(7)]), 5
                )
            finally:
                w.cancel()
            return results

    results = asyncio.run(main())
    assert [r.indices.tolist()[0] for r in results] == list(range(7))
    # more than one SUBMIT: EAGAIN at max_queue, then the rest once room came
    assert [op for op, _ in fake.calls].count("SUBMIT") > 2


def test_async_eagain_times_out(fake, devpath):
    fake.models[9].max_queue = 1

    async def main():
        async with AsyncClient("vec", devpath) as client:
            first = await client.submit(f32(1, 1), timeout_ms=50)
            with pytest.raises(Timeout):
                await client.infer(f32(2, 2), timeout_ms=50)
            (r,) = fake.submitted()
            fake.finish(r.ticket)
            np.testing.assert_array_equal(await asyncio.wait_for(first, 5), f32(1, 1, 2))

    asyncio.run(main())


def test_async_close_fails_pending(fake, devpath):
    async def main():
        client = AsyncClient("vec", devpath)
        task = asyncio.ensure_future(client.infer(f32(1, 1)))
        while not fake.submitted():
            await asyncio.sleep(0.001)
        client.close()
        with pytest.raises(Cancelled):
            await task
        assert client.device.closed
        with pytest.raises(ValueError, match="closed"):
            await client.infer(f32(1, 1))

    asyncio.run(main())
