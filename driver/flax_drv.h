/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev: module-wide limits and helpers shared by the driver's files.
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _FLAX_DRV_H
#define _FLAX_DRV_H

#include <linux/compiler.h>
#include <linux/time64.h>
#include <linux/types.h>

/*
 * Module parameters (flax_drv.c).  Read-only in sysfs and checked once at
 * load, so the rest of the module reads them without locking.
 */
extern unsigned int flax_max_models;
extern unsigned int flax_max_models_per_user;
extern unsigned int flax_max_region_mb;
extern unsigned int flax_max_slots;
extern unsigned int flax_max_slot_bytes;
extern unsigned int flax_timeout_ms;
extern unsigned int flax_max_timeout_ms;
extern unsigned int flax_max_pending;
extern unsigned int flax_nslots;
extern unsigned int flax_max_retries;
/* 0 or 1 once loaded: whether uint8 input normalises through a table. */
extern int flax_norm_table;

/* Most models that may exist at once: the cap on max_models. */
#define FLAX_MAX_MODELS_LIMIT 1024

/* Alignment of rings and slots in the shared region. */
#define FLAX_REGION_ALIGN 64

int flax_copy_struct_to_user(void __user *dst, size_t usize, const void *src,
			     size_t ksize);

struct file;
struct inode;
long flax_ioctl(struct file *file, unsigned int cmd, unsigned long arg);
int flax_release(struct inode *inode, struct file *file);

/* Model nodes, /dev/flax/<model> (flax_node.c). */
struct flax_model;
int flax_node_add(struct flax_model *model);
void flax_node_del(struct flax_model *model);
int flax_nodes_init(void);
void flax_nodes_exit(void);

#endif /* _FLAX_DRV_H */
