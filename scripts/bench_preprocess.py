"""Native normalisation throughput against numpy and memcpy, per code path, in one run.

Builds the plain (-O2, no sanitizer) host extension of the shared C
(``bindings/ops_build.py``) and times ``flax_normalize`` on 224x224x3 uint8
images (per-channel mean/std, channel-last, as ImageNet models take them), one
call per FPU section as the kernel makes them (``flax_normalize_chunk()``
elements), on each code path this CPU runs (plain C, SSE2, AVX2; forced with
the host build's ``flax_norm_set_path()``), against numpy's
``(x.astype(float32) * scale - mean) / std`` on the same images and against a
``memcpy`` of the output's size (``np.copyto`` of the float32 output, the
bound a single pass can reach).  Every path is checked bit for bit against
numpy first.  Prints the rates and the ratios.

uint8 input with at most ``FLAX_NORM_LUT_PAIRS`` pairs is what the driver
normalises through a table (``flax_norm_lut_fill()`` once per configuration,
then the integer ``flax_norm_lut_apply()`` per request, in pieces of
``FLAX_NORM_LUT_CHUNK``): timed as the path ``table``, the one the driver takes.

``--all`` adds the other hot cases (float32 input, channels first, one value,
per element, clamped) with their ns per element: the figures behind the FPU
section budget in ``driver/flax_ops.h`` (FLAX_NORM_CHUNK_*).

    .venv/bin/python scripts/bench_preprocess.py [--repeat N] [--images N] [--all]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]

UINT8, FLOAT32, FLOAT16, INT32 = 1, 2, 7, 6
PATHS = {"scalar": 1, "sse2": 2, "avx2": 3}


def load_ops() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ops_build", ROOT / "bindings" / "ops_build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    path = build.build(ROOT / "build" / "bench-ops", sanitize=False)
    loader = importlib.machinery.ExtensionFileLoader(build.module_name(False), str(path))
    mspec = importlib.util.spec_from_loader(loader.name, loader)
    assert mspec is not None
    module = importlib.util.module_from_spec(mspec)
    loader.exec_module(module)
    return module


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class Case:
    """One normalisation: input images, struct flax_norm, numpy reference."""

    def __init__(
        self, ops: ModuleType, name: str, x: npt.NDArray[Any], dtype: int, scale: float,
        mean: npt.NDArray[np.float32], std: npt.NDArray[np.float32], inner: int = 1,
        clamp: tuple[float, float] | None = None,
    ) -> None:  # fmt: skip
        ffi, lib = ops.ffi, ops.lib
        self.ops, self.name, self.x, self.dtype = ops, name, x, dtype
        self.n = int(x[0].size)
        self.mean_c = ffi.new("uint32_t[]", mean.view(np.uint32).tolist())
        self.std_c = ffi.new("uint32_t[]", std.view(np.uint32).tolist())
        self.norm = ffi.new("struct flax_norm *")
        self.norm.count, self.norm.inner = mean.size, inner
        self.norm.scale = int(np.array(scale, np.float32).view(np.uint32))
        self.norm.mean, self.norm.std = self.mean_c, self.std_c
        self.norm.flags = 0
        if clamp is not None:
            self.norm.flags = int(lib.FLAX_NORM_CLAMP)
            self.norm.clamp_lo = int(np.array(clamp[0], np.float32).view(np.uint32))
            self.norm.clamp_hi = int(np.array(clamp[1], np.float32).view(np.uint32))
        self.chunk = int(lib.flax_normalize_chunk(dtype, self.norm))
        self.lut: Any = None
        if dtype == UINT8 and mean.size <= int(lib.FLAX_NORM_LUT_PAIRS):
            self.lut = ffi.new("uint32_t[]", mean.size * int(lib.FLAX_NORM_LUT_VALUES))
            assert lib.flax_norm_lut_fill(self.lut, self.norm) == 0
        self.out = np.empty((x.shape[0], self.n), np.float32)
        m: Any = mean
        s: Any = std
        if inner > 1:  # channels first: (N, C, H, W)
            m, s = mean[:, None, None], std[:, None, None]
        elif mean.size == self.n:
            m, s = mean.reshape(x.shape[1:]), std.reshape(x.shape[1:])
        scale32 = np.float32(scale)

        def numpy_ref() -> Any:
            y = (x.astype(np.float32) * scale32 - m) / s
            return y if clamp is None else np.clip(y, np.float32(clamp[0]), np.float32(clamp[1]))

        self.numpy_ref = numpy_ref

    def native(self) -> None:
        ffi, lib = self.ops.ffi, self.ops.lib
        esize = self.x.itemsize
        for i in range(self.x.shape[0]):
            src = ffi.from_buffer(self.x[i])
            dst = ffi.from_buffer(self.out[i])
            for first in range(0, self.n, self.chunk):
                c = min(self.chunk, self.n - first)
                lib.flax_normalize(
                    dst + 4 * first, src + esize * first, self.dtype, first, c, self.norm
                )

    def table(self) -> None:
        """What the driver does for uint8 with few pairs: the table, in its pieces."""
        ffi, lib = self.ops.ffi, self.ops.lib
        chunk = int(lib.FLAX_NORM_LUT_CHUNK)
        for i in range(self.x.shape[0]):
            src = ffi.from_buffer(self.x[i])
            dst = ffi.from_buffer(self.out[i])
            for first in range(0, self.n, chunk):
                c = min(chunk, self.n - first)
                lib.flax_norm_lut_apply(dst + 4 * first, src + first, first, c, self.lut, self.norm)


def run_case(case: Case, paths: list[str], repeat: int, verbose: bool) -> dict[str, float]:
    """Seconds per image of each path and of numpy; checks every path bit for bit."""
    lib = case.ops.lib
    imgs = case.x.shape[0]
    want = case.numpy_ref().reshape(imgs, case.n)
    times: dict[str, float] = {}
    runs = [(path, case.native) for path in paths]
    if case.lut is not None:
        runs.append(("table", case.table))
    for path, fn in runs:
        if path in PATHS:
            assert lib.flax_norm_set_path(PATHS[path]) == 0
        case.out.fill(np.nan)
        fn()
        got = case.out.view(np.uint32)
        same = (got == want.view(np.uint32)) | (np.isnan(case.out) & np.isnan(want))
        assert same.all(), f"{case.name} {path}: not bit-identical to numpy"
        times[path] = best(fn, repeat) / imgs
    assert lib.flax_norm_set_path(0) == 0
    times["numpy"] = best(case.numpy_ref, repeat) / imgs
    if verbose:
        cells = "  ".join(f"{p} {1e9 * t / case.n:6.2f}" for p, t in times.items())
        print(f"  {case.name:34s} ns/element: {cells}  (chunk {case.chunk})")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--all", action="store_true", help="time the other hot cases too")
    args = parser.parse_args(argv)

    ops = load_ops()
    lib = ops.lib
    paths = [p for p, v in PATHS.items() if lib.flax_norm_set_path(v) == 0]
    assert lib.flax_norm_set_path(0) == 0
    auto = {v: p for p, v in PATHS.items()}[int(lib.flax_norm_get_path())]

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(args.images, 224, 224, 3), dtype=np.uint8)
    scale = 1 / 255
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    main_case = Case(ops, "uint8 224x224x3 per channel", imgs, UINT8, scale, mean, std)
    t = run_case(main_case, paths, args.repeat, verbose=False)
    vector = auto
    auto = "table"  # what the driver takes for this case

    out = np.empty((args.images, main_case.n), np.float32)
    src = np.ones_like(out)
    t_copy = best(lambda: np.copyto(out, src), args.repeat) / args.images

    mb = main_case.n / 1e6  # uint8: one byte per element
    print(
        f"normalise {args.images} x 224x224x3 uint8 (per channel, channels last), "
        f"best of {args.repeat}, {main_case.chunk} elements per call (FPU section):"
    )
    for name, sec in t.items():
        label = "uint8 table" if name == "table" else f"flax_normalize {name}"
        label += " (driver)" if name == auto else " (vector)" if name == vector else ""
        print(
            f"  {label:28s} {mb / sec:8.1f} MB/s in  {1e6 * sec:8.1f} us/img  "
            f"{t['numpy'] / sec:6.2f}x numpy  {sec / t_copy:5.2f}x memcpy"
        )
    label = "memcpy of the output"
    print(f"  {label:28s} {4 * mb / t_copy:8.1f} MB/s    {1e6 * t_copy:8.1f} us/img")
    print(f"  ratio native ({auto})/numpy: {t['numpy'] / t[auto]:.2f}x; "
          f"native/memcpy time: {t[auto] / t_copy:.2f}x; {vector}/numpy:"
          f" {t['numpy'] / t[vector]:.2f}x")  # fmt: skip

    if args.all:
        print("other cases (ns per element, per path and numpy):")
        nimg = max(2, args.images // 4)
        f32 = rng.standard_normal((nimg, 224, 224, 3)).astype(np.float32)
        chw = imgs[:nimg].transpose(0, 3, 1, 2).copy()
        one_m, one_s = np.array([0.5], np.float32), np.array([0.25], np.float32)
        feat_m = rng.standard_normal(224 * 224 * 3).astype(np.float32)
        feat_s = (rng.random(224 * 224 * 3) + 0.5).astype(np.float32)
        f16 = rng.standard_normal((nimg, 224, 224, 3)).astype(np.float16)
        i32 = rng.integers(-(2**31), 2**31, (nimg, 224, 224, 3)).astype(np.int32)
        cases = [
            Case(ops, "uint8 per channel, clamp", imgs[:nimg], UINT8, scale, mean, std,
                 clamp=(-2.0, 2.0)),
            Case(ops, "uint8 channels first", chw, UINT8, scale, mean, std, inner=224 * 224),
            Case(ops, "uint8 one value", imgs[:nimg], UINT8, scale, one_m, one_s),
            Case(ops, "uint8 per element", imgs[:nimg], UINT8, scale, feat_m, feat_s),
            Case(ops, "float32 per channel", f32, FLOAT32, 1.0, mean, std),
            Case(ops, "float32 per channel, clamp", f32, FLOAT32, 1.0, mean, std,
                 clamp=(-1.0, 1.0)),
            Case(ops, "float32 per element", f32, FLOAT32, 1.0, feat_m, feat_s),
            Case(ops, "float16 per channel (plain C)", f16, FLOAT16, 1.0, mean, std),
            Case(ops, "int32 per channel, clamp (plain C)", i32, INT32, 2.0**-24, mean, std,
                 clamp=(-1.0, 1.0)),
        ]  # fmt: skip
        for case in cases:
            run_case(case, paths, max(3, args.repeat // 4), verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
