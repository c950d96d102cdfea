"""Checks of a device top-k result against in-process probabilities (``jax.nn.softmax``)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

PROB_ATOL = 1e-6


def softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``jax.nn.softmax`` over the last axis, as float64."""
    return np.asarray(jax.nn.softmax(logits, axis=-1), dtype=np.float64)


def _expected_order(probs: np.ndarray[Any, Any], k: int) -> np.ndarray[Any, Any]:
    """Top-k indices, ties by ascending index (numpy's stable order)."""
    return np.argsort(-probs, kind="stable")[:k]


def check_topk(
    got_idx: np.ndarray[Any, Any], got_p: np.ndarray[Any, Any], probs: np.ndarray[Any, Any]
) -> None:
    """The device's indices and scores are the reference's top-k, within PROB_ATOL."""
    np.testing.assert_allclose(got_p, probs[got_idx], rtol=0, atol=PROB_ATOL)
    assert np.all(np.diff(got_p) <= 0), f"scores not descending: {got_p}"
    # Near-ties may legitimately swap; the reference order must hold wherever
    # the reference probabilities differ by more than the tolerance.
    want = _expected_order(probs, len(got_idx))
    for pos, (g, w) in enumerate(zip(got_idx, want, strict=True)):
        if g != w:
            assert abs(probs[g] - probs[w]) <= 2 * PROB_ATOL, f"rank {pos}: got {g}, want {w}"
