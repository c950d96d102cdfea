"""Stress with chaos: workers killed mid-batch and clients killed mid-request.

Worker processes (plain numpy on pyflaxdev.Worker: ``y = 2x + 1``, each job held
a little so that kills land mid-batch) are SIGKILLed and replaced while client
threads send requests with unique inputs.  Every request must end exactly once,
either with its own correct result or with EIO (its workers died too often) or
ETIMEDOUT; nothing is lost, duplicated or crossed, and the statistics add up.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import pyflaxdev
from pyflaxdev import sysfs

N_IN = 8
CLIENTS = 6
REQUESTS = 60

WORKER = """
import sys, time
from pyflaxdev.worker import Worker
from pyflaxdev.errors import FlaxError
with Worker(sys.argv[1]) as w:
    region = w.attach()
    done = []
    while True:
        try:
            b = w.fetch(done, max_jobs=min(4, w.info.nslots), timeout_ms=200)
        except FlaxError:
            break
        done = []
        for slot, tag in zip(b.slots, b.tags):
            region.outputs[slot] = region.inputs[slot] * 2 + 1
            done.append((int(slot), int(tag), 0))
        time.sleep(0.01 * len(done))
"""


def _dir(name: str) -> Path:
    return sysfs.sysfs_root() / "models" / name


def _num(name: str, attr: str) -> int:
    return int((_dir(name) / attr).read_text())


def _spawn(model: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WORKER, model])


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_workers_killed_mid_batch_nothing_lost(dev: pyflaxdev.Device) -> None:
    name = "chaos"
    dev.create_model(name, (N_IN,), np.float32, (N_IN,), post=(), nslots=16, timeout_ms=8000)
    workers = [_spawn(name), _spawn(name)]
    try:
        _wait(lambda: _num(name, "workers") == 2, 120, "workers attached")
        before = {k: _num(name, k) for k in ("requests", "completed", "errors", "timeouts")}
        outcomes: list[tuple[str, int, int]] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            with pyflaxdev.open() as d:
                m = d.model(name)
                for i in range(REQUESTS):
                    x = np.arange(N_IN, dtype=np.float32) + np.float32(n * 1000 + i)
                    try:
                        r = m.infer(x)
                        kind = "ok" if np.array_equal(r, x * 2 + 1) else "WRONG"
                        out = (kind, n, i)
                    except pyflaxdev.FlaxError as exc:
                        out = ("err", exc.errno or 0, i)
                    with lock:
                        outcomes.append(out)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        rng = random.Random(5)
        kills = 0
        while any(t.is_alive() for t in threads) and kills < 6:
            time.sleep(rng.uniform(0.3, 1.0))
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills += 1
            workers.append(_spawn(name))
        for t in threads:
            t.join(600)
        assert not any(t.is_alive() for t in threads)

        assert len(outcomes) == CLIENTS * REQUESTS
        wrong = [o for o in outcomes if o[0] == "WRONG"]
        assert not wrong, wrong[:5]
        errors = [o[1] for o in outcomes if o[0] == "err"]
        assert set(errors) <= {errno.EIO, errno.ETIMEDOUT}, sorted(set(errors))
        ok = sum(o[0] == "ok" for o in outcomes)
        print(f"chaos: {kills} workers killed; {ok} ok, {len(errors)} failed {sorted(set(errors))}")
        assert ok >= len(outcomes) // 2

        after = {k: _num(name, k) for k in before}
        delta = {k: after[k] - before[k] for k in after}
        assert delta["requests"] == CLIENTS * REQUESTS, delta
        assert delta["completed"] == ok, delta
        assert delta["requests"] == delta["completed"] + delta["errors"] + delta["timeouts"]
        _wait(lambda: _num(name, "queued") == 0, 10, "queue empty")
        _wait(lambda: _num(name, "in_flight") == 0, 10, "nothing in flight")
    finally:
        for w in workers:
            w.kill()
            w.wait()
        dev.destroy_model(name)


CLIENT = """
import sys, numpy as np, pyflaxdev
with pyflaxdev.open() as d:
    d.model(sys.argv[1]).infer(np.zeros(8, np.float32))
"""


def test_client_killed_mid_request_frees_its_slot(dev: pyflaxdev.Device) -> None:
    """A client SIGKILLed while its job waits: the job leaves the queue, the slot comes back."""
    name = "victim"
    dev.create_model(name, (N_IN,), np.float32, (N_IN,), post=(), nslots=1, timeout_ms=60000)
    try:
        proc = subprocess.Popen([sys.executable, "-c", CLIENT, name])
        _wait(lambda: _num(name, "queued") == 1, 120, "client's job queued")
        errors = _num(name, "errors")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait(lambda: _num(name, "queued") == 0, 5, "job left the queue")
        assert _num(name, "errors") == errors + 1
        # The one slot is free again: a new client is served by a new worker.
        worker = _spawn(name)
        try:
            _wait(lambda: _num(name, "workers") == 1, 120, "worker attached")
            x = np.arange(N_IN, dtype=np.float32)
            np.testing.assert_array_equal(dev.model(name).infer(x), x * 2 + 1)
        finally:
            worker.kill()
            worker.wait()
    finally:
        dev.destroy_model(name)
