"""``flaxdev bench``: load generation, baselines, sweeps and reports.

- :mod:`.stats`: latency summaries; :mod:`.result`: one load run's result;
- :mod:`.cload` / :mod:`.pyload`: the C and Python load generators (closed
  or open loop, device or Unix socket);
- :mod:`.inprocess`: the in-process baselines;
- :mod:`.servers`: the worker and socket-server child processes;
- :mod:`.suite`: a whole sweep; :mod:`.report` and :mod:`.plot`: its output.

Compare results as ratios inside one run (absolute times in the VM mean little).
"""

from pyflaxdev.bench.inprocess import InProcessBench, apply_fn, inprocess
from pyflaxdev.bench.result import LoadResult
from pyflaxdev.bench.stats import PERCENTILES, LatencyStats, latency_stats
from pyflaxdev.bench.suite import TRANSPORTS, Point, SuiteConfig, SuiteResult, run_suite

__all__ = [
    "PERCENTILES",
    "TRANSPORTS",
    "InProcessBench",
    "LatencyStats",
    "LoadResult",
    "Point",
    "SuiteConfig",
    "SuiteResult",
    "apply_fn",
    "inprocess",
    "latency_stats",
    "run_suite",
]
