"""The serving stress run: 64 clients, 2 models × 2 workers, chaos, three times.

Each run serves ``sdigits`` (the digits MLP, JAX workers) and ``snull`` (the
identity model, copying workers) with two ``flaxdev serve`` processes each,
and loads them for :data:`SECONDS` with 64 clients at once:

- 32 C clients: four ``flax_load`` processes of 8 threads (two per model),
  each checking every result against the expected bytes of its own input
  (``-V``: the in-process pipeline's result, digits scores to 1e-5
  relative; null exactly);
- 16 Python threads with blocking ``infer`` and 16 ``asyncio`` tasks on
  ``AsyncClient``\\ s (half per model), checking every result against
  in-process ``apply`` + softmax (digits) or the input itself (null);

while a chaos thread SIGKILLs a random worker (and starts a new one) or a
random victim client (a ``flax_load`` or Python process of its own, killed
mid-request) every :data:`CHAOS_S` seconds.  Afterwards: every result that
came back was right for its own input, every failure has a documented errno
(``EIO``: a job's workers died more than ``max_retries`` times;
``ETIMEDOUT``), at least :data:`MIN_REQUESTS` requests were answered over
the three runs (and :data:`MIN_PER_RUN` in each), each
model's counters add up (requests = completed + errors + timeouts), nothing is
queued or in flight, and after the third run the kernel's slab caches and
vmalloc use have not grown since the second.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from conftest import OUT, TOP, WorkerProcess

import pyflaxdev
from pyflaxdev import models, sysfs
from pyflaxdev.pipeline import Pipeline

SECONDS = float(os.environ.get("FLAX_STRESS_SECONDS", "25"))
CHAOS_S = 1.5
#: Answered requests over the three runs, and in each run at least.
MIN_REQUESTS = 20000
MIN_PER_RUN = 1000
ALLOWED = {"EIO", "ETIMEDOUT"}
PROB_ATOL = 1e-6
MODELS = {"sdigits": "digits", "snull": "null"}
FLAX_LOAD = TOP / "examples" / "flax_load"

VICTIM = """
import sys, numpy as np, pyflaxdev
x = np.load(sys.argv[2])
with pyflaxdev.open() as dev:
    m = dev.model(sys.argv[1])
    i = 0
    while True:
        m.infer(x[i % len(x)])
        i += 1
"""


@dataclass
class Tally:
    """Outcomes of one run, by source."""

    ok: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, source: str, err: str | None = None, wrong: str | None = None) -> None:
        with self.lock:
            if wrong is not None:
                self.wrong.append(f"{source}: {wrong}")
            elif err is not None:
                self.errors[err] += 1
            else:
                self.ok[source] += 1


@dataclass
class Case:
    """One model's inputs and how to check a result for input ``i``."""

    name: str
    inputs: np.ndarray[Any, Any]
    expected: np.ndarray[Any, Any]  # result bytes per input, for flax_load -V
    check: Callable[[Any, int], str | None]


def _cases(tmp: Path) -> dict[str, Case]:
    out: dict[str, Case] = {}
    for name, zoo in MODELS.items():
        spec = models.get(zoo)
        x, _ = spec.heldout()
        x = np.ascontiguousarray(x, dtype=spec.input.dtype)
        pipe = Pipeline(spec, (8,))
        rows = [memoryview(r.tobytes()) for r in x]
        expected = np.concatenate([pipe.infer_batch(rows[i : i + 8]) for i in range(0, len(x), 8)])
        if zoo == "digits":
            logits = spec.reference(x).astype(np.float64)
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)

            def check(r: Any, i: int, probs: Any = probs) -> str | None:
                got = np.asarray(r.scores, np.float64)
                if not np.allclose(got, probs[i][r.indices], atol=PROB_ATOL):
                    return f"input {i}: {r.pairs()} vs {probs[i]}"
                top = int(np.argmax(probs[i]))
                if r.indices[0] != top and probs[i][r.indices[0]] < probs[i][top] - 2e-6:
                    return f"input {i}: top {r.indices[0]}, want {top}"
                return None

        else:

            def check(r: Any, i: int, x: Any = x) -> str | None:
                if np.asarray(r).tobytes() != x[i].tobytes():
                    return f"input {i}: echo differs"
                return None

        (tmp / f"{name}.in").write_bytes(x.tobytes())
        (tmp / f"{name}.exp").write_bytes(expected.tobytes())
        np.save(tmp / f"{name}.npy", x)
        out[name] = Case(name, x, expected, check)
    return out


def _worker(name: str) -> WorkerProcess:
    args = ["--name", name, "--batch-sizes", "64" if MODELS[name] == "digits" else "8,64"]
    return WorkerProcess(MODELS[name], *args)


def _flax_load(case: Case, tmp: Path, seconds: float, clients: int, seed: int) -> list[str]:
    return [
        str(FLAX_LOAD),
        "-m",
        case.name,
        "-i",
        str(tmp / f"{case.name}.in"),
        "-s",
        str(case.inputs[0].nbytes),
        "-c",
        str(clients),
        "-T",
        f"{seconds:g}",
        "-w",
        "1",
        "-S",
        str(seed),
        "-V",
        str(tmp / f"{case.name}.exp"),
        "-e",
        str(case.expected.shape[1]),
    ]


def _python_sync(case: Case, stop: threading.Event, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    with pyflaxdev.open() as dev:
        model = dev.model(case.name)
        while not stop.is_set():
            i = rng.randrange(len(case.inputs))
            try:
                r = model.infer(case.inputs[i])
            except pyflaxdev.FlaxError as exc:
                tally.add("python", err=errno.errorcode.get(exc.errno or 0, str(exc.errno)))
                continue
            tally.add("python", wrong=case.check(r, i))


def _python_async(cases: list[Case], stop: threading.Event, tally: Tally, tasks: int) -> None:
    async def one(client: pyflaxdev.AsyncClient, case: Case, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            i = rng.randrange(len(case.inputs))
            try:
                r = await client.infer(case.inputs[i])
            except pyflaxdev.FlaxError as exc:
                tally.add("async", err=errno.errorcode.get(exc.errno or 0, str(exc.errno)))
                continue
            tally.add("async", wrong=case.check(r, i))

    async def main() -> None:
        clients = [pyflaxdev.AsyncClient(c.name) for c in cases]
        try:
            await asyncio.gather(
                *(one(clients[t % 2], cases[t % 2], 1000 + t) for t in range(tasks))
            )
        finally:
            for c in clients:
                await c.aclose()

    asyncio.run(main())


def _wait_workers(name: str, ws: list[WorkerProcess]) -> None:
    deadline = time.monotonic() + 900
    while _num(name, "workers") < len(ws):
        for w in ws:
            assert w.proc.poll() is None, f"a worker of {name} died:\n{w.log.read_text()}"
        assert time.monotonic() < deadline, f"{name}: workers not attached in 900 s"
        time.sleep(0.2)


def _num(name: str, attr: str) -> int:
    return int((sysfs.sysfs_root() / "models" / name / attr).read_text())


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _usage() -> dict[str, int]:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("2\n")
    time.sleep(0.5)
    usage = {"VmallocUsed": 0}
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        name, active = line.split()[:2]
        if name.startswith("kmalloc-") or name == "kernfs_node_cache":
            usage[name] = int(active)
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("VmallocUsed:"):
            usage["VmallocUsed"] = int(line.split()[1])
    return usage


def _chaos(
    stop: threading.Event,
    workers: dict[str, list[WorkerProcess]],
    victims: list[subprocess.Popen[bytes]],
    respawn_victim: Callable[[], subprocess.Popen[bytes]],
    counts: Counter[str],
) -> None:
    rng = random.Random(7)
    while not stop.wait(rng.uniform(0.5 * CHAOS_S, 1.5 * CHAOS_S)):
        if rng.random() < 0.5:
            name = rng.choice(list(workers))
            if _num(name, "workers") < 2:
                continue  # keep one serving while a replacement starts
            w = workers[name].pop(rng.randrange(len(workers[name])))
            w.proc.send_signal(signal.SIGKILL)
            w.stop()
            workers[name].append(_worker(name))
            counts["workers killed"] += 1
        else:
            v = victims.pop(rng.randrange(len(victims)))
            v.send_signal(signal.SIGKILL)
            v.wait()
            victims.append(respawn_victim())
            counts["clients killed"] += 1


def _one_run(run: int, tmp: Path, cases: dict[str, Case]) -> dict[str, Any]:
    with pyflaxdev.open() as dev:
        for name, zoo in MODELS.items():
            models.get(zoo).create(dev, name=name, nslots=64, timeout_ms=10000)
    t0 = time.monotonic()
    workers = {name: [_worker(name), _worker(name)] for name in MODELS}
    victims: list[subprocess.Popen[bytes]] = []
    tally = Tally()
    counts: Counter[str] = Counter()
    stop = threading.Event()
    rng = random.Random(run)

    def respawn_victim() -> subprocess.Popen[bytes]:
        case = cases[rng.choice(list(cases))]
        if rng.random() < 0.5:
            cmd = _flax_load(case, tmp, 3600, 2, rng.randrange(1 << 30))
        else:
            cmd = [sys.executable, "-c", VICTIM, case.name, str(tmp / f"{case.name}.npy")]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        for name, ws in workers.items():
            _wait_workers(name, ws)
            sysfs.reset_stats(name)
        counts["workers up s"] = round(time.monotonic() - t0)
        before = _usage() if run else {}
        victims += [respawn_victim(), respawn_victim()]
        names = list(cases)
        c_procs = [
            subprocess.Popen(
                _flax_load(cases[names[k % 2]], tmp, SECONDS, 8, 100 * run + k),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(4)
        ]
        threads = [
            threading.Thread(target=_python_sync, args=(cases[names[k % 2]], stop, tally, k))
            for k in range(16)
        ]
        threads.append(
            threading.Thread(
                target=_python_async, args=([cases[n] for n in names], stop, tally, 16)
            )
        )
        chaos = threading.Thread(
            target=_chaos, args=(stop, workers, victims, respawn_victim, counts)
        )
        for t in [*threads, chaos]:
            t.start()
        c_out = [p.communicate(timeout=SECONDS + 600) for p in c_procs]
        stop.set()
        for t in [*threads, chaos]:
            t.join(600)
            assert not t.is_alive(), f"{t.name} did not finish"
        for p, (stdout, stderr) in zip(c_procs, c_out, strict=True):
            assert p.returncode == 0, f"flax_load status {p.returncode}: {stderr}"
            summary = json.loads(stdout.strip().splitlines()[-1])
            assert summary["verified"] and summary["mismatches"] == 0, summary
            tally.ok["c"] += summary["ok"]
            tally.errors.update(summary["errors"])
    finally:
        stop.set()
        for v in victims:
            v.send_signal(signal.SIGKILL)
            v.wait()
        for ws in workers.values():
            for w in ws:
                w.stop()

    assert not tally.wrong, tally.wrong[:5]
    assert set(tally.errors) <= ALLOWED, tally.errors
    for name in MODELS:
        _wait(lambda name=name: _num(name, "in_flight") == 0, 60, f"{name} idle")
        assert _num(name, "queued") == 0
        s = sysfs.read_status(name).stats
        assert s.requests == s.completed + s.errors + s.timeouts, s
    with pyflaxdev.open() as dev:
        for name in MODELS:
            dev.destroy_model(name)
    answered = sum(tally.ok.values())
    report = {
        "run": run,
        "answered": dict(tally.ok),
        "errors": dict(tally.errors),
        **counts,
        "run s": round(time.monotonic() - t0),
        "usage": _usage(),
        "usage_before": before,
    }
    print(f"stress run {run}: {report}")
    assert answered >= MIN_PER_RUN, report
    return report


def test_stress_three_runs_no_growth(tmp_path: Path) -> None:
    subprocess.run(["make", "-s", "-C", str(TOP / "examples")], check=True)
    cases = _cases(tmp_path)
    reports = [_one_run(run, tmp_path, cases) for run in range(3)]
    (OUT / "stress.json").write_text(json.dumps(reports, indent=1))
    second, third = reports[1]["usage"], reports[2]["usage"]
    growth = {k: third.get(k, 0) - v for k, v in second.items() if third.get(k, 0) != v}
    print(f"growth from run 2 to run 3: {growth}")
    answered = sum(sum(r["answered"].values()) for r in reports)
    print(f"answered over three runs: {answered}")
    assert answered >= MIN_REQUESTS, reports
    for r in reports:
        assert r.get("workers killed", 0) >= 1 and r.get("clients killed", 0) >= 1, r
    # As in the lifecycle test: these counts move by ~130 objects with no leak;
    # a leak per request (tens of thousands per run) or per model is far larger.
    assert growth.get("VmallocUsed", 0) < 64
    if os.environ.get("FLAX_KMEMLEAK") != "1":  # KASAN's quarantine keeps frees counted
        assert growth.get("kernfs_node_cache", 0) < 300
        assert all(v < 1000 for k, v in growth.items() if k.startswith("kmalloc-")), growth
