"""The bench's load generators and sweep against a real server on this host.

``flaxdev sockserve null`` (the identity model: results are the inputs, so
every answer can be checked) is driven by the C ``flax_load`` and by the
Python threads; the whole sweep runs for the two socket transports.  The
device transport needs the module: tests/vm/test_bench.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pyflaxdev import models
from pyflaxdev.bench import SuiteConfig, run_suite
from pyflaxdev.bench.cload import LoadSpec, find_binary, run_c
from pyflaxdev.bench.pyload import run_python
from pyflaxdev.bench.servers import ChildServer, sockserve_command
from pyflaxdev.sockserve import SocketClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    subprocess.run(["make", "-s", "-C", str(ROOT / "examples"), "flax_load"], check=True)
    assert Path(find_binary()).is_file()


@pytest.fixture(scope="module")
def null_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("sock") / "null.sock")
    cmd = sockserve_command("null", path, batch=False, max_batch=1, delay_us=0, batch_sizes=[1])
    with ChildServer(cmd, label="null server", ready_timeout=120):
        yield path


def _inputs() -> np.ndarray:
    x, _ = models.get("null").heldout()
    return np.ascontiguousarray(x, dtype=np.float32)


def test_server_echoes_what_the_load_sends(null_server: str) -> None:
    x = _inputs()
    client = SocketClient(null_server)
    try:
        status, payload = client.infer(x[3].tobytes())
    finally:
        client.close()
    assert status == 0 and bytes(payload) == x[3].tobytes()


@pytest.mark.parametrize("clients", [1, 4])
def test_c_load_closed(null_server: str, clients: int) -> None:
    res = run_c(LoadSpec(inputs=_inputs(), socket=null_server), clients=clients, requests=300)
    assert (res.load, res.transport, res.mode, res.clients) == ("c", "socket", "closed", clients)
    assert res.requests == res.ok == 300 * clients and res.errors == {}
    assert res.latency.n == res.ok and res.latency.min_us > 0
    assert sorted(set(res.samples["client"].tolist())) == list(range(clients))
    assert res.throughput_rps == pytest.approx(res.ok / res.elapsed_s)


def test_c_load_open_loop_keeps_its_rate(null_server: str) -> None:
    res = run_c(LoadSpec(inputs=_inputs(), socket=null_server), clients=4, duration_s=3, rate=400)
    assert res.mode == "open" and res.offered_rps == 400 and not res.errors
    # A Poisson process at 400/s over 3 s: 1200 ± a few σ (σ ≈ 35).
    assert 1000 < res.requests < 1400
    starts = np.sort(res.samples["start_ns"]) / 1e9
    assert starts[-1] < 3.0


def test_c_load_rejects_a_record_size_mismatch(null_server: str) -> None:
    bad = LoadSpec(inputs=np.zeros((4, 10), np.uint8), socket=null_server)
    res = run_c(bad, clients=1, requests=5)
    assert res.ok == 0 and res.errors == {"EINVAL": 5}


def test_python_load(null_server: str) -> None:
    res = run_python(
        LoadSpec(inputs=_inputs(), socket=null_server), _inputs(), clients=3, requests=100
    )
    assert (res.load, res.requests, res.ok, res.errors) == ("python", 300, 300, {})


def test_socket_sweep_end_to_end() -> None:
    config = SuiteConfig(
        model="null",
        spec_name="null",
        transports=("socket", "socket-batch"),
        clients=(1, 4),
        max_batches=(8,),
        delays_us=(0,),
        duration_s=None,
        requests=200,
        baseline_batches=(1, 8),
    )
    said: list[str] = []
    res = run_suite(config, said.append)
    assert [(p.transport, p.clients) for p in res.points] == [
        ("socket", 1),
        ("socket", 4),
        ("socket-batch", 1),
        ("socket-batch", 4),
    ]
    for p in res.points:
        assert p.result.ok == 200 * p.clients and not p.result.errors
    assert res.inprocess is None  # a copy in memory is no baseline
    assert any("no in-process baseline" in line for line in said)
    assert any("socket-batch" in line for line in said)
