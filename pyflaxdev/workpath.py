"""The worker's data path without the kernel: a benchmark of the worker, and its parts.

The module cannot load on every machine that has an accelerator, so the worker
side of the device is measured on its own here: a region laid out exactly as
the module lays one out (:func:`kernel_layout`, as ``flax_model_layout()``),
in a ``memfd`` mapped through the real :class:`~pyflaxdev.region.Region`; the
real serving loop (:func:`pyflaxdev.worker.run_loop`), runner, gather from the
input slots, host-to-device and device-to-host copies and scatter to the
output slots; fed in process by :class:`Feeder`, which stands in for the
FETCH ioctl and the ring: every free slot is a job (the input slots hold real
inputs), so the worker is never starved.  What it leaves out is the kernel
itself (the FETCH/COMPLETE system calls, the ring reads in C, the clients):
those are measured by ``flaxdev bench`` against the real module.

:func:`bench_worker_path` reports the worker's throughput next to in-process
``jit(apply)`` at the same batch size (numpy in, numpy out, the same fused
mean pool when the worker pools), and their ratio.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.errors import InvalidArgument
from pyflaxdev.region import Layout, Region
from pyflaxdev.runner import BatchRunner, as_apply_fn
from pyflaxdev.spec import ModelDesc, ModelInfo
from pyflaxdev.uapi import ffi, lib

if TYPE_CHECKING:
    from pyflaxdev.models import ModelSpec

__all__ = [
    "Feeder",
    "WorkerPathResult",
    "bench_worker_path",
    "format_result",
    "kernel_layout",
    "model_info",
    "region_in_memory",
]

#: FLAX_REGION_ALIGN of the module (driver/flax_drv.h): slots and rings start on it.
REGION_ALIGN = 64


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def kernel_layout(nslots: int, in_bytes: int, out_bytes: int) -> Layout:
    """The ``struct flax_region_layout`` the module computes (``flax_model_layout()``)."""
    ring_entries = 1 << max(nslots - 1, 0).bit_length()
    ring_bytes = ffi.sizeof("struct flax_ring") + ring_entries * ffi.sizeof(
        "struct flax_ring_entry"
    )
    rings_offset = _align(ffi.sizeof("struct flax_region_layout"), REGION_ALIGN)
    ring_stride = _align(ring_bytes, REGION_ALIGN)
    in_slot_size = _align(in_bytes, REGION_ALIGN)
    out_slot_size = _align(out_bytes, REGION_ALIGN)
    in_offset = rings_offset + lib.FLAX_MAX_WORKERS * ring_stride
    out_offset = in_offset + nslots * in_slot_size
    return Layout(
        magic=lib.FLAX_REGION_MAGIC,
        abi_version=lib.FLAX_ABI_VERSION,
        nslots=nslots,
        ring_entries=ring_entries,
        in_slot_size=in_slot_size,
        out_slot_size=out_slot_size,
        in_bytes=in_bytes,
        out_bytes=out_bytes,
        in_offset=in_offset,
        out_offset=out_offset,
        rings_offset=rings_offset,
        ring_stride=ring_stride,
        region_size=_align(out_offset + nslots * out_slot_size, mmap.PAGESIZE),
    )


def model_info(desc: ModelDesc, *, model_id: int = 1) -> ModelInfo:
    """What ``FLAX_IOC_MODEL_GET`` would report for ``desc`` (validated; ``nslots`` 0: 64)."""
    desc.validate()
    cdesc, keep = desc.to_desc()
    cdesc.id = model_id
    cdesc.nslots = cdesc.nslots or 64
    cdesc.max_batch = cdesc.max_batch or cdesc.nslots
    del keep
    return ModelInfo.from_desc(cdesc)


@contextlib.contextmanager
def region_in_memory(info: ModelInfo) -> Iterator[Region]:
    """A :class:`Region` of ``info`` laid out as the module would, in a ``memfd``."""
    win = info.worker_input
    layout = kernel_layout(info.nslots, win.nbytes, info.worker_output.size * 4)
    header = ffi.new("struct flax_region_layout *")
    for name, value in vars(layout).items():
        setattr(header, name, value)
    fd = os.memfd_create("flaxdev-worker-path", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, layout.region_size)
        os.pwrite(fd, bytes(ffi.buffer(header)), 0)
        region = Region(fd, layout, 0, info)
    finally:
        os.close(fd)  # the mapping keeps the memory
    try:
        yield region
    finally:
        region.close()


class Feeder:
    """The FETCH side of a worker's loop, in process (:class:`~pyflaxdev.worker.JobSource`).

    Every free slot is a queued job: a FETCH takes as many as it may, a
    completion frees the slot again (at the back of the queue, so batches
    gather from scattered slots as under real load).  After ``jobs`` jobs
    handed out, ``stop`` is set and FETCH gives nothing.  ``check``, if
    given, is called with the slots of each completed group and its status,
    in completion order.
    """

    def __init__(
        self,
        region: Region,
        jobs: int,
        stop: threading.Event,
        *,
        limit: int | None = None,
        check: Any = None,
        record: bool = False,
    ) -> None:
        n = region.layout.nslots
        self.slots_all: npt.NDArray[np.intp] = np.zeros(n, dtype=np.intp)
        # The free slots, a FIFO in a ring: [head, head + nfree) mod n.
        self._ring = np.arange(n, dtype=np.intp)
        self._head = 0
        self._nfree = n
        self._left = jobs
        self._stop = stop
        self._held = 0
        self._pending = 0
        self._limit = limit or n
        self._check = check
        self._region = region
        self._record = record
        #: With ``record``: slots in the order they were handed out, and completed.
        self.fetched: list[npt.NDArray[np.intp]] = []
        self.completed: list[npt.NDArray[np.intp]] = []

    @property
    def held(self) -> int:
        """Jobs handed out and not completed."""
        return self._held

    @property
    def limit(self) -> int:
        """The model's ``max_batch``."""
        return self._limit

    @property
    def pending(self) -> int:
        """Completions not yet sent."""
        return self._pending

    def fetch(self, max_jobs: int, max_wait_us: int, timeout_ms: int, *, nowait: bool) -> int:
        """Send the completions, hand out up to ``max_jobs`` more (never waits)."""
        size = len(self.slots_all)
        if max_jobs > size - self._held:
            raise InvalidArgument("FETCH of more jobs than free slots (EINVAL)")
        self._pending = 0
        n = min(max_jobs, self._nfree, self._left)
        if n:
            got = self.slots_all[self._held : self._held + n]
            got[:] = np.take(self._ring, np.arange(self._head, self._head + n), mode="wrap")
            if self._record:
                self.fetched.append(got.copy())
            self._head = (self._head + n) % size
            self._nfree -= n
            self._held += n
            self._left -= n
        if not self._left:
            self._stop.set()
        return n

    def complete(self, status: int, n: int) -> None:
        """Complete the first ``n`` held jobs; the rest move to the front."""
        n = min(n, self._held)
        done = self.slots_all[:n]
        if self._check is not None:
            self._check(done.copy(), status)
        if self._record:
            self.completed.append(done.copy())
        tail = self._head + self._nfree
        np.put(self._ring, np.arange(tail, tail + n), done, mode="wrap")
        self._nfree += n
        rest = self._held - n
        self.slots_all[:rest] = self.slots_all[n : self._held].copy()
        self._held = rest
        self._pending += n

    def flush(self) -> int:
        """Send the pending completions."""
        n, self._pending = self._pending, 0
        return n

    def copy_inputs_to_outputs(self, n: int) -> None:
        """The identity model's copy, as ``flax_wloop_copy``."""
        slots = self.slots_all[:n]
        r = self._region
        r.outputs[slots] = r.inputs[slots].reshape(n, -1).view(np.float32)

    def close(self) -> None:
        """Nothing to free."""


@dataclass(frozen=True)
class WorkerPathResult:
    """One measurement: the worker path and in-process ``jit(apply)`` at one batch size."""

    model: str
    batch: int
    shape: str
    pooled: bool
    depth: int
    worker_items_s: float
    inprocess_items_s: float
    batches: int
    rounds: int
    device: str

    @property
    def ratio(self) -> float:
        """Worker throughput over in-process throughput."""
        return self.worker_items_s / self.inprocess_items_s


def _fill_inputs(spec: ModelSpec, region: Region) -> npt.NDArray[Any]:
    """Real inputs (the spec's held-out set, repeated) in every input slot."""
    x, _ = spec.heldout()
    batch = spec.preprocess(list(x) if spec.tokenize else x)
    n = region.layout.nslots
    reps = np.resize(np.arange(len(batch)), n)
    region.inputs[:] = batch[reps]
    out: npt.NDArray[Any] = batch[reps]
    return out


def bench_worker_path(
    spec: ModelSpec,
    batch: int,
    *,
    seconds: float = 2.0,
    min_batches: int = 3,
    worker_post: int | None = None,
    depth: int = 2,
    jax_device: str | None = None,
    rounds: int = 3,
    devices: str | None = None,
) -> WorkerPathResult:
    """Measure the worker path and in-process ``jit(apply)`` for ``spec`` at ``batch``.

    Both sides run the same number of batches: at least ``min_batches`` and
    enough for ``seconds`` seconds of the worker (after compiling and one
    warm-up batch each), in ``rounds`` alternating rounds; each side's best
    round counts.  ``worker_post`` (default: 1 for a chain starting
    with ``mean_pool``) pools on the device, in the worker and in-process
    alike.  ``depth`` is the worker's pipeline depth; ``devices="all"`` shards
    the worker's batches over every local device (in-process stays on one).
    """
    import jax

    from pyflaxdev.accel import resolve_device
    from pyflaxdev.runner import Pool, _pooled
    from pyflaxdev.worker import WorkerStats, build_runner, run_loop

    if worker_post is None:
        worker_post = 1 if spec.post[:1] == ("mean_pool",) else 0
    desc = ModelDesc(
        name=spec.name,
        input=spec.input,
        output=spec.output,
        normalize=spec.normalize,
        post=spec.post,
        topk=spec.topk,
        nslots=2 * batch,  # room to fetch the next batch while one computes
        max_batch=batch,
        tokenize=spec.tokenize,
        text_max=spec.text_max,
        worker_post=worker_post,
    )
    info = model_info(desc)
    device = resolve_device(jax_device) if jax_device else None
    runner = build_runner(
        info, spec.module, spec.params, (batch,), jax_device=device, devices=devices
    )
    assert isinstance(runner, BatchRunner)
    runner.warmup(timing_calls=0)

    # In process: jit(apply) (with the same fused pool), numpy in, numpy out.
    fn = as_apply_fn(spec.module)
    if runner.pool is not None:
        fn = _pooled(fn, Pool(runner.pool.rows, runner.pool.dim, runner.pool.masked))
    jitted = jax.jit(fn)
    params = jax.device_put(spec.params, device)

    with region_in_memory(info) as region:
        xs = _fill_inputs(spec, region)
        x = np.ascontiguousarray(xs[:batch])

        def worker_side(nb: int) -> float:
            stop = threading.Event()
            stats = WorkerStats()
            feeder = Feeder(region, nb * batch, stop)
            t0 = time.perf_counter()
            run_loop(feeder, region, runner, batch, None, 0, stop, stats, pipeline_depth=depth)
            seconds = time.perf_counter() - t0
            if stats.failed_jobs or stats.jobs != nb * batch:
                raise InvalidArgument(f"{stats.failed_jobs} jobs failed in the worker path")
            return seconds

        def inprocess_side(nb: int) -> float:
            t0 = time.perf_counter()
            for _ in range(nb):
                np.asarray(jitted(params, x))
            return time.perf_counter() - t0

        # Warm both (compilation, first touch of the region's pages and buffers).
        worker_side(1)
        inprocess_side(1)
        nb = max(min_batches, 1)
        while True:  # enough batches for ``seconds`` of the worker
            worker_s = worker_side(nb)
            if worker_s >= seconds or nb >= 100_000:
                break
            nb = max(nb + 1, math.ceil(nb * seconds / max(worker_s, 1e-6) * 1.1))
        # Alternate the sides, best of ``rounds`` each: a shared machine's noise
        # (other processes) hits them alike and the best round is the least disturbed.
        best_worker, best_inproc = worker_s, inprocess_side(nb)
        for _ in range(rounds - 1):
            best_worker = min(best_worker, worker_side(nb))
            best_inproc = min(best_inproc, inprocess_side(nb))
    where = str(device if device is not None else jax.devices()[0])
    if len(runner.devices) > 1:
        where = f"worker sharded over {len(runner.devices)} devices"
    return WorkerPathResult(
        model=spec.name,
        batch=batch,
        shape=f"{spec.input} -> {info.worker_output}",
        pooled=runner.pool is not None,
        depth=depth,
        worker_items_s=nb * batch / best_worker,
        inprocess_items_s=nb * batch / best_inproc,
        batches=nb,
        rounds=rounds,
        device=where,
    )


def format_result(r: WorkerPathResult) -> str:
    """One line of the report."""
    return (
        f"{r.model:8} b {r.batch:5}  {r.shape:40}  pooled {'yes' if r.pooled else 'no ':3}"
        f"  depth {r.depth}  worker {r.worker_items_s:11,.1f}/s  in-process"
        f" {r.inprocess_items_s:11,.1f}/s  ratio {r.ratio:5.2f}  (best of {r.rounds} rounds of"
        f" {r.batches} batches, {r.device})"
    )
