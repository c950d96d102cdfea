"""ioctl request numbers, computed like the header's ``_IOR``/``_IOW``/``_IOWR``.

Each number encodes its struct's size, taken from cffi (the compiled header),
so ``REQUESTS[name] == getattr(lib, "FLAX_IOC_" + name)`` holds by construction;
``tests/host/test_bindings.py`` checks it.  :func:`with_size` re-encodes a
number for a struct of another size, which is how an older or newer caller
looks to the module (``copy_struct_from_user()`` semantics).
"""

from __future__ import annotations

from dataclasses import dataclass

import ioctl_opt

from pyflaxdev.uapi import ffi, lib

__all__ = [
    "COMPLETE",
    "FETCH",
    "INFER",
    "INFO",
    "IOCTLS",
    "LABELS_GET",
    "LABELS_SET",
    "MODEL_CREATE",
    "MODEL_DESTROY",
    "MODEL_GET",
    "REAP",
    "SUBMIT",
    "VOCAB_SET",
    "WORKER_ATTACH",
    "Ioctl",
    "with_size",
]

_READ = ioctl_opt.IOC_READ
_WRITE = ioctl_opt.IOC_WRITE


@dataclass(frozen=True)
class Ioctl:
    """One flaxdev ioctl: its name, direction, number and argument struct."""

    name: str
    direction: int
    nr: int
    struct: str

    @property
    def size(self) -> int:
        """Size of the argument struct, in bytes, as compiled from the header."""
        size: int = ffi.sizeof(self.struct)
        return size

    @property
    def request(self) -> int:
        """The request number, ``_IOC(direction, FLAX_IOC_MAGIC, nr, size)``."""
        return with_size(self, self.size)


def with_size(ioctl: Ioctl, size: int) -> int:
    """The request number of ``ioctl`` for an argument struct of ``size`` bytes."""
    request: int = ioctl_opt.IOC(ioctl.direction, lib.FLAX_IOC_MAGIC, ioctl.nr, size)
    return request


IOCTLS: dict[str, Ioctl] = {
    i.name: i
    for i in (
        Ioctl("INFO", _READ, 0x00, "struct flax_info"),
        Ioctl("MODEL_CREATE", _READ | _WRITE, 0x01, "struct flax_model_desc"),
        Ioctl("MODEL_GET", _READ | _WRITE, 0x02, "struct flax_model_desc"),
        Ioctl("MODEL_DESTROY", _WRITE, 0x03, "struct flax_model_ref"),
        Ioctl("LABELS_SET", _READ | _WRITE, 0x04, "struct flax_labels"),
        Ioctl("LABELS_GET", _READ | _WRITE, 0x05, "struct flax_labels"),
        Ioctl("VOCAB_SET", _READ | _WRITE, 0x06, "struct flax_vocab_set"),
        Ioctl("WORKER_ATTACH", _READ | _WRITE, 0x10, "struct flax_worker_attach"),
        Ioctl("FETCH", _READ | _WRITE, 0x11, "struct flax_fetch"),
        Ioctl("COMPLETE", _READ | _WRITE, 0x12, "struct flax_complete"),
        Ioctl("INFER", _READ | _WRITE, 0x20, "struct flax_infer"),
        Ioctl("SUBMIT", _READ | _WRITE, 0x21, "struct flax_submit"),
        Ioctl("REAP", _READ | _WRITE, 0x22, "struct flax_reap"),
    )
}

INFO = IOCTLS["INFO"].request
MODEL_CREATE = IOCTLS["MODEL_CREATE"].request
MODEL_GET = IOCTLS["MODEL_GET"].request
MODEL_DESTROY = IOCTLS["MODEL_DESTROY"].request
LABELS_SET = IOCTLS["LABELS_SET"].request
LABELS_GET = IOCTLS["LABELS_GET"].request
VOCAB_SET = IOCTLS["VOCAB_SET"].request
WORKER_ATTACH = IOCTLS["WORKER_ATTACH"].request
FETCH = IOCTLS["FETCH"].request
COMPLETE = IOCTLS["COMPLETE"].request
INFER = IOCTLS["INFER"].request
SUBMIT = IOCTLS["SUBMIT"].request
REAP = IOCTLS["REAP"].request
