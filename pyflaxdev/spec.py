"""Model descriptions in Python terms, and their translation to and from the UAPI.

:class:`ModelDesc` is a whole ``FLAX_IOC_MODEL_CREATE`` request:
:meth:`ModelDesc.validate` applies the module's rules with messages that name
what is wrong, :meth:`ModelDesc.to_desc` fills the ``struct flax_model_desc``.
:class:`ModelInfo` is what ``FLAX_IOC_MODEL_GET`` reports.  The module checks
everything again; pyflaxdev's checks only give better messages.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

from pyflaxdev.errors import InvalidArgument
from pyflaxdev.uapi import bits_to_f32, ffi, lib, pointer_value

__all__ = [
    "ACCEPTED_CHAINS",
    "CLASS_OPS",
    "DTYPES",
    "MAX_WAIT_US",
    "POST_OPS",
    "PRE_OPS",
    "WORKER_POST_OPS",
    "ModelDesc",
    "ModelInfo",
    "Normalization",
    "NormalizeArg",
    "PostPlan",
    "TensorSpec",
    "check_worker_post",
    "f32_bits",
    "plan_post",
]

DTYPES: dict[int, np.dtype[Any]] = {
    lib.FLAX_DTYPE_UINT8: np.dtype(np.uint8),
    lib.FLAX_DTYPE_FLOAT32: np.dtype(np.float32),
    lib.FLAX_DTYPE_INT8: np.dtype(np.int8),
    lib.FLAX_DTYPE_UINT16: np.dtype(np.uint16),
    lib.FLAX_DTYPE_INT16: np.dtype(np.int16),
    lib.FLAX_DTYPE_INT32: np.dtype(np.int32),
    lib.FLAX_DTYPE_FLOAT16: np.dtype(np.float16),
}
_DTYPE_CODES = {dt: code for code, dt in DTYPES.items()}

PRE_OPS: dict[int, str] = {
    lib.FLAX_PRE_NONE: "none",
    lib.FLAX_PRE_NORMALIZE: "normalize",
    lib.FLAX_PRE_TOKENIZE: "tokenize",
}
POST_OPS: dict[str, int] = {
    "softmax": lib.FLAX_POST_SOFTMAX,
    "topk": lib.FLAX_POST_TOPK,
    "log_softmax": lib.FLAX_POST_LOG_SOFTMAX,
    "argmax": lib.FLAX_POST_ARGMAX,
    "sigmoid": lib.FLAX_POST_SIGMOID,
    "threshold": lib.FLAX_POST_THRESHOLD,
    "mean_pool": lib.FLAX_POST_MEAN_POOL,
    "l2_normalize": lib.FLAX_POST_L2_NORMALIZE,
}
_POST_NAMES = {code: name for name, code in POST_OPS.items()}

#: Steps whose result is a ``struct flax_topk_result`` when they end the chain.
CLASS_OPS = ("topk", "argmax", "threshold")

#: The chains the module accepts, as the UAPI header lists them.
ACCEPTED_CHAINS = (
    "(softmax|log_softmax)? (topk|argmax)?",
    "sigmoid threshold?",
    "mean_pool? l2_normalize?",
)

#: Longest batching delay the module accepts (``FLAX_MAX_WAIT_US`` of the
#: header, 10 s): ``max_queue_delay_us`` of a model and FETCH's ``max_wait_us``.
MAX_WAIT_US: int = lib.FLAX_MAX_WAIT_US

_U32_MAX = 0xFFFFFFFF
_TOK_MIN_LEN = 2  # FLAX_TOK_MIN_LEN of the module: [CLS] and [SEP]
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")


def f32_bits(value: float) -> int:
    """binary32 bit pattern of ``value`` rounded to float32 (overflow gives infinity)."""
    with np.errstate(over="ignore"):
        return int(np.array(value, dtype=np.float32).view(np.uint32))


def _f32(value: float) -> float:
    return bits_to_f32(f32_bits(value))


@dataclass(frozen=True)
class TensorSpec:
    """Shape and element type of a tensor."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return self.size * self.dtype.itemsize

    def __str__(self) -> str:
        return f"{self.dtype.name} [{', '.join(map(str, self.shape))}]"

    @classmethod
    def of(cls, shape: Sequence[int], dtype: npt.DTypeLike) -> TensorSpec:
        """Build from any int sequence and dtype-like."""
        return cls(tuple(int(d) for d in shape), np.dtype(dtype))

    @classmethod
    def from_c(cls, spec: Any) -> TensorSpec:
        """Read a ``struct flax_tensor_spec``."""
        dtype = DTYPES.get(spec.dtype)
        if dtype is None:
            raise InvalidArgument(f"unknown tensor dtype code {spec.dtype} from the module")
        return cls(tuple(int(d) for d in spec.dims[0 : spec.ndim]), dtype)

    def to_c(self, spec: Any) -> None:
        """Fill a ``struct flax_tensor_spec`` (unused dims stay 0)."""
        spec.dtype = _DTYPE_CODES.get(self.dtype, 0)
        spec.ndim = len(self.shape)
        for i, dim in enumerate(self.shape[: lib.FLAX_MAX_DIMS]):
            spec.dims[i] = dim


@dataclass(frozen=True, eq=False)
class Normalization:
    """``FLAX_PRE_NORMALIZE`` parameters: float32 ``(x * scale - mean[c]) / std[c]``.

    ``mean`` and ``std`` have 1 entry (every element), one per channel (the
    last dimension, or the first with ``channel_first``) or one per element.
    ``clamp`` is ``(lo, hi)``: the result is clipped to it as ``np.clip`` does.
    """

    scale: float
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]
    channel_first: bool = False
    clamp: tuple[float, float] | None = None

    @classmethod
    def of(cls, value: NormalizeArg) -> Normalization:
        """Accept a :class:`Normalization` or a ``(scale, mean, std)`` tuple."""
        if isinstance(value, Normalization):
            return value
        scale, mean, std = value
        return cls(
            _f32(float(scale)),
            np.atleast_1d(np.asarray(mean, dtype=np.float32)).ravel(),
            np.atleast_1d(np.asarray(std, dtype=np.float32)).ravel(),
        )

    @property
    def count(self) -> int:
        """Number of mean/std pairs."""
        return int(self.mean.size)

    @property
    def flags(self) -> int:
        """The ``FLAX_MODEL_NORM_*`` flags these parameters need."""
        return (lib.FLAX_MODEL_NORM_CHANNEL_FIRST if self.channel_first else 0) | (
            lib.FLAX_MODEL_NORM_CLAMP if self.clamp is not None else 0
        )


NormalizeArg: TypeAlias = "Normalization | tuple[float, npt.ArrayLike, npt.ArrayLike]"


class PostPlan(NamedTuple):
    """What a post chain yields: ``select`` (a :data:`CLASS_OPS` step or None for a
    float32 vector) and ``vec_elems``, the length of the vector it works on."""

    select: str | None
    vec_elems: int


def plan_post(post: Sequence[str], output_shape: Sequence[int], *, model: str = "") -> PostPlan:
    """Check a post chain as the module does (``flax_post_plan()``) and analyse it."""
    where = f" of {model!r}" if model else ""
    ops = list(post)
    unknown = [op for op in ops if op not in POST_OPS]
    if unknown:
        raise InvalidArgument(f"unknown post op(s) {unknown}{where}; known: {list(POST_OPS)}")
    if len(ops) > lib.FLAX_POST_CHAIN_MAX:
        raise InvalidArgument(
            f"post chain{where} has {len(ops)} steps, more than {lib.FLAX_POST_CHAIN_MAX}"
        )
    shape = tuple(output_shape)
    vec_elems = math.prod(shape)
    i = 0
    select: str | None = None
    if i < len(ops) and ops[i] in ("softmax", "log_softmax"):
        i += 1
    if i < len(ops) and ops[i] in ("topk", "argmax"):
        select = ops[i]
        i += 1
    elif i == 0 and i < len(ops) and ops[i] == "sigmoid":
        i += 1
        if i < len(ops) and ops[i] == "threshold":
            select = ops[i]
            i += 1
    elif i == 0:
        if i < len(ops) and ops[i] == "mean_pool":
            if len(shape) != 2:
                raise InvalidArgument(
                    f"mean_pool{where} needs a 2-D (T, D) output, got shape {list(shape)}"
                )
            vec_elems = shape[1]
            i += 1
        if i < len(ops) and ops[i] == "l2_normalize":
            i += 1
    if i != len(ops):
        raise InvalidArgument(
            f"post chain {ops}{where} is not accepted (step {i}, {ops[i]!r}, cannot follow"
            f" {ops[:i] or 'the start'}); accepted chains: {' | '.join(ACCEPTED_CHAINS)}"
        )
    return PostPlan(select, vec_elems)


#: The post steps a worker may run itself, each only as the chain's first
#: step (``struct flax_model_desc.worker_post``).
WORKER_POST_OPS = ("mean_pool",)


def check_worker_post(post: Sequence[str], worker_post: int, *, model: str = "") -> None:
    """Check ``worker_post`` against a (valid) chain as the module does."""
    where = f" of {model!r}" if model else ""
    if not 0 <= worker_post <= len(WORKER_POST_OPS):
        raise InvalidArgument(f"worker_post{where} must be 0 or 1, got {worker_post}")
    if worker_post and tuple(post[:worker_post]) != WORKER_POST_OPS[:worker_post]:
        raise InvalidArgument(
            f"worker_post{where} is {worker_post}, but a worker runs only a leading"
            f" {' '.join(WORKER_POST_OPS)}; the chain is {list(post)}"
        )


def _shape(value: Sequence[int], what: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in value)
    if not 1 <= len(shape) <= lib.FLAX_MAX_DIMS:
        raise InvalidArgument(
            f"{what} must have 1 to {lib.FLAX_MAX_DIMS} dimensions, got {list(shape)}"
        )
    if any(d < 1 or d > _U32_MAX for d in shape):
        raise InvalidArgument(f"{what} dimensions must be positive, got {list(shape)}")
    if math.prod(shape) > _U32_MAX:
        raise InvalidArgument(f"{what} {list(shape)} has more than 2^32 - 1 elements")
    return shape


def _u32(value: int, what: str, hi: int = _U32_MAX) -> None:
    if not 0 <= value <= hi:
        raise InvalidArgument(f"{what} must be 0 to {hi}, got {value}")


@dataclass(frozen=True)
class ModelDesc:
    """A whole ``FLAX_IOC_MODEL_CREATE`` request.

    ``post`` is the postprocessing chain (:data:`ACCEPTED_CHAINS`); ``topk`` is
    k with a ``"topk"`` step, else 0; ``threshold`` is the ``"threshold"``
    step's cut-off, else 0.  ``nslots``, ``timeout_ms``, ``max_batch`` and
    ``max_queue`` of 0 take the module's defaults (module default, module
    default, ``nslots``, ``nslots``); ``max_queue_delay_us`` 0 means FETCH
    does not wait to fill a batch.  ``worker_post`` is how many leading steps
    of ``post`` the worker runs itself (:data:`WORKER_POST_OPS`: a leading
    ``mean_pool``), so its output slot holds ``[D]`` instead of ``[T, D]``;
    clients see the same results either way.  ``tokenize`` makes a ``FLAX_PRE_TOKENIZE``
    model: ``input`` is then int32 ``(2, L)`` (ids and mask, what the worker
    sees), clients send up to ``text_max`` bytes of UTF-8 (0: 4096).
    ``owner`` and ``group`` (uid and gid; None: the creator's) own the model's
    node ``/dev/flax/<name>`` and its sysfs files, ``mode`` is the node's
    permission bits (0: 0600); giving the model to another user or a group
    the creator is not in needs ``CAP_CHOWN``.
    """

    name: str
    input: TensorSpec
    output: TensorSpec
    normalize: Normalization | None = None
    post: tuple[str, ...] = ()
    topk: int = 0
    threshold: float = 0.0
    nslots: int = 0
    timeout_ms: int = 0
    max_batch: int = 0
    max_queue_delay_us: int = 0
    max_queue: int = 0
    tokenize: bool = False
    text_max: int = 0
    worker_post: int = 0
    owner: int | None = None
    group: int | None = None
    mode: int = 0

    @property
    def vec_elems(self) -> int:
        """Length of the vector the chain ends on (D after ``mean_pool``)."""
        if "mean_pool" in self.post and len(self.output.shape) == 2:
            return self.output.shape[1]
        return self.output.size

    def validate(self) -> ModelDesc:
        """Check the request as the module will; raise :class:`InvalidArgument` naming
        the problem.  Returns ``self``."""
        name = self.name
        if (
            not 1 <= len(name) < lib.FLAX_NAME_MAX
            or not _NAME_RE.fullmatch(name)
            or name in (".", "..", "control")
        ):
            raise InvalidArgument(
                f"model name {name!r} must be 1 to {lib.FLAX_NAME_MAX - 1} characters"
                " from [A-Za-z0-9_.-], not '.', '..' or 'control' (it names"
                f" {ffi.string(lib.FLAX_NODE_DIR).decode()}/<name>)"
            )
        if not 0 <= self.mode <= 0o777:
            raise InvalidArgument(f"node mode of {name!r} must be 0 to 0o777, got {self.mode:#o}")
        for what, ident in (("owner", self.owner), ("group", self.group)):
            if ident is not None:
                _u32(ident, f"{what} of {name!r}", _U32_MAX - 1)
        in_shape = _shape(self.input.shape, f"input shape of {name!r}")
        out_shape = _shape(self.output.shape, f"output shape of {name!r}")
        if self.input.dtype not in _DTYPE_CODES:
            known = ", ".join(str(dt) for dt in DTYPES.values())
            raise InvalidArgument(
                f"input dtype of {name!r} must be one of {known}, not {self.input.dtype}"
            )
        if self.output.dtype != np.float32:
            raise InvalidArgument(
                f"output dtype of {name!r} must be float32, not {self.output.dtype}"
            )
        plan = plan_post(self.post, out_shape, model=name)
        self._check_selection(plan)
        check_worker_post(self.post, self.worker_post, model=name)
        if self.tokenize:
            self._check_tokenize(in_shape, out_shape)
        elif self.text_max:
            raise InvalidArgument(f"text_max of {name!r} must be 0 without tokenize")
        if self.normalize is not None:
            _check_norm(self.normalize, in_shape, name)
        self._check_knobs()
        return self

    def _check_tokenize(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        name = self.name
        if self.normalize is not None:
            raise InvalidArgument(f"model {name!r} cannot both tokenize and normalize")
        if self.input.dtype != np.int32 or len(in_shape) != 2 or in_shape[0] != 2:
            raise InvalidArgument(
                f"input of tokenising model {name!r} must be int32 [2, L] (ids and mask),"
                f" got {self.input}"
            )
        if in_shape[1] < _TOK_MIN_LEN:
            raise InvalidArgument(f"L of {name!r} must be at least {_TOK_MIN_LEN}")
        if "mean_pool" in self.post and out_shape[0] != in_shape[1]:
            raise InvalidArgument(
                f"mean_pool of {name!r} pools one row per token: output must be [{in_shape[1]}, D],"
                f" got {list(out_shape)}"
            )
        _u32(self.text_max, f"text_max of {name!r}")

    def _check_selection(self, plan: PostPlan) -> None:
        name = self.name
        if plan.select == "topk":
            kmax = min(lib.FLAX_TOPK_MAX, plan.vec_elems)
            if not 1 <= self.topk <= kmax:
                raise InvalidArgument(f"topk for {name!r} must be 1 to {kmax}, got {self.topk}")
        elif self.topk:
            raise InvalidArgument(
                f"topk for {name!r} must be 0 without a 'topk' step, got {self.topk}"
            )
        if plan.select == "threshold":
            if math.isnan(self.threshold):
                raise InvalidArgument(f"threshold for {name!r} must not be NaN")
        elif f32_bits(self.threshold):
            raise InvalidArgument(
                f"threshold for {name!r} must be 0 without a 'threshold' step, got {self.threshold}"
            )

    def _check_knobs(self) -> None:
        name = self.name
        for what, value in (
            ("nslots", self.nslots),
            ("timeout_ms", self.timeout_ms),
            ("max_batch", self.max_batch),
            ("max_queue", self.max_queue),
        ):
            _u32(value, f"{what} of {name!r}")
            if what in ("max_batch", "max_queue") and self.nslots and value > self.nslots:
                raise InvalidArgument(
                    f"{what} of {name!r} must be at most nslots ({self.nslots}), got {value}"
                )
        _u32(self.max_queue_delay_us, f"max_queue_delay_us of {name!r}", MAX_WAIT_US)

    def to_desc(self) -> tuple[Any, list[Any]]:
        """Fill a ``struct flax_model_desc`` (``FLAX_MODEL_DESC_SIZE_VER2``) for MODEL_CREATE.

        Returns the struct and the cffi objects that must stay alive during the
        ioctl (the mean/std arrays its pointers refer to).  Does not validate.
        """
        desc = ffi.new("struct flax_model_desc *")
        keep: list[Any] = []
        desc.name = self.name.encode("utf-8", "replace")[: lib.FLAX_NAME_MAX - 1]
        self.input.to_c(desc.input)
        self.output.to_c(desc.output)
        norm = self.normalize
        if self.tokenize:
            desc.pre_op = lib.FLAX_PRE_TOKENIZE
            desc.text_max = self.text_max
        elif norm is not None:
            mean = ffi.new("uint32_t[]", [f32_bits(float(v)) for v in norm.mean])
            std = ffi.new("uint32_t[]", [f32_bits(float(v)) for v in norm.std])
            keep += [mean, std]
            desc.pre_op = lib.FLAX_PRE_NORMALIZE
            desc.flags = norm.flags
            desc.norm_count = norm.count
            desc.norm_scale = f32_bits(norm.scale)
            desc.norm_mean = pointer_value(mean)
            desc.norm_std = pointer_value(std)
            if norm.clamp is not None:
                desc.clamp_lo = f32_bits(norm.clamp[0])
                desc.clamp_hi = f32_bits(norm.clamp[1])
        else:
            desc.pre_op = lib.FLAX_PRE_NONE
        for i, op in enumerate(self.post[: lib.FLAX_POST_CHAIN_MAX]):
            desc.post_ops[i] = POST_OPS.get(op, 0xFF)
        desc.topk = self.topk
        desc.threshold = f32_bits(self.threshold)
        desc.nslots = self.nslots
        desc.timeout_ms = self.timeout_ms
        desc.max_batch = self.max_batch
        desc.max_queue_delay_us = self.max_queue_delay_us
        desc.max_queue = self.max_queue
        desc.worker_post = self.worker_post
        if self.owner is not None or self.group is not None:
            desc.flags |= lib.FLAX_MODEL_OWNER
            desc.owner_uid = os.geteuid() if self.owner is None else self.owner
            desc.owner_gid = os.getegid() if self.group is None else self.group
        desc.node_mode = self.mode
        return desc, keep


def _check_norm(norm: Normalization, shape: tuple[int, ...], name: str) -> None:
    count = norm.count
    where = f"normalisation of {name!r}"
    if norm.std.size != count:
        raise InvalidArgument(f"{where}: {count} means but {norm.std.size} stds")
    channels = shape[0] if norm.channel_first else shape[-1]
    allowed = sorted({1, channels, math.prod(shape)})
    if count not in allowed:
        layout = "first" if norm.channel_first else "last"
        raise InvalidArgument(
            f"{where}: {count} mean/std pairs; must be one of {allowed} (one, per channel"
            f" with channels {layout}, per element of {list(shape)})"
        )
    if not math.isfinite(_f32(norm.scale)):
        raise InvalidArgument(f"{where}: scale must be finite, got {norm.scale}")
    if not np.all(np.isfinite(norm.mean)):
        raise InvalidArgument(f"{where}: every mean must be finite")
    if not np.all(norm.std > 0) or not np.all(np.isfinite(norm.std)):
        raise InvalidArgument(f"{where}: every std must be finite and > 0")
    if norm.clamp is not None:
        lo, hi = (_f32(v) for v in norm.clamp)
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise InvalidArgument(
                f"{where}: clamp must be (lo, hi) with lo <= hi, got {norm.clamp}"
            )


@dataclass(frozen=True)
class ModelInfo:
    """A model as ``FLAX_IOC_MODEL_GET`` describes it.

    ``topk``, ``threshold``, ``timeout_ms``, ``max_batch``,
    ``max_queue_delay_us``, ``max_queue``, ``result_size`` and ``text_size``
    are the values when it was read: they may change through sysfs.
    ``text_max`` is the longest text a tokenising model (``pre_op``
    ``"tokenize"``) takes; its ``input`` is what the worker sees.
    ``worker_post`` leading steps of ``post`` are the worker's (its output
    slot holds :attr:`worker_output`).  ``nworkers`` is the number of workers
    attached when it was read (0: a request waits, up to its timeout, for one).
    """

    id: int
    name: str
    input: TensorSpec
    output: TensorSpec
    pre_op: str
    norm_count: int
    norm_scale: float
    post: tuple[str, ...]
    topk: int
    nslots: int
    timeout_ms: int
    result_size: int
    threshold: float = 0.0
    max_batch: int = 0
    max_queue_delay_us: int = 0
    max_queue: int = 0
    text_size: int = 0
    flags: int = 0
    clamp: tuple[float, float] | None = None
    text_max: int = 0
    worker_post: int = 0
    nworkers: int = 0
    owner_uid: int = 0
    owner_gid: int = 0
    node_mode: int = 0o600

    @property
    def worker_output(self) -> TensorSpec:
        """What the worker writes in an output slot: ``output``, or ``[D]`` when it runs a
        leading ``mean_pool`` itself (``worker_post``)."""
        if self.worker_post and len(self.output.shape) == 2:
            return TensorSpec(self.output.shape[1:], self.output.dtype)
        return self.output

    @property
    def worker_pool(self) -> bool:
        """Whether the worker mean-pools its output itself (``worker_post`` 1)."""
        return bool(self.worker_post) and self.post[:1] == ("mean_pool",)

    @property
    def worker_input(self) -> TensorSpec:
        """What the worker sees in an input slot: float32 after normalisation."""
        if self.pre_op == "normalize":
            return TensorSpec(self.input.shape, np.dtype(np.float32))
        return self.input

    @property
    def channel_first(self) -> bool:
        """Normalisation pairs go with the first dimension (``FLAX_MODEL_NORM_CHANNEL_FIRST``)."""
        return bool(self.flags & lib.FLAX_MODEL_NORM_CHANNEL_FIRST)

    @property
    def knobs(self) -> dict[str, int]:
        """The live queueing settings: ``timeout_ms``, ``max_batch``, ``max_queue_delay_us``,
        ``max_queue``."""
        return {
            "timeout_ms": self.timeout_ms,
            "max_batch": self.max_batch,
            "max_queue_delay_us": self.max_queue_delay_us,
            "max_queue": self.max_queue,
        }

    @property
    def select(self) -> str | None:
        """The chain's last step when it yields classes (topk, argmax, threshold), else None."""
        return self.post[-1] if self.post and self.post[-1] in CLASS_OPS else None

    @property
    def returns_classes(self) -> bool:
        """Whether a result is a ``struct flax_topk_result`` (topk, argmax, threshold)."""
        return self.select is not None

    @property
    def returns_topk(self) -> bool:
        """Alias of :attr:`returns_classes` (its name before argmax and threshold)."""
        return self.returns_classes

    @property
    def vec_elems(self) -> int:
        """Length of the vector the chain ends on: D after ``mean_pool``, else the output's."""
        if "mean_pool" in self.post and len(self.output.shape) == 2:
            return self.output.shape[1]
        return self.output.size

    @property
    def max_entries(self) -> int:
        """Most entries of a class result (k, 1, or every element for threshold); 0 for vectors."""
        return {"topk": self.topk, "argmax": 1, "threshold": self.vec_elems}.get(
            self.select or "", 0
        )

    @classmethod
    def from_desc(cls, desc: Any) -> ModelInfo:
        """Read a ``struct flax_model_desc`` filled by the module."""
        post: list[str] = []
        for code in desc.post_ops:
            if code == lib.FLAX_POST_END:
                break
            post.append(_POST_NAMES.get(code, f"op{code}"))
        # FLAX_MODEL_OWNER only says the owner fields are there: they always are.
        flags = int(desc.flags) & ~lib.FLAX_MODEL_OWNER
        clamp = None
        if flags & lib.FLAX_MODEL_NORM_CLAMP:
            clamp = (bits_to_f32(desc.clamp_lo), bits_to_f32(desc.clamp_hi))
        return cls(
            id=int(desc.id),
            name=ffi.string(desc.name).decode("ascii", "replace"),
            input=TensorSpec.from_c(desc.input),
            output=TensorSpec.from_c(desc.output),
            pre_op=PRE_OPS.get(desc.pre_op, f"op{desc.pre_op}"),
            norm_count=int(desc.norm_count),
            norm_scale=bits_to_f32(desc.norm_scale),
            post=tuple(post),
            worker_post=int(desc.worker_post),
            topk=int(desc.topk),
            nslots=int(desc.nslots),
            timeout_ms=int(desc.timeout_ms),
            result_size=int(desc.result_size),
            threshold=bits_to_f32(desc.threshold),
            max_batch=int(desc.max_batch),
            max_queue_delay_us=int(desc.max_queue_delay_us),
            max_queue=int(desc.max_queue),
            text_size=int(desc.text_size),
            flags=flags,
            clamp=clamp,
            text_max=int(desc.text_max),
            nworkers=int(desc.nworkers),
            owner_uid=int(desc.owner_uid),
            owner_gid=int(desc.owner_gid),
            node_mode=int(desc.node_mode),
        )
