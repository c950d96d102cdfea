"""Who may do what to a model, checked by the kernel (issue 17, first part).

A model belongs to the user who created it (its fsuid and fsgid): only that
user or ``CAP_SYS_ADMIN`` may destroy it, set its labels or vocabulary,
attach a worker to it (and so map its region) or write its sysfs files, which
the user owns.  Ioctls that change models need an fd open for writing.  A user
without ``CAP_SYS_ADMIN`` owns at most ``max_models_per_user`` models, and the
in-kernel API finds only models created with ``CAP_SYS_ADMIN``.

The other users are numeric uids with no groups and no capabilities: a forked
child that drops to them (``as_user``), or ``setpriv`` for the shell.  The
device node is opened up to 0666 for these tests, so that each refusal below
is the kernel's check and not the node's mode.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from childproc import in_child

import pyflaxdev
from pyflaxdev import sysfs

ALICE = 1001
BOB = 1002
LABELS = ["cat", "dog", "eel"]


def as_user(uid: int, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a child that is ``uid`` (gid ``uid``, no groups, no capabilities)."""

    def drop() -> None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    return in_child(fn, drop)


def _refused(result: Any, code: int, cls: str = "PermissionDenied") -> str:
    assert isinstance(result, tuple) and result[0] == "error", f"not refused: {result!r}"
    assert result[1] == code, result
    assert result[2] == cls, result
    return str(result[3])


def _sh_as(uid: int, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )


def _model_dir(name: str) -> Path:
    return sysfs.sysfs_root() / "models" / name


def _create(name: str, *, tokenize: bool = False) -> Callable[[], Any]:
    def create() -> Any:
        with pyflaxdev.open() as d:
            if tokenize:
                d.create_model(name, (2, 8), np.int32, (16,), tokenize=True, post=(), nslots=2)
            else:
                d.create_model(
                    name, (4,), np.float32, (3,), post=("softmax", "topk"), topk=1,
                    nslots=4, labels=LABELS,
                )  # fmt: skip
        return "created"

    return create


@pytest.fixture
def open_node() -> Iterator[None]:
    node = Path(pyflaxdev.DEFAULT_PATH)
    mode = stat.S_IMODE(node.stat().st_mode)
    node.chmod(0o666)
    try:
        yield
    finally:
        node.chmod(mode)


@pytest.fixture
def alices(open_node: None, cleanup: list[str]) -> str:
    """A classifier created by alice."""
    cleanup.append("alice-m")
    assert as_user(ALICE, _create("alice-m")) == "created"
    return "alice-m"


def test_the_creator_owns_the_model_and_its_sysfs_files(alices: str) -> None:
    d = _model_dir(alices)
    for name in ("timeout_ms", "labels", "state", "input", "result", "requests"):
        st = (d / name).stat()
        assert (st.st_uid, st.st_gid) == (ALICE, ALICE), name
    assert stat.S_IMODE((d / "result").stat().st_mode) == 0o400
    assert stat.S_IMODE((d / "input").stat().st_mode) == 0o200
    assert stat.S_IMODE((d / "timeout_ms").stat().st_mode) == 0o644


def test_another_user_cannot_change_or_serve_it(dev: pyflaxdev.Device, alices: str) -> None:
    before = dev.describe(alices)

    def destroy() -> Any:
        with pyflaxdev.open() as d:
            d.destroy_model(alices)

    def relabel() -> Any:
        with pyflaxdev.open() as d:
            d.set_labels(alices, ["x", "y", "z"])

    def attach() -> Any:
        with pyflaxdev.open() as d:
            pyflaxdev.Worker(alices, device=d).attach()

    msg = _refused(as_user(BOB, destroy), errno.EPERM)
    assert "another user's" in msg and "CAP_SYS_ADMIN" in msg, msg
    msg = _refused(as_user(BOB, relabel), errno.EPERM)
    assert "labels" in msg, msg
    msg = _refused(as_user(BOB, attach), errno.EPERM)
    assert "cannot attach" in msg, msg

    # Nothing changed: the model, its labels, no worker.
    after = dev.describe(alices)
    assert after.id == before.id
    assert dev.labels(alices) == LABELS
    assert (_model_dir(alices) / "workers").read_text().strip() == "0"

    # Its owner may, and so may root (CAP_SYS_ADMIN).
    assert as_user(ALICE, relabel) is None
    assert dev.labels(alices) == ["x", "y", "z"]
    dev.set_labels(alices, LABELS)
    assert dev.labels(alices) == LABELS
    assert as_user(ALICE, destroy) is None
    with pytest.raises(pyflaxdev.ModelNotFound):
        dev.describe(alices)


def test_vocabulary_only_from_the_owner(open_node: None, cleanup: list[str]) -> None:
    cleanup.append("alice-tok")
    assert as_user(ALICE, _create("alice-tok", tokenize=True)) == "created"

    def set_vocab() -> Any:
        with pyflaxdev.open() as d:
            return d.set_vocab("alice-tok", b"not a vocabulary\n")

    msg = _refused(as_user(BOB, set_vocab), errno.EPERM)
    assert "vocabulary" in msg, msg
    # The owner passes the check and reaches the parser, which rejects this text.
    _refused(as_user(ALICE, set_vocab), errno.EINVAL, "InvalidArgument")
    assert (_model_dir("alice-tok") / "vocab_size").read_text().strip() == "0"


def test_sysfs_writes_and_results_only_for_the_owner(alices: str) -> None:
    d = _model_dir(alices)
    timeout = d / "timeout_ms"
    old = timeout.read_text().strip()
    r = _sh_as(BOB, f"echo 1234 > {timeout}")
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = _sh_as(BOB, f"echo 0 > {d / 'requests'}")
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = _sh_as(BOB, f"cat {d / 'result'}")
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = _sh_as(BOB, f"echo 1 2 3 4 > {d / 'input'}")
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    assert timeout.read_text().strip() == old

    r = _sh_as(ALICE, f"echo 1234 > {timeout} && cat {timeout}")
    assert r.returncode == 0 and r.stdout.strip() == "1234", r
    assert timeout.read_text().strip() == "1234"


def test_changes_need_an_fd_open_for_writing(dev: pyflaxdev.Device, cleanup: list[str]) -> None:
    cleanup.append("ro-m")
    dev.create_model("ro-m", (4,), np.float32, (3,), post=("softmax", "topk"), topk=1, nslots=4)
    with pyflaxdev.open(writable=False) as ro:
        assert ro.info().abi_version == dev.info().abi_version  # reading is fine
        assert ro.describe("ro-m").id == dev.describe("ro-m").id
        with pytest.raises(pyflaxdev.PermissionDenied, match="open for writing") as e:
            ro.create_model("ro-new", (4,), np.float32, (3,), post=(), nslots=2)
        assert e.value.errno == errno.EBADF
        with pytest.raises(pyflaxdev.PermissionDenied, match="open for writing") as e:
            ro.destroy_model("ro-m")
        assert e.value.errno == errno.EBADF
        with pytest.raises(pyflaxdev.PermissionDenied) as e:
            ro.set_labels("ro-m", LABELS)
        assert e.value.errno == errno.EBADF
        with pytest.raises(pyflaxdev.PermissionDenied) as e:
            pyflaxdev.Worker("ro-m", device=ro).attach()
        assert e.value.errno == errno.EBADF
    assert dev.describe("ro-m").nworkers == 0
    assert dev.labels("ro-m") == []
    with pytest.raises(pyflaxdev.ModelNotFound):
        dev.describe("ro-new")


def test_models_per_user_are_capped(
    dev: pyflaxdev.Device, open_node: None, cleanup: list[str]
) -> None:
    cap = int(Path("/sys/module/flaxdev/parameters/max_models_per_user").read_text())
    assert cap == 4
    names = [f"alice-{i}" for i in range(cap + 1)]
    cleanup.extend(names)
    for name in names[:cap]:
        assert as_user(ALICE, _create(name)) == "created"
    msg = _refused(as_user(ALICE, _create(names[cap])), errno.EDQUOT, "OutOfResources")
    assert "max_models_per_user" in msg, msg
    # Another user, and root, are not held by alice's count.
    cleanup.append("bob-0")
    assert as_user(BOB, _create("bob-0")) == "created"
    cleanup.append("root-0")
    dev.create_model("root-0", (4,), np.float32, (3,), post=(), nslots=2)
    # One destroyed, alice may create again.
    dev.destroy_model(names[0])
    assert as_user(ALICE, _create(names[cap])) == "created"


def test_the_in_kernel_api_ignores_a_users_model(open_node: None, cleanup: list[str]) -> None:
    ko = os.environ.get("FLAX_SAMPLE_KO", "")
    assert ko, "FLAX_SAMPLE_KO is not set: run this suite through kbuild/vm-run"
    cleanup.append("iolat")  # the name flax_iolat looks up
    assert as_user(ALICE, _create("iolat")) == "created"
    r = subprocess.run(["insmod", ko], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    try:
        predict = Path("/sys/kernel/flax_iolat/predict")
        with pytest.raises(PermissionError) as e:
            predict.write_text("1 2 3 4\n")
        assert e.value.errno == errno.EPERM
        assert Path("/sys/kernel/flax_iolat/result").read_text().strip() == f"error -{errno.EPERM}"
        assert (_model_dir("iolat") / "requests").read_text().strip() == "0"
    finally:
        r = subprocess.run(["rmmod", "flax_iolat"], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
