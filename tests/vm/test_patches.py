"""``patches`` end to end through /dev/flax: 64x64 RGB images vs in-process ``apply``.

The shipped CNN (pyflaxdev/zoo/patches, pyflaxdev/models/patches.py) on its held-out patches:
the kernel normalises each uint8 HWC image per channel (its vectorised path)
into the slot, the worker runs the CNN, the kernel takes softmax and top-k.
Every result must be the in-process reference's (``jax.nn.softmax`` of
``module.apply`` on numpy's normalisation).  The kernel's preprocessing time
per request (sysfs ``pre_ns``) is printed beside numpy's for the same images
in the same run: measured, not asserted (``flaxdev bench patches`` reports it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import served
from topk_check import check_topk, softmax

import pyflaxdev
from pyflaxdev import TopK, models, sysfs
from pyflaxdev.reference import normalize


@pytest.fixture(scope="module")
def patches() -> Iterator[models.ModelSpec]:
    """``patches`` created on the device and served by one worker process."""
    spec = models.get("patches")
    with served(spec, "1,8"):
        yield spec


def test_heldout_images_match_in_process_apply(patches: models.ModelSpec) -> None:
    x, y = patches.heldout()
    assert x.shape[1:] == (64, 64, 3) and x.dtype == np.uint8
    logits = patches.reference(x)
    probs = softmax(logits)
    sysfs.reset_stats("patches")
    with pyflaxdev.open() as dev:
        model = dev.model("patches")
        results = [model.infer(img) for img in x]
    assert all(isinstance(r, TopK) and len(r) == 2 for r in results)
    for r, p in zip(results, probs, strict=True):
        check_topk(r.indices, r.scores, p)
    assert [r.names[0] for r in results] == [patches.labels[i] for i in logits.argmax(axis=1)]
    top1 = np.array([r.top for r in results])
    np.testing.assert_array_equal(top1, logits.argmax(axis=1))
    accuracy = float(np.mean(top1 == y))
    assert accuracy == patches.metadata["about"]["heldout_accuracy"]

    stats = sysfs.read_status("patches").stats
    assert stats.requests == len(x) and stats.pre_ns
    kernel_us = stats.pre_ns / len(x) / 1e3
    assert patches.normalize is not None
    norm = patches.normalize
    t0 = time.perf_counter_ns()
    for _ in range(5):
        for img in x:
            normalize(img, norm)
    numpy_us = (time.perf_counter_ns() - t0) / (5 * len(x)) / 1e3
    print(
        f"patches: {len(x)} images, accuracy {accuracy:.3f}; preprocessing per request:"
        f" kernel {kernel_us:.1f} us (copy in + normalise), numpy {numpy_us:.1f} us"
        f" (normalise only): numpy/kernel {numpy_us / kernel_us:.1f}x"
    )
