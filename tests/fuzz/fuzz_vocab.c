// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness of flax_vocab_parse() (driver/flax_tok.c).
 *
 * Input: a vocab.txt.  Checked: no sanitizer report; failure is -EINVAL or
 * -E2BIG with a line number within the file, and *out NULL; success gives
 * a vocabulary in which every token is found again under its id, and
 * which tokenises a fixed text and the input itself (as text) sanely.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

static const char sample[] = "[CLS] Hello, WORLD! the unaffable tokenize "
			     "\xc3\x89t\xc3\xa9 \xce\xa3\xce\xb1 \xed\x95\x9c "
			     "\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 [MASK]x";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct flax_vocab *v = (struct flax_vocab *)1;
	u32 bad = 0xdead, lines = 1, i, len, n;
	const char *tok;
	char *copy;
	size_t k;
	int ret;

	copy = malloc(size ? size : 1);
	FLAX_FUZZ_CHECK(copy);
	memcpy(copy, data, size);
	for (k = 0; k < size; k++)
		lines += copy[k] == '\n';
	ret = flax_vocab_parse(copy, size, &v, &bad);
	if (ret) {
		FLAX_FUZZ_CHECK(ret == -EINVAL || ret == -E2BIG);
		FLAX_FUZZ_CHECK(!v && bad <= lines);
		free(copy);
		return 0;
	}
	FLAX_FUZZ_CHECK(v && bad == 0);
	n = flax_vocab_size(v);
	FLAX_FUZZ_CHECK(n >= 4 && n <= lines && n <= FLAX_VOCAB_MAX_ENTRIES);
	for (i = 0; i < n; i++) {
		tok = flax_vocab_token(v, i, &len);
		FLAX_FUZZ_CHECK(tok && len >= 1 && len <= FLAX_VOCAB_MAX_TOKEN);
		FLAX_FUZZ_CHECK(flax_vocab_lookup(v, tok, len) == (s32)i);
	}
	FLAX_FUZZ_CHECK(!flax_vocab_token(v, n, &len) && len == 0);
	flax_fuzz_tokenize(v, sample, sizeof(sample) - 1, 64);
	flax_fuzz_tokenize(v, copy, size, 2 + size % 300);
	flax_vocab_free(v);
	free(copy);
	return 0;
}
