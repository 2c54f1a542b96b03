"""Loading the user's model (docs/design.md, §2): checkpoint dicts from the zoo, official-style state dicts, the
user's own code with spikingjelly neurons built for CuPy, and one clear line for every kind of bad input."""

from __future__ import annotations

import argparse
import os
import re

import pytest
import torch

from conftest import randomize_batchnorm, small_config, small_input, small_model
from spikec.backends.float.interpreter import run_float
from spikec.errors import InputError
from spikec.frontends.torch import ModelSource, load_model, trace_module, trace_source

pytestmark = pytest.mark.core

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
SJ_MODEL = os.path.join(FIXTURES, "sj_model.py")


def _save_zoo_checkpoint(path, arch="spikingformer-cifar", **extra):
    model = small_model(arch)
    torch.save({"arch": arch, "config": small_config(arch), "state_dict": model.state_dict(), **extra}, path)
    return model


def test_zoo_checkpoint_loads_and_traces_to_the_same_function(tmp_path):
    path = tmp_path / "ckpt.pt"
    model = _save_zoo_checkpoint(path, input_shape=[3, 3, 32, 32])
    loaded, traced = trace_source(ModelSource(checkpoint=str(path)))
    assert loaded.input_shape == (3, 3, 32, 32) and loaded.name == "spikingformer_cifar"
    x = small_input("spikingformer-cifar", batch=2)
    assert torch.equal(run_float(traced.graph, [x]).outputs[0], model(x))


def test_checkpoint_timesteps_set_the_zoo_models_T(tmp_path):
    path = tmp_path / "ckpt.pt"
    _save_zoo_checkpoint(path, timesteps=3)
    _, traced = trace_source(ModelSource(checkpoint=str(path)))
    assert traced.graph.nodes[1].attrs["T"] == 3


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    lambda sd: {"model": sd, "epoch": 3},
    lambda sd: {"epoch": 299, "arch": "Spikingformer", "state_dict": sd, "version": 2, "metric": 91.2,
                "args": argparse.Namespace(lr=0.001, model="Spikingformer", T=4)},
])
def test_official_style_state_dicts_load_into_the_zoo(tmp_path, wrap):
    arch = "spikingformer-cifar"
    source_model = small_model(arch, seed=1)
    torch.save(wrap(source_model.state_dict()), tmp_path / "w.pth.tar")
    loaded = load_model(ModelSource(arch=arch, model_args=small_config(arch), weights=str(tmp_path / "w.pth.tar")))
    x = small_input(arch)
    assert torch.equal(loaded.module.eval()(x), source_model(x))


@pytest.mark.spikingjelly_legacy
def test_spikingjelly_model_built_for_cupy_traces_exactly():
    from spikingjelly.clock_driven import functional

    for activation_based in (False, True):
        loaded = load_model(ModelSource(model=f"{SJ_MODEL}:build", input_shape=(2, 3, 8, 8),
                                        model_args={"activation_based": activation_based}))
        module = randomize_batchnorm(loaded.module)
        graph = trace_module(module, torch.rand(loaded.input_shape)).graph
        x = torch.rand(4, 3, 8, 8) * 3
        functional.reset_net(module)
        with torch.no_grad():
            expected = module(x)
        assert torch.equal(run_float(graph, [x]).outputs[0], expected)
        assert sum(n.op == "lif" for n in graph.nodes) == 5


RESFORMER_LIKE = os.path.join(FIXTURES, "resformer_like", "model.py")


@pytest.mark.spikingjelly_legacy
def test_a_file_of_a_package_loads_with_its_relative_imports_and_its_neuron_subclasses_trace_exactly():
    # SpikingResformer's layout: models/spikingresformer.py does `from .submodules.layers import LIF`, and LIF is
    # a subclass of activation_based.LIFNode built for CuPy that only fixes the base class's arguments.
    loaded = load_model(ModelSource(model=f"{RESFORMER_LIKE}:TinyResformer", input_shape=(2, 1, 6, 6)))
    module = randomize_batchnorm(loaded.module)
    graph = trace_module(module, torch.rand(loaded.input_shape)).graph
    assert sum(n.op == "lif" for n in graph.nodes) == 2 and type(module.act).__name__ == "LIF"
    assert module.act.backend == "torch"                # built for CuPy, constructed for the CPU
    x = torch.rand(4, 1, 6, 6) * 3
    with torch.no_grad():
        expected = module(x)
    run = run_float(graph, [x], keep_values=True)
    assert torch.equal(run.outputs[0], expected)
    assert all(run.of(n).mean() > 0.01 for n in graph.nodes if n.op == "lif")     # both neuron layers fire


@pytest.mark.spikingjelly_legacy
def test_a_neuron_subclass_that_changes_the_dynamics_is_refused_by_name():
    message = _error(ModelSource(model=f"{RESFORMER_LIKE}:TinyResformer", input_shape=(1, 1, 6, 6),
                                 model_args={"neuron": "leaky"}))
    assert "LeakyCharge subclasses spikingjelly.activation_based.neuron.LIFNode and overrides neuronal_charge" in message


def test_a_model_file_imports_from_the_working_directory(tmp_path, monkeypatch):
    # SDT V1 run from its repository's root: model/spikeformer.py does `from module import *`, module/ at the root
    (tmp_path / "module").mkdir()
    (tmp_path / "module" / "__init__.py").write_text("from spikec.nn import MultiStepLIF\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "net.py").write_text(
        "import torch\nfrom torch import nn\nfrom module import MultiStepLIF\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 3)\n"
        "        self.lif = MultiStepLIF(tau=2.0)\n\n"
        "    def forward(self, x):\n        return self.lif(self.fc(x).unsqueeze(0)).mean(0)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    loaded = load_model(ModelSource(model="model/net.py:Net", input_shape=(1, 4)))
    assert type(loaded.module.lif).__name__ == "MultiStepLIF"


def _error(source: ModelSource) -> str:
    with pytest.raises(InputError) as info:
        trace_source(source)
    return str(info.value)


def test_missing_file(tmp_path):
    assert _error(ModelSource(checkpoint=str(tmp_path / "nope.pt"))) == f"{tmp_path / 'nope.pt'}: no such file"


def test_non_torch_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    assert _error(ModelSource(checkpoint=str(path))) == \
        f"{path} is not a PyTorch checkpoint (torch.load cannot read it: UnpicklingError)"


def test_truncated_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    _save_zoo_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _error(ModelSource(checkpoint=str(path))) == \
        f"{path} is a truncated or damaged PyTorch archive; save it again"


def test_state_dict_that_does_not_fit(tmp_path):
    path = tmp_path / "ckpt.pt"
    _save_zoo_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["embed_dim"] = 32
    torch.save(payload, path)
    message = _error(ModelSource(checkpoint=str(path)))
    assert message.startswith(f"{path} does not fit Spikingformer: ")
    assert "wrong shape: patch_embed.block0_conv.weight [8, 3, 3, 3] vs [4, 3, 3, 3]" in message


def test_state_dict_without_arch_says_what_to_pass(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(small_model("spikingformer-cifar").state_dict(), path)
    assert _error(ModelSource(checkpoint=str(path))) == (
        f"{path} is a state_dict without an 'arch': pass the model's code with --model FILE.py:NAME "
        "(and this file with --weights), or --arch NAME --weights FILE")


def test_pickled_module_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(small_model("spikingformer-cifar"), path)
    assert _error(ModelSource(checkpoint=str(path))) == (
        f"{path} pickles Python objects (spikec.models.spikingformer.Spikingformer); loading it would run code "
        "from the file. Save a checkpoint dict {arch, config, state_dict} instead, or pass --allow-pickle "
        "if you trust the file")
    assert _error(ModelSource(checkpoint=str(path), allow_pickle=True)) == (
        f"the input shape of {path} is unknown: pass --input-shape, e.g. 1,3,32,32")
    loaded, _ = trace_source(ModelSource(checkpoint=str(path), allow_pickle=True, input_shape=(1, 3, 32, 32)))
    assert type(loaded.module).__name__ == "Spikingformer"


@pytest.mark.spikingjelly_legacy
def test_unknown_neuron_and_unsupported_ops_are_reported_together(tmp_path):
    code = tmp_path / "weird.py"
    code.write_text(
        "import sys, torch\n"
        f"sys.path.insert(0, {FIXTURES!r})\n"
        "from sj_model import WithEIF\n"
        "class Weird(WithEIF):\n"
        "    def forward(self, x):\n"
        "        y = super().forward(x)\n"
        "        return torch.relu(y) + torch.tanh(y)\n")
    message = _error(ModelSource(model=f"{code}:Weird", input_shape=(1, 3, 8, 8)))
    lines = message.splitlines()
    assert lines[0] == "cannot trace Weird: 3 problem(s)"
    assert lines[1] == ("tests/fixtures/sj_model.py:62: error in proj_lif: unknown stateful module "
                        "spikingjelly.clock_driven.neuron.MultiStepEIFNode; spikec recognises spikec.nn "
                        "neurons and spikingjelly LIF/IF nodes")
    assert lines[2] == "weird.py:7: error: unsupported op torch.relu on a traced tensor"
    assert lines[3] == "weird.py:7: error: unsupported op torch.tanh on a traced tensor"


def test_indexing_other_than_slices_is_one_line_naming_it(tmp_path):
    code = tmp_path / "index.py"
    code.write_text(
        "import torch\nfrom torch import nn\nfrom spikec.nn import MultiStepLIF\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.lif = MultiStepLIF(tau=2.0)\n\n"
        "    def forward(self, x):\n        y = self.lif(x.unsqueeze(0).repeat(2, 1, 1))\n"
        "        return y[:, :, 0].mean(0)\n")
    lines = _error(ModelSource(model=f"{code}:Net", input_shape=(1, 4))).splitlines()
    assert lines[1] == ("index.py:13: error: Tensor.__getitem__: indexes with something other than slices "
                        "(x[:, :, a:b]); integers, None, masks and index tensors are not supported")


@pytest.mark.parametrize("reference, message", [
    ("model.py", "--model 'model.py': expected FILE.py:NAME or package.module:NAME"),
    ("missing.py:Net", "--model missing.py:Net: missing.py: no such file"),
    pytest.param(f"{SJ_MODEL}:Nope", f"--model {SJ_MODEL}:Nope: {SJ_MODEL} defines no 'Nope'",
                 marks=pytest.mark.spikingjelly_legacy),
    ("no_such_pkg.mod:Net", "--model no_such_pkg.mod:Net: cannot import no_such_pkg.mod: No module named 'no_such_pkg'"),
])
def test_bad_model_references(reference, message):
    assert _error(ModelSource(model=reference, input_shape=(1, 3, 8, 8))) == message


@pytest.mark.spikingjelly_legacy
def test_model_args_that_the_factory_rejects():
    message = _error(ModelSource(model=f"{SJ_MODEL}:build", model_args={"width": 3}, input_shape=(1, 3, 8, 8)))
    assert re.fullmatch(r'building .*sj_model.py:build with --model-args \{"width": 3\} failed: TypeError: '
                        r".*unexpected keyword argument 'width'", message)


def test_wrong_input_shape_names_the_failing_line():
    message = _error(ModelSource(arch="spikingformer-cifar", model_args=small_config("spikingformer-cifar"),
                                 input_shape=(1, 3, 16)))
    assert message.startswith("the model failed on an input of shape [1, 3, 16]: ")
    assert "(spikec/models/spikingformer.py:" in message
