/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev: the in-kernel API.  Another module looks a model up by name,
 * runs it on kernel buffers and releases it, exactly as a /dev/flax/<model> client
 * does with FLAX_IOC_MODEL_GET and FLAX_IOC_INFER: the same slots, workers,
 * pre- and postprocessing, timeouts and counters (the model's sysfs
 * "requests", "completed", "errors" and "timeouts" count these calls too).
 *
 * Inputs and results have the layouts of driver/uapi/flaxdev.h: the input
 * is the model's input tensor in its dtype, the result a struct
 * flax_topk_result when the model's post chain ends in FLAX_POST_TOPK,
 * else a vector of binary32.
 *
 * Lifetime: struct flax_model is opaque and reference-counted.  A model
 * reference keeps the model's memory, not the model: MODEL_DESTROY may
 * destroy it at any time, after which flax_model_infer() fails with
 * -ENODEV; look the model up again for each request (or after -ENODEV) to
 * follow a model that is recreated.  Every reference must be dropped with
 * flax_model_put() before the calling module's exit returns: a module that
 * calls these functions depends on flaxdev.ko by symbol, so flaxdev cannot
 * be unloaded while that module is loaded, and flaxdev's exit expects no
 * reference but its own to remain.
 *
 * All functions are EXPORT_SYMBOL_GPL.
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _FLAXDEV_KAPI_H
#define _FLAXDEV_KAPI_H

#include <linux/types.h>

struct flax_model;

/**
 * flax_model_get_by_name() - look a model up by name and take a reference.
 * @name: NUL-terminated model name, 1 to FLAX_NAME_MAX - 1 characters.
 *
 * Context: process context; may sleep (takes the registry mutex).
 *
 * Only a model created by a task with CAP_SYS_ADMIN is found: no user can
 * stand in for the model a kernel consumer expects.
 *
 * Return: the model, to be released with flax_model_put(); ERR_PTR(-EINVAL)
 * for a name that is empty or too long, ERR_PTR(-ENOENT) if no model has
 * that name, ERR_PTR(-EPERM) if the model with that name was created
 * without CAP_SYS_ADMIN.
 */
struct flax_model *flax_model_get_by_name(const char *name);

/**
 * flax_model_infer() - run a model on one input, synchronously.
 * @model: a model from flax_model_get_by_name().
 * @input: kernel buffer holding the input, in the model's input dtype.
 * @input_size: bytes at @input; must equal the model's input size.
 * @result: kernel buffer for the result.
 * @result_size: bytes available at @result; at least
 *	flax_model_result_size().
 * @timeout_ms: 0 for the model's timeout; a shorter one is honoured, a
 *	longer one is capped to the model's.
 *
 * Queues the input for the model's workers and sleeps (interruptibly)
 * until a worker has answered, the timeout has expired, a signal arrives
 * or the model is destroyed.  Neither buffer is used after the call.
 *
 * Context: process context; sleeps.  No spinlock may be held.
 *
 * Return: the number of bytes written to @result, or -EINVAL for a bad
 * argument or @input_size, -ENOSPC when @result_size is too small,
 * -ETIMEDOUT (no worker answered in time), -EINTR (signal pending; not
 * restarted), -ENODEV (the model has been destroyed), -EIO (the job's
 * workers kept going away, or a worker failed the job: its own code is
 * never returned, so that no worker chooses a caller's errno), -ENOMEM.
 */
int flax_model_infer(struct flax_model *model, const void *input,
		     size_t input_size, void *result, size_t result_size,
		     unsigned int timeout_ms);

/**
 * flax_model_input_size() - bytes of one input of a model.
 * @model: a model from flax_model_get_by_name().
 *
 * Context: any.
 *
 * Return: the @input_size flax_model_infer() expects.
 */
size_t flax_model_input_size(const struct flax_model *model);

/**
 * flax_model_result_size() - bytes of one result of a model.
 * @model: a model from flax_model_get_by_name().
 *
 * Context: any.
 *
 * Return: the smallest @result_size flax_model_infer() accepts, and the
 * number of bytes it writes, with the model's settings now: a change of
 * its k through sysfs changes it, so size each request's buffer by a
 * fresh call (or for FLAX_TOPK_MAX entries).
 */
size_t flax_model_result_size(const struct flax_model *model);

/**
 * flax_model_put() - drop a reference to a model.
 * @model: the model; NULL and error pointers are ignored.
 *
 * The model's memory is freed with its last reference, once it has been
 * destroyed.
 *
 * Context: process context; may sleep (the last reference frees).
 */
void flax_model_put(struct flax_model *model);

#endif /* _FLAXDEV_KAPI_H */
