"""Where a worker computes: choosing a JAX device, and XLA's allocator settings.

A worker serves one model on one device (``--jax-device cpu``, ``cuda:0``,
``tpu:1``; default: JAX's default device) or shards each batch over every
local device of a platform (``--devices all``, see
:class:`~pyflaxdev.runner.BatchRunner`).

XLA's GPU client reserves 75 % of the accelerator's memory when it starts, so
a second worker process on the same GPU fails to allocate.
:func:`configure_allocator` sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false``
(each process allocates what its model needs, as it needs it) unless the user
set it (or ``XLA_PYTHON_CLIENT_MEM_FRACTION`` / ``XLA_PYTHON_CLIENT_ALLOCATOR``)
already.  XLA reads it when its backend first starts, so it must run before
the first computation or device query; the worker and ``flaxdev serve`` call
it before anything touches JAX.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pyflaxdev.errors import InvalidArgument

__all__ = ["PLATFORM_ALIASES", "configure_allocator", "local_devices", "resolve_device"]

log = logging.getLogger("pyflaxdev.worker")

#: Names a user may give for a JAX platform.
PLATFORM_ALIASES = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}

_ALLOCATOR_VARS = (
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR",
)


def configure_allocator(environ: dict[str, str] | None = None) -> bool:
    """Make XLA allocate on demand (``XLA_PYTHON_CLIENT_PREALLOCATE=false``).

    Leaves the environment alone when any of XLA's client allocator variables
    is set.  Returns whether it set the variable.
    """
    env = os.environ if environ is None else environ
    if any(name in env for name in _ALLOCATOR_VARS):
        return False
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return True


def _platform(name: str) -> str:
    platform = PLATFORM_ALIASES.get(name.lower())
    if platform is None:
        raise InvalidArgument(
            f"unknown JAX platform {name!r}; expected one of {sorted(PLATFORM_ALIASES)}"
        )
    return platform


def local_devices(platform: str | None = None) -> list[Any]:
    """This process's JAX devices of ``platform`` (default: JAX's default backend)."""
    import jax

    try:
        return list(jax.local_devices(backend=_platform(platform) if platform else None))
    except RuntimeError as exc:
        raise InvalidArgument(f"no JAX devices of platform {platform!r}: {exc}") from None


def resolve_device(spec: str) -> Any:
    """The ``jax.Device`` named ``PLATFORM[:INDEX]`` (``cpu``, ``cuda:0``, ``gpu:1``, ``tpu:0``).

    The index counts this process's devices of that platform (default 0).
    """
    name, _, index = spec.partition(":")
    try:
        i = int(index) if index else 0
    except ValueError:
        raise InvalidArgument(f"bad device {spec!r}: expected PLATFORM[:INDEX]") from None
    devices = local_devices(name)
    if not 0 <= i < len(devices):
        raise InvalidArgument(
            f"device {spec!r}: platform {name!r} has {len(devices)} local device(s)"
        )
    return devices[i]
