"""max_region_mb: the slot regions of all models together, destroyed ones still mapped included.

Needs the module loaded with a small cap, so it runs with the lifecycle tests
(after the rest of the VM suite) and reloads the module with its defaults after.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import pyflaxdev

KO = os.environ.get("FLAX_KO", "")
PARAM = Path("/sys/module/flaxdev/parameters/max_region_mb")
PER_SLOT = 1 << 16  # float32: 256 KiB a slot
NSLOTS = 20  # 5 MiB of input slots: one such model fits in 8 MiB, two do not


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _reload(*params: str) -> None:
    if Path("/sys/module/flaxdev").exists():
        r = _run("rmmod", "flaxdev")
        assert r.returncode == 0, r.stderr
    r = _run("insmod", KO, *params)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def capped() -> Iterator[None]:
    assert KO, "FLAX_KO is not set: run this suite through kbuild/vm-run"
    _reload("max_region_mb=8")
    try:
        yield
    finally:
        _reload()


def _create(dev: pyflaxdev.Device, name: str, nslots: int = NSLOTS) -> pyflaxdev.Model:
    return dev.create_model(name, (PER_SLOT,), np.float32, (4,), post=(), nslots=nslots)


def test_the_cap_holds_until_the_last_mapping_goes(capped: None) -> None:
    assert PARAM.read_text().strip() == "8"
    with pyflaxdev.open() as dev:
        _create(dev, "cap-a")
        with pytest.raises(pyflaxdev.OutOfResources, match="max_region_mb") as e:
            _create(dev, "cap-b")
        assert e.value.errno == errno.ENOMEM
        log = _run("dmesg").stdout
        assert "model cap-b: " in log and "region past max_region_mb" in log, log[-2000:]

        # A destroyed model's region counts while a worker still maps it.
        worker = pyflaxdev.Worker("cap-a", device=pyflaxdev.open())
        worker.attach()
        dev.destroy_model("cap-a")
        with pytest.raises(pyflaxdev.OutOfResources):
            _create(dev, "cap-b")
        worker.close()
        worker.device.close()
        _create(dev, "cap-b")
        dev.destroy_model("cap-b")

        # Create, map, destroy, unmap: the count comes back every time.
        for i in range(10):
            model = _create(dev, f"cap-{i}")
            with pyflaxdev.Worker(model.name) as w:
                w.attach()
                dev.destroy_model(model.name)
        _create(dev, "cap-a")
        _create(dev, "cap-small", nslots=4)  # 1 MiB more still fits
        dev.destroy_model("cap-a")
        dev.destroy_model("cap-small")


def test_a_default_cap_of_half_the_memory() -> None:
    assert KO, "FLAX_KO is not set: run this suite through kbuild/vm-run"
    if not Path("/sys/module/flaxdev").exists():
        _reload()
    total_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert int(PARAM.read_text()) == total_kb // 1024 // 2
