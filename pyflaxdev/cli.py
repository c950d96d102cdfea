"""``flaxdev``: command-line interface to the flax device.

Subcommands (one module each in :mod:`pyflaxdev.commands`): ``serve``,
``infer``, ``status``, ``metrics``, ``bench``, ``sockserve``, ``vm``.
``--version`` prints pyflaxdev's version and the loaded module's.  Results go to stdout,
progress and errors to stderr.  Exit status: 0 success, 1 failure (a
:class:`FlaxError` is printed as ``flaxdev: <message>`` without a traceback;
``-v`` adds it), 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from pyflaxdev.commands import (
    admin,
    bench,
    completion,
    infer,
    metrics,
    serve,
    sockserve,
    status,
    vm,
)
from pyflaxdev.commands._common import LOG_TIME, progress
from pyflaxdev.device import default_path
from pyflaxdev.errors import FlaxError

__all__ = ["build_parser", "main"]

COMMANDS = (serve, admin, infer, status, metrics, bench, sockserve, vm, completion)


def version_text() -> str:
    """pyflaxdev's version, its ABI, and the loaded module's version (or that none is)."""
    from pyflaxdev import __version__
    from pyflaxdev.uapi import lib

    loaded = Path("/sys/module/flaxdev/version")
    try:
        module = f"flaxdev.ko {loaded.read_text().strip()}"
    except OSError:
        module = "flaxdev.ko not loaded"
    return f"pyflaxdev {__version__} (ABI {lib.FLAX_ABI_VERSION}); {module}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="flaxdev", description="Serve and query Flax models through /dev/flax/<model>."
    )
    parser.add_argument(
        "--device",
        default=None,
        metavar="PATH",
        help=f"device node (default: $FLAXDEV_DEVICE or {default_path()})",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more logging (-vv: debug); tracebacks on errors",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument(
        "--log-time",
        action="store_true",
        help="start each log line with the time and level ($FLAXDEV_LOG_TIME=1 too)",
    )
    parser.add_argument(
        "--version", action="version", version=version_text(), help="print versions and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="flaxdev: %(message)s", stream=sys.stderr)
    if verbose < 2:  # JAX and absl are chatty at INFO
        for name in ("jax", "absl", "jax._src"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_time:
        LOG_TIME["on"] = True
    _setup_logging(args.verbose, args.quiet)
    try:
        code: int = args.run(args)
        return code
    except FlaxError as exc:
        if args.verbose:
            traceback.print_exc()
        progress(str(exc), "ERROR")
        return 1
    except KeyboardInterrupt:
        print("flaxdev: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
