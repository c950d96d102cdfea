// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev number text: formatting and parsing, integer arithmetic only.
 *
 * This file is built twice from the same text:
 *  - in the kernel, as an ordinary object of the module: no SSE, no FPU
 *    section, callable from any context that may use ~300 bytes of stack;
 *  - in user space (-DFLAX_USERSPACE, bindings/ops_build.py) for the native
 *    tests in tests/host/test_text.py.
 *
 * Rules that keep both builds honest:
 *  - nothing but flax_compat.h: no allocation, no written globals, no libc
 *    beyond memcpy();
 *  - no float or double anywhere: values are bit patterns, and both
 *    directions are exact integer arithmetic on small big numbers of fixed
 *    size, so every result is correctly rounded (no table of powers of ten,
 *    no approximation step to get wrong);
 *  - the only 64-bit divisions are by the constant 10^9 (x86-64 does them
 *    inline; a 32-bit port would want div_u64());
 *  - buffers are void or char pointers of unknown alignment: elements are
 *    loaded and stored with memcpy(); text is never read past its length.
 *
 * Formatting (flax_fmt_f32): a binary32 value is m * 2^e with m < 2^24 and
 * -149 <= e <= 104.  If e >= 0 it is the integer m * 2^e (at most 39
 * digits); otherwise it is m * 5^-e / 10^-e, and m * 5^-e has at most 112
 * digits.  That integer is computed exactly in base 10^9 limbs, its digits
 * are rounded to the precision (ties to even, on all of them), then laid
 * out the way C's %g does.
 *
 * Parsing (flax_parse_f32 and the float16 path of flax_parse_numbers): the
 * first FLAX_KEEP_DIGITS significant digits are kept in a binary big number
 * D, with value D * 10^E.  A midpoint between two adjacent binary32 values
 * has at most 113 significant digits, so if more digits follow and any of
 * them is non-zero, one more digit 1 is appended: the truncated number then
 * compares with every midpoint exactly as the full one does.  D * 10^E is
 * written as the fraction (D * 5^E) / 1 * 2^E, or D / 5^-E * 2^E, and the
 * bits of the quotient are produced by long division, one bit at a time,
 * until the precision and a rounding bit are known; the remainder is the
 * sticky bit.  Magnitudes outside [10^-46, 10^39) are decided before any
 * big arithmetic (zero, or infinity), which bounds the big numbers to 404
 * bits.
 */

#include "flax_text.h"

#define FLAX_TEXT_INT_MAX 0x7fffffffu

/* -------------------------------------------------------------- formatting */

#define FLAX_DEC_BASE 1000000000u
/* 2^24 * 5^149 < 10^112: 13 limbs of 9 digits. */
#define FLAX_DEC_LIMBS 13
/* Digits kept for rounding: the precision and one; the rest is sticky. */
#define FLAX_FMT_DIGITS (FLAX_FMT_PREC_MAX + 1)

/* A non-negative integer in base 10^9, least significant limb first. */
struct flax_dec {
	u32 n;
	u32 limb[FLAX_DEC_LIMBS];
};

/* Powers of five up to 5^13 (the largest below 2^32). */
static const u32 flax_pow5[14] = {
	1u,	5u,	 25u,	   125u,     625u,	3125u,	    15625u,
	78125u, 390625u, 1953125u, 9765625u, 48828125u, 244140625u, 1220703125u,
};

/* d *= mul, for mul < 10^9: every carry is then below 10^9. */
static void flax_dec_mul(struct flax_dec *d, u32 mul)
{
	u64 carry = 0;
	u32 i;

	for (i = 0; i < d->n; i++) {
		u64 t = (u64)d->limb[i] * mul + carry;

		d->limb[i] = (u32)(t % FLAX_DEC_BASE);
		carry = t / FLAX_DEC_BASE;
	}
	if (carry && d->n < FLAX_DEC_LIMBS)
		d->limb[d->n++] = (u32)carry;
}

/*
 * The first FLAX_FMT_DIGITS decimal digits of d (non-zero), most
 * significant first, into dig; *sticky = whether any later digit is not 0.
 * Returns the number of digits of d.
 */
static u32 flax_dec_digits(const struct flax_dec *d, u8 *dig, int *sticky)
{
	u32 nd, i, k, v, len;

	v = d->limb[d->n - 1];
	for (len = 1; v >= 10; len++)
		v /= 10;
	nd = len + (d->n - 1) * 9;
	*sticky = 0;
	for (i = d->n, k = 0; i-- > 0; k += len, len = 9) {
		u32 j;

		v = d->limb[i];
		for (j = len; j-- > 0; v /= 10) {
			if (k + j < FLAX_FMT_DIGITS)
				dig[k + j] = v % 10;
			else if (v % 10)
				*sticky = 1;
		}
	}
	return nd;
}

static u32 flax_put_str(char *out, u32 len, const char *s)
{
	while (*s)
		out[len++] = *s++;
	return len;
}

/*
 * "%.*g" of a binary32 value into out (FLAX_FMT_F32_MAX bytes, no NUL);
 * prec is 1..FLAX_FMT_PREC_MAX.  Returns the length.
 */
static u32 flax_fmt_raw(char *out, u32 bits, u32 prec)
{
	u32 bexp = (bits >> 23) & 0xff, m = bits & 0x7fffff;
	u8 dig[FLAX_FMT_DIGITS];
	struct flax_dec d;
	u32 len = 0, nd, sig, i, ax;
	s32 e, x, k;
	int sticky;

	if (bexp == 0xff && m)
		return flax_put_str(out, 0, "nan");
	if (bits >> 31)
		out[len++] = '-';
	if (bexp == 0xff)
		return flax_put_str(out, len, "inf");
	if (!bexp && !m) {
		out[len++] = '0';
		return len;
	}
	if (bexp) {
		m |= 0x800000;
		e = (s32)bexp - 150;
	} else {
		e = -149;
	}

	/* value = d * 10^min(e, 0), exactly */
	d.n = 1;
	d.limb[0] = m;
	if (e >= 0) {
		for (k = e; k >= 29; k -= 29)
			flax_dec_mul(&d, 1u << 29);
		if (k)
			flax_dec_mul(&d, 1u << k);
	} else {
		for (k = -e; k >= 12; k -= 12)
			flax_dec_mul(&d, flax_pow5[12]);
		if (k)
			flax_dec_mul(&d, flax_pow5[k]);
	}
	nd = flax_dec_digits(&d, dig, &sticky);
	x = (s32)nd - 1 + (e < 0 ? e : 0); /* decimal exponent */

	/* Round to prec significant digits, ties to even. */
	if (nd > prec) {
		u32 r = dig[prec];
		int up = r > 5;

		for (i = prec + 1; i < nd && i < FLAX_FMT_DIGITS; i++)
			sticky |= dig[i];
		if (r == 5)
			up = sticky || (dig[prec - 1] & 1);
		if (up) {
			i = prec;
			while (i > 0 && dig[i - 1] == 9)
				dig[--i] = 0;
			if (i) {
				dig[i - 1]++;
			} else {
				dig[0] = 1;
				x++;
			}
		}
	} else {
		for (i = nd; i < prec; i++)
			dig[i] = 0;
	}

	sig = prec;
	if (x < -4 || x >= (s32)prec) {
		/* d.ddde+XX */
		while (sig > 1 && !dig[sig - 1])
			sig--;
		out[len++] = '0' + dig[0];
		if (sig > 1)
			out[len++] = '.';
		for (i = 1; i < sig; i++)
			out[len++] = '0' + dig[i];
		out[len++] = 'e';
		out[len++] = x < 0 ? '-' : '+';
		ax = x < 0 ? -x : x;
		if (ax >= 100)
			out[len++] = '0' + ax / 100;
		out[len++] = '0' + ax / 10 % 10;
		out[len++] = '0' + ax % 10;
	} else if (x >= 0) {
		/* ddd.ddd: never strip the integer digits */
		while (sig > (u32)x + 1 && !dig[sig - 1])
			sig--;
		for (i = 0; i < sig; i++) {
			out[len++] = '0' + dig[i];
			if (i == (u32)x && i + 1 < sig)
				out[len++] = '.';
		}
	} else {
		/* 0.000ddd */
		while (sig > 1 && !dig[sig - 1])
			sig--;
		out[len++] = '0';
		out[len++] = '.';
		for (k = x; k < -1; k++)
			out[len++] = '0';
		for (i = 0; i < sig; i++)
			out[len++] = '0' + dig[i];
	}
	return len;
}

/* snprintf-style append: store what fits before the last byte of buf. */
static u64 flax_append(char *buf, size_t size, u64 pos, const char *s, u32 len)
{
	u64 room;

	if (size && pos < size - 1) {
		room = size - 1 - pos;
		memcpy(buf + pos, s, room < len ? room : len);
	}
	return pos + len;
}

static void flax_terminate(char *buf, size_t size, u64 pos)
{
	if (size)
		buf[pos < size - 1 ? pos : size - 1] = '\0';
}

int flax_fmt_f32(char *buf, size_t size, u32 bits, u32 prec)
{
	char tmp[FLAX_FMT_F32_MAX + 1];
	u32 len;

	if (prec > FLAX_FMT_PREC_MAX) {
		flax_terminate(buf, size, 0);
		return -EINVAL;
	}
	len = flax_fmt_raw(tmp, bits, prec ? prec : 1);
	flax_terminate(buf, size, flax_append(buf, size, 0, tmp, len));
	return len;
}

int flax_fmt_f32_list(char *buf, size_t size, const void *vals, u32 n, u32 prec)
{
	char tmp[FLAX_FMT_F32_MAX + 2];
	const u8 *p = vals;
	u64 pos = 0;
	u32 i, bits, len;

	if (prec > FLAX_FMT_PREC_MAX) {
		flax_terminate(buf, size, 0);
		return -EINVAL;
	}
	if (!prec)
		prec = 1;
	for (i = 0; i < n; i++) {
		memcpy(&bits, p + (size_t)i * 4, sizeof(bits));
		len = flax_fmt_raw(tmp, bits, prec);
		tmp[len++] = i + 1 < n ? ' ' : '\n';
		pos = flax_append(buf, size, pos, tmp, len);
	}
	if (!n)
		pos = flax_append(buf, size, pos, "\n", 1);
	flax_terminate(buf, size, pos);
	if (pos > FLAX_TEXT_INT_MAX)
		return -EOVERFLOW;
	return (int)pos;
}

/* ----------------------------------------------------------------- parsing */

/* Significant digits kept; a binary32 midpoint has at most 113. */
#define FLAX_KEEP_DIGITS 120
/* 2^404 bounds every big number below (see flax_to_binary()): 13 limbs. */
#define FLAX_BIG_LIMBS 13
/*
 * Exponent digits saturate here: exact for any text shorter than 10^11
 * bytes (digits move the exponent by at most their count).
 */
#define FLAX_EXP_SAT 1000000000000ll

/* A non-negative binary integer, least significant limb first, n limbs used. */
struct flax_big {
	u32 n;
	u32 limb[FLAX_BIG_LIMBS];
};

enum { FLAX_NUM_FINITE, FLAX_NUM_INF, FLAX_NUM_NAN };

/* A parsed decimal: (-1)^neg * d * 10^e10, d having nd digits. */
struct flax_dnum {
	struct flax_big d;
	s64 e10;
	u32 nd;
	int neg;
	int kind;
};

/* A binary interchange format. */
struct flax_bfmt {
	u32 p; /* significand bits, the implicit one included */
	s32 emin; /* exponent of the smallest normal */
	s32 emax; /* exponent of the largest finite */
	u32 sign; /* sign bit */
};

static const struct flax_bfmt flax_binary32 = { 24, -126, 127, 1u << 31 };
static const struct flax_bfmt flax_binary16 = { 11, -14, 15, 1u << 15 };

static void flax_big_set(struct flax_big *b, u32 v)
{
	b->n = v ? 1 : 0;
	b->limb[0] = v;
}

/* b = b * mul + add */
static void flax_big_muladd(struct flax_big *b, u32 mul, u32 add)
{
	u64 carry = add;
	u32 i;

	for (i = 0; i < b->n; i++) {
		u64 t = (u64)b->limb[i] * mul + carry;

		b->limb[i] = (u32)t;
		carry = t >> 32;
	}
	if (carry && b->n < FLAX_BIG_LIMBS)
		b->limb[b->n++] = (u32)carry;
}

static void flax_big_mulpow5(struct flax_big *b, u32 k)
{
	for (; k >= 13; k -= 13)
		flax_big_muladd(b, flax_pow5[13], 0);
	if (k)
		flax_big_muladd(b, flax_pow5[k], 0);
}

static u32 flax_big_bitlen(const struct flax_big *b)
{
	u32 top, len;

	if (!b->n)
		return 0;
	top = b->limb[b->n - 1];
	len = (b->n - 1) * 32;
	while (top) {
		len++;
		top >>= 1;
	}
	return len;
}

static inline void flax_big_shl(struct flax_big *b, u32 k)
{
	u32 words = k / 32, shift = k % 32, n, i;

	if (!b->n)
		return;
	n = b->n + words + 1;
	if (n > FLAX_BIG_LIMBS)
		n = FLAX_BIG_LIMBS; /* not reached: see FLAX_BIG_LIMBS */
	for (i = n; i-- > 0;) {
		u64 v = 0;

		if (i >= words && i - words < b->n)
			v = (u64)b->limb[i - words] << shift;
		if (shift && i >= words + 1 && i - words - 1 < b->n)
			v |= b->limb[i - words - 1] >> (32 - shift);
		b->limb[i] = (u32)v;
	}
	while (n && !b->limb[n - 1])
		n--;
	b->n = n;
}

static int flax_big_cmp(const struct flax_big *a, const struct flax_big *b)
{
	u32 i;

	if (a->n != b->n)
		return a->n < b->n ? -1 : 1;
	for (i = a->n; i-- > 0;) {
		if (a->limb[i] != b->limb[i])
			return a->limb[i] < b->limb[i] ? -1 : 1;
	}
	return 0;
}

/* a -= b, for a >= b */
static void flax_big_sub(struct flax_big *a, const struct flax_big *b)
{
	u32 borrow = 0, i;

	for (i = 0; i < a->n; i++) {
		u64 t = (u64)a->limb[i] - (i < b->n ? b->limb[i] : 0) - borrow;

		a->limb[i] = (u32)t;
		borrow = (u32)(t >> 63);
	}
	while (a->n && !a->limb[a->n - 1])
		a->n--;
}

/*
 * The value of v correctly rounded to format f (nearest, ties to even).
 * Consumes v->d.  Returns 0 or -ERANGE (overflow: *out is infinity).
 */
static int flax_to_binary(struct flax_dnum *v, const struct flax_bfmt *f,
			  u32 *out)
{
	u32 sign = v->neg ? f->sign : 0;
	u32 inf = (u32)(f->emax - f->emin + 2) << (f->p - 1);
	struct flax_big *a = &v->d, b;
	u32 q, bit, la, lb;
	s32 e2, nbits, i;
	s64 x;

	if (v->kind == FLAX_NUM_NAN) {
		*out = sign | inf | 1u << (f->p - 2);
		return 0;
	}
	if (v->kind == FLAX_NUM_INF) {
		*out = sign | inf;
		return 0;
	}
	x = (s64)v->nd - 1 + v->e10; /* 10^x <= value < 10^(x+1) */
	if (!a->n || x < -46) { /* 0, or below 10^-46 < 2^-150 */
		*out = sign;
		return 0;
	}
	if (x >= 39) /* 10^39 > 2^129 */
		goto overflow;

	/*
	 * value = a / b * 2^e2.  Here e10 >= -46 - FLAX_KEEP_DIGITS, so
	 * b <= 5^166 < 2^386, and a < 10^121 < 2^402 (or a < 10^39).
	 */
	e2 = (s32)v->e10;
	if (v->e10 >= 0) {
		flax_big_mulpow5(a, (u32)v->e10);
		flax_big_set(&b, 1);
	} else {
		flax_big_set(&b, 1);
		flax_big_mulpow5(&b, (u32)-v->e10);
	}
	/* Align: 1 <= a / b < 2, a and b below 2^403. */
	la = flax_big_bitlen(a);
	lb = flax_big_bitlen(&b);
	if (la < lb) {
		flax_big_shl(a, lb - la);
		e2 -= (s32)(lb - la);
	} else {
		flax_big_shl(&b, la - lb);
		e2 += (s32)(la - lb);
	}
	if (flax_big_cmp(a, &b) < 0) {
		flax_big_shl(a, 1);
		e2--;
	}
	if (e2 > f->emax)
		goto overflow;

	/* Significand bits available at this exponent (fewer if subnormal). */
	nbits = (s32)f->p;
	if (e2 < f->emin)
		nbits -= f->emin - e2;
	if (nbits < 0) { /* below half the smallest subnormal */
		*out = sign;
		return 0;
	}
	/* nbits quotient bits and a rounding bit; the remainder is sticky. */
	q = 0;
	for (i = 0; i <= nbits; i++) {
		if (i)
			flax_big_shl(a, 1); /* a < b before: a < 2b now */
		bit = flax_big_cmp(a, &b) >= 0;
		if (bit)
			flax_big_sub(a, &b);
		q = q << 1 | bit;
	}
	bit = q & 1;
	q >>= 1;
	if (bit && (a->n || (q & 1)))
		q++;
	if (e2 < f->emin) {
		/* subnormal; 2^(p-1) after rounding is the smallest normal */
		*out = sign | q;
		return 0;
	}
	if (q >> f->p) {
		q >>= 1;
		if (++e2 > f->emax)
			goto overflow;
	}
	*out = sign | (u32)(e2 - f->emin + 1) << (f->p - 1) |
	       (q & ((1u << (f->p - 1)) - 1));
	return 0;

overflow:
	*out = sign | inf;
	return -ERANGE;
}

static int flax_isdigit(char c)
{
	return c >= '0' && c <= '9';
}

static int flax_isspace(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Length of the longest case-insensitive prefix of word at s. */
static size_t flax_prefix(const char *s, size_t len, const char *word)
{
	size_t i;

	for (i = 0; word[i] && i < len; i++) {
		if ((s[i] | 0x20) != word[i])
			break;
	}
	return i;
}

/* inf, infinity, nan, nan(chars) after the sign; 0 if none. */
static size_t flax_scan_special(const char *s, size_t len, int *kind)
{
	size_t k, j;

	k = flax_prefix(s, len, "infinity");
	if (k >= 3) {
		*kind = FLAX_NUM_INF;
		return k == 8 ? 8 : 3;
	}
	if (flax_prefix(s, len, "nan") != 3)
		return 0;
	*kind = FLAX_NUM_NAN;
	if (len > 3 && s[3] == '(') {
		for (j = 4; j < len; j++) {
			char c = s[j];

			if (c == ')')
				return j + 1;
			if (!flax_isdigit(c) && c != '_' &&
			    ((c | 0x20) < 'a' || (c | 0x20) > 'z'))
				break;
		}
	}
	return 3;
}

/* Scan one number (flax_parse_f32() syntax) into v. */
static int flax_scan(const char *s, size_t len, struct flax_dnum *v,
		     size_t *used)
{
	size_t i = 0, ndig = 0, k;
	int frac = 0, sticky = 0;
	s64 adj = 0;
	u32 nd = 0;

	v->neg = 0;
	v->kind = FLAX_NUM_FINITE;
	v->d.n = 0;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		v->neg = s[i++] == '-';
	if (i < len && !flax_isdigit(s[i]) && s[i] != '.') {
		k = flax_scan_special(s + i, len - i, &v->kind);
		if (!k)
			return -EINVAL;
		*used = i + k;
		return 0;
	}
	for (; i < len; i++) {
		u32 c = (u8)s[i] - '0';

		if (s[i] == '.' && !frac) {
			frac = 1;
			continue;
		}
		if (c > 9)
			break;
		ndig++;
		if (!nd && !c) { /* leading zero */
			adj -= frac;
		} else if (nd < FLAX_KEEP_DIGITS) {
			flax_big_muladd(&v->d, 10, c);
			nd++;
			adj -= frac;
		} else {
			sticky |= c;
			adj += !frac;
		}
	}
	if (!ndig)
		return -EINVAL;
	if (sticky) {
		flax_big_muladd(&v->d, 10, 1);
		nd++;
		adj--;
	}
	if (i < len && (s[i] | 0x20) == 'e') {
		size_t j = i + 1;
		int eneg = 0;
		s64 ev = 0;

		if (j < len && (s[j] == '+' || s[j] == '-'))
			eneg = s[j++] == '-';
		if (j < len && flax_isdigit(s[j])) {
			for (; j < len && flax_isdigit(s[j]); j++) {
				if (ev < FLAX_EXP_SAT)
					ev = ev * 10 + (s[j] - '0');
			}
			adj += eneg ? -ev : ev;
			i = j;
		}
	}
	v->nd = nd;
	v->e10 = adj;
	*used = i;
	return 0;
}

int flax_parse_f32(const char *s, size_t len, u32 *out, size_t *used)
{
	struct flax_dnum v;
	size_t n;
	int ret;

	ret = flax_scan(s, len, &v, &n);
	if (used)
		*used = ret ? 0 : n;
	if (ret)
		return ret;
	return flax_to_binary(&v, &flax_binary32, out);
}

/* An integer: optional sign and decimal digits (saturating near 10^13). */
static int flax_scan_int(const char *s, size_t len, s64 *val, size_t *used)
{
	size_t i = 0, start;
	int neg = 0;
	s64 v = 0;

	if (i < len && (s[i] == '+' || s[i] == '-'))
		neg = s[i++] == '-';
	for (start = i; i < len && flax_isdigit(s[i]); i++) {
		if (v < FLAX_EXP_SAT)
			v = v * 10 + (s[i] - '0');
	}
	if (i == start)
		return -EINVAL;
	*val = neg ? -v : v;
	*used = i;
	return 0;
}

/*
 * One element of dtype at s into *val (its bits, zero-extended).
 * -EINVAL if there is no number, else 0 or -ERANGE with *used set.
 */
static int flax_scan_elem(const char *s, size_t len, u32 dtype, u32 *val,
			  size_t *used)
{
	s64 lo = 0, hi = 0, iv;
	struct flax_dnum v;
	int ret;

	if (dtype == FLAX_DTYPE_FLOAT32 || dtype == FLAX_DTYPE_FLOAT16) {
		ret = flax_scan(s, len, &v, used);
		if (ret)
			return ret;
		return flax_to_binary(&v,
				      dtype == FLAX_DTYPE_FLOAT32 ?
					      &flax_binary32 :
					      &flax_binary16,
				      val);
	}
	ret = flax_scan_int(s, len, &iv, used);
	if (ret)
		return ret;
	switch (dtype) {
	case FLAX_DTYPE_UINT8:
		hi = 0xff;
		break;
	case FLAX_DTYPE_INT8:
		lo = -0x80;
		hi = 0x7f;
		break;
	case FLAX_DTYPE_UINT16:
		hi = 0xffff;
		break;
	case FLAX_DTYPE_INT16:
		lo = -0x8000;
		hi = 0x7fff;
		break;
	case FLAX_DTYPE_INT32:
		lo = -0x80000000ll;
		hi = 0x7fffffff;
		break;
	}
	*val = (u32)iv;
	return iv < lo || iv > hi ? -ERANGE : 0;
}

static void flax_store_elem(u8 *dst, u32 esize, u32 val)
{
	u16 v16 = (u16)val;
	u8 v8 = (u8)val;

	if (esize == 4)
		memcpy(dst, &val, 4);
	else if (esize == 2)
		memcpy(dst, &v16, 2);
	else
		memcpy(dst, &v8, 1);
}

/* Parse the list; store into dst unless it is NULL. */
static int flax_parse_list(const char *t, size_t len, u32 dtype, u8 *dst, u32 n)
{
	u32 esize = flax_dtype_size(dtype), count = 0, val;
	size_t i = 0, used;
	int ret, sep;

	while (i < len && flax_isspace(t[i]))
		i++;
	while (i < len) {
		if (count == n)
			return -EINVAL; /* one number too many */
		ret = flax_scan_elem(t + i, len - i, dtype, &val, &used);
		if (ret == -EINVAL)
			return ret;
		i += used;
		if (i < len && !flax_isspace(t[i]) && t[i] != ',')
			return -EINVAL; /* "1.5" as an integer, "2x", ... */
		if (ret)
			return ret;
		if (dst)
			flax_store_elem(dst + (size_t)count * esize, esize,
					val);
		count++;

		sep = 0;
		while (i < len && flax_isspace(t[i])) {
			i++;
			sep = 1;
		}
		if (i < len && t[i] == ',') {
			i++;
			while (i < len && flax_isspace(t[i]))
				i++;
			if (i == len)
				return -EINVAL; /* trailing comma */
			sep = 1;
		}
		if (i < len && !sep)
			return -EINVAL; /* not reached: checked above */
	}
	return count == n ? 0 : -EINVAL;
}

int flax_parse_numbers(const char *text, size_t len, u32 dtype, void *dst,
		       u32 n)
{
	int ret;

	if (!flax_dtype_size(dtype))
		return -EINVAL;
	ret = flax_parse_list(text, len, dtype, NULL, n);
	if (ret)
		return ret;
	return flax_parse_list(text, len, dtype, dst, n);
}
