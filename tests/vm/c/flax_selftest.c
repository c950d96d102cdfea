// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev selftest, run inside the VM with flaxdev.ko loaded.
 *
 *	flax_selftest all			every test below but modload
 *	flax_selftest TEST...			info create digits raw
 *						concurrent errors kill destroy
 *	flax_selftest modload PATH/flaxdev.ko	rmmod refused while an fd is
 *						open, 20 insmod/rmmod cycles
 *
 * Prints one line per check ("ok - ..." or "FAIL - ...") and a closing
 * "N passed, N failed"; exits 1 if any check failed, 4 if /dev/flax is
 * missing.  Includes only the UAPI header.
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flaxdev.h"

#define DEV		FLAX_CONTROL_NODE
#define SYSFS_MODELS	"/sys/class/misc/" FLAX_DEVICE_NAME "/models"

static int npassed, nfailed;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void report(bool ok, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	printf("%s - ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (ok)
		npassed++;
	else
		nfailed++;
	pthread_mutex_unlock(&out_lock);
}

#define CHECK(cond, ...)	report(!!(cond), __VA_ARGS__)

/* Checks that an ioctl-style call failed with errno @want. */
#define CHECK_ERR(expr, want, what) do {				\
	errno = 0;							\
	long __r = (long)(expr);					\
	int __e = errno;						\
	report(__r == -1 && __e == (want), "%s: %s (got %ld, %s)",	\
	       what, strerrorname_np(want), __r,			\
	       __e ? strerrorname_np(__e) : "no error");		\
} while (0)

static uint32_t f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float u2f(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void msleep(unsigned int ms)
{
	usleep(ms * 1000);
}

static int dev_open(void)
{
	int fd = open(DEV, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		perror(DEV);
		exit(1);
	}
	return fd;
}

/* Model descriptions. */

static void spec(struct flax_tensor_spec *s, uint32_t dtype, uint32_t ndim,
		 uint32_t d0, uint32_t d1)
{
	memset(s, 0, sizeof(*s));
	s->dtype = dtype;
	s->ndim = ndim;
	s->dims[0] = d0;
	if (ndim > 1)
		s->dims[1] = d1;
}

/* A float32 [n] -> float32 [n] model without pre or post processing. */
static void desc_vec(struct flax_model_desc *d, const char *name, uint32_t n)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	spec(&d->input, FLAX_DTYPE_FLOAT32, 1, n, 0);
	spec(&d->output, FLAX_DTYPE_FLOAT32, 1, n, 0);
}

static int model_create(int fd, struct flax_model_desc *d)
{
	return ioctl(fd, FLAX_IOC_MODEL_CREATE, d) ? -errno : (int)d->id;
}

static int model_destroy(int fd, uint32_t id)
{
	struct flax_model_ref ref = { .model_id = id };

	return ioctl(fd, FLAX_IOC_MODEL_DESTROY, &ref) ? -errno : 0;
}

static int infer(int fd, uint32_t id, const void *in, uint32_t in_size,
		 void *out, uint32_t *out_size, uint32_t timeout_ms)
{
	struct flax_infer req = {
		.model_id = id,
		.input = (uintptr_t)in,
		.output = (uintptr_t)out,
		.input_size = in_size,
		.output_size = *out_size,
		.timeout_ms = timeout_ms,
	};
	int ret = ioctl(fd, FLAX_IOC_INFER, &req) ? -errno : 0;

	*out_size = req.output_size;
	return ret;
}

static int sysfs_read(const char *model, const char *attr, char *buf,
		      size_t len)
{
	char path[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), SYSFS_MODELS "/%s/%s", model, attr);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = 0;
	return 0;
}

static long sysfs_num(const char *model, const char *attr)
{
	char buf[64];

	if (sysfs_read(model, attr, buf, sizeof(buf)))
		return -1;
	return strtol(buf, NULL, 10);
}

/* The digits-like model: uint8 [8, 8], per-feature normalisation, a
 * linear layer to 10 logits in the worker, softmax + top-3 in the kernel.
 */
#define DIG_IN		64
#define DIG_OUT		10
#define DIG_K		3

static uint32_t dig_mean[DIG_IN], dig_std[DIG_IN];
static const float dig_scale = 1.0f / 16.0f;

static float dig_w(int i, int j)
{
	return (float)((i * 7 + j * 13) % 17 - 8) / 8.0f;
}

static void dig_init(void)
{
	for (int i = 0; i < DIG_IN; i++) {
		dig_mean[i] = f2u(0.25f + (float)(i % 5) * 0.05f);
		dig_std[i] = f2u(0.5f + (float)(i % 7) * 0.125f);
	}
}

static void desc_digits(struct flax_model_desc *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	spec(&d->input, FLAX_DTYPE_UINT8, 2, 8, 8);
	spec(&d->output, FLAX_DTYPE_FLOAT32, 1, DIG_OUT, 0);
	d->pre_op = FLAX_PRE_NORMALIZE;
	d->norm_count = DIG_IN;
	d->norm_scale = f2u(dig_scale);
	d->norm_mean = (uintptr_t)dig_mean;
	d->norm_std = (uintptr_t)dig_std;
	d->post_ops[0] = FLAX_POST_SOFTMAX;
	d->post_ops[1] = FLAX_POST_TOPK;
	d->topk = DIG_K;
}

static void dig_logits(const float *x, float *logits)
{
	for (int j = 0; j < DIG_OUT; j++) {
		float acc = 0.0f;

		for (int i = 0; i < DIG_IN; i++)
			acc += x[i] * dig_w(i, j);
		logits[j] = acc;
	}
}

/* The reference: numpy's order of float32 operations. */
static void dig_reference(const uint8_t *img, struct flax_topk_entry *top)
{
	float x[DIG_IN], logits[DIG_OUT];
	double p[DIG_OUT], sum = 0, mx;
	bool used[DIG_OUT] = { 0 };

	for (int i = 0; i < DIG_IN; i++) {
		float v = (float)img[i] * dig_scale;

		v = v - u2f(dig_mean[i]);
		x[i] = v / u2f(dig_std[i]);
	}
	dig_logits(x, logits);
	mx = logits[0];
	for (int j = 1; j < DIG_OUT; j++)
		mx = logits[j] > mx ? logits[j] : mx;
	for (int j = 0; j < DIG_OUT; j++) {
		p[j] = exp((double)logits[j] - mx);
		sum += p[j];
	}
	for (int k = 0; k < DIG_K; k++) {
		int best = -1;

		for (int j = 0; j < DIG_OUT; j++)
			if (!used[j] && (best < 0 || p[j] > p[best]))
				best = j;
		used[best] = true;
		top[k].index = best;
		top[k].score = f2u((float)(p[best] / sum));
	}
}

/* Workers: a thread with its own fd, attached and mapped. */

enum wmode { W_ECHO, W_DIGITS, W_STATUS, W_HOLD };

struct worker {
	int fd;
	uint32_t model_id;
	struct flax_worker_attach att;
	uint8_t *region;
	struct flax_ring *ring;
	pthread_t thread;
	bool stop;		/* __atomic: set by the test, read by the thread */
	enum wmode mode;
	int status;
	uint32_t max_jobs, max_wait_us;
	unsigned long jobs, batches, bad_ring;
	int err;
};

static void *in_slot(struct worker *w, uint32_t slot)
{
	return w->region + w->att.layout.in_offset +
	       (size_t)slot * w->att.layout.in_slot_size;
}

static void *out_slot(struct worker *w, uint32_t slot)
{
	return w->region + w->att.layout.out_offset +
	       (size_t)slot * w->att.layout.out_slot_size;
}

static void work_one(struct worker *w, uint32_t slot)
{
	const float *in = in_slot(w, slot);
	float *out = out_slot(w, slot);
	uint32_t nin = w->att.layout.in_bytes / 4;
	uint32_t nout = w->att.layout.out_bytes / 4;

	switch (w->mode) {
	case W_DIGITS:
		dig_logits(in, out);
		break;
	case W_ECHO:
		for (uint32_t i = 0; i < nout; i++)
			out[i] = in[i % nin] * 2.0f + 1.0f;
		break;
	default:
		break;
	}
}

static int worker_attach(struct worker *w, uint32_t model_id)
{
	memset(&w->att, 0, sizeof(w->att));
	w->fd = dev_open();
	w->model_id = model_id;
	w->att.model_id = model_id;
	if (ioctl(w->fd, FLAX_IOC_WORKER_ATTACH, &w->att))
		return -errno;
	w->region = mmap(NULL, w->att.layout.region_size,
			 PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
	if (w->region == MAP_FAILED)
		return -errno;
	w->ring = (struct flax_ring *)(w->region + w->att.layout.rings_offset +
				       w->att.worker * w->att.layout.ring_stride);
	return 0;
}

static void worker_detach(struct worker *w)
{
	munmap(w->region, w->att.layout.region_size);
	close(w->fd);
}

/* Reads the ring entries a FETCH returned. */
static uint32_t ring_read(struct worker *w, const struct flax_fetch *f,
			  struct flax_ring_entry *e)
{
	uint32_t mask = w->att.layout.ring_entries - 1;
	uint32_t tail = __atomic_load_n(&w->ring->tail, __ATOMIC_ACQUIRE);

	if (tail != f->first + f->count)
		w->bad_ring++;
	for (uint32_t i = 0; i < f->count; i++)
		e[i] = w->ring->entries[(f->first + i) & mask];
	w->ring->head = tail;
	return f->count;
}

static void *worker_loop(void *arg)
{
	struct worker *w = arg;
	uint32_t nslots = w->att.layout.nslots;
	struct flax_completion *c = calloc(nslots, sizeof(*c));
	struct flax_ring_entry *e = calloc(nslots, sizeof(*e));
	uint32_t nc = 0;

	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
		struct flax_fetch f = {
			.completions = (uintptr_t)c,
			.ncomplete = nc,
			.max_jobs = w->max_jobs ?: 1,
			.max_wait_us = w->max_wait_us,
			.timeout_ms = 50,
		};

		if (ioctl(w->fd, FLAX_IOC_FETCH, &f)) {
			if (errno == EINTR)
				continue;
			w->err = errno;
			printf("# worker %u: FETCH: %s (ncomplete %u)\n",
			       w->att.worker, strerrorname_np(errno), nc);
			break;
		}
		if (f.done != nc)
			w->bad_ring++;
		nc = 0;
		if (!f.count)
			continue;
		w->batches++;
		ring_read(w, &f, e);
		for (uint32_t i = 0; i < f.count; i++) {
			w->jobs++;
			if (w->mode == W_HOLD)
				continue;
			work_one(w, e[i].slot);
			c[nc].slot = e[i].slot;
			c[nc].tag = e[i].tag;
			c[nc].status = w->mode == W_STATUS ? w->status : 0;
			c[nc].reserved = 0;
			nc++;
		}
	}
	if (nc) {
		struct flax_complete cc = {
			.completions = (uintptr_t)c, .count = nc,
		};

		ioctl(w->fd, FLAX_IOC_COMPLETE, &cc);
	}
	free(c);
	free(e);
	return NULL;
}

static int worker_start(struct worker *w, uint32_t model_id, enum wmode mode,
			uint32_t max_jobs, uint32_t max_wait_us)
{
	int ret;

	memset(w, 0, sizeof(*w));
	w->mode = mode;
	w->max_jobs = max_jobs;
	w->max_wait_us = max_wait_us;
	ret = worker_attach(w, model_id);
	if (ret)
		return ret;
	return -pthread_create(&w->thread, NULL, worker_loop, w);
}

static void worker_stop(struct worker *w)
{
	__atomic_store_n(&w->stop, true, __ATOMIC_RELAXED);
	pthread_join(w->thread, NULL);
	worker_detach(w);
	if (w->err)
		printf("# worker loop ended with %s\n", strerrorname_np(w->err));
}

/* Tests. */

static void test_info(void)
{
	struct flax_info info;
	uint8_t big[sizeof(info) + 16];
	int fd = dev_open();
	unsigned int cmd;

	memset(&info, 0xff, sizeof(info));
	CHECK(!ioctl(fd, FLAX_IOC_INFO, &info), "info: INFO succeeds");
	CHECK(info.abi_version == FLAX_ABI_VERSION, "info: abi_version %u",
	      info.abi_version);
	CHECK(info.max_models == 16 && info.max_slots == 256 &&
	      info.max_slot_bytes == 4u << 20,
	      "info: default limits (%u models, %u slots, %u bytes)",
	      info.max_models, info.max_slots, info.max_slot_bytes);
	CHECK(info.max_workers == FLAX_MAX_WORKERS &&
	      info.topk_max == FLAX_TOPK_MAX && info.name_max == FLAX_NAME_MAX &&
	      info.features == FLAX_F_ALL, "info: constants");
	CHECK(info.features & FLAX_F_FETCH_NOWAIT, "info: FETCH_NOWAIT feature");

	/* A newer caller's larger struct: the tail is zeroed. */
	memset(big, 0xff, sizeof(big));
	cmd = _IOC(_IOC_READ, FLAX_IOC_MAGIC, _IOC_NR(FLAX_IOC_INFO), sizeof(big));
	CHECK(!ioctl(fd, cmd, big), "info: larger struct accepted");
	CHECK(big[sizeof(info)] == 0 && big[sizeof(big) - 1] == 0,
	      "info: larger struct's tail zeroed");

	cmd = _IOC(_IOC_READ, FLAX_IOC_MAGIC, _IOC_NR(FLAX_IOC_INFO), 32);
	CHECK_ERR(ioctl(fd, cmd, big), EINVAL, "info: struct below VER0");
	cmd = _IOC(_IOC_WRITE, FLAX_IOC_MAGIC, _IOC_NR(FLAX_IOC_INFO), sizeof(info));
	CHECK_ERR(ioctl(fd, cmd, big), ENOTTY, "info: wrong direction");
	cmd = _IOC(_IOC_READ, FLAX_IOC_MAGIC, 0x7f, sizeof(info));
	CHECK_ERR(ioctl(fd, cmd, big), ENOTTY, "unknown ioctl number");
	cmd = _IOC(_IOC_READ, 'x', _IOC_NR(FLAX_IOC_INFO), sizeof(info));
	CHECK_ERR(ioctl(fd, cmd, big), ENOTTY, "foreign ioctl type");
	CHECK_ERR(ioctl(fd, FLAX_IOC_INFO, NULL), EFAULT, "info: NULL struct");
	close(fd);
}

static void create_bad(int fd, struct flax_model_desc *d, int want,
		       const char *what)
{
	char name[64];

	snprintf(name, sizeof(name), "create: %s", what);
	CHECK_ERR(ioctl(fd, FLAX_IOC_MODEL_CREATE, d), want, name);
}

static void test_create(void)
{
	int fd = dev_open();
	struct flax_model_desc d, g;
	uint32_t mean[10], std[10], gm[64], gs[64];
	char buf[128];
	int id, ids[64], n;
	struct flax_info info;

	dig_init();
	desc_digits(&d, "cr.ok-1_A");
	id = model_create(fd, &d);
	CHECK(id > 0, "create: digits model (id %d)", id);
	CHECK(d.result_size == 8 + 8 * DIG_K, "create: result_size %u",
	      d.result_size);
	desc_digits(&d, "cr.ok-1_A");
	create_bad(fd, &d, EEXIST, "duplicate name");

	/* GET fills everything, and the norm arrays on request. */
	memset(&g, 0, sizeof(g));
	strcpy(g.name, "cr.ok-1_A");
	g.norm_mean = (uintptr_t)gm;
	g.norm_std = (uintptr_t)gs;
	CHECK(!ioctl(fd, FLAX_IOC_MODEL_GET, &g), "get: by name");
	CHECK(g.id == (uint32_t)id && g.input.dtype == FLAX_DTYPE_UINT8 &&
	      g.input.ndim == 2 && g.input.dims[0] == 8 && g.input.dims[1] == 8 &&
	      g.output.dims[0] == DIG_OUT && g.pre_op == FLAX_PRE_NORMALIZE &&
	      g.norm_count == DIG_IN && g.norm_scale == f2u(dig_scale) &&
	      g.post_ops[0] == FLAX_POST_SOFTMAX && g.post_ops[1] == FLAX_POST_TOPK &&
	      g.topk == DIG_K && g.nslots == 64 && g.timeout_ms == 5000 &&
	      g.result_size == 32, "get: fields");
	CHECK(!memcmp(gm, dig_mean, sizeof(gm)) && !memcmp(gs, dig_std, sizeof(gs)),
	      "get: norm mean/std copied out");
	memset(&g, 0, sizeof(g));
	strcpy(g.name, "nosuchmodel");
	CHECK_ERR(ioctl(fd, FLAX_IOC_MODEL_GET, &g), ENOENT, "get: unknown name");
	g.flags = 1;
	CHECK_ERR(ioctl(fd, FLAX_IOC_MODEL_GET, &g), EINVAL, "get: flags");

	/* sysfs */
	CHECK(sysfs_num("cr.ok-1_A", "id") == id, "sysfs: id");
	sysfs_read("cr.ok-1_A", "input_shape", buf, sizeof(buf));
	CHECK(!strcmp(buf, "8 8"), "sysfs: input_shape \"%s\"", buf);
	sysfs_read("cr.ok-1_A", "input_dtype", buf, sizeof(buf));
	CHECK(!strcmp(buf, "uint8"), "sysfs: input_dtype \"%s\"", buf);
	sysfs_read("cr.ok-1_A", "output_shape", buf, sizeof(buf));
	CHECK(!strcmp(buf, "10"), "sysfs: output_shape \"%s\"", buf);
	sysfs_read("cr.ok-1_A", "pre_op", buf, sizeof(buf));
	CHECK(!strcmp(buf, "normalize"), "sysfs: pre_op \"%s\"", buf);
	sysfs_read("cr.ok-1_A", "post_ops", buf, sizeof(buf));
	CHECK(!strcmp(buf, "softmax topk"), "sysfs: post_ops \"%s\"", buf);
	CHECK(sysfs_num("cr.ok-1_A", "topk") == DIG_K &&
	      sysfs_num("cr.ok-1_A", "nslots") == 64 &&
	      sysfs_num("cr.ok-1_A", "timeout_ms") == 5000 &&
	      sysfs_num("cr.ok-1_A", "requests") == 0 &&
	      sysfs_num("cr.ok-1_A", "completed") == 0 &&
	      sysfs_num("cr.ok-1_A", "errors") == 0 &&
	      sysfs_num("cr.ok-1_A", "timeouts") == 0 &&
	      sysfs_num("cr.ok-1_A", "queued") == 0 &&
	      sysfs_num("cr.ok-1_A", "workers") == 0, "sysfs: numbers");

	/* Validation, one field at a time. */
	desc_digits(&d, "bad");
	d.flags = 1u << 31;
	create_bad(fd, &d, EINVAL, "undefined flag");
	desc_digits(&d, "bad");
	d.flags = FLAX_MODEL_NORM_CLAMP;
	d.clamp_lo = 0x3f800000; /* 1.0 > 0.5: an empty range */
	d.clamp_hi = 0x3f000000;
	create_bad(fd, &d, EINVAL, "clamp range empty");
	desc_digits(&d, "bad");
	d.flags = FLAX_MODEL_NORM_CLAMP;
	d.clamp_lo = 0x7fc00000; /* NaN */
	create_bad(fd, &d, EINVAL, "clamp bound NaN");
	desc_digits(&d, "bad");
	d.clamp_hi = 0x3f800000;
	create_bad(fd, &d, EINVAL, "clamp bound without the flag");
	desc_digits(&d, "bad");
	d.reserved[0] = 1;
	create_bad(fd, &d, EINVAL, "reserved[0]");
	desc_digits(&d, "bad");
	d.text_max = 100;
	create_bad(fd, &d, EINVAL, "text_max without tokenize");
	desc_digits(&d, "bad");
	d.reserved[1] = 1;
	create_bad(fd, &d, EINVAL, "reserved");
	desc_digits(&d, "bad");
	d.worker_post = 9;
	create_bad(fd, &d, EINVAL, "worker_post past the chain");
	desc_digits(&d, "bad");
	d.__pad0 = 1;
	create_bad(fd, &d, EINVAL, "pad");
	desc_digits(&d, "");
	create_bad(fd, &d, EINVAL, "empty name");
	desc_digits(&d, "sp ace");
	create_bad(fd, &d, EINVAL, "name with a space");
	desc_digits(&d, "sl/ash");
	create_bad(fd, &d, EINVAL, "name with a slash");
	desc_digits(&d, "caf\xc3\xa9");
	create_bad(fd, &d, EINVAL, "non-ASCII name");
	desc_digits(&d, "..");
	create_bad(fd, &d, EINVAL, "name ..");
	desc_digits(&d, "tail");
	d.name[10] = 'x';
	create_bad(fd, &d, EINVAL, "garbage after the NUL");
	desc_digits(&d, "x");
	memset(d.name, 'a', FLAX_NAME_MAX);
	create_bad(fd, &d, EINVAL, "unterminated name");
	desc_digits(&d, "bad");
	d.input.dtype = 99;
	create_bad(fd, &d, EINVAL, "input dtype");
	desc_digits(&d, "bad");
	d.output.dtype = FLAX_DTYPE_UINT8;
	create_bad(fd, &d, EINVAL, "output dtype uint8");
	desc_digits(&d, "bad");
	d.input.ndim = 0;
	create_bad(fd, &d, EINVAL, "ndim 0");
	desc_digits(&d, "bad");
	d.input.ndim = 7;
	create_bad(fd, &d, EINVAL, "ndim 7");
	desc_digits(&d, "bad");
	d.input.dims[1] = 0;
	create_bad(fd, &d, EINVAL, "dim 0");
	desc_digits(&d, "bad");
	d.input.dims[4] = 2;
	create_bad(fd, &d, EINVAL, "trailing dim not 0");
	desc_vec(&d, "bad", 1);
	d.input.ndim = 6;
	for (int i = 0; i < 6; i++)
		d.input.dims[i] = 65536;
	create_bad(fd, &d, EINVAL, "element count overflow");
	desc_vec(&d, "bad", (4u << 20) / 4 + 1);
	create_bad(fd, &d, EINVAL, "slot above max_slot_bytes");
	desc_digits(&d, "bad");
	d.input.dims[0] = 1u << 19;	/* uint8 fits, float32 after normalize does not */
	d.norm_count = 1;
	create_bad(fd, &d, EINVAL, "normalized slot above max_slot_bytes");
	desc_digits(&d, "bad");
	d.pre_op = 2;
	create_bad(fd, &d, EINVAL, "pre_op");
	desc_digits(&d, "bad");
	d.norm_count = 7;
	create_bad(fd, &d, EINVAL, "norm_count");
	desc_digits(&d, "bad");
	d.norm_std = 0;
	create_bad(fd, &d, EINVAL, "norm_std NULL");
	desc_digits(&d, "bad");
	d.norm_mean = 8;
	create_bad(fd, &d, EFAULT, "norm_mean bad pointer");
	desc_digits(&d, "bad");
	d.norm_scale = 0x7f800000;
	create_bad(fd, &d, EINVAL, "norm_scale inf");
	for (int i = 0; i < 10; i++) {
		mean[i] = f2u(0.5f);
		std[i] = f2u(1.0f);
	}
	desc_digits(&d, "bad");
	d.norm_count = 8;
	d.norm_mean = (uintptr_t)mean;
	d.norm_std = (uintptr_t)std;
	std[3] = f2u(0.0f);
	create_bad(fd, &d, EINVAL, "std 0");
	std[3] = f2u(-1.0f);
	create_bad(fd, &d, EINVAL, "std negative");
	std[3] = 0x7fc00000;
	create_bad(fd, &d, EINVAL, "std NaN");
	std[3] = 0x7f800000;
	create_bad(fd, &d, EINVAL, "std inf");
	std[3] = f2u(1.0f);
	mean[2] = 0xffc00000;
	create_bad(fd, &d, EINVAL, "mean NaN");
	mean[2] = f2u(0.5f);
	desc_vec(&d, "bad", 4);
	d.norm_count = 1;
	create_bad(fd, &d, EINVAL, "norm_count without normalize");
	desc_digits(&d, "bad");
	d.post_ops[0] = FLAX_POST_TOPK;
	d.post_ops[1] = FLAX_POST_SOFTMAX;
	create_bad(fd, &d, EINVAL, "post chain topk,softmax");
	d.post_ops[0] = FLAX_POST_SOFTMAX;
	d.post_ops[1] = FLAX_POST_SOFTMAX;
	create_bad(fd, &d, EINVAL, "post chain softmax,softmax");
	d.post_ops[1] = FLAX_POST_END;
	d.post_ops[2] = FLAX_POST_TOPK;
	create_bad(fd, &d, EINVAL, "post op after END");
	desc_digits(&d, "bad");
	d.post_ops[1] = 9;
	create_bad(fd, &d, EINVAL, "unknown post op");
	desc_digits(&d, "bad");
	d.topk = 0;
	create_bad(fd, &d, EINVAL, "topk 0 with TOPK");
	d.topk = 11;
	create_bad(fd, &d, EINVAL, "topk above output elements");
	desc_vec(&d, "bad", 100);
	d.post_ops[0] = FLAX_POST_TOPK;
	d.topk = 65;
	create_bad(fd, &d, EINVAL, "topk above FLAX_TOPK_MAX");
	desc_vec(&d, "bad", 100);
	d.topk = 3;
	create_bad(fd, &d, EINVAL, "topk without TOPK");
	desc_vec(&d, "bad", 4);
	d.nslots = 257;
	create_bad(fd, &d, EINVAL, "nslots above max_slots");

	/* Extensible struct: E2BIG, zero tail accepted. */
	{
		uint8_t big[sizeof(d) + 8];
		unsigned int cmd = _IOC(_IOC_READ | _IOC_WRITE, FLAX_IOC_MAGIC,
					_IOC_NR(FLAX_IOC_MODEL_CREATE), sizeof(big));

		desc_vec(&d, "cr.big", 4);
		memset(big, 0, sizeof(big));
		memcpy(big, &d, sizeof(d));
		big[sizeof(d) + 3] = 1;
		CHECK_ERR(ioctl(fd, cmd, big), E2BIG, "create: non-zero tail");
		big[sizeof(d) + 3] = 0;
		CHECK(!ioctl(fd, cmd, big), "create: larger struct, zero tail");
		memcpy(&d, big, sizeof(d));
		CHECK(model_destroy(fd, d.id) == 0, "destroy: cr.big");
	}

	/* max_models: ENOSPC, then the names come back after destroy. */
	ioctl(fd, FLAX_IOC_INFO, &info);
	n = 0;
	for (uint32_t i = info.nmodels; i < info.max_models; i++) {
		char name[FLAX_NAME_MAX];

		snprintf(name, sizeof(name), "cr.many%u", i);
		desc_vec(&d, name, 4);
		ids[n] = model_create(fd, &d);
		if (ids[n] > 0)
			n++;
	}
	CHECK(n == (int)(info.max_models - info.nmodels), "create: up to max_models");
	desc_vec(&d, "cr.onetoomany", 4);
	create_bad(fd, &d, ENOSPC, "beyond max_models");
	while (n--)
		model_destroy(fd, ids[n]);
	CHECK(model_create(fd, &d) > 0, "create: after destroying");
	model_destroy(fd, d.id);

	CHECK(model_destroy(fd, id) == 0, "destroy: digits model");
	CHECK(model_destroy(fd, id) == -ENOENT, "destroy: twice gives ENOENT");
	CHECK(model_destroy(fd, 0) == -ENOENT, "destroy: id 0 gives ENOENT");
	{
		struct flax_model_ref ref = { .model_id = 1, .flags = 1 };

		CHECK_ERR(ioctl(fd, FLAX_IOC_MODEL_DESTROY, &ref), EINVAL,
			  "destroy: flags");
	}
	CHECK(sysfs_read("cr.ok-1_A", "id", buf, sizeof(buf)) == -ENOENT,
	      "sysfs: directory gone after destroy");
	close(fd);
}

static void test_digits(void)
{
	int fd = dev_open();
	struct flax_model_desc d;
	struct worker w;
	int id, bad = 0, i;
	unsigned int seed = 1;

	dig_init();
	desc_digits(&d, "digits");
	id = model_create(fd, &d);
	CHECK(id > 0, "digits: create");
	CHECK(worker_start(&w, id, W_DIGITS, 4, 100) == 0, "digits: worker up");
	CHECK(sysfs_num("digits", "workers") == 1, "digits: sysfs workers 1");

	for (i = 0; i < 50; i++) {
		uint8_t img[DIG_IN];
		struct {
			struct flax_topk_result r;
			struct flax_topk_entry e[DIG_K];
		} res;
		struct flax_topk_entry ref[DIG_K];
		uint32_t size = sizeof(res);
		int ret;

		for (int j = 0; j < DIG_IN; j++)
			img[j] = rand_r(&seed) % 17;
		memset(&res, 0xaa, sizeof(res));
		ret = infer(fd, id, img, sizeof(img), &res, &size, 0);
		dig_reference(img, ref);
		if (ret || size != sizeof(res) || res.r.count != DIG_K ||
		    res.r.reserved) {
			if (bad++ < 3)
				printf("# input %d: ret %d size %u count %u\n",
				       i, ret, size, res.r.count);
			continue;
		}
		for (int k = 0; k < DIG_K; k++) {
			if (res.e[k].index != ref[k].index ||
			    fabsf(u2f(res.e[k].score) - u2f(ref[k].score)) > 1e-6f) {
				if (bad++ < 3)
					printf("# input %d rank %d: got %u %.9g want %u %.9g\n",
					       i, k, res.e[k].index, u2f(res.e[k].score),
					       ref[k].index, u2f(ref[k].score));
			}
		}
	}
	CHECK(!bad, "digits: 50 top-3 results match the reference (%d bad)", bad);
	CHECK(sysfs_num("digits", "requests") == 50 &&
	      sysfs_num("digits", "completed") == 50 &&
	      sysfs_num("digits", "errors") == 0, "digits: sysfs counters");
	worker_stop(&w);
	CHECK(!w.bad_ring, "digits: ring tail and done consistent");
	CHECK(model_destroy(fd, id) == 0, "digits: destroy");
	close(fd);
}

static void test_raw(void)
{
	int fd = dev_open();
	struct flax_model_desc d;
	struct worker w;
	float in[16], out[16];
	uint32_t size;
	int id, ret;
	bool ok;

	/* Raw float vector out. */
	desc_vec(&d, "raw", 16);
	d.input.ndim = 2;
	d.input.dims[0] = 4;
	d.input.dims[1] = 4;
	id = model_create(fd, &d);
	CHECK(id > 0 && d.result_size == 64, "raw: create, result_size %u",
	      d.result_size);
	worker_start(&w, id, W_ECHO, 1, 0);
	for (int i = 0; i < 16; i++)
		in[i] = (float)i - 3.5f;
	size = sizeof(out);
	ret = infer(fd, id, in, sizeof(in), out, &size, 0);
	ok = !ret && size == 64;
	for (int i = 0; i < 16; i++)
		ok = ok && out[i] == in[i] * 2.0f + 1.0f;
	CHECK(ok, "raw: vector result (ret %d size %u)", ret, size);
	/* A larger output buffer: only result_size bytes are written. */
	{
		float big[20];

		for (int i = 0; i < 20; i++)
			big[i] = -7.0f;
		size = sizeof(big);
		ret = infer(fd, id, in, sizeof(in), big, &size, 0);
		CHECK(!ret && size == 64 && big[16] == -7.0f && big[15] == in[15] * 2 + 1,
		      "raw: larger buffer, output_size %u", size);
	}
	size = sizeof(out);
	CHECK(infer(fd, id, in, sizeof(in), (void *)8, &size, 0) == -EFAULT,
	      "raw: bad output pointer EFAULT");
	size = sizeof(out);
	CHECK(!infer(fd, id, in, sizeof(in), out, &size, 0) && sysfs_num("raw", "queued") == 0,
	      "raw: next request fine after EFAULT");
	worker_stop(&w);
	model_destroy(fd, id);

	/* Softmax only: a float vector of probabilities. */
	desc_vec(&d, "raw.softmax", 16);
	d.post_ops[0] = FLAX_POST_SOFTMAX;
	id = model_create(fd, &d);
	worker_start(&w, id, W_ECHO, 1, 0);
	size = sizeof(out);
	ret = infer(fd, id, in, sizeof(in), out, &size, 0);
	{
		double sum = 0, e[16], mx = in[15] * 2 + 1;
		bool match = !ret && size == 64;

		for (int i = 0; i < 16; i++)
			sum += e[i] = exp((double)(in[i] * 2 + 1) - mx);
		for (int i = 0; i < 16; i++)
			match = match && fabs(out[i] - e[i] / sum) < 1e-6;
		CHECK(match, "raw: softmax vector (ret %d)", ret);
	}
	worker_stop(&w);
	model_destroy(fd, id);

	/* Top-k without softmax: raw scores, ties by ascending index. */
	desc_vec(&d, "raw.topk", 16);
	d.post_ops[0] = FLAX_POST_TOPK;
	d.topk = 4;
	id = model_create(fd, &d);
	CHECK(d.result_size == 8 + 4 * 8, "raw: topk result_size %u", d.result_size);
	worker_start(&w, id, W_ECHO, 1, 0);
	for (int i = 0; i < 16; i++)
		in[i] = (float)(i % 5);		/* 4 at 4, 9, 14; 3 at 3, 8, 13 */
	{
		struct {
			struct flax_topk_result r;
			struct flax_topk_entry e[4];
		} res;

		size = sizeof(res);
		ret = infer(fd, id, in, sizeof(in), &res, &size, 0);
		CHECK(!ret && res.r.count == 4 &&
		      res.e[0].index == 4 && res.e[1].index == 9 &&
		      res.e[2].index == 14 && res.e[3].index == 3 &&
		      u2f(res.e[0].score) == 9.0f && u2f(res.e[3].score) == 7.0f,
		      "raw: topk order and scores (%u %u %u %u)", res.e[0].index,
		      res.e[1].index, res.e[2].index, res.e[3].index);
		size = sizeof(res);
		CHECK(infer(fd, id, in, sizeof(in), (void *)8, &size, 0) == -EFAULT,
		      "raw: bad output pointer after top-k EFAULT");
	}
	worker_stop(&w);
	model_destroy(fd, id);

	/* float32 input normalised per channel (last dimension). */
	{
		uint32_t m[4], s[4];

		for (int i = 0; i < 4; i++) {
			m[i] = f2u((float)i);
			s[i] = f2u(2.0f);
		}
		desc_vec(&d, "raw.norm", 16);
		d.input.ndim = 2;
		d.input.dims[0] = 4;
		d.input.dims[1] = 4;
		d.pre_op = FLAX_PRE_NORMALIZE;
		d.norm_count = 4;
		d.norm_scale = f2u(0.5f);
		d.norm_mean = (uintptr_t)m;
		d.norm_std = (uintptr_t)s;
		id = model_create(fd, &d);
		CHECK(id > 0, "raw: per-channel normalize model");
		worker_start(&w, id, W_ECHO, 1, 0);
		for (int i = 0; i < 16; i++)
			in[i] = (float)(i * 3);
		size = sizeof(out);
		ret = infer(fd, id, in, sizeof(in), out, &size, 0);
		ok = !ret;
		for (int i = 0; i < 16; i++) {
			float v = in[i] * 0.5f;

			v = (v - (float)(i % 4)) / 2.0f;
			ok = ok && out[i] == v * 2.0f + 1.0f;
		}
		CHECK(ok, "raw: per-channel normalize values");
		worker_stop(&w);
		model_destroy(fd, id);
	}
	close(fd);
}

#define CONC_THREADS	8
#define CONC_REQS	50
#define CONC_N		8

struct client {
	pthread_t thread;
	int id;
	uint32_t model_id;
	int bad;
	int ret;
	int32_t worker_status;	/* struct flax_infer.worker_status */
	bool zeros;		/* the result was all zeros */
	uint32_t timeout_ms;
	double elapsed;
};

static void *conc_client(void *arg)
{
	struct client *c = arg;
	int fd = dev_open();

	for (int r = 0; r < CONC_REQS; r++) {
		float in[CONC_N], out[CONC_N];
		uint32_t size = sizeof(out);

		for (int i = 0; i < CONC_N; i++)
			in[i] = (float)(c->id * 1000 + r * 10 + i);
		if (infer(fd, c->model_id, in, sizeof(in), out, &size, 0)) {
			c->bad++;
			continue;
		}
		for (int i = 0; i < CONC_N; i++)
			if (out[i] != in[i] * 2 + 1) {
				c->bad++;
				break;
			}
	}
	close(fd);
	return NULL;
}

static void test_concurrent(void)
{
	struct client c[CONC_THREADS];
	struct flax_model_desc d;
	struct worker w[2];
	int fd = dev_open(), id, bad = 0;
	double t0;

	desc_vec(&d, "conc", CONC_N);
	d.nslots = 16;
	id = model_create(fd, &d);
	CHECK(id > 0, "concurrent: create");
	worker_start(&w[0], id, W_ECHO, 4, 300);
	worker_start(&w[1], id, W_ECHO, 4, 300);
	CHECK(sysfs_num("conc", "workers") == 2, "concurrent: two workers");
	t0 = now_s();
	for (int i = 0; i < CONC_THREADS; i++) {
		c[i] = (struct client){ .id = i, .model_id = id };
		pthread_create(&c[i].thread, NULL, conc_client, &c[i]);
	}
	for (int i = 0; i < CONC_THREADS; i++) {
		pthread_join(c[i].thread, NULL);
		bad += c[i].bad;
	}
	CHECK(!bad, "concurrent: %d clients x %d requests, own results (%d bad, %.2f s)",
	      CONC_THREADS, CONC_REQS, bad, now_s() - t0);
	worker_stop(&w[0]);
	worker_stop(&w[1]);
	CHECK(w[0].jobs + w[1].jobs == CONC_THREADS * CONC_REQS,
	      "concurrent: workers did %lu + %lu jobs in %lu + %lu batches",
	      w[0].jobs, w[1].jobs, w[0].batches, w[1].batches);
	CHECK(!w[0].bad_ring && !w[1].bad_ring, "concurrent: rings consistent");
	CHECK(sysfs_num("conc", "completed") == CONC_THREADS * CONC_REQS &&
	      sysfs_num("conc", "queued") == 0, "concurrent: sysfs counters");
	model_destroy(fd, id);
	close(fd);
}

static void *timed_client(void *arg)
{
	struct client *c = arg;
	int fd = dev_open();
	float in[4] = { 1, 2, 3, 4 }, out[4] = { 7, 7, 7, 7 };
	struct flax_infer req = {
		.model_id = c->model_id,
		.input = (uintptr_t)in,
		.output = (uintptr_t)out,
		.input_size = sizeof(in),
		.output_size = sizeof(out),
		.timeout_ms = c->timeout_ms,
		.worker_status = 12345,	/* an out field: ignored */
	};
	double t0 = now_s();

	c->ret = ioctl(fd, FLAX_IOC_INFER, &req) ? -errno : 0;
	c->elapsed = now_s() - t0;
	c->worker_status = req.worker_status;
	c->zeros = !c->ret && !out[0] && !out[1] && !out[2] && !out[3];
	if (!c->ret)
		for (int i = 0; i < 4; i++)
			if (out[i] != in[i] * 2 + 1)
				c->bad++;
	close(fd);
	return NULL;
}

static void start_clients(struct client *c, int n, uint32_t id,
			  uint32_t timeout_ms)
{
	for (int i = 0; i < n; i++) {
		c[i] = (struct client){ .id = i, .model_id = id,
					.timeout_ms = timeout_ms };
		pthread_create(&c[i].thread, NULL, timed_client, &c[i]);
	}
}

static void join_clients(struct client *c, int n)
{
	for (int i = 0; i < n; i++)
		pthread_join(c[i].thread, NULL);
}

static void on_signal(int sig)
{
	(void)sig;
}

static int fetch(int fd, struct flax_fetch *f)
{
	return ioctl(fd, FLAX_IOC_FETCH, f) ? -errno : 0;
}

static int complete(int fd, uint32_t slot, uint32_t tag, int32_t status,
		    uint32_t reserved, uint32_t *done)
{
	struct flax_completion c = { slot, tag, status, reserved };
	struct flax_complete cc = { .completions = (uintptr_t)&c, .count = 1 };
	int ret = ioctl(fd, FLAX_IOC_COMPLETE, &cc) ? -errno : 0;

	if (done)
		*done = cc.done;
	return ret;
}

static void test_errors(void)
{
	int fd = dev_open(), id, ret;
	struct flax_model_desc d;
	struct flax_infer req;
	float in[4] = { 1, 2, 3, 4 }, out[4];
	uint32_t size;
	struct worker w, wk[FLAX_MAX_WORKERS + 1];
	struct client c;
	double t0;

	desc_vec(&d, "err", 4);
	d.timeout_ms = 400;
	d.nslots = 2;
	id = model_create(fd, &d);
	CHECK(id > 0, "errors: create (timeout 400 ms, 2 slots)");

	size = sizeof(out);
	CHECK(infer(fd, 999999, in, sizeof(in), out, &size, 0) == -ENOENT,
	      "infer: unknown model ENOENT");
	size = sizeof(out);
	CHECK(infer(fd, id, in, 12, out, &size, 0) == -EINVAL,
	      "infer: wrong input size EINVAL");
	size = 8;
	ret = infer(fd, id, in, sizeof(in), out, &size, 0);
	CHECK(ret == -ENOSPC && size == 16,
	      "infer: small output buffer ENOSPC, output_size %u", size);

	memset(&req, 0, sizeof(req));
	req.model_id = id;
	req.input = (uintptr_t)in;
	req.output = (uintptr_t)out;
	req.input_size = 16;
	req.output_size = 16;
	req.priority = FLAX_PRIORITY_MAX + 1;
	CHECK_ERR(ioctl(fd, FLAX_IOC_INFER, &req), EINVAL,
		  "infer: priority above FLAX_PRIORITY_MAX");
	req.priority = 0;
	req.flags = 1u << 31;
	CHECK_ERR(ioctl(fd, FLAX_IOC_INFER, &req), EINVAL, "infer: flags");
	req.flags = 0;
	CHECK_ERR(ioctl(fd, FLAX_IOC_INFER, (void *)8), EFAULT,
		  "infer: bad struct pointer");
	req.input = 8;
	CHECK_ERR(ioctl(fd, FLAX_IOC_INFER, &req), EFAULT, "infer: bad input pointer");
	req.input = (uintptr_t)in;
	{
		uint8_t big[sizeof(req) + 8];
		unsigned int cmd = _IOC(_IOC_READ | _IOC_WRITE, FLAX_IOC_MAGIC,
					_IOC_NR(FLAX_IOC_INFER), sizeof(big));

		memset(big, 0, sizeof(big));
		memcpy(big, &req, sizeof(req));
		big[sizeof(big) - 1] = 0x80;
		CHECK_ERR(ioctl(fd, cmd, big), E2BIG, "infer: oversized struct, non-zero tail");
		cmd = _IOC(_IOC_READ | _IOC_WRITE, FLAX_IOC_MAGIC,
			   _IOC_NR(FLAX_IOC_INFER), 32);
		CHECK_ERR(ioctl(fd, cmd, big), EINVAL, "infer: struct below VER0");
	}

	/* No worker: the request times out and its slot comes back. */
	t0 = now_s();
	size = sizeof(out);
	ret = infer(fd, id, in, sizeof(in), out, &size, 0);
	CHECK(ret == -ETIMEDOUT && now_s() - t0 >= 0.39,
	      "infer: no worker ETIMEDOUT after %.3f s", now_s() - t0);
	t0 = now_s();
	size = sizeof(out);
	ret = infer(fd, id, in, sizeof(in), out, &size, 100);
	CHECK(ret == -ETIMEDOUT && now_s() - t0 < 0.35,
	      "infer: shorter request timeout honoured (%.3f s)", now_s() - t0);
	CHECK(sysfs_num("err", "timeouts") == 2 && sysfs_num("err", "queued") == 0,
	      "infer: sysfs timeouts 2, queued 0");

	/* A signal ends a waiting request with EINTR; its slot comes back. */
	{
		struct sigaction sa = { .sa_handler = on_signal };

		sigaction(SIGUSR1, &sa, NULL);	/* no SA_RESTART */
		start_clients(&c, 1, id, 0);
		msleep(150);
		pthread_kill(c.thread, SIGUSR1);
		join_clients(&c, 1);
		CHECK(c.ret == -EINTR && c.elapsed < 0.35,
		      "infer: signal gives EINTR (%d after %.3f s)", c.ret, c.elapsed);
		CHECK(sysfs_num("err", "queued") == 0, "infer: interrupted job dequeued");
	}

	/* Not a worker yet. */
	{
		struct flax_fetch f = { .max_jobs = 1 };
		struct flax_complete cc = { 0 };
		void *p;

		CHECK_ERR(ioctl(fd, FLAX_IOC_FETCH, &f), ENXIO, "fetch: not a worker");
		CHECK_ERR(ioctl(fd, FLAX_IOC_COMPLETE, &cc), ENXIO,
			  "complete: not a worker");
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		CHECK(p == MAP_FAILED && errno == ENXIO, "mmap: not a worker ENXIO");
	}

	/* Worker attach and mmap rules. */
	memset(&w, 0, sizeof(w));
	CHECK(worker_attach(&w, id) == 0, "attach: ok (ring %u)", w.att.worker);
	CHECK(w.att.layout.magic == FLAX_REGION_MAGIC &&
	      w.att.layout.nslots == 2 && w.att.layout.ring_entries == 2 &&
	      w.att.layout.in_bytes == 16 && w.att.layout.out_bytes == 16 &&
	      !memcmp(w.region, &w.att.layout, sizeof(w.att.layout)),
	      "attach: layout returned and written at offset 0");
	{
		struct flax_worker_attach a = { .model_id = id };
		size_t rs = w.att.layout.region_size;
		void *p;

		CHECK_ERR(ioctl(w.fd, FLAX_IOC_WORKER_ATTACH, &a), EINVAL,
			  "attach: twice on one fd");
		/*
		 * An answer that cannot be written (a read-only page): EFAULT,
		 * and the fd is no worker -- it can attach again.
		 */
		{
			int afd = dev_open();
			struct flax_worker_attach *ro;
			long nw = sysfs_num("err", "workers");

			ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			ro->model_id = id;
			mprotect(ro, 4096, PROT_READ);
			CHECK_ERR(ioctl(afd, FLAX_IOC_WORKER_ATTACH, ro), EFAULT,
				  "attach: answer to a read-only buffer");
			CHECK(sysfs_num("err", "workers") == nw,
			      "attach: failed copy-out leaves no worker (%ld -> %ld)",
			      nw, sysfs_num("err", "workers"));
			{
				struct flax_fetch f = { .max_jobs = 1,
							.timeout_ms = 100 };

				CHECK(fetch(afd, &f) == -ENXIO,
				      "attach: failed copy-out leaves the fd no worker");
			}
			a.model_id = id;
			CHECK(ioctl(afd, FLAX_IOC_WORKER_ATTACH, &a) == 0,
			      "attach: the same fd attaches after the failed copy-out");
			munmap(ro, 4096);
			close(afd);
		}
		p = mmap(NULL, rs + 4096, PROT_READ | PROT_WRITE, MAP_SHARED, w.fd, 0);
		CHECK(p == MAP_FAILED && errno == EINVAL, "mmap: wrong size EINVAL");
		p = mmap(NULL, rs, PROT_READ | PROT_WRITE, MAP_SHARED, w.fd, 4096);
		CHECK(p == MAP_FAILED && errno == EINVAL, "mmap: offset EINVAL");
		p = mmap(NULL, rs, PROT_READ | PROT_WRITE, MAP_PRIVATE, w.fd, 0);
		CHECK(p == MAP_FAILED && errno == EINVAL, "mmap: private EINVAL");
		p = mmap(NULL, rs, PROT_READ | PROT_EXEC, MAP_SHARED, w.fd, 0);
		CHECK(p == MAP_FAILED && errno == EPERM, "mmap: exec EPERM");
		a.flags = 1;
		CHECK_ERR(ioctl(fd, FLAX_IOC_WORKER_ATTACH, &a), EINVAL, "attach: flags");
		a.flags = 0;
		a.model_id = 999999;
		CHECK_ERR(ioctl(fd, FLAX_IOC_WORKER_ATTACH, &a), ENOENT,
			  "attach: unknown model");
	}
	{
		struct flax_fetch f = { .max_jobs = 0 };

		CHECK(fetch(w.fd, &f) == -EINVAL, "fetch: max_jobs 0 EINVAL");
		f.max_jobs = 3;
		CHECK(fetch(w.fd, &f) == -EINVAL, "fetch: max_jobs > nslots EINVAL");
		f.max_jobs = 1;
		f.max_wait_us = 10000001;
		CHECK(fetch(w.fd, &f) == -EINVAL, "fetch: max_wait_us > 10 s EINVAL");
		f.max_wait_us = 0;
		f.flags = FLAX_FETCH_NOWAIT << 1;
		CHECK(fetch(w.fd, &f) == -EINVAL, "fetch: unknown flag EINVAL");
		f.flags = 1u << 31;
		CHECK(fetch(w.fd, &f) == -EINVAL, "fetch: flag bit 31 EINVAL");
		f.flags = 0;
		f.ncomplete = 3;
		CHECK(fetch(w.fd, &f) == -EINVAL, "fetch: ncomplete > nslots EINVAL");
		f.ncomplete = 0;
		f.timeout_ms = 100;
		t0 = now_s();
		CHECK(fetch(w.fd, &f) == 0 && f.count == 0 && now_s() - t0 >= 0.09,
		      "fetch: timeout with no job gives count 0");
	}
	/*
	 * A signal during a FETCH with a timeout is EINTR, even under
	 * SA_RESTART: a restarted call would wait its whole relative timeout
	 * again.
	 */
	{
		struct sigaction sa = { .sa_handler = on_signal,
					.sa_flags = SA_RESTART };
		struct sigaction old;
		struct itimerval it = { .it_value = { 0, 200000 } };
		struct flax_fetch f = { .max_jobs = 1, .timeout_ms = 3000 };

		sigaction(SIGALRM, &sa, &old);
		setitimer(ITIMER_REAL, &it, NULL);
		t0 = now_s();
		ret = fetch(w.fd, &f);
		CHECK(ret == -EINTR && now_s() - t0 < 2.5,
		      "fetch: a signal under SA_RESTART gives EINTR (%d) after %.2f s, not a restart",
		      ret, now_s() - t0);
		sigaction(SIGALRM, &old, NULL);
	}

	/* Completions: a client waits, the worker fetches its job. */
	start_clients(&c, 1, id, 0);
	{
		struct flax_fetch f = { .max_jobs = 1, .timeout_ms = 2000 };
		struct flax_ring_entry e;
		uint32_t done = 99;

		CHECK(fetch(w.fd, &f) == 0 && f.count == 1, "fetch: one job");
		ring_read(&w, &f, &e);
		CHECK(sysfs_num("err", "queued") == 0, "fetch: queue drained");
		CHECK(complete(w.fd, e.slot, e.tag + 1, 0, 0, &done) == -EINVAL &&
		      done == 0, "complete: wrong tag EINVAL, done 0");
		CHECK(complete(w.fd, 2, e.tag, 0, 0, NULL) == -EINVAL,
		      "complete: slot out of range EINVAL");
		CHECK(complete(w.fd, e.slot ^ 1, e.tag, 0, 0, NULL) == -EINVAL,
		      "complete: slot not fetched EINVAL");
		CHECK(complete(w.fd, e.slot, e.tag, 0, 1, NULL) == -EINVAL,
		      "complete: reserved EINVAL");
		CHECK(complete(w.fd, e.slot, e.tag, 1, 0, NULL) == -EINVAL,
		      "complete: positive status EINVAL");
		CHECK(complete(w.fd, e.slot, e.tag, -FLAX_STATUS_ERRNO_MAX - 1, 0,
			       NULL) == -EINVAL,
		      "complete: kernel-internal status (-ERESTARTSYS) EINVAL");
		CHECK(complete(w.fd, e.slot, e.tag, -4096, 0, NULL) == -EINVAL,
		      "complete: status below -4095 EINVAL");
		work_one(&w, e.slot);
		CHECK(complete(w.fd, e.slot, e.tag, 0, 0, &done) == 0 && done == 1,
		      "complete: good completion");
		CHECK(complete(w.fd, e.slot, e.tag, 0, 0, NULL) == -EINVAL,
		      "complete: double completion EINVAL");
		join_clients(&c, 1);
		CHECK(c.ret == 0 && !c.bad, "complete: the client got its result");
	}

	/*
	 * A worker's failure is EIO for the client, whatever code it gave:
	 * never an errno with a kernel meaning (EINTR, EAGAIN, EFAULT,
	 * ETIMEDOUT, ENOSPC).  The code comes back in worker_status.
	 */
	{
		int32_t st[] = { -EINTR, -EAGAIN, -EFAULT, -ETIMEDOUT, -ENOSPC,
				 -EPROTO, -FLAX_STATUS_ERRNO_MAX };

		for (int i = 0; i < 7; i++) {
			struct flax_fetch f = { .max_jobs = 1, .timeout_ms = 2000 };
			struct flax_ring_entry e;

			start_clients(&c, 1, id, 0);
			fetch(w.fd, &f);
			ring_read(&w, &f, &e);
			complete(w.fd, e.slot, e.tag, st[i], 0, NULL);
			join_clients(&c, 1);
			CHECK(c.ret == -EIO && c.worker_status == st[i],
			      "complete: worker status %d is EIO for the client (%d), worker_status %d",
			      st[i], c.ret, c.worker_status);
		}
	}

	/*
	 * A worker that completes without writing: the client gets zeros,
	 * not the previous job's output left in the slot.
	 */
	{
		struct flax_fetch f = { .max_jobs = 1, .timeout_ms = 2000 };
		struct flax_ring_entry e;
		bool all = true;

		for (int i = 0; i < 4; i++) {	/* each slot once, then again */
			start_clients(&c, 1, id, 0);
			fetch(w.fd, &f);
			ring_read(&w, &f, &e);
			work_one(&w, e.slot);
			complete(w.fd, e.slot, e.tag, 0, 0, NULL);
			join_clients(&c, 1);
			all &= c.ret == 0 && !c.bad;
		}
		start_clients(&c, 1, id, 0);
		fetch(w.fd, &f);
		ring_read(&w, &f, &e);
		complete(w.fd, e.slot, e.tag, 0, 0, NULL);
		join_clients(&c, 1);
		CHECK(all && c.ret == 0 && c.zeros && c.worker_status == 0,
		      "complete: an output the worker did not write reads as zeros (ret %d)",
		      c.ret);
	}

	/* A client that times out while its job is fetched: ABANDONED, the
	 * slot is freed by the worker's completion.
	 */
	{
		struct flax_fetch f = { .max_jobs = 1, .timeout_ms = 2000 };
		struct flax_ring_entry e;
		struct client c2[2];

		start_clients(&c, 1, id, 200);
		fetch(w.fd, &f);
		ring_read(&w, &f, &e);
		join_clients(&c, 1);
		CHECK(c.ret == -ETIMEDOUT, "abandon: client timed out while fetched");
		/* Fill the other slot; the abandoned one is not free yet. */
		start_clients(c2, 2, id, 300);
		msleep(100);
		{
			struct flax_fetch f2 = { .max_jobs = 2, .timeout_ms = 1000 };
			struct flax_ring_entry e2[2];

			ret = fetch(w.fd, &f2);
			CHECK(ret == 0 && f2.count == 1,
			      "abandon: only one slot usable while abandoned (%u)",
			      f2.count);
			ring_read(&w, &f2, e2);
			work_one(&w, e2[0].slot);
			complete(w.fd, e2[0].slot, e2[0].tag, 0, 0, NULL);
		}
		CHECK(complete(w.fd, e.slot, e.tag, 0, 0, NULL) == 0,
		      "abandon: worker completes the abandoned job");
		join_clients(c2, 2);
		CHECK((c2[0].ret == 0) + (c2[1].ret == 0) == 1,
		      "abandon: one of two clients served (%d %d)", c2[0].ret,
		      c2[1].ret);
		__atomic_store_n(&w.stop, false, __ATOMIC_RELAXED);
		pthread_create(&w.thread, NULL, worker_loop, &w);
		start_clients(c2, 2, id, 0);
		join_clients(c2, 2);
		CHECK(!c2[0].ret && !c2[1].ret && !c2[0].bad && !c2[1].bad,
		      "abandon: both slots usable again");
		__atomic_store_n(&w.stop, true, __ATOMIC_RELAXED);
		pthread_join(w.thread, NULL);
	}

	/* Eight workers at most. */
	{
		int n = 0, ret9;

		for (int i = 0; i < FLAX_MAX_WORKERS - 1; i++)
			n += worker_attach(&wk[i], id) == 0;
		ret9 = worker_attach(&wk[FLAX_MAX_WORKERS - 1], id);
		CHECK(n == FLAX_MAX_WORKERS - 1 && ret9 == -EBUSY,
		      "attach: ninth worker EBUSY");
		CHECK(sysfs_num("err", "workers") == FLAX_MAX_WORKERS,
		      "attach: sysfs workers %ld", sysfs_num("err", "workers"));
		for (int i = 0; i < FLAX_MAX_WORKERS - 1; i++)
			worker_detach(&wk[i]);
		close(wk[FLAX_MAX_WORKERS - 1].fd);
	}
	worker_detach(&w);
	CHECK(sysfs_num("err", "workers") == 0, "release: workers back to 0");
	model_destroy(fd, id);
	close(fd);
}

/* A worker in a child process: fetches @njobs jobs, reports them through
 * @pipefd, then waits to be killed.
 */
static pid_t spawn_holder(uint32_t model_id, uint32_t njobs, int pipefd)
{
	pid_t pid = fork();

	if (pid)
		return pid;

	struct worker w;
	struct flax_fetch f = {
		.max_jobs = njobs, .max_wait_us = 5000000, .timeout_ms = 20000,
	};
	struct flax_ring_entry e[16];
	uint32_t n = 0;

	memset(&w, 0, sizeof(w));
	if (worker_attach(&w, model_id))
		_exit(1);
	while (n < njobs) {
		f.first = f.count = 0;
		if (fetch(w.fd, &f))
			_exit(2);
		ring_read(&w, &f, e + n);
		n += f.count;
	}
	if (write(pipefd, e, n * sizeof(e[0])) < 0)
		_exit(3);
	pause();
	_exit(0);
}

static void test_kill(void)
{
	int fd = dev_open(), id, p[2], ok;
	struct flax_ring_entry a[4], b[4];
	struct flax_model_desc d;
	struct client c[4];
	struct worker w;
	pid_t pid;
	ssize_t n;

	/* One death: the jobs are requeued with new tags, a second worker
	 * serves them.
	 */
	desc_vec(&d, "kill", 4);
	d.nslots = 4;
	d.timeout_ms = 20000;
	id = model_create(fd, &d);
	CHECK(id > 0, "kill: create");
	if (pipe(p))
		return;
	pid = spawn_holder(id, 4, p[1]);
	start_clients(c, 4, id, 0);
	n = read(p[0], a, sizeof(a));
	CHECK(n == sizeof(a), "kill: child worker holds 4 jobs");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	msleep(50);
	CHECK(sysfs_num("kill", "queued") == 4 && sysfs_num("kill", "workers") == 0,
	      "kill: its 4 jobs are queued again");
	pid = spawn_holder(id, 4, p[1]);
	n = read(p[0], b, sizeof(b));
	ok = n == sizeof(b);
	for (int i = 0; i < 4 && ok; i++) {
		bool found = false;

		for (int j = 0; j < 4; j++)
			found |= b[j].slot == a[i].slot && b[j].tag == a[i].tag + 1;
		ok = found;
	}
	CHECK(ok, "kill: requeued jobs carry new tags");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	join_clients(c, 4);
	ok = 0;
	for (int i = 0; i < 4; i++)
		ok += c[i].ret == -EIO;
	CHECK(ok == 4, "kill: second death, max_retries 1: clients get EIO");
	CHECK(sysfs_num("kill", "errors") == 4 && sysfs_num("kill", "queued") == 0,
	      "kill: sysfs errors 4");

	/* One death, then a live worker serves the requeued jobs. */
	pid = spawn_holder(id, 4, p[1]);
	start_clients(c, 4, id, 0);
	n = read(p[0], a, sizeof(a));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	worker_start(&w, id, W_ECHO, 4, 1000);
	join_clients(c, 4);
	ok = 0;
	for (int i = 0; i < 4; i++)
		ok += !c[i].ret && !c[i].bad;
	CHECK(ok == 4, "kill: requeued jobs served by another worker");
	worker_stop(&w);
	close(p[0]);
	close(p[1]);
	model_destroy(fd, id);
	close(fd);
}

static void test_destroy(void)
{
	int fd = dev_open(), id, id2, n;
	struct flax_model_desc d;
	struct client c[3];
	struct worker w;
	char buf[32];
	double t0;

	/* Clients queued and waiting for a slot, no worker. */
	desc_vec(&d, "destroy", 4);
	d.nslots = 2;
	d.timeout_ms = 20000;
	id = model_create(fd, &d);
	start_clients(c, 3, id, 0);
	msleep(300);
	CHECK(sysfs_num("destroy", "queued") == 2, "destroy: 2 queued, 1 waits for a slot");
	t0 = now_s();
	CHECK(model_destroy(fd, id) == 0, "destroy: with waiting clients");
	join_clients(c, 3);
	n = 0;
	for (int i = 0; i < 3; i++)
		n += c[i].ret == -ENODEV;
	CHECK(n == 3 && now_s() - t0 < 2, "destroy: clients woken with ENODEV (%d)", n);

	/* A worker holds the job. */
	id = model_create(fd, &d);
	memset(&w, 0, sizeof(w));
	worker_attach(&w, id);
	start_clients(c, 1, id, 0);
	{
		struct flax_fetch f = { .max_jobs = 1, .timeout_ms = 5000 };
		struct flax_ring_entry e;

		CHECK(fetch(w.fd, &f) == 0 && f.count == 1, "destroy: worker fetched");
		ring_read(&w, &f, &e);
		model_destroy(fd, id);
		join_clients(c, 1);
		CHECK(c[0].ret == -ENODEV, "destroy: client of a fetched job ENODEV");
		CHECK(fetch(w.fd, &f) == -ENODEV, "destroy: worker FETCH ENODEV");
		CHECK(complete(w.fd, e.slot, e.tag, 0, 0, NULL) == -ENODEV,
		      "destroy: worker COMPLETE ENODEV");
		/* The region stays mapped and usable until unmapped. */
		memset(out_slot(&w, e.slot), 0, w.att.layout.out_bytes);
	}
	{
		float in[4] = { 0 }, out[4];
		uint32_t size = sizeof(out);

		CHECK(infer(fd, id, in, sizeof(in), out, &size, 0) == -ENOENT,
		      "destroy: INFER afterwards ENOENT");
	}
	CHECK(sysfs_read("destroy", "id", buf, sizeof(buf)) == -ENOENT,
	      "destroy: sysfs directory gone");
	id2 = model_create(fd, &d);
	CHECK(id2 > 0 && id2 != id, "destroy: name reusable, new id (%d, was %d)",
	      id2, id);
	worker_detach(&w);
	model_destroy(fd, id2);
	close(fd);
}

/* Module load/unload.  Needs the path of flaxdev.ko. */

static int load(const char *ko, const char *params)
{
	int fd = open(ko, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, params, 0) ? -errno : 0;
	close(fd);
	return ret;
}

static int unload(void)
{
	return syscall(SYS_delete_module, "flaxdev", O_NONBLOCK) ? -errno : 0;
}

static long meminfo(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtol(line + strlen(key) + 1, NULL, 10);
	fclose(f);
	return v;
}

static int labels_set(int fd, uint32_t id, const char *text, size_t size,
		      uint32_t *count);

static void test_modload(const char *ko)
{
	int fd = dev_open(), ret, ok = 0;
	long vm0, vm1;

	ret = unload();
	CHECK(ret == -EWOULDBLOCK || ret == -EBUSY, "rmmod: refused while an fd is open (%d)",
	      ret);
	close(fd);
	/* A model left behind is destroyed by the module exit. */
	fd = dev_open();
	{
		struct flax_model_desc d;

		desc_vec(&d, "leftover", 4);
		model_create(fd, &d);
	}
	close(fd);
	CHECK(unload() == 0, "rmmod: succeeds once closed, a model left");
	CHECK(access(DEV, F_OK) != 0, "rmmod: /dev/flax gone");
	CHECK(load(ko, "max_slots=0") == -EINVAL, "insmod: max_slots=0 refused");
	CHECK(load(ko, "nslots=300") == -EINVAL, "insmod: nslots > max_slots refused");
	CHECK(load(ko, "max_timeout_ms=100") == -EINVAL,
	      "insmod: max_timeout_ms below timeout_ms refused");
	CHECK(load(ko, "max_pending=0") == -EINVAL, "insmod: max_pending=0 refused");
	CHECK(load(ko, "max_models_per_user=0") == -EINVAL,
	      "insmod: max_models_per_user=0 refused");

	/*
	 * Labels are freed through RCU callbacks: set and replace them, close,
	 * unload at once -- no callback may run in the unloaded module.
	 */
	for (int i = 0; i < 50; i++) {
		struct flax_model_desc d;
		static const char l1[] = "a\nb\nc\nd\n", l2[] = "w\nx\n";

		if (load(ko, ""))
			break;
		for (int t = 0; t < 100 && access(DEV, R_OK | W_OK); t++)
			msleep(10);
		fd = dev_open();
		desc_vec(&d, "labels", 4);
		if (model_create(fd, &d) > 0) {
			for (int k = 0; k < 4; k++) {
				labels_set(fd, d.id, l1, sizeof(l1) - 1, NULL);
				labels_set(fd, d.id, l2, sizeof(l2) - 1, NULL);
			}
			ok += !labels_set(fd, d.id, "", 0, NULL);
			model_destroy(fd, d.id);
		}
		close(fd);
		if (unload())
			break;
	}
	CHECK(ok == 50, "insmod/rmmod: 50 cycles of label replacement, then unload at once (%d)",
	      ok);
	ok = 0;

	vm0 = meminfo("VmallocUsed:");
	for (int i = 0; i < 20; i++) {
		struct flax_model_desc d;
		struct worker w;
		float in[4] = { 1, 2, 3, 4 }, out[4];
		uint32_t size = sizeof(out);

		if (load(ko, ""))
			break;
		for (int t = 0; t < 100 && access(DEV, R_OK | W_OK); t++)
			msleep(10);
		fd = dev_open();
		desc_vec(&d, "cycle", 4);
		if (model_create(fd, &d) > 0 &&
		    !worker_start(&w, d.id, W_ECHO, 1, 0)) {
			ret = infer(fd, d.id, in, sizeof(in), out, &size, 0);
			worker_stop(&w);
			ok += !ret && out[3] == 9.0f;
		}
		close(fd);
		if (unload())
			break;
	}
	vm1 = meminfo("VmallocUsed:");
	CHECK(ok == 20, "insmod/rmmod: 20 cycles with a model and a request (%d)", ok);
	CHECK(vm1 - vm0 < 1024, "insmod/rmmod: VmallocUsed %ld kB -> %ld kB", vm0, vm1);
	CHECK(load(ko, "") == 0, "insmod: loaded again");
}


/* Labels and text results (FLAX_IOC_LABELS_SET/GET, FLAX_INFER_TEXT). */

static const char dig_labels[] =
	"zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine";

static int labels_set(int fd, uint32_t id, const char *text, size_t size,
		      uint32_t *count)
{
	struct flax_labels l = { .model_id = id, .data = (uintptr_t)text,
				 .size = size };
	int ret = ioctl(fd, FLAX_IOC_LABELS_SET, &l) ? -errno : 0;

	if (count)
		*count = l.count;
	return ret;
}

static int labels_get(int fd, uint32_t id, char *buf, uint32_t *size,
		      uint32_t *count)
{
	struct flax_labels l = { .model_id = id, .data = (uintptr_t)buf,
				 .size = *size };
	int ret = ioctl(fd, FLAX_IOC_LABELS_GET, &l) ? -errno : 0;

	*size = l.size;
	*count = l.count;
	return ret;
}

static int infer_text(int fd, uint32_t id, const void *in, uint32_t in_size,
		      char *out, uint32_t *out_size)
{
	struct flax_infer req = {
		.model_id = id, .flags = FLAX_INFER_TEXT,
		.input = (uintptr_t)in, .input_size = in_size,
		.output = (uintptr_t)out, .output_size = *out_size,
	};
	int ret = ioctl(fd, FLAX_IOC_INFER, &req) ? -errno : 0;

	*out_size = req.output_size;
	return ret;
}

/* The text of a binary top-k result, as glibc's printf formats it. */
static void topk_text(const struct flax_topk_result *r, const char *labels,
		      char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = 0;
	for (uint32_t i = 0; i < r->count; i++) {
		const char *l = labels;
		uint32_t idx = r->entries[i].index;
		char name[32];

		/* The idx-th line of labels, or the index. */
		for (uint32_t j = 0; l && j < idx; j++) {
			l = strchr(l, '\n');
			l = l ? l + 1 : NULL;
		}
		if (l && *l)
			snprintf(name, sizeof(name), "%.*s",
				 (int)strcspn(l, "\n"), l);
		else
			snprintf(name, sizeof(name), "%u", idx);
		len += snprintf(buf + len, size - len, "%s\t%.6g\n", name,
				(double)u2f(r->entries[i].score));
	}
}

static void test_text(void)
{
	int fd = dev_open(), id, bad = 0, ret;
	struct flax_model_desc d;
	unsigned int seed = 7;
	struct worker w;
	char buf[4096], want[1024], big[200];
	uint32_t size, count = 0;
	struct {
		struct flax_topk_result r;
		struct flax_topk_entry e[5];
	} res;

	dig_init();
	desc_digits(&d, "text");
	d.topk = 5;
	id = model_create(fd, &d);
	CHECK(id > 0 && d.text_size == 5 * (FLAX_LABEL_MAX + 1 + 13 + 1),
	      "text: create, text_size %u", d.text_size);
	CHECK(worker_start(&w, id, W_DIGITS, 4, 100) == 0, "text: worker up");

	ret = labels_set(fd, id, dig_labels, strlen(dig_labels), &count);
	CHECK(!ret && count == 10, "text: LABELS_SET 10 labels (%d, %u)", ret,
	      count);
	size = sizeof(buf);
	ret = labels_get(fd, id, buf, &size, &count);
	CHECK(!ret && count == 10 && size == strlen(dig_labels) + 1 &&
	      !memcmp(buf, dig_labels, size - 1) && buf[size - 1] == '\n',
	      "text: LABELS_GET returns them, newline-ended (%d, %u bytes)",
	      ret, size);
	size = 5;
	CHECK(labels_get(fd, id, buf, &size, &count) == -ENOSPC &&
	      size == strlen(dig_labels) + 1,
	      "text: LABELS_GET short buffer: ENOSPC with the size (%u)", size);
	CHECK(sysfs_read("text", "labels", buf, sizeof(buf)) == 0 &&
	      !strncmp(buf, dig_labels, strlen(dig_labels)),
	      "text: sysfs labels reads them");

	for (int i = 0; i < 40; i++) {
		uint8_t img[DIG_IN];
		uint32_t rsize = sizeof(res);

		for (int j = 0; j < DIG_IN; j++)
			img[j] = rand_r(&seed) % 17;
		ret = infer(fd, id, img, sizeof(img), &res, &rsize, 0);
		size = sizeof(buf) - 1;
		ret = ret ?: infer_text(fd, id, img, sizeof(img), buf, &size);
		if (ret || res.r.count != 5) {
			if (bad++ < 3)
				printf("# input %d: ret %d count %u\n", i, ret,
				       res.r.count);
			continue;
		}
		buf[size] = 0;
		topk_text(&res.r, dig_labels, want, sizeof(want));
		if (strcmp(buf, want) && bad++ < 3)
			printf("# input %d: text\n%s# want\n%s", i, buf, want);
	}
	CHECK(!bad, "text: 40 top-5 text results equal printf of the binary ones with labels (%d bad)",
	      bad);

	/* Too small a text buffer: ENOSPC and the length needed. */
	{
		uint8_t img[DIG_IN] = { 3 };

		size = 4;
		ret = infer_text(fd, id, img, sizeof(img), buf, &size);
		CHECK(ret == -ENOSPC && size > 4 && size < 200,
		      "text: short text buffer: ENOSPC with the length (%u)",
		      size);
	}

	/* Each defect is refused and leaves the labels as they were. */
	CHECK(labels_set(fd, id, "a\n\nb", 4, NULL) == -EINVAL,
	      "text: empty label EINVAL");
	CHECK(labels_set(fd, id, "a\tb\nc", 5, NULL) == -EINVAL,
	      "text: control character EINVAL");
	memset(big, 'x', sizeof(big));
	CHECK(labels_set(fd, id, big, FLAX_LABEL_MAX + 1, NULL) == -EINVAL,
	      "text: label of 128 bytes EINVAL");
	CHECK(labels_set(fd, id, big, FLAX_LABEL_MAX, &count) == 0 && count == 1,
	      "text: label of 127 bytes accepted");
	{
		static const char eleven[] = "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10";

		CHECK(labels_set(fd, id, eleven, strlen(eleven), NULL) == -E2BIG,
		      "text: 11 labels for 10 classes E2BIG");
	}
	CHECK(labels_set(fd, id, "a\0b", 3, NULL) == -EINVAL,
	      "text: NUL byte EINVAL");
	CHECK(labels_set(fd, id, big, FLAX_LABELS_BYTES_MAX + 1, NULL) == -E2BIG,
	      "text: over FLAX_LABELS_BYTES_MAX E2BIG");
	CHECK(labels_set(fd, id, (const char *)8, 10, NULL) == -EFAULT,
	      "text: bad pointer EFAULT");
	CHECK(labels_set(fd, 0x7fffffff, dig_labels, 4, NULL) == -ENOENT,
	      "text: unknown model ENOENT");
	{
		struct flax_labels l = { .model_id = id, .flags = 1 };

		CHECK_ERR(ioctl(fd, FLAX_IOC_LABELS_SET, &l), EINVAL,
			  "text: LABELS_SET flags");
		l.flags = 0;
		l.reserved[1] = 1;
		CHECK_ERR(ioctl(fd, FLAX_IOC_LABELS_GET, &l), EINVAL,
			  "text: LABELS_GET reserved");
	}
	size = sizeof(buf);
	CHECK(labels_get(fd, id, buf, &size, &count) == 0 && count == 1 &&
	      size == FLAX_LABEL_MAX + 1,
	      "text: labels unchanged by the refused sets");

	/* No labels: indices. */
	CHECK(labels_set(fd, id, NULL, 0, &count) == 0 && count == 0,
	      "text: size 0 removes the labels");
	{
		uint8_t img[DIG_IN] = { 0 };
		uint32_t rsize = sizeof(res);

		ret = infer(fd, id, img, sizeof(img), &res, &rsize, 0);
		size = sizeof(buf) - 1;
		ret = ret ?: infer_text(fd, id, img, sizeof(img), buf, &size);
		buf[ret ? 0 : size] = 0;
		topk_text(&res.r, NULL, want, sizeof(want));
		CHECK(!ret && !strcmp(buf, want),
		      "text: without labels, indices (%d)", ret);
	}

	worker_stop(&w);
	CHECK(model_destroy(fd, id) == 0, "text: destroy");
	close(fd);
}

/* Asynchronous requests: SUBMIT, poll, REAP. */

#define AS_N 8

static int submit(int fd, uint32_t id, struct flax_submit_entry *e,
		  uint32_t count, uint32_t *submitted)
{
	struct flax_submit s = { .model_id = id, .entries = (uintptr_t)e,
				 .count = count };
	int ret = ioctl(fd, FLAX_IOC_SUBMIT, &s) ? -errno : 0;

	if (submitted)
		*submitted = s.submitted;
	return ret;
}

static int reap(int fd, struct flax_reap_entry *e, uint32_t count,
		uint32_t timeout_ms, uint32_t *reaped, uint32_t *pending)
{
	struct flax_reap r = { .entries = (uintptr_t)e, .count = count,
			       .timeout_ms = timeout_ms };
	int ret = ioctl(fd, FLAX_IOC_REAP, &r) ? -errno : 0;

	*reaped = r.reaped;
	if (pending)
		*pending = r.pending;
	return ret;
}

static bool readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void test_async(void)
{
	int fd = dev_open(), afd = dev_open(), id, ret, bad = 0;
	float in[AS_N][4], out[AS_N][4];
	struct flax_submit_entry se[AS_N];
	struct flax_reap_entry re[AS_N];
	struct flax_model_desc d;
	uint32_t n, got = 0, pending = 0;
	struct worker w;
	double t0;

	desc_vec(&d, "async", 4);
	d.nslots = AS_N;
	id = model_create(fd, &d);
	CHECK(id > 0, "async: create");

	/* No worker yet: nothing to reap, not readable. */
	CHECK(!readable(afd, 0), "async: idle fd not readable");
	ret = reap(afd, re, 1, 0, &got, &pending);
	CHECK(!ret && !got && !pending, "async: REAP of nothing: 0 reaped");

	memset(se, 0, sizeof(se));
	for (int i = 0; i < AS_N; i++) {
		for (int j = 0; j < 4; j++)
			in[i][j] = (float)(10 * i + j);
		se[i].input = (uintptr_t)in[i];
		se[i].input_size = sizeof(in[i]);
		se[i].user_data = 1000 + i;
	}
	ret = submit(afd, id, se, AS_N, &n);
	CHECK(!ret && n == AS_N, "async: SUBMIT %d requests in one call (%d, %u)",
	      AS_N, ret, n);
	for (int i = 0; i < AS_N; i++)
		bad += !se[i].ticket || (i && se[i].ticket <= se[i - 1].ticket);
	CHECK(!bad, "async: tickets non-zero and increasing");
	CHECK(sysfs_num("async", "queued") == AS_N, "async: all queued");

	CHECK(worker_start(&w, id, W_ECHO, 3, 0) == 0, "async: worker up");
	t0 = now_s();
	got = 0;
	while (got < AS_N && now_s() - t0 < 10) {
		uint32_t k;

		if (!readable(afd, 1000))
			continue;
		for (int i = 0; i < AS_N; i++) {
			re[i].output = (uintptr_t)out[i];
			re[i].output_size = sizeof(out[i]);
		}
		ret = reap(afd, re + got, AS_N - got, 0, &k, &pending);
		if (ret)
			break;
		got += k;
	}
	CHECK(got == AS_N && !pending, "async: poll + REAP collect all (%u, %u left)",
	      got, pending);
	bad = 0;
	for (uint32_t i = 0; i < got; i++) {
		int k = (int)(re[i].user_data - 1000);
		const float *o = (const float *)(uintptr_t)re[i].output;

		if (k < 0 || k >= AS_N || re[i].status ||
		    re[i].ticket != se[k].ticket ||
		    re[i].output_size != sizeof(out[0])) {
			bad++;
			continue;
		}
		for (int j = 0; j < 4; j++)
			bad += o[j] != in[k][j] * 2.0f + 1.0f;
	}
	CHECK(!bad, "async: each result is its own request's (%d bad)", bad);
	CHECK(!readable(afd, 0), "async: not readable once reaped");

	/* A short buffer: -ENOSPC with the size, the result kept. */
	ret = submit(afd, id, se, 1, &n);
	re[0].output = (uintptr_t)out[0];
	re[0].output_size = 3;
	ret = ret ?: reap(afd, re, 1, 5000, &got, &pending);
	CHECK(!ret && got == 1 && re[0].status == -ENOSPC &&
	      re[0].output_size == 16 && pending == 1,
	      "async: short buffer: ENOSPC with the size, kept (%d %u %d %u)",
	      ret, got, re[0].status, re[0].output_size);
	re[0].output_size = 16;
	ret = reap(afd, re, 1, 0, &got, &pending);
	CHECK(!ret && got == 1 && !re[0].status && out[0][3] == 7.0f &&
	      !pending, "async: then reaped whole");

	/*
	 * Finished requests nobody reaps hold no slot: with every slot's
	 * request finished and unreaped on afd, another client still runs.
	 */
	{
		int cfd = dev_open();
		uint32_t osz = sizeof(out[0]);

		ret = submit(afd, id, se, AS_N, &n);
		t0 = now_s();
		while (sysfs_num("async", "queued") > 0 && now_s() - t0 < 5)
			msleep(10);
		msleep(300);	/* the worker completes what it fetched */
		ret = ret ?: infer(cfd, id, in[1], sizeof(in[1]), out[0], &osz,
				   2000);
		CHECK(!ret && out[0][0] == in[1][0] * 2 + 1,
		      "async: %d unreaped results pin no slot: another client runs (%d)",
		      AS_N, ret);
		close(cfd);
		for (int i = 0; i < AS_N; i++) {
			re[i].output = (uintptr_t)out[i];
			re[i].output_size = sizeof(out[i]);
		}
		ret = reap(afd, re, AS_N, 2000, &got, &pending);
		bad = 0;
		for (uint32_t i = 0; i < got; i++) {
			int k = (int)(re[i].user_data - 1000);

			bad += k < 0 || k >= AS_N || re[i].status ||
			       ((float *)(uintptr_t)re[i].output)[3] !=
				       in[k][3] * 2 + 1;
		}
		CHECK(!ret && got == AS_N && !bad && !pending,
		      "async: then reaped, each its own result (%u, %d bad)", got,
		      bad);
	}

	/* Entry sizes: larger entries with a zero tail, and the old ones. */
	{
		struct big_submit {
			struct flax_submit_entry e;
			uint64_t more[2];
		} bs[2];
		struct big_reap {
			struct flax_reap_entry e;
			uint64_t more;
		} br[2];
		uint8_t old[2][FLAX_REAP_ENTRY_SIZE_VER0];
		struct flax_submit sr = { .model_id = id,
					  .entries = (uintptr_t)bs,
					  .count = 2,
					  .entry_size = sizeof(bs[0]) };
		struct flax_reap rr = { .entries = (uintptr_t)br, .count = 2,
					.timeout_ms = 2000,
					.entry_size = sizeof(br[0]) };

		memset(bs, 0, sizeof(bs));
		memset(br, 0, sizeof(br));
		for (int i = 0; i < 2; i++) {
			bs[i].e = se[i];
			br[i].e.output = (uintptr_t)out[i];
			br[i].e.output_size = sizeof(out[i]);
		}
		bs[0].more[1] = 1;	/* the first entry: nothing is queued */
		CHECK_ERR(ioctl(afd, FLAX_IOC_SUBMIT, &sr), E2BIG,
			  "async: SUBMIT entry with a non-zero tail");
		bs[0].more[1] = 0;
		ret = ioctl(afd, FLAX_IOC_SUBMIT, &sr) ? -errno : 0;
		CHECK(!ret && sr.submitted == 2 && bs[0].e.ticket &&
		      bs[1].e.ticket > bs[0].e.ticket,
		      "async: SUBMIT with %zu-byte entries (%d)", sizeof(bs[0]),
		      ret);
		ret = ioctl(afd, FLAX_IOC_REAP, &rr) ? -errno : 0;
		if (!ret && rr.reaped < 2) {
			rr.entries = (uintptr_t)&br[rr.reaped];
			rr.count = 2 - rr.reaped;
			ret = ioctl(afd, FLAX_IOC_REAP, &rr) ? -errno : 0;
			rr.reaped = ret ? 0 : 2;
		}
		CHECK(!ret && rr.reaped == 2 &&
		      br[0].e.user_data + br[1].e.user_data == 2001 &&
		      !br[0].e.status && !br[1].e.status && !br[0].more &&
		      !br[1].more,
		      "async: REAP with %zu-byte entries, their tails untouched",
		      sizeof(br[0]));

		/* A caller built with the first header: 32-byte entries. */
		ret = submit(afd, id, se, 2, &n);
		memset(old, 0, sizeof(old));
		for (int i = 0; i < 2; i++) {
			uint64_t o = (uintptr_t)out[i];
			uint32_t osz = sizeof(out[i]);

			memcpy(old[i] + offsetof(struct flax_reap_entry, output),
			       &o, sizeof(o));
			memcpy(old[i] +
				       offsetof(struct flax_reap_entry, output_size),
			       &osz, sizeof(osz));
		}
		msleep(300);
		{
			struct flax_reap r0 = { .entries = (uintptr_t)old,
						.count = 2,
						.timeout_ms = 2000 };

			ret = ret ?: ioctl(afd,
					   _IOWR(FLAX_IOC_MAGIC, 0x22,
						 char[FLAX_REAP_SIZE_VER0]),
					   &r0) ? -errno : 0;
			got = r0.reaped;
		}
		{
			uint64_t u0, u1;

			memcpy(&u0,
			       old[0] + offsetof(struct flax_reap_entry, user_data),
			       sizeof(u0));
			memcpy(&u1,
			       old[1] + offsetof(struct flax_reap_entry, user_data),
			       sizeof(u1));
			bad = u0 + u1 != 2001;
		}
		CHECK(!ret && got == 2 && !bad,
		      "async: REAP from a first-version caller: 32-byte entries (%d, %u)",
		      ret, got);
	}
	/* max_pending (1024 by default) unreaped requests per fd. */
	{
		uint32_t total = 0, k;

		ret = 0;
		while (!ret && total < 1024) {
			ret = submit(afd, id, se, AS_N, &n);
			total += ret ? 0 : n;
		}
		ret = ret ?: submit(afd, id, se, 1, &n);
		CHECK(total == 1024 && ret == -EBUSY,
		      "async: SUBMIT past max_pending unreaped is EBUSY (%u, %d)",
		      total, ret);
		got = 0;
		t0 = now_s();
		while (got < total && now_s() - t0 < 30) {
			for (int i = 0; i < AS_N; i++) {
				re[i].output = (uintptr_t)out[i];
				re[i].output_size = sizeof(out[i]);
			}
			if (reap(afd, re, AS_N, 1000, &k, &pending))
				break;
			got += k;
		}
		CHECK(got == total && !pending,
		      "async: and all %u reaped (%u)", total, got);
	}
	worker_stop(&w);

	/* No worker: each request times out on its own, reaped as -ETIMEDOUT. */
	se[0].timeout_ms = 200;
	se[1].timeout_ms = 200;
	t0 = now_s();
	ret = submit(afd, id, se, 2, &n);
	CHECK(!ret && readable(afd, 3000) && now_s() - t0 < 1.5,
	      "async: readable after the timeout (%.2f s)", now_s() - t0);
	msleep(100);
	ret = reap(afd, re, 2, 1000, &got, &pending);
	CHECK(!ret && got == 2 && re[0].status == -ETIMEDOUT &&
	      re[1].status == -ETIMEDOUT && !pending,
	      "async: both ETIMEDOUT (%u: %d %d)", got, re[0].status,
	      re[1].status);
	CHECK(sysfs_num("async", "queued") == 0, "async: queue empty again");
	se[0].timeout_ms = se[1].timeout_ms = 0;

	/* Closing the fd cancels what it has not reaped. */
	{
		int cfd = dev_open();

		ret = submit(cfd, id, se, 4, &n);
		CHECK(!ret && n == 4 && sysfs_num("async", "queued") == 4,
		      "async: 4 queued by an fd");
		close(cfd);
		CHECK(sysfs_num("async", "queued") == 0,
		      "async: closing it cancels them");
	}

	/* max_queue with O_NONBLOCK: a short submit, then EAGAIN. */
	{
		int nfd = open(DEV, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		char path[128];
		FILE *f;

		snprintf(path, sizeof(path), SYSFS_MODELS "/async/max_queue");
		f = fopen(path, "w");
		if (f) {
			fputs("2\n", f);
			fclose(f);
		}
		ret = submit(nfd, id, se, 3, &n);
		CHECK(!ret && n == 2, "async: max_queue 2: 2 of 3 submitted (%d, %u)",
		      ret, n);
		CHECK(submit(nfd, id, se, 1, &n) == -EAGAIN,
		      "async: then EAGAIN on a non-blocking fd");
		close(nfd);
	}

	/* Bad requests. */
	CHECK(submit(afd, id, se, 0, &n) == -EINVAL, "async: count 0 EINVAL");
	CHECK(submit(afd, id, se, AS_N + 1, &n) == -EINVAL,
	      "async: count > nslots EINVAL");
	CHECK(submit(afd, 0x7fffffff, se, 1, &n) == -ENOENT,
	      "async: unknown model ENOENT");
	{
		struct flax_submit s = { .model_id = id, .entries = 8, .count = 1 };
		struct flax_reap r = { .entries = (uintptr_t)re, .count = 0 };

		CHECK_ERR(ioctl(afd, FLAX_IOC_SUBMIT, &s), EFAULT,
			  "async: bad entries pointer");
		s.entries = (uintptr_t)se;
		s.flags = 1u << 31;
		CHECK_ERR(ioctl(afd, FLAX_IOC_SUBMIT, &s), EINVAL,
			  "async: SUBMIT undefined flag");
		s.flags = 0;
		s.entry_size = FLAX_SUBMIT_ENTRY_SIZE_VER0 - 8;
		CHECK_ERR(ioctl(afd, FLAX_IOC_SUBMIT, &s), EINVAL,
			  "async: SUBMIT entry_size below its first version");
		s.entry_size = 0;
		s.priority = FLAX_PRIORITY_MAX + 1;
		CHECK_ERR(ioctl(afd, FLAX_IOC_SUBMIT, &s), EINVAL,
			  "async: SUBMIT priority above FLAX_PRIORITY_MAX");
		s.priority = 0;
		CHECK_ERR(ioctl(afd, FLAX_IOC_REAP, &r), EINVAL,
			  "async: REAP count 0");
		r.count = 1;
		r.flags = 1;
		CHECK_ERR(ioctl(afd, FLAX_IOC_REAP, &r), EINVAL,
			  "async: REAP flags");
	}
	se[0].input_size = 3;
	CHECK(submit(afd, id, se, 1, &n) == -EINVAL,
	      "async: wrong input size EINVAL");
	se[0].input_size = 16;

	CHECK(model_destroy(fd, id) == 0, "async: destroy");
	close(afd);
	close(fd);
}

/* Quiesce through sysfs "state": drain, drained, run. */

static int sysfs_write(const char *model, const char *attr, const char *val)
{
	char path[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), SYSFS_MODELS "/%s/%s", model, attr);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	close(fd);
	return n < 0 ? -errno : 0;
}

static void test_drain(void)
{
	int fd = dev_open(), afd = dev_open(), id, ret;
	struct flax_submit_entry se[2] = { 0 };
	struct flax_reap_entry re[2] = { 0 };
	float in[4] = { 1, 2, 3, 4 }, out[2][4];
	struct flax_model_desc d;
	uint32_t n, size = sizeof(out[0]);
	char state[32];
	struct worker w;

	desc_vec(&d, "drain", 4);
	d.nslots = 4;
	id = model_create(fd, &d);
	for (int i = 0; i < 2; i++) {
		se[i].input = (uintptr_t)in;
		se[i].input_size = sizeof(in);
		re[i].output = (uintptr_t)out[i];
		re[i].output_size = sizeof(out[i]);
	}
	ret = submit(afd, id, se, 2, &n);
	CHECK(!ret && n == 2, "drain: two requests queued");
	CHECK(sysfs_write("drain", "state", "drain\n") == 0 &&
	      !sysfs_read("drain", "state", state, sizeof(state)) &&
	      !strcmp(state, "draining"), "drain: state draining (%s)", state);
	CHECK(infer(fd, id, in, sizeof(in), out[0], &size, 0) == -EAGAIN,
	      "drain: a new request is EAGAIN");
	CHECK(submit(afd, id, se, 1, &n) == -EAGAIN, "drain: a new SUBMIT too");
	CHECK(worker_start(&w, id, W_ECHO, 2, 0) == 0, "drain: worker up");
	ret = reap(afd, re, 2, 5000, &n, NULL);
	if (!ret && n < 2) {
		uint32_t k;

		ret = reap(afd, re + n, 2 - n, 5000, &k, NULL);
		n += k;
	}
	CHECK(!ret && n == 2 && !re[0].status && !re[1].status &&
	      out[0][0] == 3.0f, "drain: the queued ones finish (%u)", n);
	CHECK(!sysfs_read("drain", "state", state, sizeof(state)) &&
	      !strcmp(state, "drained"), "drain: state drained (%s)", state);
	CHECK(sysfs_write("drain", "state", "sideways") == -EINVAL,
	      "drain: bad state EINVAL");
	CHECK(sysfs_write("drain", "state", "run") == 0 &&
	      infer(fd, id, in, sizeof(in), out[0], &size, 0) == 0 &&
	      out[0][3] == 9.0f, "drain: run: served again");
	worker_stop(&w);
	model_destroy(fd, id);
	close(afd);
	close(fd);
}

/* Batching policy: max_queue_delay_us and max_batch, seen in the stats. */

static void test_batching(void)
{
	int fd = dev_open(), afd = dev_open(), id, ret;
	struct flax_submit_entry se[32] = { 0 };
	struct flax_reap_entry re[32];
	float in[4] = { 0 }, out[32][4];
	struct flax_model_desc d;
	uint32_t n, got, k;
	struct worker w;
	double t0, dt;

	desc_vec(&d, "batch", 4);
	d.nslots = 64;
	d.max_batch = 32;
	d.max_queue_delay_us = 50000;
	id = model_create(fd, &d);
	CHECK(id > 0, "batch: create (delay 50 ms, max_batch 32)");
	CHECK(worker_start(&w, id, W_ECHO, 64, FLAX_MAX_WAIT_US) == 0,
	      "batch: worker up, asking for up to 64");
	for (int i = 0; i < 32; i++) {
		se[i].input = (uintptr_t)in;
		se[i].input_size = sizeof(in);
	}

	for (int round = 0; round < 2; round++) {
		sysfs_write("batch", "batches", "0");
		if (round)
			sysfs_write("batch", "max_batch", "8");
		ret = submit(afd, id, se, 32, &n);
		for (got = 0; !ret && got < 32; got += k) {
			for (int i = 0; i < 32; i++) {
				re[i].output = (uintptr_t)out[i];
				re[i].output_size = sizeof(out[i]);
			}
			ret = reap(afd, re, 32 - got, 5000, &k, NULL);
			if (!k)
				break;
		}
		if (!round)
			CHECK(!ret && got == 32 && sysfs_num("batch", "batches") == 1 &&
			      sysfs_num("batch", "batched") == 32,
			      "batch: a burst of 32 forms one batch of 32 (%ld batches)",
			      sysfs_num("batch", "batches"));
		else
			CHECK(!ret && got == 32 && sysfs_num("batch", "batches") == 4 &&
			      sysfs_num("batch", "batched") == 32,
			      "batch: with max_batch 8, four batches (%ld)",
			      sysfs_num("batch", "batches"));
	}

	/* A lone job waits the delay for company, and not much longer. */
	t0 = now_s();
	ret = submit(afd, id, se, 1, &n);
	ret = ret ?: reap(afd, re, 1, 5000, &got, NULL);
	dt = now_s() - t0;
	/* Not before the delay; the upper bound only allows for a loaded TCG host. */
	CHECK(!ret && got == 1 && dt >= 0.045 && dt < 3,
	      "batch: a lone job is served after the 50 ms delay (%.3f s)", dt);

	worker_stop(&w);
	model_destroy(fd, id);
	close(afd);
	close(fd);
}

/*
 * FLAX_FETCH_NOWAIT: what is queued now, never a wait -- neither for a
 * first job nor for the batching delay.
 */
static void test_nowait(void)
{
	struct flax_fetch f = { .max_jobs = 2, .max_wait_us = FLAX_MAX_WAIT_US,
				.timeout_ms = 3000, .flags = FLAX_FETCH_NOWAIT };
	int fd = dev_open(), afd = dev_open(), id, ret;
	struct flax_completion c[3];
	struct flax_complete cc = { .completions = (uintptr_t)c, .count = 3 };
	struct flax_submit_entry se[3] = { 0 };
	struct flax_reap_entry re[3] = { 0 };
	struct flax_ring_entry e[3];
	float in[4] = { 1, 2, 3, 4 }, out[3][4];
	struct flax_model_desc d;
	uint32_t n = 0, got = 0, k;
	struct worker w;
	double t0;

	desc_vec(&d, "nowait", 4);
	d.nslots = 8;
	d.max_batch = 8;
	d.max_queue_delay_us = 2000000;
	id = model_create(fd, &d);
	CHECK(id > 0 && worker_attach(&w, id) == 0,
	      "nowait: model (2 s batching delay) and worker");

	t0 = now_s();
	CHECK(fetch(w.fd, &f) == 0 && f.count == 0 && now_s() - t0 < 1,
	      "nowait: nothing queued: count 0 at once, not after 3 s (%.3f s)",
	      now_s() - t0);

	for (int i = 0; i < 3; i++) {
		se[i].input = (uintptr_t)in;
		se[i].input_size = sizeof(in);
		re[i].output = (uintptr_t)out[i];
		re[i].output_size = sizeof(out[i]);
	}
	ret = submit(afd, id, se, 3, &n);
	t0 = now_s();
	CHECK(!ret && n == 3 && fetch(w.fd, &f) == 0 && f.count == 2 &&
	      f.max_batch == 2 && now_s() - t0 < 1,
	      "nowait: 3 queued: max_jobs 2 taken at once, not after the delay (%u, %.3f s)",
	      f.count, now_s() - t0);
	got = ring_read(&w, &f, e);
	f.max_jobs = 8;
	CHECK(fetch(w.fd, &f) == 0 && f.count == 1,
	      "nowait: the third one next (%u)", f.count);
	got += ring_read(&w, &f, e + got);
	CHECK(fetch(w.fd, &f) == 0 && f.count == 0, "nowait: then none (%u)",
	      f.count);
	CHECK(f.max_batch == 8, "nowait: max_batch out: max_jobs 8 (%u)",
	      f.max_batch);
	sysfs_write("nowait", "max_batch", "4");
	CHECK(fetch(w.fd, &f) == 0 && f.max_batch == 4,
	      "nowait: max_batch out: the model's 4 when smaller (%u)",
	      f.max_batch);
	f.reserved = 1;
	CHECK(fetch(w.fd, &f) == -EINVAL, "nowait: reserved EINVAL");
	f.reserved = 0;
	{
		/* A caller built before @max_batch: 40 bytes, nothing past them. */
		unsigned int cmd = _IOC(_IOC_READ | _IOC_WRITE, FLAX_IOC_MAGIC,
					_IOC_NR(FLAX_IOC_FETCH),
					FLAX_FETCH_SIZE_VER0);
		struct flax_fetch old = f;

		old.max_batch = 0xdeadbeef;
		old.reserved = 0xdeadbeef;
		CHECK(!ioctl(w.fd, cmd, &old) && old.count == 0 &&
		      old.max_batch == 0xdeadbeef && old.reserved == 0xdeadbeef,
		      "nowait: the version-0 struct works, its tail untouched");
	}
	w.mode = W_ECHO;
	for (uint32_t i = 0; i < got && i < 3; i++) {
		work_one(&w, e[i].slot);
		c[i] = (struct flax_completion){ e[i].slot, e[i].tag, 0, 0 };
	}
	cc.count = got;
	CHECK(got == 3 && !ioctl(w.fd, FLAX_IOC_COMPLETE, &cc) && cc.done == 3,
	      "nowait: three completed");
	for (n = 0; n < 3; n += k) {
		if (reap(afd, re + n, 3 - n, 5000, &k, NULL) || !k)
			break;
	}
	CHECK(n == 3 && !re[0].status && !re[1].status && !re[2].status &&
	      out[0][0] == 3.0f && out[2][3] == 9.0f,
	      "nowait: three results (%u)", n);

	worker_detach(&w);
	model_destroy(fd, id);
	close(afd);
	close(fd);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "info", test_info },
	{ "create", test_create },
	{ "digits", test_digits },
	{ "raw", test_raw },
	{ "text", test_text },
	{ "async", test_async },
	{ "drain", test_drain },
	{ "batching", test_batching },
	{ "nowait", test_nowait },
	{ "concurrent", test_concurrent },
	{ "errors", test_errors },
	{ "kill", test_kill },
	{ "destroy", test_destroy },
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s all | TEST... | modload KO\n", argv[0]);
		return 2;
	}
	if (access(DEV, F_OK)) {
		printf("# %s missing: is flaxdev.ko loaded?\n", DEV);
		return 4;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (!strcmp(argv[1], "modload")) {
		if (argc != 3) {
			fprintf(stderr, "usage: %s modload PATH/flaxdev.ko\n", argv[0]);
			return 2;
		}
		test_modload(argv[2]);
	} else {
		size_t ntests = sizeof(tests) / sizeof(tests[0]);

		for (int a = 1; a < argc; a++) {
			bool all = !strcmp(argv[a], "all"), found = all;

			for (size_t i = 0; i < ntests; i++) {
				if (!all && strcmp(argv[a], tests[i].name))
					continue;
				found = true;
				printf("# %s\n", tests[i].name);
				tests[i].fn();
			}
			if (!found) {
				fprintf(stderr, "unknown test %s\n", argv[a]);
				return 2;
			}
		}
	}
	printf("%d passed, %d failed\n", npassed, nfailed);
	return nfailed ? 1 : 0;
}
