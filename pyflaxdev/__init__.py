"""pyflaxdev: Python client, worker, model zoo and CLI for the flaxdev kernel module.

Client::

    import pyflaxdev
    with pyflaxdev.open() as dev:                 # /dev/flax
        result = dev.model("digits").infer(x)     # Classes for a top-k chain
        print(result.names)                       # ['seven', 'nine', 'four']

Worker::

    spec = pyflaxdev.models.get("digits")
    pyflaxdev.serve(spec.module, spec.params, model="digits")

Importing pyflaxdev does not import JAX; serving and the model zoo do, when used.
"""

from pyflaxdev.device import DEFAULT_PATH, Device, DeviceInfo, open
from pyflaxdev.errors import (
    AbiMismatch,
    BufferTooSmall,
    Busy,
    DeviceNotFound,
    FlaxError,
    Interrupted,
    InvalidArgument,
    LabelsTooLarge,
    ModelExists,
    ModelGone,
    ModelNotFound,
    NotAFlaxDevice,
    NotAttached,
    OutOfResources,
    PermissionDenied,
    Timeout,
    WorkerFailed,
)
from pyflaxdev.model import Model
from pyflaxdev.results import Classes, Result, TopK
from pyflaxdev.spec import ModelDesc, ModelInfo, Normalization, TensorSpec
from pyflaxdev.worker import ServeHandle, Worker, WorkerStats, serve, serving

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PATH",
    "AbiMismatch",
    "BufferTooSmall",
    "Busy",
    "Classes",
    "Device",
    "DeviceInfo",
    "DeviceNotFound",
    "FlaxError",
    "Interrupted",
    "InvalidArgument",
    "LabelsTooLarge",
    "Model",
    "ModelDesc",
    "ModelExists",
    "ModelGone",
    "ModelInfo",
    "ModelNotFound",
    "Normalization",
    "NotAFlaxDevice",
    "NotAttached",
    "OutOfResources",
    "PermissionDenied",
    "Result",
    "ServeHandle",
    "TensorSpec",
    "Timeout",
    "TopK",
    "Worker",
    "WorkerFailed",
    "WorkerStats",
    "open",
    "serve",
    "serving",
]
