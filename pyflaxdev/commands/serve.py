"""``flaxdev serve MODEL``: run a worker for a shipped model until SIGINT/SIGTERM.

With ``--create`` the device model is created from the shipped description if
it does not exist, with the shipped labels (digits: zero to nine) or those of
``--labels FILE`` (one per line; also uploaded to an existing model) and the
queueing settings ``--max-batch``, ``--max-queue-delay-us`` and
``--max-queue`` (an existing model keeps its own: change them in sysfs).  The
worker takes up to its largest batch size per FETCH and lets the model's
``max_queue_delay_us`` decide how long to wait for a batch to fill
(``--max-wait-us`` caps that wait for this worker only).  It compiles its
batch sizes, attaches, prints a line containing :data:`READY_MARK` to stderr
and serves.  The loop runs in a
thread that blocks signals; the main thread turns SIGINT/SIGTERM into a stop
request, so a FETCH is never interrupted half-way.

A text model (``minilm``) is served at the length of the device model (a
shipped text model adapts to it), or with ``--create`` at ``--max-len``
(default: the shipped length); each batch runs at the shortest of
``--buckets`` that holds its texts (default: the shipped model's; see
pyflaxdev.buckets), ``--no-buckets`` always at full length.

``null`` (the identity model) is served by a copy of each input to its
output: no JAX, nothing to compile; it measures the transport itself.

Accelerators: ``--jax-device cpu|cuda:0|gpu:1|tpu:0`` pins the model (its
parameters and computation) to one JAX device; ``--devices all`` shards each
batch over every local device of that platform (a ``jax.sharding.Mesh``, the
parameters replicated).  The worker sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false``
unless the environment sets XLA's allocator already, so several workers share
a GPU.  ``--worker-post`` (with ``--create``) chooses where a leading
``mean_pool`` runs: ``1`` in the worker, fused into the jitted function (the
output slot holds [D], not [L, D]), ``0`` in the kernel; ``auto`` (default)
is 1 for a chain that starts with ``mean_pool`` (minilm), because the pool
costs the device almost nothing and the output copied back and through the
slots shrinks L-fold on any backend.  Clients see the same results.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pyflaxdev.accel import configure_allocator
from pyflaxdev.commands._common import (
    check_positive,
    doc,
    int_list,
    progress,
    run_until_signal,
    zoo_spec,
)
from pyflaxdev.device import Device
from pyflaxdev.errors import InvalidArgument, ModelNotFound
from pyflaxdev.labels import decode_labels
from pyflaxdev.runner import DEFAULT_BATCH_SIZES
from pyflaxdev.spec import ModelInfo
from pyflaxdev.worker import WorkerStats, serve

if TYPE_CHECKING:
    from pyflaxdev.models import ModelSpec

READY_MARK = "worker ready"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``serve``."""
    p = sub.add_parser("serve", help="serve a shipped model (worker)", description=doc(__doc__))
    p.add_argument("model", metavar="MODEL", help="shipped model (e.g. digits)")
    p.add_argument("--name", help="device model name (default: MODEL)")
    p.add_argument("--create", action="store_true", help="create the device model if missing")
    p.add_argument("--nslots", type=int, default=64, help="slots, with --create (default 64)")
    p.add_argument(
        "--timeout-ms",
        type=int,
        default=0,
        help="request timeout, with --create (default: the module's)",
    )
    p.add_argument(
        "--batch-sizes",
        type=int_list,
        default=None,
        metavar="B1,B2,...",
        help="compiled batch sizes (default: the shipped model's, else 1,2,4,...,64)",
    )
    p.add_argument(
        "--buckets",
        type=int_list,
        default=None,
        metavar="K1,K2,...",
        help="text models: sequence lengths a batch may run at (default: the shipped model's)",
    )
    p.add_argument(
        "--no-buckets", action="store_true", help="text models: always run at full length"
    )
    p.add_argument(
        "--max-len",
        type=int,
        default=None,
        metavar="L",
        help="text models, with --create: tokens per text (default: the shipped model's)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        metavar="N",
        help="the model's max_batch, with --create; also the largest compiled batch size"
        " (drops larger sizes, adds N)",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=0,
        metavar="US",
        help="the model's max_queue_delay_us, with --create: how long FETCH waits for a"
        " batch to fill once a job is queued (default 0, at most 10000000)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=0,
        metavar="N",
        help="the model's max_queue, with --create (default: nslots)",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="FILE",
        help="class labels, one per line (default with --create: the shipped model's)",
    )
    p.add_argument(
        "--max-wait-us",
        type=int,
        default=None,
        metavar="US",
        help="this worker's cap on the batching wait (default: none, the model's"
        " max_queue_delay_us governs)",
    )
    p.add_argument(
        "--fetch-timeout-ms",
        type=int,
        default=200,
        metavar="MS",
        help="FETCH timeout, i.e. how often stop is checked (default 200)",
    )
    p.add_argument(
        "--jax-device",
        default=None,
        metavar="DEV",
        help="JAX device of the model: cpu, cuda:0, gpu:1, tpu:0 ... (default: JAX's default)",
    )
    p.add_argument(
        "--devices",
        choices=("all",),
        default=None,
        help="shard each batch over all local devices (of --jax-device's platform)",
    )
    p.add_argument(
        "--worker-post",
        choices=("auto", "0", "1"),
        default="auto",
        help="with --create: 1 runs a leading mean_pool in the worker, 0 in the kernel"
        " (default auto: 1 when the chain starts with mean_pool)",
    )
    p.add_argument(
        "--pipeline-depth",
        type=int,
        choices=(1, 2),
        default=2,
        help="batches in flight on the device (default 2: the next one is gathered and"
        " dispatched while the current one computes)",
    )
    p.set_defaults(run=run)


def worker_post(choice: str, post: tuple[str, ...]) -> int:
    """``--worker-post`` for a chain: ``auto`` pools in the worker whenever the chain
    starts with ``mean_pool``."""
    if choice == "auto":
        return 1 if post[:1] == ("mean_pool",) else 0
    return int(choice)


def batch_sizes(sizes: tuple[int, ...], max_batch: int | None) -> tuple[int, ...]:
    """Apply ``--max-batch`` to the batch sizes."""
    if max_batch is None:
        return sizes
    check_positive(max_batch, "--max-batch")
    return (*(b for b in sorted(set(sizes)) if b < max_batch), max_batch)


def read_labels(path: Path) -> tuple[str, ...]:
    """Labels from a file, one per line (blank lines at the end ignored)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read labels from {path}: {exc.strerror}") from None
    return decode_labels(data.rstrip(b"\n") + b"\n" if data.strip() else b"")


def prepare(dev: Device, args: argparse.Namespace, spec: ModelSpec, name: str) -> ModelInfo:
    """Find (or with ``--create`` create) the device model; upload ``--labels``."""
    labels = read_labels(args.labels) if args.labels is not None else None
    try:
        model = dev.model(name)
    except ModelNotFound:
        if not args.create:
            raise ModelNotFound(
                f"model {name!r} not found (ENOENT); use --create to create it"
            ) from None
        model = spec.create(
            dev,
            name=name,
            nslots=args.nslots,
            timeout_ms=args.timeout_ms,
            max_batch=args.max_batch or 0,
            max_queue_delay_us=args.max_queue_delay_us,
            max_queue=args.max_queue,
            labels=labels,
            exist_ok=True,
            worker_post=worker_post(args.worker_post, spec.post),
        )
        info = model.info
        progress(
            f"created model {name!r} (id {info.id}, {info.nslots} slots, max_batch"
            f" {info.max_batch}, max_queue_delay_us {info.max_queue_delay_us},"
            f" worker_post {info.worker_post})"
        )
    else:
        if labels is not None:
            model.set_labels(labels)
        if args.max_batch or args.max_queue_delay_us or args.max_queue:
            progress(
                f"model {name!r} exists: --max-batch, --max-queue-delay-us and --max-queue"
                " apply only with --create (write them in sysfs instead)"
            )
    if labels is not None:
        progress(f"model {name!r}: {len(labels)} labels from {args.labels}")
    return model.info


def run(args: argparse.Namespace) -> int:
    """Serve until a signal or the model's destruction."""
    configure_allocator()  # before anything starts a JAX backend
    spec = zoo_spec(args.model).at_length(args.max_len)
    name = args.name or spec.name
    sizes = batch_sizes(args.batch_sizes or spec.batch_sizes or DEFAULT_BATCH_SIZES, args.max_batch)
    buckets = None if args.no_buckets else (args.buckets or spec.buckets)
    with Device(args.device) as dev:
        info = prepare(dev, args, spec, name)
        if info.pre_op == "tokenize":
            spec = spec.at_length(info.input.shape[-1])
        if info.input != spec.input or info.output != spec.output:
            raise InvalidArgument(
                f"device model {name!r} is {info.input} -> {info.output}, but shipped"
                f" {spec.name!r} is {spec.input} -> {spec.output}"
            )
    at = f", length buckets {list(buckets)} up to {spec.input.shape[-1]}" if buckets else ""
    if spec.identity:
        progress(f"{spec.name!r} is the identity model: serving by copy, nothing to compile")
    else:
        progress(f"loading {spec.name!r} and compiling batch sizes {list(sizes)}{at}")
    stop = threading.Event()
    stats = WorkerStats()

    def ready() -> None:
        cap = "none" if args.max_wait_us is None else f"{args.max_wait_us} µs"
        progress(
            f"{READY_MARK}: model {name!r}, batch sizes {list(sizes)},"
            f" max_queue_delay_us {info.max_queue_delay_us}, worker wait cap {cap}"
        )

    def work() -> None:
        serve(
            spec.module,
            spec.params,
            model=name,
            device=args.device,
            batch_sizes=sizes,
            buckets=buckets,
            max_wait_us=args.max_wait_us,
            fetch_timeout_ms=args.fetch_timeout_ms,
            stop=stop,
            ready=ready,
            stats=stats,
            identity=spec.identity,
            jax_device=args.jax_device,
            devices=args.devices,
            pipeline_depth=args.pipeline_depth,
        )

    run_until_signal(work, stop.set, "flaxdev-worker")
    sizes_seen = ", ".join(f"{b}×{n}" for b, n in sorted(stats.batch_sizes.items()))
    progress(
        f"served {stats.jobs} jobs in {stats.batches} batches ({sizes_seen or 'none'}),"
        f" {stats.failed_jobs} failed"
    )
    return 0
