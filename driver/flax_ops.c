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
 *  - nothing but flax_compat.h (and, in the kernel, the CPU feature test):
 *    no libm, no allocation, and one written global, the normalisation
 *    path, chosen once (every other static datum is const);
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

#ifdef __KERNEL__
#define FLAX_READ_ONCE(x) READ_ONCE(x)
#define FLAX_WRITE_ONCE(x, v) WRITE_ONCE(x, v)
#else
/* The user-space build (glibc defines __always_inline) is single-threaded. */
#define FLAX_READ_ONCE(x) (x)
#define FLAX_WRITE_ONCE(x, v) ((x) = (v))
#endif

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

/*
 * binary16 to binary32, exactly, in integer code (no F16C): normal values
 * re-biased (15 to 127), subnormals m * 2^-24 normalised, infinities and
 * NaNs widened with their payload (as numpy's npy_halfbits_to_floatbits()).
 */
static u32 flax_f16_to_f32(u32 h)
{
	u32 sign = (h & 0x8000) << 16;
	u32 e = (h >> 10) & 0x1f;
	u32 m = h & 0x3ff;

	if (e == 0x1f)
		return sign | FLAX_F32_INF | m << 13;
	if (e)
		return sign | (e + 112) << 23 | m << 13;
	if (!m)
		return sign;
	e = 113; /* m * 2^-24 = (m / 2^10) * 2^-14, 2^-14 biased 113 */
	while (!(m & 0x400)) {
		m <<= 1;
		e--;
	}
	return sign | e << 23 | (m & 0x3ff) << 13;
}

/*
 * Element @i of @s as float32, as numpy's astype(np.float32) gives it:
 * exact for the 8- and 16-bit integers and for float16, rounded to nearest
 * even for int32 (cvtsi2ss, like numpy).  The signed narrow types are
 * sign-extended without a signed type (x ^ 0x80) - 128 for int8.
 */
static inline float flax_load_elem(const u8 *s, u32 dtype, u32 i)
{
	u16 h;

	switch (dtype) {
	case FLAX_DTYPE_UINT8:
		return (float)s[i];
	case FLAX_DTYPE_INT8:
		return (float)((s32)(s[i] ^ 0x80) - 0x80);
	case FLAX_DTYPE_UINT16:
		memcpy(&h, s + (size_t)i * 2, sizeof(h));
		return (float)h;
	case FLAX_DTYPE_INT16:
		memcpy(&h, s + (size_t)i * 2, sizeof(h));
		return (float)((s32)(h ^ 0x8000) - 0x8000);
	case FLAX_DTYPE_FLOAT16:
		memcpy(&h, s + (size_t)i * 2, sizeof(h));
		return flax_f32(flax_f16_to_f32(h));
	case FLAX_DTYPE_INT32:
		return (float)(s32)flax_load32(s, i);
	default: /* FLAX_DTYPE_FLOAT32 */
		return flax_f32(flax_load32(s, i));
	}
}

/*
 * np.clip(y, lo, hi) for one float32, as numpy 2 computes it:
 * min(max(y, lo), hi) where max and min propagate a NaN from either
 * operand and keep their first operand when the two compare equal.  So a
 * NaN y stays NaN, a NaN bound gives NaN, and of +0 and -0 y's sign wins
 * (numpy 1's clip loop let the bound win; only the sign of a zero
 * differs).
 */
static inline float flax_clip(float y, float lo, float hi)
{
	if (flax_isnan_bits(flax_bits32(y)))
		return y;
	if (flax_isnan_bits(flax_bits32(lo)))
		return lo;
	if (y < lo)
		y = lo;
	if (flax_isnan_bits(flax_bits32(hi)))
		return hi;
	return hi < y ? hi : y;
}

/* One element: ((x * scale) - mean) / std, then the clamp. */
static inline float flax_norm_one(float x, float scale, float m, float s,
				  int clamp, float lo, float hi)
{
	float y;

	y = x * scale;
	y = y - m;
	y = y / s;
	return clamp ? flax_clip(y, lo, hi) : y;
}

/*
 * The plain C loop: element i (global index g = first + i) uses pair
 * (g / inner) % count.  The loop runs backwards, for every dtype, so that
 * src <= dst in one buffer works: with src == dst and an element size of
 * b bytes, output i covers bytes 4i..4i+3 and input i bytes bi..bi+b-1;
 * when input i is read only outputs i + 1 and up (bytes 4i + 4 and up)
 * have been written, and bi + b - 1 < 4i + 4 for b <= 4.  src below dst
 * only widens that margin.  The pair (c) and the position in its run of
 * @inner (r) are computed once, for the last element, then stepped down.
 *
 * Each statement of flax_norm_one() is one float operation rounded to
 * float, in numpy's order: ((x * scale) - mean) / std, then the clamp.
 * No operation needs a different order than numpy's, so every dtype is
 * bit-identical to numpy (the only non-exact conversion, int32 to
 * float32, is the same rounding as numpy's astype).
 */
static void flax_norm_scalar(u8 *d, const u8 *s, u32 dtype, u32 first, u32 n,
			     const struct flax_norm *p)
{
	float scale = flax_f32(p->scale);
	float lo = flax_f32(p->clamp_lo);
	float hi = flax_f32(p->clamp_hi);
	int clamp = p->flags & FLAX_NORM_CLAMP;
	u64 g = (u64)first + n - 1;
	u32 r = (u32)(g % p->inner);
	u32 c = (u32)(g / p->inner % p->count);
	u32 i = n;
	float y;

	while (i--) {
		y = flax_norm_one(flax_load_elem(s, dtype, i), scale,
				  flax_f32(p->mean[c]), flax_f32(p->std[c]),
				  clamp, lo, hi);
		flax_store32(d, i, flax_bits32(y));
		if (r) {
			r--;
		} else {
			r = p->inner - 1;
			c = c ? c - 1 : p->count - 1;
		}
	}
}

/*
 * The vector loops, x86-64 only (sparse does not know GCC's vector
 * extensions: it checks the plain C).  Written with GCC's generic vectors,
 * so the arithmetic is the compiler's mulps, subps and divps (one IEEE
 * rounding per lane, as mulss, subss and divss in the plain loop), and
 * the clamp with the maxps/minps builtins, whose operand order gives
 * np.clip's rules for non-NaN bounds: max(lo, y) is y when y is NaN or
 * equal to lo (a signed zero keeps y's sign), min(hi, t) is t when t is
 * NaN or equal to hi, and lo > hi gives hi.
 */
#if defined(__x86_64__) && !defined(__CHECKER__) && defined(__has_builtin)
#if __has_builtin(__builtin_convertvector) &&     \
	__has_builtin(__builtin_shufflevector) && \
	__has_builtin(__builtin_ia32_maxps) && !defined(__clang__)
#define FLAX_NORM_VECTOR 1
#endif
#endif

#ifdef FLAX_NORM_VECTOR

#ifdef __KERNEL__
#include <asm/cpufeature.h>
#endif

/* Pairs changing every element, at most this many: a table, no runs. */
#define FLAX_NORM_TAB 64
/* Floats in the widest vector (AVX2). */
#define FLAX_NORM_VEC_MAX 8
#define FLAX_NORM_TAB_SIZE (FLAX_NORM_TAB + FLAX_NORM_VEC_MAX)

/*
 * One run of elements whose pairs the vector loop can load: either one
 * pair for the whole run (@table 0: @mean[0], @std[0]), or one pair per
 * element read from @mean and @std at a position that steps down with
 * the element, modulo @period (@table 1).  Position @pos belongs to the
 * element @n, one past the run's end.  A periodic table holds its
 * @period pairs followed by a vector's worth of repeats, so that a
 * vector load never wraps.
 */
struct flax_norm_run {
	u8 *d;
	const u8 *s;
	u32 n;
	int table;
	const u32 *mean;
	const u32 *std;
	u32 pos;
	u32 period;
	float scale;
	float lo;
	float hi;
	int clamp;
};

/* Position of the element before the one at @pos. */
static inline u32 flax_norm_pos_down(u32 pos, u32 step, u32 period)
{
	return pos >= step ? pos - step : pos + period - step;
}

/* The elements below the last whole vector, one at a time, backwards. */
static inline void flax_norm_run_tail(const struct flax_norm_run *r, u32 dtype,
				      u32 i, u32 pos)
{
	u32 c = 0;
	float y;

	while (i--) {
		if (r->table) {
			pos = flax_norm_pos_down(pos, 1, r->period);
			c = pos;
		}
		y = flax_norm_one(flax_load_elem(r->s, dtype, i), r->scale,
				  flax_f32(r->mean[c]), flax_f32(r->std[c]),
				  r->clamp, r->lo, r->hi);
		flax_store32(r->d, i, flax_bits32(y));
	}
}

/*
 * The loop body, for one vector width: VF a vector of W floats, LOAD_U8
 * the W uint8 at a pointer as such a vector, MAX and MIN the IEEE
 * maxps/minps builtins.  Each vector of W elements is loaded whole before
 * its outputs are stored, and vectors go from the end: the same in-place
 * widening argument as the plain loop's, per vector.  dtype, table and
 * clamp are constants at every use (the functions are inlined into one
 * loop per case).
 */
#define FLAX_NORM_LOOP(VF, W, LOAD_U8, MAX, MIN)                          \
	do {                                                              \
		const u32 w = (W);                                        \
		u32 step = table ? w % r->period : 0;                     \
		u32 i = r->n, pos = r->pos, k;                            \
		const u8 *src = r->s;                                     \
		u8 *dst = r->d;                                           \
		const u32 *tm = r->mean, *ts = r->std;                    \
		VF scale, lo, hi, m, sd, x;                               \
		for (k = 0; k < w; k++) { /* exact splats, -0 kept */     \
			scale[k] = r->scale;                              \
			lo[k] = r->lo;                                    \
			hi[k] = r->hi;                                    \
			m[k] = flax_f32(r->mean[0]);                      \
			sd[k] = flax_f32(r->std[0]);                      \
		}                                                         \
		for (; i >= w; i -= w) {                                  \
			if (dtype == FLAX_DTYPE_UINT8)                    \
				x = LOAD_U8(src + i - w);                 \
			else                                              \
				memcpy(&x, src + (size_t)(i - w) * 4,     \
				       sizeof(x));                        \
			if (table) {                                      \
				pos = flax_norm_pos_down(pos, step,       \
							 r->period);      \
				memcpy(&m, tm + pos, sizeof(m));          \
				memcpy(&sd, ts + pos, sizeof(sd));        \
			}                                                 \
			x = x * scale;                                    \
			x = x - m;                                        \
			x = x / sd;                                       \
			if (clamp)                                        \
				x = MIN(hi, MAX(lo, x));                  \
			memcpy(dst + (size_t)(i - w) * 4, &x, sizeof(x)); \
		}                                                         \
		flax_norm_run_tail(r, dtype, i, pos);                     \
	} while (0)

typedef float flax_v4sf __attribute__((vector_size(16)));
typedef s32 flax_v4si __attribute__((vector_size(16)));
typedef u16 flax_v8hu __attribute__((vector_size(16)));
typedef u8 flax_v16qu __attribute__((vector_size(16)));
typedef float flax_v8sf __attribute__((vector_size(32)));
typedef s32 flax_v8si __attribute__((vector_size(32)));
typedef s64 flax_v2di __attribute__((vector_size(16)));
typedef char flax_v16qi __attribute__((vector_size(16)));

/* Four uint8 as floats: zero-extended twice (punpcklbw, punpcklwd). */
static __always_inline flax_v4sf flax_u8x4_sse2(const u8 *p)
{
	const flax_v16qu z8 = {};
	const flax_v8hu z16 = {};
	flax_v4si w = { (s32)flax_load32(p, 0) }; /* movd */
	flax_v8hu h;

	h = (flax_v8hu)__builtin_shufflevector((flax_v16qu)w, z8, 0, 16, 1, 17,
					       2, 18, 3, 19, 4, 20, 5, 21, 6,
					       22, 7, 23);
	h = __builtin_shufflevector(h, z16, 0, 8, 1, 9, 2, 10, 3, 11);
	return __builtin_convertvector((flax_v4si)h, flax_v4sf);
}

/*
 * Eight uint8 as floats (vpmovzxbd, vcvtdq2ps; GCC 12 would convert a
 * vector of 8 bytes element by element).
 */
__attribute__((target("avx2"))) static __always_inline flax_v8sf
flax_u8x8_avx2(const u8 *p)
{
	flax_v2di w;
	flax_v8si i;
	u64 v;

	memcpy(&v, p, sizeof(v));
	w = (flax_v2di){ (s64)v }; /* movq */
	i = (flax_v8si)__builtin_ia32_pmovzxbd256((flax_v16qi)w);
	return __builtin_convertvector(i, flax_v8sf);
}

static __always_inline void flax_norm_loop_sse2(const struct flax_norm_run *r,
						u32 dtype, int table, int clamp)
{
	FLAX_NORM_LOOP(flax_v4sf, 4, flax_u8x4_sse2, __builtin_ia32_maxps,
		       __builtin_ia32_minps);
}

__attribute__((target("avx2"))) static __always_inline void
flax_norm_loop_avx2(const struct flax_norm_run *r, u32 dtype, int table,
		    int clamp)
{
	FLAX_NORM_LOOP(flax_v8sf, 8, flax_u8x8_avx2, __builtin_ia32_maxps256,
		       __builtin_ia32_minps256);
}

/*
 * One loop per case, so that the tests in the loop body fold away:
 * FLAX_NORM_ISA_LOOP(r, dtype, table, clamp) is the loop of the function
 * being defined, @r and @dtype its arguments.
 */
#define FLAX_NORM_CASES                                                      \
	do {                                                                 \
		switch ((dtype == FLAX_DTYPE_UINT8) << 2 | !!r->table << 1 | \
			!!r->clamp) {                                        \
		case 0:                                                      \
			FLAX_NORM_ISA_LOOP(r, FLAX_DTYPE_FLOAT32, 0, 0);     \
			break;                                               \
		case 1:                                                      \
			FLAX_NORM_ISA_LOOP(r, FLAX_DTYPE_FLOAT32, 0, 1);     \
			break;                                               \
		case 2:                                                      \
			FLAX_NORM_ISA_LOOP(r, FLAX_DTYPE_FLOAT32, 1, 0);     \
			break;                                               \
		case 3:                                                      \
			FLAX_NORM_ISA_LOOP(r, FLAX_DTYPE_FLOAT32, 1, 1);     \
			break;                                               \
		case 4:                                                      \
			FLAX_NORM_ISA_LOOP(r, FLAX_DTYPE_UINT8, 0, 0);       \
			break;                                               \
		case 5:                                                      \
			FLAX_NORM_ISA_LOOP(r, FLAX_DTYPE_UINT8, 0, 1);       \
			break;                                               \
		case 6:                                                      \
			FLAX_NORM_ISA_LOOP(r, FLAX_DTYPE_UINT8, 1, 0);       \
			break;                                               \
		default:                                                     \
			FLAX_NORM_ISA_LOOP(r, FLAX_DTYPE_UINT8, 1, 1);       \
			break;                                               \
		}                                                            \
	} while (0)

#define FLAX_NORM_ISA_LOOP flax_norm_loop_sse2
static void flax_norm_run_sse2(const struct flax_norm_run *r, u32 dtype)
{
	FLAX_NORM_CASES;
}

#undef FLAX_NORM_ISA_LOOP

/* Not inlined into flax_norm_run(): GCC keeps AVX code in AVX functions. */
#define FLAX_NORM_ISA_LOOP flax_norm_loop_avx2
__attribute__((target("avx2"))) static void
flax_norm_run_avx2(const struct flax_norm_run *r, u32 dtype)
{
	FLAX_NORM_CASES;
}

#undef FLAX_NORM_ISA_LOOP

/* The path in use: FLAX_NORM_PATH_*, 0 until the first call chooses. */
static u32 flax_norm_path_now;

/*
 * AVX2 if the CPU has it and the OS saves the YMM registers (the test the
 * kernel's own AVX2 crypto and RAID code make), else SSE2.
 */
static u32 flax_norm_best_path(void)
{
#ifdef __KERNEL__
	if (boot_cpu_has(X86_FEATURE_AVX2) &&
	    cpu_has_xfeatures(XFEATURE_MASK_SSE | XFEATURE_MASK_YMM, NULL))
		return FLAX_NORM_PATH_AVX2;
#else
	if (__builtin_cpu_supports("avx2"))
		return FLAX_NORM_PATH_AVX2;
#endif
	return FLAX_NORM_PATH_SSE2;
}

/* Documented in flax_ops.h. */
u32 flax_ops_init(void)
{
	u32 path = flax_norm_best_path();

	FLAX_WRITE_ONCE(flax_norm_path_now, path);
	return path;
}

/*
 * Chosen at load by flax_ops_init() (the host build chooses at the first
 * call); concurrent first calls store the same value.
 */
static u32 flax_norm_path(void)
{
	u32 path = FLAX_READ_ONCE(flax_norm_path_now);

	if (!path) {
		path = flax_norm_best_path();
		FLAX_WRITE_ONCE(flax_norm_path_now, path);
	}
	return path;
}

static void flax_norm_run(u32 path, const struct flax_norm_run *r, u32 dtype)
{
	if (path == FLAX_NORM_PATH_AVX2)
		flax_norm_run_avx2(r, dtype);
	else
		flax_norm_run_sse2(r, dtype);
}

/*
 * flax_normalize() on the vector path (flax_norm_vector_ok() said yes):
 * few pairs changing every element go through a periodic table on the
 * stack, in one run; otherwise the call is cut, from the end, into runs
 * of one pair (channels first, one value) or of consecutive pairs that
 * do not wrap (per element, per channel with many channels).  Runs go
 * from the end, as vectors do within a run.
 */
static void flax_norm_vector(u32 path, u8 *d, const u8 *s, u32 dtype, u32 first,
			     u32 n, const struct flax_norm *p)
{
	u32 tmean[FLAX_NORM_TAB_SIZE], tstd[FLAX_NORM_TAB_SIZE];
	u32 esize = flax_dtype_size(dtype);
	struct flax_norm_run r = {
		.period = 1,
		.scale = flax_f32(p->scale),
		.lo = flax_f32(p->clamp_lo),
		.hi = flax_f32(p->clamp_hi),
		.clamp = p->flags & FLAX_NORM_CLAMP,
	};
	u32 end = n, len, c, j;
	u64 g;

	if (p->inner == 1 && p->count > 1 && p->count <= FLAX_NORM_TAB) {
		for (j = 0; j < p->count + FLAX_NORM_VEC_MAX; j++) {
			tmean[j] = p->mean[j % p->count];
			tstd[j] = p->std[j % p->count];
		}
		r.d = d;
		r.s = s;
		r.n = n;
		r.table = 1;
		r.mean = tmean;
		r.std = tstd;
		r.period = p->count;
		r.pos = (u32)(((u64)first + n) % p->count);
		flax_norm_run(path, &r, dtype);
		return;
	}
	while (end) {
		g = (u64)first + end - 1;
		if (p->inner == 1 && p->count > 1) {
			c = (u32)(g % p->count);
			len = c + 1 < end ? c + 1 : end;
			r.table = 1;
			r.mean = p->mean;
			r.std = p->std;
			r.period = p->count;
			r.pos = c + 1;
		} else {
			c = (u32)(g / p->inner % p->count);
			len = (u32)(g % p->inner) + 1;
			if (p->count == 1 || len > end)
				len = end;
			r.table = 0;
			r.mean = p->mean + c;
			r.std = p->std + c;
		}
		end -= len;
		r.d = d + (size_t)end * 4;
		r.s = s + (size_t)end * esize;
		r.n = len;
		flax_norm_run(path, &r, dtype);
	}
}

#endif /* FLAX_NORM_VECTOR */

/*
 * Checks, then the vector path when it applies, else the plain loop.
 * Both write the elements from the last to the first.
 */
int flax_normalize(void *dst, const void *src, u32 dtype, u32 first, u32 n,
		   const struct flax_norm *p)
{
	if (!flax_dtype_size(dtype))
		return -EINVAL;
	if (!p->count || !p->inner || (p->flags & ~FLAX_NORM_FLAGS))
		return -EINVAL;
	if (!n)
		return 0;
#ifdef FLAX_NORM_VECTOR
	{
		u32 path = flax_norm_path();

		if (path != FLAX_NORM_PATH_SCALAR &&
		    flax_norm_vector_ok(dtype, p)) {
			flax_norm_vector(path, dst, src, dtype, first, n, p);
			return 0;
		}
	}
#endif
	flax_norm_scalar(dst, src, dtype, first, n, p);
	return 0;
}

/* Documented in flax_ops.h. */
int flax_norm_lut_fill(u32 *lut, const struct flax_norm *p)
{
	struct flax_norm q = *p;
	u8 *bytes = (u8 *)lut;
	u32 n, i;

	if (!p->count || p->count > FLAX_NORM_LUT_PAIRS)
		return -EINVAL;
	/* Element c * 256 + x is value x of pair c; widened in place. */
	n = p->count * FLAX_NORM_LUT_VALUES;
	for (i = 0; i < n; i++)
		bytes[i] = (u8)i;
	q.inner = FLAX_NORM_LUT_VALUES;
	return flax_normalize(lut, bytes, FLAX_DTYPE_UINT8, 0, n, &q);
}

#ifdef FLAX_USERSPACE
int flax_norm_set_path(u32 path)
{
	switch (path) {
	case FLAX_NORM_PATH_AUTO:
	case FLAX_NORM_PATH_SCALAR:
		break;
#ifdef FLAX_NORM_VECTOR
	case FLAX_NORM_PATH_SSE2:
		break;
	case FLAX_NORM_PATH_AVX2:
		if (flax_norm_best_path() != FLAX_NORM_PATH_AVX2)
			return -EOPNOTSUPP;
		break;
#else
	case FLAX_NORM_PATH_SSE2:
	case FLAX_NORM_PATH_AVX2:
		return -EOPNOTSUPP;
#endif
	default:
		return -EINVAL;
	}
#ifdef FLAX_NORM_VECTOR
	flax_norm_path_now = path;
#endif
	return 0;
}

u32 flax_norm_get_path(void)
{
#ifdef FLAX_NORM_VECTOR
	return flax_norm_path();
#else
	return FLAX_NORM_PATH_SCALAR;
#endif
}
#endif /* FLAX_USERSPACE */

/*
 * log(1 + u) for u >= 0, in double precision, to a few double ulps.
 *
 * log(g) = 2 atanh(s) with s = (g - 1) / (g + 1) = 2 s (1 + s^2 / 3 +
 * s^4 / 5 + ...).  For u <= sqrt(2) - 1, g = 1 + u is not formed (its
 * rounding would lose u's low bits when u is tiny): s = u / (2 + u)
 * directly.  Otherwise 1 + u (rounded: relative error 2^-53, and the
 * logarithm is >= 0.34 there, so that costs a few ulps at most) is split
 * into 2^k * g with g in [sqrt(2) / 2, sqrt(2)], g - 1 exact, and
 * log(1 + u) = k ln2 + log(g).  Either way |s| <= 3 - 2 sqrt(2) < 0.1716,
 * s^2 < 0.0295, and the series to s^22 / 23 leaves a relative error
 * below 0.0295^12 / 25 < 2^-65.
 */
#define FLAX_SQRT2 1.4142135623730951 /* 0x1.6a09e667f3bcdp+0 */

static double flax_log1p(double u)
{
	union flax_b64 f;
	double s, z, p;
	s64 k = 0;
	int j;

	if (u <= FLAX_SQRT2 - 1.0) {
		s = u / (2.0 + u);
	} else {
		f.d = 1.0 + u;
		k = (s64)(f.u >> 52) - 1023; /* f >= 1: sign bit 0 */
		f.u = (f.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
		if (f.d > FLAX_SQRT2) {
			f.d *= 0.5; /* exact */
			k++;
		}
		s = (f.d - 1.0) / (f.d + 1.0);
	}
	z = s * s;
	p = 1.0 / 23.0;
	for (j = 21; j >= 1; j -= 2)
		p = p * z + 1.0 / j;
	p = 2.0 * s * p;
	return (double)k * FLAX_LN2_HI + ((double)k * FLAX_LN2_LO + p);
}

static inline double flax_f64(u64 bits)
{
	union flax_b64 v = { .u = bits };

	return v.d;
}

static inline u64 flax_bits64(double d)
{
	union flax_b64 v = { .d = d };

	return v.u;
}

void flax_smx_init(struct flax_smx *s)
{
	s->max = FLAX_F32_SIGN | FLAX_F32_INF;
	s->flags = 0;
	s->sum = 0;
	s->nmax = 0;
}

/*
 * The maximum as float32 compares find it (-0 and +0 equal: the first
 * one seen stays).  A NaN only sets FLAX_SMX_NAN: the outputs will all be
 * NaN, so the rest of the vector need not be looked at.
 */
void flax_smx_max(struct flax_smx *s, const void *buf, u32 n)
{
	const u8 *b = buf;
	float m = flax_f32(s->max);
	u32 i, bits;

	if (s->flags & FLAX_SMX_NAN)
		return;
	for (i = 0; i < n; i++) {
		bits = flax_load32(b, i);
		if (flax_isnan_bits(bits)) {
			s->flags |= FLAX_SMX_NAN;
			return;
		}
		if (flax_f32(bits) > m)
			m = flax_f32(bits);
	}
	s->max = flax_bits32(m);
}

/* NaN out: a NaN in, or a maximum of +inf (inf - inf) or -inf (all -inf). */
static inline int flax_smx_is_nan(const struct flax_smx *s)
{
	return (s->flags & FLAX_SMX_NAN) ||
	       (s->max & FLAX_F32_ABS) == FLAX_F32_INF;
}

/*
 * x - max is formed in double (no float rounding of the argument; it is 0
 * exactly when x equals the maximum, as float differences never
 * underflow).  Those terms are counted, not added, so @sum holds the rest.
 */
void flax_smx_sum(struct flax_smx *s, const void *buf, u32 n)
{
	const u8 *b = buf;
	double m, d, sum;
	u64 nmax;
	u32 i;

	if (flax_smx_is_nan(s))
		return;
	m = (double)flax_f32(s->max);
	sum = flax_f64(s->sum);
	nmax = s->nmax;
	for (i = 0; i < n; i++) {
		d = (double)flax_f32(flax_load32(b, i)) - m;
		if (d == 0.0)
			nmax++;
		else if (d >= FLAX_EXP_MIN)
			sum += flax_exp_reduced(d);
	}
	s->sum = flax_bits64(sum);
	s->nmax = nmax;
}

/*
 * Softmax: e^d / (nmax + rest), one double division rounded to float.
 * log_softmax: d - log1p((nmax - 1) + rest): nmax - 1 and rest are exact
 * and accurate, so the logarithm keeps its relative accuracy even when
 * the sum is 1 + 1e-30; d <= 0 and the logarithm >= 0, so the subtraction
 * cannot cancel.  A -inf input gives d = -inf: 0 and -inf.
 */
void flax_smx_apply(const struct flax_smx *s, void *buf, u32 n, int log)
{
	u8 *b = buf;
	double m, d, rest, total, lse;
	u32 i;

	if (flax_smx_is_nan(s) || !s->nmax) {
		for (i = 0; i < n; i++)
			flax_store32(b, i, FLAX_F32_QNAN);
		return;
	}
	m = (double)flax_f32(s->max);
	rest = flax_f64(s->sum);
	total = (double)(s64)s->nmax + rest;
	lse = log ? flax_log1p((double)(s64)(s->nmax - 1) + rest) : 0.0;
	for (i = 0; i < n; i++) {
		d = (double)flax_f32(flax_load32(b, i)) - m;
		if (log)
			d = d - lse;
		else if (d >= FLAX_EXP_MIN)
			d = flax_exp_reduced(d) / total;
		else
			d = 0.0;
		flax_store32(b, i, flax_bits32((float)d));
	}
}

void flax_softmax(void *buf, u32 n)
{
	struct flax_smx s;

	flax_smx_init(&s);
	flax_smx_max(&s, buf, n);
	flax_smx_sum(&s, buf, n);
	flax_smx_apply(&s, buf, n, 0);
}

/*
 * Sigmoid with t = e^-|x| <= 1, so that nothing overflows: 1 / (1 + t)
 * for x >= 0, t / (1 + t) = e^x / (1 + e^x) for x < 0.  t has a few
 * double ulps of error (flax_exp_reduced()), 1 + t and the division one
 * rounding each: the double result is within 2^-50 relative.  -|x| below
 * FLAX_EXP_MIN gives t = 0: exactly 1 for large x, and for x < -104 the
 * true value, below e^-104 < 2^-150, rounds to +0 anyway.
 */
void flax_sigmoid(void *buf, u32 n)
{
	u8 *b = buf;
	double x, a, t, y;
	u32 i, bits;

	for (i = 0; i < n; i++) {
		bits = flax_load32(b, i);
		if (flax_isnan_bits(bits)) {
			flax_store32(b, i, bits | FLAX_F32_QUIET);
			continue;
		}
		x = (double)flax_f32(bits);
		a = x < 0.0 ? x : -x;
		t = a >= FLAX_EXP_MIN ? flax_exp_reduced(a) : 0.0;
		y = x < 0.0 ? t / (1.0 + t) : 1.0 / (1.0 + t);
		flax_store32(b, i, flax_bits32((float)y));
	}
}

u32 flax_threshold(const void *scores, u32 n, u32 thr, u32 first,
		   struct flax_topk_entry *out)
{
	const u8 *s = scores;
	float t = flax_f32(thr);
	u32 i, bits, cnt = 0;

	for (i = 0; i < n; i++) {
		bits = flax_load32(s, i);
		if (flax_f32(bits) >= t) { /* false for a NaN on either side */
			out[cnt].index = first + i;
			out[cnt].score = bits;
			cnt++;
		}
	}
	return cnt;
}

u32 flax_pool_acc(u64 *acc, const void *rows, const void *mask, u32 nrows,
		  u32 d)
{
	const u8 *row = rows;
	u32 r, j, cnt = 0;
	double x;

	for (r = 0; r < nrows; r++, row += (size_t)d * 4) {
		if (mask && !flax_load32(mask, r))
			continue;
		for (j = 0; j < d; j++) {
			x = (double)flax_f32(flax_load32(row, j));
			acc[j] = flax_bits64(flax_f64(acc[j]) + x);
		}
		cnt++;
	}
	return cnt;
}

void flax_pool_finish(void *dst, const u64 *acc, u32 d, u32 ntokens)
{
	double div = ntokens ? (double)ntokens : 1.0;
	u8 *out = dst;
	u64 a;
	u32 j;

	for (j = 0; j < d; j++) {
		a = acc[j]; /* read before the store: @dst may be @acc */
		flax_store32(out, j, flax_bits32((float)(flax_f64(a) / div)));
	}
}

void flax_sumsq(u64 *acc, const void *buf, u32 n)
{
	const u8 *b = buf;
	double sum = flax_f64(*acc), x;
	u32 i;

	for (i = 0; i < n; i++) {
		x = (double)flax_f32(flax_load32(b, i));
		sum += x * x; /* exact: 24-bit significands, 48-bit square */
	}
	*acc = flax_bits64(sum);
}

/* torch's eps, 1e-12, as it acts on a float32 tensor: binary32 1e-12. */
#define FLAX_L2_EPS_BITS 0x2b8cbcccu

void flax_l2_apply(void *buf, u32 n, u64 acc)
{
	double norm = flax_f64(flax_sqrt_bits(acc));
	double eps = (double)flax_f32(FLAX_L2_EPS_BITS);
	u8 *b = buf;
	double x;
	u32 i;

	if (norm < eps) /* a NaN norm stays NaN */
		norm = eps;
	for (i = 0; i < n; i++) {
		x = (double)flax_f32(flax_load32(b, i));
		flax_store32(b, i, flax_bits32((float)(x / norm)));
	}
}

#define FLAX_F64_SIGN 0x8000000000000000ull
#define FLAX_F64_INF 0x7ff0000000000000ull
#define FLAX_F64_QUIET 0x0008000000000000ull
#define FLAX_F64_FRAC 0x000fffffffffffffull

/*
 * Square root by the digit-by-digit (restoring) method, in integers.
 * x = m * 2^e with m an integer in [2^52, 2^54) and e even, so sqrt(x) =
 * sqrt(m * 2^54) * 2^(e / 2 - 27).  The integer square root q of m * 2^54
 * has 54 bits, one more than a double: q >> 1 is the truncated
 * significand, q & 1 the rounding bit and a non-zero remainder the sticky
 * bit.  An exact tie would need a 54-bit odd q with q^2 = m * 2^54, i.e.
 * an odd square (107 or 108 bits) equal to a 54-bit m times a power of
 * two: impossible, so rounding up whenever the rounding bit is set is
 * round to nearest.  The remainder stays below 2q + 1 < 2^55, so (r << 2)
 * fits in 64 bits.
 */
u64 flax_sqrt_bits(u64 x)
{
	u64 m, q, r, t;
	int e, i;

	if (x & FLAX_F64_SIGN) {
		if (!(x & ~FLAX_F64_SIGN))
			return x; /* -0 */
		if ((x & ~FLAX_F64_SIGN) > FLAX_F64_INF)
			return x | FLAX_F64_QUIET;
		return FLAX_F64_SIGN | FLAX_F64_INF | FLAX_F64_QUIET;
	}
	if (x >= FLAX_F64_INF) /* +inf, or a NaN */
		return x > FLAX_F64_INF ? x | FLAX_F64_QUIET : x;
	if (!x)
		return 0;

	e = (int)(x >> 52);
	m = x & FLAX_F64_FRAC;
	if (e) {
		m |= FLAX_F64_FRAC + 1;
	} else { /* subnormal */
		e = 1;
		while (!(m & (FLAX_F64_FRAC + 1))) {
			m <<= 1;
			e--;
		}
	}
	e -= 1075; /* x = m * 2^e */
	if (e & 1) {
		m <<= 1;
		e--;
	}

	q = 0;
	r = 0;
	for (i = 0; i < 54; i++) {
		r = r << 2 | (i < 27 ? m >> (52 - 2 * i) & 3 : 0);
		t = q << 2 | 1;
		if (r >= t) {
			r -= t;
			q = q << 1 | 1;
		} else {
			q <<= 1;
		}
	}
	/* q in [2^53, 2^54); the rounded significand may carry to 2^53. */
	q = (q >> 1) + (q & 1);
	return ((u64)(e / 2 + 1048) << 52) + q;
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
 * One pass over the scores keeps the best @k entries sorted in @out
 * (their keys in @keys, recomputed from the scores on entry): a score
 * enters only if its key is strictly above the current last key (ties go
 * to the earlier index, already there), and is inserted by shifting the
 * lower entries down.  O(n) compares plus O(k) work per insertion; random
 * input inserts about k * ln(n / k) times.  Chunks in ascending index
 * order see the same sequence of scores as one call: same result.
 */
u32 flax_topk_add(const void *scores, u32 n, u32 first, u32 k, u32 cnt,
		  struct flax_topk_entry *out)
{
	u32 keys[FLAX_TOPK_MAX];
	const u8 *s = scores;
	u32 i, j, bits, key;

	if (k > FLAX_TOPK_MAX)
		k = FLAX_TOPK_MAX;
	if (cnt > k)
		cnt = k;
	for (j = 0; j < cnt; j++)
		keys[j] = flax_topk_key(out[j].score);

	for (i = 0; k && i < n; i++) {
		bits = flax_load32(s, i);
		key = flax_topk_key(bits);
		if (cnt == k) {
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
		out[j].index = first + i;
		out[j].score = bits;
	}
	return cnt;
}

void flax_topk(const void *scores, u32 n, u32 k, struct flax_topk_entry *out)
{
	u32 want = flax_topk_add(scores, n, 0, k, 0, out);

	/* Outside the contract (k > n or k > FLAX_TOPK_MAX): zero the rest. */
	if (k > want)
		memset(out + want, 0, (size_t)(k - want) * sizeof(*out));
}
