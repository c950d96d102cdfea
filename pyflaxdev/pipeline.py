"""A zoo model's device path in one process: request bytes in, result bytes out.

What ``/dev/flax`` and a worker do for a model created from a
:class:`~pyflaxdev.models.ModelSpec`, without the device (for the baseline
servers of :mod:`pyflaxdev.sockserve`):

- the request check: exactly the input's bytes, or at most ``text_max`` bytes
  of UTF-8 for a text model (``-EINVAL``, ``-EILSEQ`` otherwise);
- the kernel's preprocessing: :meth:`ModelSpec.preprocess`, i.e.
  :func:`pyflaxdev.reference.normalize` or the Hugging Face tokenizer;
- ``jit(apply)`` in a :class:`~pyflaxdev.runner.BatchRunner` (a batch padded to
  a compiled size), or a :class:`~pyflaxdev.runner.CopyRunner` for the
  identity model;
- the kernel's postprocessing in numpy, for every row at once
  (:func:`~pyflaxdev.reference.postprocess_rows`,
  :func:`~pyflaxdev.reference.pool_rows`);
- the result in ``FLAX_IOC_INFER``'s binary format: a ``struct
  flax_topk_result`` (:func:`~pyflaxdev.results.encode_classes`) for a chain
  ending in ``topk``, else float32 values.

Only the chains :mod:`pyflaxdev.reference` implements are supported (softmax,
topk; mean_pool, l2_normalize), which covers the zoo.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pyflaxdev import reference
from pyflaxdev.buckets import Buckets
from pyflaxdev.errors import InvalidArgument
from pyflaxdev.results import encode_classes
from pyflaxdev.runner import BatchRunner, CopyRunner, Runner
from pyflaxdev.spec import TensorSpec

if TYPE_CHECKING:
    from pyflaxdev.models import ModelSpec

__all__ = ["CHAINS", "Pipeline"]

#: The post chains the pipeline runs (those of :mod:`pyflaxdev.reference`).
CHAINS: tuple[tuple[str, ...], ...] = (
    (),
    ("softmax",),
    ("topk",),
    ("softmax", "topk"),
    ("mean_pool",),
    ("l2_normalize",),
    ("mean_pool", "l2_normalize"),
)

_POOL_OPS = ("mean_pool", "l2_normalize")


class Pipeline:
    """``spec``'s whole device path, run at the batch sizes ``batch_sizes``.

    ``buckets`` (text models) are the sequence lengths a batch may run at
    (see :mod:`pyflaxdev.buckets`; None: always the full length).  Build it,
    :meth:`warmup` (compiles every size), then :meth:`check` each request and
    run it with :meth:`infer` (batch 1, any number of threads at once) or
    :meth:`infer_batch` (one thread at a time).
    """

    def __init__(
        self,
        spec: ModelSpec,
        batch_sizes: Sequence[int] = (1,),
        *,
        buckets: Sequence[int] | None = None,
    ) -> None:
        if spec.post not in CHAINS:
            raise InvalidArgument(
                f"model {spec.name!r}: post chain {list(spec.post)} is not one the in-process"
                f" pipeline runs ({', '.join(' '.join(c) or '(none)' for c in CHAINS)})"
            )
        self.spec = spec
        self.max_request = spec.text_max if spec.tokenize else spec.input.nbytes
        sizes = tuple(sorted({int(b) for b in batch_sizes}))
        if not sizes or sizes[0] < 1:
            raise InvalidArgument(f"batch sizes must be positive, got {list(batch_sizes)}")
        seen = spec.input
        if spec.normalize is not None:
            seen = TensorSpec(spec.input.shape, np.dtype(np.float32))
        self.runner: Runner
        if spec.identity:
            self.runner = CopyRunner(seen, spec.output.size, sizes)
        else:
            plan = None
            if spec.tokenize and buckets:
                plan = Buckets.plan(buckets, spec.input.shape[-1])
            self.runner = BatchRunner(spec.module, spec.params, seen, spec.output.size, sizes, plan)
        self.max_batch = sizes[-1]
        self._rows = np.arange(self.max_batch, dtype=np.intp)
        # The raw requests of a batch (tensor models), one row of bytes each.
        self._raw = np.empty((self.max_batch, 0 if spec.tokenize else spec.input.nbytes), np.uint8)

    @property
    def sizes(self) -> tuple[int, ...]:
        """The compiled batch sizes."""
        return self.runner.sizes

    def warmup(self) -> None:
        """Compile every batch size (and bucket)."""
        self.runner.warmup()

    def check(self, payload: memoryview) -> int:
        """0 if the device would take ``payload`` as a request, else its negative errno."""
        if not self.spec.tokenize:
            return 0 if payload.nbytes == self.max_request else -errno.EINVAL
        if payload.nbytes > self.max_request:
            return -errno.EINVAL
        try:
            str(payload, "utf-8")
        except UnicodeDecodeError:
            return -errno.EILSEQ
        return 0

    def infer(self, payload: memoryview) -> npt.NDArray[np.uint8]:
        """The result bytes for one checked request, run at batch 1.

        Thread-safe.  The result may be a view of ``payload`` (identity model).
        """
        spec = self.spec
        if spec.tokenize:
            x = self._tokenize([payload])
        else:
            a = np.frombuffer(payload, dtype=spec.input.dtype).reshape(1, *spec.input.shape)
            x = spec.preprocess(a)
        out: npt.NDArray[np.uint8] = self._post(self.runner.apply(x), x)[0]
        return out

    def infer_batch(self, payloads: Sequence[memoryview]) -> npt.NDArray[np.uint8]:
        """The result bytes ``[n, result_bytes]`` of ``n`` checked requests (at most the
        largest batch size), run as one padded batch.  Not thread-safe."""
        spec = self.spec
        n = len(payloads)
        if not 1 <= n <= self.max_batch:
            raise InvalidArgument(f"batch of {n} requests; sizes run are 1 to {self.max_batch}")
        if spec.tokenize:
            x = self._tokenize(payloads)
        else:
            raw = self._raw[:n]
            for row, payload in zip(raw, payloads, strict=True):
                row[:] = np.frombuffer(payload, dtype=np.uint8)
            x = spec.preprocess(raw.view(spec.input.dtype).reshape(n, *spec.input.shape))
        return self._post(self.runner.run(x, self._rows[:n]), x)

    def _tokenize(self, payloads: Sequence[memoryview]) -> npt.NDArray[Any]:
        texts = [str(p, "utf-8") for p in payloads]
        return self.spec.preprocess(texts)

    def _post(self, y: npt.NDArray[np.float32], x: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
        """Postprocess ``[n, output_size]`` outputs of the inputs ``x`` into result bytes."""
        spec = self.spec
        n = len(y)
        out: npt.NDArray[Any]
        if spec.post and spec.post[0] in _POOL_OPS:
            mask = x[:, 1] if spec.tokenize and "mean_pool" in spec.post else None
            out = reference.pool_rows(y.reshape(n, *spec.output.shape), mask, spec.post)
        else:
            rows = reference.postprocess_rows(y, spec.post, spec.topk)
            out = encode_classes(*rows) if isinstance(rows, tuple) else rows
        bytes_out: npt.NDArray[np.uint8] = np.ascontiguousarray(out).view(np.uint8)
        return bytes_out
