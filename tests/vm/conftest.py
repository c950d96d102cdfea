"""Fixtures of the VM suite: the loaded module, a served ``digits`` model, references.

This suite runs only inside the VM started by ``kbuild/vm-run`` (``make test-vm``),
with ``flaxdev.ko`` loaded.  It never skips: without ``/dev/flax`` every test fails.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import models, sysfs

TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("FLAX_OUT", "/tmp"))
WORKER_START_S = 900.0


def pytest_sessionstart(session: pytest.Session) -> None:
    if not Path(pyflaxdev.DEFAULT_PATH).exists():
        raise pytest.UsageError(
            f"{pyflaxdev.DEFAULT_PATH} does not exist: the VM suite needs flaxdev.ko loaded "
            "(run it with `make test-vm`)"
        )


@pytest.fixture
def dev() -> Iterator[pyflaxdev.Device]:
    with pyflaxdev.open() as d:
        yield d


@pytest.fixture
def cleanup(dev: pyflaxdev.Device) -> Iterator[list[str]]:
    """Names of models to destroy after the test (as root, which may destroy any)."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(pyflaxdev.ModelNotFound):
            dev.destroy_model(name)


@pytest.fixture(scope="session")
def digits_spec() -> models.ModelSpec:
    return models.get("digits")


@pytest.fixture(scope="session")
def heldout(digits_spec: models.ModelSpec) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x, y = digits_spec.heldout()
    assert x.shape == (360, 8, 8) and x.dtype == np.uint8
    return x, y


def _model_dir(name: str) -> Path:
    return sysfs.sysfs_root() / "models" / name


class WorkerProcess:
    """``flaxdev serve`` in a child process, so that tests can kill it."""

    def __init__(self, model: str, *args: str, name: str | None = None) -> None:
        """``flaxdev serve model *args``; ``name``: the device model's (default ``model``)."""
        self.model = name or model
        self.log = OUT / f"worker-{self.model.replace('/', '_')}-{time.monotonic_ns()}.log"
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyflaxdev", "serve", model, *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(
        self, workers: int = 1, timeout: float = WORKER_START_S, *, model: str | None = None
    ) -> None:
        """Wait until ``model`` (default the one served) has ``workers`` attached."""
        deadline = time.monotonic() + timeout
        path = _model_dir(model or self.model) / "workers"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker for {self.model} exited with {self.proc.returncode}:\n"
                    + self.log.read_text()
                )
            if path.exists() and int(path.read_text()) >= workers:
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker for {self.model} not ready after {timeout} s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@contextlib.contextmanager
def served(spec: models.ModelSpec, batch_sizes: str) -> Iterator[WorkerProcess]:
    """Shipped model ``spec`` created on the device and served by one worker process."""
    with pyflaxdev.open() as d:
        spec.create(d, exist_ok=True)
    worker = WorkerProcess(spec.name, "--batch-sizes", batch_sizes)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        with pyflaxdev.open() as d:
            d.destroy_model(spec.name)


@pytest.fixture(scope="session")
def digits_worker(digits_spec: models.ModelSpec) -> Iterator[WorkerProcess]:
    """``digits`` created on the device and served by one worker process."""
    with served(digits_spec, "1,8,64") as worker:
        yield worker


@pytest.fixture(scope="session")
def digits_logits(
    digits_spec: models.ModelSpec, heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
) -> np.ndarray[Any, Any]:
    """In-process ``apply`` logits of the held-out inputs, ``[360, 10]`` float32."""
    return digits_spec.reference(heldout[0])
