"""The shipped patches model: 64x64 RGB photo patches, per-channel normalisation, a CNN."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pyflaxdev import models
from pyflaxdev.models import patches

MIN_ACCURACY = 0.9


@pytest.fixture(scope="module")
def spec():
    return models.get("patches")


def test_description(spec):
    assert "patches" in models.names()
    assert spec.input_shape == (64, 64, 3)
    assert spec.input_dtype == np.uint8
    assert spec.output_shape == (4,)
    assert spec.post == ("softmax", "topk") and spec.topk == 2
    assert spec.labels == patches.LABELS
    n = spec.normalize
    assert n is not None and n.scale == np.float32(1 / 255)
    # One mean and std per channel: the kernel's per-channel, channel-last path.
    assert n.mean.dtype == np.float32 and n.mean.shape == n.std.shape == (3,)
    assert np.all(n.std > 0)


def test_shipped_files_match_metadata():
    meta = models.get("patches").metadata["about"]
    assert hashlib.sha256(patches.WEIGHTS.read_bytes()).hexdigest() == meta["weights_sha256"]
    assert meta["heldout_accuracy"] >= MIN_ACCURACY


def test_shipped_heldout_and_constants_come_from_sklearns_photos(spec):
    x_train, _, x_test, y_test = patches.load_split()
    x, y = spec.heldout()
    assert x.shape == (24, 64, 64, 3) and x.dtype == np.uint8
    assert np.array_equal(x, x_test) and np.array_equal(y, y_test)
    assert np.bincount(y).tolist() == [6, 6, 6, 6]
    norm = patches.normalization_for(x_train)
    assert norm.mean.tobytes() == spec.normalize.mean.tobytes()
    assert norm.std.tobytes() == spec.normalize.std.tobytes()


def test_preprocess_is_the_per_channel_float32_formula(spec):
    x, _ = spec.heldout()
    n = spec.normalize
    want = (x[:3].astype(np.float32) * np.float32(n.scale) - n.mean) / n.std
    got = spec.preprocess(x[:3])
    assert got.dtype == np.float32 and got.shape == (3, 64, 64, 3)
    assert got.tobytes() == want.astype(np.float32).tobytes()


def test_heldout_accuracy_in_process(spec):
    meta = spec.metadata["about"]
    assert spec.accuracy() == pytest.approx(meta["heldout_accuracy"])
    assert spec.accuracy() >= MIN_ACCURACY
