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
 * flax_fpu_begin() and flax_fpu_end(), on kernel memory, without sleeping.
 * Keep each call's work bounded (FLAX_FPU_CHUNK elements) so that
 * preemption is not held off for long.
 *
 * Buffers need no particular alignment.  Tests: tests/host/test_ops.py.
 */
#ifndef _FLAX_OPS_H
#define _FLAX_OPS_H

#include "flax_compat.h"
#include "uapi/flaxdev.h"

/* Elements processed per FPU section by the callers of these functions. */
#define FLAX_FPU_CHUNK 4096

/**
 * struct flax_norm - parameters of FLAX_PRE_NORMALIZE.
 * @count: number of @mean/@std pairs: 1, the channel count, or the
 *	element count; element i uses pair i % @count.
 * @scale: binary32 factor.
 * @mean: @count binary32 means.
 * @std: @count binary32 standard deviations.
 */
struct flax_norm {
	u32 count;
	u32 scale;
	const u32 *mean;
	const u32 *std;
};

/**
 * flax_normalize() - float32 (x * scale - mean[c]) / std[c].
 * @dst: float32 output, @n elements.
 * @src: @n input elements of type @dtype.  May equal @dst.  uint8 input
 *	may also overlap @dst as long as it does not start after it
 *	(@src <= @dst): the loop runs backwards, so widening in place is
 *	safe, in one call or chunk by chunk from the last chunk
 *	(src = buf + first, dst = buf + 4 * first).
 * @dtype: FLAX_DTYPE_UINT8 or FLAX_DTYPE_FLOAT32.
 * @first: index of @src[0] in the whole tensor (selects mean/std).
 * @n: number of elements.
 * @p: parameters.
 *
 * Each operation is rounded to float32 in numpy's order: the result is
 * bit-identical to numpy's ``(x.astype(f32) * scale - mean) / std`` (a NaN
 * result is a NaN, its payload aside).
 *
 * Return: 0, or -EINVAL (nothing written) for an unknown @dtype or a zero
 * @p->count.
 */
int flax_normalize(void *dst, const void *src, u32 dtype, u32 first, u32 n,
		   const struct flax_norm *p);

/**
 * flax_softmax() - numerically stable softmax, in place.
 * @buf: @n float32 values.
 * @n: number of values, at least 1.
 *
 * Subtracts the maximum, exponentiates in double precision (the core of
 * flax_expf_bits(), not rounded to float) and divides by the sum,
 * accumulated in double precision; each output is rounded to float once,
 * so it is within about half a float ulp of the exact softmax.  Each
 * exponential is computed twice rather than stored: 2 @n of them.
 *
 * Special values follow exp(x - max) / sum as numpy and jax.nn.softmax
 * compute it: if any input is NaN or +inf, or every input is -inf, every
 * output is NaN (0x7fc00000); otherwise a -inf input gets exactly 0.
 * @n == 0 does nothing.
 */
void flax_softmax(void *buf, u32 n);

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
 * it needs an FPU section like the others.
 */
void flax_topk(const void *scores, u32 n, u32 k, struct flax_topk_entry *out);

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
