"""The in-process baselines: the same model run in this process, no device.

:func:`inprocess` times a batch function at several batch sizes and keeps the
best time per sample, the limit a worker behind ``/dev/flax`` could reach.
:func:`apply_fn` builds the function for a zoo model: ``jit(apply)`` on
already preprocessed inputs (digits: what issue 8 compares with), or the whole
pipeline, preprocessing and postprocessing included (text models: Hugging
Face tokenizer, Flax encoder at the shortest length bucket, numpy pooling).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.bench.stats import LatencyStats, latency_stats

if TYPE_CHECKING:
    from pyflaxdev.models import ModelSpec

__all__ = ["InProcessBench", "apply_fn", "inprocess"]

BatchFn = Callable[[Any], Any]


@dataclass
class InProcessBench:
    """In-process timings: batch 1 latency and time per sample at each batch size."""

    what: str
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

    def throughput_rps(self, batch: int) -> float:
        """Samples per second at ``batch`` (measured sizes only)."""
        return 1e6 / self.us_per_sample[batch]

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (for JSON)."""
        return {
            "what": self.what,
            "batch1": asdict(self.batch1),
            "us_per_sample": {str(k): v for k, v in self.us_per_sample.items()},
            "best_batch": self.best_batch,
            "best_throughput_rps": self.best_throughput_rps,
        }


def apply_fn(
    spec: ModelSpec, *, pipeline: bool, batch_sizes: Sequence[int] = (1, 8, 64)
) -> tuple[BatchFn, str]:
    """A batch function for ``spec`` and what it covers.

    ``pipeline`` False: ``jit(apply)`` on inputs preprocessed beforehand (feed
    it ``spec.preprocess(x)``).  True: request bytes in (a list of
    ``bytes``), result bytes out, every step included
    (:class:`pyflaxdev.pipeline.Pipeline`, compiled at ``batch_sizes``, text
    models at the shipped length buckets).
    """
    if pipeline:
        from pyflaxdev.pipeline import Pipeline

        pipe = Pipeline(spec, batch_sizes, buckets=spec.buckets)
        pipe.warmup()

        def run(raw: Sequence[bytes]) -> Any:
            return pipe.infer_batch([memoryview(b) for b in raw])

        return run, "preprocess + jit(apply) + postprocess (in-process pipeline)"
    import jax

    fn = jax.jit(spec.module.apply)
    params = jax.device_put(spec.params)
    return (lambda x: np.asarray(fn(params, x))), "jit(apply) on preprocessed inputs"


def inprocess(
    fn: BatchFn,
    samples: Sequence[Any] | npt.NDArray[Any],
    *,
    what: str = "jit(apply)",
    batch_sizes: Sequence[int] = (1, 8, 64),
    max_calls: int = 1000,
    budget_s: float = 3.0,
) -> InProcessBench:
    """Time ``fn(batch)`` for each batch size (after one untimed call).

    Successive calls take successive batches of ``samples``, cyclically (a
    numpy array is indexed, a list sliced), so that inputs of different cost
    (texts of different lengths) count as often as the device's clients send
    them; the time per sample is the mean, as a throughput is.  Batch 1 is
    always measured.  Each size gets up to ``max_calls`` calls or
    ``budget_s`` seconds (at least 5 calls).
    """
    n = len(samples)
    if n == 0:
        raise ValueError("need samples")
    per_sample: dict[int, float] = {}
    batch1 = latency_stats([])
    for b in sorted({1, *batch_sizes}):
        batches = [_batch(samples, np.arange(k * b, (k + 1) * b) % n) for k in range(-(-n // b))]
        fn(batches[0])  # compile
        times: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(times) < max_calls and (len(times) < 5 or time.perf_counter() < deadline):
            x = batches[len(times) % len(batches)]
            t0 = time.perf_counter_ns()
            fn(x)
            times.append((time.perf_counter_ns() - t0) / 1000.0)
        if b == 1:
            batch1 = latency_stats(times)
        per_sample[b] = float(np.mean(times)) / b
    best = min(per_sample, key=lambda k: per_sample[k])
    return InProcessBench(what=what, batch1=batch1, us_per_sample=per_sample, best_batch=best)


def _batch(samples: Sequence[Any] | npt.NDArray[Any], idx: npt.NDArray[np.intp]) -> Any:
    if isinstance(samples, np.ndarray):
        return np.ascontiguousarray(samples[idx])
    return [samples[int(i)] for i in idx]
