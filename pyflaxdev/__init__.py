"""pyflaxdev: Python client, worker, model zoo and CLI for the flaxdev kernel module.

Client::

    import pyflaxdev
    with pyflaxdev.open_model("digits") as model:   # /dev/flax/digits
        result = model.infer(x)                       # Classes for a top-k chain
        print(result.names)                           # ['seven', 'nine', 'four']
    with pyflaxdev.open() as dev:                     # /dev/flax/control
        dev.describe("digits")

Worker::

    spec = pyflaxdev.models.get("digits")
    pyflaxdev.serve(spec.module, spec.params, model="digits")

Asynchronous requests::

    tickets = model.submit([x1, x2])              # FLAX_IOC_SUBMIT, returns at once
    done = dev.reap(timeout_ms=100)               # FLAX_IOC_REAP: [Completion, ...]
    with pyflaxdev.Client("digits") as client:    # concurrent.futures
        futures = [client.submit(x) for x in xs]
    async with pyflaxdev.AsyncClient("digits") as client:   # asyncio
        result = await client.infer(x)

Importing pyflaxdev does not import JAX; serving and the model zoo do, when used.
"""

from pyflaxdev import aio
from pyflaxdev.aio import AsyncClient
from pyflaxdev.client import Client
from pyflaxdev.device import DEFAULT_PATH, Device, DeviceInfo, model_path, open, open_model
from pyflaxdev.errors import (
    AbiMismatch,
    BufferTooSmall,
    Busy,
    Cancelled,
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
from pyflaxdev.submit import Completion
from pyflaxdev.worker import ServeHandle, Worker, WorkerStats, serve, serving

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PATH",
    "AbiMismatch",
    "AsyncClient",
    "BufferTooSmall",
    "Busy",
    "Cancelled",
    "Classes",
    "Client",
    "Completion",
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
    "aio",
    "model_path",
    "open",
    "open_model",
    "serve",
    "serving",
]
