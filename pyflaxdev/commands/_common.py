"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
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
    """The shipped model ``name`` (a ModelSpec), or None when not required and unknown."""
    from pyflaxdev import models

    try:
        return models.get(name)
    except ModelNotFound:
        if required:
            raise
        return None


def progress(message: str) -> None:
    """Print a progress line to stderr."""
    print(f"flaxdev: {message}", file=sys.stderr, flush=True)


def check_positive(value: int, what: str) -> None:
    """Raise InvalidArgument unless ``value`` >= 1."""
    if value < 1:
        raise InvalidArgument(f"{what} must be at least 1, got {value}")


def run_until_signal(work: Callable[[], object], stop: Callable[[], object], name: str) -> None:
    """Run ``work()`` in a thread named ``name`` until it returns; SIGINT/SIGTERM call ``stop()``.

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
        progress(f"{signal.Signals(signum).name}: stopping")
        stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
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
