"""The shipped digits model: accuracy, reproducible training, metadata, reference path."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from pyflaxdev import models, reference
from pyflaxdev.errors import ModelNotFound
from pyflaxdev.models import digits

MIN_ACCURACY = 0.95


@pytest.fixture(scope="module")
def spec():
    return models.get("digits")


def test_registry(spec):
    assert "digits" in models.names()
    assert spec.name == "digits"
    with pytest.raises(ModelNotFound, match="no shipped model 'nope'"):
        models.get("nope")


def test_description(spec):
    assert spec.input_shape == (8, 8)
    assert spec.input_dtype == np.uint8
    assert spec.output_shape == (10,)
    assert spec.post == ("softmax", "topk")
    assert spec.topk == 3
    assert spec.labels == digits.LABELS
    assert spec.labels[:3] == ("zero", "one", "two") and len(spec.labels) == 10
    assert spec.normalize is not None
    assert spec.normalize.scale == 1 / 16
    assert spec.normalize.mean.dtype == np.float32
    assert spec.normalize.mean.shape == spec.normalize.std.shape == (64,)
    assert np.all(spec.normalize.std > 0)


def test_shipped_files_match_metadata():
    meta = models.get("digits").metadata["about"]
    assert hashlib.sha256(digits.WEIGHTS.read_bytes()).hexdigest() == meta["weights_sha256"]
    assert meta["heldout_accuracy"] >= MIN_ACCURACY


def test_shipped_heldout_is_the_sklearn_split(spec):
    _, _, x_test, y_test = digits.load_split()
    x, y = spec.heldout()
    assert x.dtype == x_test.dtype
    assert np.array_equal(x, x_test)
    assert np.array_equal(y, y_test)


def test_heldout_split(spec):
    x, y = spec.heldout()
    assert x.shape == (360, 8, 8)
    assert x.dtype == np.uint8
    assert int(x.max()) == 16
    assert int(x.min()) == 0
    counts = np.bincount(y, minlength=10)
    assert counts.min() >= 35
    assert counts.max() <= 37  # stratified


def test_normalisation_constants_are_the_training_sets(spec):
    x_train, _, _, _ = digits.load_split()
    norm = digits.normalization_for(x_train)
    assert norm.mean.tobytes() == spec.normalize.mean.tobytes()
    assert norm.std.tobytes() == spec.normalize.std.tobytes()
    # constant pixels (std 0) use std 1 rather than dividing by zero
    flat = x_train.reshape(len(x_train), -1)
    constant = flat.min(axis=0) == flat.max(axis=0)
    assert constant.any()
    assert np.all(spec.normalize.std[constant] == 1)


def test_heldout_accuracy(spec):
    accuracy = spec.accuracy()
    assert accuracy >= MIN_ACCURACY, accuracy


def test_preprocess_is_float32_formula(spec):
    x, _ = spec.heldout()
    got = spec.preprocess(x[:5])
    n = spec.normalize
    want = (x[:5].reshape(5, 64).astype(np.float32) * np.float32(n.scale) - n.mean) / n.std
    assert got.dtype == np.float32
    assert got.shape == (5, 8, 8)
    assert got.reshape(5, 64).tobytes() == want.astype(np.float32).tobytes()


def test_reference_single_and_batch_agree(spec):
    x, _ = spec.heldout()
    batch = spec.reference(x[:4])
    assert batch.shape == (4, 10)
    assert batch.dtype == np.float32
    np.testing.assert_allclose(spec.reference(x[2]), batch[2], rtol=1e-5, atol=1e-5)
    # The result comes from a batch-of-one apply: compare it with that, not
    # with batch[2], whose logits may differ in the last bits.
    result = spec.reference_result(x[2])
    probs = reference.softmax(spec.reference(x[2]))
    assert result.top == int(np.argmax(batch[2]))
    np.testing.assert_allclose(result.scores, np.sort(probs)[::-1][:3], rtol=1e-6)


def test_training_is_deterministic_and_reproduces_the_shipped_model(spec):
    first = digits.train()
    second = digits.train()
    assert digits.params_bytes(first.params) == digits.params_bytes(second.params)
    assert first.accuracy >= MIN_ACCURACY
    meta = spec.metadata["about"]
    assert first.accuracy == pytest.approx(meta["heldout_accuracy"])
    # Same predictions as the shipped weights (bytes may differ on another CPU/XLA build).
    x, _ = spec.heldout()
    retrained = np.asarray(spec.module.apply(first.params, spec.preprocess(x)))
    assert np.array_equal(retrained.argmax(axis=1), spec.reference(x).argmax(axis=1))


def test_client_imports_do_not_import_jax():
    code = (
        "import sys, pyflaxdev, pyflaxdev.cli, pyflaxdev.models as m; s = m.get('digits');"
        " s.heldout(); print(*(m in sys.modules for m in ('jax', 'flax', 'sklearn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
