"""The device handle: ``pyflaxdev.open()`` returns a :class:`Device`.

A :class:`Device` is an ``io.FileIO`` on ``/dev/flax`` (so it is a context
manager, has ``fileno()`` and works with ``select``/``selectors``), plus one
method per device-level ioctl.  Model-level calls live on
:class:`pyflaxdev.model.Model`, worker calls in :mod:`pyflaxdev.worker`.

Every ioctl goes through :meth:`Device.ioctl`, which releases the GIL while
the call blocks, retries ``EINTR`` (PEP 475 style: a Python signal handler
runs first and may raise) and turns ``-errno`` into a :class:`FlaxError`.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev import ioctls, uapi
from pyflaxdev.errors import FlaxError, InvalidArgument, check, open_error
from pyflaxdev.model import Model
from pyflaxdev.spec import (
    ModelInfo,
    Normalization,
    NormalizeArg,
    TensorSpec,
    build_desc,
    validate_create,
)
from pyflaxdev.uapi import ffi, lib

__all__ = ["DEFAULT_PATH", "Device", "DeviceInfo", "default_path", "open"]

DEFAULT_PATH = "/dev/" + ffi.string(lib.FLAX_DEVICE_NAME).decode()


def default_path() -> str:
    """The device path: ``$FLAXDEV_DEVICE`` if set, else ``/dev/flax``."""
    return os.environ.get("FLAXDEV_DEVICE") or DEFAULT_PATH


@dataclass(frozen=True)
class DeviceInfo:
    """What ``FLAX_IOC_INFO`` reports (field names are the struct's)."""

    abi_version: int
    nmodels: int
    max_models: int
    max_slots: int
    max_slot_bytes: int
    max_workers: int
    topk_max: int
    name_max: int
    features: int


class Device(io.FileIO):
    """An open flax device (``/dev/flax``), read-write, close-on-exec."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        path = os.fspath(path) if path is not None else default_path()
        try:
            super().__init__(path, "r+")
        except OSError as exc:
            raise open_error(path, exc) from None
        self.path: str = path

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fileno()}"
        return f"<pyflaxdev.Device {self.path!r} {state}>"

    # -- raw access ----------------------------------------------------------

    def ioctl(
        self,
        request: int,
        arg: Any,
        *,
        op: str,
        context: Mapping[str, object] | None = None,
        retry_eintr: bool = True,
    ) -> int:
        """Issue ``ioctl(fd, request, arg)``; raise the :class:`FlaxError` for a failure.

        ``arg`` is a cffi pointer.  ``op`` names the ioctl in messages
        (``"INFER"``); ``context`` adds details (``model``, ...).  ``EINTR`` is
        retried unless ``retry_eintr`` is false (the signal's Python handler
        runs before the retry and may raise, e.g. ``KeyboardInterrupt``).
        """
        fd = self.fileno()
        while True:
            result = uapi.ioctl(fd, request, arg)
            if result == -errno.EINTR and retry_eintr:
                continue
            ctx = {"path": self.path, **(context or {})}
            return check(result, op, ctx)

    # -- device-level ioctls -------------------------------------------------

    def info(self) -> DeviceInfo:
        """``FLAX_IOC_INFO``: ABI version and limits of the running module."""
        info = ffi.new("struct flax_info *")
        self.ioctl(ioctls.INFO, info, op="INFO")
        return DeviceInfo(**uapi.cdata_to_dict(info))

    def create_model(
        self,
        name: str,
        input_shape: Sequence[int],
        input_dtype: npt.DTypeLike,
        output_shape: Sequence[int],
        *,
        normalize: NormalizeArg | None = None,
        post: Sequence[str] = ("softmax", "topk"),
        topk: int = 3,
        nslots: int = 64,
        timeout_ms: int = 0,
        exist_ok: bool = False,
        validate: bool = True,
    ) -> Model:
        """``FLAX_IOC_MODEL_CREATE``: create a model and return a handle to it.

        ``normalize`` is ``(scale, mean, std)`` (float32; 1, last-dimension or
        element-count pairs) for ``FLAX_PRE_NORMALIZE``, or ``None`` to pass
        inputs through.  ``post`` is the postprocessing chain (``"softmax"``,
        ``"topk"``); ``topk`` is k when it ends in ``"topk"``.  ``nslots`` or
        ``timeout_ms`` of 0 take the module's defaults.  With ``exist_ok`` an
        existing model of that name is returned instead of raising
        :class:`~pyflaxdev.errors.ModelExists` (its description is not compared).
        ``validate=False`` skips pyflaxdev's own checks, so that the module's
        can be tested.
        """
        inp = TensorSpec(tuple(int(d) for d in input_shape), np.dtype(input_dtype))
        out = TensorSpec(tuple(int(d) for d in output_shape), np.dtype(np.float32))
        norm = Normalization.of(normalize) if normalize is not None else None
        post = tuple(post)
        if validate:
            validate_create(name, inp, out, norm, post, topk, nslots, timeout_ms)
        desc, keep = build_desc(name, inp, out, norm, post, topk, nslots, timeout_ms)
        try:
            self.ioctl(ioctls.MODEL_CREATE, desc, op="MODEL_CREATE", context={"model": name})
        except FileExistsError:
            if not exist_ok:
                raise
        del keep
        return self.model(name)

    def model(self, name: str) -> Model:
        """``FLAX_IOC_MODEL_GET``: a handle to the model called ``name``."""
        return Model(self, self.describe(name))

    def describe(self, name: str) -> ModelInfo:
        """``FLAX_IOC_MODEL_GET``: the model's description."""
        desc = self._get(name)
        return ModelInfo.from_desc(desc)

    def normalization(self, name: str) -> Normalization | None:
        """The model's ``FLAX_PRE_NORMALIZE`` parameters, read back from the module."""
        info = self.describe(name)
        if info.pre_op != "normalize":
            return None
        count = info.norm_count
        mean = ffi.new("uint32_t[]", count)
        std = ffi.new("uint32_t[]", count)
        desc = self._get(name, mean, std)
        if desc.id != info.id or desc.norm_count != count:
            raise FlaxError(f"model {name!r} changed while reading its normalisation")
        return Normalization(uapi.bits_to_f32(desc.norm_scale), _f32_array(mean), _f32_array(std))

    def _get(self, name: str, mean: Any = None, std: Any = None) -> Any:
        if len(name.encode()) >= lib.FLAX_NAME_MAX:
            raise InvalidArgument(
                f"model name {name!r} is longer than {lib.FLAX_NAME_MAX - 1} characters"
            )
        desc = ffi.new("struct flax_model_desc *")
        desc.name = name.encode()
        if mean is not None:
            desc.norm_mean = uapi.pointer_value(mean)
            desc.norm_std = uapi.pointer_value(std)
        self.ioctl(ioctls.MODEL_GET, desc, op="MODEL_GET", context={"model": name})
        return desc

    def destroy_model(self, model: str | int | Model) -> None:
        """``FLAX_IOC_MODEL_DESTROY``: destroy a model, by name, id or handle.

        Clients waiting on it fail; memory goes with its last user.
        """
        if isinstance(model, Model):
            model_id, label = model.id, repr(model.name)
        elif isinstance(model, str):
            model_id, label = self.describe(model).id, repr(model)
        else:
            model_id, label = int(model), f"id {int(model)}"
        ref = ffi.new("struct flax_model_ref *")
        ref.model_id = model_id
        self.ioctl(ioctls.MODEL_DESTROY, ref, op="MODEL_DESTROY", context={"model": label})


def _f32_array(buf: Any) -> npt.NDArray[np.float32]:
    return np.frombuffer(ffi.buffer(buf), dtype=np.uint32).view(np.float32).copy()


def open(path: str | os.PathLike[str] | None = None) -> Device:
    """Open the flax device (``$FLAXDEV_DEVICE`` or ``/dev/flax`` by default)."""
    return Device(path)
