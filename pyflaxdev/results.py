"""Decoding of ``FLAX_IOC_INFER`` results, binary and text (and encoding, binary).

A chain ending in ``topk``, ``argmax`` or ``threshold`` yields a ``struct
flax_topk_result`` of a variable number of entries (k; 1; every score >= the
threshold, by ascending index), decoded to :class:`Classes`; any other chain
yields float32 values (the output's elements, or D after ``mean_pool``),
decoded to a numpy vector.  :func:`parse_text` reads the ``FLAX_INFER_TEXT``
form back.  :func:`encode_classes` builds the binary struct, for servers that
answer in the module's format (:mod:`pyflaxdev.sockserve`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pyflaxdev.errors import FlaxError, InvalidArgument
from pyflaxdev.uapi import ffi

__all__ = [
    "Classes",
    "Result",
    "TopK",
    "decode_classes",
    "decode_topk",
    "decode_vector",
    "encode_classes",
    "parse_text",
    "parse_text_classes",
    "parse_text_vector",
]

# Word (u32) positions, from the compiled header; every field is a __u32.
_TOPK_ENTRIES_AT: int = ffi.offsetof("struct flax_topk_result", "entries")
_COUNT_WORD: int = ffi.offsetof("struct flax_topk_result", "count") // 4
_ENTRY_BYTES: int = ffi.sizeof("struct flax_topk_entry")
_ENTRY_WORDS: int = _ENTRY_BYTES // 4
_INDEX_WORD: int = ffi.offsetof("struct flax_topk_entry", "index") // 4
_SCORE_WORD: int = ffi.offsetof("struct flax_topk_entry", "score") // 4


def classes_size(entries: int) -> int:
    """Bytes of a ``struct flax_topk_result`` with ``entries`` entries."""
    return _TOPK_ENTRIES_AT + entries * _ENTRY_BYTES


@dataclass(frozen=True, eq=False)
class Classes:
    """Classes of one result: top-k (highest score first, ties by ascending index),
    argmax (one entry) or threshold (every class at or above it, by ascending index).

    Iterating yields ``(index, score)`` pairs; ``scores`` are probabilities after
    softmax.  ``labels`` are the model's class names when it has any
    (``labels[i]`` names class ``i``), else None.
    """

    indices: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    labels: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return iter(self.pairs())

    def __getitem__(self, i: int) -> tuple[int, float]:
        return int(self.indices[i]), float(self.scores[i])

    def pairs(self) -> list[tuple[int, float]]:
        """The result as a list of ``(index, score)``."""
        return [(int(i), float(s)) for i, s in zip(self.indices, self.scores, strict=True)]

    def label(self, index: int) -> str:
        """The name of class ``index``: its label, or the index in decimal (as the module
        prints it)."""
        labels = self.labels or ()
        return labels[index] if 0 <= index < len(labels) else str(index)

    @property
    def names(self) -> list[str]:
        """The entries' names, in result order."""
        return [self.label(int(i)) for i in self.indices]

    def labelled(self, labels: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """``(label, score)`` pairs, with ``labels`` or the model's; unlabelled indices print
        as numbers."""
        if labels is not None:
            return [(labels[i] if i < len(labels) else str(i), s) for i, s in self.pairs()]
        return [(self.label(i), s) for i, s in self.pairs()]

    def with_labels(self, labels: Sequence[str] | None) -> Classes:
        """The same result carrying ``labels``."""
        return Classes(self.indices, self.scores, tuple(labels) if labels else None)

    @property
    def top(self) -> int:
        """The first entry's class index (the best one for top-k and argmax)."""
        if not len(self.indices):
            raise IndexError("empty result: no class reached the threshold")
        return int(self.indices[0])

    @property
    def top_label(self) -> str:
        """The first entry's name."""
        return self.label(self.top)

    def __repr__(self) -> str:
        inner = ", ".join(f"({self.label(i)!s}, {s:.6g})" for i, s in self.pairs())
        return f"Classes([{inner}])"


#: The name of :class:`Classes` before argmax and threshold existed.
TopK = Classes

Result = Classes | npt.NDArray[np.float32]


def decode_classes(
    data: bytes | memoryview, max_entries: int, labels: Sequence[str] | None = None
) -> Classes:
    """Decode a ``struct flax_topk_result`` of at most ``max_entries`` entries.

    ``data`` must be exactly the struct with its ``count`` entries (the bytes
    INFER reports as written).
    """
    if len(data) < _TOPK_ENTRIES_AT or len(data) % 4:
        raise FlaxError(f"class result of {len(data)} bytes is not a flax_topk_result")
    words = np.frombuffer(data, dtype=np.uint32)
    count = int(words[_COUNT_WORD])
    if count > max_entries or len(data) != classes_size(count):
        raise FlaxError(
            f"class result claims {count} entries (at most {max_entries}) in {len(data)} bytes"
        )
    first = _TOPK_ENTRIES_AT // 4
    entries = words[first : first + count * _ENTRY_WORDS]
    return Classes(
        indices=entries[_INDEX_WORD::_ENTRY_WORDS].astype(np.int64),
        scores=entries[_SCORE_WORD::_ENTRY_WORDS].view(np.float32).copy(),
        labels=tuple(labels) if labels else None,
    )


def encode_classes(indices: npt.ArrayLike, scores: npt.ArrayLike) -> npt.NDArray[np.uint32]:
    """``struct flax_topk_result`` words for ``indices`` and ``scores`` of shape ``[..., k]``.

    Returns uint32 ``[..., words]`` (native byte order, as the module writes it):
    the bytes of each row (``out[i].tobytes()``) are one result with ``k``
    entries, as :func:`decode_classes` reads it.
    """
    idx = np.asarray(indices)
    sc = np.asarray(scores, dtype=np.float32)
    if idx.shape != sc.shape or idx.ndim < 1:
        raise InvalidArgument(
            f"indices {list(idx.shape)} and scores {list(sc.shape)} must have one shape [..., k]"
        )
    k = idx.shape[-1]
    if k and (int(idx.min()) < 0 or int(idx.max()) > 0xFFFFFFFF):
        raise InvalidArgument("class indices must fit in a u32")
    first = _TOPK_ENTRIES_AT // 4
    out = np.zeros((*idx.shape[:-1], classes_size(k) // 4), dtype=np.uint32)
    out[..., _COUNT_WORD] = k
    entries = out[..., first:]
    entries[..., _INDEX_WORD::_ENTRY_WORDS] = idx
    entries[..., _SCORE_WORD::_ENTRY_WORDS] = sc.view(np.uint32)
    return out


def decode_topk(data: bytes | memoryview, k: int) -> Classes:
    """Decode a ``struct flax_topk_result`` of at most ``k`` entries (see
    :func:`decode_classes`)."""
    return decode_classes(data, k)


def decode_vector(data: bytes | memoryview, count: int) -> npt.NDArray[np.float32]:
    """Decode ``count`` float32 values (a chain without a class step)."""
    if len(data) != count * 4:
        raise FlaxError(f"result has {len(data)} bytes, expected {count} float32 values")
    return np.frombuffer(data, dtype=np.float32).copy()


def parse_text_classes(text: str) -> list[tuple[str, float]]:
    """Parse the text form of a class result: ``"<label>\\t<score>\\n"`` per entry."""
    out: list[tuple[str, float]] = []
    for line in text.splitlines():
        label, sep, score = line.rpartition("\t")
        if not sep:
            raise FlaxError(f"text result line {line!r} has no tab")
        out.append((label, float(score)))
    return out


def parse_text_vector(text: str) -> npt.NDArray[np.float32]:
    """Parse the text form of a vector: values separated by spaces, then a newline."""
    return np.array([float(v) for v in text.split()], dtype=np.float32)


def parse_text(text: str, *, classes: bool) -> list[tuple[str, float]] | npt.NDArray[np.float32]:
    """Parse a ``FLAX_INFER_TEXT`` result: ``(label, score)`` pairs for a class result,
    else a float32 vector."""
    return parse_text_classes(text) if classes else parse_text_vector(text)
