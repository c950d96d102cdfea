"""``flaxdev bench``'s own arithmetic: latency summaries, ratios and warnings.

The load generators and servers are exercised against a real socket server in
``test_bench_load.py`` and against the module in the VM (tests/vm/test_bench.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from pyflaxdev.bench import Point, SuiteConfig, SuiteResult, latency_stats
from pyflaxdev.bench.inprocess import inprocess
from pyflaxdev.bench.report import format_report, ratios, warnings
from pyflaxdev.bench.result import SAMPLE_DTYPE, summarise
from pyflaxdev.errors import InvalidArgument


def test_latency_stats_against_numpy() -> None:
    rng = np.random.default_rng(3)
    x = rng.lognormal(6.0, 1.0, size=12345)
    s = latency_stats(x)
    assert s.n == x.size
    assert s.mean_us == pytest.approx(x.mean(), rel=1e-12)
    assert s.std_us == pytest.approx(x.std(ddof=1), rel=1e-12)
    assert (s.min_us, s.max_us) == (x.min(), x.max())
    for q in (50, 90, 99, 99.9):
        assert s.p(q) == pytest.approx(np.percentile(x, q), rel=1e-12)
    assert s.cv == pytest.approx(x.std(ddof=1) / x.mean())
    empty = latency_stats([])
    assert empty.n == 0 and np.isnan(empty.p(99))


def _result(
    transport: str,
    clients: int,
    rps: float,
    lat_us: float,
    seconds: float = 10.0,
    errors: int = 0,
    rate: float | None = None,
) -> Point:
    n = int(rps * seconds)
    samples = np.zeros(n + errors, dtype=SAMPLE_DTYPE)
    samples["latency_ns"] = int(lat_us * 1000)
    samples["status"][n:] = -110
    res = summarise(
        samples,
        {"ETIMEDOUT": errors} if errors else {},
        seconds,
        load="c",
        transport="device" if transport == "device" else "socket",
        target="m",
        clients=clients,
        mode="open" if rate else "closed",
        offered_rps=rate,
        late=0,
    )
    batching = transport != "socket"
    return Point(transport, clients, 64 if batching else None, 0 if batching else None, res)


def test_summarise_counts_only_successes() -> None:
    p = _result("device", 4, 100.0, 250.0, errors=7)
    assert p.result.ok == 1000 and p.result.requests == 1007
    assert p.result.throughput_rps == pytest.approx(100.0)
    assert p.result.latency.n == 1000 and p.result.latency.mean_us == pytest.approx(250.0)


def test_ratios_pair_points_by_clients_and_batching() -> None:
    res = SuiteResult(SuiteConfig(model="m", spec_name="m"))
    res.points = [
        _result("device", 1, 100.0, 400.0),
        _result("device", 8, 800.0, 1000.0),
        _result("socket", 1, 125.0, 300.0),
        _result("socket", 8, 200.0, 4000.0),
        _result("socket-batch", 8, 400.0, 2000.0),
    ]
    rows = {r["clients"]: r for r in ratios(res)}
    assert set(rows) == {1, 8}
    assert rows[1]["throughput_vs_socket"] == pytest.approx(0.8)
    assert rows[1]["p50_vs_socket"] == pytest.approx(400 / 300)
    assert "throughput_vs_socket_batch" not in rows[1]
    assert rows[8]["throughput_vs_socket"] == pytest.approx(4.0)
    assert rows[8]["throughput_vs_socket_batch"] == pytest.approx(2.0)
    assert rows[8]["p99_vs_socket_batch"] == pytest.approx(0.5)
    text = format_report(res)
    assert "throughput(req/s)" in text and "p99.9(µs)" in text and "4.00" in text


def test_warnings_say_what_to_fix() -> None:
    res = SuiteResult(SuiteConfig(model="m", spec_name="m"))
    res.points = [_result("device", 1, 100.0, 400.0, seconds=20.0)]
    assert not [w for w in warnings(res) if "device" in w]
    res.points = [
        _result("device", 1, 50.0, 400.0, seconds=2.0),
        _result("socket", 64, 100.0, 400.0, seconds=20.0, errors=3),
        _result("device", 64, 100.0, 400.0, seconds=20.0, rate=400.0),
    ]
    text = "\n".join(warnings(res))
    assert "too short" in text and "--duration" in text
    assert "3 requests failed" in text
    assert "saturated, 100 of 400 req/s" in text


def test_inprocess_picks_the_cheapest_batch() -> None:
    import time

    calls: list[int] = []

    def fn(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        time.sleep(0.004)  # a fixed cost per call: batch 4 is 4x cheaper per sample
        return x

    r = inprocess(fn, np.ones((10, 4), dtype=np.float32), batch_sizes=(1, 4), max_calls=7)
    assert sorted(set(calls)) == [1, 4]
    assert r.best_batch == 4
    assert r.us_per_sample[1] == pytest.approx(4 * r.us_per_sample[4], rel=0.3)
    assert r.us_per_sample[4] >= 1000.0  # 4 ms / 4 samples, in µs
    assert r.best_throughput_rps == pytest.approx(1e6 / r.us_per_sample[4])


def test_inprocess_cycles_through_samples_of_different_cost() -> None:
    import time

    seen: list[float] = []

    def fn(x: list[float]) -> list[float]:
        seen.extend(x)
        time.sleep(sum(x))  # a sample's own cost, as a text's length
        return x

    costs = [0.001, 0.009]
    r = inprocess(fn, costs, batch_sizes=(1,), max_calls=10, budget_s=5.0)
    # Both samples in turn: the mean cost, not the first sample's.
    assert set(seen) == set(costs) and seen.count(0.009) >= 5
    assert r.us_per_sample[1] == pytest.approx(5000.0, rel=0.3)


def test_plot_draws_closed_and_open_points(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pyflaxdev.bench.plot import plot

    res = SuiteResult(SuiteConfig(model="m", spec_name="m"))
    res.points = [
        _result("device", 1, 100.0, 400.0),
        _result("device", 8, 800.0, 1000.0),
        _result("device", 8, 300.0, 900.0, rate=300.0),
        _result("socket", 1, 125.0, 300.0),
    ]
    out = tmp_path / "plot.png"
    plot(res, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10000


def test_text_model_length_and_buckets_reach_worker_and_baseline() -> None:
    config = SuiteConfig(
        model="m",
        spec_name="minilm",
        transports=("device",),
        serve=True,
        serve_args=("--max-wait-us", "100"),
        max_len=32,
        buckets=(8, 16),
    )
    config.check()
    spec = config.model_spec()
    assert spec is not None
    assert spec.input.shape == (2, 32) and spec.output.shape == (32, 384)
    assert tuple(spec.buckets or ()) == (8, 16)
    assert config.worker_args() == ("--max-wait-us", "100", "--max-len", "32", "--buckets", "8,16")
    # Unchanged without them.
    plain = SuiteConfig(model="m", spec_name="minilm")
    assert plain.worker_args() == () and plain.model_spec().input.shape == (2, 256)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"transports": ("device", "socket")}, "--transports device"),
        ({"serve": False}, "need --serve"),
        ({"buckets": (0, 8)}, "must be positive"),
    ],
)
def test_text_model_length_refused_where_it_cannot_apply(changes, message) -> None:  # type: ignore[no-untyped-def]
    base = {"model": "m", "spec_name": "minilm", "transports": ("device",), "serve": True}
    config = SuiteConfig(**{**base, "max_len": 32, "buckets": (8,), **changes})
    with pytest.raises(InvalidArgument, match=message):
        config.check()


def test_max_len_of_a_tensor_model_is_refused() -> None:
    config = SuiteConfig(
        model="m", spec_name="digits", transports=("device",), serve=True, max_len=32
    )
    config.check()
    with pytest.raises(InvalidArgument, match="not a text model"):
        config.model_spec()
