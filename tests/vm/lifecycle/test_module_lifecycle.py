"""Module lifetime: rmmod refused while in use, clean load/unload cycles, no leaks.

Runs after the rest of the VM suite (tests/vm/run.sh), when no worker or client
is left, because it unloads the module.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import pyflaxdev

KO = os.environ.get("FLAX_KO", "")


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _loaded() -> bool:
    return Path("/sys/module/flaxdev").exists()


def _ensure_loaded() -> None:
    if not _loaded():
        r = _run("insmod", KO)
        assert r.returncode == 0, r.stderr


def _usage() -> dict[str, int]:
    """Active objects of the caches a model allocates from, and vmalloc'd kB."""
    usage = {"VmallocUsed": 0}
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        name, active = line.split()[:2]
        if name.startswith("kmalloc-") or name == "kernfs_node_cache":
            usage[name] = int(active)
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("VmallocUsed:"):
            usage["VmallocUsed"] = int(line.split()[1])
    return usage


@pytest.fixture(autouse=True)
def module_loaded() -> None:
    assert KO, "FLAX_KO is not set: run this suite through kbuild/vm-run"
    _ensure_loaded()


def test_rmmod_refused_while_fd_open() -> None:
    with pyflaxdev.open() as dev:
        r = _run("rmmod", "flaxdev")
        assert r.returncode != 0, "rmmod succeeded while /dev/flax was open"
        assert "in use" in r.stderr
        assert dev.info().abi_version == 1
    r = _run("rmmod", "flaxdev")
    assert r.returncode == 0, r.stderr
    assert not Path("/dev/flax").exists()


def test_rmmod_refused_while_worker_attached() -> None:
    """An attached worker with its region mapped pins the module; after it goes, rmmod works."""
    with pyflaxdev.open() as dev:
        dev.create_model("pin", (4,), "float32", (4,), post=(), topk=0)
    with pyflaxdev.Worker("pin") as worker:
        region = worker.attach()
        assert region is not None
        assert _run("rmmod", "flaxdev").returncode != 0
    r = _run("rmmod", "flaxdev")
    assert r.returncode == 0, r.stderr


def test_load_unload_twenty_times_without_leaks() -> None:
    # Warm the caches once, so that the first cycle's one-off allocations do not count.
    for _ in range(2):
        _ensure_loaded()
        with pyflaxdev.open() as dev:
            dev.create_model("cycle", (8, 8), "uint8", (10,), normalize=(1.0, [0.0], [1.0]))
        assert _run("rmmod", "flaxdev").returncode == 0
    before = _usage()
    for i in range(20):
        r = _run("insmod", KO)
        assert r.returncode == 0, f"cycle {i}: insmod: {r.stderr}"
        with pyflaxdev.open() as dev:
            model = dev.create_model("cycle", (8, 8), "uint8", (10,), normalize=(1.0, [0.0], [1.0]))
            assert model.info.nslots > 0
        r = _run("rmmod", "flaxdev")
        assert r.returncode == 0, f"cycle {i}: rmmod: {r.stderr}"
    after = _usage()
    growth = {k: after.get(k, 0) - v for k, v in before.items() if after.get(k, 0) != v}
    print(f"after 20 load/unload cycles, growth: {growth}")
    # Unrelated kernel activity moves these a little; a model leaked per cycle
    # would add 20 kernfs nodes per attribute file and its vmalloc'd region.
    assert growth.get("kernfs_node_cache", 0) < 20
    assert growth.get("VmallocUsed", 0) < 20 * 8
    kmalloc = sum(v for k, v in growth.items() if k.startswith("kmalloc-"))
    assert kmalloc < 200
