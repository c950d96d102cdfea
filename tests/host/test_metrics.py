"""`flaxdev metrics` and `flaxdev --version`, on the fake sysfs tree of test_sysfs.py.

The exposition is read back with prometheus_client's own parser, and every sample
compared with the sysfs value it comes from.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_sysfs import root  # noqa: F401 - the fixture

from pyflaxdev import __version__, cli, metrics, sysfs
from pyflaxdev.commands import metrics as metrics_command

DIGITS = (("model", "digits"),)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_exposition_equals_sysfs(root):  # noqa: F811
    text = metrics.exposition(sysfs.read_all())
    got = _samples(text)
    want = {
        "flaxdev_requests_total": 100,
        "flaxdev_completed_total": 97,
        "flaxdev_errors_total": 1,
        "flaxdev_timeouts_total": 2,
        "flaxdev_batches_total": 20,
        "flaxdev_batched_jobs_total": 97,
        "flaxdev_queued": 2,
        "flaxdev_in_flight": 3,
        "flaxdev_workers": 1,
    }
    for name, value in want.items():
        assert got[(name, DIGITS)] == value, name
    assert got[("flaxdev_queue_seconds_total", DIGITS)] == pytest.approx(0.097)
    assert got[("flaxdev_pre_seconds_total", DIGITS)] == pytest.approx(0.001)
    assert got[("flaxdev_compute_seconds_total", DIGITS)] == pytest.approx(0.194)
    assert got[("flaxdev_post_seconds_total", DIGITS)] == pytest.approx(0.00097)

    # latency_hist: 90 requests in [1024, 2048) us, 7 in [2048, 4096) us.
    def lat(le: str) -> float:
        return got[("flaxdev_request_duration_seconds_bucket", (("le", le), *DIGITS))]

    assert lat("0.001024") == 0 and lat("0.002048") == 90 and lat("0.004096") == 97
    assert lat("+Inf") == 97
    assert got[("flaxdev_request_duration_seconds_count", DIGITS)] == 97
    assert got[("flaxdev_request_duration_seconds_sum", DIGITS)] == pytest.approx(0.3)

    # batch_hist: 5 of 1 job, 5 of 3-4, 10 of 5-8.
    def batch(le: str) -> float:
        return got[("flaxdev_batch_size_bucket", (("le", le), *DIGITS))]

    assert (batch("1.0"), batch("2.0"), batch("4.0"), batch("8.0")) == (5, 5, 10, 20)
    assert batch("+Inf") == 20
    assert got[("flaxdev_batch_size_count", DIGITS)] == 20
    assert got[("flaxdev_batch_size_sum", DIGITS)] == 97

    # "embed" has a few files only: samples for those, none for the rest.
    embed = (("model", "embed"),)
    assert got[("flaxdev_batches_total", embed)] == 0
    assert ("flaxdev_requests_total", embed) not in got
    assert not any(k[0].startswith("flaxdev_request_duration") and k[1] == embed for k in got)


def test_label_values_are_escaped():
    assert metrics._label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_cli_prints_and_writes_a_textfile(root, tmp_path, capsys):  # noqa: F811
    assert cli.main(["metrics"]) == 0
    printed = capsys.readouterr().out
    assert printed == metrics.exposition(sysfs.read_all())
    target = tmp_path / "flaxdev.prom"
    assert cli.main(["metrics", "--textfile", str(target)]) == 0
    assert target.read_text() == printed
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_http_serves_metrics_only(root):  # noqa: F811
    server = ThreadingHTTPServer(("127.0.0.1", 0), metrics_command._Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            assert r.headers["Content-Type"] == metrics.CONTENT_TYPE
            body = r.read().decode()
        assert _samples(body)[("flaxdev_requests_total", DIGITS)] == 100
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/", timeout=10)
        assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pyflaxdev {__version__} (ABI 1); flaxdev.ko ")


def test_ready(root, capsys):  # noqa: F811
    d = root / "models" / "digits"
    (d / "state").write_text("running\n")
    assert cli.main(["status", "--ready", "digits"]) == 0
    assert capsys.readouterr() == ("", "")
    for state, why in (("draining", "is draining"), ("drained", "is drained")):
        (d / "state").write_text(state + "\n")
        assert cli.main(["status", "--ready", "digits"]) == 1
        assert why in capsys.readouterr().err
    (d / "state").write_text("running\n")
    (d / "workers").write_text("0\n")
    assert cli.main(["status", "--ready", "digits"]) == 1
    assert "no worker attached" in capsys.readouterr().err
    assert cli.main(["status", "--ready", "nope"]) == 1
    assert "model 'nope' does not exist" in capsys.readouterr().err


def test_serving_workers_from_their_run_state(root, tmp_path, monkeypatch):  # noqa: F811
    """The version a worker serves and its own counters, read from its run state."""
    import os

    from pyflaxdev import runstate

    monkeypatch.setenv("FLAXDEV_RUN_DIR", str(tmp_path))
    state = runstate.RunState("digits", os.getpid(), 2, [1, 2], True, start_seconds=12.5)
    state.worker = {"jobs": 40, "batches": 7, "failed_jobs": 1, "compute_seconds": 0.25}
    runstate.write(state)
    got = _samples(metrics_command._text())
    model = DIGITS
    both = (("model", "digits"), ("version", "2"))
    assert got[("flaxdev_model_version", model)] == 2
    assert got[("flaxdev_worker_start_seconds", model)] == 12.5
    assert got[("flaxdev_worker_jobs_total", both)] == 40
    assert got[("flaxdev_worker_batches_total", both)] == 7
    assert got[("flaxdev_worker_failed_jobs_total", both)] == 1
    assert got[("flaxdev_worker_compute_seconds_total", both)] == 0.25
