"""Asynchronous clients against the real module: futures, asyncio, vector submit.

References: in-process ``apply`` + ``jax.nn.softmax`` (``digits_logits``) for the
served digits model; known outputs of an echo worker for ordering and errors.
"""

from __future__ import annotations

import asyncio
import errno
import select
import time
from typing import Any

import jax
import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import sysfs

PROB_ATOL = 1e-6


def _probs(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(jax.nn.softmax(logits, axis=-1), dtype=np.float64)


def _check(result: Any, probs: np.ndarray[Any, Any]) -> None:
    np.testing.assert_allclose(result.scores, probs[result.indices], atol=PROB_ATOL)
    assert result.top == int(np.argmax(probs)) or abs(probs[result.top] - probs.max()) < 2e-6


@pytest.mark.usefixtures("digits_worker")
def test_futures_client_heldout(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    """360 held-out digits as futures on one fd: each future holds its own result."""
    x, _ = heldout
    probs = _probs(digits_logits)
    with pyflaxdev.Client("digits") as client:
        futures = client.submit_many(list(x))
        results = [f.result(timeout=600) for f in futures]
    for r, p in zip(results, probs, strict=True):
        _check(r, p)


@pytest.mark.usefixtures("digits_worker")
def test_asyncio_client_gather(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    """100 concurrent awaits on one non-blocking fd, plus text results and a cancellation."""
    x, _ = heldout
    probs = _probs(digits_logits)

    async def main() -> tuple[list[Any], str]:
        async with pyflaxdev.AsyncClient("digits") as client:
            doomed = asyncio.ensure_future(client.infer(x[0]))
            await asyncio.sleep(0)
            doomed.cancel()
            results = await asyncio.gather(*(client.infer(img) for img in x[:100]))
            text = await client.infer(x[0], text=True)
            return list(results), str(text)

    results, text = asyncio.run(main())
    for r, p in zip(results, probs[:100], strict=True):
        _check(r, p)
    first = text.splitlines()[0].split("\t")
    digits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert first[0] in digits


@pytest.fixture
def echo_model(dev: pyflaxdev.Device) -> Any:
    model = dev.create_model("aecho", (4,), np.float32, (4,), post=(), nslots=8, timeout_ms=20000)
    yield model
    dev.destroy_model("aecho")


def test_vector_submit_poll_reap_raw(echo_model: pyflaxdev.Model, dev: pyflaxdev.Device) -> None:
    """One SUBMIT of 8, the fd polls readable only when results wait, REAP in finishing order."""
    xs = [np.full(4, i, np.float32) for i in range(8)]
    with pyflaxdev.open() as fd:
        model = fd.model("aecho")
        tickets = model.submit(xs, user_data=list(range(100, 108)))
        assert len(set(tickets)) == 8 and all(t > 0 for t in tickets)
        poller = select.poll()
        poller.register(fd.fileno(), select.POLLIN)
        assert poller.poll(0) == []  # no worker yet: nothing to reap
        with pyflaxdev.serving(lambda p, x: x * 3, None, model="aecho", batch_sizes=(1, 4)):
            got: list[Any] = []
            deadline = time.monotonic() + 600
            while len(got) < 8 and time.monotonic() < deadline:
                if poller.poll(1000):
                    got += fd.reap(8)
        assert poller.poll(0) == []
    assert sorted(c.user_data for c in got) == list(range(100, 108))
    for c in got:
        assert c.ok
        i = c.user_data - 100
        assert c.ticket == tickets[i]
        np.testing.assert_array_equal(c.result, xs[i] * 3)


def test_async_timeouts_without_worker(echo_model: pyflaxdev.Model) -> None:
    """No worker: every future fails with Timeout at its own deadline; nothing stays queued."""
    with pyflaxdev.Client("aecho") as client:
        t0 = time.monotonic()
        futures = [client.submit(np.zeros(4, np.float32), timeout_ms=300) for _ in range(3)]
        for f in futures:
            with pytest.raises(pyflaxdev.Timeout) as info:
                f.result(timeout=30)
            assert info.value.errno == errno.ETIMEDOUT
        assert time.monotonic() - t0 < 5
    assert int((sysfs.sysfs_root() / "models" / "aecho" / "queued").read_text()) == 0


def test_close_with_pending_cancels(echo_model: pyflaxdev.Model) -> None:
    """Closing a client with requests queued cancels them in the module too."""
    client = pyflaxdev.Client("aecho")
    futures = client.submit_many([np.zeros(4, np.float32)] * 5)
    queued = sysfs.sysfs_root() / "models" / "aecho" / "queued"
    deadline = time.monotonic() + 10
    while int(queued.read_text()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int(queued.read_text()) == 5
    client.close()
    for f in futures:
        with pytest.raises(pyflaxdev.Cancelled):
            f.result(timeout=10)
    assert int(queued.read_text()) == 0
