"""`spikec simulate` feeds the model what it takes: stateful neurons reset per batch, samples batched along
the batch axis of the declared layout, the compiled input range recorded and warned about, and the right
default backends for an artifact."""

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

pytestmark = pytest.mark.core

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
SJ_MODEL = os.path.join(FIXTURES, "sj_model.py")
TINY = '{"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 8, "in_channels": 1, "T": 2}'
MODEL = ["--arch", "spikingformer-cifar", "--model-args", TINY]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _sj_source(activation_based: bool, weights=None):
    from spikec.frontends.torch import ModelSource

    return ModelSource(model=f"{SJ_MODEL}:build", model_args={"activation_based": activation_based},
                       weights=None if weights is None else str(weights), input_shape=(1, 3, 8, 8))


def _firing_sj_weights(path, activation_based: bool) -> None:
    """Weights for the spikingjelly fixture that make every neuron layer fire on inputs in [0, 1]."""
    from spikec.frontends.torch import load_model

    torch.manual_seed(0)
    model = load_model(_sj_source(activation_based)).module
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.mul_(4.0)
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_var.fill_(0.25)
    torch.save(model.state_dict(), path)


@pytest.mark.spikingjelly_legacy
@pytest.mark.parametrize("activation_based", [False, True])
def test_torch_backend_resets_spikingjelly_neurons_between_batches(tmp_path, activation_based):
    weights = tmp_path / "w.pt"
    _firing_sj_weights(weights, activation_based)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0, 1, (70, 3, 8, 8)).astype(np.float32))
    # 70 samples at the default batch size 64: the short last batch crashed on the stale [64, ...] state
    code, out, err = run("simulate", "--model", f"{SJ_MODEL}:build", "--model-args",
                         json.dumps({"activation_based": activation_based}), "--weights", weights,
                         "--input-shape", "1,3,8,8", "--backend", "torch,float", "--data", data, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["agreement"]["torch/float"] == 1.0
    assert _float_firing_rates(weights, activation_based, data) > 0.01


def _float_firing_rates(weights, activation_based, data) -> float:
    """The lowest firing rate of any neuron layer under the float interpreter (that the test's model fires)."""
    from spikec.frontends.torch import trace_source
    from spikec.simulation import float_runner

    _, traced = trace_source(_sj_source(activation_based, weights))
    _, spikes = float_runner(traced.graph)(np.load(data)["x"])
    return min(float(s.mean()) for _, s in spikes)


TIME_MAJOR_MODEL = """
import torch
from torch import nn
from spikec.nn import MultiStepLIF


class EventNet(nn.Module):
    \"\"\"Takes event frames time-major, [T, B, 1, 8, 8], as spikingjelly's DVS examples do.\"\"\"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.lif = MultiStepLIF(tau=2.0)
        self.head = nn.Linear(8, 10)
        with torch.no_grad():
            self.conv.weight.mul_(6.0)

    def forward(self, x):
        T, B = x.shape[:2]
        y = self.lif(self.conv(x.flatten(0, 1)).reshape(T, B, 8, 8, 8))
        return self.head(y.mean(0).mean((2, 3)))
"""


def _time_major_model(tmp_path):
    path = tmp_path / "event_net.py"
    path.write_text(TIME_MAJOR_MODEL)
    return ["--model", f"{path}:EventNet", "--input-layout", "TB", "--input-shape", "2,1,1,8,8"]


def _time_major_data(tmp_path, count=5, timesteps=2):
    rng = np.random.default_rng(1)
    path = tmp_path / "tb.npz"
    x = (rng.uniform(0, 1, (timesteps, count, 1, 8, 8)) < 0.3).astype(np.float32)
    np.savez(path, x=x, y=rng.integers(0, 10, count))
    return path


def test_time_major_data_is_batched_along_its_batch_axis(tmp_path):
    code, out, err = run("simulate", *_time_major_model(tmp_path), "--backend", "torch,float,intsim",
                         "--batch-size", "2", "--data", _time_major_data(tmp_path), "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["samples"] == 5
    assert report["agreement"]["torch/float"] == 1.0
    assert report["layers"][0]["agreement"]["float/intsim"] > 0.9


def test_time_major_data_stacked_sample_first_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "nt.npz"
    np.savez(path, x=np.zeros((5, 2, 1, 8, 8), np.float32))
    code, _, err = run("simulate", *_time_major_model(tmp_path), "--data", path)
    assert code == 2 and err.count("\n") == 1
    assert "takes [2, N, 1, 8, 8]" in err and "np.swapaxes(x, 0, 1)" in err


def test_input_range_is_compiled_recorded_and_clipping_is_reported(tmp_path):
    out_dir = tmp_path / "a"
    code, _, err = run("compile", *MODEL, "--input-range", "-1,1", "--input-exp", "8", "-o", out_dir)
    assert code == 0, err
    assert "input in [-1, 1] at 2**-8" in err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["quantization"]["input_range"] == [-1.0, 1.0]
    quantize = next(n for n in manifest["graph"]["nodes"] if n["op"] == "quantize")
    assert (quantize["attrs"]["lo"], quantize["attrs"]["hi"]) == (-256, 256)
    data = tmp_path / "d.npz"
    x = np.full((4, 1, 8, 8), 0.5, np.float32)
    x[0, 0, 0, :4] = [-3.0, 2.0, 1.0, -1.0]          # 2 of 256 values outside [-1, 1]
    np.savez(data, x=x)
    code, out, err = run("simulate", out_dir, "--data", data, "--format", "json")
    assert code == 0, err
    assert err.splitlines()[-1] == ("warning: 0.78% of the input values lie outside the compiled input range [-1, 1] "
                                    "and were clipped (data min -3, max 2); compile with --input-range LO,HI to "
                                    "cover them")
    assert json.loads(out)["input_clipping"]["clipped_fraction"] == 2 / 256


def test_data_inside_the_range_gives_no_warning(tmp_path):
    code, _, err = run("simulate", *MODEL, "--backend", "intsim", "--data", _image_data(tmp_path))
    assert code == 0 and "warning" not in err


def _image_data(tmp_path):
    path = tmp_path / "img.npz"
    np.savez(path, x=np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32))
    return path


def test_dvs_zoo_models_default_to_event_counts(tmp_path):
    dvs = '{"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 16, "T": 2}'
    code, _, err = run("compile", "--arch", "spikformer-dvs", "--model-args", dvs, "-o", tmp_path / "a")
    assert code == 0, err
    quantization = json.loads((tmp_path / "a" / "manifest.json").read_text())["quantization"]
    assert quantization["input_exp"] == 0 and quantization["input_range"] == [0.0, 255.0]


@pytest.mark.parametrize("value", ["1,0", "0", "a,b", "0,inf"])
def test_bad_input_ranges_exit_2(tmp_path, value):
    code, _, err = run("compile", *MODEL, "--input-range", value, "-o", tmp_path / "a")
    assert code == 2 and "--input-range" in err
    assert not (tmp_path / "a").exists()


def test_an_artifact_simulates_on_intsim_by_default(tmp_path):
    assert run("compile", *MODEL, "-o", tmp_path / "a")[0] == 0
    code, out, err = run("simulate", tmp_path / "a", "--data", _image_data(tmp_path), "--format", "json")
    assert code == 0, err
    assert list(json.loads(out)["backends"]) == ["intsim"]


def test_quantization_options_do_not_apply_to_an_artifact(tmp_path):
    assert run("compile", *MODEL, "-o", tmp_path / "a")[0] == 0
    code, _, err = run("simulate", tmp_path / "a", "--input-range", "-1,1", "--data", _image_data(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "is already compiled: --input-exp, --input-range" in err


def test_lava_on_a_checkpoint_says_what_lava_runs(tmp_path):
    code, _, err = run("simulate", *MODEL, "--backend", "lava", "--data", _image_data(tmp_path))
    assert code == 2
    assert err == ("spikec: error: the lava backend runs an artifact compiled with --target loihi2: run "
                   "`spikec compile MODEL --target loihi2 -o OUT`, then `spikec simulate OUT --backend lava`\n")


def test_without_lava_loihi2_compiles_and_the_lava_backend_says_how_to_install_it(tmp_path):
    """Lava is an extra: where it is missing (here an importable ``lava`` that fails as a missing one does),
    compile --target loihi2 still writes the whole artifact, and --backend lava is one line saying what to
    install, exit 2, before anything runs."""
    shim = tmp_path / "shim" / "lava"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'lava'\", name='lava')\n")
    env = {**os.environ, "PYTHONPATH": str(shim.parent)}
    out = tmp_path / "out"
    compiled = subprocess.run([sys.executable, "-m", "spikec", "compile", *MODEL, "--target", "loihi2", "-o",
                               str(out)], env=env, capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    assert (out / "lava_net.py").is_file()
    result = subprocess.run([sys.executable, "-m", "spikec", "simulate", str(out), "--backend", "lava", "--compare",
                             "intsim", "--data", str(_image_data(tmp_path))], env=env, capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (
        2, "spikec: error: the lava backend needs lava, which is not installed: pip install 'spikec[lava]' "
           "(lava-nc 0.10.0 runs on Python 3.10)\n")


@pytest.mark.slow
def test_without_the_interop_extra_onnx_export_and_onnxruntime_say_how_to_install_them(tmp_path):
    """onnx and onnxruntime come with spikec[interop]: where they are missing (importable packages that fail as
    missing ones do), compile still works, and the ONNX export and the onnxruntime backend are one line each."""
    for package in ("onnx", "onnxruntime"):
        shim = tmp_path / "shim" / package
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{package}'\", "
                                          f"name='{package}')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shim")}
    out = tmp_path / "out"
    compiled = subprocess.run([sys.executable, "-m", "spikec", "compile", *MODEL, "-o", str(out)], env=env,
                              capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    exported = subprocess.run([sys.executable, "-m", "spikec", "export", str(out), "--to", "onnx", "-o",
                               str(tmp_path / "m.onnx")], env=env, capture_output=True, text=True)
    assert (exported.returncode, exported.stderr) == (
        2, "spikec: error: ONNX export and ONNX files need the onnx package, which is not installed: "
           "pip install 'spikec[interop]'\n")
    assert not (tmp_path / "m.onnx").exists()
    result = subprocess.run([sys.executable, "-m", "spikec", "simulate", str(out), "--backend", "onnxruntime",
                             "--data", str(_image_data(tmp_path))], env=env, capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (
        2, "spikec: error: the onnxruntime backend needs onnxruntime, which is not installed: "
           "pip install 'spikec[interop]'\n")


def test_debug_is_accepted_after_the_subcommand():
    code, _, err = run("inspect", "--arch", "no-such-arch", "--debug")
    assert code == 2
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("spikec: error: unknown zoo architecture 'no-such-arch'; known: ")


def test_python_dash_m_spikec_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "spikec", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "spikec, version 0.1.0\n"
