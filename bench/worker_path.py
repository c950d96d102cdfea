#!/usr/bin/env python3
"""Benchmark of the WORKER's data path, no kernel needed (see pyflaxdev.workpath).

Runs pyflaxdev's real serving loop, runner, slot gather/scatter (over a
region laid out as flaxdev.ko lays one out) and host<->device copies, fed
in process, and prints its throughput next to in-process jit(apply) at the
same batch size.  It measures the worker, not the device: the kernel, its
system calls and the clients are left out (``flaxdev bench`` measures those
in the VM).  Defaults: MiniLM at L 128, b 256, pooled on the device, and
digits at b 1024, the shapes of issue 20.

    python bench/worker_path.py [--seconds S] [--cases minilm:128:256,digits:0:1024]
        [--depth 1,2] [--worker-post auto|0|1] [--jax-device cpu|cuda:0] [--devices all]
        [--rounds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
from pathlib import Path

from pyflaxdev.accel import configure_allocator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--cases",
        default="minilm:128:256,digits:0:1024",
        help="MODEL:LENGTH:BATCH,... (LENGTH 0 for a tensor model)",
    )
    p.add_argument("--seconds", type=float, default=2.0, help="least seconds per side")
    p.add_argument("--min-batches", type=int, default=3, help="least batches per side")
    p.add_argument("--depth", default="2", help="worker pipeline depths, e.g. 1,2")
    p.add_argument("--worker-post", choices=("auto", "0", "1"), default="auto")
    p.add_argument("--jax-device", default=None)
    p.add_argument("--devices", choices=("all",), default=None, help="shard the worker's batches")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds, best counts")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    configure_allocator()

    import jax

    from pyflaxdev import models
    from pyflaxdev.workpath import bench_worker_path, format_result

    now = datetime.datetime.now(datetime.UTC)
    print(
        f"worker-path benchmark (the worker alone, no kernel): {now:%Y-%m-%d %H:%M} UTC,"
        f" {platform.node()}, JAX {jax.__version__}, devices {jax.devices()}",
        flush=True,
    )
    results = []
    for case in args.cases.split(","):
        name, length, batch = case.split(":")
        spec = models.get(name)
        if int(length):
            spec = spec.at_length(int(length))
        for depth in (int(d) for d in args.depth.split(",")):
            wp = None if args.worker_post == "auto" else int(args.worker_post)
            r = bench_worker_path(
                spec,
                int(batch),
                seconds=args.seconds,
                min_batches=args.min_batches,
                worker_post=wp,
                depth=depth,
                jax_device=args.jax_device,
                rounds=args.rounds,
                devices=args.devices,
            )
            print(format_result(r), flush=True)
            results.append({**dataclasses.asdict(r), "ratio": r.ratio})
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
