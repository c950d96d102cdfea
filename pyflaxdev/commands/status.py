"""``flaxdev status``: every model in sysfs (``/sys/class/misc/flax/models``) as tables.

Three tables, one row per model: what it is and what it has done
(requests, completed, errors, timeouts), its live settings (writable by its owner
in sysfs: topk, threshold, timeout_ms, max_batch, max_queue_delay_us,
max_queue), and its timing (mean batch size and mean times per request).
``--hist`` adds the batch-size and latency histograms.  A value that could
not be read prints as ``-``.

``--ready MODEL`` prints nothing of that: it exits 0 if MODEL exists, is
running (not drained through sysfs ``state``) and has a worker attached, else
1 with the reason on stderr: the readiness check for a supervisor or a
container probe.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from pyflaxdev import sysfs
from pyflaxdev.commands._common import doc
from pyflaxdev.errors import ModelNotFound
from pyflaxdev.sysfs import ModelStatus

JSON_HELP = """\
--json prints {"sysfs": ROOT, "models": {NAME: MODEL}} where MODEL has the keys
  name, path;
  specs: id, input_shape, input_dtype, output_shape, pre_op, post_ops, nslots,
    result_size, text_size;
  settings: topk, threshold, timeout_ms, max_batch, max_queue_delay_us,
    max_queue, norm_mean, norm_std;
  queue: queued, in_flight, workers;
  stats: requests, completed, errors, timeouts, batches, batched, queue_ns,
    compute_ns, pre_ns, post_ns, total_ns, batch_hist (13 counts: 1, 2, 3-4,
    5-8, ... jobs), latency_hist (24 counts: <1 us, [1, 2) us, [2, 4) us, ...),
    mean_batch, mean_latency_us, mean_queue_us, mean_compute_us;
  labels: list of str.
Shapes and histograms are lists of int, threshold and means numbers; a value
that could not be read is null.  Keys are only ever added."""

Cell = Callable[[ModelStatus], object]


def _join(values: list[int] | list[str] | None) -> str | None:
    return None if values is None else " ".join(map(str, values)) or "none"


def _input(m: ModelStatus) -> str:
    dtype = m.specs.input_dtype or "-"
    return f"{dtype} {_join(m.specs.input_shape) or '-'}"


def _labels(m: ModelStatus) -> object:
    return None if m.labels is None else len(m.labels)


SUMMARY: tuple[tuple[str, Cell], ...] = (
    ("NAME", lambda m: m.name),
    ("ID", lambda m: m.specs.id),
    ("INPUT", _input),
    ("OUTPUT", lambda m: _join(m.specs.output_shape)),
    ("PRE", lambda m: m.specs.pre_op),
    ("POST", lambda m: _join(m.specs.post_ops)),
    ("SLOTS", lambda m: m.specs.nslots),
    ("WORKERS", lambda m: m.queue.workers),
    ("QUEUED", lambda m: m.queue.queued),
    ("IN_FLIGHT", lambda m: m.queue.in_flight),
    ("REQUESTS", lambda m: m.stats.requests),
    ("COMPLETED", lambda m: m.stats.completed),
    ("ERRORS", lambda m: m.stats.errors),
    ("TIMEOUTS", lambda m: m.stats.timeouts),
)

SETTINGS: tuple[tuple[str, Cell], ...] = (
    ("NAME", lambda m: m.name),
    ("K", lambda m: m.settings.topk),
    ("THRESHOLD", lambda m: m.settings.threshold),
    ("TIMEOUT_MS", lambda m: m.settings.timeout_ms),
    ("MAX_BATCH", lambda m: m.settings.max_batch),
    ("MAX_QUEUE_DELAY_US", lambda m: m.settings.max_queue_delay_us),
    ("MAX_QUEUE", lambda m: m.settings.max_queue),
    ("NORM_PAIRS", lambda m: None if m.settings.norm_mean is None else len(m.settings.norm_mean)),
    ("LABELS", _labels),
    ("RESULT_BYTES", lambda m: m.specs.result_size),
    ("TEXT_BYTES", lambda m: m.specs.text_size),
)


def _us(ns: int | None, n: int | None) -> float | None:
    return ns / n / 1000.0 if ns is not None and n else None


TIMING: tuple[tuple[str, Cell], ...] = (
    ("NAME", lambda m: m.name),
    ("BATCHES", lambda m: m.stats.batches),
    ("BATCHED", lambda m: m.stats.batched),
    ("MEAN_BATCH", lambda m: m.stats.mean_batch),
    ("MEAN_LATENCY_US", lambda m: m.stats.mean_latency_us),
    ("MEAN_QUEUE_US", lambda m: m.stats.mean_queue_us),
    ("MEAN_COMPUTE_US", lambda m: m.stats.mean_compute_us),
    ("MEAN_PRE_US", lambda m: _us(m.stats.pre_ns, m.stats.requests)),
    ("MEAN_POST_US", lambda m: _us(m.stats.post_ns, m.stats.completed)),
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``status``."""
    p = sub.add_parser(
        "status",
        help="models, settings and statistics (sysfs)",
        description=doc(__doc__),
        epilog=JSON_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON (keys below)")
    p.add_argument("--hist", action="store_true", help="also print the histograms")
    p.add_argument(
        "--ready",
        metavar="MODEL",
        help="exit 0 if MODEL is running with a worker, else 1 (nothing printed on success)",
    )
    p.set_defaults(run=run)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    return " ".join(str(value).split())


def table(models: list[ModelStatus], columns: tuple[tuple[str, Cell], ...]) -> list[list[str]]:
    """Rows (header first) of one table."""
    rows = [[title for title, _ in columns]]
    rows += [[_cell(get(m)) for _, get in columns] for m in models]
    return rows


def render(rows: list[list[str]]) -> list[str]:
    """Rows as aligned lines."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def histograms(m: ModelStatus) -> list[str]:
    """The non-empty histogram buckets of one model, one line per histogram."""
    out = []
    for title, counts, names in (
        ("batch size (jobs)", m.stats.batch_hist, sysfs.batch_bucket_names()),
        ("latency (µs)", m.stats.latency_hist, sysfs.latency_bucket_names()),
    ):
        if counts is None:
            cells = "-"
        else:
            cells = "  ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=False) if c)
        out.append(f"{m.name} {title}: {cells or 'empty'}")
    return out


def not_ready(name: str) -> str | None:
    """Why model ``name`` cannot answer now, or None if it can."""
    try:
        directory = sysfs.model_dir(name)
    except ModelNotFound:
        return f"model {name!r} does not exist"
    try:
        state = (directory / "state").read_text().strip()
    except OSError as e:
        return f"model {name!r}: cannot read its state ({e.strerror})"
    if state != "running":
        return f"model {name!r} is {state} (sysfs state)"
    workers = sysfs.status_of(directory).queue.workers
    if not workers:
        return f"model {name!r} has no worker attached"
    return None


def run(args: argparse.Namespace) -> int:
    """Print the tables (or JSON), or answer --ready."""
    if args.ready is not None:
        reason = not_ready(args.ready)
        if reason:
            print(f"flaxdev: not ready: {reason}", file=sys.stderr)
            return 1
        return 0
    models = sysfs.read_all()
    if args.json:
        doc_ = {"sysfs": str(sysfs.sysfs_root()), "models": {m.name: m.as_dict() for m in models}}
        print(json.dumps(doc_, indent=1))
        return 0
    if not models:
        print("flaxdev: no models", file=sys.stderr)
        return 0
    blocks = [render(table(models, cols)) for cols in (SUMMARY, SETTINGS, TIMING)]
    if args.hist:
        blocks.append([line for m in models for line in histograms(m)])
    print("\n\n".join("\n".join(b) for b in blocks))
    return 0
