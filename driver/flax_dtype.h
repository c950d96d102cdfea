/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev element types: the one table of their sizes, for the module and
 * the shared C (flax_ops.c, flax_text.c) in both of their builds.
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _FLAX_DTYPE_H
#define _FLAX_DTYPE_H

#include "flax_compat.h"
#include "uapi/flaxdev.h"

/* Bytes of one element of a FLAX_DTYPE_*, or 0 for an unknown dtype. */
static inline u32 flax_dtype_size(u32 dtype)
{
	switch (dtype) {
	case FLAX_DTYPE_UINT8:
	case FLAX_DTYPE_INT8:
		return 1;
	case FLAX_DTYPE_UINT16:
	case FLAX_DTYPE_INT16:
	case FLAX_DTYPE_FLOAT16:
		return 2;
	case FLAX_DTYPE_INT32:
	case FLAX_DTYPE_FLOAT32:
		return 4;
	default:
		return 0;
	}
}

#endif /* _FLAX_DTYPE_H */
