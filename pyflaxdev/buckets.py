"""Length buckets for tokenising models: run a batch only as long as its longest text.

A ``FLAX_PRE_TOKENIZE`` model's worker input is int32 ``[2, L]`` (ids, mask),
padded to ``L``.  A batch whose masks all end before a shorter bucket length
``k`` runs at ``[batch, 2, k]``; its per-token outputs ``[batch, k, D]`` are
padded back to ``[batch, L, D]`` with zero rows, which the kernel's
``mean_pool`` never reads (their mask is 0).  ``jit`` compiles each
(batch size, bucket) once.  Only models whose result does not depend on the
padding may be bucketed (a BERT encoder with an attention mask: padded keys
get exactly zero attention weight).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.errors import InvalidArgument

__all__ = ["DEFAULT_BUCKETS", "Buckets", "needed_length"]

#: Bucket lengths by default (those at or beyond the model's length are dropped).
DEFAULT_BUCKETS = (32, 64, 128, 256)


def needed_length(mask: npt.NDArray[Any]) -> int:
    """Columns needed to keep every non-zero of ``mask`` (``[n, L]``): last one + 1, at least 1."""
    cols = np.flatnonzero(np.any(mask != 0, axis=0))
    return int(cols[-1]) + 1 if cols.size else 1


@dataclass(frozen=True)
class Buckets:
    """Ascending bucket lengths; the last is the model's full length ``L``."""

    lengths: tuple[int, ...]

    @classmethod
    def plan(cls, lengths: Sequence[int], full: int) -> Buckets:
        """The lengths below ``full`` (each >= 1), then ``full``."""
        if full < 1:
            raise InvalidArgument(f"sequence length must be positive, got {full}")
        asked = sorted({int(k) for k in lengths})
        if asked and asked[0] < 1:
            raise InvalidArgument(f"bucket lengths must be positive, got {list(lengths)}")
        return cls((*(k for k in asked if k < full), full))

    @property
    def full(self) -> int:
        """The model's length ``L``."""
        return self.lengths[-1]

    def length_for(self, mask: npt.NDArray[Any]) -> int:
        """The shortest bucket that holds every row of ``mask`` (``[n, L]``)."""
        need = needed_length(mask)
        return next(k for k in self.lengths if k >= need)
