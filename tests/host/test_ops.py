"""Native tests of ``driver/flax_ops.c`` against independent references: numpy and jax.nn.

The C is the kernel's own file, built for user space by ``bindings/ops_build.py``
(sanitized by default; see ``conftest.py`` for how the tests are run).

References:
- flax_normalize: numpy float32 ``(x.astype(f32) * f32(scale) - mean) / std``,
  bit for bit (NaN results: any NaN);
- flax_expf_bits: exp in float64 rounded to float32 (correctly rounded but for
  vanishingly rare double-rounding cases, which the exhaustive C harness rules
  out), required exactly; numpy's float32 exp, required within 3 ulps, the bound
  numpy's own validation data gives for it
  (numpy/_core/tests/data/umath-validation-set-exp.csv);
- flax_softmax: jax.nn.softmax (float32; atol 1e-6, rtol 1e-5) and a float64
  numpy softmax (within one float32 rounding);
- flax_topk: ``np.argsort(-x, kind="stable")[:k]``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax
import jax.numpy as jnp

U32 = npt.NDArray[np.uint32]
F32 = npt.NDArray[np.float32]

UINT8 = 1
FLOAT32 = 2
INT8 = 3
UINT16 = 4
INT16 = 5
INT32 = 6
FLOAT16 = 7
EINVAL = 22

#: FLAX_DTYPE_* and the numpy dtype of each.
DTYPES: dict[int, type[np.generic]] = {
    UINT8: np.uint8,
    FLOAT32: np.float32,
    INT8: np.int8,
    UINT16: np.uint16,
    INT16: np.int16,
    INT32: np.int32,
    FLOAT16: np.float16,
}
TOPK_MAX = 64


class Ops(Protocol):
    """What the ``ops`` fixture (conftest.py) gives: the loaded extension."""

    @property
    def ffi(self) -> Any: ...
    @property
    def lib(self) -> Any: ...
    @property
    def path(self) -> Path: ...
    @property
    def sanitized(self) -> bool: ...


HYP = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- helpers


def bits(a: Any) -> U32:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def f32(values: Any) -> F32:
    """A float32 array (np.float32(list) works too, but is typed as a scalar)."""
    return np.array(values, dtype=np.float32)


def f32bits(x: float) -> int:
    return int(np.array(x, dtype=np.float32).view(np.uint32))


def floats(b: Any) -> F32:
    return np.ascontiguousarray(b, dtype=np.uint32).view(np.float32)


def ordered(b: U32) -> npt.NDArray[np.int64]:
    """Integers in the order of the floats whose bits are ``b``: differences are ulps."""
    i = b.astype(np.int64)
    return np.where(i & 0x80000000, -(i & 0x7FFFFFFF), i)


def ulps(a: U32, b: U32) -> npt.NDArray[np.int64]:
    d: npt.NDArray[np.int64] = np.abs(ordered(a) - ordered(b))
    return d


def assert_same_bits(got: F32, want: F32) -> None:
    """Bit-identical, except that any NaN matches any NaN."""
    assert got.shape == want.shape
    gb, wb = bits(got).ravel(), bits(want).ravel()
    both_nan = np.isnan(got.ravel()) & np.isnan(want.ravel())
    bad = np.flatnonzero((gb != wb) & ~both_nan)
    if bad.size:
        i = int(bad[0])
        pytest.fail(
            f"{bad.size} of {gb.size} elements differ; first at flat index {i}: "
            f"got {got.ravel()[i]!r} (0x{gb[i]:08x}), want {want.ravel()[i]!r} (0x{wb[i]:08x})"
        )


def expf(ops: Ops, x: U32) -> U32:
    x = np.ascontiguousarray(x, dtype=np.uint32)
    y = np.empty_like(x)
    ops.lib.flaxtest_expf_array(
        ops.ffi.from_buffer("uint32_t[]", x), ops.ffi.from_buffer("uint32_t[]", y), x.size
    )
    return y


def exp_reference(x: U32) -> U32:
    """exp in float64, rounded once to float32."""
    with np.errstate(all="ignore"):
        return bits(np.exp(floats(x).astype(np.float64)).astype(np.float32))


def exp_numpy32(x: U32) -> U32:
    with np.errstate(all="ignore"):
        return bits(np.exp(floats(x)))


class Norm:
    """A struct flax_norm and the arrays it points into (kept alive with it)."""

    def __init__(
        self, ops: Ops, scale: float, mean: F32, std: F32, inner: int = 1,
        clamp: tuple[float, float] | None = None, flags: int | None = None,
    ) -> None:  # fmt: skip
        self.mean = bits(mean).copy()
        self.std = bits(std).copy()
        assert self.mean.size == self.std.size
        lo, hi = clamp if clamp is not None else (0.0, 0.0)
        if flags is None:
            flags = 0 if clamp is None else int(ops.lib.FLAX_NORM_CLAMP)
        self.c = ops.ffi.new(
            "struct flax_norm *",
            {
                "count": self.mean.size,
                "inner": inner,
                "scale": f32bits(scale),
                "flags": flags,
                "clamp_lo": f32bits(lo),
                "clamp_hi": f32bits(hi),
                "mean": ops.ffi.from_buffer("uint32_t[]", self.mean),
                "std": ops.ffi.from_buffer("uint32_t[]", self.std),
            },
        )


def normalize(
    ops: Ops, dst: npt.NDArray[Any], src: npt.NDArray[Any], dtype: int, first: int, n: int,
    norm: Norm,
) -> int:  # fmt: skip
    return int(
        ops.lib.flax_normalize(
            ops.ffi.from_buffer(dst), ops.ffi.from_buffer(src), dtype, first, n, norm.c
        )
    )


def normalize_reference(x: npt.NDArray[Any], scale: float, mean: F32, std: F32) -> F32:
    """The numpy expression flax_normalize() must match, broadcasting mean/std by mode."""
    if mean.size == 1:
        m, s = mean[0], std[0]
    elif mean.size == x.size and (x.ndim == 1 or mean.size != x.shape[-1]):
        m, s = mean.reshape(x.shape), std.reshape(x.shape)
    else:
        m, s = mean, std  # per channel: broadcast along the last axis
    with np.errstate(all="ignore"):
        out: F32 = (x.astype(np.float32) * np.float32(scale) - m) / s
    assert out.dtype == np.float32
    return out


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def softmax(ops: Ops, x: Any) -> F32:
    buf = np.array(x, dtype=np.float32).ravel().copy()
    ops.lib.flax_softmax(ops.ffi.from_buffer(buf), buf.size)
    return buf


def softmax_f64(x: F32) -> npt.NDArray[np.float64]:
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        e = np.exp(x64 - x64.max())
        p: npt.NDArray[np.float64] = e / e.sum()
    return p


def softmax_jax(x: F32) -> F32:
    """jax.nn.softmax(x), padded with -inf to a power-of-two length (exact zeros in the
    sum, the same maximum) so that hypothesis' many lengths share a few compilations."""
    n = x.size
    padded = np.full(1 << max(n - 1, 0).bit_length(), -np.inf, np.float32)
    padded[:n] = x
    return np.asarray(jax.nn.softmax(jnp.asarray(padded)))[:n]


def topk(ops: Ops, x: F32, k: int, out_len: int | None = None) -> tuple[U32, U32]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    n_out = k if out_len is None else out_len
    out = np.full(2 * max(n_out, 1), 0xA5A5A5A5, dtype=np.uint32)
    ops.lib.flax_topk(
        ops.ffi.from_buffer(x),
        x.size,
        k,
        ops.ffi.cast("struct flax_topk_entry *", ops.ffi.from_buffer(out)),
    )
    pairs = out[: 2 * n_out].reshape(-1, 2) if n_out else out[:0].reshape(0, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def topk_reference(x: F32, k: int) -> tuple[U32, U32]:
    idx = np.argsort(-x, kind="stable")[:k].astype(np.uint32)
    return idx, bits(x)[idx]


# --------------------------------------------------------------------------- module


def test_module_variant(ops: Ops) -> None:
    """The sanitized variant is what runs unless FLAX_OPS_SANITIZE=0 says otherwise."""
    if os.environ.get("FLAX_OPS_SANITIZE", "1") != "0":
        assert ops.sanitized, "ASan runtime not loaded: see tests/host/conftest.py"
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
        assert "libasan" in maps
    for name, value in [("UINT8", UINT8), ("FLOAT32", FLOAT32), ("INT8", INT8),
                        ("UINT16", UINT16), ("INT16", INT16), ("INT32", INT32),
                        ("FLOAT16", FLOAT16)]:  # fmt: skip
        assert getattr(ops.lib, f"FLAX_DTYPE_{name}") == value
    assert ops.lib.FLAX_TOPK_MAX == TOPK_MAX
    assert ops.lib.EINVAL == EINVAL
    assert ops.ffi.sizeof("struct flax_topk_entry") == 8


# --------------------------------------------------------------------------- normalize

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
any32 = st.floats(width=32)


@st.composite
def norm_case(draw: st.DrawFn, dtype: int) -> tuple[npt.NDArray[Any], float, F32, F32]:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9))
    if dtype == UINT8:
        x = draw(hnp.arrays(np.uint8, shape))
    else:
        x = draw(hnp.arrays(np.float32, shape, elements=draw(st.sampled_from([finite32, any32]))))
    size = int(np.prod(shape))
    count = draw(st.sampled_from(sorted({1, shape[-1], size})))
    scale = draw(st.one_of(st.sampled_from([1.0, 1 / 255, 1 / 16, 2.0]), finite32, any32))
    values = st.one_of(finite32, any32)
    mean = draw(hnp.arrays(np.float32, (count,), elements=values))
    std = draw(
        hnp.arrays(
            np.float32,
            (count,),
            elements=st.one_of(st.floats(2.0**-10, 1024.0, width=32), values),
        )
    )
    return x, scale, mean, std


@HYP
@given(case=norm_case(FLOAT32), chunk=st.integers(1, 700))
def test_normalize_float32(ops: Ops, case: tuple[Any, float, F32, F32], chunk: int) -> None:
    x, scale, mean, std = case
    want = normalize_reference(x, scale, mean, std)
    norm = Norm(ops, scale, mean, std)
    src = x.ravel().copy()

    out = np.full(x.size, np.nan, np.float32)
    assert normalize(ops, out, src, FLOAT32, 0, x.size, norm) == 0
    assert_same_bits(out.reshape(x.shape), want)

    # in chunks, with the element offset selecting mean/std, as the driver calls it
    out2 = np.full(x.size, np.nan, np.float32)
    for s, e in chunks(x.size, chunk):
        assert normalize(ops, out2[s:e], src[s:e], FLOAT32, s, e - s, norm) == 0
    assert_same_bits(out2.reshape(x.shape), want)

    # in place (dst == src)
    assert normalize(ops, src, src, FLOAT32, 0, x.size, norm) == 0
    assert_same_bits(src.reshape(x.shape), want)


@HYP
@given(case=norm_case(UINT8), chunk=st.integers(1, 700))
def test_normalize_uint8(ops: Ops, case: tuple[Any, float, F32, F32], chunk: int) -> None:
    x, scale, mean, std = case
    n = x.size
    want = normalize_reference(x, scale, mean, std)
    norm = Norm(ops, scale, mean, std)

    out = np.full(n, np.nan, np.float32)
    src = x.ravel().copy()
    assert normalize(ops, out, src, UINT8, 0, n, norm) == 0
    assert_same_bits(out.reshape(x.shape), want)
    np.testing.assert_array_equal(src, x.ravel())  # the input is only read

    # widening in place: the bytes at the start of a buffer of 4n bytes
    buf = np.zeros(4 * n, np.uint8)
    buf[:n] = x.ravel()
    assert normalize(ops, buf, buf, UINT8, 0, n, norm) == 0
    assert_same_bits(buf.view(np.float32).reshape(x.shape), want)

    # in place, chunk by chunk from the last chunk (src = buf + s, dst = buf + 4 s)
    buf = np.zeros(4 * n, np.uint8)
    buf[:n] = x.ravel()
    for s, e in reversed(chunks(n, chunk)):
        assert normalize(ops, buf[4 * s : 4 * e], buf[s:e], UINT8, s, e - s, norm) == 0
    assert_same_bits(buf.view(np.float32).reshape(x.shape), want)


def test_normalize_examples(ops: Ops) -> None:
    """Hand-picked cases: the digits model's (0..16)/16 and an RGB image."""
    x = np.arange(17, dtype=np.uint8)
    mean, std = f32([0.3]), f32([0.45])
    out = np.empty(17, np.float32)
    assert normalize(ops, out, x, UINT8, 0, 17, Norm(ops, 1 / 16, mean, std)) == 0
    assert_same_bits(out, normalize_reference(x, 1 / 16, mean, std))

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mean = f32([0.485, 0.456, 0.406])
    std = f32([0.229, 0.224, 0.225])
    norm = Norm(ops, 1 / 255, mean, std)
    buf = np.zeros(4 * img.size, np.uint8)
    buf[: img.size] = img.ravel()
    assert normalize(ops, buf, buf, UINT8, 0, img.size, norm) == 0
    want = normalize_reference(img, 1 / 255, mean, std)
    assert_same_bits(buf.view(np.float32).reshape(img.shape), want)
    # ... which is not the float64 computation rounded once: the test has teeth
    exact = ((img / 255.0 - mean.astype(np.float64)) / std.astype(np.float64)).astype(np.float32)
    assert np.any(bits(exact) != bits(want))


def test_normalize_large_first(ops: Ops) -> None:
    """Pair selection (first + i) % count near the top of the u32 range."""
    count = 7
    mean = np.arange(count, dtype=np.float32)
    std = np.ones(count, np.float32)
    norm = Norm(ops, 1.0, mean, std)
    first = 0xFFFFFFFF - 20
    x = np.zeros(20, np.uint8)
    out = np.empty(20, np.float32)
    assert normalize(ops, out, x, UINT8, first, 20, norm) == 0
    pair = (first + np.arange(20, dtype=np.uint64)) % count
    want = normalize_reference(x, 1.0, mean[pair], std[pair])
    assert_same_bits(out, want)
    x32 = np.zeros(20, np.float32)
    assert normalize(ops, out, x32, FLOAT32, first, 20, norm) == 0
    assert_same_bits(out, want)


@pytest.mark.parametrize("dtype", [0, 8, 9, 0xFF, 0xFFFFFFFF])
def test_normalize_invalid_dtype(ops: Ops, dtype: int) -> None:
    norm = Norm(ops, 1.0, f32([0.0]), f32([1.0]))
    src = np.arange(8, dtype=np.float32)
    dst = np.full(8, 7.0, np.float32)
    assert normalize(ops, dst, src, dtype, 0, 8, norm) == -EINVAL
    np.testing.assert_array_equal(dst, np.full(8, 7.0, np.float32))  # untouched


def test_normalize_zero_count_and_n(ops: Ops) -> None:
    norm0 = Norm(ops, 1.0, f32([]), f32([]))
    src = np.arange(4, dtype=np.float32)
    dst = np.full(4, 7.0, np.float32)
    assert normalize(ops, dst, src, FLOAT32, 0, 4, norm0) == -EINVAL
    norm = Norm(ops, 1.0, f32([0.0]), f32([1.0]))
    assert normalize(ops, dst, src, FLOAT32, 0, 0, norm) == 0
    assert normalize(ops, dst, src, 9, 0, 0, norm) == -EINVAL  # dtype checked first
    np.testing.assert_array_equal(dst, np.full(4, 7.0, np.float32))


NORM_EXTREMES = [0.0, -0.0, 1.0, -1.0, 255.0, 65535.0, 2.0**31, -(2.0**31), 3.4e38, -3.4e38,
                 1e-45, -1e-45, 1e-38, np.inf, -np.inf, np.nan]  # fmt: skip
LAYOUTS = ["one", "last", "first", "feature"]


def dtype_elements(dtype: int, draw: st.DrawFn) -> st.SearchStrategy[Any] | None:
    """Element strategy for an input array of ``dtype`` (None: hypothesis' default,
    the full integer range with its extremes)."""
    if dtype == FLOAT32:
        return draw(st.sampled_from([finite32, any32, st.sampled_from(NORM_EXTREMES)]))
    if dtype == FLOAT16:
        return draw(st.sampled_from([st.floats(width=16), st.floats(-2048, 2048, width=16)]))
    return None


@st.composite
def norm_layout_case(draw: st.DrawFn) -> dict[str, Any]:
    """An input of any dtype and layout with the struct flax_norm that describes it."""
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "first":
        c, h, w = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
        batch = draw(st.sampled_from([0, 1, 2, 3]))
        shape: tuple[int, ...] = (c, h, w) if batch == 0 else (batch, c, h, w)
    else:
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9))
    x = draw(hnp.arrays(DTYPES[dtype], shape, elements=dtype_elements(dtype, draw)))
    size = int(np.prod(shape))
    if layout == "first":
        count, inner = shape[-3], shape[-1] * shape[-2]
    else:
        count, inner = {"one": 1, "last": shape[-1], "feature": size}[layout], 1
    extreme = st.sampled_from(NORM_EXTREMES)
    values = st.one_of(finite32, any32, extreme, st.floats(-300, 300, width=32))
    scale = draw(st.one_of(st.sampled_from([1.0, 1 / 255, 1 / 16, 2.0, 1 / 65535]), values))
    mean = draw(hnp.arrays(np.float32, (count,), elements=values))
    std = draw(hnp.arrays(np.float32, (count,), elements=st.one_of(
        st.floats(2.0**-10, 1024.0, width=32), values)))  # fmt: skip
    clamp = draw(st.one_of(st.none(), st.tuples(values, values), st.just((0.0, 1.0))))
    return {"dtype": dtype, "layout": layout, "x": x, "inner": inner, "scale": scale,
            "mean": mean, "std": std, "clamp": clamp}  # fmt: skip


def norm_layout_reference(case: dict[str, Any]) -> F32:
    """numpy float32, with mean/std broadcast by the layout (not by the C's index rule)."""
    x, mean, std = case["x"], case["mean"], case["std"]
    m: Any
    s: Any
    if case["layout"] == "one":
        m, s = mean[0], std[0]
    elif case["layout"] == "last":
        m, s = mean, std
    elif case["layout"] == "feature":
        m, s = mean.reshape(x.shape), std.reshape(x.shape)
    else:  # channels first: (C, H, W) or (N, C, H, W)
        m, s = mean[:, None, None], std[:, None, None]
    with np.errstate(all="ignore"):
        y: F32 = (x.astype(np.float32) * np.float32(case["scale"]) - m) / s
        if case["clamp"] is not None:
            lo, hi = case["clamp"]
            y = np.clip(y, np.float32(lo), np.float32(hi))
    assert y.dtype == np.float32
    return y


@HYP
@given(case=norm_layout_case(), chunk=st.integers(1, 300))
def test_normalize_layouts(ops: Ops, case: dict[str, Any], chunk: int) -> None:
    """Every dtype and layout, clamped or not, against numpy: bit for bit (NaN: any NaN),
    in one call, in chunks, and in place (widening from the start of the buffer)."""
    x, dtype = case["x"], case["dtype"]
    n, esize = x.size, x.itemsize
    want = norm_layout_reference(case)
    norm = Norm(ops, case["scale"], case["mean"], case["std"], case["inner"], case["clamp"])
    src = np.ascontiguousarray(x).ravel().copy()

    out = np.full(n, np.nan, np.float32)
    assert normalize(ops, out, src, dtype, 0, n, norm) == 0
    assert_same_bits(out.reshape(x.shape), want)
    np.testing.assert_array_equal(src.view(np.uint8), x.ravel().view(np.uint8))  # only read

    out2 = np.full(n, np.nan, np.float32)
    for s, e in chunks(n, chunk):
        assert normalize(ops, out2[s:e], src[s:e], dtype, s, e - s, norm) == 0
    assert_same_bits(out2.reshape(x.shape), want)

    # in place: the raw input at the start of a buffer of 4n bytes, one call ...
    raw = src.view(np.uint8)
    buf = np.zeros(4 * n, np.uint8)
    buf[: n * esize] = raw
    assert normalize(ops, buf, buf, dtype, 0, n, norm) == 0
    assert_same_bits(buf.view(np.float32).reshape(x.shape), want)
    # ... and chunk by chunk from the last chunk (src = buf + size * s, dst = buf + 4 s)
    buf = np.zeros(4 * n, np.uint8)
    buf[: n * esize] = raw
    for s, e in reversed(chunks(n, chunk)):
        sub = buf[esize * s : esize * e]
        assert normalize(ops, buf[4 * s : 4 * e], sub, dtype, s, e - s, norm) == 0
    assert_same_bits(buf.view(np.float32).reshape(x.shape), want)


@pytest.mark.parametrize("dtype", [INT8, UINT16, INT16, FLOAT16])
def test_normalize_every_value(ops: Ops, dtype: int) -> None:
    """Every value of the 8- and 16-bit dtypes (float16: all 65536 bit patterns,
    subnormals, infinities and NaNs), converted exactly as numpy's astype."""
    np_dtype = DTYPES[dtype]
    nbits = 8 * np.dtype(np_dtype).itemsize
    x = np.arange(1 << nbits, dtype=np.uint32).astype(f"u{nbits // 8}").view(np_dtype)
    norm = Norm(ops, 1.0, f32([0.0]), f32([1.0]))
    out = np.empty(x.size, np.float32)
    assert normalize(ops, out, x, dtype, 0, x.size, norm) == 0
    assert_same_bits(out, x.astype(np.float32))
    if dtype == FLOAT16:  # -0 stays -0, +-inf stay, subnormals are exact
        assert bits(out)[0x8000] == 0x80000000
        assert bits(out)[0x7C00] == 0x7F800000
        assert bits(out)[0xFC00] == 0xFF800000
        assert out[1] == np.float32(2.0**-24)
        np.testing.assert_array_equal(out[:1024], np.arange(1024) * 2.0**-24)
    # and with a non-trivial formula, against numpy
    norm = Norm(ops, 1 / 255, f32([0.485]), f32([0.229]), clamp=(-2.0, 2.0))
    assert normalize(ops, out, x, dtype, 0, x.size, norm) == 0
    with np.errstate(all="ignore"):
        want = (x.astype(np.float32) * np.float32(1 / 255) - np.float32(0.485)) / np.float32(0.229)
    assert_same_bits(out, np.clip(want, np.float32(-2.0), np.float32(2.0)))


def test_normalize_int32_rounds(ops: Ops) -> None:
    """int32 -> float32 is a rounding (to nearest even), as numpy's astype."""
    x = np.array([0, 1, -1, 16777216, 16777217, 16777219, -16777217, 2**31 - 1, -(2**31),
                  2**31 - 64, 2**31 - 65, 123456789], dtype=np.int32)  # fmt: skip
    norm = Norm(ops, 1.0, f32([0.0]), f32([1.0]))
    out = np.empty(x.size, np.float32)
    assert normalize(ops, out, x, INT32, 0, x.size, norm) == 0
    assert_same_bits(out, x.astype(np.float32))
    assert out[4] == 16777216.0 and out[5] == 16777220.0  # ties to even
    assert out[7] == 2.0**31
    # every int32 in a dense sample, with a formula
    rng = np.random.default_rng(5)
    y = rng.integers(-(2**31), 2**31, 1 << 16, dtype=np.int64).astype(np.int32)
    norm = Norm(ops, 2.0**-20, f32([3.0, -1.0]), f32([0.5, 7.0]))
    out = np.empty(y.size, np.float32)
    assert normalize(ops, out, y, INT32, 0, y.size, norm) == 0
    want = (y.reshape(-1, 2).astype(np.float32) * np.float32(2.0**-20) - f32([3.0, -1.0])) / f32(
        [0.5, 7.0]
    )
    assert_same_bits(out, want.ravel())


def test_normalize_channel_first_example(ops: Ops) -> None:
    """An NCHW image batch: pair (i / (H * W)) % C, by hand."""
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (2, 3, 4, 5), dtype=np.uint8)
    mean, std = f32([0.485, 0.456, 0.406]), f32([0.229, 0.224, 0.225])
    norm = Norm(ops, 1 / 255, mean, std, inner=20)
    out = np.empty(img.size, np.float32)
    assert normalize(ops, out, img, UINT8, 0, img.size, norm) == 0
    for b in range(2):
        for ch in range(3):
            want = (img[b, ch].astype(np.float32) * np.float32(1 / 255) - mean[ch]) / std[ch]
            assert_same_bits(out.reshape(img.shape)[b, ch], want)


def test_normalize_clamp_special(ops: Ops) -> None:
    """np.clip's rules: NaN stays NaN, a NaN bound gives NaN, of equal zeros x's sign."""
    x = f32([np.nan, -0.0, 0.0, 5.0, -5.0, np.inf, -np.inf, 0.5])
    for lo, hi in [(0.0, 1.0), (-0.0, -0.0), (0.0, 0.0), (-0.0, 0.0), (0.0, -0.0), (1.0, -1.0),
                   (np.nan, 1.0), (0.0, np.nan), (-np.inf, np.inf)]:  # fmt: skip
        norm = Norm(ops, 1.0, f32([0.0]), f32([1.0]), clamp=(lo, hi))
        out = np.empty(x.size, np.float32)
        assert normalize(ops, out, x, FLOAT32, 0, x.size, norm) == 0
        assert_same_bits(out, np.clip(x, np.float32(lo), np.float32(hi)))
        assert np.isnan(out[0])
    norm = Norm(ops, 1.0, f32([0.0]), f32([1.0]), clamp=(0.0, 1.0))
    out = np.empty(x.size, np.float32)
    assert normalize(ops, out, x, FLOAT32, 0, x.size, norm) == 0
    np.testing.assert_array_equal(bits(out)[1:], bits(f32([-0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.5])))


def test_normalize_invalid_params(ops: Ops) -> None:
    """Zero inner or an unknown flag: -EINVAL, nothing written."""
    src = np.arange(8, dtype=np.float32)
    dst = np.full(8, 7.0, np.float32)
    for inner, flags in [(0, 0), (0, 1), (1, 2), (1, 0x80000000), (1, 3)]:
        norm = Norm(ops, 1.0, f32([0.0]), f32([1.0]), inner=inner, flags=flags)
        assert normalize(ops, dst, src, FLOAT32, 0, 8, norm) == -EINVAL
    np.testing.assert_array_equal(dst, np.full(8, 7.0, np.float32))
    assert ops.lib.FLAX_NORM_FLAGS == ops.lib.FLAX_NORM_CLAMP == 1


def test_normalize_large_first_inner(ops: Ops) -> None:
    """(first + i) / inner % count near the top of the u32 range."""
    count, inner = 5, 3
    mean = np.arange(count, dtype=np.float32)
    norm = Norm(ops, 1.0, mean, np.ones(count, np.float32), inner=inner)
    first = 0xFFFFFFFF - 40
    x = np.zeros(40, np.int16)
    out = np.empty(40, np.float32)
    assert normalize(ops, out, x, INT16, first, 40, norm) == 0
    pair = (first + np.arange(40, dtype=np.uint64)) // inner % count
    assert_same_bits(out, (x.astype(np.float32) - mean[pair]) / np.float32(1.0))


# --------------------------------------------------------------------------- expf

SPECIAL_EXP: list[tuple[int, int]] = [
    (0x00000000, 0x3F800000),  # +0 -> 1
    (0x80000000, 0x3F800000),  # -0 -> 1
    (0x7F800000, 0x7F800000),  # +inf -> +inf
    (0xFF800000, 0x00000000),  # -inf -> +0
    (0x7F7FFFFF, 0x7F800000),  # FLT_MAX -> +inf
    (0xFF7FFFFF, 0x00000000),  # -FLT_MAX -> +0
    (0x00000001, 0x3F800000),  # smallest subnormal -> 1
    (0x80000001, 0x3F800000),
    (0x3F800000, 0x402DF854),  # e
    (0x42B17217, 0x7F7FFF84),  # 88.7228317: largest finite result
    (0x42B17218, 0x7F800000),  # 88.7228394: overflow
    (0xC2CFF1B4, 0x00000001),  # -103.972076: smallest subnormal
    (0xC2CFF1B5, 0x00000000),  # -103.972084: below half of it
    (0xC2AEAC4F, 0x00800026),  # -87.3365402: last normal result
    (0xC2AEAC50, 0x007FFFE6),  # -87.3365479: first subnormal result
]


@pytest.mark.parametrize(("x", "want"), SPECIAL_EXP, ids=[f"0x{x:08x}" for x, _ in SPECIAL_EXP])
def test_expf_special(ops: Ops, x: int, want: int) -> None:
    assert int(exp_reference(np.array([x], dtype=np.uint32))[0]) == want  # the table is right
    assert ops.lib.flax_expf_bits(x) == want


@pytest.mark.parametrize("x", [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF812345, 0x7FFFFFFF])
def test_expf_nan(ops: Ops, x: int) -> None:
    y = ops.lib.flax_expf_bits(x)
    assert (y & 0x7FFFFFFF) > 0x7F800000, f"exp(NaN 0x{x:08x}) = 0x{y:08x}"
    assert y & 0x00400000, "a quiet NaN"


@HYP
@given(x=st.floats(width=32))
def test_expf_hypothesis(ops: Ops, x: float) -> None:
    xb = bits(f32([x]))
    got = int(ops.lib.flax_expf_bits(int(xb[0])))
    if np.isnan(x):
        assert (got & 0x7FFFFFFF) > 0x7F800000
        return
    assert got == int(exp_reference(xb)[0])


def _expf_compare(ops: Ops, xb: U32, stats: dict[str, int]) -> None:
    xb = xb[(xb & 0x7FFFFFFF) <= 0x7F800000]  # NaNs have their own test
    got = expf(ops, xb)
    ref = exp_reference(xb)
    npy = exp_numpy32(xb)
    d_ref = ulps(got, ref)
    d_np = ulps(got, npy)
    stats["n"] += xb.size
    stats["not_cr"] += int(np.count_nonzero(d_ref))
    stats["max_ulp_ref"] = max(stats["max_ulp_ref"], int(d_ref.max(initial=0)))
    stats["diff_numpy"] += int(np.count_nonzero(d_np))
    stats["diff_numpy_gt1"] += int(np.count_nonzero(d_np > 1))
    stats["max_ulp_numpy"] = max(stats["max_ulp_numpy"], int(d_np.max(initial=0)))
    stats["numpy_not_cr"] += int(np.count_nonzero(ulps(npy, ref)))
    bad = np.flatnonzero(d_ref)
    assert bad.size == 0, (
        f"exp(0x{xb[bad[0]]:08x}) = 0x{got[bad[0]]:08x}, correctly rounded 0x{ref[bad[0]]:08x}"
    )
    worst = int(np.argmax(d_np)) if d_np.size else 0
    assert d_np.size == 0 or d_np[worst] <= 3, (
        f"exp(0x{xb[worst]:08x}): {d_np[worst]} ulps from numpy's float32 exp"
    )


def _expf_report(report: list[str], what: str, stats: dict[str, int]) -> None:
    report.append(
        f"expf {what}: {stats['n']} inputs; not correctly rounded (vs float64 exp rounded): "
        f"{stats['not_cr']} (max {stats['max_ulp_ref']} ulp); differs from numpy float32 exp: "
        f"{stats['diff_numpy']} (>1 ulp: {stats['diff_numpy_gt1']}, max "
        f"{stats['max_ulp_numpy']} ulp); numpy float32 exp not correctly rounded: "
        f"{stats['numpy_not_cr']}"
    )


def _new_stats() -> dict[str, int]:
    keys = ("n", "not_cr", "max_ulp_ref", "diff_numpy", "diff_numpy_gt1", "max_ulp_numpy")
    return dict.fromkeys((*keys, "numpy_not_cr"), 0)


def test_expf_dense(ops: Ops, ops_report: list[str]) -> None:
    """2^22 inputs spread over all 2^32 bit patterns, plus every input near the
    overflow, FLT_MIN and underflow-to-0 thresholds, and a sweep of tiny |x|."""
    rng = np.random.default_rng(12345)
    stride = 1 << 10
    sample = np.arange(0, 1 << 32, stride, dtype=np.uint64) + rng.integers(0, stride, 1 << 22)
    edges = [
        np.arange(0x42B10000, 0x42B20000, dtype=np.uint64),  # 88.5 .. 89: overflow
        np.arange(0xC2AE0000, 0xC2B00000, dtype=np.uint64),  # around -87.34: FLT_MIN
        np.arange(0xC2CF0000, 0xC2D00000, dtype=np.uint64),  # around -103.97: 0
        np.arange(0x32800000, 0x33800000, 0x100, dtype=np.uint64),  # |x| ~ 2^-26..2^-24
        np.arange(0xB2800000, 0xB3800000, 0x100, dtype=np.uint64),
    ]
    xb = np.concatenate([sample, *edges]).astype(np.uint32)
    stats = _new_stats()
    for part in np.array_split(xb, 8):
        _expf_compare(ops, part, stats)
    _expf_report(ops_report, "dense sample", stats)


def _run_harness(exe: Path, stride: int, report: list[str]) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    res = subprocess.run(
        [str(exe), str(stride), str(min(os.cpu_count() or 1, 64))],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    fields = dict(f.split("=", 1) for f in res.stdout.split())
    report.append(f"expf C harness (stride {stride}, vs correctly rounded): {res.stdout.strip()}")
    return {k: int(v, 0) for k, v in fields.items() if k != "bad"}


def test_expf_harness_strided(expf_harness: Path, ops_report: list[str]) -> None:
    """The C harness (libm + long double reference), every 97th input."""
    r = _run_harness(expf_harness, 97, ops_report)
    assert r["checked"] == -(-(1 << 32) // 97)
    assert r["mismatches"] == 0
    assert r["nan_errors"] == 0


@pytest.mark.exhaustive
def test_expf_exhaustive_harness(expf_harness: Path, ops_report: list[str]) -> None:
    r = _run_harness(expf_harness, 1, ops_report)
    assert r["checked"] == 1 << 32
    assert r["mismatches"] == 0
    assert r["nan_errors"] == 0


@pytest.mark.exhaustive
def test_expf_exhaustive_numpy(ops: Ops, ops_report: list[str]) -> None:
    stats = _new_stats()
    step = 1 << 24
    for start in range(0, 1 << 32, step):
        _expf_compare(ops, np.arange(start, start + step, dtype=np.uint64).astype(np.uint32), stats)
    assert stats["n"] == (1 << 32) - 2 * (0x7FFFFF)  # every non-NaN input
    _expf_report(ops_report, "all 2^32 inputs", stats)


# --------------------------------------------------------------------------- softmax


def check_softmax(ops: Ops, x: F32) -> F32:
    got = softmax(ops, x)
    ref = softmax_f64(x)
    # within one float32 rounding of the float64 softmax
    np.testing.assert_allclose(got, ref, rtol=2.0**-23, atol=2.0**-149)
    np.testing.assert_allclose(got, softmax_jax(x), rtol=1e-5, atol=1e-6)
    return got


@HYP
@given(
    x=hnp.arrays(
        np.float32,
        st.integers(1, 300),
        elements=st.one_of(
            st.floats(-1e4, 1e4, width=32),
            st.floats(-30, 30, width=32),
            st.sampled_from([0.0, -0.0, 1e4, -1e4]),
        ),
    )
)
def test_softmax_hypothesis(ops: Ops, x: F32) -> None:
    got = check_softmax(ops, x)
    assert abs(float(got.astype(np.float64).sum()) - 1.0) <= x.size * 2.0**-24 + 1e-7


@HYP
@given(x=hnp.arrays(np.float32, st.integers(1, 50), elements=finite32))
def test_softmax_full_range(ops: Ops, x: F32) -> None:
    """Any finite float32, up to ±3.4e38 (jax's float32 x - max may overflow: not compared)."""
    got = softmax(ops, x)
    np.testing.assert_allclose(got, softmax_f64(x), rtol=2.0**-23, atol=2.0**-149)


@pytest.mark.parametrize(
    "x",
    [
        [0.0],
        [1e4],
        [-1e4],
        [3.4e38],
        [-3.4e38],
        [1e4, -1e4],
        [-1e4, 1e4],
        [1e4, 1e4],
        [-1e4, -1e4, -1e4],
        [1e4, 1e4 - 1, 1e4 - 20, -1e4],
        [-1e4, -1e4 + 1, -1e4 + 2],
        [88.0, 0.0, -88.0, -104.0, -200.0],
        [0.0] * 1000,
    ],
)
def test_softmax_extreme(ops: Ops, x: list[float]) -> None:
    got = check_softmax(ops, f32(x))
    if len(x) == 1:
        assert bits(got)[0] == 0x3F800000  # exactly 1.0


def test_softmax_large(ops: Ops) -> None:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(100_000) * 10).astype(np.float32)
    got = check_softmax(ops, x)
    assert abs(float(got.astype(np.float64).sum()) - 1.0) < 1e-6


def test_softmax_neg_inf(ops: Ops) -> None:
    x = f32([-np.inf, 1.0, -np.inf, 2.0, -np.inf])
    got = softmax(ops, x)
    assert np.all(bits(got)[[0, 2, 4]] == 0)  # exactly +0
    np.testing.assert_allclose(got, softmax_jax(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[[1, 3]], softmax_f64(f32([1.0, 2.0])), rtol=2.0**-23)


@pytest.mark.parametrize(
    "x",
    [
        [np.nan],
        [1.0, np.nan, 2.0],
        [np.nan, -np.inf],
        [-np.nan, 3.0],
        [-np.inf],  # all -inf: -inf - -inf is NaN (as numpy and jax)
        [-np.inf, -np.inf, -np.inf],
        [np.inf],  # +inf: inf - inf is NaN (as numpy and jax)
        [1.0, np.inf, -np.inf],
    ],
)
def test_softmax_nan(ops: Ops, x: list[float]) -> None:
    xf = f32(x)
    got = softmax(ops, xf)
    assert np.all(bits(got) == 0x7FC00000), got
    with np.errstate(all="ignore"):
        assert np.all(np.isnan(softmax_jax(xf)))  # the references agree
        assert np.all(np.isnan(softmax_f64(xf)))


# --------------------------------------------------------------------------- top-k

TIE_POOL = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, 1e-45, -1e-45, 3.4e38]


@st.composite
def topk_case(draw: st.DrawFn) -> tuple[F32, int]:
    n = draw(st.integers(1, 400))
    elements = draw(
        st.sampled_from(
            [
                st.sampled_from(TIE_POOL),
                st.one_of(st.sampled_from(TIE_POOL), any32),
                any32,
                st.integers(-3, 3).map(float),
            ]
        )
    )
    x = draw(hnp.arrays(np.float32, n, elements=elements))
    k = draw(st.one_of(st.integers(1, min(n, TOPK_MAX)), st.just(min(n, TOPK_MAX))))
    return x, k


@HYP
@given(case=topk_case())
def test_topk_hypothesis(ops: Ops, case: tuple[F32, int]) -> None:
    x, k = case
    idx, score = topk(ops, x, k)
    want_idx, want_score = topk_reference(x, k)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(score, want_score)  # original bits, NaN payloads too


@pytest.mark.parametrize("n", [1, 2, 5, 63, 64])
def test_topk_k_equals_n(ops: Ops, n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.choice(f32(TIE_POOL), n)
    idx, score = topk(ops, x, n)
    want_idx, want_score = topk_reference(x, n)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(score, want_score)


def test_topk_order_examples(ops: Ops) -> None:
    x = f32([np.nan, -np.inf, 1.0, -0.0, np.inf, 1.0, 0.0, np.nan, -5.0])
    idx, _ = topk(ops, x, 9)
    np.testing.assert_array_equal(idx, [4, 2, 5, 3, 6, 8, 1, 0, 7])


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.standard_normal(100_000).astype(np.float32),
        lambda rng: np.arange(100_000, dtype=np.float32),  # ascending: every element enters
        lambda rng: np.arange(100_000, 0, -1).astype(np.float32),
        lambda rng: rng.integers(0, 50, 100_000).astype(np.float32),  # many ties
    ],
    ids=["normal", "ascending", "descending", "ties"],
)
def test_topk_large(ops: Ops, make: Callable[[np.random.Generator], F32]) -> None:
    x = make(np.random.default_rng(3))
    idx, score = topk(ops, x, TOPK_MAX)
    want_idx, want_score = topk_reference(x, TOPK_MAX)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(score, want_score)


def test_topk_out_of_contract(ops: Ops) -> None:
    """k > n: n real entries, the rest zeroed; k = 0 writes nothing."""
    x = f32([3.0, 1.0, 2.0])
    idx, score = topk(ops, x, 5)
    np.testing.assert_array_equal(idx, [0, 2, 1, 0, 0])
    np.testing.assert_array_equal(score, [*bits(f32([3.0, 2.0, 1.0])), 0, 0])
    idx, score = topk(ops, x, 0, out_len=1)
    assert idx[0] == 0xA5A5A5A5
    assert score[0] == 0xA5A5A5A5
    y = np.arange(100, dtype=np.float32)
    idx, _ = topk(ops, y, TOPK_MAX + 2)
    np.testing.assert_array_equal(idx[:TOPK_MAX], np.arange(99, 99 - TOPK_MAX, -1))
    np.testing.assert_array_equal(idx[TOPK_MAX:], [0, 0])
