"""``--plot FILE.png``: throughput against clients, and p99 latency against throughput.

One line per transport and batching setting; the in-process best batch is a
reference line.  Needs matplotlib (the ``bench`` extra); imported only here.
"""

from __future__ import annotations

from collections import defaultdict

from pyflaxdev.bench.suite import Point, SuiteResult

__all__ = ["plot"]


def _series(points: list[Point]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        label = p.transport
        if p.transport != "socket" and p.max_batch is not None:
            label += f" (max_batch {p.max_batch}, delay {p.delay_us} µs)"
        out[label].append(p)
    return out


def plot(result: SuiteResult, path: str, *, title: str | None = None) -> None:
    """Draw the run into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    closed = [p for p in result.points if p.offered_rps is None]
    colors: dict[str, str] = {}
    for label, pts in _series(closed).items():
        pts = sorted(pts, key=lambda p: p.clients)
        left.plot(
            [p.clients for p in pts],
            [p.result.throughput_rps for p in pts],
            "o-",
            color=colors.setdefault(label, f"C{len(colors)}"),
            label=label,
        )
    for label, pts in _series(result.points).items():
        # Closed loop (by clients) solid, open loop (by offered rate) dashed.
        for style, part in (("o-", False), ("s--", True)):
            sel = sorted(
                (p for p in pts if (p.offered_rps is not None) == part),
                key=lambda p: p.offered_rps or p.clients,
            )
            if not sel:
                continue
            right.plot(
                [p.result.throughput_rps for p in sel],
                [p.result.latency.p(99) / 1000.0 for p in sel],
                style,
                color=colors.setdefault(label, f"C{len(colors)}"),
                label=label + (" open loop" if part else ""),
            )
            for p in sel:
                tag = f"{p.clients}" if p.offered_rps is None else f"{p.offered_rps:g}/s"
                right.annotate(
                    tag,
                    (p.result.throughput_rps, p.result.latency.p(99) / 1000.0),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    base = result.inprocess
    if base is not None:
        best = base.best_throughput_rps
        left.axhline(
            best, color="grey", ls="--", label=f"in-process best (batch {base.best_batch})"
        )
        right.axvline(
            best, color="grey", ls="--", label=f"in-process best (batch {base.best_batch})"
        )
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrent clients (closed loop)")
    left.set_ylabel("throughput (requests/s)")
    left.set_title("throughput vs clients")
    right.set_yscale("log")
    right.set_xlabel("throughput (requests/s)")
    right.set_ylabel("p99 latency (ms)")
    right.set_title("p99 latency vs throughput (labels: clients; offered rate, dashed)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"flaxdev bench {result.config.model!r}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
