// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev sysfs: /sys/class/misc/flax/models/<name>/, one value per file
 * (Documentation/filesystems/sysfs.rst), world-readable, writable by the
 * model's owner.
 *
 *  - the model's specs and chain, read-only;
 *  - its live settings, writable: a write is checked as a whole and
 *    either replaces the setting or fails with -EINVAL, the old value
 *    kept (flax_cfg_commit());
 *  - statistics; writing 0 to any of them zeroes them all.
 *
 * The shell path is the model's node (flax_node.c): sysfs keeps one value
 * per file, not one per reader.  docs/ABI/sysfs-flaxdev lists every file.
 *
 * Copyright (C) 2026 The flaxdev developers
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/kobject.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "flax_job.h"
#include "flax_model.h"
#include "flax_post.h"
#include "flax_text.h"
#include "flax_tok.h"

/* Digits that print any binary32 so that it reads back the same. */
#define FLAX_EXACT_PREC 9

static struct flax_model *flax_kobj_model(struct kobject *kobj)
{
	return container_of(kobj, struct flax_model, kobj);
}

#define FLAX_RO(_name)                                   \
	static struct kobj_attribute flax_attr_##_name = \
		__ATTR(_name, 0444, flax_##_name##_show, NULL)

#define FLAX_RW(_name)                                   \
	static struct kobj_attribute flax_attr_##_name = \
		__ATTR(_name, 0644, flax_##_name##_show, flax_##_name##_store)

/* Specs and chain, read-only. */

static const char *const flax_dtype_names[] = {
	[FLAX_DTYPE_UINT8] = "uint8",	  [FLAX_DTYPE_FLOAT32] = "float32",
	[FLAX_DTYPE_INT8] = "int8",	  [FLAX_DTYPE_UINT16] = "uint16",
	[FLAX_DTYPE_INT16] = "int16",	  [FLAX_DTYPE_INT32] = "int32",
	[FLAX_DTYPE_FLOAT16] = "float16",
};

static const char *const flax_post_names[] = {
	[FLAX_POST_SOFTMAX] = "softmax",
	[FLAX_POST_TOPK] = "topk",
	[FLAX_POST_LOG_SOFTMAX] = "log_softmax",
	[FLAX_POST_ARGMAX] = "argmax",
	[FLAX_POST_SIGMOID] = "sigmoid",
	[FLAX_POST_THRESHOLD] = "threshold",
	[FLAX_POST_MEAN_POOL] = "mean_pool",
	[FLAX_POST_L2_NORMALIZE] = "l2_normalize",
};

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
	/* Checked at creation: a known dtype. */
	u32 dtype = flax_kobj_model(kobj)->desc.input.dtype;

	return sysfs_emit(buf, "%s\n", flax_dtype_names[dtype]);
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
			  pre_op == FLAX_PRE_NORMALIZE ? "normalize" :
			  pre_op == FLAX_PRE_TOKENIZE  ? "tokenize" :
							 "none");
}

static ssize_t flax_post_ops_show(struct kobject *kobj,
				  struct kobj_attribute *attr, char *buf)
{
	const u8 *ops = flax_kobj_model(kobj)->desc.post_ops;
	int len = 0;
	int i;

	/* Checked at creation: known steps. */
	for (i = 0; i < FLAX_POST_CHAIN_MAX && ops[i] != FLAX_POST_END; i++)
		len += sysfs_emit_at(buf, len, "%s%s", i ? " " : "",
				     flax_post_names[ops[i]]);
	len += sysfs_emit_at(buf, len, "%s\n", i ? "" : "none");
	return len;
}

static ssize_t flax_text_max_show(struct kobject *kobj,
				  struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", flax_kobj_model(kobj)->desc.text_max);
}

static ssize_t flax_vocab_size_show(struct kobject *kobj,
				    struct kobj_attribute *attr, char *buf)
{
	struct flax_model *model = flax_kobj_model(kobj);
	const struct flax_vocab *vocab;

	/* Pairs with the release in flax_ioctl_vocab_set(). */
	vocab = smp_load_acquire(&model->vocab);

	return sysfs_emit(buf, "%u\n", vocab ? flax_vocab_size(vocab) : 0);
}

static ssize_t flax_nslots_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", flax_kobj_model(kobj)->desc.nslots);
}

/* Live settings. */

/**
 * struct flax_field_attr - a sysfs file showing one field of a struct.
 * @attr: the attribute.
 * @offset: the field's offset in struct flax_cfg (a u32) or struct
 *	flax_stats (an atomic64_t).
 */
struct flax_field_attr {
	struct kobj_attribute attr;
	size_t offset;
};

#define FLAX_FIELD(_name, _mode, _show, _store, _struct)             \
	static struct flax_field_attr flax_attr_##_name = {          \
		.attr = { .attr = { .name = #_name, .mode = _mode }, \
			  .show = _show,                             \
			  .store = _store },                         \
		.offset = offsetof(_struct, _name),                  \
	}

static size_t flax_field_offset(struct kobj_attribute *attr)
{
	return container_of(attr, struct flax_field_attr, attr)->offset;
}

/* The current value of one u32 field of the configuration. */
static ssize_t flax_cfg_show(struct kobject *kobj, struct kobj_attribute *attr,
			     char *buf)
{
	struct flax_model *model = flax_kobj_model(kobj);
	const struct flax_cfg *cfg;
	u32 v;

	rcu_read_lock();
	cfg = rcu_dereference(model->cfg);
	v = *(const u32 *)((const void *)cfg + flax_field_offset(attr));
	rcu_read_unlock();
	return sysfs_emit(buf, "%u\n", v);
}

/* Replaces one u32 field of the configuration, if the result is valid. */
static ssize_t flax_cfg_store(struct kobject *kobj, struct kobj_attribute *attr,
			      const char *buf, size_t count)
{
	struct flax_model *model = flax_kobj_model(kobj);
	struct flax_cfg *cfg;
	int ret;
	u32 v;

	ret = kstrtou32(buf, 0, &v);
	if (ret)
		return ret;
	mutex_lock(&model->cfg_lock);
	cfg = flax_cfg_dup(model);
	if (cfg) {
		*(u32 *)((void *)cfg + flax_field_offset(attr)) = v;
		ret = flax_cfg_commit(model, cfg);
	} else {
		ret = -ENOMEM;
	}
	mutex_unlock(&model->cfg_lock);
	return ret ?: count;
}

#define FLAX_CFG_RW(_name) \
	FLAX_FIELD(_name, 0644, flax_cfg_show, flax_cfg_store, struct flax_cfg)
#define FLAX_CFG_RO(_name) \
	FLAX_FIELD(_name, 0444, flax_cfg_show, NULL, struct flax_cfg)

FLAX_CFG_RW(topk);
FLAX_CFG_RW(timeout_ms);
FLAX_CFG_RW(max_batch);
FLAX_CFG_RW(max_queue_delay_us);
FLAX_CFG_RW(max_queue);
FLAX_CFG_RO(result_size);
FLAX_CFG_RO(text_size);

/*
 * Prints @n binary32 values so that they read back exactly, or fails with
 * -EFBIG when they do not fit the one page a sysfs file shows (a long
 * normalisation array: FLAX_IOC_MODEL_GET returns every value).  Never
 * a cut list.
 */
static ssize_t flax_emit_f32s(char *buf, const u32 *vals, u32 n)
{
	int len = flax_fmt_f32_list(buf, PAGE_SIZE, vals, n, FLAX_EXACT_PREC);

	if (len < 0 || len >= PAGE_SIZE)
		return -EFBIG;
	return len;
}

static ssize_t flax_threshold_show(struct kobject *kobj,
				   struct kobj_attribute *attr, char *buf)
{
	struct flax_model *model = flax_kobj_model(kobj);
	u32 v;

	rcu_read_lock();
	v = rcu_dereference(model->cfg)->threshold;
	rcu_read_unlock();
	return flax_emit_f32s(buf, &v, 1);
}

static ssize_t flax_threshold_store(struct kobject *kobj,
				    struct kobj_attribute *attr,
				    const char *buf, size_t count)
{
	struct flax_model *model = flax_kobj_model(kobj);
	struct flax_cfg *cfg;
	int ret;
	u32 v;

	ret = flax_parse_numbers(buf, count, FLAX_DTYPE_FLOAT32, &v, 1);
	if (ret)
		return -EINVAL;
	mutex_lock(&model->cfg_lock);
	cfg = flax_cfg_dup(model);
	if (cfg) {
		cfg->threshold = v;
		ret = flax_cfg_commit(model, cfg);
	} else {
		ret = -ENOMEM;
	}
	mutex_unlock(&model->cfg_lock);
	return ret ?: count;
}

FLAX_RW(threshold);

/* The means (@std false) or standard deviations of normalisation. */
static ssize_t flax_norm_show(struct kobject *kobj, char *buf, bool std)
{
	struct flax_model *model = flax_kobj_model(kobj);
	const struct flax_cfg *cfg;
	ssize_t len;

	rcu_read_lock();
	cfg = rcu_dereference(model->cfg);
	len = flax_emit_f32s(buf, std ? cfg->norm.std : cfg->norm.mean,
			     cfg->norm.count);
	rcu_read_unlock();
	return len;
}

static ssize_t flax_norm_store(struct kobject *kobj, const char *buf,
			       size_t count, bool std)
{
	struct flax_model *model = flax_kobj_model(kobj);
	struct flax_cfg *cfg;
	u32 n = model->desc.norm_count;
	int ret;

	if (model->desc.pre_op != FLAX_PRE_NORMALIZE)
		return -EINVAL;
	mutex_lock(&model->cfg_lock);
	cfg = flax_cfg_dup(model);
	ret = -ENOMEM;
	if (!cfg)
		goto out_unlock;
	ret = flax_parse_numbers(buf, count, FLAX_DTYPE_FLOAT32,
				 std ? cfg->data + n : cfg->data, n);
	if (ret) {
		kvfree(cfg);
		ret = -EINVAL;
		goto out_unlock;
	}
	ret = flax_cfg_commit(model, cfg);
out_unlock:
	mutex_unlock(&model->cfg_lock);
	return ret ?: count;
}

static ssize_t flax_norm_mean_show(struct kobject *kobj,
				   struct kobj_attribute *attr, char *buf)
{
	return flax_norm_show(kobj, buf, false);
}

static ssize_t flax_norm_mean_store(struct kobject *kobj,
				    struct kobj_attribute *attr,
				    const char *buf, size_t count)
{
	return flax_norm_store(kobj, buf, count, false);
}

static ssize_t flax_norm_std_show(struct kobject *kobj,
				  struct kobj_attribute *attr, char *buf)
{
	return flax_norm_show(kobj, buf, true);
}

static ssize_t flax_norm_std_store(struct kobject *kobj,
				   struct kobj_attribute *attr, const char *buf,
				   size_t count)
{
	return flax_norm_store(kobj, buf, count, true);
}

FLAX_RW(norm_mean);
FLAX_RW(norm_std);

/*
 * Quiesce: "drain" stops new requests (-EAGAIN) while those under way
 * finish, for a live upgrade of the workers; "run" takes them again.
 * Reads "running", "draining", or "drained" once nothing is under way.
 */
static ssize_t flax_state_show(struct kobject *kobj,
			       struct kobj_attribute *attr, char *buf)
{
	struct flax_model *model = flax_kobj_model(kobj);
	bool draining, idle;

	spin_lock(&model->lock);
	draining = model->draining;
	idle = !model->nbusy;
	spin_unlock(&model->lock);
	return sysfs_emit(buf, "%s\n",
			  !draining ? "running" :
			  idle	    ? "drained" :
				      "draining");
}

static ssize_t flax_state_store(struct kobject *kobj,
				struct kobj_attribute *attr, const char *buf,
				size_t count)
{
	struct flax_model *model = flax_kobj_model(kobj);
	bool drain;

	if (sysfs_streq(buf, "drain"))
		drain = true;
	else if (sysfs_streq(buf, "run"))
		drain = false;
	else
		return -EINVAL;
	spin_lock(&model->lock);
	model->draining = drain;
	spin_unlock(&model->lock);
	/* Clients waiting for a slot see the change. */
	wake_up_all(&model->slot_wait);
	return count;
}

FLAX_RW(state);

/* Queue state, read-only snapshots of counters kept under the lock. */

static ssize_t flax_queued_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n",
			  READ_ONCE(flax_kobj_model(kobj)->nqueued));
}

static ssize_t flax_in_flight_show(struct kobject *kobj,
				   struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(flax_kobj_model(kobj)->nheld));
}

static ssize_t flax_workers_show(struct kobject *kobj,
				 struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n",
			  READ_ONCE(flax_kobj_model(kobj)->nworkers));
}

/* Statistics: writing 0 to any of them zeroes the model's statistics. */

static ssize_t flax_stats_store(struct kobject *kobj,
				struct kobj_attribute *attr, const char *buf,
				size_t count)
{
	u64 v;
	int ret;

	ret = kstrtou64(buf, 0, &v);
	if (ret)
		return ret;
	if (v)
		return -EINVAL;
	flax_stats_reset(flax_kobj_model(kobj));
	return count;
}

static ssize_t flax_stat_show(struct kobject *kobj, struct kobj_attribute *attr,
			      char *buf)
{
	struct flax_model *model = flax_kobj_model(kobj);
	atomic64_t *v = (void *)&model->stats + flax_field_offset(attr);

	return sysfs_emit(buf, "%llu\n", (u64)atomic64_read(v));
}

#define FLAX_STAT(_name)                                          \
	FLAX_FIELD(_name, 0644, flax_stat_show, flax_stats_store, \
		   struct flax_stats)

FLAX_STAT(requests);
FLAX_STAT(completed);
FLAX_STAT(errors);
FLAX_STAT(timeouts);
FLAX_STAT(batches);
FLAX_STAT(batched);
FLAX_STAT(queue_ns);
FLAX_STAT(compute_ns);
FLAX_STAT(pre_ns);
FLAX_STAT(post_ns);
FLAX_STAT(total_ns);

static ssize_t flax_emit_hist(char *buf, atomic64_t *hist, unsigned int n)
{
	int len = 0;
	unsigned int i;

	for (i = 0; i < n; i++)
		len += sysfs_emit_at(buf, len, "%s%llu", i ? " " : "",
				     (u64)atomic64_read(&hist[i]));
	len += sysfs_emit_at(buf, len, "\n");
	return len;
}

static ssize_t flax_batch_hist_show(struct kobject *kobj,
				    struct kobj_attribute *attr, char *buf)
{
	return flax_emit_hist(buf, flax_kobj_model(kobj)->stats.batch_hist,
			      FLAX_HIST_BATCH);
}

static ssize_t flax_latency_hist_show(struct kobject *kobj,
				      struct kobj_attribute *attr, char *buf)
{
	return flax_emit_hist(buf, flax_kobj_model(kobj)->stats.latency_hist,
			      FLAX_HIST_LATENCY);
}

static struct kobj_attribute flax_attr_batch_hist =
	__ATTR(batch_hist, 0644, flax_batch_hist_show, flax_stats_store);
static struct kobj_attribute flax_attr_latency_hist =
	__ATTR(latency_hist, 0644, flax_latency_hist_show, flax_stats_store);

/*
 * Labels: read as one per line; written in one write(2) of less than a
 * page (larger sets go through FLAX_IOC_LABELS_SET).  sysfs hands a
 * larger write over a page at a time, so a write of a whole page or one
 * at an offset is refused rather than taken for the complete set.
 */
static ssize_t flax_labels_read(struct file *filp, struct kobject *kobj,
				struct bin_attribute *attr, char *buf,
				loff_t off, size_t count)
{
	struct flax_labelset *labels;
	ssize_t ret = 0;

	labels = flax_labels_get(flax_kobj_model(kobj));
	if (labels && off < labels->bytes) {
		ret = min_t(size_t, count, labels->bytes - off);
		memcpy(buf, labels->text + off, ret);
	}
	flax_labels_put(labels);
	return ret;
}

static ssize_t flax_labels_write(struct file *filp, struct kobject *kobj,
				 struct bin_attribute *attr, char *buf,
				 loff_t off, size_t count)
{
	u32 n;
	int ret;

	if (off || count >= PAGE_SIZE)
		return -E2BIG;
	ret = flax_labels_set(flax_kobj_model(kobj), buf, count, &n);
	return ret ?: count;
}

static BIN_ATTR(labels, 0644, flax_labels_read, flax_labels_write, 0);

FLAX_RO(id);
FLAX_RO(input_shape);
FLAX_RO(input_dtype);
FLAX_RO(output_shape);
FLAX_RO(pre_op);
FLAX_RO(post_ops);
FLAX_RO(nslots);
FLAX_RO(text_max);
FLAX_RO(vocab_size);
FLAX_RO(queued);
FLAX_RO(in_flight);
FLAX_RO(workers);

static struct attribute *flax_model_attrs[] = {
	/* clang-format off */
	&flax_attr_id.attr,
	&flax_attr_input_shape.attr,
	&flax_attr_input_dtype.attr,
	&flax_attr_output_shape.attr,
	&flax_attr_pre_op.attr,
	&flax_attr_post_ops.attr,
	&flax_attr_nslots.attr,
	&flax_attr_text_max.attr,
	&flax_attr_vocab_size.attr,
	&flax_attr_result_size.attr.attr,
	&flax_attr_text_size.attr.attr,
	&flax_attr_topk.attr.attr,
	&flax_attr_threshold.attr,
	&flax_attr_timeout_ms.attr.attr,
	&flax_attr_max_batch.attr.attr,
	&flax_attr_max_queue_delay_us.attr.attr,
	&flax_attr_max_queue.attr.attr,
	&flax_attr_norm_mean.attr,
	&flax_attr_norm_std.attr,
	&flax_attr_state.attr,
	&flax_attr_queued.attr,
	&flax_attr_in_flight.attr,
	&flax_attr_workers.attr,
	&flax_attr_requests.attr.attr,
	&flax_attr_completed.attr.attr,
	&flax_attr_errors.attr.attr,
	&flax_attr_timeouts.attr.attr,
	&flax_attr_batches.attr.attr,
	&flax_attr_batched.attr.attr,
	&flax_attr_queue_ns.attr.attr,
	&flax_attr_compute_ns.attr.attr,
	&flax_attr_pre_ns.attr.attr,
	&flax_attr_post_ns.attr.attr,
	&flax_attr_total_ns.attr.attr,
	&flax_attr_batch_hist.attr,
	&flax_attr_latency_hist.attr,
	NULL
	/* clang-format on */
};

static struct bin_attribute *flax_model_bin_attrs[] = {
	&bin_attr_labels,
	NULL,
};

static const struct attribute_group flax_model_group = {
	.attrs = flax_model_attrs,
	.bin_attrs = flax_model_bin_attrs,
};

const struct attribute_group *flax_model_groups[] = {
	&flax_model_group,
	NULL,
};
