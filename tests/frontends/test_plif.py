"""Parametric LIF neurons (spikingjelly's ``ParametricLIFNode`` and ``MultiStepParametricLIFNode``, as SDT V1
builds with ``spike_mode=plif``): the learned decay ``sigmoid(w)`` is read from the weights, each neuron layer is
one ``plif`` op whose float run equals the module's spikes, and it compiles to Lava's LIF (``dv = round(4096 *
decay)``), bit-exact on Lava with intsim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import spikec
from spikec.backends.float.interpreter import run_float
from spikec.backends.intsim.interpreter import run_intsim
from spikec.errors import InputError
from spikec.frontends.torch import trace_module

pytestmark = pytest.mark.spikingjelly_legacy


def _neuron(kind: str, init_tau: float, decay_input: bool):
    if kind == "clock_driven":
        from spikingjelly.clock_driven.neuron import MultiStepParametricLIFNode

        return MultiStepParametricLIFNode(init_tau=init_tau, decay_input=decay_input, detach_reset=True)
    from spikingjelly.activation_based.neuron import ParametricLIFNode

    return ParametricLIFNode(init_tau=init_tau, decay_input=decay_input, detach_reset=True, step_mode="m")


class PlifNet(nn.Module):
    def __init__(self, kind: str, decay_input: bool = True):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.lif1 = _neuron(kind, 3.0, decay_input)
        self.fc = nn.Linear(6 * 16, 16)
        self.lif2 = _neuron(kind, 1.7, decay_input)
        self.head = nn.Linear(16, 4)
        gain = 3.0 if decay_input else 1.0          # decay_input charges with decay * X: it needs more drive
        with torch.no_grad():
            self.conv.weight.mul_(4.0 * gain)
            self.lif1.w.add_(0.37)          # learned: no longer the init_tau's decay
            self.fc.weight.mul_(3.0 * gain)
            self.fc.bias.add_(0.2 * gain)

    def forward(self, x):                                   # x: [B, 1, 4, 4]
        x = x.unsqueeze(0).repeat(3, 1, 1, 1, 1)
        T, B = x.shape[:2]
        s = self.lif1(self.bn(self.conv(x.flatten(0, 1))).reshape(T, B, 6, 4, 4))
        s = self.lif2(self.fc(s.flatten(2)))
        return self.head(s.mean(0))


def _reset(model: nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "reset") and module is not model:
            module.reset()


@pytest.mark.parametrize("kind", ["clock_driven", "activation_based"])
@pytest.mark.parametrize("decay_input", [True, False])
def test_plif_reads_its_learned_decay_and_traces_exactly(kind, decay_input):
    model = PlifNet(kind, decay_input).eval()
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    graph = trace_module(model, x[:1]).graph
    plifs = [n for n in graph.nodes if n.op == "plif"]
    assert [n.attrs["decay"] for n in plifs] == [float(model.lif1.w.sigmoid()), float(model.lif2.w.sigmoid())]
    assert plifs[0].attrs["decay"] != pytest.approx(1 / 3.0)
    _reset(model)
    with torch.no_grad():
        expected = model(x)
    run = run_float(graph, [x], keep_values=True)
    assert torch.equal(run.outputs[0], expected)
    assert all(0.05 < float(run.of(n).mean()) < 0.95 for n in plifs)


def test_plif_compiles_to_lava_lif_and_agrees_with_the_float_model():
    model = PlifNet("activation_based").eval()
    x = torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    compiled = spikec.compile(model, x[:1])
    neurons = compiled.quantization.neurons
    assert [n.dv for n in neurons] == [round(4096 * float(model.lif1.w.sigmoid())),
                                       round(4096 * float(model.lif2.w.sigmoid()))]
    report = spikec.simulate(model, x.numpy(), backends=["torch", "intsim"])
    assert min(layer["agreement"]["float/intsim"] for layer in report.to_json()["layers"]) > 0.98


@pytest.mark.lava
def test_plif_runs_bit_exact_on_lava(tmp_path):
    model = PlifNet("clock_driven").eval()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    compiled = spikec.compile(model, x[:1], target="loihi2")
    compiled.write(str(tmp_path / "plif"))
    report = spikec.simulate(str(tmp_path / "plif"), x.numpy(), backends=["lava"], compare="intsim").to_json()
    assert report["bit_exact"] == {"intsim/lava": True}
    spikes = run_intsim(compiled.graph, [x.numpy()], keep_values=True)
    assert all(spikes.of(n).sum() > 0 for n in compiled.graph.nodes if n.op == "qlif")


def test_a_plif_whose_decay_rounds_to_one_is_one_line():
    model = PlifNet("activation_based").eval()
    with torch.no_grad():
        model.lif2.w.fill_(40.0)
    with pytest.raises(InputError, match=r"its decay sigmoid\(w\) = 1.0 rounds to 0 or 1"):
        trace_module(model, torch.rand(1, 1, 4, 4))
    assert np.isfinite(float(model.lif1.w))
