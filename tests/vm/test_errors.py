"""Bad input through the real module: each is refused with its errno, and nothing breaks."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import ioctls, models, uapi
from pyflaxdev.uapi import ffi, lib

BAD_POINTER = 0x10  # below mmap_min_addr: never mapped


@pytest.fixture
def idle_model(dev: pyflaxdev.Device, digits_spec: models.ModelSpec) -> Iterator[pyflaxdev.Model]:
    """A digits-shaped model with no worker and a short timeout."""
    model = digits_spec.create(dev, name="idle", timeout_ms=300)
    try:
        yield model
    finally:
        dev.destroy_model("idle")


def _infer_req(model: pyflaxdev.Model, data: Any, out: Any) -> Any:
    req = ffi.new("struct flax_infer *")
    req.model_id = model.id
    req.input = uapi.pointer_value(data)
    req.input_size = len(data)
    req.output = uapi.pointer_value(out)
    req.output_size = len(out)
    return req


def _raw(dev: pyflaxdev.Device, request: int, arg: Any) -> int:
    """The ioctl's result: 0 or -errno, with no Python-side checks."""
    return uapi.ioctl(dev.fileno(), request, arg)


def _buffers(model: pyflaxdev.Model) -> tuple[Any, Any]:
    return ffi.new("uint8_t[]", 64), ffi.new("char[]", model.info.result_size)


def test_unknown_model_is_enoent(dev: pyflaxdev.Device) -> None:
    with pytest.raises(pyflaxdev.ModelNotFound) as info:
        dev.model("no-such-model")
    assert info.value.errno == errno.ENOENT
    assert "no-such-model" in str(info.value)
    desc = ffi.new("struct flax_model_desc *")
    desc.name = b"no-such-model"
    assert _raw(dev, ioctls.MODEL_GET, desc) == -errno.ENOENT


@pytest.mark.parametrize("size", [0, 1, 63, 65, 256])
def test_wrong_input_size_is_einval(
    dev: pyflaxdev.Device, idle_model: pyflaxdev.Model, size: int
) -> None:
    data, out = ffi.new("uint8_t[]", max(size, 1)), ffi.new("char[]", idle_model.info.result_size)
    req = _infer_req(idle_model, data, out)
    req.input_size = size
    assert _raw(dev, ioctls.INFER, req) == -errno.EINVAL
    with pytest.raises(pyflaxdev.InvalidArgument) as info:
        idle_model.infer_bytes(bytes(max(size, 1)) if size != 64 else bytes(63))
    assert info.value.errno == errno.EINVAL


def test_bad_input_pointer_is_efault(dev: pyflaxdev.Device, idle_model: pyflaxdev.Model) -> None:
    data, out = _buffers(idle_model)
    req = _infer_req(idle_model, data, out)
    req.input = BAD_POINTER
    assert _raw(dev, ioctls.INFER, req) == -errno.EFAULT


def test_bad_struct_pointer_is_efault(dev: pyflaxdev.Device) -> None:
    bad = ffi.cast("void *", BAD_POINTER)
    for request in (ioctls.INFER, ioctls.MODEL_GET, ioctls.MODEL_CREATE, ioctls.INFO):
        assert _raw(dev, request, bad) == -errno.EFAULT
    # A worker ioctl on an fd that is not a worker fails before reading anything.
    assert _raw(dev, ioctls.FETCH, bad) == -errno.ENXIO


@pytest.mark.parametrize("field", ["priority", "flags"])
def test_bad_priority_or_flags_is_einval(
    dev: pyflaxdev.Device, idle_model: pyflaxdev.Model, field: str
) -> None:
    data, out = _buffers(idle_model)
    req = _infer_req(idle_model, data, out)
    # flags: an undefined one (bit 0 is FLAX_INFER_TEXT); priority: far above FLAX_PRIORITY_MAX
    setattr(req, field, 1 << 31)
    assert _raw(dev, ioctls.INFER, req) == -errno.EINVAL


def test_model_desc_reserved_is_einval(dev: pyflaxdev.Device) -> None:
    desc = ffi.new("struct flax_model_desc *")
    desc.name = b"idle"
    desc.reserved[1] = 7
    assert _raw(dev, ioctls.MODEL_GET, desc) == -errno.EINVAL


def test_oversize_struct_tail(dev: pyflaxdev.Device, idle_model: pyflaxdev.Model) -> None:
    """A newer caller's bigger struct: zero tail accepted (no worker: ETIMEDOUT), else E2BIG."""
    data, out = _buffers(idle_model)
    req = _infer_req(idle_model, data, out)
    size = ffi.sizeof("struct flax_infer")
    big = ffi.new("char[]", size + 16)
    ffi.memmove(big, req, size)
    request = ioctls.with_size(ioctls.IOCTLS["INFER"], size + 16)
    big[size + 9] = b"\x01"
    assert _raw(dev, request, big) == -errno.E2BIG
    big[size + 9] = b"\x00"
    assert _raw(dev, request, big) == -errno.ETIMEDOUT


def test_undersize_struct_is_einval(dev: pyflaxdev.Device, idle_model: pyflaxdev.Model) -> None:
    data, out = _buffers(idle_model)
    req = _infer_req(idle_model, data, out)
    request = ioctls.with_size(ioctls.IOCTLS["INFER"], lib.FLAX_INFER_SIZE_VER0 - 8)
    assert _raw(dev, request, req) == -errno.EINVAL


def test_unknown_ioctl_is_enotty(dev: pyflaxdev.Device) -> None:
    request = ioctls.with_size(ioctls.IOCTLS["INFER"], ffi.sizeof("struct flax_infer")) + 0x40
    assert _raw(dev, request, ffi.new("char[]", 64)) == -errno.ENOTTY


def test_no_worker_times_out(dev: pyflaxdev.Device, idle_model: pyflaxdev.Model) -> None:
    with pytest.raises(pyflaxdev.Timeout) as info:
        idle_model.infer(np.zeros((8, 8), np.uint8))
    assert info.value.errno == errno.ETIMEDOUT
    assert "idle" in str(info.value)
    # A shorter per-request timeout is honoured.
    data, out = _buffers(idle_model)
    req = _infer_req(idle_model, data, out)
    req.timeout_ms = 50
    assert _raw(dev, ioctls.INFER, req) == -errno.ETIMEDOUT


def test_small_output_buffer_is_enospc(dev: pyflaxdev.Device, idle_model: pyflaxdev.Model) -> None:
    data = ffi.new("uint8_t[]", 64)
    out = ffi.new("char[]", 4)
    req = _infer_req(idle_model, data, out)
    assert _raw(dev, ioctls.INFER, req) == -errno.ENOSPC
    assert req.output_size == idle_model.info.result_size


def test_duplicate_model_is_eexist(
    dev: pyflaxdev.Device, idle_model: pyflaxdev.Model, digits_spec: models.ModelSpec
) -> None:
    with pytest.raises(pyflaxdev.ModelExists) as info:
        digits_spec.create(dev, name="idle")
    assert info.value.errno == errno.EEXIST


@pytest.mark.parametrize(
    ("name", "why"),
    [(b"", "empty"), (b"a/b", "slash"), (b"x" * 32, "no NUL"), (b"ok\0junk", "junk after NUL")],
)
def test_bad_model_names_are_einval(dev: pyflaxdev.Device, name: bytes, why: str) -> None:
    desc = ffi.new("struct flax_model_desc *")
    ffi.memmove(desc.name, name, len(name))
    assert _raw(dev, ioctls.MODEL_GET, desc) == -errno.EINVAL, why


@pytest.mark.parametrize("name", ["", "a/b", "sp ace", ".."])
def test_create_with_bad_name_is_einval(
    dev: pyflaxdev.Device, digits_spec: models.ModelSpec, name: str
) -> None:
    with pytest.raises(pyflaxdev.InvalidArgument):
        dev.create_model(
            name,
            digits_spec.input_shape,
            digits_spec.input_dtype,
            digits_spec.output_shape,
            normalize=digits_spec.normalize,
            post=digits_spec.post,
            topk=digits_spec.topk,
            validate=False,
        )


def test_bad_output_pointer_with_worker_is_efault(
    dev: pyflaxdev.Device, digits_worker: object
) -> None:
    model = dev.model("digits")
    data, _ = _buffers(model)
    req = _infer_req(model, data, ffi.new("char[]", model.info.result_size))
    req.output = BAD_POINTER
    assert _raw(dev, ioctls.INFER, req) == -errno.EFAULT


def test_module_healthy_after_bad_input(
    dev: pyflaxdev.Device,
    digits_worker: object,
    digits_spec: models.ModelSpec,
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    x, _ = heldout
    model = dev.model("digits")
    for i in range(10):
        r = model.infer(x[i])
        assert isinstance(r, pyflaxdev.TopK)
        assert r.top == int(digits_logits[i].argmax())
    info = dev.info()
    assert info.abi_version == 1
