// SPDX-License-Identifier: GPL-2.0
/*
 * minilm_embed: sentence embeddings through /dev/flax/<model>.
 *
 * Written only against the UAPI header, as any C user would.  The "minilm"
 * model tokenises the text in the kernel, the worker runs the encoder and
 * the kernel mean-pools and L2-normalises: the result is a unit vector of
 * float32 (384 for all-MiniLM-L6-v2).
 *
 *	$ echo "A man is eating food." | minilm_embed
 *	0.0368... -0.0132... ...		(one line of floats per input line)
 *	$ minilm_embed "A man is eating food." "A man eats bread."
 *	0.7536...				(their cosine similarity)
 *
 * Options: -m MODEL (default minilm), -d DEVICE (default the model's node,
 * /dev/flax/MODEL),
 * -t TIMEOUT_MS (default: the model's).
 *
 * Build: make -C examples (needs only -I driver/uapi).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "flaxdev.h"

#define LINE_MAX_BYTES	65536

struct embedder {
	int fd;
	struct flax_model_desc desc;
	__u32 timeout_ms;
	__u32 dim;
};

/* Embed @len bytes of @text into @vec (dim floats); 0 or -errno. */
static int embed(const struct embedder *e, const char *text, size_t len, float *vec)
{
	struct flax_infer req;

	memset(&req, 0, sizeof(req));
	req.model_id = e->desc.id;
	req.input = (__u64)(uintptr_t)text;
	req.input_size = (__u32)len;
	req.output = (__u64)(uintptr_t)vec;
	req.output_size = e->dim * sizeof(float);
	req.timeout_ms = e->timeout_ms;
	if (ioctl(e->fd, FLAX_IOC_INFER, &req) < 0)
		return -errno;
	if (req.output_size != e->dim * sizeof(float))
		return -EPROTO;
	return 0;
}

static int open_model(struct embedder *e, const char *device, const char *model)
{
	e->fd = open(device, O_RDWR | O_CLOEXEC);
	if (e->fd < 0) {
		fprintf(stderr, "minilm_embed: %s: %s\n", device, strerror(errno));
		return -1;
	}
	memset(&e->desc, 0, sizeof(e->desc));
	if (strlen(model) >= sizeof(e->desc.name)) {
		fprintf(stderr, "minilm_embed: model name too long\n");
		return -1;
	}
	strcpy(e->desc.name, model);
	if (ioctl(e->fd, FLAX_IOC_MODEL_GET, &e->desc) < 0) {
		fprintf(stderr, "minilm_embed: model %s: %s\n", model, strerror(errno));
		return -1;
	}
	if (e->desc.pre_op != FLAX_PRE_TOKENIZE || !e->desc.result_size ||
	    e->desc.result_size % sizeof(float)) {
		fprintf(stderr, "minilm_embed: model %s is not a text embedding model\n", model);
		return -1;
	}
	e->dim = e->desc.result_size / sizeof(float);
	return 0;
}

static double cosine(const float *a, const float *b, __u32 n)
{
	double ab = 0, aa = 0, bb = 0;
	__u32 i;

	for (i = 0; i < n; i++) {
		ab += (double)a[i] * b[i];
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static int compare(const struct embedder *e, const char *s1, const char *s2)
{
	float *v1 = calloc(e->dim, sizeof(float));
	float *v2 = calloc(e->dim, sizeof(float));
	int err = -ENOMEM;

	if (v1 && v2) {
		err = embed(e, s1, strlen(s1), v1);
		if (!err)
			err = embed(e, s2, strlen(s2), v2);
	}
	if (err)
		fprintf(stderr, "minilm_embed: infer: %s\n", strerror(-err));
	else
		printf("%.9g\n", cosine(v1, v2, e->dim));
	free(v1);
	free(v2);
	return err ? 1 : 0;
}

static int embed_lines(const struct embedder *e)
{
	unsigned long lineno = 0;
	char *line = malloc(LINE_MAX_BYTES);
	float *vec = calloc(e->dim, sizeof(float));
	int status = 0;

	if (!line || !vec) {
		free(line);
		free(vec);
		return 1;
	}
	while (fgets(line, LINE_MAX_BYTES, stdin)) {
		size_t len = strlen(line);
		__u32 i;
		int err;

		lineno++;
		if (len && line[len - 1] == '\n') {
			line[--len] = '\0';
		} else if (!feof(stdin)) {
			fprintf(stderr, "minilm_embed: line %lu: longer than %d bytes\n", lineno,
				LINE_MAX_BYTES - 2);
			status = 1;
			break;
		}
		err = embed(e, line, len, vec);
		if (err) {
			fprintf(stderr, "minilm_embed: line %lu: infer: %s\n", lineno,
				strerror(-err));
			status = 1;
			break;
		}
		for (i = 0; i < e->dim; i++)
			printf("%s%.9g", i ? " " : "", vec[i]);
		putchar('\n');
	}
	free(line);
	free(vec);
	return status;
}

int main(int argc, char **argv)
{
	const char *model = "minilm", *device = NULL;
	char node[sizeof(FLAX_NODE_DIR) + FLAX_NAME_MAX];
	struct embedder e = { .fd = -1 };
	int opt, status;

	while ((opt = getopt(argc, argv, "m:d:t:")) != -1) {
		switch (opt) {
		case 'm':
			model = optarg;
			break;
		case 'd':
			device = optarg;
			break;
		case 't':
			e.timeout_ms = (__u32)strtoul(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 0 && argc - optind != 2)
		goto usage;
	if (!device) {
		snprintf(node, sizeof(node), "%s/%s", FLAX_NODE_DIR, model);
		device = node;
	}
	if (open_model(&e, device, model)) {
		if (e.fd >= 0)
			close(e.fd);
		return 1;
	}
	if (argc - optind == 2)
		status = compare(&e, argv[optind], argv[optind + 1]);
	else
		status = embed_lines(&e);
	if (fflush(stdout))
		status = 1;
	close(e.fd);
	return status;

usage:
	fprintf(stderr,
		"usage: %s [-m MODEL] [-d DEVICE] [-t TIMEOUT_MS] [TEXT1 TEXT2] < lines\n",
		argv[0]);
	return 2;
}
