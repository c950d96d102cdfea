/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev: the differences between the kernel series the module is built
 * for (Debian's 6.1 and 6.12 LTS kernels).  Every LINUX_VERSION_CODE check
 * of the module lives here; the rest of the code calls the helpers below.
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _FLAX_KCOMPAT_H
#define _FLAX_KCOMPAT_H

#include <linux/mm.h>
#include <linux/version.h>

/**
 * flax_vm_flags_mod() - set and clear flags of a mapping being set up.
 * @vma: the mapping, write-locked by the caller (as in an mmap handler).
 * @set: the flags to set.
 * @clear: the flags to clear.
 *
 * Since 6.3 vm_flags may only be changed through vm_flags_mod(); before,
 * they were written directly.
 */
static inline void flax_vm_flags_mod(struct vm_area_struct *vma, vm_flags_t set,
				     vm_flags_t clear)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_mod(vma, set, clear);
#else
	vma->vm_flags = (vma->vm_flags | set) & ~clear;
#endif
}

/*
 * kobj_type.get_ownership() takes a const kobject since 6.2.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
#define flax_kobj_const const
#else
#define flax_kobj_const
#endif

/*
 * device_type.devnode() takes a const device since 6.2.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
#define flax_devnode_const const
#else
#define flax_devnode_const
#endif

#endif /* _FLAX_KCOMPAT_H */
