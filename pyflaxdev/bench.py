"""Measurements for ``flaxdev bench`` (usable directly from tests).

- :func:`run_clients`: N threads, each with its own fd, doing synchronous
  INFER on a list of inputs; throughput and per-request latency.
- :func:`inprocess`: the same model's ``jit(apply)`` in this process, at batch
  1 and at larger batches (the baselines).
- :func:`latency_stats`: mean ± σ, min … max and percentiles of samples.

Compare results as ratios inside one run (absolute times in the VM mean little).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.device import Device
from pyflaxdev.errors import FlaxError, errno_name

__all__ = [
    "PERCENTILES",
    "ClientBench",
    "InProcessBench",
    "LatencyStats",
    "inprocess",
    "latency_stats",
    "run_clients",
]

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples, in microseconds."""

    n: int
    mean_us: float
    std_us: float
    min_us: float
    max_us: float
    percentiles_us: dict[str, float]

    def p(self, q: float) -> float:
        """The ``q``-th percentile (one of :data:`PERCENTILES`)."""
        return self.percentiles_us[_pkey(q)]


def _pkey(q: float) -> str:
    return f"p{q:g}"


def latency_stats(samples_us: npt.ArrayLike) -> LatencyStats:
    """Summarise samples (µs); percentiles by linear interpolation."""
    a = np.asarray(samples_us, dtype=np.float64)
    if a.size == 0:
        nan = float("nan")
        return LatencyStats(0, nan, nan, nan, nan, {_pkey(q): nan for q in PERCENTILES})
    pct = np.percentile(a, PERCENTILES)
    return LatencyStats(
        n=int(a.size),
        mean_us=float(a.mean()),
        std_us=float(a.std(ddof=1)) if a.size > 1 else 0.0,
        min_us=float(a.min()),
        max_us=float(a.max()),
        percentiles_us={_pkey(q): float(v) for q, v in zip(PERCENTILES, pct, strict=True)},
    )


@dataclass
class ClientBench:
    """Result of :func:`run_clients`."""

    model: str
    clients: int
    requests_per_client: int
    ok: int
    errors: dict[str, int]
    elapsed_s: float
    throughput_rps: float
    latency: LatencyStats
    samples_us: list[float] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (for JSON)."""
        return asdict(self)


def run_clients(
    model: str,
    inputs: Sequence[Any] | npt.NDArray[Any],
    *,
    clients: int,
    requests: int,
    device: str | None = None,
    warmup: int = 5,
    timeout_ms: int = 0,
    progress: Callable[[int], None] | None = None,
) -> ClientBench:
    """``clients`` threads × ``requests`` synchronous INFERs each, on their own fds.

    Client ``c`` sends ``inputs[(c * requests + i) % len(inputs)]``.  Each does
    ``warmup`` untimed requests, then all start together.  Failed requests are
    counted by errno name and not included in the latencies.  ``progress(n)``
    is called by client 0 every 10% of its requests.
    """
    n_in = len(inputs)
    if n_in == 0 or clients < 1 or requests < 1:
        raise ValueError("need inputs, clients >= 1 and requests >= 1")
    latencies = np.full((clients, requests), np.nan)
    errors: list[Counter[str]] = [Counter() for _ in range(clients)]
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * clients
    failure: list[BaseException] = []
    barrier = threading.Barrier(clients)
    step = max(requests // 10, 1)

    def client(c: int) -> None:
        try:
            with Device(device) as dev:
                m = dev.model(model)
                for i in range(warmup):
                    m.infer(inputs[i % n_in], timeout_ms=timeout_ms)
                barrier.wait()
                start = time.perf_counter()
                for i in range(requests):
                    x = inputs[(c * requests + i) % n_in]
                    t0 = time.perf_counter_ns()
                    try:
                        m.infer(x, timeout_ms=timeout_ms)
                    except FlaxError as exc:
                        errors[c][errno_name(exc.errno or 0)] += 1
                        continue
                    latencies[c, i] = (time.perf_counter_ns() - t0) / 1000.0
                    if progress is not None and c == 0 and (i + 1) % step == 0:
                        progress(i + 1)
                spans[c] = (start, time.perf_counter())
        except BaseException as exc:
            failure.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=client, args=(c,), name=f"bench-{c}") for c in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failure:
        real = [e for e in failure if not isinstance(e, threading.BrokenBarrierError)]
        raise (real or failure)[0]
    samples = latencies[~np.isnan(latencies)]
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    total_errors: Counter[str] = sum(errors, Counter())
    return ClientBench(
        model=model,
        clients=clients,
        requests_per_client=requests,
        ok=int(samples.size),
        errors=dict(total_errors),
        elapsed_s=elapsed,
        throughput_rps=samples.size / elapsed if elapsed > 0 else float("nan"),
        latency=latency_stats(samples),
        samples_us=[float(v) for v in samples],
    )


@dataclass
class InProcessBench:
    """In-process ``jit(apply)`` timings (input already preprocessed)."""

    batch1: LatencyStats
    us_per_sample: dict[int, float]
    best_batch: int

    @property
    def best_us_per_sample(self) -> float:
        """Median time per sample at the best batch size."""
        return self.us_per_sample[self.best_batch]

    @property
    def best_throughput_rps(self) -> float:
        """Samples per second at the best batch size."""
        return 1e6 / self.best_us_per_sample

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (for JSON)."""
        return {
            "batch1": asdict(self.batch1),
            "us_per_sample": {str(k): v for k, v in self.us_per_sample.items()},
            "best_batch": self.best_batch,
            "best_throughput_rps": self.best_throughput_rps,
        }


def inprocess(
    apply: Callable[[Any, Any], Any],
    params: Any,
    samples: npt.NDArray[Any],
    *,
    batch_sizes: Sequence[int] = (1, 8, 64),
    max_calls: int = 1000,
    budget_s: float = 3.0,
) -> InProcessBench:
    """Time ``jit(apply)(params, x)`` for each batch size (after one compile call).

    ``samples`` are preprocessed inputs ``[n, ...]``; batches are taken from them
    cyclically; batch 1 is always measured.  Each size gets up to ``max_calls``
    calls or ``budget_s`` seconds (at least 5 calls).
    """
    import jax

    fn = jax.jit(apply)
    params = jax.device_put(params)
    n = len(samples)
    per_sample: dict[int, float] = {}
    batch1 = latency_stats([])
    for b in sorted({1, *batch_sizes}):
        idx = np.arange(b) % n
        x = np.ascontiguousarray(samples[idx])
        np.asarray(fn(params, x))  # compile
        times: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(times) < max_calls and (len(times) < 5 or time.perf_counter() < deadline):
            t0 = time.perf_counter_ns()
            np.asarray(fn(params, x))
            times.append((time.perf_counter_ns() - t0) / 1000.0)
        if b == 1:
            batch1 = latency_stats(times)
        per_sample[b] = float(np.median(times)) / b
    best = min(per_sample, key=lambda k: per_sample[k])
    return InProcessBench(batch1=batch1, us_per_sample=per_sample, best_batch=best)
