// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev pre- and postprocessing: the shared C.
 *
 * This file is built twice from the same text:
 *  - in the kernel, as the only object of the module compiled with SSE
 *    (Kbuild removes -mno-sse/-mno-sse2 for it and adds -msse -msse2
 *    -mhard-float -ffp-contract=off); every entry point runs between
 *    kernel_fpu_begin() and kernel_fpu_end();
 *  - in user space (-DFLAX_USERSPACE, bindings/ops_build.py) for the native
 *    tests in tests/host/.
 *
 * Rules that keep both builds honest:
 *  - nothing but flax_compat.h: no libm, no allocation, no written globals
 *    (the only static data is const);
 *  - float and double only, never long double (the x87 is off in the
 *    kernel); no integer/float conversion wider than 64 bits and no builtin
 *    that could become a libm or libgcc call;
 *  - float arithmetic happens in SSE registers, one rounding per operation
 *    (FLT_EVAL_METHOD 0 on x86-64) and no contraction into FMA, which is
 *    what makes flax_normalize() bit-identical to numpy;
 *  - buffers are void pointers of unknown alignment: elements are loaded
 *    and stored with fixed-size memcpy(), which the compiler turns into
 *    single moves; binary32/binary64 bit patterns are converted with
 *    unions (the kernel builds with -fno-strict-aliasing, and GCC defines
 *    union type punning anyway).
 */

#include "flax_ops.h"

#define FLAX_F32_SIGN 0x80000000u
#define FLAX_F32_ABS 0x7fffffffu
#define FLAX_F32_INF 0x7f800000u
#define FLAX_F32_QUIET 0x00400000u
#define FLAX_F32_QNAN 0x7fc00000u

union flax_b32 {
	u32 u;
	float f;
};

union flax_b64 {
	u64 u;
	double d;
};

static inline float flax_f32(u32 bits)
{
	union flax_b32 v = { .u = bits };

	return v.f;
}

static inline u32 flax_bits32(float f)
{
	union flax_b32 v = { .f = f };

	return v.u;
}

static inline int flax_isnan_bits(u32 bits)
{
	return (bits & FLAX_F32_ABS) > FLAX_F32_INF;
}

static inline u32 flax_load32(const u8 *p, u32 i)
{
	u32 v;

	memcpy(&v, p + (size_t)i * 4, sizeof(v));
	return v;
}

static inline void flax_store32(u8 *p, u32 i, u32 v)
{
	memcpy(p + (size_t)i * 4, &v, sizeof(v));
}

/*
 * exp() in double precision.
 *
 * x = k * ln2 + r with k = rint(x / ln2), |r| <= ln2 / 2 (plus a rounding
 * hair).  ln2 is split Cody-Waite style: FLAX_LN2_HI has 32 significant
 * bits, so k * FLAX_LN2_HI is exact for |k| < 2^21, and x - k * FLAX_LN2_HI
 * is exact by Sterbenz's lemma (for k != 0, x and k * FLAX_LN2_HI are
 * within a factor of two); FLAX_LN2_LO = ln2 - FLAX_LN2_HI rounded to
 * double.  So r is within about one double ulp of the true reduced
 * argument.
 *
 * e^r is the Taylor polynomial of degree 13, in Horner form.  On
 * |r| <= 0.3466 its truncation error is below r^14 / 14! < 4.3e-18
 * (2^-57.7) relative, under the ~2^-52 rounding error of the evaluation,
 * so the result is good to a few double ulps: 2^29 times finer than a
 * float ulp.  The coefficients are exact quotients, rounded once by the
 * compiler.
 *
 * 2^k is built from exponent bits; the caller keeps x in [-104, 89], so
 * k is in [-150, 128] and both 2^k and e^r * 2^k are normal doubles (the
 * product is exact): rounding that double to float is the only rounding
 * that reaches a float result, and handles float overflow (to +inf) and
 * float subnormals (to the nearest subnormal or 0) by itself.
 */
#define FLAX_INV_LN2 0x1.71547652b82fep+0
#define FLAX_LN2_HI 0x1.62e42fee00000p-1
#define FLAX_LN2_LO 0x1.a39ef35793c76p-33
/* Adding, then subtracting 1.5 * 2^52 rounds |x| < 2^51 to an integer. */
#define FLAX_RINT_SHIFT 0x1.8p+52
#define FLAX_EXP_MIN (-104.0) /* e^-104 < 2^-150: float 0 */
#define FLAX_EXP_MAX 89.0 /* e^89 > 2^128: float +inf */

static double flax_exp_reduced(double x)
{
	union flax_b64 scale;
	double kd, r, p;
	s64 k;

	kd = x * FLAX_INV_LN2 + FLAX_RINT_SHIFT;
	kd -= FLAX_RINT_SHIFT;
	k = (s64)kd;
	r = x - kd * FLAX_LN2_HI;
	r -= kd * FLAX_LN2_LO;

	/* clang-format off */
	p = 1.0 / 6227020800.0;			/* 1/13! */
	p = p * r + 1.0 / 479001600.0;		/* 1/12! */
	p = p * r + 1.0 / 39916800.0;		/* 1/11! */
	p = p * r + 1.0 / 3628800.0;		/* 1/10! */
	p = p * r + 1.0 / 362880.0;		/* 1/9! */
	p = p * r + 1.0 / 40320.0;		/* 1/8! */
	p = p * r + 1.0 / 5040.0;		/* 1/7! */
	p = p * r + 1.0 / 720.0;		/* 1/6! */
	p = p * r + 1.0 / 120.0;		/* 1/5! */
	p = p * r + 1.0 / 24.0;			/* 1/4! */
	p = p * r + 1.0 / 6.0;			/* 1/3! */
	p = p * r + 0.5;			/* 1/2! */
	/* clang-format on */
	p = p * r + 1.0;
	p = p * r + 1.0;

	scale.u = (u64)(k + 1023) << 52;
	return p * scale.d;
}

u32 flax_expf_bits(u32 x)
{
	float f;

	if (flax_isnan_bits(x))
		return x | FLAX_F32_QUIET; /* as the hardware would */
	f = flax_f32(x);
	if (f > (float)FLAX_EXP_MAX)
		return FLAX_F32_INF; /* also x = +inf */
	if (f < (float)FLAX_EXP_MIN)
		return 0; /* also x = -inf */
	return flax_bits32((float)flax_exp_reduced((double)f));
}

int flax_normalize(void *dst, const void *src, u32 dtype, u32 first, u32 n,
		   const struct flax_norm *p)
{
	const u8 *s = src;
	u8 *d = dst;
	float scale, x, y;
	u32 i, c;

	if (dtype != FLAX_DTYPE_UINT8 && dtype != FLAX_DTYPE_FLOAT32)
		return -EINVAL;
	if (!p->count)
		return -EINVAL;
	if (!n)
		return 0;

	/*
	 * Each statement below is one float operation rounded to float, in
	 * numpy's order: ((x * scale) - mean) / std.
	 */
	scale = flax_f32(p->scale);
	if (dtype == FLAX_DTYPE_FLOAT32) {
		c = first % p->count;
		for (i = 0; i < n; i++) {
			x = flax_f32(flax_load32(s, i));
			y = x * scale;
			y = y - flax_f32(p->mean[c]);
			y = y / flax_f32(p->std[c]);
			flax_store32(d, i, flax_bits32(y));
			if (++c == p->count)
				c = 0;
		}
		return 0;
	}

	/*
	 * uint8: backwards, so that src <= dst in one buffer works.  With
	 * src == dst, output i covers bytes 4i..4i+3 and input i is byte i:
	 * when input i is read, only outputs i + 1 and up (bytes 4i + 4 and
	 * up) have been written; src below dst only widens that margin.
	 */
	c = (u32)(((u64)first + n - 1) % p->count);
	i = n;
	while (i--) {
		x = (float)s[i];
		y = x * scale;
		y = y - flax_f32(p->mean[c]);
		y = y / flax_f32(p->std[c]);
		flax_store32(d, i, flax_bits32(y));
		c = c ? c - 1 : p->count - 1;
	}
	return 0;
}

/*
 * Softmax: e_i = exp(x_i - max) is computed in double precision by the
 * core of flax_expf_bits() (flax_exp_reduced(), not rounded to float), the
 * sum of the e_i is accumulated in double, and each output is the double
 * quotient e_i / sum rounded once to float.  The e_i are not stored (there
 * is nowhere to put doubles): the second pass recomputes them, which costs
 * a second exponential per element and buys an output within about half a
 * float ulp of the exact softmax of the float inputs.
 *
 * x_i - max is formed in double (no float rounding of the argument);
 * arguments below FLAX_EXP_MIN give e_i = 0: e_i / sum <= e_i < 2^-150
 * would round to 0 anyway, and leaving it out of the sum (which is >= 1)
 * changes nothing at double precision.
 *
 * Special values follow the formula exp(x - max) / sum, as numpy and
 * jax.nn.softmax do: any NaN, or any +inf (inf - inf is NaN), or every
 * input -inf (-inf - -inf is NaN) makes every output NaN (0x7fc00000);
 * otherwise a -inf input gets exactly 0.
 */
void flax_softmax(void *buf, u32 n)
{
	u8 *b = buf;
	double m, d, sum;
	float x, mf;
	u32 i, bits;

	if (!n)
		return;

	mf = flax_f32(flax_load32(b, 0));
	for (i = 0; i < n; i++) {
		bits = flax_load32(b, i);
		if (flax_isnan_bits(bits))
			goto all_nan;
		x = flax_f32(bits);
		if (x > mf)
			mf = x;
	}
	if (flax_bits32(mf) == FLAX_F32_INF ||
	    flax_bits32(mf) == (FLAX_F32_SIGN | FLAX_F32_INF))
		goto all_nan;
	m = (double)mf;

	sum = 0.0;
	for (i = 0; i < n; i++) {
		d = (double)flax_f32(flax_load32(b, i)) - m;
		if (d >= FLAX_EXP_MIN)
			sum += flax_exp_reduced(d);
	}
	/* sum >= 1: the maximum contributes e^0 = 1 exactly. */

	for (i = 0; i < n; i++) {
		d = (double)flax_f32(flax_load32(b, i)) - m;
		d = d >= FLAX_EXP_MIN ? flax_exp_reduced(d) / sum : 0.0;
		flax_store32(b, i, flax_bits32((float)d));
	}
	return;

all_nan:
	for (i = 0; i < n; i++)
		flax_store32(b, i, FLAX_F32_QNAN);
}

/*
 * Top-k works on integer sort keys, without floating-point arithmetic
 * (GCC still moves entries through SSE registers in this object, so it
 * needs the FPU section all the same).  The key is monotonic in the float
 * value: positive floats (and +0) map to 0x80000000 | bits, negative
 * floats to ~bits (so larger magnitude, smaller key), -0 to the key of +0
 * (they compare equal, as in numpy), and every NaN to 0, below the key
 * of -inf (0x007fffff).  Equal keys keep ascending index order, which is
 * numpy's stable argsort(-x) order, NaN last.
 */
static inline u32 flax_topk_key(u32 bits)
{
	if (flax_isnan_bits(bits))
		return 0;
	if (!(bits & FLAX_F32_ABS))
		return FLAX_F32_SIGN;
	return (bits & FLAX_F32_SIGN) ? ~bits : bits | FLAX_F32_SIGN;
}

/*
 * One pass over the scores keeps the best @want entries sorted in @out
 * (their keys in @keys): a score enters only if its key is strictly above
 * the current last key (ties go to the earlier index, already there), and
 * is inserted by shifting the lower entries down.  O(n) compares plus
 * O(k) work per insertion; random input inserts about k * ln(n / k) times.
 */
void flax_topk(const void *scores, u32 n, u32 k, struct flax_topk_entry *out)
{
	u32 keys[FLAX_TOPK_MAX];
	const u8 *s = scores;
	u32 want, cnt, i, j, bits, key;

	want = k;
	if (want > FLAX_TOPK_MAX)
		want = FLAX_TOPK_MAX;
	if (want > n)
		want = n;

	cnt = 0;
	for (i = 0; want && i < n; i++) {
		bits = flax_load32(s, i);
		key = flax_topk_key(bits);
		if (cnt == want) {
			if (key <= keys[cnt - 1])
				continue;
			j = cnt - 1; /* the last entry drops out */
		} else {
			j = cnt++;
		}
		while (j && keys[j - 1] < key) {
			keys[j] = keys[j - 1];
			out[j] = out[j - 1];
			j--;
		}
		keys[j] = key;
		out[j].index = i;
		out[j].score = bits;
	}

	/* Outside the contract (k > n or k > FLAX_TOPK_MAX): zero the rest. */
	if (k > want)
		memset(out + want, 0, (size_t)(k - want) * sizeof(*out));
}
