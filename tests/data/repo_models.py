"""The modules of the test model repositories (tests/host and tests/vm test_repository.py).

Copied as ``model.py`` into each repository entry the tests write; ``linen`` and
``make_nnx`` are the factories their ``config.toml`` names.
"""

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx

#: The text model's WordPiece vocabulary (vocab.txt, one token per line).
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "ran"]
VOCAB += ["on", "a", "mat", "##s", "red", ".", ",", "!"]


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


class TextBag(nn.Module):
    """Token ids and mask (int32 [2, L]) to 3 logits: the mean of the real tokens' embeddings."""

    @nn.compact
    def __call__(self, x):
        ids, mask = x[:, 0], x[:, 1].astype(jnp.float32)
        e = nn.Embed(32, 8)(ids)
        pooled = (e * mask[..., None]).sum(1) / jnp.maximum(mask.sum(1, keepdims=True), 1.0)
        return nn.Dense(3)(pooled)


def linen() -> Linen:
    return Linen()


def make_nnx() -> Nnx:
    return Nnx(nnx.Rngs(0))


def text() -> TextBag:
    return TextBag()
