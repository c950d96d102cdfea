"""WordPiece in process: what the kernel's tokeniser writes, by Hugging Face ``tokenizers``.

The module's tokeniser (``FLAX_PRE_TOKENIZE``, docs/tokenizer.md) gives the ids
and the attention mask of ``BertWordPieceTokenizer(vocab, lowercase=True)`` with
truncation and padding to the model's length; :func:`tokenize` computes the same
``[n, 2, max_len]`` int32 in process, for references and accuracy checks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["tokenize"]


@functools.cache
def _tokenizer(vocab: str, max_len: int) -> Any:
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(vocab, lowercase=True)
    tok.enable_truncation(max_len)
    tok.enable_padding(length=max_len)
    return tok


def tokenize(vocab: str | Path, texts: Sequence[str], max_len: int) -> npt.NDArray[np.int32]:
    """int32 ``[n, 2, max_len]``: ids and mask of each text, as the kernel writes them."""
    encs = _tokenizer(str(Path(vocab).resolve()), max_len).encode_batch(list(texts))
    out = np.zeros((len(encs), 2, max_len), dtype=np.int32)
    for i, enc in enumerate(encs):
        out[i, 0] = enc.ids
        out[i, 1] = enc.attention_mask
    return out
