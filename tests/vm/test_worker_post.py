"""``worker_post``: the worker mean-pools, the module runs the rest of the chain.

The same model is created twice, with ``worker_post`` 0 (the module pools the
``[T, D]`` output) and 1 (the worker pools inside its jitted function, the
output slot holds ``[D]``); both are served by real workers and their results
must agree to 1e-6 relative, with the same result and text sizes for clients.
A tokenising model checks the attention mask (texts of several lengths, with
and without length buckets); a tensor model pools every row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev.models import minilm
from pyflaxdev.worker import Worker

L, D = 32, 48
TEXTS = [
    "hello",
    "a somewhat longer sentence with several more words in it",
    "",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    " fifteen sixteen seventeen eighteen nineteen twenty twenty-one",
    "x",
]


def token_apply(params: Any, x: Any) -> Any:
    """``[b, 2, k]`` ids and mask -> ``[b, k, D]``: a function of each token id."""
    import jax.numpy as jnp

    ids = x[:, 0].astype(jnp.float32)
    return jnp.sin(ids[..., None] * params + 0.5) * 2.0


def tensor_apply(params: Any, x: Any) -> Any:
    return x * params - 1.0


FREQ = np.linspace(0.001, 0.05, D, dtype=np.float32)


@pytest.fixture
def served(dev: pyflaxdev.Device) -> Iterator[Any]:
    """Create a model and serve it with ``apply``; destroy it after."""
    names: list[str] = []
    handles: list[Any] = []

    def make(name: str, apply: Any, params: Any, **kwargs: Any) -> pyflaxdev.Model:
        serve_kwargs = {k: kwargs.pop(k) for k in ("buckets", "batch_sizes") if k in kwargs}
        model = dev.create_model(name, nslots=8, **kwargs)
        names.append(name)
        if model.info.pre_op == "tokenize":
            model.set_vocab(minilm.vocab_bytes())
        cm = pyflaxdev.serving(apply, params, model=name, **serve_kwargs)
        cm.__enter__()
        handles.append(cm)
        return model

    yield make
    for cm in reversed(handles):
        cm.__exit__(None, None, None)
    for name in names:
        dev.destroy_model(name)


def rel(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a64 - b64)) / max(float(np.linalg.norm(b64)), 1e-30)


def test_tokenising_model_pooled_in_the_worker_equals_the_kernel(
    served: Any, dev: pyflaxdev.Device
) -> None:
    common: dict[str, Any] = {
        "input_shape": (2, L),
        "input_dtype": np.int32,
        "output_shape": (L, D),
        "post": ("mean_pool", "l2_normalize"),
        "tokenize": True,
        "batch_sizes": (1, 4),
    }
    kernel = served("wp0", token_apply, FREQ, worker_post=0, **common)
    worker = served("wp1", token_apply, FREQ, worker_post=1, **common)
    bucketed = served("wp1b", token_apply, FREQ, worker_post=1, buckets=(8, 16), **common)
    kernel_b = served("wp0b", token_apply, FREQ, worker_post=0, buckets=(8, 16), **common)
    assert kernel.info.worker_post == 0 and worker.info.worker_post == 1
    for m in (worker, bucketed):
        assert m.info.result_size == kernel.info.result_size == D * 4
        assert m.info.text_size == kernel.info.text_size
    with Worker("wp1", device=dev.path) as w:
        layout = w.attach().layout
    assert layout.out_bytes == D * 4  # the slot holds [D], not [L, D]
    for text in TEXTS:
        want = kernel.infer(text)
        assert abs(float(np.linalg.norm(want.astype(np.float64))) - 1.0) < 1e-6
        for m in (worker, bucketed, kernel_b):
            got = m.infer(text)
            assert got.shape == (D,)
            assert rel(got, want) <= 1e-6, (m.name, text, rel(got, want))
    # Text results: the same numbers (%.6g) up to a last-digit rounding difference.
    a = np.array(kernel.infer_text(TEXTS[1]).split(), dtype=np.float64)
    b = np.array(worker.infer_text(TEXTS[1]).split(), dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_tensor_model_pools_every_row_in_the_worker(served: Any) -> None:
    t, d = 12, 40
    common: dict[str, Any] = {
        "input_shape": (t, d),
        "input_dtype": np.float32,
        "output_shape": (t, d),
        "post": ("mean_pool", "l2_normalize"),
        "batch_sizes": (1,),
    }
    kernel = served("tp0", tensor_apply, np.float32(1.5), worker_post=0, **common)
    worker = served("tp1", tensor_apply, np.float32(1.5), worker_post=1, **common)
    raw = served(
        "tp1raw", tensor_apply, np.float32(1.5), **{**common, "post": ("mean_pool",)}, worker_post=1
    )
    rng = np.random.default_rng(11)
    for _ in range(4):
        x = rng.standard_normal((t, d)).astype(np.float32)
        assert rel(worker.infer(x), kernel.infer(x)) <= 1e-6
        mean = (x.astype(np.float64) * 1.5 - 1.0).mean(axis=0)
        assert rel(raw.infer(x), mean) <= 1e-6


def test_worker_post_refused_where_the_worker_cannot_run_it(dev: pyflaxdev.Device) -> None:
    """The module's own checks (validate=False): only a leading MEAN_POOL, not beyond it."""
    bad = [
        (("l2_normalize",), 1, (8, 4)),
        ((), 1, (8, 4)),
        (("mean_pool", "l2_normalize"), 2, (8, 4)),
        (("mean_pool",), 2, (8, 4)),
        (("softmax", "topk"), 1, (8,)),
    ]
    for post, wp, out in bad:
        with pytest.raises(pyflaxdev.InvalidArgument):
            dev.create_model(
                "bad",
                out,
                np.float32,
                out,
                post=post,
                topk=2 if "topk" in post else 0,
                worker_post=wp,
                validate=False,
            )
    # A tokenising model pools one row per token, in the worker too.
    with pytest.raises(pyflaxdev.InvalidArgument):
        dev.create_model(
            "bad",
            (2, 8),
            np.int32,
            (9, 4),
            post=("mean_pool",),
            tokenize=True,
            worker_post=1,
            validate=False,
        )
