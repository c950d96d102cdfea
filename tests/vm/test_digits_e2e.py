"""``digits`` end to end through /dev/flax: C and Python clients vs in-process ``apply``."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from topk_check import check_topk, softmax

import pyflaxdev
from pyflaxdev import TopK

pytestmark = pytest.mark.usefixtures("digits_worker")

TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("FLAX_OUT", "/tmp"))


def test_python_client_heldout(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    x, y = heldout
    probs = softmax(digits_logits)
    with pyflaxdev.open() as dev:
        model = dev.model("digits")
        results = [model.infer(img) for img in x]
    assert all(isinstance(r, TopK) and len(r) == model.info.topk for r in results)
    for r, p in zip(results, probs, strict=True):
        check_topk(r.indices, r.scores, p)
    device_top1 = np.array([r.top for r in results])
    in_process_top1 = digits_logits.argmax(axis=1)
    np.testing.assert_array_equal(device_top1, in_process_top1)
    device_acc = float(np.mean(device_top1 == y))
    in_process_acc = float(np.mean(in_process_top1 == y))
    print(f"python client: accuracy {device_acc:.4f}, in-process {in_process_acc:.4f}")
    assert device_acc == in_process_acc
    assert device_acc >= 0.95


def test_c_client_heldout(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    x, y = heldout
    probs = softmax(digits_logits)
    text = "".join(" ".join(str(int(v)) for v in img.ravel()) + "\n" for img in x)
    (OUT / "digits_heldout.txt").write_text(text)
    proc = subprocess.run(
        [str(TOP / "examples" / "digits_client")],
        input=text,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(x)
    top1 = []
    for line, p in zip(lines, probs, strict=True):
        fields = line.split("\t")
        assert len(fields) == 6, line
        idx = np.array([int(f) for f in fields[0::2]])
        prob = np.array([float(f) for f in fields[1::2]])
        check_topk(idx, prob, p)
        top1.append(idx[0])
    np.testing.assert_array_equal(top1, digits_logits.argmax(axis=1))
    acc = float(np.mean(np.array(top1) == y))
    print(f"C client: accuracy {acc:.4f}")
    assert acc == float(np.mean(digits_logits.argmax(axis=1) == y))


def test_concurrent_clients_get_their_own_results(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    """8 clients x 50 requests, each on its own fd, each result checked against its input."""
    x, _ = heldout
    probs = softmax(digits_logits)
    rng = np.random.default_rng(8)
    plans = [rng.integers(0, len(x), size=50) for _ in range(8)]
    failures: list[str] = []
    done = [0] * 8

    def client(n: int) -> None:
        try:
            with pyflaxdev.open() as dev:
                model = dev.model("digits")
                for i in plans[n]:
                    r = model.infer(x[i])
                    assert isinstance(r, TopK)
                    check_topk(r.indices, r.scores, probs[i])
                    done[n] += 1
        except BaseException as exc:  # collected and reported below
            failures.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not failures, failures
    assert done == [50] * 8


def test_counters_add_up(digits_worker: object) -> None:
    """The sysfs counters of digits agree with one another after the runs above."""
    from pyflaxdev import sysfs

    directory = sysfs.sysfs_root() / "models" / "digits"
    stats = sysfs.read_model(directory)
    before = int(stats["requests"] or 0)
    with pyflaxdev.open() as dev:
        model = dev.model("digits")
        for _ in range(5):
            model.infer(np.zeros((8, 8), np.uint8))
    stats = {k: v or "" for k, v in sysfs.read_model(directory).items()}
    assert int(stats["requests"]) == before + 5
    assert int(stats["requests"]) == int(stats["completed"]) + int(stats["errors"]) + int(
        stats["timeouts"]
    )
    assert int(stats["queued"]) == 0
