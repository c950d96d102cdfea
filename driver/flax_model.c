// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev models: validation of a description, the registry (ids and
 * names), the slot region and the sysfs directory of each model.
 *
 * Copyright (C) 2026 The flaxdev developers
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/align.h>
#include <linux/err.h>
#include <linux/kobject.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/xarray.h>

#include "flax_drv.h"
#include "flax_job.h"
#include "flax_model.h"

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

static u32 flax_dtype_size(u32 dtype)
{
	switch (dtype) {
	case FLAX_DTYPE_UINT8:
		return 1;
	case FLAX_DTYPE_FLOAT32:
		return 4;
	default:
		return 0;
	}
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
	/* The name is a sysfs directory. */
	if (!strcmp(name, ".") || !strcmp(name, ".."))
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

/* Checks the post chain and k; the chain is one of [], [SOFTMAX],
 * [TOPK] and [SOFTMAX, TOPK], END-padded.
 */
static int flax_check_post(const struct flax_model_desc *desc, u32 out_elems)
{
	const u8 *ops = desc->post_ops;
	unsigned int n = 0;
	bool topk = false;

	if (ops[n] == FLAX_POST_SOFTMAX)
		n++;
	if (ops[n] == FLAX_POST_TOPK) {
		topk = true;
		n++;
	}
	if (memchr_inv(ops + n, FLAX_POST_END, FLAX_POST_CHAIN_MAX - n))
		return -EINVAL;

	if (!topk)
		return desc->topk ? -EINVAL : 0;
	if (desc->topk < 1 || desc->topk > min_t(u32, FLAX_TOPK_MAX, out_elems))
		return -EINVAL;
	return 0;
}

static int flax_check_norm(const struct flax_model_desc *desc, u32 in_elems)
{
	const struct flax_tensor_spec *in = &desc->input;

	if (desc->pre_op == FLAX_PRE_NONE) {
		bool norm = desc->norm_count || desc->norm_scale ||
			    desc->norm_mean || desc->norm_std;

		return norm ? -EINVAL : 0;
	}
	if (desc->pre_op != FLAX_PRE_NORMALIZE)
		return -EINVAL;
	if (desc->norm_count != 1 && desc->norm_count != in_elems &&
	    desc->norm_count != in->dims[in->ndim - 1])
		return -EINVAL;
	if (!flax_f32_finite(desc->norm_scale))
		return -EINVAL;
	if (!desc->norm_mean || !desc->norm_std)
		return -EINVAL;
	return 0;
}

/* Copies the means and standard deviations in and checks their values. */
static int flax_model_copy_norm(struct flax_model *model,
				const struct flax_model_desc *desc)
{
	u32 count = desc->norm_count;
	u32 *buf;
	u32 i;

	buf = kvmalloc_array(count, 2 * sizeof(u32), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	model->norm_buf = buf;

	if (copy_from_user(buf, u64_to_user_ptr(desc->norm_mean),
			   count * sizeof(u32)) ||
	    copy_from_user(buf + count, u64_to_user_ptr(desc->norm_std),
			   count * sizeof(u32)))
		return -EFAULT;
	for (i = 0; i < count; i++) {
		if (!flax_f32_finite(buf[i]) ||
		    !flax_f32_positive(buf[count + i]))
			return -EINVAL;
	}

	model->norm.count = count;
	model->norm.scale = desc->norm_scale;
	model->norm.mean = buf;
	model->norm.std = buf + count;
	return 0;
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

static void flax_model_release(struct kobject *kobj)
{
	struct flax_model *model = container_of(kobj, struct flax_model, kobj);

	vfree(model->region);
	kvfree(model->slots);
	kvfree(model->norm_buf);
	kfree(model);
	atomic_dec(&flax_models_alive);
}

/* sysfs: /sys/class/misc/flax/models/<name>/, one value per file. */

#define FLAX_MODEL_ATTR(_name)                           \
	static struct kobj_attribute flax_attr_##_name = \
		__ATTR(_name, 0444, flax_##_name##_show, NULL)

static struct flax_model *flax_kobj_model(struct kobject *kobj)
{
	return container_of(kobj, struct flax_model, kobj);
}

static ssize_t flax_emit_shape(char *buf, const struct flax_tensor_spec *spec)
{
	int len = 0;
	u32 i;

	for (i = 0; i < spec->ndim; i++)
		len += sysfs_emit_at(buf, len, "%s%u", i ? " " : "",
				     spec->dims[i]);
	len += sysfs_emit_at(buf, len, "\n");
	return len;
}

static const char *flax_dtype_name(u32 dtype)
{
	return dtype == FLAX_DTYPE_UINT8 ? "uint8" : "float32";
}

static ssize_t flax_id_show(struct kobject *kobj, struct kobj_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%u\n", flax_kobj_model(kobj)->id);
}

static ssize_t flax_input_shape_show(struct kobject *kobj,
				     struct kobj_attribute *attr, char *buf)
{
	return flax_emit_shape(buf, &flax_kobj_model(kobj)->desc.input);
}

static ssize_t flax_input_dtype_show(struct kobject *kobj,
				     struct kobj_attribute *attr, char *buf)
{
	u32 dtype = flax_kobj_model(kobj)->desc.input.dtype;

	return sysfs_emit(buf, "%s\n", flax_dtype_name(dtype));
}

static ssize_t flax_output_shape_show(struct kobject *kobj,
				      struct kobj_attribute *attr, char *buf)
{
	return flax_emit_shape(buf, &flax_kobj_model(kobj)->desc.output);
}

static ssize_t flax_pre_op_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	u32 pre_op = flax_kobj_model(kobj)->desc.pre_op;

	return sysfs_emit(buf, "%s\n",
			  pre_op == FLAX_PRE_NORMALIZE ? "normalize" : "none");
}

static ssize_t flax_post_ops_show(struct kobject *kobj,
				  struct kobj_attribute *attr, char *buf)
{
	const u8 *ops = flax_kobj_model(kobj)->desc.post_ops;
	int len = 0;
	int i;

	for (i = 0; i < FLAX_POST_CHAIN_MAX && ops[i] != FLAX_POST_END; i++)
		len += sysfs_emit_at(buf, len, "%s%s", i ? " " : "",
				     ops[i] == FLAX_POST_SOFTMAX ? "softmax" :
								   "topk");
	len += sysfs_emit_at(buf, len, "%s\n", i ? "" : "none");
	return len;
}

static ssize_t flax_topk_show(struct kobject *kobj, struct kobj_attribute *attr,
			      char *buf)
{
	return sysfs_emit(buf, "%u\n", flax_kobj_model(kobj)->desc.topk);
}

static ssize_t flax_nslots_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", flax_kobj_model(kobj)->desc.nslots);
}

static ssize_t flax_timeout_ms_show(struct kobject *kobj,
				    struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", flax_kobj_model(kobj)->desc.timeout_ms);
}

static ssize_t flax_emit_counter(char *buf, atomic64_t *counter)
{
	return sysfs_emit(buf, "%llu\n", (u64)atomic64_read(counter));
}

static ssize_t flax_requests_show(struct kobject *kobj,
				  struct kobj_attribute *attr, char *buf)
{
	return flax_emit_counter(buf, &flax_kobj_model(kobj)->requests);
}

static ssize_t flax_completed_show(struct kobject *kobj,
				   struct kobj_attribute *attr, char *buf)
{
	return flax_emit_counter(buf, &flax_kobj_model(kobj)->completed);
}

static ssize_t flax_errors_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	return flax_emit_counter(buf, &flax_kobj_model(kobj)->errors);
}

static ssize_t flax_timeouts_show(struct kobject *kobj,
				  struct kobj_attribute *attr, char *buf)
{
	return flax_emit_counter(buf, &flax_kobj_model(kobj)->timeouts);
}

/* Written under the model's lock; a sysfs reader takes a snapshot. */
static ssize_t flax_queued_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n",
			  READ_ONCE(flax_kobj_model(kobj)->nqueued));
}

static ssize_t flax_workers_show(struct kobject *kobj,
				 struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n",
			  READ_ONCE(flax_kobj_model(kobj)->nworkers));
}

FLAX_MODEL_ATTR(id);
FLAX_MODEL_ATTR(input_shape);
FLAX_MODEL_ATTR(input_dtype);
FLAX_MODEL_ATTR(output_shape);
FLAX_MODEL_ATTR(pre_op);
FLAX_MODEL_ATTR(post_ops);
FLAX_MODEL_ATTR(topk);
FLAX_MODEL_ATTR(nslots);
FLAX_MODEL_ATTR(timeout_ms);
FLAX_MODEL_ATTR(requests);
FLAX_MODEL_ATTR(completed);
FLAX_MODEL_ATTR(errors);
FLAX_MODEL_ATTR(timeouts);
FLAX_MODEL_ATTR(queued);
FLAX_MODEL_ATTR(workers);

static struct attribute *flax_model_attrs[] = {
	/* clang-format off */
	&flax_attr_id.attr,
	&flax_attr_input_shape.attr,
	&flax_attr_input_dtype.attr,
	&flax_attr_output_shape.attr,
	&flax_attr_pre_op.attr,
	&flax_attr_post_ops.attr,
	&flax_attr_topk.attr,
	&flax_attr_nslots.attr,
	&flax_attr_timeout_ms.attr,
	&flax_attr_requests.attr,
	&flax_attr_completed.attr,
	&flax_attr_errors.attr,
	&flax_attr_timeouts.attr,
	&flax_attr_queued.attr,
	&flax_attr_workers.attr,
	NULL
	/* clang-format on */
};

static const struct attribute_group flax_model_group = {
	.attrs = flax_model_attrs,
};

static const struct attribute_group *flax_model_groups[] = {
	&flax_model_group,
	NULL,
};

static const struct kobj_type flax_model_ktype = {
	.release = flax_model_release,
	.sysfs_ops = &kobj_sysfs_ops,
	.default_groups = flax_model_groups,
};

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
	u32 i;
	int ret;

	if (desc->flags || desc->__pad0 ||
	    memchr_inv(desc->reserved, 0, sizeof(desc->reserved)))
		return ERR_PTR(-EINVAL);
	if (flax_check_name(desc->name))
		return ERR_PTR(-EINVAL);
	if (flax_check_spec(&desc->input, &in_elems) ||
	    flax_check_spec(&desc->output, &out_elems))
		return ERR_PTR(-EINVAL);
	if (desc->output.dtype != FLAX_DTYPE_FLOAT32)
		return ERR_PTR(-EINVAL);
	if (flax_check_norm(desc, in_elems) || flax_check_post(desc, out_elems))
		return ERR_PTR(-EINVAL);
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

	model = kzalloc(sizeof(*model), GFP_KERNEL);
	if (!model)
		return ERR_PTR(-ENOMEM);
	atomic_inc(&flax_models_alive);
	/* From here on, kobject_put() frees whatever was allocated. */
	kobject_init(&model->kobj, &flax_model_ktype);
	spin_lock_init(&model->lock);
	INIT_LIST_HEAD(&model->free);
	INIT_LIST_HEAD(&model->queue);
	init_waitqueue_head(&model->slot_wait);
	init_waitqueue_head(&model->job_wait);
	atomic64_set(&model->requests, 0);
	atomic64_set(&model->completed, 0);
	atomic64_set(&model->errors, 0);
	atomic64_set(&model->timeouts, 0);

	model->desc = *desc;
	model->desc.id = 0;
	model->desc.norm_mean = 0;
	model->desc.norm_std = 0;
	model->desc.nslots = nslots;
	model->desc.timeout_ms = desc->timeout_ms ?: flax_timeout_ms;
	if (desc->topk)
		model->desc.result_size = struct_size(
			(struct flax_topk_result *)NULL, entries, desc->topk);
	else
		model->desc.result_size = out_bytes;
	model->in_elems = in_elems;
	model->out_elems = out_elems;
	model->in_user_bytes = in_user_bytes;

	if (desc->pre_op == FLAX_PRE_NORMALIZE) {
		ret = flax_model_copy_norm(model, desc);
		if (ret)
			goto err_put;
	}

	ret = flax_model_layout(model, nslots, in_bytes, out_bytes);
	if (ret)
		goto err_put;

	ret = -ENOMEM;
	model->region = vmalloc_user(model->layout.region_size);
	if (!model->region)
		goto err_put;
	memcpy(model->region, &model->layout, sizeof(model->layout));

	model->slots = kvcalloc(nslots, sizeof(*model->slots), GFP_KERNEL);
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

err_erase:
	xa_erase(&flax_models, model->id);
out_unlock:
	mutex_unlock(&flax_registry_lock);
	return ret;
}

/*
 * Takes the model out of the registry and sysfs.  The caller then fails
 * its jobs and drops the registry's reference.
 */
static void flax_model_unpublish(struct flax_model *model)
{
	lockdep_assert_held(&flax_registry_lock);

	xa_erase(&flax_models, model->id);
	flax_nmodels--;
	/* Under the lock: the name may be reused as soon as it is dropped. */
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
	flax_model_kill(model);
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
	if (model)
		kobject_get(&model->kobj);
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
	return model->desc.result_size;
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
 * @argp: user struct flax_model_desc.
 * @usize: its size.
 *
 * Return: 0, -EINVAL for a bad description, -EEXIST for a name in use,
 * -ENOSPC when max_models exist, -EFAULT, -E2BIG or -ENOMEM.
 */
int flax_ioctl_model_create(void __user *argp, unsigned int usize)
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
	desc.result_size = model->desc.result_size;
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

/**
 * flax_ioctl_model_get() - FLAX_IOC_MODEL_GET.
 * @argp: user struct flax_model_desc, the name filled in.
 * @usize: its size.
 *
 * Return: 0, -ENOENT for an unknown name, -EINVAL, -EFAULT or -E2BIG.
 */
int flax_ioctl_model_get(void __user *argp, unsigned int usize)
{
	struct flax_model_desc desc;
	struct flax_model *model;
	u64 mean, std;
	int ret;

	ret = copy_struct_from_user(&desc, sizeof(desc), argp, usize);
	if (ret)
		return ret;
	if (desc.flags || desc.__pad0 ||
	    memchr_inv(desc.reserved, 0, sizeof(desc.reserved)))
		return -EINVAL;
	if (flax_check_name(desc.name))
		return -EINVAL;

	mutex_lock(&flax_registry_lock);
	model = flax_model_find(desc.name);
	if (model)
		kobject_get(&model->kobj);
	mutex_unlock(&flax_registry_lock);
	if (!model)
		return -ENOENT;

	mean = desc.norm_mean;
	std = desc.norm_std;
	desc = model->desc;
	desc.norm_mean = mean;
	desc.norm_std = std;

	ret = -EFAULT;
	if (model->norm_buf) {
		size_t bytes = model->norm.count * sizeof(u32);

		if (mean && copy_to_user(u64_to_user_ptr(mean),
					 model->norm.mean, bytes))
			goto out_put;
		if (std &&
		    copy_to_user(u64_to_user_ptr(std), model->norm.std, bytes))
			goto out_put;
	}
	ret = flax_copy_struct_to_user(argp, usize, &desc, sizeof(desc));
out_put:
	flax_model_put(model);
	return ret;
}

/**
 * flax_ioctl_model_destroy() - FLAX_IOC_MODEL_DESTROY.
 * @argp: user struct flax_model_ref.
 * @usize: its size.
 *
 * Queued jobs and jobs held by workers fail with -ENODEV, waiting
 * clients and workers are woken.  The model's memory is freed when its
 * last worker is gone.
 *
 * Return: 0, -ENOENT for an unknown id, -EINVAL, -EFAULT or -E2BIG.
 */
int flax_ioctl_model_destroy(void __user *argp, unsigned int usize)
{
	struct flax_model_ref ref;
	int ret;

	ret = copy_struct_from_user(&ref, sizeof(ref), argp, usize);
	if (ret)
		return ret;
	if (ref.flags)
		return -EINVAL;

	return flax_model_destroy(ref.model_id, NULL);
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
		flax_model_kill(model);
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
