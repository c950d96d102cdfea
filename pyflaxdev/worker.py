"""The worker side: attach to a model, fetch batches, complete them.

:class:`Worker` is the thin, explicit layer (one method per ioctl, numpy views
of the region), for tests that need to act as a worker step by step or
misbehave on purpose.  :func:`serve` is the loop built on it::

    FETCH(previous batch's completions)          one syscall per batch
      -> entries ring[first .. first+count)      slots and tags
      -> inputs[slots], padded, jit(apply)       one call per batch
      -> outputs[slots] = y; status 0            (-EIO for the batch if apply raised)

The loop's bookkeeping (the FETCH call, reading and checking the ring,
completion records) is done in C by :class:`~pyflaxdev.wloop.FastLoop`, one
call each side of the model: per-batch Python work is most of a small
batch's round trip.

The loop keeps the device busy: a batch is gathered into a staging buffer and
dispatched (JAX returns at once), then the next FETCH (``FLAX_FETCH_NOWAIT``
while a batch is in flight) takes the jobs queued meanwhile and, by default,
the next batch is gathered and dispatched before the first one's result is
read (``pipeline_depth`` 2).  Completions keep their order: the jobs of the
oldest batch in flight are always the first ones the loop holds.  A model
whose chain starts with ``mean_pool`` and whose ``worker_post`` is 1 is
pooled inside the jitted function, so only ``[D]`` per job comes back.

:func:`serving` runs :func:`serve` in a background thread for the length of a
``with`` block.

Signals: the module ends a FETCH that was interrupted *after* applying its
completions successfully with ``count`` 0 (restarting it would apply them
twice), and fails it with ``EINTR`` only before applying any.  So
:meth:`Worker.fetch` reports ``EINTR`` as an empty, interrupted batch with
``done`` 0 and the loop resends all its completions; a Python handler that
raises (``KeyboardInterrupt``) ends the loop, and the jobs the worker held are
requeued when its fd is closed.  Threads started by :func:`serving` (and
``flaxdev serve``) block asynchronous signals, so the main thread gets them.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pyflaxdev import ioctls, uapi
from pyflaxdev.accel import configure_allocator, local_devices, resolve_device
from pyflaxdev.buckets import Buckets
from pyflaxdev.device import Device, model_path
from pyflaxdev.errors import FlaxError, InvalidArgument, ModelGone, ModelNotFound, check
from pyflaxdev.model import Model
from pyflaxdev.region import Layout, Region
from pyflaxdev.runner import (
    DEFAULT_BATCH_SIZES,
    ApplyFn,
    BatchRunner,
    CopyRunner,
    Pending,
    Pool,
    Runner,
    plan_batches,
)
from pyflaxdev.spec import MAX_WAIT_US, ModelInfo
from pyflaxdev.uapi import ffi, lib, numpy_dtype
from pyflaxdev.wloop import FastLoop

__all__ = [
    "Batch",
    "Completions",
    "ServeHandle",
    "Worker",
    "WorkerStats",
    "build_runner",
    "serve",
    "serving",
]

log = logging.getLogger("pyflaxdev.worker")

COMPLETION_DTYPE = numpy_dtype("struct flax_completion")
DEFAULT_FETCH_TIMEOUT_MS = 200


class Completions:
    """A batch of ``struct flax_completion`` in C memory, with a numpy view ``array``."""

    def __init__(self, capacity: int) -> None:
        self._c = ffi.new("struct flax_completion[]", max(capacity, 1))
        self.array: npt.NDArray[Any] = np.frombuffer(ffi.buffer(self._c), dtype=COMPLETION_DTYPE)
        self.count = 0

    @classmethod
    def of(cls, items: Sequence[tuple[int, int, int]]) -> Completions:
        """Build from ``(slot, tag, status)`` triples."""
        out = cls(len(items))
        for i, (slot, tag, status) in enumerate(items):
            out._c[i].slot, out._c[i].tag, out._c[i].status = slot, tag, status
        out.count = len(items)
        return out

    @property
    def pointer(self) -> int:
        """Address of the first completion (for ``__u64 completions``)."""
        return uapi.pointer_value(self._c)

    def add(self, slots: npt.ArrayLike, tags: npt.ArrayLike, status: int) -> None:
        """Append one completion per slot, all with ``status`` (0 or a negative errno)."""
        slots_a = np.asarray(slots)
        n = len(slots_a)
        if self.count + n > len(self.array):
            raise ValueError(f"{self.count + n} completions exceed capacity {len(self.array)}")
        rows = self.array[self.count : self.count + n]
        rows["slot"] = slots_a
        rows["tag"] = tags
        rows["status"] = status
        rows["reserved"] = 0
        self.count += n

    def consume(self, n: int) -> None:
        """Drop the first ``n`` completions (applied by the kernel), keep the rest."""
        n = min(n, self.count)
        rest = self.count - n
        if n and rest:
            self.array[:rest] = self.array[n : self.count].copy()
        self.count = rest

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True, eq=False)
class Batch:
    """The outcome of one FETCH: new jobs and how many completions were applied."""

    first: int
    count: int
    slots: npt.NDArray[np.intp]
    tags: npt.NDArray[np.uint32]
    done: int
    interrupted: bool = False
    #: The most jobs the FETCH would have taken (``struct flax_fetch.max_batch``).
    max_batch: int = 0


@dataclass
class WorkerStats:
    """Counters of a serving worker (updated by the worker thread only)."""

    batches: int = 0
    jobs: int = 0
    failed_jobs: int = 0
    fetches: int = 0
    compute_seconds: float = 0.0
    batch_sizes: Counter[int] = field(default_factory=Counter)

    @classmethod
    def total(cls, stats: Iterable[WorkerStats]) -> WorkerStats:
        """The sum of several workers' counters."""
        out = cls()
        for s in stats:
            out.batches += s.batches
            out.jobs += s.jobs
            out.failed_jobs += s.failed_jobs
            out.fetches += s.fetches
            out.compute_seconds += s.compute_seconds
            out.batch_sizes.update(s.batch_sizes)
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (for JSON)."""
        return {
            "batches": self.batches,
            "jobs": self.jobs,
            "failed_jobs": self.failed_jobs,
            "fetches": self.fetches,
            "compute_seconds": self.compute_seconds,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
        }


class Worker:
    """An fd attached (or about to be) as a worker of one model.

    ``device`` is a path (a new fd is opened and closed with the worker; default
    the model's node, ``/dev/flax/<name>``) or an open :class:`Device` that is
    not attached yet (it stays open).
    """

    def __init__(self, model: str | Model, *, device: str | Device | None = None) -> None:
        name = model.name if isinstance(model, Model) else model
        self._owns_device = not isinstance(device, Device)
        # By default the model's own node: its owner needs no access to the control node.
        self.device: Device = (
            device if isinstance(device, Device) else Device(device or model_path(name))
        )
        try:
            self.info: ModelInfo = self.device.describe(name)
        except BaseException:
            self.close()
            raise
        self.region: Region | None = None
        self.layout: Layout | None = None
        self.index: int | None = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unmap and (if owned) close the fd; the kernel requeues jobs still held."""
        if getattr(self, "region", None) is not None:
            assert self.region is not None
            self.region.close()
            self.region = None
        if self._owns_device:
            self.device.close()

    def _ctx(self) -> dict[str, object]:
        return {"model": self.info.name, "path": self.device.path}

    def attach(self) -> Region:
        """``FLAX_IOC_WORKER_ATTACH`` and map the region."""
        req = ffi.new("struct flax_worker_attach *")
        req.model_id = self.info.id
        self.device.ioctl(ioctls.WORKER_ATTACH, req, op="WORKER_ATTACH", context=self._ctx())
        self.layout = Layout.from_c(req.layout)
        self.index = int(req.worker)
        self.region = Region(self.device.fileno(), self.layout, self.index, self.info)
        return self.region

    def fast_loop(self) -> FastLoop:
        """The C serving loop over this attached fd (what :func:`serve` runs on)."""
        if self.region is None:
            raise InvalidArgument("fast_loop() before attach()")
        return FastLoop(self.device.fileno(), self.region, self._ctx())

    def fetch(
        self,
        completions: Completions | Sequence[tuple[int, int, int]] | None = None,
        *,
        max_jobs: int | None = None,
        max_wait_us: int | None = None,
        timeout_ms: int = DEFAULT_FETCH_TIMEOUT_MS,
        nowait: bool = False,
    ) -> Batch:
        """``FLAX_IOC_FETCH``: apply ``completions``, then take up to ``max_jobs`` jobs.

        Waits up to ``timeout_ms`` (0: forever) for a first job, then for more
        until the batch is full or the oldest job has waited the batching delay.
        ``max_jobs`` (default: nslots) and ``max_wait_us`` (default
        :data:`~pyflaxdev.spec.MAX_WAIT_US`, 10 s) are this worker's caps: the
        model's ``max_batch`` and ``max_queue_delay_us`` apply when smaller, so
        by default the model's settings govern.  Returns an empty batch on
        timeout, and an empty batch with ``interrupted=True`` on ``EINTR``.
        ``nowait`` (``FLAX_FETCH_NOWAIT``) takes only what is queued now, with
        no wait of any kind.
        """
        if self.region is None:
            raise InvalidArgument("fetch() before attach()")
        if isinstance(completions, Completions) or completions is None:
            comp = completions
        else:
            comp = Completions.of(list(completions))
        req = ffi.new("struct flax_fetch *")
        if comp is not None and comp.count:
            req.completions = comp.pointer
            req.ncomplete = comp.count
        req.max_jobs = self.info.nslots if max_jobs is None else max_jobs
        req.max_wait_us = MAX_WAIT_US if max_wait_us is None else max_wait_us
        req.timeout_ms = timeout_ms
        req.flags = lib.FLAX_FETCH_NOWAIT if nowait else 0
        result = uapi.ioctl(self.device.fileno(), ioctls.FETCH, req)
        if result == -errno.EINTR:
            empty = np.empty(0, dtype=np.intp)
            return Batch(0, 0, empty, empty.astype(np.uint32), int(req.done), interrupted=True)
        check(result, "FETCH", self._ctx())
        slots, tags = self.region.read(int(req.first), int(req.count))
        return Batch(
            int(req.first), int(req.count), slots, tags, int(req.done), max_batch=int(req.max_batch)
        )

    def complete(self, completions: Completions | Sequence[tuple[int, int, int]]) -> int:
        """``FLAX_IOC_COMPLETE``: apply completions without fetching; returns ``done``."""
        comp = completions if isinstance(completions, Completions) else Completions.of(completions)
        req = ffi.new("struct flax_complete *")
        req.completions = comp.pointer
        req.count = comp.count
        self.device.ioctl(ioctls.COMPLETE, req, op="COMPLETE", context=self._ctx())
        return int(req.done)


def serve(
    apply: ApplyFn | Any,
    params: Any,
    *,
    model: str | Model,
    device: str | Device | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    buckets: Sequence[int] | None = None,
    max_wait_us: int | None = None,
    fetch_timeout_ms: int = DEFAULT_FETCH_TIMEOUT_MS,
    stop: threading.Event | None = None,
    ready: Callable[[], object] | None = None,
    stats: WorkerStats | None = None,
    identity: bool = False,
    jax_device: str | Any = None,
    devices: str | None = None,
    pipeline_depth: int = 2,
) -> WorkerStats:
    """Serve ``model`` with ``apply`` until ``stop`` is set or the model is destroyed.

    ``apply`` is a Flax ``nn.Module`` (its ``apply(params, x)`` is used) or any
    ``apply(params, x)`` callable mapping ``[batch, *input_shape]`` (float32 when
    the model normalises, else the input dtype) to ``[batch, *output_shape]``.
    Every batch size in ``batch_sizes`` (capped by the model's slots) is
    compiled before attaching; then ``ready()`` is called and jobs are served,
    each FETCH taking up to the largest size (the worker's capacity) and
    waiting for a batch to fill as long as the model's ``max_queue_delay_us``
    says, capped by ``max_wait_us`` (default: no cap of the worker's own).
    ``stop`` is polled every ``fetch_timeout_ms``.  ``buckets`` (lengths, for a
    tokenising model whose ``apply`` maps ``[b, 2, k]`` to ``[b, k, D]``) runs
    each batch at the shortest of them (or the model's ``L``) that holds its
    texts; every (batch size, bucket) is compiled before attaching (see
    :mod:`pyflaxdev.buckets`).  ``identity`` serves the identity model (the
    ``null`` zoo model): each output is its input's bytes as float32, copied by
    a :class:`~pyflaxdev.runner.CopyRunner` (``apply`` and ``params`` are
    ignored, JAX is not imported).  ``jax_device`` (a ``jax.Device`` or a
    name such as ``"cpu"`` or ``"cuda:0"``, see :mod:`pyflaxdev.accel`) is
    where the model runs; ``devices="all"`` shards every batch over all local
    devices (of ``jax_device``'s platform if given).  ``pipeline_depth`` is
    how many batches may be in flight (1: each batch's result is read before
    the next FETCH).  XLA is told to allocate on demand
    (:func:`~pyflaxdev.accel.configure_allocator`) unless the environment
    says otherwise.  Returns the worker's counters (also updated live in
    ``stats`` if given).
    """
    stats = stats if stats is not None else WorkerStats()
    if pipeline_depth not in (1, 2):
        raise InvalidArgument(f"pipeline_depth must be 1 or 2, got {pipeline_depth}")
    if not identity:
        configure_allocator()
    with Worker(model, device=device) as worker:
        info = worker.info
        sizes, max_jobs = plan_batches(batch_sizes, info.nslots)
        log.info(
            "model %r: compiling batch sizes %s (max_jobs %d)", info.name, list(sizes), max_jobs
        )
        plan = None
        if buckets is not None:
            if info.pre_op != "tokenize":
                raise InvalidArgument(
                    f"length buckets need a tokenising model; {info.name!r} is not"
                )
            plan = Buckets.plan(buckets, info.input.shape[-1])
            log.info("model %r: length buckets %s", info.name, list(plan.lengths))
        runner = build_runner(
            info,
            apply,
            params,
            sizes,
            plan,
            identity=identity,
            jax_device=jax_device,
            devices=devices,
        )
        runner.warmup()
        region = worker.attach()
        log.info("worker %d of model %r ready (pid %d)", worker.index, info.name, os.getpid())
        if ready is not None:
            ready()
        try:
            run_loop(
                worker.fast_loop(),
                region,
                runner,
                max_jobs,
                max_wait_us,
                fetch_timeout_ms,
                stop,
                stats,
                pipeline_depth=pipeline_depth,
            )
        except (ModelGone, ModelNotFound) as exc:
            log.info("model %r is gone (%s); worker stops", info.name, exc)
    return stats


def build_runner(
    info: ModelInfo,
    apply: ApplyFn | Any,
    params: Any,
    sizes: Sequence[int],
    plan: Buckets | None = None,
    *,
    identity: bool = False,
    jax_device: str | Any = None,
    devices: str | None = None,
) -> Runner:
    """The runner :func:`serve` uses for a model: a copy for the identity model, else
    ``jit(apply)`` on the chosen device(s), with the mean pool fused in when the model's
    ``worker_post`` gives it to the worker."""
    if identity:
        if plan is not None:
            raise InvalidArgument(f"model {info.name!r}: a copy has no length buckets")
        return CopyRunner(info.worker_input, info.worker_output.size, sizes)
    if info.worker_post and not info.worker_pool:
        raise InvalidArgument(
            f"model {info.name!r}: worker_post {info.worker_post} over {list(info.post)};"
            " this worker runs only a leading mean_pool"
        )
    pool = None
    if info.worker_pool:
        rows, dim = info.output.shape
        pool = Pool(rows, dim, masked=info.pre_op == "tokenize")
    device = resolve_device(jax_device) if isinstance(jax_device, str) else jax_device
    mesh = None
    if devices is not None:
        if devices != "all":
            raise InvalidArgument(f"devices must be 'all', got {devices!r}")
        platform = jax_device.split(":")[0] if isinstance(jax_device, str) else None
        if platform is None and device is not None:
            platform = device.platform
        mesh = local_devices(platform)
        device = None
        log.info("model %r: each batch sharded over %s", info.name, mesh)
    return BatchRunner(
        apply,
        params,
        info.worker_input,
        info.worker_output.size,
        sizes,
        plan,
        pool=pool,
        device=device,
        mesh=mesh,
    )


class JobSource(Protocol):
    """What :func:`run_loop` needs of the loop's state: :class:`~pyflaxdev.wloop.FastLoop`
    over a real fd, or an in-process feeder (the worker-path benchmark)."""

    slots_all: npt.NDArray[np.intp]

    @property
    def held(self) -> int: ...

    @property
    def limit(self) -> int: ...

    @property
    def pending(self) -> int: ...

    def fetch(self, max_jobs: int, max_wait_us: int, timeout_ms: int, *, nowait: bool) -> int: ...

    def complete(self, status: int, n: int) -> None: ...

    def flush(self) -> int: ...

    def copy_inputs_to_outputs(self, n: int) -> None: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class _Flight:
    """A batch in flight: its slots (copied), and its result to come."""

    slots: npt.NDArray[np.intp]
    pending: Pending | None
    status: int = 0


def run_loop(
    loop: JobSource,
    region: Region,
    runner: Runner,
    max_jobs: int,
    max_wait_us: int | None,
    fetch_timeout_ms: int,
    stop: threading.Event | None,
    stats: WorkerStats,
    *,
    pipeline_depth: int = 2,
) -> None:
    """The serving loop over ``loop`` (closed at the end, pending completions flushed).

    Each turn: FETCH (waiting for jobs only when none is held), dispatch a
    batch of the waiting jobs if fewer than ``pipeline_depth`` are in
    flight, and finish the oldest batch in flight (read its result into the
    output slots, queue its completions) when the pipeline is full or
    nothing new was dispatched.
    """
    wait_us = MAX_WAIT_US if max_wait_us is None else max_wait_us
    slots_all = loop.slots_all
    inputs, outputs = region.inputs, region.outputs
    copy = not isinstance(runner, BatchRunner)
    depth = 1 if copy else pipeline_depth
    nslots = len(slots_all)
    flights: collections.deque[_Flight] = collections.deque()
    busy = 0  # jobs in flight: the first ``busy`` held
    clock = time.perf_counter

    def finish() -> None:
        nonlocal busy
        flight = flights.popleft()
        n = len(flight.slots)
        t0 = clock()
        if flight.pending is not None:
            assert isinstance(runner, BatchRunner)
            try:
                runner.finish_into(flight.pending, outputs, flight.slots)
            except Exception:
                log.exception("apply failed on a batch of %d; failing it with EIO", n)
                flight.status = -errno.EIO
        stats.compute_seconds += clock() - t0
        if flight.status:
            stats.failed_jobs += n
        loop.complete(flight.status, n)
        busy -= n
        stats.batches += 1
        stats.jobs += n
        stats.batch_sizes[n] += 1

    try:
        # Jobs kept over from a batch run before anything else, stop or not.
        while flights or loop.held or stop is None or not stop.is_set():
            held = loop.held
            kept = held - busy
            room = min(max_jobs - kept, nslots - held)
            # Holding jobs: take what is queued now, never wait for more.
            got = loop.fetch(room, wait_us, fetch_timeout_ms, nowait=held > 0) if room > 0 else 0
            stats.fetches += 1
            got = max(got, 0)  # -1: a signal, the completions are resent
            waiting = loop.held - busy
            dispatched = False
            if waiting and len(flights) < depth:
                most = min(waiting, loop.limit)
                # Nothing new came to join the kept jobs: run them all, padded.
                n = most if kept and not got else runner.split(most)
                slots = slots_all[busy : busy + n]
                t0 = clock()
                flight = _Flight(slots.copy(), None)
                try:
                    if copy:
                        loop.copy_inputs_to_outputs(n)
                    else:
                        assert isinstance(runner, BatchRunner)
                        flight.pending = runner.start(inputs, slots)
                except Exception:
                    log.exception("apply failed on a batch of %d; failing it with EIO", n)
                    flight.status = -errno.EIO
                stats.compute_seconds += clock() - t0
                flights.append(flight)
                busy += n
                dispatched = True
            if flights and (len(flights) >= depth or not dispatched):
                finish()
    finally:
        try:
            while flights:  # an error on the way: what is in flight still completes
                finish()
            if loop.pending:
                loop.flush()
        except FlaxError as exc:
            log.warning("final COMPLETE failed: %s", exc)
        finally:
            loop.close()


_SYNC_SIGNALS = {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGABRT,
    signal.SIGTRAP,
}


def block_async_signals() -> None:
    """Block asynchronous signals in the calling thread, so that the main thread gets them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals()) - _SYNC_SIGNALS)


@dataclass
class ServeHandle:
    """A worker running in a background thread (see :func:`serving`)."""

    thread: threading.Thread
    stop_event: threading.Event
    stats: WorkerStats
    error: BaseException | None = None

    def stop(self, timeout: float | None = None) -> WorkerStats:
        """Ask the worker to stop, wait for it, re-raise its error if it failed."""
        self.stop_event.set()
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.stats


@contextlib.contextmanager
def serving(
    apply: ApplyFn | Any,
    params: Any,
    *,
    model: str | Model,
    startup_timeout: float | None = 900.0,
    **kwargs: Any,
) -> Iterator[ServeHandle]:
    """Run :func:`serve` in a background thread while the ``with`` block runs.

    Returns once the worker is ready (compiled and attached); raises its error if
    it fails to start.  ``kwargs`` go to :func:`serve` (``device``,
    ``batch_sizes``, ``max_wait_us``, ...).  On exit the worker is stopped and
    joined; an error it raised meanwhile is re-raised.
    """
    ready = threading.Event()
    handle = ServeHandle(threading.Thread(), threading.Event(), WorkerStats())

    def run() -> None:
        block_async_signals()
        try:
            serve(
                apply,
                params,
                model=model,
                stop=handle.stop_event,
                ready=ready.set,
                stats=handle.stats,
                **kwargs,
            )
        except BaseException as exc:
            handle.error = exc
        finally:
            ready.set()

    handle.thread = threading.Thread(target=run, name=f"flaxdev-worker-{model}", daemon=True)
    handle.thread.start()
    if not ready.wait(startup_timeout):
        handle.stop_event.set()
        raise FlaxError(
            f"worker for {model!r} not ready after {startup_timeout} s (ETIMEDOUT)",
            errno.ETIMEDOUT,
        )
    if handle.error is not None:
        handle.thread.join()
        raise handle.error
    try:
        yield handle
    finally:
        handle.stop()
