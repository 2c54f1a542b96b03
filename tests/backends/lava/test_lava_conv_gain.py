"""A spatial conv whose weights exceed 8 bits at its output scale: quantize gives it an exponent as an exact
power-of-two gain after the conv (Lava's Conv has none), and Lava's Conv followed by spikec's Gain runs bit
for bit as intsim does."""

from __future__ import annotations

import pytest
import numpy as np

from lava_cases import LAVA_TIMEOUT_S, assert_bit_exact
from spikec.backends.lava.runtime import run_lava
from spikec.ir import parse_graph
from spikec.passes.quantize import Quantize, QuantizeOptions

pytestmark = pytest.mark.lava

ENCODER = """\
graph @enc {
  %0 = input() {name = "x", layout = "B"} : f32[1,2,2,6,6]
  %1 = repeat_time(%0) {T = 3} : f32[3,2,2,6,6]
  %2 = lif(%1) {tau = 2.0, v_threshold = 0.5, v_reset = 0.0, decay_input = true} : f32[3,2,2,6,6] loc("s" at "m.py":1)
  %3 = conv2d(%2) {weight = @conv.weight : f32[4,2,3,3], bias = @conv.bias : f32[4], stride = [1, 1], \
padding = [1, 1], dilation = [1, 1], groups = 1} : f32[3,2,4,6,6] loc("conv" at "m.py":2)
  %4 = lif(%3) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[3,2,4,6,6] loc("n" at "m.py":3)
  %5 = mean(%4) {axes = [0], keepdim = false} : f32[1,2,4,6,6]
  %6 = reshape(%5) {shape = [144]} : f32[1,2,144]
  %7 = linear(%6) {weight = @head.weight : f32[3,144], bias = none} : f32[1,2,3] loc("head" at "m.py":4)
  output(%7) {layouts = [0]}
}
"""


def test_a_conv_with_a_gain_runs_bit_exact_on_lava():
    rng = np.random.default_rng(0)
    weights = {"conv.weight": rng.normal(0, 1, (4, 2, 3, 3)).astype(np.float32),
               "conv.bias": rng.normal(0, 1, 4).astype(np.float32),
               "head.weight": rng.normal(0, 0.5, (3, 144)).astype(np.float32)}
    result = Quantize(QuantizeOptions(input_exp=8))(parse_graph(ENCODER, weights=weights))
    graph = result.graph
    (conv,) = [layer for layer in result.report.layers if layer.module == "conv"]
    assert conv.weight_exp > 0 and 128 <= conv.max_weight <= 254
    ops = [n.op for n in graph.nodes]
    assert ops[ops.index("qconv2d"):ops.index("qconv2d") + 3] == ["qconv2d", "qgain", "qlif"]
    assert graph.nodes[ops.index("qconv2d") + 1].attrs["factor"] == 2 ** conv.weight_exp
    x = rng.random((2, 2, 6, 6)).astype(np.float32)
    assert_bit_exact(graph, x, run_lava(graph, [x], timeout=LAVA_TIMEOUT_S))
