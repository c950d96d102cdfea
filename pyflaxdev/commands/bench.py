"""``flaxdev bench MODEL``: client throughput and latency through the device.

N client threads, each with its own fd, send M synchronous requests each
(held-out inputs of the shipped model, else random inputs of the model's
shape).  Reports throughput, latency mean ± σ, min … max and p50/p90/p99/p99.9,
then the in-process baselines (``jit(apply)`` at batch 1 and at the best
batch) and the ratios to them.  A worker must be serving MODEL, or pass
``--serve`` to start ``flaxdev serve MODEL --create`` for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import numpy as np

from pyflaxdev import bench
from pyflaxdev.commands._common import check_positive, doc, int_list, progress, zoo_spec
from pyflaxdev.commands.serve import READY_MARK
from pyflaxdev.device import Device
from pyflaxdev.errors import FlaxError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench``."""
    p = sub.add_parser("bench", help="measure throughput and latency", description=doc(__doc__))
    p.add_argument("model", metavar="MODEL", help="device model name")
    p.add_argument("--clients", type=int, default=1, metavar="N", help="client threads (1)")
    p.add_argument(
        "--requests", type=int, default=1000, metavar="M", help="requests per client (1000)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed requests per client (5)")
    p.add_argument("--timeout-ms", type=int, default=0, help="request timeout (model's)")
    p.add_argument("--spec", metavar="NAME", help="shipped model for inputs (default: MODEL)")
    p.add_argument(
        "--baseline-batches",
        type=int_list,
        default=(1, 8, 64),
        metavar="B,...",
        help="in-process batch sizes (1,8,64)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the in-process baselines")
    p.add_argument(
        "--serve",
        action="store_true",
        help="start a worker (flaxdev serve MODEL --create) for the run",
    )
    p.add_argument(
        "--serve-args",
        default="",
        metavar="ARGS",
        help="extra arguments for the worker, e.g. '--batch-sizes 1,8'",
    )
    p.add_argument("--json", action="store_true", help="print JSON (with every sample)")
    p.set_defaults(run=run)


class _Worker:
    """A ``flaxdev serve`` child process, its stderr forwarded to ours."""

    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, "-m", "pyflaxdev"]
        if args.device:
            cmd += ["--device", args.device]
        cmd += [
            "serve",
            args.spec or args.model,
            "--name",
            args.model,
            "--create",
            *args.serve_args.split(),
        ]
        progress("starting worker: " + " ".join(cmd[2:]))
        self.ready = threading.Event()
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._forward, daemon=True)
        self._reader.start()

    def _forward(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            sys.stderr.write("  [worker] " + line)
            if READY_MARK in line:
                self.ready.set()
        self.ready.set()  # EOF: the worker is gone

    def wait_ready(self) -> None:
        self.ready.wait()
        if self.proc.poll() is not None:
            raise FlaxError(f"worker exited with status {self.proc.returncode} before ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


def _inputs(args: argparse.Namespace, spec: Any) -> np.ndarray[Any, Any]:
    if spec is not None:
        x, _ = spec.heldout()
        return np.asarray(x)
    with Device(args.device) as dev:
        info = dev.describe(args.model)
    rng = np.random.default_rng(0)
    shape = (256, *info.input.shape)
    if info.input.dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(np.float32)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the report."""
    check_positive(args.clients, "--clients")
    check_positive(args.requests, "--requests")
    spec = zoo_spec(args.spec or args.model, required=bool(args.spec) or args.serve)
    inputs = _inputs(args, spec)
    worker = _Worker(args) if args.serve else None
    try:
        if worker is not None:
            worker.wait_ready()
        progress(f"bench {args.model!r}: {args.clients} clients × {args.requests} requests")
        result = bench.run_clients(
            args.model,
            inputs,
            clients=args.clients,
            requests=args.requests,
            device=args.device,
            warmup=args.warmup,
            timeout_ms=args.timeout_ms,
            progress=lambda n: progress(f"client 0: {n}/{args.requests}"),
        )
    finally:
        if worker is not None:
            worker.stop()
    baseline = None
    if spec is not None and not args.no_baseline:
        progress(f"in-process jit(apply) baselines at batch sizes {list(args.baseline_batches)}")
        baseline = bench.inprocess(
            spec.module.apply,
            spec.params,
            spec.preprocess(inputs),
            batch_sizes=args.baseline_batches,
        )
    report(args, result, baseline)
    return 0 if not result.errors else 1


def _ratios(result: bench.ClientBench, base: bench.InProcessBench) -> dict[str, float]:
    return {
        "latency_p50_vs_inprocess_batch1": result.latency.p(50) / base.batch1.p(50),
        "throughput_vs_inprocess_best_batch": result.throughput_rps / base.best_throughput_rps,
    }


def report(
    args: argparse.Namespace, result: bench.ClientBench, base: bench.InProcessBench | None
) -> None:
    """Print the results: a text block, or JSON with the parameters and every sample."""
    if args.json:
        out: dict[str, Any] = {
            "parameters": {
                "model": args.model,
                "clients": args.clients,
                "requests_per_client": args.requests,
                "warmup": args.warmup,
                "device": args.device,
                "pid": os.getpid(),
            },
            "device": result.as_dict(),
            "inprocess": base.as_dict() if base else None,
            "ratios": _ratios(result, base) if base else None,
        }
        print(json.dumps(out))
        return
    lat = result.latency
    pct = "   ".join(f"{k} {v:10.1f}" for k, v in lat.percentiles_us.items())
    lines = [
        f"model {result.model!r}: {result.clients} clients × {result.requests_per_client}"
        f" requests, {result.ok} ok, errors: {result.errors or 'none'}",
        f"  throughput (req/s)          {result.throughput_rps:12.1f}",
        f"  latency mean ± σ (µs)       {lat.mean_us:12.1f} ± {lat.std_us:.1f}",
        f"  latency min … max (µs)      {lat.min_us:12.1f} … {lat.max_us:.1f}",
        f"  latency percentiles (µs)    {pct}",
    ]
    if base is not None:
        r = _ratios(result, base)
        lines += [
            f"  in-process batch 1 p50 (µs/call)        {base.batch1.p(50):10.1f}",
            f"  in-process best batch {base.best_batch:<3d} (µs/sample)  "
            f"{base.best_us_per_sample:10.2f}",
            f"  ratio latency p50 device / in-process batch 1      "
            f"{r['latency_p50_vs_inprocess_batch1']:8.2f}",
            f"  ratio throughput device / in-process best batch   "
            f"{r['throughput_vs_inprocess_best_batch']:8.3f}",
        ]
    if lat.n and lat.std_us > lat.mean_us:
        lines.append("  warning: σ exceeds the mean; use more --requests or a quieter machine")
    print("\n".join(lines))
