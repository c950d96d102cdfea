"""The Python worker, client and CLI against the real module (small models, in-thread workers)."""

from __future__ import annotations

import errno
import threading
from typing import Any

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import cli, ioctls, models, reference
from pyflaxdev.uapi import ffi


def test_create_get_destroy(
    dev: pyflaxdev.Device, digits_spec: models.ModelSpec, cleanup: list[str]
) -> None:
    before = dev.info().nmodels
    m = digits_spec.create(dev, name="cgd", nslots=8)
    cleanup.append("cgd")
    assert m.info.input == digits_spec.input
    assert m.info.output == digits_spec.output
    assert m.info.post == ("softmax", "topk")
    assert m.info.nslots == 8
    assert dev.info().nmodels == before + 1
    norm = m.normalization()
    assert norm is not None and digits_spec.normalize is not None
    assert norm.mean.tobytes() == digits_spec.normalize.mean.tobytes()
    assert norm.std.tobytes() == digits_spec.normalize.std.tobytes()
    with pytest.raises(pyflaxdev.ModelExists, match="'cgd' already exists"):
        digits_spec.create(dev, name="cgd")
    assert digits_spec.create(dev, name="cgd", exist_ok=True).id == m.id
    dev.destroy_model("cgd")
    with pytest.raises(pyflaxdev.ModelNotFound, match="model 'cgd' not found"):
        dev.model("cgd")
    assert dev.info().nmodels == before


def test_serve_in_thread_batches_concurrent_clients(
    dev: pyflaxdev.Device, digits_spec: models.ModelSpec, cleanup: list[str]
) -> None:
    digits_spec.create(dev, name="thr", nslots=8, max_queue_delay_us=20000)
    cleanup.append("thr")
    x, _ = digits_spec.heldout()
    results: list[Any] = [None] * 40
    with digits_spec.serving(model="thr", batch_sizes=(1, 4), max_wait_us=20000) as handle:

        def client(start: int) -> None:
            with pyflaxdev.open() as d:
                m = d.model("thr")
                for i in range(start, 40, 4):
                    results[i] = m.infer(x[i])

        threads = [threading.Thread(target=client, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    stats = handle.stats
    assert stats.jobs == 40
    assert stats.failed_jobs == 0
    assert max(stats.batch_sizes) > 1, f"no batch formed: {dict(stats.batch_sizes)}"
    logits = digits_spec.reference(x[:40])
    for i, r in enumerate(results):
        want = reference.topk(reference.softmax(logits[i]), digits_spec.topk)
        assert r.indices.tolist() == want.indices.tolist()
        np.testing.assert_allclose(r.scores, want.scores, rtol=0, atol=1e-6)


def test_worker_failure_is_eio_for_the_client(dev: pyflaxdev.Device, cleanup: list[str]) -> None:
    import jax

    dev.create_model("broken", (4,), np.float32, (4,), post=(), nslots=2)
    cleanup.append("broken")
    fail = threading.Event()

    def check(x: Any) -> Any:
        if fail.is_set():
            raise RuntimeError("boom")
        return x

    def broken(params: Any, x: Any) -> Any:  # fails at run time, after compiling
        return jax.pure_callback(check, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    with pyflaxdev.serving(broken, None, model="broken", batch_sizes=(1,)) as h:
        fail.set()
        with pytest.raises(pyflaxdev.WorkerFailed, match="model 'broken'") as info:
            dev.model("broken").infer(np.zeros(4, np.float32))
        assert info.value.errno == errno.EIO
    assert h.stats.failed_jobs == 1


def test_raw_chain_returns_vector(dev: pyflaxdev.Device, cleanup: list[str]) -> None:
    m = dev.create_model("double", (2, 2), np.float32, (4,), post=(), nslots=2)
    cleanup.append("double")

    def double(params: Any, x: Any) -> Any:
        return x.reshape(x.shape[0], -1) * 2

    with pyflaxdev.serving(double, None, model="double", batch_sizes=(1, 2)):
        out = m.infer(np.arange(4, dtype=np.float32).reshape(2, 2))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.tolist() == [0.0, 2.0, 4.0, 6.0]


def test_softmax_chain_matches_jax(dev: pyflaxdev.Device, cleanup: list[str]) -> None:
    import jax

    m = dev.create_model("sm", (16,), np.float32, (16,), post=("softmax",), nslots=4)
    cleanup.append("sm")
    rng = np.random.default_rng(3)
    with pyflaxdev.serving(lambda p, x: x, None, model="sm", batch_sizes=(1,)):
        for scale in (1.0, 30.0, 1e4):
            x = (rng.standard_normal(16) * scale).astype(np.float32)
            out = m.infer(x)
            want = np.asarray(jax.nn.softmax(x), dtype=np.float64)
            np.testing.assert_allclose(out, want, atol=1e-6, rtol=1e-5)


def test_worker_stops_when_model_destroyed(dev: pyflaxdev.Device) -> None:
    dev.create_model("gone", (1,), np.float32, (1,), post=(), nslots=1)
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pyflaxdev.serve(
                lambda p, x: x,
                None,
                model="gone",
                batch_sizes=(1,),
                ready=lambda: dev.destroy_model("gone"),
                fetch_timeout_ms=50,
            )
        except BaseException as exc:
            errors.append(exc)
        done.set()

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    assert done.is_set() and not errors, errors


def test_stale_completion_and_double_attach_rejected(
    dev: pyflaxdev.Device, cleanup: list[str]
) -> None:
    dev.create_model("w", (1,), np.float32, (1,), post=(), nslots=2)
    cleanup.append("w")
    with pyflaxdev.Worker("w") as w:
        w.attach()
        with pytest.raises(pyflaxdev.InvalidArgument, match="COMPLETE on model 'w' rejected"):
            w.complete([(0, 12345, 0)])
        with pytest.raises(pyflaxdev.InvalidArgument):
            w.complete([(99, 0, 0)])
        with pytest.raises(pyflaxdev.InvalidArgument, match="already a worker"):
            w.attach()


def test_fetch_before_attach_is_enxio(dev: pyflaxdev.Device) -> None:
    req = ffi.new("struct flax_fetch *", {"max_jobs": 1})
    with pytest.raises(pyflaxdev.FlaxError, match="not attached as a worker") as info:
        dev.ioctl(ioctls.FETCH, req, op="FETCH")
    assert info.value.errno == errno.ENXIO


def test_cli_missing_model(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    x = tmp_path / "x.bin"
    x.write_bytes(bytes(64))
    code = cli.main(["infer", "nope", "--input", str(x)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == "flaxdev: model 'nope' not found (ENOENT)"


def test_cli_infer_and_status(
    digits_worker: object,
    digits_spec: models.ModelSpec,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    code = cli.main(["-q", "infer", "digits", "--heldout", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert len(lines) == digits_spec.topk
    x, y = digits_spec.heldout()
    assert lines[0][0] == digits_spec.label(int(np.argmax(digits_spec.reference(x[3]))))
    assert f"true label {digits_spec.label(int(y[3]))}" in err

    bad = tmp_path / "x.bin"
    bad.write_bytes(bytes(100))
    assert cli.main(["infer", "digits", "--input", str(bad)]) == 1
    assert "must be 64 bytes (uint8 [8, 8]), got 100" in capsys.readouterr().err

    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:2] == ["NAME", "ID"] and "REQUESTS" in header.split()
    assert any(row.split()[0] == "digits" for row in rows)


def test_infer_interrupted_by_signals_keeps_its_deadline(
    dev: pyflaxdev.Device, cleanup: list[str]
) -> None:
    """Real signals during a blocked INFER: the handler runs, INFER resumes, the deadline holds."""
    import signal
    import time

    m = dev.create_model("sig", (1,), np.float32, (1,), post=(), nslots=1, timeout_ms=5000)
    cleanup.append("sig")
    caught: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: caught.append(signum))
    main = threading.get_ident()

    def poke() -> None:
        for _ in range(2):
            time.sleep(0.15)
            signal.pthread_kill(main, signal.SIGUSR1)

    t = threading.Thread(target=poke)
    try:
        t.start()
        start = time.monotonic()
        with pytest.raises(pyflaxdev.Timeout):
            m.infer(np.zeros(1, np.float32), timeout_ms=600)
        elapsed = time.monotonic() - start
    finally:
        t.join()
        signal.signal(signal.SIGUSR1, old)
    assert caught == [signal.SIGUSR1] * 2
    assert 0.55 <= elapsed < 1.5, f"timed out after {elapsed:.3f} s, wanted about 0.6 s"


def test_worker_region_mapped_and_released(dev: pyflaxdev.Device, cleanup: list[str]) -> None:
    dev.create_model("u", (3,), np.float32, (2,), post=(), nslots=2)
    cleanup.append("u")
    with pyflaxdev.Worker("u") as w:
        region = w.attach()
        assert region.inputs.shape == (2, 3)
        assert region.outputs.shape == (2, 2)
        assert int(region.layout.magic) == 0x464C4158
        assert dev.describe("u").name == "u"
        workers = (sysfs_dir("u") / "workers").read_text().strip()
        assert workers == "1"
    assert (sysfs_dir("u") / "workers").read_text().strip() == "0"


def sysfs_dir(name: str) -> Any:
    from pyflaxdev import sysfs

    return sysfs.sysfs_root() / "models" / name
