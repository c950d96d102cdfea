"""The Python load generator: client threads, each with its own fd or socket.

The same schedule as ``flax_load``: client ``c`` sends input
``(c * 7919 + i) % n`` for its ``i``-th request; closed loop (next request
when the previous returns) or open loop (each client a Poisson process at
``rate / clients``, latency counted from the scheduled arrival, so a slow
server cannot hide its queue by slowing the clients down).  Python clients
share one interpreter, so they measure what a Python application gets, not
the transport's limit (use the C generator for that).
"""

from __future__ import annotations

import errno
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pyflaxdev.bench.cload import LoadSpec
from pyflaxdev.bench.result import SAMPLE_DTYPE, LoadResult, summarise
from pyflaxdev.device import Device, model_path
from pyflaxdev.errors import FlaxError, errno_name

__all__ = ["STRIDE", "run_python"]

STRIDE = 7919  # spreads clients over the inputs (as flax_load does)
LATE_NS = 1_000_000


def _sender(spec: LoadSpec) -> tuple[Callable[[Any], None], Any]:
    """A ``send(x)`` for one client (raises FlaxError on failure) and what to close."""
    if spec.model is not None:
        # A client opens the model's node, as any user's would; --device: that node.
        dev = Device(spec.device or model_path(spec.model))
        model = dev.model(spec.model)
        timeout = spec.timeout_ms

        def send_device(x: Any) -> None:
            model.infer(x, timeout_ms=timeout)

        return send_device, dev
    from pyflaxdev.sockserve import SocketClient

    assert spec.socket is not None
    client = SocketClient(spec.socket)

    def send_socket(x: Any) -> None:
        status, _ = client.infer(x if isinstance(x, bytes) else np.ascontiguousarray(x).tobytes())
        if status:
            raise FlaxError(f"socket server: {errno_name(-status)}", -status)

    return send_socket, client


def run_python(
    spec: LoadSpec,
    inputs: Sequence[Any] | npt.NDArray[Any],
    *,
    clients: int,
    requests: int | None = None,
    duration_s: float | None = None,
    rate: float | None = None,
    warmup: int = 5,
    seed: int = 1,
) -> LoadResult:
    """Run ``clients`` Python threads once (see the module docstring)."""
    if (requests is None) == (duration_s is None):
        raise ValueError("give exactly one of requests and duration_s")
    if clients < 1 or not len(inputs):
        raise ValueError("need clients >= 1 and inputs")
    n_in = len(inputs)
    rows: list[list[tuple[int, int, int, int]]] = [[] for _ in range(clients)]
    errors: list[Counter[str]] = [Counter() for _ in range(clients)]
    late = [0] * clients
    ends = [0] * clients
    failure: list[BaseException] = []
    t_start = [0]

    def mark_start() -> None:
        t_start[0] = time.monotonic_ns()

    barrier = threading.Barrier(clients, action=mark_start)

    def client(c: int) -> None:
        rng = np.random.default_rng([seed, c])
        closer = None
        try:
            send, closer = _sender(spec)
            for i in range(warmup):
                send(inputs[(c * STRIDE + i) % n_in])
            barrier.wait()
            start = t_start[0]
            stop = start + int(duration_s * 1e9) if duration_s is not None else None
            mean_gap = clients / rate * 1e9 if rate else 0.0
            due = start
            i = 0
            while (requests is None or i < requests) and (stop is None or due < stop):
                if rate:
                    due += int(rng.exponential(mean_gap))
                    if stop is not None and due >= stop:
                        break
                    now = time.monotonic_ns()
                    if stop is not None and now >= stop:
                        break  # overloaded: what is still due is never sent
                    if now < due:
                        time.sleep((due - now) / 1e9)
                    elif now - due > LATE_NS:
                        late[c] += 1
                else:
                    due = time.monotonic_ns()
                    if stop is not None and due >= stop:
                        break
                status = 0
                try:
                    send(inputs[(c * STRIDE + i) % n_in])
                except FlaxError as exc:
                    status = -(exc.errno or errno.EIO)
                    errors[c][errno_name(-status)] += 1
                done = time.monotonic_ns()
                rows[c].append((due - start, done - due, status, c))
                ends[c] = done
                i += 1
        except BaseException as exc:
            failure.append(exc)
            barrier.abort()
        finally:
            if closer is not None:
                closer.close()

    threads = [threading.Thread(target=client, args=(c,), name=f"load-{c}") for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failure:
        real = [e for e in failure if not isinstance(e, threading.BrokenBarrierError)]
        raise (real or failure)[0]
    samples = np.array([r for per in rows for r in per], dtype=SAMPLE_DTYPE)
    elapsed = (max(ends) - t_start[0]) / 1e9 if any(ends) else 0.0
    return summarise(
        samples,
        dict(sum(errors, Counter())),
        elapsed,
        load="python",
        transport=spec.transport,
        target=spec.model or spec.socket or "",
        clients=clients,
        mode="open" if rate else "closed",
        offered_rps=rate,
        late=sum(late),
    )
