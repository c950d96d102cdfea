"""Client-side errors, messages and errno mapping, without the device.

Nothing here needs /dev/flax: these use missing paths, plain files and
/dev/null.  Everything that needs the module runs in the VM suite (tests/vm).
"""

from __future__ import annotations

import errno
import pickle

import numpy as np
import pytest

import pyflaxdev
from pyflaxdev import cli
from pyflaxdev.errors import (
    ERRNO_CLASSES,
    AbiMismatch,
    BufferTooSmall,
    DeviceNotFound,
    FlaxError,
    InvalidArgument,
    ModelNotFound,
    NotAFlaxDevice,
    check,
    errno_name,
    error_for,
)
from pyflaxdev.model import Model
from pyflaxdev.spec import ModelInfo, TensorSpec

DIGITS_INFO = ModelInfo(
    id=1,
    name="digits",
    input=TensorSpec((8, 8), np.dtype(np.uint8)),
    output=TensorSpec((10,), np.dtype(np.float32)),
    pre_op="normalize",
    norm_count=64,
    norm_scale=1 / 16,
    post=("softmax", "topk"),
    topk=3,
    nslots=16,
    timeout_ms=1000,
    result_size=32,
)


@pytest.fixture
def plain_device(tmp_path):
    """A Device on a regular file: every ioctl fails with ENOTTY."""
    path = tmp_path / "notflax"
    path.write_bytes(b"")
    with pyflaxdev.open(path) as dev:
        yield dev


# -- opening the device --------------------------------------------------------


def test_open_missing_device_names_the_path(tmp_path):
    path = str(tmp_path / "no" / "flax")
    with pytest.raises(DeviceNotFound) as info:
        pyflaxdev.open(path)
    exc = info.value
    assert isinstance(exc, FileNotFoundError)
    assert isinstance(exc, FlaxError)
    assert exc.errno == errno.ENOENT
    assert exc.filename == path
    assert path in str(exc)
    assert "(ENOENT)" in str(exc)
    assert "module loaded" in str(exc)


def test_open_default_path_honours_environment(tmp_path, monkeypatch):
    path = str(tmp_path / "elsewhere")
    monkeypatch.setenv("FLAXDEV_DEVICE", path)
    with pytest.raises(DeviceNotFound, match="elsewhere"):
        pyflaxdev.open()


def test_missing_model_node_beside_a_control_node_is_model_not_found(tmp_path, monkeypatch):
    (tmp_path / "control").write_bytes(b"")
    monkeypatch.setenv("FLAXDEV_DEVICE", str(tmp_path / "control"))
    assert pyflaxdev.model_path("nope") == str(tmp_path / "nope")
    with pytest.raises(pyflaxdev.ModelNotFound) as info:
        pyflaxdev.open_model("nope")
    assert str(info.value) == "model 'nope' not found (ENOENT)"
    assert info.value.filename == str(tmp_path / "nope")
    with pytest.raises(pyflaxdev.InvalidArgument, match="not a model name"):
        pyflaxdev.model_path("control")


def test_open_directory_is_a_flax_error(tmp_path):
    with pytest.raises(FlaxError) as info:
        pyflaxdev.open(tmp_path)
    assert info.value.errno == errno.EISDIR
    assert str(tmp_path) in str(info.value)


def test_device_is_a_fileio_context_manager(plain_device):
    assert plain_device.fileno() >= 0
    assert plain_device.readable()
    assert plain_device.writable()
    assert "notflax" in repr(plain_device)
    plain_device.close()
    assert plain_device.closed


def test_ioctl_on_a_non_flax_file_is_enotty(plain_device):
    with pytest.raises(NotAFlaxDevice) as info:
        plain_device.info()
    assert info.value.errno == errno.ENOTTY
    assert "notflax" in str(info.value)
    assert "INFO" in str(info.value)


def test_ioctl_on_dev_null_is_enotty():
    with pyflaxdev.open("/dev/null") as dev, pytest.raises(NotAFlaxDevice, match="/dev/null"):
        dev.model("digits")


# -- errno mapping --------------------------------------------------------------


@pytest.mark.parametrize(("code", "cls"), sorted(ERRNO_CLASSES.items()))
def test_errno_maps_to_class(code, cls):
    exc = error_for(code, "INFER", {"model": "digits", "timeout_ms": 5, "needed": 8, "have": 4})
    assert isinstance(exc, cls)
    assert isinstance(exc, OSError)
    assert exc.errno == code
    assert str(exc).endswith(f"({errno_name(code)})")


def test_builtin_oserror_families():
    assert isinstance(error_for(errno.ETIMEDOUT, "INFER"), TimeoutError)
    assert isinstance(error_for(errno.ENOENT, "MODEL_GET"), FileNotFoundError)
    assert isinstance(error_for(errno.EEXIST, "MODEL_CREATE"), FileExistsError)
    assert isinstance(error_for(errno.EINTR, "INFER"), InterruptedError)
    assert isinstance(error_for(errno.EACCES, "INFO"), PermissionError)
    assert isinstance(error_for(errno.EINVAL, "INFER"), ValueError)


def test_messages_name_what_was_wrong():
    assert str(error_for(errno.ENOENT, "MODEL_GET", {"model": "nope"})) == (
        "model 'nope' not found (ENOENT)"
    )
    assert str(error_for(errno.EEXIST, "MODEL_CREATE", {"model": "d"})) == (
        "model 'd' already exists (EEXIST)"
    )
    msg = str(error_for(errno.ETIMEDOUT, "INFER", {"model": "digits", "timeout_ms": 250}))
    assert "'digits'" in msg
    assert "250 ms" in msg
    assert msg.endswith("(ETIMEDOUT)")
    too_small = error_for(errno.ENOSPC, "INFER", {"model": "d", "needed": 32, "have": 8})
    assert isinstance(too_small, BufferTooSmall)
    assert too_small.needed == 32
    assert "needs 32 bytes" in str(too_small)
    assert isinstance(error_for(errno.E2BIG, "FETCH"), AbiMismatch)


def test_unknown_errno_is_a_plain_flax_error():
    exc = error_for(errno.EXDEV, "FETCH", {"model": "m"})
    assert type(exc) is FlaxError
    assert exc.errno == errno.EXDEV
    assert "FETCH on model 'm' failed" in str(exc)
    assert str(exc).endswith("(EXDEV)")


def test_check_passes_results_through():
    assert check(0, "INFO") == 0
    assert check(7, "INFO") == 7
    with pytest.raises(InvalidArgument):
        check(-errno.EINVAL, "INFER")


def test_errors_pickle():
    exc = error_for(errno.ENOENT, "MODEL_GET", {"model": "nope", "path": "/dev/flax"})
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is ModelNotFound
    assert str(back) == str(exc)
    assert back.errno == errno.ENOENT
    assert back.filename == "/dev/flax"


# -- input and description checks (before any ioctl) --------------------------------


@pytest.fixture
def digits_model(plain_device):
    return Model(plain_device, DIGITS_INFO)


def test_input_byte_count_message(digits_model):
    with pytest.raises(InvalidArgument) as info:
        digits_model.infer(b"\0" * 100)
    assert str(info.value) == "input for 'digits' must be 64 bytes (uint8 [8, 8]), got 100"
    assert info.value.errno == errno.EINVAL


def test_input_dtype_message(digits_model):
    with pytest.raises(InvalidArgument, match=r"must be uint8 \[8, 8\], got float64 \[8, 8\]"):
        digits_model.infer(np.zeros((8, 8)))


def test_input_shape_message(digits_model):
    with pytest.raises(InvalidArgument, match=r"must be uint8 \[8, 8\], got uint8 \[4, 16\]"):
        digits_model.infer(np.zeros((4, 16), np.uint8))


def test_input_range_message(digits_model):
    with pytest.raises(InvalidArgument, match="outside uint8 range"):
        digits_model.infer([[300] * 8] * 8)


def test_valid_inputs_reach_the_ioctl(digits_model):
    # passes the checks, so the (non-flax) file answers ENOTTY
    for x in (np.zeros((8, 8), np.uint8), np.zeros(64, np.uint8), [[1] * 8] * 8, bytes(64)):
        with pytest.raises(NotAFlaxDevice):
            digits_model.infer(x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "model name 'bad name'"),
        ({"name": "x" * 32}, "1 to 31 characters"),
        ({"input_shape": (1, 1, 1, 1, 1, 1, 1)}, "1 to 6 dimensions"),
        ({"input_shape": (8, 0)}, "must be positive"),
        ({"input_dtype": np.int64}, "must be one of uint8, float32"),
        ({"topk": 11}, "topk for 'm' must be 1 to 10"),
        ({"post": ("softmax", "argsort")}, "unknown post op"),
        ({"post": ("topk", "softmax")}, "cannot follow \\['topk'\\]"),
        ({"normalize": (1.0, [0.0] * 3, [1.0] * 3)}, "must be one of \\[1, 8, 64\\]"),
        ({"normalize": (1.0, [0.0], [0.0])}, "every std must be finite and > 0"),
        ({"normalize": (1.0, [0.0, 1.0], [1.0])}, "2 means but 1 stds"),
    ],
)
def test_create_checks(plain_device, kwargs, message):
    args = {"name": "m", "input_shape": (8, 8), "input_dtype": np.uint8, "output_shape": (10,)}
    args.update(kwargs)
    with pytest.raises(InvalidArgument, match=message):
        plain_device.create_model(**args)


def test_create_without_checks_reaches_the_module(plain_device):
    with pytest.raises(NotAFlaxDevice):
        plain_device.create_model("bad name", (8, 8), np.uint8, (10,), topk=99, validate=False)


def test_model_name_too_long_for_lookup(plain_device):
    with pytest.raises(InvalidArgument, match="longer than 31"):
        plain_device.model("x" * 40)


# -- the CLI ----------------------------------------------------------------------------


def test_cli_missing_device(capsys, tmp_path):
    code = cli.main(["--device", str(tmp_path / "flax"), "infer", "digits", "--heldout", "0"])
    assert code == 1
    assert "no such device" in capsys.readouterr().err


def test_cli_status(tmp_path, monkeypatch, capsys):
    d = tmp_path / "sys" / "models" / "digits"
    d.mkdir(parents=True)
    for k, v in {
        "id": "1",
        "input_shape": "8 8",
        "input_dtype": "uint8",
        "workers": "1",
        "requests": "42",
        "errors": "0",
    }.items():
        (d / k).write_text(v + "\n")
    monkeypatch.setenv("FLAXDEV_SYSFS", str(tmp_path / "sys"))
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["NAME", "ID", "INPUT"]
    assert out[1].split()[:4] == ["digits", "1", "uint8", "8"]
    assert cli.main(["status", "--json"]) == 0
    assert '"requests": 42' in capsys.readouterr().out


def test_cli_status_without_module(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLAXDEV_SYSFS", str(tmp_path / "nothing"))
    assert cli.main(["status"]) == 1
    assert "is the flaxdev module loaded" in capsys.readouterr().err


def test_cli_vm_needs_a_command(capsys):
    assert cli.main(["vm"]) == 1
    assert "no command given" in capsys.readouterr().err


def test_cli_vm_runner_command(tmp_path):
    from pyflaxdev.commands import vm

    (tmp_path / "kbuild").mkdir()
    (tmp_path / "kbuild" / "vm-run").write_text("")
    argv = vm.runner_command(["--", "pytest", "-x"], repo=tmp_path)
    assert argv == ["bash", str(tmp_path / "kbuild" / "vm-run"), "--", "pytest", "-x"]
