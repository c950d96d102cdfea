"""``digits``: a Flax MLP (64 -> 128 -> 64 -> 10, relu) on scikit-learn's 8x8 digits.

Data: ``sklearn.datasets.load_digits`` (bundled, no download), pixels 0..16 as
uint8 ``[8, 8]``; a stratified split with :data:`TEST_SIZE` held-out images and
a fixed ``random_state``.  Preprocessing is the kernel's ``FLAX_PRE_NORMALIZE``
per feature: float32 ``(x * 1/16 - mean[i]) / std[i]`` with the training set's
mean and std (std 0 -> 1).  Training is deterministic: fixed PRNG key,
full-batch AdamW, a fixed number of steps.

``scripts/train_model.py digits`` calls :func:`train` and :func:`save`; the package
ships the result as the zoo entry ``pyflaxdev/zoo/digits/`` (config, labels,
held-out images, version 1's weights: :mod:`pyflaxdev.models.classifier`), so
that using the model needs neither scikit-learn (slow to import in the test VM)
nor training.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.models import ZOO, classifier
from pyflaxdev.models.classifier import TrainResult, params_bytes
from pyflaxdev.models.spec import ModelSpec
from pyflaxdev.spec import Normalization

__all__ = ["TrainResult", "load_split", "make_module", "params_bytes", "save", "spec", "train"]

NAME = "digits"
#: The zoo entry (:mod:`pyflaxdev.repository`) and the files in it the package ships.
ENTRY: Path = ZOO / NAME
WEIGHTS: Path = ENTRY / str(classifier.VERSION) / "params.msgpack"
HELDOUT: Path = ENTRY / "heldout.npz"

TEST_SIZE = 360
SPLIT_SEED = 0
INIT_SEED = 0
HIDDEN = (128, 64)
CLASSES = 10
SCALE = 1.0 / 16.0
STEPS = 300
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
RECIPE = classifier.Recipe(STEPS, LEARNING_RATE, WEIGHT_DECAY, INIT_SEED)
POST = ("softmax", "topk")
TOPK = 3
# Class names, uploaded as the device model's labels: results read "seven", not "7".
LABELS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@functools.cache
def _module_class() -> type[Any]:
    import flax.linen as nn

    class DigitsMLP(nn.Module):
        """MLP on flattened inputs: Dense(hidden...) with relu, then Dense(classes) logits."""

        hidden: tuple[int, ...] = HIDDEN
        classes: int = CLASSES

        @nn.compact
        def __call__(self, x: Any) -> Any:
            x = x.reshape((x.shape[0], -1))
            for width in self.hidden:
                x = nn.relu(nn.Dense(width)(x))
            return nn.Dense(self.classes)(x)

    return DigitsMLP


def make_module() -> Any:
    """A fresh ``DigitsMLP`` (imports Flax)."""
    return _module_class()()


@functools.cache
def load_split() -> tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.int64]
]:
    """``(x_train, y_train, x_test, y_test)``; x uint8 ``[n, 8, 8]`` (0..16), y int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = data.images.astype(np.uint8)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y
    )
    for a in (x_train, y_train, x_test, y_test):
        a.setflags(write=False)
    return x_train, y_train, x_test, y_test


def normalization_for(x_train: npt.NDArray[np.uint8]) -> Normalization:
    """Per-feature float32 mean/std of ``x * SCALE`` over the training set (std 0 -> 1)."""
    f = x_train.reshape(len(x_train), -1).astype(np.float32) * np.float32(SCALE)
    mean = f.astype(np.float64).mean(axis=0).astype(np.float32)
    std = f.astype(np.float64).std(axis=0).astype(np.float32)
    std[~(std > 1e-6)] = 1.0
    return Normalization(float(np.float32(SCALE)), mean, std)


def train(steps: int = STEPS, learning_rate: float = LEARNING_RATE) -> TrainResult:
    """Train deterministically (same data, seed and steps give the same bytes)."""
    split = load_split()
    recipe = dataclasses.replace(RECIPE, steps=steps, learning_rate=learning_rate)
    return classifier.train(make_module(), split, normalization_for(split[0]), recipe)


def save(result: TrainResult) -> None:
    """Write the weights, the metadata and the held-out images next to this module."""
    config = {
        "name": NAME,
        "module": f"{__name__}:make_module",
        "input": {"shape": [8, 8], "dtype": "uint8"},
        "output": {"shape": [CLASSES]},
        "post": list(POST),
        "topk": TOPK,
        "labels": list(LABELS),
        "about": {
            "architecture": {"module": "DigitsMLP", "hidden": list(HIDDEN), "classes": CLASSES},
            "split": {"test_size": TEST_SIZE, "random_state": SPLIT_SEED, "stratify": True},
        },
    }
    classifier.save(result, ENTRY, load_split(), config, RECIPE)


def spec() -> ModelSpec:
    """The shipped ``digits`` model: its zoo entry (weights load lazily)."""
    from pyflaxdev import repository

    return repository.load(ENTRY)
