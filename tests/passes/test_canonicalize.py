"""canonicalize: view chains collapse, identities and dead nodes go, values are unchanged; the pass manager
repeats it until a run changes nothing."""

from __future__ import annotations

import pytest
import torch

from helpers import graph_from_text
from spikec.backends.float.interpreter import run_float
from spikec.ir import print_graph
from spikec.passes.canonicalize import Canonicalize
from spikec.passes.manager import PassManager

pytestmark = pytest.mark.core

BEFORE = """\
graph @views {
  %0 = input() {name = "x", layout = "TB"} : f32[2,1,4,6]
  %1 = reshape(%0) {shape = [24]} : f32[2,1,24]
  %2 = reshape(%1) {shape = [6, 4]} : f32[2,1,6,4]
  %3 = transpose(%2) {perm = [0, 1, 3, 2]} : f32[2,1,4,6]
  %4 = transpose(%3) {perm = [0, 1, 3, 2]} : f32[2,1,6,4]
  %5 = reshape(%4) {shape = [6, 4]} : f32[2,1,6,4]
  %6 = scale(%5) {factor = 0.5} : f32[2,1,6,4]
  %7 = scale(%6) {factor = 0.25} : f32[2,1,6,4]
  %8 = scale(%7) {factor = 1.0} : f32[2,1,6,4]
  %9 = lif(%0) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,1,4,6]
  output(%8) {layouts = [1]}
}
"""

AFTER = """\
graph @views {
  %0 = input() {name = "x", layout = "TB"} : f32[2,1,4,6]
  %1 = reshape(%0) {shape = [6, 4]} : f32[2,1,6,4]
  %2 = scale(%1) {factor = 0.125} : f32[2,1,6,4]
  output(%2) {layouts = [1]}
}
"""


def test_views_and_scales_collapse_and_dead_code_goes():
    graph = graph_from_text(BEFORE)
    x = torch.randn(2, 3, 4, 6)
    before = run_float(graph, [x]).outputs[0]
    run = PassManager([Canonicalize()]).run(graph)
    assert run.graph is graph and print_graph(graph) == AFTER
    assert torch.equal(run_float(graph, [x]).outputs[0], before)
    assert run.runs[0][1].modified and not run.runs[-1][1].modified
    assert not Canonicalize()(graph).modified, "at the fixed point a run must find nothing to do"
