"""Native tests of ``driver/flax_text.c``: integer-only number formatting and parsing.

The C is the kernel's own file, built for user space by ``bindings/ops_build.py``
(sanitized by default; see ``conftest.py`` for how the tests are run).

References, each independent of the code under test:
- flax_fmt_f32 / flax_fmt_f32_list: Python's ``'%.*g' % (prec, value)`` (CPython's own
  correctly rounded dtoa) and, for the dense sweeps done in C, glibc's ``snprintf``;
- flax_parse_f32: glibc's ``strtof`` through ctypes, and an exact rounding of
  ``fractions.Fraction`` written here (``round_binary``), which also serves binary16;
- integer parsing: Python's ``int``.

Every check of the parsers runs on an exact-size copy of the text (``ffi.new`` of
``len`` bytes, no terminator), so ASan reports any read past ``s + len``.
"""

from __future__ import annotations

import ctypes
import errno
import math
import re
import struct
import sys
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]

UINT8 = 1
FLOAT32 = 2
INT8 = 3
UINT16 = 4
INT16 = 5
INT32 = 6
FLOAT16 = 7

EINVAL = errno.EINVAL
ERANGE = errno.ERANGE
EOVERFLOW = errno.EOVERFLOW

PREC_MAX = 9
FMT_MAX = 15  # FLAX_FMT_F32_MAX

F32_QNAN = 0x7FC00000
F32_INF = 0x7F800000
F16_QNAN = 0x7E00
F16_INF = 0x7C00

#: (size, lo, hi, struct code) of the integer dtypes.
INT_TYPES: dict[int, tuple[int, int, int, str]] = {
    UINT8: (1, 0, 0xFF, "<B"),
    INT8: (1, -0x80, 0x7F, "<b"),
    UINT16: (2, 0, 0xFFFF, "<H"),
    INT16: (2, -0x8000, 0x7FFF, "<h"),
    INT32: (4, -0x80000000, 0x7FFFFFFF, "<i"),
}
ELEM_SIZE = {**{d: v[0] for d, v in INT_TYPES.items()}, FLOAT32: 4, FLOAT16: 2}


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
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: For the tests that make several calls per example.
HYP_LISTS = settings(HYP, max_examples=200)


# --------------------------------------------------------------------------- references


def f32_value(b: int) -> float:
    return float(struct.unpack("<f", struct.pack("<I", b))[0])


def f32_bits(x: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", x))[0])


def is_nan32(b: int) -> bool:
    return (b & 0x7FFFFFFF) > F32_INF


def ref_fmt(b: int, prec: int) -> str:
    """Python's %g of the binary32 value (any NaN prints "nan", as Python prints it)."""
    return "%.*g" % (max(prec, 1), f32_value(b))  # noqa: UP031 (the %g under test)


def f32_fraction(b: int) -> Fraction:
    """The exact value of a finite binary32."""
    e, m = (b >> 23) & 0xFF, b & 0x7FFFFF
    v = Fraction(m if e == 0 else m | 0x800000) * Fraction(2) ** ((e or 1) - 150)
    return -v if b >> 31 else v


def round_binary(x: Fraction, p: int, emin: int, emax: int) -> tuple[int, bool]:
    """|x| rounded to nearest-even in a binary format with p significand bits.

    Returns the bits without the sign and whether it overflowed (bits then = inf).
    """
    x = abs(x)
    inf = (emax - emin + 2) << (p - 1)
    if x == 0:
        return 0, False
    e = x.numerator.bit_length() - x.denominator.bit_length()
    if Fraction(2) ** e > x:
        e -= 1
    e = max(e, emin)
    scaled = x / Fraction(2) ** (e - p + 1)
    n = scaled.numerator // scaled.denominator
    rem = scaled - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n & 1):
        n += 1
    if n == 1 << p:
        n >>= 1
        e += 1
    if e > emax:
        return inf, True
    if n < 1 << (p - 1):  # subnormal (e == emin)
        return n, False
    return ((e - emin + 1) << (p - 1)) | (n - (1 << (p - 1))), False


def ref_round32(x: Fraction, negative: bool) -> tuple[int, bool]:
    b, ovf = round_binary(x, 24, -126, 127)
    return b | (0x80000000 if negative else 0), ovf


def ref_round16(x: Fraction, negative: bool) -> tuple[int, bool]:
    b, ovf = round_binary(x, 11, -14, 15)
    return b | (0x8000 if negative else 0), ovf


_NUM_RE = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")


def decimal_fraction(text: bytes) -> tuple[Fraction, bool, int] | None:
    """Exact value, sign and length of the decimal number at the start of text.

    Values far outside every float format are replaced by 10^50 or 10^-60 (which
    round the same), so that "1e99999999999" does not build a huge Fraction.
    """
    m = _NUM_RE.match(text)
    if m is None or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac, exp = m.group(1), m.group(2), m.group(3) or b"", m.group(4)
    digits = (whole + frac).lstrip(b"0")
    e = (int(exp) if exp else 0) - len(frac)
    if not digits:
        value = Fraction(0)
    elif len(digits) - 1 + e > 50:
        value = Fraction(10**50)
    elif len(digits) - 1 + e < -60:
        value = Fraction(1, 10**60)
    else:
        limit = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)  # texts of many thousand digits
        try:
            value = int(digits) * Fraction(10) ** e
        finally:
            sys.set_int_max_str_digits(limit)
    return value, sign == b"-", m.end()


_libc = ctypes.CDLL(None, use_errno=True)
_strtof = _libc.strtof
_strtof.restype = ctypes.c_float
_strtof.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]


def strtof(text: bytes) -> tuple[int, int, int]:
    """glibc strtof on text (NUL-terminated copy): (bits, bytes used, errno)."""
    buf = ctypes.create_string_buffer(text)
    end = ctypes.c_void_p()
    ctypes.set_errno(0)
    v = _strtof(ctypes.addressof(buf), ctypes.byref(end))
    err = ctypes.get_errno()
    used = (end.value or 0) - ctypes.addressof(buf)
    return f32_bits(v), used, err


# --------------------------------------------------------------------------- C calls


def exact_buf(ops: Ops, data: bytes) -> Any:
    """A char array of exactly len(data) bytes: ASan catches any read past it."""
    buf = ops.ffi.new("char[]", max(len(data), 1))
    ops.ffi.memmove(buf, data, len(data))
    if not data:  # a zero-size array would still be 1 byte: use a pointer past it
        return buf + 1
    return buf


def parse_f32(ops: Ops, text: bytes, sentinel: int = 0xDEADBEEF) -> tuple[int, int, int]:
    """flax_parse_f32 on an exact-size copy: (return, bits, used)."""
    out = ops.ffi.new("uint32_t *", sentinel)
    used = ops.ffi.new("size_t *", 12345)
    ret = ops.lib.flax_parse_f32(exact_buf(ops, text), len(text), out, used)
    return int(ret), int(out[0]), int(used[0])


def parse_numbers(ops: Ops, text: bytes, dtype: int, n: int, fill: int = 0xA5) -> tuple[int, bytes]:
    """flax_parse_numbers into a misaligned buffer: (return, the n elements' bytes)."""
    size = ELEM_SIZE.get(dtype, 4) * n
    raw = ops.ffi.new("uint8_t[]", size + 1)  # dst at raw + 1: misaligned
    ops.ffi.memmove(raw, bytes([fill]) * (size + 1), size + 1)
    ret = ops.lib.flax_parse_numbers(exact_buf(ops, text), len(text), dtype, raw + 1, n)
    data = bytes(ops.ffi.buffer(raw, size + 1))
    assert data[0] == fill, "wrote before dst"
    return int(ret), data[1:]


def fmt_f32(ops: Ops, b: int, prec: int, size: int = 64) -> tuple[int, bytes]:
    """flax_fmt_f32 into a buffer of size bytes (+ guard bytes): (return, NUL-terminated text)."""
    buf = ops.ffi.new("char[]", size + 8)
    ops.ffi.memmove(buf, b"\xee" * (size + 8), size + 8)
    ret = int(ops.lib.flax_fmt_f32(buf, size, b, prec))
    raw = bytes(ops.ffi.buffer(buf, size + 8))
    assert raw[size:] == b"\xee" * 8, "wrote past size"
    if size == 0:
        assert raw[:1] == b"\xee"
        return ret, b""
    assert b"\0" in raw[:size], "not NUL-terminated"
    return ret, raw[: raw.index(b"\0")]


def fmt_array(ops: Ops, b: npt.NDArray[np.uint32], prec: int) -> list[str]:
    """flax_fmt_f32 of every element (one C call)."""
    b = np.ascontiguousarray(b, dtype=np.uint32)
    size = b.size * (FMT_MAX + 1)
    out = ops.ffi.new("char[]", size)
    n = ops.lib.flaxtest_fmt_array(ops.ffi.from_buffer("uint32_t[]", b), b.size, prec, out, size)
    text = bytes(ops.ffi.buffer(out, n)).decode()
    assert text.endswith("\n") or not b.size
    return text.split("\n")[:-1]


def assert_fmt_matches(
    ops: Ops, b: npt.NDArray[np.uint32], prec: int, ref_prec: int | None = None
) -> None:
    """flax_fmt_f32 of every element equals Python's %g (at ref_prec, default prec)."""
    got = fmt_array(ops, b, prec)
    with np.errstate(invalid="ignore"):  # signalling NaNs
        values = b.view(np.float32).astype(np.float64).tolist()
    want = ["%.*g" % (ref_prec or prec, v) for v in values]  # noqa: UP031
    if got != want:
        bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        i = bad[0]
        pytest.fail(
            f"prec {prec}: {len(bad)} of {b.size} differ; first 0x{int(b[i]):08x}: "
            f"got {got[i]!r}, want {want[i]!r}"
        )


# --------------------------------------------------------------------------- strategies

any_bits = st.integers(0, 0xFFFFFFFF)
precs = st.integers(1, PREC_MAX)


@st.composite
def f32_classes(draw: st.DrawFn) -> int:
    """Bit patterns from every class: normals, subnormals, boundaries, specials."""
    sign = draw(st.sampled_from([0, 0x80000000]))
    kind = draw(st.sampled_from(["any", "normal", "subnormal", "edge", "pow2", "special"]))
    if kind == "any":
        return draw(any_bits)
    if kind == "normal":
        return sign | draw(st.integers(1, 254)) << 23 | draw(st.integers(0, 0x7FFFFF))
    if kind == "subnormal":
        return sign | draw(st.integers(1, 0x7FFFFF))
    if kind == "edge":
        e = draw(st.sampled_from([0, 1, 2, 126, 127, 128, 253, 254]))
        m = draw(st.sampled_from([0, 1, 2, 0x400000, 0x7FFFFE, 0x7FFFFF]))
        return sign | e << 23 | m
    if kind == "pow2":
        return sign | draw(st.integers(1, 254)) << 23
    return sign | draw(st.sampled_from([0, F32_INF, F32_QNAN, 0x7F800001, 0x7FFFFFFF]))


def f32_near_decimal(mantissa: int, exp10: int) -> int:
    """The float32 nearest to mantissa * 10^exp10 (the largest finite if that overflows)."""
    b, ovf = ref_round32(Fraction(mantissa) * Fraction(10) ** exp10, False)
    return F32_INF - 1 if ovf else b


@st.composite
def tie_cases(draw: st.DrawFn) -> tuple[int, int]:
    """(bits, prec) where the exact value lies exactly halfway between two prec-digit decimals.

    A float whose exact decimal expansion has prec + 1 significant digits, the last a
    5.  Either o / 2^k (o odd, k > 0: the expansion o * 5^k ends in 5), or
    o * 2^m with o a multiple of 5^a, a > m (trailing zeros stripped, a 5 remains).
    """
    k = draw(st.integers(-5, 14))
    if k > 0:
        top = min(1 << 24, 10 ** (PREC_MAX + 1) // 5**k)
        v = Fraction(draw(st.integers(0, max(top // 2 - 1, 0))) * 2 + 1, 1 << k)
    else:
        a = draw(st.integers(-k + 1, 10))
        odd = draw(st.integers(0, ((1 << 24) // 5**a - 1) // 2)) * 2 + 1
        v = Fraction(odd * 5**a << -k)
    b, ovf = ref_round32(v, draw(st.booleans()))
    assert not ovf and f32_fraction(b & 0x7FFFFFFF) == v
    digits = decimal_digits(v)
    assume(2 <= len(digits) <= PREC_MAX + 1)
    assert digits.endswith("5")
    return b, len(digits) - 1


def decimal_digits(v: Fraction) -> str:
    """Significant digits of a positive dyadic rational's exact decimal expansion."""
    den = v.denominator
    k = den.bit_length() - 1
    assert den == 1 << k
    return str(v.numerator * 5**k).rstrip("0") or "0"


def exact_decimal(v: Fraction) -> tuple[int, int]:
    """A dyadic v >= 0 as (d, e) with v = d * 10^e exactly."""
    k = v.denominator.bit_length() - 1
    return v.numerator * 5**k, -k


digits_text = st.text("0123456789", min_size=0, max_size=40)


@st.composite
def decimal_texts(draw: st.DrawFn) -> bytes:
    """Decimal numbers in every form flax_parse_f32 accepts (and some it stops in)."""
    sign = draw(st.sampled_from(["", "+", "-"]))
    whole = draw(digits_text | st.text("0123456789", max_size=200))
    frac = draw(st.none() | digits_text)
    if not whole and not frac:
        whole = draw(st.text("0123456789", min_size=1, max_size=3))
    s = sign + whole + ("" if frac is None else "." + frac)
    if draw(st.booleans()):
        esign = draw(st.sampled_from(["", "+", "-"]))
        exp = draw(st.integers(0, 60) | st.integers(0, 500) | st.integers(0, 10**30))
        s += draw(st.sampled_from("eE")) + esign + str(exp)
    s += draw(st.sampled_from(["", "", "x", ",", " ", "e", "e+", ".", "5"]))
    return s.encode()


@st.composite
def near_float_texts(draw: st.DrawFn) -> bytes:
    """A float32 printed with 1..12 digits, perhaps with its last digit moved by one."""
    b = draw(f32_classes()) & 0x7FFFFFFF
    assume(b < F32_INF)
    digits = draw(st.integers(0, 11))
    s = "%.*e" % (digits, f32_value(b))  # noqa: UP031
    mant, exp = s.split("e")
    delta = draw(st.sampled_from([0, 0, 1, -1]))
    n = int(mant.replace(".", "")) + delta
    if n <= 0:
        n = 1
    return f"{n}e{int(exp) - digits}".encode()


@st.composite
def midpoint_texts(draw: st.DrawFn) -> tuple[bytes, int]:
    """The exact midpoint between two adjacent float32 (or just off it), as decimal text.

    Returns (text, how): how 0 = the exact midpoint (ties to even), 1 = above, -1 =
    below; "above" and "below" move by one unit in a digit past the midpoint's last,
    sometimes after 100+ more zeros (so the sticky digits decide).
    """
    b = draw(
        st.integers(0, F32_INF - 1)
        | st.integers(0, 0x00FFFFFF)
        | st.integers(0x7F000000, F32_INF - 1)
    )
    lo, hi = f32_fraction(b), f32_fraction(b + 1) if b + 1 < F32_INF else Fraction(2) ** 128
    mid = (lo + hi) / 2
    d, e = exact_decimal(mid)
    how = draw(st.sampled_from([0, 1, -1]))
    if how:
        pad = draw(st.sampled_from([1, 2, 30, 150]))
        d, e = d * 10**pad + how, e - pad
    sign = draw(st.sampled_from(["", "-"]))
    style = draw(st.sampled_from(["e", "point"]))
    if style == "e":
        return f"{sign}{d}e{e}".encode(), how
    s = str(d)
    if e >= 0:
        return f"{sign}{s}{'0' * e}".encode(), how
    if len(s) > -e:
        return f"{sign}{s[:e]}.{s[e:]}".encode(), how
    return f"{sign}0.{'0' * (-e - len(s))}{s}".encode(), how


# --------------------------------------------------------------------------- constants


def test_constants_match_headers(ops: Ops) -> None:
    header = (ROOT / "driver" / "uapi" / "flaxdev.h").read_text()
    for name, value in [
        ("UINT8", UINT8), ("FLOAT32", FLOAT32), ("INT8", INT8), ("UINT16", UINT16),
        ("INT16", INT16), ("INT32", INT32), ("FLOAT16", FLOAT16),
    ]:  # fmt: skip
        assert re.search(rf"#define FLAX_DTYPE_{name}\s+{value}\b", header), name
    assert ops.lib.FLAX_FMT_PREC_MAX == PREC_MAX
    assert ops.lib.FLAX_FMT_F32_MAX == FMT_MAX


# --------------------------------------------------------------------------- flax_fmt_f32

FMT_EXAMPLES: list[tuple[float | int, int, str]] = [
    # (value, or bits as an int >= 2^32 marker below, prec, expected)
    (0.0, 6, "0"),
    (-0.0, 6, "-0"),
    (1.0, 1, "1"),
    (1e-05, 6, "1e-05"),
    (1.5e10, 6, "1.5e+10"),
    (100000.0, 6, "100000"),
    (1000000.0, 6, "1e+06"),
    (0.0001, 6, "0.0001"),
    (0.5, 1, "0.5"),
    (2.5, 1, "2"),  # tie, to even
    (3.5, 1, "4"),  # tie, to even
    (9.5, 1, "1e+01"),  # rounds up into a new digit and into exponent form
    (0.125, 2, "0.12"),
    (0.375, 2, "0.38"),
    (123456.0, 3, "1.23e+05"),
    (99999.5, 5, "1e+05"),
    (3.0, 9, "3"),
    (0.1, 9, "0.100000001"),
    (0.1, 3, "0.1"),
    (16777216.0, 9, "16777216"),
    (16777216.0, 8, "16777216"),
    (16777216.0, 7, "1.677722e+07"),
    (3.4028234663852886e38, 9, "3.40282347e+38"),
    (1.1754943508222875e-38, 9, "1.17549435e-38"),
    (1.401298464324817e-45, 9, "1.40129846e-45"),
    (-1.401298464324817e-45, 1, "-1e-45"),
    (float("inf"), 6, "inf"),
    (float("-inf"), 6, "-inf"),
    (float("nan"), 6, "nan"),
    (0.000123456789, 9, "0.00012345679"),
    (-1.2345678901e-38, 9, "-1.23456791e-38"),
]


@pytest.mark.parametrize(("value", "prec", "want"), FMT_EXAMPLES)
def test_fmt_examples(ops: Ops, value: float, prec: int, want: str) -> None:
    b = f32_bits(value)
    assert ref_fmt(b, prec) == want  # the reference agrees with the hand-written table
    ret, text = fmt_f32(ops, b, prec)
    assert (ret, text.decode()) == (len(want), want)


def test_fmt_nan_payloads_and_signs(ops: Ops) -> None:
    for b in [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF]:
        for prec in (1, 9):
            assert fmt_f32(ops, b, prec) == (3, b"nan")


@HYP
@given(b=f32_classes(), prec=precs)
@example(b=0x3F800000, prec=1)
def test_fmt_matches_python(ops: Ops, b: int, prec: int) -> None:
    want = ref_fmt(b, prec)
    assert fmt_f32(ops, b, prec) == (len(want), want.encode())


@HYP
@given(case=tie_cases(), delta=st.sampled_from([0, 0, -1, 1]))
def test_fmt_ties_and_neighbours(ops: Ops, case: tuple[int, int], delta: int) -> None:
    """Exact halfway values round to even; their neighbours one ulp away round away from it."""
    b, prec = case
    if delta == 0:  # the tie really is one
        d = decimal_digits(abs(f32_fraction(b)))
        assert len(d) == prec + 1 and d.endswith("5")
    b += delta
    want = ref_fmt(b, prec)
    assert fmt_f32(ops, b, prec) == (len(want), want.encode())


@HYP
@given(prec=precs, mant=st.integers(1, 10**9), exp10=st.integers(-46, 38), delta=st.integers(-2, 2))
def test_fmt_near_decimal_boundaries(
    ops: Ops, prec: int, mant: int, exp10: int, delta: int
) -> None:
    """Floats next to short decimals: where the choice of digits (and of %g's form) flips."""
    b = f32_near_decimal(mant, exp10) + delta
    assume(0 <= b < F32_INF)
    want = ref_fmt(b, prec)
    assert fmt_f32(ops, b, prec) == (len(want), want.encode())


def test_fmt_form_switch_points(ops: Ops) -> None:
    """Around 10^-5, 10^-4 and 10^prec, for every precision: fixed vs exponent form."""
    for prec in range(1, PREC_MAX + 1):
        for e10 in [-5, -4, prec - 1, prec]:
            center = f32_near_decimal(1, e10)
            for b in range(center - 64, center + 64):
                for sb in (b, b | 0x80000000):
                    want = ref_fmt(sb, prec)
                    assert fmt_f32(ops, sb, prec) == (len(want), want.encode()), hex(sb)


def test_fmt_dense_random(ops: Ops, ops_report: list[str]) -> None:
    """100k random bit patterns per precision (a different set for each), against Python."""
    rng = np.random.default_rng(20240611)
    for prec in range(1, PREC_MAX + 1):
        b = rng.integers(0, 1 << 32, size=100_000, dtype=np.uint64).astype(np.uint32)
        assert_fmt_matches(ops, b, prec)
    ops_report.append("flax_fmt_f32: 900k random float32 (100k per prec) vs Python %g: identical")


def test_fmt_all_subnormal_and_small(ops: Ops) -> None:
    """Every 61st subnormal and smallest normal (up to 2^-124), at precisions 1, 6 and 9."""
    b = np.arange(0, 0x01800000, 61, dtype=np.uint32)
    for prec in (1, 6, 9):
        assert_fmt_matches(ops, b, prec)


def test_fmt_sweep_vs_glibc(ops: Ops, ops_report: list[str]) -> None:
    """A stride through all 2^32 patterns (NaNs included), in C, against glibc snprintf."""
    bad = ops.ffi.new("uint32_t *")
    step, count = 4099, (1 << 32) // 4099
    for prec in range(1, PREC_MAX + 1):
        nbad = int(ops.lib.flaxtest_fmt_vs_libc(prec * 7, step, count, prec, prec, bad))
        assert nbad == 0, f"prec {prec}: {nbad} mismatches, first 0x{bad[0]:08x}"
    ops_report.append(
        f"flax_fmt_f32: {count * PREC_MAX:,} patterns (stride {step}) vs glibc: identical"
    )


def test_fmt_checkers_can_fail(ops: Ops) -> None:
    """Both dense checkers report a difference when there is one (a precision off by one)."""
    b = np.array([f32_bits(1.5), f32_bits(0.25)], dtype=np.uint32)
    assert fmt_array(ops, b, 1) == ["2", "0.2"]
    with pytest.raises(pytest.fail.Exception, match="2 of 2 differ"):
        assert_fmt_matches(ops, b, 1, ref_prec=2)
    bad = ops.ffi.new("uint32_t *")
    assert ops.lib.flaxtest_fmt_vs_libc(0x3FC00000, 1, 1, 1, 2, bad) == 1
    assert bad[0] == 0x3FC00000


def test_fmt_snprintf_semantics(ops: Ops) -> None:
    cases = [(f32_bits(-1.2345678901e-38), 9), (f32_bits(0.5), 3), (F32_INF | 1 << 31, 4)]
    for b, prec in cases:
        want = ref_fmt(b, prec).encode()
        for size in range(len(want) + 3):
            ret, text = fmt_f32(ops, b, prec, size)
            assert ret == len(want)
            assert text == want[: max(size - 1, 0)]
    # size 0 with a NULL buffer: only the length
    assert ops.lib.flax_fmt_f32(ops.ffi.NULL, 0, f32_bits(1e-5), 6) == 5


def test_fmt_precision_limits(ops: Ops) -> None:
    b = f32_bits(2.0 / 3.0)
    assert fmt_f32(ops, b, 0) == fmt_f32(ops, b, 1) == (3, b"0.7")
    for prec in (10, 17, 0xFFFFFFFF):
        assert fmt_f32(ops, b, prec) == (-EINVAL, b"")
    assert ops.lib.flax_fmt_f32(ops.ffi.NULL, 0, b, 10) == -EINVAL


# --------------------------------------------------------------------------- flax_fmt_f32_list


def fmt_list(ops: Ops, vals: Sequence[int], prec: int, size: int) -> tuple[int, bytes]:
    data = struct.pack(f"<{len(vals)}I", *vals)
    src = ops.ffi.new("uint8_t[]", len(data) + 1)  # values at src + 1: misaligned
    ops.ffi.memmove(src + 1, data, len(data))
    buf = ops.ffi.new("char[]", size + 8)
    ops.ffi.memmove(buf, b"\xee" * (size + 8), size + 8)
    ret = int(ops.lib.flax_fmt_f32_list(buf, size, src + 1, len(vals), prec))
    raw = bytes(ops.ffi.buffer(buf, size + 8))
    assert raw[size:] == b"\xee" * 8, "wrote past size"
    if not size:
        return ret, b""
    return ret, raw[: raw.index(b"\0")]


@HYP_LISTS
@given(vals=st.lists(f32_classes(), max_size=20), prec=precs)
def test_fmt_list(ops: Ops, vals: list[int], prec: int) -> None:
    want = (" ".join(ref_fmt(b, prec) for b in vals) + "\n").encode()
    assert fmt_list(ops, vals, prec, len(want) + 1) == (len(want), want)
    assert fmt_list(ops, vals, prec, len(want)) == (len(want), want[:-1])


def test_fmt_list_edges(ops: Ops) -> None:
    assert fmt_list(ops, [], 6, 8) == (1, b"\n")
    assert fmt_list(ops, [], 6, 1) == (1, b"")
    vals = [f32_bits(x) for x in (1.0, -2.5, 1e-5, float("inf"))]
    want = b"1 -2.5 1e-05 inf\n"
    assert fmt_list(ops, vals, 6, 64) == (len(want), want)
    for size in range(len(want) + 2):
        assert fmt_list(ops, vals, 6, size) == (len(want), want[: max(size - 1, 0)])
    assert fmt_list(ops, vals, 10, 64) == (-EINVAL, b"")
    assert fmt_list(ops, vals, 0, 64) == fmt_list(ops, vals, 1, 64)
    src = ops.ffi.new("uint32_t[]", [f32_bits(0.25)] * 3)
    assert ops.lib.flax_fmt_f32_list(ops.ffi.NULL, 0, src, 3, 2) == len("0.25 0.25 0.25\n")


# --------------------------------------------------------------------------- flax_parse_f32


def check_parse(ops: Ops, text: bytes, result: tuple[int, int, int] | None = None) -> None:
    """flax_parse_f32 (or a given result of it) against glibc strtof and the exact reference."""
    ret, got, used = result or parse_f32(ops, text)
    want, want_used, err = strtof(text)
    ref = decimal_fraction(text)
    lowered = text.lower().lstrip(b"+-")
    if ref is None and not lowered.startswith((b"inf", b"nan")):
        assert (ret, got, used) == (-EINVAL, 0xDEADBEEF, 0), text
        assert want_used == 0, text
        return
    assert used == want_used, text
    if is_nan32(want):
        assert ret == 0 and got == F32_QNAN | (want & 0x80000000), text
        return
    assert got == want, f"{text!r}: got 0x{got:08x}, strtof 0x{want:08x}"
    if ref is not None:
        value, neg, n = ref
        assert n == used
        rbits, ovf = ref_round32(value, neg)
        assert got == rbits, f"{text!r}: got 0x{got:08x}, exact 0x{rbits:08x}"
        assert ret == (-ERANGE if ovf else 0), text
        if ovf:
            assert err == ERANGE
    else:
        assert ret == 0


PARSE_EXAMPLES: list[tuple[bytes, int, int, int]] = [
    # text, return, bits, used
    (b"0", 0, 0, 1),
    (b"-0", 0, 0x80000000, 2),
    (b"1", 0, 0x3F800000, 1),
    (b"+1.5", 0, 0x3FC00000, 4),
    (b"1.", 0, 0x3F800000, 2),
    (b".5", 0, 0x3F000000, 2),
    (b"-.5e1", 0, 0xC0A00000, 5),
    (b"1e", 0, 0x3F800000, 1),
    (b"1e+", 0, 0x3F800000, 1),
    (b"1E-", 0, 0x3F800000, 1),
    (b"1.5.5", 0, 0x3FC00000, 3),
    (b"0.1", 0, 0x3DCCCCCD, 3),
    (b"16777217", 0, 0x4B800000, 8),  # tie, to even (down)
    (b"16777219", 0, 0x4B800002, 8),  # tie, to even (up)
    (b"3.4028235e38", 0, 0x7F7FFFFF, 12),
    (b"3.4028236e38", -ERANGE, F32_INF, 12),
    (b"340282356779733661637539395458142568448", -ERANGE, F32_INF, 39),  # 2^128 - 2^103: tie
    (b"340282356779733661637539395458142568447", 0, 0x7F7FFFFF, 39),
    (b"1e39", -ERANGE, F32_INF, 4),
    (b"-1e400", -ERANGE, 0xFF800000, 6),
    (b"1e-400", 0, 0, 6),
    (b"-1e-400", 0, 0x80000000, 7),
    (b"1.4e-45", 0, 1, 7),
    (b"7.006492321624085e-46", 0, 0, 21),  # just below 2^-150: 0
    (b"7.006492321624086e-46", 0, 1, 21),  # just above 2^-150: the smallest subnormal
    (b"1e-46", 0, 0, 5),
    (b"1.1754942e-38", 0, 0x007FFFFF, 13),
    (b"inf", 0, F32_INF, 3),
    (b"-INFINITY", 0, 0xFF800000, 9),
    (b"Infinit", 0, F32_INF, 3),
    (b"nan", 0, F32_QNAN, 3),
    (b"-NaN", 0, 0xFFC00000, 4),
    (b"nan(abc_12)", 0, F32_QNAN, 11),
    (b"nan(", 0, F32_QNAN, 3),
    (b"nan(a b)", 0, F32_QNAN, 3),
    (b"0x10", 0, 0, 1),  # no hexadecimal (strtof would read 16)
    (b"1e99999999999999999999999999", -ERANGE, F32_INF, 28),
    (b"1e-99999999999999999999999999", 0, 0, 29),
    (b"0e99999", 0, 0, 7),
    (b"", -EINVAL, 0xDEADBEEF, 0),
    (b"+", -EINVAL, 0xDEADBEEF, 0),
    (b"-", -EINVAL, 0xDEADBEEF, 0),
    (b".", -EINVAL, 0xDEADBEEF, 0),
    (b"+.e1", -EINVAL, 0xDEADBEEF, 0),
    (b"e5", -EINVAL, 0xDEADBEEF, 0),
    (b"in", -EINVAL, 0xDEADBEEF, 0),
    (b"na", -EINVAL, 0xDEADBEEF, 0),
    (b" 1", -EINVAL, 0xDEADBEEF, 0),  # no leading whitespace
    (b"\x001", -EINVAL, 0xDEADBEEF, 0),
    (b"--1", -EINVAL, 0xDEADBEEF, 0),
    (b"1\x002", 0, 0x3F800000, 1),
]


@pytest.mark.parametrize(("text", "ret", "want", "used"), PARSE_EXAMPLES)
def test_parse_examples(ops: Ops, text: bytes, ret: int, want: int, used: int) -> None:
    assert parse_f32(ops, text) == (ret, want, used)
    if ret != -EINVAL and not text.startswith(b"0x") and not text.lower().startswith(b"nan("):
        sbits, sused, _ = strtof(text)  # the table agrees with glibc
        assert (sbits, sused) == (want, used) or (is_nan32(sbits) and is_nan32(want))


def test_parse_used_may_be_null(ops: Ops) -> None:
    out = ops.ffi.new("uint32_t *")
    assert ops.lib.flax_parse_f32(exact_buf(ops, b"2.5"), 3, out, ops.ffi.NULL) == 0
    assert out[0] == 0x40200000


@HYP
@given(text=decimal_texts())
@example(text=b"1" * 130 + b"e-130")
@example(text=b"0." + b"0" * 300 + b"1e300")
def test_parse_decimal_texts(ops: Ops, text: bytes) -> None:
    check_parse(ops, text)


@HYP
@given(text=near_float_texts())
def test_parse_near_floats(ops: Ops, text: bytes) -> None:
    check_parse(ops, text)


@HYP
@given(case=midpoint_texts())
def test_parse_midpoints(ops: Ops, case: tuple[bytes, int]) -> None:
    """Exact midpoints round to even; one unit above/below (even 150 digits later) does not."""
    text, how = case
    ret, got, used = parse_f32(ops, text)
    assert used == len(text)
    ref = decimal_fraction(text)
    assert ref is not None
    value, neg, _ = ref
    rbits, ovf = ref_round32(value, neg)
    assert (ret, got) == ((-ERANGE if ovf else 0), rbits), text
    if how == 0 and not ovf:
        assert rbits & 1 == 0  # ties to even
    want, want_used, _ = strtof(text)
    assert (got, used) == (want, want_used), text


def test_parse_round_trip_dense(ops: Ops, ops_report: list[str]) -> None:
    """%.9g and the shortest repr of random floats parse back to the same bits."""
    rng = np.random.default_rng(7)
    b = rng.integers(0, F32_INF, size=20_000, dtype=np.uint64).astype(np.uint32)
    b = np.concatenate([b, np.arange(0, 2000, dtype=np.uint32), b[:5000] | 0x80000000])
    for x in b.tolist():
        v = f32_value(x)
        for text in ("%.9g" % v, str(np.float32(v))):  # noqa: UP031
            ret, got, used = parse_f32(ops, text.encode())
            assert (ret, got, used) == (0, x, len(text)), text
    ops_report.append(f"flax_parse_f32: {2 * b.size:,} round trips (%.9g, shortest): identical")


def test_parse_long_texts(ops: Ops) -> None:
    """Thousands of digits, the deciding one far past the 120 kept."""
    mid = (f32_fraction(0x3F800000) + f32_fraction(0x3F800001)) / 2  # tie: to even (down)
    d, e = exact_decimal(mid)
    s = str(d)
    for zeros in (0, 100, 1000, 5000):
        for tail, want in ((b"", 0x3F800000), (b"1", 0x3F800001)):
            text = (s[:1] + "." + s[1:] + "0" * zeros).encode() + tail
            text += f"e{e + len(s) - 1}".encode()
            assert parse_f32(ops, text) == (0, want, len(text))
            check_parse(ops, text)
    big = b"9" * 5000  # 10^5000 - 1: overflow
    assert parse_f32(ops, big) == (-ERANGE, F32_INF, 5000)
    small = b"0." + b"0" * 5000 + b"1e5000"  # 0.1
    assert parse_f32(ops, small) == (0, 0x3DCCCCCD, len(small))
    many = b"1" + b"0" * 3000 + b"e-3000"
    assert parse_f32(ops, many) == (0, 0x3F800000, len(many))


@HYP_LISTS
@given(text=decimal_texts() | near_float_texts(), data=st.data())
def test_parse_never_reads_past_len(ops: Ops, text: bytes, data: st.DataObject) -> None:
    """Every prefix of a number, in an exact-size buffer, parses like the truncated text."""
    cut = data.draw(st.integers(0, len(text)))
    check_parse(ops, text[:cut])


def test_parse_prefixes_exhaustive(ops: Ops) -> None:
    for text in [b"-123.456e-7", b"infinity", b"-nan(x1)", b"1e+", b".5E-3", b"0.0000001"]:
        for cut in range(len(text) + 1):
            check_parse(ops, text[:cut])


def test_parse_checker_can_fail(ops: Ops) -> None:
    """check_parse rejects results that are one ulp, one byte or one errno off."""
    for text in (b"0.1", b"-7e-46", b"1e39", b"12abc"):
        ret, got, used = parse_f32(ops, text)
        check_parse(ops, text, (ret, got, used))
        for wrong in ((ret, got + 1, used), (ret, got, used + 1), (ret ^ -1, got, used)):
            with pytest.raises(AssertionError):
                check_parse(ops, text, wrong)
    assert ref_round32(Fraction(1, 10), False) == (0x3DCCCCCD, False)
    assert ref_round32(Fraction(1, 10) * (1 + Fraction(1, 2**23)), False)[0] == 0x3DCCCCCE


# --------------------------------------------------------------------------- flax_parse_numbers


def pack_ints(dtype: int, values: Sequence[int]) -> bytes:
    code = INT_TYPES[dtype][3]
    return b"".join(struct.pack(code, v) for v in values)


SEPARATORS = [" ", ",", ", ", " ,", " , ", "\t", "\n", "  ", "\r\n", ",\t", "\v\f "]


@st.composite
def joined(draw: st.DrawFn, tokens: list[str]) -> bytes:
    lead = draw(st.sampled_from(["", " ", "\n", "\t "]))
    trail = draw(st.sampled_from(["", "\n", " \n", "  "]))
    out = lead
    for i, tok in enumerate(tokens):
        if i:
            out += draw(st.sampled_from(SEPARATORS))
        out += tok
    return (out + trail).encode()


@HYP_LISTS
@given(dtype=st.sampled_from(sorted(INT_TYPES)), data=st.data())
def test_numbers_integers(ops: Ops, dtype: int, data: st.DataObject) -> None:
    _, lo, hi, _ = INT_TYPES[dtype]
    values = data.draw(st.lists(st.integers(lo, hi), max_size=12))
    tokens = [
        data.draw(st.sampled_from([str(v), f"+{v}" if v >= 0 else str(v), f"{v:+04d}"]))
        for v in values
    ]
    text = data.draw(joined(tokens))
    assert parse_numbers(ops, text, dtype, len(values)) == (0, pack_ints(dtype, values))
    if values:  # one fewer or one more number wanted: -EINVAL, dst untouched
        fill = bytes([0xA5]) * ELEM_SIZE[dtype] * (len(values) - 1)
        assert parse_numbers(ops, text, dtype, len(values) - 1) == (-EINVAL, fill)
    fill = bytes([0xA5]) * ELEM_SIZE[dtype] * (len(values) + 1)
    assert parse_numbers(ops, text, dtype, len(values) + 1) == (-EINVAL, fill)


@HYP_LISTS
@given(dtype=st.sampled_from(sorted(INT_TYPES)), data=st.data())
def test_numbers_integer_range(ops: Ops, dtype: int, data: st.DataObject) -> None:
    _, lo, hi, _ = INT_TYPES[dtype]
    bad = data.draw(
        st.integers(hi + 1, hi + 3)
        | st.integers(lo - 3, lo - 1)
        | st.integers(hi + 1, 10**40)
        | st.integers(-(10**40), lo - 1)
    )
    good = data.draw(st.lists(st.integers(lo, hi), max_size=3))
    pos = data.draw(st.integers(0, len(good)))
    tokens = [str(v) for v in good[:pos]] + [str(bad)] + [str(v) for v in good[pos:]]
    n = len(tokens)
    size = ELEM_SIZE[dtype] * n
    assert parse_numbers(ops, data.draw(joined(tokens)), dtype, n) == (-ERANGE, b"\xa5" * size)


def test_numbers_integer_edges(ops: Ops) -> None:
    for dtype, (_, lo, hi, _) in INT_TYPES.items():
        text = f"{lo} {hi} -0 +0 0000{hi}".encode()
        assert parse_numbers(ops, text, dtype, 5) == (0, pack_ints(dtype, [lo, hi, 0, 0, hi]))
        for bad in (b"1.5", b"1e3", b"1.", b".5", b"0x10", b"1-2", b"--1", b"+", b"-", b"1_0"):
            assert parse_numbers(ops, bad, dtype, 1)[0] == -EINVAL, (dtype, bad)
        assert parse_numbers(ops, b"inf", dtype, 1)[0] == -EINVAL
        assert parse_numbers(ops, b"nan", dtype, 1)[0] == -EINVAL
        # the first error in the text wins; a token glued to junk is malformed
        assert parse_numbers(ops, f"{hi + 1} x".encode(), dtype, 2)[0] == -ERANGE
        assert parse_numbers(ops, f"x {hi + 1}".encode(), dtype, 2)[0] == -EINVAL
        assert parse_numbers(ops, f"{hi + 1}x".encode(), dtype, 1)[0] == -EINVAL
        assert parse_numbers(ops, f"{hi + 1} 1 2".encode(), dtype, 2)[0] == -ERANGE
        assert parse_numbers(ops, b"9" * 400, dtype, 1)[0] == -ERANGE


SEPARATOR_CASES: list[tuple[bytes, int, int]] = [
    # text, n, return (uint8)
    (b"", 0, 0),
    (b" \n\t", 0, 0),
    (b"1", 0, -EINVAL),
    (b"1 2 3", 3, 0),
    (b"1,2,3", 3, 0),
    (b"1, 2 ,3\n", 3, 0),
    (b"  1\t2\n3\n", 3, 0),
    (b"1\n\n", 1, 0),
    (b"1,\n2", 2, 0),
    (b",1", 1, -EINVAL),
    (b"1,", 1, -EINVAL),
    (b"1, ", 1, -EINVAL),
    (b"1,,2", 2, -EINVAL),
    (b"1, ,2", 2, -EINVAL),
    (b"1;2", 2, -EINVAL),
    (b"1 2", 1, -EINVAL),
    (b"1 2", 3, -EINVAL),
    (b"1\x002", 2, -EINVAL),
    (b"1 2\x00", 2, -EINVAL),
    (b"\x00", 0, -EINVAL),
    (b"1 x", 1, -EINVAL),
]


@pytest.mark.parametrize(("text", "n", "ret"), SEPARATOR_CASES)
def test_numbers_separators(ops: Ops, text: bytes, n: int, ret: int) -> None:
    got, data = parse_numbers(ops, text, UINT8, n)
    assert got == ret
    if ret == 0:
        assert data == bytes(range(1, n + 1))
    else:
        assert data == b"\xa5" * n


def test_numbers_bad_dtype(ops: Ops) -> None:
    for dtype in (0, 8, 99, 0xFFFFFFFF):
        assert parse_numbers(ops, b"", dtype, 0)[0] == -EINVAL
        assert parse_numbers(ops, b"1", dtype, 1)[0] == -EINVAL


@HYP_LISTS
@given(vals=st.lists(f32_classes(), max_size=10), prec=precs, data=st.data())
def test_numbers_float32(ops: Ops, vals: list[int], prec: int, data: st.DataObject) -> None:
    """Values printed with any precision parse back as strtof reads them.

    A value printed with few digits can round up past the largest float
    ("3.403e+38"): that text is -ERANGE, and dst stays untouched.
    """
    vals = [v for v in vals if not is_nan32(v)]
    tokens = [ref_fmt(v, prec) for v in vals]
    want, ret = b"", 0
    for tok in tokens:
        sbits, sused, _ = strtof(tok.encode())
        assert sused == len(tok)
        want += struct.pack("<I", sbits)
        if sbits & 0x7FFFFFFF == F32_INF and "inf" not in tok:
            ret = -ERANGE
    text = data.draw(joined(tokens))
    if ret:
        want = b"\xa5" * len(want)
    assert parse_numbers(ops, text, FLOAT32, len(vals)) == (ret, want)


def test_numbers_float32_errors(ops: Ops) -> None:
    assert parse_numbers(ops, b"1 1e39", FLOAT32, 2) == (-ERANGE, b"\xa5" * 8)
    # FLT_MAX printed by %.4g rounds past it: reading that back is -ERANGE
    assert ref_fmt(0x7F7FFFFF, 4) == "3.403e+38"
    assert parse_numbers(ops, b"3.403e+38", FLOAT32, 1) == (-ERANGE, b"\xa5" * 4)
    assert parse_numbers(ops, b"1e39x", FLOAT32, 1) == (-EINVAL, b"\xa5" * 4)
    assert parse_numbers(ops, b"1e-999 -inf nan", FLOAT32, 3) == (
        0,
        struct.pack("<3I", 0, 0xFF800000, F32_QNAN),
    )
    assert parse_numbers(ops, b"1.5.5", FLOAT32, 1)[0] == -EINVAL
    assert parse_numbers(ops, b"1e", FLOAT32, 1)[0] == -EINVAL
    assert parse_numbers(ops, b"0x1", FLOAT32, 1)[0] == -EINVAL


# binary16: the reference is round_binary(p=11); numpy's float16 of the exact value checks it.


def f16_fraction(h: int) -> Fraction:
    e, m = (h >> 10) & 0x1F, h & 0x3FF
    v = Fraction(m if e == 0 else m | 0x400) * Fraction(2) ** ((e or 1) - 25)
    return -v if h >> 15 else v


def test_f16_reference_agrees_with_numpy() -> None:
    """round_binary(p=11) against numpy on values exact in float64 (no double rounding)."""
    rng = np.random.default_rng(3)
    for x in rng.standard_normal(5000).tolist() + (rng.standard_normal(5000) * 1e4).tolist():
        for v in (x, x * 1e-5, x * 7):
            with np.errstate(over="ignore"):
                h = np.array(v, dtype=np.float16)
            got, ovf = ref_round16(Fraction(v), v < 0)
            assert got == int(h.view(np.uint16)), v
            assert ovf == math.isinf(float(h))


@HYP
@given(text=decimal_texts() | near_float_texts())
def test_numbers_float16_decimal(ops: Ops, text: bytes) -> None:
    ref = decimal_fraction(text)
    assume(ref is not None and ref[2] == len(text))
    assert ref is not None
    value, neg, _ = ref
    want, ovf = ref_round16(value, neg)
    ret, data = parse_numbers(ops, text, FLOAT16, 1)
    if ovf:
        assert (ret, data) == (-ERANGE, b"\xa5\xa5")
    else:
        assert (ret, data) == (0, struct.pack("<H", want)), text


def f16_texts() -> Iterator[tuple[bytes, int, bool]]:
    """Every finite binary16, printed exactly; and its midpoints with the next, +-."""
    for h in range(0x7C00):
        v = f16_fraction(h)
        d, e = exact_decimal(v)
        yield f"{d}e{e}".encode(), h, False
        hi = f16_fraction(h + 1) if h + 1 < 0x7C00 else Fraction(2) ** 16
        md, me = exact_decimal((v + hi) / 2)
        tie = h if h % 2 == 0 else h + 1
        yield f"{md}e{me}".encode(), tie, tie == 0x7C00
        yield f"{md * 10 - 1}e{me - 1}".encode(), h, False
        yield f"{md * 10 + 1}e{me - 1}".encode(), h + 1, h + 1 == 0x7C00


def test_numbers_float16_all_values_and_midpoints(ops: Ops, ops_report: list[str]) -> None:
    texts: list[bytes] = []
    want = b""
    expect_range: list[bytes] = []
    for text, h, ovf in f16_texts():
        if ovf:
            expect_range.append(text)
            continue
        if len(texts) % 64 == 0:  # the construction, checked on a sample (Fractions are slow)
            assert ref_round16(Fraction(text.decode()), False) == (h, False), text
        texts.append(text)
        want += struct.pack("<H", h)
    chunk = 4096
    for i in range(0, len(texts), chunk):
        part = texts[i : i + chunk]
        ret, data = parse_numbers(ops, b" ".join(part), FLOAT16, len(part))
        assert ret == 0
        if data != want[2 * i : 2 * (i + len(part))]:
            for j, t in enumerate(part):
                got = data[2 * j : 2 * j + 2]
                assert got == want[2 * (i + j) : 2 * (i + j) + 2], t
    for text in expect_range:
        assert parse_numbers(ops, b"-" + text, FLOAT16, 1)[0] == -ERANGE
    ops_report.append(f"FLOAT16: {len(texts):,} exact values and midpoints (+-): identical")


def test_numbers_float16_specials(ops: Ops) -> None:
    cases = [
        (b"65504", 0x7BFF), (b"65519.99", 0x7BFF), (b"-0", 0x8000), (b"inf", F16_INF),
        (b"-infinity", 0xFC00), (b"nan", F16_QNAN), (b"-nan", 0xFE00),
        (b"5.960464477539063e-8", 1), (b"2.98023223876953125e-8", 0),  # 2^-25: tie to 0
        (b"2.98023223876953126e-8", 1), (b"6.103515625e-05", 0x0400), (b"1e-30", 0),
    ]  # fmt: skip
    for text, h in cases:
        assert parse_numbers(ops, text, FLOAT16, 1) == (0, struct.pack("<H", h)), text
    for text in (b"65520", b"1e5", b"-70000", b"1e400"):
        assert parse_numbers(ops, text, FLOAT16, 1) == (-ERANGE, b"\xa5\xa5"), text


@HYP
@given(
    dtype=st.sampled_from([UINT8, INT8, UINT16, INT16, INT32, FLOAT32, FLOAT16]),
    text=st.binary(max_size=40) | st.text("0123456789 ,.-+eE\n\tinfa", max_size=40).map(str.encode),
    n=st.integers(0, 6),
)
def test_numbers_garbage(ops: Ops, dtype: int, text: bytes, n: int) -> None:
    """Arbitrary bytes: never a crash or an over-read; dst written only on success."""
    ret, data = parse_numbers(ops, text, dtype, n)
    assert ret in (0, -EINVAL, -ERANGE)
    if ret:
        assert data == b"\xa5" * len(data)
