"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from pyflaxdev.errors import InvalidArgument, ModelNotFound


def doc(text: str | None) -> str:
    """A module docstring as argparse help text (reST ``literals`` unquoted)."""
    return (text or "").replace("``", "")


def int_list(text: str) -> tuple[int, ...]:
    """Parse ``1,8,64`` (argparse type)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,8,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def zoo_spec(name: str, *, required: bool = True) -> Any:
    """The shipped model ``name``, or the model of a repository directory ``name``
    (a ModelSpec; see :mod:`pyflaxdev.repository`), or None when not required and unknown."""
    from pyflaxdev import models, repository

    if repository.is_entry(name):
        return repository.load(name)
    try:
        return models.get(name)
    except ModelNotFound:
        if required:
            raise
        return None


#: ``--log-time`` (or ``$FLAXDEV_LOG_TIME=1``): progress lines start with the time and level.
LOG_TIME = {"on": os.environ.get("FLAXDEV_LOG_TIME") == "1"}


def progress(message: str, level: str = "INFO") -> None:
    """Print a progress line to stderr (with time and level under ``--log-time``)."""
    stamp = ""
    if LOG_TIME["on"]:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
        stamp += f".{int(now % 1 * 1000):03d} {level} "
    print(f"{stamp}flaxdev: {message}", file=sys.stderr, flush=True)


def check_positive(value: int, what: str) -> None:
    """Raise InvalidArgument unless ``value`` >= 1."""
    if value < 1:
        raise InvalidArgument(f"{what} must be at least 1, got {value}")


def run_until_signal(
    work: Callable[[], object],
    stop: Callable[[], object],
    name: str,
    reload: Callable[[], object] | None = None,
) -> None:
    """Run ``work()`` in a thread named ``name`` until it returns; SIGINT/SIGTERM call
    ``stop()``, SIGHUP ``reload()`` if given.

    The thread blocks asynchronous signals, so that only this (main) thread
    gets them and ``work`` is never interrupted half-way; the main thread
    waits in short joins so that it handles them at once.  An exception of
    ``work`` is re-raised here.
    """
    from pyflaxdev.worker import block_async_signals

    errors: list[BaseException] = []

    def body() -> None:
        block_async_signals()
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP and reload is not None:
            progress("SIGHUP: reloading")
            reload()
            return
        progress(f"{signal.Signals(signum).name}: stopping")
        stop()

    signals = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if reload is not None else [])
    previous = {s: signal.signal(s, on_signal) for s in signals}
    try:
        thread = threading.Thread(target=body, name=name)
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if errors:
        raise errors[0]
