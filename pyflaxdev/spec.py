"""Model descriptions in Python terms, and their translation to and from the UAPI.

:class:`ModelInfo` is what ``FLAX_IOC_MODEL_GET`` reports; :func:`build_desc`
fills a ``struct flax_model_desc`` for ``FLAX_IOC_MODEL_CREATE``.  Python-side
checks (:func:`validate_create`) only give better messages; the module checks
everything again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from pyflaxdev.errors import InvalidArgument
from pyflaxdev.uapi import bits_to_f32, f32_to_bits, ffi, lib, pointer_value

__all__ = [
    "DTYPES",
    "POST_OPS",
    "PRE_OPS",
    "ModelInfo",
    "Normalization",
    "NormalizeArg",
    "TensorSpec",
    "build_desc",
    "validate_create",
]

DTYPES: dict[int, np.dtype[Any]] = {
    lib.FLAX_DTYPE_UINT8: np.dtype(np.uint8),
    lib.FLAX_DTYPE_FLOAT32: np.dtype(np.float32),
}
_DTYPE_CODES = {dt: code for code, dt in DTYPES.items()}

PRE_OPS: dict[int, str] = {lib.FLAX_PRE_NONE: "none", lib.FLAX_PRE_NORMALIZE: "normalize"}
POST_OPS: dict[str, int] = {"softmax": lib.FLAX_POST_SOFTMAX, "topk": lib.FLAX_POST_TOPK}
_POST_NAMES = {code: name for name, code in POST_OPS.items()}

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")


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

    ``mean`` and ``std`` have 1, last-dimension or element-count entries;
    element ``i`` (in C order) uses pair ``i % len(mean)``.
    """

    scale: float
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]

    @classmethod
    def of(cls, value: NormalizeArg) -> Normalization:
        """Accept a :class:`Normalization` or a ``(scale, mean, std)`` tuple."""
        if isinstance(value, Normalization):
            return value
        scale, mean, std = value
        return cls(
            float(np.float32(scale)),
            np.atleast_1d(np.asarray(mean, dtype=np.float32)).ravel(),
            np.atleast_1d(np.asarray(std, dtype=np.float32)).ravel(),
        )


NormalizeArg: TypeAlias = "Normalization | tuple[float, npt.ArrayLike, npt.ArrayLike]"


@dataclass(frozen=True)
class ModelInfo:
    """A model as ``FLAX_IOC_MODEL_GET`` describes it."""

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

    @property
    def worker_input(self) -> TensorSpec:
        """What the worker sees in an input slot: float32 after normalisation."""
        if self.pre_op == "normalize":
            return TensorSpec(self.input.shape, np.dtype(np.float32))
        return self.input

    @property
    def returns_topk(self) -> bool:
        """Whether a result is a ``struct flax_topk_result`` (chain ends in top-k)."""
        return bool(self.post) and self.post[-1] == "topk"

    @classmethod
    def from_desc(cls, desc: Any) -> ModelInfo:
        """Read a ``struct flax_model_desc`` filled by the module."""
        post: list[str] = []
        for code in desc.post_ops:
            if code == lib.FLAX_POST_END:
                break
            post.append(_POST_NAMES.get(code, f"op{code}"))
        return cls(
            id=int(desc.id),
            name=ffi.string(desc.name).decode("ascii", "replace"),
            input=TensorSpec.from_c(desc.input),
            output=TensorSpec.from_c(desc.output),
            pre_op=PRE_OPS.get(desc.pre_op, f"op{desc.pre_op}"),
            norm_count=int(desc.norm_count),
            norm_scale=bits_to_f32(desc.norm_scale),
            post=tuple(post),
            topk=int(desc.topk),
            nslots=int(desc.nslots),
            timeout_ms=int(desc.timeout_ms),
            result_size=int(desc.result_size),
        )


def _shape(value: Sequence[int], what: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in value)
    if not 1 <= len(shape) <= lib.FLAX_MAX_DIMS:
        raise InvalidArgument(
            f"{what} must have 1 to {lib.FLAX_MAX_DIMS} dimensions, got {list(shape)}"
        )
    if any(d < 1 or d > 0xFFFFFFFF for d in shape):
        raise InvalidArgument(f"{what} dimensions must be positive, got {list(shape)}")
    return shape


def validate_create(
    name: str,
    input: TensorSpec,
    output: TensorSpec,
    normalize: Normalization | None,
    post: Sequence[str],
    topk: int,
    nslots: int,
    timeout_ms: int,
) -> None:
    """Check a model description as the module will, with messages naming the problem."""
    if not 1 <= len(name) < lib.FLAX_NAME_MAX or not _NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"model name {name!r} must be 1 to {lib.FLAX_NAME_MAX - 1} characters"
            " from [A-Za-z0-9_.-]"
        )
    _shape(input.shape, f"input shape of {name!r}")
    _shape(output.shape, f"output shape of {name!r}")
    if input.dtype not in _DTYPE_CODES:
        raise InvalidArgument(
            f"input dtype of {name!r} must be uint8 or float32, not {input.dtype}"
        )
    if output.dtype != np.float32:
        raise InvalidArgument(f"output dtype of {name!r} must be float32, not {output.dtype}")
    unknown = [op for op in post if op not in POST_OPS]
    if unknown:
        raise InvalidArgument(f"unknown post op(s) {unknown} for {name!r}; known: {list(POST_OPS)}")
    if len(post) > lib.FLAX_POST_CHAIN_MAX:
        raise InvalidArgument(f"post chain of {name!r} longer than {lib.FLAX_POST_CHAIN_MAX}")
    if len(set(post)) != len(post) or ("topk" in post and post[-1] != "topk"):
        raise InvalidArgument(
            f"post chain of {name!r} must use each op once, top-k last; got {list(post)}"
        )
    if "topk" in post:
        kmax = min(lib.FLAX_TOPK_MAX, output.size)
        if not 1 <= topk <= kmax:
            raise InvalidArgument(f"topk for {name!r} must be 1 to {kmax}, got {topk}")
    if normalize is not None:
        count = normalize.mean.size
        allowed = sorted({1, input.shape[-1], input.size})
        if normalize.std.size != count:
            raise InvalidArgument(
                f"normalisation of {name!r}: {count} means but {normalize.std.size} stds"
            )
        if count not in allowed:
            raise InvalidArgument(
                f"normalisation of {name!r}: {count} mean/std pairs; must be one of {allowed}"
                f" (one, per channel, per element of {list(input.shape)})"
            )
        if not np.all(normalize.std > 0) or not np.all(np.isfinite(normalize.std)):
            raise InvalidArgument(f"normalisation of {name!r}: every std must be finite and > 0")
    if nslots < 0 or timeout_ms < 0:
        raise InvalidArgument(f"nslots and timeout_ms of {name!r} must be >= 0")


def build_desc(
    name: str,
    input: TensorSpec,
    output: TensorSpec,
    normalize: Normalization | None,
    post: Sequence[str],
    topk: int,
    nslots: int,
    timeout_ms: int,
) -> tuple[Any, list[Any]]:
    """Fill a ``struct flax_model_desc`` for MODEL_CREATE.

    Returns the struct and the cffi objects that must stay alive during the
    ioctl (the mean/std arrays its pointers refer to).
    """
    desc = ffi.new("struct flax_model_desc *")
    keep: list[Any] = []
    encoded = name.encode("utf-8", "replace")
    desc.name = encoded[: lib.FLAX_NAME_MAX - 1]
    input.to_c(desc.input)
    output.to_c(desc.output)
    if normalize is not None:
        mean = ffi.new("uint32_t[]", normalize.mean.astype(np.float32).view(np.uint32).tolist())
        std = ffi.new("uint32_t[]", normalize.std.astype(np.float32).view(np.uint32).tolist())
        keep += [mean, std]
        desc.pre_op = lib.FLAX_PRE_NORMALIZE
        desc.norm_count = normalize.mean.size
        desc.norm_scale = f32_to_bits(normalize.scale)
        desc.norm_mean = pointer_value(mean)
        desc.norm_std = pointer_value(std)
    else:
        desc.pre_op = lib.FLAX_PRE_NONE
    for i, op in enumerate(post[: lib.FLAX_POST_CHAIN_MAX]):
        desc.post_ops[i] = POST_OPS.get(op, 0xFF)
    desc.topk = topk if "topk" in post else 0
    desc.nslots = nslots
    desc.timeout_ms = timeout_ms
    return desc, keep
