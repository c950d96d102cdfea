"""``flaxdev bench`` against the loaded module: the null model and a short sweep.

The null model's worker copies input to output (no JAX), so its results can
be checked bit for bit; the sweep runs the real CLI with the C load generator
over all three transports and checks every request of every point ended well,
the device points carry the module's statistics, and the plot is drawn.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import OUT, TOP

import pyflaxdev
from pyflaxdev import models, sysfs


def test_null_model_echoes_through_the_device() -> None:
    spec = models.get("null")
    x, _ = spec.heldout()
    with pyflaxdev.open() as dev:
        model = spec.create(dev, name="nulle")
        try:
            with spec.serving(model="nulle", batch_sizes=(1, 8)):
                for row in x[:64]:
                    out = np.asarray(model.infer(row))
                    assert out.dtype == np.float32
                    assert out.tobytes() == np.asarray(row, np.float32).tobytes()
        finally:
            dev.destroy_model("nulle")


def test_bench_sweep_over_three_transports() -> None:
    subprocess.run(["make", "-s", "-C", str(TOP / "examples")], check=True)
    plot = OUT / "bench-null.png"
    cmd = [sys.executable, "-m", "pyflaxdev", "bench", "bnull", "--spec", "null", "--serve"]
    cmd += ["--clients", "1,4", "--requests", "150", "--max-batch", "8", "--json"]
    cmd += ["--plot", str(plot)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    finally:
        if (sysfs.sysfs_root() / "models" / "bnull").exists():
            with pyflaxdev.open() as dev:
                dev.destroy_model("bnull")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    points = out["points"]
    assert [(p["transport"], p["clients"]) for p in points] == [
        (t, c) for t in ("device", "socket", "socket-batch") for c in (1, 4)
    ]
    for p in points:
        r = p["result"]
        assert r["ok"] == r["requests"] == 150 * p["clients"], p
        assert r["errors"] == {} and r["load"] == "c"
        assert r["latency"]["n"] == r["ok"]
    for p in points[:2]:
        assert p["max_batch"] == 8 and 1.0 <= p["mean_batch"] <= min(8, p["clients"])
        assert all(p["split_us"][k] is not None for k in ("queue", "compute", "total"))
    assert points[0]["mean_batch"] == 1.0  # one client: one request per FETCH
    ratios = {r["clients"]: r for r in out["ratios"]}
    assert set(ratios) == {1, 4}
    assert all(r["throughput_vs_socket"] > 0 for r in ratios.values())
    assert out["parameters"]["transports"] == ["device", "socket", "socket-batch"]
    assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
