"""Bad inputs found by an adversarial run: each gets exit code 2 and one line, with no traceback and nothing
written, where it used to run (exit 0 with a wrong result), hang, or fail with an internal error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from spikec.cli import main
from spikec.models import build_model

pytestmark = pytest.mark.core

CONFIG = {"depth": 1, "embed_dim": 16, "num_heads": 2, "img_size": 8, "in_channels": 1, "T": 2}
ARCH = "spikingformer-cifar"


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _one_line_exit_2(tmp_path, *args, expect: str) -> None:
    before = sorted(os.listdir(tmp_path))
    code, _, err = run(*args)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expect in err, err
    assert sorted(os.listdir(tmp_path)) == before


def _checkpoint(tmp_path, **changes):
    """A zoo checkpoint dict, with some of its entries (or state_dict tensors) replaced."""
    state = build_model(ARCH, CONFIG).state_dict()
    state.update(changes.pop("tensors", {}))
    payload = {"arch": ARCH, "config": dict(CONFIG), "state_dict": state, **changes}
    path = tmp_path / "ckpt.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("config, expect", [
    ({"T": 0}, "option 'T' must be a positive integer, got 0"),
    ({"T": -1}, "option 'T' must be a positive integer, got -1"),
    ({"T": 2.5}, "option 'T' must be a positive integer, got 2.5"),
    ({"T": True}, "option 'T' must be a positive integer, got True"),
    ({"T": torch.tensor(2)}, "option 'T' must be a number, string or boolean, got Tensor"),
    ({"embed_dim": float("inf")}, "option 'embed_dim' must be finite"),
])
def test_bad_checkpoint_configs(tmp_path, config, expect):
    path = _checkpoint(tmp_path, config={**CONFIG, **config})
    _one_line_exit_2(tmp_path, "inspect", path, expect=expect)


@pytest.mark.parametrize("entry, expect", [
    ({"timesteps": True}, "timesteps must be a positive integer, got True"),
    ({"timesteps": 1.5}, "timesteps must be a positive integer, got 1.5"),
    ({"timesteps": "4"}, "timesteps must be a positive integer, got '4'"),
    ({"input_shape": {"a": 1}}, "'input_shape' must be a list of positive integers, got dict"),
    ({"input_shape": 3.0}, "'input_shape' must be a list of positive integers, got float"),
    ({"input_shape": [1, -1, 8, 8]}, "'input_shape' dimension must be a positive integer, got -1"),
])
def test_bad_checkpoint_entries(tmp_path, entry, expect):
    _one_line_exit_2(tmp_path, "inspect", _checkpoint(tmp_path, **entry), expect=expect)


KEY = "patch_embed.block0_conv.weight"


@pytest.mark.parametrize("tensor, expect", [
    (lambda w: w.to(torch.complex64), "has dtype complex64; the model needs floating-point values there"),
    (lambda w: w > 0, "has dtype bool; the model needs floating-point values there"),
    (lambda w: w.to(torch.int64), "has dtype int64; the model needs floating-point values there"),
    (lambda w: w.to(torch.uint8), "has dtype uint8; the model needs floating-point values there"),
    (lambda w: w.fill_(float("nan")), "holds NaN or infinite values"),
    (lambda w: w.to_sparse(), "is a torch.sparse_coo tensor; save dense tensors"),
])
def test_bad_state_dict_tensors(tmp_path, tensor, expect):
    weight = build_model(ARCH, CONFIG).state_dict()[KEY].clone()
    path = _checkpoint(tmp_path, tensors={KEY: tensor(weight)})
    _one_line_exit_2(tmp_path, "inspect", path, expect=f"{KEY} {expect}")


def test_a_non_string_state_dict_key(tmp_path):
    state = {**build_model(ARCH, CONFIG).state_dict(), 7: torch.zeros(1)}
    path = tmp_path / "ckpt.pt"
    torch.save({"arch": ARCH, "config": CONFIG, "state_dict": state}, path)
    _one_line_exit_2(tmp_path, "inspect", path, expect="the state_dict has non-string key(s) such as 7")


@pytest.mark.parametrize("text, expect", [
    ('{"depth": Infinity}', "--model-args holds Infinity; options must be finite numbers"),
    ('{"depth": NaN}', "--model-args holds NaN"),
    ('{"a": ' * 5000 + "1" + "}" * 5000, "--model-args is nested too deeply"),
])
def test_bad_model_args(tmp_path, text, expect):
    _one_line_exit_2(tmp_path, "inspect", "--arch", ARCH, "--model-args", text, expect=expect)


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


X = np.zeros((3, 1, 8, 8), np.float32)


@pytest.mark.parametrize("arrays, expect", [
    ({"x": np.where(np.arange(192).reshape(3, 1, 8, 8) == 5, np.nan, 0.0)}, "holds 1 NaN or infinite value(s)"),
    ({"x": np.full((3, 1, 8, 8), np.inf)}, "holds 192 NaN or infinite value(s)"),
    ({"x": X.astype(np.complex64)}, "'x' has dtype complex64; inputs must be real numbers"),
    ({"x": X, "y": np.array(["a", "b", "c"])}, "'y' has dtype <U1; labels must be integer class indices"),
    ({"x": X, "y": np.array([0.5, 1, 2])}, "'y' has dtype float64; labels must be integer class indices"),
])
def test_bad_data_files(tmp_path, arrays, expect):
    path = _npz(tmp_path, **arrays)
    _one_line_exit_2(tmp_path, "simulate", "--arch", ARCH, "--model-args", json.dumps(CONFIG), "--data", path,
                     expect=expect)


@pytest.mark.parametrize("role", ["data", "checkpoint"])
def test_a_fifo_is_refused_instead_of_hanging(tmp_path, role):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    args = (["simulate", "--arch", ARCH, "--model-args", json.dumps(CONFIG), "--data", fifo] if role == "data"
            else ["inspect", fifo])
    _one_line_exit_2(tmp_path, *args, expect="is not a regular file (a pipe, socket or device)")


def test_a_device_is_refused_instead_of_read_without_bound(tmp_path):
    code, _, err = run("simulate", "--arch", ARCH, "--model-args", json.dumps(CONFIG), "--data", "/dev/zero")
    assert code == 2 and err == ("spikec: error: /dev/zero is not a regular file (a pipe, socket or device); "
                                 "spikec reads an .npz file from a regular file\n")


def test_zoo_models_never_import_spikingjelly(tmp_path):
    """spikingjelly's import swallows a Ctrl-C (an ``except BaseException`` in lava_exchange.py): a model that
    does not use it must not import it."""
    script = ("import sys\nfrom click.testing import CliRunner\nfrom spikec.cli import main\n"
              f"r = CliRunner().invoke(main, ['compile', '--arch', {ARCH!r}, '--model-args', {json.dumps(CONFIG)!r}, "
              f"'-o', {str(tmp_path / 'out')!r}])\n"
              "assert r.exit_code == 0, r.stderr\nprint('spikingjelly' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


MODEL_CODE = """
import sys
import torch
from torch import nn
from spikec.nn import MultiStepLIF


class Net(nn.Module):
    def __init__(self, mode="ok"):
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.lif = MultiStepLIF()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        if self.mode == "exit":
            sys.exit(0)
        y = self.lif(self.conv(x).unsqueeze(0).repeat(2, 1, 1, 1, 1))
        if self.mode == "item" and y.sum().item() > 3:
            y = y * 2
        return self.head(y.mean(0).mean((2, 3)))
"""


@pytest.mark.parametrize("mode, expect", [
    ("exit", "the model called sys.exit(0) while running on an input of shape [1, 1, 8, 8]"),
    ("item", "Tensor.item reads a traced value into Python (data-dependent control flow)"),
])
def test_models_that_exit_or_branch_on_data_are_reported(tmp_path, mode, expect):
    (tmp_path / "net.py").write_text(MODEL_CODE)
    code, _, err = run("verify", "--spike-driven", "--model", f"{tmp_path / 'net.py'}:Net", "--model-args",
                       json.dumps({"mode": mode}), "--input-shape", "1,1,8,8")
    assert code == 2 and expect in err and "Traceback" not in err, err


def test_a_model_file_that_exits_on_import_is_reported(tmp_path):
    (tmp_path / "bye.py").write_text("import sys\nsys.exit(0)\n")
    _one_line_exit_2(tmp_path, "inspect", "--model", f"{tmp_path / 'bye.py'}:Net", "--input-shape", "1,1,8,8",
                     expect="importing")


@pytest.mark.parametrize("args, expect", [
    (["verify", "--spike-driven", "--arch", ARCH, "--observe", "1000000000"],
     "spikec verify: Invalid value for '--observe': 1000000000 is not in the range 0<=x<=100000."),
    (["compile", "--arch", ARCH], "spikec compile: Missing option '-o' / '--output'."),
    (["simulate", "--batch-size", "0"], "spikec simulate: Invalid value for '--batch-size'"),
    (["no-such-command"], "spikec: No such command 'no-such-command'."),
])
def test_usage_errors_are_one_line(tmp_path, args, expect):
    _one_line_exit_2(tmp_path, *args, expect=expect)


def test_a_simulation_that_cannot_fit_in_memory_is_refused_before_allocating(tmp_path):
    data = _npz(tmp_path, x=np.zeros((64, 1, 8, 8), np.float32))
    config = json.dumps({**CONFIG, "T": 6000})     # about 290 MiB a sample: 64 at once exceed 8 GiB
    # --calibrate 0: calibrating on 64 inputs of 6000 steps would take most of a minute before the check
    code, _, err = run("simulate", "--arch", ARCH, "--model-args", config, "--backend", "intsim", "--data", data,
                       "--calibrate", "0")
    assert code == 2 and err.count("\n") == 1, err
    assert "simulating 64 sample(s) at once needs about" in err and "more than the 8 GiB budget" in err
    assert err.rstrip().endswith("use --batch-size 28 or less")


LIMITATION_CODE = """
import torch
from torch import nn
from spikec.nn import MultiStepLIF


class Net(nn.Module):
    def __init__(self, limitation):
        super().__init__()
        self.limitation = limitation
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.lif = MultiStepLIF(v_reset=None if limitation == "soft" else 0.5 if limitation == "reset" else 0.0)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y = self.lif(self.conv(x).unsqueeze(0).repeat(2, 1, 1, 1, 1))
        if self.limitation == "avgpool":
            y = self.pool(y.flatten(0, 1)).reshape(2, y.shape[1], 4, 4, 4)
        return self.head(y.mean(0).mean((2, 3)))
"""


@pytest.mark.parametrize("limitation, expect", [
    ("soft", "resets soft (v_reset=None); Lava's LIF resets to 0: spikec supports hard-reset neurons"),
    ("reset", "resets to 0.5; Lava's LIF resets to 0"),
    ("avgpool", "avgpool cannot be quantized (average pooling is not supported yet)"),
])
def test_known_limitations_are_bad_input_not_internal_errors(tmp_path, limitation, expect):
    (tmp_path / "net.py").write_text(LIMITATION_CODE)
    _one_line_exit_2(tmp_path, "compile", "--model", f"{tmp_path / 'net.py'}:Net", "--model-args",
                     json.dumps({"limitation": limitation}), "--input-shape", "1,1,8,8", "-o", tmp_path / "out",
                     expect=expect)


BN = "patch_embed.block0_bn"


@pytest.mark.parametrize("name, value, expect", [
    ("running_var", -1.0, "its running_var holds -1, but a variance is never negative"),
    ("weight", 1e30, "no choice of scales avoids it"),
])
def test_impossible_statistics_and_magnitudes_are_bad_input(tmp_path, name, value, expect):
    # A negative variance (the fold would take its square root) and a batch-norm gain of 1e30 (every scale
    # overflows Loihi's integers): the compile names the layer and stops, exit 2.
    state = build_model(ARCH, CONFIG).state_dict()
    tensor = state[f"{BN}.{name}"].clone()
    tensor[0] = value
    path = _checkpoint(tmp_path, tensors={f"{BN}.{name}": tensor})
    _one_line_exit_2(tmp_path, "compile", path, "-o", tmp_path / "out", expect=expect)


def test_a_model_without_a_neuron_is_not_compiled(tmp_path):
    (tmp_path / "plain.py").write_text("from torch import nn\n\nclass Plain(nn.Module):\n    def __init__(self):\n"
                                       "        super().__init__()\n        self.fc = nn.Linear(4, 3)\n\n"
                                       "    def forward(self, x):\n        return self.fc(x)\n")
    _one_line_exit_2(tmp_path, "compile", "--model", f"{tmp_path / 'plain.py'}:Plain", "--input-shape", "1,4",
                     "-o", tmp_path / "out", expect="Plain has no spiking neuron (LIF or IF)")


def _retampered(path, edit) -> None:
    """Edit model.ir's bytes and record their new digest, as a deliberate tamperer would."""
    import hashlib

    data = edit((path / "model.ir").read_bytes())
    (path / "model.ir").write_bytes(data)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["digests"]["model.ir"] = hashlib.sha256(data).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit, expect", [
    (lambda ir: ir.replace(b"{T = 2}", b"{T = " + b"9" * 5000 + b"}", 1), "an integer beyond 64 bits (at '999"),
    (lambda ir: ir.replace(b"graph @", b"graph @\xff", 1), "model.ir is not UTF-8 text (byte 7)"),
    (lambda ir: ir.replace(b"stride = [1, 1]", b"stride = " + b"[" * 5000 + b"]" * 5000, 1),
     "attribute lists nested deeper than 16"),
])
def test_a_retampered_model_ir_is_refused(tmp_path, edit, expect):
    art = tmp_path / "art"
    code, _, err = run("compile", "--arch", ARCH, "--model-args", json.dumps(CONFIG), "-o", art)
    assert code == 0, err
    _retampered(art, edit)
    _one_line_exit_2(tmp_path, "simulate", art, "--backend", "intsim", "--limit", 1, expect=expect)


@pytest.mark.parametrize("extra, expect", [
    (("--input-shape", "1,1,100000,100000", "-o", "out"), "an input of shape [1, 1, 100000, 100000] takes 37.3 GiB"),
    (("-o", "/proc/self/spikec-out"), "cannot write into /proc/self"),
])
def test_inputs_and_outputs_that_cannot_exist_are_refused(tmp_path, monkeypatch, extra, expect):
    # An input shape whose example tensor alone exceeds the memory budget is refused before it is allocated; an
    # output under a directory that takes no new entries is refused when the staging directory cannot be made.
    monkeypatch.chdir(tmp_path)
    _one_line_exit_2(tmp_path, "compile", "--arch", ARCH, "--model-args", json.dumps(CONFIG), *extra, expect=expect)


def test_an_infinite_time_constant_is_bad_input(tmp_path):
    # tau = inf used to end in 'math domain error' (exit 3) while choosing the neuron's scale.
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\nfrom spikec.nn import MultiStepLIF\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 8)\n"
        "        self.lif = MultiStepLIF(float('inf'))\n        self.head = nn.Linear(8, 3)\n\n"
        "    def forward(self, x):\n        return self.head(self.lif(self.fc(x.unsqueeze(0).repeat(2, 1, 1))).mean(0))\n")
    _one_line_exit_2(tmp_path, "compile", "--model", f"{tmp_path / 'net.py'}:Net", "--input-shape", "1,4", "-o",
                     tmp_path / "out", expect="has tau inf and threshold 1.0: both must be finite")
