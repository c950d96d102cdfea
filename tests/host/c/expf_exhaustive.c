// SPDX-License-Identifier: GPL-2.0
/*
 * Exhaustive (or strided) check of flax_expf_bits() against the correctly
 * rounded binary32 exp.
 *
 * Build (tests/host/test_ops.py does this itself, into the build dir):
 *
 *	gcc -O2 -pthread -DFLAX_USERSPACE -ffp-contract=off -fno-strict-aliasing \
 *	    -fsanitize=undefined,float-cast-overflow -fno-sanitize-recover=all \
 *	    -Idriver tests/host/c/expf_exhaustive.c driver/flax_ops.c -lm \
 *	    -o expf_exhaustive
 *
 * Run: ./expf_exhaustive [STRIDE [THREADS]] checks the inputs 0, STRIDE,
 * 2 STRIDE, ... below 2^32 (STRIDE 1, the default, is all of them).  It prints
 * one line of "key=value" results and exits 0 if every result is correctly
 * rounded (hard cases excepted, see below), 1 otherwise.
 *
 * The reference (libm is fine here: this is test code, not flax_ops.c):
 *  1. y = exp((double)x) from glibc (error < 1 double ulp), rounded to float;
 *  2. if y lies within 64 double ulps of a rounding boundary (the midpoint
 *     between two adjacent floats, or the overflow/underflow thresholds), the
 *     rounding direction is decided by expl() instead (x87, 64-bit
 *     significand);
 *  3. if even expl() is within 64 of its ulps of the boundary, the input is a
 *     "hard case": counted and reported, not judged.
 * NaN inputs must give a NaN.
 *
 * Reported: checked, mismatches (not correctly rounded), max_ulp (largest
 * distance in ulps from the reference), nan_errors, close (inputs decided by
 * expl() in step 2), hard (undecided, step 3), libm_mismatch (inputs where
 * glibc's double exp rounded to float -- what numpy's float64 reference does --
 * is not correctly rounded), plus the first few mismatching inputs.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flax_ops.h"

struct job {
	uint64_t start;
	uint64_t stride;
	uint64_t step;		/* distance between this thread's inputs */
	uint64_t checked;
	uint64_t mismatches;
	uint64_t libm_mismatch;
	uint64_t close;
	uint64_t hard;
	uint64_t nan_errors;
	uint64_t max_ulp;
	uint32_t first_bad[8];
	unsigned int nbad;
};

static float f32(uint32_t b)
{
	float f;

	memcpy(&f, &b, sizeof(f));
	return f;
}

static uint32_t bits32(float f)
{
	uint32_t b;

	memcpy(&b, &f, sizeof(b));
	return b;
}

/* Ordered integer of a non-NaN float: differences count ulps. */
static int64_t ordered(uint32_t b)
{
	return (b & 0x80000000u) ? -(int64_t)(b & 0x7fffffffu) : (int64_t)b;
}

/*
 * The rounding boundary between float(y) and its neighbour on y's side, for
 * a finite y > 0: a midpoint between adjacent floats, 2^-150 below the
 * smallest subnormal, or 2^128 - 2^103 above FLT_MAX (the overflow
 * threshold).  Every one of them is exact in double.
 */
static double boundary(double y)
{
	float z = (float)y;
	double lo, hi;

	if (isinf(z))
		return 0x1p128 - 0x1p103;
	if ((double)z <= y) {
		lo = z;
		hi = nextafterf(z, INFINITY);
		if (isinf(hi))
			hi = 0x1p128;
	} else {
		hi = z;
		lo = nextafterf(z, 0.0f);
	}
	return (lo + hi) * 0.5;
}

static uint32_t reference(float x, int *libm_wrong, int *close, int *hard)
{
	double y = exp((double)x);
	long double yl, bl;
	uint32_t r;
	double b;

	*libm_wrong = 0;
	*close = 0;
	*hard = 0;
	r = bits32((float)y);
	if (isinf(y) || y == 0.0)	/* far beyond float's range either way */
		return r;
	b = boundary(y);
	if (fabs(y - b) > 64 * (nextafter(y, INFINITY) - y))
		return r;

	*close = 1;
	yl = expl((long double)x);
	bl = (long double)b;	/* exact: a float midpoint fits a double */
	if (fabsl(yl - bl) <= 64 * (nextafterl(yl, INFINITY) - yl)) {
		*hard = 1;
		return r;
	}
	/* Round by hand from the side of the boundary expl() is on. */
	if (yl > bl)
		r = bits32((float)nextafter(b, INFINITY));
	else
		r = bits32((float)nextafter(b, 0.0));
	if (r != bits32((float)y))
		*libm_wrong = 1;
	return r;
}

static void *run(void *arg)
{
	struct job *j = arg;
	uint64_t i;

	for (i = j->start; i < (1ull << 32); i += j->step) {
		uint32_t x = (uint32_t)i, got, want;
		int libm_wrong, close, hard;
		int64_t d;

		got = flax_expf_bits(x);
		j->checked++;
		if ((x & 0x7fffffffu) > 0x7f800000u) {
			if ((got & 0x7fffffffu) <= 0x7f800000u)
				j->nan_errors++;
			continue;
		}
		want = reference(f32(x), &libm_wrong, &close, &hard);
		j->libm_mismatch += libm_wrong;
		j->close += close;
		if (hard) {
			j->hard++;
			continue;
		}
		if (got == want)
			continue;
		j->mismatches++;
		d = ordered(got) - ordered(want);
		if (d < 0)
			d = -d;
		if ((uint64_t)d > j->max_ulp)
			j->max_ulp = (uint64_t)d;
		if (j->nbad < 8)
			j->first_bad[j->nbad++] = x;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	uint64_t stride = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	unsigned int nthreads = argc > 2 ? (unsigned int)strtoul(argv[2], NULL, 0) : 2;
	struct job jobs[64], total;
	pthread_t tids[64];
	unsigned int t, k;

	if (!stride || !nthreads || nthreads > 64) {
		fprintf(stderr, "usage: %s [STRIDE [THREADS (1-64)]]\n", argv[0]);
		return 2;
	}
	memset(jobs, 0, sizeof(jobs));
	for (t = 0; t < nthreads; t++) {
		jobs[t].start = t * stride;
		jobs[t].stride = stride;
		jobs[t].step = stride * nthreads;
		if (pthread_create(&tids[t], NULL, run, &jobs[t])) {
			perror("pthread_create");
			return 2;
		}
	}
	memset(&total, 0, sizeof(total));
	for (t = 0; t < nthreads; t++) {
		pthread_join(tids[t], NULL);
		total.checked += jobs[t].checked;
		total.mismatches += jobs[t].mismatches;
		total.libm_mismatch += jobs[t].libm_mismatch;
		total.close += jobs[t].close;
		total.hard += jobs[t].hard;
		total.nan_errors += jobs[t].nan_errors;
		if (jobs[t].max_ulp > total.max_ulp)
			total.max_ulp = jobs[t].max_ulp;
		for (k = 0; k < jobs[t].nbad && total.nbad < 8; k++)
			total.first_bad[total.nbad++] = jobs[t].first_bad[k];
	}
	printf("checked=%" PRIu64 " mismatches=%" PRIu64 " max_ulp=%" PRIu64
	       " nan_errors=%" PRIu64 " close=%" PRIu64 " hard=%" PRIu64
	       " libm_mismatch=%" PRIu64,
	       total.checked, total.mismatches, total.max_ulp, total.nan_errors,
	       total.close, total.hard, total.libm_mismatch);
	for (k = 0; k < total.nbad; k++)
		printf(" bad=0x%08x", total.first_bad[k]);
	printf("\n");
	return total.mismatches || total.nan_errors ? 1 : 0;
}
