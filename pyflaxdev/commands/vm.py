"""``flaxdev vm -- CMD``: run CMD in the test VM with the module loaded.

Executes the repository's runner, ``bash <repo>/kbuild/vm-run -- CMD``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pyflaxdev.commands._common import doc
from pyflaxdev.errors import FlaxError, InvalidArgument

REPO = Path(__file__).resolve().parents[2]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``vm``."""
    p = sub.add_parser("vm", help="run a command in the test VM", description=doc(__doc__))
    p.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD",
        help="command (and arguments) to run inside the VM",
    )
    p.set_defaults(run=run)


def runner_command(cmd: list[str], repo: Path = REPO) -> list[str]:
    """The argv that runs ``cmd`` in the VM."""
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise InvalidArgument("no command given: flaxdev vm -- CMD [ARGS...]")
    script = repo / "kbuild" / "vm-run"
    if not script.is_file():
        raise FlaxError(f"{script} not found: `flaxdev vm` needs a repository checkout (ENOENT)", 2)
    return ["bash", str(script), "--", *cmd]


def run(args: argparse.Namespace) -> int:
    """Replace this process with the VM runner."""
    argv = runner_command(list(args.cmd))
    os.execvp(argv[0], argv)
    return 127  # not reached
