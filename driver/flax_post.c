// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev postprocessing: a model's chain (struct flax_model_desc.post_ops)
 * analysed once at creation, run on each job's output in the client's
 * context, and the text form of a result (FLAX_INFER_TEXT, sysfs).
 *
 * The numeric steps are the shared C of flax_ops.c; this file only cuts
 * the work into FLAX_FPU_CHUNK pieces, each in its own FPU section with
 * a scheduling point (cond_resched()) after it, so that preemption is
 * never held off for a whole tensor.  Selecting the
 * top k of a long vector is done chunk by chunk and merged here with
 * Nothing here uses floating point itself.
 *
 * Copyright (C) 2026 The flaxdev developers
 */

#include <linux/align.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/limits.h>
#include <linux/minmax.h>
#include <linux/overflow.h>
#include <linux/sched.h>
#include <linux/string.h>

#include "flax_model.h"
#include "flax_ops.h"
#include "flax_post.h"
#include "flax_text.h"

/* Significant digits of the numbers of a text result ("%.6g"). */
#define FLAX_TEXT_PREC 6

static bool flax_post_is_select(u8 op)
{
	return op == FLAX_POST_TOPK || op == FLAX_POST_ARGMAX;
}

/**
 * flax_post_plan() - check a post chain and analyse it.
 * @desc: the description; its @post_ops, @topk and @threshold are used.
 * @out: the output tensor.
 * @out_elems: its element count.
 * @plan: filled in on success.
 *
 * The accepted chains are listed in the UAPI header.  The first
 * @desc->worker_post steps are the worker's (struct flax_model_desc): the
 * plan holds only the kernel's part of the chain, so a leading MEAN_POOL
 * run by the worker leaves a [D] output slot, @plan->rows 0 and the
 * same @plan->vec_elems (the result's size does not change).
 *
 * Return: 0, or -EINVAL for a chain that is not accepted, a MEAN_POOL on
 * an output that is not two-dimensional, a k out of range, a threshold
 * given without THRESHOLD, a NaN threshold, or a @worker_post beyond
 * the chain or over a step a worker may not run (only a leading
 * MEAN_POOL).
 */
int flax_post_plan(const struct flax_model_desc *desc,
		   const struct flax_tensor_spec *out, u32 out_elems,
		   struct flax_post_plan *plan)
{
	const u8 *ops = desc->post_ops;
	unsigned int i = 0, v = 0;

	memset(plan, 0, sizeof(*plan));
	plan->select = FLAX_POST_END;
	plan->vec_elems = out_elems;

	if (ops[i] == FLAX_POST_SOFTMAX || ops[i] == FLAX_POST_LOG_SOFTMAX)
		plan->vec_ops[v++] = ops[i++];
	if (flax_post_is_select(ops[i])) {
		plan->select = ops[i++];
	} else if (!i && ops[i] == FLAX_POST_SIGMOID) {
		plan->vec_ops[v++] = ops[i++];
		if (ops[i] == FLAX_POST_THRESHOLD)
			plan->select = ops[i++];
	} else if (!i) {
		if (ops[i] == FLAX_POST_MEAN_POOL) {
			if (out->ndim != 2)
				return -EINVAL;
			plan->rows = out->dims[0];
			plan->vec_elems = out->dims[1];
			plan->vec_ops[v++] = ops[i++];
		}
		if (ops[i] == FLAX_POST_L2_NORMALIZE)
			plan->vec_ops[v++] = ops[i++];
	}
	if (memchr_inv(ops + i, FLAX_POST_END, FLAX_POST_CHAIN_MAX - i))
		return -EINVAL;
	plan->vec_ops[v] = FLAX_POST_END;

	/* The worker may pool; the kernel's chain starts after it. */
	if (desc->worker_post) {
		if (desc->worker_post != 1 ||
		    plan->vec_ops[0] != FLAX_POST_MEAN_POOL)
			return -EINVAL;
		memmove(plan->vec_ops, plan->vec_ops + 1, v);
		plan->rows = 0;
	}

	if (flax_post_check_k(plan, desc->topk))
		return -EINVAL;
	if (plan->select != FLAX_POST_THRESHOLD)
		return desc->threshold ? -EINVAL : 0;
	/* A NaN threshold would select nothing, ever. */
	if ((desc->threshold & 0x7fffffffu) > 0x7f800000u)
		return -EINVAL;
	return 0;
}

/**
 * flax_post_check_k() - is @topk a valid k for a plan?
 * @plan: the plan.
 * @topk: k: 1 to min(FLAX_TOPK_MAX, vector elements) with TOPK, else 0.
 *
 * Return: 0 or -EINVAL.
 */
int flax_post_check_k(const struct flax_post_plan *plan, u32 topk)
{
	if (plan->select != FLAX_POST_TOPK)
		return topk ? -EINVAL : 0;
	if (topk < 1 || topk > min_t(u32, FLAX_TOPK_MAX, plan->vec_elems))
		return -EINVAL;
	return 0;
}

/**
 * flax_post_max_entries() - most entries of a selection result.
 * @plan: the plan.
 * @topk: the current k.
 *
 * Return: k, 1 for ARGMAX, the vector's length for THRESHOLD, 0 for a
 * vector result.
 */
u32 flax_post_max_entries(const struct flax_post_plan *plan, u32 topk)
{
	switch (plan->select) {
	case FLAX_POST_TOPK:
		return topk;
	case FLAX_POST_ARGMAX:
		return 1;
	case FLAX_POST_THRESHOLD:
		return plan->vec_elems;
	default:
		return 0;
	}
}

/**
 * flax_post_result_size() - bytes of the largest binary result.
 * @plan: the plan.
 * @topk: the current k.
 *
 * Return: the size.
 */
size_t flax_post_result_size(const struct flax_post_plan *plan, u32 topk)
{
	if (plan->select == FLAX_POST_END)
		return (size_t)plan->vec_elems * sizeof(u32);
	return struct_size((struct flax_topk_result *)NULL, entries,
			   flax_post_max_entries(plan, topk));
}

/**
 * flax_post_text_size() - bytes of the longest text result.
 * @plan: the plan.
 * @topk: the current k.
 *
 * Return: the size, labels of FLAX_LABEL_MAX bytes assumed.
 */
size_t flax_post_text_size(const struct flax_post_plan *plan, u32 topk)
{
	if (plan->select == FLAX_POST_END)
		return (size_t)plan->vec_elems * (FLAX_NUM_TEXT_MAX + 1);
	return (size_t)flax_post_max_entries(plan, topk) *
	       (FLAX_LABEL_MAX + 1 + FLAX_NUM_TEXT_MAX + 1);
}

/* The scratch buffer: the output, then what the steps need. */
struct flax_post_scratch {
	void *vec; /* the output, out_bytes; the vector steps work here */
	u64 *acc; /* MEAN_POOL: D double sums */
	struct flax_topk_result *res; /* the selection */
};

static bool flax_post_has(const struct flax_post_plan *plan, u8 op)
{
	unsigned int i;

	for (i = 0; plan->vec_ops[i] != FLAX_POST_END; i++) {
		if (plan->vec_ops[i] == op)
			return true;
	}
	return false;
}

static size_t flax_post_layout(const struct flax_model *model, u32 topk,
			       void *buf, struct flax_post_scratch *s)
{
	const struct flax_post_plan *plan = &model->post;
	size_t off = ALIGN((size_t)model->out_elems * sizeof(u32), 8);

	if (s)
		s->vec = buf;
	if (flax_post_has(plan, FLAX_POST_MEAN_POOL)) {
		if (s)
			s->acc = buf + off;
		off += (size_t)plan->vec_elems * sizeof(u64);
	}
	if (s)
		s->res = buf + off;
	return off + flax_post_result_size(plan, topk);
}

/**
 * flax_post_scratch_size() - bytes of the buffer flax_post_run() needs.
 * @model: the model.
 * @topk: the k the run will use.
 *
 * Return: the size.
 */
size_t flax_post_scratch_size(const struct flax_model *model, u32 topk)
{
	return flax_post_layout(model, topk, NULL, NULL);
}

static void flax_post_softmax(void *vec, u32 n, bool log)
{
	struct flax_smx smx;
	u32 first, c;

	for (first = 0; first < n; first += c) {
		c = min_t(u32, n - first, FLAX_FPU_CHUNK);
		flax_fpu_begin();
		/* flax_ops.o code, SSE registers included: inside the section */
		if (!first)
			flax_smx_init(&smx);
		flax_smx_max(&smx, vec + (size_t)first * sizeof(u32), c);
		flax_fpu_end();
		cond_resched();
	}
	for (first = 0; first < n; first += c) {
		c = min_t(u32, n - first, FLAX_FPU_CHUNK);
		flax_fpu_begin();
		flax_smx_sum(&smx, vec + (size_t)first * sizeof(u32), c);
		flax_fpu_end();
		cond_resched();
	}
	for (first = 0; first < n; first += c) {
		c = min_t(u32, n - first, FLAX_FPU_CHUNK);
		flax_fpu_begin();
		flax_smx_apply(&smx, vec + (size_t)first * sizeof(u32), c, log);
		flax_fpu_end();
		cond_resched();
	}
}

static void flax_post_sigmoid(void *vec, u32 n)
{
	u32 first, c;

	for (first = 0; first < n; first += c) {
		c = min_t(u32, n - first, FLAX_FPU_CHUNK);
		flax_fpu_begin();
		flax_sigmoid(vec + (size_t)first * sizeof(u32), c);
		flax_fpu_end();
		cond_resched();
	}
}

static void flax_post_l2(void *vec, u32 n)
{
	u64 acc = 0;
	u32 first, c;

	for (first = 0; first < n; first += c) {
		c = min_t(u32, n - first, FLAX_FPU_CHUNK);
		flax_fpu_begin();
		flax_sumsq(&acc, vec + (size_t)first * sizeof(u32), c);
		flax_fpu_end();
		cond_resched();
	}
	for (first = 0; first < n; first += c) {
		c = min_t(u32, n - first, FLAX_FPU_CHUNK);
		flax_fpu_begin();
		flax_l2_apply(vec + (size_t)first * sizeof(u32), c, acc);
		flax_fpu_end();
		cond_resched();
	}
}

/*
 * Averages the rows of (rows, d) @vec whose @mask is set into @vec[0..d).
 * Each FPU section covers at most FLAX_FPU_CHUNK elements: whole rows
 * when they fit, else one row in column pieces (the sums are column by
 * column, so the pieces add exactly what whole rows would).  @acc is
 * separate memory, so the finish may go piece by piece too.
 */
static void flax_post_pool(const struct flax_post_plan *plan,
			   struct flax_post_scratch *s, const s32 *mask)
{
	u32 d = plan->vec_elems, rows = plan->rows;
	u32 step = max_t(u32, 1, FLAX_FPU_CHUNK / d);
	u32 r, c, j, w, ntokens = 0;
	void *row;

	memset(s->acc, 0, (size_t)d * sizeof(u64));
	for (r = 0; r < rows; r += c) {
		c = min(rows - r, step);
		row = s->vec + (size_t)r * d * sizeof(u32);
		if (c > 1 || d <= FLAX_FPU_CHUNK) {
			flax_fpu_begin();
			ntokens += flax_pool_acc(s->acc, row,
						 mask ? mask + r : NULL, c, d);
			flax_fpu_end();
			cond_resched();
			continue;
		}
		if (mask && !mask[r])
			continue;
		for (j = 0; j < d; j += w) {
			w = min_t(u32, d - j, FLAX_FPU_CHUNK);
			flax_fpu_begin();
			flax_pool_acc(s->acc + j, row + (size_t)j * sizeof(u32),
				      NULL, 1, w);
			flax_fpu_end();
			cond_resched();
		}
		ntokens++;
	}
	for (j = 0; j < d; j += w) {
		w = min_t(u32, d - j, FLAX_FPU_CHUNK);
		flax_fpu_begin();
		flax_pool_finish(s->vec + (size_t)j * sizeof(u32), s->acc + j,
				 w, ntokens);
		flax_fpu_end();
		cond_resched();
	}
}

static u32 flax_post_topk(struct flax_post_scratch *s, u32 n, u32 k)
{
	u32 first, c, count = 0;

	for (first = 0; first < n; first += c) {
		c = min_t(u32, n - first, FLAX_FPU_CHUNK);
		flax_fpu_begin();
		count = flax_topk_add(s->vec + (size_t)first * sizeof(u32), c,
				      first, k, count, s->res->entries);
		flax_fpu_end();
		cond_resched();
	}
	return count;
}

static u32 flax_post_threshold(struct flax_post_scratch *s, u32 n, u32 thr)
{
	u32 first, c, count = 0;

	for (first = 0; first < n; first += c) {
		c = min_t(u32, n - first, FLAX_FPU_CHUNK);
		flax_fpu_begin();
		count += flax_threshold(s->vec + (size_t)first * sizeof(u32), c,
					thr, first, s->res->entries + count);
		flax_fpu_end();
		cond_resched();
	}
	return count;
}

/**
 * flax_post_run() - run a model's chain on one output.
 * @model: the model.
 * @topk: k, from the request's snapshot of the configuration.
 * @threshold: binary32 threshold, from the same snapshot.
 * @buf: flax_post_scratch_size() bytes starting with the output.
 * @mask: MEAN_POOL: the input's attention mask, one per row, or NULL
 *	for all rows.
 * @out: where the result is (inside @buf) and its size.
 *
 * Context: process context; takes and releases the FPU.
 */
void flax_post_run(const struct flax_model *model, u32 topk, u32 threshold,
		   void *buf, const s32 *mask, struct flax_post_out *out)
{
	const struct flax_post_plan *plan = &model->post;
	struct flax_post_scratch s;
	u32 n = model->out_elems;
	u32 count, i;

	flax_post_layout(model, topk, buf, &s);
	for (i = 0; plan->vec_ops[i] != FLAX_POST_END; i++) {
		switch (plan->vec_ops[i]) {
		case FLAX_POST_SOFTMAX:
		case FLAX_POST_LOG_SOFTMAX:
			flax_post_softmax(s.vec, n,
					  plan->vec_ops[i] ==
						  FLAX_POST_LOG_SOFTMAX);
			break;
		case FLAX_POST_SIGMOID:
			flax_post_sigmoid(s.vec, n);
			break;
		case FLAX_POST_MEAN_POOL:
			flax_post_pool(plan, &s, mask);
			n = plan->vec_elems;
			break;
		case FLAX_POST_L2_NORMALIZE:
			flax_post_l2(s.vec, n);
			break;
		}
	}

	switch (plan->select) {
	case FLAX_POST_TOPK:
	case FLAX_POST_ARGMAX:
		count = flax_post_topk(&s, n,
				       flax_post_max_entries(plan, topk));
		break;
	case FLAX_POST_THRESHOLD:
		count = flax_post_threshold(&s, n, threshold);
		break;
	default:
		out->data = s.vec;
		out->size = (size_t)n * sizeof(u32);
		out->entries = n;
		out->vector = true;
		return;
	}
	s.res->count = count;
	s.res->reserved = 0;
	out->data = s.res;
	out->size = struct_size(s.res, entries, count);
	out->entries = count;
	out->vector = false;
}

/* Appends @len bytes to @text if they fit; counts them anyway. */
static void flax_text_put(char *text, size_t size, size_t *pos, const char *str,
			  size_t len)
{
	if (*pos < size)
		memcpy(text + *pos, str, min(len, size - *pos));
	*pos += len;
}

static void flax_text_num(char *text, size_t size, size_t *pos, u32 bits)
{
	char num[FLAX_NUM_TEXT_MAX + 3];
	int len = flax_fmt_f32(num, sizeof(num), bits, FLAX_TEXT_PREC);

	flax_text_put(text, size, pos, num,
		      clamp_t(int, len, 0, sizeof(num) - 1));
}

/**
 * flax_post_text() - the text form of a result (FLAX_INFER_TEXT).
 * @res: the result, from flax_post_run().
 * @labels: the model's labels, or NULL.
 * @text: the buffer, or NULL with @size 0 to learn the length.
 * @size: bytes at @text.
 *
 * The format is the UAPI header's: "<label>\t<score>\n" per entry (the
 * index when the entry has no label), or the values separated by spaces
 * and a newline.  Not NUL-terminated.
 *
 * Return: the length of the whole text; only the first @size bytes are
 * written.
 */
size_t flax_post_text(const struct flax_post_out *res,
		      const struct flax_labelset *labels, char *text,
		      size_t size)
{
	const struct flax_topk_result *sel = res->data;
	size_t pos = 0;
	char idx[12];
	u32 i, bits;

	if (res->vector) {
		for (i = 0; i < res->entries; i++) {
			memcpy(&bits, res->data + (size_t)i * sizeof(u32),
			       sizeof(bits));
			if (i)
				flax_text_put(text, size, &pos, " ", 1);
			flax_text_num(text, size, &pos, bits);
		}
		flax_text_put(text, size, &pos, "\n", 1);
		return pos;
	}

	for (i = 0; i < res->entries; i++) {
		u32 index = sel->entries[i].index;

		if (labels && index < labels->count) {
			u32 off = labels->off[index];

			flax_text_put(text, size, &pos, labels->text + off,
				      labels->off[index + 1] - 1 - off);
		} else {
			flax_text_put(text, size, &pos, idx,
				      scnprintf(idx, sizeof(idx), "%u", index));
		}
		flax_text_put(text, size, &pos, "\t", 1);
		flax_text_num(text, size, &pos, sel->entries[i].score);
		flax_text_put(text, size, &pos, "\n", 1);
	}
	return pos;
}
