"""``null``: the identity model, for measuring the transport itself.

Input float32 ``[64]`` (:data:`SIZE`), output float32 ``[64]``: no
normalisation, no post chain, no labels, so a client gets back exactly the
bytes it sent.  The spec says ``identity``: the worker (``flaxdev serve null``)
and the socket servers (``flaxdev sockserve null``) copy inputs to outputs
with :class:`~pyflaxdev.runner.CopyRunner`; nothing imports JAX and nothing
is compiled.  The held-out inputs are :data:`HELDOUT_COUNT` deterministic
random vectors (labels all 0: there are no classes).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from pyflaxdev.models.spec import ModelSpec
from pyflaxdev.spec import TensorSpec

__all__ = ["HELDOUT_COUNT", "SIZE", "spec"]

NAME = "null"
SIZE = 64
HELDOUT_COUNT = 256
HELDOUT_SEED = 0


def _nothing() -> None:
    """The identity model has no Flax module and no parameters."""


@functools.cache
def _heldout() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(HELDOUT_SEED)
    x = rng.standard_normal((HELDOUT_COUNT, SIZE), dtype=np.float32)
    y = np.zeros(HELDOUT_COUNT, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def spec() -> ModelSpec:
    """The built-in ``null`` model."""
    shape = TensorSpec((SIZE,), np.dtype(np.float32))
    return ModelSpec(
        name=NAME,
        input=shape,
        output=shape,
        normalize=None,
        post=(),
        topk=0,
        labels=(),
        make_module=_nothing,
        load_params=_nothing,
        load_heldout=_heldout,
        metadata={"identity": True},
        identity=True,
    )
