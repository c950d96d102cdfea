"""Batched, jit-compiled application of a model: gather -> pad -> ``jit(apply)`` -> rows.

One compiled function per allowed batch size: a batch of ``n`` jobs is padded
to the smallest allowed size ``>= n`` (pad rows are zeros and their outputs
are dropped), so there are never more compilations than sizes.  With
:class:`~pyflaxdev.buckets.Buckets` (tokenising models), a batch also runs at
the shortest bucket length that holds its texts, so there is one compilation
per (size, bucket).  JAX is imported here and only here (a pure client never
imports it).  :class:`CopyRunner` is the identity "model" (outputs are the
inputs' bytes), for measuring the transport without JAX.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pyflaxdev.buckets import Buckets
from pyflaxdev.errors import InvalidArgument
from pyflaxdev.spec import TensorSpec

__all__ = [
    "ApplyFn",
    "BatchRunner",
    "CopyRunner",
    "Pending",
    "Pool",
    "Runner",
    "choose_batch",
    "plan_batches",
]

log = logging.getLogger("pyflaxdev.worker")

#: ``apply(params, x) -> y`` with ``x`` of shape ``[batch, *input_shape]``.
ApplyFn = Callable[[Any, Any], Any]

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def plan_batches(batch_sizes: Sequence[int], nslots: int) -> tuple[tuple[int, ...], int]:
    """Choose the compiled batch sizes and FETCH's ``max_jobs`` for a model.

    ``max_jobs`` is the largest size, capped to ``nslots``; sizes that can never
    be needed (beyond the smallest one that holds ``max_jobs``) are dropped.
    """
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise InvalidArgument(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if nslots < 1:
        raise InvalidArgument(f"model has {nslots} slots")
    max_jobs = min(sizes[-1], nslots)
    cover = next(b for b in sizes if b >= max_jobs)
    return (*(b for b in sizes if b < max_jobs), cover), max_jobs


def as_apply_fn(apply: ApplyFn | Any) -> ApplyFn:
    """A Flax ``nn.Module`` becomes its ``apply``; any other callable is used as is."""
    method = getattr(apply, "apply", None)
    if callable(method) and not isinstance(apply, type):
        fn: ApplyFn = method
        return fn
    if callable(apply):
        return apply
    raise InvalidArgument(f"expected a Flax module or an apply(params, x) callable, got {apply!r}")


class Runner(Protocol):
    """What a server needs of a runner: compiled sizes, warm-up, gathered and whole batches."""

    @property
    def sizes(self) -> tuple[int, ...]:
        """The batch sizes it runs at, ascending."""
        ...

    def warmup(self, progress: Callable[[int, int | None, float], None] | None = None) -> None:
        """Prepare every batch size (compile)."""
        ...

    def run(self, inputs: npt.NDArray[Any], rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        """``[len(rows), output_size]`` float32 for ``inputs[rows]``."""
        ...

    def split(self, n: int) -> int:
        """How many of ``n`` waiting jobs to run now (the rest join the next batch)."""
        ...

    def apply(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """``[b, output_size]`` float32 for a whole batch of a size in :attr:`sizes`."""
        ...


def choose_batch(sizes: Sequence[int], seconds: dict[int, float], n: int) -> int:
    """How many of ``n`` waiting jobs to run now, given each size's time per call.

    Either all of them, padded to the smallest size that holds them, or the
    largest size below ``n``, the rest waiting for the next batch --
    whichever serves more jobs per second.  (34 jobs padded to 64 cost
    nearly twice 32; 3 padded to 4 cost less than 2 now and 1 later.)
    Without timings, all.
    """
    n = min(n, sizes[-1])
    padded = _size_for(tuple(sizes), n)
    below = [b for b in sizes if b < n]
    if padded == n or not below or padded not in seconds or below[-1] not in seconds:
        return n
    b = below[-1]
    return b if b / seconds[b] > n / seconds[padded] else n


def _size_for(sizes: tuple[int, ...], n: int) -> int:
    for b in sizes:
        if b >= n:
            return b
    raise ValueError(f"batch of {n} exceeds the largest size {sizes[-1]}")


@dataclass(frozen=True)
class Pool:
    """A mean pool fused into the jitted function (``struct flax_model_desc.worker_post``).

    The model's ``[T, D]`` output per input is averaged over its rows -- those
    whose attention mask (row 1 of a tokenised ``[2, T]`` input) is non-zero
    when ``masked``, else all of them -- as the kernel's ``FLAX_POST_MEAN_POOL``
    does (no row counted: the sum, i.e. zeros), so only ``[D]`` per input comes
    back from the device.
    """

    rows: int
    dim: int
    masked: bool


@dataclass(eq=False)
class Pending:
    """A batch dispatched to the device (:meth:`BatchRunner.start`), its result not yet read."""

    value: Any
    n: int
    length: int | None


class BatchRunner:
    """Runs ``jit(apply)`` on gathered slot inputs at a fixed set of batch sizes.

    With ``buckets`` the input must be ``[2, L]`` (ids, mask) and ``apply`` map
    ``[b, 2, k]`` to per-token outputs ``[b, k, D]`` for every bucket length
    ``k``; the rows past ``k`` of each ``[L, D]`` output are zeros.  With
    ``pool`` the mean pool runs in the same jitted function and the output is
    ``[D]`` per input (``output_size`` is then D).

    ``device`` pins the parameters, and so the computation, to one
    ``jax.Device``; ``mesh`` (several devices) shards each batch over them
    along the batch axis with the parameters replicated, every batch size
    rounded up to a multiple of their count.  Batches are gathered into
    staging buffers that are reused (two per size, so that one batch can be
    gathered while the previous one computes: see :meth:`start`).
    """

    def __init__(
        self,
        apply: ApplyFn | Any,
        params: Any,
        input_spec: TensorSpec,
        output_size: int,
        batch_sizes: Sequence[int],
        buckets: Buckets | None = None,
        *,
        pool: Pool | None = None,
        device: Any = None,
        mesh: Sequence[Any] | None = None,
    ) -> None:
        import jax

        fn = as_apply_fn(apply)
        if pool is not None:
            if pool.dim != output_size:
                raise InvalidArgument(
                    f"a pooled output has {pool.dim} values per input, not {output_size}"
                )
            fn = _pooled(fn, pool)
        self.pool = pool
        self.devices: tuple[Any, ...] = ()
        if mesh is not None and len(mesh) > 1:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            grid = Mesh(np.array(list(mesh)), ("batch",))
            replicated = NamedSharding(grid, PartitionSpec())  # type: ignore[no-untyped-call]
            split = NamedSharding(grid, PartitionSpec("batch"))  # type: ignore[no-untyped-call]
            self._fn = jax.jit(fn, in_shardings=(replicated, split), out_shardings=split)
            self._params = jax.device_put(params, replicated)
            self.devices = tuple(mesh)
        else:
            one = device if device is not None else (mesh[0] if mesh else None)
            self._fn = jax.jit(fn)
            self._params = jax.device_put(params, one)
            self.devices = (one,) if one is not None else ()
        ndev = max(len(self.devices), 1)
        self.input_spec = input_spec
        self.output_size = output_size
        self.sizes = tuple(sorted({-(-int(b) // ndev) * ndev for b in batch_sizes}))
        self.buckets = buckets
        self._row = 0
        if buckets is not None:
            shape = input_spec.shape
            if len(shape) != 2 or shape[0] != 2 or shape[1] != buckets.full:
                raise InvalidArgument(
                    f"length buckets need a [2, {buckets.full}] (ids, mask) input,"
                    f" got {list(shape)}"
                )
            if pool is None and output_size % buckets.full:
                raise InvalidArgument(
                    f"length buckets need [{buckets.full}, D] outputs, got {output_size} values"
                )
            self._row = output_size // buckets.full if pool is None else pool.dim
        self._buffers = {
            b: [np.zeros((b, *input_spec.shape), dtype=input_spec.dtype) for _ in range(2)]
            for b in self.sizes
        }
        self._used = {b: [0, 0] for b in self.sizes}  # rows of each buffer not known zero
        self._turn = 0
        #: Median seconds per call at each batch size, measured by :meth:`warmup`.
        self.seconds: dict[int, float] = {}

    @property
    def lengths(self) -> tuple[int | None, ...]:
        """The bucket lengths compiled for each batch size (``(None,)``: no buckets)."""
        return self.buckets.lengths if self.buckets is not None else (None,)

    def size_for(self, n: int) -> int:
        """The smallest compiled batch size that holds ``n`` rows."""
        return _size_for(self.sizes, n)

    def warmup(
        self,
        progress: Callable[[int, int | None, float], None] | None = None,
        *,
        timing_calls: int = 3,
    ) -> None:
        """Compile every (batch size, bucket); ``progress(size, length, seconds)`` after each.

        Then time ``timing_calls`` calls of each size (at the shortest
        bucket) for :meth:`split`.
        """
        for b in self.sizes:
            for k in self.lengths:
                t0 = time.perf_counter()
                self._run(self._buffers[b][0], k)
                seconds = time.perf_counter() - t0
                at = "" if k is None else f" at length {k}"
                log.info("compiled batch size %d%s in %.2f s", b, at, seconds)
                if progress is not None:
                    progress(b, k, seconds)
        for b in self.sizes if timing_calls > 0 else ():
            times = []
            for _ in range(timing_calls):
                t0 = time.perf_counter()
                self._run(self._buffers[b][0], self.lengths[0])
                times.append(time.perf_counter() - t0)
            self.seconds[b] = float(np.median(times))
        if self.seconds:
            log.info(
                "time per call: %s",
                ", ".join(f"{b}: {s * 1e3:.2f} ms" for b, s in self.seconds.items()),
            )

    def split(self, n: int) -> int:
        """How many of ``n`` waiting jobs to run now (see :func:`choose_batch`)."""
        return choose_batch(self.sizes, self.seconds, n)

    def run(self, inputs: npt.NDArray[Any], rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        """Apply the model to ``inputs[rows]``; return ``[len(rows), output_size]`` float32."""
        return self.finish(self.start(inputs, rows))

    def start(self, inputs: npt.NDArray[Any], rows: npt.NDArray[np.intp]) -> Pending:
        """Gather ``inputs[rows]`` into a staging buffer and dispatch the model on it.

        Returns at once (JAX dispatch is asynchronous); :meth:`finish` waits
        for the result.  The two staging buffers of a size are used in turn,
        so at most two batches may be pending at a time.
        """
        n = len(rows)
        b = self.size_for(n)
        turn = self._turn
        self._turn ^= 1
        buf = self._buffers[b][turn]
        np.take(inputs, rows, axis=0, out=buf[:n])
        used = self._used[b]
        if used[turn] > n:  # stale rows of an earlier, larger batch: pad with zeros
            buf[n : used[turn]] = 0
        used[turn] = n
        k = None if self.buckets is None else self.buckets.length_for(buf[:n, 1])
        x = buf if k is None or k == buf.shape[-1] else buf[:, :, :k]
        return Pending(self._fn(self._params, x), n, k)

    def finish(self, pending: Pending) -> npt.NDArray[np.float32]:
        """Wait for a batch's result: ``[n, output_size]`` float32 (of the batch's real rows).

        With buckets and no pool, the rows past the batch's length are zeros.
        """
        y = self._check(np.asarray(pending.value), pending.length)[: pending.n]
        k = pending.length
        if k is None or self.pool is not None:
            return y.reshape(pending.n, self.output_size)
        assert self.buckets is not None
        out = np.empty((pending.n, self.buckets.full, self._row), dtype=np.float32)
        out[:, :k] = y
        out[:, k:] = 0
        return out.reshape(pending.n, self.output_size)

    def finish_into(
        self, pending: Pending, outputs: npt.NDArray[np.float32], rows: npt.NDArray[np.intp]
    ) -> None:
        """:meth:`finish` written straight into ``outputs[rows]`` (output slots): with
        buckets, the first ``k`` rows of each and zeros after them, no full-length copy."""
        k = pending.length
        if k is None or self.pool is not None or k == self.buckets_full:
            outputs[rows] = self.finish(pending)
            return
        y = self._check(np.asarray(pending.value), k)[: pending.n]
        cut = k * self._row
        outputs[rows, :cut] = y.reshape(pending.n, cut)
        outputs[rows, cut:] = 0

    @property
    def buckets_full(self) -> int | None:
        """The full length ``L`` with buckets, else None."""
        return None if self.buckets is None else self.buckets.full

    def apply(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Apply the model to ``batch`` (``[b, *input_shape]``, ``b`` a compiled size, no
        padding added); return ``[b, output_size]`` float32.

        Uses none of the runner's buffers, so several threads may call it at once.
        """
        if len(batch) not in self.sizes:
            raise ValueError(f"batch of {len(batch)} is not a compiled size {list(self.sizes)}")
        k = None if self.buckets is None else self.buckets.length_for(batch[:, 1])
        return self._run(batch, k)

    def _run(self, batch: npt.NDArray[Any], k: int | None) -> npt.NDArray[np.float32]:
        x = batch if k is None else batch[:, :, :k]
        return self.finish(Pending(self._fn(self._params, x), batch.shape[0], k))

    def _check(self, y: npt.NDArray[Any], k: int | None) -> npt.NDArray[np.float32]:
        b = y.shape[0] if y.ndim else 0
        if k is None or self.pool is not None:
            if y.size != b * self.output_size:
                raise InvalidArgument(
                    f"model output has shape {list(y.shape)} for a batch of {b};"
                    f" the device model expects {self.output_size} values per input"
                )
            return y.reshape(b, self.output_size).astype(np.float32, copy=False)
        if y.shape != (b, k, self._row):
            raise InvalidArgument(
                f"model output has shape {list(y.shape)} for a batch of {b} at length {k};"
                f" length buckets need {[b, k, self._row]}"
            )
        return y.astype(np.float32, copy=False)


def _pooled(fn: ApplyFn, pool: Pool) -> ApplyFn:
    """``fn`` followed by the mean pool of :class:`Pool`, as one function to jit."""
    import jax.numpy as jnp

    def pooled(params: Any, x: Any) -> Any:
        h = jnp.asarray(fn(params, x), dtype=jnp.float32)
        h = h.reshape(h.shape[0], -1, pool.dim)
        if pool.masked:
            m = (x[:, 1, : h.shape[1]] != 0).astype(jnp.float32)
        else:
            m = jnp.ones(h.shape[:2], dtype=jnp.float32)
        total = jnp.einsum("btd,bt->bd", h, m, precision="highest")
        count = jnp.maximum(m.sum(axis=1, keepdims=True), 1.0)
        return total / count

    return pooled


class CopyRunner:
    """The identity "model": each output is its input's bytes read as float32.

    For measuring the transport (the ``null`` zoo model): no JAX, nothing to
    compile.  The input's bytes must be exactly ``output_size`` float32 values.
    """

    def __init__(
        self, input_spec: TensorSpec, output_size: int, batch_sizes: Sequence[int]
    ) -> None:
        if input_spec.nbytes != output_size * 4:
            raise InvalidArgument(
                f"a copy needs inputs of {output_size * 4} bytes ({output_size} float32"
                f" outputs), got {input_spec} ({input_spec.nbytes} bytes)"
            )
        self.input_spec = input_spec
        self.output_size = output_size
        self.sizes = tuple(sorted(set(batch_sizes)))
        if not self.sizes or self.sizes[0] < 1:
            raise InvalidArgument(f"batch sizes must be positive, got {list(batch_sizes)}")

    def size_for(self, n: int) -> int:
        """The smallest batch size that holds ``n`` rows."""
        return _size_for(self.sizes, n)

    def warmup(self, progress: Callable[[int, int | None, float], None] | None = None) -> None:
        """Nothing to compile; ``progress`` is called once per size for symmetry."""
        if progress is not None:
            for b in self.sizes:
                progress(b, None, 0.0)

    def split(self, n: int) -> int:
        """All ``n`` jobs now: a copy has no padding to avoid."""
        return min(n, self.sizes[-1])

    def run(self, inputs: npt.NDArray[Any], rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        """``inputs[rows]`` (copied) as ``[len(rows), output_size]`` float32."""
        self.size_for(len(rows))
        return self.apply(np.take(inputs, rows, axis=0))

    def apply(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """``batch`` as ``[b, output_size]`` float32 (a view when it is contiguous)."""
        a = np.ascontiguousarray(batch)
        out: npt.NDArray[np.float32] = a.reshape(len(a), -1).view(np.float32)
        return out
