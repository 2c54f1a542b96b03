"""fold-batchnorm: BN folds into the conv/linear before it (also through Spikformer's transposes), exactly
in float to 1e-5 on every zoo model, and a BN it cannot fold is left with a reason."""

from __future__ import annotations

import numpy as np
import torch

from conftest import small_input, small_model
from helpers import graph_from_text
from spikec.backends.float.interpreter import run_float
from spikec.frontends.torch import trace_module
from spikec.ir import print_graph
from spikec.passes.canonicalize import Canonicalize
from spikec.passes.fold_batchnorm import FoldBatchNorm
from spikec.passes.manager import PassManager

BEFORE = """\
graph @g {
  %0 = input() {name = "x", layout = "TB"} : f32[2,1,3,4]
  %1 = linear(%0) {weight = @fc.weight : f32[5,4], bias = @fc.bias : f32[5]} : f32[2,1,3,5] loc("fc" at "m.py":1)
  %2 = transpose(%1) {perm = [0, 1, 3, 2]} : f32[2,1,5,3] loc("" at "m.py":2)
  %3 = batchnorm(%2) {weight = @bn.weight : f32[5], bias = @bn.bias : f32[5], running_mean = @bn.running_mean : f32[5], running_var = @bn.running_var : f32[5], eps = 1e-05, axis = 2} : f32[2,1,5,3] loc("bn" at "m.py":2)
  %4 = transpose(%3) {perm = [0, 1, 3, 2]} : f32[2,1,3,5] loc("" at "m.py":2)
  %5 = lif(%4) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,1,3,5] loc("lif" at "m.py":3)
  %6 = add(%4, %5) : f32[2,1,3,5]
  %7 = batchnorm(%6) {weight = none, bias = none, running_mean = @bn2.running_mean : f32[5], running_var = @bn2.running_var : f32[5], eps = 1e-05, axis = 3} : f32[2,1,3,5] loc("bn2" at "m.py":4)
  output(%7) {layouts = [1]}
}
"""

AFTER = """\
graph @g {
  %0 = input() {name = "x", layout = "TB"} : f32[2,1,3,4]
  %1 = linear(%0) {weight = @fc.weight : f32[5,4], bias = @fc.bias : f32[5]} : f32[2,1,3,5] loc("fc" at "m.py":1, "bn" at "m.py":2)
  %2 = lif(%1) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,1,3,5] loc("lif" at "m.py":3)
  %3 = add(%1, %2) : f32[2,1,3,5]
  %4 = batchnorm(%3) {weight = none, bias = none, running_mean = @bn2.running_mean : f32[5], running_var = @bn2.running_var : f32[5], eps = 1e-05, axis = 3} : f32[2,1,3,5] loc("bn2" at "m.py":4)
  output(%4) {layouts = [1]}
}
"""


def test_folds_through_transposes_and_explains_what_it_leaves():
    graph = graph_from_text(BEFORE)
    x = torch.randn(2, 4, 3, 4)
    before = run_float(graph, [x]).outputs[0]
    result = FoldBatchNorm()(graph)
    assert result.modified and result.graph is graph
    PassManager([Canonicalize()]).run(graph)
    assert print_graph(graph) == AFTER
    torch.testing.assert_close(run_float(graph, [x]).outputs[0], before, rtol=0, atol=1e-5)
    assert [str(s) for s in result.skipped] == ["batchnorm in bn2 (m.py:4): batch norm not folded: its input comes from "
                                         "add, not a conv or linear"]


def test_folded_weights_are_the_affine_map():
    graph = graph_from_text(BEFORE)
    bn = graph.nodes[3].attrs
    w, b = graph.nodes[1].attrs["weight"].copy(), graph.nodes[1].attrs["bias"].copy()
    FoldBatchNorm()(graph)
    g = bn["weight"] / np.sqrt(bn["running_var"] + 1e-5)
    np.testing.assert_allclose(graph.nodes[1].attrs["weight"], w * g[:, None], rtol=1e-6)
    np.testing.assert_allclose(graph.nodes[1].attrs["bias"], (b - bn["running_mean"]) * g + bn["bias"], rtol=1e-5,
                               atol=1e-6)


def test_every_zoo_batchnorm_folds_and_the_function_is_kept(zoo_arch):
    model, x = small_model(zoo_arch), small_input(zoo_arch)
    graph = trace_module(model, x).graph
    before = run_float(graph, [x]).outputs[0]
    assert not FoldBatchNorm()(graph).skipped and not any(n.op == "batchnorm" for n in graph.nodes)
    torch.testing.assert_close(run_float(graph, [x]).outputs[0], before, rtol=0, atol=1e-5)
