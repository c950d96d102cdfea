// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev models: validation of a description, the registry (ids and
 * names), the slot region and the sysfs directory of each model.
 *
 * Copyright (C) 2026 The flaxdev developers
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/align.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/err.h>
#include <linux/kobject.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/xarray.h>

#include "flax_drv.h"
#include "flax_job.h"
#include "flax_kcompat.h"
#include "flax_model.h"
#include "flax_post.h"
#include "flax_tok.h"

/*
 * flax_registry_lock serialises MODEL_CREATE, MODEL_DESTROY and the name
 * lookup of MODEL_GET; it protects flax_nmodels, flax_next_id,
 * flax_models_kobj and the set of names.  Lookups by id take only the
 * xarray's own lock (flax_model_get()).
 */
static DEFINE_MUTEX(flax_registry_lock);
static DEFINE_XARRAY_ALLOC1(flax_models);
static unsigned int flax_nmodels;
static u32 flax_next_id;
static struct kobject *flax_models_kobj;
/*
 * Models allocated and not yet released: every reference must be gone by
 * module exit, so anything left is a leaked reference (checked there).
 */
static atomic_t flax_models_alive = ATOMIC_INIT(0);
/* Bytes of all regions allocated and not yet freed (max_region_mb). */
static atomic64_t flax_region_bytes = ATOMIC64_INIT(0);

#define FLAX_F32_SIGN 0x80000000u
#define FLAX_F32_EXP 0x7f800000u

/* Binary32 bit-pattern tests: no floating point outside flax_ops.c. */
static bool flax_f32_finite(u32 bits)
{
	return (bits & FLAX_F32_EXP) != FLAX_F32_EXP;
}

static bool flax_f32_positive(u32 bits)
{
	return flax_f32_finite(bits) && !(bits & FLAX_F32_SIGN) && bits;
}

static bool flax_f32_nan(u32 bits)
{
	return (bits & ~FLAX_F32_SIGN) > FLAX_F32_EXP;
}

/* Orders binary32 values that are not NaN, -0 equal to +0. */
static s64 flax_f32_key(u32 bits)
{
	s64 mag = bits & ~FLAX_F32_SIGN;

	return (bits & FLAX_F32_SIGN) ? -mag : mag;
}

static int flax_check_name(const char *name)
{
	size_t len = strnlen(name, FLAX_NAME_MAX);
	size_t i;

	if (!len || len == FLAX_NAME_MAX)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		char c = name[i];

		/* ASCII only: the kernel's isalnum() accepts Latin-1. */
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return -EINVAL;
	}
	if (memchr_inv(name + len, 0, FLAX_NAME_MAX - len))
		return -EINVAL;
	/* The name is a sysfs directory and a node beside the control node. */
	if (!strcmp(name, ".") || !strcmp(name, "..") ||
	    !strcmp(name, "control"))
		return -EINVAL;
	return 0;
}

/* Checks @spec; on success *@elems is its element count. */
static int flax_check_spec(const struct flax_tensor_spec *spec, u32 *elems)
{
	u32 n = 1;
	u32 i;

	if (!flax_dtype_size(spec->dtype))
		return -EINVAL;
	if (spec->ndim < 1 || spec->ndim > FLAX_MAX_DIMS)
		return -EINVAL;
	for (i = 0; i < FLAX_MAX_DIMS; i++) {
		if (i >= spec->ndim) {
			if (spec->dims[i])
				return -EINVAL;
			continue;
		}
		if (!spec->dims[i] || check_mul_overflow(n, spec->dims[i], &n))
			return -EINVAL;
	}
	*elems = n;
	return 0;
}

static int flax_check_norm(const struct flax_model_desc *desc, u32 in_elems)
{
	const struct flax_tensor_spec *in = &desc->input;
	u32 flags = desc->flags & ~FLAX_MODEL_OWNER;
	u32 channels;

	if (desc->pre_op == FLAX_PRE_TOKENIZE) {
		bool norm = desc->norm_count || desc->norm_scale ||
			    desc->norm_mean || desc->norm_std ||
			    desc->clamp_lo || desc->clamp_hi || flags;

		/* The worker sees int32 [2, L]: ids, then the mask. */
		if (norm || in->dtype != FLAX_DTYPE_INT32 || in->ndim != 2 ||
		    in->dims[0] != 2 || in->dims[1] < FLAX_TOK_MIN_LEN)
			return -EINVAL;
		return desc->text_max > flax_max_slot_bytes ? -EINVAL : 0;
	}
	if (desc->text_max)
		return -EINVAL;
	if (desc->pre_op == FLAX_PRE_NONE) {
		bool norm = desc->norm_count || desc->norm_scale ||
			    desc->norm_mean || desc->norm_std ||
			    desc->clamp_lo || desc->clamp_hi || flags;

		return norm ? -EINVAL : 0;
	}
	if (desc->pre_op != FLAX_PRE_NORMALIZE)
		return -EINVAL;
	if (flags & ~(FLAX_MODEL_NORM_CHANNEL_FIRST | FLAX_MODEL_NORM_CLAMP))
		return -EINVAL;
	if (flags & FLAX_MODEL_NORM_CLAMP) {
		if (flax_f32_nan(desc->clamp_lo) ||
		    flax_f32_nan(desc->clamp_hi) ||
		    flax_f32_key(desc->clamp_lo) > flax_f32_key(desc->clamp_hi))
			return -EINVAL;
	} else if (desc->clamp_lo || desc->clamp_hi) {
		return -EINVAL;
	}
	channels = flags & FLAX_MODEL_NORM_CHANNEL_FIRST ?
			   in->dims[0] :
			   in->dims[in->ndim - 1];
	if (desc->norm_count != 1 && desc->norm_count != in_elems &&
	    desc->norm_count != channels)
		return -EINVAL;
	if (!flax_f32_finite(desc->norm_scale))
		return -EINVAL;
	if (!desc->norm_mean || !desc->norm_std)
		return -EINVAL;
	return 0;
}

/* u32s of a configuration's @data: the pairs, then the table if it has one. */
static size_t flax_cfg_words(u32 count, bool lut)
{
	size_t words = 2 * (size_t)count;

	if (lut)
		words += (size_t)count * FLAX_NORM_LUT_VALUES;
	return words;
}

/*
 * A configuration with room for @count mean/std pairs and, with @lut, their
 * uint8 table, zeroed.
 */
static struct flax_cfg *flax_cfg_alloc(u32 count, bool lut)
{
	struct flax_cfg *cfg;

	cfg = kvzalloc(struct_size(cfg, data, flax_cfg_words(count, lut)),
		       GFP_KERNEL_ACCOUNT);
	if (!cfg)
		return NULL;
	cfg->norm.count = count;
	cfg->norm.mean = cfg->data;
	cfg->norm.std = cfg->data + count;
	cfg->lut = lut ? cfg->data + 2 * (size_t)count : NULL;
	return cfg;
}

/**
 * flax_cfg_check() - check a configuration against its model.
 * @model: the model.
 * @cfg: the configuration, its sizes not yet filled in.
 *
 * Fills in @cfg->result_size, @cfg->text_size and @cfg->lut.
 *
 * Return: 0 or -EINVAL.
 */
static int flax_cfg_check(const struct flax_model *model, struct flax_cfg *cfg)
{
	const struct flax_norm *norm = &cfg->norm;
	u32 nslots = model->layout.nslots;
	u32 i;

	if (flax_post_check_k(&model->post, cfg->topk))
		return -EINVAL;
	if (model->post.select == FLAX_POST_THRESHOLD ?
		    flax_f32_nan(cfg->threshold) :
		    cfg->threshold != 0)
		return -EINVAL;
	if (!cfg->timeout_ms || cfg->timeout_ms > flax_max_timeout_ms)
		return -EINVAL;
	if (!cfg->max_batch || cfg->max_batch > nslots || !cfg->max_queue ||
	    cfg->max_queue > nslots ||
	    cfg->max_queue_delay_us > FLAX_MAX_WAIT_US)
		return -EINVAL;
	for (i = 0; i < norm->count; i++) {
		if (!flax_f32_finite(norm->mean[i]) ||
		    !flax_f32_positive(norm->std[i]))
			return -EINVAL;
	}
	cfg->result_size = flax_post_result_size(&model->post, cfg->topk);
	cfg->text_size = flax_post_text_size(&model->post, cfg->topk);
	if (cfg->lut) {
		int ret;

		/* At most 4096 elements: one bounded section. */
		flax_fpu_begin();
		ret = flax_norm_lut_fill(cfg->lut, norm);
		flax_fpu_end();
		if (ret)
			return -EINVAL;
	}
	return 0;
}

/**
 * flax_cfg_dup() - a copy of a model's configuration, to edit.
 * @model: the model; the caller holds its @cfg_lock.
 *
 * Return: the copy, to be given to flax_cfg_commit() or kvfree()d, or
 * NULL.
 */
struct flax_cfg *flax_cfg_dup(struct flax_model *model)
{
	const struct flax_cfg *old;
	struct flax_cfg *cfg;

	lockdep_assert_held(&model->cfg_lock);
	old = rcu_dereference_protected(model->cfg,
					lockdep_is_held(&model->cfg_lock));
	cfg = flax_cfg_alloc(old->norm.count, old->lut);
	if (!cfg)
		return NULL;
	memcpy(cfg, old, offsetof(struct flax_cfg, data));
	memcpy(cfg->data, old->data, 2 * (size_t)old->norm.count * sizeof(u32));
	cfg->norm.mean = cfg->data;
	cfg->norm.std = cfg->data + cfg->norm.count;
	cfg->lut = old->lut ? cfg->data + 2 * (size_t)cfg->norm.count : NULL;
	return cfg;
}

/**
 * flax_cfg_commit() - check an edited configuration and make it current.
 * @model: the model; the caller holds its @cfg_lock.
 * @cfg: from flax_cfg_dup(); consumed either way.
 *
 * Requests that have already started go on with the settings they began
 * with; the old configuration is freed after an RCU grace period.
 *
 * Return: 0, or -EINVAL (the configuration is unchanged).
 */
int flax_cfg_commit(struct flax_model *model, struct flax_cfg *cfg)
{
	struct flax_cfg *old;

	lockdep_assert_held(&model->cfg_lock);
	if (flax_cfg_check(model, cfg)) {
		kvfree(cfg);
		return -EINVAL;
	}
	old = rcu_replace_pointer(model->cfg, cfg,
				  lockdep_is_held(&model->cfg_lock));
	kvfree_rcu(old, rcu);
	return 0;
}

/**
 * flax_norm_takes_table() - does a model normalise through a uint8 table?
 * @desc: the model's description.
 *
 * uint8 input, at most FLAX_NORM_LUT_PAIRS pairs, and the norm_table
 * parameter's choice (fixed at load): see struct flax_cfg's @lut.
 *
 * Return: true if so.
 */
bool flax_norm_takes_table(const struct flax_model_desc *desc)
{
	return flax_norm_table && desc->pre_op == FLAX_PRE_NORMALIZE &&
	       desc->input.dtype == FLAX_DTYPE_UINT8 &&
	       desc->norm_count <= FLAX_NORM_LUT_PAIRS;
}

/* The first configuration, from the description. */
static int flax_model_init_cfg(struct flax_model *model,
			       const struct flax_model_desc *desc)
{
	const struct flax_tensor_spec *in = &desc->input;
	u32 nslots = model->layout.nslots;
	u32 count = desc->norm_count;
	struct flax_cfg *cfg;
	int ret;

	cfg = flax_cfg_alloc(count, flax_norm_takes_table(desc));
	if (!cfg)
		return -ENOMEM;
	cfg->topk = desc->topk;
	cfg->threshold = desc->threshold;
	cfg->timeout_ms = desc->timeout_ms ?: flax_timeout_ms;
	cfg->max_batch = desc->max_batch ?: nslots;
	cfg->max_queue_delay_us = desc->max_queue_delay_us;
	cfg->max_queue = desc->max_queue ?: nslots;
	if (desc->pre_op == FLAX_PRE_NORMALIZE) {
		cfg->norm.scale = desc->norm_scale;
		cfg->norm.inner = 1;
		if ((desc->flags & FLAX_MODEL_NORM_CHANNEL_FIRST) &&
		    count == in->dims[0] && count != model->in_elems)
			cfg->norm.inner = model->in_elems / count;
		if (desc->flags & FLAX_MODEL_NORM_CLAMP) {
			cfg->norm.flags = FLAX_NORM_CLAMP;
			cfg->norm.clamp_lo = desc->clamp_lo;
			cfg->norm.clamp_hi = desc->clamp_hi;
		}
		ret = -EFAULT;
		if (copy_from_user(cfg->data, u64_to_user_ptr(desc->norm_mean),
				   count * sizeof(u32)) ||
		    copy_from_user(cfg->data + count,
				   u64_to_user_ptr(desc->norm_std),
				   count * sizeof(u32)))
			goto err_free;
	}
	ret = flax_cfg_check(model, cfg);
	if (ret)
		goto err_free;
	RCU_INIT_POINTER(model->cfg, cfg);
	return 0;

err_free:
	kvfree(cfg);
	return ret;
}

/*
 * Copies the settings that may change into @desc: those of the current
 * configuration, and the number of workers attached now.  The norm
 * pointers are left alone.
 */
static void flax_model_desc_live(struct flax_model *model,
				 struct flax_model_desc *desc)
{
	const struct flax_cfg *cfg;

	rcu_read_lock();
	cfg = rcu_dereference(model->cfg);
	desc->topk = cfg->topk;
	desc->threshold = cfg->threshold;
	desc->timeout_ms = cfg->timeout_ms;
	desc->max_batch = cfg->max_batch;
	desc->max_queue_delay_us = cfg->max_queue_delay_us;
	desc->max_queue = cfg->max_queue;
	desc->result_size = cfg->result_size;
	desc->text_size = cfg->text_size;
	rcu_read_unlock();
	/* A snapshot, as sysfs "workers" reads it. */
	desc->nworkers = READ_ONCE(model->nworkers);
	desc->flags |= FLAX_MODEL_OWNER;
	desc->owner_uid = from_kuid_munged(current_user_ns(), model->uid);
	desc->owner_gid = from_kgid_munged(current_user_ns(), model->gid);
	desc->node_mode = model->node_mode;
}

/* Lays the region out: header, FLAX_MAX_WORKERS rings, input, output. */
static int flax_model_layout(struct flax_model *model, u32 nslots, u32 in_bytes,
			     u32 out_bytes)
{
	struct flax_region_layout *l = &model->layout;
	u64 size;

	l->magic = FLAX_REGION_MAGIC;
	l->abi_version = FLAX_ABI_VERSION;
	l->nslots = nslots;
	l->ring_entries = roundup_pow_of_two(nslots);
	l->in_bytes = in_bytes;
	l->out_bytes = out_bytes;
	/* Bytes are at most FLAX_MAX_SLOT_BYTES_LIMIT: no overflow. */
	l->in_slot_size = ALIGN(in_bytes, FLAX_REGION_ALIGN);
	l->out_slot_size = ALIGN(out_bytes, FLAX_REGION_ALIGN);
	l->rings_offset = ALIGN(sizeof(*l), FLAX_REGION_ALIGN);
	l->ring_stride = ALIGN(struct_size((struct flax_ring *)NULL, entries,
					   l->ring_entries),
			       FLAX_REGION_ALIGN);
	l->in_offset = l->rings_offset + FLAX_MAX_WORKERS * l->ring_stride;
	l->out_offset = l->in_offset + (u64)nslots * l->in_slot_size;
	size = l->out_offset + (u64)nslots * l->out_slot_size;
	l->region_size = PAGE_ALIGN(size);

	/*
	 * A region larger than half the memory cannot be meant; refusing it
	 * here also keeps vmalloc from warning about an absurd size.
	 */
	if (l->region_size > ((u64)totalram_pages() << PAGE_SHIFT) / 2)
		return -ENOMEM;
	return 0;
}

/*
 * Counts a region of @size bytes against max_region_mb, or refuses it.  A
 * region counts until it is freed: a destroyed model's until its last
 * mapping goes.
 */
static int flax_region_charge(u64 size, const char *name)
{
	u64 cap = (u64)flax_max_region_mb << 20;
	s64 old = atomic64_read(&flax_region_bytes);

	do {
		if (old + size > cap)
			goto refuse;
	} while (!atomic64_try_cmpxchg(&flax_region_bytes, &old, old + size));
	return 0;

refuse:
	pr_warn_ratelimited("model %s: %llu-byte region past max_region_mb\n",
			    name, size);
	return -ENOMEM;
}

static void flax_model_release(struct kobject *kobj)
{
	struct flax_model *model = container_of(kobj, struct flax_model, kobj);

	if (model->region) {
		vfree(model->region);
		atomic64_sub(model->layout.region_size, &flax_region_bytes);
	}
	kvfree(model->slots);
	/* The last reference: no reader is left. */
	kvfree(rcu_access_pointer(model->cfg));
	flax_labels_put(rcu_access_pointer(model->labels));
	flax_vocab_free(model->vocab);
	mutex_destroy(&model->cfg_lock);
	kfree(model);
	atomic_dec(&flax_models_alive);
}

/*
 * The model's sysfs files belong to its owner, who may change the
 * settings (mode 0644).
 */
static void flax_model_get_ownership(flax_kobj_const struct kobject *kobj,
				     kuid_t *uid, kgid_t *gid)
{
	const struct flax_model *model =
		container_of(kobj, struct flax_model, kobj);

	*uid = model->uid;
	*gid = model->gid;
}

static const struct kobj_type flax_model_ktype = {
	.release = flax_model_release,
	.sysfs_ops = &kobj_sysfs_ops,
	.default_groups = flax_model_groups, /* flax_sysfs.c */
	.get_ownership = flax_model_get_ownership,
};

/*
 * The owner, group and node mode of a new model: the caller's fsuid and
 * fsgid and FLAX_NODE_MODE_DEFAULT unless @desc gives them.  Giving the
 * model away takes what chown(2) takes: CAP_CHOWN for another owner or a
 * group the caller is not in.
 */
static int flax_model_owner(struct flax_model *model,
			    const struct flax_model_desc *desc)
{
	kuid_t uid = current_fsuid();
	kgid_t gid = current_fsgid();

	if (desc->reserved2 || desc->node_mode & ~0777)
		return -EINVAL;
	if (desc->flags & FLAX_MODEL_OWNER) {
		uid = make_kuid(current_user_ns(), desc->owner_uid);
		gid = make_kgid(current_user_ns(), desc->owner_gid);
		if (!uid_valid(uid) || !gid_valid(gid))
			return -EINVAL;
		if ((!uid_eq(uid, current_fsuid()) || !in_group_p(gid)) &&
		    !capable(CAP_CHOWN))
			return -EPERM;
	} else if (desc->owner_uid || desc->owner_gid) {
		return -EINVAL;
	}
	model->uid = uid;
	model->gid = gid;
	model->node_mode = desc->node_mode ?: FLAX_NODE_MODE_DEFAULT;
	return 0;
}

/*
 * Validates @desc and builds an unpublished model from it: norm
 * parameters copied in, region and slots allocated.  The caller owns the
 * only reference.
 */
static struct flax_model *flax_model_new(const struct flax_model_desc *desc)
{
	struct flax_model *model;
	u32 in_elems, out_elems, in_user_bytes, in_bytes, out_bytes;
	u32 nslots = desc->nslots ?: flax_nslots;
	struct flax_post_plan plan;
	u32 i;
	int ret;

	/* @id, @result_size, @text_size, @nworkers: out fields, ignored. */
	if (memchr_inv(desc->reserved, 0, sizeof(desc->reserved)) ||
	    desc->__pad0)
		return ERR_PTR(-EINVAL);
	if (flax_check_name(desc->name))
		return ERR_PTR(-EINVAL);
	if (flax_check_spec(&desc->input, &in_elems) ||
	    flax_check_spec(&desc->output, &out_elems))
		return ERR_PTR(-EINVAL);
	if (desc->output.dtype != FLAX_DTYPE_FLOAT32)
		return ERR_PTR(-EINVAL);
	if (flax_check_norm(desc, in_elems) ||
	    flax_post_plan(desc, &desc->output, out_elems, &plan))
		return ERR_PTR(-EINVAL);
	/*
	 * Pooling a tokenised input's outputs, here or in the worker: one
	 * row per token.  flax_post_plan() accepts MEAN_POOL only first.
	 */
	if (desc->pre_op == FLAX_PRE_TOKENIZE &&
	    desc->post_ops[0] == FLAX_POST_MEAN_POOL &&
	    desc->output.dims[0] != desc->input.dims[1])
		return ERR_PTR(-EINVAL);
	/* The worker's steps done, its output slot holds the vector. */
	if (desc->worker_post)
		out_elems = plan.vec_elems;
	if (nslots > flax_max_slots)
		return ERR_PTR(-EINVAL);

	/* The input slot holds float32 after normalisation. */
	if (check_mul_overflow(in_elems, flax_dtype_size(desc->input.dtype),
			       &in_user_bytes) ||
	    check_mul_overflow(in_elems,
			       desc->pre_op == FLAX_PRE_NORMALIZE ?
				       (u32)sizeof(u32) :
				       flax_dtype_size(desc->input.dtype),
			       &in_bytes) ||
	    check_mul_overflow(out_elems, (u32)sizeof(u32), &out_bytes))
		return ERR_PTR(-EINVAL);
	if (in_bytes > flax_max_slot_bytes || out_bytes > flax_max_slot_bytes)
		return ERR_PTR(-EINVAL);
	if (desc->pre_op == FLAX_PRE_TOKENIZE)
		in_user_bytes = desc->text_max ?: FLAX_TEXT_MAX_DEFAULT;

	model = kzalloc(sizeof(*model), GFP_KERNEL_ACCOUNT);
	if (!model)
		return ERR_PTR(-ENOMEM);
	atomic_inc(&flax_models_alive);
	/* From here on, kobject_put() frees whatever was allocated. */
	kobject_init(&model->kobj, &flax_model_ktype);
	spin_lock_init(&model->lock);
	mutex_init(&model->cfg_lock);
	INIT_LIST_HEAD(&model->free);
	INIT_LIST_HEAD(&model->queue);
	init_waitqueue_head(&model->slot_wait);
	init_waitqueue_head(&model->job_wait);

	ret = flax_model_owner(model, desc);
	if (ret)
		goto err_put;
	model->privileged = ns_capable_noaudit(&init_user_ns, CAP_SYS_ADMIN);
	model->desc = *desc;
	model->desc.id = 0;
	model->desc.norm_mean = 0;
	model->desc.norm_std = 0;
	model->desc.nslots = nslots;
	if (desc->pre_op == FLAX_PRE_TOKENIZE)
		model->desc.text_max = in_user_bytes;
	model->in_elems = in_elems;
	model->out_elems = out_elems;
	model->in_user_bytes = in_user_bytes;
	model->post = plan;

	ret = flax_model_layout(model, nslots, in_bytes, out_bytes);
	if (ret)
		goto err_put;

	ret = flax_model_init_cfg(model, desc);
	if (ret)
		goto err_put;
	flax_model_desc_live(model, &model->desc);

	/*
	 * Charged to the creator's memory cgroup; past its limit the
	 * allocation fails (__GFP_RETRY_MAYFAIL: no OOM kill), as it does
	 * past max_region_mb.  Mapped page by page (flax_worker_mmap()).
	 */
	ret = flax_region_charge(model->layout.region_size, desc->name);
	if (ret)
		goto err_put;
	model->region = __vmalloc(model->layout.region_size,
				  GFP_KERNEL_ACCOUNT | __GFP_ZERO |
					  __GFP_RETRY_MAYFAIL | __GFP_NOWARN);
	if (!model->region) {
		atomic64_sub(model->layout.region_size, &flax_region_bytes);
		ret = -ENOMEM;
		goto err_put;
	}
	memcpy(model->region, &model->layout, sizeof(model->layout));

	model->slots =
		kvcalloc(nslots, sizeof(*model->slots), GFP_KERNEL_ACCOUNT);
	if (!model->slots)
		goto err_put;
	for (i = 0; i < nslots; i++) {
		struct flax_slot *slot = &model->slots[i];

		slot->index = i;
		slot->state = FLAX_SLOT_FREE;
		init_waitqueue_head(&slot->wait);
		list_add_tail(&slot->node, &model->free);
	}

	return model;

err_put:
	kobject_put(&model->kobj);
	return ERR_PTR(ret);
}

static struct flax_model *flax_model_find(const char *name)
{
	struct flax_model *model;
	unsigned long id;

	lockdep_assert_held(&flax_registry_lock);

	xa_for_each(&flax_models, id, model) {
		if (!strcmp(model->desc.name, name))
			return model;
	}
	return NULL;
}

/* Models of @uid's that count against max_models_per_user. */
static unsigned int flax_models_owned(kuid_t uid)
{
	struct flax_model *model;
	unsigned int n = 0;
	unsigned long id;

	lockdep_assert_held(&flax_registry_lock);

	xa_for_each(&flax_models, id, model) {
		if (!model->privileged && uid_eq(model->uid, uid))
			n++;
	}
	return n;
}

/*
 * Gives the model an id, a sysfs directory and a place in the registry,
 * which takes its own reference.
 */
static int flax_model_publish(struct flax_model *model)
{
	int ret;

	mutex_lock(&flax_registry_lock);
	if (!flax_models_kobj) {
		ret = -ENODEV;
		goto out_unlock;
	}
	if (flax_nmodels >= flax_max_models) {
		ret = -ENOSPC;
		goto out_unlock;
	}
	if (!model->privileged &&
	    flax_models_owned(model->uid) >= flax_max_models_per_user) {
		ret = -EDQUOT;
		goto out_unlock;
	}
	if (flax_model_find(model->desc.name)) {
		ret = -EEXIST;
		goto out_unlock;
	}

	/*
	 * Reserve an id, invisible to lookups until the store below; cyclic,
	 * so that a stale id does not name a new model soon after a destroy.
	 */
	ret = xa_alloc_cyclic(&flax_models, &model->id, NULL, xa_limit_31b,
			      &flax_next_id, GFP_KERNEL);
	if (ret < 0)
		goto out_unlock;
	model->desc.id = model->id;

	ret = kobject_add(&model->kobj, flax_models_kobj, "%s",
			  model->desc.name);
	if (ret)
		goto err_erase;
	ret = flax_node_add(model);
	if (ret)
		goto err_del;

	/*
	 * Publish: from here on flax_model_get() finds the model.  Storing
	 * over the reserved entry allocates nothing and cannot fail.
	 */
	kobject_get(&model->kobj);
	xa_store(&flax_models, model->id, model, GFP_KERNEL);
	flax_nmodels++;
	kobject_uevent(&model->kobj, KOBJ_ADD);
	mutex_unlock(&flax_registry_lock);
	return 0;

err_del:
	kobject_del(&model->kobj);
err_erase:
	xa_erase(&flax_models, model->id);
out_unlock:
	mutex_unlock(&flax_registry_lock);
	return ret;
}

/*
 * Takes the model out of the registry and sysfs and fails its jobs.  The
 * caller then drops the registry's reference.
 */
static void flax_model_unpublish(struct flax_model *model)
{
	lockdep_assert_held(&flax_registry_lock);

	xa_erase(&flax_models, model->id);
	flax_nmodels--;
	/* Fail the jobs first: clients on its node then return at once. */
	flax_model_kill(model);
	/* Under the lock: the name may be reused as soon as it is dropped. */
	flax_node_del(model);
	kobject_del(&model->kobj);
}

/*
 * Destroys model @id if it exists (and is @expect, unless that is NULL):
 * unpublishes it, fails its jobs and drops the registry's reference.  The
 * memory goes with the last reference.
 */
static int flax_model_destroy(u32 id, struct flax_model *expect)
{
	struct flax_model *model;

	mutex_lock(&flax_registry_lock);
	model = xa_load(&flax_models, id);
	if (!model || (expect && model != expect)) {
		mutex_unlock(&flax_registry_lock);
		return -ENOENT;
	}
	flax_model_unpublish(model);
	mutex_unlock(&flax_registry_lock);

	pr_debug("model %u \"%s\" destroyed\n", model->id, model->desc.name);
	flax_model_put(model);
	return 0;
}

/**
 * flax_model_get() - look a model up by id.
 * @id: the model's id.
 *
 * Return: the model with a reference the caller drops with
 * flax_model_put(), or NULL if no model has that id.
 */
struct flax_model *flax_model_get(u32 id)
{
	struct flax_model *model;

	/*
	 * The registry's reference lives until the model is erased, under
	 * the same xa_lock, so one found here is safe to get.
	 */
	xa_lock(&flax_models);
	model = xa_load(&flax_models, id);
	if (model)
		kobject_get(&model->kobj);
	xa_unlock(&flax_models);
	return model;
}

/**
 * flax_model_may_admin() - may the current task change @model?
 * @model: the model.
 *
 * Its owner (the creator's fsuid) and CAP_SYS_ADMIN may attach workers,
 * destroy it and set its labels and vocabulary; its sysfs files are the
 * owner's (flax_model_get_ownership()).
 *
 * Return: true if the task may.
 */
bool flax_model_may_admin(const struct flax_model *model)
{
	return uid_eq(current_fsuid(), model->uid) || capable(CAP_SYS_ADMIN);
}

/* Documented in flaxdev_kapi.h. */
struct flax_model *flax_model_get_by_name(const char *name)
{
	struct flax_model *model;
	size_t len;

	might_sleep();
	if (!name)
		return ERR_PTR(-EINVAL);
	len = strnlen(name, FLAX_NAME_MAX);
	if (!len || len == FLAX_NAME_MAX)
		return ERR_PTR(-EINVAL);

	mutex_lock(&flax_registry_lock);
	model = flax_model_find(name);
	if (model && model->privileged)
		kobject_get(&model->kobj);
	else if (model)
		model = ERR_PTR(-EPERM);
	mutex_unlock(&flax_registry_lock);
	return model ?: ERR_PTR(-ENOENT);
}
EXPORT_SYMBOL_GPL(flax_model_get_by_name);

/* Documented in flaxdev_kapi.h. */
size_t flax_model_input_size(const struct flax_model *model)
{
	return model->in_user_bytes;
}
EXPORT_SYMBOL_GPL(flax_model_input_size);

/* Documented in flaxdev_kapi.h. */
size_t flax_model_result_size(const struct flax_model *model)
{
	size_t size;

	/* The current k's: sysfs may have changed it since creation. */
	rcu_read_lock();
	size = rcu_dereference(model->cfg)->result_size;
	rcu_read_unlock();
	return size;
}
EXPORT_SYMBOL_GPL(flax_model_result_size);

/* Documented in flaxdev_kapi.h. */
void flax_model_put(struct flax_model *model)
{
	if (IS_ERR_OR_NULL(model))
		return;
	kobject_put(&model->kobj);
}
EXPORT_SYMBOL_GPL(flax_model_put);

/**
 * flax_models_count() - number of models in the registry.
 *
 * Return: the number of models that exist now.
 */
unsigned int flax_models_count(void)
{
	unsigned int n;

	mutex_lock(&flax_registry_lock);
	n = flax_nmodels;
	mutex_unlock(&flax_registry_lock);
	return n;
}

/**
 * flax_ioctl_model_create() - FLAX_IOC_MODEL_CREATE.
 * @file: the caller's fd.
 * @argp: user struct flax_model_desc.
 * @usize: its size.
 *
 * The caller becomes the model's owner (flax_model_may_admin()).
 *
 * Return: 0, -EINVAL for a bad description, -EEXIST for a name in use,
 * -ENOSPC when max_models exist, -EDQUOT when the caller, without
 * CAP_SYS_ADMIN, owns max_models_per_user, -EFAULT, -E2BIG or -ENOMEM.
 */
int flax_ioctl_model_create(struct file *file, void __user *argp,
			    unsigned int usize)
{
	struct flax_model_desc desc;
	struct flax_model *model;
	int ret;

	ret = copy_struct_from_user(&desc, sizeof(desc), argp, usize);
	if (ret)
		return ret;

	model = flax_model_new(&desc);
	if (IS_ERR(model))
		return PTR_ERR(model);

	ret = flax_model_publish(model);
	if (ret)
		goto out_put;

	desc.id = model->id;
	flax_model_desc_live(model, &desc);
	ret = flax_copy_struct_to_user(argp, usize, &desc, sizeof(desc));
	if (ret) {
		/* The caller cannot know the id: undo, unless already gone. */
		flax_model_destroy(model->id, model);
	} else {
		pr_debug("model %u \"%s\" created\n", model->id, desc.name);
	}
out_put:
	flax_model_put(model);
	return ret;
}

/* Copies the current means and standard deviations out. */
static int flax_model_copy_norm_out(struct flax_model *model, u64 mean, u64 std)
{
	u32 count = model->desc.norm_count;
	size_t bytes = count * sizeof(u32);
	const struct flax_cfg *cfg;
	u32 *copy;
	int ret = 0;

	/*
	 * A stable copy, taken under RCU: the user copy may fault and sleep,
	 * and no lock is held across it.
	 */
	copy = kvmalloc_array(2, bytes, GFP_KERNEL_ACCOUNT);
	if (!copy)
		return -ENOMEM;
	rcu_read_lock();
	cfg = rcu_dereference(model->cfg);
	memcpy(copy, cfg->norm.mean, bytes);
	memcpy(copy + count, cfg->norm.std, bytes);
	rcu_read_unlock();
	if (mean && copy_to_user(u64_to_user_ptr(mean), copy, bytes))
		ret = -EFAULT;
	if (std && copy_to_user(u64_to_user_ptr(std), copy + count, bytes))
		ret = -EFAULT;
	kvfree(copy);
	return ret;
}

/**
 * flax_ioctl_model_get() - FLAX_IOC_MODEL_GET.
 * @file: the caller's fd: on a model's node, an empty name is its model.
 * @argp: user struct flax_model_desc, the name filled in.
 * @usize: its size.
 *
 * Return: 0, -ENOENT for an unknown name, -EINVAL, -EFAULT or -E2BIG.
 */
int flax_ioctl_model_get(struct file *file, void __user *argp,
			 unsigned int usize)
{
	struct flax_model_desc desc;
	struct flax_model *model;
	u64 mean, std;
	int ret;

	ret = copy_struct_from_user(&desc, sizeof(desc), argp, usize);
	if (ret)
		return ret;
	if (desc.flags || desc.__pad0 || desc.reserved2 ||
	    memchr_inv(desc.reserved, 0, sizeof(desc.reserved)))
		return -EINVAL;
	if (!desc.name[0] && flax_file_bound(file)) {
		if (memchr_inv(desc.name, 0, sizeof(desc.name)))
			return -EINVAL;
		model = flax_file_model(file, 0, false);
		if (IS_ERR(model))
			return PTR_ERR(model);
	} else {
		if (flax_check_name(desc.name))
			return -EINVAL;
		mutex_lock(&flax_registry_lock);
		model = flax_model_find(desc.name);
		if (model)
			kobject_get(&model->kobj);
		mutex_unlock(&flax_registry_lock);
		if (!model)
			return -ENOENT;
	}

	mean = desc.norm_mean;
	std = desc.norm_std;
	desc = model->desc;
	desc.norm_mean = mean;
	desc.norm_std = std;
	flax_model_desc_live(model, &desc);

	if (desc.pre_op == FLAX_PRE_NORMALIZE && (mean || std)) {
		ret = flax_model_copy_norm_out(model, mean, std);
		if (ret)
			goto out_put;
	}
	ret = flax_copy_struct_to_user(argp, usize, &desc, sizeof(desc));
out_put:
	flax_model_put(model);
	return ret;
}

/**
 * flax_ioctl_model_destroy() - FLAX_IOC_MODEL_DESTROY.
 * @file: the caller's fd.
 * @argp: user struct flax_model_ref.
 * @usize: its size.
 *
 * Queued jobs and jobs held by workers fail with -ENODEV, waiting
 * clients and workers are woken.  The model's memory is freed when its
 * last worker is gone.
 *
 * Return: 0, -ENOENT for an unknown id, -EPERM unless the caller owns
 * the model or has CAP_SYS_ADMIN, -EINVAL, -EFAULT or -E2BIG.
 */
int flax_ioctl_model_destroy(struct file *file, void __user *argp,
			     unsigned int usize)
{
	struct flax_model_ref ref;
	struct flax_model *model;
	int ret;

	ret = copy_struct_from_user(&ref, sizeof(ref), argp, usize);
	if (ret)
		return ret;
	if (ref.flags)
		return -EINVAL;

	model = flax_file_model(file, ref.model_id, false);
	if (IS_ERR(model))
		return PTR_ERR(model);
	ret = -EPERM;
	if (flax_model_may_admin(model))
		ret = flax_model_destroy(model->id, model);
	flax_model_put(model);
	return ret;
}

static void flax_labels_free_rcu(struct rcu_head *head)
{
	struct flax_labelset *labels =
		container_of(head, struct flax_labelset, rcu);

	kvfree(labels->off);
	kvfree(labels);
}

/**
 * flax_labels_put() - drop a reference to a label set.
 * @labels: the set, or NULL.
 *
 * The set is freed after an RCU grace period once the last is gone.
 */
void flax_labels_put(struct flax_labelset *labels)
{
	if (labels && refcount_dec_and_test(&labels->ref))
		call_rcu(&labels->rcu, flax_labels_free_rcu);
}

/**
 * flax_labels_get() - the model's labels, to use outside RCU.
 * @model: the model.
 *
 * Return: the current label set with a reference, to be dropped with
 * flax_labels_put(), or NULL if the model has none.
 */
struct flax_labelset *flax_labels_get(struct flax_model *model)
{
	struct flax_labelset *labels;

	rcu_read_lock();
	labels = rcu_dereference(model->labels);
	if (labels && !refcount_inc_not_zero(&labels->ref))
		labels = NULL;
	rcu_read_unlock();
	return labels;
}

/*
 * Checks @text (@size bytes, one label per line, the last newline
 * optional) and builds a label set from it.  Logs the first bad line.
 */
static struct flax_labelset *flax_labels_parse(struct flax_model *model,
					       const char *text, size_t size)
{
	u32 max = min_t(u32, FLAX_LABELS_MAX, model->post.vec_elems);
	struct flax_labelset *labels;
	size_t bytes = size, pos, end;
	u32 count = 0, i;
	const char *why;
	int ret;

	if (size && text[size - 1] != '\n')
		bytes++;
	labels = kvzalloc(struct_size(labels, text, bytes), GFP_KERNEL_ACCOUNT);
	if (!labels)
		return ERR_PTR(-ENOMEM);
	memcpy(labels->text, text, size);
	labels->text[bytes - 1] = '\n';
	labels->bytes = bytes;

	for (pos = 0; pos < bytes; pos = end + 1) {
		end = pos;
		while (labels->text[end] != '\n')
			end++;
		ret = -EINVAL;
		if (end == pos || end - pos > FLAX_LABEL_MAX)
			goto err_line;
		for (i = pos; i < end; i++) {
			u8 c = labels->text[i];

			/* UTF-8 bytes pass; ASCII controls (tab too) do not. */
			if (c < 0x20 || c == 0x7f)
				goto err_line;
		}
		ret = -E2BIG;
		if (count == max)
			goto err_line;
		count++;
	}

	labels->off =
		kvmalloc_array(count + 1, sizeof(u32), GFP_KERNEL_ACCOUNT);
	if (!labels->off) {
		kvfree(labels);
		return ERR_PTR(-ENOMEM);
	}
	labels->count = count;
	for (pos = 0, i = 0; pos < bytes; pos++) {
		if (!pos || labels->text[pos - 1] == '\n')
			labels->off[i++] = pos;
	}
	labels->off[count] = bytes;
	refcount_set(&labels->ref, 1);
	return labels;

err_line:
	if (ret == -E2BIG)
		why = "more labels than output elements or 65536";
	else if (end == pos)
		why = "empty";
	else if (end - pos > FLAX_LABEL_MAX)
		why = "longer than 127 bytes";
	else
		why = "control character";
	/* The lines before this one were good: @count of them. */
	pr_info_ratelimited("model %s: labels: line %u rejected: %s\n",
			    model->desc.name, count + 1, why);
	kvfree(labels);
	return ERR_PTR(ret);
}

/**
 * flax_labels_set() - replace a model's labels.
 * @model: the model.
 * @text: the labels, one per line (the last newline optional).
 * @size: bytes at @text; 0 removes the labels.
 * @count: out: the number of labels.
 *
 * Context: process context; takes the model's @cfg_lock.
 *
 * Return: 0, -EINVAL for a bad line (logged), -E2BIG for too many labels
 * or bytes, -ENOMEM.  On error the labels are unchanged.
 */
int flax_labels_set(struct flax_model *model, const char *text, size_t size,
		    u32 *count)
{
	struct flax_labelset *labels = NULL, *old;

	if (size > FLAX_LABELS_BYTES_MAX)
		return -E2BIG;
	if (size) {
		labels = flax_labels_parse(model, text, size);
		if (IS_ERR(labels))
			return PTR_ERR(labels);
	}
	*count = labels ? labels->count : 0;

	mutex_lock(&model->cfg_lock);
	old = rcu_replace_pointer(model->labels, labels,
				  lockdep_is_held(&model->cfg_lock));
	mutex_unlock(&model->cfg_lock);
	flax_labels_put(old);
	return 0;
}

/* Looks up the model of a struct flax_labels and checks the struct. */
static struct flax_model *flax_labels_model(struct file *file,
					    struct flax_labels *req,
					    void __user *argp,
					    unsigned int usize, int *ret)
{
	struct flax_model *model;

	*ret = copy_struct_from_user(req, sizeof(*req), argp, usize);
	if (*ret)
		return NULL;
	*ret = -EINVAL;
	if (req->flags || memchr_inv(req->reserved, 0, sizeof(req->reserved)))
		return NULL;
	model = flax_file_model(file, req->model_id, false);
	if (IS_ERR(model)) {
		*ret = PTR_ERR(model);
		return NULL;
	}
	*ret = 0;
	return model;
}

/**
 * flax_ioctl_labels_set() - FLAX_IOC_LABELS_SET.
 * @file: the caller's fd.
 * @argp: user struct flax_labels.
 * @usize: its size.
 *
 * Return: 0, -ENOENT for an unknown model, -EPERM unless the caller owns
 * the model or has CAP_SYS_ADMIN, -EINVAL for a bad line or struct,
 * -E2BIG for too many labels or bytes, -EFAULT or -ENOMEM.
 */
int flax_ioctl_labels_set(struct file *file, void __user *argp,
			  unsigned int usize)
{
	struct flax_model *model;
	struct flax_labels req;
	char *text = NULL;
	int ret;

	model = flax_labels_model(file, &req, argp, usize, &ret);
	if (!model)
		return ret;
	ret = -EPERM;
	if (!flax_model_may_admin(model))
		goto out_put;
	ret = -E2BIG;
	if (req.size > FLAX_LABELS_BYTES_MAX)
		goto out_put;
	if (req.size) {
		text = vmemdup_user(u64_to_user_ptr(req.data), req.size);
		if (IS_ERR(text)) {
			ret = PTR_ERR(text);
			text = NULL;
			goto out_put;
		}
	}
	ret = flax_labels_set(model, text, req.size, &req.count);
	if (!ret)
		ret = flax_copy_struct_to_user(argp, usize, &req, sizeof(req));
out_put:
	kvfree(text);
	flax_model_put(model);
	return ret;
}

/**
 * flax_ioctl_labels_get() - FLAX_IOC_LABELS_GET.
 * @file: the caller's fd.
 * @argp: user struct flax_labels.
 * @usize: its size.
 *
 * Return: 0, -ENOSPC (with the size needed) for a short buffer, -ENOENT
 * for an unknown model, -EINVAL, -EFAULT or -E2BIG.
 */
int flax_ioctl_labels_get(struct file *file, void __user *argp,
			  unsigned int usize)
{
	struct flax_labelset *labels;
	struct flax_model *model;
	struct flax_labels req;
	u32 avail;
	int ret;

	model = flax_labels_model(file, &req, argp, usize, &ret);
	if (!model)
		return ret;
	labels = flax_labels_get(model);
	avail = req.size;
	req.size = labels ? labels->bytes : 0;
	req.count = labels ? labels->count : 0;
	ret = 0;
	if (req.size > avail)
		ret = -ENOSPC;
	else if (req.size && copy_to_user(u64_to_user_ptr(req.data),
					  labels->text, req.size))
		ret = -EFAULT;
	if (ret != -EFAULT)
		ret = flax_copy_struct_to_user(argp, usize, &req, sizeof(req)) ?:
			      ret;
	flax_labels_put(labels);
	flax_model_put(model);
	return ret;
}

/**
 * flax_ioctl_vocab_set() - FLAX_IOC_VOCAB_SET.
 * @file: the caller's fd.
 * @argp: user struct flax_vocab_set.
 * @usize: its size.
 *
 * Return: 0, -ENOENT for an unknown model, -EPERM unless the caller owns
 * the model or has CAP_SYS_ADMIN, -EINVAL for a model that does
 * not tokenise or a bad vocabulary (bad_line says where; logged),
 * -E2BIG for too large a one, -EBUSY if the model has one, -EFAULT or
 * -ENOMEM.
 */
int flax_ioctl_vocab_set(struct file *file, void __user *argp,
			 unsigned int usize)
{
	struct flax_vocab_set req;
	struct flax_vocab *vocab;
	struct flax_model *model;
	char *text;
	int ret;

	ret = copy_struct_from_user(&req, sizeof(req), argp, usize);
	if (ret)
		return ret;
	if (req.flags || req.reserved)
		return -EINVAL;
	if (req.size > FLAX_VOCAB_MAX_BYTES)
		return -E2BIG;
	model = flax_file_model(file, req.model_id, false);
	if (IS_ERR(model))
		return PTR_ERR(model);
	ret = -EPERM;
	if (!flax_model_may_admin(model))
		goto out_put;
	ret = -EINVAL;
	if (!flax_model_tokenizes(model))
		goto out_put;
	ret = -EBUSY;
	if (READ_ONCE(model->vocab))
		goto out_put;

	text = vmemdup_user(u64_to_user_ptr(req.data), req.size);
	if (IS_ERR(text)) {
		ret = PTR_ERR(text);
		goto out_put;
	}
	ret = flax_vocab_parse(text, req.size, &vocab, &req.bad_line);
	kvfree(text);
	if (ret) {
		pr_info_ratelimited("model %s: vocabulary: error %d, line %u\n",
				    model->desc.name, ret, req.bad_line);
		if (ret == -EINVAL || ret == -E2BIG)
			flax_copy_struct_to_user(argp, usize, &req,
						 sizeof(req));
		goto out_put;
	}
	req.count = flax_vocab_size(vocab);

	mutex_lock(&model->cfg_lock);
	if (model->vocab) {
		ret = -EBUSY;
	} else {
		/* Pairs with smp_load_acquire() in the job path. */
		smp_store_release(&model->vocab, vocab);
		vocab = NULL;
	}
	mutex_unlock(&model->cfg_lock);
	flax_vocab_free(vocab);
	if (!ret)
		ret = flax_copy_struct_to_user(argp, usize, &req, sizeof(req));
out_put:
	flax_model_put(model);
	return ret;
}

/**
 * flax_stats_reset() - zero a model's statistics.
 * @model: the model.
 */
void flax_stats_reset(struct flax_model *model)
{
	struct flax_stats *st = &model->stats;
	unsigned int i;

	atomic64_set(&st->requests, 0);
	atomic64_set(&st->completed, 0);
	atomic64_set(&st->errors, 0);
	atomic64_set(&st->timeouts, 0);
	atomic64_set(&st->batches, 0);
	atomic64_set(&st->batched, 0);
	atomic64_set(&st->queue_ns, 0);
	atomic64_set(&st->compute_ns, 0);
	atomic64_set(&st->pre_ns, 0);
	atomic64_set(&st->post_ns, 0);
	atomic64_set(&st->total_ns, 0);
	for (i = 0; i < FLAX_HIST_BATCH; i++)
		atomic64_set(&st->batch_hist[i], 0);
	for (i = 0; i < FLAX_HIST_LATENCY; i++)
		atomic64_set(&st->latency_hist[i], 0);
}

/**
 * flax_models_init() - create the "models" sysfs directory.
 * @parent: the misc device's kobject.
 *
 * Models can be created from then on.
 *
 * Return: 0 or -ENOMEM.
 */
int flax_models_init(struct kobject *parent)
{
	struct kobject *kobj;

	kobj = kobject_create_and_add("models", parent);
	if (!kobj)
		return -ENOMEM;

	mutex_lock(&flax_registry_lock);
	flax_models_kobj = kobj;
	mutex_unlock(&flax_registry_lock);
	return 0;
}

/**
 * flax_models_exit() - destroy every model and the "models" directory.
 *
 * Called at module exit, when no fd is open: the registry holds the last
 * reference to each model.
 */
void flax_models_exit(void)
{
	struct flax_model *model;
	struct kobject *kobj;
	unsigned long id;

	mutex_lock(&flax_registry_lock);
	xa_for_each(&flax_models, id, model) {
		flax_model_unpublish(model);
		flax_model_put(model);
	}
	kobj = flax_models_kobj;
	flax_models_kobj = NULL;
	mutex_unlock(&flax_registry_lock);

	kobject_put(kobj);
	WARN_ON(!xa_empty(&flax_models));
	xa_destroy(&flax_models);
	/* No fd is open, so nothing but the registry held a model. */
	WARN(atomic_read(&flax_models_alive), "%d models leaked\n",
	     atomic_read(&flax_models_alive));
}
