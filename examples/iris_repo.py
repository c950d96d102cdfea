"""Train a small Flax model on scikit-learn's bundled iris data and put it in a model repository.

README.md, "Serve your own model", walks through it::

    python examples/iris_repo.py REPO               # REPO/iris: config, module, version 1
    python examples/iris_repo.py REPO --version 2   # a retrained version 2 beside it

Offline: the data ships with scikit-learn.  The module is a Linen MLP trained
by plain gradient descent (no optimiser library); ``--version`` trains with
another seed and more steps, so that version 2 answers differently.  Prints
the held-out accuracy of what it saved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODEL_PY = '''"""The iris classifier: 4 measurements (cm) to 3 species logits."""

import flax.linen as nn


class Iris(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


def make():
    return Iris()
'''

CONFIG = """# flaxdev model repository entry (pyflaxdev/repository.py)
module = "model.py:make"
post = ["softmax", "topk"]
topk = 2
labels = "labels.txt"

[input]
shape = [4]
dtype = "float32"

[output]
shape = [3]

[normalize]
scale = 1.0
mean = {mean}
std = {std}

[serving]
batch_sizes = [1, 8, 32]
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="the model repository (REPO/iris is written)")
    parser.add_argument("--version", type=int, default=1, help="version to write (default 1)")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    from sklearn.datasets import load_iris

    from pyflaxdev import repository

    data = load_iris()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    train, held = order[:120], order[120:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)

    entry = args.repo / "iris"
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "model.py").write_text(MODEL_PY)
    (entry / "labels.txt").write_text("".join(f"{n}\n" for n in data.target_names))
    (entry / "config.toml").write_text(
        CONFIG.format(
            mean=[round(float(v), 6) for v in mean], std=[round(float(v), 6) for v in std]
        )
    )
    # The kernel normalises with the config's rounded values: train on the same.
    mean = np.array([round(float(v), 6) for v in mean], np.float32)
    std = np.array([round(float(v), 6) for v in std], np.float32)

    sys.path.insert(0, str(entry))
    from model import Iris  # type: ignore[import-not-found]

    module = Iris()
    xn = jnp.asarray((x - mean) / std)
    params = module.init(jax.random.PRNGKey(args.version), xn[:1])

    def loss(p: object, xb: jax.Array, yb: jax.Array) -> jax.Array:
        logits = module.apply(p, xb)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1))

    step = jax.jit(
        lambda p, xb, yb: jax.tree_util.tree_map(
            lambda w, g: w - 0.1 * g, p, jax.grad(loss)(p, xb, yb)
        )
    )
    for _ in range(300 + 100 * args.version):
        params = step(params, xn[train], y[train])
    accuracy = float(np.mean(np.asarray(module.apply(params, xn[held])).argmax(1) == y[held]))
    path = repository.save_version(entry, args.version, params)
    print(f"{path}: held-out accuracy {accuracy:.3f} ({len(held)} flowers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
