"""flax_normalize() on each code path, forced: plain C, SSE2, AVX2, against numpy bit for bit.

The host build's ``flax_norm_set_path()`` forces a path (``FLAX_NORM_PATH_*``;
a path this CPU cannot run is skipped, reported as such).  Every path must give
numpy's ``(x.astype(float32) * scale - mean) / std`` (then ``np.clip`` with a
clamp) bit for bit, NaN matching any NaN, for uint8 and float32 input (the
vectorised dtypes; the others take the plain loop on every path and are checked
too) in every layout: one pair, per channel with the channels last (few
channels: the periodic table; more than 64: runs of consecutive pairs), channels
first (runs of one pair, long and short), per element; clamped or not, NaN
bounds included; called in one piece, in chunks with the element offset
``first``, and widening in place from the end of the buffer as the driver does.
Sizes reach a few thousand elements so that every vector loop, its tail and
the switch between runs are exercised.

uint8 input with at most ``FLAX_NORM_LUT_PAIRS`` pairs goes through a table in
the driver (``flax_norm_lut_fill()`` on the forced path, then the integer
``flax_norm_lut_apply()``): the same cases, restricted so, must give the same bits.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

F32 = npt.NDArray[np.float32]

UINT8, FLOAT32, INT8, UINT16, INT16, INT32, FLOAT16 = 1, 2, 3, 4, 5, 6, 7
DTYPES: dict[int, type[np.generic]] = {
    UINT8: np.uint8, FLOAT32: np.float32, INT8: np.int8, UINT16: np.uint16,
    INT16: np.int16, INT32: np.int32, FLOAT16: np.float16,
}  # fmt: skip
PATHS = {"scalar": 1, "sse2": 2, "avx2": 3}
EINVAL, EOPNOTSUPP = 22, 95

HYP = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
    ],
)  # fmt: skip


def bits32(v: float) -> int:
    return int(np.array(v, dtype=np.float32).view(np.uint32))


@pytest.fixture(params=list(PATHS))
def path(request: pytest.FixtureRequest, ops: Any) -> Iterator[str]:
    """Forces one path for the test, then gives the choice back to the library."""
    name: str = request.param
    rc = int(ops.lib.flax_norm_set_path(PATHS[name]))
    if rc == -EOPNOTSUPP:
        pytest.skip(f"{name}: this CPU or build cannot run it")
    assert rc == 0
    assert ops.lib.flax_norm_get_path() == PATHS[name]
    yield name
    assert ops.lib.flax_norm_set_path(ops.lib.FLAX_NORM_PATH_AUTO) == 0


class Norm:
    """A struct flax_norm and the arrays it points into."""

    def __init__(
        self, ops: Any, scale: float, mean: F32, std: F32, inner: int,
        clamp: tuple[float, float] | None,
    ) -> None:  # fmt: skip
        self.mean = np.ascontiguousarray(mean, np.float32).view(np.uint32).copy()
        self.std = np.ascontiguousarray(std, np.float32).view(np.uint32).copy()
        lo, hi = clamp if clamp is not None else (0.0, 0.0)
        self.c = ops.ffi.new(
            "struct flax_norm *",
            {
                "count": self.mean.size, "inner": inner, "scale": bits32(scale),
                "flags": 0 if clamp is None else int(ops.lib.FLAX_NORM_CLAMP),
                "clamp_lo": bits32(lo), "clamp_hi": bits32(hi),
                "mean": ops.ffi.from_buffer("uint32_t[]", self.mean),
                "std": ops.ffi.from_buffer("uint32_t[]", self.std),
            },
        )  # fmt: skip


def run(ops: Any, dst: npt.NDArray[Any], src: npt.NDArray[Any], dtype: int, first: int,
        n: int, norm: Norm) -> int:  # fmt: skip
    return int(
        ops.lib.flax_normalize(
            ops.ffi.from_buffer(dst), ops.ffi.from_buffer(src), dtype, first, n, norm.c
        )
    )


def assert_same(got: F32, want: F32, what: str) -> None:
    gb, wb = got.view(np.uint32).ravel(), want.view(np.uint32).ravel()
    bad = np.flatnonzero((gb != wb) & ~(np.isnan(got.ravel()) & np.isnan(want.ravel())))
    if bad.size:
        i = int(bad[0])
        pytest.fail(
            f"{what}: {bad.size} of {gb.size} differ, first at {i}: "
            f"got 0x{gb[i]:08x}, want 0x{wb[i]:08x}"
        )


EXTREMES = [0.0, -0.0, 1.0, -1.0, 255.0, 3.4e38, -3.4e38, 1e-45, -1e-45, 1e-38,
            np.inf, -np.inf, np.nan]  # fmt: skip
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
values = st.one_of(
    finite32, st.floats(width=32), st.sampled_from(EXTREMES), st.floats(-300, 300, width=32)
)


@st.composite
def case(draw: st.DrawFn, max_pairs: int = 0) -> dict[str, Any]:
    """A tensor in some layout, its parameters and numpy's answer (uint8 with at
    most ``max_pairs`` pairs if given: the driver's table cases)."""
    dtype = draw(st.sampled_from([UINT8, FLOAT32, UINT8, FLOAT32, INT16, FLOAT16]))
    layouts = ["one", "last", "last_many", "first", "first_short", "feature"]
    if max_pairs:
        dtype, layouts = UINT8, ["one", "last", "first", "first_short", "feature"]
    layout = draw(st.sampled_from(layouts))
    if layout in ("first", "first_short"):
        c = draw(st.integers(1, 4))
        hw = draw(st.integers(64, 700) if layout == "first" else st.integers(1, 63))
        batch = draw(st.integers(1, 3))
        shape: tuple[int, ...] = (batch, c, hw)
        count, inner = c, hw
    else:
        channels = {
            "one": draw(st.integers(1, 9)),
            "last": draw(st.integers(1, min(64, max_pairs or 64))),
            "last_many": draw(st.integers(65, 200)),
            "feature": draw(st.integers(1, min(50, max_pairs or 50))),
        }[layout]
        most_rows = 3000 // channels
        if max_pairs and layout == "feature":
            most_rows = max_pairs // channels
        rows = draw(st.integers(1, max(1, most_rows)))
        shape = (rows, channels)
        count = {"one": 1, "feature": rows * channels}.get(layout, channels)
        inner = 1
    np_dtype = DTYPES[dtype]
    if dtype == FLOAT32:
        elems: Any = draw(st.sampled_from([finite32, values]))
    elif dtype == FLOAT16:
        elems = st.floats(width=16)
    else:
        elems = None
    x = draw(hnp.arrays(np_dtype, shape, elements=elems))
    scale = draw(st.one_of(st.sampled_from([1.0, 1 / 255, 2.0, -0.0]), values))
    mean = draw(hnp.arrays(np.float32, (count,), elements=values))
    std_elems = st.one_of(st.floats(2.0**-10, 1024.0, width=32), values)
    std = draw(hnp.arrays(np.float32, (count,), elements=std_elems))
    clamp = draw(st.one_of(st.none(), st.tuples(values, values), st.just((-1.0, 1.0))))
    if layout in ("first", "first_short"):
        m, s = mean[:, None], std[:, None]
    elif layout == "feature":
        m, s = mean.reshape(shape), std.reshape(shape)
    elif layout == "one":
        m, s = mean[0], std[0]
    else:
        m, s = mean, std
    with np.errstate(all="ignore"):
        want = (x.astype(np.float32) * np.float32(scale) - m) / s
        if clamp is not None:
            want = np.clip(want, np.float32(clamp[0]), np.float32(clamp[1]))
    return {"dtype": dtype, "layout": layout, "x": x, "scale": scale, "mean": mean, "std": std,
            "inner": inner, "clamp": clamp, "want": want.astype(np.float32)}  # fmt: skip


@HYP
@given(c=case(), cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=4))
def test_paths_against_numpy(ops: Any, path: str, c: dict[str, Any], cuts: list[int]) -> None:
    x, dtype, want = c["x"], c["dtype"], c["want"]
    n, esize = x.size, x.itemsize
    norm = Norm(ops, c["scale"], c["mean"], c["std"], c["inner"], c["clamp"])
    src = np.ascontiguousarray(x).ravel().copy()

    out = np.full(n, np.nan, np.float32)
    assert run(ops, out, src, dtype, 0, n, norm) == 0
    assert_same(out, want.ravel(), f"{path} {c['layout']} one call")

    # in pieces of uneven sizes, each with its element offset
    bounds = sorted({0, n, *[k % (n + 1) for k in np.cumsum(cuts)]})
    out2 = np.full(n, np.nan, np.float32)
    for s, e in itertools.pairwise(bounds):
        assert run(ops, out2[s:e], src[s:e], dtype, s, e - s, norm) == 0
    assert_same(out2, want.ravel(), f"{path} {c['layout']} pieces {bounds}")

    # widening in place, piece by piece from the end, as flax_preprocess() does
    buf = np.zeros(4 * n, np.uint8)
    buf[: n * esize] = src.view(np.uint8)
    for s, e in reversed(list(itertools.pairwise(bounds))):
        sub = buf[esize * s : esize * e]
        assert run(ops, buf[4 * s : 4 * e], sub, dtype, s, e - s, norm) == 0
    assert_same(buf.view(np.float32), want.ravel(), f"{path} {c['layout']} in place")


@HYP
@given(data=st.data(), cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=4))
def test_uint8_table_against_numpy(ops: Any, path: str, data: st.DataObject,
                                   cuts: list[int]) -> None:  # fmt: skip
    """The driver's uint8 table, filled on the forced path, applied in integer code."""
    c = data.draw(case(max_pairs=int(ops.lib.FLAX_NORM_LUT_PAIRS)))
    x, want = c["x"], c["want"]
    n = x.size
    norm = Norm(ops, c["scale"], c["mean"], c["std"], c["inner"], c["clamp"])
    lut = np.full(c["mean"].size * int(ops.lib.FLAX_NORM_LUT_VALUES), 0xFFFFFFFF, np.uint32)
    assert ops.lib.flax_norm_lut_fill(ops.ffi.from_buffer("uint32_t[]", lut), norm.c) == 0
    table = ops.ffi.from_buffer("uint32_t[]", lut)
    src = np.ascontiguousarray(x).ravel().copy()

    out = np.full(n, np.nan, np.float32)
    ops.lib.flax_norm_lut_apply(ops.ffi.from_buffer(out), ops.ffi.from_buffer(src), 0, n,
                                table, norm.c)  # fmt: skip
    assert_same(out, want.ravel(), f"table {path} {c['layout']} one call")

    # widening in place, piece by piece from the end, as flax_preprocess() does
    bounds = sorted({0, n, *[k % (n + 1) for k in np.cumsum(cuts)]})
    buf = np.zeros(4 * n, np.uint8)
    buf[:n] = src
    for s, e in reversed(list(itertools.pairwise(bounds))):
        ops.lib.flax_norm_lut_apply(ops.ffi.from_buffer(buf[4 * s : 4 * e]),
                                    ops.ffi.from_buffer(buf[s:e]), s, e - s, table,
                                    norm.c)  # fmt: skip
    assert_same(buf.view(np.float32), want.ravel(), f"table {path} {c['layout']} in place")


def test_uint8_table_refuses_too_many_pairs(ops: Any) -> None:
    pairs = int(ops.lib.FLAX_NORM_LUT_PAIRS) + 1
    norm = Norm(ops, 1.0, np.zeros(pairs, np.float32), np.ones(pairs, np.float32), 1, None)
    lut = np.zeros(pairs * 256, np.uint32)
    assert ops.lib.flax_norm_lut_fill(ops.ffi.from_buffer("uint32_t[]", lut), norm.c) == -EINVAL
    assert not lut.any()


@pytest.mark.parametrize("clamp", [None, (-2.0, 2.0)])
def test_paths_imagenet(ops: Any, path: str, clamp: tuple[float, float] | None) -> None:
    """224x224x3 uint8 per channel, channels last and first, and float32: numpy's bits."""
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    with np.errstate(all="ignore"):
        want = (img.astype(np.float32) * np.float32(1 / 255) - mean) / std
        if clamp is not None:
            want = np.clip(want, np.float32(clamp[0]), np.float32(clamp[1]))
    out = np.empty(img.size, np.float32)
    norm = Norm(ops, 1 / 255, mean, std, 1, clamp)
    assert run(ops, out, img.ravel(), UINT8, 0, img.size, norm) == 0
    assert_same(out, want.ravel(), f"{path} HWC uint8")
    f32 = img.astype(np.float32).ravel()
    assert run(ops, out, f32, FLOAT32, 0, img.size, norm) == 0
    assert_same(out, want.ravel(), f"{path} HWC float32")
    chw = np.ascontiguousarray(img.transpose(2, 0, 1))
    norm = Norm(ops, 1 / 255, mean, std, 224 * 224, clamp)
    assert run(ops, out, chw.ravel(), UINT8, 0, img.size, norm) == 0
    assert_same(out, np.ascontiguousarray(want.transpose(2, 0, 1)).ravel(), f"{path} CHW")


def test_set_path_rejects(ops: Any) -> None:
    """Unknown paths are refused; AUTO gives back the best path this CPU runs."""
    lib = ops.lib
    for bad in (4, 5, 0xFFFFFFFF):
        assert lib.flax_norm_set_path(bad) == -EINVAL
    assert lib.flax_norm_set_path(lib.FLAX_NORM_PATH_AUTO) == 0
    best = int(lib.flax_norm_get_path())
    assert best in (lib.FLAX_NORM_PATH_SCALAR, lib.FLAX_NORM_PATH_SSE2, lib.FLAX_NORM_PATH_AVX2)
    supported = [v for v in PATHS.values() if lib.flax_norm_set_path(v) == 0]
    assert lib.flax_norm_set_path(lib.FLAX_NORM_PATH_AUTO) == 0
    assert best == max(supported)  # the best one the CPU runs
    assert lib.FLAX_NORM_PATH_SCALAR in supported


def test_chunk_by_path(ops: Any) -> None:
    """flax_normalize_chunk(): the vector budget exactly where the vector loops run."""
    lib = ops.lib
    one, three = np.ones(1, np.float32), np.ones(3, np.float32)
    cases = [
        (UINT8, Norm(ops, 1.0, three, three, 1, None), True),
        (FLOAT32, Norm(ops, 1.0, three, three, 1, (0.0, 1.0)), True),
        (UINT8, Norm(ops, 1.0, three, three, 64, None), True),
        (UINT8, Norm(ops, 1.0, three, three, 63, None), False),  # short runs
        (UINT8, Norm(ops, 1.0, one, one, 5, None), True),  # one pair: one run
        (FLOAT32, Norm(ops, 1.0, three, three, 1, (np.nan, 1.0)), False),  # NaN bound
        (FLOAT32, Norm(ops, 1.0, three, three, 1, (0.0, np.nan)), False),
        (INT16, Norm(ops, 1.0, three, three, 1, None), False),
        (FLOAT16, Norm(ops, 1.0, three, three, 1, None), False),
        (INT32, Norm(ops, 1.0, three, three, 1, None), False),
    ]
    for dtype, norm, vec in cases:
        assert bool(lib.flax_norm_vector_ok(dtype, norm.c)) == vec
        want = lib.FLAX_NORM_CHUNK_VECTOR if vec else lib.FLAX_NORM_CHUNK_SCALAR
        assert lib.flax_normalize_chunk(dtype, norm.c) == want
    assert lib.FLAX_NORM_CHUNK_VECTOR > lib.FLAX_NORM_CHUNK_SCALAR >= lib.FLAX_FPU_CHUNK
