/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev models: the registry, the slot region, sysfs.
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _FLAX_MODEL_H
#define _FLAX_MODEL_H

#include <linux/atomic.h>
#include <linux/kobject.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>

#include "flax_ops.h"
#include "flaxdev_kapi.h"
#include "uapi/flaxdev.h"

struct flax_worker;

/**
 * enum flax_slot_state - where a job is (docs/design.md, "Slot states").
 * @FLAX_SLOT_FREE: on the model's free list.
 * @FLAX_SLOT_CLAIMED: a client owns it and is filling the input slot.
 * @FLAX_SLOT_QUEUED: on the model's queue, waiting for a worker.
 * @FLAX_SLOT_FETCHED: on a worker's held list; the client waits.
 * @FLAX_SLOT_DONE: result (or error) ready; the client owns it again.
 * @FLAX_SLOT_ABANDONED: on a worker's held list, its client gone; freed
 *	when the worker completes it or goes away.
 */
enum flax_slot_state {
	FLAX_SLOT_FREE,
	FLAX_SLOT_CLAIMED,
	FLAX_SLOT_QUEUED,
	FLAX_SLOT_FETCHED,
	FLAX_SLOT_DONE,
	FLAX_SLOT_ABANDONED,
};

/**
 * struct flax_slot - kernel-private state of one job slot.
 * @node: on the free list (FREE), the queue (QUEUED) or the owner's held
 *	list (FETCHED, ABANDONED); empty otherwise.
 * @owner: the worker holding the job (FETCHED, ABANDONED), else NULL.
 * @enqueued: when the job was first queued (batching deadline).
 * @state: enum flax_slot_state; written under the lock, read locklessly
 *	only by the waiting client as a wake-up condition.
 * @index: the slot's index; immutable.
 * @tag: generation, bumped at every claim and requeue.
 * @retries: requeues after a worker died.
 * @status: 0 or the negative errno of a DONE job.
 * @wait: the client waits here for DONE.
 *
 * Everything but @index and @wait is protected by the model's @lock.
 */
struct flax_slot {
	struct list_head node;
	struct flax_worker *owner;
	ktime_t enqueued;
	enum flax_slot_state state;
	u32 index;
	u32 tag;
	u32 retries;
	int status;
	wait_queue_head_t wait;
};

/**
 * struct flax_model - one model, its slot region and its job queue.
 * @kobj: sysfs directory and reference count; the release frees the lot.
 *	The registry holds a reference until MODEL_DESTROY, each attached
 *	worker holds one, each ioctl in flight on the model holds one.
 * @id: the model's id; set before the model is published, then constant.
 * @desc: the validated description, with effective @nslots and
 *	@timeout_ms, @result_size filled and the norm pointers cleared.
 * @in_elems: input elements.
 * @out_elems: output elements.
 * @in_user_bytes: bytes of a client's input.
 * @norm: FLAX_PRE_NORMALIZE parameters, pointing into @norm_buf.
 * @norm_buf: means then standard deviations, @desc.norm_count each.
 * @region: the shared region, vmalloc_user().
 * @layout: the kernel's copy of the region's layout; the one in the
 *	region is for the workers and never read back.
 * @slots: @layout.nslots slots.
 * @lock: protects the slots, @free, @queue, @nqueued, @workers,
 *	@nworkers, @dead and every worker's ring tail and held list.
 *	Never held across a sleep or a user copy.  @nqueued and @dead are
 *	also read without it, as wait conditions and by sysfs.
 * @free: free slots, most recently freed first.
 * @queue: queued slots, oldest first (requeued jobs go to the front).
 * @nqueued: length of @queue.
 * @workers: attached workers by ring index.
 * @nworkers: number of attached workers.
 * @dead: destroyed; no new job is accepted.
 * @slot_wait: clients waiting for a free slot.
 * @job_wait: workers waiting in FLAX_IOC_FETCH.
 * @requests: FLAX_IOC_INFER and flax_model_infer() calls accepted.
 * @completed: requests answered with a result.
 * @errors: requests failed for a reason other than a timeout.
 * @timeouts: requests timed out.
 */
struct flax_model {
	struct kobject kobj;
	u32 id;
	struct flax_model_desc desc;
	u32 in_elems;
	u32 out_elems;
	u32 in_user_bytes;
	struct flax_norm norm;
	u32 *norm_buf;
	void *region;
	struct flax_region_layout layout;
	struct flax_slot *slots;

	/* Job state: see @lock above.  Never held across a sleep. */
	spinlock_t lock;
	struct list_head free;
	struct list_head queue;
	u32 nqueued;
	struct flax_worker *workers[FLAX_MAX_WORKERS];
	u32 nworkers;
	bool dead;

	wait_queue_head_t slot_wait;
	wait_queue_head_t job_wait;

	atomic64_t requests;
	atomic64_t completed;
	atomic64_t errors;
	atomic64_t timeouts;
};

static inline bool flax_model_has_post(const struct flax_model *model)
{
	return model->desc.post_ops[0] != FLAX_POST_END;
}

static inline void *flax_in_slot(const struct flax_model *model, u32 index)
{
	return model->region + model->layout.in_offset +
	       (size_t)index * model->layout.in_slot_size;
}

static inline void *flax_out_slot(const struct flax_model *model, u32 index)
{
	return model->region + model->layout.out_offset +
	       (size_t)index * model->layout.out_slot_size;
}

static inline struct flax_ring *flax_ring(const struct flax_model *model,
					  u32 index)
{
	return model->region + model->layout.rings_offset +
	       (size_t)index * model->layout.ring_stride;
}

struct flax_model *flax_model_get(u32 id);
unsigned int flax_models_count(void);

int flax_ioctl_model_create(void __user *argp, unsigned int usize);
int flax_ioctl_model_get(void __user *argp, unsigned int usize);
int flax_ioctl_model_destroy(void __user *argp, unsigned int usize);

int flax_models_init(struct kobject *parent);
void flax_models_exit(void);

#endif /* _FLAX_MODEL_H */
