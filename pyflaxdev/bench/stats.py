"""Latency summaries: mean ± σ, min … max and the percentiles the reports show."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["PERCENTILES", "LatencyStats", "latency_stats"]

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

    @property
    def cv(self) -> float:
        """Coefficient of variation σ / mean (NaN without samples)."""
        return self.std_us / self.mean_us if self.n and self.mean_us > 0 else float("nan")


def _pkey(q: float) -> str:
    return f"p{q:g}"


def latency_stats(samples_us: npt.ArrayLike) -> LatencyStats:
    """Summarise samples (µs); percentiles by linear interpolation."""
    a = np.asarray(samples_us, dtype=np.float64).ravel()
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
