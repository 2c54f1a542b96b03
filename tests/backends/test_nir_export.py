"""The NIR export, checked by its consumer: the file `spikec export --to nir` writes is read back by ``nir.read``
with every node's type, shape and parameters (batch norms folded into the weights, the LIF mapped with dt = 1);
models NIR cannot express are refused in one line naming the ops."""

from __future__ import annotations

import os

import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from spikec.api import folded_graph
from spikec.cli import main
from spikec.frontends.torch import ModelSource

pytestmark = pytest.mark.core

CONV_LIF = '''
import torch
from torch import nn
from spikec.nn import MultiStepIF, MultiStepLIF


class ConvLif(nn.Module):
    """A conv/LIF feed-forward network on 8x8 images, T = 3; decay_input off in the second neuron layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.lif = MultiStepLIF(tau=2.0, v_threshold=0.5)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)
        self.lif2 = MultiStepLIF(tau=4.0, v_threshold=1.0, decay_input=False)
        self.fc2 = nn.Linear(10, 3, bias=False)
        self.out = MultiStepIF(v_threshold=1.0)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)
            self.bn.weight.uniform_(0.5, 1.5)
            self.fc.bias.fill_(0.6)             # every layer fires on inputs in [0, 2)
            self.fc2.weight.abs_()
        self.eval()

    def forward(self, x):
        T = 3
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
        y = self.bn(self.conv(x.flatten(0, 1))).reshape(T, x.shape[1], 4, 8, 8)
        y = self.lif(y)
        y = self.pool(y.flatten(0, 1)).reshape(T, x.shape[1], 4, 4, 4).flatten(2)
        return self.out(self.fc2(self.lif2(self.fc(y))))
'''


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def conv_lif(tmp_path):
    path = tmp_path / "conv_lif.py"
    path.write_text(CONV_LIF)
    return f"{path}:ConvLif"


def test_a_conv_lif_model_is_read_back_by_nir_with_its_shapes_and_parameters(tmp_path, conv_lif):
    out = tmp_path / "model.nir"
    code, _, err = run("export", "--model", conv_lif, "--input-shape", "1,1,8,8", "--to", "nir", "-o", out)
    assert code == 0, err
    graph = nir.read(str(out))
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert sorted(kinds.values()) == sorted(["Input", "Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine", "LIF",
                                             "Linear", "IF", "Output"])
    successor = dict(graph.edges)
    assert len(successor) == len(graph.edges)       # a chain: one edge out of every node but the output
    chain, name = [], "input"
    while name in successor:
        name = successor[name]
        chain.append(kinds[name])
    assert chain == ["Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine", "LIF", "Linear", "IF", "Output"]

    _, folded = folded_graph(ModelSource(model=conv_lif, input_shape=(1, 1, 8, 8)))
    conv = next(n for n in folded.nodes if n.op == "conv2d")
    exported = next(node for node in graph.nodes.values() if isinstance(node, nir.Conv2d))
    assert np.array_equal(exported.weight, conv.attrs["weight"].astype(np.float32))     # the batch norm folded in
    assert np.array_equal(exported.bias, conv.attrs["bias"].astype(np.float32))
    assert tuple(exported.input_shape) == (8, 8) and exported.weight.shape == (4, 1, 3, 3)

    lifs = [node for node in graph.nodes.values() if isinstance(node, nir.LIF)]
    first, second = sorted(lifs, key=lambda n: n.tau.size, reverse=True)
    assert first.tau.shape == (4, 8, 8) and np.all(first.tau == 2.0) and np.all(first.r == 1.0)
    assert np.all(first.v_threshold == 0.5) and np.all(first.v_leak == 0) and np.all(first.v_reset == 0)
    assert second.tau.shape == (10,) and np.all(second.tau == 4.0) and np.all(second.r == 4.0)   # no decay_input
    assert list(graph.nodes["input"].input_type["input"]) == [1, 8, 8]
    assert list(graph.nodes["output"].output_type["output"]) == [3]
    flatten = next(node for node in graph.nodes.values() if isinstance(node, nir.Flatten))
    assert list(flatten.output_type["output"]) == [64]


def test_the_lif_mapping_is_one_forward_euler_step_of_nirs_equation():
    """NIR's ``tau dv/dt = (v_leak - v) + r I``, one Euler step of dt = 1 from rest with the exported ``r``, is
    the membrane spikec's LIF reaches: it fires just below that value and not just above it."""
    from spikec.nn import lif_sequence

    x = torch.tensor([[0.8]])
    for decay_input, tau in ((True, 2.0), (False, 4.0)):
        r, v_leak, v = (1.0 if decay_input else tau), 0.0, 0.0
        euler = v + ((v_leak - v) + r * float(x)) / tau
        assert lif_sequence(x, tau, euler - 1e-6, 0.0, decay_input).item() == 1.0
        assert lif_sequence(x, tau, euler + 1e-6, 0.0, decay_input).item() == 0.0


def test_a_transformer_is_refused_naming_what_nir_cannot_express(tmp_path):
    code, _, err = run("export", "examples/digits/checkpoints/spikformer-cifar.pt", "--to", "nir", "-o",
                       tmp_path / "x.nir")
    assert code == 2 and err.count("\n") == 1, err
    assert "NIR cannot express" in err and "matmul (no NIR primitive)" in err and "maxpool" in err
    assert os.listdir(tmp_path) == []


def test_an_artifact_is_refused_for_nir(tmp_path):
    run("compile", "examples/digits/checkpoints/sdt-cifar.pt", "-o", tmp_path / "art")
    code, _, err = run("export", tmp_path / "art", "--to", "nir", "-o", tmp_path / "x.nir")
    assert code == 2 and "NIR export reads the float model, so pass the model itself" in err


def test_an_exported_model_read_back_by_spikec_spikes_as_the_model_does(tmp_path, conv_lif):
    """Export, then `spikec` reads the NIR file (the NIR frontend): on the float interpreter every neuron layer
    spikes as in the traced model, given the model's input repeated over its T = 3 steps."""
    from spikec.backends.float.interpreter import run_float
    from spikec.frontends.torch import trace_source

    out = tmp_path / "model.nir"
    assert run("export", "--model", conv_lif, "--input-shape", "1,1,8,8", "--to", "nir", "-o", out)[0] == 0
    _, original = trace_source(ModelSource(model=conv_lif, input_shape=(1, 1, 8, 8)))
    _, read = trace_source(ModelSource(checkpoint=str(out), timesteps=3, input_layout="TB"))
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    ran = run_float(original.graph, [x], keep_values=True)
    again = run_float(read.graph, [x.unsqueeze(0).repeat(3, 1, 1, 1, 1)], keep_values=True)
    neurons = [[n for n in g.nodes if n.op in ("lif", "if")] for g in (original.graph, read.graph)]
    assert len(neurons[0]) == len(neurons[1]) == 3
    for a, b in zip(*neurons):
        spikes = ran.of(a)
        assert spikes.sum() > 0 and torch.equal(spikes, again.of(b)), a.module
    assert torch.equal(ran.outputs[0].sum(dim=0), again.outputs[0])      # the readout: spike counts over T
