"""Reading the module's sysfs tree: ``/sys/class/misc/flax/models/<name>/<attribute>``.

One value per file.  Only the attributes in :data:`FIELDS` (and, with
``every=True``, any other readable file) are read, so that reading status has
no side effects on attributes that act when read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pyflaxdev.errors import DeviceNotFound
from pyflaxdev.uapi import ffi, lib

__all__ = ["FIELDS", "SYSFS_ROOT", "models", "read_model", "sysfs_root"]

SYSFS_ROOT = Path("/sys/class/misc") / ffi.string(lib.FLAX_DEVICE_NAME).decode()

#: Attributes every model directory is expected to have, in display order.
FIELDS = (
    "id",
    "input_shape",
    "input_dtype",
    "output_shape",
    "pre_op",
    "post_ops",
    "topk",
    "nslots",
    "timeout_ms",
    "workers",
    "queued",
    "requests",
    "completed",
    "errors",
    "timeouts",
)


def sysfs_root() -> Path:
    """The device's sysfs directory (``$FLAXDEV_SYSFS`` overrides, for tests)."""
    override = os.environ.get("FLAXDEV_SYSFS")
    return Path(override) if override else SYSFS_ROOT


def read_model(directory: Path, *, every: bool = False) -> dict[str, str | None]:
    """The attributes of one model directory, stripped; ``None`` for an unreadable one."""
    names = list(FIELDS)
    if every:
        for entry in sorted(directory.iterdir()):
            try:
                mode = entry.stat().st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and mode & stat.S_IRUSR and entry.name not in names:
                names.append(entry.name)
    out: dict[str, str | None] = {}
    for name in names:
        path = directory / name
        if not path.exists():
            continue
        try:
            out[name] = path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            out[name] = None
    return out


def models(root: Path | None = None, *, every: bool = False) -> dict[str, dict[str, str | None]]:
    """All models' attributes, by model name (sorted).

    Raises :class:`DeviceNotFound` when the sysfs directory does not exist.
    """
    root = sysfs_root() if root is None else root
    if not root.is_dir():
        raise DeviceNotFound(f"{root} not found: is the flaxdev module loaded? (ENOENT)")
    mdir = root / "models"
    if not mdir.is_dir():
        return {}
    return {d.name: read_model(d, every=every) for d in sorted(mdir.iterdir()) if d.is_dir()}
