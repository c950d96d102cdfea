"""Child processes a bench run serves from: ``flaxdev serve`` and ``flaxdev sockserve``.

Each is started with the same interpreter, must print a line containing
:data:`~pyflaxdev.commands.serve.READY_MARK` to stderr once it serves, and is
stopped with SIGTERM.  Its stderr is kept (the last lines are shown if it
fails) and echoed when ``verbose``.
"""

from __future__ import annotations

import collections
import errno
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from pyflaxdev.commands.serve import READY_MARK
from pyflaxdev.errors import FlaxError

__all__ = ["ChildServer", "serve_command", "sockserve_command"]


def _base(device: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "pyflaxdev"]
    return [*cmd, "--device", device] if device else cmd


def serve_command(
    spec_name: str,
    name: str,
    *,
    device: str | None,
    batch_sizes: Sequence[int],
    extra: Sequence[str],
) -> list[str]:
    """``flaxdev serve`` for a bench run: create the model if missing, compile ``batch_sizes``."""
    sizes = ",".join(str(b) for b in batch_sizes)
    return [
        *_base(device),
        "serve",
        spec_name,
        "--name",
        name,
        "--create",
        "--batch-sizes",
        sizes,
        *extra,
    ]


def sockserve_command(
    spec_name: str,
    path: str,
    *,
    batch: bool,
    max_batch: int,
    delay_us: int,
    batch_sizes: Sequence[int],
) -> list[str]:
    """``flaxdev sockserve`` (per request, or batching with ``max_batch``/``delay_us``)."""
    cmd = [*_base(None), "sockserve", spec_name, "--socket", path]
    if batch:
        sizes = ",".join(str(b) for b in batch_sizes if b <= max_batch) or str(max_batch)
        cmd += [
            "--batch",
            "--max-batch",
            str(max_batch),
            "--delay-us",
            str(delay_us),
            "--batch-sizes",
            sizes,
        ]
    return cmd


class ChildServer:
    """A server child process; ``with ChildServer(cmd) as s:`` waits until it is ready."""

    def __init__(
        self, cmd: list[str], *, label: str, verbose: bool = False, ready_timeout: float = 1800
    ) -> None:
        self.cmd = cmd
        self.label = label
        self.verbose = verbose
        self.ready_timeout = ready_timeout
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self._ready = threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ChildServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the child and wait for its ready line; raises FlaxError if it dies first."""
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self._reader = threading.Thread(target=self._forward, daemon=True)
        self._reader.start()
        if not self._ready.wait(self.ready_timeout) or self.proc.poll() is not None:
            self.stop()
            raise FlaxError(
                f"{self.label} did not start ({' '.join(self.cmd[2:])});"
                f" its last output:\n" + "".join(self.tail),
                errno.EIO,
            )
        self.startup_s = time.monotonic() - t0

    def _forward(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.tail.append(line)
            if self.verbose:
                sys.stderr.write(f"  [{self.label}] {line}")
            if READY_MARK in line:
                self._ready.set()
        self._ready.set()  # EOF: the child is gone

    def alive(self) -> bool:
        """Whether the child still runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> str:
        """SIGTERM, wait (SIGKILL after 30 s); returns the last lines of its stderr."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return "".join(self.tail)
