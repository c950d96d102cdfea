/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev text preprocessing: the BERT uncased WordPiece tokeniser and its
 * vocabulary table, shared C.
 *
 * flax_tok.c compiles in the kernel (an ordinary object: no floating point)
 * and in user space (bindings/ops_build.py, tests/fuzz/), through
 * flax_compat.h.  It allocates with flax_kvmalloc() (in the kernel,
 * kvmalloc(GFP_KERNEL_ACCOUNT): charged to the caller's memory cgroup), so
 * every function here may sleep: call it in process context, on kernel
 * memory.  Stack use is a few hundred bytes, with no
 * recursion; the per-call state lives in a heap scratch area.
 *
 * Semantics: exactly Hugging Face tokenizers' (0.23.3)
 * BertWordPieceTokenizer(vocab, lowercase=True) with
 * enable_truncation(max_len) and enable_padding(length=max_len), that is:
 *  - the special tokens [CLS], [SEP], [UNK], [PAD] and [MASK] (those in the
 *    vocabulary) written literally in the text, case and all, are matched
 *    first, in the raw text, and become their own id;
 *  - the text between them is cleaned (NUL, U+FFFD, control, format and
 *    private-use characters dropped; whitespace made a separator), CJK
 *    ideographs are made words of their own, NFD is applied and nonspacing
 *    marks (Mn) removed, then the text is lower-cased;
 *  - it is split on whitespace and around punctuation (ASCII punctuation
 *    and Unicode P*);
 *  - each word is split greedily, longest match first, into vocabulary
 *    tokens, continuation pieces carrying the "##" prefix; a word of more
 *    than FLAX_TOK_MAX_WORD characters, or one that cannot be split, is one
 *    [UNK];
 *  - [CLS] first, then at most max_len - 2 tokens (the rest is dropped),
 *    [SEP], then [PAD] up to max_len; the mask is 1 for the first ntokens
 *    entries and 0 for the padding.
 * The Unicode data is HF's own, measured code point by code point
 * (flax_unicode.h, scripts/gen_unicode_tables.py); docs/tokenizer.md gives
 * the details and the one configuration difference: padding uses the
 * vocabulary's [PAD] id, where HF's enable_padding() default is id 0 (the
 * same thing for BERT vocabularies, whose line 0 is [PAD]).
 *
 * Invalid UTF-8 (a stray continuation byte, a truncated sequence, an
 * overlong form, a surrogate, a value above U+10FFFF) anywhere in the text
 * makes flax_tokenize() fail with -EILSEQ, writing nothing: a client bug is
 * reported, not hidden.  (HF on the same bytes decoded with U+FFFD
 * replacement would drop the bad bytes, since clean-up removes U+FFFD.)
 *
 * Tests: tests/host/test_tokenizer.py (against tokenizers);
 * fuzzing: tests/fuzz/.
 */
#ifndef _FLAX_TOK_H
#define _FLAX_TOK_H

#include "flax_compat.h"

/* Vocabulary limits: entries (lines), bytes, bytes of one token. */
#define FLAX_VOCAB_MAX_ENTRIES (128 * 1024)
#define FLAX_VOCAB_MAX_BYTES (2 * 1024 * 1024)
#define FLAX_VOCAB_MAX_TOKEN 256

/* Longest word (in characters, after normalisation) not made [UNK]. */
#define FLAX_TOK_MAX_WORD 100

/* Smallest max_len: room for [CLS] and [SEP]. */
#define FLAX_TOK_MIN_LEN 2

struct flax_vocab;

/**
 * flax_vocab_parse() - build a vocabulary from the text of a vocab.txt.
 * @data: the file's bytes; need not be NUL-terminated.
 * @len: their number, at most FLAX_VOCAB_MAX_BYTES.
 * @out: receives the vocabulary on success (free it with flax_vocab_free());
 *	set to NULL on failure.
 * @bad_line: if not NULL, receives the 1-based number of the offending
 *	line on failure, or 0 if the fault is not one line's (total size,
 *	a missing special token, no memory); 0 on success.
 *
 * One token a line; a token's id is its line number counted from 0.  Lines
 * end with "\n" or "\r\n"; the last one may have no line end.  A token is
 * 1 to FLAX_VOCAB_MAX_TOKEN bytes of valid UTF-8 with no byte below 0x21
 * and no DEL (no blank, no control character: such a token could never be
 * matched, HF would trim trailing blanks).  Every token appears once, and
 * [CLS], [SEP], [UNK] and [PAD] must be present ([MASK] is optional).
 * The table is hashed; lookups cost a bounded number of probes.
 *
 * Return: 0; -EINVAL for an empty, duplicate, over-long (more than
 * FLAX_VOCAB_MAX_TOKEN bytes) or invalid (bad UTF-8, blank or control
 * byte) token, for a line that does not fit the hash table within its
 * probe limit (only a vocabulary built to collide can do that), or for a
 * missing [CLS]/[SEP]/[UNK]/[PAD] (@bad_line 0); -E2BIG for more than
 * FLAX_VOCAB_MAX_BYTES bytes (@bad_line 0) or more than
 * FLAX_VOCAB_MAX_ENTRIES lines (@bad_line is the first line too many);
 * -ENOMEM.  Lines are checked in order: the first bad one is reported.
 */
int flax_vocab_parse(const char *data, size_t len, struct flax_vocab **out,
		     u32 *bad_line);

/**
 * flax_vocab_free() - free a vocabulary.
 * @v: from flax_vocab_parse(), or NULL.
 */
void flax_vocab_free(struct flax_vocab *v);

/**
 * flax_vocab_size() - number of tokens.
 * @v: a vocabulary.
 *
 * Return: the number of tokens; ids run from 0 to this minus 1.
 */
u32 flax_vocab_size(const struct flax_vocab *v);

/**
 * flax_vocab_lookup() - id of a token.
 * @v: a vocabulary.
 * @tok: the token's bytes (no NUL needed).
 * @len: their number.
 *
 * Return: the id, or -1 if @tok is not in @v.
 */
s32 flax_vocab_lookup(const struct flax_vocab *v, const char *tok, size_t len);

/**
 * flax_vocab_token() - text of a token.
 * @v: a vocabulary.
 * @id: a token id.
 * @len: receives the token's length in bytes.
 *
 * Return: the token's bytes (not NUL-terminated), valid as long as @v, or
 * NULL (and *@len 0) if @id is out of range.
 */
const char *flax_vocab_token(const struct flax_vocab *v, u32 id, u32 *len);

/**
 * flax_tokenize() - tokenise UTF-8 text into input ids and attention mask.
 * @v: the vocabulary.
 * @text: UTF-8 text, not NUL-terminated (a NUL is a character, dropped as
 *	a control character); may be NULL if @len is 0.
 * @len: its length in bytes.
 * @max_len: entries of @ids and @mask, at least FLAX_TOK_MIN_LEN.
 * @ids: receives @max_len token ids: [CLS], tokens, [SEP], [PAD]...
 * @mask: receives @max_len attention-mask values: 1 for the first
 *	*@ntokens, 0 after.
 * @ntokens: receives the number of tokens before the padding, [CLS] and
 *	[SEP] included (2 to @max_len).
 *
 * Work is bounded by @len and @max_len: the whole text is checked for
 * valid UTF-8 (one fast pass), then scanned until @max_len - 2 tokens have
 * been produced (truncation would drop anything after them); each word
 * costs O(characters x longest token) hash probes, at most
 * FLAX_TOK_MAX_WORD characters.  Allocates about 3 KiB of scratch.
 *
 * Return: 0; -EILSEQ if @text is not valid UTF-8; -EINVAL for a NULL
 * argument or @max_len < FLAX_TOK_MIN_LEN; -ENOMEM.  On error nothing is
 * written to @ids, @mask or @ntokens.
 */
int flax_tokenize(const struct flax_vocab *v, const char *text, size_t len,
		  u32 max_len, s32 *ids, s32 *mask, u32 *ntokens);

#endif /* _FLAX_TOK_H */
