// SPDX-License-Identifier: GPL-2.0
/*
 * flax_iolat: a sample user of flaxdev's in-kernel API (flaxdev_kapi.h), in
 * the spirit of LinnOS: an I/O-latency predictor that asks a flaxdev model
 * whether an I/O is likely to be slow.
 *
 * The model (module parameter "model", default "iolat") takes four uint8
 * features and answers with a top-k result; the sample reports the top
 * class and its binary32 score as raw bits (no floating point here):
 *
 *	echo "q_depth size_kb f2 f3" > /sys/kernel/flax_iolat/predict
 *	cat /sys/kernel/flax_iolat/result	# "<class> 0x<score bits>"
 *
 * The write runs the inference in the writer's context (a signal
 * interrupts its wait) and fails with the inference's errno; "result" then
 * reads "error <errno>".  No lock is held across the inference: a reader
 * of "result" never waits for one.  The model is looked up for each
 * request (get, infer, put), so the sample keeps working when the model is
 * destroyed and created again, and holds no reference between requests;
 * the result buffer is sized for each request by flax_model_result_size(),
 * which follows a change of the model's k.
 *
 * Copyright (C) 2026 The flaxdev developers
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "flaxdev_kapi.h"
#include "uapi/flaxdev.h"

#define IOLAT_FEATURES 4
#define IOLAT_RESULT_MAX 64

static char *model_name = "iolat";
module_param_named(model, model_name, charp, 0444);
MODULE_PARM_DESC(model, "Name of the flaxdev model to ask (default iolat)");

static unsigned int timeout_ms;
module_param(timeout_ms, uint, 0644);
MODULE_PARM_DESC(timeout_ms,
		 "Request timeout in ms (0: the model's own, default 0)");

/*
 * The last outcome, as "result" shows it; under iolat_lock, which is held
 * only to write or read it.
 */
static DEFINE_MUTEX(iolat_lock);
static char iolat_result[IOLAT_RESULT_MAX] = "none\n";
static struct kobject *iolat_kobj;

/* One request: look the model up, run it, release it. */
static int iolat_predict(const u8 *features, u32 *class, u32 *score)
{
	struct flax_topk_result *res;
	struct flax_model *model;
	size_t size;
	int ret;

	model = flax_model_get_by_name(model_name);
	if (IS_ERR(model))
		return PTR_ERR(model);
	size = flax_model_result_size(model);
	/* A top-k result has its header; anything else is no classifier. */
	if (size < sizeof(*res)) {
		ret = -EPROTO;
		goto out_put;
	}
	res = kvmalloc(size, GFP_KERNEL);
	if (!res) {
		ret = -ENOMEM;
		goto out_put;
	}
	ret = flax_model_infer(model, features, IOLAT_FEATURES, res, size,
			       timeout_ms);
	if (ret < 0)
		goto out_free;
	/* A raw or softmax-only vector is no top-k result: not a classifier. */
	if (!res->count ||
	    (size_t)ret != struct_size(res, entries, res->count)) {
		ret = -EPROTO;
		goto out_free;
	}
	*class = res->entries[0].index;
	*score = res->entries[0].score;
	ret = 0;
out_free:
	kvfree(res);
out_put:
	flax_model_put(model);
	return ret;
}

static ssize_t predict_store(struct kobject *kobj, struct kobj_attribute *attr,
			     const char *buf, size_t count)
{
	u8 features[IOLAT_FEATURES];
	u32 class, score;
	int ret;

	if (sscanf(buf, "%hhu %hhu %hhu %hhu", &features[0], &features[1],
		   &features[2], &features[3]) != IOLAT_FEATURES)
		return -EINVAL;

	ret = iolat_predict(features, &class, &score);
	mutex_lock(&iolat_lock);
	if (ret)
		scnprintf(iolat_result, sizeof(iolat_result), "error %d\n",
			  ret);
	else
		scnprintf(iolat_result, sizeof(iolat_result), "%u 0x%08x\n",
			  class, score);
	mutex_unlock(&iolat_lock);
	return ret ?: count;
}

static ssize_t result_show(struct kobject *kobj, struct kobj_attribute *attr,
			   char *buf)
{
	ssize_t len;

	mutex_lock(&iolat_lock);
	len = sysfs_emit(buf, "%s", iolat_result);
	mutex_unlock(&iolat_lock);
	return len;
}

static struct kobj_attribute predict_attr = __ATTR_WO(predict);
static struct kobj_attribute result_attr = __ATTR_RO(result);

static struct attribute *iolat_attrs[] = {
	&predict_attr.attr,
	&result_attr.attr,
	NULL,
};

static const struct attribute_group iolat_group = {
	.attrs = iolat_attrs,
};

static int __init iolat_init(void)
{
	int ret;

	iolat_kobj = kobject_create_and_add("flax_iolat", kernel_kobj);
	if (!iolat_kobj)
		return -ENOMEM;
	ret = sysfs_create_group(iolat_kobj, &iolat_group);
	if (ret) {
		kobject_put(iolat_kobj);
		return ret;
	}
	return 0;
}

/* Removing the files waits for writers in flight: no reference is left. */
static void __exit iolat_exit(void)
{
	sysfs_remove_group(iolat_kobj, &iolat_group);
	kobject_put(iolat_kobj);
}

module_init(iolat_init);
module_exit(iolat_exit);

MODULE_DESCRIPTION("Sample I/O-latency predictor using flaxdev's in-kernel API");
MODULE_AUTHOR("The flaxdev developers");
MODULE_LICENSE("GPL");
