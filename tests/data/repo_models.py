"""The modules of the test model repositories (tests/host and tests/vm test_repository.py).

Copied as ``model.py`` into each repository entry the tests write; ``linen`` and
``make_nnx`` are the factories their ``config.toml`` names.
"""

import flax.linen as nn
from flax import nnx


class Linen(nn.Module):
    """4 values to 3 logits."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


class Nnx(nnx.Module):
    """4 values to 5."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.a = nnx.Linear(4, 16, rngs=rngs)
        self.b = nnx.Linear(16, 5, rngs=rngs)

    def __call__(self, x):
        return self.b(nnx.tanh(self.a(x)))


def linen() -> Linen:
    return Linen()


def make_nnx() -> Nnx:
    return Nnx(nnx.Rngs(0))
