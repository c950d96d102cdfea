#!/usr/bin/env python3
"""Generate ``driver/flax_unicode.h``: the Unicode tables of the BERT tokeniser (flax_tok.c).

The kernel tokeniser must give exactly what Hugging Face ``tokenizers``'
``BertWordPieceTokenizer(vocab, lowercase=True)`` gives.  Its normaliser works
character by character (clean text, pad CJK ideographs, NFD, drop Mn,
lower-case), then its pre-tokeniser splits on whitespace and punctuation.  So
every code point gets one *kind* and, where it changes, the sequence of
characters it becomes; the C then only has to reproduce NFD's canonical
reordering (combining classes) and the splitting.

Where the properties come from.  The first answer is Python's ``unicodedata``
(Unicode 14.0 in Python 3.11): categories Cc/Cf/Co (dropped), Mn (stripped
after NFD), P* and ASCII punctuation (split), canonical decompositions and
combining classes (NFD), ``str.lower()`` of one character (lower-casing),
Rust's ``char::is_whitespace`` set and BERT's CJK ranges.  But ``tokenizers``
does not use one Unicode version: its category tables (the
``unicode_categories`` crate) are older (about Unicode 10: later Mn, Cf and P*
characters are plain letters to it, and no code point is "unassigned"), its NFD
(``unicode-normalization-alignments``) is about Unicode 12, and Rust's
``to_lowercase`` is newer (16.0).  So the script then asks the pinned
``tokenizers`` itself, code point by code point (about 30 s), and where the two
answers differ, HF's wins; each class of difference is counted in the header
and in this script's output (docs/tokenizer.md lists them with their reasons).
Combining classes cannot be read off one character; the script measures which
characters HF reorders with probes around two reference marks (U+302E, ccc 224,
and U+1D165, ccc 216) and takes the class from ``unicodedata``.

Run from the repository root with the project venv (``tokenizers`` pinned in
requirements-dev.txt)::

    .venv/bin/python scripts/gen_unicode_tables.py            # rewrite the header
    .venv/bin/python scripts/gen_unicode_tables.py --check    # fail if it is stale

The output is formatted with the kernel's ``.clang-format``
(``build/tools/linux-6.1/.clang-format``, from ``make check-setup``) when
``clang-format`` and that file exist, so that ``kbuild/check-style.sh`` passes.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import unicodedata as ud
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "driver" / "flax_unicode.h"
CLANG_STYLE = ROOT / "build" / "tools" / "linux-6.1" / ".clang-format"

#: The version the tables were generated against (requirements-dev.txt).
TOKENIZERS_VERSION = "0.23.3"

# Kinds (the C's FLAX_UC_*).  LETTER is the default and is not stored.
LETTER, DROP, STRIP, SPACE, CJK, PUNCT, MARK, MAP, HANGUL = range(9)
KIND_NAMES = ("LETTER", "DROP", "STRIP", "SPACE", "CJK", "PUNCT", "MARK", "MAP", "HANGUL")

# Map entry value layout (see the C header's comment).
MAP_LEN_SHIFT = 24
MAP_CJK = 1 << 28

#: Rust's char::is_whitespace (the White_Space property).
RUST_WHITE_SPACE = frozenset(
    [*range(0x9, 0xE), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
     0x202F, 0x205F, 0x3000]
)  # fmt: skip

#: BERT's "Chinese character" ranges (tokenizers/src/normalizers/bert.rs).
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)  # fmt: skip

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3
REF_HI, REF_LO = 0x302E, 0x1D165  # reference non-starters: ccc 224 and 216, kept by HF
MAX_CP = 0x110000


def is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_ascii_punct(cp: int) -> bool:
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126


def code_points() -> Iterator[int]:
    for cp in range(MAX_CP):
        if not 0xD800 <= cp <= 0xDFFF:
            yield cp


def hangul_nfd(cp: int) -> str:
    s = cp - HANGUL_FIRST
    lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
    return chr(lead) + chr(vowel) + (chr(trail) if trail != 0x11A7 else "")


@dataclass
class Props:
    """What one code point does: its kind, its output, whether it is punctuation."""

    kind: int
    out: str  # the characters it becomes (after NFD, Mn removal, lower-casing)
    punct: bool = False


def predict(cp: int) -> tuple[str, bool, bool]:
    """unicodedata's answer: (normalised output, flushes a combining run, is punctuation).

    The output is what BertNormalizer gives for the character between two
    letters: "" if dropped, " " for whitespace, " X " for a CJK ideograph.
    """
    ch = chr(cp)
    cat = ud.category(ch)
    punct = is_ascii_punct(cp) or cat.startswith("P")
    if cp in (0, 0xFFFD) or (cat in ("Cc", "Cf", "Co", "Cs", "Cn") and cp not in (9, 10, 13)):
        return "", False, punct
    if cp in RUST_WHITE_SPACE:
        return " ", True, False
    nfd = ud.normalize("NFD", ch)
    flush = ud.combining(nfd[0]) == 0
    kept = "".join(c for c in nfd if ud.category(c) != "Mn")
    out = "".join(c.lower() for c in kept)
    if is_cjk(cp):
        return f" {out} ", True, punct
    return out, flush, punct


@dataclass
class Probe:
    """HF's answers for every code point."""

    out: dict[int, str] = field(default_factory=dict)
    flush: dict[int, bool] = field(default_factory=dict)
    punct: set[int] = field(default_factory=set)
    ccc_ok: dict[int, bool] = field(default_factory=dict)


def probe_hf() -> Probe:
    import tokenizers
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    if tokenizers.__version__ != TOKENIZERS_VERSION:
        sys.exit(
            f"gen_unicode_tables: tokenizers {tokenizers.__version__} installed, the tables "
            f"follow {TOKENIZERS_VERSION} (requirements-dev.txt); update both together"
        )
    norm = BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    ).normalize_str
    pre = BertPreTokenizer().pre_tokenize_str
    hi, lo = chr(REF_HI), chr(REF_LO)
    probe = Probe()
    for cp in code_points():
        ch = chr(cp)
        got = norm("a" + ch + "a")
        assert got[0] == "a" and got[-1] == "a", hex(cp)
        probe.out[cp] = got[1:-1]
        # Does the character end the run of combining marks before it?  With
        # one, U+302E stays before U+1D165; without, NFD sorts U+1D165 first.
        got = norm("a" + hi + ch + lo)
        probe.flush[cp] = got.index(hi) < got.index(lo)
        if [t for t, _ in pre("a" + ch + "a")] == ["a", ch, "a"]:
            probe.punct.add(cp)
    return probe


def check_ccc(norm_out: dict[int, str], marks: list[int]) -> None:
    """Check that HF orders each kept non-starter by its unicodedata combining class."""
    from tokenizers.normalizers import BertNormalizer

    norm = BertNormalizer(lowercase=True).normalize_str
    for cp in marks:
        ccc = ud.combining(chr(cp))
        ref = REF_HI if ccc != 224 else REF_LO
        got = norm("a" + chr(ref) + chr(cp))
        expect = sorted([(ud.combining(chr(ref)), chr(ref)), (ccc, chr(cp))], key=lambda x: x[0])
        if got != "a" + "".join(c for _, c in expect):
            raise SystemExit(f"gen_unicode_tables: U+{cp:04X}: HF does not order it by ccc {ccc}")


def classify(probe: Probe) -> tuple[dict[int, Props], collections.Counter[str]]:
    """Each code point's Props from HF's answers; count where unicodedata disagrees."""
    props: dict[int, Props] = {}
    diffs: collections.Counter[str] = collections.Counter()
    for cp in code_points():
        out, flush, punct = probe.out[cp], probe.flush[cp], cp in probe.punct
        p_out, p_flush, p_punct = predict(cp)
        if (out, flush, punct) != (p_out, p_flush, p_punct):
            cat = ud.category(chr(cp))
            what = []
            if out != p_out:
                if out == "" or p_out == "":
                    what.append("kept by HF" if out else "dropped by HF")
                elif out == chr(cp):
                    what.append("not decomposed/stripped/lower-cased by HF")
                else:
                    what.append("mapped differently by HF")
            if flush != p_flush and out == p_out:
                what.append("combining class differs")
            if punct != p_punct:
                what.append("punctuation to HF" if punct else "not punctuation to HF")
            diffs[f"{cat}: {', '.join(what)}"] += 1
        if out == "":
            kind = STRIP if flush else DROP
        elif out == " ":
            kind = SPACE
        elif out[0] == " ":
            assert len(out) == 3 and out[2] == " " and is_cjk(cp), hex(cp)
            out = out[1]
            kind = CJK if out == chr(cp) else MAP
        elif HANGUL_FIRST <= cp <= HANGUL_LAST:
            assert out == hangul_nfd(cp) and flush, hex(cp)
            kind = HANGUL
        elif out != chr(cp):
            kind = MAP
        elif punct:
            kind = PUNCT
        elif not flush:
            kind = MARK
        else:
            kind = LETTER
        assert " " not in out or kind == SPACE, hex(cp)
        if kind in (MAP, PUNCT, LETTER, HANGUL, CJK):
            # The C flushes the combining run before these: true only if NFD
            # starts them with a starter (or HF leaves them whole).
            assert flush, hex(cp)
        if kind == MAP:
            assert len(out) <= 15, hex(cp)
        props[cp] = Props(kind, out, punct)
    # The output characters of MAP entries are looked up again by the C: each
    # must be one that maps to itself (LETTER, PUNCT or MARK).
    for cp, p in props.items():
        if p.kind == MAP and is_cjk(cp):  # a compatibility ideograph: a word by itself
            assert len(p.out) == 1 and props[ord(p.out)].kind == CJK, hex(cp)
        elif p.kind in (MAP, HANGUL):
            for ch in p.out:
                assert props[ord(ch)].kind in (LETTER, PUNCT, MARK), (hex(cp), hex(ord(ch)))
                assert (ord(ch) in probe.punct) == (props[ord(ch)].kind == PUNCT)
        if p.kind == MARK:
            assert ud.combining(chr(cp)) != 0 and cp not in probe.punct, hex(cp)
    return props, diffs


def ranges(props: dict[int, Props]) -> list[tuple[int, int, int]]:
    """Maximal runs of one kind, LETTER runs left out."""
    runs: list[tuple[int, int, int]] = []
    for cp in code_points():
        kind = props[cp].kind
        if runs and runs[-1][2] == kind and runs[-1][1] == cp - 1:
            runs[-1] = (runs[-1][0], cp, kind)
        elif kind != LETTER:
            runs.append((cp, cp, kind))
    # Surrogates never reach the C (UTF-8 validation rejects them): let runs
    # on both sides of them merge.
    merged: list[tuple[int, int, int]] = []
    for run in runs:
        if merged and merged[-1][2] == run[2] and merged[-1][1] == 0xD7FF and run[0] == 0xE000:
            merged[-1] = (merged[-1][0], run[1], run[2])
        else:
            merged.append(run)
    return merged


def hex_list(values: list[str], indent: str = "\t") -> str:
    return "".join(f"{indent}{v},\n" for v in values)


def render(props: dict[int, Props], diffs: collections.Counter[str]) -> str:
    ascii_kinds = []
    for cp in range(128):
        p = props[cp]
        if 0x41 <= cp <= 0x5A:
            assert p.kind == MAP and p.out == chr(cp + 32)
            ascii_kinds.append(LETTER)  # the C lower-cases A-Z itself
        else:
            assert p.kind in (LETTER, DROP, SPACE, PUNCT) and p.out in ("", " ", chr(cp))
            ascii_kinds.append(p.kind)
    runs = [r for r in ranges(props) if r[1] >= 0x80]
    runs = [(max(lo, 0x80), hi, kind) for lo, hi, kind in runs]
    maps: list[tuple[int, int]] = []
    seq: list[int] = []
    for cp in range(0x80, MAX_CP):
        mapped = props.get(cp)
        if mapped is None or mapped.kind != MAP:
            continue
        flags = MAP_CJK if is_cjk(cp) else 0
        chars = [ord(c) for c in mapped.out]
        if len(chars) == 1:
            val = chars[0]
        else:
            val = len(seq)
            seq.extend(chars)
        maps.append((cp, flags | len(chars) << MAP_LEN_SHIFT | val))
    marks = [(cp, ud.combining(chr(cp))) for cp in code_points() if props[cp].kind == MARK]
    assert len(seq) < (1 << 21)

    diff_lines = "".join(
        f" *   {n:6d}  {what}\n" for what, n in sorted(diffs.items(), key=lambda x: -x[1])
    )
    kinds = "".join(f"#define FLAX_UC_{name} {i}\n" for i, name in enumerate(KIND_NAMES))
    return f"""\
/* SPDX-License-Identifier: GPL-2.0 */
/*
 * GENERATED by scripts/gen_unicode_tables.py: do not edit.  Included by
 * flax_tok.c only.
 *
 * What each code point does in the BERT uncased normaliser and
 * pre-tokeniser of Hugging Face tokenizers {TOKENIZERS_VERSION}, generated from
 * Python's unicodedata {ud.unidata_version} and checked code point by code point
 * against tokenizers itself, whose answer is kept where they differ:
{diff_lines} * (docs/tokenizer.md gives the reasons.)
 *
 * Kinds: LETTER (the default, not in the tables) is kept as it is and ends a
 * run of combining marks; DROP disappears (cleaned away: controls, format,
 * private use); STRIP disappears but ends a run of combining marks (a
 * nonspacing mark of combining class 0); SPACE separates words; CJK is a
 * word by itself; PUNCT is a word by itself; MARK is a kept non-starter,
 * sorted by combining class (flax_uc_ccc) with the marks next to it, as NFD
 * does; MAP becomes the characters of its flax_uc_maps entry; HANGUL is a
 * precomposed syllable, decomposed by arithmetic.
 *
 * flax_uc_ranges: {{ first, last | kind << 24 }}, sorted, code points >= 0x80.
 * flax_uc_maps: {{ code point, value }}, sorted; value bits 24-27 give the
 * number of characters, bit 28 marks a CJK ideograph, bits 0-20 hold the one
 * character or the index of the first in flax_uc_seq.  Every character a
 * MAP entry produces is a LETTER, PUNCT or MARK (it maps to itself).
 * flax_uc_ccc: code point << 8 | combining class, sorted, of every MARK.
 */
#ifndef _FLAX_UNICODE_H
#define _FLAX_UNICODE_H

{kinds}
#define FLAX_UC_MAP_LEN_SHIFT {MAP_LEN_SHIFT}
#define FLAX_UC_MAP_CJK 0x{MAP_CJK:08x}
#define FLAX_UC_CP_MASK 0x1fffff
#define FLAX_UC_NRANGES {len(runs)}
#define FLAX_UC_NMAPS {len(maps)}
#define FLAX_UC_NCCC {len(marks)}

static const u8 flax_uc_ascii[128] = {{
{hex_list([str(k) for k in ascii_kinds])}}};

static const u32 flax_uc_ranges[FLAX_UC_NRANGES][2] = {{
{hex_list([f"{{ 0x{lo:06x}, 0x{hi | kind << 24:08x} }}" for lo, hi, kind in runs])}}};

static const u32 flax_uc_maps[FLAX_UC_NMAPS][2] = {{
{hex_list([f"{{ 0x{cp:06x}, 0x{val:08x} }}" for cp, val in maps])}}};

static const u32 flax_uc_seq[] = {{
{hex_list([f"0x{c:06x}" for c in seq])}}};

static const u32 flax_uc_ccc[FLAX_UC_NCCC] = {{
{hex_list([f"0x{cp << 8 | ccc:08x}" for cp, ccc in marks])}}};

#endif /* _FLAX_UNICODE_H */
"""


def clang_format(text: str) -> str:
    exe = shutil.which("clang-format")
    if exe is None or not CLANG_STYLE.exists():
        print(
            "gen_unicode_tables: WARNING: clang-format or the kernel .clang-format missing "
            "(make check-setup); output not formatted",
            file=sys.stderr,
        )
        return text
    return subprocess.run(
        [exe, f"--style=file:{CLANG_STYLE}", "--assume-filename=flax_unicode.h"],
        input=text, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def generate() -> tuple[str, collections.Counter[str]]:
    probe = probe_hf()
    props, diffs = classify(probe)
    check_ccc(probe.out, [cp for cp in code_points() if props[cp].kind == MARK])
    return clang_format(render(props, diffs)), diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the header is stale")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text, diffs = generate()
    for what, n in sorted(diffs.items(), key=lambda x: -x[1]):
        print(f"{n:7d}  {what}", file=sys.stderr)
    if args.check:
        if not args.out.exists() or args.out.read_text(encoding="utf-8") != text:
            print(f"gen_unicode_tables: {args.out} is stale: run the script", file=sys.stderr)
            return 1
        print(f"gen_unicode_tables: {args.out} is up to date", file=sys.stderr)
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"gen_unicode_tables: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
