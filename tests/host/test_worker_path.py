"""The worker's data path on the host: fused pooling, device choice, sharding, the loop.

No kernel: the region is laid out as flaxdev.ko lays one out (in a memfd) and
the FETCH side is :class:`pyflaxdev.workpath.Feeder`.  References are
independent of the code under test: numpy pooling (float64 sums, as the
kernel) of the unfused model output, jit(apply) on the whole input, and a
subprocess with two forced host devices for the sharded path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyflaxdev import models
from pyflaxdev.accel import configure_allocator, resolve_device
from pyflaxdev.buckets import Buckets
from pyflaxdev.errors import InvalidArgument
from pyflaxdev.runner import BatchRunner, Pool
from pyflaxdev.spec import ModelDesc, TensorSpec, check_worker_post
from pyflaxdev.uapi import ffi
from pyflaxdev.worker import WorkerStats, build_runner, run_loop
from pyflaxdev.workpath import (
    Feeder,
    bench_worker_path,
    format_result,
    kernel_layout,
    model_info,
    region_in_memory,
)

ROOT = Path(__file__).resolve().parents[2]
T, D, VOCAB = 16, 24, 50


def token_model(params: Any, x: Any) -> Any:
    """A small per-token model: ``[b, 2, k]`` int32 -> ``[b, k, D]`` float32."""
    import jax.numpy as jnp

    emb = params["emb"][x[:, 0]]  # [b, k, D]
    return jnp.tanh(emb @ params["w"]) * 3.0 + params["bias"]


def token_params(seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "emb": rng.standard_normal((VOCAB, D)).astype(np.float32),
        "w": rng.standard_normal((D, D)).astype(np.float32),
        "bias": rng.standard_normal(D).astype(np.float32),
    }


def token_inputs(n: int, length: int = T, seed: int = 1) -> np.ndarray[Any, Any]:
    """Ids and a mask with each row's own length (1 to ``length``; one row all padding)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 2, length), dtype=np.int32)
    for i in range(n):
        k = 0 if i == 3 else int(rng.integers(1, length + 1))
        x[i, 0, :k] = rng.integers(1, VOCAB, size=k)
        x[i, 1, :k] = 1
    return x


def kernel_pool(hidden: np.ndarray[Any, Any], mask: np.ndarray[Any, Any] | None) -> Any:
    """FLAX_POST_MEAN_POOL as flax_pool_acc/flax_pool_finish: float64 sums of the rows
    whose mask is non-zero (all rows without a mask), divided by their count (or 1)."""
    h = hidden.astype(np.float64)
    m = np.ones(h.shape[:2]) if mask is None else (mask != 0).astype(np.float64)
    total = (h * m[..., None]).sum(axis=1)
    return (total / np.maximum(m.sum(axis=1), 1.0)[:, None]).astype(np.float32)


def l2(v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    v = v.astype(np.float64)
    out: np.ndarray[Any, Any] = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-30)
    return out


def assert_rel(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any], rel: float) -> None:
    """Each vector within ``rel`` of the reference, relative to the reference's norm."""
    err = np.linalg.norm(got.astype(np.float64) - want, axis=-1)
    scale = np.maximum(np.linalg.norm(want.astype(np.float64), axis=-1), 1e-30)
    assert float((err / scale).max()) <= rel, (err / scale).max()


@pytest.mark.parametrize("buckets", [None, (4, 8)])
def test_fused_masked_pool_matches_numpy_pool_of_unfused_output(
    buckets: tuple[int, ...] | None,
) -> None:
    params = token_params()
    x = token_inputs(8)
    spec = TensorSpec((2, T), np.dtype(np.int32))
    plan = Buckets.plan(buckets, T) if buckets else None
    unfused = BatchRunner(token_model, params, spec, T * D, (8,), plan)
    fused = BatchRunner(token_model, params, spec, D, (8,), plan, pool=Pool(T, D, masked=True))
    rows = np.arange(8, dtype=np.intp)[::-1].copy()
    hidden = unfused.run(x, rows).reshape(8, T, D)
    want = kernel_pool(hidden, x[rows, 1])
    got = fused.run(x, rows)
    assert got.shape == (8, D) and got.dtype == np.float32
    assert not got[rows == 3].any()  # no token: the sum of nothing, as the kernel
    assert_rel(got, want, 1e-6)
    assert_rel(l2(got), l2(want), 1e-6)  # the chain's L2_NORMALIZE after it


def test_fused_pool_of_every_row_for_a_tensor_model() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 10, 6)).astype(np.float32)

    def apply(p: Any, v: Any) -> Any:
        return v * p + 1.0

    spec = TensorSpec((10, 6), np.dtype(np.float32))
    unfused = BatchRunner(apply, np.float32(2.5), spec, 60, (4,))
    fused = BatchRunner(apply, np.float32(2.5), spec, 6, (4,), pool=Pool(10, 6, masked=False))
    rows = np.arange(4, dtype=np.intp)
    want = kernel_pool(unfused.run(x, rows).reshape(4, 10, 6), None)
    assert_rel(fused.run(x, rows), want, 1e-6)


def test_minilm_fused_pool_matches_numpy_pool() -> None:
    """The shipped encoder: pooled on the device vs numpy pooling of its hidden states."""
    from pyflaxdev.models import minilm

    length = 32
    texts = ["a short one", "another, somewhat longer sentence here", "", "x " * 40]
    x = minilm.tokenize(texts, length)
    spec = TensorSpec((2, length), np.dtype(np.int32))
    params = minilm.load_params()
    h = minilm.CONFIG.hidden
    unfused = BatchRunner(minilm.encode, params, spec, length * h, (4,))
    fused = BatchRunner(minilm.encode, params, spec, h, (4,), pool=Pool(length, h, masked=True))
    rows = np.arange(4, dtype=np.intp)
    want = kernel_pool(unfused.run(x, rows).reshape(4, length, h), x[:, 1])
    got = fused.run(x, rows)
    assert_rel(got, want, 1e-6)
    assert_rel(l2(got), l2(want), 1e-6)


def test_kernel_layout_matches_the_module() -> None:
    """flax_model_layout() for 3 slots of 100 input and 40 output bytes, worked by hand:
    header 104 bytes -> rings at 128; a ring of 4 entries is 8 + 4 * 8 = 40 -> stride 64;
    8 workers -> inputs at 640, slots of 128; outputs at 1024, slots of 64; 1216 -> a page."""
    assert ffi.sizeof("struct flax_region_layout") <= 128
    assert ffi.sizeof("struct flax_ring") + 4 * ffi.sizeof("struct flax_ring_entry") <= 64
    lay = kernel_layout(3, 100, 40)
    assert (lay.ring_entries, lay.rings_offset, lay.ring_stride) == (4, 128, 64)
    assert (lay.in_offset, lay.in_slot_size, lay.out_offset, lay.out_slot_size) == (
        640,
        128,
        1024,
        64,
    )
    assert lay.region_size == 4096


def tiny_desc(nslots: int, worker_post: int = 1, **kw: Any) -> ModelDesc:
    return ModelDesc(
        name="tok",
        input=TensorSpec((2, T), np.dtype(np.int32)),
        output=TensorSpec((T, D), np.dtype(np.float32)),
        post=("mean_pool", "l2_normalize"),
        nslots=nslots,
        tokenize=True,
        worker_post=worker_post,
        **kw,
    )


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("worker_post", [0, 1])
def test_loop_over_a_kernel_laid_region_completes_in_order(depth: int, worker_post: int) -> None:
    """Every job's output slot holds its own result when it completes, completions come in
    FETCH order, and a pipeline of two never holds more than the slots allow."""
    params = token_params()
    info = model_info(tiny_desc(12, worker_post, max_batch=8))
    assert info.worker_output.shape == ((D,) if worker_post else (T, D))
    runner = build_runner(info, token_model, params, (1, 2, 4, 8), Buckets.plan((4, 8), T))
    assert isinstance(runner, BatchRunner)
    runner.warmup(timing_calls=0)
    with region_in_memory(info) as region:
        assert region.outputs.shape == (12, info.worker_output.size)
        x = token_inputs(12, seed=9)
        region.inputs[:] = x
        region.outputs[:] = np.nan  # what a previous job left
        hidden = np.asarray(token_model(params, x))
        mask = x[:, 1, :, None].astype(np.float32)
        # Unpooled, a batch runs at its bucket length: the texts' own rows are the
        # model's, the rest of each slot holds something finite (no NaN left over).
        want = kernel_pool(hidden, x[:, 1]) if worker_post else (hidden * mask).reshape(12, -1)
        seen: list[int] = []

        def check(slots: np.ndarray[Any, Any], status: int) -> None:
            assert status == 0
            got = region.outputs[slots]
            assert np.isfinite(got).all()
            if not worker_post:
                got = (got.reshape(-1, T, D) * mask[slots]).reshape(len(slots), -1)
            err = np.abs(got - want[slots]).max()
            assert err <= 1e-5 * max(1.0, float(np.abs(want).max())), err
            region.outputs[slots] = np.nan  # the client took it; the slot is reused
            seen.extend(slots.tolist())

        stop = threading.Event()
        feeder = Feeder(region, 203, stop, limit=8, check=check, record=True)
        stats = WorkerStats()
        run_loop(feeder, region, runner, 8, None, 0, stop, stats, pipeline_depth=depth)
    assert stats.jobs == 203 and stats.failed_jobs == 0
    assert seen == np.concatenate(feeder.fetched).tolist()
    assert feeder.held == 0 and feeder.pending == 0


def test_unpooled_buckets_zero_the_tail_of_each_output_slot() -> None:
    params = token_params()
    info = model_info(tiny_desc(4, 0))
    runner = build_runner(info, token_model, params, (4,), Buckets.plan((4,), T))
    assert isinstance(runner, BatchRunner)
    x = token_inputs(4, seed=2)
    x[:, :, 4:] = 0  # every text fits the bucket of 4
    out = np.full((4, T * D), np.nan, dtype=np.float32)
    rows = np.array([2, 0, 3, 1], dtype=np.intp)
    pending = runner.start(x, rows)
    assert pending.length == 4
    runner.finish_into(pending, out, rows)
    full = np.asarray(token_model(params, x[:, :, :4])).reshape(4, 4 * D)
    np.testing.assert_allclose(out[rows, : 4 * D], full[rows], rtol=1e-6)
    assert not out[:, 4 * D :].any()


SHARDED = r"""
import json, sys
import numpy as np
import jax
sys.path.insert(0, sys.argv[1])
from test_worker_path import token_model, token_params, token_inputs, T, D
from pyflaxdev.buckets import Buckets
from pyflaxdev.runner import BatchRunner, Pool
from pyflaxdev.spec import TensorSpec
devs = jax.devices()
spec = TensorSpec((2, T), np.dtype(np.int32))
x = token_inputs(7, seed=4)
rows = np.arange(7, dtype=np.intp)
out = {"devices": len(devs)}
for pooled in (False, True):
    size, pool = (D, Pool(T, D, True)) if pooled else (T * D, None)
    plan = Buckets.plan((8,), T)
    one = BatchRunner(token_model, token_params(), spec, size, (1, 3, 8), plan, pool=pool,
                      device=devs[0])
    two = BatchRunner(token_model, token_params(), spec, size, (1, 3, 8), plan, pool=pool,
                      mesh=devs)
    a, b = one.run(x, rows), two.run(x, rows)
    out[f"sizes{int(pooled)}"] = list(two.sizes)
    out[f"diff{int(pooled)}"] = float(np.abs(a - b).max() / np.abs(a).max())
    out[f"sharded{int(pooled)}"] = len(two._params["w"].sharding.device_set)
print(json.dumps(out))
"""


def test_sharded_over_two_host_devices_equals_one_device() -> None:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED, str(Path(__file__).parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["devices"] == 2
    assert got["sizes0"] == [2, 4, 8]  # rounded up to multiples of the devices
    assert got["sharded0"] == 2 and got["sharded1"] == 2
    assert got["diff0"] <= 1e-6 and got["diff1"] <= 1e-6


def test_device_names_and_allocator() -> None:
    import jax

    assert resolve_device("cpu") == jax.devices("cpu")[0]
    assert resolve_device("cpu:0") == jax.devices("cpu")[0]
    for bad in ("cpu:7", "cpu:x", "quantum:0"):
        with pytest.raises(InvalidArgument):
            resolve_device(bad)
    env: dict[str, str] = {}
    assert configure_allocator(env) and env == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}
    assert not configure_allocator(env) and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
    env = {"XLA_PYTHON_CLIENT_MEM_FRACTION": ".2"}
    assert not configure_allocator(env) and "XLA_PYTHON_CLIENT_PREALLOCATE" not in env


def test_worker_post_rules() -> None:
    check_worker_post(("mean_pool", "l2_normalize"), 1)
    check_worker_post(("softmax", "topk"), 0)
    for post, wp in ((("l2_normalize",), 1), ((), 1), (("mean_pool",), 2), (("mean_pool",), -1)):
        with pytest.raises(InvalidArgument):
            check_worker_post(post, wp)
    with pytest.raises(InvalidArgument):
        tiny_desc(4, 2).validate()
    desc, _keep = tiny_desc(4, 1).to_desc()
    assert desc.worker_post == 1
    info = model_info(tiny_desc(4, 1))
    assert info.worker_post == 1 and info.worker_pool
    assert info.worker_output == TensorSpec((D,), np.dtype(np.float32))
    assert info.vec_elems == D and info.output.shape == (T, D)
    assert model_info(tiny_desc(4, 0)).worker_output.shape == (T, D)


def test_worker_path_benchmark_reports_both_sides() -> None:
    r = bench_worker_path(models.get("digits"), 64, seconds=0.2, min_batches=3, rounds=2)
    assert r.worker_items_s > 0 and r.inprocess_items_s > 0 and r.ratio > 0
    assert r.batches >= 3 and r.rounds == 2
    line = format_result(r)
    assert "worker" in line and "in-process" in line and "ratio" in line


def test_serve_flags() -> None:
    from pyflaxdev.cli import build_parser
    from pyflaxdev.commands.serve import worker_post

    assert worker_post("auto", ("mean_pool", "l2_normalize")) == 1
    assert worker_post("auto", ("softmax", "topk")) == 0
    assert worker_post("0", ("mean_pool",)) == 0
    args = build_parser().parse_args(
        ["serve", "minilm", "--jax-device", "cuda:1", "--devices", "all", "--worker-post", "0"]
    )
    assert (args.jax_device, args.devices, args.worker_post, args.pipeline_depth) == (
        "cuda:1",
        "all",
        "0",
        2,
    )
