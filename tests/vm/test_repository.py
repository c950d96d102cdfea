"""Models users bring: a repository with a Linen, an NNX and a text model, served from the CLI.

``flaxdev serve DIR/NAME --create`` reads the entry's ``config.toml``, creates the
device model with its labels, post chain and node permissions, and serves the
latest version; clients on the model's node get what in-process ``apply`` on the
same parameters gives (the Linen module's ``apply``, the NNX module called
directly, the text model's ``apply`` on Hugging Face ``tokenizers``' ids and
mask), postprocessed by numpy.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tomllib
from conftest import OUT, WorkerProcess

import pyflaxdev
from pyflaxdev import repository, sysfs

FLAX_GID = 2000
# The modules every entry holds, as model.py.
MODEL_PY = (Path(__file__).resolve().parents[1] / "data" / "repo_models.py").read_text()

LINEN_CONFIG = """
module = "model.py:linen"
post = ["softmax", "topk"]
topk = 2
labels = "labels.txt"
[input]
shape = [4]
dtype = "float32"
[output]
shape = [3]
[normalize]
mean = [5.8, 3.0, 3.8, 1.2]
std = [0.8, 0.4, 1.8, 0.8]
[serving]
batch_sizes = [1, 4]
workers = 2
[node]
group = 2000
mode = "0660"
"""

NNX_CONFIG = """
name = "repo-nnx"
module = "model.py:make_nnx"
[input]
shape = [4]
[output]
shape = [5]
[serving]
batch_sizes = [1, 4]
"""

# The text entry: named repo-text on the device.
TEXT_CONFIG = (
    'name = "repo-text"\n'
    + (Path(__file__).resolve().parents[1] / "data" / "repo_text.toml").read_text()
)
TEXTS = ["The cats sat on a red mat!", "dog ran", "zebra", "a dog, a cat.", "mats " * 20, ""]


def _module(d: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_vm_{d.name}".replace("-", "_"), d / "model.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flax import nnx

    root = tmp_path_factory.mktemp("repo")
    configs = (("repo-linen", LINEN_CONFIG), ("nnx-dir", NNX_CONFIG), ("text", TEXT_CONFIG))
    for name, config in configs:
        d = root / name
        d.mkdir()
        (d / "model.py").write_text(MODEL_PY)
        (d / "config.toml").write_text(config)
    (root / "repo-linen" / "labels.txt").write_text("setosa\nversicolor\nvirginica\n")
    mod = _module(root / "repo-linen")
    # Version 2 (served) as safetensors, the NNX state as an Orbax checkpoint: the
    # worker reads every format pyflaxdev.checkpoint knows.
    for v, fmt in ((1, "msgpack"), (2, "safetensors")):
        repository.save_version(root / "repo-linen", v, _linen_variables(mod, v), fmt=fmt)
    repository.save_version(root / "nnx-dir", 1, mod.Nnx(nnx.Rngs(42)), fmt="orbax")
    (root / "text" / "vocab.txt").write_text("\n".join(mod.VOCAB) + "\n")
    repository.save_version(root / "text", 1, _text_variables(mod))
    return root


def _text_variables(mod: Any) -> Any:
    return mod.TextBag().init(jax.random.PRNGKey(9), jnp.zeros((1, 2, 12), jnp.int32))


def _linen_variables(mod: Any, version: int) -> Any:
    """Version ``version``'s variables of repo-linen, made again for the reference."""
    return mod.Linen().init(jax.random.PRNGKey(version), jnp.zeros((1, 4)))


def _inputs(n: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(5)
    return (rng.standard_normal((n, 4)) * [0.8, 0.4, 1.8, 0.8] + [5.8, 3.0, 3.8, 1.2]).astype(
        np.float32
    )


def _serve(entry: Path, name: str) -> WorkerProcess:
    worker = WorkerProcess(str(entry), "--create", name=name)
    worker.wait_ready()
    return worker


def _check_linen(entry: Path) -> None:
    """repo-linen's answers, labels and node (group 2000, 0660) against in-process apply."""
    st = Path(pyflaxdev.model_path("repo-linen")).stat()
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (FLAX_GID, 0o660)
    assert (entry / "2" / "params.safetensors").is_file()
    mod = _module(entry)
    params = _linen_variables(mod, 2)
    x = _inputs(24)
    mean = np.array([5.8, 3.0, 3.8, 1.2], np.float32)
    std = np.array([0.8, 0.4, 1.8, 0.8], np.float32)
    logits = np.asarray(mod.Linen().apply(params, (x - mean) / std))
    with pyflaxdev.open_model("repo-linen") as model:
        assert model.labels() == ["setosa", "versicolor", "virginica"]
        for xi, li in zip(x, logits, strict=True):
            got = model.infer(xi)
            probs = np.asarray(jax.nn.softmax(li))
            order = np.argsort(-probs, kind="stable")[:2]
            assert got.indices.tolist() == order.tolist()
            np.testing.assert_allclose(got.scores, probs[order], rtol=1e-6, atol=1e-6)
            assert got.labels == ("setosa", "versicolor", "virginica")


def _check_nnx(entry: Path) -> None:
    """repo-nnx's answers (raw vectors) and node (the creator's, 0600) against a direct call."""
    from flax import nnx

    st = Path(pyflaxdev.model_path("repo-nnx")).stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.getuid(), 0o600)
    assert (entry / "1" / "checkpoint").is_dir()
    direct = _module(entry).Nnx(nnx.Rngs(42))
    x = _inputs(16)
    want = np.asarray(direct(jnp.asarray(x)))
    with pyflaxdev.open_model("repo-nnx") as model:
        for xi, wi in zip(x, want, strict=True):
            np.testing.assert_allclose(model.infer(xi), wi, rtol=1e-6, atol=1e-6)


def _check_text(entry: Path) -> None:
    """repo-text: the kernel tokenises (the vocabulary uploaded from the entry), the
    worker applies; answers against apply on ``tokenizers``' ids and mask."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(str(entry / "vocab.txt"), lowercase=True)
    tok.enable_truncation(12)
    tok.enable_padding(length=12)
    encs = tok.encode_batch(TEXTS)
    x = np.array([[e.ids, e.attention_mask] for e in encs], np.int32)
    mod = _module(entry)
    logits = np.asarray(mod.TextBag().apply(_text_variables(mod), jnp.asarray(x)))
    with pyflaxdev.open_model("repo-text") as model:
        for text, li in zip(TEXTS, logits, strict=True):
            got = model.infer(text)
            probs = np.asarray(jax.nn.softmax(li))
            order = np.argsort(-probs, kind="stable")[:2]
            assert got.indices.tolist() == order.tolist(), text
            np.testing.assert_allclose(got.scores, probs[order], rtol=1e-6, atol=1e-6)


def test_linen_and_nnx_models_from_a_repository(repo: Path, cleanup: list[str]) -> None:
    """flaxdev serve --repo DIR --create: one worker process per entry, each model as its
    config says; SIGTERM stops them all and every worker detaches."""
    cleanup.extend(["repo-linen", "repo-nnx", "repo-text"])
    worker = WorkerProcess("--repo", str(repo), "--create", name="repo-linen")
    try:
        worker.wait_ready()
        worker.wait_ready(model="repo-nnx")
        worker.wait_ready(model="repo-text")
        # repo-linen's config asks for two workers: both attached before ready.
        workers = {n: int((sysfs.model_dir(n) / "workers").read_text()) for n in cleanup}
        assert workers == {"repo-linen": 2, "repo-nnx": 1, "repo-text": 1}
        _check_linen(repo / "repo-linen")
        _check_nnx(repo / "nnx-dir")
        _check_text(repo / "text")
    finally:
        assert worker.stop() == 0, worker.log.read_text()
    for name in ("repo-linen", "repo-nnx", "repo-text"):
        assert int((sysfs.model_dir(name) / "workers").read_text()) == 0


def test_a_bad_entry_fails_before_creating_anything(tmp_path: Path) -> None:
    import subprocess

    d = tmp_path / "bad"
    d.mkdir()
    (d / "config.toml").write_text('module = "model.py:f"\nshape = 3\n[input]\n[output]\n')
    r = subprocess.run(
        [sys.executable, "-m", "pyflaxdev", "serve", str(d), "--create"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode != 0 and "unknown key 'shape'" in r.stderr, r.stderr
    with pyflaxdev.open() as dev, pytest.raises(pyflaxdev.ModelNotFound):
        dev.describe("bad")


def test_the_readme_example_serves_iris(tmp_path: Path, cleanup: list[str]) -> None:
    """examples/iris_repo.py (README, "Serve your own model"): trained and saved (on the
    host by make test-vm, else here), served, and asked from the shell through
    /dev/flax/iris."""
    import subprocess

    from flax import serialization

    cleanup.append("iris")
    top = Path(__file__).resolve().parents[2]
    trained = OUT / "iris-repo" / "iris"
    if trained.is_dir():  # make test-vm trained it on the host before the boot
        assert "held-out accuracy" in (OUT / "iris-repo.txt").read_text()
        shutil.copytree(trained, tmp_path / "iris")
    else:
        r = subprocess.run(
            [sys.executable, str(top / "examples" / "iris_repo.py"), str(tmp_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 0 and "held-out accuracy" in r.stdout, r.stderr
    entry = tmp_path / "iris"
    worker = _serve(entry, "iris")
    try:
        flowers = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.4, 1.3]])
        script = f"exec 3<>{pyflaxdev.model_path('iris')}\n" + "".join(
            f"echo {' '.join(map(str, f))} >&3 && cat <&3 && echo ---\n" for f in flowers
        )
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        blocks = r.stdout.split("---\n")[:-1]
        params = serialization.msgpack_restore((entry / "1" / "params.msgpack").read_bytes())
        norm = tomllib.loads((entry / "config.toml").read_text())["normalize"]
        mean = np.array(norm["mean"], np.float32)
        std = np.array(norm["std"], np.float32)
        xn = (flowers.astype(np.float32) - mean) / std
        probs = np.asarray(jax.nn.softmax(_module(entry).Iris().apply(params, xn)))
        names = ["setosa", "versicolor", "virginica"]
        for block, p in zip(blocks, probs, strict=True):
            got = [line.split("\t") for line in block.splitlines()]
            order = np.argsort(-p, kind="stable")[:2]
            assert [g[0] for g in got] == [names[i] for i in order], (got, p)
            # text scores are %.6g: 6 significant digits
            np.testing.assert_allclose([float(g[1]) for g in got], p[order], rtol=6e-6)
        assert blocks[0].split("\t")[0] == "setosa"
    finally:
        assert worker.stop() == 0, worker.log.read_text()
