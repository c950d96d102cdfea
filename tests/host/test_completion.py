"""``flaxdev completion bash``: the script bash completes with, run in a real bash."""

from __future__ import annotations

import subprocess

import pytest

from pyflaxdev import cli
from pyflaxdev.commands.completion import script


def _complete(line: str, tmp_path) -> list[str]:
    """Words bash completes for ``line`` (its last word being completed)."""
    words = line.split(" ")
    path = tmp_path / "flaxdev.bash"
    path.write_text(script(cli.build_parser()))
    program = (
        f"source {path}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_flaxdev; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    r = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return sorted(w for w in r.stdout.split("\n") if w)


def test_subcommands_and_options_complete(tmp_path) -> None:
    assert _complete("flaxdev re", tmp_path) == ["reload"]
    assert "serve" in _complete("flaxdev ", tmp_path)
    assert _complete("flaxdev serve --wa", tmp_path) == ["--wait-device-s", "--watch-s"]
    assert _complete("flaxdev create --ow", tmp_path) == ["--owner"]
    assert _complete("flaxdev --log", tmp_path) == ["--log-time"]


def test_cli_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# bash completion for flaxdev") and "complete -F _flaxdev flaxdev" in out
