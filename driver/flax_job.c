// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev jobs: the slot state machine of docs/design.md, the client side
 * (FLAX_IOC_INFER) and the worker side (FLAX_IOC_WORKER_ATTACH,
 * FLAX_IOC_FETCH, FLAX_IOC_COMPLETE, mmap and release).
 *
 * FLAX_IOC_INFER and the in-kernel flax_model_infer() (flaxdev_kapi.h)
 * share one path, flax_infer(); they differ only in where the input comes
 * from and the result goes to (struct flax_infer_io).
 *
 * A slot is a job: a client claims a free slot, fills its input slot,
 * queues it and sleeps on it; a worker fetches it into its ring and
 * completes it; the client takes the result and frees the slot.  Nothing
 * the kernel acts on is read from the shared region: slot numbers and
 * tags in completions are checked against the kernel's own state, and
 * sizes are the model's.
 *
 * Copyright (C) 2026 The flaxdev developers
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/nospec.h>
#include <linux/overflow.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>

#include "flax_drv.h"
#include "flax_job.h"
#include "flax_kcompat.h"
#include "flax_model.h"
#include "flax_ops.h"
#include "flax_post.h"
#include "flax_tok.h"
#include "flaxdev_kapi.h"

/**
 * struct flax_worker - an fd attached to a model with WORKER_ATTACH.
 * @model: the model; the worker holds a reference to it.
 * @ring: this worker's ring in the region.
 * @held: FETCHED and ABANDONED slots, in fetch order; under model->lock.
 * @index: index of @ring; immutable.
 * @tail: the ring's tail; under model->lock.  The kernel's own copy: the
 *	one in the region is written, never read back.
 */
struct flax_worker {
	struct flax_model *model;
	struct flax_ring *ring;
	struct list_head held;
	u32 index;
	u32 tail;
};

/**
 * struct flax_infer_io - one request: where its input and result are.
 * @uin: user input (FLAX_IOC_INFER), or NULL with @kin.
 * @kin: kernel input (flax_model_infer(), the shell path), or NULL.
 * @uout: user result buffer, with @uin.
 * @kout: kernel result buffer (flax_model_infer()), or NULL.
 * @in_len: bytes of input (checked against the model's).
 * @ktext: with @text and @kin: the text result is allocated and left
 *	here rather than copied (the shell path).
 * @out_cap: bytes available at @uout or @kout.
 * @out_len: out: bytes of the result, or needed when it did not fit.
 * @timeout_ms: the request's timeout (0: the model's).
 * @text: FLAX_INFER_TEXT.
 * @nonblock: -EAGAIN rather than wait for room in the queue.
 * @priority: 0 to FLAX_PRIORITY_MAX.
 * @worker_status: out: the worker's code when it failed the job (-EIO).
 */
struct flax_infer_io {
	const void __user *uin;
	const void *kin;
	void __user *uout;
	void *kout;
	size_t in_len;
	char **ktext;
	size_t out_cap;
	size_t out_len;
	u32 timeout_ms;
	bool text;
	bool nonblock;
	u32 priority;
	s32 worker_status;
};

/**
 * struct flax_req_cfg - the settings one request runs with.
 * @topk: k.
 * @threshold: binary32 threshold.
 * @timeout_ms: the request's timeout.
 * @max_queue: the model's max_queue.
 * @result_size: bytes of the largest binary result.
 *
 * Taken from the model's configuration when the request starts, so that
 * a change through sysfs never mixes two settings in one result.
 */
struct flax_req_cfg {
	u32 topk;
	u32 threshold;
	u32 timeout_ms;
	u32 max_queue;
	u32 result_size;
};

/* Largest element of a SUBMIT or REAP entry array a caller may declare. */
#define FLAX_ENTRY_SIZE_MAX 4096

/* Completions copied from user space at a time. */
#define FLAX_COMPLETE_BATCH 16

/**
 * struct flax_client - an fd's asynchronous requests.
 * @lock: protects @all, @done, @npending and @next_ticket.
 * @all: every request submitted and not yet reaped (struct flax_areq).
 * @done: the finished ones, in the order they finished.
 * @wait: REAP and poll() wait here for @done to fill.
 * @npending: length of @all.
 * @next_ticket: the next request's ticket.
 * @reap_lock: serialises FLAX_IOC_REAP on the fd.
 */
struct flax_client {
	spinlock_t lock; /* all, done, npending, next_ticket */
	struct list_head all;
	struct list_head done;
	wait_queue_head_t wait;
	u32 npending;
	u64 next_ticket;
	struct mutex reap_lock; /* one REAP at a time */
};

/**
 * struct flax_file - the state of one open node (private_data).
 * @model: a model's node: its model, of which the fd holds a reference;
 *	the control node: NULL.  Constant.
 * @worker: the fd's worker from FLAX_IOC_WORKER_ATTACH on, else NULL;
 *	set once.
 * @client: its asynchronous requests.
 * @shell: a model's node: the shell path (flax_node.c).
 */
struct flax_file {
	struct flax_model *model;
	struct flax_worker *worker;
	struct flax_client client;
	struct flax_shell shell;
};

/**
 * struct flax_areq - one asynchronous request (FLAX_IOC_SUBMIT).
 * @node: on the client's @all list.
 * @done_node: on the client's @done list once finished.
 * @client: the fd's client state.
 * @model: the model; the request holds a reference.
 * @slot: its slot while it holds one, else NULL; under model->lock.
 * @timeout: fails the request when its time is up, and once it finished,
 *	moves its output out of the slot (flax_areq_work()).
 * @rc: the settings it runs with.
 * @start: when it was submitted.
 * @ticket: its ticket.
 * @user_data: the caller's.
 * @raw: the job's output as the worker left it (and the tokenised input's
 *	attention mask after it, see flax_mask_bytes()), copied out of the
 *	slot once the job finished, so that a result nobody reaps pins no
 *	slot; under the client's @reap_lock.  NULL while the slot holds it.
 * @result: its result in kernel memory, once a REAP has taken it out of
 *	the slot but could not hand it over (a short buffer).
 * @result_len: bytes at @result.
 * @status: 0 or the negative errno it ended with; under model->lock.
 * @worker_status: the worker's code when it failed the job; under
 *	model->lock.
 * @finished: on @done; under model->lock.
 * @text: FLAX_INFER_TEXT.
 */
struct flax_areq {
	struct list_head node;
	struct list_head done_node;
	struct flax_client *client;
	struct flax_model *model;
	struct flax_slot *slot;
	struct delayed_work timeout;
	struct flax_req_cfg rc;
	ktime_t start;
	u64 ticket;
	u64 user_data;
	void *raw;
	void *result;
	size_t result_len;
	int status;
	s32 worker_status;
	bool finished;
	bool text;
};

static struct flax_worker *flax_file_worker(struct file *file)
{
	struct flax_file *ff = file->private_data;

	/* Pairs with the cmpxchg() in flax_ioctl_worker_attach(). */
	return smp_load_acquire(&ff->worker);
}

static long flax_jiffies_left(unsigned long deadline)
{
	long left = (long)(deadline - jiffies);

	return left > 0 ? left : 0;
}

/*
 * An asynchronous request has ended (under model->lock): onto its fd's
 * done list, and the fd's waiters woken.
 */
static void flax_areq_finish(struct flax_areq *areq, int status,
			     s32 worker_status)
{
	struct flax_client *client = areq->client;

	lockdep_assert_held(&areq->model->lock);

	areq->status = status;
	areq->worker_status = worker_status;
	areq->finished = true;
	spin_lock(&client->lock);
	list_add_tail(&areq->done_node, &client->done);
	spin_unlock(&client->lock);
	/* Its slot goes back at once, whether or not anyone reaps. */
	if (areq->slot)
		mod_delayed_work(system_wq, &areq->timeout, 0);
	wake_up(&client->wait);
}

/* Slot transitions; all under model->lock. */

static void flax_slot_free(struct flax_model *model, struct flax_slot *slot)
{
	lockdep_assert_held(&model->lock);

	slot->owner = NULL;
	slot->async = NULL;
	slot->state = FLAX_SLOT_FREE;
	list_add(&slot->node, &model->free);
	model->nbusy--;
	wake_up(&model->slot_wait);
}

/*
 * A job has ended with @status, and with the worker's own code
 * @worker_status when the worker failed it (then @status is -EIO).
 */
static void flax_slot_done(struct flax_model *model, struct flax_slot *slot,
			   int status, s32 worker_status)
{
	lockdep_assert_held(&model->lock);

	slot->owner = NULL;
	slot->status = status;
	slot->worker_status = worker_status;
	/* Read locklessly by the client's wait condition. */
	WRITE_ONCE(slot->state, FLAX_SLOT_DONE);
	if (slot->async)
		flax_areq_finish(slot->async, status, worker_status);
	else
		wake_up(&slot->wait);
}

/**
 * flax_model_kill() - mark a model dead and fail its jobs.
 * @model: a model just taken out of the registry.
 *
 * Queued and fetched jobs complete with -ENODEV, abandoned ones are freed,
 * clients waiting for a slot and workers waiting for jobs are woken.  A
 * client still filling its slot sees the model dead when it queues.
 */
void flax_model_kill(struct flax_model *model)
{
	u32 i;

	spin_lock(&model->lock);
	/* Also read locklessly, as a wake-up condition. */
	WRITE_ONCE(model->dead, true);
	for (i = 0; i < model->layout.nslots; i++) {
		struct flax_slot *slot = &model->slots[i];

		switch (slot->state) {
		case FLAX_SLOT_QUEUED:
			list_del_init(&slot->node);
			model->nqueued--;
			flax_slot_done(model, slot, -ENODEV, 0);
			break;
		case FLAX_SLOT_FETCHED:
			list_del_init(&slot->node);
			model->nheld--;
			flax_slot_done(model, slot, -ENODEV, 0);
			break;
		case FLAX_SLOT_ABANDONED:
			list_del_init(&slot->node);
			model->nheld--;
			flax_slot_free(model, slot);
			break;
		default:
			break;
		}
	}
	spin_unlock(&model->lock);

	wake_up_all(&model->slot_wait);
	wake_up_all(&model->job_wait);
}

/* Client side. */

/* Why a model that took no new job refused it: destroyed or draining. */
static int flax_no_slot(const struct flax_model *model)
{
	return READ_ONCE(model->dead) ? -ENODEV : -EAGAIN;
}

/*
 * Wait condition: true once a slot is claimed or the model refuses new
 * jobs (dead or draining).  At most @max_queue slots are busy at once.
 */
static bool flax_slot_try_claim(struct flax_model *model, u32 max_queue,
				struct flax_slot **slotp)
{
	struct flax_slot *slot;
	bool ret = true;

	spin_lock(&model->lock);
	if (model->dead || model->draining)
		goto out_unlock;
	slot = list_first_entry_or_null(&model->free, struct flax_slot, node);
	if (!slot || model->nbusy >= max_queue) {
		ret = false;
		goto out_unlock;
	}
	list_del_init(&slot->node);
	model->nbusy++;
	slot->state = FLAX_SLOT_CLAIMED;
	slot->tag++;
	slot->retries = 0;
	slot->status = 0;
	slot->worker_status = 0;
	*slotp = slot;
out_unlock:
	spin_unlock(&model->lock);
	return ret;
}

static int flax_slot_claim(struct flax_model *model, u32 max_queue,
			   bool nonblock, unsigned long deadline,
			   struct flax_slot **slotp)
{
	long ret;

	*slotp = NULL;
	if (nonblock) {
		if (!flax_slot_try_claim(model, max_queue, slotp))
			return -EAGAIN;
		return *slotp ? 0 : flax_no_slot(model);
	}
	ret = wait_event_interruptible_timeout(
		model->slot_wait, flax_slot_try_claim(model, max_queue, slotp),
		flax_jiffies_left(deadline));
	if (ret < 0)
		return -EINTR;
	if (!ret)
		return -ETIMEDOUT;
	return *slotp ? 0 : flax_no_slot(model);
}

static void flax_slot_put(struct flax_model *model, struct flax_slot *slot)
{
	spin_lock(&model->lock);
	flax_slot_free(model, slot);
	spin_unlock(&model->lock);
}

/* Mean/std pairs that flax_preprocess() copies to its stack. */
#define FLAX_NORM_PAIRS_ONSTACK 16

/*
 * FLAX_PRE_NORMALIZE in place, in FPU sections of flax_normalize_chunk()
 * elements (each bounded in time), with a scheduling point between them;
 * or, when the configuration has a uint8 table (struct flax_cfg.lut), by
 * flax_norm_lut_apply() in integer code, rescheduling as often.
 * The chunks go from the end: widening to float32 writes float i over
 * the input bytes of elements at or after i, so every element must be
 * read before anything below it is written.  flax_normalize() runs
 * backwards inside a chunk for the same reason.  The parameters are the
 * configuration's current ones, copied under RCU once (so the whole
 * tensor sees one configuration, and no chunk runs inside the RCU read
 * section); their count is the model's, fixed at creation.
 */
static int flax_preprocess(const struct flax_model *model, void *buf)
{
	u32 dtype = model->desc.input.dtype;
	u32 esize = flax_dtype_size(dtype);
	u32 count = model->desc.norm_count;
	u32 local[2 * FLAX_NORM_PAIRS_ONSTACK];
	u32 end = model->in_elems;
	const struct flax_cfg *cfg;
	struct flax_norm norm;
	u32 *pairs = local;
	u32 *lut = NULL;
	bool same;
	u32 chunk;
	int ret = 0;

	/* Fixed at creation (flax_model_init_cfg()): the same for every cfg. */
	if (flax_norm_takes_table(&model->desc)) {
		lut = kvmalloc_array(count, FLAX_NORM_LUT_VALUES * sizeof(u32),
				     GFP_KERNEL_ACCOUNT);
		if (!lut)
			return -ENOMEM;
	} else if (count > FLAX_NORM_PAIRS_ONSTACK) {
		pairs = kvmalloc_array(count, 2 * sizeof(u32),
				       GFP_KERNEL_ACCOUNT);
		if (!pairs)
			return -ENOMEM;
	}
	rcu_read_lock();
	cfg = rcu_dereference(model->cfg);
	norm = cfg->norm;
	same = norm.count == count && !lut == !cfg->lut;
	if (same && lut) {
		memcpy(lut, cfg->lut,
		       (size_t)count * FLAX_NORM_LUT_VALUES * sizeof(u32));
	} else if (same) {
		memcpy(pairs, norm.mean, (size_t)count * sizeof(u32));
		memcpy(pairs + count, norm.std, (size_t)count * sizeof(u32));
	}
	rcu_read_unlock();
	if (!same) {
		ret = -EINVAL;
		goto out_free;
	}
	norm.mean = pairs;
	norm.std = pairs + count;

	if (lut) {
		while (end) {
			u32 n = (end - 1) % FLAX_NORM_LUT_CHUNK + 1;
			u32 first = end - n;

			flax_norm_lut_apply(buf + (size_t)first * sizeof(u32),
					    buf + first, first, n, lut, &norm);
			end = first;
			cond_resched();
		}
		goto out_free;
	}

	chunk = flax_normalize_chunk(dtype, &norm);
	while (end && !ret) {
		u32 n = (end - 1) % chunk + 1;
		u32 first = end - n;

		flax_fpu_begin();
		ret = flax_normalize(buf + (size_t)first * sizeof(u32),
				     buf + (size_t)first * esize, dtype, first,
				     n, &norm);
		flax_fpu_end();
		end = first;
		cond_resched();
	}
out_free:
	if (pairs != local)
		kvfree(pairs);
	kvfree(lut);
	return ret;
}

/*
 * Elements of the load-time timing, a 64x64 RGB image per channel: the
 * vector loop (flax_normalize(), in an FPU section) against the table
 * (flax_norm_lut_apply()), best of a few runs each, as the kernel's RAID
 * code times its routines at load.  On hardware the vector loops win;
 * under an emulator such as QEMU's TCG, where each float operation is a
 * call into its soft float, the table's integer loads do.  Both give the
 * same bits.
 */
#define FLAX_NORM_BENCH_ELEMS (64 * 64 * 3)

/**
 * flax_norm_table_faster() - time uint8 normalisation both ways.
 *
 * Context: module load; may sleep.
 *
 * Return: 1 if the table is faster, else 0 (also when out of memory).
 */
int flax_norm_table_faster(void)
{
	static const u32 mean[3] = { 0x3ef851ec, 0x3ee978d5, 0x3ecfdf3b };
	static const u32 std[3] = { 0x3e6a7efa, 0x3e656042, 0x3e666666 };
	const struct flax_norm norm = {
		.count = 3,
		.inner = 1,
		.scale = 0x3b808081, /* 1/255 */
		.mean = mean,
		.std = std,
	};
	u64 vec = U64_MAX, tab = U64_MAX, t0, t1, t2;
	u32 *lut, *out;
	u8 *in;
	int i, ret;

	lut = kvmalloc(3 * FLAX_NORM_LUT_VALUES * sizeof(u32) +
			       FLAX_NORM_BENCH_ELEMS * (sizeof(u32) + 1),
		       GFP_KERNEL);
	if (!lut)
		return 0;
	out = lut + 3 * FLAX_NORM_LUT_VALUES;
	in = (u8 *)(out + FLAX_NORM_BENCH_ELEMS);
	for (i = 0; i < FLAX_NORM_BENCH_ELEMS; i++)
		in[i] = (u8)(i * 37 + (i >> 7));
	flax_fpu_begin();
	ret = flax_norm_lut_fill(lut, &norm);
	flax_fpu_end();
	for (i = 0; !ret && i < 5; i++) {
		t0 = ktime_get_ns();
		flax_fpu_begin();
		ret = flax_normalize(out, in, FLAX_DTYPE_UINT8, 0,
				     FLAX_NORM_BENCH_ELEMS, &norm);
		flax_fpu_end();
		t1 = ktime_get_ns();
		flax_norm_lut_apply(out, in, 0, FLAX_NORM_BENCH_ELEMS, lut,
				    &norm);
		t2 = ktime_get_ns();
		vec = min(vec, t1 - t0);
		tab = min(tab, t2 - t1);
		cond_resched();
	}
	kvfree(lut);
	if (ret)
		return 0;
	pr_debug("uint8 normalisation: vector %llu ns, table %llu ns\n", vec,
		 tab);
	return tab < vec;
}

/* Copies the result out to the caller's buffer. */
static int flax_io_out(const struct flax_infer_io *io, const void *src,
		       size_t size)
{
	if (io->kout) {
		memcpy(io->kout, src, size);
		return 0;
	}
	return copy_to_user(io->uout, src, size) ? -EFAULT : 0;
}

/*
 * FLAX_PRE_TOKENIZE: the client's text to ids and mask, straight into the
 * input slot.  The vocabulary was checked by flax_infer().
 */
static int flax_tokenize_in(struct flax_model *model, void *buf,
			    const struct flax_infer_io *io)
{
	/* Set once; pairs with the release in flax_ioctl_vocab_set(). */
	const struct flax_vocab *vocab = smp_load_acquire(&model->vocab);
	u32 len = model->desc.input.dims[1];
	const char *text = io->kin;
	u32 ntokens;
	int ret;

	if (!text) {
		text = vmemdup_user(io->uin, io->in_len);
		if (IS_ERR(text))
			return PTR_ERR(text);
	}
	ret = flax_tokenize(vocab, text, io->in_len, len, buf,
			    buf + (size_t)len * sizeof(s32), &ntokens);
	if (text != io->kin)
		kvfree(text);
	return ret;
}

/* Copies the input in and preprocesses it; no FPU during the user copy. */
static int flax_slot_fill(struct flax_model *model, struct flax_slot *slot,
			  const struct flax_infer_io *io)
{
	void *buf = flax_in_slot(model, slot->index);

	/*
	 * The previous job's output must not become this one's when a worker
	 * completes it without writing: the output slot starts zeroed.
	 */
	memset(flax_out_slot(model, slot->index), 0, model->layout.out_bytes);
	if (flax_model_tokenizes(model))
		return flax_tokenize_in(model, buf, io);
	if (io->kin)
		memcpy(buf, io->kin, model->in_user_bytes);
	else if (copy_from_user(buf, io->uin, model->in_user_bytes))
		return -EFAULT;
	if (model->desc.pre_op == FLAX_PRE_NORMALIZE)
		return flax_preprocess(model, buf);
	return 0;
}

/*
 * Queues @slot after every job of its priority or a higher one: a FETCH
 * takes the highest priority first and each priority in arrival order.
 * The walk starts at the tail, so it stops at once when every job has
 * the same priority.  Called with the model's lock held.
 */
static void flax_queue_add(struct flax_model *model, struct flax_slot *slot)
{
	struct flax_slot *pos;

	list_for_each_entry_reverse(pos, &model->queue, node) {
		if (pos->priority >= slot->priority) {
			list_add(&slot->node, &pos->node);
			return;
		}
	}
	list_add(&slot->node, &model->queue);
}

/* Queues a requeued @slot before the other jobs of its priority. */
static void flax_queue_add_front(struct flax_model *model,
				 struct flax_slot *slot)
{
	struct flax_slot *pos;

	list_for_each_entry(pos, &model->queue, node) {
		if (pos->priority <= slot->priority) {
			list_add_tail(&slot->node, &pos->node);
			return;
		}
	}
	list_add_tail(&slot->node, &model->queue);
}

static int flax_slot_queue(struct flax_model *model, struct flax_slot *slot,
			   u32 priority)
{
	spin_lock(&model->lock);
	if (model->dead) {
		flax_slot_free(model, slot);
		spin_unlock(&model->lock);
		return -ENODEV;
	}
	slot->state = FLAX_SLOT_QUEUED;
	slot->enqueued = ktime_get();
	slot->priority = priority;
	flax_queue_add(model, slot);
	model->nqueued++;
	spin_unlock(&model->lock);

	wake_up(&model->job_wait);
	return 0;
}

/* The client's wait condition, read without the lock. */
static bool flax_slot_is_done(const struct flax_slot *slot)
{
	return READ_ONCE(slot->state) == FLAX_SLOT_DONE;
}

/*
 * Waits for the job's result.  Returns the job's status, the slot DONE
 * and still the caller's when it is 0; otherwise the slot is no longer
 * the caller's: freed, or left to its worker as ABANDONED.
 */
static int flax_slot_wait(struct flax_model *model, struct flax_slot *slot,
			  unsigned long deadline, s32 *worker_status)
{
	long left;
	int ret;

	left = wait_event_interruptible_timeout(slot->wait,
						flax_slot_is_done(slot),
						flax_jiffies_left(deadline));

	spin_lock(&model->lock);
	switch (slot->state) {
	case FLAX_SLOT_DONE:
		/* A result that raced with the timeout or signal is taken. */
		ret = slot->status;
		*worker_status = slot->worker_status;
		if (ret)
			flax_slot_free(model, slot);
		break;
	case FLAX_SLOT_QUEUED:
		list_del_init(&slot->node);
		model->nqueued--;
		flax_slot_free(model, slot);
		ret = left < 0 ? -EINTR : -ETIMEDOUT;
		break;
	case FLAX_SLOT_FETCHED:
		/* The worker is using the slot: it frees it when it is done. */
		slot->state = FLAX_SLOT_ABANDONED;
		ret = left < 0 ? -EINTR : -ETIMEDOUT;
		break;
	default:
		WARN_ONCE(1, "slot %u in state %d\n", slot->index, slot->state);
		ret = -EIO;
		break;
	}
	spin_unlock(&model->lock);
	return ret;
}

/* The text form of a result, to the caller or, for the shell path, kept. */
static int flax_result_text(struct flax_model *model, struct flax_infer_io *io,
			    const struct flax_post_out *res)
{
	struct flax_labelset *labels = flax_labels_get(model);
	char *text = NULL;
	size_t len;
	int ret = 0;

	len = flax_post_text(res, labels, NULL, 0);
	io->out_len = len;
	if (!io->ktext && len > io->out_cap) {
		ret = -ENOSPC;
		goto out;
	}
	text = kvmalloc(len ?: 1, GFP_KERNEL_ACCOUNT);
	if (!text) {
		ret = -ENOMEM;
		goto out;
	}
	flax_post_text(res, labels, text, len);
	if (io->ktext) {
		*io->ktext = text;
		text = NULL;
	} else {
		ret = flax_io_out(io, text, len);
	}
out:
	kvfree(text);
	flax_labels_put(labels);
	return ret;
}

/* Bytes of the tokenised input's attention mask that MEAN_POOL reads. */
static size_t flax_mask_bytes(const struct flax_model *model)
{
	if (flax_model_tokenizes(model) && model->post.rows)
		return (size_t)model->post.rows * sizeof(s32);
	return 0;
}

/*
 * Returns the result of a DONE job: straight from the output when there is
 * nothing to do, else postprocessed in @buf, in binary or text form.  The
 * output is in @slot, which this frees once it is copied, or, with @slot
 * NULL, at @raw (as struct flax_areq.raw holds it).  @mask, if not NULL,
 * receives the tokenised input's attention mask for MEAN_POOL.
 */
static int flax_job_result(struct flax_model *model, struct flax_slot *slot,
			   const void *raw, void *buf, s32 *mask,
			   struct flax_infer_io *io,
			   const struct flax_req_cfg *rc)
{
	u32 out_bytes = model->layout.out_bytes;
	const void *out, *msrc;
	struct flax_post_out res = {
		.data = buf,
		.size = out_bytes,
		.entries = model->out_elems,
		.vector = true,
	};
	int ret;

	if (slot) {
		out = flax_out_slot(model, slot->index);
		msrc = flax_in_slot(model, slot->index) +
		       flax_mask_bytes(model);
	} else {
		out = raw;
		msrc = raw + out_bytes;
	}
	if (!flax_model_has_post(model) && !io->text) {
		/* Payload only: a worker changing it under us harms no one. */
		ret = flax_io_out(io, out, out_bytes);
		if (slot)
			flax_slot_put(model, slot);
		io->out_len = out_bytes;
		return ret;
	}

	memcpy(buf, out, out_bytes);
	if (mask)
		memcpy(mask, msrc, flax_mask_bytes(model));
	if (slot)
		flax_slot_put(model, slot);

	if (flax_model_has_post(model))
		flax_post_run(model, rc->topk, rc->threshold, buf, mask, &res);
	if (io->text)
		return flax_result_text(model, io, &res);
	io->out_len = res.size;
	return flax_io_out(io, res.data, res.size);
}

/* Takes the settings a request runs with. */
static void flax_req_cfg(struct flax_model *model, u32 req_timeout_ms,
			 struct flax_req_cfg *rc)
{
	const struct flax_cfg *cfg;

	rcu_read_lock();
	cfg = rcu_dereference(model->cfg);
	rc->topk = cfg->topk;
	rc->threshold = cfg->threshold;
	rc->timeout_ms = cfg->timeout_ms;
	rc->max_queue = cfg->max_queue;
	rc->result_size = cfg->result_size;
	rcu_read_unlock();
	if (req_timeout_ms && req_timeout_ms < rc->timeout_ms)
		rc->timeout_ms = req_timeout_ms;
}

/* Counts a request's outcome in the model's statistics. */
static void flax_infer_account(struct flax_model *model, int ret, ktime_t start)
{
	struct flax_stats *st = &model->stats;
	u64 ns = ktime_to_ns(ktime_sub(ktime_get(), start));
	unsigned int bucket = flax_latency_bucket(div_u64(ns, NSEC_PER_USEC));

	if (!ret) {
		atomic64_inc(&st->completed);
		atomic64_add(ns, &st->total_ns);
		atomic64_inc(&st->latency_hist[bucket]);
	} else if (ret == -ETIMEDOUT) {
		atomic64_inc(&st->timeouts);
	} else {
		atomic64_inc(&st->errors);
	}
}

/*
 * The buffer postprocessing (or a text result) needs, if any: the scratch
 * of flax_post_run(), then room for the attention mask of a tokenised
 * input that MEAN_POOL reads.
 */
static int flax_scratch_alloc(const struct flax_model *model,
			      const struct flax_req_cfg *rc, bool text,
			      void **buf, s32 **mask)
{
	size_t scratch, mask_bytes = flax_mask_bytes(model);

	*buf = NULL;
	*mask = NULL;
	if (!flax_model_has_post(model) && !text)
		return 0;
	scratch = ALIGN(flax_post_scratch_size(model, rc->topk), 8);
	*buf = kvmalloc(scratch + mask_bytes, GFP_KERNEL_ACCOUNT);
	if (!*buf)
		return -ENOMEM;
	if (mask_bytes)
		*mask = *buf + scratch;
	return 0;
}

/*
 * Runs one request whose input size the caller has checked: claim, fill,
 * queue, wait, result.  Counted in the statistics from the point where
 * the result buffer is known to be large enough.
 */
static int flax_infer(struct flax_model *model, struct flax_infer_io *io)
{
	struct flax_stats *st = &model->stats;
	struct flax_req_cfg rc;
	struct flax_slot *slot;
	unsigned long deadline;
	ktime_t start, t;
	void *buf = NULL;
	s32 *mask = NULL;
	int ret;

	flax_req_cfg(model, io->timeout_ms, &rc);
	if (!io->text && io->out_cap < rc.result_size) {
		io->out_len = rc.result_size;
		return -ENOSPC;
	}
	/* Pairs with the release in flax_ioctl_vocab_set(). */
	if (flax_model_tokenizes(model) && !smp_load_acquire(&model->vocab))
		return -ENODATA;
	start = ktime_get();
	deadline = jiffies + msecs_to_jiffies(rc.timeout_ms);
	atomic64_inc(&st->requests);

	ret = flax_slot_claim(model, rc.max_queue, io->nonblock, deadline,
			      &slot);
	if (ret)
		goto out;

	/* Only now: a client still waiting for room holds no memory. */
	ret = flax_scratch_alloc(model, &rc, io->text, &buf, &mask);
	if (ret) {
		flax_slot_put(model, slot);
		goto out;
	}

	t = ktime_get();
	ret = flax_slot_fill(model, slot, io);
	atomic64_add(ktime_to_ns(ktime_sub(ktime_get(), t)), &st->pre_ns);
	if (ret) {
		flax_slot_put(model, slot);
		goto out;
	}

	ret = flax_slot_queue(model, slot, io->priority);
	if (ret)
		goto out;

	ret = flax_slot_wait(model, slot, deadline, &io->worker_status);
	if (ret)
		goto out;

	t = ktime_get();
	ret = flax_job_result(model, slot, NULL, buf, mask, io, &rc);
	atomic64_add(ktime_to_ns(ktime_sub(ktime_get(), t)), &st->post_ns);
out:
	kvfree(buf);
	flax_infer_account(model, ret, start);
	return ret;
}

/* A client's input: the model's input size, or up to text_max bytes of text. */
static bool flax_input_size_ok(const struct flax_model *model, size_t size)
{
	if (flax_model_tokenizes(model))
		return size <= model->in_user_bytes;
	return size == model->in_user_bytes;
}

/**
 * flax_ioctl_infer() - FLAX_IOC_INFER.
 * @file: the client's fd (O_NONBLOCK: -EAGAIN rather than wait for room).
 * @argp: user struct flax_infer.
 * @usize: its size.
 *
 * Return: 0 with the result at @output; -ENOENT for an unknown model,
 * -EINVAL for a bad request, -ENOSPC (and the size needed in output_size)
 * for a short output buffer, -EAGAIN for a non-blocking fd when max_queue
 * requests are under way, -ETIMEDOUT, -EINTR on a signal, -ENODEV if the
 * model was destroyed, -EIO if the worker failed the job (its code in
 * @worker_status) or the job's workers kept going away, -EFAULT, -E2BIG
 * or -ENOMEM.
 */
int flax_ioctl_infer(struct file *file, void __user *argp, unsigned int usize)
{
	struct flax_infer_io io = {};
	struct flax_model *model;
	struct flax_infer req;
	int ret, ret2;

	ret = copy_struct_from_user(&req, sizeof(req), argp, usize);
	if (ret)
		return ret;
	/* @output_size and @worker_status are written back; ignored here. */
	if ((req.flags & ~FLAX_INFER_TEXT) ||
	    req.priority > FLAX_PRIORITY_MAX || req.reserved)
		return -EINVAL;

	model = flax_file_model(file, req.model_id, true);
	if (IS_ERR(model))
		return PTR_ERR(model);

	ret = -EINVAL;
	if (!flax_input_size_ok(model, req.input_size))
		goto out_put;

	io.uin = u64_to_user_ptr(req.input);
	io.in_len = req.input_size;
	io.uout = u64_to_user_ptr(req.output);
	io.out_cap = req.output_size;
	io.text = req.flags & FLAX_INFER_TEXT;
	io.nonblock = file->f_flags & O_NONBLOCK;
	io.priority = req.priority;
	io.timeout_ms = req.timeout_ms;
	ret = flax_infer(model, &io);
	if (!ret || ret == -ENOSPC || io.worker_status) {
		req.output_size = io.out_len;
		req.worker_status = io.worker_status;
		ret2 = flax_copy_struct_to_user(argp, usize, &req, sizeof(req));
		ret = ret ?: ret2;
	}
out_put:
	flax_model_put(model);
	return ret;
}

/**
 * flax_model_infer_text() - run a model on a kernel input, text result.
 * @model: the model.
 * @input: the input.
 * @in_len: its size: flax_model_input_size() bytes, or up to that many
 *	bytes of text for a tokenising model.
 * @text: out: the text result, kvmalloc()ed, to be kvfree()d.
 * @len: out: its length.
 *
 * The shell path of a model's node (flax_node.c).
 *
 * Return: 0 or a negative errno as flax_ioctl_infer() returns.
 */
int flax_model_infer_text(struct flax_model *model, const void *input,
			  size_t in_len, char **text, size_t *len)
{
	struct flax_infer_io io = {
		.kin = input,
		.in_len = in_len,
		.text = true,
		.ktext = text,
	};
	int ret;

	*text = NULL;
	if (!flax_input_size_ok(model, in_len))
		return -EINVAL;
	ret = flax_infer(model, &io);
	*len = io.out_len;
	return ret;
}

/* Documented in flaxdev_kapi.h. */
int flax_model_infer(struct flax_model *model, const void *input,
		     size_t input_size, void *result, size_t result_size,
		     unsigned int timeout_ms)
{
	struct flax_infer_io io = {
		.kin = input,
		.kout = result,
		.out_cap = result_size,
		.timeout_ms = timeout_ms,
	};
	int ret;

	might_sleep();
	if (IS_ERR_OR_NULL(model) || !input || !result ||
	    !flax_input_size_ok(model, input_size))
		return -EINVAL;
	io.in_len = input_size;

	ret = flax_infer(model, &io);
	return ret ?: io.out_len;
}
EXPORT_SYMBOL_GPL(flax_model_infer);

/* Asynchronous requests: FLAX_IOC_SUBMIT, FLAX_IOC_REAP, poll(). */

static void flax_areq_free(struct flax_areq *areq)
{
	/* Not on any list, no slot; its timeout may still be pending. */
	cancel_delayed_work_sync(&areq->timeout);
	kvfree(areq->raw);
	kvfree(areq->result);
	flax_model_put(areq->model);
	kfree(areq);
}

/*
 * A finished request gives its slot back: a failed one's at once, a
 * successful one's once its output (and mask) are copied to @raw.  A
 * REAP under way may be taking the result itself: then look again later.
 * Without memory the result stays in the slot for REAP.
 */
static void flax_areq_unpin(struct flax_areq *areq)
{
	struct flax_client *client = areq->client;
	struct flax_model *model = areq->model;
	u32 out_bytes = model->layout.out_bytes;
	struct flax_slot *slot;
	void *raw;

	if (!mutex_trylock(&client->reap_lock)) {
		schedule_delayed_work(&areq->timeout, 1);
		return;
	}
	slot = areq->slot;
	if (!slot)
		goto out_unlock;
	if (!areq->status) {
		raw = kvmalloc(out_bytes + flax_mask_bytes(model),
			       GFP_KERNEL_ACCOUNT);
		if (!raw)
			goto out_unlock;
		memcpy(raw, flax_out_slot(model, slot->index), out_bytes);
		memcpy(raw + out_bytes,
		       flax_in_slot(model, slot->index) +
			       flax_mask_bytes(model),
		       flax_mask_bytes(model));
		areq->raw = raw;
	}
	areq->slot = NULL;
	flax_slot_put(model, slot);
out_unlock:
	mutex_unlock(&client->reap_lock);
}

/*
 * The request's work, in process context.  Once the request finished:
 * flax_areq_unpin().  Before, its time is up: a queued job leaves the
 * queue and frees its slot, a fetched one is left to its worker as
 * abandoned; either way the request ends with -ETIMEDOUT.
 */
static void flax_areq_work(struct work_struct *work)
{
	struct flax_areq *areq =
		container_of(to_delayed_work(work), struct flax_areq, timeout);
	struct flax_model *model = areq->model;
	struct flax_slot *slot;

	spin_lock(&model->lock);
	if (areq->finished) {
		/* From here on only REAP, release and this touch @slot. */
		spin_unlock(&model->lock);
		flax_areq_unpin(areq);
		return;
	}
	slot = areq->slot;
	if (!slot)
		goto out_unlock;
	switch (slot->state) {
	case FLAX_SLOT_QUEUED:
		list_del_init(&slot->node);
		model->nqueued--;
		areq->slot = NULL;
		flax_slot_free(model, slot);
		flax_areq_finish(areq, -ETIMEDOUT, 0);
		break;
	case FLAX_SLOT_FETCHED:
		/* The worker frees the slot when it completes the job. */
		slot->state = FLAX_SLOT_ABANDONED;
		slot->async = NULL;
		areq->slot = NULL;
		flax_areq_finish(areq, -ETIMEDOUT, 0);
		break;
	case FLAX_SLOT_CLAIMED:
		/* Still being submitted: look again in a tick. */
		schedule_delayed_work(&areq->timeout, 1);
		break;
	default:
		break;
	}
out_unlock:
	spin_unlock(&model->lock);
}

/* Submits one request; on success it belongs to the fd's client. */
static int flax_submit_one(struct flax_client *client, struct flax_model *model,
			   struct flax_submit_entry *e, bool text,
			   bool nonblock, u32 priority)
{
	struct flax_infer_io io = {
		.uin = u64_to_user_ptr(e->input),
		.in_len = e->input_size,
	};
	struct flax_areq *areq;
	struct flax_slot *slot;
	unsigned long deadline;
	ktime_t t;
	int ret;

	if (!flax_input_size_ok(model, e->input_size))
		return -EINVAL;
	/* Pairs with the release in flax_ioctl_vocab_set(). */
	if (flax_model_tokenizes(model) && !smp_load_acquire(&model->vocab))
		return -ENODATA;

	/* A place among the fd's unreaped requests, given back on failure. */
	spin_lock(&client->lock);
	if (client->npending >= flax_max_pending) {
		spin_unlock(&client->lock);
		return -EBUSY;
	}
	client->npending++;
	spin_unlock(&client->lock);

	areq = kzalloc(sizeof(*areq), GFP_KERNEL_ACCOUNT);
	if (!areq) {
		ret = -ENOMEM;
		goto err_unreserve;
	}
	INIT_DELAYED_WORK(&areq->timeout, flax_areq_work);
	INIT_LIST_HEAD(&areq->done_node);
	areq->client = client;
	kobject_get(&model->kobj);
	areq->model = model;
	areq->user_data = e->user_data;
	areq->text = text;
	flax_req_cfg(model, e->timeout_ms, &areq->rc);
	areq->start = ktime_get();
	deadline = jiffies + msecs_to_jiffies(areq->rc.timeout_ms);
	atomic64_inc(&model->stats.requests);

	ret = flax_slot_claim(model, areq->rc.max_queue, nonblock, deadline,
			      &slot);
	if (ret)
		goto err_free;
	t = ktime_get();
	ret = flax_slot_fill(model, slot, &io);
	atomic64_add(ktime_to_ns(ktime_sub(ktime_get(), t)),
		     &model->stats.pre_ns);
	if (ret) {
		flax_slot_put(model, slot);
		goto err_free;
	}

	/* The slot is ours (CLAIMED): nobody looks at it until it is queued. */
	slot->async = areq;
	areq->slot = slot;
	spin_lock(&client->lock);
	e->ticket = client->next_ticket++;
	areq->ticket = e->ticket;
	list_add_tail(&areq->node, &client->all);
	spin_unlock(&client->lock);
	/* Before the job can finish and be reaped: areq may go at once. */
	schedule_delayed_work(&areq->timeout, flax_jiffies_left(deadline));

	ret = flax_slot_queue(model, slot, priority);
	if (ret) {
		/* The model died; flax_slot_queue() freed the slot. */
		cancel_delayed_work_sync(&areq->timeout);
		spin_lock(&client->lock);
		list_del(&areq->node);
		spin_unlock(&client->lock);
		areq->slot = NULL;
		goto err_free;
	}
	return 0;

err_free:
	flax_infer_account(model, ret, areq->start);
	flax_areq_free(areq);
err_unreserve:
	spin_lock(&client->lock);
	client->npending--;
	spin_unlock(&client->lock);
	return ret;
}

/**
 * flax_ioctl_submit() - FLAX_IOC_SUBMIT.
 * @file: the client's fd (O_NONBLOCK: stop rather than wait for room).
 * @argp: user struct flax_submit.
 * @usize: its size.
 *
 * Return: 0 with @submitted requests queued (their tickets written), or
 * the error of the first entry when none was: -ENOENT, -EINVAL, -EAGAIN,
 * -EBUSY (max_pending requests of the fd not reaped), -ETIMEDOUT, -EINTR,
 * -ENODEV, -ENODATA, -EILSEQ, -EFAULT, -E2BIG or -ENOMEM.
 */
int flax_ioctl_submit(struct file *file, void __user *argp, unsigned int usize)
{
	struct flax_file *ff = file->private_data;
	struct flax_submit req;
	struct flax_model *model;
	u64 __user *uticket;
	u8 __user *ue;
	u32 esize, i;
	int ret;

	ret = copy_struct_from_user(&req, sizeof(req), argp, usize);
	if (ret)
		return ret;
	esize = req.entry_size ?: FLAX_SUBMIT_ENTRY_SIZE_VER0;
	if ((req.flags & ~FLAX_INFER_TEXT) ||
	    esize < FLAX_SUBMIT_ENTRY_SIZE_VER0 ||
	    esize > FLAX_ENTRY_SIZE_MAX || req.priority > FLAX_PRIORITY_MAX)
		return -EINVAL;
	model = flax_file_model(file, req.model_id, true);
	if (IS_ERR(model))
		return PTR_ERR(model);
	ret = -EINVAL;
	if (!req.count || req.count > model->layout.nslots)
		goto out_put;

	ue = u64_to_user_ptr(req.entries);
	req.submitted = 0;
	for (i = 0; i < req.count; i++, ue += esize) {
		struct flax_submit_entry e;

		/* @ticket is an out field: whatever it holds is ignored. */
		ret = copy_struct_from_user(&e, sizeof(e), ue, esize);
		if (ret)
			break;
		ret = flax_submit_one(&ff->client, model, &e,
				      req.flags & FLAX_INFER_TEXT,
				      file->f_flags & O_NONBLOCK, req.priority);
		if (ret)
			break;
		req.submitted++;
		/* Queued already: a lost ticket still has its user_data. */
		uticket = (u64 __user *)(ue + offsetof(typeof(e), ticket));
		if (put_user(e.ticket, uticket)) {
			ret = -EFAULT;
			break;
		}
	}
	if (req.submitted)
		ret = flax_copy_struct_to_user(argp, usize, &req, sizeof(req));
out_put:
	flax_model_put(model);
	return ret;
}

/*
 * Hands a finished request's result to @e: 1 when it is consumed, 0 when
 * it stays (the buffer is short: -ENOSPC in @e), or -ENOMEM or -EFAULT
 * (@e not to be used; the request stays).
 */
static int flax_areq_reap(struct flax_areq *areq, struct flax_reap_entry *e)
{
	struct flax_model *model = areq->model;
	struct flax_infer_io io = { .text = areq->text };
	struct flax_slot *slot;
	void *buf, *out = NULL;
	s32 *mask;
	ktime_t t;
	int ret;

	e->ticket = areq->ticket;
	e->user_data = areq->user_data;
	e->status = areq->status;
	e->worker_status = areq->worker_status;
	e->reserved = 0;
	if (areq->status) {
		/* A failed job's slot may still be ours: DONE. */
		if (areq->slot)
			flax_slot_put(model, areq->slot);
		areq->slot = NULL;
		e->output_size = 0;
		return 1;
	}

	if (!areq->result) {
		/* The first REAP of it: out of the slot or @raw, postprocessed. */
		slot = areq->slot;
		ret = flax_scratch_alloc(model, &areq->rc, areq->text, &buf,
					 &mask);
		if (!ret && !areq->text) {
			out = kvmalloc(areq->rc.result_size,
				       GFP_KERNEL_ACCOUNT);
			ret = out ? 0 : -ENOMEM;
		}
		if (ret) {
			/* Not reaped: the caller may try again. */
			kvfree(buf);
			return ret;
		}
		io.kout = out;
		io.out_cap = areq->rc.result_size;
		io.ktext = (char **)&out;
		t = ktime_get();
		ret = flax_job_result(model, slot, areq->raw, buf, mask, &io,
				      &areq->rc);
		atomic64_add(ktime_to_ns(ktime_sub(ktime_get(), t)),
			     &model->stats.post_ns);
		areq->slot = NULL;
		kvfree(areq->raw);
		areq->raw = NULL;
		kvfree(buf);
		if (ret) {
			kvfree(out);
			e->status = ret;
			e->output_size = 0;
			areq->status = ret;
			return 1;
		}
		areq->result = out;
		areq->result_len = io.out_len;
	}

	if (areq->result_len > e->output_size) {
		e->status = -ENOSPC;
		e->output_size = areq->result_len;
		return 0;
	}
	if (copy_to_user(u64_to_user_ptr(e->output), areq->result,
			 areq->result_len))
		return -EFAULT;
	e->output_size = areq->result_len;
	return 1;
}

static bool flax_client_has_done(struct flax_client *client)
{
	return !list_empty_careful(&client->done);
}

/* Waits for a finished request: as wait_event_interruptible_timeout(). */
static long flax_client_wait(struct flax_client *client, unsigned long timeout)
{
	long ret;

	ret = wait_event_interruptible_timeout(
		client->wait, flax_client_has_done(client), timeout);
	return ret;
}

/**
 * flax_ioctl_reap() - FLAX_IOC_REAP.
 * @file: the client's fd.
 * @argp: user struct flax_reap.
 * @usize: its size.
 *
 * Return: 0 with @reaped entries filled, -EINTR, -EINVAL, -EFAULT,
 * -ENOMEM (nothing reaped) or -E2BIG.
 */
int flax_ioctl_reap(struct file *file, void __user *argp, unsigned int usize)
{
	struct flax_client *client =
		&((struct flax_file *)file->private_data)->client;
	struct flax_reap req;
	u8 __user *ue;
	u32 esize;
	int ret;

	ret = copy_struct_from_user(&req, sizeof(req), argp, usize);
	if (ret)
		return ret;
	/* The struct's size tells which header the caller was built with. */
	esize = req.entry_size;
	if (!esize && usize < FLAX_REAP_SIZE_VER1)
		esize = FLAX_REAP_ENTRY_SIZE_VER0;
	else if (!esize)
		esize = FLAX_REAP_ENTRY_SIZE_VER1;
	if (req.flags || req.reserved || req.__pad0 || !req.count ||
	    esize < FLAX_REAP_ENTRY_SIZE_VER0 || esize > FLAX_ENTRY_SIZE_MAX)
		return -EINVAL;
	if (req.timeout_ms &&
	    flax_client_wait(client, msecs_to_jiffies(req.timeout_ms)) < 0)
		return -EINTR;

	ue = u64_to_user_ptr(req.entries);
	req.reaped = 0;
	mutex_lock(&client->reap_lock);
	while (req.reaped < req.count) {
		u8 __user *uentry = ue + (size_t)req.reaped * esize;
		struct flax_reap_entry e;
		struct flax_areq *areq;
		int consumed;

		spin_lock(&client->lock);
		areq = list_first_entry_or_null(&client->done, struct flax_areq,
						done_node);
		spin_unlock(&client->lock);
		if (!areq)
			break;
		/* In: @output, @output_size; the rest is written back. */
		ret = copy_struct_from_user(&e, sizeof(e), uentry, esize);
		if (ret)
			break;
		consumed = flax_areq_reap(areq, &e);
		if (consumed < 0) {
			ret = consumed;
			break;
		}
		if (copy_to_user(uentry, &e, min_t(size_t, esize, sizeof(e)))) {
			ret = -EFAULT;
			break;
		}
		req.reaped++;
		if (!consumed)
			break;
		spin_lock(&client->lock);
		list_del(&areq->done_node);
		list_del(&areq->node);
		client->npending--;
		spin_unlock(&client->lock);
		flax_infer_account(areq->model, areq->status, areq->start);
		flax_areq_free(areq);
	}
	spin_lock(&client->lock);
	req.pending = client->npending;
	spin_unlock(&client->lock);
	mutex_unlock(&client->reap_lock);

	if (ret && !req.reaped)
		return ret;
	return flax_copy_struct_to_user(argp, usize, &req, sizeof(req));
}

/**
 * flax_file_poll() - poll(): readable while a finished request waits.
 * @file: the fd.
 * @wait: the poll table.
 *
 * Return: EPOLLIN | EPOLLRDNORM when FLAX_IOC_REAP has something, else 0.
 */
__poll_t flax_file_poll(struct file *file, poll_table *wait)
{
	struct flax_client *client =
		&((struct flax_file *)file->private_data)->client;

	poll_wait(file, &client->wait, wait);
	return flax_client_has_done(client) ? EPOLLIN | EPOLLRDNORM : 0;
}

/* Cancels every request of a closing fd (see flax_file_release()). */
static void flax_client_release(struct flax_client *client)
{
	struct flax_areq *areq;
	struct flax_model *model;
	struct flax_slot *slot;

	for (;;) {
		spin_lock(&client->lock);
		areq = list_first_entry_or_null(&client->all, struct flax_areq,
						node);
		if (areq)
			list_del(&areq->node);
		spin_unlock(&client->lock);
		if (!areq)
			break;

		/* No timeout may run from here on. */
		cancel_delayed_work_sync(&areq->timeout);
		model = areq->model;
		spin_lock(&model->lock);
		slot = areq->slot;
		if (slot) {
			switch (slot->state) {
			case FLAX_SLOT_QUEUED:
				list_del_init(&slot->node);
				model->nqueued--;
				flax_slot_free(model, slot);
				break;
			case FLAX_SLOT_FETCHED:
				slot->state = FLAX_SLOT_ABANDONED;
				slot->async = NULL;
				break;
			case FLAX_SLOT_DONE:
				flax_slot_free(model, slot);
				break;
			default:
				WARN_ONCE(1, "slot %u in state %d\n",
					  slot->index, slot->state);
				break;
			}
			areq->slot = NULL;
		}
		spin_unlock(&model->lock);
		/* Finished ones sit on the done list too. */
		spin_lock(&client->lock);
		if (!list_empty(&areq->done_node))
			list_del(&areq->done_node);
		spin_unlock(&client->lock);
		flax_infer_account(model, -ECANCELED, areq->start);
		flax_areq_free(areq);
	}
}

/* Worker side. */

/*
 * Detaches a worker: its fetched jobs are requeued at the front of the
 * queue, oldest first, with a new tag (or fail with -EIO once they have
 * been requeued max_retries times), its abandoned jobs are freed.
 */
static void flax_worker_release_one(struct flax_worker *worker)
{
	struct flax_model *model = worker->model;
	struct flax_slot *slot, *tmp;
	LIST_HEAD(requeue);
	bool wake = false;

	spin_lock(&model->lock);
	list_for_each_entry_safe(slot, tmp, &worker->held, node) {
		list_del_init(&slot->node);
		model->nheld--;
		if (slot->state == FLAX_SLOT_ABANDONED) {
			flax_slot_free(model, slot);
		} else if (slot->retries < flax_max_retries) {
			slot->retries++;
			slot->tag++;
			slot->owner = NULL;
			slot->state = FLAX_SLOT_QUEUED;
			list_add_tail(&slot->node, &requeue);
			model->nqueued++;
			wake = true;
		} else {
			flax_slot_done(model, slot, -EIO, 0);
		}
	}
	/* Backwards, so that they keep their order at the front. */
	list_for_each_entry_safe_reverse(slot, tmp, &requeue, node) {
		list_del(&slot->node);
		flax_queue_add_front(model, slot);
	}
	model->workers[worker->index] = NULL;
	model->nworkers--;
	spin_unlock(&model->lock);

	if (wake)
		wake_up(&model->job_wait);
	flax_model_put(model);
	kfree(worker);
}

/**
 * flax_ioctl_worker_attach() - FLAX_IOC_WORKER_ATTACH.
 * @file: the fd that becomes a worker.
 * @argp: user struct flax_worker_attach.
 * @usize: its size.
 *
 * Return: 0 with the ring index and region layout filled in, -ENOENT for
 * an unknown model, -EPERM unless the caller owns the model or has
 * CAP_SYS_ADMIN, -EBUSY when FLAX_MAX_WORKERS are attached, -EINVAL
 * if the fd is already a worker, -EFAULT, -E2BIG or -ENOMEM.
 */
int flax_ioctl_worker_attach(struct file *file, void __user *argp,
			     unsigned int usize)
{
	struct flax_worker_attach req;
	struct flax_worker *worker;
	struct flax_model *model;
	struct flax_ring *ring;
	u32 index;
	int ret;

	ret = copy_struct_from_user(&req, sizeof(req), argp, usize);
	if (ret)
		return ret;
	if (req.flags || req.__pad0)
		return -EINVAL;
	if (flax_file_worker(file))
		return -EINVAL;

	model = flax_file_model(file, req.model_id, false);
	if (IS_ERR(model))
		return PTR_ERR(model);
	ret = -EPERM;
	if (!flax_model_may_admin(model))
		goto err_put;

	worker = kzalloc(sizeof(*worker), GFP_KERNEL_ACCOUNT);
	if (!worker) {
		ret = -ENOMEM;
		goto err_put;
	}
	worker->model = model;
	INIT_LIST_HEAD(&worker->held);

	spin_lock(&model->lock);
	if (model->dead) {
		ret = -ENODEV;
		goto err_unlock;
	}
	for (index = 0; index < FLAX_MAX_WORKERS; index++) {
		if (!model->workers[index])
			break;
	}
	if (index == FLAX_MAX_WORKERS) {
		ret = -EBUSY;
		goto err_unlock;
	}
	/*
	 * The previous owner of the ring is gone: its file, which every
	 * mapping of the region pins, has been released.
	 */
	ring = flax_ring(model, index);
	memset(ring, 0, model->layout.ring_stride);
	worker->ring = ring;
	worker->index = index;
	model->workers[index] = worker;
	model->nworkers++;
	spin_unlock(&model->lock);

	/*
	 * The answer first: a caller who cannot take it is no worker.  Until
	 * it is published below, nothing but this call knows the worker.
	 */
	req.worker = index;
	req.layout = model->layout;
	ret = flax_copy_struct_to_user(argp, usize, &req, sizeof(req));
	if (ret) {
		flax_worker_release_one(worker);
		return ret;
	}

	/*
	 * One model per fd, set once.  The full barrier of cmpxchg() orders
	 * the worker's initialisation before its publication.
	 */
	if (cmpxchg(&((struct flax_file *)file->private_data)->worker, NULL,
		    worker)) {
		flax_worker_release_one(worker);
		return -EINVAL;
	}
	return 0;

err_unlock:
	spin_unlock(&model->lock);
	kfree(worker);
err_put:
	flax_model_put(model);
	return ret;
}

/* Applies one completion; -EINVAL leaves the slot as it was. */
static int flax_complete_one(struct flax_worker *worker,
			     const struct flax_completion *c)
{
	struct flax_model *model = worker->model;
	struct flax_slot *slot;
	u32 index;

	lockdep_assert_held(&model->lock);

	if (model->dead)
		return -ENODEV;
	/* A failure's code is the worker's: -1 to -FLAX_STATUS_ERRNO_MAX. */
	if (c->reserved || c->status > 0 ||
	    c->status < -FLAX_STATUS_ERRNO_MAX ||
	    c->slot >= model->layout.nslots)
		return -EINVAL;
	index = array_index_nospec(c->slot, model->layout.nslots);
	slot = &model->slots[index];
	/* Only FETCHED and ABANDONED slots have an owner. */
	if (slot->owner != worker || slot->tag != c->tag) {
		pr_debug(
			"model %u: slot %u tag %u rejected: state %d tag %u%s\n",
			model->id, index, c->tag, slot->state, slot->tag,
			slot->owner == worker ? "" : ", not this worker's");
		return -EINVAL;
	}

	list_del_init(&slot->node);
	model->nheld--;
	atomic64_add(ktime_to_ns(ktime_sub(ktime_get(), slot->fetched)),
		     &model->stats.compute_ns);
	if (slot->state == FLAX_SLOT_ABANDONED)
		flax_slot_free(model, slot);
	else
		/* The worker's code is reported, never returned as the errno. */
		flax_slot_done(model, slot, c->status ? -EIO : 0, c->status);
	return 0;
}

/*
 * Applies @count completions from @uc, in order, stopping at the first bad
 * one; *@done counts those applied.  The array is copied in small batches,
 * each applied under one hold of the lock.
 */
static int flax_complete_jobs(struct flax_worker *worker,
			      const struct flax_completion __user *uc,
			      u32 count, u32 *done)
{
	struct flax_completion c[FLAX_COMPLETE_BATCH];
	struct flax_model *model = worker->model;
	int ret = 0;
	u32 i, n;

	while (*done < count && !ret) {
		n = min_t(u32, count - *done, FLAX_COMPLETE_BATCH);
		if (copy_from_user(c, uc + *done, n * sizeof(*c)))
			return -EFAULT;

		spin_lock(&model->lock);
		for (i = 0; i < n; i++) {
			ret = flax_complete_one(worker, &c[i]);
			if (ret)
				break;
			(*done)++;
		}
		spin_unlock(&model->lock);
	}
	return ret;
}

/**
 * flax_ioctl_complete() - FLAX_IOC_COMPLETE.
 * @file: a worker fd.
 * @argp: user struct flax_complete.
 * @usize: its size.
 *
 * @done is written back even when the call fails.
 *
 * Return: 0, -EINVAL at the first bad completion, -ENXIO if the fd is not
 * a worker, -ENODEV if the model was destroyed, -EFAULT or -E2BIG.
 */
int flax_ioctl_complete(struct file *file, void __user *argp,
			unsigned int usize)
{
	struct flax_worker *worker = flax_file_worker(file);
	struct flax_complete req;
	int ret, ret2;

	if (!worker)
		return -ENXIO;
	ret = copy_struct_from_user(&req, sizeof(req), argp, usize);
	if (ret)
		return ret;
	if (req.flags || req.reserved ||
	    req.count > worker->model->layout.nslots)
		return -EINVAL;

	req.done = 0;
	ret = flax_complete_jobs(worker, u64_to_user_ptr(req.completions),
				 req.count, &req.done);
	ret2 = flax_copy_struct_to_user(argp, usize, &req, sizeof(req));
	return ret ?: ret2;
}

/* Moves up to @max_jobs queued jobs to the worker's ring. */
static void flax_fetch_take(struct flax_worker *worker, struct flax_fetch *req,
			    u32 max_jobs)
{
	struct flax_model *model = worker->model;
	u32 mask = model->layout.ring_entries - 1;
	struct flax_stats *st = &model->stats;
	struct flax_ring *ring = worker->ring;
	u32 tail = worker->tail;
	ktime_t now = ktime_get();
	s64 queued_ns = 0;

	lockdep_assert_held(&model->lock);

	req->first = tail;
	while (req->count < max_jobs && !list_empty(&model->queue)) {
		struct flax_slot *slot =
			list_first_entry(&model->queue, struct flax_slot, node);
		struct flax_ring_entry *entry = &ring->entries[tail & mask];

		list_move_tail(&slot->node, &worker->held);
		model->nqueued--;
		model->nheld++;
		slot->state = FLAX_SLOT_FETCHED;
		slot->owner = worker;
		slot->fetched = now;
		queued_ns += ktime_to_ns(ktime_sub(now, slot->enqueued));
		WRITE_ONCE(entry->slot, slot->index);
		WRITE_ONCE(entry->tag, slot->tag);
		tail++;
		req->count++;
	}

	/*
	 * Publish the entries: they must be visible before the new tail.
	 * Pairs with the worker's load-acquire of ring->tail.
	 */
	smp_store_release(&ring->tail, tail);
	WRITE_ONCE(worker->tail, tail);

	if (req->count) {
		atomic64_inc(&st->batches);
		atomic64_add(req->count, &st->batched);
		atomic64_inc(&st->batch_hist[flax_batch_bucket(req->count)]);
		atomic64_add(queued_ns, &st->queue_ns);
	}
}

/* A worker's wait condition, read without the lock. */
static bool flax_fetch_cond(const struct flax_model *model, u32 want)
{
	return READ_ONCE(model->nqueued) >= want || READ_ONCE(model->dead);
}

/*
 * Waits up to timeout_ms (0: forever) for a first job, then up to the
 * oldest job's enqueue time + the batching delay for a full batch, and
 * takes what is queued; with FLAX_FETCH_NOWAIT, it only takes what is
 * queued now.  The batch size and delay are the model's max_batch and
 * max_queue_delay_us, or the worker's smaller ones.
 * Returns 0 with req->count 0 when no job came.
 */
static int flax_fetch_jobs(struct flax_worker *worker, struct flax_fetch *req)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(req->timeout_ms);
	bool nowait = req->flags & FLAX_FETCH_NOWAIT;
	struct flax_model *model = worker->model;
	const struct flax_cfg *cfg;
	u32 max_jobs, max_wait_us;
	ktime_t batch_end = 0;
	u32 nqueued;
	long ret;

	for (;;) {
		/* Each pass: a sysfs change applies to a FETCH that waits. */
		rcu_read_lock();
		cfg = rcu_dereference(model->cfg);
		max_jobs = min(req->max_jobs, cfg->max_batch);
		max_wait_us = min(req->max_wait_us, cfg->max_queue_delay_us);
		rcu_read_unlock();
		req->max_batch = max_jobs;

		spin_lock(&model->lock);
		if (model->dead) {
			spin_unlock(&model->lock);
			return -ENODEV;
		}
		nqueued = model->nqueued;
		if (nqueued) {
			/* The oldest job of the highest priority. */
			struct flax_slot *first;

			first = list_first_entry(&model->queue,
						 struct flax_slot, node);
			batch_end = ktime_add_us(first->enqueued, max_wait_us);
			if (nqueued >= max_jobs || nowait ||
			    ktime_compare(ktime_get(), batch_end) >= 0) {
				flax_fetch_take(worker, req, max_jobs);
				spin_unlock(&model->lock);
				return 0;
			}
		}
		spin_unlock(&model->lock);
		if (nowait)
			return 0;

		if (nqueued) {
			/* Batching: more jobs, or the first one's deadline. */
			ktime_t left = ktime_sub(batch_end, ktime_get());

			/*
			 * A relative hrtimer adds the timeout to the clock with
			 * ktime_add_safe(), which takes a negative timeout for
			 * an overflow and never fires: recheck instead.
			 */
			if (left <= 0)
				continue;
			ret = wait_event_interruptible_hrtimeout(
				model->job_wait,
				flax_fetch_cond(model, max_jobs), left);
			if (ret == -ERESTARTSYS)
				return -EINTR;
			continue;
		}

		if (!req->timeout_ms) {
			ret = wait_event_interruptible(
				model->job_wait, flax_fetch_cond(model, 1));
		} else {
			ret = wait_event_interruptible_timeout(
				model->job_wait, flax_fetch_cond(model, 1),
				flax_jiffies_left(deadline));
			if (!ret)
				return 0;
		}
		/*
		 * Not restarted: a restart would wait the whole relative
		 * timeout again.
		 */
		if (ret < 0)
			return -EINTR;
	}
}

/**
 * flax_ioctl_fetch() - FLAX_IOC_FETCH.
 * @file: a worker fd.
 * @argp: user struct flax_fetch.
 * @usize: its size.
 *
 * Applies the completions, then waits for jobs (Triton's dynamic
 * batching: a first job, then max_jobs or the oldest job's max_wait_us)
 * and appends them to the worker's ring.  @done is written back even
 * when a completion fails.  A signal after completions were applied ends
 * the call successfully with @count 0 rather than restarting it, which
 * would apply them twice.
 *
 * Return: 0, -EINVAL for bad arguments or a bad completion, -ENXIO if the
 * fd is not a worker, -ENODEV if the model was destroyed,
 * -EINTR (a signal before any completion was applied), -EFAULT or -E2BIG.
 */
int flax_ioctl_fetch(struct file *file, void __user *argp, unsigned int usize)
{
	struct flax_worker *worker = flax_file_worker(file);
	struct flax_fetch req;
	u32 nslots;
	int ret, ret2;

	if (!worker)
		return -ENXIO;
	ret = copy_struct_from_user(&req, sizeof(req), argp, usize);
	if (ret)
		return ret;
	nslots = worker->model->layout.nslots;
	if ((req.flags & ~FLAX_FETCH_F_ALL) || req.reserved ||
	    req.ncomplete > nslots || !req.max_jobs || req.max_jobs > nslots ||
	    req.max_wait_us > FLAX_MAX_WAIT_US)
		return -EINVAL;

	/* Where the next entry will go; the real value if jobs come. */
	req.first = READ_ONCE(worker->tail);
	req.count = 0;
	req.done = 0;
	req.max_batch = 0;
	ret = flax_complete_jobs(worker, u64_to_user_ptr(req.completions),
				 req.ncomplete, &req.done);
	if (!ret) {
		ret = flax_fetch_jobs(worker, &req);
		if (ret == -EINTR && req.done)
			ret = 0;
	}
	if (ret == -EINTR)
		return ret;
	ret2 = flax_copy_struct_to_user(argp, usize, &req, sizeof(req));
	return ret ?: ret2;
}

/**
 * flax_worker_mmap() - map the model's slot region into a worker.
 * @file: a worker fd.
 * @vma: the mapping: offset 0, exactly region_size bytes, MAP_SHARED.
 *
 * The mapping holds a reference to @file, so the worker, its jobs and its
 * reference to the model live until both the fd is closed and the region
 * unmapped; a worker's ring is reused only after that.
 *
 * Return: 0, -ENXIO if the fd is not a worker, -EINVAL for a bad offset,
 * size or a private mapping, -EPERM for an executable one.
 */
int flax_worker_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct flax_worker *worker = flax_file_worker(file);
	struct flax_model *model;
	unsigned long off;
	int ret;

	if (!worker)
		return -ENXIO;
	model = worker->model;

	if (vma->vm_pgoff ||
	    vma->vm_end - vma->vm_start != model->layout.region_size)
		return -EINVAL;
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;

	/*
	 * Page by page, as remap_vmalloc_range() does; that one maps only
	 * vmalloc_user() memory, which no memory cgroup is charged for.
	 */
	flax_vm_flags_mod(vma, VM_DONTCOPY | VM_DONTEXPAND | VM_DONTDUMP,
			  VM_MAYEXEC);
	for (off = 0; off < model->layout.region_size; off += PAGE_SIZE) {
		ret = vm_insert_page(vma, vma->vm_start + off,
				     vmalloc_to_page(model->region + off));
		if (ret)
			return ret;
	}
	return 0;
}

/**
 * flax_file_open() - set up the state of a new fd.
 * @file: the fd.
 * @model: the model of the node opened, or NULL for the control node.
 *
 * Return: 0, -ENODEV (@model destroyed) or -ENOMEM.
 */
int flax_file_open(struct file *file, struct flax_model *model)
{
	struct flax_file *ff;

	if (model && READ_ONCE(model->dead))
		return -ENODEV;
	ff = kzalloc(sizeof(*ff), GFP_KERNEL_ACCOUNT);
	if (!ff)
		return -ENOMEM;
	if (model) {
		kobject_get(&model->kobj);
		ff->model = model;
	}
	mutex_init(&ff->shell.lock);
	spin_lock_init(&ff->client.lock);
	INIT_LIST_HEAD(&ff->client.all);
	INIT_LIST_HEAD(&ff->client.done);
	init_waitqueue_head(&ff->client.wait);
	mutex_init(&ff->client.reap_lock);
	ff->client.next_ticket = 1;
	file->private_data = ff;
	return 0;
}

/**
 * flax_file_release() - release an fd: its requests, its worker.
 * @file: the fd being released (closed and unmapped).
 *
 * Unreaped asynchronous requests are cancelled: queued jobs leave the
 * queue, fetched ones are left to their workers as abandoned, finished
 * ones give their slots back.  The worker's jobs are requeued.
 */
void flax_file_release(struct file *file)
{
	struct flax_file *ff = file->private_data;

	flax_client_release(&ff->client);
	if (ff->worker)
		flax_worker_release_one(ff->worker);
	kvfree(ff->shell.text);
	mutex_destroy(&ff->shell.lock);
	mutex_destroy(&ff->client.reap_lock);
	flax_model_put(ff->model);
	kfree(ff);
}

/**
 * flax_file_bound() - the model of a model's node.
 * @file: an open node.
 *
 * Return: the model whose node @file is (no new reference: the file holds
 * one while open), or NULL for the control node.
 */
struct flax_model *flax_file_bound(struct file *file)
{
	return ((struct flax_file *)file->private_data)->model;
}

/**
 * flax_file_shell() - the shell path's state of a model's node.
 * @file: an open model's node.
 *
 * Return: its struct flax_shell.
 */
struct flax_shell *flax_file_shell(struct file *file)
{
	return &((struct flax_file *)file->private_data)->shell;
}

/**
 * flax_file_model() - the model a request on @file names.
 * @file: the caller's fd.
 * @id: the model id in the request.
 * @run: the request runs the model (INFER, SUBMIT).
 *
 * On a model's node a request names that model, with id 0 or its own;
 * one that runs it needs the node open for writing.  On the control node
 * the id names any model, and only its owner and CAP_SYS_ADMIN may run
 * it: everyone else comes through the node, whose mode the owner chose.
 *
 * Return: the model with a reference the caller drops with
 * flax_model_put(), or ERR_PTR(-EINVAL) for another model's id on a
 * model's node, -EBADF, -ENOENT for an unknown id or -EPERM.
 */
struct flax_model *flax_file_model(struct file *file, u32 id, bool run)
{
	struct flax_model *model = flax_file_bound(file);

	if (model) {
		if (id && id != model->id)
			return ERR_PTR(-EINVAL);
		if (run && !(file->f_mode & FMODE_WRITE))
			return ERR_PTR(-EBADF);
		kobject_get(&model->kobj);
		return model;
	}
	model = flax_model_get(id);
	if (!model)
		return ERR_PTR(-ENOENT);
	if (run && !flax_model_may_admin(model)) {
		flax_model_put(model);
		return ERR_PTR(-EPERM);
	}
	return model;
}
