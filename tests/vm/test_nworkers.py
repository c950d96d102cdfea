"""``struct flax_model_desc.nworkers``: MODEL_GET says how many workers are attached.

Checked against the module's other account of it, sysfs ``workers``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import ioctls, sysfs, uapi
from pyflaxdev.uapi import ffi


@pytest.fixture
def bare(dev: pyflaxdev.Device) -> Iterator[pyflaxdev.Model]:
    name = f"nworkers{os.getpid()}"
    model = dev.create_model(name, (4,), np.float32, (4,), post=("softmax",))
    try:
        yield model
    finally:
        dev.destroy_model(name)


def _attach(model: pyflaxdev.Model) -> pyflaxdev.Device:
    """A new fd attached to ``model`` as a worker (a raw WORKER_ATTACH, nothing mapped)."""
    fd = pyflaxdev.open()
    req = ffi.new("struct flax_worker_attach *")
    req.model_id = model.id
    assert uapi.ioctl(fd.fileno(), ioctls.WORKER_ATTACH, req) == 0
    return fd


def _sysfs_workers(name: str) -> int:
    return int((sysfs.sysfs_root() / "models" / name / "workers").read_text())


def test_model_get_counts_attached_workers(dev: pyflaxdev.Device, bare: pyflaxdev.Model) -> None:
    name = bare.info.name
    assert dev.describe(name).nworkers == 0 == _sysfs_workers(name)
    first = _attach(bare)
    second = _attach(bare)
    try:
        assert dev.describe(name).nworkers == 2 == _sysfs_workers(name)
        first.close()
        assert dev.describe(name).nworkers == 1 == _sysfs_workers(name)
    finally:
        first.close()
        second.close()
    assert dev.describe(name).nworkers == 0 == _sysfs_workers(name)


def test_create_ignores_nworkers(dev: pyflaxdev.Device) -> None:
    """An in value of the out field is ignored by CREATE, and GET does not echo it."""
    name = f"nworkersin{os.getpid()}"
    desc = ffi.new("struct flax_model_desc *")
    desc.name = name.encode()
    desc.input.dtype = uapi.lib.FLAX_DTYPE_FLOAT32
    desc.input.ndim = 1
    desc.input.dims[0] = 4
    desc.output.dtype = uapi.lib.FLAX_DTYPE_FLOAT32
    desc.output.ndim = 1
    desc.output.dims[0] = 4
    desc.nworkers = 5
    assert uapi.ioctl(dev.fileno(), ioctls.MODEL_CREATE, desc) == 0
    try:
        assert desc.nworkers == 0
        assert dev.describe(name).nworkers == 0
    finally:
        dev.destroy_model(name)
