"""A bench run: every (transport, batching setting, clients, rate) point, then the baseline.

Transports, all serving the same model with the same inputs and clients:

- ``device``: ``/dev/flax`` with its worker (``flaxdev serve``); the batching
  settings go to the model's sysfs ``max_batch`` and ``max_queue_delay_us``
  and its statistics give the mean formed batch and the time split;
- ``socket``: a Unix-socket server applying each request on its own;
- ``socket-batch``: the same server batching requests itself (Triton-style
  ``max_batch`` / ``delay_us``), restarted for each batching setting.

Only one server runs at a time.  The in-process baseline runs last, in this
process, with every server stopped.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pyflaxdev import reference, sysfs
from pyflaxdev.bench.cload import LoadSpec, run_c
from pyflaxdev.bench.inprocess import InProcessBench, apply_fn, inprocess
from pyflaxdev.bench.pyload import run_python
from pyflaxdev.bench.result import LoadResult
from pyflaxdev.bench.servers import ChildServer, serve_command, sockserve_command
from pyflaxdev.device import Device
from pyflaxdev.errors import InvalidArgument
from pyflaxdev.spec import Normalization

if TYPE_CHECKING:
    from pyflaxdev.models import ModelSpec

__all__ = ["TRANSPORTS", "Point", "SuiteConfig", "SuiteResult", "run_suite"]

TRANSPORTS = ("device", "socket", "socket-batch")
Say = Callable[[str], None]


@dataclass(frozen=True)
class SuiteConfig:
    """Everything a run depends on (all of it goes into the JSON)."""

    model: str
    spec_name: str | None = None
    transports: tuple[str, ...] = TRANSPORTS
    clients: tuple[int, ...] = (1,)
    rates: tuple[float, ...] = ()  # open loop, each with the most clients
    max_batches: tuple[int, ...] = (64,)
    delays_us: tuple[int, ...] = (0,)
    duration_s: float | None = 10.0
    requests: int | None = None
    warmup: int = 5
    load: str = "c"
    device: str | None = None
    serve: bool = False
    serve_args: tuple[str, ...] = ()
    #: What the worker and the socket servers compile (None: the shipped
    #: model's sizes, else powers of two up to the largest max_batch).
    batch_sizes: tuple[int, ...] | None = None
    baseline: bool = True
    baseline_batches: tuple[int, ...] = (1, 8, 64)
    pipeline: bool = False
    timeout_ms: int = 0
    verbose: bool = False
    #: A text model at another sequence length, and its length buckets
    #: (None: the shipped ones), for the worker and the baseline alike.
    max_len: int | None = None
    buckets: tuple[int, ...] | None = None

    def check(self) -> None:
        """Raise InvalidArgument on a setting that cannot work, saying which."""
        bad = [t for t in self.transports if t not in TRANSPORTS]
        if bad:
            raise InvalidArgument(f"unknown transport(s) {bad}; known: {', '.join(TRANSPORTS)}")
        if self.load not in ("c", "python"):
            raise InvalidArgument(f"--load must be c or python, got {self.load!r}")
        if (self.duration_s is None) == (self.requests is None):
            raise InvalidArgument("give exactly one of a duration and a request count")
        if any(c < 1 for c in self.clients) or any(b < 1 for b in self.max_batches):
            raise InvalidArgument("client counts and batch sizes must be positive")
        if any(d < 0 for d in self.delays_us) or any(r <= 0 for r in self.rates):
            raise InvalidArgument("delays must be >= 0 and rates > 0")
        needs_spec = self.serve or any(t != "device" for t in self.transports)
        if needs_spec and self.spec_name is None:
            raise InvalidArgument(
                "serving a worker or a socket server needs a shipped model (--spec NAME)"
            )
        if self.max_len is not None or self.buckets is not None:
            if not self.serve or set(self.transports) != {"device"}:
                raise InvalidArgument(
                    "--max-len and --buckets need --serve and --transports device"
                    " (the bench starts its socket servers at the shipped length)"
                )
            if self.buckets is not None and min(self.buckets, default=0) < 1:
                raise InvalidArgument(f"bucket lengths must be positive, got {list(self.buckets)}")

    def model_spec(self) -> ModelSpec | None:
        """The shipped model the run uses, at :attr:`max_len` with :attr:`buckets`."""
        from pyflaxdev import models

        if self.spec_name is None:
            return None
        spec = models.get(self.spec_name)
        if self.max_len is None and self.buckets is None:
            return spec
        if not spec.tokenize:
            raise InvalidArgument(f"{spec.name!r} is not a text model: it has no --max-len")
        spec = spec.at_length(self.max_len)
        if self.buckets is not None:
            spec = dataclasses.replace(spec, buckets=self.buckets)
        return spec

    def worker_args(self) -> tuple[str, ...]:
        """``flaxdev serve`` arguments: :attr:`serve_args`, then length and buckets."""
        args = list(self.serve_args)
        if self.max_len is not None:
            args += ["--max-len", str(self.max_len)]
        if self.buckets is not None:
            args += ["--buckets", ",".join(str(k) for k in self.buckets)]
        return tuple(args)


@dataclass
class Point:
    """One measured point of the sweep."""

    transport: str
    clients: int
    max_batch: int | None
    delay_us: int | None
    result: LoadResult
    mean_batch: float | None = None
    #: Per request, µs: queue, pre, compute, post, total (device, from sysfs).
    split_us: dict[str, float | None] | None = None

    @property
    def offered_rps(self) -> float | None:
        """The open-loop rate, None for closed loop."""
        return self.result.offered_rps

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        out = asdict(self)
        out["result"] = self.result.as_dict()
        return out


@dataclass
class SuiteResult:
    """A whole run."""

    config: SuiteConfig
    points: list[Point] = field(default_factory=list)
    inprocess: InProcessBench | None = None
    startup_s: dict[str, float] = field(default_factory=dict)
    #: numpy's normalisation of one input, µs (models the kernel normalises):
    #: what the device's sysfs ``pre`` per request compares with.
    numpy_pre_us: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: parameters, points, baseline."""
        return {
            "parameters": asdict(self.config),
            "points": [p.as_dict() for p in self.points],
            "inprocess": self.inprocess.as_dict() if self.inprocess else None,
            "startup_s": self.startup_s,
            "numpy_pre_us": self.numpy_pre_us,
        }


def _inputs(config: SuiteConfig, spec: ModelSpec | None) -> npt.NDArray[Any] | list[bytes]:
    """The held-out inputs of the shipped model, else random ones of the model's shape."""
    if spec is not None:
        x, _ = spec.heldout()
        if spec.tokenize:
            return [str(t).encode() for t in x]
        return np.ascontiguousarray(np.asarray(x, dtype=spec.input.dtype))
    with Device(config.device) as dev:
        info = dev.describe(config.model)
    if info.pre_op == "tokenize":
        raise InvalidArgument(f"{config.model!r} is a text model: name its inputs with --spec")
    rng = np.random.default_rng(0)
    shape = (256, *info.input.shape)
    if np.issubdtype(info.input.dtype, np.integer):
        lim = np.iinfo(info.input.dtype)
        return rng.integers(max(lim.min, 0), min(lim.max, 255) + 1, size=shape).astype(
            info.input.dtype
        )
    return rng.standard_normal(shape).astype(info.input.dtype)


def _pow2_upto(n: int) -> list[int]:
    sizes = [1]
    while sizes[-1] < n:
        sizes.append(min(sizes[-1] * 2, n))
    return sizes


class _Bar:
    """A progress bar on stderr for one point (a line per point when not a terminal)."""

    def __init__(self, label: str, duration_s: float | None) -> None:
        self.label, self.duration = label, duration_s
        self.tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, daemon=True)

    def __enter__(self) -> _Bar:
        if self.tty:
            self._thread.start()
        else:
            print(f"  {self.label} ...", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.tty:
            self._thread.join()
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    def _draw(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(0.25):
            t = time.monotonic() - t0
            if self.duration:
                done = min(t / self.duration, 1.0)
                bar = "#" * int(done * 30)
                text = f"[{bar:<30}] {t:5.1f}/{self.duration:g} s"
            else:
                text = f"{t:6.1f} s"
            sys.stderr.write(f"\r  {self.label} {text}")
            sys.stderr.flush()


class _Runner:
    """Runs the load of each point with the configured generator."""

    def __init__(
        self, config: SuiteConfig, inputs: npt.NDArray[Any] | list[bytes], text: bool
    ) -> None:
        self.config, self.inputs, self.text = config, inputs, text

    def load(self, target: dict[str, Any], clients: int, rate: float | None) -> LoadResult:
        c = self.config
        spec = LoadSpec(inputs=self.inputs, timeout_ms=c.timeout_ms, text=self.text, **target)
        kwargs: dict[str, Any] = {
            "clients": clients,
            "requests": c.requests,
            "duration_s": c.duration_s,
            "rate": rate,
            "warmup": c.warmup,
        }
        if c.load == "c":
            return run_c(spec, **kwargs)
        return run_python(spec, self.inputs, **kwargs)


def _device_split(stats: sysfs.Statistics) -> dict[str, float | None]:
    def per(ns: int | None, n: int | None) -> float | None:
        return ns / n / 1000.0 if ns is not None and n else None

    return {
        "queue": per(stats.queue_ns, stats.batched),
        "pre": per(stats.pre_ns, stats.requests),
        "compute": per(stats.compute_ns, stats.batched),
        "post": per(stats.post_ns, stats.requests),
        "total": per(stats.total_ns, stats.requests),
    }


@contextmanager
def _restore_batching(model: str) -> Iterator[None]:
    before = sysfs.read_status(model).settings
    try:
        yield
    finally:
        for key in ("max_batch", "max_queue_delay_us"):
            value = getattr(before, key)
            if value is not None:
                sysfs.set_setting(model, key, value)


def run_suite(config: SuiteConfig, say: Say) -> SuiteResult:
    """Run every point of ``config``; ``say`` gets progress lines."""
    config.check()
    spec = config.model_spec()
    inputs = _inputs(config, spec)
    text = bool(spec is not None and spec.tokenize)
    runner = _Runner(config, inputs, text)
    out = SuiteResult(config)
    sizes = list(config.batch_sizes or (spec and spec.batch_sizes) or ())
    sizes = sizes or _pow2_upto(max(config.max_batches))
    # Closed loop at every client count; each open-loop rate with the most clients.
    loops: list[tuple[int, float | None]] = [(c, None) for c in config.clients]
    loops += [(max(config.clients), r) for r in config.rates]
    n_points = _count_points(config, len(loops))
    done = [0]

    def measure(transport: str, target: dict[str, Any], mb: int | None, d: int | None) -> None:
        for clients, rate in loops:
            done[0] += 1
            what = f"{'open ' + format(rate, 'g') + ' req/s' if rate else 'closed'}"
            batching = "" if mb is None else f" max_batch {mb} delay {d} µs"
            label = f"[{done[0]}/{n_points}] {transport}{batching} {clients} clients {what}"
            if transport == "device":
                sysfs.reset_stats(config.model)
            with _Bar(label, config.duration_s):
                res = runner.load(target, clients, rate)
            point = Point(transport, clients, mb, d, res)
            if transport == "device":
                stats = sysfs.read_status(config.model).stats
                point.mean_batch = stats.mean_batch
                point.split_us = _device_split(stats)
            out.points.append(point)
            say(
                f"{label}: {res.throughput_rps:.1f} req/s, p99 {res.latency.p(99):.0f} µs"
                + (f", errors {res.errors}" if res.errors else "")
            )

    with tempfile.TemporaryDirectory(prefix="flax-bench-") as tmp:
        for transport in config.transports:
            if transport == "device":
                _run_device(config, spec, sizes, measure, out, say)
            elif transport == "socket":
                path = str(Path(tmp) / "socket")
                assert spec is not None
                cmd = sockserve_command(
                    spec.name, path, batch=False, max_batch=1, delay_us=0, batch_sizes=sizes
                )
                with _started(cmd, "socket server", config, out, say):
                    measure("socket", {"socket": path}, None, None)
            else:
                assert spec is not None
                for mb, d in itertools.product(config.max_batches, config.delays_us):
                    path = str(Path(tmp) / f"socket-{mb}-{d}")
                    cmd = sockserve_command(
                        spec.name, path, batch=True, max_batch=mb, delay_us=d, batch_sizes=sizes
                    )
                    with _started(cmd, "batching socket server", config, out, say):
                        measure("socket-batch", {"socket": path}, mb, d)
    if config.baseline and spec is not None:
        if spec.identity:
            say(f"no in-process baseline for {spec.name!r}: a copy in memory measures nothing")
        else:
            out.inprocess = _baseline(config, spec, inputs, say)
        if spec.normalize is not None and isinstance(inputs, np.ndarray):
            out.numpy_pre_us = _numpy_pre_us(spec.normalize, inputs)
    return out


def _numpy_pre_us(norm: Normalization, inputs: npt.NDArray[Any], rounds: int = 5) -> float:
    """Best of ``rounds`` of numpy normalising each input alone, µs per input."""
    best = math.inf
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for x in inputs:
            reference.normalize(x, norm)
        best = min(best, (time.perf_counter_ns() - t0) / len(inputs) / 1e3)
    return best


def _count_points(config: SuiteConfig, per_setting: int) -> int:
    n = 0
    settings = len(config.max_batches) * len(config.delays_us)
    for t in config.transports:
        n += per_setting * (1 if t == "socket" else settings)
    return n


@contextmanager
def _started(
    cmd: list[str], label: str, config: SuiteConfig, out: SuiteResult, say: Say
) -> Iterator[ChildServer]:
    say(f"starting {label}: {' '.join(cmd[3:])}")
    server = ChildServer(cmd, label=label, verbose=config.verbose)
    server.start()
    out.startup_s.setdefault(label, server.startup_s)
    try:
        yield server
    finally:
        server.stop()


def _run_device(
    config: SuiteConfig,
    spec: ModelSpec | None,
    sizes: list[int],
    measure: Callable[[str, dict[str, Any], int | None, int | None], None],
    out: SuiteResult,
    say: Say,
) -> None:
    target: dict[str, Any] = {"model": config.model, "device": config.device}
    with ExitStack() as stack:
        if config.serve:
            assert spec is not None
            cmd = serve_command(
                spec.name,
                config.model,
                device=config.device,
                batch_sizes=sizes,
                extra=config.worker_args(),
            )
            stack.enter_context(_started(cmd, "device worker", config, out, say))
        with _restore_batching(config.model):
            for mb, d in itertools.product(config.max_batches, config.delays_us):
                sysfs.set_setting(config.model, "max_batch", mb)
                sysfs.set_setting(config.model, "max_queue_delay_us", d)
                measure("device", target, mb, d)


def _baseline(
    config: SuiteConfig, spec: ModelSpec, inputs: npt.NDArray[Any] | list[bytes], say: Say
) -> InProcessBench:
    pipeline = config.pipeline or spec.tokenize
    batches = tuple(sorted(set(config.baseline_batches)))
    fn, what = apply_fn(spec, pipeline=pipeline, batch_sizes=batches)
    samples: Any
    if pipeline:
        samples = inputs if isinstance(inputs, list) else [row.tobytes() for row in inputs]
    else:
        samples = spec.preprocess(inputs)
    say(f"in-process baseline ({what}) at batch sizes {list(batches)}")
    return inprocess(fn, samples, what=what, batch_sizes=batches)
