"""The model zoo: models shipped with pyflaxdev, by name.

``pyflaxdev.models.get("digits")`` returns a :class:`ModelSpec`; loading a spec
reads only its metadata (no JAX); its ``module`` and ``params`` load on use.
``null`` is the identity model (served by a copy, no JAX at all), for
measuring the transport.
"""

from __future__ import annotations

import functools
import importlib

from pyflaxdev.errors import ModelNotFound
from pyflaxdev.models.spec import ModelSpec

__all__ = ["ModelSpec", "get", "names"]

# name -> module providing spec(); imported on first use.
_REGISTRY: dict[str, str] = {
    "digits": "pyflaxdev.models.digits",
    "patches": "pyflaxdev.models.patches",
    "minilm": "pyflaxdev.models.minilm",
    "null": "pyflaxdev.models.null",
}


def names() -> list[str]:
    """Names of the shipped models."""
    return sorted(_REGISTRY)


@functools.cache
def get(name: str) -> ModelSpec:
    """The shipped model called ``name``; raises :class:`ModelNotFound` if there is none."""
    try:
        module = _REGISTRY[name]
    except KeyError:
        raise ModelNotFound(
            f"no shipped model {name!r} (ENOENT); known: {', '.join(names())}"
        ) from None
    spec: ModelSpec = importlib.import_module(module).spec()
    return spec
