// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev model nodes: /dev/flax/<model>, one character device per model.
 *
 * A model's node appears when the model is created and goes when it is
 * destroyed.  Its owner, group and mode are the model's (given at
 * creation, by default the creator's and 0600): the driver hands them to
 * devtmpfs through the device type's devnode() callback, so they hold
 * without udev, and the uevent carries them (DEVUID, DEVGID, DEVMODE) for
 * a udev rule to apply.  Who may open the node is then the VFS's check;
 * what an open file may do, the ioctls check (flax_file_model()).
 *
 * An open node takes the ioctls of the control node, each naming the
 * node's model, and a shell path: write(2) one input as text (the numbers
 * of a tensor, blank-separated, or a tokenising model's UTF-8 text) runs
 * one inference and read(2) on the same open file returns its text
 * result.  Results are per open file: no one else's can be read.
 *
 *	exec 3<>/dev/flax/digits
 *	echo 0 0 5 13 ... 0 >&3		# one image, 64 numbers
 *	head -n 3 <&3			# "7 0.9931 seven" ...
 *
 * Copyright (C) 2026 The flaxdev developers
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/kdev_t.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "flax_drv.h"
#include "flax_job.h"
#include "flax_kcompat.h"
#include "flax_model.h"
#include "flax_text.h"

/*
 * Minors: the whole major, so that the nodes of destroyed models still
 * open never keep a new model from getting one; max_models is the limit.
 */
#define FLAX_NODE_MINORS (MINORMASK + 1)

/* Bytes of text one number of a shell-path input may take, blanks included. */
#define FLAX_SHELL_NUMBER_CHARS 64

/**
 * struct flax_node - the character device of one model.
 * @dev: /sys/class/flax/<model>, and the node's name and permissions.
 * @cdev: the character device; an open file pins it, and it pins @dev.
 * @model: the model; the node holds a reference until @dev is released.
 */
struct flax_node {
	struct device dev;
	struct cdev cdev;
	struct flax_model *model;
};

static dev_t flax_node_base;
static DEFINE_IDA(flax_node_minors);

static char *flax_node_devnode(flax_devnode_const struct device *dev,
			       umode_t *mode, kuid_t *uid, kgid_t *gid)
{
	const struct flax_node *node = container_of(dev, struct flax_node, dev);
	const struct flax_model *model = node->model;

	/* devtmpfs asks for the name alone when it removes the node. */
	if (mode)
		*mode = model->node_mode;
	if (uid)
		*uid = model->uid;
	if (gid)
		*gid = model->gid;
	return kasprintf(GFP_KERNEL, "flax/%s", model->desc.name);
}

static const struct device_type flax_node_type = {
	.name = "flax_model",
	.devnode = flax_node_devnode,
};

static struct class flax_node_class = {
	.name = "flax",
};

static void flax_node_release(struct device *dev)
{
	struct flax_node *node = container_of(dev, struct flax_node, dev);

	ida_free(&flax_node_minors, MINOR(dev->devt));
	flax_model_put(node->model);
	kfree(node);
}

static int flax_node_open(struct inode *inode, struct file *file)
{
	struct flax_node *node =
		container_of(inode->i_cdev, struct flax_node, cdev);
	int ret;

	ret = flax_file_open(file, node->model);
	if (ret)
		return ret;
	/* A stream: no position, concurrent reads and writes allowed. */
	return stream_open(inode, file);
}

/* The most bytes one write(2) of an input may take. */
static size_t flax_shell_max(const struct flax_model *model)
{
	/* A tokenising model's text may end with the newline echo adds. */
	if (flax_model_tokenizes(model))
		return model->in_user_bytes + 1;
	return (size_t)model->in_elems * FLAX_SHELL_NUMBER_CHARS;
}

/* Runs the model on the text input @buf; the text result goes to @text. */
static int flax_shell_infer(struct flax_model *model, const char *buf,
			    size_t count, char **text, size_t *len)
{
	void *in;
	int ret;

	if (flax_model_tokenizes(model)) {
		if (count && buf[count - 1] == '\n')
			count--;
		return flax_model_infer_text(model, buf, count, text, len);
	}

	in = kvmalloc(model->in_user_bytes, GFP_KERNEL_ACCOUNT);
	if (!in)
		return -ENOMEM;
	ret = flax_parse_numbers(buf, count, model->desc.input.dtype, in,
				 model->in_elems);
	/* -ERANGE too: write(2) has no better errno for it. */
	if (ret)
		ret = -EINVAL;
	else
		ret = flax_model_infer_text(model, in, model->in_user_bytes,
					    text, len);
	kvfree(in);
	return ret;
}

/* Makes @text (taken over, NULL for none) the file's result. */
static void flax_shell_store(struct flax_shell *shell, char *text, size_t len)
{
	char *old;

	mutex_lock(&shell->lock);
	old = shell->text;
	shell->text = text;
	shell->len = text ? len : 0;
	shell->pos = 0;
	shell->gen++;
	mutex_unlock(&shell->lock);
	kvfree(old);
}

/*
 * One write is one input, in full: a write that is not a valid input
 * fails and leaves the file without a result, so that a read never
 * returns a stale one.
 */
static ssize_t flax_node_write(struct file *file, const char __user *ubuf,
			       size_t count, loff_t *ppos)
{
	struct flax_model *model = flax_file_bound(file);
	char *buf, *text = NULL;
	size_t len = 0;
	int ret;

	/* Nothing to run: the file's result stays. */
	if (!count)
		return 0;
	if (count > flax_shell_max(model))
		return -EINVAL;
	buf = kvmalloc(count, GFP_KERNEL_ACCOUNT);
	if (!buf)
		return -ENOMEM;
	if (copy_from_user(buf, ubuf, count)) {
		kvfree(buf);
		return -EFAULT;
	}
	ret = flax_shell_infer(model, buf, count, &text, &len);
	kvfree(buf);
	flax_shell_store(flax_file_shell(file), ret ? NULL : text, len);
	if (ret)
		kvfree(text);
	return ret ?: count;
}

/*
 * Reads go through the file's last result from its start; 0 at its end.
 * Each read copies from one result: a write that stores a new one
 * meanwhile does not mix into it, and the next read starts the new one.
 */
static ssize_t flax_node_read(struct file *file, char __user *ubuf,
			      size_t count, loff_t *ppos)
{
	struct flax_shell *shell = flax_file_shell(file);
	size_t off, n;
	char *snap;
	u64 gen;

	mutex_lock(&shell->lock);
	if (!shell->text) {
		mutex_unlock(&shell->lock);
		return -ENODATA;
	}
	gen = shell->gen;
	off = shell->pos;
	n = min(count, shell->len - off);
	snap = n ? kvmalloc(n, GFP_KERNEL_ACCOUNT) : NULL;
	if (snap)
		memcpy(snap, shell->text + off, n);
	mutex_unlock(&shell->lock);
	if (!n)
		return 0;
	if (!snap)
		return -ENOMEM;

	if (copy_to_user(ubuf, snap, n)) {
		kvfree(snap);
		return -EFAULT;
	}
	kvfree(snap);
	mutex_lock(&shell->lock);
	if (shell->gen == gen && shell->pos == off)
		shell->pos = off + n;
	mutex_unlock(&shell->lock);
	return n;
}

static const struct file_operations flax_node_fops = {
	.owner = THIS_MODULE,
	.open = flax_node_open,
	.release = flax_release,
	.read = flax_node_read,
	.write = flax_node_write,
	.unlocked_ioctl = flax_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.poll = flax_file_poll,
	.mmap = flax_worker_mmap,
};

/**
 * flax_node_add() - create a model's node, /dev/flax/<name>.
 * @model: the model, named, owned and about to be published.
 *
 * The node takes a reference to the model until its last opener is gone.
 * Called under the registry lock.
 *
 * Return: 0, -ENOSPC (no minor left) or -ENOMEM.
 */
int flax_node_add(struct flax_model *model)
{
	struct flax_node *node;
	int minor, ret;

	node = kzalloc(sizeof(*node), GFP_KERNEL_ACCOUNT);
	if (!node)
		return -ENOMEM;
	minor = ida_alloc_max(&flax_node_minors, FLAX_NODE_MINORS - 1,
			      GFP_KERNEL);
	if (minor < 0) {
		kfree(node);
		return minor;
	}

	kobject_get(&model->kobj);
	node->model = model;
	device_initialize(&node->dev);
	node->dev.class = &flax_node_class;
	node->dev.type = &flax_node_type;
	node->dev.devt = MKDEV(MAJOR(flax_node_base), minor);
	node->dev.release = flax_node_release;
	cdev_init(&node->cdev, &flax_node_fops);
	node->cdev.owner = THIS_MODULE;
	/* From here on, put_device() frees the lot. */
	ret = dev_set_name(&node->dev, "%s", model->desc.name);
	if (ret)
		goto err_put;
	ret = cdev_device_add(&node->cdev, &node->dev);
	if (ret)
		goto err_put;
	model->node = node;
	return 0;

err_put:
	put_device(&node->dev);
	return ret;
}

/**
 * flax_node_del() - remove a model's node.
 * @model: the model, being destroyed.
 *
 * No new open finds the node; files open on it keep working (on a dead
 * model: -ENODEV) until closed.  Called under the registry lock.
 */
void flax_node_del(struct flax_model *model)
{
	struct flax_node *node = model->node;

	if (!node)
		return;
	model->node = NULL;
	cdev_device_del(&node->cdev, &node->dev);
	put_device(&node->dev);
}

/**
 * flax_nodes_init() - register the class and the minors of model nodes.
 *
 * Return: 0 or a negative errno.
 */
int flax_nodes_init(void)
{
	int ret;

	ret = alloc_chrdev_region(&flax_node_base, 0, FLAX_NODE_MINORS, "flax");
	if (ret)
		return ret;
	ret = class_register(&flax_node_class);
	if (ret)
		unregister_chrdev_region(flax_node_base, FLAX_NODE_MINORS);
	return ret;
}

/**
 * flax_nodes_exit() - undo flax_nodes_init(), every node gone.
 */
void flax_nodes_exit(void)
{
	class_unregister(&flax_node_class);
	unregister_chrdev_region(flax_node_base, FLAX_NODE_MINORS);
	ida_destroy(&flax_node_minors);
}
