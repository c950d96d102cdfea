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
EINVAL = 22
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
    assert ops.lib.FLAX_DTYPE_UINT8 == UINT8
    assert ops.lib.FLAX_DTYPE_FLOAT32 == FLOAT32
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
