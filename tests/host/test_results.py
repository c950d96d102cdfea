"""Results (binary and text), labels, and Model/Device logic against a fake module.

The fake module answers the ioctls in Python (pyflaxdev.uapi.ioctl replaced), so
that the client's handling of ENOSPC, label caching and label upload can be
checked on the host; the real module is exercised by the VM suite.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import ioctls, uapi
from pyflaxdev.errors import BufferTooSmall, FlaxError, InvalidArgument, LabelsTooLarge
from pyflaxdev.labels import check_labels, decode_labels, encode_labels, max_labels
from pyflaxdev.results import (
    Classes,
    TopK,
    decode_classes,
    decode_topk,
    decode_vector,
    parse_text,
    parse_text_classes,
    parse_text_vector,
)
from pyflaxdev.spec import ModelDesc, TensorSpec
from pyflaxdev.uapi import ffi, lib


def topk_bytes(entries, count=None):
    count = len(entries) if count is None else count
    out = struct.pack("=II", count, 0)
    for index, score in entries:
        out += struct.pack("=If", index, score)
    return out


# -- binary results -------------------------------------------------------------------


def test_decode_topk():
    r = decode_classes(topk_bytes([(7, 0.75), (1, 0.125), (4, 0.125)]), 3)
    assert isinstance(r, Classes) and TopK is Classes
    assert r.pairs() == [(7, 0.75), (1, 0.125), (4, 0.125)]
    assert r.top == 7 and len(r) == 3 and r[1] == (1, 0.125)
    assert r.labels is None and r.names == ["7", "1", "4"]
    assert r.indices.dtype == np.int64 and r.scores.dtype == np.float32


def test_decode_argmax_and_threshold_counts():
    assert decode_classes(topk_bytes([(3, 2.5)]), 1).pairs() == [(3, 2.5)]
    # threshold: any count up to the element count, ascending index; none at all too
    sel = decode_classes(topk_bytes([(0, 0.5), (2, 0.875), (9, 0.5)]), 10)
    assert sel.indices.tolist() == [0, 2, 9]
    empty = decode_classes(topk_bytes([]), 10)
    assert len(empty) == 0 and empty.pairs() == []
    with pytest.raises(IndexError, match="no class reached the threshold"):
        _ = empty.top


def test_decode_with_labels():
    labels = ("zero", "one", "two")
    r = decode_classes(topk_bytes([(2, 0.5), (5, 0.25)]), 3, labels)
    assert r.labels == labels
    assert r.names == ["two", "5"]  # an index without a label prints as the number
    assert r.labelled() == [("two", 0.5), ("5", 0.25)]
    assert r.labelled(["a", "b", "c", "d", "e", "f"]) == [("c", 0.5), ("f", 0.25)]
    assert r.top_label == "two"
    assert "two" in repr(r)
    assert r.with_labels(None).labels is None


@pytest.mark.parametrize(
    ("data", "limit"),
    [
        (b"", 3),
        (b"\x01\x00\x00", 3),
        (topk_bytes([(1, 1.0)] * 4), 3),  # more entries than allowed
        (topk_bytes([(1, 1.0)], count=2), 3),  # count beyond the bytes
        (topk_bytes([(1, 1.0)] * 2, count=1), 3),  # trailing bytes
    ],
)
def test_decode_rejects_malformed(data, limit):
    with pytest.raises(FlaxError):
        decode_classes(data, limit)


def test_decode_topk_alias_and_vector():
    assert decode_topk(topk_bytes([(1, 1.0)]), 3).pairs() == [(1, 1.0)]
    v = decode_vector(np.arange(4, dtype=np.float32).tobytes(), 4)
    assert v.tolist() == [0, 1, 2, 3] and v.flags.writeable
    with pytest.raises(FlaxError, match="expected 5 float32"):
        decode_vector(bytes(16), 5)


# -- text results ---------------------------------------------------------------------


def test_parse_text():
    text = "seven\t0.999853\nnine\t8.86518e-05\n4\t5.75318e-05\n"
    assert parse_text_classes(text) == [
        ("seven", 0.999853),
        ("nine", 8.86518e-05),
        ("4", 5.75318e-05),
    ]
    assert parse_text(text, classes=True) == parse_text_classes(text)
    # labels may hold spaces (not tabs): the score is after the last tab
    assert parse_text_classes("big cat\t1\n") == [("big cat", 1.0)]
    assert parse_text_classes("") == []
    vec = parse_text_vector("0.5 -1 inf 1e-05\n")
    assert vec.dtype == np.float32 and vec.tolist()[:3] == [0.5, -1.0, float("inf")]
    assert parse_text("1 2\n", classes=False).tolist() == [1.0, 2.0]
    with pytest.raises(FlaxError, match="no tab"):
        parse_text_classes("seven 0.5\n")


# -- labels -----------------------------------------------------------------------


def test_labels_wire_form():
    assert encode_labels(["a", "b c", "é"]) == "a\nb c\né\n".encode()
    assert encode_labels([]) == b""
    assert decode_labels(b"a\nb c\n\xc3\xa9\n") == ("a", "b c", "é")
    assert decode_labels(b"a\nb") == ("a", "b")  # the last newline is optional
    assert decode_labels(b"") == ()


def test_check_labels_accepts():
    assert check_labels(["cat", "dog"], 10) == ("cat", "dog")
    assert check_labels(["é" * 63], 1) == ("é" * 63,)  # 126 bytes
    assert check_labels(["x" * 127], 1) == ("x" * 127,)
    assert check_labels([], 1) == ()
    assert max_labels(10**6) == lib.FLAX_LABELS_MAX == 65536


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([""], "label 0 \\(''\\) of model 'm' is empty"),
        (["a", "b\nc"], "label 1 .* contains the control character '\\\\n'"),
        (["a\tb"], "control character '\\\\t'"),
        (["a\x7f"], "control character"),
        (["x" * 128], "is 128 bytes of UTF-8, longer than 127"),
        (["é" * 64], "is 128 bytes"),
        (["\udc80"], "not encodable as UTF-8"),
        ([3], "must be a str"),
    ],
)
def test_check_labels_rejects(labels, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        check_labels(labels, 10, model="m")
    assert info.value.errno == errno.EINVAL


def test_check_labels_too_many():
    with pytest.raises(LabelsTooLarge, match="3 labels of model 'm': at most 2") as info:
        check_labels(["a", "b", "c"], 2, model="m")
    assert info.value.errno == errno.E2BIG
    assert isinstance(info.value, InvalidArgument)


# -- Model and Device against a fake module ----------------------------------------------


@dataclass
class FakeModule:
    """Answers flaxdev ioctls for one model of 10 classes, softmax + top-k."""

    topk: int = 3
    text_size: int | None = None
    labels: bytes = b""
    labels_set_errno: int = 0
    calls: list[str] = field(default_factory=list)
    created: bool = True
    scores: tuple[float, ...] = (0.5, 0.25, 0.125, 0.0625, 0.03125, 0.0, 0.0, 0.0, 0.0, 0.0)

    NAMES: ClassVar[dict[int, str]] = {getattr(ioctls, n): n for n in ioctls.IOCTLS}

    def __call__(self, fd, request, arg):
        name = self.NAMES[request]
        self.calls.append(name)
        return getattr(self, name.lower())(arg)

    def result_size(self):
        return 8 + 8 * self.topk

    def model_create(self, arg):
        self.created = True
        arg.id = 3
        return 0

    def model_destroy(self, arg):
        self.created = False
        return 0

    def model_get(self, arg):
        if not self.created:
            return -errno.ENOENT
        desc = ModelDesc(
            name="cls",
            input=TensorSpec((4,), np.dtype(np.float32)),
            output=TensorSpec((10,), np.dtype(np.float32)),
            post=("softmax", "topk"),
            topk=self.topk,
            nslots=4,
            timeout_ms=100,
        )
        src, _ = desc.to_desc()
        ffi.memmove(arg, src, ffi.sizeof("struct flax_model_desc"))
        arg.id = 3
        arg.result_size = self.result_size()
        arg.text_size = self.text_size if self.text_size is not None else 142 * self.topk
        arg.max_batch = arg.max_queue = 4
        return 0

    def entries(self):
        order = sorted(range(10), key=lambda i: (-self.scores[i], i))[: self.topk]
        return [(i, self.scores[i]) for i in order]

    def infer(self, arg):
        if arg.flags & lib.FLAX_INFER_TEXT:
            names = decode_labels(self.labels)
            text = "".join(
                f"{names[i] if i < len(names) else i}\t{s:.6g}\n" for i, s in self.entries()
            ).encode()
            arg.output_size, have = len(text), arg.output_size
            if len(text) > have:
                return -errno.ENOSPC
            ffi.memmove(ffi.cast("char *", arg.output), text, len(text))
            return 0
        if arg.output_size < self.result_size():
            arg.output_size = self.result_size()
            return -errno.ENOSPC
        data = topk_bytes(self.entries())
        ffi.memmove(ffi.cast("char *", arg.output), data, len(data))
        arg.output_size = len(data)
        return 0

    def labels_get(self, arg):
        have = arg.size
        arg.size = len(self.labels)
        arg.count = len(decode_labels(self.labels))
        if len(self.labels) > have:
            return -errno.ENOSPC
        ffi.memmove(ffi.cast("char *", arg.data), self.labels, len(self.labels))
        return 0

    def vocab_set(self, arg):
        lines = ffi.buffer(ffi.cast("char *", arg.data), arg.size)[:].split(b"\n")[:-1]
        if b"" in lines:
            arg.bad_line = lines.index(b"") + 1
            return -errno.EINVAL
        arg.count = len(lines)
        return 0

    def labels_set(self, arg):
        if self.labels_set_errno:
            return -self.labels_set_errno
        data = ffi.buffer(ffi.cast("char *", arg.data), arg.size)[:] if arg.size else b""
        self.labels = data
        arg.count = len(decode_labels(data))
        return 0


@pytest.fixture
def fake(monkeypatch):
    module = FakeModule()
    monkeypatch.setattr(uapi, "ioctl", module)
    return module


@pytest.fixture
def dev(tmp_path, fake):
    path = tmp_path / "flax"
    path.write_bytes(b"")
    with pyflaxdev.open(path) as d:
        yield d


X = np.zeros(4, np.float32)


def test_infer_reads_labels_once_per_handle(dev, fake):
    fake.labels = encode_labels([f"c{i}" for i in range(10)])
    m = dev.model("cls")
    r1 = m.infer(X)
    r2 = m.infer(X)
    assert r1.names == ["c0", "c1", "c2"] and r2.labels == r1.labels
    assert fake.calls.count("LABELS_GET") == 1


def test_infer_without_labels(dev, fake):
    r = dev.model("cls").infer(X)
    assert r.labels is None and r.names == ["0", "1", "2"]


def test_infer_refreshes_once_when_topk_grew(dev, fake):
    m = dev.model("cls")
    fake.topk = 5  # written to sysfs while the handle lives
    r = m.infer(X)
    assert len(r) == 5
    assert m.info.topk == 5 and m.info.result_size == 48
    assert fake.calls.count("INFER") == 2 and fake.calls.count("MODEL_GET") == 2
    fake.calls.clear()
    m.infer(X)
    assert fake.calls == ["INFER"]


def test_infer_when_topk_shrank_needs_no_refresh(dev, fake):
    m = dev.model("cls")
    fake.topk = 1
    assert len(m.infer(X)) == 1
    assert "MODEL_GET" not in fake.calls[1:]


def test_infer_text_retries_with_the_size_reported(dev, fake):
    fake.labels = encode_labels(["a-long-label-name"] * 10)
    fake.text_size = 4  # too small: the module reports the length and the job is rerun
    m = dev.model("cls")
    text = m.infer_text(X)
    assert parse_text_classes(text) == [("a-long-label-name", s) for s in (0.5, 0.25, 0.125)]
    assert fake.calls.count("INFER") == 2


def test_infer_text_gives_up_when_the_size_does_not_grow(dev, fake, monkeypatch):
    m = dev.model("cls")
    monkeypatch.setattr(FakeModule, "infer", lambda self, arg: -errno.ENOSPC)
    with pytest.raises(BufferTooSmall):
        m.infer_text(X)


def test_labels_round_trip(dev, fake):
    m = dev.model("cls")
    assert m.labels() == []
    m.set_labels(["zero", "one"])
    assert fake.labels == b"zero\none\n"
    assert dev.labels("cls") == ["zero", "one"]
    m.set_labels(None)
    assert fake.labels == b"" and m.labels() == []


def test_labels_get_grows_its_buffer(dev, fake):
    big = [f"label-{i:05d}-" + "x" * 100 for i in range(10)]
    fake.labels = encode_labels(big) * 4  # > 4096 bytes
    got = dev.model("cls").labels()
    assert len(got) == 40
    assert fake.calls.count("LABELS_GET") == 2


def test_set_labels_is_checked_before_the_ioctl(dev, fake):
    m = dev.model("cls")
    with pytest.raises(LabelsTooLarge, match="at most 10"):
        m.set_labels([str(i) for i in range(11)])
    with pytest.raises(InvalidArgument, match="control character"):
        dev.set_labels("cls", ["a\tb"])
    assert "LABELS_SET" not in fake.calls


def test_module_label_errors_map_to_classes(dev, fake):
    fake.labels_set_errno = errno.E2BIG
    with pytest.raises(LabelsTooLarge, match=r"rejected by the module.*E2BIG"):
        dev.model("cls").set_labels(["a"])
    fake.labels_set_errno = errno.EINVAL
    with pytest.raises(InvalidArgument, match="kernel log names the line"):
        dev.model("cls").set_labels(["a"], validate=False)


def test_create_model_uploads_labels(dev, fake):
    fake.created = False
    m = dev.create_model("cls", (4,), np.float32, (10,), labels=["a", "b"], max_batch=2, nslots=4)
    assert fake.calls[:3] == ["MODEL_CREATE", "MODEL_GET", "LABELS_SET"]
    assert fake.labels == b"a\nb\n" and m.name == "cls"


def test_create_model_destroys_the_model_when_labels_fail(dev, fake):
    fake.created = False
    fake.labels_set_errno = errno.EINVAL
    with pytest.raises(InvalidArgument):
        dev.create_model("cls", (4,), np.float32, (10,), labels=["a"])
    assert fake.calls[-1] == "MODEL_DESTROY" and not fake.created


def test_create_model_defaults_and_checks(dev, fake):
    with pytest.raises(InvalidArgument, match="channel_first and clamp of 'x' need normalize"):
        dev.create_model("x", (4,), np.float32, (10,), channel_first=True)
    with pytest.raises(InvalidArgument, match="topk for 'x' must be 0 without a 'topk' step"):
        dev.create_model("x", (4,), np.float32, (10,), post=("softmax",), topk=3)
    with pytest.raises(InvalidArgument, match="3 labels of model 'x': at most 2"):
        dev.create_model("x", (4,), np.float32, (2,), post=(), labels=["a", "b", "c"])
    assert fake.calls == []


def test_set_vocab(dev, fake):
    m = dev.model("cls")
    assert m.set_vocab(b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n") == 4
    with pytest.raises(InvalidArgument, match="rejected at line 3") as info:
        dev.set_vocab("cls", b"a\nb\n\nc\n")
    assert info.value.bad_line == 3 and info.value.errno == errno.EINVAL
