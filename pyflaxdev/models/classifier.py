"""What the shipped classifiers (``digits``, ``patches``) share: training, files, spec.

Each is trained deterministically at build time (fixed PRNG key, full-batch
AdamW, a fixed number of steps) on data a package ships, and the package ships
three files per model: ``<name>.msgpack`` (``flax.serialization.to_bytes`` of
the params), ``<name>_meta.json`` (shapes, the float32 normalisation constants,
post chain, labels, how it was trained, held-out accuracy and labels, the
weights' SHA-256) and ``<name>_heldout.npy`` (the held-out inputs), so that using
a model needs neither the training data's package nor training.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.models.spec import ModelSpec
from pyflaxdev.reference import normalize
from pyflaxdev.spec import Normalization, TensorSpec

__all__ = ["Files", "Recipe", "Split", "TrainResult", "load_spec", "params_bytes", "save", "train"]

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


@dataclass(frozen=True)
class Files:
    """Where a shipped model's three files live."""

    weights: Path
    meta: Path
    heldout: Path

    @classmethod
    def beside(cls, module_file: str, name: str) -> Files:
        here = Path(module_file).resolve().parent
        return cls(
            here / f"{name}.msgpack", here / f"{name}_meta.json", here / f"{name}_heldout.npy"
        )


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
    result: TrainResult, files: Files, split: Split, info: dict[str, Any], recipe: Recipe
) -> None:
    """Write the three files; ``info`` is the model-specific part of the metadata.

    ``info`` gives at least ``name``, ``input_shape``, ``input_dtype``,
    ``output_shape``, ``post``, ``topk`` and ``labels``; the normalisation,
    the recipe, held-out accuracy and labels and the weights' hash are added.
    """
    data = params_bytes(result.params)
    files.weights.write_bytes(data)
    _, _, x_test, y_test = split
    np.save(files.heldout, np.ascontiguousarray(x_test), allow_pickle=False)
    norm = result.normalize
    meta = dict(info)
    meta["normalize"] = {
        "scale": norm.scale,
        "mean": [float(v) for v in np.asarray(norm.mean).ravel()],
        "std": [float(v) for v in np.asarray(norm.std).ravel()],
    }
    meta["training"] = {**recipe.info(), "final_loss": result.final_loss}
    meta["heldout_accuracy"] = result.accuracy
    meta["heldout_labels"] = [int(v) for v in y_test]
    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
    files.meta.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def load_spec(files: Files, make_module: Callable[[], Any]) -> ModelSpec:
    """The shipped model described by ``files.meta`` (weights and held-out data load lazily)."""
    meta = json.loads(files.meta.read_text(encoding="utf-8"))
    norm = meta["normalize"]

    def load_params() -> Any:
        from flax import serialization

        return serialization.msgpack_restore(files.weights.read_bytes())

    @functools.cache
    def heldout() -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
        x = np.load(files.heldout, allow_pickle=False)
        y = np.asarray(meta["heldout_labels"], dtype=np.int64)
        x.setflags(write=False)
        y.setflags(write=False)
        return x, y

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
        load_params=load_params,
        load_heldout=heldout,
        metadata=meta,
    )
