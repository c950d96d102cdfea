"""Native normalisation throughput against numpy, as a ratio in one run.

Builds the plain (-O2, no sanitizer) host extension of the shared C
(``bindings/ops_build.py``) and times ``flax_normalize`` on 224x224x3 uint8
images (per-channel mean/std, channel-last, as ImageNet models take them), one
call per FLAX_FPU_CHUNK elements as the kernel makes them, against numpy's
``(x.astype(float32) * scale - mean) / std`` on the same images, and checks the
two agree bit for bit.  Prints both rates and their ratio.

    .venv/bin/python scripts/bench_preprocess.py [--repeat N]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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


def best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args(argv)

    ops = load_ops()
    ffi, lib = ops.ffi, ops.lib
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(args.images, 224, 224, 3), dtype=np.uint8)
    scale = np.float32(1 / 255)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    n = 224 * 224 * 3
    chunk = int(lib.FLAX_FPU_CHUNK)

    mean_c = ffi.new("uint32_t[]", mean.view(np.uint32).tolist())
    std_c = ffi.new("uint32_t[]", std.view(np.uint32).tolist())
    norm = ffi.new("struct flax_norm *")
    norm.count, norm.inner, norm.flags = 3, 1, 0
    norm.scale = int(np.array(scale).view(np.uint32))
    norm.mean, norm.std = mean_c, std_c
    out = np.empty((args.images, n), np.float32)

    def native() -> None:
        for i in range(args.images):
            src = ffi.from_buffer(imgs[i])
            dst = ffi.from_buffer(out[i])
            for first in range(0, n, chunk):
                c = min(chunk, n - first)
                lib.flax_normalize(
                    dst + 4 * first, src + first, lib.FLAX_DTYPE_UINT8, first, c, norm
                )

    def numpy_ref() -> Any:
        return (imgs.astype(np.float32) * scale - mean) / std

    native()
    want = numpy_ref().reshape(args.images, n)
    assert np.array_equal(out.view(np.uint32), want.view(np.uint32)), "not bit-identical"
    t_native = best(native, args.repeat)
    t_numpy = best(numpy_ref, args.repeat)
    mb = imgs.nbytes / 1e6
    print(f"normalise {args.images} x 224x224x3 uint8 (per channel), best of {args.repeat}:")
    print(f"  flax_normalize: {mb / t_native:8.1f} MB/s in  ({args.images / t_native:7.1f} img/s)")
    print(f"  numpy:          {mb / t_numpy:8.1f} MB/s in  ({args.images / t_numpy:7.1f} img/s)")
    print(f"  ratio native/numpy: {t_numpy / t_native:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
