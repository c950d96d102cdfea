// SPDX-License-Identifier: GPL-2.0
/*
 * flax_wloop - the hot path of a pyflaxdev worker (see flax_wloop.h).
 *
 * Compiled into pyflaxdev._uapi with the UAPI header, so the structs and
 * ioctl numbers are the kernel's.  cffi releases the GIL around each call.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "flaxdev.h"
#include "flax_wloop.h"

struct flax_wloop {
	int fd;
	uint32_t nslots;
	uint32_t mask;			/* ring_entries - 1 */
	struct flax_ring *ring;		/* this worker's ring, in the region */
	uint32_t nheld;			/* jobs fetched, not completed */
	uint32_t npending;		/* completions not yet applied */
	uint32_t limit;			/* the last FETCH's max_batch */
	int64_t *slots;			/* [nslots]: the held jobs' slots */
	uint32_t *tags;			/* [nslots]: their tags */
	struct flax_completion *comp;	/* [nslots]: pending completions */
};

struct flax_wloop *flax_wloop_new(int fd, void *region, uint64_t region_size,
				  uint32_t worker, uint32_t nslots,
				  uint32_t ring_entries, uint64_t rings_offset,
				  uint64_t ring_stride)
{
	uint64_t ring_at = rings_offset + (uint64_t)worker * ring_stride;
	uint64_t ring_bytes = sizeof(struct flax_ring) +
			      (uint64_t)ring_entries * sizeof(struct flax_ring_entry);
	struct flax_wloop *w;

	if (!nslots || ring_entries < nslots ||
	    (ring_entries & (ring_entries - 1)) || ring_at % 8 ||
	    ring_at > region_size || ring_bytes > region_size - ring_at)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->fd = fd;
	w->nslots = nslots;
	w->mask = ring_entries - 1;
	w->limit = nslots;
	w->ring = (struct flax_ring *)((char *)region + ring_at);
	w->slots = calloc(nslots, sizeof(*w->slots));
	w->tags = calloc(nslots, sizeof(*w->tags));
	w->comp = calloc(nslots, sizeof(*w->comp));
	if (!w->slots || !w->tags || !w->comp) {
		flax_wloop_free(w);
		return NULL;
	}
	return w;
}

void flax_wloop_free(struct flax_wloop *w)
{
	if (!w)
		return;
	free(w->comp);
	free(w->tags);
	free(w->slots);
	free(w);
}

int64_t *flax_wloop_slots(struct flax_wloop *w)
{
	return w->slots;
}

uint32_t flax_wloop_held(const struct flax_wloop *w)
{
	return w->nheld;
}

uint32_t flax_wloop_limit(const struct flax_wloop *w)
{
	return w->limit;
}

uint32_t flax_wloop_pending(const struct flax_wloop *w)
{
	return w->npending;
}

int flax_wloop_fetch(struct flax_wloop *w, uint32_t max_jobs,
		     uint32_t max_wait_us, uint32_t timeout_ms, uint32_t flags,
		     uint32_t *done)
{
	struct flax_fetch req = {
		.completions = (uintptr_t)w->comp,
		.ncomplete = w->npending,
		.max_jobs = max_jobs,
		.max_wait_us = max_wait_us,
		.timeout_ms = timeout_ms,
		.flags = flags,
	};
	uint32_t i, held = w->nheld;
	int ret;

	*done = 0;
	if (max_jobs > w->nslots - held)
		return -EINVAL;
	ret = ioctl(w->fd, FLAX_IOC_FETCH, &req);
	if (ret < 0)
		ret = -errno;
	/* EINTR comes only before any completion was applied. */
	if (ret == -EINTR)
		return ret;
	*done = req.done;
	if (req.max_batch)
		w->limit = req.max_batch;
	/*
	 * Applied ones are gone; the rest failed (a bad completion, or the
	 * model is gone): sending them again would fail the same way.
	 */
	w->npending = 0;
	if (ret < 0)
		return ret;
	if (req.count > max_jobs)
		return -EBADMSG;
	for (i = 0; i < req.count; i++) {
		const struct flax_ring_entry *e =
			&w->ring->entries[(req.first + i) & w->mask];
		uint32_t slot = __atomic_load_n(&e->slot, __ATOMIC_RELAXED);

		if (slot >= w->nslots)
			return -EBADMSG;
		w->slots[held + i] = slot;
		w->tags[held + i] = __atomic_load_n(&e->tag, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&w->ring->head, req.first + req.count,
			 __ATOMIC_RELEASE);
	w->nheld = held + req.count;
	return (int)req.count;
}

void flax_wloop_complete(struct flax_wloop *w, int32_t status, uint32_t n)
{
	struct flax_completion *c = w->comp + w->npending;
	uint32_t i, rest;

	if (n > w->nheld)
		n = w->nheld;
	/* A slot is held by one job at a time: never more than nslots. */
	if (n > w->nslots - w->npending)
		n = w->nslots - w->npending;
	for (i = 0; i < n; i++) {
		c[i].slot = (uint32_t)w->slots[i];
		c[i].tag = w->tags[i];
		c[i].status = status;
		c[i].reserved = 0;
	}
	w->npending += n;
	rest = w->nheld - n;
	memmove(w->slots, w->slots + n, rest * sizeof(*w->slots));
	memmove(w->tags, w->tags + n, rest * sizeof(*w->tags));
	w->nheld = rest;
}

int flax_wloop_flush(struct flax_wloop *w)
{
	struct flax_complete req = {
		.completions = (uintptr_t)w->comp,
		.count = w->npending,
	};
	int ret;

	if (!w->npending)
		return 0;
	ret = ioctl(w->fd, FLAX_IOC_COMPLETE, &req);
	w->npending = 0;	/* applied, or failed for good */
	return ret < 0 ? -errno : (int)req.done;
}

void flax_wloop_copy(const struct flax_wloop *w, uint32_t n, void *dst,
		     uint64_t dst_stride, const void *src, uint64_t src_stride,
		     uint64_t nbytes)
{
	uint32_t i;

	if (n > w->nheld)
		n = w->nheld;
	for (i = 0; i < n; i++) {
		uint64_t s = (uint64_t)w->slots[i];

		memcpy((char *)dst + s * dst_stride,
		       (const char *)src + s * src_stride, nbytes);
	}
}
