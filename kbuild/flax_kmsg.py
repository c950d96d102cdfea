#!/usr/bin/env python3
"""Stream the kernel log of a VM run and judge it (kbuild/vm-run, kbuild/vm-guest.sh).

``flax_kmsg.py read OUT TOKEN [--ready FILE]``, in the VM: copies every record of ``/dev/kmsg``
to ``OUT`` as the kernel gives it (``PRI,SEQ,USEC,FLAGS;TEXT``, dictionary lines
after it start with a space), from the oldest record still in the ring buffer,
until a record whose text is ``TOKEN`` (vm-guest.sh writes it to ``/dev/kmsg``
once the run is over).  Records overwritten before it read them make the read
fail with EPIPE; it notes that (``# EPIPE``) and goes on.  Its own notes start
with ``#``; ``# end`` says it saw the token.  ``FILE`` appears once it has
caught up with the records there were when it started.

``flax_kmsg.py check LOG [--text FILE]``, on the host: prints the kernel log's
problems, one a line, and exits 1 if there is any: a line that matches
:data:`PROBLEMS`, a gap in the sequence numbers (records lost: the ring
buffer wrapped before the reader read them), or a stream without ``# end``
(the reader stopped early).  ``--text`` writes the log as ``dmesg`` prints it.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import select
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

# What a clean run never logs.  Matched against each line of each record's
# text (after unescaping), case-sensitively.  Not matched: the boot line
# "Spectre V1 : Mitigation: usercopy/swapgs barriers ..." (the usercopy
# report's lines start with "usercopy: ").
PROBLEMS = re.compile(
    r"BUG|WARNING|Oops|general protection|refcount_t|list_del corruption"
    r"|sleeping function called from invalid context|\bKASAN\b|\bUBSAN\b|suspected memory leak"
    r"|hung_task|blocked for more than|soft lockup|rcu.*stall|^usercopy: "
)

END_NOTE = "# end"
EPIPE_NOTE = "# EPIPE"
_RECORD = re.compile(rb"^(\d+),(\d+),(\d+),([^;,]*)[^;]*;(.*)$")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


@dataclass
class Record:
    """One /dev/kmsg record."""

    seq: int
    usec: int
    level: int
    text: str


@dataclass
class Stream:
    """A parsed stream: its records, the reader's notes and unparsable lines."""

    records: list[Record] = field(default_factory=list)
    epipes: int = 0
    ended: bool = False
    garbage: list[str] = field(default_factory=list)


def unescape(text: str) -> str:
    """Undo /dev/kmsg's ``\\xNN`` escapes (newlines, control and non-ASCII bytes)."""
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def parse(lines: Iterable[bytes]) -> Stream:
    """Parse what :func:`read` wrote."""
    stream = Stream()
    for line in lines:
        line = line.rstrip(b"\n")
        if not line or line.startswith(b" "):
            continue  # dictionary (SUBSYSTEM=, DEVICE=) of the record before
        if line.startswith(b"#"):
            note = line.decode("ascii", "replace")
            if note.startswith(EPIPE_NOTE):
                stream.epipes += 1
            elif note.startswith(END_NOTE):
                stream.ended = True
            continue
        m = _RECORD.match(line)
        if not m:
            stream.garbage.append(line.decode("utf-8", "replace"))
            continue
        text = unescape(m.group(5).decode("latin-1"))
        stream.records.append(Record(int(m.group(2)), int(m.group(3)), int(m.group(1)) & 7, text))
    return stream


def problems(stream: Stream) -> list[str]:
    """Everything wrong with a run's kernel log, one message each."""
    found: list[str] = []
    expect = 0
    for rec in stream.records:
        if rec.seq != expect:
            if rec.seq > expect:
                found.append(
                    f"gap in the kernel log: records {expect} to {rec.seq - 1} were lost "
                    "(overwritten before the reader read them)"
                )
            else:
                found.append(f"kernel log out of order: record {rec.seq} after {expect - 1}")
        expect = rec.seq + 1
        for line in rec.text.splitlines():
            if PROBLEMS.search(line):
                found.append(f"[{rec.usec / 1e6:12.6f}] {line}")
    if stream.epipes:
        found.append(f"the reader lost records {stream.epipes} times (EPIPE from /dev/kmsg)")
    if not stream.records:
        found.append("the kernel log stream is empty")
    if not stream.ended:
        found.append(
            "the kernel log stream stops before the end of the run "
            "(the reader never saw vm-guest.sh's end marker)"
        )
    for line in stream.garbage[:5]:
        found.append(f"not a /dev/kmsg record: {line!r}")
    return found


def as_text(stream: Stream) -> str:
    """The log as ``dmesg`` prints it."""
    out = []
    for rec in stream.records:
        for line in rec.text.splitlines() or [""]:
            out.append(f"[{rec.usec / 1e6:12.6f}] {line}\n")
    return "".join(out)


_stop = False


def _on_term(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True


def read(path: str, token: str, ready: str | None = None) -> int:
    """Copy /dev/kmsg to ``path`` until a record reads ``token`` (or SIGTERM).

    Creates ``ready`` once it has read every record there was at the start.
    """
    signal.signal(signal.SIGTERM, _on_term)
    want = token.encode()
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    with Path(path).open("ab", buffering=1 << 16) as out:
        while not _stop:
            try:
                rec = os.read(fd, 16384)
            except BlockingIOError:
                out.flush()  # drained: what is there reaches the host now
                if ready:
                    Path(ready).touch()
                    ready = None
                poller.poll(500)
                continue
            except OSError as e:
                if e.errno == errno.EPIPE:
                    out.write(f"{EPIPE_NOTE}: records overwritten before they were read\n".encode())
                    continue
                if e.errno == errno.EINTR:
                    continue
                raise
            out.write(rec)
            rest = rec.partition(b";")[2]
            if rest.split(b"\n", 1)[0] == want:
                out.write(f"{END_NOTE}: saw the end marker\n".encode())
                return 0
        out.write(b"# stopped by SIGTERM before the end marker\n")
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("read", help="in the VM: stream /dev/kmsg to a file")
    r.add_argument("out")
    r.add_argument("token")
    r.add_argument("--ready", help="file to create once caught up")
    c = sub.add_parser("check", help="judge a streamed log")
    c.add_argument("log")
    c.add_argument("--text", help="also write the log as dmesg prints it")
    args = ap.parse_args(argv)
    if args.cmd == "read":
        return read(args.out, args.token, args.ready)
    try:
        with Path(args.log).open("rb") as f:
            stream = parse(f)
    except FileNotFoundError:
        print(f"no kernel log stream: {args.log} is missing")
        return 1
    if args.text:
        Path(args.text).write_text(as_text(stream))
    found = problems(stream)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
