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

/* Alignment of rings and slots in the shared region. */
#define FLAX_REGION_ALIGN 64

int flax_copy_struct_to_user(void __user *dst, size_t usize, const void *src,
			     size_t ksize);

#endif /* _FLAX_DRV_H */
