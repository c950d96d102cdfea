"""sd_notify without libsystemd (pyflaxdev.notify) and the run state files (pyflaxdev.runstate)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pyflaxdev import runstate
from pyflaxdev.errors import ModelNotFound
from pyflaxdev.notify import notify


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_reaches_the_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, abstract: bool
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        if abstract:
            name = f"flaxdev-test-{os.getpid()}"
            sock.bind("\0" + name)
            monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        else:
            path = tmp_path / "notify"
            sock.bind(str(path))
            monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1", "STATUS=serving x version 2")
        sock.settimeout(5)
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving x version 2"


def test_notify_without_a_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/socket")
    assert notify("READY=1") is False


def test_run_state_round_trip_and_staleness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAXDEV_RUN_DIR", str(tmp_path))
    with pytest.raises(ModelNotFound, match="no flaxdev serve process"):
        runstate.read("m")
    state = runstate.RunState("m", os.getpid(), 1, [1], True)
    runstate.touch(state, version=2, versions=[1, 2], message="version 2 replaced version 1")
    got = runstate.read("m")
    assert (got.version, got.versions, got.pid) == (2, [1, 2], os.getpid())
    assert got.since > 0 and got.message.startswith("version 2")
    # A file whose process is gone is stale.
    runstate.write(runstate.RunState("gone", 2**22 + 12345))
    with pytest.raises(ModelNotFound, match="which is gone"):
        runstate.read("gone")
    runstate.clear("m")
    assert not (tmp_path / "m.json").exists()
