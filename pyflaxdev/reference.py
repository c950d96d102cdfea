"""numpy references for the module's pre- and postprocessing.

For comparing the device's results with in-process computation (tests, bench).
:func:`normalize` is bit-exact with the kernel by construction (same float32
operations in the same order).  :func:`softmax` follows the kernel's recipe
(subtract the max, float32 exp, sum in double) but the kernel's ``expf`` is its
own, so compare probabilities with a tolerance of a few float32 ulps.
:func:`topk` uses the kernel's order: highest first, ties by ascending index,
NaN below every number.  :func:`topk_rows`, :func:`postprocess_rows` and
:func:`pool_rows` do the same for every row of a batch at once (for
in-process servers, :mod:`pyflaxdev.pipeline`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pyflaxdev.results import Result, TopK
from pyflaxdev.spec import Normalization

__all__ = [
    "normalize",
    "pool",
    "pool_rows",
    "postprocess",
    "postprocess_rows",
    "softmax",
    "topk",
    "topk_rows",
]


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


def topk_rows(
    scores: npt.ArrayLike, k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """:func:`topk` of each row of ``scores`` (``[n, C]``): indices ``[n, k]`` and scores."""
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"expected [n, C] scores, got shape {list(s.shape)}")
    nan = np.isnan(s)
    key = np.where(nan, np.float32(0), -s)
    index = np.broadcast_to(np.arange(s.shape[1]), s.shape)
    order = np.lexsort((index, key, nan), axis=-1)[:, :k]
    return order.astype(np.int64), np.take_along_axis(s, order, axis=-1)


def postprocess_rows(
    logits: npt.ArrayLike, post: Sequence[str], k: int = 0
) -> npt.NDArray[np.float32] | tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """:func:`postprocess` of each sample of ``logits`` (``[n, ...]``): float32 ``[n, V]``,
    or ``(indices, scores)`` of shape ``[n, k]`` for a chain ending in ``topk``."""
    a = np.asarray(logits, dtype=np.float32)
    v = a.reshape(len(a), -1)
    for i, op in enumerate(post):
        if op == "softmax":
            v = softmax(v)
        elif op == "topk":
            if i != len(post) - 1:
                raise ValueError("topk must end the post chain")
            return topk_rows(v, k)
        else:
            raise ValueError(f"unknown post op {op!r}")
    return v


def pool_rows(
    output: npt.ArrayLike, mask: npt.ArrayLike | None, post: Sequence[str]
) -> npt.NDArray[np.float32]:
    """:func:`pool` of each sample of ``output`` (``[n, T, D]``) with its ``mask`` row
    (``[n, T]``): float32 ``[n, D]`` (``[n, T * D]`` without ``mean_pool``)."""
    v = np.asarray(output, dtype=np.float64)
    n = len(v)
    for op in post:
        if op == "mean_pool":
            keep = (
                np.ones(v.shape[:2], dtype=np.float64)
                if mask is None
                else (np.asarray(mask).reshape(n, -1) != 0).astype(np.float64)
            )
            count = np.maximum(keep.sum(axis=1), 1.0)
            v = np.einsum("nt,ntd->nd", keep, v) / count[:, None]
        elif op == "l2_normalize":
            flat = v.reshape(n, -1)
            norm = np.sqrt((flat * flat).sum(axis=1))
            v = (flat / np.where(norm > 0, norm, 1.0)[:, None]).reshape(v.shape)
        else:
            raise ValueError(f"unknown post op {op!r}")
    return v.astype(np.float32).reshape(n, -1)
