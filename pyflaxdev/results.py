"""Decoding of ``FLAX_IOC_INFER`` results.

A chain ending in ``FLAX_POST_TOPK`` yields a ``struct flax_topk_result``
(decoded to :class:`TopK`); any other chain yields float32 values, one per
output element (decoded to a numpy vector).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pyflaxdev.errors import FlaxError
from pyflaxdev.uapi import ffi

__all__ = ["Result", "TopK", "decode_topk", "decode_vector"]

# Word (u32) positions, from the compiled header; every field is a __u32.
_TOPK_ENTRIES_AT: int = ffi.offsetof("struct flax_topk_result", "entries")
_COUNT_WORD: int = ffi.offsetof("struct flax_topk_result", "count") // 4
_ENTRY_WORDS: int = ffi.sizeof("struct flax_topk_entry") // 4
_INDEX_WORD: int = ffi.offsetof("struct flax_topk_entry", "index") // 4
_SCORE_WORD: int = ffi.offsetof("struct flax_topk_entry", "score") // 4


@dataclass(frozen=True, eq=False)
class TopK:
    """The top-k classes of one result, highest score first.

    Iterating yields ``(index, score)`` pairs; ``scores`` are probabilities when
    the chain applied softmax first.
    """

    indices: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return iter(self.pairs())

    def __getitem__(self, i: int) -> tuple[int, float]:
        return int(self.indices[i]), float(self.scores[i])

    def pairs(self) -> list[tuple[int, float]]:
        """The result as a list of ``(index, score)``."""
        return [(int(i), float(s)) for i, s in zip(self.indices, self.scores, strict=True)]

    def labelled(self, labels: Sequence[str]) -> list[tuple[str, float]]:
        """The result as ``(label, score)``; indices without a label print as numbers."""
        return [(labels[i] if i < len(labels) else str(i), s) for i, s in self.pairs()]

    @property
    def top(self) -> int:
        """The best class's index."""
        return int(self.indices[0])

    def __repr__(self) -> str:
        inner = ", ".join(f"({i}, {s:.6g})" for i, s in self.pairs())
        return f"TopK([{inner}])"


Result = TopK | npt.NDArray[np.float32]


def decode_topk(data: bytes | memoryview, k: int) -> TopK:
    """Decode a ``struct flax_topk_result`` of at most ``k`` entries."""
    if len(data) < _TOPK_ENTRIES_AT or len(data) % 4:
        raise FlaxError(f"top-k result of {len(data)} bytes is not a flax_topk_result")
    words = np.frombuffer(data, dtype=np.uint32)
    count = int(words[_COUNT_WORD])
    first = _TOPK_ENTRIES_AT // 4
    end = first + count * _ENTRY_WORDS
    if count > k or end > len(words):
        raise FlaxError(f"top-k result claims {count} entries (k={k}, {len(data)} bytes)")
    entries = words[first:end]
    return TopK(
        indices=entries[_INDEX_WORD::_ENTRY_WORDS].astype(np.int64),
        scores=entries[_SCORE_WORD::_ENTRY_WORDS].view(np.float32).copy(),
    )


def decode_vector(data: bytes | memoryview, count: int) -> npt.NDArray[np.float32]:
    """Decode ``count`` float32 values (a chain without top-k)."""
    if len(data) != count * 4:
        raise FlaxError(f"result has {len(data)} bytes, expected {count} float32 values")
    return np.frombuffer(data, dtype=np.float32).copy()
