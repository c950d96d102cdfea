"""What one load run measured, whichever generator (C or Python) ran it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.bench.stats import LatencyStats, latency_stats

__all__ = ["SAMPLE_DTYPE", "LoadResult", "summarise"]

#: One timed request, as ``flax_load -o`` writes it: scheduled start relative
#: to the common start, latency (both ns), status (0 or -errno), client index.
SAMPLE_DTYPE = np.dtype(
    [("start_ns", "<u8"), ("latency_ns", "<u8"), ("status", "<i4"), ("client", "<u4")]
)


@dataclass
class LoadResult:
    """One load run: N clients against one transport, closed or open loop."""

    load: str  # "c" or "python": who generated the load
    transport: str  # "device" or "socket"
    target: str  # model name or socket path
    clients: int
    mode: str  # "closed" or "open"
    offered_rps: float | None
    requests: int  # timed attempts
    ok: int
    errors: dict[str, int]
    late: int  # open loop: sent > 1 ms after their scheduled time
    elapsed_s: float
    throughput_rps: float
    latency: LatencyStats
    samples: npt.NDArray[Any] = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON, without the raw samples."""
        out = asdict(self)
        del out["samples"]
        return out


def summarise(
    samples: npt.NDArray[Any], errors: dict[str, int], elapsed_s: float, **info: Any
) -> LoadResult:
    """A :class:`LoadResult` from the raw samples (:data:`SAMPLE_DTYPE`)."""
    ok = samples["status"] == 0
    n_ok = int(ok.sum())
    return LoadResult(
        requests=int(samples.size),
        ok=n_ok,
        errors=errors,
        elapsed_s=elapsed_s,
        throughput_rps=n_ok / elapsed_s if elapsed_s > 0 else float("nan"),
        latency=latency_stats(samples["latency_ns"][ok] / 1000.0),
        samples=samples,
        **info,
    )
