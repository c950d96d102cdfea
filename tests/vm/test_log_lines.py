"""What the module logs when it rejects an upload: the right line, and not without limit.

Each test reads the records the kernel logs after a mark (``/dev/kmsg`` from its
end), so the log of earlier tests does not count.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Iterator

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import ioctls, uapi
from pyflaxdev.uapi import ffi

# The module logs rejections through pr_info_ratelimited(): 10 lines per 5 s.
RATELIMIT_INTERVAL_S = 5.0
RATELIMIT_BURST = 10


class KmsgTail:
    """The kernel log's records from the moment this was made on."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def lines(self) -> list[str]:
        """The texts of the records logged since the last call."""
        out: list[str] = []
        while True:
            try:
                rec = os.read(self.fd, 16384)
            except BlockingIOError:
                return out
            except BrokenPipeError:
                continue  # records overwritten: this test's are newer
            text = rec.decode("utf-8", "replace").split("\n", 1)[0].partition(";")[2]
            out.append(text)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def kmsg() -> Iterator[KmsgTail]:
    tail = KmsgTail()
    try:
        yield tail
    finally:
        tail.close()


@pytest.fixture
def four_outputs(dev: pyflaxdev.Device) -> Iterator[pyflaxdev.Model]:
    """A model with four outputs, to which at most four labels fit."""
    name = f"loglines{os.getpid()}"
    model = dev.create_model(name, (4,), np.float32, (4,), post=("softmax", "argmax"))
    try:
        yield model
    finally:
        dev.destroy_model(name)


def _labels_set(dev: pyflaxdev.Device, model: pyflaxdev.Model, text: bytes) -> int:
    """LABELS_SET with ``text`` as it is: 0 or -errno."""
    buf = ffi.from_buffer(text)
    req = ffi.new("struct flax_labels *")
    req.model_id = model.id
    req.data = uapi.pointer_value(buf)
    req.size = len(text)
    return uapi.ioctl(dev.fileno(), ioctls.LABELS_SET, req)


def _rejections(lines: list[str], model: pyflaxdev.Model) -> list[tuple[int, str]]:
    name = re.escape(model.info.name)
    pat = re.compile(rf"^flaxdev: model {name}: labels: line (\d+) rejected: (.*)$")
    return [(int(m.group(1)), m.group(2)) for m in map(pat.match, lines) if m]


def _rejected_line(
    dev: pyflaxdev.Device, model: pyflaxdev.Model, kmsg: KmsgTail, text: bytes, err: int
) -> tuple[int, str]:
    """Upload ``text``, expect ``err``, and return the line and reason the log names.

    Earlier tests may have used up the rate limit's burst: then the line is
    missing, and the upload is tried again once the interval is over.
    """
    for _ in range(2):
        kmsg.lines()
        assert _labels_set(dev, model, text) == -err
        found = _rejections(kmsg.lines(), model)
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(RATELIMIT_INTERVAL_S + 0.5)
    raise AssertionError("the rejected labels were not logged")


@pytest.mark.parametrize(
    ("text", "err", "line", "why"),
    [
        # The case: the fifth of five labels on four outputs (logged "line 6").
        (b"a\nb\nc\nd\ne\n", errno.E2BIG, 5, "more labels"),
        (b"a\nb\nc\nd\ne\nf", errno.E2BIG, 5, "more labels"),
        (b"a\nb\n\nd\n", errno.EINVAL, 3, "empty"),
        (b"a\nb\tc\n", errno.EINVAL, 2, "control character"),
        (b"x" * 128 + b"\nb\n", errno.EINVAL, 1, "longer than 127 bytes"),
        (b"a\nb\nc\nd\x7f", errno.EINVAL, 4, "control character"),
    ],
)
def test_rejected_label_names_its_line(
    dev: pyflaxdev.Device,
    four_outputs: pyflaxdev.Model,
    kmsg: KmsgTail,
    text: bytes,
    err: int,
    line: int,
    why: str,
) -> None:
    got_line, got_why = _rejected_line(dev, four_outputs, kmsg, text, err)
    assert got_line == line
    assert got_why.startswith(why)
    # The labels the module has are still none: nothing was taken.
    assert four_outputs.labels() == []


def test_four_labels_fit(dev: pyflaxdev.Device, four_outputs: pyflaxdev.Model) -> None:
    """The boundary of the E2BIG case: as many labels as outputs are accepted."""
    assert _labels_set(dev, four_outputs, b"a\nb\nc\nd\n") == 0
    assert four_outputs.labels() == ["a", "b", "c", "d"]


def test_rejections_are_rate_limited(
    dev: pyflaxdev.Device, four_outputs: pyflaxdev.Model, kmsg: KmsgTail
) -> None:
    """A loop of bad uploads logs at most a burst's worth of lines, not one per call."""
    calls = 5 * RATELIMIT_BURST
    start = time.monotonic()
    for _ in range(calls):
        assert _labels_set(dev, four_outputs, b"a\n\n") == -errno.EINVAL
    elapsed = time.monotonic() - start
    logged = _rejections(kmsg.lines(), four_outputs)
    assert all(entry == (2, "empty") for entry in logged)
    # At most one burst per interval; the loop may start in an interval that
    # earlier uploads opened, so it may span one more than its length says.
    intervals = 2 + int(elapsed // RATELIMIT_INTERVAL_S)
    assert len(logged) <= RATELIMIT_BURST * intervals < calls, (len(logged), elapsed)
