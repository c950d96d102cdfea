"""The cffi UAPI module matches driver/uapi/flaxdev.h, and the ioctl numbers match its macros."""

from __future__ import annotations

import re
import runpy
import struct
from pathlib import Path

import ioctl_opt
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyflaxdev import ioctls
from pyflaxdev.uapi import bits_to_f32, cdata_to_dict, f32_to_bits, ffi, lib, numpy_dtype

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "driver" / "uapi" / "flaxdev.h"
TEXT = HEADER.read_text()

IOC_MACROS = dict(re.findall(r"^#define\s+FLAX_IOC_(\w+)\s+(_IO\w*)\(", TEXT, re.M))
# name -> value, the whole of it (``FLAX_NODE_DIR "/control"``), less a trailing comment
DEFINES = dict(re.findall(r"^#define\s+(FLAX_\w+)\s+(.*?)\s*(?:/\*.*)?$", TEXT, re.M))
STRUCTS = re.findall(r"^struct\s+(flax_\w+)\s*\{", TEXT, re.M)
SIZE_VER0 = {name: int(v) for name, v in DEFINES.items() if name.endswith("_SIZE_VER0")}
# The current size of each struct: its latest published *_SIZE_VER<n>.
SIZE_VERSIONS = sorted(
    (int(m.group(2)), m.group(1), int(v))
    for name, v in DEFINES.items()
    if (m := re.fullmatch(r"(FLAX_\w+)_SIZE_VER(\d+)", name))
)
SIZE_LATEST = {base: size for _, base, size in SIZE_VERSIONS}


def ioc_size(request: int) -> int:
    return (request >> 16) & 0x3FFF


def test_header_was_parsed():
    # guards the regexes above, so the parametrised tests cannot pass vacuously
    assert len(IOC_MACROS) == 13
    assert len(STRUCTS) >= 15
    assert len(SIZE_VER0) == 13
    assert SIZE_LATEST["FLAX_MODEL_DESC"] == 224


def test_every_header_ioctl_has_a_request_number():
    assert set(IOC_MACROS) == set(ioctls.IOCTLS)


@pytest.mark.parametrize("name", sorted(IOC_MACROS))
def test_request_number_equals_header_macro(name):
    assert ioctls.IOCTLS[name].request == getattr(lib, f"FLAX_IOC_{name}")
    assert getattr(ioctls, name) == getattr(lib, f"FLAX_IOC_{name}")


@pytest.mark.parametrize("name", sorted(IOC_MACROS))
def test_request_direction_matches_macro(name):
    macro = IOC_MACROS[name]
    want = {
        "_IOR": ioctl_opt.IOC_READ,
        "_IOW": ioctl_opt.IOC_WRITE,
        "_IOWR": ioctl_opt.IOC_READ | ioctl_opt.IOC_WRITE,
    }[macro]
    assert ioctl_opt.IOC_DIR(ioctls.IOCTLS[name].request) == want


@pytest.mark.parametrize("name", sorted(IOC_MACROS))
def test_struct_size_is_latest_published_size(name):
    io = ioctls.IOCTLS[name]
    base = "FLAX_" + io.struct.removeprefix("struct flax_").upper()
    assert ffi.sizeof(io.struct) == SIZE_LATEST[base]
    assert ioc_size(io.request) == SIZE_LATEST[base]
    assert getattr(lib, base + "_SIZE_VER0") == SIZE_VER0[base + "_SIZE_VER0"] <= SIZE_LATEST[base]


def test_every_size_constant_names_a_struct():
    for base, size in SIZE_LATEST.items():
        struct_name = "struct flax_" + base.removeprefix("FLAX_").lower()
        assert ffi.sizeof(struct_name) == size, base


def test_with_size_reencodes_only_the_size():
    infer = ioctls.IOCTLS["INFER"]
    bigger = ioctls.with_size(infer, infer.size + 8)
    assert ioc_size(bigger) == infer.size + 8
    assert bigger & ~(0x3FFF << 16) == infer.request & ~(0x3FFF << 16)


@pytest.mark.parametrize("name", sorted(DEFINES))
def test_every_define_is_exported_with_the_header_value(name):
    value = DEFINES[name]
    if '"' in value:  # a string literal, maybe after string macros: C concatenates them
        parts = re.findall(r'"([^"]*)"|([A-Za-z_]\w*)', value)
        want = "".join(lit or ffi.string(getattr(lib, macro)).decode() for lit, macro in parts)
        assert ffi.string(getattr(lib, name)).decode() == want
    elif re.fullmatch(r"0[0-7]+", value):  # C's octal
        assert getattr(lib, name) == int(value, 8)
    elif re.fullmatch(r"0x[0-9a-fA-F]+|\d+", value):
        assert getattr(lib, name) == int(value, 0)
    else:
        assert isinstance(getattr(lib, name), int)


@pytest.mark.parametrize("name", STRUCTS)
def test_struct_has_no_implicit_padding(name):
    # the ABI rule is explicit padding only: every byte is a named field
    ctype = ffi.typeof(f"struct {name}")
    end = 0
    for field, f in ctype.fields:
        assert f.offset == end, f"hole before {name}.{field}"
        flexible = f.type.kind == "array" and f.type.length is None
        end = f.offset + (0 if flexible else ffi.sizeof(f.type))
    assert end == ffi.sizeof(ctype), f"tail padding in {name}"


@pytest.mark.parametrize("name", STRUCTS)
def test_u64_fields_are_8_aligned_for_32bit_compat(name):
    ctype = ffi.typeof(f"struct {name}")
    has_u64 = False
    for field, f in ctype.fields:
        if f.type.kind == "primitive" and ffi.sizeof(f.type) == 8:
            has_u64 = True
            assert f.offset % 8 == 0, f"{name}.{field} at {f.offset}"
    if has_u64:
        assert ffi.sizeof(ctype) % 8 == 0


@pytest.mark.parametrize("name", STRUCTS)
def test_numpy_dtype_matches_cffi_layout(name):
    ctype = ffi.typeof(f"struct {name}")
    dt = numpy_dtype(ctype)
    assert dt.itemsize == ffi.sizeof(ctype)
    for field, f in ctype.fields:
        if f.type.kind == "array" and f.type.length is None:
            assert field not in dt.names
            continue
        assert dt.fields[field][1] == f.offset


def test_numpy_dtype_reads_what_cffi_wrote():
    desc = ffi.new("struct flax_model_desc *")
    desc.id = 7
    desc.name = b"digits"
    desc.input.dims[1] = 8
    desc.post_ops[1] = 2
    desc.norm_std = 0x1122334455667788
    row = np.frombuffer(ffi.buffer(desc), dtype=numpy_dtype("struct flax_model_desc"))[0]
    assert row["id"] == 7
    assert row["name"] == b"digits"
    assert row["input"]["dims"][1] == 8
    assert row["post_ops"][1] == 2
    assert row["norm_std"] == 0x1122334455667788


def test_cdata_to_dict():
    info = ffi.new("struct flax_info *", {"abi_version": 1, "features": 1 << 40})
    d = cdata_to_dict(info)
    assert d["abi_version"] == 1
    assert d["features"] == 1 << 40
    assert set(d) == {f for f, _ in ffi.typeof("struct flax_info").fields}


def test_device_info_fields_match_struct():
    from pyflaxdev.device import DeviceInfo
    from pyflaxdev.region import Layout

    assert list(DeviceInfo.__dataclass_fields__) == [
        f for f, _ in ffi.typeof("struct flax_info").fields
    ]
    assert list(Layout.__dataclass_fields__) == [
        f for f, _ in ffi.typeof("struct flax_region_layout").fields
    ]


def test_cdef_is_generated_not_copied():
    build = runpy.run_path(str(REPO / "bindings" / "uapi_build.py"))
    cdef = build["header_to_cdef"](TEXT)
    assert "#define FLAX_IOC_INFER ..." in cdef
    assert "__u32 dims[...];" in cdef
    assert "#include" not in cdef
    assert "/*" not in cdef
    # every struct of the header is in the cdef, verbatim apart from array lengths
    for name in STRUCTS:
        assert f"struct {name} {{" in cdef


def test_ioctl_helper_returns_negative_errno(tmp_path):
    import errno

    f = tmp_path / "plain"
    f.write_bytes(b"")
    with f.open("rb") as fh:
        info = ffi.new("struct flax_info *")
        assert lib.flax_ioctl(fh.fileno(), ioctls.INFO, info) == -errno.ENOTTY
    assert lib.flax_ioctl(-1, ioctls.INFO, info) == -errno.EBADF


@given(st.floats(width=32, allow_nan=False))
def test_f32_bits_round_trip(x):
    bits = f32_to_bits(x)
    assert bits == struct.unpack("=I", struct.pack("=f", x))[0]
    assert bits == int(np.float32(x).view(np.uint32))
    assert bits_to_f32(bits) == x


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_bits_to_f32_matches_numpy(bits):
    got = np.float32(bits_to_f32(bits))
    want = np.uint32(bits).view(np.float32)
    assert (np.isnan(got) and np.isnan(want)) or got.view(np.uint32) == want.view(np.uint32)
