"""Every accepted postprocessing chain through the real module, against numpy and jax.nn.

A worker that echoes its input (``apply = identity``) makes the model's output
the client's vector, so the module's postprocessing is the only thing between
the input and the result.  Vectors longer than FLAX_FPU_CHUNK (4096) are used
so that the chunked passes in the kernel are exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import pytest

import pyflaxdev

N = 10_000  # > 2 * FLAX_FPU_CHUNK
SOFTMAX_ATOL, SOFTMAX_RTOL = 1e-6, 1e-5


@pytest.fixture
def echo(dev: pyflaxdev.Device) -> Iterator[Any]:
    """Create a model with the given chain, serve it with the identity, destroy it after."""
    names: list[str] = []
    handles: list[Any] = []

    def make(name: str, out_shape: tuple[int, ...], **kwargs: Any) -> pyflaxdev.Model:
        model = dev.create_model(name, out_shape, np.float32, out_shape, nslots=4, **kwargs)
        names.append(name)
        cm = pyflaxdev.serving(lambda p, x: x, None, model=name, batch_sizes=(1,))
        cm.__enter__()
        handles.append(cm)
        return model

    yield make
    for cm in reversed(handles):
        cm.__exit__(None, None, None)
    for name in names:
        dev.destroy_model(name)


def _vec(seed: int, scale: float, n: int = N) -> np.ndarray[Any, Any]:
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


def test_softmax_and_log_softmax_long_vectors(echo: Any) -> None:
    sm = echo("sm", (N,), post=("softmax",))
    lsm = echo("lsm", (N,), post=("log_softmax",))
    for seed, scale in ((1, 1.0), (2, 30.0), (3, 1e4)):
        x = _vec(seed, scale)
        want = np.asarray(jax.nn.softmax(x.astype(np.float64)))
        np.testing.assert_allclose(sm.infer(x), want, atol=SOFTMAX_ATOL, rtol=SOFTMAX_RTOL)
        want_log = np.asarray(jax.nn.log_softmax(x.astype(np.float64)))
        got_log = lsm.infer(x)
        finite = want_log > -80  # where float32 keeps digits of a log-probability
        np.testing.assert_allclose(got_log[finite], want_log[finite], rtol=1e-5, atol=1e-5)
    # NaN in: NaN out (documented), never a crash.
    x = _vec(4, 1.0)
    x[17] = np.nan
    assert np.isnan(sm.infer(x)).all()


def test_topk_and_argmax_with_ties(echo: Any) -> None:
    tk = echo("tk", (N,), post=("softmax", "topk"), topk=64)
    sm = echo("sm2", (N,), post=("softmax",))
    am = echo("am", (N,), post=("argmax",))
    x = _vec(5, 3.0)
    x[[100, 5000, 9999]] = x.max() + 1  # a three-way tie across chunks
    probs = np.asarray(jax.nn.softmax(x.astype(np.float64)))
    r = tk.infer(x)
    assert list(r.indices[:3]) == [100, 5000, 9999]
    # The selection is numpy's stable order over the very float32 scores the
    # module computed (softmax rounding can tie distinct logits).
    p32 = sm.infer(x)
    order = np.argsort(-p32, kind="stable")[:64]
    np.testing.assert_array_equal(r.indices, order)
    np.testing.assert_array_equal(r.scores, p32[order])
    np.testing.assert_allclose(r.scores, probs[order], atol=SOFTMAX_ATOL, rtol=SOFTMAX_RTOL)
    a = am.infer(x)
    assert len(a) == 1 and a.top == int(np.argmax(x)) == 100
    assert a.scores[0] == x[100]


def test_sigmoid_threshold(echo: Any, dev: pyflaxdev.Device) -> None:
    th = echo("th", (N,), post=("sigmoid", "threshold"), threshold=0.9)
    sg = echo("sg", (N,), post=("sigmoid",))
    x = _vec(6, 4.0)
    want = np.asarray(jax.nn.sigmoid(x.astype(np.float64)))
    np.testing.assert_allclose(sg.infer(x), want, rtol=1e-6, atol=1e-7)
    r = th.infer(x)
    got_sig = sg.infer(x)
    sel = np.flatnonzero(got_sig >= np.float32(0.9))
    np.testing.assert_array_equal(r.indices, sel)  # ascending index
    np.testing.assert_array_equal(r.scores, got_sig[sel])
    # The threshold is a live setting: a higher one selects fewer.
    (pyflaxdev.sysfs.sysfs_root() / "models" / "th" / "threshold").write_text("0.99\n")
    r2 = dev.model("th").infer(x)
    np.testing.assert_array_equal(r2.indices, np.flatnonzero(got_sig >= np.float32(0.99)))


def test_mean_pool_l2_normalize(echo: Any) -> None:
    t, d = 50, 384
    pool = echo("pool", (t, d), post=("mean_pool", "l2_normalize"))
    raw = echo("poolraw", (t, d), post=("mean_pool",))
    l2 = echo("l2", (N,), post=("l2_normalize",))
    x = _vec(7, 2.0, t * d).reshape(t, d)
    mean = x.astype(np.float64).mean(axis=0)  # no mask: every row counts
    np.testing.assert_allclose(raw.infer(x), mean, rtol=1e-6, atol=1e-7)
    emb = pool.infer(x)
    np.testing.assert_allclose(emb, mean / np.linalg.norm(mean), rtol=1e-6, atol=1e-7)
    assert abs(float(np.linalg.norm(emb.astype(np.float64))) - 1.0) < 1e-6
    v = _vec(8, 5.0)
    np.testing.assert_allclose(
        l2.infer(v), v.astype(np.float64) / np.linalg.norm(v.astype(np.float64)), rtol=1e-6
    )


def test_text_form_of_each_kind(echo: Any) -> None:
    """Vectors print as space-separated %.6g, selections as index<TAB>score lines."""
    vec = echo("tv", (5,), post=())
    sel = echo("ts", (5,), post=("topk",), topk=2)
    x = np.array([1.5, -2.25e-7, 3e10, 0.0, -1.0], np.float32)
    assert vec.infer_text(x) == " ".join(f"{float(v):.6g}" for v in x) + "\n"
    assert sel.infer_text(x) == f"2\t{float(x[2]):.6g}\n0\t{float(x[0]):.6g}\n"
    sel.set_labels(["a", "b", "c", "d", "e"])
    assert sel.infer_text(x) == f"c\t{float(x[2]):.6g}\na\t{float(x[0]):.6g}\n"


def test_bad_chains_refused(dev: pyflaxdev.Device) -> None:
    """Chains outside the accepted set are EINVAL from the module itself."""
    bad = [
        ("topk", "softmax"),
        ("sigmoid", "topk"),
        ("l2_normalize", "mean_pool"),
        ("threshold",),
        ("softmax", "softmax"),
    ]
    for post in bad:
        with pytest.raises(pyflaxdev.InvalidArgument):
            dev.create_model("bad", (8,), np.float32, (8,), post=post, topk=2, validate=False)
    with pytest.raises(pyflaxdev.InvalidArgument):  # mean_pool needs (T, D)
        dev.create_model("bad", (8,), np.float32, (8,), post=("mean_pool",), validate=False)
    with pytest.raises(pyflaxdev.InvalidArgument):  # k > classes
        dev.create_model("bad", (8,), np.float32, (8,), post=("topk",), topk=9, validate=False)
