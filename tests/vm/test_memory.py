"""Kernel memory a user makes the module hold is charged to the user's memory cgroup.

A model's slot region is allocated with ``__GFP_ACCOUNT`` (and
``__GFP_RETRY_MAYFAIL``): it shows in the creator's ``memory.current``, leaves it
when the model goes, and past ``memory.max`` the create fails with ``ENOMEM``
instead of invoking the OOM killer.  (The module-wide cap, ``max_region_mb``,
needs a reload: tests/vm/lifecycle/test_region_cap.py.)
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from childproc import in_child

import pyflaxdev

CGROOT = Path("/sys/fs/cgroup")
LIMIT = 48 << 20


def _cgroup2() -> Path:
    if not (CGROOT / "cgroup.controllers").exists():
        r = subprocess.run(
            ["mount", "-t", "cgroup2", "none", str(CGROOT)], capture_output=True, text=True
        )
        assert r.returncode == 0, f"cannot mount cgroup2: {r.stderr}"
    assert "memory" in (CGROOT / "cgroup.controllers").read_text().split()
    if "memory" not in (CGROOT / "cgroup.subtree_control").read_text().split():
        (CGROOT / "cgroup.subtree_control").write_text("+memory\n")
    return CGROOT


@pytest.fixture
def cgroup() -> Iterator[Path]:
    """A memory cgroup limited to LIMIT bytes, removed afterwards."""
    cg = _cgroup2() / "flax-test"
    cg.mkdir(exist_ok=True)
    (cg / "memory.max").write_text(f"{LIMIT}\n")
    if (cg / "memory.swap.max").exists():
        (cg / "memory.swap.max").write_text("0\n")
    try:
        yield cg
    finally:
        cg.rmdir()


def in_cgroup(cg: Path, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a child moved into ``cg`` (see :func:`childproc.in_child`)."""

    def join() -> None:
        (cg / "cgroup.procs").write_text(f"{os.getpid()}\n")

    return in_child(fn, join)


def _current(cg: Path) -> int:
    return int((cg / "memory.current").read_text())


def _oom_kills(cg: Path) -> int:
    for line in (cg / "memory.events").read_text().splitlines():
        key, value = line.split()
        if key == "oom_kill":
            return int(value)
    raise AssertionError("no oom_kill in memory.events")


def _create(name: str, per_slot: int, nslots: int) -> Callable[[], Any]:
    """A model whose input slots take ``per_slot`` float32 each."""

    def create() -> Any:
        with pyflaxdev.open() as d:
            m = d.create_model(name, (per_slot,), np.float32, (4,), post=(), nslots=nslots)
            return m.info.id

    return create


def _region_size(name: str) -> int:
    with pyflaxdev.open() as d:
        w = pyflaxdev.Worker(name, device=d)
        w.attach()
        assert w.layout is not None
        size = int(w.layout.region_size)
        w.close()
    return size


def test_region_is_charged_to_the_creators_cgroup(dev: pyflaxdev.Device, cgroup: Path) -> None:
    # 8 MiB of input slots: well inside the limit.
    base = _current(cgroup)
    got = in_cgroup(cgroup, lambda: (_create("mem-small", 1 << 18, 8)(), _current(cgroup)))
    try:
        assert isinstance(got, tuple) and isinstance(got[0], int), got
        region = _region_size("mem-small")
        assert region >= 8 << 20
        # The child is gone; what stays charged is the model (region and bookkeeping).
        held = _current(cgroup) - base
        assert held >= region, (held, region)
        assert held < region + (2 << 20), (held, region)
    finally:
        dev.destroy_model("mem-small")
    assert _current(cgroup) - base < 1 << 20, "the region stayed charged after destroy"


def test_past_memory_max_create_fails_without_oom(dev: pyflaxdev.Device, cgroup: Path) -> None:
    # 64 MiB of input slots, past the 48 MiB limit: ENOMEM, nobody killed.
    got = in_cgroup(cgroup, _create("mem-big", 1 << 20, 16))
    if not isinstance(got, tuple):
        dev.destroy_model("mem-big")
        pytest.fail(f"created past memory.max (id {got}): the region is not charged")
    assert got[:3] == ("error", errno.ENOMEM, "OutOfResources"), got
    assert "slot region" in got[3] and "cgroup" in got[3], got
    assert _oom_kills(cgroup) == 0
    with pytest.raises(pyflaxdev.ModelNotFound):
        dev.describe("mem-big")
    # Outside the cgroup the same model fits.
    dev.create_model("mem-big", (1 << 20,), np.float32, (4,), post=(), nslots=16)
    dev.destroy_model("mem-big")
