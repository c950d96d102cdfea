"""``patches``: a small Flax CNN on 64x64 RGB patches of scikit-learn's two sample photos.

Data: ``sklearn.datasets.load_sample_images`` (``china.jpg`` and ``flower.jpg``,
427x640x3, shipped in the scikit-learn wheel: no download).  Each photo is cut
into a top and a bottom half, four classes in all; a patch is a 64x64x3 uint8
crop (height, width, channel: the layout cameras and PIL give) at a random
place inside one half, :data:`TRAIN_PER_CLASS` for training and
:data:`TEST_PER_CLASS` held out, from fixed seeds.  Preprocessing is the
kernel's ``FLAX_PRE_NORMALIZE`` per channel: float32 ``(x * 1/255 - mean[c]) /
std[c]`` with the training set's channel means and standard deviations, the
hot path of the kernel's vectorised normalisation (uint8, channel-last).

The network: three 3x3 convolutions with stride 2 (16, 32, 32 channels, relu),
a global mean over the 8x8 positions left, and a dense layer to the four
logits.  Training is deterministic: fixed PRNG key, full-batch AdamW, a fixed
number of steps.  ``scripts/train_model.py patches`` writes the zoo entry
``pyflaxdev/zoo/patches/`` (:mod:`pyflaxdev.models.classifier`), so that using
the model needs neither scikit-learn nor training.
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

NAME = "patches"
#: The zoo entry (:mod:`pyflaxdev.repository`) and the files in it the package ships.
ENTRY: Path = ZOO / NAME
WEIGHTS: Path = ENTRY / str(classifier.VERSION) / "params.msgpack"
HELDOUT: Path = ENTRY / "heldout.npz"

SIZE = 64
TRAIN_PER_CLASS = 160
TEST_PER_CLASS = 6
SPLIT_SEED = 0
INIT_SEED = 0
FEATURES = (16, 32, 32)
SCALE = 1.0 / 255.0
STEPS = 200
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
RECIPE = classifier.Recipe(STEPS, LEARNING_RATE, WEIGHT_DECAY, INIT_SEED)
POST = ("softmax", "topk")
TOPK = 2
LABELS = ("china-top", "china-bottom", "flower-top", "flower-bottom")
CLASSES = len(LABELS)


@functools.cache
def _module_class() -> type[Any]:
    import flax.linen as nn

    class PatchesCNN(nn.Module):
        """Strided 3x3 convolutions with relu, a global mean, then Dense(classes) logits."""

        features: tuple[int, ...] = FEATURES
        classes: int = CLASSES

        @nn.compact
        def __call__(self, x: Any) -> Any:
            for width in self.features:
                x = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2))(x))
            return nn.Dense(self.classes)(x.mean(axis=(1, 2)))

    return PatchesCNN


def make_module() -> Any:
    """A fresh ``PatchesCNN`` (imports Flax)."""
    return _module_class()()


def _crops(
    photo: npt.NDArray[np.uint8], count: int, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    top = rng.integers(0, photo.shape[0] - SIZE + 1, count)
    left = rng.integers(0, photo.shape[1] - SIZE + 1, count)
    return np.stack([photo[t : t + SIZE, u : u + SIZE] for t, u in zip(top, left, strict=True)])


@functools.cache
def load_split() -> tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.int64]
]:
    """``(x_train, y_train, x_test, y_test)``; x uint8 ``[n, 64, 64, 3]``, y int64.

    Training and held-out crops come from the same halves with different
    seeds: they may overlap in place, as photos of one scene do.
    """
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(p, dtype=np.uint8) for p in load_sample_images().images]
    halves = []
    for photo in photos:
        mid = photo.shape[0] // 2
        halves += [photo[:mid], photo[mid:]]
    rng = np.random.default_rng(SPLIT_SEED)
    xs, ys = [], []
    for n in (TRAIN_PER_CLASS, TEST_PER_CLASS):
        x = np.concatenate([_crops(h, n, rng) for h in halves])
        xs.append(np.ascontiguousarray(x))
        ys.append(np.repeat(np.arange(CLASSES, dtype=np.int64), n))
    for a in (*xs, *ys):
        a.setflags(write=False)
    return xs[0], ys[0], xs[1], ys[1]


def normalization_for(x_train: npt.NDArray[np.uint8]) -> Normalization:
    """Per-channel float32 mean/std of ``x * SCALE`` over the training set."""
    f = x_train.reshape(-1, 3).astype(np.float32) * np.float32(SCALE)
    mean = f.astype(np.float64).mean(axis=0).astype(np.float32)
    std = f.astype(np.float64).std(axis=0).astype(np.float32)
    return Normalization(float(np.float32(SCALE)), mean, std)


def train(steps: int = STEPS, learning_rate: float = LEARNING_RATE) -> TrainResult:
    """Train deterministically (same data, seed and steps give the same bytes)."""
    split = load_split()
    recipe = dataclasses.replace(RECIPE, steps=steps, learning_rate=learning_rate)
    return classifier.train(make_module(), split, normalization_for(split[0]), recipe)


def save(result: TrainResult) -> None:
    """Write the weights, the metadata and the held-out patches next to this module."""
    config = {
        "name": NAME,
        "module": f"{__name__}:make_module",
        "input": {"shape": [SIZE, SIZE, 3], "dtype": "uint8"},
        "output": {"shape": [CLASSES]},
        "post": list(POST),
        "topk": TOPK,
        "labels": list(LABELS),
        "about": {
            "architecture": {
                "module": "PatchesCNN",
                "features": list(FEATURES),
                "classes": CLASSES,
            },
            "data": {
                "source": "sklearn.datasets.load_sample_images (china.jpg, flower.jpg)",
                "classes": "top and bottom half of each photo",
                "train_per_class": TRAIN_PER_CLASS,
                "test_per_class": TEST_PER_CLASS,
                "seed": SPLIT_SEED,
            },
        },
    }
    classifier.save(result, ENTRY, load_split(), config, RECIPE)


def spec() -> ModelSpec:
    """The shipped ``patches`` model: its zoo entry (weights load lazily)."""
    from pyflaxdev import repository

    return repository.load(ENTRY)
