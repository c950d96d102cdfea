"""``flaxdev serve MODEL``: run a worker for a shipped model until SIGINT/SIGTERM.

MODEL is a shipped model's name or a model repository's directory (``DIR/NAME``
holding a ``config.toml`` and numbered versions, see :mod:`pyflaxdev.repository`):
a Linen or NNX module of your own, served as a shipped one is.  With
``--create``, ``--owner``, ``--group`` and ``--mode`` give the model's node
(``/dev/flax/<name>``) its owner, group and mode (default: yours, 0600).

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
request, so a FETCH is never interrupted half-way.  ``--workers N`` (or a
repository entry's ``[serving] workers``) runs N such threads, each attached
as its own worker of the model and fetching its own batches (one compile
each); if one ends, all stop, so that a supervisor restarts the whole.

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
import grp
import pwd
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from pyflaxdev import repository
from pyflaxdev.accel import configure_allocator
from pyflaxdev.commands._common import (
    LOG_TIME,
    check_positive,
    doc,
    int_list,
    progress,
    run_until_signal,
    zoo_spec,
)
from pyflaxdev.device import Device, default_path
from pyflaxdev.errors import InvalidArgument, ModelNotFound
from pyflaxdev.labels import decode_labels
from pyflaxdev.repository import CONFIG, MAX_WORKERS
from pyflaxdev.rollout import Rollout
from pyflaxdev.runner import DEFAULT_BATCH_SIZES
from pyflaxdev.spec import ModelInfo
from pyflaxdev.uapi import lib
from pyflaxdev.worker import WorkerStats, serve

if TYPE_CHECKING:
    from pyflaxdev.models import ModelSpec

READY_MARK = "worker ready"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``serve``."""
    p = sub.add_parser(
        "serve", help="serve a shipped or repository model (worker)", description=doc(__doc__)
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help="shipped model (e.g. digits), or a model repository's directory (DIR/NAME, with"
        " its config.toml: see pyflaxdev.repository)",
    )
    p.add_argument(
        "--repo",
        metavar="DIR",
        type=Path,
        help="serve every model of repository DIR, one worker process each (instead of MODEL;"
        " --create, --watch-s and --log-time go to each)",
    )
    p.add_argument("--name", help="device model name (default: the model's)")
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
        "--owner",
        type=user_id,
        metavar="USER",
        help="with --create: the model's owner, a name or uid (default: you); another"
        " user takes CAP_CHOWN",
    )
    p.add_argument(
        "--group",
        type=group_id,
        metavar="GROUP",
        help="with --create: the group of the model's node, a name or gid (default: your"
        " group); one you are not in takes CAP_CHOWN",
    )
    p.add_argument(
        "--mode",
        type=node_mode,
        default=0,
        metavar="MODE",
        help="with --create: the octal mode of /dev/flax/<name> (default 0600: the owner"
        " only; 0660 lets the group run it)",
    )
    p.add_argument(
        "--watch-s",
        type=float,
        default=5.0,
        metavar="S",
        help="a repository entry: look for a new version every S seconds and switch to it"
        " without downtime (0: only on SIGHUP or flaxdev reload; default 5)",
    )
    p.add_argument(
        "--wait-device-s",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the control node to appear (the module being loaded)"
        " before giving up (default 0: do not wait)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker threads attached to the model, each fetching its own batches"
        f" (default: a repository entry's [serving] workers, else 1; at most {MAX_WORKERS})",
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


def wait_for_device(path: str | None, seconds: float) -> None:
    """Wait up to ``seconds`` for the control node (``path`` or the default) to exist."""
    node = Path(path or default_path())
    deadline = time.monotonic() + seconds
    if not node.exists() and seconds > 0:
        progress(f"waiting up to {seconds:g} s for {node} (is flaxdev.ko loading?)")
    while not node.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def user_id(text: str) -> int:
    """``--owner``: a user name or a numeric uid."""
    return _ident(text, lambda n: pwd.getpwnam(n).pw_uid, "user")


def group_id(text: str) -> int:
    """``--group``: a group name or a numeric gid."""
    return _ident(text, lambda n: grp.getgrnam(n).gr_gid, "group")


def _ident(text: str, lookup: Callable[[str], int], what: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return lookup(text)
    except KeyError:
        raise argparse.ArgumentTypeError(f"no {what} {text!r}") from None


def node_args(args: argparse.Namespace, spec: ModelSpec) -> dict[str, Any]:
    """``owner``, ``group`` and ``mode`` for creating ``spec``: the options, else a
    repository entry's ``[node]``."""
    node = spec.metadata.get("node", {})
    return {
        "owner": args.owner if args.owner is not None else node.get("owner"),
        "group": args.group if args.group is not None else node.get("group"),
        "mode": args.mode or node.get("mode", 0),
    }


def node_mode(text: str) -> int:
    """``--mode``: octal permission bits, at most 0777."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"mode {text} is past 0777")
    return mode


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
            **node_args(args, spec),
        )
        info = model.info
        progress(
            f"created model {name!r} (id {info.id}, {info.nslots} slots, max_batch"
            f" {info.max_batch}, max_queue_delay_us {info.max_queue_delay_us},"
            f" worker_post {info.worker_post}; node uid {info.owner_uid} gid"
            f" {info.owner_gid} mode {info.node_mode:04o})"
        )
    else:
        if labels is not None:
            model.set_labels(labels)
        if args.max_batch or args.max_queue_delay_us or args.max_queue:
            progress(
                f"model {name!r} exists: --max-batch, --max-queue-delay-us and --max-queue"
                " apply only with --create (write them in sysfs instead)"
            )
        if args.owner is not None or args.group is not None or args.mode:
            progress(
                f"model {name!r} exists: --owner, --group and --mode apply only with"
                " --create (chmod or chgrp its node to change who may open it)"
            )
    if labels is not None:
        progress(f"model {name!r}: {len(labels)} labels from {args.labels}")
    return model.info


def run_repository(args: argparse.Namespace) -> int:
    """``--repo DIR``: one ``flaxdev serve DIR/NAME`` child per entry, supervised here.

    SIGHUP goes to every child (each reloads its entry), SIGINT and SIGTERM stop
    them; the exit status is the worst of theirs.
    """
    entries = repository.entries(args.repo)
    if not entries:
        raise ModelNotFound(f"model repository {args.repo} has no entry (a DIR/NAME/{CONFIG})")
    common = [sys.executable, "-m", "pyflaxdev"]
    if args.device:
        common += ["--device", args.device]
    if LOG_TIME["on"]:
        common.append("--log-time")
    children = {}
    for entry in entries:
        cmd = [*common, "serve", str(entry), "--watch-s", str(args.watch_s)]
        cmd += ["--create"] if args.create else []
        children[entry.name] = subprocess.Popen(cmd)
        progress(f"repository {args.repo}: serving {entry.name} (pid {children[entry.name].pid})")

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    previous = {
        s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        codes = {name: child.wait() for name, child in children.items()}
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for name, code in codes.items():
        if code:
            progress(f"repository {args.repo}: {name} exited with status {code}", "ERROR")
    return max(codes.values(), default=0)


def run(args: argparse.Namespace) -> int:
    """Serve until a signal or the model's destruction."""
    if args.repo is not None:
        if args.model is not None:
            raise InvalidArgument("give MODEL or --repo DIR, not both")
        return run_repository(args)
    if args.model is None:
        raise InvalidArgument("give a MODEL to serve, or --repo DIR")
    configure_allocator()  # before anything starts a JAX backend
    spec = zoo_spec(args.model).at_length(args.max_len)
    name = args.name or spec.name
    sizes = batch_sizes(args.batch_sizes or spec.batch_sizes or DEFAULT_BATCH_SIZES, args.max_batch)
    buckets = None if args.no_buckets else (args.buckets or spec.buckets)
    workers = args.workers or spec.metadata.get("workers", 1)
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidArgument(
            f"--workers must be from 1 to {MAX_WORKERS} (half the kernel's"
            f" {lib.FLAX_MAX_WORKERS}, leaving room for a reload), not {workers}"
        )
    if "repository" in spec.metadata:
        repository.check_module(spec)  # before anything is created
    wait_for_device(args.device, args.wait_device_s)
    with Device(args.device) as dev:
        info = prepare(dev, args, spec, name)
        if info.pre_op == "tokenize":
            spec = spec.at_length(info.input.shape[-1])
        if info.input != spec.input or info.output != spec.output:
            raise InvalidArgument(
                f"device model {name!r} is {info.input} -> {info.output}, but"
                f" {spec.name!r} is {spec.input} -> {spec.output}"
            )
    at = f", length buckets {list(buckets)} up to {spec.input.shape[-1]}" if buckets else ""
    if spec.identity:
        progress(f"{spec.name!r} is the identity model: serving by copy, nothing to compile")
    else:
        progress(f"loading {spec.name!r} and compiling batch sizes {list(sizes)}{at}")
    unready = [workers]  # the first version's workers still to attach
    lock = threading.Lock()

    def ready() -> None:
        # The ready line once, when the first version's last worker has attached.
        with lock:
            unready[0] -= 1
            if unready[0] != 0:
                return
        cap = "none" if args.max_wait_us is None else f"{args.max_wait_us} µs"
        many = f", {workers} workers" if workers > 1 else ""
        progress(
            f"{READY_MARK}: model {name!r}{many}, batch sizes {list(sizes)},"
            f" max_queue_delay_us {info.max_queue_delay_us}, worker wait cap {cap}"
        )

    def start(
        s: ModelSpec, stop: threading.Event, attached: Callable[[], None], stats: WorkerStats
    ) -> WorkerStats:
        if "version" in s.metadata:
            progress(f"model {name!r}: version {s.metadata['version']} compiling")

        def on_ready() -> None:
            ready()
            attached()

        return serve(
            s.module,
            s.params,
            model=name,
            device=args.device,
            batch_sizes=sizes,
            buckets=buckets,
            max_wait_us=args.max_wait_us,
            fetch_timeout_ms=args.fetch_timeout_ms,
            stop=stop,
            ready=on_ready,
            stats=stats,
            identity=s.identity,
            jax_device=args.jax_device,
            devices=args.devices,
            pipeline_depth=args.pipeline_depth,
        )

    entry = spec.metadata.get("repository")

    def set_labels(s: ModelSpec) -> None:
        if args.labels is None and s.labels:
            with Device(args.device) as dev:
                dev.set_labels(name, s.labels)

    rollout = Rollout(
        name,
        info,
        start,
        (lambda: repository.load(entry)) if entry else None,
        progress,
        watch_s=args.watch_s if entry else 0.0,
        latest=(lambda: repository.latest_version(entry)) if entry else None,
        apply_labels=set_labels,
        workers=workers,
    )
    run_until_signal(
        lambda: rollout.run(spec), rollout.request_stop, "flaxdev-rollout", rollout.request_reload
    )
    if not rollout.stopping:
        # Not a signal: the model was destroyed under the worker.
        progress(
            f"model {name!r} is gone (destroyed, or the module unloaded): exiting with status 1,"
            " so that a service manager restarts the worker (and --create recreates the model)",
            "ERROR",
        )
    for version, stats in rollout.served:
        sizes_seen = ", ".join(f"{b}×{n}" for b, n in sorted(stats.batch_sizes.items()))
        which = f"version {version}: " if entry else ""
        progress(
            f"{which}served {stats.jobs} jobs in {stats.batches} batches"
            f" ({sizes_seen or 'none'}), {stats.failed_jobs} failed"
        )
    return 0 if rollout.stopping else 1
