"""Model repositories (pyflaxdev.repository): Linen and NNX entries, versions, bad configs.

The reference is the module's own ``apply`` (Linen) or ``__call__`` (NNX) in
process, on the parameters the test saved.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pyflaxdev import checkpoint, repository
from pyflaxdev.commands._common import zoo_spec
from pyflaxdev.errors import InvalidArgument, ModelNotFound

# The modules every entry holds, as model.py.
MODEL_PY = (Path(__file__).resolve().parents[1] / "data" / "repo_models.py").read_text()

CONFIG = """
module = "model.py:{factory}"
post = ["softmax", "topk"]
topk = 2
labels = "labels.txt"

[input]
shape = [4]
dtype = "float32"

[output]
shape = [{out}]

[normalize]
scale = 1.0
mean = [5.8, 3.0, 3.8, 1.2]
std = [0.8, 0.4, 1.8, 0.8]

[serving]
batch_sizes = [1, 4]
"""


def _entry(root: Path, name: str, factory: str, out: int) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "model.py").write_text(MODEL_PY)
    (d / "config.toml").write_text(CONFIG.format(factory=factory, out=out))
    (d / "labels.txt").write_text("setosa\nversicolor\nvirginica\n")
    return d


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    from flax import nnx

    root = tmp_path / "repo"
    lin = _entry(root, "iris-linen", "linen", 3)
    mod_spec = importlib.util.spec_from_file_location("_test_model", lin / "model.py")
    assert mod_spec is not None and mod_spec.loader is not None
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    for v, seed in ((1, 1), (2, 2)):
        variables = mod.Linen().init(jax.random.PRNGKey(seed), jnp.zeros((1, 4)))
        repository.save_version(lin, v, variables)
    nx = _entry(root, "iris-nnx", "make_nnx", 5)
    repository.save_version(nx, 1, mod.Nnx(nnx.Rngs(7)))
    (root / "not-a-model").mkdir()
    return root


def test_entries_and_versions(repo: Path) -> None:
    assert [p.name for p in repository.entries(repo)] == ["iris-linen", "iris-nnx"]
    assert repository.versions(repo / "iris-linen") == [1, 2]
    assert repository.versions(repo / "iris-nnx") == [1]


def test_linen_entry_serves_its_latest_version(repo: Path) -> None:
    spec = zoo_spec(str(repo / "iris-linen"))
    assert spec.name == "iris-linen" and spec.metadata["version"] == 2
    assert spec.labels == ("setosa", "versicolor", "virginica")
    assert spec.post == ("softmax", "topk") and spec.topk == 2
    assert spec.batch_sizes == (1, 4)
    x = np.array([[6.1, 2.8, 4.7, 1.2], [5.0, 3.4, 1.5, 0.2]], np.float32)
    mod = spec.module
    want = np.asarray(mod.apply(spec.params, (x - spec.normalize.mean) / spec.normalize.std))
    np.testing.assert_allclose(spec.reference(x), want, rtol=1e-6, atol=1e-6)
    v1 = repository.load(repo / "iris-linen", version=1)
    assert not np.allclose(v1.reference(x), spec.reference(x))


def test_nnx_entry_merges_its_state(repo: Path) -> None:
    from flax import nnx

    spec = repository.load(repo / "iris-nnx")
    x = np.array([[6.1, 2.8, 4.7, 1.2]], np.float32)
    mod_spec = importlib.util.spec_from_file_location("_t2", repo / "iris-nnx" / "model.py")
    assert mod_spec is not None and mod_spec.loader is not None
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    direct = mod.Nnx(nnx.Rngs(7))
    want = np.asarray(direct((x - spec.normalize.mean) / spec.normalize.std))
    np.testing.assert_allclose(spec.reference(x), want, rtol=1e-6, atol=1e-6)
    # jitted as the worker runs it
    got = jax.jit(spec.module.apply)(spec.params, jnp.asarray(spec.preprocess(x)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("typo = 1\n", "unknown key 'typo' in the top level"),
        ("[serving]\nversoin = 1\n", "unknown key 'versoin' in \\[serving\\]"),
        ('module = "model.py"\n', "must be 'file.py:fn' or 'pkg.mod:fn'"),
        ('module = "model.py:nothing"\n', "has no callable 'nothing'"),
        ('module = "missing.py:f"\n', "no file"),
        ("[input]\nshape = 4\n", "input.shape must be a list of integers"),
    ],
)
def test_bad_configs_say_what_is_wrong(tmp_path: Path, change: str, message: str) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.py").write_text(MODEL_PY)
    base = 'module = "model.py:linen"\n[input]\nshape = [4]\n[output]\nshape = [3]\n'
    lines = base
    if change.startswith("module"):
        lines = base.replace('module = "model.py:linen"\n', change)
    elif change.startswith("[input]"):
        lines = 'module = "model.py:linen"\n' + change + "[output]\nshape = [3]\n"
    else:
        lines = change + base if not change.startswith("[") else base + change
    (d / "config.toml").write_text(lines)
    (d / "1").mkdir()
    (d / "1" / "params.msgpack").write_bytes(b"\x80")
    with pytest.raises(InvalidArgument, match=message):
        repository.load(d)


TEXT_CONFIG = (Path(__file__).resolve().parents[1] / "data" / "repo_text.toml").read_text()


def _text_entry(root: Path, config: str = TEXT_CONFIG) -> tuple[Path, object]:
    d = root / "text"
    d.mkdir()
    (d / "model.py").write_text(MODEL_PY)
    (d / "config.toml").write_text(config)
    mod = _model_py(d, "_text_model")
    (d / "vocab.txt").write_text("\n".join(mod.VOCAB) + "\n")  # type: ignore[attr-defined]
    return d, mod


def test_text_entry_tokenizes_as_the_kernel(tmp_path: Path) -> None:
    """[tokenize]: the spec uploads vocab.txt, tokenises as the kernel does and applies
    the module to the ids and mask."""
    d, mod = _text_entry(tmp_path)
    text_bag = mod.TextBag()  # type: ignore[attr-defined]
    variables = text_bag.init(jax.random.PRNGKey(3), jnp.zeros((1, 2, 12), jnp.int32))
    repository.save_version(d, 1, variables)
    spec = repository.load(d)
    assert (spec.tokenize, spec.text_max, spec.batch_sizes) == (True, 256, (1, 4))
    assert spec.load_vocab is not None and spec.load_vocab() == (d / "vocab.txt").read_bytes()
    texts = ["The cats sat on a red mat!", "dog ran", "zebra"]
    x = spec.preprocess(texts)
    # By hand: [CLS]=2 the=5 cat=6 ##s=13 sat=8 on=10 a=11 red=14 mat=12 !=17 [SEP]=3,
    # an unknown word is [UNK]=1, [PAD]=0 to the length; the mask marks the real tokens.
    want_ids = [
        [2, 5, 6, 13, 8, 10, 11, 14, 12, 17, 3, 0],
        [2, 7, 9, 3] + [0] * 8,
        [2, 1, 3] + [0] * 9,
    ]
    assert x[:, 0].tolist() == want_ids
    assert x[:, 1].tolist() == [[int(i != 0) for i in row] for row in want_ids]
    want = np.asarray(text_bag.apply(variables, jnp.asarray(x)))
    np.testing.assert_allclose(spec.reference(texts), want, rtol=1e-6, atol=1e-6)
    repository.check_module(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("vocab.txt", "words.txt"), "tokenize.vocab: no file .*words.txt"),
        (("text_max = 256", "text_max = 0"), "tokenize.text_max must be a positive integer"),
        (('dtype = "int32"', 'dtype = "float32"'), "a text model takes shape = \\[2, L\\]"),
        (("shape = [2, 12]", "shape = [12]"), "a text model takes shape = \\[2, L\\]"),
        (("[serving]", "[serving]\nbuckets = [0, 6]"), "buckets: bucket lengths must be pos"),
        (("[serving]", "[serving]\nbuckets = [6]"), "buckets cut the sequence.*\\[12, D\\]"),
        (('vocab = "vocab.txt"\n', ""), "tokenize.vocab is missing"),
        (("[serving]", "[normalize]\nmean = [0.0]\nstd = [1.0]\n[serving]"), "exclude each other"),
    ],
)
def test_bad_text_configs_say_what_is_wrong(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    d, _ = _text_entry(tmp_path, TEXT_CONFIG.replace(*change))
    (d / "1").mkdir()
    (d / "1" / "params.msgpack").write_bytes(b"\x80")
    with pytest.raises(InvalidArgument, match=message):
        repository.load(d)


def test_text_buckets_with_a_row_per_token(tmp_path: Path) -> None:
    config = TEXT_CONFIG.replace("shape = [3]", "shape = [12, 8]")
    d, _ = _text_entry(tmp_path, config.replace("[serving]", "[serving]\nbuckets = [6]"))
    (d / "1").mkdir()
    (d / "1" / "params.msgpack").write_bytes(b"\x80")
    assert repository.load(d).buckets == (6,)


def test_buckets_need_a_text_model(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.py").write_text(MODEL_PY)
    (d / "config.toml").write_text(
        'module = "model.py:linen"\n[input]\nshape = [4]\n[output]\nshape = [3]\n'
        "[serving]\nbuckets = [2]\n"
    )
    (d / "1").mkdir()
    (d / "1" / "params.msgpack").write_bytes(b"\x80")
    with pytest.raises(InvalidArgument, match="only a text model has buckets"):
        repository.load(d)


def test_missing_version_and_config(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.toml").write_text(
        textwrap.dedent("""\
            module = "x:y"
            [input]
            shape = [1]
            [output]
            shape = [1]
            """)
    )
    with pytest.raises(ModelNotFound, match="no version"):
        repository.load(d)
    with pytest.raises(ModelNotFound, match=r"no config\.toml"):
        repository.load(tmp_path)


def test_bad_modules_are_refused_before_serving(tmp_path: Path) -> None:
    """A module that fails to import, or disagrees with the config's shapes, or an
    unknown dtype: one error naming the file and the field."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.py").write_text(MODEL_PY)
    (d / "1").mkdir()
    base = "[input]\nshape = [4]\n[output]\nshape = [{out}]\n"
    (d / "config.toml").write_text('module = "model.py:linen"\n' + base.format(out=5))
    mod_spec = importlib.util.spec_from_file_location("_t3", d / "model.py")
    assert mod_spec is not None and mod_spec.loader is not None
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    repository.save_version(d, 1, mod.Linen().init(jax.random.PRNGKey(0), jnp.zeros((1, 4))))
    spec = repository.load(d)
    with pytest.raises(
        InvalidArgument, match=r"output\.shape is \[5\], but the module gives \[3\]"
    ):
        repository.check_module(spec)
    (d / "config.toml").write_text('module = "model.py:linen"\n' + base.format(out=3))
    repository.check_module(repository.load(d))  # agrees
    (d / "broken.py").write_text("import no_such_package_here\n")
    (d / "config.toml").write_text('module = "broken.py:f"\n' + base.format(out=3))
    with pytest.raises(InvalidArgument, match=r"module: importing broken\.py failed: ModuleNotF"):
        repository.load(d)
    (d / "config.toml").write_text(
        'module = "model.py:linen"\n[input]\nshape = [4]\ndtype = "float128x"\n'
        "[output]\nshape = [3]\n"
    )
    with pytest.raises(InvalidArgument, match=r"config\.toml: input\.dtype"):
        repository.load(d)


def _model_py(entry: Path, name: str) -> object:
    mod_spec = importlib.util.spec_from_file_location(name, entry / "model.py")
    assert mod_spec is not None and mod_spec.loader is not None
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("fmt", ["msgpack", "safetensors", "orbax"])
def test_every_parameters_format_restores_the_same_model(tmp_path: Path, fmt: str) -> None:
    """A Linen and an NNX entry saved as ``fmt`` answer as their modules do in process."""
    from flax import nnx

    x = np.array([[6.1, 2.8, 4.7, 1.2], [5.0, 3.4, 1.5, 0.2]], np.float32)
    lin = _entry(tmp_path, "linen", "linen", 3)
    mod = _model_py(lin, f"_fmt_{fmt}")
    variables = mod.Linen().init(jax.random.PRNGKey(3), jnp.zeros((1, 4)))
    path = repository.save_version(lin, 1, variables, fmt=fmt)
    assert path.name == checkpoint.FORMATS[fmt] and repository.versions(lin) == [1]
    assert [p.name for p in (lin / "1").iterdir()] == [path.name]  # no temporary left
    spec = repository.load(lin)
    repository.check_module(spec)
    z = (x - spec.normalize.mean) / spec.normalize.std
    want = np.asarray(mod.Linen().apply(variables, z))
    np.testing.assert_allclose(spec.reference(x), want, rtol=1e-6, atol=1e-6)

    nx = _entry(tmp_path, "nnx", "make_nnx", 5)
    direct = mod.Nnx(nnx.Rngs(11))
    repository.save_version(nx, 1, direct, fmt=fmt)
    spec = repository.load(nx)
    np.testing.assert_allclose(spec.reference(x), np.asarray(direct(z)), rtol=1e-6, atol=1e-6)


def test_saving_another_format_replaces_the_version(tmp_path: Path) -> None:
    lin = _entry(tmp_path, "linen", "linen", 3)
    mod = _model_py(lin, "_fmt_replace")
    one = mod.Linen().init(jax.random.PRNGKey(1), jnp.zeros((1, 4)))
    two = mod.Linen().init(jax.random.PRNGKey(2), jnp.zeros((1, 4)))
    repository.save_version(lin, 1, one, fmt="orbax")
    repository.save_version(lin, 1, two, fmt="safetensors")
    assert sorted(p.name for p in (lin / "1").iterdir()) == ["params.safetensors"]
    got = checkpoint.read(lin / "1" / "params.safetensors")
    kernel = got["params"]["Dense_0"]["kernel"]
    np.testing.assert_array_equal(kernel, np.asarray(two["params"]["Dense_0"]["kernel"]))


def test_bad_parameters_name_their_file(tmp_path: Path) -> None:
    """Two formats in one version, a damaged file, an unknown format: each refused,
    naming the file, before anything is served."""
    lin = _entry(tmp_path, "linen", "linen", 3)
    mod = _model_py(lin, "_fmt_bad")
    variables = mod.Linen().init(jax.random.PRNGKey(1), jnp.zeros((1, 4)))
    repository.save_version(lin, 1, variables)
    (lin / "1" / "params.safetensors").write_bytes(b"junk")
    with pytest.raises(InvalidArgument, match=r"/1: a version holds one of .*found params\.m"):
        repository.load(lin)
    (lin / "1" / "params.msgpack").unlink()
    spec = repository.load(lin)
    with pytest.raises(InvalidArgument, match=r"params\.safetensors: not a readable safetensors"):
        repository.check_module(spec)
    (lin / "1" / "params.safetensors").unlink()
    (lin / "1" / "checkpoint").mkdir()
    with pytest.raises(InvalidArgument, match=r"1/checkpoint: not a readable orbax"):
        repository.check_module(repository.load(lin))
    with pytest.raises(InvalidArgument, match="unknown parameters format 'npz'"):
        repository.save_version(lin, 2, variables, fmt="npz")
    assert repository.versions(lin) == [1]
    with pytest.raises(InvalidArgument, match="cannot be stored in safetensors"):
        checkpoint.write(tmp_path / "x", {"a/b": np.zeros(1)}, "safetensors")


def test_heldout_and_about(repo: Path) -> None:
    lin = repo / "iris-linen"
    with pytest.raises(InvalidArgument, match="has no held-out data"):
        repository.load(lin).heldout()
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
    np.savez(lin / "heldout.npz", x=x, y=np.array([0, 2]))
    text = (lin / "config.toml").read_text()
    (lin / "config.toml").write_text(
        'heldout = "heldout.npz"\n' + text + '\n[about]\nsource = "iris"\n'
    )
    spec = repository.load(lin)
    got_x, got_y = spec.heldout()
    assert np.array_equal(got_x, x) and got_y.tolist() == [0, 2] and got_y.dtype == np.int64
    assert spec.metadata["about"] == {"source": "iris"}
    np.savez(lin / "heldout.npz", x=x[:, :3], y=np.array([0, 2]))
    with pytest.raises(InvalidArgument, match=r"config.toml: heldout: .*x float32\[2, 3\]"):
        repository.load(lin).heldout()
    (lin / "config.toml").write_text("about = 3\n" + text)
    with pytest.raises(InvalidArgument, match=r"config.toml: about must be a table"):
        repository.load(lin)


def test_write_config_round_trips_and_refuses_unknown_keys(tmp_path: Path) -> None:
    config = {
        "module": "model.py:linen",
        "post": ["softmax"],
        "input": {"shape": [4], "dtype": "float32"},
        "output": {"shape": [3]},
        "normalize": {"scale": 1 / 255, "mean": [0.1, 1e-7, 3.0, -2.5], "std": [1.0] * 4},
        "about": {"note": 'say "hi"\\n', "nested": {"ok": True, "n": 3}},
    }
    path = repository.write_config(tmp_path / "m", config)
    assert repository._read_config(tmp_path / "m") == config
    with pytest.raises(InvalidArgument, match="unknown key 'bogus' in the top level"):
        repository.write_config(tmp_path / "m", {**config, "bogus": 1})
    assert repository._read_config(tmp_path / "m") == config  # the old file is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]


@pytest.mark.parametrize("name", ["digits", "patches"])
def test_the_zoo_is_a_repository(name: str) -> None:
    """The shipped classifiers are ordinary entries: the same loader, the same checks."""
    from pyflaxdev import models

    assert [p.name for p in repository.entries(models.ZOO)] == ["digits", "patches"]
    spec = models.get(name)
    assert spec.metadata["repository"] == str(models.ZOO / name)
    assert spec.metadata["version"] == 1 and repository.latest_version(models.ZOO / name) == 1
    repository.check_module(spec)
    x, y = spec.heldout()
    assert len(x) == len(y) and x.shape[1:] == spec.input.shape
    assert spec.accuracy() == pytest.approx(spec.metadata["about"]["heldout_accuracy"])
