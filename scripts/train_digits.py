#!/usr/bin/env python3
"""Train the ``digits`` model and write the files the package ships.

Writes ``pyflaxdev/models/digits.msgpack`` (flax.serialization.to_bytes of the
params) and ``pyflaxdev/models/digits_meta.json`` (shapes, float32 normalisation
constants, labels, training settings, held-out accuracy, weights' SHA-256).
Training is deterministic; run it again and the files do not change (on the
same CPU and library versions).

    .venv/bin/python scripts/train_digits.py [--check]
"""

from __future__ import annotations

import argparse
import sys
import time

from pyflaxdev.models import digits

MIN_ACCURACY = 0.95


def main(argv: list[str] | None = None) -> int:
    """Train, report, and write (or with --check, compare with) the shipped files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the shipped weights differ"
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result = digits.train()
    seconds = time.perf_counter() - t0
    print(
        f"trained {digits.STEPS} steps in {seconds:.1f} s: loss {result.final_loss:.5f},"
        f" held-out accuracy {result.accuracy:.4f} ({digits.TEST_SIZE} images)",
        file=sys.stderr,
    )
    if result.accuracy < MIN_ACCURACY:
        print(f"train_digits: accuracy {result.accuracy:.4f} < {MIN_ACCURACY}", file=sys.stderr)
        return 1
    if args.check:
        same = digits.WEIGHTS.read_bytes() == digits.params_bytes(result.params)
        print("shipped weights " + ("match" if same else "DIFFER"), file=sys.stderr)
        return 0 if same else 1
    digits.save(result)
    print(f"wrote {digits.WEIGHTS} and {digits.META}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
