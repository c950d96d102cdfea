"""``flaxdev status``: the models in sysfs (``/sys/class/misc/flax/models``) as a table."""

from __future__ import annotations

import argparse
import json
import sys

from pyflaxdev import sysfs
from pyflaxdev.commands._common import doc

COLUMNS = (
    ("NAME", None),
    ("ID", "id"),
    ("INPUT", None),
    ("OUTPUT", "output_shape"),
    ("PRE", "pre_op"),
    ("POST", "post_ops"),
    ("K", "topk"),
    ("SLOTS", "nslots"),
    ("WORKERS", "workers"),
    ("QUEUED", "queued"),
    ("REQUESTS", "requests"),
    ("COMPLETED", "completed"),
    ("ERRORS", "errors"),
    ("TIMEOUTS", "timeouts"),
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``status``."""
    p = sub.add_parser("status", help="models and their counters (sysfs)", description=doc(__doc__))
    p.add_argument("--json", action="store_true", help="print JSON (values as in sysfs)")
    p.add_argument("--all", action="store_true", help="also read every other readable attribute")
    p.set_defaults(run=run)


def _value(attrs: dict[str, str | None], key: str) -> str:
    value = attrs.get(key)
    return "-" if value is None else " ".join(value.split())


def table(models: dict[str, dict[str, str | None]]) -> list[list[str]]:
    """Rows (header first) for the status table."""
    rows = [[title for title, _ in COLUMNS]]
    for name, attrs in models.items():
        row = []
        for title, key in COLUMNS:
            if title == "NAME":
                row.append(name)
            elif title == "INPUT":
                row.append(f"{_value(attrs, 'input_dtype')} {_value(attrs, 'input_shape')}")
            else:
                assert key is not None
                row.append(_value(attrs, key))
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON)."""
    models = sysfs.models(every=args.all)
    if args.json:
        print(json.dumps({"sysfs": str(sysfs.sysfs_root()), "models": models}, indent=1))
        return 0
    rows = table(models)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if not models:
        print("flaxdev: no models", file=sys.stderr)
    return 0
