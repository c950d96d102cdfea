/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev postprocessing: the chain of a model, run on a job's output in
 * the client's context, and the text form of its result.
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _FLAX_POST_H
#define _FLAX_POST_H

#include <linux/types.h>

#include "uapi/flaxdev.h"

struct flax_model;
struct flax_labelset;
struct flax_post_plan;

/* Most bytes "%.6g" prints for a binary32, sign and exponent included. */
#define FLAX_NUM_TEXT_MAX 13

/**
 * struct flax_post_out - where a result is, after flax_post_run().
 * @data: the binary result: a struct flax_topk_result or float32 values.
 * @size: bytes at @data.
 * @entries: the number of entries of a top-k/argmax/threshold result;
 *	the number of values of a vector.
 * @vector: the result is a vector.
 */
struct flax_post_out {
	const void *data;
	size_t size;
	u32 entries;
	bool vector;
};

int flax_post_plan(const struct flax_model_desc *desc,
		   const struct flax_tensor_spec *out, u32 out_elems,
		   struct flax_post_plan *plan);
int flax_post_check_k(const struct flax_post_plan *plan, u32 topk);
u32 flax_post_max_entries(const struct flax_post_plan *plan, u32 topk);
size_t flax_post_result_size(const struct flax_post_plan *plan, u32 topk);
size_t flax_post_text_size(const struct flax_post_plan *plan, u32 topk);
size_t flax_post_scratch_size(const struct flax_model *model, u32 topk);
void flax_post_run(const struct flax_model *model, u32 topk, u32 threshold,
		   void *buf, const s32 *mask, struct flax_post_out *out);
size_t flax_post_text(const struct flax_post_out *res,
		      const struct flax_labelset *labels, char *text,
		      size_t size);

#endif /* _FLAX_POST_H */
