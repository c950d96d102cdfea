"""A worker's view of a model's slot region (the ``mmap`` of its fd).

The kernel describes the region in ``struct flax_region_layout`` (returned by
``FLAX_IOC_WORKER_ATTACH`` and written at offset 0).  :class:`Region` maps it
and exposes numpy views, without copying:

- ``inputs``: ``[nslots, *input_shape]`` of the worker's input dtype (float32
  after normalisation), slot ``i`` at ``in_offset + i * in_slot_size``;
- ``outputs``: ``[nslots, output_elements]`` float32;
- the worker's ring: ``entries`` (``ring_entries`` ``{slot, tag}``) and its
  ``tail``/``head`` header.

Positions are free-running u32; entry ``p`` lives at ``p & (ring_entries - 1)``.
"""

from __future__ import annotations

import contextlib
import mmap
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.errors import FlaxError
from pyflaxdev.spec import ModelInfo
from pyflaxdev.uapi import cdata_to_dict, ffi, lib, numpy_dtype

__all__ = ["Layout", "Region"]

ENTRY_DTYPE = numpy_dtype("struct flax_ring_entry")
RING_HEADER_DTYPE = numpy_dtype("struct flax_ring")
_ENTRIES_AT: int = ffi.offsetof("struct flax_ring", "entries")


@dataclass(frozen=True)
class Layout:
    """``struct flax_region_layout`` (field names are the struct's)."""

    magic: int
    abi_version: int
    nslots: int
    ring_entries: int
    in_slot_size: int
    out_slot_size: int
    in_bytes: int
    out_bytes: int
    in_offset: int
    out_offset: int
    rings_offset: int
    ring_stride: int
    region_size: int

    @classmethod
    def from_c(cls, layout: Any) -> Layout:
        """Read a ``struct flax_region_layout``."""
        return cls(**cdata_to_dict(layout))

    def check(self, info: ModelInfo, worker: int) -> None:
        """Raise :class:`FlaxError` if the layout is inconsistent with itself or the model."""
        problems: list[str] = []
        item = info.worker_input.dtype.itemsize
        entry = ENTRY_DTYPE.itemsize

        def within(name: str, offset: int, size: int) -> None:
            if offset < 0 or offset + size > self.region_size:
                problems.append(f"{name} [{offset}, {offset + size}) beyond {self.region_size}")

        if self.magic != lib.FLAX_REGION_MAGIC:
            problems.append(f"magic {self.magic:#x}")
        if self.nslots != info.nslots:
            problems.append(f"nslots {self.nslots} (model has {info.nslots})")
        if self.ring_entries < self.nslots or self.ring_entries & (self.ring_entries - 1):
            problems.append(f"ring_entries {self.ring_entries} (nslots {self.nslots})")
        if self.in_bytes != info.worker_input.size * item or self.in_bytes > self.in_slot_size:
            problems.append(f"in_bytes {self.in_bytes} (slot {self.in_slot_size}, {info.input})")
        if self.out_bytes != info.worker_output.size * 4 or self.out_bytes > self.out_slot_size:
            problems.append(f"out_bytes {self.out_bytes} (slot {self.out_slot_size})")
        if worker >= lib.FLAX_MAX_WORKERS:
            problems.append(f"worker index {worker}")
        if self.in_slot_size % item or self.out_slot_size % 4:
            problems.append("slot sizes not multiples of the element size")
        within("input slots", self.in_offset, self.nslots * self.in_slot_size)
        within("output slots", self.out_offset, self.nslots * self.out_slot_size)
        within(
            f"ring {worker}",
            self.rings_offset + worker * self.ring_stride,
            _ENTRIES_AT + self.ring_entries * entry,
        )
        if problems:
            raise FlaxError(f"bad region layout for model {info.name!r}: " + "; ".join(problems))


class Region:
    """The mapped slot region of an attached worker fd, with numpy views."""

    def __init__(self, fd: int, layout: Layout, worker: int, info: ModelInfo) -> None:
        layout.check(info, worker)
        self.layout = layout
        self.worker = worker
        self._mm: mmap.mmap | None = mmap.mmap(
            fd, layout.region_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        mm = self._mm
        header = np.frombuffer(mm, dtype=numpy_dtype("struct flax_region_layout"), count=1)[0]
        mapped = {name: int(header[name]) for name in header.dtype.names or ()}
        expected = {f.name: getattr(layout, f.name) for f in fields(layout)}
        if mapped != expected:
            raise FlaxError(
                f"region header of model {info.name!r} differs from WORKER_ATTACH's layout"
            )
        del header
        win = info.worker_input
        self.inputs: npt.NDArray[Any] = _strided(
            mm, layout.in_offset, layout.nslots, layout.in_slot_size, win.dtype, win.shape
        )
        self.outputs: npt.NDArray[np.float32] = _strided(
            mm,
            layout.out_offset,
            layout.nslots,
            layout.out_slot_size,
            np.dtype(np.float32),
            (info.worker_output.size,),
        )
        ring_at = layout.rings_offset + worker * layout.ring_stride
        self.ring_header: npt.NDArray[Any] = np.frombuffer(
            mm, dtype=RING_HEADER_DTYPE, count=1, offset=ring_at
        )
        self.entries: npt.NDArray[Any] = np.frombuffer(
            mm, dtype=ENTRY_DTYPE, count=layout.ring_entries, offset=ring_at + _ENTRIES_AT
        )
        self._mask = layout.ring_entries - 1

    @property
    def buffer(self) -> mmap.mmap:
        """The mapping itself (for C code that works on the region in place)."""
        if self._mm is None:
            raise FlaxError("the region is unmapped")
        return self._mm

    @property
    def tail(self) -> int:
        """The ring's tail as last published by the kernel."""
        return int(self.ring_header["tail"][0])

    @property
    def head(self) -> int:
        """The ring's head (the worker's consumption mark)."""
        return int(self.ring_header["head"][0])

    def read(self, first: int, count: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint32]]:
        """Slots and tags of the ring entries at positions ``[first, first + count)``.

        Marks them consumed (``head = first + count``).  Slots are checked to be
        in range, so a kernel bug cannot make the worker write outside the region.
        """
        pos = (np.arange(count, dtype=np.uint64) + np.uint64(first)) & np.uint64(self._mask)
        got = self.entries[pos.astype(np.intp)]
        slots = got["slot"].astype(np.intp)
        tags = got["tag"].astype(np.uint32)
        if count and int(slots.max()) >= self.layout.nslots:
            raise FlaxError(f"ring entry names slot {int(slots.max())} >= {self.layout.nslots}")
        self.ring_header["head"] = (first + count) & 0xFFFFFFFF
        return slots, tags

    def close(self) -> None:
        """Drop the views and unmap (if nothing else still references the mapping)."""
        if self._mm is None:
            return
        mm, self._mm = self._mm, None
        del self.inputs, self.outputs, self.ring_header, self.entries
        with contextlib.suppress(BufferError):  # a view is still alive: unmapped with it
            mm.close()


def _strided(
    mm: mmap.mmap,
    offset: int,
    n: int,
    stride: int,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
) -> npt.NDArray[Any]:
    """``[n, *shape]`` view of ``dtype``: element 0 at ``offset``, ``stride`` bytes apart."""
    inner = [dtype.itemsize] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        inner[i] = inner[i + 1] * shape[i + 1]
    return np.ndarray(
        shape=(n, *shape), dtype=dtype, buffer=mm, offset=offset, strides=(stride, *inner)
    )
