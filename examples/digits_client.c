// SPDX-License-Identifier: GPL-2.0
/*
 * digits_client: classify 8x8 digit images through /dev/flax/<model>.
 *
 * Written only against the UAPI header, as any C user would.  Reads one
 * image per line from standard input (64 integers 0-16, separated by
 * blanks or commas), runs the "digits" model with FLAX_IOC_INFER and
 * prints the top-3 classes with their probabilities:
 *
 *	$ echo "0 0 5 13 9 1 0 0 ..." | digits_client
 *	0	0.998212385	6	0.00102004	8	0.000400021
 *
 * With -x it prints the module's own text result instead (FLAX_INFER_TEXT:
 * one "label<TAB>probability" line per class of the model's top-k, with
 * the model's labels), and a blank line after each image.
 *
 * Options: -m MODEL (default digits), -d DEVICE (default the model's node,
 * /dev/flax/MODEL),
 * -t TIMEOUT_MS (default: the model's), -x (text results).
 *
 * Build: make -C examples (needs only -I driver/uapi).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "flaxdev.h"

#define PIXELS	64
#define SHOW	3

static float bits_to_float(__u32 bits)
{
	float f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* Parse one line of PIXELS values in 0..16; return 0 or -1 with a message. */
static int parse_image(const char *line, unsigned long lineno, __u8 *img)
{
	const char *p = line;
	char *end;
	int i;

	for (i = 0; i < PIXELS; i++) {
		long v;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		errno = 0;
		v = strtol(p, &end, 10);
		if (end == p || errno || v < 0 || v > 16) {
			fprintf(stderr,
				"digits_client: line %lu: value %d is not an integer 0-16\n",
				lineno, i + 1);
			return -1;
		}
		img[i] = (__u8)v;
		p = end;
	}
	while (*p == ' ' || *p == '\t' || *p == ',' || *p == '\n' || *p == '\r')
		p++;
	if (*p) {
		fprintf(stderr, "digits_client: line %lu: more than %d values\n", lineno, PIXELS);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *model = "digits", *device = NULL;
	char node[sizeof(FLAX_NODE_DIR) + FLAX_NAME_MAX];
	struct flax_model_desc desc;
	struct flax_topk_result *res;
	unsigned long lineno = 0;
	__u32 timeout_ms = 0, out_size;
	char line[4096];
	int fd, opt, status = 0, text = 0;

	while ((opt = getopt(argc, argv, "m:d:t:x")) != -1) {
		switch (opt) {
		case 'm':
			model = optarg;
			break;
		case 'd':
			device = optarg;
			break;
		case 't':
			timeout_ms = (__u32)strtoul(optarg, NULL, 10);
			break;
		case 'x':
			text = 1;
			break;
		default:
			fprintf(stderr,
				"usage: %s [-m MODEL] [-d DEVICE] [-t TIMEOUT_MS] [-x] < images\n",
				argv[0]);
			return 2;
		}
	}

	if (!device) {
		snprintf(node, sizeof(node), "%s/%s", FLAX_NODE_DIR, model);
		device = node;
	}
	fd = open(device, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "digits_client: %s: %s\n", device, strerror(errno));
		return 1;
	}

	memset(&desc, 0, sizeof(desc));
	if (strlen(model) >= sizeof(desc.name)) {
		fprintf(stderr, "digits_client: model name too long\n");
		return 2;
	}
	strcpy(desc.name, model);
	if (ioctl(fd, FLAX_IOC_MODEL_GET, &desc) < 0) {
		fprintf(stderr, "digits_client: model %s: %s\n", model, strerror(errno));
		return 1;
	}
	if (desc.input.dtype != FLAX_DTYPE_UINT8 ||
	    desc.input.dims[0] * (desc.input.ndim > 1 ? desc.input.dims[1] : 1) != PIXELS) {
		fprintf(stderr, "digits_client: model %s does not take 8x8 uint8 images\n", model);
		return 1;
	}
	/* A text result is at most text_size bytes; a binary one result_size. */
	out_size = text ? desc.text_size : desc.result_size;
	res = calloc(1, out_size);
	if (!res)
		return 1;

	while (fgets(line, sizeof(line), stdin)) {
		struct flax_infer req;
		__u8 img[PIXELS];
		__u32 i;

		lineno++;
		if (line[0] == '\n' || line[0] == '#')
			continue;
		if (parse_image(line, lineno, img)) {
			status = 1;
			break;
		}
		memset(&req, 0, sizeof(req));
		req.model_id = desc.id;
		req.input = (__u64)(uintptr_t)img;
		req.input_size = sizeof(img);
		req.output = (__u64)(uintptr_t)res;
		req.output_size = out_size;
		req.timeout_ms = timeout_ms;
		req.flags = text ? FLAX_INFER_TEXT : 0;
		if (ioctl(fd, FLAX_IOC_INFER, &req) < 0) {
			fprintf(stderr, "digits_client: line %lu: infer: %s\n", lineno,
				strerror(errno));
			status = 1;
			break;
		}
		if (text) {
			/* Not NUL-terminated: output_size bytes. */
			fwrite(res, 1, req.output_size, stdout);
			putchar('\n');
			continue;
		}
		for (i = 0; i < res->count && i < SHOW; i++)
			printf("%s%u\t%.9g", i ? "\t" : "", res->entries[i].index,
			       bits_to_float(res->entries[i].score));
		putchar('\n');
	}
	if (fflush(stdout))
		status = 1;
	free(res);
	close(fd);
	return status;
}
