"""``flaxdev bench MODEL``: throughput and latency through /dev/flax, next to its alternatives.

For every point of a sweep (transports × batching settings × clients, plus
open-loop rates), N clients (the C load generator ``flax_load``, or Python threads
with ``--load python``), each with its own fd or socket, send the shipped
model's held-out inputs for ``--duration`` seconds: closed loop (one request
in flight per client) at each ``--clients`` count, then for each ``--rate``
open loop with the largest count (Poisson arrivals at that total rate,
latency counted from each request's scheduled time).

Transports (``--transports``, all by default for a shipped model):
device (/dev/flax and its worker; ``max_batch`` and ``delay`` go to the
model's sysfs settings, and its statistics give the mean formed batch and
the time split), socket (a Unix-socket server applying each request alone)
and socket-batch (the same server batching requests itself with the same
``max_batch`` and delay).  Then the in-process baseline: ``jit(apply)`` at
several batch sizes in this process (``--pipeline``: preprocessing and
postprocessing included; always for text models).

The report is a table with units in every heading, the ratios of the device
to each alternative, and warnings that say how to fix a noisy or too-short
run; ``--json`` prints all of it as JSON, ``--plot FILE.png`` draws
throughput vs clients and p99 vs throughput.  ``--serve`` starts the
device worker (``flaxdev serve MODEL --create``) for the run; otherwise one
must be serving MODEL.  Socket servers are always started by the bench.
A text model can be run at another length (``--max-len``) and length buckets
(``--buckets``), by the worker and the baseline alike.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from pyflaxdev.bench import TRANSPORTS, SuiteConfig, run_suite
from pyflaxdev.bench.report import format_report, ratios, warnings
from pyflaxdev.commands._common import doc, int_list, progress, zoo_spec
from pyflaxdev.errors import InvalidArgument


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _rate_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates like 100,500, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive rates, got {text!r}")
    return values


def _delay_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected delays like 0,500, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected delays >= 0, got {text!r}")
    return values


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench``."""
    p = sub.add_parser("bench", help="measure throughput and latency", description=doc(__doc__))
    p.add_argument("model", metavar="MODEL", help="device model name")
    p.add_argument("--spec", metavar="NAME", help="shipped model for inputs (default: MODEL)")
    p.add_argument(
        "--transports",
        type=_str_list,
        default=None,
        metavar="T,...",
        help=f"of {','.join(TRANSPORTS)} (default: all for a shipped model, else device)",
    )
    p.add_argument("--clients", type=int_list, default=(1,), metavar="N,...", help="(1)")
    p.add_argument(
        "--rate", type=_rate_list, default=None, metavar="R,...", help="open loop, req/s in total"
    )
    p.add_argument("--max-batch", type=int_list, default=(64,), metavar="B,...", help="(64)")
    p.add_argument("--delay-us", type=_delay_list, default=(0,), metavar="US,...", help="(0)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, default=None, metavar="S", help="per point (10)")
    length.add_argument("--requests", type=int, default=None, metavar="M", help="per client")
    p.add_argument("--warmup", type=int, default=5, help="untimed requests per client (5)")
    p.add_argument("--load", choices=("c", "python"), default="c", help="load generator (c)")
    p.add_argument("--timeout-ms", type=int, default=0, help="request timeout (model's)")
    p.add_argument(
        "--baseline-batches",
        type=int_list,
        default=(1, 8, 64),
        metavar="B,...",
        help="in-process batch sizes (1,8,64)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the in-process baseline")
    p.add_argument("--pipeline", action="store_true", help="baseline includes pre/postprocessing")
    p.add_argument("--serve", action="store_true", help="start the device worker for the run")
    p.add_argument("--serve-args", default="", metavar="ARGS", help="more worker arguments")
    p.add_argument(
        "--max-len",
        type=int,
        default=None,
        metavar="L",
        help="text model at L tokens (worker and baseline; with --serve, device only)",
    )
    p.add_argument(
        "--buckets",
        type=int_list,
        default=None,
        metavar="K,...",
        help="text model's length buckets (default: the shipped model's)",
    )
    p.add_argument(
        "--batch-sizes",
        type=int_list,
        default=None,
        metavar="B,...",
        help="compiled by the worker and the socket servers (default: the shipped model's,"
        " else 1,2,4,... up to --max-batch)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--plot", metavar="FILE.png", help="draw the run (needs matplotlib)")
    p.add_argument("--save", metavar="PREFIX", help="also write PREFIX.json and PREFIX.txt")
    p.add_argument("--verbose", action="store_true", help="echo the servers' output")
    p.set_defaults(run=run)


def config_from(args: argparse.Namespace) -> SuiteConfig:
    """The run's configuration from the command line."""
    spec = zoo_spec(args.spec or args.model, required=bool(args.spec) or args.serve)
    transports = args.transports or (TRANSPORTS if spec is not None else ("device",))
    duration = None if args.requests is not None else (args.duration or 10.0)
    return SuiteConfig(
        model=args.model,
        spec_name=spec.name if spec is not None else None,
        transports=tuple(transports),
        clients=tuple(args.clients),
        rates=tuple(args.rate or ()),
        max_batches=tuple(args.max_batch),
        delays_us=tuple(args.delay_us),
        duration_s=duration,
        requests=args.requests,
        warmup=args.warmup,
        load=args.load,
        device=args.device,
        serve=args.serve,
        serve_args=tuple(args.serve_args.split()),
        batch_sizes=args.batch_sizes,
        baseline=not args.no_baseline,
        baseline_batches=tuple(args.baseline_batches),
        pipeline=args.pipeline,
        timeout_ms=args.timeout_ms,
        verbose=args.verbose,
        max_len=args.max_len,
        buckets=tuple(args.buckets) if args.buckets is not None else None,
    )


def _host() -> dict[str, Any]:
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run(args: argparse.Namespace) -> int:
    """Run the sweep, print the report, draw the plot."""
    config = config_from(args)
    if args.plot:  # before a run of minutes, not after it
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise InvalidArgument(
                "--plot needs matplotlib: pip install 'pyflaxdev[bench]' (or drop --plot)"
            )
    result = run_suite(config, progress)
    if args.plot:
        from pyflaxdev.bench.plot import plot

        plot(result, args.plot)
        progress(f"plot written to {args.plot}")
    report = format_report(result)
    out = result.as_dict()
    out["host"] = _host()
    out["ratios"] = ratios(result)
    out["warnings"] = warnings(result)
    if args.save:
        Path(args.save + ".json").write_text(json.dumps(out, indent=1) + "\n")
        Path(args.save + ".txt").write_text(report + "\n")
        progress(f"results written to {args.save}.json and {args.save}.txt")
    if args.json:
        json.dump(out, sys.stdout)
        print()
    else:
        print(report)
    return 0 if not any(p.result.errors for p in result.points) else 1
