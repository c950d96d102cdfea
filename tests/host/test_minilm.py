"""The ``minilm`` encoder against Hugging Face ``transformers`` on torch (CPU).

The reference is independent of this repository's code: ``transformers``'
``BertModel`` loads the same ``model.safetensors`` and its own fast tokenizer
(``tokenizer.json``) encodes the texts; mean pooling over the attention mask
and L2 normalisation are done in torch, as sentence-transformers does.  Ours
is :func:`pyflaxdev.models.minilm.embed`: ``tokenizers``' BertWordPiece (what
the kernel matches), the Flax encoder, numpy pooling.  Also checked: the
worker's length buckets give what a full-length run gives, padded with zeros.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyflaxdev import models
from pyflaxdev.buckets import Buckets, needed_length
from pyflaxdev.errors import InvalidArgument
from pyflaxdev.models import minilm
from pyflaxdev.runner import BatchRunner
from pyflaxdev.spec import TensorSpec

MIN_COSINE = 0.9999

HANDWRITTEN = [
    "",
    "Hello, world!",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The quick brown fox jumps over the lazy dog.",
    "Le café est très chaud ce matin, n'est-ce pas ?",
    "Die Straße ist naß und glatt; Übermut tut selten gut.",
    "¿Dónde está la estación de tren más cercana?",
    "東京は日本の首都です。",
    "北京欢迎你",
    "Москва — столица России.",
    "Ἐν ἀρχῇ ἦν ὁ λόγος",
    "I ❤️ emoji 😀 and flags 🇫🇷!",
    "naïve coöperation façade résumé",
    "e-mail: someone@example.com, tel. +1 (555) 010-9999",
    "3.14159 is approximately pi; e ≈ 2.71828",
    "[CLS] special [SEP] tokens [MASK] written literally",
    "MiXeD CaSe TeXt WiTh    irregular\tspacing\nand newlines",
    "antidisestablishmentarianism supercalifragilisticexpialidocious",
    "x" * 150,
    " ".join(["over-long text"] * 200),
    " ".join(f"word{i}" for i in range(400)),
]


def _corpus(n: int) -> list[str]:
    """Sentences of the GPL-3 (every Debian system has it), 3 to 60 words."""
    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    flat = " ".join(text.split())
    out = [s for s in re.split(r"(?<=[.;:])\s+", flat) if 3 <= len(s.split()) <= 60]
    return out[:n]


SENTENCES = HANDWRITTEN + _corpus(110)


@pytest.fixture(scope="module")
def reference() -> np.ndarray[Any, Any]:
    """sentence-transformers' embedding of SENTENCES, by transformers + torch."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = str(minilm.model_dir())
    torch.set_num_threads(2)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(SENTENCES), 32):
            enc = tok(
                SENTENCES[i : i + 32],
                padding=True,
                truncation=True,
                max_length=minilm.MAX_LEN,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
    return np.concatenate(out).astype(np.float64)


def test_corpus_is_large_enough() -> None:
    assert len(SENTENCES) >= 100
    lengths = minilm.tokenize(SENTENCES)[:, 1].sum(axis=1)
    assert lengths.max() == minilm.MAX_LEN  # some texts are truncated
    assert (lengths <= 16).sum() >= 10 and ((lengths > 32) & (lengths < 256)).sum() >= 10


def test_flax_encoder_matches_transformers(reference: np.ndarray[Any, Any]) -> None:
    t0 = time.perf_counter()
    ours = minilm.embed(SENTENCES, batch=16).astype(np.float64)
    seconds = time.perf_counter() - t0
    cos = (ours * reference).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    )
    diff = np.abs(ours - reference).max()
    print(
        f"\n{len(SENTENCES)} sentences: min cosine {cos.min():.9f}, max |diff| {diff:.3g},"
        f" Flax pipeline {seconds:.1f} s"
    )
    assert np.abs(np.linalg.norm(ours, axis=1) - 1).max() < 1e-5
    bad = [(SENTENCES[i][:40], float(cos[i])) for i in np.flatnonzero(cos < MIN_COSINE)]
    assert not bad, bad
    assert diff < 1e-4


def test_full_length_equals_trimmed() -> None:
    """Padding does not change an embedding: full length 256 vs the bucket."""
    texts = ["A man is eating food.", "Le café est très chaud.", ""]
    np.testing.assert_allclose(
        minilm.embed(texts, trim=False, batch=16),
        minilm.embed(texts, batch=16),
        rtol=0,
        atol=2e-6,
    )


def test_semantics() -> None:
    """Paraphrases score above unrelated pairs (a sanity check of the weights)."""
    e = minilm.embed(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "A woman is playing violin.",
            "Someone plays the violin.",
            "The stock market fell sharply today.",
        ],
        batch=16,
    )
    sim = e @ e.T
    assert min(sim[0, 1], sim[2, 3]) > max(sim[0, 2], sim[0, 4], sim[1, 3], sim[3, 4])


def test_needed_length_and_plan() -> None:
    mask = np.zeros((3, 32), np.int32)
    assert needed_length(mask) == 1
    mask[0, :5] = 1
    mask[2, :9] = 1
    assert needed_length(mask) == 9
    plan = Buckets.plan((64, 8, 16, 8), 32)
    assert plan.lengths == (8, 16, 32)
    assert plan.length_for(mask) == 16
    mask[1, 31] = 1
    assert plan.length_for(mask) == 32


def test_runner_buckets_pad_with_zeros() -> None:
    """BatchRunner with buckets: outputs equal the full-length run's on real rows, 0 after."""
    length = 32
    x = minilm.tokenize(["a short one", "another, somewhat longer sentence here", ""], length)
    spec = TensorSpec((2, length), np.dtype(np.int32))
    size = length * minilm.CONFIG.hidden
    params = minilm.load_params()
    plan = Buckets.plan((16,), length)
    bucketed = BatchRunner(minilm.encode, params, spec, size, (4,), plan)
    full = BatchRunner(minilm.encode, params, spec, size, (4,))
    rows = np.arange(3, dtype=np.intp)
    got = bucketed.run(x, rows).reshape(3, length, -1)
    want = full.run(x, rows).reshape(3, length, -1)
    assert plan.length_for(x[:, 1]) == 16
    assert not got[:, 16:].any()
    for i in range(3):
        n = int(x[i, 1].sum())
        np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=0, atol=1e-4)


def test_zoo_spec() -> None:
    spec = models.get("minilm")
    assert spec.tokenize and spec.post == ("mean_pool", "l2_normalize")
    assert spec.input == TensorSpec((2, 256), np.dtype(np.int32))
    assert spec.output == TensorSpec((256, 384), np.dtype(np.float32))
    assert spec.load_vocab is not None and spec.load_vocab().startswith(b"[PAD]\n")
    short = minilm.spec(32)
    assert short.input.shape == (2, 32) and short.output.shape == (32, 384)
    text = "A man is eating food."
    want = minilm.embed([text], 32)[0]
    np.testing.assert_allclose(short.reference_result(text), want, rtol=0, atol=2e-6)


def test_at_length() -> None:
    spec = models.get("minilm")
    assert spec.at_length(None) is spec and spec.at_length(256) is spec
    short = spec.at_length(16)
    assert short.input.shape == (2, 16) and short.output.shape == (16, 384)
    assert short.tokenizer is not None and short.tokenizer(["a b"]).shape == (1, 2, 16)
    digits = models.get("digits")
    assert digits.at_length(16) is digits  # not a text model: no length to change
    fixed = dataclasses.replace(spec, with_length=None)
    with pytest.raises(InvalidArgument, match="'minilm' has no other lengths"):
        fixed.at_length(16)
