"""Defects a kernel reviewer found (issue 18), each shown fixed with the real module.

Others live beside the code they concern: the C selftest (worker status, zeroed
output slots, FETCH and EINTR, WORKER_ATTACH's copy-out, SUBMIT/REAP entry sizes,
unreaped results and max_pending, labels and unload) and tests/vm/test_kapi.py
(the sample's lock, the kernel caller's result size, the timeout bound).
"""

from __future__ import annotations

import errno
import stat

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import sysfs

# "%.9g" of a mean takes 15 characters: a page holds about 256 of them.
STD0 = 1.23456791e-05


@pytest.mark.parametrize("n", [200, 257, 4096])
def test_long_normalisation_arrays_read_whole_or_efbig(dev: pyflaxdev.Device, n: int) -> None:
    """Every sysfs file reads without a WARN; a norm array is whole or EFBIG, never cut.

    Before the fix, 257 pairs walked sysfs_emit_at() past the page (a WARN in the
    kernel log, which fails the VM run) and 4096 were cut silently.
    """
    rng = np.random.default_rng(n)
    pool = (-rng.uniform(1.1e-5, 9.9e-5, 2 * n)).astype(np.float32)
    mean = np.array([v for v in pool if len(f"{float(v):.9g}") == 15][:n], np.float32)
    std = np.full(n, STD0, np.float32)
    # the text the module prints: "%.9g" of each, blank-separated, a newline
    mean_text = " ".join(f"{float(v):.9g}" for v in mean) + "\n"
    assert (len(mean_text) < 4096) == (n == 200)
    name = f"norm{n}"
    dev.create_model(
        name, (n,), np.float32, (4,), normalize=(1.0, mean.tolist(), std.tolist()), post=()
    )
    try:
        d = sysfs.sysfs_root() / "models" / name
        for f in sorted(d.iterdir()):
            if not f.is_file() or not f.stat().st_mode & stat.S_IRUSR:
                continue
            try:
                text = f.read_text()
            except OSError as exc:
                failed = (f.name, exc.errno)
                # a long array is EFBIG
                ok = {
                    ("norm_mean", errno.EFBIG),
                    ("norm_std", errno.EFBIG),
                }
                if failed not in ok:
                    raise
                continue
            if f.name in ("norm_mean", "norm_std"):
                want = mean if f.name == "norm_mean" else std
                got = np.array([float(v) for v in text.split()], np.float32)
                assert got.tolist() == want.tolist(), f.name
        if n == 200:
            assert (d / "norm_mean").read_text() == mean_text
        else:
            with pytest.raises(OSError, match="too large") as info:
                (d / "norm_mean").read_text()
            assert info.value.errno == errno.EFBIG
    finally:
        dev.destroy_model(name)
