"""The in-kernel API (driver/flaxdev_kapi.h) through the sample module flax_iolat.ko.

flax_iolat asks the model ``iolat`` (four uint8 features, two classes, softmax and
top-1) for each write of features to ``/sys/kernel/flax_iolat/predict``; the write
fails with the inference's errno and ``result`` reads ``<class> 0x<score bits>`` or
``error <errno>``.  The worker here computes ``[x0 + x1, x2 + x3]``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import sysfs

SAMPLE_KO = os.environ.get("FLAX_SAMPLE_KO", "")
SAMPLE = Path("/sys/kernel/flax_iolat")
MODEL = "iolat"


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _stat(name: str) -> int:
    return int((sysfs.sysfs_root() / "models" / MODEL / name).read_text())


def _apply(params: Any, x: Any) -> Any:
    import jax.numpy as jnp

    return jnp.stack([x[:, 0] + x[:, 1], x[:, 2] + x[:, 3]], axis=1)


def _create(dev: pyflaxdev.Device, *, timeout_ms: int = 0, shape: int = 4) -> None:
    dev.create_model(
        MODEL,
        (shape,),
        np.uint8,
        (2,),
        normalize=(1.0, [0.0], [1.0]),
        post=("softmax", "topk"),
        topk=1,
        nslots=4,
        timeout_ms=timeout_ms,
    )


def _predict(features: tuple[int, int, int, int]) -> tuple[int, float]:
    """Asks the sample; returns (class, score) or raises OSError with its errno."""
    fd = os.open(SAMPLE / "predict", os.O_WRONLY)
    try:
        os.write(fd, " ".join(map(str, features)).encode())
    finally:
        os.close(fd)
    cls, bits = _result().split()
    return int(cls), struct.unpack("<f", struct.pack("<I", int(bits, 16)))[0]


def _result() -> str:
    return (SAMPLE / "result").read_text().strip()


def _predict_errno(features: tuple[int, int, int, int]) -> int:
    err = 0
    try:
        _predict(features)
    except OSError as e:
        err = e.errno or 0
    assert err, f"{features}: no error, result {_result()!r}"
    assert _result() == f"error -{err}"
    return err


@pytest.fixture
def iolat(dev: pyflaxdev.Device) -> Iterator[None]:
    """flax_iolat.ko loaded, no ``iolat`` model; both gone afterwards."""
    assert SAMPLE_KO, "FLAX_SAMPLE_KO is not set: run this suite through kbuild/vm-run"
    with contextlib.suppress(pyflaxdev.ModelNotFound):
        dev.destroy_model(MODEL)
    r = _run("insmod", SAMPLE_KO)
    assert r.returncode == 0, r.stderr
    try:
        yield
    finally:
        with contextlib.suppress(pyflaxdev.ModelNotFound):
            dev.destroy_model(MODEL)
        r = _run("rmmod", "flax_iolat")
        assert r.returncode == 0, r.stderr


CASES = [((1, 2, 3, 4), 1), ((9, 9, 0, 1), 0), ((0, 0, 200, 0), 1), ((255, 255, 255, 0), 0)]


def _check_predictions() -> None:
    for features, want in CASES:
        cls, score = _predict(features)
        x = np.asarray(features, dtype=np.float64)
        logits = np.array([x[0] + x[1], x[2] + x[3]])
        p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert cls == want, (features, cls)
        assert score == pytest.approx(p[want], rel=1e-5), features


def test_predict_served_and_model_going_away(dev: pyflaxdev.Device, iolat: None) -> None:
    assert _result() == "none"
    assert _predict_errno((1, 2, 3, 4)) == errno.ENOENT
    _create(dev)
    with pyflaxdev.serving(_apply, None, model=MODEL, batch_sizes=(1,)):
        _check_predictions()
        assert _stat("requests") == len(CASES)
        assert _stat("completed") == len(CASES)
        # The ioctl path alongside the kernel's.
        top = dev.model(MODEL).infer(np.array([1, 2, 3, 4], np.uint8))
        assert top.indices.tolist() == [1]
        assert _stat("completed") == len(CASES) + 1
    dev.destroy_model(MODEL)
    assert _predict_errno((1, 2, 3, 4)) == errno.ENOENT
    # A new model of that name is found by the next request.
    _create(dev)
    with pyflaxdev.serving(_apply, None, model=MODEL, batch_sizes=(1,)):
        _check_predictions()


def test_no_worker_times_out(dev: pyflaxdev.Device, iolat: None) -> None:
    _create(dev, timeout_ms=300)
    start = time.monotonic()
    assert _predict_errno((1, 2, 3, 4)) == errno.ETIMEDOUT
    assert time.monotonic() - start >= 0.25
    assert _stat("timeouts") == 1 and _stat("requests") == 1
    # The sample's own, shorter timeout.
    Path("/sys/module/flax_iolat/parameters/timeout_ms").write_text("100\n")
    try:
        assert _predict_errno((1, 2, 3, 4)) == errno.ETIMEDOUT
    finally:
        Path("/sys/module/flax_iolat/parameters/timeout_ms").write_text("0\n")
    assert _stat("timeouts") == 2 and _stat("queued") == 0


def test_destroyed_mid_request_is_enodev(dev: pyflaxdev.Device, iolat: None) -> None:
    _create(dev, timeout_ms=60000)
    got: list[int] = []

    def ask() -> None:
        got.append(_predict_errno((1, 2, 3, 4)))

    t = threading.Thread(target=ask)
    t.start()
    deadline = time.monotonic() + 30
    while _stat("queued") != 1:
        assert time.monotonic() < deadline, "the request was never queued"
        time.sleep(0.05)
    dev.destroy_model(MODEL)
    t.join(30)
    assert not t.is_alive()
    assert got == [errno.ENODEV]


def test_bad_input_size_is_einval(dev: pyflaxdev.Device, iolat: None) -> None:
    _create(dev, shape=8, timeout_ms=300)
    assert _predict_errno((1, 2, 3, 4)) == errno.EINVAL
    with pytest.raises(OSError, match="Invalid argument"):
        (SAMPLE / "predict").write_text("1 2 3\n")


def test_flaxdev_pinned_while_sample_loaded(iolat: None) -> None:
    assert Path("/sys/module/flaxdev/holders/flax_iolat").exists()
    r = _run("rmmod", "flaxdev")
    assert r.returncode != 0
    assert Path("/sys/module/flaxdev").exists() and Path(pyflaxdev.DEFAULT_PATH).exists()


def test_result_readable_while_a_request_waits(dev: pyflaxdev.Device, iolat: None) -> None:
    """No lock across the inference: ``cat result`` never waits for a request."""
    _create(dev, timeout_ms=4000)
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(_predict_errno((1, 2, 3, 4))))
    t.start()
    deadline = time.monotonic() + 30
    while _stat("queued") != 1:
        assert time.monotonic() < deadline, "the request was never queued"
        time.sleep(0.05)
    start = time.monotonic()
    assert _result() == "none"  # the waiting request has not ended yet
    assert time.monotonic() - start < 1.0, "reading result waited for the request"
    t.join(30)
    assert got == [errno.ETIMEDOUT]


def test_kernel_caller_follows_a_change_of_k(dev: pyflaxdev.Device, iolat: None) -> None:
    """flax_model_result_size() is the current k's: the sample sizes its buffer by it."""
    _create(dev)
    model = sysfs.sysfs_root() / "models" / MODEL
    with pyflaxdev.serving(_apply, None, model=MODEL, batch_sizes=(1,)):
        _check_predictions()
        (model / "topk").write_text("2\n")
        assert int((model / "result_size").read_text()) == 8 + 2 * 8
        _check_predictions()  # ENOSPC before: a buffer sized for k = 1


def test_timeout_above_the_module_bound_is_refused(dev: pyflaxdev.Device) -> None:
    bound = int(Path("/sys/module/flaxdev/parameters/max_timeout_ms").read_text())
    with pytest.raises(pyflaxdev.InvalidArgument):
        dev.create_model("slow", (4,), np.float32, (4,), post=(), timeout_ms=bound + 1)
    m = dev.create_model("slow", (4,), np.float32, (4,), post=(), timeout_ms=bound)
    try:
        assert m.info.timeout_ms == bound
        with pytest.raises(OSError, match="Invalid argument") as info:
            (sysfs.sysfs_root() / "models" / "slow" / "timeout_ms").write_text(f"{bound + 1}\n")
        assert info.value.errno == errno.EINVAL
    finally:
        dev.destroy_model("slow")
