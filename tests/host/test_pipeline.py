"""The in-process device path (:class:`pyflaxdev.pipeline.Pipeline`) and its parts.

The batch forms of the references (``*_rows``) are checked row by row against
the per-sample references; :func:`encode_classes` against bytes packed by hand
and through :func:`decode_classes`; the pipeline's results against
``spec.reference_result``.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import replace

import numpy as np
import pytest

from pyflaxdev import models, reference
from pyflaxdev.errors import FlaxError, InvalidArgument
from pyflaxdev.pipeline import Pipeline
from pyflaxdev.results import decode_classes, decode_vector, encode_classes

# -- encode_classes ------------------------------------------------------------------------


def test_encode_classes_is_the_uapi_struct():
    out = encode_classes([[7, 1, 4]], [[0.75, 0.125, 0.0625]])
    assert out.dtype == np.uint32 and out.shape == (1, 8)
    packed = struct.pack("=II", 3, 0) + b"".join(
        struct.pack("=If", i, s) for i, s in [(7, 0.75), (1, 0.125), (4, 0.0625)]
    )
    assert out[0].tobytes() == packed


def test_encode_classes_round_trips_through_the_decoder():
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 1000, size=(5, 4))
    scores = rng.standard_normal((5, 4)).astype(np.float32)
    scores[0, 0] = np.nan
    rows = encode_classes(idx, scores)
    for i in range(5):
        got = decode_classes(rows[i].tobytes(), 4)
        assert got.indices.tolist() == idx[i].tolist()
        assert got.scores.tobytes() == scores[i].tobytes()  # bit for bit, NaN included
    empty = encode_classes(np.zeros((2, 0), np.int64), np.zeros((2, 0), np.float32))
    assert len(decode_classes(empty[1].tobytes(), 3)) == 0


@pytest.mark.parametrize(
    ("idx", "scores", "match"),
    [
        ([1, 2], [0.5], "one shape"),
        ([[-1]], [[0.5]], "fit in a u32"),
    ],
)
def test_encode_classes_rejects(idx, scores, match):
    with pytest.raises(InvalidArgument, match=match):
        encode_classes(idx, scores)


# -- row-wise references -------------------------------------------------------------------


def scores_with_ties(rng, n=64, c=12):
    s = rng.integers(-3, 4, size=(n, c)).astype(np.float32) / 4  # many ties
    s[rng.random((n, c)) < 0.05] = np.nan
    s[0] = np.nan
    s[1] = 0.0
    return s


def test_topk_rows_is_topk_of_each_row():
    s = scores_with_ties(np.random.default_rng(3))
    for k in (1, 3, 12):
        idx, sc = reference.topk_rows(s, k)
        for i, row in enumerate(s):
            want = reference.topk(row, k)
            assert idx[i].tolist() == want.indices.tolist()
            assert sc[i].tobytes() == want.scores.tobytes()


@pytest.mark.parametrize("post", [(), ("softmax",), ("topk",), ("softmax", "topk")])
def test_postprocess_rows_is_postprocess_of_each_row(post):
    logits = np.random.default_rng(4).standard_normal((32, 2, 5)).astype(np.float32) * 4
    got = reference.postprocess_rows(logits, post, 3)
    for i in range(len(logits)):
        want = reference.postprocess(logits[i], post, 3)
        if isinstance(got, tuple):
            assert got[0][i].tolist() == want.indices.tolist()
            assert got[1][i].tobytes() == want.scores.tobytes()
        else:
            assert got[i].tobytes() == np.asarray(want).tobytes()


@pytest.mark.parametrize("post", [("mean_pool",), ("l2_normalize",), ("mean_pool", "l2_normalize")])
@pytest.mark.parametrize("masked", [True, False])
def test_pool_rows_is_pool_of_each_row(post, masked):
    rng = np.random.default_rng(5)
    out = rng.standard_normal((6, 7, 5)).astype(np.float32)
    out[2] = 0  # a zero vector stays zero
    mask = (rng.random((6, 7)) < 0.6).astype(np.int32)
    mask[3] = 0  # no real token
    m = mask if masked else None
    got = reference.pool_rows(out, m, post)
    for i in range(len(out)):
        want = reference.pool(out[i], None if m is None else m[i], post)
        np.testing.assert_allclose(got[i], want, rtol=0, atol=1e-7)


def test_rows_reject_unknown_ops():
    with pytest.raises(ValueError, match="unknown post op"):
        reference.postprocess_rows(np.zeros((1, 3)), ("sigmoid",))
    with pytest.raises(ValueError, match="topk must end"):
        reference.postprocess_rows(np.zeros((1, 3)), ("topk", "softmax"), 1)
    with pytest.raises(ValueError, match="unknown post op"):
        reference.pool_rows(np.zeros((1, 3, 2)), None, ("max_pool",))


# -- Pipeline --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return models.get("digits")


@pytest.fixture(scope="module")
def digits_pipeline(digits):
    p = Pipeline(digits, (1, 4))
    p.warmup()
    return p


def test_digits_pipeline_single_and_padded_batches(digits, digits_pipeline):
    x, _ = digits.heldout()
    rows = x[:7]
    one = [digits_pipeline.infer(memoryview(r.tobytes())) for r in rows]
    three = digits_pipeline.infer_batch([memoryview(r.tobytes()) for r in rows[:3]])  # pad 4
    four = digits_pipeline.infer_batch([memoryview(r.tobytes()) for r in rows[3:]])
    assert three.shape == (3, 32) and four.shape == (4, 32) and three.dtype == np.uint8
    for i, got in enumerate([*one, *three, *four]):
        want = digits.reference_result(rows[i % 7])
        res = decode_classes(got.tobytes(), 3)
        assert res.indices.tolist() == want.indices.tolist()
        np.testing.assert_allclose(res.scores, want.scores, rtol=0, atol=1e-6)


def test_digits_pipeline_checks_sizes(digits_pipeline):
    assert digits_pipeline.max_request == 64
    assert digits_pipeline.check(memoryview(bytes(64))) == 0
    for n in (0, 63, 65):
        assert digits_pipeline.check(memoryview(bytes(n))) == -errno.EINVAL
    for n in (0, 5):
        with pytest.raises(InvalidArgument, match=f"batch of {n} requests; sizes run are 1 to 4"):
            digits_pipeline.infer_batch([memoryview(bytes(64))] * n)


def test_pipeline_rejects_chains_it_cannot_run(digits):
    with pytest.raises(InvalidArgument, match="post chain"):
        Pipeline(replace(digits, post=("log_softmax", "argmax")), (1,))
    with pytest.raises(InvalidArgument, match="batch sizes"):
        Pipeline(models.get("null"), ())


def test_null_pipeline_echoes_without_copying_at_batch_one():
    p = Pipeline(models.get("null"), (1, 2))
    x = np.arange(64, dtype=np.float32).tobytes()
    view = memoryview(bytearray(x))
    out = p.infer(view)
    assert out.tobytes() == x and np.shares_memory(out, np.frombuffer(view, np.uint8))
    both = p.infer_batch([view, memoryview(x[::-1])])
    assert both.tobytes() == x + x[::-1]
    assert decode_vector(both[0].tobytes(), 64).tobytes() == x
    assert p.check(memoryview(bytes(255))) == -errno.EINVAL


def test_bad_results_are_flax_errors():
    with pytest.raises(FlaxError):
        decode_classes(encode_classes([[1, 2]], [[0.5, 0.5]])[0].tobytes(), 1)
