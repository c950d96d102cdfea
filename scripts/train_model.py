#!/usr/bin/env python3
"""Train a shipped classifier (``digits``, ``patches``) and write the files the package ships.

Writes the zoo entry ``pyflaxdev/zoo/<name>/`` (config.toml, labels.txt,
heldout.npz, 1/params.msgpack: :mod:`pyflaxdev.models.classifier`).  Training is
deterministic; run it again and the files do not change (on the same CPU and
library versions).

    .venv/bin/python scripts/train_model.py digits|patches [--check]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

# Held-out accuracy a model must reach to be shipped.
MIN_ACCURACY = {"digits": 0.95, "patches": 0.9}


def main(argv: list[str] | None = None) -> int:
    """Train, report, and write (or with --check, compare with) the shipped files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MIN_ACCURACY))
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the shipped weights differ"
    )
    args = parser.parse_args(argv)
    model = importlib.import_module(f"pyflaxdev.models.{args.model}")
    t0 = time.perf_counter()
    result = model.train()
    seconds = time.perf_counter() - t0
    held = len(model.load_split()[3])
    print(
        f"{args.model}: trained {model.STEPS} steps in {seconds:.1f} s: loss"
        f" {result.final_loss:.5f}, held-out accuracy {result.accuracy:.4f} ({held} inputs)",
        file=sys.stderr,
    )
    if result.accuracy < MIN_ACCURACY[args.model]:
        print(
            f"train_model: accuracy {result.accuracy:.4f} < {MIN_ACCURACY[args.model]}",
            file=sys.stderr,
        )
        return 1
    if args.check:
        same = model.WEIGHTS.read_bytes() == model.params_bytes(result.params)
        print("shipped weights " + ("match" if same else "DIFFER"), file=sys.stderr)
        return 0 if same else 1
    model.save(result)
    print(f"wrote {model.ENTRY}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
