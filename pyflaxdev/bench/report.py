"""The report of a bench run: a table with units in every heading, ratios, warnings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pyflaxdev.bench.suite import Point, SuiteResult

__all__ = ["format_report", "ratios", "warnings"]

MIN_REQUESTS = 1000
MIN_SECONDS = 5.0


def _f(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _table(headings: list[str], rows: Iterable[list[str]]) -> list[str]:
    rows = list(rows)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headings)
    ]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return [fmt.format(*headings), *(fmt.format(*r) for r in rows)]


def _point_row(p: Point) -> list[str]:
    r, lat = p.result, p.result.latency
    split = p.split_us or {}
    parts = [split.get(k) for k in ("queue", "pre", "compute", "post")]
    return [
        p.transport,
        r.load,
        _f(p.max_batch, "d"),
        _f(p.delay_us, "d"),
        str(p.clients),
        _f(r.offered_rps, ".0f") if r.offered_rps else "closed",
        _f(r.throughput_rps, ".1f"),
        f"{_f(lat.mean_us)} ± {_f(lat.std_us)}",
        *(_f(lat.p(q)) for q in (50, 90, 99, 99.9)),
        _f(p.mean_batch, ".1f"),
        "/".join(_f(v) for v in parts) if p.split_us else "-",
        str(r.ok),
        ",".join(f"{k}:{v}" for k, v in sorted(r.errors.items())) or "0",
    ]


HEADINGS = [
    "transport",
    "load",
    "max_batch",
    "delay(µs)",
    "clients",
    "offered(req/s)",
    "throughput(req/s)",
    "latency mean±σ(µs)",
    "p50(µs)",
    "p90(µs)",
    "p99(µs)",
    "p99.9(µs)",
    "batch(mean)",
    "queue/pre/compute/post(µs)",
    "ok",
    "errors",
]


_RATIO_KEYS = ("clients", "max_batch", "delay_us", "offered_rps")


def _key(p: Point) -> tuple[int, int | None, int | None, float | None]:
    return (p.clients, p.max_batch, p.delay_us, p.offered_rps)


def _pre_line(result: SuiteResult) -> str:
    """The kernel's preprocessing per request (sysfs ``pre``) against numpy's."""
    numpy_us = result.numpy_pre_us
    assert numpy_us is not None
    line = f"preprocessing per input: numpy {numpy_us:.1f} µs (normalise one input, this process)"
    pre = sorted(
        v
        for p in result.points
        if p.transport == "device" and p.split_us
        for v in [p.split_us.get("pre")]
        if v
    )
    if pre:
        median = pre[len(pre) // 2]
        line += (
            f"; device {median:.1f} µs (sysfs pre per request, median of {len(pre)} points:"
            f" copy in + normalise), numpy/device {numpy_us / median:.1f}x"
        )
    return line


def ratios(result: SuiteResult) -> list[dict[str, Any]]:
    """Device vs each other transport, point by point (same clients, batching, rate).

    ``socket`` has no batching settings, so a device point is compared with the
    socket point of the same clients and rate.  Also device vs the in-process
    best batch (throughput) and vs in-process batch 1 (p50 latency).
    """
    rows: list[dict[str, Any]] = []
    by = {(p.transport, *_key(p)): p for p in result.points}
    base = result.inprocess
    for p in result.points:
        if p.transport != "device":
            continue
        row: dict[str, Any] = {
            "clients": p.clients,
            "max_batch": p.max_batch,
            "delay_us": p.delay_us,
            "offered_rps": p.offered_rps,
        }
        sock = by.get(("socket", p.clients, None, None, p.offered_rps))
        batch = by.get(("socket-batch", *_key(p)))
        for name, other in (("socket", sock), ("socket_batch", batch)):
            if other is not None and other.result.throughput_rps > 0:
                row[f"throughput_vs_{name}"] = p.result.throughput_rps / other.result.throughput_rps
                row[f"p50_vs_{name}"] = p.result.latency.p(50) / other.result.latency.p(50)
                row[f"p99_vs_{name}"] = p.result.latency.p(99) / other.result.latency.p(99)
        if base is not None:
            row["throughput_vs_inprocess_best"] = p.result.throughput_rps / base.best_throughput_rps
            row["p50_vs_inprocess_batch1"] = p.result.latency.p(50) / base.batch1.p(50)
        rows.append(row)
    return rows


def warnings(result: SuiteResult) -> list[str]:
    """What makes this run less trustworthy, each with how to fix it."""
    out: list[str] = []
    for p in result.points:
        r = p.result
        name = f"{p.transport} {p.clients} clients" + (
            f" at {r.offered_rps:g} req/s" if r.offered_rps else ""
        )
        if r.ok < MIN_REQUESTS or r.elapsed_s < MIN_SECONDS:
            out.append(
                f"{name}: {r.ok} requests in {r.elapsed_s:.1f} s is too short for the tail"
                f" percentiles; use --duration {max(2 * MIN_SECONDS, 10):g} or more"
            )
        if r.latency.n > 1 and r.latency.cv > 1.0:
            out.append(
                f"{name}: σ exceeds the mean ({r.latency.std_us:.0f} > {r.latency.mean_us:.0f} µs):"
                " something else loads the machine, or the run is too short"
            )
        if r.errors:
            out.append(f"{name}: {sum(r.errors.values())} requests failed ({r.errors})")
        if r.offered_rps:
            if r.late > 0.01 * max(r.requests, 1):
                out.append(
                    f"{name}: {r.late} of {r.requests} requests left late: the clients cannot"
                    " keep up the schedule; raise --clients"
                )
            if r.throughput_rps < 0.95 * r.offered_rps and r.elapsed_s > 0:
                out.append(
                    f"{name}: saturated, {r.throughput_rps:.0f} of {r.offered_rps:g} req/s"
                    " served; latency grows with the run's length"
                )
    if any(0 < p.result.latency.n < 10000 for p in result.points):
        out.append("p99.9 of a point with fewer than 10000 requests rests on fewer than 10 samples")
    return out


def format_report(result: SuiteResult) -> str:
    """The whole report as text."""
    c = result.config
    lines = [
        f"flaxdev bench {c.model!r}"
        + (f" (inputs and servers: {c.spec_name!r})" if c.spec_name else "")
        + f", {c.load} clients, "
        + (
            f"{c.duration_s:g} s per point" if c.duration_s else f"{c.requests} requests per client"
        ),
        "",
        *_table(HEADINGS, (_point_row(p) for p in result.points)),
    ]
    base = result.inprocess
    if base is not None:
        lines += ["", f"in-process baseline: {base.what}"]
        lines += _table(
            ["batch", "time/sample(µs)", "throughput(samples/s)"],
            (
                [
                    str(b),
                    f"{us:.1f}",
                    f"{1e6 / us:.1f}" + ("  best" if b == base.best_batch else ""),
                ]
                for b, us in sorted(base.us_per_sample.items())
            ),
        )
        lines.append(
            f"batch 1 latency: p50 {base.batch1.p(50):.0f} µs, p99 {base.batch1.p(99):.0f} µs"
        )
    if result.numpy_pre_us is not None:
        lines += ["", _pre_line(result)]
    rows = ratios(result)
    if rows:
        keys = sorted({k for r in rows for k in r} - set(_RATIO_KEYS))
        lines += ["", "ratios, device / other (throughput: higher is better; latency: lower is)"]
        lines += _table(
            ["clients", "max_batch", "delay(µs)", "offered(req/s)", *keys],
            (
                [
                    str(r["clients"]),
                    _f(r["max_batch"], "d"),
                    _f(r["delay_us"], "d"),
                    _f(r["offered_rps"], ".0f") if r["offered_rps"] else "closed",
                    *(_f(r.get(k), ".2f") for k in keys),
                ]
                for r in rows
            ),
        )
    warn = warnings(result)
    if warn:
        lines += ["", *(f"warning: {w}" for w in warn)]
    return "\n".join(lines)
