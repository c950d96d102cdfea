// SPDX-License-Identifier: GPL-2.0
/*
 * flaxdev text preprocessing: BERT uncased WordPiece tokeniser and
 * vocabulary table, the shared C (API and semantics: flax_tok.h).
 *
 * This file is built twice from the same text: in the kernel, as an
 * ordinary object of flaxdev.ko (no floating point), and in user space
 * (-DFLAX_USERSPACE) for the host tests and the fuzzers.  Rules:
 *  - nothing but flax_compat.h and the generated flax_unicode.h; memory
 *    from flax_kvmalloc() only; no written globals;
 *  - every input byte is untrusted: the text is validated as UTF-8 before
 *    it is decoded, every index is bounded by a length checked first;
 *  - small frames, no recursion: the per-call state (about 2 KiB) is one
 *    heap allocation;
 *  - bounded work: lookups take at most max_probe + 1 probes (the longest
 *    displacement in the table, at most FLAX_VOCAB_MAX_PROBE), a word at
 *    most FLAX_TOK_MAX_WORD x (longest token) lookups, and scanning stops
 *    when truncation would drop everything after.
 *
 * The streaming normaliser.  Hugging Face's normaliser works on the whole
 * string (clean, pad CJK, NFD, drop Mn, lower-case) and its pre-tokeniser
 * then splits; each step is per character except NFD's canonical
 * reordering, which sorts every run of non-starters by combining class.
 * Here each input character's kind and output come from flax_unicode.h
 * (measured on HF itself), and only the kept non-starters (kind MARK: the
 * removed marks cannot change the order of the others) are held in pend[]
 * and sorted, until the next starter ends the run.  A run longer than
 * pend[] makes its word longer than FLAX_TOK_MAX_WORD characters, so the
 * word is [UNK] whatever the order.
 */

#include "flax_tok.h"
#include "flax_unicode.h"

#define FLAX_FNV_BASIS 2166136261u
#define FLAX_FNV_PRIME 16777619u

/*
 * Longest probe sequence a vocabulary may need.  At the table's load
 * factor (at most 1/2) and a good hash, a real vocabulary's longest is a
 * few dozen; only tokens crafted to collide come near this.
 */
#define FLAX_VOCAB_MAX_PROBE 1024

/* Special tokens, in the order of flax_vocab.special[]. */
#define FLAX_SP_CLS 0
#define FLAX_SP_SEP 1
#define FLAX_SP_UNK 2
#define FLAX_SP_PAD 3
#define FLAX_SP_MASK 4
#define FLAX_SP_COUNT 5
#define FLAX_SP_REQUIRED 4 /* all but [MASK] */

static const char *const flax_sp_name[FLAX_SP_COUNT] = {
	"[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]",
};

/**
 * struct flax_vocab - a parsed vocabulary.
 * @count: number of tokens.
 * @mask: number of hash slots minus 1 (a power of two minus 1).
 * @max_probe: longest displacement of a token from its home slot.
 * @max_token: length of the longest token, in bytes.
 * @special: ids of [CLS], [SEP], [UNK], [PAD], [MASK]; -1 if absent.
 * @slot: hash slots: token id + 1, 0 if empty.
 * @slot_hash: hash of each slot's token.
 * @off: @count + 1 offsets: token i is @text[off[i]] to @text[off[i + 1]].
 * @text: the tokens, back to back.
 *
 * One allocation: the arrays follow the structure.
 */
struct flax_vocab {
	u32 count;
	u32 mask;
	u32 max_probe;
	u32 max_token;
	s32 special[FLAX_SP_COUNT];
	u32 *slot;
	u32 *slot_hash;
	u32 *off;
	u8 *text;
};

/* ---- UTF-8 */

/* Length of the valid UTF-8 sequence starting @s (@n > 0 bytes), or 0. */
static u32 flax_utf8_seq(const u8 *s, size_t n)
{
	u8 c = s[0];

	if (c < 0x80)
		return 1;
	/* A continuation byte, an overlong 2-byte form, above U+10FFFF. */
	if (c < 0xc2 || c > 0xf4)
		return 0;
	if (n < 2 || (s[1] & 0xc0) != 0x80)
		return 0;
	if (c < 0xe0)
		return 2;
	if (n < 3 || (s[2] & 0xc0) != 0x80)
		return 0;
	if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
		return 0; /* overlong 3-byte, surrogate */
	if (c < 0xf0)
		return 3;
	if (n < 4 || (s[3] & 0xc0) != 0x80)
		return 0;
	if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
		return 0; /* overlong 4-byte, > U+10FFFF */
	return 4;
}

static int flax_utf8_valid(const u8 *s, size_t n)
{
	size_t i = 0;
	u64 w;
	u32 k;

	while (i < n) {
		if (n - i >= 8) {
			memcpy(&w, s + i, 8);
			if (!(w & 0x8080808080808080ull)) {
				i += 8;
				continue;
			}
		}
		k = flax_utf8_seq(s + i, n - i);
		if (!k)
			return 0;
		i += k;
	}
	return 1;
}

/* Decode the valid sequence at @s; its length goes to *@k. */
static u32 flax_utf8_get(const u8 *s, u32 *k)
{
	if (s[0] < 0xe0) {
		*k = 2;
		return (s[0] & 0x1f) << 6 | (s[1] & 0x3f);
	}
	if (s[0] < 0xf0) {
		*k = 3;
		return (s[0] & 0x0f) << 12 | (s[1] & 0x3f) << 6 | (s[2] & 0x3f);
	}
	*k = 4;
	return (s[0] & 0x07) << 18 | (s[1] & 0x3f) << 12 | (s[2] & 0x3f) << 6 |
	       (s[3] & 0x3f);
}

static u32 flax_utf8_put(u8 *p, u32 cp)
{
	if (cp < 0x80) {
		p[0] = cp;
		return 1;
	}
	if (cp < 0x800) {
		p[0] = 0xc0 | cp >> 6;
		p[1] = 0x80 | (cp & 0x3f);
		return 2;
	}
	if (cp < 0x10000) {
		p[0] = 0xe0 | cp >> 12;
		p[1] = 0x80 | (cp >> 6 & 0x3f);
		p[2] = 0x80 | (cp & 0x3f);
		return 3;
	}
	p[0] = 0xf0 | cp >> 18;
	p[1] = 0x80 | (cp >> 12 & 0x3f);
	p[2] = 0x80 | (cp >> 6 & 0x3f);
	p[3] = 0x80 | (cp & 0x3f);
	return 4;
}

/* ---- Unicode tables */

static u32 flax_uc_kind(u32 cp)
{
	u32 lo = 0, hi = FLAX_UC_NRANGES, mid;

	if (cp < 0x80)
		return flax_uc_ascii[cp];
	while (lo < hi) { /* lo: ranges starting at or before cp */
		mid = lo + (hi - lo) / 2;
		if (flax_uc_ranges[mid][0] <= cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo && cp <= (flax_uc_ranges[lo - 1][1] & FLAX_UC_CP_MASK))
		return flax_uc_ranges[lo - 1][1] >> 24;
	return FLAX_UC_LETTER;
}

/* The flax_uc_maps value of a MAP code point (the generator lists them all). */
static u32 flax_uc_map(u32 cp)
{
	u32 lo = 0, hi = FLAX_UC_NMAPS, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (flax_uc_maps[mid][0] == cp)
			return flax_uc_maps[mid][1];
		if (flax_uc_maps[mid][0] < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0; /* not reached: no characters */
}

/* Combining class of a MARK code point. */
static u32 flax_uc_ccc_of(u32 cp)
{
	u32 lo = 0, hi = FLAX_UC_NCCC, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (flax_uc_ccc[mid] >> 8 == cp)
			return flax_uc_ccc[mid] & 0xff;
		if (flax_uc_ccc[mid] >> 8 < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* ---- vocabulary */

static u32 flax_fnv(u32 h, const u8 *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= FLAX_FNV_PRIME;
	}
	return h;
}

/* Final avalanche (MurmurHash3's fmix32), so that the low bits index well. */
static u32 flax_mix(u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* Is token @id equal to ("##" if @cont) + @s[0..@n)? */
static int flax_vocab_eq(const struct flax_vocab *v, u32 id, int cont,
			 const u8 *s, u32 n)
{
	const u8 *t = v->text + v->off[id];
	u32 tn = v->off[id + 1] - v->off[id];

	if (cont) {
		if (tn < 2 || t[0] != '#' || t[1] != '#')
			return 0;
		t += 2;
		tn -= 2;
	}
	return tn == n && !memcmp(t, s, n);
}

/* Id of ("##" if @cont) + @s[0..@n), whose flax_mix()ed hash is @h, or -1. */
static s32 flax_vocab_find(const struct flax_vocab *v, u32 h, int cont,
			   const u8 *s, u32 n)
{
	u32 i = h & v->mask, k, e;

	for (k = 0; k <= v->max_probe; k++, i = (i + 1) & v->mask) {
		e = v->slot[i];
		if (!e)
			return -1;
		if (v->slot_hash[i] == h && flax_vocab_eq(v, e - 1, cont, s, n))
			return e - 1;
	}
	return -1;
}

static int flax_vocab_insert(struct flax_vocab *v, u32 id)
{
	const u8 *t = v->text + v->off[id];
	u32 n = v->off[id + 1] - v->off[id];
	u32 h = flax_mix(flax_fnv(FLAX_FNV_BASIS, t, n));
	u32 i = h & v->mask, k, e;

	for (k = 0; k < FLAX_VOCAB_MAX_PROBE; k++, i = (i + 1) & v->mask) {
		e = v->slot[i];
		if (!e) {
			v->slot[i] = id + 1;
			v->slot_hash[i] = h;
			if (k > v->max_probe)
				v->max_probe = k;
			return 0;
		}
		if (v->slot_hash[i] == h && flax_vocab_eq(v, e - 1, 0, t, n))
			return -EEXIST;
	}
	return -ENOSPC;
}

/* The next line of @d from *@pos (0 at the end); its text without line end. */
static int flax_next_line(const u8 *d, size_t len, size_t *pos, const u8 **tok,
			  size_t *tlen)
{
	size_t start = *pos, end;
	const u8 *nl;

	if (start >= len)
		return 0;
	nl = memchr(d + start, '\n', len - start);
	end = nl ? (size_t)(nl - d) : len;
	*pos = nl ? end + 1 : len;
	if (nl && end > start && d[end - 1] == '\r')
		end--;
	*tok = d + start;
	*tlen = end - start;
	return 1;
}

/* 1 to FLAX_VOCAB_MAX_TOKEN bytes of UTF-8, no blank, control or DEL. */
static int flax_token_ok(const u8 *p, size_t n)
{
	size_t i = 0;
	u32 k;

	if (!n || n > FLAX_VOCAB_MAX_TOKEN)
		return 0;
	while (i < n) {
		if (p[i] < 0x80) {
			if (p[i] < 0x21 || p[i] == 0x7f)
				return 0;
			i++;
			continue;
		}
		k = flax_utf8_seq(p + i, n - i);
		if (!k)
			return 0;
		i += k;
	}
	return 1;
}

int flax_vocab_parse(const char *data, size_t len, struct flax_vocab **out,
		     u32 *bad_line)
{
	const u8 *d = (const u8 *)data, *tok;
	size_t pos = 0, bytes = 0, tlen, max_token = 0, size;
	u32 line = 0, nslots = 1, i;
	struct flax_vocab *v;
	int ret;

	if (bad_line)
		*bad_line = 0;
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!data && len)
		return -EINVAL;
	if (len > FLAX_VOCAB_MAX_BYTES)
		return -E2BIG;

	/* Pass 1: count and check every line. */
	while (flax_next_line(d, len, &pos, &tok, &tlen)) {
		line++;
		ret = 0;
		if (line > FLAX_VOCAB_MAX_ENTRIES)
			ret = -E2BIG;
		else if (!flax_token_ok(tok, tlen))
			ret = -EINVAL;
		if (ret) {
			if (bad_line)
				*bad_line = line;
			return ret;
		}
		bytes += tlen;
		if (tlen > max_token)
			max_token = tlen;
	}
	if (!line)
		return -EINVAL; /* no tokens: no [CLS] either */
	while (nslots < 2 * line)
		nslots <<= 1;

	/* Bounded by the limits above: at most a few MiB, no overflow. */
	size = sizeof(*v) +
	       sizeof(u32) * ((size_t)line + 1 + 2 * (size_t)nslots) + bytes;
	v = flax_kvmalloc(size);
	if (!v)
		return -ENOMEM;
	memset(v, 0, sizeof(*v));
	v->count = line;
	v->mask = nslots - 1;
	v->max_token = max_token;
	v->off = (u32 *)(v + 1);
	v->slot = v->off + line + 1;
	v->slot_hash = v->slot + nslots;
	v->text = (u8 *)(v->slot_hash + nslots);
	memset(v->slot, 0, sizeof(u32) * (size_t)nslots);

	/* Pass 2: copy and hash. */
	pos = 0;
	bytes = 0;
	for (i = 0; flax_next_line(d, len, &pos, &tok, &tlen); i++) {
		v->off[i] = bytes;
		memcpy(v->text + bytes, tok, tlen);
		bytes += tlen;
		v->off[i + 1] = bytes;
		ret = flax_vocab_insert(v, i);
		if (ret) { /* a duplicate, or a crafted collision */
			if (bad_line)
				*bad_line = i + 1;
			flax_kvfree(v);
			return -EINVAL;
		}
	}

	for (i = 0; i < FLAX_SP_COUNT; i++) {
		v->special[i] = flax_vocab_lookup(v, flax_sp_name[i],
						  strlen(flax_sp_name[i]));
		if (v->special[i] < 0 && i < FLAX_SP_REQUIRED) {
			flax_kvfree(v);
			return -EINVAL;
		}
	}
	*out = v;
	return 0;
}

void flax_vocab_free(struct flax_vocab *v)
{
	if (v)
		flax_kvfree(v);
}

u32 flax_vocab_size(const struct flax_vocab *v)
{
	return v->count;
}

s32 flax_vocab_lookup(const struct flax_vocab *v, const char *tok, size_t len)
{
	const u8 *s = (const u8 *)tok;

	if (len > FLAX_VOCAB_MAX_TOKEN)
		return -1;
	return flax_vocab_find(v, flax_mix(flax_fnv(FLAX_FNV_BASIS, s, len)), 0,
			       s, len);
}

const char *flax_vocab_token(const struct flax_vocab *v, u32 id, u32 *len)
{
	if (id >= v->count) {
		*len = 0;
		return NULL;
	}
	*len = v->off[id + 1] - v->off[id];
	return (const char *)v->text + v->off[id];
}

/* ---- tokeniser */

#define FLAX_TOK_PEND (FLAX_TOK_MAX_WORD + 1)

/**
 * struct flax_tok - the state of one flax_tokenize() call (heap scratch).
 * @v: the vocabulary.
 * @ids: the output ids.
 * @n: entries of @ids written, [CLS] included.
 * @limit: index of [SEP] when the text fills @ids: tokens go below it.
 * @nchars: characters of the current word, saturated at
 *	FLAX_TOK_MAX_WORD + 1 (too long: [UNK]).
 * @nbytes: bytes of the current word in @word.
 * @npend: marks in @pend.
 * @end: byte offset in @word of the end of each character.
 * @hash: FNV state after each character, for one lookup start.
 * @pend: the pending run of marks, code point << 8 | combining class,
 *	sorted by class (stable).
 * @word: the current word, normalised, UTF-8.
 */
struct flax_tok {
	const struct flax_vocab *v;
	s32 *ids;
	u32 n;
	u32 limit;
	u32 nchars;
	u32 nbytes;
	u32 npend;
	u32 end[FLAX_TOK_MAX_WORD];
	u32 hash[FLAX_TOK_MAX_WORD];
	u32 pend[FLAX_TOK_PEND];
	u8 word[FLAX_TOK_MAX_WORD * 4];
};

static void flax_tok_emit(struct flax_tok *t, s32 id)
{
	if (t->n < t->limit)
		t->ids[t->n++] = id;
}

static void flax_tok_append(struct flax_tok *t, u32 cp)
{
	if (t->nchars >= FLAX_TOK_MAX_WORD) {
		t->nchars = FLAX_TOK_MAX_WORD + 1;
		return;
	}
	t->nbytes += flax_utf8_put(t->word + t->nbytes, cp);
	t->end[t->nchars++] = t->nbytes;
}

/* Greedy longest-match-first split of the word; 0 if a piece is missing. */
static int flax_tok_pieces(struct flax_tok *t)
{
	const struct flax_vocab *v = t->v;
	u32 first = 0, start = 0, n = t->n, j, prev, maxb, h;
	s32 id;

	while (first < t->nchars) {
		/* Candidates longer than the longest token cannot match. */
		maxb = v->max_token - (start ? 2 : 0);
		h = FLAX_FNV_BASIS;
		if (start)
			h = flax_fnv(h, (const u8 *)"##", 2);
		prev = start;
		for (j = first; j < t->nchars; j++) {
			if (t->end[j] - start > maxb)
				break;
			h = flax_fnv(h, t->word + prev, t->end[j] - prev);
			t->hash[j] = h;
			prev = t->end[j];
		}
		id = -1;
		while (j > first) {
			j--;
			id = flax_vocab_find(v, flax_mix(t->hash[j]),
					     start != 0, t->word + start,
					     t->end[j] - start);
			if (id >= 0)
				break;
		}
		if (id < 0)
			return 0;
		/* Pieces past the limit are counted, not stored. */
		if (n < t->limit)
			t->ids[n++] = id;
		start = t->end[j];
		first = j + 1;
	}
	t->n = n;
	return 1;
}

/* End the current word: emit its pieces, or [UNK]. */
static void flax_tok_word(struct flax_tok *t)
{
	if (!t->nchars)
		return;
	if (t->nchars > FLAX_TOK_MAX_WORD || !flax_tok_pieces(t))
		flax_tok_emit(t, t->v->special[FLAX_SP_UNK]);
	t->nchars = 0;
	t->nbytes = 0;
}

/* End the run of marks: they join the current word, in their sorted order. */
static void flax_tok_pending(struct flax_tok *t)
{
	u32 i;

	for (i = 0; i < t->npend; i++)
		flax_tok_append(t, t->pend[i] >> 8);
	t->npend = 0;
}

static void flax_tok_mark(struct flax_tok *t, u32 cp)
{
	u32 ccc = flax_uc_ccc_of(cp), i;

	if (t->npend == FLAX_TOK_PEND) { /* the word is too long anyway */
		t->nchars = FLAX_TOK_MAX_WORD + 1;
		return;
	}
	i = t->npend++;
	while (i > 0 && (t->pend[i - 1] & 0xff) > ccc) {
		t->pend[i] = t->pend[i - 1];
		i--;
	}
	t->pend[i] = cp << 8 | ccc;
}

/* One character that maps to itself (every kind but MAP). */
static void flax_tok_char(struct flax_tok *t, u32 cp, u32 kind)
{
	u32 s;

	switch (kind) {
	case FLAX_UC_DROP:
		break;
	case FLAX_UC_STRIP:
		flax_tok_pending(t);
		break;
	case FLAX_UC_SPACE:
		flax_tok_pending(t);
		flax_tok_word(t);
		break;
	case FLAX_UC_CJK:
	case FLAX_UC_PUNCT: /* a word by itself */
		flax_tok_pending(t);
		flax_tok_word(t);
		flax_tok_append(t, cp);
		flax_tok_word(t);
		break;
	case FLAX_UC_MARK:
		flax_tok_mark(t, cp);
		break;
	case FLAX_UC_HANGUL: /* NFD by arithmetic: leading, vowel, trailing */
		flax_tok_pending(t);
		s = cp - 0xac00;
		flax_tok_append(t, 0x1100 + s / 588);
		flax_tok_append(t, 0x1161 + (s % 588) / 28);
		if (s % 28)
			flax_tok_append(t, 0x11a7 + s % 28);
		break;
	default: /* FLAX_UC_LETTER */
		flax_tok_pending(t);
		flax_tok_append(t, cp);
		break;
	}
}

/* A MAP character: its output characters, each of which maps to itself. */
static void flax_tok_mapped(struct flax_tok *t, u32 cp)
{
	u32 val = flax_uc_map(cp), n = val >> FLAX_UC_MAP_LEN_SHIFT & 0xf, i;
	u32 o = val & FLAX_UC_CP_MASK; /* the character, or its index */

	if (val & FLAX_UC_MAP_CJK) {
		flax_tok_char(t, val & FLAX_UC_CP_MASK, FLAX_UC_CJK);
		return;
	}
	/* NFD starts these with a starter: the run of marks ends. */
	flax_tok_pending(t);
	if (n == 1) {
		flax_tok_char(t, o, flax_uc_kind(o));
		return;
	}
	for (i = o; i < o + n; i++)
		flax_tok_char(t, flax_uc_seq[i], flax_uc_kind(flax_uc_seq[i]));
}

/* If @s starts with a special token of the vocabulary: emit it, its length. */
static u32 flax_tok_special(struct flax_tok *t, const u8 *s, size_t n)
{
	u32 i, l;

	for (i = 0; i < FLAX_SP_COUNT; i++) {
		l = strlen(flax_sp_name[i]);
		if (t->v->special[i] < 0 || n < l ||
		    memcmp(s, flax_sp_name[i], l))
			continue;
		flax_tok_pending(t);
		flax_tok_word(t);
		flax_tok_emit(t, t->v->special[i]);
		return l;
	}
	return 0;
}

static void flax_tok_run(struct flax_tok *t, const u8 *s, size_t len)
{
	size_t i = 0;
	u32 c, k;

	while (i < len && t->n < t->limit) {
		c = s[i];
		if (c < 0x80) {
			if (c == '[') {
				k = flax_tok_special(t, s + i, len - i);
				if (k) {
					i += k;
					continue;
				}
			}
			i++;
			if (c - 'A' < 26)
				flax_tok_char(t, c + 32, FLAX_UC_LETTER);
			else
				flax_tok_char(t, c, flax_uc_ascii[c]);
			continue;
		}
		c = flax_utf8_get(s + i, &k);
		i += k;
		k = flax_uc_kind(c);
		if (k == FLAX_UC_MAP)
			flax_tok_mapped(t, c);
		else
			flax_tok_char(t, c, k);
	}
	flax_tok_pending(t);
	flax_tok_word(t);
}

int flax_tokenize(const struct flax_vocab *v, const char *text, size_t len,
		  u32 max_len, s32 *ids, s32 *mask, u32 *ntokens)
{
	struct flax_tok *t;
	u32 i, n;

	if (!v || !ids || !mask || !ntokens || (!text && len) ||
	    max_len < FLAX_TOK_MIN_LEN)
		return -EINVAL;
	if (!flax_utf8_valid((const u8 *)text, len))
		return -EILSEQ;
	t = flax_kvmalloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->v = v;
	t->ids = ids;
	t->limit = max_len - 1;
	t->nchars = 0;
	t->nbytes = 0;
	t->npend = 0;
	t->n = 0;
	ids[t->n++] = v->special[FLAX_SP_CLS];
	flax_tok_run(t, (const u8 *)text, len);
	n = t->n;
	flax_kvfree(t);

	ids[n++] = v->special[FLAX_SP_SEP];
	for (i = 0; i < n; i++)
		mask[i] = 1;
	for (; i < max_len; i++) {
		ids[i] = v->special[FLAX_SP_PAD];
		mask[i] = 0;
	}
	*ntokens = n;
	return 0;
}
