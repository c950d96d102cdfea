"""The compiled UAPI (``pyflaxdev._uapi``) and the helpers that read it.

Everything about the ABI comes from ``driver/uapi/flaxdev.h`` through cffi:
constants from ``lib``, struct sizes, offsets and fields from ``ffi``.  This
module adds what Python needs on top: binary32 <-> float conversion, numpy
structured dtypes derived from C structs, and the raw ``ioctl`` call.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

try:
    from pyflaxdev._uapi import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(
        "pyflaxdev._uapi is not built; run `.venv/bin/pip install --no-build-isolation -e .` "
        "(or `python bindings/uapi_build.py`) in the repository"
    ) from exc

__all__ = [
    "bits_to_f32",
    "cdata_to_dict",
    "f32_to_bits",
    "ffi",
    "ioctl",
    "lib",
    "numpy_dtype",
    "pointer_value",
]

_F32 = struct.Struct("=f")
_U32 = struct.Struct("=I")


def f32_to_bits(value: float) -> int:
    """Return the IEEE-754 binary32 bit pattern of ``value`` (rounded to float32)."""
    bits: int = _U32.unpack(_F32.pack(value))[0]
    return bits


def bits_to_f32(bits: int) -> float:
    """Return the float32 value whose binary32 bit pattern is ``bits``."""
    value: float = _F32.unpack(_U32.pack(bits & 0xFFFFFFFF))[0]
    return value


def pointer_value(cdata: Any) -> int:
    """Return the address of a cffi pointer/array as an integer (for ``__u64`` fields)."""
    return int(ffi.cast("uintptr_t", cdata))


_PRIMITIVES: dict[str, str] = {
    "uint8_t": "u1",
    "uint16_t": "u2",
    "uint32_t": "u4",
    "uint64_t": "u8",
    "int8_t": "i1",
    "int16_t": "i2",
    "int32_t": "i4",
    "int64_t": "i8",
    "char": "S1",
}


def _field_dtype(ctype: Any) -> np.dtype[Any]:
    if ctype.kind == "primitive":
        return np.dtype("=" + _PRIMITIVES[ctype.cname])
    if ctype.kind == "struct":
        return numpy_dtype(ctype)
    if ctype.kind == "array" and ctype.length is not None:
        if ctype.item.cname == "char":
            return np.dtype(f"S{ctype.length}")
        return np.dtype((_field_dtype(ctype.item), (ctype.length,)))
    raise TypeError(f"no numpy equivalent for C type {ctype.cname!r}")


def numpy_dtype(ctype: str | Any) -> np.dtype[Any]:
    """A numpy structured dtype with the exact layout cffi reports for a C struct.

    Flexible array members are left out (their offset is available through
    ``ffi.offsetof``); ``itemsize`` is ``ffi.sizeof`` of the struct.
    """
    ctype = ffi.typeof(ctype) if isinstance(ctype, str) else ctype
    names: list[str] = []
    formats: list[np.dtype[Any]] = []
    offsets: list[int] = []
    for name, field in ctype.fields:
        if field.type.kind == "array" and field.type.length is None:
            continue  # flexible array member
        names.append(name)
        formats.append(_field_dtype(field.type))
        offsets.append(field.offset)
    spec = {"names": names, "formats": formats, "offsets": offsets, "itemsize": ffi.sizeof(ctype)}
    return np.dtype(spec)  # type: ignore[call-overload,no-any-return]


def cdata_to_dict(cdata: Any) -> dict[str, Any]:
    """Convert a cffi struct (pointer or value) to a dict, recursively.

    Arrays become lists; ``char`` arrays become ``bytes`` up to the first NUL.
    """
    ctype = ffi.typeof(cdata)
    if ctype.kind == "pointer":
        ctype = ctype.item
        cdata = cdata[0]
    out: dict[str, Any] = {}
    for name, field in ctype.fields:
        out[name] = _convert(getattr(cdata, name), field.type)
    return out


def _convert(value: Any, ctype: Any) -> Any:
    if ctype.kind == "struct":
        return cdata_to_dict(value)
    if ctype.kind == "array":
        if ctype.item.cname == "char":
            return ffi.string(value)
        return [_convert(v, ctype.item) for v in value]
    return value


def ioctl(fd: int, request: int, arg: Any) -> int:
    """Call ``ioctl(fd, request, arg)`` with the GIL released.

    Returns the ioctl's result (>= 0) or ``-errno``; never raises for an errno
    and never retries.  ``arg`` is a cffi pointer (``ffi.NULL`` for none).
    """
    result: int = lib.flax_ioctl(fd, request, arg)
    return result
