"""The typed sysfs reader, the setting writer and `flaxdev status`, on a fake sysfs tree."""

from __future__ import annotations

import errno
import json

import pytest

from pyflaxdev import cli, sysfs
from pyflaxdev.errors import DeviceNotFound, InvalidArgument, ModelNotFound, PermissionDenied

DIGITS = {
    "id": "1",
    "input_shape": "8 8",
    "input_dtype": "uint8",
    "output_shape": "10",
    "pre_op": "normalize",
    "post_ops": "softmax topk",
    "nslots": "64",
    "result_size": "32",
    "text_size": "426",
    "topk": "3",
    "threshold": "0",
    "timeout_ms": "5000",
    "max_batch": "16",
    "max_queue_delay_us": "2000",
    "max_queue": "64",
    "norm_mean": "0 0.5",
    "norm_std": "1 0.25",
    "queued": "2",
    "in_flight": "3",
    "workers": "1",
    "requests": "100",
    "completed": "97",
    "errors": "1",
    "timeouts": "2",
    "batches": "20",
    "batched": "97",
    "queue_ns": "97000000",
    "compute_ns": "194000000",
    "pre_ns": "1000000",
    "post_ns": "970000",
    "total_ns": "300000000",
    "batch_hist": " ".join(["5", "0", "5", "10"] + ["0"] * 9),
    "latency_hist": " ".join(["0"] * 11 + ["90", "7"] + ["0"] * 11),
}


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "sys"
    d = r / "models" / "digits"
    d.mkdir(parents=True)
    for k, v in DIGITS.items():
        (d / k).write_text(v + "\n")
    (d / "labels").write_text("zero\none\n")
    (d / "input").write_text("")  # write-only in the real tree: never read
    (d / "input").chmod(0o200)
    e = r / "models" / "embed"
    e.mkdir()
    for k, v in {"id": "2", "post_ops": "none", "batches": "0", "batched": "0"}.items():
        (e / k).write_text(v + "\n")
    monkeypatch.setenv("FLAXDEV_SYSFS", str(r))
    return r


def test_bucket_names():
    batch = sysfs.batch_bucket_names()
    assert len(batch) == sysfs.BATCH_BUCKETS == 13
    assert batch[:5] == ["1", "2", "3-4", "5-8", "9-16"]
    assert batch[-1] == "2049+"
    lat = sysfs.latency_bucket_names()
    assert len(lat) == sysfs.LATENCY_BUCKETS == 24
    assert lat[:4] == ["<1", "1-2", "2-4", "4-8"]
    assert lat[-1] == f"{2**22}+"


def test_read_status_is_typed(root):
    st = sysfs.read_status("digits")
    assert st.name == "digits"
    assert st.specs.input_shape == [8, 8] and st.specs.input_dtype == "uint8"
    assert st.specs.post_ops == ["softmax", "topk"] and st.specs.text_size == 426
    assert st.settings.topk == 3 and st.settings.threshold == 0.0
    assert st.settings.max_queue_delay_us == 2000
    assert st.settings.norm_mean == [0.0, 0.5] and st.settings.norm_std == [1.0, 0.25]
    assert (st.queue.queued, st.queue.in_flight, st.queue.workers) == (2, 3, 1)
    assert st.stats.requests == 100 and st.stats.batch_hist[3] == 10
    assert len(st.stats.batch_hist) == 13 and len(st.stats.latency_hist) == 24
    assert st.stats.mean_batch == pytest.approx(4.85)
    assert st.stats.mean_latency_us == pytest.approx(3000.0)
    assert st.stats.mean_queue_us == pytest.approx(1000.0)
    assert st.labels == ["zero", "one"]


def test_missing_files_are_none(root):
    st = sysfs.read_status("embed")
    assert st.specs.id == 2 and st.specs.post_ops == []
    assert st.specs.input_shape is None and st.settings.topk is None and st.labels is None
    assert st.stats.mean_batch is None and st.stats.mean_latency_us is None


def test_read_all_and_missing(root, tmp_path):
    assert [m.name for m in sysfs.read_all()] == ["digits", "embed"]
    with pytest.raises(ModelNotFound, match="model 'nope' not found"):
        sysfs.read_status("nope")
    with pytest.raises(ModelNotFound):
        sysfs.read_status("..")
    with pytest.raises(DeviceNotFound, match="is the flaxdev module loaded"):
        sysfs.read_all(tmp_path / "absent")


def test_as_dict_keys(root):
    d = sysfs.read_status("digits").as_dict()
    assert list(d) == ["name", "path", "specs", "settings", "queue", "stats", "labels"]
    assert d["stats"]["mean_batch"] == pytest.approx(4.85)
    json.dumps(d)


def test_raw_read_model_keeps_strings(root):
    raw = sysfs.read_model(root / "models" / "digits")
    assert raw["requests"] == "100" and "input" not in raw and "result" not in raw


@pytest.mark.parametrize(
    ("key", "value", "written"),
    [
        ("topk", 5, "5\n"),
        ("max_queue_delay_us", 0, "0\n"),
        ("threshold", 0.25, "0.25\n"),
        ("norm_mean", [0.5, 1], "0.5 1.0\n"),
        ("norm_std", 2.0, "2.0\n"),
        ("labels", ["cat", "dog"], "cat\ndog\n"),
    ],
)
def test_set_setting_writes_one_value(root, key, value, written):
    sysfs.set_setting("digits", key, value)
    assert (root / "models" / "digits" / key).read_text() == written


def test_set_setting_checks(root):
    with pytest.raises(InvalidArgument, match="'queued' is not a writable setting"):
        sysfs.set_setting("digits", "queued", 1)
    with pytest.raises(InvalidArgument, match="takes an integer"):
        sysfs.set_setting("digits", "topk", 2.5)
    with pytest.raises(ModelNotFound):
        sysfs.set_setting("nope", "topk", 1)


def test_set_setting_errors(root, monkeypatch):
    def fail(code):
        def write(fd, data):
            raise OSError(code, "x")

        return write

    monkeypatch.setattr(sysfs.os, "write", fail(errno.EINVAL))
    with pytest.raises(InvalidArgument, match=r"setting topk of model 'digits' to 99.*EINVAL"):
        sysfs.set_setting("digits", "topk", 99)
    monkeypatch.setattr(sysfs.os, "write", fail(errno.EACCES))
    with pytest.raises(PermissionDenied, match="root only"):
        sysfs.set_setting("digits", "topk", 1)


def test_reset_stats(root):
    sysfs.reset_stats("digits")
    assert (root / "models" / "digits" / "requests").read_text() == "0\n"


def test_cli_status_tables(root, capsys):
    assert cli.main(["status", "--hist"]) == 0
    out = capsys.readouterr().out
    blocks = [b.splitlines() for b in out.split("\n\n")]
    assert len(blocks) == 4
    summary, settings, timing, hist = blocks
    assert summary[0].split()[:3] == ["NAME", "ID", "INPUT"] and "REQUESTS" in summary[0]
    assert summary[1].split()[:5] == ["digits", "1", "uint8", "8", "8"]
    assert summary[2].split()[:2] == ["embed", "2"] and " - " in summary[2]
    assert "MAX_QUEUE_DELAY_US" in settings[0].split()
    assert settings[1].split() == [
        "digits",
        "3",
        "0",
        "5000",
        "16",
        "2000",
        "64",
        "2",
        "2",
        "32",
        "426",
    ]
    assert timing[0].split()[:4] == ["NAME", "BATCHES", "BATCHED", "MEAN_BATCH"]
    assert timing[1].split()[:4] == ["digits", "20", "97", "4.85"]
    assert hist[0] == "digits batch size (jobs): 1: 5  3-4: 5  5-8: 10"
    assert hist[1] == "digits latency (µs): 1024-2048: 90  2048-4096: 7"
    assert hist[2] == "embed batch size (jobs): -"


def test_cli_status_json(root, capsys):
    assert cli.main(["status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sysfs"] == str(root)
    m = doc["models"]["digits"]
    assert m["stats"]["requests"] == 100 and m["settings"]["topk"] == 3
    assert m["specs"]["post_ops"] == ["softmax", "topk"] and m["labels"] == ["zero", "one"]
    assert m["stats"]["latency_hist"][11] == 90
    assert doc["models"]["embed"]["settings"]["topk"] is None


def test_cli_status_help_documents_json_keys(capsys):
    with pytest.raises(SystemExit):
        cli.main(["status", "--help"])
    out = capsys.readouterr().out
    for key in ("mean_batch", "latency_hist", "max_queue_delay_us", "in_flight", "labels"):
        assert key in out
