// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev: Flax models served through a character device.
 *
 * /dev/flax/control is a misc device, /dev/flax/<model> one character
 * device per model (flax_node.c).  A worker creates a model on the
 * control node, opens the model's node, attaches to it, maps its slot
 * region and loops on FLAX_IOC_FETCH; clients open the model's node and
 * run the model with FLAX_IOC_INFER.  The ABI is driver/uapi/flaxdev.h,
 * the design docs/design.md.  A minimal worker:
 *
 *	ctl = open("/dev/flax/control", O_RDWR);
 *	ioctl(ctl, FLAX_IOC_MODEL_CREATE, &desc);
 *	fd = open("/dev/flax/digits", O_RDWR);
 *	ioctl(fd, FLAX_IOC_WORKER_ATTACH, &att);	// model_id 0: this one
 *	region = mmap(NULL, att.layout.region_size, PROT_READ | PROT_WRITE,
 *		      MAP_SHARED, fd, 0);
 *	for (;;) {
 *		ioctl(fd, FLAX_IOC_FETCH, &fetch);	// completes, then fetches
 *		// ring entries fetch.first .. fetch.first + fetch.count - 1
 *	}
 *
 * This file holds the module parameters, the control node and the ioctl
 * dispatch; flax_node.c the model nodes, flax_model.c the models,
 * flax_job.c the job path.
 *
 * Copyright (C) 2026 The flaxdev developers
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/build_bug.h>
#include <linux/fs.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sizes.h>
#include <linux/uaccess.h>

#include "flax_drv.h"
#include "flax_job.h"
#include "flax_model.h"
#include "flax_ops.h"
#include "uapi/flaxdev.h"

/* Hard limits on the module parameters (and FLAX_MAX_MODELS_LIMIT). */
#define FLAX_MAX_SLOTS_LIMIT 4096
#define FLAX_MAX_SLOT_BYTES_MIN 64
#define FLAX_MAX_SLOT_BYTES_LIMIT SZ_64M
#define FLAX_MAX_RETRIES_LIMIT 16
#define FLAX_MAX_TIMEOUT_MS_LIMIT 3600000 /* an hour */
#define FLAX_MAX_PENDING_LIMIT 65536

unsigned int flax_max_models = 16;
module_param_named(max_models, flax_max_models, uint, 0444);
MODULE_PARM_DESC(max_models,
		 "Most models that can exist at once (1-1024, default 16)");

unsigned int flax_max_models_per_user = 4;
module_param_named(max_models_per_user, flax_max_models_per_user, uint, 0444);
MODULE_PARM_DESC(
	max_models_per_user,
	"Most models one user without CAP_SYS_ADMIN may own at once (1-1024, default 4; max_models bounds all)");

unsigned int flax_max_region_mb;
module_param_named(max_region_mb, flax_max_region_mb, uint, 0444);
MODULE_PARM_DESC(
	max_region_mb,
	"Most MiB the slot regions of all models may take, destroyed ones still mapped included (default: half of RAM)");

unsigned int flax_max_slots = 256;
module_param_named(max_slots, flax_max_slots, uint, 0444);
MODULE_PARM_DESC(max_slots, "Most job slots per model (1-4096, default 256)");

unsigned int flax_max_slot_bytes = SZ_4M;
module_param_named(max_slot_bytes, flax_max_slot_bytes, uint, 0444);
MODULE_PARM_DESC(max_slot_bytes,
		 "Largest input or output slot in bytes (64-64M, default 4M)");

unsigned int flax_timeout_ms = 5000;
module_param_named(timeout_ms, flax_timeout_ms, uint, 0444);
MODULE_PARM_DESC(
	timeout_ms,
	"Request timeout of a model created without one, in ms (default 5000)");

unsigned int flax_max_timeout_ms = 600000;
module_param_named(max_timeout_ms, flax_max_timeout_ms, uint, 0444);
MODULE_PARM_DESC(
	max_timeout_ms,
	"Longest request timeout a model may have, in ms (timeout_ms-3600000, default 600000)");

unsigned int flax_max_pending = 1024;
module_param_named(max_pending, flax_max_pending, uint, 0444);
MODULE_PARM_DESC(
	max_pending,
	"Most asynchronous requests one open file may have submitted and not reaped (1-65536, default 1024)");

unsigned int flax_nslots = 64;
module_param_named(nslots, flax_nslots, uint, 0444);
MODULE_PARM_DESC(
	nslots,
	"Slots of a model created without a count (1-max_slots, default 64)");

unsigned int flax_max_retries = 1;
module_param_named(max_retries, flax_max_retries, uint, 0444);
MODULE_PARM_DESC(
	max_retries,
	"Requeues of a job whose worker went away before it fails with EIO (0-16, default 1)");

int flax_norm_table = -1;
module_param_named(norm_table, flax_norm_table, int, 0444);
MODULE_PARM_DESC(
	norm_table,
	"Normalise uint8 input with at most 16 mean/std pairs through a table: -1 times it against the vector loop at load and keeps the faster (default), 0 never, 1 always; reads back the choice");

/**
 * flax_copy_struct_to_user() - copy an extensible struct out to user space.
 * @dst: user destination.
 * @usize: size of the user's struct (from the ioctl number).
 * @src: kernel source.
 * @ksize: size of the kernel's struct.
 *
 * The counterpart of copy_struct_from_user(): copies min(@usize, @ksize)
 * bytes and clears the rest of a larger user struct, so an older caller
 * gets the fields it knows and a newer one zeroes for the fields this
 * module does not know.
 *
 * Return: 0 or -EFAULT.
 */
int flax_copy_struct_to_user(void __user *dst, size_t usize, const void *src,
			     size_t ksize)
{
	size_t size = min(usize, ksize);

	if (copy_to_user(dst, src, size))
		return -EFAULT;
	if (usize > ksize && clear_user(dst + size, usize - size))
		return -EFAULT;
	return 0;
}

static int flax_ioctl_info(struct file *file, void __user *argp,
			   unsigned int usize)
{
	struct flax_info info = {
		.abi_version = FLAX_ABI_VERSION,
		.nmodels = flax_models_count(),
		.max_models = flax_max_models,
		.max_slots = flax_max_slots,
		.max_slot_bytes = flax_max_slot_bytes,
		.max_workers = FLAX_MAX_WORKERS,
		.topk_max = FLAX_TOPK_MAX,
		.name_max = FLAX_NAME_MAX,
		.features = FLAX_F_ALL,
	};

	return flax_copy_struct_to_user(argp, usize, &info, sizeof(info));
}

/**
 * struct flax_ioctl_desc - one ioctl.
 * @cmd: the command as published (its size is the current struct size).
 * @size_ver0: smallest struct size accepted.
 * @write: changes a model or the set of models: the fd must be open for
 *	writing (-EBADF otherwise).  Who may change which model, the
 *	handler checks (flax_model_may_admin()).
 * @control: only on the control node (-ENOTTY on a model's node).
 * @fn: the handler; gets the struct size the caller encoded in its
 *	command, at least @size_ver0.
 */
struct flax_ioctl_desc {
	unsigned int cmd;
	unsigned int size_ver0;
	bool write;
	bool control;
	int (*fn)(struct file *file, void __user *argp, unsigned int usize);
};

static const struct flax_ioctl_desc flax_ioctls[] = {
	{ FLAX_IOC_INFO, FLAX_INFO_SIZE_VER0, false, false, flax_ioctl_info },
	{ FLAX_IOC_MODEL_CREATE, FLAX_MODEL_DESC_SIZE_VER0, true, true,
	  flax_ioctl_model_create },
	{ FLAX_IOC_MODEL_GET, FLAX_MODEL_DESC_SIZE_VER0, false, false,
	  flax_ioctl_model_get },
	{ FLAX_IOC_MODEL_DESTROY, FLAX_MODEL_REF_SIZE_VER0, true, false,
	  flax_ioctl_model_destroy },
	{ FLAX_IOC_LABELS_SET, FLAX_LABELS_SIZE_VER0, true, false,
	  flax_ioctl_labels_set },
	{ FLAX_IOC_LABELS_GET, FLAX_LABELS_SIZE_VER0, false, false,
	  flax_ioctl_labels_get },
	{ FLAX_IOC_VOCAB_SET, FLAX_VOCAB_SET_SIZE_VER0, true, false,
	  flax_ioctl_vocab_set },
	{ FLAX_IOC_WORKER_ATTACH, FLAX_WORKER_ATTACH_SIZE_VER0, true, false,
	  flax_ioctl_worker_attach },
	/* A worker's fd was open for writing when it attached. */
	{ FLAX_IOC_FETCH, FLAX_FETCH_SIZE_VER0, false, false,
	  flax_ioctl_fetch },
	{ FLAX_IOC_COMPLETE, FLAX_COMPLETE_SIZE_VER0, false, false,
	  flax_ioctl_complete },
	/* On a model's node these need FMODE_WRITE (flax_file_model()). */
	{ FLAX_IOC_INFER, FLAX_INFER_SIZE_VER0, false, false,
	  flax_ioctl_infer },
	{ FLAX_IOC_SUBMIT, FLAX_SUBMIT_SIZE_VER0, false, false,
	  flax_ioctl_submit },
	{ FLAX_IOC_REAP, FLAX_REAP_SIZE_VER0, false, false, flax_ioctl_reap },
};

/**
 * flax_ioctl() - the ioctls of the control node and of model nodes.
 * @file: the fd.
 * @cmd: the request.
 * @arg: its argument, a user pointer.
 *
 * Dispatch on the command's number: its size field is the caller's struct
 * size, which may differ from ours in either direction.
 *
 * Return: the handler's result, or -ENOTTY, -EINVAL, -EBADF.
 */
long flax_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	unsigned int usize = _IOC_SIZE(cmd);
	const struct flax_ioctl_desc *desc;
	size_t i;

	if (_IOC_TYPE(cmd) != FLAX_IOC_MAGIC)
		return -ENOTTY;
	for (i = 0; i < ARRAY_SIZE(flax_ioctls); i++) {
		desc = &flax_ioctls[i];
		if (_IOC_NR(cmd) != _IOC_NR(desc->cmd))
			continue;
		if (_IOC_DIR(cmd) != _IOC_DIR(desc->cmd))
			return -ENOTTY;
		if (usize < desc->size_ver0)
			return -EINVAL;
		if (desc->control && flax_file_bound(file))
			return -ENOTTY;
		if (desc->write && !(file->f_mode & FMODE_WRITE))
			return -EBADF;
		return desc->fn(file, (void __user *)arg, usize);
	}
	return -ENOTTY;
}

static int flax_open(struct inode *inode, struct file *file)
{
	int ret;

	/*
	 * misc_open() left the miscdevice in private_data; it becomes the
	 * fd's own state (its worker, its asynchronous requests).
	 */
	ret = flax_file_open(file, NULL);
	if (ret)
		return ret;
	return nonseekable_open(inode, file);
}

/**
 * flax_release() - release an open node, the control node or a model's.
 * @inode: its inode.
 * @file: the file being released.
 *
 * Return: 0.
 */
int flax_release(struct inode *inode, struct file *file)
{
	flax_file_release(file);
	return 0;
}

static const struct file_operations flax_fops = {
	.owner = THIS_MODULE,
	.open = flax_open,
	.release = flax_release,
	.unlocked_ioctl = flax_ioctl,
	.poll = flax_file_poll,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = flax_worker_mmap,
};

/*
 * /dev/flax/control, beside the model nodes (flax_node.c), as
 * /dev/mapper/control is beside device-mapper's devices.  Not
 * world-accessible: kbuild/99-flaxdev.rules gives it to the group "flax"
 * (README, Installing).
 */
static struct miscdevice flax_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = FLAX_DEVICE_NAME,
	.nodename = "flax/control",
	.fops = &flax_fops,
	.mode = 0660,
};

static int __init flax_check_params(void)
{
	if (!flax_max_models || flax_max_models > FLAX_MAX_MODELS_LIMIT) {
		pr_err("max_models must be 1 to %u\n", FLAX_MAX_MODELS_LIMIT);
		return -EINVAL;
	}
	if (!flax_max_models_per_user ||
	    flax_max_models_per_user > FLAX_MAX_MODELS_LIMIT) {
		pr_err("max_models_per_user must be 1 to %u\n",
		       FLAX_MAX_MODELS_LIMIT);
		return -EINVAL;
	}
	if (!flax_max_region_mb)
		flax_max_region_mb = totalram_pages() >> (20 - PAGE_SHIFT) >> 1;
	if (!flax_max_slots || flax_max_slots > FLAX_MAX_SLOTS_LIMIT) {
		pr_err("max_slots must be 1 to %u\n", FLAX_MAX_SLOTS_LIMIT);
		return -EINVAL;
	}
	if (flax_max_slot_bytes < FLAX_MAX_SLOT_BYTES_MIN ||
	    flax_max_slot_bytes > FLAX_MAX_SLOT_BYTES_LIMIT) {
		pr_err("max_slot_bytes must be %u to %u\n",
		       FLAX_MAX_SLOT_BYTES_MIN, FLAX_MAX_SLOT_BYTES_LIMIT);
		return -EINVAL;
	}
	if (!flax_timeout_ms) {
		pr_err("timeout_ms must not be 0\n");
		return -EINVAL;
	}
	if (flax_max_timeout_ms < flax_timeout_ms ||
	    flax_max_timeout_ms > FLAX_MAX_TIMEOUT_MS_LIMIT) {
		pr_err("max_timeout_ms must be timeout_ms (%u) to %u\n",
		       flax_timeout_ms, FLAX_MAX_TIMEOUT_MS_LIMIT);
		return -EINVAL;
	}
	if (!flax_max_pending || flax_max_pending > FLAX_MAX_PENDING_LIMIT) {
		pr_err("max_pending must be 1 to %u\n", FLAX_MAX_PENDING_LIMIT);
		return -EINVAL;
	}
	if (!flax_nslots || flax_nslots > flax_max_slots) {
		pr_err("nslots must be 1 to max_slots (%u)\n", flax_max_slots);
		return -EINVAL;
	}
	if (flax_max_retries > FLAX_MAX_RETRIES_LIMIT) {
		pr_err("max_retries must be 0 to %u\n", FLAX_MAX_RETRIES_LIMIT);
		return -EINVAL;
	}
	if (flax_norm_table < -1 || flax_norm_table > 1) {
		pr_err("norm_table must be -1, 0 or 1\n");
		return -EINVAL;
	}
	return 0;
}

static int __init flax_init(void)
{
	int ret;

	/* The ABI: every struct is as long as its latest published version. */
	BUILD_BUG_ON(sizeof(struct flax_info) != FLAX_INFO_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct flax_model_desc) !=
		     FLAX_MODEL_DESC_SIZE_VER2);
	BUILD_BUG_ON(sizeof(struct flax_labels) != FLAX_LABELS_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct flax_vocab_set) != FLAX_VOCAB_SET_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct flax_submit) != FLAX_SUBMIT_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct flax_reap) != FLAX_REAP_SIZE_VER1);
	BUILD_BUG_ON(sizeof(struct flax_submit_entry) !=
		     FLAX_SUBMIT_ENTRY_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct flax_reap_entry) !=
		     FLAX_REAP_ENTRY_SIZE_VER1);
	BUILD_BUG_ON(sizeof(struct flax_model_ref) != FLAX_MODEL_REF_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct flax_worker_attach) !=
		     FLAX_WORKER_ATTACH_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct flax_fetch) != FLAX_FETCH_SIZE_VER1);
	BUILD_BUG_ON(sizeof(struct flax_complete) != FLAX_COMPLETE_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct flax_infer) != FLAX_INFER_SIZE_VER1);
	BUILD_BUG_ON(sizeof(struct flax_completion) != 16);
	BUILD_BUG_ON(sizeof(struct flax_ring) != 16);
	BUILD_BUG_ON(sizeof(struct flax_ring_entry) != 8);
	BUILD_BUG_ON(sizeof(struct flax_topk_result) != 8);
	BUILD_BUG_ON(sizeof(struct flax_topk_entry) != 8);
	BUILD_BUG_ON(!is_power_of_2(FLAX_REGION_ALIGN));

	ret = flax_check_params();
	if (ret)
		return ret;
	pr_debug("normalisation: %s\n",
		 flax_ops_init() == FLAX_NORM_PATH_AVX2 ? "AVX2" : "SSE2");
	if (flax_norm_table < 0)
		flax_norm_table = flax_norm_table_faster();

	ret = flax_nodes_init();
	if (ret) {
		pr_err("cannot register the model nodes: %d\n", ret);
		return ret;
	}
	ret = misc_register(&flax_misc);
	if (ret) {
		pr_err("cannot register %s: %d\n", FLAX_CONTROL_NODE, ret);
		goto err_nodes;
	}

	ret = flax_models_init(&flax_misc.this_device->kobj);
	if (ret)
		goto err_deregister;

	return 0;

err_deregister:
	misc_deregister(&flax_misc);
err_nodes:
	flax_nodes_exit();
	return ret;
}
module_init(flax_init);

static void __exit flax_exit(void)
{
	/* No fd is open (.owner), so only the registry holds models. */
	flax_models_exit();
	misc_deregister(&flax_misc);
	flax_nodes_exit();
	/* Labels are freed by call_rcu() callbacks in this module's text. */
	rcu_barrier();
}
module_exit(flax_exit);

MODULE_DESCRIPTION("Flax models served through a character device");
MODULE_AUTHOR("The flaxdev developers");
MODULE_LICENSE("GPL");
MODULE_VERSION("0.1");
