/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the libFuzzer harnesses of driver/flax_tok.c: a small
 * vocabulary with the special tokens, ASCII letters and digits, some words
 * and continuation pieces, and multi-byte tokens (accented, Greek, Hangul
 * jamo, CJK), so that every path of the tokeniser is reachable.
 */
#ifndef FLAX_FUZZ_COMMON_H
#define FLAX_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "flax_tok.h"

static const char flax_fuzz_vocab[] =
	"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"
	"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\no\np\nq\nr\ns\nt\nu\nv\nw\nx\ny\nz\n"
	"0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n.\n,\n!\n?\n'\n-\n[\n]\n#\n"
	"##a\n##b\n##c\n##d\n##e\n##s\n##ing\n##ed\n##ly\n##0\n##1\n"
	"the\nhello\nworld\nun\n##aff\n##able\ntoken\n##ize\n"
	"\xc3\xa9\n\xce\xb1\n\xcf\x83\n##\xcf\x83\n\xd0\xbf\n"
	"\xe1\x84\x92\n##\xe1\x85\xa1\n##\xe1\x86\xab\n\xe4\xb8\xad\n\xe6\x96\x87\n"
	"\xf0\x9f\x98\x80\n";

/* An independent UTF-8 check: 1 if valid (RFC 3629), 0 if not. */
static int flax_fuzz_utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0, k, j;
	unsigned long cp, min;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0) {
			k = 2; cp = s[i] & 0x1f; min = 0x80;
		} else if ((s[i] & 0xf0) == 0xe0) {
			k = 3; cp = s[i] & 0x0f; min = 0x800;
		} else if ((s[i] & 0xf8) == 0xf0) {
			k = 4; cp = s[i] & 0x07; min = 0x10000;
		} else {
			return 0;
		}
		if (n - i < k)
			return 0;
		for (j = 1; j < k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k;
	}
	return 1;
}

#define FLAX_FUZZ_CHECK(cond)                                                \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                            \
			abort();                                             \
		}                                                            \
	} while (0)

/* Tokenise @text and check every property of the result. */
static void flax_fuzz_tokenize(const struct flax_vocab *v, const char *text,
			       size_t len, unsigned int max_len)
{
	s32 *ids = malloc(sizeof(*ids) * max_len);
	s32 *mask = malloc(sizeof(*mask) * max_len);
	u32 n = 0, i, size = flax_vocab_size(v);
	int ret;

	FLAX_FUZZ_CHECK(ids && mask);
	ret = flax_tokenize(v, text, len, max_len, ids, mask, &n);
	if (!flax_fuzz_utf8_ok((const unsigned char *)text, len)) {
		FLAX_FUZZ_CHECK(ret == -EILSEQ);
	} else {
		FLAX_FUZZ_CHECK(ret == 0);
		FLAX_FUZZ_CHECK(n >= 2 && n <= max_len);
		FLAX_FUZZ_CHECK(ids[0] == flax_vocab_lookup(v, "[CLS]", 5));
		FLAX_FUZZ_CHECK(ids[n - 1] == flax_vocab_lookup(v, "[SEP]", 5));
		for (i = 0; i < max_len; i++) {
			FLAX_FUZZ_CHECK(ids[i] >= 0 && (u32)ids[i] < size);
			FLAX_FUZZ_CHECK(mask[i] == (i < n));
			if (i >= n)
				FLAX_FUZZ_CHECK(ids[i] == flax_vocab_lookup(v, "[PAD]", 5));
		}
	}
	free(ids);
	free(mask);
}

#endif /* FLAX_FUZZ_COMMON_H */
