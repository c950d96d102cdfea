// SPDX-License-Identifier: GPL-2.0
/*
 * flax_load: a multi-threaded load generator, the C half of `flaxdev bench`.
 *
 * Written only against the UAPI header, as any C user would.  It drives
 * either /dev/flax/<model> or a Unix-socket server speaking the protocol below with
 * identical client threads, so that the two transports compare fairly:
 *
 *	$ flax_load -m digits -i digits.bin -s 64 -c 8 -n 10000
 *	{"transport": "device", "target": "digits", "clients": 8, ...}
 *	$ flax_load -u /tmp/base.sock -i digits.bin -s 64 -c 8 -r 2000 -T 10 -o lat.bin
 *	$ flax_load -m digits -i digits.bin -s 64 -c 8 -n 10000 -V want.bin -e 40
 *
 * Transports (exactly one), each client thread with its own fd:
 *  -m MODEL	open DEVICE (-d, default /dev/flax/MODEL), FLAX_IOC_MODEL_GET by name
 *		once, then one FLAX_IOC_INFER per request.  -t TIMEOUT_MS goes in
 *		struct flax_infer.timeout_ms, -x asks for FLAX_INFER_TEXT results.
 *		The result buffer starts at 64 KiB and grows when INFER fails
 *		with ENOSPC (not counted as an error).  A failed INFER is
 *		counted under its errno and the client goes on.
 *  -u PATH	connect an AF_UNIX SOCK_STREAM socket to PATH.  A request is
 *		"u32 length, length bytes of input", a response "s32 status
 *		(0 or -errno), u32 length, length bytes of result", integers
 *		little-endian.  A non-zero status counts as that errno; end of
 *		file, a socket error or a malformed response ends the run
 *		(exit 1).
 *
 * Input: INPUT_FILE (-i) holds a whole number of records of RECORD_BYTES
 * (-s) each, sent whole; with -z they are NUL-padded texts, and a request
 * sends the bytes before the record's first NUL (for FLAX_PRE_TOKENIZE
 * models).  Client c sends record (c * 7919 + i) % nrecords as its i-th
 * timed request, and as its i-th warmup request: clients do not send the
 * same sequence in lockstep (the schedule of pyflaxdev's Python load).
 *
 * Verification (-V EXPECTED_FILE -e EXPECTED_BYTES, binary results only,
 * not with -x): EXPECTED_FILE holds one EXPECTED_BYTES record per input
 * record, in the same order, the result that input must give; its size
 * must be exactly nrecords * EXPECTED_BYTES.  Every successful timed
 * request's result is compared with the record of the input it sent (the
 * warmup's are not: -w 0 checks every request).  It must be EXPECTED_BYTES
 * long, and is compared as 4-byte little-endian words: an identical word
 * passes; a differing one passes only if, read as IEEE binary32, both are
 * finite and |a - b| <= REL_TOL * max(|a|, |b|) (-E, default 1e-5; 0:
 * exact).  So probabilities may differ in their last bits, while a class
 * index that differs (a tiny subnormal as a float) fails.  A last partial
 * word (EXPECTED_BYTES not a multiple of 4) must be identical.  A mismatch
 * is not an I/O error: it counts under "mismatches", not "ok", has status
 * -EBADMSG in SAMPLES_FILE, and each client reports its first one on
 * stderr (record, word, expected and got, in hex and as floats).
 *
 * Load: each of CLIENTS (-c, 1 to 1024) threads first sends WARMUP (-w,
 * default 5) untimed requests back to back; then all start together (a
 * barrier, then one common start time) and each sends REQUESTS (-n) timed
 * requests or keeps going for SECONDS (-T).
 *  - closed loop (default): the next request as soon as the previous one
 *    returns; latency is from sending to completion;
 *  - open loop (-r RATE, total requests/s): each client runs a Poisson
 *    arrival process at RATE / CLIENTS (exponential gaps from a splitmix64
 *    generator seeded with SEED, -S, default 1, and the client's index).
 *    Latency is from the *scheduled* arrival, as wrk2 measures it, so a
 *    slow response also charges the requests queued behind it; a client
 *    behind schedule sends at once, and a request sent more than 1 ms
 *    after its arrival counts as "late".  With -T, nothing is sent after
 *    SECONDS: an overloaded server is not given the backlog to clear.
 *
 * Output: one line of JSON on stdout:
 *	{"transport": "device"|"socket", "target": MODEL or PATH,
 *	 "clients": N, "mode": "closed"|"open", "offered_rps": RATE or null,
 *	 "requests": timed requests, "ok": N, "verified": true if -V,
 *	 "mismatches": N (0 without -V), "errors": {"ETIMEDOUT": N, ...},
 *	 "late": N, "elapsed_s": common start to last completion,
 *	 "throughput_rps": ok / elapsed_s, "result_bytes_mean": mean result
 *	 size of the successful requests}
 * With -o SAMPLES_FILE, every timed request as a 24-byte little-endian
 * record, grouped by client: u64 start_ns (scheduled start, from the
 * common start), u64 latency_ns, s32 status (0 or -errno; -EBADMSG for a
 * mismatch), u32 client.
 * Times come from CLOCK_MONOTONIC.
 *
 * SIGINT or SIGTERM stops the clients after their current request; what
 * was done is still reported, with exit status 130 (a second signal
 * kills).  Exit status 2: bad usage; 1: the run failed; 3: a result did not
 * match (-V), the JSON printed and the samples written all the same, and
 * even if a signal stopped the run.
 *
 * Build: make -C examples (needs only -I driver/uapi and -pthread).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "flaxdev.h"

#define PROG		"flax_load"
#define MAX_CLIENTS	1024
#define RECORD_STRIDE	7919ULL		/* a prime: spreads clients over the input */
#define DEFAULT_WARMUP	5
#define DEFAULT_SEED	1
#define DEFAULT_REL_TOL	0.00001		/* -E: relative tolerance of a float word */
#define RESULT_INITIAL	65536		/* first result buffer, in bytes */
#define LATE_NS		1000000ULL	/* open loop: sent this late is "late" */
#define SLEEP_SLICE_NS	100000000ULL	/* longest sleep between stop checks */
#define SAMPLE_CHUNK	65536		/* samples: growth step with -T */
#define SAMPLE_PREALLOC	4194304		/* most samples allocated up front */
#define SAMPLE_BYTES	24		/* one record of SAMPLES_FILE */
#define ERRNO_SLOTS	(FLAX_STATUS_ERRNO_MAX + 1) /* errnos counted: 1 to 511 */
#define SOCK_HDR_BYTES	8		/* response: s32 status, u32 length */
#define SOCK_RESULT_MAX	(1024U * 1024 * 1024) /* largest response payload accepted */
#define WORD_BYTES	4		/* -V compares results word by word */
#define NSEC_PER_SEC	1000000000ULL
#define THREAD_STACK	(256 * 1024)
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

enum transport {
	TRANSPORT_DEVICE,
	TRANSPORT_SOCKET,
};

struct config {
	enum transport transport;
	const char *target;		/* model name or socket path */
	const char *device;		/* NULL: the model's node */
	char node[sizeof(FLAX_NODE_DIR) + FLAX_NAME_MAX];
	const char *input_path;
	const char *samples_path;
	FILE *samples_file;		/* opened before the run: fail early */
	const char *expected_path;	/* -V, or NULL */
	const __u8 *expected;		/* -V: nrecords results, back to back */
	__u32 expected_bytes;		/* -e */
	double rel_tol;			/* -E */
	const __u8 *records;
	__u64 nrecords;
	__u32 record_bytes;
	__u32 *lengths;			/* -z: bytes before each record's NUL */
	__u32 max_length;		/* longest request input */
	unsigned int clients;
	__u64 count;			/* timed requests per client (-n), or 0 */
	__u64 duration_ns;		/* -T, or 0 */
	double rate;			/* -r: total offered requests/s, or 0 */
	__u64 warmup;
	__u32 timeout_ms;
	__u64 seed;
	bool text;			/* -x: text results */
	bool nul_padded;		/* -z: NUL-padded text records */
};

struct sample {
	__u64 start_ns;
	__u64 latency_ns;
	__s32 status;
	__u32 client;
};

/* What one request gave: 0 or -errno, and the result. */
struct result {
	__s32 status;
	__u32 bytes;
	const __u8 *data;	/* in the client's buffer, when status is 0 */
};

/* One client thread.  Only the thread itself touches it until it is joined. */
struct client {
	const struct config *cfg;
	pthread_t thread;
	unsigned int index;
	int fd;
	__u32 model_id;
	__u8 *buf;		/* result (device) or whole response (socket) */
	size_t buf_size;
	__u64 rng;		/* splitmix64 state */
	__u64 next_request;	/* i: warmup or timed requests issued */
	struct sample *samples;	/* only with -o */
	size_t nsamples;
	size_t samples_cap;
	__u64 ok;
	__u64 mismatches;	/* -V: results that were not the expected ones */
	__u64 late;
	__u64 result_bytes;	/* sum over the successful requests */
	__u64 last_done_ns;
	bool failed;
	__u64 errors[ERRNO_SLOTS];
};

struct totals {
	__u64 requests;
	__u64 ok;
	__u64 mismatches;
	__u64 late;
	__u64 result_bytes;
	__u64 last_done_ns;
	unsigned int failed;
	__u64 errors[ERRNO_SLOTS];
};

static atomic_int stop_requested;	/* SIGINT or SIGTERM */
static atomic_int run_failed;		/* a client gave up: the others stop */
static atomic_flag failure_reported = ATOMIC_FLAG_INIT;
static pthread_barrier_t start_barrier;	/* the clients and main */
static __u64 run_start_ns;		/* main writes it between two barriers */

static const struct {
	int num;
	const char *name;
} errno_names[] = {
	{ EPERM, "EPERM" },		{ ENOENT, "ENOENT" },
	{ EINTR, "EINTR" },		{ EIO, "EIO" },
	{ ENXIO, "ENXIO" },		{ E2BIG, "E2BIG" },
	{ EBADF, "EBADF" },		{ EAGAIN, "EAGAIN" },
	{ ENOMEM, "ENOMEM" },		{ EACCES, "EACCES" },
	{ EFAULT, "EFAULT" },		{ EBUSY, "EBUSY" },
	{ EEXIST, "EEXIST" },		{ ENODEV, "ENODEV" },
	{ EINVAL, "EINVAL" },		{ ENOTTY, "ENOTTY" },
	{ ENOSPC, "ENOSPC" },		{ EPIPE, "EPIPE" },
	{ ERANGE, "ERANGE" },		{ ENODATA, "ENODATA" },
	{ EPROTO, "EPROTO" },		{ EBADMSG, "EBADMSG" },
	{ EOVERFLOW, "EOVERFLOW" },	{ EILSEQ, "EILSEQ" },
	{ EMSGSIZE, "EMSGSIZE" },	{ EOPNOTSUPP, "EOPNOTSUPP" },
	{ ENOBUFS, "ENOBUFS" },		{ ECONNRESET, "ECONNRESET" },
	{ ETIMEDOUT, "ETIMEDOUT" },	{ ECONNREFUSED, "ECONNREFUSED" },
	{ ECANCELED, "ECANCELED" },
};

static void show_usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " (-m MODEL [-d DEVICE] [-t TIMEOUT_MS] [-x] | -u SOCKET_PATH)\n"
		"                 -i INPUT_FILE -s RECORD_BYTES [-z] -c CLIENTS (-n REQUESTS | -T SECONDS)\n"
		"                 [-r RATE] [-w WARMUP] [-o SAMPLES_FILE] [-S SEED]\n"
		"                 [-V EXPECTED_FILE -e EXPECTED_BYTES [-E REL_TOL]]\n");
}

static void help(void)
{
	show_usage(stdout);
	printf("\n"
	       "  -m MODEL         device transport: the model's name\n"
	       "  -d DEVICE        the device (default /dev/flax/MODEL)\n"
	       "  -t TIMEOUT_MS    struct flax_infer.timeout_ms (default 0: the model's)\n"
	       "  -x               ask for text results (FLAX_INFER_TEXT)\n"
	       "  -u SOCKET_PATH   socket transport: the server's Unix socket\n"
	       "  -i INPUT_FILE    the records, back to back\n"
	       "  -s RECORD_BYTES  size of one record, one request's input\n"
	       "  -z               records are NUL-padded texts: send each up to its NUL\n"
	       "  -c CLIENTS       client threads, 1 to %d, each with its own fd\n"
	       "  -n REQUESTS      timed requests per client\n"
	       "  -T SECONDS       or: send for this long\n"
	       "  -r RATE          open loop: total requests/s, Poisson arrivals\n"
	       "                   (default: closed loop)\n"
	       "  -w WARMUP        untimed requests per client first (default %d)\n"
	       "  -o SAMPLES_FILE  write every timed request's 24-byte record\n"
	       "  -S SEED          seed of the arrival process (default %d)\n"
	       "  -V EXPECTED_FILE verify: each input record's expected binary result,\n"
	       "                   back to back, in the input's order (not with -x)\n"
	       "  -e EXPECTED_BYTES\n"
	       "                   size of one expected result\n"
	       "  -E REL_TOL       a differing 4-byte word passes if both are finite floats\n"
	       "                   within REL_TOL * the larger (default %g; 0: exact)\n"
	       "Prints one line of JSON.  Exit status: 0, 1 if the run failed, 2 for bad usage,\n"
	       "3 if a result did not match (-V).\n",
	       MAX_CLIENTS, DEFAULT_WARMUP, DEFAULT_SEED, DEFAULT_REL_TOL);
}

/* Report a usage error; returns the exit status for it. */
static int usage_error(const char *msg)
{
	fprintf(stderr, PROG ": %s\n", msg);
	show_usage(stderr);
	return 2;
}

static int parse_u64(int opt, const char *arg, __u64 min, __u64 max, __u64 *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (arg[0] < '0' || arg[0] > '9' || *end || errno || v < min || v > max) {
		fprintf(stderr, PROG ": -%c %s: not an integer from %llu to %llu\n", opt, arg,
			(unsigned long long)min, (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

/* A number in (0, max]. */
static int parse_positive(int opt, const char *arg, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (end == arg || *end || errno || !(v > 0) || v > max) {
		fprintf(stderr, PROG ": -%c %s: not a number above 0 and at most %g\n", opt, arg,
			max);
		return -1;
	}
	*out = v;
	return 0;
}

/* -E: a relative tolerance, from 0 (exact) to 1. */
static int parse_tolerance(int opt, const char *arg, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (end == arg || *end || errno || !(v >= 0) || v > 1) {
		fprintf(stderr, PROG ": -%c %s: not a number from 0 to 1\n", opt, arg);
		return -1;
	}
	*out = v;
	return 0;
}

/* One option into @cfg; returns 0, or -1 after a message. */
static int parse_option(int opt, const char *arg, struct config *cfg)
{
	double seconds;
	__u64 v;

	switch (opt) {
	case 'm':
	case 'u':
		if (cfg->target) {
			usage_error("give exactly one of -m MODEL and -u SOCKET_PATH");
			return -1;
		}
		cfg->target = arg;
		cfg->transport = opt == 'm' ? TRANSPORT_DEVICE : TRANSPORT_SOCKET;
		return 0;
	case 'd':
		cfg->device = arg;
		return 0;
	case 'i':
		cfg->input_path = arg;
		return 0;
	case 'o':
		cfg->samples_path = arg;
		return 0;
	case 'V':
		cfg->expected_path = arg;
		return 0;
	case 'e':
		if (parse_u64(opt, arg, 1, SOCK_RESULT_MAX, &v))
			return -1;
		cfg->expected_bytes = (__u32)v;
		return 0;
	case 'E':
		return parse_tolerance(opt, arg, &cfg->rel_tol);
	case 'x':
		cfg->text = true;
		return 0;
	case 'z':
		cfg->nul_padded = true;
		return 0;
	case 's':
		if (parse_u64(opt, arg, 1, UINT32_MAX, &v))
			return -1;
		cfg->record_bytes = (__u32)v;
		return 0;
	case 'c':
		if (parse_u64(opt, arg, 1, MAX_CLIENTS, &v))
			return -1;
		cfg->clients = (unsigned int)v;
		return 0;
	case 'n':
		return parse_u64(opt, arg, 1, 1000000000, &cfg->count);
	case 'T':
		if (parse_positive(opt, arg, 1e6, &seconds))
			return -1;
		cfg->duration_ns = (__u64)(seconds * NSEC_PER_SEC);
		if (cfg->duration_ns)
			return 0;
		fprintf(stderr, PROG ": -T %s: shorter than a nanosecond\n", arg);
		return -1;
	case 'r':
		return parse_positive(opt, arg, 1e9, &cfg->rate);
	case 'w':
		return parse_u64(opt, arg, 0, 1000000000, &cfg->warmup);
	case 't':
		if (parse_u64(opt, arg, 0, UINT32_MAX, &v))
			return -1;
		cfg->timeout_ms = (__u32)v;
		return 0;
	case 'S':
		return parse_u64(opt, arg, 0, UINT64_MAX, &cfg->seed);
	case ':':
		fprintf(stderr, PROG ": -%c needs a value\n", optopt);
		show_usage(stderr);
		return -1;
	default:
		fprintf(stderr, PROG ": unknown option -%c\n", optopt);
		show_usage(stderr);
		return -1;
	}
}

/* Cross-option checks once all are read; returns 0 or 2. */
static int check_options(const struct config *cfg, bool device_options, bool verify_options)
{
	if (!cfg->target)
		return usage_error("give one of -m MODEL and -u SOCKET_PATH");
	if (cfg->transport == TRANSPORT_SOCKET && device_options)
		return usage_error("-d, -t and -x apply to the device transport (-m) only");
	if (cfg->transport == TRANSPORT_DEVICE && strlen(cfg->target) >= FLAX_NAME_MAX)
		return usage_error("the model name is too long");
	if (cfg->transport == TRANSPORT_SOCKET &&
	    strlen(cfg->target) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return usage_error("the socket path is too long");
	if (!cfg->input_path)
		return usage_error("-i INPUT_FILE is required");
	if (!cfg->record_bytes)
		return usage_error("-s RECORD_BYTES is required");
	if (!cfg->clients)
		return usage_error("-c CLIENTS is required");
	if (!cfg->count == !cfg->duration_ns)
		return usage_error("give exactly one of -n REQUESTS and -T SECONDS");
	if (!cfg->expected_path && verify_options)
		return usage_error("-e and -E apply to verification (-V) only");
	if (cfg->expected_path && !cfg->expected_bytes)
		return usage_error("-V EXPECTED_FILE needs -e EXPECTED_BYTES");
	if (cfg->expected_path && cfg->text)
		return usage_error("-V verifies binary results: not with -x");
	return 0;
}

/* Returns 0 to run, 2 for bad usage, -1 after -h (exit status 0). */
static int parse_args(int argc, char **argv, struct config *cfg)
{
	bool device_options = false, verify_options = false, help_asked = false;
	int opt;

	cfg->warmup = DEFAULT_WARMUP;
	cfg->seed = DEFAULT_SEED;
	cfg->rel_tol = DEFAULT_REL_TOL;
	opterr = 0;	/* our messages, with our prefix */
	while ((opt = getopt(argc, argv, ":m:d:u:i:s:c:n:T:r:w:t:o:S:V:e:E:xzh")) != -1) {
		if (opt == 'h') {
			help_asked = true;
			continue;
		}
		if (opt == 'd' || opt == 't' || opt == 'x')
			device_options = true;
		if (opt == 'e' || opt == 'E')
			verify_options = true;
		if (parse_option(opt, optarg, cfg))
			return 2;
	}
	if (help_asked) {
		help();
		return -1;
	}
	if (optind < argc)
		return usage_error("unexpected argument after the options");
	if (!cfg->device && cfg->transport == TRANSPORT_DEVICE) {
		snprintf(cfg->node, sizeof(cfg->node), "%s/%s", FLAX_NODE_DIR, cfg->target);
		cfg->device = cfg->node;
	}
	return check_options(cfg, device_options, verify_options);
}

/* -z: the length of each record's text, before its first NUL. */
static int text_lengths(struct config *cfg)
{
	const __u8 *rec, *nul;
	__u64 i;

	cfg->lengths = malloc(cfg->nrecords * sizeof(*cfg->lengths));
	if (!cfg->lengths) {
		fprintf(stderr, PROG ": %s: out of memory\n", cfg->input_path);
		return 1;
	}
	cfg->max_length = 0;
	for (i = 0; i < cfg->nrecords; i++) {
		rec = cfg->records + i * cfg->record_bytes;
		nul = memchr(rec, 0, cfg->record_bytes);
		cfg->lengths[i] = nul ? (__u32)(nul - rec) : cfg->record_bytes;
		if (cfg->lengths[i] > cfg->max_length)
			cfg->max_length = cfg->lengths[i];
	}
	return 0;
}

/*
 * Open @path, a file of at least one byte, with its size in *@size;
 * returns the fd, or minus the exit status after a message.
 */
static int open_data_file(const char *path, __u64 *size)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st)) {
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (st.st_size <= 0) {
		fprintf(stderr, PROG ": %s: empty, or not a regular file\n", path);
		close(fd);
		return -2;
	}
	*size = st.st_size;
	return fd;
}

/* Read the @size bytes of @fd, which it closes; NULL after a message. */
static __u8 *read_data_file(int fd, const char *path, __u64 size)
{
	__u8 *data = malloc(size);
	size_t done = 0;

	while (data && done < size) {
		ssize_t n = read(fd, data + done, size - done);

		if (n <= 0 && !(n < 0 && errno == EINTR)) {
			fprintf(stderr, PROG ": %s: %s\n", path,
				n ? strerror(errno) : "file shrank while reading");
			free(data);
			close(fd);
			return NULL;
		}
		done += n > 0 ? n : 0;
	}
	close(fd);
	if (!data)
		fprintf(stderr, PROG ": %s: out of memory\n", path);
	return data;
}

/* Read INPUT_FILE whole; returns 0, or the exit status. */
static int load_records(struct config *cfg)
{
	__u64 size;
	__u8 *data;
	int fd;

	fd = open_data_file(cfg->input_path, &size);
	if (fd < 0)
		return -fd;
	if (size % cfg->record_bytes) {
		fprintf(stderr,
			PROG ": %s: %llu bytes are not a whole number of %u-byte records (-s)\n",
			cfg->input_path, (unsigned long long)size, cfg->record_bytes);
		close(fd);
		return 2;
	}
	data = read_data_file(fd, cfg->input_path, size);
	if (!data)
		return 1;
	cfg->records = data;
	cfg->nrecords = size / cfg->record_bytes;
	cfg->max_length = cfg->record_bytes;
	return cfg->nul_padded ? text_lengths(cfg) : 0;
}

/* -V: read EXPECTED_FILE whole, one result per record; 0 or the exit status. */
static int load_expected(struct config *cfg)
{
	__u64 size;
	int fd;

	fd = open_data_file(cfg->expected_path, &size);
	if (fd < 0)
		return -fd;
	if (size % cfg->expected_bytes || size / cfg->expected_bytes != cfg->nrecords) {
		fprintf(stderr,
			PROG ": %s: %llu bytes, not %llu records (as in %s) of %u bytes (-e)\n",
			cfg->expected_path, (unsigned long long)size,
			(unsigned long long)cfg->nrecords, cfg->input_path, cfg->expected_bytes);
		close(fd);
		return 2;
	}
	cfg->expected = read_data_file(fd, cfg->expected_path, size);
	return cfg->expected ? 0 : 1;
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static bool stopping(void)
{
	return atomic_load_explicit(&stop_requested, memory_order_relaxed) ||
	       atomic_load_explicit(&run_failed, memory_order_relaxed);
}

/* Sleep until CLOCK_MONOTONIC reads @t, or a stop is asked for. */
static void sleep_until(__u64 t)
{
	struct timespec ts;
	__u64 now, wake;

	while (!stopping() && (now = now_ns()) < t) {
		wake = t - now > SLEEP_SLICE_NS ? now + SLEEP_SLICE_NS : t;
		ts.tv_sec = wake / NSEC_PER_SEC;
		ts.tv_nsec = wake % NSEC_PER_SEC;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

static __u64 splitmix64(__u64 *state)
{
	__u64 z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* An exponentially distributed gap of mean @mean_ns. */
static double next_gap_ns(struct client *c, double mean_ns)
{
	/* 53 random bits: u in [0, 1), so log1p(-u) is finite. */
	double u = (double)(splitmix64(&c->rng) >> 11) / (double)(1ULL << 53);

	return -log1p(-u) * mean_ns;
}

/* Report a client's fatal error (only the run's first) and stop the others. */
static void client_fail(struct client *c, const char *fmt, ...)
{
	va_list ap;

	c->failed = true;
	atomic_store(&run_failed, 1);
	if (atomic_flag_test_and_set(&failure_reported))
		return;
	flockfile(stderr);
	fprintf(stderr, PROG ": client %u: ", c->index);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

static int grow_buf(struct client *c, size_t size)
{
	__u8 *buf = realloc(c->buf, size);

	if (!buf) {
		client_fail(c, "out of memory for a %zu-byte result", size);
		return -1;
	}
	c->buf = buf;
	c->buf_size = size;
	return 0;
}

static int get_model(int fd, const char *name, struct flax_model_desc *desc)
{
	memset(desc, 0, sizeof(*desc));
	strcpy(desc->name, name);
	return ioctl(fd, FLAX_IOC_MODEL_GET, desc);
}

static int dev_setup(struct client *c)
{
	const struct config *cfg = c->cfg;
	struct flax_model_desc desc;

	c->fd = open(cfg->device, O_RDWR | O_CLOEXEC);
	if (c->fd < 0) {
		client_fail(c, "%s: %s", cfg->device, strerror(errno));
		return -1;
	}
	if (get_model(c->fd, cfg->target, &desc)) {
		client_fail(c, "model %s: %s", cfg->target, strerror(errno));
		return -1;
	}
	c->model_id = desc.id;
	return 0;
}

/* One FLAX_IOC_INFER; an errno is a result, not a failure of the run. */
static int dev_request(struct client *c, const __u8 *rec, __u32 len, struct result *res)
{
	const struct config *cfg = c->cfg;
	struct flax_infer req;

	for (;;) {
		memset(&req, 0, sizeof(req));
		req.model_id = c->model_id;
		req.flags = cfg->text ? FLAX_INFER_TEXT : 0;
		req.input = (__u64)(uintptr_t)rec;
		req.input_size = len;
		req.output = (__u64)(uintptr_t)c->buf;
		req.output_size = c->buf_size;
		req.timeout_ms = cfg->timeout_ms;
		if (!ioctl(c->fd, FLAX_IOC_INFER, &req)) {
			res->status = 0;
			res->bytes = req.output_size;
			res->data = c->buf;
			return 0;
		}
		if (errno == EINTR)
			continue;
		/* ENOSPC: output_size is the size needed; the client's affair. */
		if (errno == ENOSPC && req.output_size > c->buf_size) {
			if (grow_buf(c, req.output_size))
				return -1;
			continue;
		}
		/* INFER returns user-visible errnos only: below ERRNO_SLOTS. */
		res->status = errno < ERRNO_SLOTS ? -errno : -EIO;
		res->bytes = 0;
		return 0;
	}
}

static int sock_setup(struct client *c)
{
	struct sockaddr_un addr;

	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		client_fail(c, "socket: %s", strerror(errno));
		return -1;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, c->cfg->target);
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr))) {
		client_fail(c, "connect to %s: %s", c->cfg->target, strerror(errno));
		return -1;
	}
	return 0;
}

static void put_le32(__u8 *p, __u32 v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static __u32 get_le32(const __u8 *p)
{
	return p[0] | (__u32)p[1] << 8 | (__u32)p[2] << 16 | (__u32)p[3] << 24;
}

static void put_le64(__u8 *p, __u64 v)
{
	put_le32(p, (__u32)v);
	put_le32(p + 4, (__u32)(v >> 32));
}

/* Send the frame header and record, however short the writes. */
static int sock_send(struct client *c, const __u8 *rec, __u32 len)
{
	struct iovec iov[2];
	struct msghdr msg;
	__u8 hdr[4];
	ssize_t n;

	put_le32(hdr, len);
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)rec;
	iov[1].iov_len = len;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = 2;
	while (msg.msg_iovlen) {
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			client_fail(c, "send to %s: %s", c->cfg->target, strerror(errno));
			return -1;
		}
		while (msg.msg_iovlen && (size_t)n >= msg.msg_iov->iov_len) {
			n -= msg.msg_iov->iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen) {
			msg.msg_iov->iov_base = (__u8 *)msg.msg_iov->iov_base + n;
			msg.msg_iov->iov_len -= n;
		}
	}
	return 0;
}

/* Check a response header; returns the frame's total size, or 0 if bad. */
static size_t sock_frame_size(struct client *c, __s32 status, __u32 len)
{
	if (status > 0 || status <= -ERRNO_SLOTS) {
		client_fail(c, "%s: bad status %d in a response", c->cfg->target, status);
		return 0;
	}
	if (len > SOCK_RESULT_MAX) {
		client_fail(c, "%s: a %u-byte response is too large", c->cfg->target, len);
		return 0;
	}
	return SOCK_HDR_BYTES + (size_t)len;
}

/*
 * Receive one response into c->buf.  Only one request is ever outstanding
 * on the connection, so reading as much as comes in never takes bytes of
 * another response: usually one recv() does.
 */
static int sock_receive(struct client *c, struct result *res)
{
	size_t got = 0, need = SOCK_HDR_BYTES;
	ssize_t n;

	while (got < need) {
		n = recv(c->fd, c->buf + got, c->buf_size - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			client_fail(c, "receive from %s: %s", c->cfg->target,
				    n ? strerror(errno) : "the server closed the connection");
			return -1;
		}
		got += n;
		if (need == SOCK_HDR_BYTES && got >= SOCK_HDR_BYTES) {
			res->status = (__s32)get_le32(c->buf);
			res->bytes = get_le32(c->buf + 4);
			need = sock_frame_size(c, res->status, res->bytes);
			if (!need || (need > c->buf_size && grow_buf(c, need)))
				return -1;
		}
	}
	if (got > need) {
		client_fail(c, "%s: %zu bytes past the end of a response", c->cfg->target,
			    got - need);
		return -1;
	}
	return 0;
}

static int sock_request(struct client *c, const __u8 *rec, __u32 len, struct result *res)
{
	if (sock_send(c, rec, len) || sock_receive(c, res))
		return -1;
	if (res->status)
		res->bytes = 0;
	res->data = c->buf + SOCK_HDR_BYTES;
	return 0;
}

/* The record of the client's next request: not the others' in lockstep. */
static __u64 next_record(struct client *c)
{
	return (c->index * RECORD_STRIDE + c->next_request++) % c->cfg->nrecords;
}

/* Send record @n; -1 if the client has to stop. */
static int issue_request(struct client *c, __u64 n, struct result *res)
{
	const struct config *cfg = c->cfg;
	const __u8 *rec = cfg->records + n * cfg->record_bytes;
	__u32 len = cfg->lengths ? cfg->lengths[n] : cfg->record_bytes;

	if (cfg->transport == TRANSPORT_DEVICE)
		return dev_request(c, rec, len, res);
	return sock_request(c, rec, len, res);
}

static size_t initial_samples(const struct config *cfg)
{
	double expected;

	if (cfg->count)
		return cfg->count;	/* exactly: no realloc() while timing */
	if (!cfg->rate)
		return SAMPLE_CHUNK;
	/* Open loop: the expected number of arrivals, and some margin. */
	expected = cfg->rate / cfg->clients * cfg->duration_ns / NSEC_PER_SEC;
	expected = expected * 1.25 + 1024;
	return expected < SAMPLE_PREALLOC ? (size_t)expected : SAMPLE_PREALLOC;
}

static int store_sample(struct client *c, __u64 start, __u64 latency, __s32 status)
{
	struct sample *s;

	if (!c->cfg->samples_file)
		return 0;
	if (c->nsamples == c->samples_cap) {
		size_t cap = c->samples_cap + c->samples_cap / 2 + SAMPLE_CHUNK;

		s = realloc(c->samples, cap * sizeof(*s));
		if (!s) {
			client_fail(c, "out of memory for %zu samples", cap);
			return -1;
		}
		c->samples = s;
		c->samples_cap = cap;
	}
	s = &c->samples[c->nsamples++];
	s->start_ns = start;
	s->latency_ns = latency;
	s->status = status;
	s->client = c->index;
	return 0;
}

/* Word @i of @len bytes at @p, little-endian, zero-padded past the end. */
static __u32 get_word(const __u8 *p, size_t len, size_t i)
{
	size_t off = i * WORD_BYTES;
	__u8 w[WORD_BYTES] = { 0 };

	memcpy(w, p + off, len - off < WORD_BYTES ? len - off : WORD_BYTES);
	return get_le32(w);
}

/* A word read as IEEE binary32. */
static double word_float(__u32 w)
{
	float f;

	memcpy(&f, &w, sizeof(f));
	return f;
}

/* Are two differing words finite floats within @tol of each other, relatively? */
static bool words_close(__u32 a, __u32 b, double tol)
{
	double x = word_float(a), y = word_float(b);

	return tol > 0 && isfinite(x) && isfinite(y) &&
	       fabs(x - y) <= tol * fmax(fabs(x), fabs(y));
}

/* Report a client's first mismatch on stderr, and only that one. */
static void report_mismatch(struct client *c, __u64 n, const char *fmt, ...)
{
	va_list ap;

	if (c->mismatches)
		return;
	flockfile(stderr);
	fprintf(stderr, PROG ": client %u: record %llu: ", c->index, (unsigned long long)n);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

/* -V: is @res the expected result of record @n, to the tolerance? */
static bool result_matches(struct client *c, __u64 n, const struct result *res)
{
	const struct config *cfg = c->cfg;
	size_t i, len = cfg->expected_bytes;
	const __u8 *want = cfg->expected + n * len;
	__u32 a, b;

	if (res->bytes != len) {
		report_mismatch(c, n, "a %u-byte result, expected %zu bytes", res->bytes, len);
		return false;
	}
	if (!memcmp(res->data, want, len))
		return true;
	for (i = 0; i * WORD_BYTES < len; i++) {
		a = get_word(want, len, i);
		b = get_word(res->data, len, i);
		/* A last partial word is no float: identical or wrong. */
		if (a == b || ((i + 1) * WORD_BYTES <= len && words_close(a, b, cfg->rel_tol)))
			continue;
		report_mismatch(c, n, "word %zu: expected 0x%08x (%.9g), got 0x%08x (%.9g)", i,
				a, word_float(a), b, word_float(b));
		return false;
	}
	return true;
}

/* One timed request, scheduled at @start (from the common start). */
static int timed_request(struct client *c, __u64 start)
{
	__u64 due = run_start_ns + start, done, n = next_record(c);
	struct result res;
	bool mismatch;

	if (issue_request(c, n, &res))
		return -1;
	done = now_ns();
	c->last_done_ns = done;
	mismatch = !res.status && c->cfg->expected && !result_matches(c, n, &res);
	if (mismatch) {
		c->mismatches++;	/* after report_mismatch(): the first is told */
		res.status = -EBADMSG;	/* in the samples; not an I/O error */
	} else if (res.status) {
		c->errors[-res.status]++;
	} else {
		c->ok++;
		c->result_bytes += res.bytes;
	}
	return store_sample(c, start, done - due, res.status);
}

/* Closed loop: the next request as soon as the previous one returns. */
static void run_closed(struct client *c)
{
	const struct config *cfg = c->cfg;
	__u64 i, start;

	for (i = 0; (!cfg->count || i < cfg->count) && !stopping(); i++) {
		start = now_ns() - run_start_ns;
		if (cfg->duration_ns && start >= cfg->duration_ns)
			break;
		if (timed_request(c, start))
			break;
	}
}

/* Open loop: Poisson arrivals at rate / clients, late ones sent at once. */
static void run_open(struct client *c)
{
	const struct config *cfg = c->cfg;
	double mean_ns = cfg->clients * (double)NSEC_PER_SEC / cfg->rate;
	double arrival = 0;
	__u64 i, start;

	for (i = 0; !cfg->count || i < cfg->count; i++) {
		arrival += next_gap_ns(c, mean_ns);
		start = (__u64)arrival;
		if (cfg->duration_ns && start >= cfg->duration_ns)
			break;
		/* Overloaded: what is still due at the end is never sent. */
		if (cfg->duration_ns &&
		    now_ns() >= run_start_ns + cfg->duration_ns)
			break;
		sleep_until(run_start_ns + start);
		if (stopping())
			break;
		if (now_ns() > run_start_ns + start + LATE_NS)
			c->late++;
		if (timed_request(c, start))
			break;
	}
}

/* The client's fd, buffers and warmup; 0 when ready for the timed part. */
static int client_prepare(struct client *c)
{
	const struct config *cfg = c->cfg;
	struct result res;
	__u64 i;

	c->buf_size = RESULT_INITIAL + (cfg->transport == TRANSPORT_SOCKET ? SOCK_HDR_BYTES : 0);
	c->buf = malloc(c->buf_size);
	if (cfg->samples_file) {
		c->samples_cap = initial_samples(cfg);
		c->samples = malloc(c->samples_cap * sizeof(*c->samples));
	}
	if (!c->buf || (cfg->samples_file && !c->samples)) {
		client_fail(c, "out of memory");
		return -1;
	}
	if (c->samples)	/* fault the pages in now, not while timing */
		memset(c->samples, 0, c->samples_cap * sizeof(*c->samples));
	if (cfg->transport == TRANSPORT_DEVICE ? dev_setup(c) : sock_setup(c))
		return -1;
	for (i = 0; i < cfg->warmup && !stopping(); i++)
		if (issue_request(c, next_record(c), &res))
			return -1;
	c->next_request = 0;	/* the timed part starts from i = 0 again */
	return 0;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	bool ready;

	/* Wake up on time for the open loop's arrivals (default slack: 50 us). */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	ready = !client_prepare(c);
	/* Ready or not, meet main twice: it takes the start time in between. */
	pthread_barrier_wait(&start_barrier);
	pthread_barrier_wait(&start_barrier);
	if (!ready || stopping())
		return NULL;
	if (c->cfg->rate > 0)
		run_open(c);
	else
		run_closed(c);
	return NULL;
}

static size_t dtype_size(__u32 dtype)
{
	switch (dtype) {
	case FLAX_DTYPE_UINT8:
	case FLAX_DTYPE_INT8:
		return 1;
	case FLAX_DTYPE_UINT16:
	case FLAX_DTYPE_INT16:
	case FLAX_DTYPE_FLOAT16:
		return 2;
	case FLAX_DTYPE_FLOAT32:
	case FLAX_DTYPE_INT32:
		return 4;
	default:
		return 0;
	}
}

/* Does a record fit the model's input?  Returns 0, or -1 after a message. */
static int check_input_size(const struct config *cfg, const struct flax_model_desc *desc)
{
	size_t want = dtype_size(desc->input.dtype);
	__u32 i, text_max = desc->text_max ? desc->text_max : FLAX_TEXT_MAX_DEFAULT;

	if (desc->pre_op == FLAX_PRE_TOKENIZE) {
		if (cfg->max_length <= text_max)
			return 0;
		fprintf(stderr, PROG ": model %s takes at most %u bytes of text, not %u%s\n",
			cfg->target, text_max, cfg->max_length, cfg->nul_padded ? "" : " (-s)");
		return -1;
	}
	if (cfg->nul_padded) {
		fprintf(stderr, PROG ": model %s takes fixed-size inputs, not texts (-z)\n",
			cfg->target);
		return -1;
	}
	for (i = 0; i < desc->input.ndim && i < FLAX_MAX_DIMS; i++)
		want *= desc->input.dims[i];
	if (!want || want == cfg->record_bytes)
		return 0;
	fprintf(stderr, PROG ": model %s takes %zu-byte inputs, not %u-byte records (-s)\n",
		cfg->target, want, cfg->record_bytes);
	return -1;
}

/* -V: can the model's results be EXPECTED_BYTES long at all? */
static int check_result_size(const struct config *cfg, const struct flax_model_desc *desc)
{
	if (!cfg->expected_path || !desc->result_size || cfg->expected_bytes <= desc->result_size)
		return 0;
	fprintf(stderr, PROG ": model %s gives results of at most %u bytes, not %u (-e)\n",
		cfg->target, desc->result_size, cfg->expected_bytes);
	return -1;
}

/* Do the records fit the model, and its results the expected ones? */
static int check_model(const struct config *cfg, const struct flax_model_desc *desc)
{
	if (check_input_size(cfg, desc))
		return -1;
	return check_result_size(cfg, desc);
}

/* Before starting the clients: is the model there, and do records fit it? */
static int probe_model(const struct config *cfg)
{
	struct flax_model_desc desc;
	int fd, ret = -1;

	fd = open(cfg->device, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, PROG ": %s: %s\n", cfg->device, strerror(errno));
		return -1;
	}
	if (!get_model(fd, cfg->target, &desc))
		ret = check_model(cfg, &desc);
	else if (errno == ENOENT)
		fprintf(stderr, PROG ": %s: no model named %s\n", cfg->device, cfg->target);
	else
		fprintf(stderr, PROG ": model %s: %s\n", cfg->target, strerror(errno));
	close(fd);
	return ret;
}

/* Each client has an fd: make room for CLIENTS of them. */
static void raise_fd_limit(unsigned int clients)
{
	rlim_t want = clients + 64;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
	setrlimit(RLIMIT_NOFILE, &rl);	/* else open() tells: EMFILE */
}

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&stop_requested, 1);
}

static void setup_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND;	/* a second signal kills */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Start the clients, give them a common start time, wait for them. */
static void run_clients(struct client *clients, unsigned int n)
{
	sigset_t block, old;
	pthread_attr_t attr;
	unsigned int i;
	int err;

	pthread_barrier_init(&start_barrier, NULL, n + 1);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	/* Signals go to main, which only waits: clients are never interrupted. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (i = 0; i < n; i++) {
		err = pthread_create(&clients[i].thread, &attr, client_main, &clients[i]);
		if (err) {
			/* Started clients would wait for it at the barrier. */
			fprintf(stderr, PROG ": cannot start client %u: %s\n", i, strerror(err));
			exit(1);
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	pthread_barrier_wait(&start_barrier);
	run_start_ns = now_ns();
	pthread_barrier_wait(&start_barrier);
	for (i = 0; i < n; i++)
		pthread_join(clients[i].thread, NULL);
	pthread_barrier_destroy(&start_barrier);
}

static void add_totals(struct totals *t, const struct client *c)
{
	unsigned int e;

	t->ok += c->ok;
	t->mismatches += c->mismatches;
	t->requests += c->ok + c->mismatches;
	t->late += c->late;
	t->result_bytes += c->result_bytes;
	t->failed += c->failed;
	if (c->last_done_ns > t->last_done_ns)
		t->last_done_ns = c->last_done_ns;
	for (e = 1; e < ERRNO_SLOTS; e++) {
		t->errors[e] += c->errors[e];
		t->requests += c->errors[e];
	}
}

static void print_errno_name(int e)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(errno_names); i++) {
		if (errno_names[i].num == e) {
			printf("\"%s\"", errno_names[i].name);
			return;
		}
	}
	printf("\"E%d\"", e);
}

static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = *s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void print_json(const struct config *cfg, const struct totals *t)
{
	double elapsed = 0;
	const char *sep = "";
	int e;

	if (t->requests && t->last_done_ns > run_start_ns)
		elapsed = (double)(t->last_done_ns - run_start_ns) / NSEC_PER_SEC;
	printf("{\"transport\": \"%s\", \"target\": ",
	       cfg->transport == TRANSPORT_DEVICE ? "device" : "socket");
	print_json_string(cfg->target);
	printf(", \"clients\": %u, \"mode\": \"%s\", \"offered_rps\": ", cfg->clients,
	       cfg->rate > 0 ? "open" : "closed");
	if (cfg->rate > 0)
		printf("%.9g", cfg->rate);
	else
		printf("null");
	printf(", \"requests\": %llu, \"ok\": %llu, \"verified\": %s, \"mismatches\": %llu",
	       (unsigned long long)t->requests, (unsigned long long)t->ok,
	       cfg->expected ? "true" : "false", (unsigned long long)t->mismatches);
	printf(", \"errors\": {");
	for (e = 1; e < ERRNO_SLOTS; e++) {
		if (!t->errors[e])
			continue;
		printf("%s", sep);
		print_errno_name(e);
		printf(": %llu", (unsigned long long)t->errors[e]);
		sep = ", ";
	}
	printf("}, \"late\": %llu, \"elapsed_s\": %.9g, \"throughput_rps\": %.9g",
	       (unsigned long long)t->late, elapsed, elapsed > 0 ? t->ok / elapsed : 0.0);
	printf(", \"result_bytes_mean\": %.9g}\n",
	       t->ok ? (double)t->result_bytes / t->ok : 0.0);
}

/* Every client's samples, as 24-byte little-endian records. */
static int write_samples(const struct config *cfg, const struct client *clients)
{
	static __u8 buf[SAMPLE_BYTES * 4096];
	FILE *f = cfg->samples_file;
	size_t i, fill = 0;
	unsigned int k;
	int bad;

	for (k = 0; k < cfg->clients; k++) {
		for (i = 0; i < clients[k].nsamples; i++) {
			const struct sample *s = &clients[k].samples[i];
			__u8 *p = buf + fill;

			put_le64(p, s->start_ns);
			put_le64(p + 8, s->latency_ns);
			put_le32(p + 16, (__u32)s->status);
			put_le32(p + 20, s->client);
			fill += SAMPLE_BYTES;
			if (fill == sizeof(buf)) {
				fwrite(buf, 1, fill, f);
				fill = 0;
			}
		}
	}
	fwrite(buf, 1, fill, f);
	bad = ferror(f);
	if (fclose(f) || bad) {
		fprintf(stderr, PROG ": %s: %s\n", cfg->samples_path,
			bad ? "write error" : strerror(errno));
		return -1;
	}
	return 0;
}

static void free_clients(struct client *clients, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (clients[i].fd >= 0)
			close(clients[i].fd);
		free(clients[i].buf);
		free(clients[i].samples);
	}
	free(clients);
}

/* After parsing: the checks that need the file system, then the run. */
static int run(struct config *cfg)
{
	struct client *clients;
	struct totals *t;
	unsigned int i;
	__u64 seed;
	int ret;

	ret = load_records(cfg);
	if (!ret && cfg->expected_path)
		ret = load_expected(cfg);
	if (ret)
		return ret;
	if (cfg->transport == TRANSPORT_DEVICE && probe_model(cfg))
		return 1;
	if (cfg->samples_path) {
		cfg->samples_file = fopen(cfg->samples_path, "wb");
		if (!cfg->samples_file) {
			fprintf(stderr, PROG ": %s: %s\n", cfg->samples_path, strerror(errno));
			return 1;
		}
	}
	clients = calloc(cfg->clients, sizeof(*clients));
	t = calloc(1, sizeof(*t));
	if (!clients || !t) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	for (i = 0; i < cfg->clients; i++) {
		clients[i].cfg = cfg;
		clients[i].index = i;
		clients[i].fd = -1;
		/* Distinct start states: splitmix64 of seed + odd * index. */
		seed = cfg->seed + 0xd1b54a32d192ed03ULL * i;
		clients[i].rng = splitmix64(&seed);
	}
	raise_fd_limit(cfg->clients);
	setup_signals();
	run_clients(clients, cfg->clients);
	for (i = 0; i < cfg->clients; i++)
		add_totals(t, &clients[i]);
	if (t->failed) {
		fprintf(stderr, PROG ": %u of %u clients failed\n", t->failed, cfg->clients);
		if (cfg->samples_file)
			fclose(cfg->samples_file);
		ret = 1;
	} else if (cfg->samples_file && write_samples(cfg, clients)) {
		ret = 1;
	} else {
		print_json(cfg, t);
		if (fflush(stdout))
			ret = 1;
		else if (t->mismatches)
			ret = 3;
		else if (atomic_load(&stop_requested))
			ret = 130;
	}
	free_clients(clients, cfg->clients);
	free(t);
	return ret;
}

int main(int argc, char **argv)
{
	struct config cfg;
	int ret;

	memset(&cfg, 0, sizeof(cfg));
	ret = parse_args(argc, argv, &cfg);
	if (ret)
		return ret < 0 ? 0 : ret;
	ret = run(&cfg);
	free((void *)cfg.records);
	free((void *)cfg.expected);
	free(cfg.lengths);
	return ret;
}
