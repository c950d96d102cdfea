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
 */
#ifndef _FLAX_OPS_H
#define _FLAX_OPS_H

#include "flax_compat.h"
#include "uapi/flaxdev.h"

/* Elements processed per FPU section by the callers of these functions. */
#define FLAX_FPU_CHUNK	4096

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
 * @src: @n input elements of type @dtype.  May equal @dst; may also
 *	start at @dst when the input is narrower than float32 (the loop
 *	runs backwards, so the in-place widening is safe).
 * @dtype: FLAX_DTYPE_UINT8 or FLAX_DTYPE_FLOAT32.
 * @first: index of @src[0] in the whole tensor (selects mean/std).
 * @n: number of elements.
 * @p: parameters.
 *
 * Each operation is rounded to float32 in numpy's order: the result is
 * bit-identical to numpy's ``(x.astype(f32) * scale - mean) / std``.
 *
 * Return: 0, or -EINVAL for an unknown @dtype.
 */
int flax_normalize(void *dst, const void *src, u32 dtype, u32 first, u32 n,
		   const struct flax_norm *p);

/**
 * flax_softmax() - numerically stable softmax, in place.
 * @buf: @n float32 values.
 * @n: number of values, at least 1.
 *
 * Subtracts the maximum, exponentiates with flax_expf() and divides by
 * the sum, accumulated in double precision.  If any input is NaN, every
 * output is NaN.
 */
void flax_softmax(void *buf, u32 n);

/**
 * flax_topk() - the @k largest of @n float32 scores.
 * @scores: @n float32 values.
 * @n: number of values.
 * @k: number of entries wanted, 1 to min(@n, FLAX_TOPK_MAX).
 * @out: @k entries, highest score first, equal scores by ascending index
 *	(numpy's stable order); NaN sorts below every number.
 */
void flax_topk(const void *scores, u32 n, u32 k, struct flax_topk_entry *out);

/**
 * flax_expf_bits() - e raised to a binary32 value.
 * @x: binary32 bits of the argument.
 *
 * Correctly rounded for all but a vanishing fraction of inputs (the
 * result is computed in double precision and rounded once); overflow
 * gives +inf, underflow 0 or a subnormal, NaN gives NaN.
 *
 * Return: binary32 bits of exp(x).
 */
u32 flax_expf_bits(u32 x);

#endif /* _FLAX_OPS_H */
