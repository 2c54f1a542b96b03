"""A model that splits a tensor with slices (SpikingResformer's query/key split ``y[:, :, :, :C // h]``) and pools
it globally (``adaptive_avg_pool2d(x, 1)``): it traces to ``slice`` and ``mean`` ops that reproduce the module
exactly, compiles, and runs on Lava bit for bit as intsim does (a slice is a synapse group selecting its part)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spikec
from lava_cases import LAVA_TIMEOUT_S, assert_bit_exact, spike_count
from spikec.backends.float.interpreter import run_float
from spikec.backends.lava.runtime import run_lava
from spikec.frontends.torch import trace_module

pytestmark = pytest.mark.lava


class SplitAndPool(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.lif = spikec.nn.MultiStepLIF(tau=2.0)
        self.mix = nn.Conv2d(4, 4, 1)
        self.lif2 = spikec.nn.MultiStepLIF(tau=2.0, v_threshold=0.5)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = x.unsqueeze(0).repeat(2, 1, 1, 1, 1)
        T, B = x.shape[:2]
        y = self.lif(self.conv(x.flatten(0, 1)).reshape(T, B, 8, 4, 4) * 3)
        first, second = y[:, :, :4], y[:, :, 4:]
        z = self.lif2(self.mix((first + second).flatten(0, 1)).reshape(T, B, 4, 4, 4) * 2)
        z = F.adaptive_avg_pool2d(z.flatten(0, 1), 1).reshape(T, B, 4)
        return self.head(z.mean(0))


def test_slices_and_a_global_pool_trace_exactly_and_run_bit_exact_on_lava():
    model = SplitAndPool().eval()
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    graph = trace_module(model, x[:1]).graph
    assert [n.op for n in graph.nodes].count("slice") == 2
    with torch.no_grad():
        assert torch.equal(run_float(graph, [x]).outputs[0], model(x))
    compiled = spikec.compile(model, x[:1], target="loihi2")
    integer = compiled.graph
    assert min(spike_count(integer, x.numpy())) > 0
    assert_bit_exact(integer, x.numpy(), run_lava(integer, [x.numpy()], compiled.process_graph(),
                                                  timeout=LAVA_TIMEOUT_S))
