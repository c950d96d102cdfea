"""``minilm`` sentence embeddings through /dev/flax, against the in-process pipeline.

The device model tokenises in the kernel, the worker (in this process,
``pyflaxdev.serving``) runs the Flax encoder at the shortest length bucket
that holds each batch, and the kernel mean-pools and L2-normalises.  The
reference is the in-process pipeline: Hugging Face ``tokenizers`` + the same
Flax encoder + numpy pooling (``minilm.embed``), which ``make test-vm`` runs
natively on the host before the VM boots (``minilm_reference.py``).

Under software emulation one encoder call costs about a second at 8 tokens
and two at 16, so the model is created at :data:`LEN` = 16 tokens (an
over-long text is one of more than 14 word pieces, truncated by the kernel
and the reference alike), with a bucket at 8, batch size 1 only (the clients
are synchronous): two compilations.  49 of the 56 texts run at 8.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev.models import minilm

TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("FLAX_OUT", "/tmp"))
C_EXAMPLE = TOP / "examples" / "minilm_embed"
LEN = 16
BUCKETS = (8,)
TIMEOUT_MS = 600_000
MIN_COSINE = 0.9999

PARAPHRASES = [
    ("A man is eating food.", "A man eats a meal."),
    ("The cat sits on the mat.", "A cat is sitting on a rug."),
    ("It is raining today.", "Today it rains."),
    ("He plays the guitar.", "He is playing a guitar."),
]
UNRELATED = [
    ("A man is eating food.", "The stock market crashed."),
    ("The cat sits on the mat.", "Quantum physics is hard."),
    ("It is raining today.", "He plays the guitar."),
    ("A man eats a meal.", "Today it rains."),
]

SENTENCES = [
    "",
    " ",
    "Hello world.",
    "Good morning!",
    "I love you.",
    "Where is the station?",
    "The sky is blue.",
    "Dogs bark loudly.",
    "Open the door.",
    "What time is it?",
    "Thank you very much.",
    "See you tomorrow.",
    "Coffee or tea?",
    "Water boils.",
    "Birds can fly.",
    "A red car.",
    "café crème",
    "naïve résumé",
    "Über straße",
    "São Paulo",
    "Ångström",
    "façade",
    "piñata fiesta",
    "Zürich, Genève",
    "crème brûlée",
    "Dvořák",
    "東京",
    "北京欢迎你",
    "Москва",
    "Ἀθῆναι",
    "שלום",
    "مرحبا",
    "हिन्दी",
    "日本 and English",
    "Привет, world!",
    "café 東京 Москва",
    "😀 emoji",
    "🇫🇷 flag",
    "[CLS] [SEP]",
    "e-mail me",
    "3.14159",
    "MiXeD CaSe",
    "tab\tseparated",
    "A man is riding a white horse on an enclosed ground.",
    " ".join(["over-long"] * 40),
    " ".join(f"word{i}" for i in range(60)),
]
for _pair in PARAPHRASES + UNRELATED:
    SENTENCES.extend(s for s in _pair if s not in SENTENCES)


@pytest.fixture(scope="module")
def served() -> Iterator[pyflaxdev.Model]:
    """``minilm`` (L = 16) created on the device, its vocabulary uploaded, served in-thread."""
    spec = minilm.spec(LEN)
    with pyflaxdev.open() as dev:
        model = spec.create(dev, nslots=4, timeout_ms=TIMEOUT_MS)
        try:
            assert model.info.pre_op == "tokenize"
            assert model.info.input.shape == (2, LEN)
            assert model.info.output.shape == (LEN, 384)
            with spec.serving(batch_sizes=(1,), buckets=BUCKETS, startup_timeout=1800.0) as h:
                yield model
                stats = h.stats
            print(f"worker: {stats.jobs} jobs, {stats.compute_seconds:.1f} s computing")
        finally:
            dev.destroy_model(spec.name)


def _saved_reference() -> np.ndarray[Any, Any] | None:
    """The vectors ``minilm_reference.py`` saved on the host, if made from these sentences."""
    path = OUT / "minilm-reference.npz"
    if not path.exists():
        return None
    with np.load(path) as saved:
        if int(saved["max_len"]) != LEN or saved["sentences"].tolist() != SENTENCES:
            return None
        vectors: np.ndarray[Any, Any] = saved["vectors"]
        return vectors


@pytest.fixture(scope="module")
def reference(served: pyflaxdev.Model) -> np.ndarray[Any, Any]:
    """The in-process pipeline's unit vectors of SENTENCES.

    Computed natively on the host by ``make test-vm`` (``minilm_reference.py``)
    when it could be, else here, after the worker compiled.
    """
    saved = _saved_reference()
    if saved is not None:
        print(f"reference: {OUT / 'minilm-reference.npz'} (computed on the host)")
        return saved
    return minilm.embed(SENTENCES, LEN)


@pytest.fixture(scope="module")
def from_python(served: pyflaxdev.Model) -> np.ndarray[Any, Any]:
    """Each sentence through ``Model.infer`` (text in, 384 floats out)."""
    out = []
    for s in SENTENCES:
        v = np.asarray(served.infer(s))
        assert v.shape == (384,) and v.dtype == np.float32, s
        out.append(v)
    return np.stack(out)


def _cosines(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def _check(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any], what: str) -> None:
    assert got.shape == want.shape == (len(SENTENCES), 384)
    cos = _cosines(got, want)
    norms = np.linalg.norm(got.astype(np.float64), axis=1)
    print(
        f"{what}: {len(SENTENCES)} sentences, min cosine {cos.min():.9f},"
        f" max |diff| {np.abs(got - want).max():.3g}, max |norm - 1| {np.abs(norms - 1).max():.3g}"
    )
    bad = [(SENTENCES[i][:30], float(cos[i])) for i in np.flatnonzero(~(cos >= MIN_COSINE))]
    assert not bad, bad
    assert np.abs(norms - 1).max() <= 1e-5


def test_sentences_cover_the_cases() -> None:
    assert len(SENTENCES) >= 50
    lengths = minilm.tokenize(SENTENCES, LEN)[:, 1].sum(axis=1)
    assert (lengths == LEN).sum() >= 2  # over-long: truncated
    assert lengths[0] == 2  # empty: [CLS] [SEP]


def test_python_client_matches_in_process(
    from_python: np.ndarray[Any, Any], reference: np.ndarray[Any, Any]
) -> None:
    _check(from_python, reference, "python client")


def test_c_example_matches_in_process(
    served: pyflaxdev.Model, reference: np.ndarray[Any, Any]
) -> None:
    assert all("\n" not in s for s in SENTENCES)
    proc = subprocess.run(
        [str(C_EXAMPLE)],
        input="".join(s + "\n" for s in SENTENCES),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(SENTENCES)
    got = np.array([[float(v) for v in line.split()] for line in lines], dtype=np.float32)
    _check(got, reference, "C example")
    a, b = PARAPHRASES[0]
    pair = subprocess.run(
        [str(C_EXAMPLE), a, b], capture_output=True, text=True, timeout=600, check=False
    )
    assert pair.returncode == 0, pair.stderr
    ia, ib = SENTENCES.index(a), SENTENCES.index(b)
    want = float(reference[ia].astype(np.float64) @ reference[ib].astype(np.float64))
    assert abs(float(pair.stdout) - want) < 1e-4


def test_paraphrases_score_above_unrelated(from_python: np.ndarray[Any, Any]) -> None:
    def score(pair: tuple[str, str]) -> float:
        a, b = (from_python[SENTENCES.index(s)].astype(np.float64) for s in pair)
        return float(a @ b)

    para = [score(p) for p in PARAPHRASES]
    other = [score(p) for p in UNRELATED]
    print(f"paraphrases {np.round(para, 3)}, unrelated {np.round(other, 3)}")
    assert min(para) > max(other)


def test_shell_path_prints_the_vector(
    served: pyflaxdev.Model, from_python: np.ndarray[Any, Any]
) -> None:
    node = pyflaxdev.model_path(served.name)
    text = "café crème"
    proc = subprocess.run(
        ["sh", "-c", f"exec 3<>{node}; echo '{text}' >&3 && cat <&3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    values = np.array([float(v) for v in proc.stdout.split()])
    assert values.shape == (384,)
    # echo appends a newline: whitespace, so the same tokens as the text alone.
    want = from_python[SENTENCES.index(text)].astype(np.float64)
    np.testing.assert_allclose(values, want, rtol=1e-5, atol=1e-6)
