"""The floor shift ``qshift`` quantize puts after a conv whose weights are small for its output scale (the conv
sums at a finer scale), after the sum that stands for a mean of analog values a neuron reads, and the outlier
group of a Dense layer: each runs on Lava bit for bit as intsim does, and each keeps the weights' bits."""

from __future__ import annotations

import pytest
import numpy as np

from lava_cases import LAVA_TIMEOUT_S, assert_bit_exact, spike_count
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.runtime import run_lava
from spikec.ir import parse_graph
from spikec.passes.quantize import Quantize, QuantizeOptions

pytestmark = pytest.mark.lava

MODEL = """\
graph @shifts {
  %0 = input() {name = "x", layout = "B"} : f32[1,2,2,6,6]
  %1 = repeat_time(%0) {T = 3} : f32[3,2,2,6,6]
  %3 = conv2d(%1) {weight = @conv.weight : f32[4,2,3,3], bias = @conv.bias : f32[4], stride = [1, 1], \
padding = [1, 1], dilation = [1, 1], groups = 1} : f32[3,2,4,6,6] loc("conv" at "m.py":2)
  %4 = lif(%3) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[3,2,4,6,6] loc("n" at "m.py":3)
  %5 = reshape(%3) {shape = [4, 36]} : f32[3,2,4,36]
  %6 = mean(%5) {axes = [3], keepdim = false} : f32[3,2,4] loc("pool" at "m.py":4)
  %7 = lif(%6) {tau = 2.0, v_threshold = 0.25, v_reset = 0.0, decay_input = true} : f32[3,2,4] loc("m" at "m.py":5)
  %8 = reshape(%4) {shape = [144]} : f32[3,2,144]
  %9 = linear(%8) {weight = @fc.weight : f32[16,144], bias = none} : f32[3,2,16] loc("fc" at "m.py":6)
  %10 = lif(%9) {tau = 2.0, v_threshold = 0.1, v_reset = 0.0, decay_input = true} : f32[3,2,16] loc("f" at "m.py":7)
  %11 = mean(%10) {axes = [0], keepdim = false} : f32[1,2,16]
  %12 = mean(%7) {axes = [0], keepdim = false} : f32[1,2,4]
  %13 = linear(%11) {weight = @head.weight : f32[3,16], bias = none} : f32[1,2,3] loc("head" at "m.py":8)
  %14 = linear(%12) {weight = @head2.weight : f32[3,4], bias = none} : f32[1,2,3] loc("head2" at "m.py":9)
  %15 = add(%13, %14) : f32[1,2,3]
  output(%15) {layouts = [0]}
}
"""


def _weights(rng):
    fc = rng.normal(0, 0.05, (16, 144))
    fc[3, 7] = 2.0          # trunc_normal_'s bound: one weight a hundred deviations out
    return {"conv.weight": rng.normal(0, 1, (4, 2, 3, 3)), "conv.bias": rng.normal(0, 0.3, 4),
            "fc.weight": fc, "head.weight": rng.normal(0, 0.5, (3, 16)), "head2.weight": rng.normal(0, 0.5, (3, 4))}


def _quantized(rng):
    weights = {k: v.astype(np.float32) for k, v in _weights(rng).items()}
    return Quantize(QuantizeOptions(input_exp=8))(parse_graph(MODEL, weights=weights))


def test_each_shift_keeps_the_bits_its_layer_needs():
    result = _quantized(np.random.default_rng(0))
    layers = {layer.module: layer for layer in result.report.layers}
    # the encoding conv's weights are small for its output scale over the input's (2**-8): it sums 2**-e finer
    # and shifts back
    assert layers["conv"].weight_exp < 0 and 128 <= layers["conv"].max_weight <= 254
    assert layers["conv"].relative_error < 0.02
    # one outlier takes a second Dense group of its own, the rest keep 8 bits
    assert layers["fc"].outliers == 1 and layers["fc"].outlier_exp > layers["fc"].weight_exp
    assert layers["fc"].relative_error < 0.01
    ops = [(n.op, n.module) for n in result.graph.nodes]
    assert ("qshift", "conv") in ops and [op for op, module in ops if module == "fc"] == ["qdense", "qdense", "add"]
    # the mean of 36 conv outputs read by a LIF: its sum shifted by floor(log2 36) = 5 bits
    (pool_shift,) = [n for n in result.graph.nodes if n.op == "qshift" and n.module == "pool"]
    assert pool_shift.attrs["shift"] == 5 and pool_shift.inputs[0].producer.op == "sum"
    neurons = {neuron.module: neuron for neuron in result.report.neurons}
    assert neurons["m"].scale_in == layers["conv"].scale_out * 36 / 32


def test_shifts_run_bit_exact_on_lava():
    rng = np.random.default_rng(1)
    graph = _quantized(rng).graph
    x = rng.random((2, 2, 6, 6)).astype(np.float32)
    assert min(spike_count(graph, x)) > 0
    assert_bit_exact(graph, x, run_lava(graph, [x], timeout=LAVA_TIMEOUT_S))


TOKEN_WISE = """\
graph @tokens {
  %0 = input() {name = "x", layout = "B"} : f32[1,2,2,6,6]
  %1 = repeat_time(%0) {T = 3} : f32[3,2,2,6,6]
  %2 = conv2d(%1) {weight = @conv.weight : f32[8,2,3,3], bias = @conv.bias : f32[8], stride = [1, 1], \
padding = [1, 1], dilation = [1, 1], groups = 1} : f32[3,2,8,6,6] loc("conv" at "m.py":1)
  %3 = lif(%2) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[3,2,8,6,6] loc("n" at "m.py":2)
  %4 = reshape(%3) {shape = [8, 36]} : f32[3,2,8,36]
  %5 = transpose(%4) {perm = [0, 1, 3, 2]} : f32[3,2,36,8]
  %6 = linear(%5) {weight = @fc.weight : f32[16,8], bias = none} : f32[3,2,36,16] loc("fc" at "m.py":3)
  %7 = lif(%6) {tau = 2.0, v_threshold = 0.1, v_reset = 0.0, decay_input = true} : f32[3,2,36,16] loc("f" at "m.py":4)
  %8 = mean(%7) {axes = [0], keepdim = false} : f32[1,2,36,16]
  %9 = reshape(%8) {shape = [576]} : f32[1,2,576]
  %10 = linear(%9) {weight = @head.weight : f32[3,576], bias = none} : f32[1,2,3] loc("head" at "m.py":5)
  output(%10) {layouts = [0]}
}
"""


def test_a_token_wise_outlier_group_is_a_sparse_of_its_nonzeros_and_runs_bit_exact():
    # The bulk of a token-wise linear shares its weights as a 1x1 Conv; its one outlier weight is a Sparse holding
    # that weight once per token (36), not a second shared (16, 8) matrix of zeros.
    rng = np.random.default_rng(2)
    fc = rng.normal(0, 0.02, (16, 8))
    fc[5, 2] = 2.0
    weights = {"conv.weight": rng.normal(0, 1, (8, 2, 3, 3)), "conv.bias": rng.normal(0.5, 0.3, 8), "fc.weight": fc,
               "head.weight": rng.normal(0, 0.5, (3, 576))}
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    graph = Quantize(QuantizeOptions(input_exp=8))(parse_graph(TOKEN_WISE, weights=weights)).graph
    low, outliers = [n for n in graph.nodes if n.op == "qdense" and n.module == "fc"]
    assert np.count_nonzero(outliers.attrs["weight"]) == 1
    pg = lower(graph)
    kinds = {graph.nodes[p.node].attrs["weight_exp"]: p.kind for p in pg.processes
             if p.role == "synapse" and graph.nodes[p.node] in (low, outliers)}
    assert kinds == {low.attrs["weight_exp"]: "Conv", outliers.attrs["weight_exp"]: "Sparse"}
    x = rng.random((2, 2, 6, 6)).astype(np.float32)
    assert min(spike_count(graph, x)) > 0
    assert_bit_exact(graph, x, run_lava(graph, [x], pg, timeout=LAVA_TIMEOUT_S))
