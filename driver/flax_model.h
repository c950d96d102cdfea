/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev models: the registry, the slot region, sysfs.
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _FLAX_MODEL_H
#define _FLAX_MODEL_H

#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/minmax.h>
#include <linux/kobject.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/uidgid.h>
#include <linux/wait.h>

#include "flax_dtype.h"
#include "flax_ops.h"
#include "flaxdev_kapi.h"
#include "uapi/flaxdev.h"

struct flax_worker;
struct flax_areq;
struct flax_node;

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
 * @fetched: when a worker last fetched the job.
 * @state: enum flax_slot_state; written under the lock, read locklessly
 *	only by the waiting client as a wake-up condition.
 * @index: the slot's index; immutable.
 * @tag: generation, bumped at every claim and requeue.
 * @retries: requeues after a worker died.
 * @priority: the request's priority (the queue's order).
 * @status: 0 or the negative errno of a DONE job: -EIO when the worker
 *	failed it.
 * @worker_status: the worker's own code of a failed job (its completion
 *	status), 0 otherwise; never the client's errno.
 * @wait: the client waits here for DONE.
 * @async: the asynchronous request (FLAX_IOC_SUBMIT) that owns the slot,
 *	or NULL for a synchronous one; told when the slot is DONE.
 *
 * Everything but @index and @wait is protected by the model's @lock.
 */
struct flax_slot {
	struct list_head node;
	struct flax_worker *owner;
	ktime_t enqueued;
	ktime_t fetched;
	enum flax_slot_state state;
	u32 index;
	u32 tag;
	u32 retries;
	u32 priority;
	int status;
	s32 worker_status;
	wait_queue_head_t wait;
	struct flax_areq *async;
};

/**
 * struct flax_cfg - the settings of a model that may change while it lives.
 * @rcu: frees a replaced configuration after a grace period.
 * @topk: k of FLAX_POST_TOPK (1 for ARGMAX), else 0.
 * @threshold: binary32 threshold of FLAX_POST_THRESHOLD.
 * @timeout_ms: default and longest request timeout.
 * @max_batch: most jobs per FLAX_IOC_FETCH.
 * @max_queue_delay_us: batching delay.
 * @max_queue: most requests claimed, queued or running at once.
 * @result_size: bytes of the largest binary result.
 * @text_size: bytes of the largest text result.
 * @norm: FLAX_PRE_NORMALIZE parameters; @norm.mean and @norm.std point
 *	into @data.
 * @lut: NULL, or for uint8 input with at most FLAX_NORM_LUT_PAIRS pairs,
 *	flax_norm_lut_fill()'s table of @norm, in @data after the pairs.
 * @data: @norm.count means, then as many standard deviations, then @lut.
 *
 * Published with rcu_assign_pointer() under the model's @cfg_lock and
 * never changed after that: a writer copies, edits and replaces it.
 */
struct flax_cfg {
	struct rcu_head rcu;
	u32 topk;
	u32 threshold;
	u32 timeout_ms;
	u32 max_batch;
	u32 max_queue_delay_us;
	u32 max_queue;
	u32 result_size;
	u32 text_size;
	struct flax_norm norm;
	u32 *lut;
	u32 data[];
};

/**
 * struct flax_labelset - a model's class names.
 * @rcu: frees a replaced set after a grace period.
 * @ref: the model's reference and those of users (flax_labels_get()).
 * @count: number of labels.
 * @bytes: bytes of @text.
 * @off: @count + 1 offsets into @text; label i is @text[@off[i]] up to,
 *	not including, the newline at @text[@off[i + 1] - 1].
 * @text: the labels, each followed by a newline.
 */
struct flax_labelset {
	struct rcu_head rcu;
	refcount_t ref;
	u32 count;
	u32 bytes;
	u32 *off;
	char text[];
};

/* Buckets of the histograms: see flax_hist_bucket(). */
#define FLAX_HIST_BATCH 13
#define FLAX_HIST_LATENCY 24

/**
 * struct flax_stats - what a model has done, for sysfs.
 * @requests: requests accepted.
 * @completed: requests answered with a result.
 * @errors: requests failed for a reason other than a timeout.
 * @timeouts: requests timed out.
 * @batches: FLAX_IOC_FETCH calls that took at least one job.
 * @batched: jobs those calls took (@batched / @batches: mean batch size).
 * @queue_ns: time jobs spent queued, until fetched.
 * @compute_ns: time jobs spent with workers, fetched to completed.
 * @pre_ns: time spent copying inputs in and preprocessing them.
 * @post_ns: time spent postprocessing and copying results out.
 * @total_ns: time requests took, end to end.
 * @batch_hist: batches by size: bucket 0 is 1 job, bucket b > 0 is
 *	2^(b - 1) + 1 to 2^b jobs.
 * @latency_hist: completed requests by end-to-end latency in us: bucket 0
 *	is under 1 us, bucket b > 0 is [2^(b - 1), 2^b) us, the last one
 *	unbounded.
 *
 * Each counter is atomic on its own; a reader or a reset racing with
 * requests in flight sees a set that is off by those requests.
 */
struct flax_stats {
	atomic64_t requests;
	atomic64_t completed;
	atomic64_t errors;
	atomic64_t timeouts;
	atomic64_t batches;
	atomic64_t batched;
	atomic64_t queue_ns;
	atomic64_t compute_ns;
	atomic64_t pre_ns;
	atomic64_t post_ns;
	atomic64_t total_ns;
	atomic64_t batch_hist[FLAX_HIST_BATCH];
	atomic64_t latency_hist[FLAX_HIST_LATENCY];
};

/**
 * struct flax_post_plan - a model's postprocessing chain, analysed once.
 * @vec_ops: the vector steps in order (SOFTMAX, LOG_SOFTMAX, SIGMOID,
 *	MEAN_POOL, L2_NORMALIZE), FLAX_POST_END-terminated.
 * @select: FLAX_POST_TOPK, FLAX_POST_ARGMAX, FLAX_POST_THRESHOLD or
 *	FLAX_POST_END (the result is the vector).
 * @rows: MEAN_POOL: rows T of the (T, D) output, else 0.
 * @vec_elems: elements of the vector after the vector steps.
 */
struct flax_post_plan {
	u8 vec_ops[FLAX_POST_CHAIN_MAX + 1];
	u8 select;
	u32 rows;
	u32 vec_elems;
};

/**
 * struct flax_model - one model, its slot region and its job queue.
 * @kobj: sysfs directory and reference count; the release frees the lot.
 *	The registry holds a reference until MODEL_DESTROY, each attached
 *	worker holds one, each ioctl in flight on the model holds one.
 * @id: the model's id; set before the model is published, then constant.
 * @uid: the model's owner, the creator's fsuid unless given at creation:
 *	flax_model_may_admin(), and the owner of its node and sysfs files.
 * @gid: the group of the model's node and sysfs files: the creator's
 *	fsgid unless given at creation.
 * @node_mode: permission bits of the model's node.
 * @node: the model's node (flax_node.c) while the model is published,
 *	else NULL; under the registry lock.
 * @privileged: created by a task with CAP_SYS_ADMIN: counted against no
 *	per-user limit, and the only kind the in-kernel API finds.
 * @desc: the validated description as created, with effective @nslots,
 *	@result_size and @text_size filled and the norm pointers cleared;
 *	the fields that may change live in @cfg.
 * @in_elems: input elements.
 * @out_elems: output elements.
 * @in_user_bytes: bytes of a client's input (FLAX_PRE_TOKENIZE: the
 *	most bytes of text).
 * @vocab: FLAX_PRE_TOKENIZE: the vocabulary, set once by
 *	FLAX_IOC_VOCAB_SET (under @cfg_lock; read with smp_load_acquire()),
 *	freed with the model.
 * @post: the postprocessing chain.
 * @cfg: the current settings (RCU).
 * @labels: the class names (RCU), or NULL.
 * @cfg_lock: serialises writers of @cfg and @labels.
 * @region: the shared region, __vmalloc() charged to the creator's memory
 *	cgroup, counted against max_region_mb until freed.
 * @layout: the kernel's copy of the region's layout; the one in the
 *	region is for the workers and never read back.
 * @slots: @layout.nslots slots.
 * @lock: protects the slots, @free, @queue, @nqueued, @nbusy, @nheld,
 *	@workers, @nworkers, @dead and every worker's ring tail and held list.
 *	Never held across a sleep or a user copy.  @nqueued and @dead are
 *	also read without it, as wait conditions and by sysfs.
 * @free: free slots, most recently freed first.
 * @queue: queued slots, highest priority first, then oldest first
 *	(requeued jobs go to the front of their priority).
 * @nqueued: length of @queue.
 * @nbusy: slots not free (for max_queue).
 * @nheld: slots held by workers (FETCHED or ABANDONED): in flight.
 * @workers: attached workers by ring index.
 * @nworkers: number of attached workers.
 * @dead: destroyed; no new job is accepted.
 * @draining: quiesced through sysfs "state": new requests fail with
 *	-EAGAIN, those under way finish.
 * @slot_wait: clients waiting for a free slot.
 * @job_wait: workers waiting in FLAX_IOC_FETCH.
 * @stats: statistics.
 */
struct flax_model {
	struct kobject kobj;
	u32 id;
	kuid_t uid;
	kgid_t gid;
	umode_t node_mode;
	struct flax_node *node;
	bool privileged;
	struct flax_model_desc desc;
	u32 in_elems;
	u32 out_elems;
	u32 in_user_bytes;
	struct flax_vocab *vocab;
	struct flax_post_plan post;
	struct flax_cfg __rcu *cfg;
	struct flax_labelset __rcu *labels;
	struct mutex cfg_lock; /* writers of cfg and labels */
	void *region;
	struct flax_region_layout layout;
	struct flax_slot *slots;

	/* Job state: see @lock above.  Never held across a sleep. */
	spinlock_t lock;
	struct list_head free;
	struct list_head queue;
	u32 nqueued;
	u32 nbusy;
	u32 nheld;
	struct flax_worker *workers[FLAX_MAX_WORKERS];
	u32 nworkers;
	bool dead;
	bool draining;

	wait_queue_head_t slot_wait;
	wait_queue_head_t job_wait;

	struct flax_stats stats;
};

static inline bool flax_model_tokenizes(const struct flax_model *model)
{
	return model->desc.pre_op == FLAX_PRE_TOKENIZE;
}

static inline bool flax_model_has_post(const struct flax_model *model)
{
	return model->desc.post_ops[0] != FLAX_POST_END;
}

/* struct flax_stats.batch_hist bucket of a batch of @n jobs. */
static inline unsigned int flax_batch_bucket(u32 n)
{
	unsigned int b = n <= 1 ? 0 : fls(n - 1);

	return min_t(unsigned int, b, FLAX_HIST_BATCH - 1);
}

/* struct flax_stats.latency_hist bucket of a latency of @us. */
static inline unsigned int flax_latency_bucket(u64 us)
{
	return min_t(unsigned int, fls64(us), FLAX_HIST_LATENCY - 1);
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
bool flax_model_may_admin(const struct flax_model *model);
unsigned int flax_models_count(void);

struct file;
int flax_ioctl_model_create(struct file *file, void __user *argp,
			    unsigned int usize);
int flax_ioctl_model_get(struct file *file, void __user *argp,
			 unsigned int usize);
int flax_ioctl_model_destroy(struct file *file, void __user *argp,
			     unsigned int usize);

int flax_ioctl_labels_set(struct file *file, void __user *argp,
			  unsigned int usize);
int flax_ioctl_labels_get(struct file *file, void __user *argp,
			  unsigned int usize);
int flax_ioctl_vocab_set(struct file *file, void __user *argp,
			 unsigned int usize);

bool flax_norm_takes_table(const struct flax_model_desc *desc);

struct flax_cfg *flax_cfg_dup(struct flax_model *model);
int flax_cfg_commit(struct flax_model *model, struct flax_cfg *cfg);
int flax_labels_set(struct flax_model *model, const char *text, size_t size,
		    u32 *count);
void flax_stats_reset(struct flax_model *model);
struct flax_labelset *flax_labels_get(struct flax_model *model);
void flax_labels_put(struct flax_labelset *labels);

extern const struct attribute_group *flax_model_groups[];

int flax_models_init(struct kobject *parent);
void flax_models_exit(void);

#endif /* _FLAX_MODEL_H */
