"""``flaxdev infer MODEL``: run one input through a device model and print the result.

The input is a file (or ``-`` for stdin) holding either the raw input bytes or
a ``.npy`` array, or ``--heldout N``: image N of the shipped model's held-out
split.  A class result (topk, argmax, threshold) prints as ``label<TAB>score``
lines in result order, with the model's labels (set at creation or with
``labels`` in sysfs; else the shipped model's, else the class index); any
other result as ``index<TAB>value`` lines.  ``--text`` prints the module's own
text form of the result (``FLAX_INFER_TEXT``) instead.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pyflaxdev.commands._common import doc, zoo_spec
from pyflaxdev.device import Device, model_path
from pyflaxdev.errors import InvalidArgument
from pyflaxdev.results import Classes

NPY_MAGIC = b"\x93NUMPY"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``infer``."""
    p = sub.add_parser("infer", help="run one input through a model", description=doc(__doc__))
    p.add_argument("model", metavar="MODEL", help="device model name")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="FILE", help="raw input bytes or .npy; - for stdin")
    source.add_argument(
        "--heldout", type=int, metavar="N", help="held-out example N of the shipped model"
    )
    p.add_argument(
        "--spec", metavar="NAME", help="shipped model for labels and --heldout (default: MODEL)"
    )
    p.add_argument("--timeout-ms", type=int, default=0, help="request timeout (default: model's)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the result as JSON")
    out.add_argument(
        "--text", action="store_true", help="print the module's text result (FLAX_INFER_TEXT)"
    )
    p.set_defaults(run=run)


def read_input(source: str) -> Any:
    """Read a raw or ``.npy`` input from a file or stdin."""
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    if data.startswith(NPY_MAGIC):
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise InvalidArgument(f"cannot read {source} as .npy: {exc}") from None
    return data


def run(args: argparse.Namespace) -> int:
    """Infer and print."""
    spec = zoo_spec(args.spec or args.model, required=args.heldout is not None or bool(args.spec))
    if args.heldout is not None:
        xs, ys = spec.heldout()
        if not 0 <= args.heldout < len(xs):
            raise InvalidArgument(f"--heldout must be 0 to {len(xs) - 1}, got {args.heldout}")
        x: Any = xs[args.heldout]
        truth = spec.label(int(ys[args.heldout]))
        print(f"flaxdev: held-out example {args.heldout}: true label {truth}", file=sys.stderr)
    else:
        x = read_input(args.input)
    # The model's node, which its mode may open to others; --device: that node.
    with Device(args.device or model_path(args.model)) as dev:
        model = dev.model(args.model)
        if args.text:
            sys.stdout.write(model.infer_text(x, timeout_ms=args.timeout_ms))
            return 0
        result = model.infer(x, timeout_ms=args.timeout_ms)
    if isinstance(result, Classes):
        if result.labels is None and spec is not None:
            result = result.with_labels(spec.labels)
        rows = [(i, result.label(i), s) for i, s in result.pairs()]
    else:
        rows = [(i, str(i), float(v)) for i, v in enumerate(result)]
    if args.json:
        print(json.dumps([{"index": i, "label": lab, "score": s} for i, lab, s in rows]))
    else:
        for _, lab, s in rows:
            print(f"{lab}\t{s:.6f}")
    return 0
