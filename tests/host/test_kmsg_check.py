"""kbuild/flax_kmsg.py, the judge of a VM run's kernel log, on synthetic streams.

The streams are written as the reader writes them: /dev/kmsg records
(``PRI,SEQ,USEC,FLAGS;TEXT``) and the reader's ``#`` notes.  The problem lines
are the kernel's own wording (lib/bug.c, kernel/panic.c, mm/kasan, lib/ubsan.c,
kernel/hung_task.c, kernel/watchdog.c, kernel/rcu, mm/usercopy.c).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOP = Path(__file__).resolve().parents[2]
SCRIPT = TOP / "kbuild" / "flax_kmsg.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flax_kmsg", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["flax_kmsg"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


kmsg = _load()

# Lines of clean Debian 6.1 and 6.12 boots under virtme-ng that mention the
# words the patterns look for, or come close.
BOOT = [
    "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)",
    "Spectre V1 : Mitigation: usercopy/swapgs barriers and __user pointer sanitization",
    "Spectre V2 : Mitigation: Retpolines",
    "rcu: Preemptible hierarchical RCU implementation.",
    "rcu: \tRCU restricting CPUs from NR_CPUS=8192 to nr_cpu_ids=2.",
    "rcu: RCU calculated value of scheduler-enlistment delay is 25 jiffies.",
    "RCU Tasks: Setting shift to 1 and lim to 1 rcu_task_cb_adjust=1.",
    "LSM: Security Framework initializing",
    "hardened usercopy is enabled",  # not the report: no "usercopy: "
    "flaxdev: loaded",
]

PROBLEMS = {
    "warn": "WARNING: CPU: 1 PID: 312 at driver/flax_job.c:542 flax_slot_free+0x5c/0x80 [flaxdev]",
    "bug": "BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "kernel bug": "kernel BUG at mm/slub.c:379!",
    "oops": "Oops: 0000 [#1] PREEMPT SMP NOPTI",
    "gpf": "general protection fault, probably for non-canonical address 0xdead000000000100",
    "refcount": "refcount_t: underflow; use-after-free.",
    "list": "list_del corruption, ffff8880049e5a00->next is LIST_POISON1 (dead000000000100)",
    "atomic sleep": "BUG: sleeping function called from invalid context at mm/slab.h:723",
    "kasan": "BUG: KASAN: slab-use-after-free in flax_slot_free+0x5c/0x80 [flaxdev]",
    "kasan bare": "KASAN: null-ptr-deref in range [0x0000000000000008-0x000000000000000f]",
    "ubsan": "UBSAN: array-index-out-of-bounds in driver/flax_post.c:120:9",
    "kmemleak": "kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
    "hung task": "INFO: task python:345 blocked for more than 120 seconds.",
    "hung_task panic": "Kernel panic - not syncing: hung_task: blocked tasks",
    "soft lockup": "watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [python:345]",
    "soft lockup bare": "soft lockup - CPU#1 stuck for 22s!",
    "rcu stall": "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "rcu self stall": "rcu: INFO: rcu_sched self-detected stall on CPU",
    "usercopy": "usercopy: Kernel memory exposure attempt detected from SLUB object "
    "'kmalloc-64' (offset 0, size 80)!",
}


def _record(seq: int, text: str, level: int = 6) -> str:
    """One record as /dev/kmsg gives it (newlines and non-ASCII escaped)."""
    esc = "".join(
        c if " " <= c < "\x7f" and c != "\\" else "".join(f"\\x{b:02x}" for b in c.encode())
        for c in text
    )
    return f"{level},{seq},{1000 * seq + 17},-;{esc}\n"


def _stream(texts: list[str], *, first: int = 0, end: bool = True) -> bytes:
    out = [_record(first + i, t) for i, t in enumerate(texts)]
    if end:
        out.append("# end: saw the end marker\n")
    return "".join(out).encode()


def _problems(data: bytes) -> list[str]:
    result: list[str] = kmsg.problems(kmsg.parse(data.splitlines(keepends=True)))
    return result


def test_clean_boot_passes() -> None:
    assert _problems(_stream(BOOT)) == []


@pytest.mark.parametrize("key", sorted(PROBLEMS))
def test_each_problem_is_caught(key: str) -> None:
    line = PROBLEMS[key]
    found = _problems(_stream([*BOOT, line, "flaxdev: after"]))
    assert len(found) == 1, found
    assert found[0].endswith("] " + line)
    # The timestamp is the record's, as dmesg prints it.
    seq = len(BOOT)
    assert found[0].startswith(f"[{(1000 * seq + 17) / 1e6:12.6f}]")


def test_problem_on_a_continuation_line_is_caught() -> None:
    """A record of several lines (escaped newlines): each line is judged."""
    found = _problems(_stream(["------------[ cut here ]------------\nWARNING: CPU: 0 PID: 1"]))
    assert [f.split("] ", 1)[1] for f in found] == ["WARNING: CPU: 0 PID: 1"]


def test_usercopy_only_at_the_start_of_a_message() -> None:
    assert _problems(_stream(["x86: usercopy: not a report"])) == []
    assert len(_problems(_stream(["usercopy: Kernel memory overwrite attempt"]))) == 1


def test_gap_in_sequence_numbers_fails() -> None:
    data = _stream(BOOT[:3]) + _stream(BOOT[3:], first=7)
    found = _problems(data)
    assert found == [
        "gap in the kernel log: records 3 to 6 were lost (overwritten before the reader read them)"
    ]


def test_records_lost_before_the_reader_started_fail() -> None:
    found = _problems(_stream(BOOT, first=40))
    assert len(found) == 1 and "records 0 to 39 were lost" in found[0]


def test_epipe_note_fails_even_without_a_gap() -> None:
    data = (
        _stream(BOOT[:2], end=False)
        + b"# EPIPE: records overwritten\n"
        + _stream(BOOT[2:], first=2)
    )
    assert _problems(data) == ["the reader lost records 1 times (EPIPE from /dev/kmsg)"]


def test_stream_without_end_marker_fails() -> None:
    found = _problems(_stream(BOOT, end=False))
    assert len(found) == 1 and "stops before the end of the run" in found[0]


def test_empty_stream_fails() -> None:
    assert "the kernel log stream is empty" in _problems(b"")


def test_dictionary_lines_are_skipped() -> None:
    data = (_record(0, "usb 1-1: new device") + " SUBSYSTEM=usb\n DEVICE=c189:1\n").encode()
    data += _stream(["ok"], first=1)
    assert _problems(data) == []


def test_checker_command_line(tmp_path: Path) -> None:
    log = tmp_path / "kmsg.txt"
    log.write_bytes(_stream([*BOOT, PROBLEMS["warn"]]))
    text = tmp_path / "kernel-log.txt"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "check", str(log), "--text", str(text)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert PROBLEMS["warn"] in proc.stdout
    lines = text.read_text().splitlines()
    assert len(lines) == len(BOOT) + 1
    assert lines[1] == f"[{0.001017:12.6f}] {BOOT[1]}"

    log.write_bytes(_stream(BOOT))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "check", str(log)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, "")


def test_missing_stream_fails(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "check", str(tmp_path / "none.txt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "missing" in proc.stdout
