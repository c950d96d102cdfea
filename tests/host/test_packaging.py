"""The wheel: one abi3 build for every supported CPython, installable without a compiler.

Built from this checkout with ``pip wheel`` (no build isolation: the registry
may be out of reach), then installed with ``pip install --target`` and
imported from outside the checkout, so that nothing compiles at install time
and the installed copy, not the source tree, is what imports.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(TOP), "-w", str(out)],
        check=True, cwd=TOP, capture_output=True, text=True,
    )  # fmt: skip
    (path,) = out.glob("*.whl")
    return path


def test_one_abi3_wheel(wheel: Path) -> None:
    assert wheel.name.startswith("pyflaxdev-0.1.0-cp310-abi3-linux_"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "pyflaxdev/_uapi.abi3.so" in names
    assert not [n for n in names if n.endswith(".so") and "abi3" not in n]
    assert any(n.endswith("licenses/LICENSE") for n in names)
    zoo = ("zoo/digits/config.toml", "zoo/digits/1/params.msgpack", "zoo/digits/heldout.npz")
    zoo += ("zoo/patches/labels.txt", "zoo/patches/1/params.msgpack")
    for data in (*zoo, "py.typed"):
        assert f"pyflaxdev/{data}" in names, data


def test_metadata_and_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    assert msg["License"] == "GPL-2.0-only" or "GPL" in (msg.get("License-Expression") or "")
    assert set(msg.get_all("Provides-Extra")) >= {"serve", "bench", "train", "models", "dev"}
    requires = msg.get_all("Requires-Dist")
    assert any(r.startswith("matplotlib") and "bench" in r for r in requires)
    assert any(r.startswith("jax") and "serve" in r for r in requires)
    assert any(r.startswith("tomli") and "python_version" in r for r in requires)
    assert "flaxdev" in (msg["Description"] or msg.get_payload() or "")


def test_installs_and_imports_without_compiling(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "CC": "false", "CXX": "false"}  # any compile would fail
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        check=True, env=env, capture_output=True, text=True,
    )  # fmt: skip
    code = (
        "import pyflaxdev, pyflaxdev._uapi as u;"
        "print(pyflaxdev.__file__);"
        "print(u.ffi.string(u.lib.FLAX_CONTROL_NODE).decode())"
    )
    env["PYTHONPATH"] = os.pathsep.join([str(site), *sys.path[1:]])
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    where, node = r.stdout.split()
    assert where.startswith(str(site)) and node == "/dev/flax/control"
