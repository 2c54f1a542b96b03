"""Splitting and unflattening traced tensors (spikingjelly 2.0's models split a fused q/k/v projection with
``chunk`` and undo their time-batch merge with ``unflatten``): ``chunk`` and ``split`` become one ``slice`` op per
part, ``unflatten`` a view, and the traced graph computes what the module does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spikec
from spikec.api import compile as compile_model, verify_graph
from spikec.backends.float.interpreter import run_float
from spikec.errors import InputError
from spikec.frontends.torch import trace_module

pytestmark = pytest.mark.core


class FusedProjection(nn.Module):
    """One conv makes q, k and v; the parts are cut with ``chunk`` (equal) or ``split`` (given sizes)."""

    def __init__(self, cut: str, sizes: list[int]):
        super().__init__()
        torch.manual_seed(0)
        self.cut = cut
        self.conv = nn.Conv1d(4, 12, 1)
        self.lif = spikec.nn.MultiStepLIF(tau=2.0, v_threshold=0.3)
        self.heads = nn.ModuleList(nn.Linear(n, 3) for n in sizes)

    def forward(self, x):                                          # x: [B, 4, N]
        x = x.unsqueeze(0).repeat(2, 1, 1, 1)                      # [T, B, 4, N]
        y = self.conv(x.flatten(0, 1)).unflatten(0, (2, x.shape[1]))
        s = self.lif(y * 2)                                        # [T, B, 12, N]
        if self.cut == "chunk":
            parts = s.chunk(3, dim=2)
        elif self.cut == "split":
            parts = s.split([4, 4, 4], dim=-2)
        else:
            parts = torch.split(s, 5, dim=2)                       # parts of 5, 5 and 2 channels
        q, k, v = (head(part.mean(0).mean(-1)) for head, part in zip(self.heads, parts))
        return q + k + v


@pytest.mark.parametrize("cut, sizes", [("chunk", [4, 4, 4]), ("split", [4, 4, 4]), ("split-size", [5, 5, 2])])
def test_chunk_and_split_are_slices_and_trace_exactly(cut, sizes):
    model = FusedProjection(cut, sizes).eval()
    x = torch.rand(3, 4, 6, generator=torch.Generator().manual_seed(1))
    graph = trace_module(model, x[:1]).graph
    slices = [n for n in graph.nodes if n.op == "slice"]
    assert [n.attrs["stop"] - n.attrs["start"] for n in slices] == sizes
    assert {n.attrs["axis"] for n in slices} == {2}
    run = run_float(graph, [x], keep_values=True)
    with torch.no_grad():
        assert torch.equal(run.outputs[0], model(x))
    assert all(run.of(n).mean() > 0.05 for n in graph.nodes if n.op == "lif")


class SplitsTime(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = spikec.nn.MultiStepLIF(tau=2.0)

    def forward(self, x):                                          # x: [T, B, 4]
        first, _ = self.lif(x).chunk(2, dim=0)
        return first.mean(0)


def test_a_split_along_time_is_one_line_naming_it():
    with pytest.raises(InputError, match=r"Tensor\.chunk: mixes the time or batch axis with sample axes"):
        trace_module(SplitsTime(), torch.rand(4, 1, 4), input_layout="TB")


class Concatenated(nn.Module):
    """Two spiking branches joined by ``torch.cat`` along the features before the classifier."""

    def __init__(self, constant_part: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(5, 4), nn.Linear(5, 3)
        self.lif_a, self.lif_b = spikec.nn.MultiStepLIF(), spikec.nn.MultiStepLIF()
        self.head = nn.Linear(7, 2)
        self.constant_part = constant_part

    def forward(self, x):
        x = x.unsqueeze(0).repeat(2, 1, 1)
        a = self.lif_a(self.a(x) * 3)
        b = torch.zeros(2, x.shape[1], 3) if self.constant_part else self.lif_b(self.b(x) * 3)
        return self.head(torch.cat([a, b], dim=-1)).mean(0)


def test_cat_of_spike_tensors_traces_exactly_and_keeps_them_spikes():
    model = Concatenated().eval()
    graph = trace_module(model, torch.rand(1, 5)).graph
    (concat,) = [n for n in graph.nodes if n.op == "concat"]
    assert concat.attrs["axis"] == 2 and concat.output.shape == (2, 1, 7)
    x = torch.rand(6, 5)
    with torch.no_grad():
        assert torch.equal(run_float(graph, [x]).outputs[0], model(x))
    report = verify_graph(graph)
    assert report.count("error") == 0 and [f.module for f in report.findings] == ["a", "b"]   # encoding notes


def test_cat_with_a_constant_is_one_line_and_compile_refuses_a_concat_in_one_line():
    with pytest.raises(InputError, match=r"torch.cat: concatenates a constant with an activation"):
        trace_module(Concatenated(constant_part=True), torch.rand(1, 5))
    with pytest.raises(InputError, match=r"concat .*: concat cannot be quantized \(concatenation is not supported on "
                                         r"chip yet\)"):
        compile_model(Concatenated().eval(), torch.rand(1, 5))


class PerHeadScale(nn.Module):
    """SpikingResformer's attention scale: ``attn * (1 / sqrt(firing_rate * d))`` with a firing-rate buffer of
    shape [1, 1, heads, 1, 1], learned in training (zero, so the scale infinite, in an untrained model)."""

    def __init__(self, firing_rate: float | None = 0.2):
        super().__init__()
        torch.manual_seed(0)
        self.lif, self.out = spikec.nn.MultiStepLIF(), spikec.nn.MultiStepLIF()
        rates = torch.tensor([0.1, 0.3]) if firing_rate is not None else torch.zeros(2)
        self.register_buffer("firing_rate", rates.reshape(1, 1, 2, 1, 1))
        self.head = nn.Linear(2 * 3 * 3, 2)

    def forward(self, x):                                                  # x: [B, 2, 3, 4]
        s = self.lif(x.unsqueeze(0).repeat(2, 1, 1, 1, 1) * 2)              # [T, B, heads, N, d]
        attn = (s @ s.transpose(-1, -2)) * (1.0 / torch.sqrt(self.firing_rate * 4))
        return self.head(self.out(attn).flatten(2)).mean(0)


def test_a_per_head_constant_scale_traces_exactly_and_compile_refuses_it_in_one_line():
    model = PerHeadScale().eval()
    graph = trace_module(model, torch.rand(1, 2, 3, 4)).graph
    (node,) = [n for n in graph.nodes if n.op == "scale_by"]
    assert node.attrs["factors"].shape == (2, 1, 1)
    x = torch.rand(5, 2, 3, 4)
    with torch.no_grad():
        assert torch.equal(run_float(graph, [x]).outputs[0], model(x))
    with pytest.raises(InputError, match=r"scale_by cannot be quantized \(a scale per channel or head is not "
                                         r"supported on chip yet"):
        compile_model(model, torch.rand(1, 2, 3, 4))


def test_an_infinite_scale_from_an_untrained_buffer_is_one_line():
    with pytest.raises(InputError, match=r"Tensor.mul: multiplies by a constant tensor holding infinite or NaN "
                                         r"values \(an untrained buffer\?\)"):
        trace_module(PerHeadScale(firing_rate=None).eval(), torch.rand(1, 2, 3, 4))
