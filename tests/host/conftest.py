"""Host test setup for ``driver/flax_ops.c``: its extension, built on first use, sanitized.

Run (from the repository root)::

    .venv/bin/python -m pytest tests/host                       # ASan + UBSan build
    FLAX_OPS_SANITIZE=0 .venv/bin/python -m pytest tests/host   # plain -O2 build
    FLAX_EXHAUSTIVE=1 .venv/bin/python -m pytest tests/host/test_ops.py -k exhaustive

``FLAX_EXHAUSTIVE=1`` adds the checks of flax_expf_bits() over all 2^32 inputs:
the C harness (tests/host/c/expf_exhaustive.c, under a minute on two cores) and
the comparison with numpy (about 6 minutes, 20 in the sanitized build).

How the sanitized run works.  ``bindings/ops_build.py`` compiles
``driver/flax_ops.c`` (the kernel's own file) into a cffi extension; with
``FLAX_OPS_SANITIZE`` unset or ``1`` it is instrumented with ASan and UBSan, and
any error aborts the run.  An ASan-instrumented extension loads only into a
process whose first library is the ASan runtime, so when libasan is not yet
mapped, ``pytest_configure`` below re-executes the same command line
(``sys.orig_argv``, plus ``--capture=sys`` unless a capture mode was given:
with pytest's default fd-level capture a sanitizer report, written to file
descriptor 2 just before the process aborts, would be lost) with::

    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)"
    ASAN_OPTIONS=detect_leaks=0    (CPython's own allocations look like leaks)
    UBSAN_OPTIONS=print_stacktrace=1
    PYTHONMALLOC=malloc            (so ASan also sees buffers made by CPython)

libstdc++ is preloaded too because jaxlib throws C++ exceptions at import and
ASan's ``__cxa_throw`` interceptor needs the real one at start-up.  Running the
command under those variables yourself skips the re-execution.  In the
re-executed process ``LD_PRELOAD`` is put back as it was, so that subprocesses
(compilers, VM runners) do not inherit the preload.  When pytest was started
in-process (``pytest.main()``) and cannot be re-executed, the plain build is
used, the report header says so and ``test_module_variant`` fails.

Build directory: ``$FLAX_OPS_BUILD_DIR`` if set, else ``build/host-ops`` (ignored
by git); each variant goes to a subdirectory named after a hash of every input
file and flag, so an edit of ``flax_ops.c`` triggers a rebuild and nothing else
does (the stale builds are then removed).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "bindings" / "ops_build.py"
HARNESS_SOURCE = Path(__file__).resolve().parent / "c" / "expf_exhaustive.c"

_REEXEC_MARK = "FLAX_OPS_REEXEC"
_ORIG_PRELOAD = "FLAX_OPS_ORIG_LD_PRELOAD"

#: Lines the tests want printed in the terminal summary (statistics).
REPORT: list[str] = []


def sanitize_requested() -> bool:
    return os.environ.get("FLAX_OPS_SANITIZE", "1") != "0"


def asan_loaded() -> bool:
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "libasan" in maps


def _gcc_file(name: str) -> str:
    out = subprocess.run(
        ["gcc", f"-print-file-name={name}"], check=True, capture_output=True, text=True
    ).stdout.strip()
    if not Path(out).is_absolute():
        raise RuntimeError(f"gcc does not know {name}")
    return out


def _can_reexec() -> bool:
    """True if this process is a pytest command line that can simply be run again."""
    argv0 = Path(sys.argv[0]).resolve()
    return bool(getattr(sys, "orig_argv", None)) and (
        argv0.name in ("pytest", "py.test") or argv0.parent.name == "pytest"
    )


_reexec_failure = ""


def _reexec_with_asan(config: pytest.Config) -> None:
    global _reexec_failure
    if os.environ.get(_REEXEC_MARK):
        raise pytest.UsageError(
            "tests/host/conftest.py: re-executed with LD_PRELOAD, but libasan is still "
            "not loaded; run with FLAX_OPS_SANITIZE=0 for the plain build"
        )
    if not _can_reexec():
        _reexec_failure = "pytest runs in-process, cannot re-execute with LD_PRELOAD"
        return
    env = dict(os.environ)
    orig_preload = env.get("LD_PRELOAD", "")
    preload = [_gcc_file("libasan.so"), _gcc_file("libstdc++.so.6")]
    env["LD_PRELOAD"] = " ".join([*preload, orig_preload]).strip()
    env[_ORIG_PRELOAD] = orig_preload
    env[_REEXEC_MARK] = "1"
    asan_options = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = ":".join(filter(None, [asan_options, "detect_leaks=0"]))
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    env.setdefault("PYTHONMALLOC", "malloc")
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:  # give the new process the real stdout and stderr
        capman.suspend_global_capture(in_=True)
    sys.stdout.flush()
    sys.stderr.flush()
    args = sys.orig_argv[1:]
    if not any(a == "-s" or a.startswith("--capture") for a in args):
        args.append("--capture=sys")  # keep fd 2 real: sanitizer reports go there
    os.execve(sys.executable, [sys.executable, *args], env)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the ``exhaustive`` tests unless ``FLAX_EXHAUSTIVE=1``."""
    if os.environ.get("FLAX_EXHAUSTIVE", "0") == "1":
        return
    keep = [item for item in items if item.get_closest_marker("exhaustive") is None]
    dropped = [item for item in items if item.get_closest_marker("exhaustive") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "exhaustive: runs over all 2^32 inputs; only with FLAX_EXHAUSTIVE=1"
    )
    if not sanitize_requested():
        return
    if asan_loaded():
        if _ORIG_PRELOAD in os.environ:  # our re-execution: children get the old value
            os.environ.pop(_REEXEC_MARK, None)
            orig = os.environ.pop(_ORIG_PRELOAD)
            if orig:
                os.environ["LD_PRELOAD"] = orig
            else:
                os.environ.pop("LD_PRELOAD", None)
        return
    _reexec_with_asan(config)


def _variant_sanitized() -> bool:
    return sanitize_requested() and asan_loaded()


def pytest_report_header(config: pytest.Config) -> list[str]:
    if _variant_sanitized():
        what = "sanitized build (ASan + UBSan, -O2)"
        if config.getoption("capture") == "fd":
            what += "; WARNING: --capture=fd hides sanitizer reports, use --capture=sys"
    elif sanitize_requested():
        what = f"PLAIN build, NOT sanitized ({_reexec_failure or 'libasan not loaded'})"
    else:
        what = "plain build (-O2), FLAX_OPS_SANITIZE=0"
    return [f"flax_ops: {what}"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("flax_ops statistics")
        for line in REPORT:
            terminalreporter.write_line(line)


def build_root() -> Path:
    env = os.environ.get("FLAX_OPS_BUILD_DIR")
    return Path(env) if env else ROOT / "build" / "host-ops"


def _load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flax_ops_build", BUILD_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prune(keep: Path) -> None:
    """Remove the other builds of the same variant (best effort: they are stale)."""
    prefix = keep.name.rsplit("-", 1)[0] + "-"
    for old in keep.parent.glob(prefix + "*"):
        if old != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def _digest(paths: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Ops:
    """The loaded extension: ``ffi`` and ``lib`` as cffi gives them."""

    ffi: Any
    lib: Any
    path: Path
    sanitized: bool


@pytest.fixture(scope="session")
def ops() -> Ops:
    build = _load_build_script()
    sanitized = _variant_sanitized()
    name = build.module_name(sanitized)
    tag = _digest(list(build.INPUTS), f"{name} {sys.version} {sysconfig.get_platform()}")
    out_dir = build_root() / f"{name}-{tag}"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    path = out_dir / f"{name}{suffix}"
    if not path.exists():
        path = build.build(out_dir, sanitize=sanitized)
    _prune(out_dir)
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return Ops(ffi=module.ffi, lib=module.lib, path=path, sanitized=sanitized)


@pytest.fixture(scope="session")
def ops_report() -> list[str]:
    """Lines for the "flax_ops statistics" section of the terminal summary."""
    return REPORT


@pytest.fixture(scope="session")
def expf_harness() -> Path:
    """tests/host/c/expf_exhaustive.c, built (with UBSan) against driver/flax_ops.c."""
    build = _load_build_script()
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("gcc not found")
    flags = [
        "-O2", "-pthread", "-DFLAX_USERSPACE", "-ffp-contract=off", "-fno-strict-aliasing",
        "-fsanitize=undefined,float-cast-overflow", "-fno-sanitize-recover=all",
        "-Wall", "-Wextra", "-Werror",
    ]  # fmt: skip
    inputs = [HARNESS_SOURCE, *build.INPUTS]
    out_dir = build_root() / f"expf_exhaustive-{_digest(inputs, ' '.join(flags))}"
    exe = out_dir / "expf_exhaustive"
    if not exe.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        staged = out_dir / f".expf_exhaustive.{os.getpid()}"
        subprocess.run(
            [cc, *flags, f"-I{ROOT / 'driver'}", str(HARNESS_SOURCE),
             str(ROOT / "driver" / "flax_ops.c"), "-lm", "-o", str(staged)],
            check=True,
        )  # fmt: skip
        staged.replace(exe)
    _prune(out_dir)
    return exe
