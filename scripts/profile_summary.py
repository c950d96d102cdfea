"""Summarise a ``py-spy record --format raw --function --idle`` profile of a worker.

Each line of the raw format is one stack, root first, frames separated by
``;``, then its sample count.  Among the samples whose stack holds a frame
of the function ``--under`` (default ``_loop``, the worker's serving loop),
prints each function's inclusive share (its frame anywhere in the stack)
and self share (the innermost frame), the largest first -- with ``--idle``
the shares are of wall-clock time, so time blocked in FETCH shows.

    python scripts/profile_summary.py PROFILE.txt [--under FUNC] [--top N]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``; anything else as it is."""
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    return f"{m['func']} ({Path(m['file']).name})"


def summarise(lines: list[str], under: str) -> tuple[int, Counter[str], Counter[str]]:
    """Samples under ``under``, and inclusive and self counts per function."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_name(f) for f in stack.split(";")]
        at = next((i for i, f in enumerate(frames) if f.split(" (")[0] == under), None)
        if at is None:
            continue
        n = int(count)
        total += n
        for f in set(frames[at:]):
            inclusive[f] += n
        own[frames[-1]] += n
    return total, inclusive, own


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile", type=Path)
    p.add_argument("--under", default="_loop", help="only stacks through this function")
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args(argv)
    total, inclusive, own = summarise(args.profile.read_text().splitlines(), args.under)
    if not total:
        print(f"no samples under {args.under!r} in {args.profile}", file=sys.stderr)
        return 1
    print(f"{total} samples under {args.under}()")
    print(f"{'inclusive':>9}  {'self':>6}  function")
    for func, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:8.1f}%  {100 * own[func] / total:5.1f}%  {func}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
