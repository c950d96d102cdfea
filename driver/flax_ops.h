/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev pre- and postprocessing: the shared C.
 *
 * flax_ops.c compiles in the kernel (with SSE enabled for that object only)
 * and in user space (bindings/, for native tests), through flax_compat.h.
 * No floating-point type appears in this header: the rest of the module is
 * built without SSE, so float values cross this boundary as binary32 bit
 * patterns (u32) and float buffers as void pointers.
 *
 * Every function here uses the FPU: in the kernel, call it only between
 * flax_fpu_begin() and flax_fpu_end(), on kernel memory, without sleeping
 * (`make check` verifies it on the built objects: kbuild/check-fpu.py).
 * The static inline helpers here (flax_norm_vector_ok(),
 * flax_normalize_chunk()) are integer code for the callers, usable
 * anywhere.  Keep each call's work bounded (FLAX_FPU_CHUNK elements,
 * flax_normalize_chunk() for flax_normalize()) so that preemption is not
 * held off for long, and reschedule between sections.
 *
 * Buffers need no particular alignment.  Tests: tests/host/test_ops.py
 * (normalisation, expf, softmax, top-k) and tests/host/test_post_ops.py
 * (the chunked postprocessing, sigmoid, pooling, L2, sqrt).
 */
#ifndef _FLAX_OPS_H
#define _FLAX_OPS_H

#include "flax_compat.h"
#include "flax_dtype.h"
#include "uapi/flaxdev.h"

/* Elements processed per FPU section by the callers of these functions. */
#define FLAX_FPU_CHUNK 1024

/**
 * struct flax_norm - parameters of FLAX_PRE_NORMALIZE.
 * @count: number of @mean/@std pairs, at least 1.
 * @inner: elements per pair before the next pair is used, at least 1:
 *	element i of the tensor uses pair (i / @inner) % @count.  1 for one
 *	pair (@count 1), per channel with the channels last (@count C) and
 *	per feature (@count = element count); H * W for channels first
 *	(@count C, shape (C, H, W) or (N, C, H, W)).
 * @scale: binary32 factor.
 * @flags: FLAX_NORM_* flags.
 * @clamp_lo: binary32 lower bound, with FLAX_NORM_CLAMP.
 * @clamp_hi: binary32 upper bound, with FLAX_NORM_CLAMP.
 * @mean: @count binary32 means.
 * @std: @count binary32 standard deviations.
 */
struct flax_norm {
	u32 count;
	u32 inner;
	u32 scale;
	u32 flags;
	u32 clamp_lo;
	u32 clamp_hi;
	const u32 *mean;
	const u32 *std;
};

/* struct flax_norm.flags: clamp to [clamp_lo, clamp_hi] as np.clip does. */
#define FLAX_NORM_CLAMP 0x1U
#define FLAX_NORM_FLAGS FLAX_NORM_CLAMP /* every defined flag */

/*
 * The code paths of flax_normalize().  The vector loops (SSE2, which
 * every x86-64 CPU has, and AVX2 where the CPU has it and the kernel
 * saves YMM state) cover uint8 and float32 input with one pair, a pair
 * per channel (channels last or first) or a pair per element, clamped or
 * not: flax_norm_vector_ok().  Everything else, and every CPU that is
 * not x86-64, takes the plain C loop.  On x86-64 the best path is chosen
 * on the first call and kept.  FLAX_NORM_PATH_* values are the user-space
 * test build's flax_norm_set_path() argument.
 */
#define FLAX_NORM_PATH_AUTO 0
#define FLAX_NORM_PATH_SCALAR 1
#define FLAX_NORM_PATH_SSE2 2
#define FLAX_NORM_PATH_AVX2 3

/*
 * Elements of flax_normalize() per FPU section, sized by time: each
 * section is bounded to a few tens of microseconds.  Measured
 * single-thread on the development machine, a 2-core Xeon VM
 * (scripts/bench_preprocess.py --all, worst dtype and layout of each
 * path): the vector loops 0.2 to 0.5 ns per element (per element
 * pairs, float32, are the slowest), the plain C loop 1.3 to 4.7 ns
 * (int32 and float16 the slowest).  16384 vector elements (64 KiB of
 * float32 output) then take at most ~8 us and 4096 plain ones ~19 us,
 * leaving room for a CPU two or three times slower.  The caller
 * reschedules between sections.
 */
#define FLAX_NORM_CHUNK_VECTOR 16384
#define FLAX_NORM_CHUNK_SCALAR 4096

/* Pair runs shorter than this (channels first) leave the vector loops. */
#define FLAX_NORM_RUN_MIN 64

/**
 * flax_norm_vector_ok() - does flax_normalize() take a vector loop?
 * @dtype: the input's FLAX_DTYPE_*.
 * @p: the parameters.
 *
 * True on x86-64 for uint8 and float32 input whose pairs change every
 * element (@p->inner 1: one pair, per channel with the channels last, per
 * element), never (@p->count 1), or in runs of at least
 * FLAX_NORM_RUN_MIN elements (channels first), unless a clamp bound is
 * NaN.  Integer code only, for the callers outside FPU sections.
 *
 * Return: non-zero if so.
 */
static inline int flax_norm_vector_ok(u32 dtype, const struct flax_norm *p)
{
	if (dtype != FLAX_DTYPE_UINT8 && dtype != FLAX_DTYPE_FLOAT32)
		return 0;
	if ((p->flags & FLAX_NORM_CLAMP) &&
	    ((p->clamp_lo & 0x7fffffffU) > 0x7f800000U ||
	     (p->clamp_hi & 0x7fffffffU) > 0x7f800000U))
		return 0;
	return p->inner == 1 || p->count == 1 || p->inner >= FLAX_NORM_RUN_MIN;
}

/**
 * flax_normalize_chunk() - elements of flax_normalize() per FPU section.
 * @dtype: the input's FLAX_DTYPE_*.
 * @p: the parameters.
 *
 * Integer code only, for the callers outside FPU sections.
 *
 * Return: FLAX_NORM_CHUNK_VECTOR or FLAX_NORM_CHUNK_SCALAR.
 */
static inline u32 flax_normalize_chunk(u32 dtype, const struct flax_norm *p)
{
	return flax_norm_vector_ok(dtype, p) ? FLAX_NORM_CHUNK_VECTOR :
					       FLAX_NORM_CHUNK_SCALAR;
}

/**
 * flax_normalize() - float32 (x * scale - mean[c]) / std[c], optionally
 *	clamped.
 * @dst: float32 output, @n elements.
 * @src: @n input elements of type @dtype.  May equal @dst.  It may also
 *	overlap @dst as long as it does not start after it (@src <= @dst):
 *	the loop runs backwards, so widening a dtype narrower than 4 bytes
 *	in place is safe, in one call or chunk by chunk from the last chunk
 *	(src = buf + size * first, dst = buf + 4 * first).
 * @dtype: FLAX_DTYPE_UINT8, INT8, UINT16, INT16, INT32, FLOAT32 or
 *	FLOAT16.
 * @first: index of @src[0] in the whole tensor (selects mean/std).
 * @n: number of elements.
 * @p: parameters.
 *
 * Each element is converted to float32 as numpy's astype(np.float32)
 * does (exact for every dtype but int32, which is rounded to nearest
 * even; float16 is decoded exactly, NaN payloads kept), then each
 * operation is rounded to float32 in numpy's order: the result is
 * bit-identical to numpy's ``(x.astype(f32) * scale - mean) / std``,
 * followed by ``np.clip(y, lo, hi)`` with FLAX_NORM_CLAMP (a NaN result
 * is a NaN, its payload aside).  The clamp is numpy 2's: a NaN in y or in
 * a bound gives NaN, lo > hi gives hi, and of -0 and +0 y's sign wins.
 * Float input follows IEEE arithmetic as numpy does: NaN gives NaN
 * (clamping keeps it), an infinity gives an infinity or NaN (inf * 0,
 * inf - inf).
 *
 * The vector paths (FLAX_NORM_PATH_*) compute the same operations in
 * the same order, one rounding each, so every path gives the same bits.
 * Keep @n within flax_normalize_chunk() per FPU section.
 *
 * Return: 0, or -EINVAL (nothing written) for an unknown @dtype or flag,
 * or a zero @p->count or @p->inner.
 */
int flax_normalize(void *dst, const void *src, u32 dtype, u32 first, u32 n,
		   const struct flax_norm *p);

/*
 * uint8 input takes 256 values, so for at most FLAX_NORM_LUT_PAIRS pairs
 * the results fit a table of 256 float32 per pair (16 KiB at most):
 * flax_norm_lut_fill() computes it once, with flax_normalize() itself, and
 * flax_norm_lut_apply() then normalises with integer loads and stores, no
 * FPU section and no rounding of its own, so its output is the same bits.
 */
#define FLAX_NORM_LUT_PAIRS 16
#define FLAX_NORM_LUT_VALUES 256

/* Elements of flax_norm_lut_apply() between scheduling points. */
#define FLAX_NORM_LUT_CHUNK 65536

/**
 * flax_norm_lut_fill() - the table of flax_norm_lut_apply().
 * @lut: room for @p->count * FLAX_NORM_LUT_VALUES u32.
 * @p: parameters, @p->count at most FLAX_NORM_LUT_PAIRS; @p->inner is
 *	not used (the table is indexed by pair).
 *
 * Entry c * 256 + x is flax_normalize() of uint8 value x with pair c.
 * Call it inside one FPU section.
 *
 * Return: 0, or -EINVAL for what flax_normalize() refuses or too many
 * pairs.
 */
int flax_norm_lut_fill(u32 *lut, const struct flax_norm *p);

/**
 * flax_norm_lut_apply() - flax_normalize() of uint8 input through a table.
 * @dst: float32 output, @n elements.
 * @src: @n uint8 elements; may overlap @dst as flax_normalize()'s may
 *	(@src <= @dst), the loop runs backwards for the same reason.
 * @first: index of @src[0] in the whole tensor (selects the pair).
 * @n: number of elements.
 * @lut: flax_norm_lut_fill()'s table for @p.
 * @p: the parameters the table was made from (@count and @inner used).
 *
 * Integer code only: call it outside FPU sections, rescheduling every
 * FLAX_NORM_LUT_CHUNK elements or so.
 */
static inline void flax_norm_lut_apply(void *dst, const void *src, u32 first,
				       u32 n, const u32 *lut,
				       const struct flax_norm *p)
{
	const u8 *s = src;
	u32 *d = dst;
	u32 pos, c;
	u64 e;

	if (!n)
		return;
	e = (u64)first + n - 1;
	pos = (u32)(e % p->inner);
	c = (u32)(e / p->inner % p->count);
	while (n--) {
		d[n] = lut[c * FLAX_NORM_LUT_VALUES + s[n]];
		if (pos) {
			pos--;
			continue;
		}
		pos = p->inner - 1;
		c = c ? c - 1 : p->count - 1;
	}
}

/**
 * flax_ops_init() - choose flax_normalize()'s code path for this CPU.
 *
 * Context: once, at module load, as the kernel's crypto and RAID code
 * choose theirs; no floating point, so outside any FPU section.
 *
 * Return: the path chosen, FLAX_NORM_PATH_SSE2 or FLAX_NORM_PATH_AVX2.
 */
u32 flax_ops_init(void);

#ifdef FLAX_USERSPACE
/**
 * flax_norm_set_path() - force a code path of flax_normalize() (tests).
 * @path: FLAX_NORM_PATH_*; FLAX_NORM_PATH_AUTO picks the best one again.
 *
 * User-space build only: the kernel always takes the best path.
 *
 * Return: 0, -EINVAL for an unknown @path, -EOPNOTSUPP for a path this
 * CPU (or build) cannot run.
 */
int flax_norm_set_path(u32 path);

/**
 * flax_norm_get_path() - the code path flax_normalize() takes now.
 *
 * Return: FLAX_NORM_PATH_SCALAR, _SSE2 or _AVX2.
 */
u32 flax_norm_get_path(void);
#endif

/**
 * flax_topk() - the @k largest of @n float32 scores.
 * @scores: @n float32 values.
 * @n: number of values.
 * @k: number of entries wanted, 1 to min(@n, FLAX_TOPK_MAX).  Outside
 *	that range, entries past min(@n, FLAX_TOPK_MAX) are zeroed (@k = 0
 *	writes nothing).
 * @out: @k entries, highest score first, equal scores by ascending index
 *	(numpy's stable order: np.argsort(-x, kind="stable")[:k]); -0 equals
 *	+0, and NaN sorts below every number, -inf included.  Each score is
 *	the input's bit pattern, unchanged.
 *
 * One pass with insertion into the sorted top @k: O(@n) plus O(@k) per
 * insertion.  It compares integer keys, no float arithmetic, but the
 * compiler uses SSE registers in this object anyway (to move entries):
 * it needs an FPU section like the others.  For a vector longer than
 * FLAX_FPU_CHUNK, use flax_topk_add() chunk by chunk.
 *
 * Argmax is @k = 1: the index of the largest number, the first one of
 * equal maxima (as np.argmax).  NaN is never chosen over a number, so
 * with a NaN in the input this is np.nanargmax, not np.argmax (which
 * returns the first NaN); if every score is NaN, index 0.
 */
void flax_topk(const void *scores, u32 n, u32 k, struct flax_topk_entry *out);

/**
 * flax_topk_add() - top-k over a vector in chunks: merge one chunk.
 * @scores: @n float32 values, elements @first to @first + @n - 1.
 * @n: number of values.
 * @first: index of @scores[0] in the whole vector; chunks must come in
 *	ascending index order.
 * @k: number of entries wanted, 1 to FLAX_TOPK_MAX (0 does nothing).
 * @cnt: entries already in @out (0 before the first chunk; then the
 *	previous call's return value).
 * @out: room for @k entries; the best @cnt so far on entry, in
 *	flax_topk() order.
 *
 * After the last chunk the first min(@k, total length) entries of @out
 * are exactly flax_topk()'s, whatever the chunk sizes.
 *
 * Return: the number of valid entries in @out, min(@k, elements seen).
 */
u32 flax_topk_add(const void *scores, u32 n, u32 first, u32 k, u32 cnt,
		  struct flax_topk_entry *out);

/**
 * struct flax_smx - state of a softmax or log-softmax computed in passes.
 * @max: binary32 maximum of the elements seen by flax_smx_max().
 * @flags: FLAX_SMX_NAN once a NaN has been seen.
 * @sum: binary64 bits: sum of exp(x - max) over the elements below the
 *	maximum, accumulated by flax_smx_sum().
 * @nmax: number of elements equal to the maximum, counted by
 *	flax_smx_sum() (each contributes exactly 1 to the sum).
 *
 * A vector too long for one FPU section is processed chunk by chunk in
 * three passes, each chunk in its own FPU section: flax_smx_init(), then
 * flax_smx_max() over every chunk, flax_smx_sum() over every chunk, and
 * flax_smx_apply() over every chunk.  Chunks may have any sizes (each
 * pass may cut the vector differently); the result is bit-identical to
 * one call per pass over the whole vector.  Keeping the elements equal
 * to the maximum out of @sum keeps log_softmax accurate when every other
 * term is tiny (log1p of the rest instead of log of 1 + rest).
 */
struct flax_smx {
	u32 max;
	u32 flags;
	u64 sum;
	u64 nmax;
};

/* struct flax_smx.flags */
#define FLAX_SMX_NAN 0x1U

/**
 * flax_smx_init() - start a softmax computed in passes.
 * @s: state to initialise (maximum -inf, empty sum).
 */
void flax_smx_init(struct flax_smx *s);

/**
 * flax_smx_max() - softmax pass 1: the maximum, over one chunk.
 * @s: state, after flax_smx_init().
 * @buf: @n float32 values.
 * @n: number of values.
 */
void flax_smx_max(struct flax_smx *s, const void *buf, u32 n);

/**
 * flax_smx_sum() - softmax pass 2: the sum of exponentials, over one chunk.
 * @s: state, after pass 1 over the whole vector.
 * @buf: @n float32 values.
 * @n: number of values.
 *
 * Each exp(x - max) is computed in double precision (the core of
 * flax_expf_bits(), not rounded to float) and added to a double sum in
 * index order; terms below e^-104 are left out (they change neither the
 * sum, which is >= 1, nor any output).
 */
void flax_smx_sum(struct flax_smx *s, const void *buf, u32 n);

/**
 * flax_smx_apply() - softmax pass 3: the outputs, in place, over one chunk.
 * @s: state, after pass 2 over the whole vector.
 * @buf: @n float32 values, replaced by their (log-)softmax.
 * @n: number of values.
 * @log: 0 for softmax, exp(x - max) / sum; non-zero for log_softmax,
 *	(x - max) - log(sum).
 *
 * Each output is computed in double precision and rounded to float once:
 * softmax within about half a float ulp of the exact softmax of the
 * float inputs (its exponentials are recomputed, 2 per element in all);
 * log_softmax is (x - max) - log1p(sum - 1), a sum of two non-positive
 * terms each good to a few double ulps, so it is the correctly rounded
 * value but for ties within about 2^-50 relative of a rounding boundary
 * (at most 1 ulp off).  No exponential is needed here for log_softmax.
 *
 * Special values follow the formula as numpy and jax.nn (log_)softmax
 * compute it: if any input is NaN or +inf (inf - inf), or every input is
 * -inf (-inf - -inf), every output is NaN (0x7fc00000); otherwise a -inf
 * input gives exactly +0 (softmax) or -inf (log_softmax).  Large finite
 * logits (1e4, even 3e38) are stable: only differences to the maximum
 * are exponentiated.  Applied without pass 2, every output is NaN.
 */
void flax_smx_apply(const struct flax_smx *s, void *buf, u32 n, int log);

/**
 * flax_softmax() - numerically stable softmax, in place, in one call.
 * @buf: @n float32 values.
 * @n: number of values; for at most FLAX_FPU_CHUNK / 3 or so (it runs
 *	the three passes of struct flax_smx over the whole vector).
 *
 * Same result as flax_smx_init(), flax_smx_max(), flax_smx_sum() and
 * flax_smx_apply() with @log 0 (see them for accuracy and special
 * values).  @n == 0 does nothing.
 */
void flax_softmax(void *buf, u32 n);

/**
 * flax_sigmoid() - logistic function 1 / (1 + exp(-x)), in place.
 * @buf: @n float32 values.
 * @n: number of values.
 *
 * t = exp(-|x|) in double precision, then 1 / (1 + t) for x >= 0 or
 * t / (1 + t) for x < 0 (no overflow for any x), rounded to float once:
 * the double value is within 2^-50 relative of the exact one, so the
 * result is the correctly rounded sigmoid but when the exact value lies
 * within that distance of a rounding boundary: at most 1 ulp off, and
 * never more than 1 ulp from float64 1 / (1 + exp(-x)) rounded to
 * float32.  +inf gives 1, -inf gives +0, -0 gives 0.5, x below about
 * -103.98 gives +0 (subnormal results are rounded once too), a NaN gives
 * the same NaN, quieted.
 */
void flax_sigmoid(void *buf, u32 n);

/**
 * flax_threshold() - the scores at or above a threshold.
 * @scores: @n float32 values.
 * @n: number of values.
 * @thr: binary32 threshold.
 * @first: index of @scores[0] in the whole vector (for chunked calls).
 * @out: room for @n entries: one per score >= @thr (binary32 compare,
 *	-0 equals +0; a NaN score is never selected, a NaN @thr selects
 *	nothing), in ascending index order, index @first + i and the score's
 *	bit pattern unchanged.
 *
 * Chunked calls continue where the last one stopped: pass @first = the
 * chunk's offset and @out advanced by the entries written so far.
 *
 * Return: the number of entries written.
 */
u32 flax_threshold(const void *scores, u32 n, u32 thr, u32 first,
		   struct flax_topk_entry *out);

/**
 * flax_pool_acc() - mean pooling, accumulate: add the real rows to @acc.
 * @acc: @d binary64 bit patterns, all 0 (+0.0) before the first chunk.
 * @rows: @nrows rows of @d float32 values (row-major (T, D) tensor, from
 *	the chunk's first row).
 * @mask: @nrows int32 attention-mask values of those rows (non-zero: a
 *	real token), or NULL: every row is real.  Masked-out rows are not
 *	read (a NaN there does not reach the result).
 * @nrows: number of rows in this chunk; keep @nrows * @d within
 *	FLAX_FPU_CHUNK or so (at least one row per call).
 * @d: number of columns.
 *
 * Each real row is added to @acc in double precision, column by column,
 * in row order: chunked calls give bit-identical sums.
 *
 * Return: the number of real rows in this chunk.
 */
u32 flax_pool_acc(u64 *acc, const void *rows, const void *mask, u32 nrows,
		  u32 d);

/**
 * flax_pool_finish() - mean pooling, finish: the means as float32.
 * @dst: @d float32 outputs.  May be the same memory as @acc (the loop
 *	runs forward and output j overlaps only sums 0 to j / 2).
 * @acc: @d binary64 sums from flax_pool_acc().
 * @d: number of columns.
 * @ntokens: number of real rows (the sum of flax_pool_acc()'s returns).
 *
 * dst[j] = acc[j] / max(@ntokens, 1), divided in double and rounded to
 * float once.  With no real row every output is +0 (sentence-transformers
 * clamps the count at 1e-9 instead: the same zeros).  Its error is that
 * of the double sum: at most @ntokens * 2^-53 of the sum of magnitudes,
 * plus the final rounding.
 */
void flax_pool_finish(void *dst, const u64 *acc, u32 d, u32 ntokens);

/**
 * flax_sumsq() - L2 normalisation, pass 1: add the squares of one chunk.
 * @acc: binary64 bits of the running sum, 0 (+0.0) before the first
 *	chunk.
 * @buf: @n float32 values.
 * @n: number of values.
 *
 * Each square is exact in double, and added in index order (chunked calls
 * give bit-identical sums).  The sum cannot overflow (2^32 squares of
 * FLT_MAX fit in a double).
 */
void flax_sumsq(u64 *acc, const void *buf, u32 n);

/**
 * flax_l2_apply() - L2 normalisation, pass 2: divide one chunk, in place.
 * @buf: @n float32 values.
 * @n: number of values.
 * @acc: binary64 sum of squares of the whole vector, from flax_sumsq().
 *
 * x / max(sqrt(@acc), 1e-12), as torch.nn.functional.normalize computes
 * it (its eps 1e-12 taken as a float32, as torch does for a float32
 * tensor), in double with a correctly rounded square root, rounded to
 * float once: within 1 ulp of the float64 formula rounded to float32.  A
 * zero vector stays zero (signs kept); a NaN anywhere makes every output
 * NaN; an infinity makes itself NaN and every finite value a signed 0.
 */
void flax_l2_apply(void *buf, u32 n, u64 acc);

/**
 * flax_sqrt_bits() - square root of a binary64 value, correctly rounded.
 * @x: binary64 bits of the argument.
 *
 * Integer digit-by-digit method on the significand (no FPU, no libm):
 * exact to the last bit, rounded to nearest (a tie cannot happen).
 * sqrt(+-0) = +-0, sqrt(+inf) = +inf, a NaN gives the same NaN quieted,
 * and any other negative argument the default NaN (0xfff8000000000000,
 * as the SSE instruction gives).
 *
 * Return: binary64 bits of sqrt(x).
 */
u64 flax_sqrt_bits(u64 x);

/**
 * flax_expf_bits() - e raised to a binary32 value.
 * @x: binary32 bits of the argument.
 *
 * Computed in double precision and rounded once: correctly rounded for
 * every one of the 2^32 inputs (checked exhaustively against libm by
 * tests/host/c/expf_exhaustive.c).  Overflow gives +inf, underflow 0 or
 * a subnormal, -inf gives +0, a NaN gives the same NaN, quieted.
 *
 * Return: binary32 bits of exp(x).
 */
u32 flax_expf_bits(u32 x);

#endif /* _FLAX_OPS_H */
