"""cffi build script for the host build of the shared pre/postprocessing C.

``driver/flax_ops.c`` is compiled into a CPython extension, out-of-line API mode,
from the very same file the kernel module builds, with ``-DFLAX_USERSPACE`` (so
``driver/flax_compat.h`` supplies the user-space types) and the floating-point
flags the kernel object gets: ``-O2 -ffp-contract=off -fno-strict-aliasing``
(no FMA contraction: flax_normalize() must round every operation the way numpy
does).  The cdef below declares ``driver/flax_ops.h``'s API; cffi checks every
struct field and constant against the real headers at build time.

Two variants:

- plain (``sanitize=False``), module ``_flaxops_host``;
- sanitized (``sanitize=True``), module ``_flaxops_host_asan``: adds
  ``-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all
  -fno-omit-frame-pointer -g``, so any out-of-bounds access, undefined behaviour
  or out-of-range float-to-integer conversion aborts the process.  An
  ASan-instrumented extension can only be loaded into a Python that runs with
  the ASan runtime first in its library list::

      LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)" \\
      ASAN_OPTIONS=detect_leaks=0 python ...

  (``libstdc++`` is preloaded as well so that ASan's ``__cxa_throw`` interceptor
  resolves; without it jaxlib's first C++ exception kills the process.)
  ``tests/host/conftest.py`` does all of this by itself: see its docstring.

The header's user-space-only ``flax_norm_set_path()`` and ``flax_norm_get_path()``
force and report flax_normalize()'s code path (plain C, SSE2, AVX2), so that the
tests (tests/host/test_norm_paths.py) and scripts/bench_preprocess.py run each
path on one machine.

Besides the header's API, the module exports two test helpers,
``flaxtest_expf_array()`` and ``flaxtest_sqrt_array()``, which apply
flax_expf_bits() and flax_sqrt_bits() to an array (a Python call per element
would make dense checks of 2^24 and more inputs too slow).

``python bindings/ops_build.py [--sanitize] [--out-dir DIR]`` builds the
extension (default directory: ``build/host-ops``) and prints its path.  Nothing
here is installed with ``pyflaxdev``: the module exists for the tests only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DRIVER = ROOT / "driver"
#: The shared C files compiled into the extension (the kernel builds the same files).
SOURCES: tuple[Path, ...] = (
    DRIVER / "flax_ops.c",  # numeric pre/postprocessing (SSE object in the kernel)
    DRIVER / "flax_text.c",  # number formatting and parsing (integer only)
    DRIVER / "flax_tok.c",  # BERT WordPiece tokeniser and vocabulary (integer only)
)

#: Every file whose contents the built extension depends on (for cache keys).
INPUTS: tuple[Path, ...] = (
    *SOURCES,
    DRIVER / "flax_ops.h",
    DRIVER / "flax_text.h",
    DRIVER / "flax_tok.h",
    DRIVER / "flax_unicode.h",
    DRIVER / "flax_compat.h",
    DRIVER / "flax_dtype.h",
    DRIVER / "uapi" / "flaxdev.h",
    Path(__file__).resolve(),
)

MODULE_NAME = "_flaxops_host"
MODULE_NAME_ASAN = "_flaxops_host_asan"

CFLAGS: tuple[str, ...] = (
    "-std=gnu11",
    "-O2",
    "-ffp-contract=off",
    "-fno-strict-aliasing",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
)

SANITIZE_FLAGS: tuple[str, ...] = (
    "-fsanitize=address,undefined,float-cast-overflow",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
)

CDEF_OPS = """\
#define FLAX_DTYPE_UINT8 ...
#define FLAX_DTYPE_FLOAT32 ...
#define FLAX_DTYPE_INT8 ...
#define FLAX_DTYPE_UINT16 ...
#define FLAX_DTYPE_INT16 ...
#define FLAX_DTYPE_INT32 ...
#define FLAX_DTYPE_FLOAT16 ...
#define FLAX_TOPK_MAX ...
#define FLAX_FPU_CHUNK ...
#define FLAX_NORM_CLAMP ...
#define FLAX_NORM_FLAGS ...
#define FLAX_SMX_NAN ...
#define FLAX_NORM_PATH_AUTO ...
#define FLAX_NORM_PATH_SCALAR ...
#define FLAX_NORM_PATH_SSE2 ...
#define FLAX_NORM_PATH_AVX2 ...
#define FLAX_NORM_CHUNK_VECTOR ...
#define FLAX_NORM_CHUNK_SCALAR ...
#define FLAX_NORM_RUN_MIN ...
#define FLAX_NORM_LUT_PAIRS ...
#define FLAX_NORM_LUT_VALUES ...
#define FLAX_NORM_LUT_CHUNK ...
#define EINVAL ...
#define EOPNOTSUPP ...

struct flax_norm {
    uint32_t count;
    uint32_t inner;
    uint32_t scale;
    uint32_t flags;
    uint32_t clamp_lo;
    uint32_t clamp_hi;
    const uint32_t *mean;
    const uint32_t *std;
};

struct flax_topk_entry {
    uint32_t index;
    uint32_t score;
};

struct flax_smx {
    uint32_t max;
    uint32_t flags;
    uint64_t sum;
    uint64_t nmax;
};

int flax_normalize(void *dst, const void *src, uint32_t dtype, uint32_t first, uint32_t n,
                   const struct flax_norm *p);
int flax_norm_vector_ok(uint32_t dtype, const struct flax_norm *p);
uint32_t flax_normalize_chunk(uint32_t dtype, const struct flax_norm *p);
int flax_norm_set_path(uint32_t path);
uint32_t flax_norm_get_path(void);
int flax_norm_lut_fill(uint32_t *lut, const struct flax_norm *p);
void flax_norm_lut_apply(void *dst, const void *src, uint32_t first, uint32_t n,
                         const uint32_t *lut, const struct flax_norm *p);
void flax_topk(const void *scores, uint32_t n, uint32_t k, struct flax_topk_entry *out);
uint32_t flax_topk_add(const void *scores, uint32_t n, uint32_t first, uint32_t k, uint32_t cnt,
                       struct flax_topk_entry *out);
void flax_smx_init(struct flax_smx *s);
void flax_smx_max(struct flax_smx *s, const void *buf, uint32_t n);
void flax_smx_sum(struct flax_smx *s, const void *buf, uint32_t n);
void flax_smx_apply(const struct flax_smx *s, void *buf, uint32_t n, int log);
void flax_softmax(void *buf, uint32_t n);
void flax_sigmoid(void *buf, uint32_t n);
uint32_t flax_threshold(const void *scores, uint32_t n, uint32_t thr, uint32_t first,
                        struct flax_topk_entry *out);
uint32_t flax_pool_acc(uint64_t *acc, const void *rows, const void *mask, uint32_t nrows,
                       uint32_t d);
void flax_pool_finish(void *dst, const uint64_t *acc, uint32_t d, uint32_t ntokens);
void flax_sumsq(uint64_t *acc, const void *buf, uint32_t n);
void flax_l2_apply(void *buf, uint32_t n, uint64_t acc);
uint64_t flax_sqrt_bits(uint64_t x);
uint32_t flax_expf_bits(uint32_t x);

void flaxtest_expf_array(const uint32_t *x, uint32_t *y, size_t n);
void flaxtest_sqrt_array(const uint64_t *x, uint64_t *y, size_t n);
"""

# driver/flax_text.h (dtype and errno constants: from CDEF_OPS or the tests themselves).
CDEF_TEXT = """\
#define FLAX_FMT_PREC_MAX ...
#define FLAX_FMT_F32_MAX ...

int flax_fmt_f32(char *buf, size_t size, uint32_t bits, uint32_t prec);
int flax_fmt_f32_list(char *buf, size_t size, const void *vals, uint32_t n, uint32_t prec);
int flax_parse_f32(const char *s, size_t len, uint32_t *out, size_t *used);
int flax_parse_numbers(const char *text, size_t len, uint32_t dtype, void *dst, uint32_t n);

size_t flaxtest_fmt_array(const uint32_t *bits, size_t n, uint32_t prec, char *out, size_t size);
uint64_t flaxtest_fmt_vs_libc(uint32_t start, uint32_t step, uint64_t count, uint32_t prec,
                              uint32_t libc_prec, uint32_t *first_bad);
"""

# driver/flax_tok.h (tests/host/test_tokenizer.py).
CDEF_TOK = """\
#define FLAX_VOCAB_MAX_ENTRIES ...
#define FLAX_VOCAB_MAX_BYTES ...
#define FLAX_VOCAB_MAX_TOKEN ...
#define FLAX_TOK_MAX_WORD ...
#define FLAX_TOK_MIN_LEN ...
#define EILSEQ ...
#define E2BIG ...
#define ENOMEM ...

struct flax_vocab;
int flax_vocab_parse(const char *data, size_t len, struct flax_vocab **out, uint32_t *bad_line);
void flax_vocab_free(struct flax_vocab *v);
uint32_t flax_vocab_size(const struct flax_vocab *v);
int32_t flax_vocab_lookup(const struct flax_vocab *v, const char *tok, size_t len);
const char *flax_vocab_token(const struct flax_vocab *v, uint32_t id, uint32_t *len);
int flax_tokenize(const struct flax_vocab *v, const char *text, size_t len, uint32_t max_len,
                  int32_t *ids, int32_t *mask, uint32_t *ntokens);

int flaxtest_tokenize_many(const struct flax_vocab *v, const char *texts, const size_t *offsets,
                           size_t count, uint32_t max_len, int32_t *ids, uint32_t *ntokens);
"""

#: The API of each shared C file, one declaration block per file.
CDEF = CDEF_OPS + CDEF_TEXT + CDEF_TOK

HELPERS_SOURCE = r"""
#include "flax_ops.h"

/* flax_expf_bits() over an array (test helper, not part of flax_ops.h). */
static void flaxtest_expf_array(const uint32_t *x, uint32_t *y, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		y[i] = flax_expf_bits(x[i]);
}

/* flax_sqrt_bits() over an array (test helper, not part of flax_ops.h). */
static void flaxtest_sqrt_array(const uint64_t *x, uint64_t *y, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		y[i] = flax_sqrt_bits(x[i]);
}
"""

#: Test helpers of driver/flax_text.c (user space only: they may use float and libc).
HELPERS_TEXT = r"""
#include <stdio.h>
#include "flax_text.h"

/*
 * flax_fmt_f32() of n values into out, each followed by a newline; returns
 * the length of the whole (written only up to size).
 */
static size_t flaxtest_fmt_array(const uint32_t *bits, size_t n, uint32_t prec,
		char *out, size_t size)
{
	char tmp[FLAX_FMT_F32_MAX + 1];
	size_t i, pos = 0;
	int len;

	for (i = 0; i < n; i++) {
		len = flax_fmt_f32(tmp, sizeof(tmp), bits[i], prec);
		if (len < 0 || len > FLAX_FMT_F32_MAX)
			len = snprintf(tmp, sizeof(tmp), "<%d>", len);
		tmp[len++] = '\n';
		if (pos + len <= size)
			memcpy(out + pos, tmp, len);
		pos += len;
	}
	return pos;
}

/*
 * Compare flax_fmt_f32(prec) with glibc's snprintf("%.*g", libc_prec) (the
 * same precision, but for the test that shows a difference is reported) on
 * count bit patterns start, start + step, ... (mod 2^32); NaNs print as
 * "nan" in both.  Returns the number of mismatches, the first in *first_bad.
 */
static uint64_t flaxtest_fmt_vs_libc(uint32_t start, uint32_t step, uint64_t count,
		uint32_t prec, uint32_t libc_prec, uint32_t *first_bad)
{
	char got[32], want[32];
	uint64_t i, bad = 0;
	uint32_t b = start;
	float f;
	int len;

	for (i = 0; i < count; i++, b += step) {
		memcpy(&f, &b, sizeof(f));
		len = flax_fmt_f32(got, sizeof(got), b, prec);
		if ((b & 0x7fffffffu) > 0x7f800000u)
			snprintf(want, sizeof(want), "nan");
		else
			snprintf(want, sizeof(want), "%.*g", (int)libc_prec, (double)f);
		if (len != (int)strlen(want) || strcmp(got, want)) {
			if (!bad)
				*first_bad = b;
			bad++;
		}
	}
	return bad;
}
"""

HELPERS_TOK = r"""
#include "flax_tok.h"

/*
 * flax_tokenize() of count texts, text i being texts[offsets[i]] to
 * texts[offsets[i + 1]], ids (max_len each) and ntokens back to back (the
 * masks follow from ntokens); one call for a whole corpus, so that the
 * throughput benchmark measures the C, not cffi.  Returns 0 or the first
 * error.
 */
static int flaxtest_tokenize_many(const struct flax_vocab *v, const char *texts,
		const size_t *offsets, size_t count, uint32_t max_len, int32_t *ids,
		uint32_t *ntokens)
{
	int32_t *mask = malloc(sizeof(*mask) * max_len);
	size_t i;
	int ret = 0;

	if (!mask)
		return -ENOMEM;
	for (i = 0; i < count && !ret; i++)
		ret = flax_tokenize(v, texts + offsets[i], offsets[i + 1] - offsets[i],
				max_len, ids + i * max_len, mask, ntokens + i);
	free(mask);
	return ret;
}
"""


def module_name(sanitize: bool) -> str:
    """Name of the extension module of one variant."""
    return MODULE_NAME_ASAN if sanitize else MODULE_NAME


def make_ffibuilder(sanitize: bool = False) -> FFI:
    """Return an FFI ready to compile the host build of ``driver/flax_ops.c``."""
    flags = list(CFLAGS)
    link_flags: list[str] = []
    if sanitize:
        flags += SANITIZE_FLAGS
        link_flags += SANITIZE_FLAGS
    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(
        module_name(sanitize),
        HELPERS_SOURCE + HELPERS_TEXT + HELPERS_TOK,
        sources=[str(path) for path in SOURCES],
        include_dirs=[str(DRIVER)],
        define_macros=[("FLAX_USERSPACE", "1")],
        extra_compile_args=flags,
        extra_link_args=link_flags,
    )
    return builder


def build(out_dir: Path, sanitize: bool = False, verbose: bool = False) -> Path:
    """Build one variant into ``out_dir`` and return the path of the extension.

    Compiles in a scratch directory next to ``out_dir`` and moves only the
    finished extension into place (atomically), so a concurrent or interrupted
    build never leaves a half-written module behind.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    builder = make_ffibuilder(sanitize)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as scratch:
        built = Path(builder.compile(tmpdir=scratch, verbose=verbose))
        target = out_dir / built.name
        staged = out_dir / f".{built.name}.{os.getpid()}"
        shutil.copy2(built, staged)
        staged.replace(target)
    return target


ffibuilder = make_ffibuilder(sanitize=os.environ.get("FLAX_OPS_SANITIZE", "0") == "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sanitize", action="store_true", help="ASan + UBSan build")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "build" / "host-ops")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    print(build(args.out_dir, sanitize=args.sanitize, verbose=args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
