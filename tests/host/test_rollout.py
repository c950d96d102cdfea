"""pyflaxdev.rollout's worker threads, with a recording ``start`` in place of serve().

What is checked here is the order of events the rollout promises (every worker
of a version attached before it is reported, the new version's workers all
attached before the old ones stop, one worker's end stopping its siblings);
that the device answers through those workers is tests/vm's (test_rollout.py,
test_repository.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pyflaxdev import repository, runstate
from pyflaxdev.errors import InvalidArgument, ModelNotFound
from pyflaxdev.models.spec import ModelSpec
from pyflaxdev.rollout import Rollout
from pyflaxdev.spec import ModelInfo, TensorSpec
from pyflaxdev.worker import WorkerStats


def _spec(version: int) -> ModelSpec:
    return ModelSpec(
        name="m",
        input=TensorSpec.of((4,), "f4"),
        output=TensorSpec.of((3,), "f4"),
        normalize=None,
        post=(),
        topk=0,
        labels=(),
        make_module=lambda: None,
        load_params=lambda: None,
        load_heldout=lambda: None,
        metadata={"version": version, "versions": [version]},
    )


INFO = ModelInfo(
    id=1,
    name="m",
    input=TensorSpec.of((4,), "f4"),
    output=TensorSpec.of((3,), "f4"),
    pre_op="none",
    norm_count=0,
    norm_scale=1.0,
    post=(),
    topk=0,
    nslots=8,
    timeout_ms=1000,
    result_size=12,
)


class Recorder:
    """``start`` for Rollout: each call is a worker that attaches, counts, and ends."""

    def __init__(self, fail: tuple[int, int] | None = None) -> None:
        self.events: list[tuple[str, int, int]] = []
        self.lock = threading.Lock()
        self.fail = fail  # (version, call): that worker raises once attached
        self.calls = 0

    def log(self, what: str, version: int, n: int) -> None:
        with self.lock:
            self.events.append((what, version, n))

    def __call__(
        self, spec: ModelSpec, stop: threading.Event, attached: Any, stats: WorkerStats
    ) -> WorkerStats:
        version = int(spec.metadata["version"])
        with self.lock:
            n = self.calls
            self.calls += 1
        time.sleep(0.05 * (n % 3))  # they attach in some order, not all at once
        self.log("attached", version, n)
        attached()
        if self.fail == (version, n):
            raise RuntimeError(f"worker {n} broke")
        while not stop.wait(0.01):
            stats.jobs += 1
            stats.batches += 1
            stats.batch_sizes[1] += 1
        self.log("stopped", version, n)
        return stats

    def of(self, what: str, version: int) -> list[int]:
        return [i for i, (w, v, _) in enumerate(self.events) if w == what and v == version]


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLAXDEV_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    return tmp_path


def _run(rollout: Rollout, spec: ModelSpec) -> threading.Thread:
    def body() -> None:
        try:
            rollout.run(spec)
        except RuntimeError as exc:
            errors.append(exc)

    errors: list[BaseException] = []
    t = threading.Thread(target=body)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t


def _wait(cond: Any, what: str) -> None:
    """Until ``cond()`` holds; a run state not yet written counts as not yet."""
    deadline = time.monotonic() + 10
    while True:
        try:
            if cond():
                return
        except ModelNotFound:  # the workers attach before the state is written
            pass
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_every_worker_attaches_before_the_version_is_reported(run_dir: Path) -> None:
    rec = Recorder()
    rollout = Rollout("m", INFO, rec, None, lambda _: None, workers=3)
    t = _run(rollout, _spec(1))
    _wait(lambda: (run_dir / "m.json").exists(), "no run state")
    assert len(rec.of("attached", 1)) == 3 and rec.calls == 3
    time.sleep(2.5)  # one publish period: the run state sums the three workers
    jobs = runstate.read("m").worker["jobs"]
    rollout.request_stop()
    t.join(10)
    assert not t.is_alive() and not t.errors  # type: ignore[attr-defined]
    assert len(rec.of("stopped", 1)) == 3
    [(version, stats)] = rollout.served
    assert version == 1 and stats.jobs >= jobs > 0 and stats.jobs == stats.batches
    assert stats.batch_sizes[1] == stats.jobs
    assert not (run_dir / "m.json").exists()


def test_one_worker_ending_stops_the_others_and_is_raised() -> None:
    rec = Recorder(fail=(1, 1))
    rollout = Rollout("m", INFO, rec, None, lambda _: None, workers=3)
    t = _run(rollout, _spec(1))
    t.join(10)
    assert not t.is_alive()
    [err] = t.errors  # type: ignore[attr-defined]
    assert str(err) == "worker 1 broke"
    assert sorted(n for w, _, n in rec.events if w == "stopped") == [0, 2]


def test_a_reload_attaches_all_new_workers_before_stopping_any_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(repository, "check_module", lambda spec: None)
    rec = Recorder()
    said: list[str] = []
    rollout = Rollout("m", INFO, rec, lambda: _spec(2), said.append, workers=2)
    t = _run(rollout, _spec(1))
    _wait(lambda: len(rec.of("attached", 1)) == 2, "version 1 not attached")
    _wait(lambda: runstate.read("m").ready, "version 1 not reported")
    rollout.request_reload()
    _wait(lambda: runstate.read("m").version == 2, "version 2 not reported")
    new_attached = rec.of("attached", 2)
    old_stopped = rec.of("stopped", 1)
    assert len(new_attached) == 2 and len(old_stopped) == 2
    assert max(new_attached) < min(old_stopped)
    rollout.request_stop()
    t.join(10)
    assert not t.is_alive() and not t.errors  # type: ignore[attr-defined]
    assert [v for v, _ in rollout.served] == [1, 2]
    assert "reload: version 2 serving, version 1 stopped" in said


def test_workers_in_a_repository_config(tmp_path: Path) -> None:
    d = tmp_path / "m"
    (d / "1").mkdir(parents=True)
    (d / "1" / "params.msgpack").write_bytes(b"\x80")
    (d / "model.py").write_text("def make():\n    return None\n")
    base = 'module = "model.py:make"\n[input]\nshape = [4]\n[output]\nshape = [3]\n'
    (d / "config.toml").write_text(base)
    assert repository.load(d).metadata["workers"] == 1
    (d / "config.toml").write_text(base + "[serving]\nworkers = 4\n")
    assert repository.load(d).metadata["workers"] == 4
    for value in ("0", "5", '"2"', "true"):
        (d / "config.toml").write_text(base + f"[serving]\nworkers = {value}\n")
        with pytest.raises(
            InvalidArgument, match=r"serving\.workers must be an integer from 1 to 4"
        ):
            repository.load(d)
