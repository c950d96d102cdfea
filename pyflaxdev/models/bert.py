"""A BERT encoder in Flax linen, and loading Hugging Face BERT weights into it.

The module takes what a ``FLAX_PRE_TOKENIZE`` model's worker sees, int32
``[batch, 2, T]`` (row 0 the WordPiece ids, row 1 the attention mask), and
returns the last hidden states, float32 ``[batch, T, hidden]``.  ``T`` may be
any length up to ``max_len`` (the worker runs short batches at a shorter
length); rows whose mask is 0 take part in nothing but their own output.

It is BERT as ``transformers``' ``BertModel`` computes it: word + position +
token type (always type 0) embeddings and LayerNorm; per layer, self-attention
with the mask added to the scores as float32's lowest value (softmax gives the
masked keys exactly 0), output projection, residual and LayerNorm, then the
feed-forward block with exact (erf) GELU, residual and LayerNorm.  No pooler.

:func:`params_from_state_dict` maps a ``BertModel`` state dict (numpy arrays,
e.g. from ``safetensors.numpy.load_file``) to this module's parameters:
``Dense`` kernels are the transposed ``Linear`` weights.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BertConfig", "make_encoder", "params_from_state_dict"]


@dataclass(frozen=True)
class BertConfig:
    """Shape of a BERT encoder (``config.json`` of a ``BertModel``)."""

    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_position: int = 512
    type_vocab: int = 2
    eps: float = 1e-12

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.heads


@functools.cache
def _classes() -> tuple[type[Any], type[Any]]:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    class Layer(nn.Module):
        """One transformer layer (post-LayerNorm, as BERT)."""

        config: BertConfig

        @nn.compact
        def __call__(self, h: Any, bias: Any) -> Any:
            c = self.config
            b, t, _ = h.shape

            def heads(name: str) -> Any:
                return nn.Dense(c.hidden, name=name)(h).reshape(b, t, c.heads, c.head_dim)

            q, k, v = heads("query"), heads("key"), heads("value")
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.float32(np.sqrt(c.head_dim))
            probs = jax.nn.softmax(scores + bias, axis=-1)
            ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, c.hidden)
            attn = nn.Dense(c.hidden, name="attention_out")(ctx)
            h = nn.LayerNorm(epsilon=c.eps, name="attention_norm")(attn + h)
            ff = nn.Dense(c.intermediate, name="intermediate")(h)
            ff = nn.Dense(c.hidden, name="output")(jax.nn.gelu(ff, approximate=False))
            out: Any = nn.LayerNorm(epsilon=c.eps, name="output_norm")(ff + h)
            return out

    class BertEncoder(nn.Module):
        """``[batch, 2, T]`` int32 ids and mask -> ``[batch, T, hidden]`` float32."""

        config: BertConfig
        max_len: int = 512

        @nn.compact
        def __call__(self, x: Any) -> Any:
            c = self.config
            if x.ndim != 3 or x.shape[1] != 2:
                raise ValueError(f"expected [batch, 2, T] ids and mask, got {x.shape}")
            t = x.shape[2]
            if t > min(self.max_len, c.max_position):
                raise ValueError(f"length {t} exceeds max_len {min(self.max_len, c.max_position)}")
            ids = x[:, 0, :].astype(jnp.int32)
            mask = x[:, 1, :]
            init = nn.initializers.normal(0.02)
            pos = self.param("position_embeddings", init, (c.max_position, c.hidden))
            types = self.param("token_type_embeddings", init, (c.type_vocab, c.hidden))
            h = nn.Embed(c.vocab_size, c.hidden, name="word_embeddings")(ids)
            h = h + pos[None, :t, :] + types[0][None, None, :]
            h = nn.LayerNorm(epsilon=c.eps, name="embeddings_norm")(h)
            lowest = np.finfo(np.float32).min
            bias = jnp.where(mask[:, None, None, :] != 0, 0.0, lowest).astype(jnp.float32)
            for i in range(c.layers):
                h = Layer(c, name=f"layer_{i}")(h, bias)
            return h

    return Layer, BertEncoder


def make_encoder(config: BertConfig | None = None, max_len: int = 512) -> Any:
    """A ``BertEncoder`` module (imports Flax)."""
    return _classes()[1](config or BertConfig(), max_len)


def _dense(sd: Mapping[str, npt.NDArray[Any]], prefix: str) -> dict[str, npt.NDArray[np.float32]]:
    w = np.asarray(sd[f"{prefix}.weight"], dtype=np.float32)
    b = np.asarray(sd[f"{prefix}.bias"], dtype=np.float32)
    return {"kernel": np.ascontiguousarray(w.T), "bias": b}


def _norm(sd: Mapping[str, npt.NDArray[Any]], prefix: str) -> dict[str, npt.NDArray[np.float32]]:
    return {
        "scale": np.asarray(sd[f"{prefix}.weight"], dtype=np.float32),
        "bias": np.asarray(sd[f"{prefix}.bias"], dtype=np.float32),
    }


def params_from_state_dict(
    sd: Mapping[str, npt.NDArray[Any]], config: BertConfig | None = None
) -> dict[str, Any]:
    """``{"params": ...}`` for :func:`make_encoder` from a ``BertModel`` state dict.

    Keys may carry a ``bert.`` prefix.  Shapes are checked against ``config``.
    """
    c = config or BertConfig()
    sd = {k.removeprefix("bert."): v for k, v in sd.items()}

    def arr(key: str, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        a = np.asarray(sd[key], dtype=np.float32)
        if a.shape != shape:
            raise ValueError(f"{key} has shape {a.shape}, expected {shape}")
        return a

    e = "embeddings"
    p: dict[str, Any] = {
        "word_embeddings": {
            "embedding": arr(f"{e}.word_embeddings.weight", (c.vocab_size, c.hidden))
        },
        "position_embeddings": arr(f"{e}.position_embeddings.weight", (c.max_position, c.hidden)),
        "token_type_embeddings": arr(f"{e}.token_type_embeddings.weight", (c.type_vocab, c.hidden)),
        "embeddings_norm": _norm(sd, f"{e}.LayerNorm"),
    }
    for i in range(c.layers):
        L = f"encoder.layer.{i}"  # noqa: N806
        arr(f"{L}.intermediate.dense.weight", (c.intermediate, c.hidden))
        p[f"layer_{i}"] = {
            "query": _dense(sd, f"{L}.attention.self.query"),
            "key": _dense(sd, f"{L}.attention.self.key"),
            "value": _dense(sd, f"{L}.attention.self.value"),
            "attention_out": _dense(sd, f"{L}.attention.output.dense"),
            "attention_norm": _norm(sd, f"{L}.attention.output.LayerNorm"),
            "intermediate": _dense(sd, f"{L}.intermediate.dense"),
            "output": _dense(sd, f"{L}.output.dense"),
            "output_norm": _norm(sd, f"{L}.output.LayerNorm"),
        }
    return {"params": p}
