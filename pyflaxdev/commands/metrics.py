"""``flaxdev metrics``: every model's counters (sysfs) in Prometheus' text format.

Prints the exposition once; ``--textfile PATH`` writes it atomically instead
(node-exporter's textfile collector: run it from a timer); ``--port N`` serves
it over HTTP at ``/metrics``, read afresh for each scrape, until interrupted.
The families are listed in :mod:`pyflaxdev.metrics`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pyflaxdev import metrics, runstate, sysfs
from pyflaxdev.commands._common import doc
from pyflaxdev.errors import FlaxError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``metrics``."""
    p = sub.add_parser(
        "metrics",
        help="counters in Prometheus' text format (stdout, a textfile, or HTTP)",
        description=doc(__doc__),
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--textfile", metavar="PATH", help="write to PATH (atomically)")
    where.add_argument("--port", type=int, metavar="N", help="serve http://BIND:N/metrics")
    p.add_argument("--bind", default="127.0.0.1", help="address for --port (default 127.0.0.1)")
    p.set_defaults(run=run)


def _text() -> str:
    models = sysfs.read_all()
    workers = {}
    for m in models:
        try:
            workers[m.name] = runstate.read(m.name)
        except FlaxError:  # no serving process, or a stale state file
            continue
    return metrics.exposition(models, workers)


def write_textfile(path: str) -> None:
    """Write the exposition to ``path`` through a temporary file and a rename."""
    target = Path(path)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_text())
        tmp.chmod(0o644)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics here")
            return
        body = _text().encode()
        self.send_response(200)
        self.send_header("Content-Type", metrics.CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # scrapes are not news


def run(args: argparse.Namespace) -> int:
    if args.textfile:
        write_textfile(args.textfile)
        return 0
    if args.port is not None:
        server = ThreadingHTTPServer((args.bind, args.port), _Handler)
        port = server.server_address[1]
        print(f"flaxdev: metrics on http://{args.bind}:{port}/metrics", file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return 0
    sys.stdout.write(_text())
    return 0
