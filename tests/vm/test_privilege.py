"""Who may do what to a model, checked by the kernel (issue 17).

A model belongs to the user who created it (its fsuid and fsgid, or an owner
and group given at creation: another owner, or a group the creator is not in,
takes ``CAP_CHOWN``): only that user or ``CAP_SYS_ADMIN`` may destroy it, set
its labels or vocabulary, attach a worker to it (and so map its region) or
write its sysfs files, which the user owns.  Its node ``/dev/flax/<name>``
has that owner and group and the mode given at creation (0600 by default):
the only way in for everyone else, who may run the model as far as the mode
lets them open it for writing.  On the control node only the owner and
``CAP_SYS_ADMIN`` may run it.  Ioctls that change models need an fd open for
writing.  A user without ``CAP_SYS_ADMIN`` owns at most
``max_models_per_user`` models, and the in-kernel API finds only models
created with ``CAP_SYS_ADMIN``.

The other users are numeric uids with no capabilities: a forked child that
drops to them (``as_user``; bob and alice are in the group ``FLAX``, carol in
none), or ``setpriv`` for the shell.  The control node is opened up to 0666 for
these tests, so that each refusal below is the kernel's check and not the
control node's mode.
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
CAROL = 1003
FLAX = 2000  # the group alice and bob share
GROUPS = {ALICE: [FLAX], BOB: [FLAX], CAROL: []}
LABELS = ["cat", "dog", "eel"]
X = np.array([0.5, 2.0, -1.0, 0.0], np.float32)


def as_user(uid: int, fn: Callable[[], Any], *, groups: bool = False) -> Any:
    """Run ``fn`` in a child that is ``uid`` (gid ``uid``, no capabilities), in
    ``GROUPS[uid]`` if ``groups``, else in no supplementary group."""

    def drop() -> None:
        os.setgroups(GROUPS[uid] if groups else [])
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


def _desc(name: str, **kw: Any) -> pyflaxdev.ModelDesc:
    return pyflaxdev.ModelDesc(
        name=name,
        input=pyflaxdev.TensorSpec((4,), np.dtype(np.float32)),
        output=pyflaxdev.TensorSpec((3,), np.dtype(np.float32)),
        post=("softmax", "topk"),
        topk=1,
        nslots=4,
        **kw,
    )


def _create(name: str, *, tokenize: bool = False, **kw: Any) -> Callable[[], Any]:
    def create() -> Any:
        with pyflaxdev.open() as d:
            if tokenize:
                d.create_model(name, (2, 8), np.int32, (16,), tokenize=True, post=(), nslots=2)
            else:
                d.create(_desc(name, **kw), labels=LABELS)
        return "created"

    return create


def _node(name: str) -> Path:
    return Path(pyflaxdev.model_path(name))


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


def test_the_creator_owns_the_model_its_node_and_its_sysfs_files(
    dev: pyflaxdev.Device, alices: str
) -> None:
    d = _model_dir(alices)
    for name in ("timeout_ms", "labels", "state", "requests"):
        st = (d / name).stat()
        assert (st.st_uid, st.st_gid) == (ALICE, ALICE), name
    assert stat.S_IMODE((d / "timeout_ms").stat().st_mode) == 0o644
    st = _node(alices).stat()
    assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (ALICE, ALICE)
    info = dev.describe(alices)
    assert (info.owner_uid, info.owner_gid, info.node_mode) == (ALICE, ALICE, 0o600)
    uevent = dict(
        line.split("=", 1) for line in Path(f"/sys/class/flax/{alices}/uevent").read_text().split()
    )
    assert uevent["DEVNAME"] == f"flax/{alices}"
    assert (uevent["DEVUID"], uevent["DEVGID"], uevent["DEVMODE"]) == ("1001", "1001", "0600")
    assert (
        f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" == uevent["MAJOR"] + ":" + uevent["MINOR"]
    )


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
    # The shell path is the node, 0600: bob cannot open it at all.
    r = _sh_as(BOB, f"exec 3<>{_node(alices)}; echo 1 2 3 4 >&3; cat <&3")
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


def _infer(path: str, *, writable: bool = True) -> Callable[[], Any]:
    def infer() -> Any:
        with pyflaxdev.Device(path, writable=writable) as dev:
            name = Path(path).name if Path(path).name != "control" else "shared"
            return dev.model(name).infer(X, timeout_ms=2000).indices.tolist()

    return infer


def _write_read(path: str) -> Callable[[], Any]:
    def run() -> Any:
        fd = os.open(path, os.O_RDWR)
        try:
            try:
                return ("read", os.read(fd, 100))
            except OSError as exc:
                return ("error", exc.errno)
        finally:
            os.close(fd)

    return run


def test_the_node_mode_alice_chose_decides(open_node: None, cleanup: list[str]) -> None:
    """alice's model with group FLAX, mode 0660: bob runs it through its node only;
    carol cannot open it; nobody but alice and root changes or serves it."""
    cleanup.append("shared")
    assert as_user(ALICE, _create("shared", group=FLAX, mode=0o660), groups=True) == "created"
    node = str(_node("shared"))
    st = _node("shared").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (ALICE, FLAX, 0o660)
    with pyflaxdev.serving(lambda p, x: x[:, :3], None, model="shared", batch_sizes=(1,)):
        assert as_user(ALICE, _infer(node), groups=True) == [1]
        assert as_user(BOB, _infer(node), groups=True) == [1]  # the group's rw
        # The control node runs it for alice and root, not for bob.
        assert as_user(ALICE, _infer(pyflaxdev.DEFAULT_PATH), groups=True) == [1]
        assert _infer(pyflaxdev.DEFAULT_PATH)() == [1]
        msg = _refused(as_user(BOB, _infer(pyflaxdev.DEFAULT_PATH), groups=True), errno.EPERM)
        assert "open its node" in msg and "/dev/flax/shared" in msg, msg
        # Read-only on the node: described, not run.
        msg = _refused(as_user(BOB, _infer(node, writable=False), groups=True), errno.EBADF)
        assert "open for writing" in msg, msg
        # carol, in no group, cannot open it.
        msg = _refused(as_user(CAROL, _infer(node), groups=True), errno.EACCES)
        assert "usermod" in msg, msg
        # alice's shell result is alice's open file's: bob's own fd has none.
        fd = os.open(node, os.O_RDWR)
        try:
            os.write(fd, b"0.5 2 -1 0\n")
            assert as_user(BOB, _write_read(node), groups=True) == ("error", errno.ENODATA)
            assert os.read(fd, 100).decode().split("\t")[0] == "dog"
        finally:
            os.close(fd)

        def on_node(fn: Callable[[pyflaxdev.Device], Any]) -> Callable[[], Any]:
            def run() -> Any:
                with pyflaxdev.Device(node) as d:
                    return fn(d)

            return run

        # Through the node too, bob may not serve, relabel or destroy it.
        refusals: dict[str, Callable[[pyflaxdev.Device], Any]] = {
            "attach": lambda d: pyflaxdev.Worker("shared", device=d).attach(),
            "labels": lambda d: d.set_labels("shared", ["x", "y", "z"]),
            "destroy": lambda d: d.destroy_model("shared"),
        }
        for fn in refusals.values():
            _refused(as_user(BOB, on_node(fn), groups=True), errno.EPERM)
        # A model's node creates nothing.
        r = as_user(BOB, on_node(lambda d: d.create(_desc("bob-via-node"))), groups=True)
        msg = _refused(r, errno.ENOTTY, "NotAFlaxDevice")
        assert "control node" in msg, msg
    with pyflaxdev.open() as dev:
        assert dev.labels("shared") == LABELS
        assert dev.describe("shared").nworkers == 0


def test_giving_a_model_away_takes_cap_chown(dev: pyflaxdev.Device, open_node: None,
                                              cleanup: list[str]) -> None:  # fmt: skip
    cleanup.extend(["to-bob", "for-alice"])
    msg = _refused(as_user(ALICE, _create("to-bob", owner=BOB)), errno.EPERM)
    assert "CAP_CHOWN" in msg, msg
    msg = _refused(as_user(CAROL, _create("to-bob", group=FLAX)), errno.EPERM)
    assert "CAP_CHOWN" in msg, msg
    with pytest.raises(pyflaxdev.ModelNotFound):
        dev.describe("to-bob")
    # root may: the model is then alice's to serve, and counts as root's creation.
    dev.create(_desc("for-alice", owner=ALICE, group=FLAX, mode=0o640))
    st = _node("for-alice").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (ALICE, FLAX, 0o640)

    def attach() -> Any:
        with (
            pyflaxdev.Device(str(_node("for-alice"))) as d,
            pyflaxdev.Worker("for-alice", device=d) as w,
        ):
            w.attach()
            return "attached"

    assert as_user(ALICE, attach) == "attached"
    # 0640: bob, in the group, may open it read-only and describe it, not run it.
    node = str(_node("for-alice"))
    _refused(as_user(BOB, _infer(node), groups=True), errno.EACCES)

    def describe() -> Any:
        with pyflaxdev.Device(node, writable=False) as d:
            return d.model("for-alice").info.node_mode

    assert as_user(BOB, describe, groups=True) == 0o640


def test_a_models_node_names_that_model_only(dev: pyflaxdev.Device, cleanup: list[str]) -> None:
    cleanup.extend(["mine", "other"])
    dev.create(_desc("mine"))
    dev.create(_desc("other"), labels=LABELS)
    with pyflaxdev.Device(str(_node("mine"))) as node:
        assert node.model("other").id == dev.describe("other").id  # looking up is fine
        with pytest.raises(pyflaxdev.InvalidArgument) as e:
            node.model("other").infer(X, timeout_ms=100)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(pyflaxdev.InvalidArgument):
            node.set_labels("other", ["x", "y", "z"])
    assert dev.labels("other") == LABELS


def test_the_node_goes_with_its_model(dev: pyflaxdev.Device, cleanup: list[str]) -> None:
    cleanup.append("gone")
    dev.create(_desc("gone"))
    node = _node("gone")
    assert node.exists() and Path("/sys/class/flax/gone").exists()
    fd = os.open(node, os.O_RDWR)
    try:
        dev.destroy_model("gone")
        assert not node.exists() and not Path("/sys/class/flax/gone").exists()
        # The open file stays valid and says the model is gone.
        with pytest.raises(OSError, match="No such device") as exc:
            os.write(fd, b"1 2 3 4\n")
        assert exc.value.errno == errno.ENODEV
        # The name, and a new node under it, are free at once.
        dev.create(_desc("gone"))
        assert node.exists()
        with pytest.raises(OSError, match="No data available"):
            os.read(fd, 10)
    finally:
        os.close(fd)
