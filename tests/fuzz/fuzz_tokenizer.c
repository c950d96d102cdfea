// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness of flax_tokenize() (driver/flax_tok.c).
 *
 * Input: one byte that picks max_len (2 to 257), then the text.  The
 * vocabulary is fuzz_common.h's, or the file named by $FLAX_FUZZ_VOCAB
 * (e.g. the MiniLM vocab.txt).  Checked: no sanitizer report, -EILSEQ
 * exactly when an independent validator rejects the text, and the shape
 * of the result (CLS ... SEP, padding, mask, ids in range).  The text is
 * copied to a buffer of exactly its length, so any over-read is caught.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

static struct flax_vocab *vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *path = getenv("FLAX_FUZZ_VOCAB");
	char *data = (char *)flax_fuzz_vocab;
	size_t len = sizeof(flax_fuzz_vocab) - 1;
	u32 bad = 0;
	FILE *f;

	(void)argc;
	(void)argv;
	if (path) {
		f = fopen(path, "rb");
		FLAX_FUZZ_CHECK(f);
		data = malloc(FLAX_VOCAB_MAX_BYTES + 1);
		FLAX_FUZZ_CHECK(data);
		len = fread(data, 1, FLAX_VOCAB_MAX_BYTES + 1, f);
		fclose(f);
	}
	if (flax_vocab_parse(data, len, &vocab, &bad)) {
		fprintf(stderr, "fuzz_tokenizer: vocabulary rejected at line %u\n", bad);
		abort();
	}
	if (path)
		free(data);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;

	if (!size)
		return 0;
	text = malloc(size - 1 ? size - 1 : 1);
	FLAX_FUZZ_CHECK(text);
	memcpy(text, data + 1, size - 1);
	flax_fuzz_tokenize(vocab, text, size - 1, 2 + data[0]);
	free(text);
	return 0;
}
