"""`flaxdev metrics`, `flaxdev status --ready` and `flaxdev --version` against the loaded module.

After traffic on the served digits model, every counter and histogram of the
exposition (parsed with prometheus_client) equals what sysfs holds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import pyflaxdev
from pyflaxdev import models, sysfs

pytestmark = pytest.mark.usefixtures("digits_worker")


def _flaxdev(*args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "pyflaxdev", *args], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_metrics_equal_sysfs_after_traffic(digits_spec: models.ModelSpec) -> None:
    x, _ = digits_spec.heldout()
    with pyflaxdev.open() as dev:
        model = dev.model("digits")
        for img in x[:40]:
            model.infer(np.asarray(img))
    text = _flaxdev("metrics")
    stats = sysfs.read_status("digits").stats  # no request in between
    got = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("model") == "digits"
    }
    assert stats.requests is not None and stats.requests >= 40
    for name, value in {
        "requests_total": stats.requests,
        "completed_total": stats.completed,
        "errors_total": stats.errors,
        "timeouts_total": stats.timeouts,
        "batches_total": stats.batches,
        "batched_jobs_total": stats.batched,
    }.items():
        assert got[(f"flaxdev_{name}", None)] == value, name
    assert stats.pre_ns is not None and stats.total_ns is not None
    assert got[("flaxdev_pre_seconds_total", None)] == pytest.approx(stats.pre_ns / 1e9)
    assert stats.latency_hist is not None
    assert got[("flaxdev_request_duration_seconds_count", None)] == sum(stats.latency_hist)
    assert got[("flaxdev_request_duration_seconds_count", None)] == stats.completed
    assert got[("flaxdev_request_duration_seconds_sum", None)] == pytest.approx(
        stats.total_ns / 1e9
    )
    assert got[("flaxdev_workers", None)] == 1


def test_version_names_the_loaded_module() -> None:
    loaded = Path("/sys/module/flaxdev/version").read_text().strip()
    assert _flaxdev("--version").strip().endswith(f"; flaxdev.ko {loaded}")


def test_ready_only_with_a_running_worker() -> None:
    assert _flaxdev("status", "--ready", "digits") == ""
    r = subprocess.run(
        [sys.executable, "-m", "pyflaxdev", "status", "--ready", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1 and "model 'nope' does not exist" in r.stderr, r
