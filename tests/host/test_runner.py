"""The runner's batch choice and its timings (pyflaxdev.runner).

``choose_batch`` decides how many waiting jobs the worker runs now: all,
padded, or a smaller compiled size with the rest kept for the next batch.
The expectations are worked out by hand from the jobs-per-second rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyflaxdev.runner import BatchRunner, CopyRunner, choose_batch
from pyflaxdev.spec import TensorSpec

SIZES = (1, 2, 4, 8, 16, 32, 64)
# Seconds per call of a small MLP under emulation: a fixed cost, then linear.
TIMES = {b: 0.55e-3 + b * 0.12e-3 for b in SIZES}


@pytest.mark.parametrize(
    ("n", "want"),
    [
        (1, 1),  # a compiled size: all
        (32, 32),
        (64, 64),
        (3, 3),  # 3 / t(4) = 2977/s beats 2 / t(2) = 2531/s: pad
        (9, 8),  # 8 / t(8) = 5298/s beats 9 / t(16) = 3600/s: keep one
        (34, 32),  # 32 / t(32) = 7175/s beats 34 / t(64) = 4128/s
        (63, 63),  # 63 / t(64) = 7650/s beats 32 / t(32)
        (100, 64),  # never more than the largest size
    ],
)
def test_choose_batch_serves_the_most_jobs_per_second(n, want):
    assert choose_batch(SIZES, TIMES, n) == want


def test_choose_batch_without_timings_runs_everything():
    assert choose_batch(SIZES, {}, 34) == 34
    assert choose_batch(SIZES, {1: 1.0}, 34) == 34  # the sizes involved are not timed


def test_copy_runner_never_keeps_jobs_back():
    runner = CopyRunner(TensorSpec((4,), np.dtype(np.float32)), 4, SIZES)
    assert [runner.split(n) for n in (3, 34, 100)] == [3, 34, 64]


def test_batch_runner_times_every_size_and_splits_by_them():
    calls: list[int] = []

    def apply(params, x):
        calls.append(len(x))
        return x * params

    runner = BatchRunner(apply, 2.0, TensorSpec((3,), np.dtype(np.float32)), 3, (1, 4))
    runner.warmup(timing_calls=2)
    assert sorted(runner.seconds) == [1, 4] and all(s > 0 for s in runner.seconds.values())
    runner.seconds = {1: 1.0, 4: 10.0}  # batch 4 is slow: 1 job/s vs 0.3 padded
    assert runner.split(3) == 1
    runner.seconds = {1: 1.0, 4: 1.1}
    assert runner.split(3) == 3
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(runner.run(x, np.array([2, 0])), x[[2, 0]] * 2)
