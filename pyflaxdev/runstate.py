"""What a running ``flaxdev serve`` tells other processes: one small JSON file per model.

``<run dir>/<model>.json`` holds the worker process's ``pid``, the ``version`` it
serves (a repository entry's; 0 for a shipped model), the versions it found,
``ready``, ``since`` (when that version took over, Unix time), the last
reload's outcome (``message``), how many reloads it has handled, and the
serving worker's live counters (``worker``) and start time.  ``flaxdev
reload`` reads the pid to signal the process, ``flaxdev version`` and
``flaxdev metrics`` read the rest.  The run dir is ``$FLAXDEV_RUN_DIR``, else
``/run/flaxdev`` for root, else ``$XDG_RUNTIME_DIR/flaxdev``, else
``/tmp/flaxdev-<uid>``.  Files are replaced atomically and removed when the
worker stops; a file whose pid is gone is stale and ignored.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyflaxdev.errors import FlaxError, ModelNotFound

__all__ = ["RunState", "clear", "read", "run_dir", "write"]


def run_dir() -> Path:
    """Where serving processes leave their state."""
    env = os.environ.get("FLAXDEV_RUN_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/flaxdev")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "flaxdev" if xdg else Path(f"/tmp/flaxdev-{os.geteuid()}")


@dataclass
class RunState:
    """One serving process's state for one model."""

    model: str
    pid: int
    version: int = 0
    versions: list[int] = field(default_factory=list)
    ready: bool = False
    since: float = 0.0
    message: str = ""
    reloads: int = 0
    #: The serving version's worker: :meth:`WorkerStats.as_dict` (jobs, batches,
    #: failed_jobs, fetches, compute_seconds, batch_sizes), refreshed every few seconds.
    worker: dict[str, Any] = field(default_factory=dict)
    #: Seconds the serving version took from loading to attached (compiling, mostly).
    start_seconds: float = 0.0


def _path(model: str) -> Path:
    return run_dir() / f"{model}.json"


def write(state: RunState) -> None:
    """Publish ``state`` (atomically: readers see the old file or the new one)."""
    path = _path(state.model)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(asdict(state)) + "\n")
    tmp.replace(path)


def clear(model: str) -> None:
    """Remove this process's state file for ``model`` (if it is this process's)."""
    with contextlib.suppress(FlaxError, OSError):
        if read(model).pid == os.getpid():
            _path(model).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def read(model: str) -> RunState:
    """The state of the process serving ``model``; :class:`ModelNotFound` if none is."""
    path = _path(model)
    try:
        raw = json.loads(path.read_text())
        state = RunState(**raw)
    except FileNotFoundError:
        raise ModelNotFound(
            f"no flaxdev serve process for model {model!r} (no {path})", errno.ENOENT
        ) from None
    except (ValueError, TypeError) as exc:
        raise FlaxError(f"{path}: not a flaxdev run state ({exc})", errno.EINVAL) from None
    if not _alive(state.pid):
        raise ModelNotFound(
            f"no flaxdev serve process for model {model!r} ({path} names pid {state.pid},"
            " which is gone)",
            errno.ESRCH,
        )
    return state


def touch(state: RunState, **changes: object) -> RunState:
    """``state`` with ``changes`` applied and written; ``since`` set when ``version`` changes."""
    for key, value in changes.items():
        setattr(state, key, value)
    if "version" in changes:
        state.since = time.time()
    write(state)
    return state
