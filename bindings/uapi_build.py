"""cffi build script for ``pyflaxdev._uapi``: the flaxdev UAPI, from its one header.

The cdef is generated from the text of ``driver/uapi/flaxdev.h``; no struct layout
is copied by hand.  The transformation is mechanical:

- comments, ``#include``, include guards and other preprocessor lines are dropped;
- ``#define NAME <integer expression or macro>`` becomes ``#define NAME ...`` so
  the C compiler supplies every value (including the ``FLAX_IOC_*`` numbers);
- ``#define NAME "string"`` (or ``OTHER "string"``) becomes
  ``static const char *const NAME;``;
- array lengths spelled with a macro (``__u32 dims[FLAX_MAX_DIMS]``) become
  ``[...]``, completed by the C compiler as well;
- structs are kept verbatim; the kernel's ``__u8`` ... ``__s64`` typedefs are
  declared in the cdef only (the C side gets them from ``<linux/types.h>``).

In API (out-of-line) mode cffi checks every declared field offset and size
against the C compiler's at build time, so the Python side cannot drift from
the header.  Besides the header, the module exports ``flax_ioctl()``, which
calls ``ioctl(2)`` with the GIL released and returns ``-errno`` on failure (so
``errno`` cannot be clobbered before Python reads it), and the worker loop's
hot path, ``bindings/flax_wloop.c``, whose header is its cdef as it stands
(declarations only; comments and preprocessor lines dropped).

Used by ``setup.py`` (``cffi_modules=["bindings/uapi_build.py:ffibuilder"]``);
``python bindings/uapi_build.py`` builds the module in place for development.
"""

from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
UAPI_DIR = HERE.parent / "driver" / "uapi"
HEADER = UAPI_DIR / "flaxdev.h"
WLOOP = HERE / "flax_wloop.c"
WLOOP_HEADER = HERE / "flax_wloop.h"

KERNEL_TYPEDEFS = """\
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef int8_t __s8;
typedef int16_t __s16;
typedef int32_t __s32;
typedef int64_t __s64;
"""

# Declarations of the helpers defined in HELPERS_SOURCE (not part of the header).
HELPERS_CDEF = """\
int flax_ioctl(int fd, unsigned long request, void *arg);
"""

HELPERS_SOURCE = r"""
#include <errno.h>
#include <sys/ioctl.h>

/* ioctl(2) returning -errno on failure; cffi releases the GIL around it. */
static int flax_ioctl(int fd, unsigned long request, void *arg)
{
	int ret = ioctl(fd, request, arg);

	return ret < 0 ? -errno : ret;
}
"""

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)(\([^)]*\))?\s*(.*?)\s*$")
_MACRO_ARRAY_LEN = re.compile(r"\[\s*[A-Za-z_]\w*\s*\]")


def header_to_cdef(text: str) -> str:
    """Translate the UAPI header's text into a cffi cdef (see the module docstring)."""
    text = _COMMENT.sub(" ", text)
    text = text.replace("\\\n", " ")  # join continued lines
    out: list[str] = [KERNEL_TYPEDEFS]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            match = _DEFINE.match(stripped)
            if match is None:  # #include, #ifndef, #endif, ...
                continue
            name, params, value = match.groups()
            if params is not None or not value:  # function-like macro or include guard
                continue
            if '"' in value:  # a string literal, maybe after a string macro
                out.append(f"static const char *const {name};")
            else:
                out.append(f"#define {name} ...")
            continue
        out.append(_MACRO_ARRAY_LEN.sub("[...]", line.rstrip()))
    out.append(HELPERS_CDEF)
    return "\n".join(out) + "\n"


def declarations(text: str) -> str:
    """A C header's text without comments and preprocessor lines (a cdef as it stands)."""
    text = _COMMENT.sub(" ", text)
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return "\n".join(line for line in lines if line.strip()) + "\n"


def make_ffibuilder(header: Path = HEADER) -> FFI:
    """Return an FFI ready to compile ``pyflaxdev._uapi`` from ``header``."""
    builder = FFI()
    builder.cdef(header_to_cdef(header.read_text(encoding="utf-8")))
    builder.cdef(declarations(WLOOP_HEADER.read_text(encoding="utf-8")))
    builder.set_source(
        "pyflaxdev._uapi",
        f'#include "{header.name}"\n#include "{WLOOP_HEADER.name}"\n{HELPERS_SOURCE}',
        sources=[str(WLOOP)],
        include_dirs=[str(header.parent), str(HERE)],
        extra_compile_args=["-Wall", "-Wextra", "-Wno-unused-parameter"],
    )
    return builder


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    import os

    os.chdir(HERE.parent)  # so the extension lands in pyflaxdev/
    ffibuilder.compile(verbose=True)
