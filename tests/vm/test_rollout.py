"""A new version under load (issue 19): no failed request, no mixed answers.

A repository entry served by ``flaxdev serve DIR/NAME``; 16 closed-loop client
threads (each on its own open node) run for at least 20 s while version 2 is
saved and ``flaxdev reload`` switches to it.  Every answer must be version 1's
or version 2's in-process output for its input (``apply`` on the saved
parameters), no request may fail, and no request that started after the
serving process reported version 2 (its run state, written once version 1's
worker is gone) may get a version-1 answer.  Then a version 3 whose output
shape the live model cannot take is refused with the reason, and version 2
keeps serving.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import WorkerProcess

import pyflaxdev
from pyflaxdev import repository, runstate, sysfs

CLIENTS = 16
MIN_RUN_S = 20.0
MODEL_PY = """
import flax.linen as nn


class Mlp(nn.Module):
    out: int = 3

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.out)(nn.tanh(nn.Dense(16)(x)))


def make():
    return Mlp()


def make4():
    return Mlp(out=4)
"""
CONFIG = """
module = "model.py:{factory}"
[input]
shape = [4]
[output]
shape = [{out}]
[serving]
batch_sizes = [1, 4, 16]
"""


def _module(d: Path) -> Any:
    spec = importlib.util.spec_from_file_location("_rollout_model", d / "model.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _entry(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any]:
    """A repository entry ``name`` with version 1; run states under ``tmp_path``."""
    monkeypatch.setenv("FLAXDEV_RUN_DIR", str(tmp_path / "run"))
    entry = tmp_path / "repo" / name
    entry.mkdir(parents=True)
    (entry / "model.py").write_text(MODEL_PY)
    (entry / "config.toml").write_text(CONFIG.format(factory="make", out=3))
    mod = _module(entry)
    repository.save_version(entry, 1, mod.Mlp().init(jax.random.PRNGKey(1), jnp.zeros((1, 4))))
    return entry, mod


def _flaxdev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyflaxdev", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _state(model: str) -> runstate.RunState:
    """The run state, once written: the workers attach (what wait_ready sees) before it is."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return runstate.read(model)
        except pyflaxdev.ModelNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_version_two_under_load(
    tmp_path: Path, cleanup: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cleanup.append("roll")
    entry, mod = _entry(tmp_path, "roll", monkeypatch)
    v1 = mod.Mlp().init(jax.random.PRNGKey(1), jnp.zeros((1, 4)))  # as _entry saved it
    v2 = mod.Mlp().init(jax.random.PRNGKey(2), jnp.zeros((1, 4)))
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    want = {1: np.asarray(mod.Mlp().apply(v1, x)), 2: np.asarray(mod.Mlp().apply(v2, x))}
    assert not np.allclose(want[1], want[2], atol=1e-3)

    worker = WorkerProcess(str(entry), "--create", "--watch-s", "0", name="roll")
    try:
        worker.wait_ready()
        assert _state("roll").version == 1
        answers: list[tuple[int, float, np.ndarray[Any, Any]]] = []
        failures: list[BaseException] = []
        lock = threading.Lock()
        done = threading.Event()

        def client(seed: int) -> None:
            rng = np.random.default_rng(seed)
            with pyflaxdev.open_model("roll") as model:
                while not done.is_set():
                    i = int(rng.integers(len(x)))
                    t0 = time.time()
                    try:
                        y = model.infer(x[i])
                    except BaseException as exc:
                        with lock:
                            failures.append(exc)
                        continue
                    with lock:
                        answers.append((i, t0, y))

        threads = [threading.Thread(target=client, args=(s,)) for s in range(CLIENTS)]
        start = time.time()
        for t in threads:
            t.start()
        time.sleep(3.0)
        repository.save_version(entry, 2, v2)
        r = _flaxdev("reload", "roll")
        assert r.returncode == 0, r.stderr + worker.log.read_text()
        state = runstate.read("roll")
        assert state.version == 2 and "replaced version 1" in state.message, state
        ready = state.since
        m = _flaxdev("metrics")
        assert 'flaxdev_model_version{model="roll"} 2' in m.stdout, m.stdout[-2000:]
        assert 'flaxdev_worker_jobs_total{model="roll",version="2"}' in m.stdout, m.stdout
        # Run at least MIN_RUN_S in all and 5 s on version 2.
        time.sleep(max(MIN_RUN_S - (time.time() - start), ready + 5.0 - time.time(), 0.0))
        done.set()
        for t in threads:
            t.join(60)
        elapsed = time.time() - start
        _refused_version_three(entry, mod)
    finally:
        returncode = worker.stop()
    log = worker.log.read_text()
    assert returncode == 0, log

    assert not failures, f"{len(failures)} failed: {failures[:3]}"
    assert elapsed >= MIN_RUN_S
    seen = {1: 0, 2: 0}
    late_v1 = 0
    for i, t0, y in answers:
        version = next(
            (v for v in (1, 2) if np.allclose(y, want[v][i], rtol=1e-6, atol=1e-6)), None
        )
        assert version is not None, (i, y, want[1][i], want[2][i])
        seen[version] += 1
        late_v1 += version == 1 and t0 > ready
    print(f"{len(answers)} answers in {elapsed:.1f} s: {seen}; v2 ready at +{ready - start:.1f} s")
    assert late_v1 == 0, f"{late_v1} version-1 answers to requests after version 2 was ready"
    assert seen[1] > 0 and seen[2] > 0, seen
    assert "version 2 serving, version 1 stopped" in log, log
    with pytest.raises(pyflaxdev.ModelNotFound):
        runstate.read("roll")  # the state goes with the worker


def _refused_version_three(entry: Path, mod: Any) -> None:
    """Version 3 gives 4 values, the live model 3: refused with the reason, 2 serves on."""
    (entry / "config.toml").write_text(CONFIG.format(factory="make4", out=4))
    wider = mod.Mlp(out=4).init(jax.random.PRNGKey(3), jnp.zeros((1, 4)))
    repository.save_version(entry, 3, wider)
    r = _flaxdev("reload", "roll")
    assert r.returncode == 1, r.stderr
    assert "version 3 cannot replace it: output float32 [4]" in r.stderr, r.stderr
    assert runstate.read("roll").version == 2
    v = _flaxdev("version", "roll")
    assert v.returncode == 0 and "version 2" in v.stdout and "cannot replace" in v.stdout, v
    with pyflaxdev.open_model("roll") as model:
        assert model.infer(np.zeros(4, np.float32)).shape == (3,)
    assert int((sysfs.model_dir("roll") / "workers").read_text()) == 1
