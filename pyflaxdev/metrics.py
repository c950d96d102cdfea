"""The module's sysfs counters in Prometheus' text exposition format (version 0.0.4).

One family per counter, gauge and histogram, every sample labelled with its
``model``; times in seconds, as Prometheus names them.  Written by hand (the
format is a few lines of text), so serving metrics needs no dependency;
``prometheus_client``'s parser reads it back in the tests.

Families (``flaxdev_`` prefix): ``requests_total``, ``completed_total``,
``errors_total``, ``timeouts_total``, ``batches_total``, ``batched_jobs_total``
(counters); ``queue_seconds_total``, ``pre_seconds_total``,
``compute_seconds_total``, ``post_seconds_total`` (time summed over requests or
jobs, counters); ``queued``, ``in_flight``, ``workers`` (gauges);
``request_duration_seconds`` (histogram of end-to-end latency, sysfs
``latency_hist``) and ``batch_size`` (histogram of jobs per FETCH, sysfs
``batch_hist``); from the run state of a model's ``flaxdev serve`` process,
``model_version`` and ``worker_start_seconds`` (gauges: the version it serves,
how long it took to load, compile and attach) and the serving worker's own
``worker_jobs_total``, ``worker_batches_total``, ``worker_failed_jobs_total``
and ``worker_compute_seconds_total`` (labelled with the version too: a new
version starts them over).  A model whose file could not be read has no
sample there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pyflaxdev.runstate import RunState
from pyflaxdev.sysfs import ModelStatus

__all__ = ["CONTENT_TYPE", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Value = Callable[[ModelStatus], "int | float | None"]


@dataclass(frozen=True)
class _Family:
    name: str
    kind: str
    help: str
    value: Value


def _ns(get: Callable[[ModelStatus], int | None]) -> Value:
    def seconds(m: ModelStatus) -> float | None:
        ns = get(m)
        return None if ns is None else ns / 1e9

    return seconds


_SCALARS = (
    _Family("requests_total", "counter", "Requests made", lambda m: m.stats.requests),
    _Family("completed_total", "counter", "Requests answered", lambda m: m.stats.completed),
    _Family("errors_total", "counter", "Requests failed", lambda m: m.stats.errors),
    _Family("timeouts_total", "counter", "Requests timed out", lambda m: m.stats.timeouts),
    _Family("batches_total", "counter", "FETCH calls that took jobs", lambda m: m.stats.batches),
    _Family("batched_jobs_total", "counter", "Jobs those calls took", lambda m: m.stats.batched),
    _Family(
        "queue_seconds_total",
        "counter",
        "Time jobs waited queued, until fetched",
        _ns(lambda m: m.stats.queue_ns),
    ),
    _Family(
        "pre_seconds_total",
        "counter",
        "Time spent copying inputs in and preprocessing them",
        _ns(lambda m: m.stats.pre_ns),
    ),
    _Family(
        "compute_seconds_total",
        "counter",
        "Time jobs spent with workers",
        _ns(lambda m: m.stats.compute_ns),
    ),
    _Family(
        "post_seconds_total",
        "counter",
        "Time spent postprocessing and copying results out",
        _ns(lambda m: m.stats.post_ns),
    ),
    _Family("queued", "gauge", "Requests queued for a worker", lambda m: m.queue.queued),
    _Family("in_flight", "gauge", "Requests holding a slot", lambda m: m.queue.in_flight),
    _Family("workers", "gauge", "Workers attached", lambda m: m.queue.workers),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _histogram(
    name: str,
    help_: str,
    models: Iterable[ModelStatus],
    counts: Callable[[ModelStatus], list[int] | None],
    bounds: Callable[[int], float],
    total: Callable[[ModelStatus], float | None],
) -> list[str]:
    """A Prometheus histogram from per-bucket counts; bucket b ends at ``bounds(b)``."""
    lines = [f"# HELP flaxdev_{name} {help_}", f"# TYPE flaxdev_{name} histogram"]
    for m in models:
        c, s = counts(m), total(m)
        if c is None or s is None:
            continue
        model = f'model="{_label(m.name)}"'
        running = 0
        for b, n in enumerate(c):
            running += n
            le = "+Inf" if b == len(c) - 1 else _number(bounds(b))
            lines.append(f'flaxdev_{name}_bucket{{{model},le="{le}"}} {running}')
        lines.append(f"flaxdev_{name}_sum{{{model}}} {_number(s)}")
        lines.append(f"flaxdev_{name}_count{{{model}}} {running}")
    return lines


# The serving workers' own counters, from their run state: (key, family, kind, help).
_WORKER = (
    ("jobs", "worker_jobs_total", "counter", "Jobs the serving worker answered"),
    ("batches", "worker_batches_total", "counter", "Batches the serving worker ran"),
    ("failed_jobs", "worker_failed_jobs_total", "counter", "Jobs the serving worker failed"),
    ("compute_seconds", "worker_compute_seconds_total", "counter", "Time in the model"),
)


def _workers(workers: Mapping[str, RunState]) -> list[str]:
    """``model_version``, the serving worker's start time and counters, per model."""
    lines = [
        "# HELP flaxdev_model_version Version its flaxdev serve process serves",
        "# TYPE flaxdev_model_version gauge",
    ]
    lines += [
        f'flaxdev_model_version{{model="{_label(name)}"}} {st.version}'
        for name, st in sorted(workers.items())
    ]
    lines += [
        "# HELP flaxdev_worker_start_seconds Loading to attached, for the serving version",
        "# TYPE flaxdev_worker_start_seconds gauge",
    ]
    lines += [
        f'flaxdev_worker_start_seconds{{model="{_label(name)}"}} {_number(st.start_seconds)}'
        for name, st in sorted(workers.items())
    ]
    for key, name, kind, help_ in _WORKER:
        lines += [f"# HELP flaxdev_{name} {help_}", f"# TYPE flaxdev_{name} {kind}"]
        for model, st in sorted(workers.items()):
            if key in st.worker:
                labels = f'model="{_label(model)}",version="{st.version}"'
                lines.append(f"flaxdev_{name}{{{labels}}} {_number(float(st.worker[key]))}")
    return lines


def exposition(models: Iterable[ModelStatus], workers: Mapping[str, RunState] | None = None) -> str:
    """The text exposition of every model's counters, ending with a newline.

    ``workers`` maps models to the run state of their ``flaxdev serve`` process
    (:mod:`pyflaxdev.runstate`): the version it serves and its worker's counters.
    """
    models = list(models)
    lines: list[str] = _workers(workers) if workers else []
    for fam in _SCALARS:
        lines += [f"# HELP flaxdev_{fam.name} {fam.help}", f"# TYPE flaxdev_{fam.name} {fam.kind}"]
        for m in models:
            v = fam.value(m)
            if v is not None:
                lines.append(f'flaxdev_{fam.name}{{model="{_label(m.name)}"}} {_number(v)}')
    # latency_hist bucket 0 is under 1 us, bucket b > 0 is [2^(b-1), 2^b) us.
    lines += _histogram(
        "request_duration_seconds",
        "End-to-end time of answered requests",
        models,
        lambda m: m.stats.latency_hist,
        lambda b: (1 << b) / 1e6,
        lambda m: None if m.stats.total_ns is None else m.stats.total_ns / 1e9,
    )
    # batch_hist bucket 0 is 1 job, bucket b > 0 is 2^(b-1) + 1 to 2^b jobs.
    lines += _histogram(
        "batch_size",
        "Jobs per FETCH that took any",
        models,
        lambda m: m.stats.batch_hist,
        lambda b: float(1 << b),
        lambda m: m.stats.batched,
    )
    return "\n".join(lines) + "\n"
