/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flax_wloop - the hot path of a pyflaxdev worker, in C.
 *
 * A serving worker repeats one cycle per batch: FETCH (sending the last
 * batch's completions), read the new ring entries, run the model, queue
 * the completions.  Written with numpy and cffi structs that is a few
 * dozen Python-level operations per batch, which dominate a small batch's
 * round trip (especially under emulation); here the bookkeeping is one
 * call on each side of the model.  The state is opaque to Python; the
 * slot numbers of the jobs the worker holds are exposed as an int64 array
 * (numpy intp) for gathering and scattering.  A worker may run only the
 * first jobs it holds and keep the rest for its next batch (to run a
 * batch size it compiled rather than pad a few jobs to a much larger
 * one); the jobs it keeps stay first.
 *
 * This header is also the cffi cdef of these functions (bindings/
 * uapi_build.py reads it), so it holds only declarations cffi can parse.
 */
#ifndef FLAX_WLOOP_H
#define FLAX_WLOOP_H

#include <stddef.h>
#include <stdint.h>

struct flax_wloop;

/*
 * A loop over an attached worker fd whose region is mapped at @region
 * (@region_size bytes); @worker, @nslots, @ring_entries, @rings_offset and
 * @ring_stride are from its struct flax_region_layout, already checked.
 * NULL if the ring would not fit the region or memory runs out.
 */
struct flax_wloop *flax_wloop_new(int fd, void *region, uint64_t region_size,
				  uint32_t worker, uint32_t nslots,
				  uint32_t ring_entries, uint64_t rings_offset,
				  uint64_t ring_stride);
void flax_wloop_free(struct flax_wloop *w);

/* The held jobs' slot numbers, oldest first (capacity nslots). */
int64_t *flax_wloop_slots(struct flax_wloop *w);

/* Jobs held: fetched and not yet completed. */
uint32_t flax_wloop_held(const struct flax_wloop *w);

/*
 * The last FETCH's struct flax_fetch.max_batch (nslots before any): the
 * largest batch the worker should run.
 */
uint32_t flax_wloop_limit(const struct flax_wloop *w);

/*
 * FLAX_IOC_FETCH (@flags: FLAX_FETCH_*) with the pending completions,
 * then read the new ring entries (slots checked against nslots), append
 * them to the held jobs and mark them consumed.  @max_jobs is at most
 * nslots less the jobs held.  Returns the number of new jobs (0: none
 * came), or -errno: -EINTR keeps the completions for the next call (the
 * kernel applied none); -EBADMSG if the kernel handed out an impossible
 * entry.  The completions applied are dropped in every case, and so are
 * the rest when the call fails otherwise; *@done says how many applied.
 */
int flax_wloop_fetch(struct flax_wloop *w, uint32_t max_jobs,
		     uint32_t max_wait_us, uint32_t timeout_ms, uint32_t flags,
		     uint32_t *done);

/*
 * Queue a completion with @status (0 or -errno) for each of the first @n
 * held jobs (all of them if @n is larger), which are then no longer held.
 */
void flax_wloop_complete(struct flax_wloop *w, int32_t status, uint32_t n);

/* Completions queued and not yet sent. */
uint32_t flax_wloop_pending(const struct flax_wloop *w);

/* FLAX_IOC_COMPLETE of the pending completions: the count applied or -errno. */
int flax_wloop_flush(struct flax_wloop *w);

/*
 * For each of the first @n held jobs, copy @nbytes from @src + slot *
 * @src_stride to @dst + slot * @dst_stride (the identity model: input
 * slot to output slot).
 */
void flax_wloop_copy(const struct flax_wloop *w, uint32_t n, void *dst,
		     uint64_t dst_stride, const void *src, uint64_t src_stride,
		     uint64_t nbytes);

#endif /* FLAX_WLOOP_H */
