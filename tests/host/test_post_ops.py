"""Native tests of the chunkable postprocessing of ``driver/flax_ops.c``.

The kernel runs every op in pieces of at most FLAX_FPU_CHUNK elements, each in its
own FPU section, with the state between pieces in small structs.  So every op is
checked twice: against an independent reference (numpy in float64, jax.nn, Python's
``math.fsum``/``math.log1p``), and, run in random chunk sizes, against its own
one-call result, bit for bit.

References and bounds:
- softmax (passes): float64 numpy within one float32 rounding, jax.nn.softmax
  within atol 1e-6 / rtol 1e-5;
- log_softmax: ``d - log1p(nmax - 1 + fsum(exp(d < 0)))`` in float64 (d = x - max)
  rounded to float32, within 1 ulp; jax.nn.log_softmax within rtol 1e-5 and atol
  1e-6 + n * 2^-23 (jax adds the n exponentials in float32);
- argmax (flax_topk, k = 1): np.argmax without NaN, np.nanargmax with some NaN,
  index 0 when all are NaN;
- sigmoid: float64 ``1 / (1 + exp(-x))`` rounded to float32, within 1 ulp (and
  counted: how many differ at all); jax.nn.sigmoid within rtol 1e-6;
- threshold: ``np.flatnonzero(x >= thr)``, exactly;
- mean pooling: exact column sums (``math.fsum``) / max(count, 1), within 1 float32
  ulp plus the double summation bound ``count * 2^-52 * sum|x| / count``;
- L2 normalisation: float64 ``x / max(sqrt(sum(x^2)), float32(1e-12))`` rounded to
  float32, within 1 ulp;
- sqrt: ``np.sqrt`` on float64 (the hardware's correctly rounded square root), bit
  for bit, NaN payloads included.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_ops import (
    F32,
    HYP,
    TIE_POOL,
    TOPK_MAX,
    U32,
    Ops,
    any32,
    assert_same_bits,
    bits,
    f32,
    f32bits,
    finite32,
    floats,
    softmax,
    softmax_f64,
    softmax_jax,
    topk,
    ulps,
)

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax
import jax.numpy as jnp

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
QNAN = 0x7FC00000

#: Chunk sizes for the chunked runs: each pass cycles through its own list.
chunk_sizes = st.lists(st.integers(1, 97), min_size=1, max_size=6)


def cuts(n: int, sizes: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) pieces of range(n), of the sizes given, cycled."""
    out, s, i = [], 0, 0
    while s < n:
        e = min(n, s + sizes[i % len(sizes)])
        out.append((s, e))
        s, i = e, i + 1
    return out


def buf(ops: Ops, a: npt.NDArray[Any]) -> Any:
    return ops.ffi.from_buffer(a)


def ulp32(x: F32) -> F32:
    return np.spacing(np.abs(x).astype(np.float32)).astype(np.float32)


# --------------------------------------------------------------------------- softmax passes


def smx(ops: Ops, x: F32, log: bool, sizes: Sequence[Sequence[int]] | None = None) -> F32:
    """The three passes of struct flax_smx, each in its own chunks (one call if None)."""
    b = np.ascontiguousarray(x, dtype=np.float32).ravel().copy()
    n = b.size
    plan = [[n or 1]] * 3 if sizes is None else sizes
    s = ops.ffi.new("struct flax_smx *")
    ops.lib.flax_smx_init(s)
    assert s.max == 0xFF800000 and s.flags == 0 and s.sum == 0 and s.nmax == 0
    for lo, hi in cuts(n, plan[0]):
        ops.lib.flax_smx_max(s, buf(ops, b[lo:hi]), hi - lo)
    for lo, hi in cuts(n, plan[1]):
        ops.lib.flax_smx_sum(s, buf(ops, b[lo:hi]), hi - lo)
    for lo, hi in cuts(n, plan[2]):
        ops.lib.flax_smx_apply(s, buf(ops, b[lo:hi]), hi - lo, int(log))
    return b


def log_softmax_ref32(x: F32) -> F32:
    """log_softmax_ref rounded to float32 (-inf where d - log is below -FLT_MAX)."""
    with np.errstate(over="ignore"):
        return log_softmax_ref(x).astype(np.float32)


def log_softmax_ref(x: F32) -> F64:
    """float64 log_softmax with an accurate log of the sum: log1p of all but the 1 of
    one maximum (a naive log(sum) loses the tiny terms when the rest is below 2^-53)."""
    x64 = x.astype(np.float64)
    d = x64 - x64.max()
    nmax = int(np.count_nonzero(d == 0))
    rest = math.fsum(np.exp(d[d < 0]).tolist())
    out: F64 = d - math.log1p(nmax - 1 + rest)
    return out


def log_softmax_jax(x: F32) -> F32:
    n = x.size
    padded = np.full(1 << max(n - 1, 0).bit_length(), -np.inf, np.float32)
    padded[:n] = x
    return np.asarray(jax.nn.log_softmax(jnp.asarray(padded)))[:n]


logits = hnp.arrays(
    np.float32,
    st.integers(1, 400),
    elements=st.one_of(
        st.floats(-1e4, 1e4, width=32),
        st.floats(-30, 30, width=32),
        st.sampled_from([0.0, -0.0, 1e4, -1e4, -np.inf, 3.0]),
    ),
).filter(lambda x: bool(np.isfinite(x).any()))


@HYP
@given(x=logits, sizes=st.tuples(chunk_sizes, chunk_sizes, chunk_sizes))
def test_softmax_chunked(ops: Ops, x: F32, sizes: tuple[list[int], ...]) -> None:
    one = softmax(ops, x)  # flax_softmax(): the passes in one call each
    assert_same_bits(smx(ops, x, False), one)
    assert_same_bits(smx(ops, x, False, sizes), one)
    np.testing.assert_allclose(one, softmax_f64(x), rtol=2.0**-23, atol=2.0**-149)
    np.testing.assert_allclose(one, softmax_jax(x), rtol=1e-5, atol=1e-6)


@HYP
@given(x=logits, sizes=st.tuples(chunk_sizes, chunk_sizes, chunk_sizes))
def test_log_softmax(ops: Ops, x: F32, sizes: tuple[list[int], ...]) -> None:
    got = smx(ops, x, True)
    assert_same_bits(smx(ops, x, True, sizes), got)
    fin = np.isfinite(x)
    assert np.all(bits(got)[~fin] == 0xFF800000)  # -inf in, -inf out
    d = ulps(bits(got[fin]), bits(log_softmax_ref32(x)[fin]))
    assert d.max(initial=0) <= 1, f"{d.max()} ulps at {np.argmax(d)}"
    # jax sums the n exponentials in float32: its log(sum) is off by up to ~n * 2^-24
    np.testing.assert_allclose(got, log_softmax_jax(x), rtol=1e-5, atol=1e-6 + x.size * 2.0**-23)


@HYP
@given(x=hnp.arrays(np.float32, st.integers(1, 60), elements=finite32))
def test_log_softmax_full_range(ops: Ops, x: F32) -> None:
    """Any finite float32 logits, up to +-3.4e38."""
    got = smx(ops, x, True)
    d = ulps(bits(got), bits(log_softmax_ref32(x)))
    assert d.max() <= 1


@pytest.mark.parametrize("gap", [20.0, 30.0, 40.0, 80.0, 103.0])
def test_log_softmax_tiny_rest(ops: Ops, gap: float) -> None:
    """The maximum's log_softmax is -log1p(e^-gap + ...): a naive float64 log(sum)
    gets it wrong by many ulps; flax_smx_apply keeps it within 1."""
    x = f32([0.0, -gap, -gap - 1.0, -1e4])
    got = smx(ops, x, True)
    ref = log_softmax_ref32(x)
    assert ulps(bits(got), bits(ref)).max() <= 1
    assert got[0] < 0  # not 0: the tiny rest is not lost
    if gap in (30.0, 40.0):
        x64 = x.astype(np.float64)
        naive = (x64 - np.log(np.exp(x64).sum())).astype(np.float32)
        assert ulps(bits(naive[:1]), bits(ref[:1]))[0] > 1  # the test has teeth


@pytest.mark.parametrize(
    "x",
    [
        [0.0],
        [1e4, -1e4],
        [-1e4, -1e4 + 1, -1e4 + 2],
        [3.4e38, -3.4e38],
        [88.0, 0.0, -88.0, -104.0, -200.0],
        [5.0, 5.0, 5.0],
        [-0.0, 0.0],
        [0.0] * 1000,
    ],
)
def test_log_softmax_examples(ops: Ops, x: list[float]) -> None:
    xf = f32(x)
    got = smx(ops, xf, True)
    assert ulps(bits(got), bits(log_softmax_ref32(xf))).max() <= 1
    np.testing.assert_allclose(got, log_softmax_jax(xf), rtol=1e-5, atol=1e-6)
    if len(x) == 1:
        assert bits(got)[0] == 0  # exactly +0
    np.testing.assert_allclose(np.exp(got.astype(np.float64)).sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "x",
    [
        [np.nan],
        [1.0, np.nan, 2.0],
        [-np.nan, 3.0],
        [-np.inf],
        [-np.inf, -np.inf],
        [np.inf],
        [1.0, np.inf, -np.inf],
    ],
)
@pytest.mark.parametrize("log", [False, True])
def test_smx_nan(ops: Ops, x: list[float], log: bool) -> None:
    """NaN or +inf in, or all -inf: every output NaN (0x7fc00000), as numpy and jax."""
    xf = f32(x)
    got = smx(ops, xf, log)
    assert np.all(bits(got) == QNAN), got
    assert np.all(bits(smx(ops, xf, log, [[1], [1], [1]])) == QNAN)
    ref = log_softmax_jax(xf) if log else softmax_jax(xf)
    assert np.all(np.isnan(ref))


def test_smx_apply_without_sum(ops: Ops) -> None:
    """Misuse (pass 3 straight after init): NaN, not a crash or a division by zero."""
    s = ops.ffi.new("struct flax_smx *")
    ops.lib.flax_smx_init(s)
    b = f32([1.0, 2.0])
    ops.lib.flax_smx_apply(s, buf(ops, b), 2, 1)
    assert np.all(bits(b) == QNAN)
    ops.lib.flax_softmax(ops.ffi.NULL, 0)  # n = 0 touches nothing


def test_softmax_large_chunked(ops: Ops) -> None:
    """A vector of 2^20 floats in FLAX_FPU_CHUNK pieces, as the kernel runs it."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(1 << 20) * 8).astype(np.float32)
    chunk = int(ops.lib.FLAX_FPU_CHUNK)
    plan = [[chunk]] * 3
    got = smx(ops, x, False, plan)
    assert_same_bits(got, smx(ops, x, False))
    np.testing.assert_allclose(got, softmax_f64(x), rtol=2.0**-23, atol=2.0**-149)
    lg = smx(ops, x, True, plan)
    assert ulps(bits(lg), bits(log_softmax_ref32(x))).max() <= 1


# --------------------------------------------------------------------------- argmax, top-k


@HYP
@given(
    x=hnp.arrays(
        np.float32,
        st.integers(1, 300),
        elements=st.one_of(st.sampled_from(TIE_POOL), any32, st.integers(-3, 3).map(float)),
    )
)
def test_argmax(ops: Ops, x: F32) -> None:
    """k = 1 is argmax: np.argmax (first of equal maxima, -0 == +0) without NaN;
    with NaN, NaN is never chosen over a number (np.nanargmax); all NaN: index 0."""
    idx, score = topk(ops, x, 1)
    nan = np.isnan(x)
    if not nan.any():
        want = int(np.argmax(x))
        # jax agrees (padded with -inf to a power-of-two length: a few compilations),
        # except with subnormals: XLA on the CPU flushes them to zero, so for jax
        # -1e-45 and 0 are equal maxima.
        subnormal = (x != 0) & (np.abs(x) < np.finfo(np.float32).tiny)
        padded = np.full(1 << max(x.size - 1, 0).bit_length(), -np.inf, np.float32)
        padded[: x.size] = x
        if not subnormal.any():
            assert int(np.asarray(jnp.argmax(jnp.asarray(padded)))) == want
    elif nan.all():
        want = 0
    else:
        want = int(np.nanargmax(x))
    assert int(idx[0]) == want
    assert int(score[0]) == int(bits(x)[want])


def test_argmax_examples(ops: Ops) -> None:
    for x, want in [
        ([1.0, 3.0, 3.0], 1),
        ([-0.0, 0.0], 0),
        ([0.0, -0.0], 0),
        ([np.nan, 1.0], 1),
        ([np.nan, -np.inf], 1),
        ([np.nan, np.nan], 0),
        ([-np.inf, -np.inf], 0),
        ([-3.4e38, np.inf, np.inf], 1),
    ]:
        idx, _ = topk(ops, f32(x), 1)
        assert int(idx[0]) == want, x


def topk_chunked(ops: Ops, x: F32, k: int, sizes: Sequence[int]) -> tuple[int, U32]:
    out = np.full(2 * TOPK_MAX, 0xA5A5A5A5, dtype=np.uint32)
    entries = ops.ffi.cast("struct flax_topk_entry *", ops.ffi.from_buffer(out))
    cnt = 0
    for lo, hi in cuts(x.size, sizes):
        cnt = int(ops.lib.flax_topk_add(buf(ops, x[lo:hi]), hi - lo, lo, k, cnt, entries))
    return cnt, out


@HYP
@given(
    x=hnp.arrays(
        np.float32,
        st.integers(1, 500),
        elements=st.one_of(st.sampled_from(TIE_POOL), any32, st.integers(-3, 3).map(float)),
    ),
    k=st.integers(1, TOPK_MAX),
    sizes=chunk_sizes,
)
def test_topk_chunked(ops: Ops, x: F32, k: int, sizes: list[int]) -> None:
    cnt, out = topk_chunked(ops, x, k, sizes)
    want = min(k, x.size)
    assert cnt == want
    idx, score = topk(ops, x, want)
    np.testing.assert_array_equal(out[0 : 2 * want : 2], idx)
    np.testing.assert_array_equal(out[1 : 2 * want : 2], score)
    np.testing.assert_array_equal(idx, np.argsort(-x, kind="stable")[:want])
    assert np.all(out[2 * want :] == 0xA5A5A5A5)  # nothing past min(k, n) written


def test_topk_chunked_large(ops: Ops) -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 1000, 1 << 20).astype(np.float32)  # many ties
    cnt, out = topk_chunked(ops, x, TOPK_MAX, [int(ops.lib.FLAX_FPU_CHUNK)])
    assert cnt == TOPK_MAX
    np.testing.assert_array_equal(out[0::2], np.argsort(-x, kind="stable")[:TOPK_MAX])


# --------------------------------------------------------------------------- sigmoid


def sigmoid(ops: Ops, x: F32) -> F32:
    b = np.ascontiguousarray(x, dtype=np.float32).ravel().copy()
    ops.lib.flax_sigmoid(buf(ops, b), b.size)
    return b


def sigmoid_ref(x: F32) -> F32:
    """float64 1 / (1 + exp(-x)), rounded to float32 (exp(-x) = inf gives 0: right)."""
    with np.errstate(over="ignore"):
        out: F32 = (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)
    return out


def sigmoid_jax(x: F32) -> F32:
    n = x.size
    padded = np.zeros(1 << max(n - 1, 0).bit_length(), np.float32)
    padded[:n] = x
    return np.asarray(jax.nn.sigmoid(jnp.asarray(padded)))[:n]


@HYP
@given(
    x=hnp.arrays(
        np.float32,
        st.integers(1, 300),
        elements=st.one_of(any32, st.floats(-120, 120, width=32), st.floats(-1, 1, width=32)),
    ),
    sizes=chunk_sizes,
)
def test_sigmoid(ops: Ops, x: F32, sizes: list[int]) -> None:
    got = sigmoid(ops, x)
    nan = np.isnan(x)
    np.testing.assert_array_equal(bits(got)[nan], bits(x)[nan] | 0x00400000)  # same NaN, quiet
    assert ulps(bits(got[~nan]), bits(sigmoid_ref(x[~nan]))).max(initial=0) <= 1
    np.testing.assert_allclose(got, sigmoid_jax(x), rtol=1e-6, atol=1e-37)
    chunked = x.copy()
    for lo, hi in cuts(x.size, sizes):
        ops.lib.flax_sigmoid(buf(ops, chunked[lo:hi]), hi - lo)
    assert_same_bits(chunked, got)


def test_sigmoid_dense(ops: Ops, ops_report: list[str]) -> None:
    """2^22 spread bit patterns plus every float in a dense grid of [-20, 20] and the
    underflow edge: within 1 ulp of the float64 formula, and counted."""
    rng = np.random.default_rng(9)
    stride = 1 << 10
    sample = np.arange(0, 1 << 32, stride, dtype=np.uint64) + rng.integers(0, stride, 1 << 22)
    xb = sample.astype(np.uint32)
    xb = xb[(xb & 0x7FFFFFFF) <= 0x7F800000]
    grid = np.linspace(-20, 20, 1 << 20, dtype=np.float32)
    edge = floats(np.arange(0xC2CF0000, 0xC2D00000, dtype=np.uint32))  # -103.5 .. -104
    x = np.concatenate([floats(xb), grid, edge])
    got = sigmoid(ops, x)
    d = ulps(bits(got), bits(sigmoid_ref(x)))
    ops_report.append(
        f"sigmoid dense: {x.size} inputs; differ from float64 1/(1+exp(-x)) rounded: "
        f"{int(np.count_nonzero(d))} (max {int(d.max())} ulp)"
    )
    assert d.max() <= 1


def test_sigmoid_special(ops: Ops) -> None:
    x = f32([0.0, -0.0, np.inf, -np.inf, 3.4e38, -3.4e38, 17.0, 88.0, -88.0, -103.0, -105.0])
    got = sigmoid(ops, x)
    np.testing.assert_array_equal(got[:6], f32([0.5, 0.5, 1.0, 0.0, 1.0, 0.0]))
    assert bits(got)[3] == 0 and bits(got)[5] == 0  # +0
    assert got[6] < 1.0 and got[7] == 1.0
    assert 0 < got[8] < 1e-38 and 0 < got[9] < 1e-44  # subnormal results, not flushed
    assert bits(got)[10] == 0
    assert ulps(bits(got), bits(sigmoid_ref(x))).max() <= 1
    nans = floats(np.array([0x7FC00000, 0xFFC00001, 0x7F800001, 0xFF812345], np.uint32))
    np.testing.assert_array_equal(bits(sigmoid(ops, nans)), bits(nans) | 0x00400000)


# --------------------------------------------------------------------------- threshold


def threshold(ops: Ops, x: F32, thr: float, sizes: Sequence[int] | None = None) -> U32:
    """(index, score) pairs, as an (m, 2) array; the rest of the buffer must be untouched."""
    out = np.full(2 * x.size + 2, 0xA5A5A5A5, dtype=np.uint32)
    total = 0
    for lo, hi in cuts(x.size, [x.size] if sizes is None else sizes):
        dst = ops.ffi.cast("struct flax_topk_entry *", ops.ffi.from_buffer(out[2 * total :]))
        total += int(ops.lib.flax_threshold(buf(ops, x[lo:hi]), hi - lo, f32bits(thr), lo, dst))
    assert np.all(out[2 * total :] == 0xA5A5A5A5)
    return out[: 2 * total].reshape(-1, 2)


@HYP
@given(
    x=hnp.arrays(
        np.float32,
        st.integers(1, 400),
        elements=st.one_of(st.sampled_from(TIE_POOL), any32, st.floats(0, 1, width=32)),
    ),
    thr=st.one_of(st.sampled_from(TIE_POOL), any32, st.floats(0, 1, width=32)),
    sizes=chunk_sizes,
)
def test_threshold(ops: Ops, x: F32, thr: float, sizes: list[int]) -> None:
    got = threshold(ops, x, thr)
    with np.errstate(invalid="ignore"):
        idx = np.flatnonzero(x >= np.float32(thr))
    np.testing.assert_array_equal(got[:, 0], idx)
    np.testing.assert_array_equal(got[:, 1], bits(x)[idx])
    np.testing.assert_array_equal(threshold(ops, x, thr, sizes), got)


def test_threshold_examples(ops: Ops) -> None:
    x = f32([0.5, np.nan, -0.0, 0.0, 0.7, np.inf, 0.49999997])
    np.testing.assert_array_equal(threshold(ops, x, 0.5)[:, 0], [0, 4, 5])
    np.testing.assert_array_equal(threshold(ops, x, 0.0)[:, 0], [0, 2, 3, 4, 5, 6])  # -0 >= 0
    np.testing.assert_array_equal(threshold(ops, x, -0.0)[:, 0], [0, 2, 3, 4, 5, 6])
    assert threshold(ops, x, np.nan).shape == (0, 2)  # a NaN threshold selects nothing
    assert threshold(ops, x, np.inf)[:, 0].tolist() == [5]
    assert threshold(ops, x, -np.inf)[:, 0].tolist() == [0, 2, 3, 4, 5, 6]  # never NaN


# --------------------------------------------------------------------------- mean pooling


def pool(
    ops: Ops, x: F32, mask: npt.NDArray[np.int32] | None, sizes: Sequence[int] | None = None
) -> tuple[F32, int]:
    t, d = x.shape
    acc = np.zeros(max(d, 1), np.uint64)
    ntok = 0
    for lo, hi in cuts(t, [max(t, 1)] if sizes is None else sizes):
        m = ops.ffi.NULL if mask is None else buf(ops, mask[lo:hi])
        ntok += int(
            ops.lib.flax_pool_acc(
                ops.ffi.from_buffer("uint64_t[]", acc), buf(ops, x[lo:hi]), m, hi - lo, d
            )
        )
    out = np.full(d, np.nan, np.float32)
    ops.lib.flax_pool_finish(buf(ops, out), ops.ffi.from_buffer("uint64_t[]", acc), d, ntok)
    # finishing in place (dst = the accumulator's memory) gives the same
    acc_bytes = acc.view(np.uint8)
    ops.lib.flax_pool_finish(buf(ops, acc_bytes), ops.ffi.from_buffer("uint64_t[]", acc), d, ntok)
    assert_same_bits(acc_bytes[: 4 * d].view(np.float32), out)
    return out, ntok


pool_values = st.one_of(
    st.floats(-10, 10, width=32),
    st.floats(-(2.0**100), 2.0**100, width=32),
    st.sampled_from([0.0, -0.0, 1.0, 1e-45, 3.4e38, -3.4e38]),
)


@st.composite
def pool_case(draw: st.DrawFn) -> tuple[F32, npt.NDArray[np.int32] | None]:
    t, d = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    x = draw(hnp.arrays(np.float32, (t, d), elements=pool_values))
    mask = draw(
        st.one_of(
            st.none(),
            hnp.arrays(np.int32, t, elements=st.sampled_from([0, 1])),
            hnp.arrays(np.int32, t),  # any int32: non-zero (negative too) is a token
        )
    )
    return x, mask


@HYP
@given(case=pool_case(), sizes=chunk_sizes)
def test_mean_pool(
    ops: Ops, case: tuple[F32, npt.NDArray[np.int32] | None], sizes: list[int]
) -> None:
    x, mask = case
    got, ntok = pool(ops, x, mask)
    real = x if mask is None else x[mask != 0]
    assert ntok == real.shape[0]
    x64 = real.astype(np.float64)
    div = max(ntok, 1)
    exact = np.array([math.fsum(x64[:, j].tolist()) for j in range(x.shape[1])]) / div
    ref = exact.astype(np.float32)
    bound = ulp32(ref).astype(np.float64) + ntok * 2.0**-52 * np.abs(x64).sum(axis=0) / div
    err = np.abs(got.astype(np.float64) - exact)
    assert np.all(err <= bound), (got, ref)
    if ntok == 0:
        assert np.all(bits(got) == 0)  # +0, not NaN
    else:  # sentence-transformers' float32 formula
        m = (mask if mask is not None else np.ones(x.shape[0], np.int32)) != 0
        st_ref = (x * m[:, None].astype(np.float32)).astype(np.float64).sum(0) / max(m.sum(), 1e-9)
        np.testing.assert_allclose(got, st_ref, rtol=1e-5, atol=1e-30 + 1e-6 * np.abs(x).max())
    chunked, ntok2 = pool(ops, x, mask, sizes)
    assert ntok2 == ntok
    assert_same_bits(chunked, got)


def test_mean_pool_special(ops: Ops) -> None:
    x = f32([[1.0, 2.0, np.nan], [3.0, np.inf, 5.0], [np.nan, np.nan, np.nan], [5.0, -np.inf, 1.0]])
    mask = np.array([1, 1, 0, 1], np.int32)
    got, ntok = pool(ops, x, mask)
    assert ntok == 3
    assert got[0] == 3.0  # the NaN row is masked out: never read
    assert np.isnan(got[1])  # inf + -inf
    assert np.isnan(got[2])  # a NaN in a real row
    got, ntok = pool(ops, x, np.zeros(4, np.int32))
    assert ntok == 0 and np.all(bits(got) == 0)
    y = f32([[3.4e38, -3.4e38], [3.4e38, -3.4e38]])
    got, _ = pool(ops, y, None)  # the double sum does not overflow
    np.testing.assert_array_equal(got, f32([3.4e38, -3.4e38]))


def test_mean_pool_large(ops: Ops) -> None:
    """(512, 768), in chunks of FLAX_FPU_CHUNK / 768 rows, as the kernel would."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((512, 768)).astype(np.float32)
    mask = (np.arange(512) < 300).astype(np.int32)
    got, ntok = pool(ops, x, mask, [int(ops.lib.FLAX_FPU_CHUNK) // 768])
    assert ntok == 300
    ref = (x[:300].astype(np.float64).sum(0) / 300).astype(np.float32)
    assert ulps(bits(got), bits(ref)).max() <= 1


# --------------------------------------------------------------------------- L2 normalisation

EPS32 = float(np.float32(1e-12))


def l2(ops: Ops, x: F32, sizes: Sequence[int] | None = None) -> F32:
    b = np.ascontiguousarray(x, dtype=np.float32).ravel().copy()
    acc = np.zeros(1, np.uint64)
    plan = [max(b.size, 1)] if sizes is None else sizes
    for lo, hi in cuts(b.size, plan):
        ops.lib.flax_sumsq(ops.ffi.from_buffer("uint64_t[]", acc), buf(ops, b[lo:hi]), hi - lo)
    for lo, hi in cuts(b.size, plan[::-1]):
        ops.lib.flax_l2_apply(buf(ops, b[lo:hi]), hi - lo, int(acc[0]))
    return b


def l2_ref(x: F32) -> F32:
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        out: F32 = (x64 / max(float(np.sqrt((x64 * x64).sum())), EPS32)).astype(np.float32)
    return out


@HYP
@given(
    x=hnp.arrays(
        np.float32,
        st.integers(1, 600),
        elements=st.one_of(finite32, st.floats(-10, 10, width=32), st.sampled_from([0.0, -0.0])),
    ),
    sizes=chunk_sizes,
)
def test_l2_normalize(ops: Ops, x: F32, sizes: list[int]) -> None:
    got = l2(ops, x)
    assert ulps(bits(got), bits(l2_ref(x))).max() <= 1
    assert_same_bits(l2(ops, x, sizes), got)
    norm = np.linalg.norm(got.astype(np.float64))
    if np.any(np.abs(x.astype(np.float64)) * 1e12 >= 1.0):  # the eps floor is not reached
        assert abs(norm - 1.0) <= x.size * 2.0**-24 + 1e-7


def test_l2_special(ops: Ops) -> None:
    z = f32([0.0, -0.0, 0.0])
    np.testing.assert_array_equal(bits(l2(ops, z)), bits(z))  # zeros stay, signs kept
    tiny = f32([1e-45, -2e-45])  # norm below eps: x / float32(1e-12)
    assert_same_bits(l2(ops, tiny), (tiny.astype(np.float64) / EPS32).astype(np.float32))
    big = f32([3.4e38, 3.4e38, -3.4e38])  # squares overflow float32, not double
    np.testing.assert_allclose(l2(ops, big), f32([1, 1, -1]) / np.sqrt(3), rtol=2.0**-23)
    assert np.all(np.isnan(l2(ops, f32([1.0, np.nan, 2.0]))))
    got = l2(ops, f32([1.0, np.inf, -2.0]))
    assert np.isnan(got[1]) and bits(got)[0] == 0 and bits(got)[2] == 0x80000000
    np.testing.assert_array_equal(l2(ops, f32([3.0, -4.0])), f32([0.6, -0.8]))


# --------------------------------------------------------------------------- sqrt


def sqrt_bits(ops: Ops, x: U64) -> U64:
    x = np.ascontiguousarray(x, dtype=np.uint64)
    y = np.empty_like(x)
    ops.lib.flaxtest_sqrt_array(
        ops.ffi.from_buffer("uint64_t[]", x), ops.ffi.from_buffer("uint64_t[]", y), x.size
    )
    return y


def sqrt_ref(x: U64) -> U64:
    with np.errstate(invalid="ignore"):
        out: U64 = np.sqrt(x.view(np.float64)).view(np.uint64)
    return out


def test_sqrt_dense(ops: Ops) -> None:
    """2^21 random bit patterns of every kind, subnormals, and perfect squares."""
    rng = np.random.default_rng(21)
    x = rng.integers(0, 1 << 64, 1 << 21, dtype=np.uint64)
    sub = rng.integers(0, 1 << 52, 1 << 16, dtype=np.uint64)
    k = rng.integers(1, 1 << 26, 1 << 16).astype(np.float64)
    special = np.array([0, 1 << 63, 0x7FF0000000000000, 0xFFF0000000000000, 1, 0x000FFFFFFFFFFFFF,
                        0x0010000000000000, 0x7FEFFFFFFFFFFFFF, 0x7FF8000000000000,
                        0x7FF0000000000001, 0xFFF8000000000123, 0xBFF0000000000000,
                        0x3FF0000000000000, 0x4000000000000000],
                       dtype=np.uint64)  # fmt: skip
    xs = np.concatenate([x, sub, (k * k).view(np.uint64), special])
    got = sqrt_bits(ops, xs)
    bad = np.flatnonzero(got != sqrt_ref(xs))
    assert bad.size == 0, f"sqrt(0x{xs[bad[0]]:016x}) = 0x{got[bad[0]]:016x}"
    np.testing.assert_array_equal(got[x.size + sub.size :][: k.size].view(np.float64), k)


@HYP
@given(x=st.floats())
def test_sqrt_hypothesis(ops: Ops, x: float) -> None:
    xb = np.array([x], np.float64).view(np.uint64)
    assert sqrt_bits(ops, xb)[0] == sqrt_ref(xb)[0]
