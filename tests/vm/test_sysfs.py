"""sysfs and the model's node with the real module: the shell path, settings, statistics.

The references are in-process ``apply`` + ``jax.nn.softmax`` (``digits_logits``)
and the values written; nothing here goes through pyflaxdev's sysfs reader, so
that a mistake there cannot hide one in the module.
"""

from __future__ import annotations

import errno
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import sysfs

pytestmark = pytest.mark.usefixtures("digits_worker")

TOP = Path(__file__).resolve().parents[2]
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
K = 5
# "%.6g" of a probability: at most half a unit in the 6th significant digit.
TEXT_ATOL = 5e-6


def _dir(name: str = "digits") -> Path:
    return sysfs.sysfs_root() / "models" / name


def _read(name: str, attr: str) -> str:
    return (_dir(name) / attr).read_text()


def _write(name: str, attr: str, value: str) -> None:
    """Write like ``echo value > attr``: one write(2); raises OSError on refusal."""
    fd = os.open(_dir(name) / attr, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _write_err(name: str, attr: str, value: str) -> int:
    try:
        _write(name, attr, value)
    except OSError as exc:
        return exc.errno or 0
    return 0


@pytest.fixture
def top5_labelled() -> Iterator[None]:
    """digits with k = 5 and its labels, written through sysfs; put back afterwards."""
    old_k = _read("digits", "topk").strip()
    old_labels = (_dir() / "labels").read_bytes()
    _write("digits", "topk", f"{K}\n")
    _write("digits", "labels", "\n".join(LABELS) + "\n")
    try:
        yield
    finally:
        _write("digits", "topk", old_k)
        # An empty write removes the labels; sysfs hands over no empty write, so
        # "\n" (one empty line) cannot be used: go through the ioctl instead.
        with pyflaxdev.open() as dev:
            dev.set_labels("digits", old_labels.decode().splitlines())


def _expected(logits: np.ndarray[Any, Any]) -> list[tuple[str, float]]:
    probs = np.asarray(jax.nn.softmax(logits), dtype=np.float64)
    order = np.argsort(-probs, kind="stable")[:K]
    return [(LABELS[i], float(probs[i])) for i in order]


def _parse(text: str) -> list[tuple[str, float]]:
    assert text.endswith("\n"), repr(text)
    rows = []
    for line in text.splitlines():
        label, score = line.split("\t")
        rows.append((label, float(score)))
    return rows


def _check(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert len(got) == K, got
    assert [g[1] for g in got] == sorted((g[1] for g in got), reverse=True)
    for (gl, gs), (wl, ws) in zip(got, want, strict=True):
        assert abs(gs - ws) <= TEXT_ATOL, (got, want)
        if gl != wl:  # a near-tie may swap
            assert abs(dict(want).get(gl, -1.0) - ws) <= 2 * TEXT_ATOL, (got, want)


def _numbers(img: np.ndarray[Any, Any]) -> str:
    return " ".join(str(int(v)) for v in img.ravel())


NODE = Path(pyflaxdev.model_path("digits"))


def _shell_script(images: np.ndarray[Any, Any]) -> str:
    """A /bin/sh script that runs each image through echo and cat on one open node."""
    lines = [f'echo "{_numbers(img)}" >&3 && cat <&3 && echo ---' for img in images]
    return f"set -e\nexec 3<>{NODE}\n" + "\n".join(lines) + "\n"


def _run_shell(script: str) -> list[list[tuple[str, float]]]:
    proc = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.split("---\n")
    assert blocks[-1] == ""
    return [_parse(b) for b in blocks[:-1]]


@pytest.mark.usefixtures("top5_labelled")
def test_shell_path_top5_with_labels(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    """exec 3<>/dev/flax/digits; echo numbers >&3; cat <&3: top-5 label<TAB>score = apply."""
    x, _ = heldout
    got = _run_shell(_shell_script(x[:30]))
    assert len(got) == 30
    for g, logits in zip(got, digits_logits[:30], strict=True):
        _check(g, _expected(logits))


@pytest.mark.usefixtures("top5_labelled")
def test_ioctl_text_and_binary_top5_with_labels(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    """The same through FLAX_IOC_INFER from Python: labelled binary and text results."""
    x, _ = heldout
    with pyflaxdev.open_model("digits") as model:
        assert model.info.topk == K
        assert model.labels() == LABELS
        for img, logits in zip(x[:40], digits_logits[:40], strict=True):
            want = _expected(logits)
            _check(_parse(model.infer_text(img)), want)
            res = model.infer(img)
            got = [(label, float(s)) for label, s in res.labelled(LABELS)]
            _check(got, want)


@pytest.mark.usefixtures("top5_labelled")
def test_c_client_text_top5_with_labels(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    """examples/digits_client -x: the module's text results through the C ABI."""
    x, _ = heldout
    text = "".join(_numbers(img) + "\n" for img in x[:40])
    proc = subprocess.run(
        [str(TOP / "examples" / "digits_client"), "-x"],
        input=text,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.split("\n\n")
    assert blocks[-1] == ""
    assert len(blocks) - 1 == 40
    for block, logits in zip(blocks[:-1], digits_logits[:40], strict=True):
        _check(_parse(block + "\n"), _expected(logits))


@pytest.mark.usefixtures("top5_labelled")
def test_two_shells_at_once_get_their_own_results(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    """Two shells interleave writes and reads; each reads only its own results."""
    x, _ = heldout
    picks = [np.arange(0, 40, 2), np.arange(1, 40, 2)]
    procs = [
        subprocess.Popen(
            ["sh", "-c", _shell_script(x[p])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in picks
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err), pick in zip(procs, outs, picks, strict=True):
        assert proc.returncode == 0, err
        blocks = out.split("---\n")[:-1]
        assert len(blocks) == len(pick)
        for block, i in zip(blocks, pick, strict=True):
            _check(_parse(block), _expected(digits_logits[i]))


@pytest.mark.usefixtures("top5_labelled")
def test_results_belong_to_the_open_file(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    digits_logits: np.ndarray[Any, Any],
) -> None:
    """One process, two open files: each reads its own write's result, whatever the order."""
    x, _ = heldout
    a, b = (os.open(NODE, os.O_RDWR | os.O_CLOEXEC) for _ in range(2))
    try:
        os.write(a, _numbers(x[0]).encode())
        os.write(b, _numbers(x[1]).encode())
        got_b, got_a = os.read(b, 65536), os.read(a, 65536)
        assert os.read(a, 65536) == b"" and os.read(b, 65536) == b""
        _check(_parse(got_a.decode()), _expected(digits_logits[0]))
        _check(_parse(got_b.decode()), _expected(digits_logits[1]))
        # A read in parts ends where the result does; a new write starts over.
        os.write(a, _numbers(x[2]).encode())
        parts = [os.read(a, 7)]
        while parts[-1]:
            parts.append(os.read(a, 7))
        _check(_parse(b"".join(parts).decode()), _expected(digits_logits[2]))
    finally:
        os.close(a)
        os.close(b)


def test_shell_path_errors() -> None:
    """Bad numbers are EINVAL at the echo; an open file without a result reads ENODATA."""
    cases = {
        "too few": "1 2 3",
        "too many": " ".join(["1"] * 65),
        "out of range": " ".join(["256"] + ["0"] * 63),
        "not a number": " ".join(["x"] + ["0"] * 63),
        "negative": " ".join(["-1"] + ["0"] * 63),
        "fraction": " ".join(["1.5"] + ["0"] * 63),
        "blank": "",
    }
    for what, text in cases.items():
        # bash names the errno of a failed write; dash says "I/O error" for all.
        proc = subprocess.run(
            ["bash", "-c", f'exec 3<>{NODE}; echo "{text}" >&3'],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode != 0, what
        assert "Invalid argument" in proc.stderr, (what, proc.stderr)
    with NODE.open("r+b", buffering=0) as f:
        assert f.write(b"") == 0  # nothing to run: no result, no error
        with pytest.raises(OSError, match="No data available") as exc:
            os.read(f.fileno(), 100)
        assert exc.value.errno == errno.ENODATA
        with pytest.raises(OSError, match="Invalid argument") as exc:
            f.write(b"1 " * 100_000)  # longer than any input of 64 numbers can be
        assert exc.value.errno == errno.EINVAL
    # A new open file has no result; a failed request forgets the previous one.
    zeros = " ".join(["0"] * 64)
    script = textwrap.dedent(f"""\
        exec 3<>{NODE}
        cat <&3 2>/dev/null && exit 2
        echo "{zeros}" >&3
        cat <&3 > /dev/null || exit 3
        echo "1 2" >&3 2>/dev/null && exit 4
        cat <&3 2>/dev/null && exit 5
        exit 0
        """)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, check=False)
    assert proc.returncode == 0, proc


def test_modes() -> None:
    """World-readable, owner-writable; no shell-path files (the node has the shell path)."""
    modes = {p.name: p.stat().st_mode & 0o777 for p in _dir().iterdir() if p.is_file()}
    assert "input" not in modes and "result" not in modes
    for name in ("id", "input_shape", "output_shape", "post_ops", "queued", "in_flight"):
        assert modes[name] == 0o444, name
    for name in ("topk", "threshold", "timeout_ms", "max_batch", "max_queue", "labels"):
        assert modes[name] == 0o644, name
    for name in ("requests", "completed", "batch_hist", "latency_hist"):
        assert modes[name] == 0o644, name


SETTINGS: dict[str, tuple[list[str], list[str]]] = {
    # file: (accepted values, refused values)
    "topk": (["1", "10", "5"], ["0", "11", "65", "-1", "x", "4294967296"]),
    "timeout_ms": (["1", "60000", "5000"], ["0", "-5", "ms"]),
    "max_batch": (["1", "64", "8"], ["0", "65", "100000"]),
    "max_queue": (["1", "64", "32"], ["0", "65"]),
    "max_queue_delay_us": (["0", "10000000", "500"], ["10000001", "-1"]),
    "threshold": ([], ["0.5"]),  # digits has no THRESHOLD step
}


@pytest.mark.parametrize("attr", sorted(SETTINGS))
def test_writable_setting(attr: str) -> None:
    """Good values are taken and read back; bad ones are EINVAL and keep the old value."""
    good, bad = SETTINGS[attr]
    old = _read("digits", attr)
    try:
        for value in good:
            _write("digits", attr, value + "\n")
            assert _read("digits", attr) == value + "\n"
        before = _read("digits", attr)
        for value in bad:
            assert _write_err("digits", attr, value) in (errno.EINVAL, errno.ERANGE), value
            assert _read("digits", attr) == before, value
    finally:
        if good:
            _write("digits", attr, old)


def test_topk_write_changes_results_and_sizes() -> None:
    old = _read("digits", "topk")
    try:
        _write("digits", "topk", "7")
        with pyflaxdev.open() as dev:
            model = dev.model("digits")
            assert model.info.topk == 7
            assert int(_read("digits", "result_size")) == 8 + 7 * 8
            assert len(model.infer(np.zeros((8, 8), np.uint8))) == 7
    finally:
        _write("digits", "topk", old)


def test_normalisation_write(
    heldout: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    """norm_mean/norm_std: exact read-back, wrong counts refused, new values used."""
    mean_old, std_old = _read("digits", "norm_mean"), _read("digits", "norm_std")
    means = np.array(mean_old.split(), dtype=np.float32)
    n = means.size
    assert n == 64
    # The module prints 9 significant digits: exact round trip.
    with pyflaxdev.open() as dev:
        norm = dev.normalization("digits")
    assert norm is not None
    np.testing.assert_array_equal(means, norm.mean)
    np.testing.assert_array_equal(np.array(std_old.split(), dtype=np.float32), norm.std)
    try:
        assert _write_err("digits", "norm_mean", " ".join(["0"] * (n - 1))) == errno.EINVAL
        assert _write_err("digits", "norm_std", " ".join(["0"] * n)) == errno.EINVAL
        assert _write_err("digits", "norm_std", " ".join(["nan"] * n)) == errno.EINVAL
        assert _read("digits", "norm_mean") == mean_old
        assert _read("digits", "norm_std") == std_old
        # A new mean shifts every normalised input: results follow.
        x = heldout[0][0]
        with pyflaxdev.open() as dev:
            model = dev.model("digits")
            before = model.infer(x)
            new_mean = np.full(n, 7.5, np.float32)
            _write("digits", "norm_mean", " ".join(repr(float(v)) for v in new_mean) + "\n")
            np.testing.assert_array_equal(
                np.array(_read("digits", "norm_mean").split(), dtype=np.float32), new_mean
            )
            after = model.infer(x)
        assert not np.array_equal(before.scores, after.scores)
    finally:
        _write("digits", "norm_mean", mean_old)
        _write("digits", "norm_std", std_old)


def test_labels_file_limits() -> None:
    """A sysfs labels write is one write(2) under a page; defects are EINVAL."""
    old = (_dir() / "labels").read_bytes()
    try:
        assert _write_err("digits", "labels", "a\n\nb\n") == errno.EINVAL
        assert _write_err("digits", "labels", "\n".join(str(i) for i in range(11))) == errno.E2BIG
        assert _write_err("digits", "labels", "x" * 128) == errno.EINVAL
        assert _write_err("digits", "labels", ("y" * 100 + "\n") * 41) == errno.E2BIG  # 4141 B
        assert (_dir() / "labels").read_bytes() == old
    finally:
        with pyflaxdev.open() as dev:
            dev.set_labels("digits", old.decode().splitlines())


def _stats() -> dict[str, int]:
    names = ["requests", "completed", "errors", "timeouts", "batches", "batched", "total_ns"]
    out = {n: int(_read("digits", n)) for n in names}
    out["batch_hist"] = sum(int(v) for v in _read("digits", "batch_hist").split())
    out["latency_hist"] = sum(int(v) for v in _read("digits", "latency_hist").split())
    return out


def test_statistics_add_up() -> None:
    """After a reset and a run of known size the counters agree with one another."""
    assert _write_err("digits", "requests", "1") == errno.EINVAL
    _write("digits", "completed", "0")  # any statistic: resets them all
    s = _stats()
    assert all(v == 0 for v in s.values()), s
    with pyflaxdev.open() as dev:
        model = dev.model("digits")
        for i in range(20):
            model.infer(np.full((8, 8), i % 17, np.uint8))
        with pytest.raises(pyflaxdev.InvalidArgument):
            model.infer_bytes(b"\0" * 63)  # refused before it is a request
    s = _stats()
    assert s["requests"] == 20 == s["completed"] + s["errors"] + s["timeouts"], s
    assert s["completed"] == 20 and s["latency_hist"] == 20, s
    assert s["batched"] == 20 and s["batch_hist"] == s["batches"] >= 1, s
    assert s["total_ns"] > 0
    assert int(_read("digits", "queued")) == 0 and int(_read("digits", "in_flight")) == 0
