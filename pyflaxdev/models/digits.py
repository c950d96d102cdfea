"""``digits``: a Flax MLP (64 -> 128 -> 64 -> 10, relu) on scikit-learn's 8x8 digits.

Data: ``sklearn.datasets.load_digits`` (bundled, no download), pixels 0..16 as
uint8 ``[8, 8]``; a stratified split with :data:`TEST_SIZE` held-out images and
a fixed ``random_state``.  Preprocessing is the kernel's ``FLAX_PRE_NORMALIZE``
per feature: float32 ``(x * 1/16 - mean[i]) / std[i]`` with the training set's
mean and std (std 0 -> 1).  Training is deterministic: fixed PRNG key,
full-batch AdamW, a fixed number of steps.

``scripts/train_digits.py`` calls :func:`train` and :func:`save`; the package
ships ``digits.msgpack`` (``flax.serialization.to_bytes`` of the params),
``digits_meta.json`` (shapes, normalisation constants as float32 values,
labels, training settings, held-out accuracy and labels, weights' SHA-256) and
``digits_heldout.npy`` (the held-out images), so that using the model needs
neither scikit-learn (slow to import in the test VM) nor training.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.models.spec import ModelSpec
from pyflaxdev.reference import normalize
from pyflaxdev.spec import Normalization, TensorSpec

__all__ = ["TrainResult", "load_split", "make_module", "save", "spec", "train"]

NAME = "digits"
HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "digits.msgpack"
META = HERE / "digits_meta.json"
HELDOUT = HERE / "digits_heldout.npy"

TEST_SIZE = 360
SPLIT_SEED = 0
INIT_SEED = 0
HIDDEN = (128, 64)
CLASSES = 10
SCALE = 1.0 / 16.0
STEPS = 300
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
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


@dataclass(frozen=True)
class TrainResult:
    """Trained parameters, the normalisation they expect, and held-out accuracy."""

    params: Any
    normalize: Normalization
    accuracy: float
    final_loss: float


def train(steps: int = STEPS, learning_rate: float = LEARNING_RATE) -> TrainResult:
    """Train deterministically (same data, seed and steps give the same bytes)."""
    import jax
    import jax.numpy as jnp
    import optax

    x_train, y_train, x_test, y_test = load_split()
    norm = normalization_for(x_train)
    module = make_module()
    xs = jnp.asarray(normalize(x_train, norm))
    ys = jnp.asarray(y_train.astype(np.int32))
    params = module.init(jax.random.PRNGKey(INIT_SEED), xs[:1])
    opt = optax.adamw(learning_rate, weight_decay=WEIGHT_DECAY)
    state = opt.init(params)

    @jax.jit
    def step(params: Any, state: Any) -> tuple[Any, Any, Any]:
        def loss_fn(p: Any) -> Any:
            logits = module.apply(p, xs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    loss = jnp.inf
    for _ in range(steps):
        params, state, loss = step(params, state)
    params = jax.tree_util.tree_map(np.asarray, params)
    logits = np.asarray(module.apply(params, normalize(x_test, norm)))
    accuracy = float(np.mean(logits.argmax(axis=1) == y_test))
    return TrainResult(params, norm, accuracy, float(loss))


def params_bytes(params: Any) -> bytes:
    """``flax.serialization.to_bytes`` of the parameters."""
    from flax import serialization

    data: bytes = serialization.to_bytes(params)
    return data


def save(
    result: TrainResult, weights: Path = WEIGHTS, meta: Path = META, heldout: Path = HELDOUT
) -> None:
    """Write the weights, the metadata and the held-out images next to this module."""
    data = params_bytes(result.params)
    weights.write_bytes(data)
    _, _, x_test, y_test = load_split()
    np.save(heldout, np.ascontiguousarray(x_test, dtype=np.uint8), allow_pickle=False)
    info = {
        "name": NAME,
        "input_shape": [8, 8],
        "input_dtype": "uint8",
        "output_shape": [CLASSES],
        "normalize": {
            "scale": result.normalize.scale,
            "mean": [float(v) for v in result.normalize.mean],
            "std": [float(v) for v in result.normalize.std],
        },
        "post": list(POST),
        "topk": TOPK,
        "labels": list(LABELS),
        "architecture": {"module": "DigitsMLP", "hidden": list(HIDDEN), "classes": CLASSES},
        "split": {"test_size": TEST_SIZE, "random_state": SPLIT_SEED, "stratify": True},
        "training": {
            "optimizer": "adamw",
            "learning_rate": LEARNING_RATE,
            "weight_decay": WEIGHT_DECAY,
            "steps": STEPS,
            "init_seed": INIT_SEED,
            "full_batch": True,
            "final_loss": result.final_loss,
        },
        "heldout_accuracy": result.accuracy,
        "heldout_labels": [int(v) for v in y_test],
        "weights_sha256": hashlib.sha256(data).hexdigest(),
    }
    meta.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


def _load_params() -> Any:
    from flax import serialization

    return serialization.msgpack_restore(WEIGHTS.read_bytes())


@functools.cache
def _heldout() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    x = np.load(HELDOUT, allow_pickle=False)
    y = np.asarray(json.loads(META.read_text(encoding="utf-8"))["heldout_labels"], dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def spec() -> ModelSpec:
    """The shipped ``digits`` model (reads ``digits_meta.json``; weights load lazily)."""
    meta = json.loads(META.read_text(encoding="utf-8"))
    norm = meta["normalize"]
    return ModelSpec(
        name=meta["name"],
        input=TensorSpec(tuple(meta["input_shape"]), np.dtype(meta["input_dtype"])),
        output=TensorSpec(tuple(meta["output_shape"]), np.dtype(np.float32)),
        normalize=Normalization(
            float(np.float32(norm["scale"])),
            np.asarray(norm["mean"], dtype=np.float32),
            np.asarray(norm["std"], dtype=np.float32),
        ),
        post=tuple(meta["post"]),
        topk=int(meta["topk"]),
        labels=tuple(meta["labels"]),
        make_module=make_module,
        load_params=_load_params,
        load_heldout=_heldout,
        metadata=meta,
    )
