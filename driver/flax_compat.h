/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The little that the shared pre/postprocessing C needs from its
 * environment, for the kernel and for a user-space build (which defines
 * FLAX_USERSPACE and is how those files are tested natively).
 */
#ifndef _FLAX_COMPAT_H
#define _FLAX_COMPAT_H

#ifdef __KERNEL__

#include <linux/errno.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/types.h>
#include <asm/fpu/api.h>

/* May sleep: process context only.  Charged to the caller's memory cgroup. */
static inline void *flax_kvmalloc(size_t size)
{
	return kvmalloc(size, GFP_KERNEL_ACCOUNT);
}

static inline void flax_kvfree(const void *p)
{
	kvfree(p);
}

static inline void flax_fpu_begin(void)
{
	kernel_fpu_begin();
}

static inline void flax_fpu_end(void)
{
	kernel_fpu_end();
}

#else /* user space */

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t s32;
typedef int64_t s64;

static inline void flax_fpu_begin(void)
{
}

static inline void flax_fpu_end(void)
{
}

static inline void *flax_kvmalloc(size_t size)
{
	return malloc(size);
}

static inline void flax_kvfree(const void *p)
{
	free((void *)p);
}

#endif /* __KERNEL__ */

#endif /* _FLAX_COMPAT_H */
