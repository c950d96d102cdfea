"""The C load generator (``examples/flax_load``) run as a child process.

C programs are first-class users of ``/dev/flax``, and a C client costs the
machine far less than a Python thread, so the bench drives both transports
with it by default.  The binary is ``$FLAX_LOAD``, else ``examples/flax_load``
of the source tree this package runs from, else ``flax_load`` on ``PATH``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.bench.result import SAMPLE_DTYPE, LoadResult, summarise
from pyflaxdev.errors import FlaxError

__all__ = ["LoadSpec", "find_binary", "run_c"]

_SOURCE_TREE_BINARY = Path(__file__).resolve().parents[2] / "examples" / "flax_load"


def find_binary() -> str:
    """Path of ``flax_load``; raises :class:`FlaxError` (ENOENT) saying how to build it."""
    env = os.environ.get("FLAX_LOAD")
    if env:
        return env
    if os.access(_SOURCE_TREE_BINARY, os.X_OK):
        return str(_SOURCE_TREE_BINARY)
    found = shutil.which("flax_load")
    if found:
        return found
    raise FlaxError(
        "the C load generator flax_load is not built (ENOENT): run `make -C examples`,"
        " set FLAX_LOAD, or use --load python",
        errno.ENOENT,
    )


class LoadSpec:
    """Where and how to send load: a device model or a socket, and the inputs."""

    def __init__(
        self,
        *,
        inputs: npt.NDArray[Any] | list[bytes],
        model: str | None = None,
        device: str | None = None,
        socket: str | None = None,
        timeout_ms: int = 0,
        text: bool = False,
    ) -> None:
        if (model is None) == (socket is None):
            raise ValueError("give exactly one of model (device) and socket")
        self.model, self.device, self.socket = model, device, socket
        self.timeout_ms = timeout_ms
        self.text = text  # records are NUL-padded UTF-8 texts
        self.records, self.record_bytes = _records(inputs)

    @property
    def transport(self) -> str:
        """``device`` or ``socket``."""
        return "device" if self.model is not None else "socket"

    def target_args(self) -> list[str]:
        """flax_load's target options."""
        if self.model is not None:
            out = ["-m", self.model]
            if self.device:
                out += ["-d", self.device]
            if self.timeout_ms:
                out += ["-t", str(self.timeout_ms)]
            return out
        assert self.socket is not None
        return ["-u", self.socket]


def _records(inputs: npt.NDArray[Any] | list[bytes]) -> tuple[bytes, int]:
    """All inputs as one buffer of equal records (texts NUL-padded to the longest)."""
    if isinstance(inputs, np.ndarray):
        a = np.ascontiguousarray(inputs)
        return a.tobytes(), a[0].nbytes
    width = max(len(t) for t in inputs) + 1  # at least one NUL ends every text
    return b"".join(t.ljust(width, b"\0") for t in inputs), width


def run_c(
    spec: LoadSpec,
    *,
    clients: int,
    requests: int | None = None,
    duration_s: float | None = None,
    rate: float | None = None,
    warmup: int = 5,
    seed: int = 1,
) -> LoadResult:
    """Run ``flax_load`` once; raises :class:`FlaxError` if it fails."""
    if (requests is None) == (duration_s is None):
        raise ValueError("give exactly one of requests and duration_s")
    with tempfile.TemporaryDirectory(prefix="flax-bench-") as tmp:
        inputs = Path(tmp) / "inputs.bin"
        samples = Path(tmp) / "samples.bin"
        inputs.write_bytes(spec.records)
        cmd = [find_binary(), *spec.target_args()]
        cmd += ["-i", str(inputs), "-s", str(spec.record_bytes), "-c", str(clients)]
        cmd += ["-n", str(requests)] if requests is not None else ["-T", f"{duration_s:g}"]
        if rate is not None:
            cmd += ["-r", f"{rate:g}"]
        if spec.text:
            cmd += ["-z"]
        cmd += ["-w", str(warmup), "-S", str(seed), "-o", str(samples)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise FlaxError(
                f"flax_load failed (status {proc.returncode}): {proc.stderr.strip()}", errno.EIO
            )
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        data = np.fromfile(samples, dtype=SAMPLE_DTYPE)
    if data.size != summary["requests"]:
        raise FlaxError(
            f"flax_load wrote {data.size} samples for {summary['requests']} requests", errno.EIO
        )
    return summarise(
        data,
        dict(summary["errors"]),
        float(summary["elapsed_s"]),
        load="c",
        transport=summary["transport"],
        target=summary["target"],
        clients=int(summary["clients"]),
        mode=summary["mode"],
        offered_rps=summary["offered_rps"],
        late=int(summary["late"]),
    )
