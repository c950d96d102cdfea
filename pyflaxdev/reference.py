"""numpy references for the module's pre- and postprocessing.

For comparing the device's results with in-process computation (tests, bench).
:func:`normalize` is bit-exact with the kernel by construction (same float32
operations in the same order).  :func:`softmax` follows the kernel's recipe
(subtract the max, float32 exp, sum in double) but the kernel's ``expf`` is its
own, so compare probabilities with a tolerance of a few float32 ulps.
:func:`topk` uses the kernel's order: highest first, ties by ascending index,
NaN below every number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pyflaxdev.results import Result, TopK
from pyflaxdev.spec import Normalization

__all__ = ["normalize", "pool", "postprocess", "softmax", "topk"]


def normalize(x: npt.ArrayLike, norm: Normalization) -> npt.NDArray[np.float32]:
    """float32 ``(x * scale - mean[i % count]) / std[i % count]``, any leading batch dims.

    ``norm.mean`` applies to the trailing elements of each sample: with
    ``count`` pairs, the sample's flat element ``i`` uses pair ``i % count``.
    """
    a = np.asarray(x)
    mean = np.asarray(norm.mean, dtype=np.float32).ravel()
    std = np.asarray(norm.std, dtype=np.float32).ravel()
    count = mean.size
    flat = a.astype(np.float32).reshape(-1, count)  # per-pair columns (count divides the sample)
    out = (flat * np.float32(norm.scale) - mean) / std
    return out.reshape(a.shape).astype(np.float32, copy=False)


def softmax(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Softmax over the last axis: max subtracted in float32, float32 exp, sum in double."""
    a = np.asarray(x, dtype=np.float32)
    d = a - a.max(axis=-1, keepdims=True)
    e = np.exp(d.astype(np.float64)).astype(np.float32)
    s = e.astype(np.float64).sum(axis=-1, keepdims=True)
    out: npt.NDArray[np.float32] = (e.astype(np.float64) / s).astype(np.float32)
    return out


def topk(scores: npt.ArrayLike, k: int) -> TopK:
    """The ``k`` largest of a float32 vector, in the kernel's order."""
    s = np.asarray(scores, dtype=np.float32).ravel()
    nan = np.isnan(s)
    key = np.where(nan, np.float32(0), -s)
    order = np.lexsort((np.arange(s.size), key, nan))[:k]
    return TopK(indices=order.astype(np.int64), scores=s[order].copy())


def postprocess(logits: npt.ArrayLike, post: Sequence[str], k: int = 0) -> Result:
    """Apply a post chain (``"softmax"``, ``"topk"``) to one sample's output."""
    v = np.asarray(logits, dtype=np.float32).ravel()
    for i, op in enumerate(post):
        if op == "softmax":
            v = softmax(v)
        elif op == "topk":
            if i != len(post) - 1:
                raise ValueError("topk must end the post chain")
            return topk(v, k)
        else:
            raise ValueError(f"unknown post op {op!r}")
    return v


def pool(
    output: npt.ArrayLike, mask: npt.ArrayLike | None, post: Sequence[str]
) -> npt.NDArray[np.float32]:
    """A ``mean_pool`` / ``l2_normalize`` chain on one ``[T, D]`` output, in float64 as the
    kernel: the mean of the rows whose ``mask`` is non-zero (every row without a mask),
    then division by the Euclidean norm (a zero vector stays zero)."""
    v = np.asarray(output, dtype=np.float64)
    for op in post:
        if op == "mean_pool":
            keep = np.ones(v.shape[0], bool) if mask is None else np.asarray(mask).ravel() != 0
            v = v[keep].sum(axis=0) / max(int(keep.sum()), 1)
        elif op == "l2_normalize":
            n = float(np.sqrt((v * v).sum()))
            v = v / n if n > 0 else v
        else:
            raise ValueError(f"unknown post op {op!r}")
    return v.astype(np.float32).ravel()
