"""``flaxdev sockserve MODEL --socket PATH``: the baseline Unix-socket server for a shipped model.

What ``flaxdev bench`` compares ``/dev/flax`` with: a server that does the
device path in-process (the kernel's preprocessing, ``jit(apply)``, the
kernel's postprocessing in numpy) and answers in ``FLAX_IOC_INFER``'s binary
format, over the protocol of pyflaxdev.sockserve (request ``u32 length`` +
input bytes; response ``i32 status`` + ``u32 length`` + result bytes; all
little-endian).  No device is needed.

By default each request runs on its own at batch 1 in its connection's thread
(a thread per connection).  ``--batch`` hands requests to one batcher thread
that batches them as Triton does: up to ``--max-batch`` requests (default 64,
at most the largest batch size), waiting at most ``--delay-us`` (default 500)
after the first one, padded to the smallest compiled batch size that holds
them (``--batch-sizes``, default the shipped model's or 1,2,4,...,64; an
explicit ``--max-batch`` drops larger sizes and adds itself, as with
``flaxdev serve``).  ``null`` (the identity model) echoes its input, no JAX.

The server compiles, removes a stale socket file, listens, prints a line
containing "worker ready" to stderr and serves until SIGINT or SIGTERM; then it
closes every connection, unlinks the socket and prints its counters (requests,
batches, mean batch size) to stderr.
"""

from __future__ import annotations

import argparse

from pyflaxdev.commands._common import doc, int_list, progress, run_until_signal, zoo_spec
from pyflaxdev.commands.serve import READY_MARK, batch_sizes
from pyflaxdev.errors import InvalidArgument
from pyflaxdev.pipeline import Pipeline
from pyflaxdev.runner import DEFAULT_BATCH_SIZES, plan_batches
from pyflaxdev.sockserve import DEFAULT_DELAY_US, DEFAULT_MAX_BATCH, BatchingServer, SocketServer


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sockserve``."""
    p = sub.add_parser(
        "sockserve",
        help="serve a shipped model on a Unix socket (the bench baseline, no device)",
        description=doc(__doc__),
    )
    p.add_argument("model", metavar="MODEL", help="shipped model (e.g. digits, null)")
    p.add_argument("--socket", required=True, metavar="PATH", help="Unix socket to listen on")
    p.add_argument("--batch", action="store_true", help="batch requests in one batcher thread")
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        metavar="N",
        help=f"with --batch: most requests per batch; also the largest compiled batch size"
        f" (drops larger sizes, adds N; default {DEFAULT_MAX_BATCH}, at most the largest"
        " --batch-sizes)",
    )
    p.add_argument(
        "--delay-us",
        type=int,
        default=DEFAULT_DELAY_US,
        metavar="US",
        help="with --batch: longest wait for a batch to fill after its first request"
        f" (default {DEFAULT_DELAY_US})",
    )
    p.add_argument(
        "--batch-sizes",
        type=int_list,
        default=None,
        metavar="B1,B2,...",
        help="with --batch: compiled batch sizes (default: the shipped model's, else 1,2,4,...,64)",
    )
    p.add_argument(
        "--max-len",
        type=int,
        default=None,
        metavar="L",
        help="text models: tokens per text (default: the shipped model's)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    spec = zoo_spec(args.model).at_length(args.max_len)
    if args.delay_us < 0:
        raise InvalidArgument(f"--delay-us must be 0 or more, got {args.delay_us}")
    server: SocketServer
    if args.batch:
        wanted = args.batch_sizes or spec.batch_sizes or DEFAULT_BATCH_SIZES
        if args.max_batch is None:
            sizes, max_batch = plan_batches(wanted, DEFAULT_MAX_BATCH)
        else:
            sizes, max_batch = batch_sizes(wanted, args.max_batch), args.max_batch
        pipeline = Pipeline(spec, sizes, buckets=spec.buckets)
        server = BatchingServer(args.socket, pipeline, max_batch=max_batch, delay_us=args.delay_us)
        what = f"up to {max_batch} requests within {args.delay_us} µs, sizes {list(sizes)}"
    else:
        pipeline = Pipeline(spec, (1,), buckets=spec.buckets)
        server = SocketServer(args.socket, pipeline)
        what = "one request at a time per connection, batch 1"
    if spec.identity:
        progress(f"{spec.name!r} is the identity model: echoing, nothing to compile")
    else:
        progress(f"loading {spec.name!r} and compiling batch sizes {list(pipeline.sizes)}")

    def ready() -> None:
        progress(f"{READY_MARK}: model {spec.name!r} on {args.socket} ({server.mode}: {what})")

    run_until_signal(lambda: server.serve_forever(ready), server.shutdown, "flaxdev-sockserve")
    progress(server.stats.summary())
    return 0
