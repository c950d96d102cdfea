"""The built-in ``null`` model (identity, no JAX) and the copy runner that serves it.

Besides the spec and :class:`CopyRunner`, ``flaxdev serve MODEL --create`` is
run for ``null`` and ``digits`` against a fake device and a fake worker fd
(:class:`FakeDevice`, :class:`FakeWorker`): the command's whole path (model
creation from the shipped description, runner choice, one batch through the
loop, its completions) without the kernel module.  The fake applies
pyflaxdev's own validation of the model description, not the module's.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pyflaxdev import models
from pyflaxdev.errors import InvalidArgument, ModelGone, ModelNotFound
from pyflaxdev.labels import check_labels
from pyflaxdev.models import null
from pyflaxdev.runner import CopyRunner
from pyflaxdev.spec import ModelDesc, ModelInfo, TensorSpec
from pyflaxdev.worker import COMPLETION_DTYPE

ROOT = Path(__file__).resolve().parents[2]
F32 = np.dtype(np.float32)


@pytest.fixture(scope="module")
def spec():
    return models.get("null")


def test_registry_and_description(spec):
    assert "null" in models.names()
    assert spec.name == "null" and spec.identity
    assert spec.input == TensorSpec((null.SIZE,), F32) == spec.output
    assert spec.normalize is None and spec.post == () and spec.topk == 0
    assert spec.labels == () and not spec.tokenize
    assert spec.module is None and spec.params is None
    assert not models.get("digits").identity


def test_heldout_is_deterministic(spec):
    x, y = spec.heldout()
    assert x.shape == (null.HELDOUT_COUNT, null.SIZE) and x.dtype == np.float32
    assert y.shape == (null.HELDOUT_COUNT,) and not y.any()
    assert np.isfinite(x).all() and len(np.unique(x[:, 0])) == len(x)
    null._heldout.cache_clear()
    assert spec.heldout()[0].tobytes() == x.tobytes()


def test_reference_is_the_input(spec):
    x, _ = spec.heldout()
    assert spec.reference(x).tobytes() == x.tobytes()
    one = spec.reference(x[3])
    assert one.shape == (null.SIZE,) and one.tobytes() == x[3].tobytes()
    assert spec.reference_result(x[3]).tobytes() == x[3].tobytes()
    assert spec.reference(x[:2].tolist()).dtype == np.float32


def test_description_is_a_valid_model(spec):
    """What ``spec.create`` asks the module for passes pyflaxdev's checks of it."""
    desc = ModelDesc(name="null", input=spec.input, output=spec.output, post=spec.post)
    desc.validate()
    assert desc.vec_elems == null.SIZE


@pytest.mark.parametrize(
    "change",
    [
        {"post": ("softmax",)},
        {"output": TensorSpec((32,), F32)},
        {"input": TensorSpec((64,), np.dtype(np.uint8))},
        {"tokenize": True},
    ],
)
def test_identity_spec_is_checked(spec, change):
    with pytest.raises(InvalidArgument, match="identity model 'null'"):
        replace(spec, **change)


def test_serving_defaults_choose_the_copy(spec):
    assert spec.serving_defaults({})["identity"] is True
    assert "identity" not in models.get("digits").serving_defaults({})


# -- CopyRunner ------------------------------------------------------------------------------


def test_copy_runner_gathers_rows_bit_exact():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=(10, 64), dtype=np.uint64).astype(np.uint32)
    bits[0, :3] = [0x7F800001, 0xFFC00001, 0x80000000]  # signalling and quiet NaN, -0
    inputs = bits.view(np.float32)
    runner = CopyRunner(TensorSpec((64,), F32), 64, (1, 4, 8))
    rows = np.array([7, 0, 3], dtype=np.intp)
    out = runner.run(inputs, rows)
    assert out.dtype == np.float32 and out.shape == (3, 64)
    assert out.view(np.uint32).tolist() == bits[rows].tolist()
    assert runner.sizes == (1, 4, 8) and runner.size_for(3) == 4
    with pytest.raises(ValueError, match="exceeds the largest size 8"):
        runner.run(inputs, np.arange(9, dtype=np.intp) % 10)
    assert runner.apply(inputs[:4]).view(np.uint32).tolist() == bits[:4].tolist()


def test_copy_runner_reads_bytes_as_float32():
    raw = np.arange(2 * 8, dtype=np.uint8).reshape(2, 8)
    out = CopyRunner(TensorSpec((8,), np.dtype(np.uint8)), 2, (2,)).run(raw, np.arange(2))
    assert out.shape == (2, 2) and out.tobytes() == raw.tobytes()


def test_copy_runner_checks_sizes():
    with pytest.raises(InvalidArgument, match="inputs of 256 bytes"):
        CopyRunner(TensorSpec((63,), F32), 64, (1,))
    with pytest.raises(InvalidArgument, match="batch sizes must be positive"):
        CopyRunner(TensorSpec((64,), F32), 64, ())
    seen = []
    CopyRunner(TensorSpec((64,), F32), 64, (1, 2)).warmup(lambda b, k, s: seen.append((b, k)))
    assert seen == [(1, None), (2, None)]


# -- flaxdev serve MODEL --create against a fake device ----------------------------------------

MODELS: dict[str, ModelInfo] = {}
SERVED: dict[str, SimpleNamespace] = {}


class FakeDevice:
    """What ``flaxdev serve`` uses of a Device: lookup, creation (pyflaxdev's checks)."""

    def __init__(self, path=None):
        self.path = "fake"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def model(self, name):
        if name not in MODELS:
            raise ModelNotFound(f"model {name!r} not found (ENOENT)")
        return SimpleNamespace(info=MODELS[name], name=name)

    def create_model(self, name, *args, **kwargs):
        from pyflaxdev.device import Device

        return Device.create_model(self, name, *args, **kwargs)  # builds the ModelDesc

    def create(self, desc, *, labels=None, exist_ok=False, validate=True):
        desc.validate()
        check_labels(tuple(labels or ()), desc.vec_elems, model=desc.name)
        cdesc, keep = desc.to_desc()
        cdesc.id = len(MODELS) + 1
        cdesc.nslots = cdesc.nslots or 64
        MODELS[desc.name] = ModelInfo.from_desc(cdesc)
        del keep
        return self.model(desc.name)


class FakeWorker:
    """A worker fd: one FETCH hands out a batch of slots, the next finds the model gone."""

    def __init__(self, model, *, device=None):
        self.info = MODELS[model]
        win = self.info.worker_input
        rng = np.random.default_rng(5)
        n = self.info.nslots
        if win.dtype == np.float32:
            inputs = rng.standard_normal((n, *win.shape), dtype=np.float32)
        else:
            inputs = rng.integers(0, 17, size=(n, *win.shape)).astype(win.dtype)
        self.region = SimpleNamespace(
            inputs=inputs, outputs=np.zeros((n, self.info.output.size), np.float32)
        )
        self.slots = np.array([5, 1, 9], dtype=np.intp)
        self.completed = None
        self.index = 0
        SERVED[model] = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def attach(self):
        return self.region

    def fast_loop(self):
        return FakeLoop(self)


class FakeLoop:
    """The C loop's interface: one FETCH hands out the batch, the next finds the model gone."""

    def __init__(self, worker):
        self.worker = worker
        self.slots_all = np.zeros(worker.info.nslots, dtype=np.intp)
        self.pending = 0
        self.held = 0
        self.limit = worker.info.nslots
        self._tags = np.arange(len(worker.slots), dtype=np.uint32) + 100
        self._sent = None

    def fetch(self, max_jobs, max_wait_us, timeout_ms, *, nowait):
        w = self.worker
        if self._sent is None:
            n = len(w.slots)
            assert n <= max_jobs and not nowait
            self.slots_all[:n] = w.slots
            self._sent = self.held = n
            return n
        if not hasattr(self, "_completed"):  # the batch is in flight: nothing more is queued
            assert nowait
            return 0
        w.completed = self._completed
        self.pending = 0
        raise ModelGone("model destroyed (ENODEV)", errno.ENODEV)

    def complete(self, status, n):
        assert n == self.held == self._sent
        rows = np.zeros(n, dtype=COMPLETION_DTYPE)
        rows["slot"], rows["tag"], rows["status"] = self.slots_all[:n], self._tags, status
        self._completed = rows
        self.pending, self.held = n, 0

    def copy_inputs_to_outputs(self, n):
        region, slots = self.worker.region, self.slots_all[:n]
        region.outputs[slots] = region.inputs[slots].reshape(len(slots), -1).view(np.float32)

    def flush(self):
        raise AssertionError("not reached: the model is gone")

    def close(self):
        pass


@pytest.fixture
def fake_device(monkeypatch):
    import pyflaxdev.commands.serve as serve_cmd
    import pyflaxdev.worker as worker

    MODELS.clear()
    SERVED.clear()
    monkeypatch.setattr(serve_cmd, "Device", FakeDevice)
    monkeypatch.setattr(worker, "Worker", FakeWorker)


def serve_with_fakes(model, *extra):
    """Run ``flaxdev serve MODEL --create`` with the fakes; return the fake worker.

    The fake loop ends by reporting the model gone, so serve exits 1: a service
    manager restarts it (and ``--create`` recreates the model).
    """
    from pyflaxdev.cli import main

    assert main(["serve", model, "--create", *extra]) == 1
    return SERVED[model]


def check_completions(worker):
    assert worker.completed["slot"].tolist() == worker.slots.tolist()
    assert worker.completed["tag"].tolist() == [100, 101, 102]
    assert not worker.completed["status"].any()


def test_serve_null_create_copies(fake_device, capsys):
    worker = serve_with_fakes("null")
    info = MODELS["null"]
    assert info.pre_op == "none" and info.post == () and info.input.dtype == np.float32
    out = worker.region.outputs[worker.slots]
    assert out.tobytes() == worker.region.inputs[worker.slots].tobytes()
    assert not np.delete(worker.region.outputs, worker.slots, axis=0).any()
    check_completions(worker)
    err = capsys.readouterr().err
    assert "identity model: serving by copy" in err and "worker ready" in err
    assert "served 3 jobs in 1 batches (3×1), 0 failed" in err
    assert "model 'null' is gone" in err and "exiting with status 1" in err


def test_serve_digits_create_applies_the_model(fake_device, capsys):
    spec = models.get("digits")
    worker = serve_with_fakes("digits", "--batch-sizes", "1,4")
    info = MODELS["digits"]
    assert info.pre_op == "normalize" and info.post == ("softmax", "topk") and info.topk == 3
    # The worker sees normalised float32; compare with jit(apply) on the same rows.
    seen = worker.region.inputs[worker.slots]
    want = np.asarray(spec.module.apply(spec.params, seen))
    np.testing.assert_allclose(worker.region.outputs[worker.slots], want, rtol=1e-5, atol=1e-5)
    check_completions(worker)
    assert "compiling batch sizes [1, 4]" in capsys.readouterr().err


def test_null_needs_no_jax():
    """Serving null (the fake-device command, and the socket pipeline) never imports JAX."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        " import test_null_model as t, pyflaxdev.commands.serve as s, pyflaxdev.worker as w;"
        " s.Device = t.FakeDevice; w.Worker = t.FakeWorker;"
        " t.check_completions(t.serve_with_fakes('null'));"
        " from pyflaxdev import models; from pyflaxdev.pipeline import Pipeline;"
        " p = Pipeline(models.get('null'), (1, 8)); p.warmup();"
        " x = bytes(range(256)); assert p.infer(memoryview(x)).tobytes() == x;"
        " assert p.infer_batch([memoryview(x)] * 3).tobytes() == x * 3;"
        " print('jax' in sys.modules, 'flax' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"], out.stderr
