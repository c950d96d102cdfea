"""uint8 normalisation through the table and through the vector loop (issue 21).

The module times both at load and keeps the faster (``norm_table=-1``, the
default: under TCG the table wins, on hardware the vector loops do);
``norm_table=0`` and ``=1`` force one.  Each forced path, loaded for real,
must give numpy's ``(x.astype(float32) * scale - mean) / std`` (then
``np.clip``) bit for bit: per channel with the channels last and first, one
value, clamped, and with more pairs than the table takes (per element).  The
worker copies (the identity model), so what comes back is what the kernel made.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pyflaxdev

KO = os.environ.get("FLAX_KO", "")
PARAM = Path("/sys/module/flaxdev/parameters/norm_table")
SCALE = 1 / 255
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _load(*params: str) -> subprocess.CompletedProcess[str]:
    if Path("/sys/module/flaxdev").exists():
        r = _run("rmmod", "flaxdev")
        assert r.returncode == 0, r.stderr
    return _run("insmod", KO, *params)


@pytest.fixture(autouse=True)
def default_module() -> Iterator[None]:
    assert KO, "FLAX_KO is not set: run this suite through kbuild/vm-run"
    yield
    r = _load()
    assert r.returncode == 0, r.stderr


def _numpy(x: np.ndarray, m: Any, s: Any, clamp: tuple[float, float] | None) -> np.ndarray:
    y = (x.astype(np.float32) * np.float32(SCALE) - m) / s
    if clamp is not None:
        y = np.clip(y, np.float32(clamp[0]), np.float32(clamp[1]))
    return np.asarray(y, np.float32)


def _cases() -> list[tuple[str, tuple[int, ...], Any, Any, dict[str, Any]]]:
    rng = np.random.default_rng(21)
    feat_m = rng.standard_normal(8 * 8 * 3).astype(np.float32)
    feat_s = (rng.random(8 * 8 * 3) + 0.5).astype(np.float32)
    return [
        ("last", (32, 32, 3), MEAN, STD, {}),
        ("first", (3, 32, 32), MEAN[:, None, None], STD[:, None, None], {"channel_first": True}),
        ("one", (40, 40), MEAN[:1], STD[:1], {}),
        ("clamp", (32, 32, 3), MEAN, STD, {"clamp": (-1.5, 1.5)}),
        ("feature", (8, 8, 3), feat_m.reshape(8, 8, 3), feat_s.reshape(8, 8, 3), {}),
    ]


def _check_every_case() -> None:
    rng = np.random.default_rng(5)
    with pyflaxdev.open() as dev:
        for name, shape, m, s, kw in _cases():
            img = rng.integers(0, 256, shape, dtype=np.uint8)
            img.flat[:256] = np.arange(256)  # every value, in every pair of a small tensor
            want = _numpy(img, m, s, kw.get("clamp"))
            norm = (SCALE, np.ravel(m).tolist(), np.ravel(s).tolist())
            model = f"nt-{name}"
            dev.create_model(model, shape, np.uint8, shape, normalize=norm, post=(), nslots=2, **kw)
            try:
                with (
                    pyflaxdev.serving(None, None, model=model, identity=True, batch_sizes=(1,)),
                    pyflaxdev.open_model(model) as handle,
                ):
                    got = np.asarray(handle.infer(img), np.float32).reshape(shape)
            finally:
                dev.destroy_model(model)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), name)


@pytest.mark.parametrize("value", ["0", "1"])
def test_each_forced_path_gives_numpy_bits(value: str) -> None:
    r = _load(f"norm_table={value}")
    assert r.returncode == 0, r.stderr
    assert PARAM.read_text().strip() == value
    _check_every_case()


def test_the_default_chooses_and_bad_values_are_refused() -> None:
    r = _load()
    assert r.returncode == 0, r.stderr
    assert PARAM.read_text().strip() in ("0", "1")  # the timing's choice, read back
    for bad in ("2", "-2"):
        r = _load(f"norm_table={bad}")
        assert r.returncode != 0 and "Invalid param" in r.stderr, r.stderr
        assert not Path("/sys/module/flaxdev").exists()
