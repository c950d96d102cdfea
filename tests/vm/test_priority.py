"""Request priorities: a FETCH takes the highest priority first, FIFO within one.

No worker runs while the requests are queued, so the queue's order is exactly
what the first FETCH returns; inputs name the requests.  A worker that dies
holding jobs gives them back at the front of their own priority.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev.errors import FlaxError, InvalidArgument
from pyflaxdev.uapi import lib

# (priority, input value) in submission order, and the order a FETCH must see.
REQUESTS = [(0, 0.0), (0, 1.0), (2, 2.0), (1, 3.0), (2, 4.0), (3, 5.0), (0, 6.0), (1, 7.0)]
SERVED = [5.0, 2.0, 4.0, 3.0, 7.0, 0.0, 1.0, 6.0]


def test_priorities_order_the_queue(dev: pyflaxdev.Device) -> None:
    dev.create_model("prio", (1,), np.float32, (1,), post=(), nslots=16, timeout_ms=30000)
    try:
        with pyflaxdev.Client("prio") as client:
            futures = [client.submit(np.float32([v]), priority=p) for p, v in REQUESTS]
            # A worker takes the first two jobs and dies without completing them.
            with pyflaxdev.Worker("prio") as dying:
                region = dying.attach()
                first = dying.fetch([], max_jobs=2, timeout_ms=2000)
                assert [float(region.inputs[s][0]) for s in first.slots] == SERVED[:2]
            # They went back in front of their priorities: the same order again.
            with pyflaxdev.Worker("prio") as worker:
                region = worker.attach()
                batch = worker.fetch([], max_jobs=16, timeout_ms=2000)
                assert [float(region.inputs[s][0]) for s in batch.slots] == SERVED
                region.outputs[batch.slots] = region.inputs[batch.slots] * 10
                worker.complete(
                    [(int(s), int(t), 0) for s, t in zip(batch.slots, batch.tags, strict=True)]
                )
                results = [f.result(timeout=60) for f in futures]
        assert [float(np.asarray(r)[0]) for r in results] == [v * 10 for _, v in REQUESTS]
    finally:
        dev.destroy_model("prio")


def test_priority_out_of_range_is_refused(dev: pyflaxdev.Device) -> None:
    model = dev.create_model("prio2", (1,), np.float32, (1,), post=(), nslots=4, timeout_ms=100)
    try:
        x = np.float32([1.0])
        with pytest.raises(InvalidArgument, match="priority must be 0"):
            model.infer(x, priority=lib.FLAX_PRIORITY_MAX + 1)
        with pytest.raises(InvalidArgument, match="priority must be 0"):
            model.submit([x], priority=-1)
        # The module refuses it too, whoever sends it.
        with pytest.raises(FlaxError) as info:
            model.infer_bytes(x.tobytes(), priority=lib.FLAX_PRIORITY_MAX + 1)
        assert info.value.errno == errno.EINVAL
        # In range, with no worker: it waits its timeout like any request.
        with pytest.raises(FlaxError) as info:
            model.infer(x, priority=lib.FLAX_PRIORITY_MAX)
        assert info.value.errno == errno.ETIMEDOUT
    finally:
        dev.destroy_model("prio2")
