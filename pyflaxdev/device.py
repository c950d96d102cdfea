"""The device handle: ``pyflaxdev.open()`` returns a :class:`Device`.

A :class:`Device` is an ``io.FileIO`` on a flax node (so it is a context
manager, has ``fileno()`` and works with ``select``/``selectors``), plus one
method per device-level ioctl.  ``pyflaxdev.open()`` opens the control node,
``/dev/flax/control``, where models are created and looked up and where their
owners (and root) may run them; :func:`open_model` opens a model's own node,
``/dev/flax/<name>``, which is how everyone else runs a model, as far as the
node's mode (chosen by the model's owner) lets them.  Model-level calls live on
:class:`pyflaxdev.model.Model`, worker calls in :mod:`pyflaxdev.worker`.

Every ioctl goes through :meth:`Device.ioctl`, which releases the GIL while
the call blocks, retries ``EINTR`` (PEP 475 style: a Python signal handler
runs first and may raise) and turns ``-errno`` into a :class:`FlaxError`.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev import ioctls, uapi
from pyflaxdev.errors import FlaxError, InvalidArgument, check, open_error
from pyflaxdev.labels import check_labels
from pyflaxdev.model import Model
from pyflaxdev.spec import ModelDesc, ModelInfo, Normalization, NormalizeArg, TensorSpec
from pyflaxdev.submit import DEFAULT_REAP_MAX, Completion, RequestTable, reap
from pyflaxdev.uapi import ffi, lib

__all__ = [
    "DEFAULT_PATH",
    "Device",
    "DeviceInfo",
    "default_path",
    "model_path",
    "open",
    "open_model",
]

DEFAULT_PATH = ffi.string(lib.FLAX_CONTROL_NODE).decode()


def default_path() -> str:
    """The control node: ``$FLAXDEV_DEVICE`` if set, else ``/dev/flax/control``."""
    return os.environ.get("FLAXDEV_DEVICE") or DEFAULT_PATH


def model_path(name: str) -> str:
    """The node of model ``name``: ``<name>`` beside the control node (``/dev/flax/<name>``)."""
    if not name or "/" in name or name in (".", "..", "control"):
        raise InvalidArgument(f"{name!r} is not a model name")
    return str(Path(default_path()).parent / name)


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
    """An open flax node (``/dev/flax/control`` or a model's), close-on-exec.

    Read-write unless ``writable`` is false: the module refuses the ioctls
    that change models (create, destroy, labels, vocabulary, worker attach)
    on a read-only fd with ``EBADF``, and on a model's node also the ones
    that run it (INFER, SUBMIT); on the control node an owner's clients that
    only infer need no more.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, writable: bool = True
    ) -> None:
        path = os.fspath(path) if path is not None else default_path()
        try:
            super().__init__(path, "r+" if writable else "r")
        except OSError as exc:
            raise open_error(path, exc) from None
        self.path: str = path
        #: Requests queued by :meth:`Model.submit` on this fd and not reaped yet.
        self.requests = RequestTable()

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

    # -- asynchronous requests -----------------------------------------------

    def reap(self, max: int = DEFAULT_REAP_MAX, *, timeout_ms: int = 0) -> list[Completion]:
        """``FLAX_IOC_REAP``: collect up to ``max`` finished requests of this fd.

        Waits up to ``timeout_ms`` for a first result (0: not at all) and
        returns the results that are there, in the order they finished
        (an empty list when none came in time).  Each
        :class:`~pyflaxdev.submit.Completion` carries the request's ticket,
        user_data, status (0 or errno) and its result decoded with the
        description of the model it was submitted to by :meth:`Model.submit`
        (:class:`~pyflaxdev.results.Classes`, a float32 vector, or ``str``
        for a text request), or ``error``, the exception
        :meth:`Model.infer` would raise.  Buffers are sized from the pending
        requests' ``result_size``/``text_size``; a result that does not fit
        (``ENOSPC``) is reaped again with the size the module reports.  The
        fd also becomes readable (``select``/``poll``) while a result waits.
        """
        return reap(self, max, timeout_ms)

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
        channel_first: bool = False,
        clamp: tuple[float, float] | None = None,
        post: Sequence[str] = ("softmax", "topk"),
        topk: int | None = None,
        threshold: float | None = None,
        nslots: int = 64,
        timeout_ms: int = 0,
        max_batch: int = 0,
        max_queue_delay_us: int = 0,
        max_queue: int = 0,
        tokenize: bool = False,
        text_max: int = 0,
        worker_post: int = 0,
        labels: Iterable[str] | None = None,
        exist_ok: bool = False,
        validate: bool = True,
        owner: int | None = None,
        group: int | None = None,
        mode: int = 0,
    ) -> Model:
        """``FLAX_IOC_MODEL_CREATE``: create a model and return a handle to it.

        ``normalize`` is ``(scale, mean, std)`` (float32; 1, per-channel or
        per-element pairs) for ``FLAX_PRE_NORMALIZE``, or ``None`` to pass
        inputs through; ``channel_first`` takes the channels from the first
        dimension instead of the last, ``clamp=(lo, hi)`` clips the normalised
        values.  ``post`` is the postprocessing chain (see
        :data:`~pyflaxdev.spec.ACCEPTED_CHAINS`).  ``topk`` is k with a
        ``"topk"`` step (default 3) and must stay None or 0 without one;
        ``threshold`` is the ``"threshold"`` step's cut-off (default 0.5).
        ``nslots`` and ``timeout_ms`` of 0 take the module's defaults;
        ``max_batch`` (most jobs per FETCH, 0: nslots), ``max_queue_delay_us``
        (how long FETCH waits to fill a batch, at most 10 s) and ``max_queue``
        (most requests under way, 0: nslots) are the model's queueing knobs.
        ``tokenize`` makes a text model (``FLAX_PRE_TOKENIZE``): the input is
        int32 ``(2, L)``, clients send up to ``text_max`` bytes of UTF-8 (0:
        4096), and :meth:`Model.set_vocab` must be called once.
        ``worker_post`` leading steps of ``post`` run in the worker (1: its
        ``mean_pool``; see :class:`~pyflaxdev.spec.ModelDesc`).
        ``owner``, ``group`` (uid, gid; None: the caller's) and ``mode`` (0:
        0600) are those of the model's node ``/dev/flax/<name>`` and make the
        owner the one who may serve and change the model.
        ``labels`` name the classes and are uploaded right after creation (the
        model is destroyed again if that fails).  With ``exist_ok`` an existing
        model of that name is returned instead of raising
        :class:`~pyflaxdev.errors.ModelExists` (neither its description nor its
        labels are touched).  ``validate=False`` skips pyflaxdev's own checks,
        so that the module's can be tested.
        """
        post = tuple(post)
        norm = None
        if normalize is not None:
            norm = Normalization.of(normalize)
            if channel_first or clamp is not None:
                norm = replace(
                    norm,
                    channel_first=channel_first or norm.channel_first,
                    clamp=clamp if clamp is not None else norm.clamp,
                )
        elif validate and (channel_first or clamp is not None):
            raise InvalidArgument(f"channel_first and clamp of {name!r} need normalize")
        if topk is None:
            topk = 3 if "topk" in post else 0
        if threshold is None:
            threshold = 0.5 if "threshold" in post else 0.0
        desc = ModelDesc(
            name=name,
            input=TensorSpec.of(input_shape, input_dtype),
            output=TensorSpec.of(output_shape, np.float32),
            normalize=norm,
            post=post,
            topk=topk,
            threshold=threshold,
            nslots=nslots,
            timeout_ms=timeout_ms,
            max_batch=max_batch,
            max_queue_delay_us=max_queue_delay_us,
            max_queue=max_queue,
            tokenize=tokenize,
            text_max=text_max,
            worker_post=worker_post,
            owner=owner,
            group=group,
            mode=mode,
        )
        return self.create(desc, labels=labels, exist_ok=exist_ok, validate=validate)

    def create(
        self,
        desc: ModelDesc,
        *,
        labels: Iterable[str] | None = None,
        exist_ok: bool = False,
        validate: bool = True,
    ) -> Model:
        """``FLAX_IOC_MODEL_CREATE`` from a :class:`~pyflaxdev.spec.ModelDesc`; then
        ``FLAX_IOC_LABELS_SET`` with ``labels`` (see :meth:`create_model`)."""
        items = tuple(labels) if labels is not None else ()
        if validate:
            desc.validate()
            items = check_labels(items, desc.vec_elems, model=desc.name)
        cdesc, keep = desc.to_desc()
        try:
            self.ioctl(ioctls.MODEL_CREATE, cdesc, op="MODEL_CREATE", context={"model": desc.name})
        except FileExistsError:
            if not exist_ok:
                raise
            return self.model(desc.name)
        finally:
            del keep
        # MODEL_GET: the struct CREATE returns leaves nslots 0 when the default was taken.
        model = self.model(desc.name)
        if items:
            try:
                model.set_labels(items, validate=False)
            except BaseException:
                self.destroy_model(model)
                raise
        return model

    def model(self, name: str) -> Model:
        """``FLAX_IOC_MODEL_GET``: a handle to the model called ``name``."""
        return Model(self, self.describe(name))

    def describe(self, name: str) -> ModelInfo:
        """``FLAX_IOC_MODEL_GET``: the model's description."""
        desc = self._get(name)
        return ModelInfo.from_desc(desc)

    def labels(self, name: str) -> list[str]:
        """``FLAX_IOC_LABELS_GET``: the class names of model ``name``."""
        return self.model(name).labels()

    def set_labels(self, name: str, labels: Iterable[str] | None) -> None:
        """``FLAX_IOC_LABELS_SET``: name the classes of model ``name`` (None removes them)."""
        self.model(name).set_labels(labels)

    def set_vocab(self, name: str, data: bytes) -> int:
        """``FLAX_IOC_VOCAB_SET``: the vocabulary of tokenising model ``name``."""
        return self.model(name).set_vocab(data)

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
        return Normalization(
            uapi.bits_to_f32(desc.norm_scale),
            _f32_array(mean),
            _f32_array(std),
            channel_first=info.channel_first,
            clamp=info.clamp,
        )

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


def open(path: str | os.PathLike[str] | None = None, *, writable: bool = True) -> Device:
    """Open the control node (``$FLAXDEV_DEVICE`` or ``/dev/flax/control`` by default).

    ``writable=False`` opens it read-only: models may be looked up, not
    created or changed.
    """
    return Device(path, writable=writable)


def open_model(name: str, *, writable: bool = True) -> Model:
    """Open model ``name``'s node (:func:`model_path`) and return its handle.

    The handle owns the fd: :meth:`Model.close` (or leaving a ``with`` block)
    closes it.  Running the model needs the node open for writing; a
    read-only handle may describe it and read its labels.
    """
    dev = Device(model_path(name), writable=writable)
    try:
        model = dev.model(name)
    except BaseException:
        dev.close()
        raise
    model.owns_device = True
    return model
