"""The FPU-section code through the real module, bit for bit against numpy.

Normalisation runs in the kernel's SSE2 or AVX2 loop (whichever the VM's CPU
offers) in pieces of a bounded number of elements; mean pooling over rows wider
than one FPU piece (FLAX_FPU_CHUNK) goes column piece by column piece.  The
worker is the identity, so what comes back is what the kernel made.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import pyflaxdev


@contextlib.contextmanager
def _served(
    dev: pyflaxdev.Device, name: str, shape: tuple[int, ...], dtype: Any, out: tuple[int, ...],
    **kw: Any,
) -> Iterator[pyflaxdev.Model]:  # fmt: skip
    model = dev.create_model(name, shape, dtype, out, nslots=2, **kw)
    try:
        with pyflaxdev.serving(lambda p, x: x, None, model=name, batch_sizes=(1,)):
            yield model
    finally:
        dev.destroy_model(name)


def test_mean_pool_over_rows_wider_than_a_piece(dev: pyflaxdev.Device) -> None:
    t, d = 5, 3000
    x = np.random.default_rng(3).standard_normal((t, d)).astype(np.float32)
    with _served(dev, "widepool", (t, d), np.float32, (t, d), post=("mean_pool",)) as model:
        got = np.asarray(model.infer(x), np.float32)
    assert got.shape == (d,)
    # the kernel sums in doubles and rounds once: numpy's float64 mean, rounded
    np.testing.assert_allclose(got, x.astype(np.float64).mean(axis=0), rtol=2e-7, atol=1e-12)


@pytest.mark.parametrize("layout", ["last", "first", "one", "last_clamp"])
def test_normalize_through_the_device(dev: pyflaxdev.Device, layout: str) -> None:
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    scale = np.float32(1 / 255)
    shape = (3, 96, 96) if layout == "first" else (96, 96, 3)
    img = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    kw: dict[str, Any] = {"post": ()}
    m: Any = mean[:, None, None] if layout == "first" else mean
    s: Any = std[:, None, None] if layout == "first" else std
    if layout == "one":
        kw["normalize"] = (float(scale), [0.5], [0.25])
        m, s = np.float32(0.5), np.float32(0.25)
    else:
        kw["normalize"] = (float(scale), mean.tolist(), std.tolist())
    if layout == "first":
        kw["channel_first"] = True
    if layout == "last_clamp":
        kw["clamp"] = (-1.5, 1.5)
    want = (img.astype(np.float32) * scale - m) / s
    if layout == "last_clamp":
        want = np.clip(want, np.float32(-1.5), np.float32(1.5))
    with _served(dev, f"norm_{layout}", shape, np.uint8, shape, **kw) as model:
        got = np.asarray(model.infer(img), np.float32).reshape(shape)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
