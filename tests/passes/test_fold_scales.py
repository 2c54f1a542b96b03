"""fold-scales: attention scales move past matmuls and views into the next neuron's threshold (or the
next weights); with power-of-two scales the float result is identical, spike for spike."""

from __future__ import annotations

import pytest
import torch

from conftest import small_input, small_model
from helpers import graph_from_text
from spikec.backends.float.interpreter import run_float
from spikec.frontends.torch import trace_module
from spikec.ir import print_graph
from spikec.passes.fold_scales import FoldScales

pytestmark = pytest.mark.core

BEFORE = """\
graph @attn {
  %0 = input() {name = "x", layout = "TB"} : f32[2,1,2,4,3]
  %1 = lif(%0) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,1,2,4,3]
  %2 = transpose(%1) {perm = [0, 1, 2, 4, 3]} : f32[2,1,2,3,4]
  %3 = matmul(%1, %2) : f32[2,1,2,4,4]
  %4 = scale(%3) {factor = 0.125} : f32[2,1,2,4,4] loc("attn" at "m.py":7)
  %5 = matmul(%4, %1) : f32[2,1,2,4,3]
  %6 = lif(%5) {tau = 2.0, v_threshold = 0.5, v_reset = 0.0, decay_input = true} : f32[2,1,2,4,3] loc("attn.attn_lif" at "m.py":8)
  %7 = scale(%6) {factor = 3.0} : f32[2,1,2,4,3]
  %8 = add(%7, %6) : f32[2,1,2,4,3]
  output(%8) {layouts = [1]}
}
"""

AFTER = """\
graph @attn {
  %0 = input() {name = "x", layout = "TB"} : f32[2,1,2,4,3]
  %1 = lif(%0) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,1,2,4,3]
  %2 = transpose(%1) {perm = [0, 1, 2, 4, 3]} : f32[2,1,2,3,4]
  %3 = matmul(%1, %2) : f32[2,1,2,4,4]
  %4 = matmul(%3, %1) : f32[2,1,2,4,3]
  %5 = lif(%4) {tau = 2.0, v_threshold = 4.0, v_reset = 0.0, decay_input = true} : f32[2,1,2,4,3] loc("attn.attn_lif" at "m.py":8, "attn" at "m.py":7)
  %6 = scale(%5) {factor = 3.0} : f32[2,1,2,4,3]
  %7 = add(%6, %5) : f32[2,1,2,4,3]
  output(%7) {layouts = [1]}
}
"""


def test_attention_scale_becomes_a_threshold():
    graph = graph_from_text(BEFORE)
    x = torch.rand(2, 3, 2, 4, 3) * 4
    before = run_float(graph, [x], keep_values=True)
    spikes_before = before.of(graph.nodes[6])
    result = FoldScales()(graph)
    assert result.modified
    assert print_graph(graph) == AFTER
    after = run_float(graph, [x], keep_values=True)
    assert torch.equal(after.of(graph.nodes[5]), spikes_before)
    assert torch.equal(after.outputs[0], before.outputs[0])
    assert [s.reason for s in result.skipped] == ["scale not folded: add does not commute with a scale"]


def test_negative_scale_stays_before_a_neuron():
    graph = graph_from_text(BEFORE.replace("factor = 0.125", "factor = -0.125"))
    assert any("cannot absorb a non-positive scale" in s.reason for s in FoldScales()(graph).skipped)


def test_zoo_scales_fold_without_changing_any_spike(zoo_arch):
    model, x = small_model(zoo_arch), small_input(zoo_arch)
    graph = trace_module(model, x).graph
    before = run_float(graph, [x], keep_values=True)
    lif_before = [before.of(n) for n in graph.nodes if n.op == "lif"]
    FoldScales()(graph)
    assert not any(n.op == "scale" for n in graph.nodes)
    after = run_float(graph, [x], keep_values=True)
    lif_after = [after.of(n) for n in graph.nodes if n.op == "lif"]
    assert all(torch.equal(a, b) for a, b in zip(lif_after, lif_before))
    assert torch.equal(after.outputs[0], before.outputs[0])
