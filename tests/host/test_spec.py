"""ModelDesc: validation against the module's rules, and the struct round trip.

The rules mirrored here are those of driver/flax_model.c (flax_check_name,
flax_check_spec, flax_check_norm, flax_cfg_check) and driver/flax_post.c
(flax_post_plan): each test names the rule it exercises.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace

import numpy as np
import pytest

from pyflaxdev.errors import InvalidArgument
from pyflaxdev.spec import (
    DTYPES,
    MAX_WAIT_US,
    POST_OPS,
    ModelDesc,
    ModelInfo,
    Normalization,
    TensorSpec,
    f32_bits,
    plan_post,
)
from pyflaxdev.uapi import bits_to_f32, ffi, lib

BASE = ModelDesc(
    name="m",
    input=TensorSpec((3, 4, 5), np.dtype(np.uint8)),
    output=TensorSpec((6, 10), np.dtype(np.float32)),
)

# The header's accepted chains, as regular expressions over space-ended steps.
ACCEPTED = re.compile(
    r"((softmax|log_softmax) )?((topk|argmax) )?"
    r"|sigmoid (threshold )?"
    r"|(mean_pool )?(l2_normalize )?"
)


def accepted_by_header(chain: tuple[str, ...]) -> bool:
    return ACCEPTED.fullmatch("".join(op + " " for op in chain)) is not None


def test_every_dtype_of_the_header_is_known():
    codes = {v for k, v in vars(lib).items() if k.startswith("FLAX_DTYPE_")}
    assert set(DTYPES) == codes
    assert DTYPES[lib.FLAX_DTYPE_FLOAT16] == np.float16
    assert DTYPES[lib.FLAX_DTYPE_INT32] == np.int32


def test_every_post_op_of_the_header_is_known():
    skip = {"FLAX_POST_END", "FLAX_POST_CHAIN_MAX"}
    codes = {v for k, v in vars(lib).items() if k.startswith("FLAX_POST_") and k not in skip}
    assert set(POST_OPS.values()) == codes


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_chains_match_the_header(length):
    """flax_post_plan: exactly the chains of the header's regular expressions."""
    for chain in itertools.product(POST_OPS, repeat=length):
        try:
            plan_post(chain, (6, 10))
            ok = True
        except InvalidArgument:
            ok = False
        assert ok == accepted_by_header(chain), chain


@pytest.mark.parametrize(
    ("chain", "select", "vec"),
    [
        ((), None, 60),
        (("softmax", "topk"), "topk", 60),
        (("log_softmax", "argmax"), "argmax", 60),
        (("sigmoid", "threshold"), "threshold", 60),
        (("sigmoid",), None, 60),
        (("mean_pool",), None, 10),
        (("mean_pool", "l2_normalize"), None, 10),
        (("l2_normalize",), None, 60),
    ],
)
def test_plan(chain, select, vec):
    assert plan_post(chain, (6, 10)) == (select, vec)


def test_chain_messages_name_the_step():
    with pytest.raises(InvalidArgument, match=r"step 1, 'softmax', cannot follow \['topk'\]"):
        plan_post(("topk", "softmax"), (10,), model="m")
    with pytest.raises(InvalidArgument, match=r"accepted chains: .*sigmoid threshold"):
        plan_post(("threshold",), (10,))
    with pytest.raises(InvalidArgument, match=r"unknown post op\(s\) \['argsort'\]"):
        plan_post(("argsort",), (10,))
    with pytest.raises(InvalidArgument, match="more than 8"):
        plan_post(("softmax",) * 9, (10,))


def test_mean_pool_needs_two_dimensions():
    with pytest.raises(InvalidArgument, match=r"mean_pool of 'm' needs a 2-D \(T, D\) output"):
        plan_post(("mean_pool",), (2, 3, 4), model="m")
    with pytest.raises(InvalidArgument, match="2-D"):
        plan_post(("mean_pool",), (12,))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "1 to 31 characters"),
        ({"name": "a b"}, "from \\[A-Za-z0-9_.-\\]"),
        ({"name": "é"}, "from \\[A-Za-z0-9_.-\\]"),
        ({"name": "x" * 32}, "1 to 31 characters"),
        ({"name": "."}, "not '.', '..' or 'control'"),
        ({"name": ".."}, "not '.', '..' or 'control'"),
        ({"name": "control"}, "not '.', '..' or 'control'"),
        ({"input": TensorSpec((), np.dtype(np.uint8))}, "1 to 6 dimensions"),
        ({"input": TensorSpec((1,) * 7, np.dtype(np.uint8))}, "1 to 6 dimensions"),
        ({"input": TensorSpec((3, 0), np.dtype(np.uint8))}, "must be positive"),
        ({"input": TensorSpec((65536, 65536), np.dtype(np.uint8))}, "more than 2\\^32 - 1"),
        ({"input": TensorSpec((3,), np.dtype(np.int64))}, "input dtype of 'm' must be one of"),
        ({"output": TensorSpec((3,), np.dtype(np.float16))}, "output dtype of 'm' must be float32"),
        ({"post": ("softmax", "topk"), "topk": 0}, "topk for 'm' must be 1 to 60, got 0"),
        ({"post": ("topk",), "topk": 61}, "must be 1 to 60"),
        ({"post": ("softmax",), "topk": 3}, "topk for 'm' must be 0 without a 'topk' step"),
        ({"post": ("argmax",), "topk": 1}, "must be 0 without a 'topk' step"),
        ({"post": ("sigmoid", "threshold"), "threshold": math.nan}, "must not be NaN"),
        ({"post": ("sigmoid",), "threshold": 0.5}, "must be 0 without a 'threshold' step"),
        ({"threshold": -0.0}, "must be 0 without a 'threshold' step"),
        ({"nslots": -1}, "nslots of 'm' must be 0 to"),
        ({"timeout_ms": 2**32}, "timeout_ms of 'm' must be 0 to"),
        ({"nslots": 8, "max_batch": 9}, "max_batch of 'm' must be at most nslots \\(8\\)"),
        ({"nslots": 8, "max_queue": 9}, "max_queue of 'm' must be at most nslots \\(8\\)"),
        (
            {"max_queue_delay_us": MAX_WAIT_US + 1},
            "max_queue_delay_us of 'm' must be 0 to 10000000",
        ),
    ],
)
def test_validate_rejects(changes, message):
    with pytest.raises(InvalidArgument, match=message):
        replace(BASE, **changes).validate()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"post": ("softmax", "topk"), "topk": 60},
        {"post": ("topk",), "topk": 1},
        {"post": ("log_softmax", "argmax")},
        {"post": ("sigmoid", "threshold"), "threshold": 0.0},
        {"post": ("sigmoid", "threshold"), "threshold": -math.inf},
        {"post": ("mean_pool", "l2_normalize")},
        {"nslots": 8, "max_batch": 8, "max_queue": 8, "max_queue_delay_us": MAX_WAIT_US},
        {"max_batch": 1000, "max_queue": 1000},  # nslots 0: the module's default decides
        {"name": "a.B-9_"},
        {"input": TensorSpec((2,), np.dtype(np.float16))},
    ],
)
def test_validate_accepts(changes):
    desc = replace(BASE, **changes)
    assert desc.validate() is desc


def test_topk_range_after_mean_pool_is_not_possible_but_k_uses_vector_length():
    # k is checked against the vector's length: the whole output for TOPK.
    replace(BASE, post=("topk",), topk=60).validate()
    assert replace(BASE, post=("mean_pool",)).vec_elems == 10


def norm(count, **kw):
    return Normalization(1 / 255, np.zeros(count, np.float32), np.ones(count, np.float32), **kw)


@pytest.mark.parametrize(
    ("n", "kw", "ok"),
    [
        (1, {}, True),
        (5, {}, True),  # channels last: dims[-1]
        (60, {}, True),  # per element
        (3, {}, False),
        (3, {"channel_first": True}, True),  # dims[0]
        (5, {"channel_first": True}, False),
        (60, {"channel_first": True}, True),
        (1, {"clamp": (-1.0, 1.0)}, True),
        (1, {"clamp": (1.0, 1.0)}, True),
        (1, {"clamp": (-0.0, 0.0)}, True),  # -0 == +0, as flax_f32_key orders them
        (1, {"clamp": (0.0, -0.0)}, True),
        (1, {"clamp": (1.0, -1.0)}, False),
        (1, {"clamp": (math.nan, 1.0)}, False),
        (1, {"clamp": (-math.inf, math.inf)}, True),
    ],
)
def test_norm_rules(n, kw, ok):
    desc = replace(BASE, normalize=norm(n, **kw))
    if ok:
        desc.validate()
    else:
        with pytest.raises(InvalidArgument, match="normalisation of 'm'"):
            desc.validate()


def test_norm_messages():
    with pytest.raises(InvalidArgument, match=r"must be one of \[1, 3, 60\].*channels first"):
        replace(BASE, normalize=norm(5, channel_first=True)).validate()
    bad_std = Normalization(1.0, np.zeros(1, np.float32), np.array([-1.0], np.float32))
    with pytest.raises(InvalidArgument, match="every std must be finite and > 0"):
        replace(BASE, normalize=bad_std).validate()
    bad_mean = Normalization(1.0, np.array([np.inf], np.float32), np.ones(1, np.float32))
    with pytest.raises(InvalidArgument, match="every mean must be finite"):
        replace(BASE, normalize=bad_mean).validate()
    with pytest.raises(InvalidArgument, match="scale must be finite"):
        replace(BASE, normalize=replace(norm(1), scale=math.inf)).validate()
    uneven = Normalization(1.0, np.zeros(2, np.float32), np.ones(1, np.float32))
    with pytest.raises(InvalidArgument, match="2 means but 1 stds"):
        replace(BASE, normalize=uneven).validate()
    with pytest.raises(InvalidArgument, match=r"lo <= hi"):
        replace(BASE, normalize=norm(1, clamp=(2.0, 1.0))).validate()


def kernel_fills(desc, *, model_id=7, nslots=64, timeout_ms=5000, result_size=0, text_size=0):
    """What MODEL_CREATE/MODEL_GET write back into the struct."""
    desc.id = model_id
    desc.nslots = desc.nslots or nslots
    desc.timeout_ms = desc.timeout_ms or timeout_ms
    desc.max_batch = desc.max_batch or desc.nslots
    desc.max_queue = desc.max_queue or desc.nslots
    desc.result_size = result_size
    desc.text_size = text_size


def test_desc_round_trip_through_model_info():
    full = ModelDesc(
        name="imgs",
        input=TensorSpec((3, 4, 5), np.dtype(np.float16)),
        output=TensorSpec((10,), np.dtype(np.float32)),
        normalize=Normalization(
            0.5,
            np.array([0.25, 0.5, 1.0], np.float32),
            np.array([1.0, 2.0, 3.0], np.float32),
            channel_first=True,
            clamp=(-2.5, 2.5),
        ),
        post=("sigmoid", "threshold"),
        threshold=0.3,
        nslots=16,
        timeout_ms=250,
        max_batch=8,
        max_queue_delay_us=1500,
        max_queue=12,
    ).validate()
    desc, keep = full.to_desc()
    assert ffi.sizeof(desc[0]) == lib.FLAX_MODEL_DESC_SIZE_VER2
    assert desc.flags == lib.FLAX_MODEL_NORM_CHANNEL_FIRST | lib.FLAX_MODEL_NORM_CLAMP
    assert desc.pre_op == lib.FLAX_PRE_NORMALIZE
    assert list(desc.post_ops) == [lib.FLAX_POST_SIGMOID, lib.FLAX_POST_THRESHOLD] + [0] * 6
    assert desc.threshold == f32_bits(0.3)
    assert (desc.clamp_lo, desc.clamp_hi) == (f32_bits(-2.5), f32_bits(2.5))
    mean = ffi.cast("uint32_t *", desc.norm_mean)
    std = ffi.cast("uint32_t *", desc.norm_std)
    assert [bits_to_f32(mean[i]) for i in range(3)] == [0.25, 0.5, 1.0]
    assert [bits_to_f32(std[i]) for i in range(3)] == [1.0, 2.0, 3.0]
    assert desc.result_size == desc.text_size == 0  # in-fields must be 0 for CREATE
    assert not any(desc.reserved) and desc.text_max == 0
    assert keep  # the arrays the pointers refer to

    kernel_fills(desc, result_size=88, text_size=1420)
    info = ModelInfo.from_desc(desc)
    assert info.id == 7
    assert info.name == "imgs"
    assert info.input == full.input and info.output == full.output
    assert info.pre_op == "normalize" and info.norm_count == 3 and info.norm_scale == 0.5
    assert info.post == ("sigmoid", "threshold")
    assert info.select == "threshold" and info.returns_classes and info.returns_topk
    assert info.threshold == np.float32(0.3)
    assert info.channel_first
    assert info.clamp == (-2.5, 2.5)
    assert info.knobs == {
        "timeout_ms": 250,
        "max_batch": 8,
        "max_queue_delay_us": 1500,
        "max_queue": 12,
    }
    assert info.nslots == 16
    assert (info.result_size, info.text_size) == (88, 1420)
    assert info.max_entries == info.vec_elems == 10
    assert info.worker_input == TensorSpec((3, 4, 5), np.dtype(np.float32))


@pytest.mark.parametrize(
    ("post", "topk", "select", "entries", "vec"),
    [
        (("softmax", "topk"), 3, "topk", 3, 60),
        (("argmax",), 0, "argmax", 1, 60),
        (("sigmoid", "threshold"), 0, "threshold", 60, 60),
        (("mean_pool", "l2_normalize"), 0, None, 0, 10),
        ((), 0, None, 0, 60),
    ],
)
def test_info_result_kinds(post, topk, select, entries, vec):
    desc, _ = replace(BASE, post=post, topk=topk).validate().to_desc()
    kernel_fills(desc)
    info = ModelInfo.from_desc(desc)
    assert (info.select, info.max_entries, info.vec_elems) == (select, entries, vec)
    assert info.clamp is None and not info.channel_first and info.pre_op == "none"


def test_without_normalisation_flags_and_clamp_stay_zero():
    desc, keep = BASE.to_desc()
    assert (desc.flags, desc.clamp_lo, desc.clamp_hi, desc.norm_mean, desc.norm_std) == (0,) * 5
    assert desc.pre_op == lib.FLAX_PRE_NONE and keep == []


def test_f32_bits():
    assert f32_bits(1.0) == 0x3F800000
    assert f32_bits(-0.0) == 0x80000000
    assert f32_bits(1e300) == 0x7F800000  # overflow rounds to infinity, as the module reads it
    assert f32_bits(math.nan) & 0x7FFFFFFF > 0x7F800000


def test_normalization_of_tuple():
    n = Normalization.of((1 / 16, [1, 2], 3))
    assert n.mean.dtype == np.float32 and n.mean.tolist() == [1.0, 2.0]
    assert n.std.tolist() == [3.0] and n.count == 2 and n.flags == 0
    assert Normalization.of(n) is n


TOK = ModelDesc(
    name="tok",
    input=TensorSpec((2, 16), np.dtype(np.int32)),
    output=TensorSpec((16, 8), np.dtype(np.float32)),
    post=("mean_pool", "l2_normalize"),
    tokenize=True,
)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input": TensorSpec((2, 16), np.dtype(np.uint8))}, "must be int32 \\[2, L\\]"),
        ({"input": TensorSpec((3, 16), np.dtype(np.int32))}, "must be int32 \\[2, L\\]"),
        ({"input": TensorSpec((2, 1), np.dtype(np.int32))}, "L of 'tok' must be at least 2"),
        ({"output": TensorSpec((15, 8), np.dtype(np.float32))}, "one row per token"),
        ({"normalize": norm(1)}, "cannot both tokenize and normalize"),
        ({"tokenize": False, "text_max": 10}, "text_max of 'tok' must be 0 without tokenize"),
    ],
)
def test_tokenize_rules(changes, message):
    with pytest.raises(InvalidArgument, match=message):
        replace(TOK, **changes).validate()


def test_tokenize_desc():
    desc, _ = replace(TOK, text_max=1000).validate().to_desc()
    assert desc.pre_op == lib.FLAX_PRE_TOKENIZE and desc.text_max == 1000
    assert desc.flags == desc.norm_count == 0
    kernel_fills(desc)
    info = ModelInfo.from_desc(desc)
    assert info.pre_op == "tokenize" and info.text_max == 1000 and info.vec_elems == 8
