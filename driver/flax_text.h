/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev number text: formatting and parsing, integer arithmetic only.
 *
 * flax_text.c compiles in the kernel as an ordinary object (no SSE, no FPU
 * section needed) and in user space (bindings/, for native tests), through
 * flax_compat.h.  It contains no floating-point type at all: float values
 * cross this API as binary32 bit patterns (u32), float16 ones as binary16
 * bit patterns, and every conversion is exact integer arithmetic on small
 * fixed-size big numbers (a few hundred bytes of stack at most, no
 * allocation, no global state), so results are correctly rounded.
 *
 * Callers: sysfs show/store and the text result format, where people and
 * shells read and write numbers.  Buffers need no particular alignment.
 * Tests: tests/host/test_text.py.
 */
#ifndef _FLAX_TEXT_H
#define _FLAX_TEXT_H

#include "flax_compat.h"
#include "flax_dtype.h"
#include "uapi/flaxdev.h"

/* Largest precision flax_fmt_f32() accepts: enough to round-trip a float. */
#define FLAX_FMT_PREC_MAX 9

/* Longest output of flax_fmt_f32(), NUL excluded: "-1.23456789e-38". */
#define FLAX_FMT_F32_MAX 15

/**
 * flax_fmt_f32() - print a binary32 value like printf's "%.*g".
 * @buf: output buffer, @size bytes; may be NULL if @size is 0.
 * @size: size of @buf.
 * @bits: binary32 bits of the value.
 * @prec: significant digits, 1 to FLAX_FMT_PREC_MAX (0 means 1, as in C).
 *
 * The output is exactly snprintf(buf, size, "%.*g", prec, value) of glibc
 * and of Python's '%.*g' % (prec, value): the exact binary value rounded
 * to @prec significant digits, ties to even; fixed notation when the
 * decimal exponent X of the rounded value satisfies -4 <= X < @prec, else
 * "d.ddde+XX" (at least two exponent digits); trailing zeros and a bare
 * decimal point removed.  Zero prints as "0" or "-0", infinities as "inf"
 * or "-inf", every NaN as "nan" (its sign and payload ignored).
 *
 * Return: the length of the full output without the NUL, as snprintf():
 * the output was truncated if that is >= @size.  If @size > 0 the buffer is
 * always NUL-terminated.  -EINVAL (and an empty string if @size > 0) if
 * @prec > FLAX_FMT_PREC_MAX.
 */
int flax_fmt_f32(char *buf, size_t size, u32 bits, u32 prec);

/**
 * flax_fmt_f32_list() - print float32 values separated by spaces.
 * @buf: output buffer, @size bytes; may be NULL if @size is 0.
 * @size: size of @buf.
 * @vals: @n float32 values (binary32 bit patterns, host order, any
 *	alignment).
 * @n: number of values.
 * @prec: significant digits, as for flax_fmt_f32().
 *
 * Each value as flax_fmt_f32() prints it, one space between values, one
 * newline at the end ("\n" alone for @n == 0).
 *
 * Return: the length of the full output without the NUL, as snprintf():
 * truncated if that is >= @size; NUL-terminated if @size > 0.  -EINVAL
 * for a bad @prec, -EOVERFLOW if the length would exceed INT_MAX (the
 * buffer then holds a truncated output).
 */
int flax_fmt_f32_list(char *buf, size_t size, const void *vals, u32 n,
		      u32 prec);

/**
 * flax_parse_f32() - parse one decimal number into a binary32 value.
 * @s: text; need not be NUL-terminated.  No byte at or after @s + @len is
 *	read.
 * @len: bytes available at @s.
 * @out: binary32 bits of the value.
 * @used: bytes consumed (may be NULL).
 *
 * Syntax, as C's strtof() without its leading-whitespace skipping and
 * without hexadecimal: an optional sign, then digits with an optional
 * decimal point ("1", "1.5", "1.", ".5"; at least one digit), then an
 * optional exponent ('e' or 'E', optional sign, digits; an 'e' not
 * followed by digits is not consumed: "1e" parses "1").  Or, after the
 * optional sign and in any case: "inf", "infinity" or "nan", optionally
 * followed by "(" [A-Za-z0-9_]* ")" like glibc.  Parsing stops at the
 * first byte that does not continue the number; the caller decides
 * whether what follows is acceptable.
 *
 * The value is the decimal number correctly rounded to binary32 (nearest,
 * ties to even), including subnormals, whatever the number of digits or
 * the size of the exponent: identical to glibc's strtof().  Values too
 * small for the smallest subnormal give a signed zero and return 0; NaN
 * is 0x7fc00000 with the sign given.
 *
 * Return: 0; -ERANGE if a finite number rounds to infinity (*@out is then
 * the signed infinity, *@used covers the number); -EINVAL if there is no
 * number at @s (*@out untouched, *@used = 0).
 */
int flax_parse_f32(const char *s, size_t len, u32 *out, size_t *used);

/**
 * flax_parse_numbers() - parse a list of @n numbers into an array.
 * @text: text; need not be NUL-terminated.  No byte at or after
 *	@text + @len is read.
 * @len: bytes at @text.
 * @dtype: element type of @dst: FLAX_DTYPE_UINT8, _INT8, _UINT16, _INT16,
 *	_INT32, _FLOAT32 or _FLOAT16.
 * @dst: @n elements of @dtype, host byte order, any alignment.
 * @n: number of numbers wanted.
 *
 * Numbers are separated by ASCII whitespace, by one comma, or by one comma
 * with whitespace around it; whitespace (newlines included) may also come
 * before the first and after the last number, but a comma may not.
 * Integer types take integers only: an optional sign and decimal digits
 * ("1.5", "1e3", "0x10" are malformed), and the value must fit the type
 * ("-0" fits an unsigned type).  FLOAT32 takes flax_parse_f32()'s syntax
 * and rounding; FLOAT16 the same syntax, correctly rounded to binary16
 * (NaN is 0x7e00 with the sign given).  Each number must be followed by a
 * separator or the end of the text.
 *
 * @dst is written only if the whole text is valid: it is parsed twice,
 * once to check, once to store.
 *
 * Return: 0; -EINVAL for an unknown @dtype, malformed text, or a count of
 * numbers other than @n; -ERANGE for an integer out of range or a finite
 * number that rounds to infinity.  When there are several errors, the
 * first one in the text wins; a missing number is found at the end.
 */
int flax_parse_numbers(const char *text, size_t len, u32 dtype, void *dst,
		       u32 n);

#endif /* _FLAX_TEXT_H */
