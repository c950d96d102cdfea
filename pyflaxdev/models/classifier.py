"""What the shipped classifiers (``digits``, ``patches``) share: training, and their entries.

Each is trained deterministically at build time (fixed PRNG key, full-batch
AdamW, a fixed number of steps) on data a package ships, and is shipped as an
ordinary entry of the package's model repository, ``pyflaxdev/zoo/<name>/``
(:data:`pyflaxdev.models.ZOO`, :mod:`pyflaxdev.repository`): ``config.toml``
(shapes, the float32 normalisation constants, post chain, and in ``[about]``
how it was trained, its held-out accuracy and the weights' SHA-256),
``labels.txt``, ``heldout.npz`` (held-out inputs ``x`` and labels ``y``) and
``1/params.msgpack`` (``flax.serialization.to_bytes`` of the params), so that
using a model needs neither the training data's package nor training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.reference import normalize
from pyflaxdev.spec import Normalization

__all__ = ["Recipe", "Split", "TrainResult", "params_bytes", "save", "train"]

#: The version the shipped weights are (the zoo's entries have one).
VERSION = 1

#: ``(x_train, y_train, x_test, y_test)``.
Split = tuple[npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[np.int64]]


@dataclass(frozen=True)
class TrainResult:
    """Trained parameters, the normalisation they expect, and held-out accuracy."""

    params: Any
    normalize: Normalization
    accuracy: float
    final_loss: float


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: full-batch AdamW for ``steps`` steps from ``init_seed``."""

    steps: int
    learning_rate: float
    weight_decay: float
    init_seed: int

    def info(self) -> dict[str, Any]:
        """The ``training`` entry of the metadata."""
        return {
            "optimizer": "adamw",
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "steps": self.steps,
            "init_seed": self.init_seed,
            "full_batch": True,
        }


def train(module: Any, split: Split, norm: Normalization, recipe: Recipe) -> TrainResult:
    """Full-batch AdamW on softmax cross-entropy; same inputs give the same bytes."""
    import jax
    import jax.numpy as jnp
    import optax

    x_train, y_train, x_test, y_test = split
    xs = jnp.asarray(normalize(x_train, norm))
    ys = jnp.asarray(y_train.astype(np.int32))
    params = module.init(jax.random.PRNGKey(recipe.init_seed), xs[:1])
    opt = optax.adamw(recipe.learning_rate, weight_decay=recipe.weight_decay)
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
    for _ in range(recipe.steps):
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
    result: TrainResult, entry: Path, split: Split, config: dict[str, Any], recipe: Recipe
) -> None:
    """Write the zoo entry ``entry``; ``config`` is the model-specific part of its
    ``config.toml`` (at least ``name``, ``module``, ``input``, ``output``, ``post``,
    ``topk``; ``labels`` as a list, written to ``labels.txt``; ``[about]``).  The
    normalisation, the recipe, held-out accuracy and the weights' hash are added."""
    from pyflaxdev import repository

    data = params_bytes(result.params)
    version = entry / str(VERSION)
    version.mkdir(parents=True, exist_ok=True)
    (version / "params.msgpack").write_bytes(data)
    _, _, x_test, y_test = split
    np.savez(entry / "heldout.npz", x=np.ascontiguousarray(x_test), y=y_test)
    config = dict(config)
    (entry / "labels.txt").write_text("".join(f"{v}\n" for v in config["labels"]), "utf-8")
    norm = result.normalize
    about = dict(config.pop("about", {}))
    about["training"] = {**recipe.info(), "final_loss": result.final_loss}
    about["heldout_accuracy"] = result.accuracy
    about["weights_sha256"] = hashlib.sha256(data).hexdigest()
    config.update(
        labels="labels.txt",
        heldout="heldout.npz",
        normalize={
            "scale": norm.scale,
            "mean": [float(v) for v in np.asarray(norm.mean).ravel()],
            "std": [float(v) for v in np.asarray(norm.std).ravel()],
        },
        about=about,
    )
    repository.write_config(entry, config)
