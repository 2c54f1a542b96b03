"""quantize: the integer graph's shape (golden), the threshold rule (a neuron fed exact integer counts
fires exactly as PyTorch's does, `>=` vs Lava's `>` included), weight quantization within one step,
shared scales across a residual fan-in, and clear errors for what Lava cannot do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import spikec

from helpers import graph_from_text
from spikec.backends.float.interpreter import run_float
from spikec.backends.intsim.interpreter import run_intsim
from spikec.errors import InputError, PassError
from spikec.ir import Graph, TensorType, print_graph
from spikec.passes.quantize import Quantize, QuantizeOptions, _quantize_weights

pytestmark = pytest.mark.core


def _neuron_graph(T: int, shape, tau: float, vth: float) -> Graph:
    g = Graph("neuron")
    x = g.create_node("input", [], {"name": "x", "layout": "TB"}, output_types=[TensorType((T, *shape))]).output
    y = g.add("lif", [x], {"tau": tau, "v_threshold": vth, "v_reset": 0.0, "decay_input": True})
    g.create_node("output", [y], {"layouts": (1,)})
    return g


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 8), tau=st.sampled_from([2.0, 4.0]),
       vth=st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0]), seed=st.integers(0, 2 ** 32 - 1))
def test_integer_fed_neuron_fires_exactly_like_pytorch(T, tau, vth, seed):
    counts = np.random.default_rng(seed).integers(0, 12, size=(T, 3, 32)).astype(np.float32)
    graph = _neuron_graph(T, (3, 32), tau, vth)
    result = Quantize(QuantizeOptions(input_exp=0, input_range=(0.0, 15.0)))(graph)
    integer, (neuron,) = result.graph, result.report.neurons
    assert neuron.vth == np.ceil(neuron.threshold_exact) - 1
    expected = run_float(graph, [torch.from_numpy(counts)]).outputs[0].numpy()
    assert np.array_equal(run_intsim(integer, [counts]).outputs[0], expected)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-3, 3, width=32), min_size=1, max_size=40), st.floats(1e-3, 1e4),
       st.sampled_from(["dense", "conv", "host"]))
def test_weights_are_within_one_quantization_step(values, ratio, kind):
    weight = np.array(values, dtype=np.float32).reshape(1, -1)
    w_int, exp = _quantize_weights(weight, ratio, kind)
    target = weight.astype(np.float64) * ratio
    limit = {"dense": 254, "conv": 254, "host": 32767}[kind]
    assert np.abs(w_int).max() <= limit + 2
    unclipped = np.abs(target) <= limit * 2.0 ** exp
    step = (2.0 if kind != "host" else 1.0) * 2.0 ** exp
    assert np.all(np.abs(w_int * 2.0 ** exp - target)[unclipped] <= step / 2 + 1e-9 * np.abs(target[unclipped]))


RESIDUAL = """\
graph @ms {
  %0 = input() {name = "x", layout = "B"} : f32[1,2,4]
  %1 = repeat_time(%0) {T = 2} : f32[2,2,4]
  %2 = lif(%1) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,2,4]
  %3 = linear(%2) {weight = @a.weight : f32[4,4], bias = @a.bias : f32[4]} : f32[2,2,4] loc("a" at "m.py":1)
  %4 = lif(%3) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,2,4] loc("n1" at "m.py":2)
  %5 = linear(%4) {weight = @b.weight : f32[4,4], bias = none} : f32[2,2,4] loc("b" at "m.py":3)
  %6 = add(%3, %5) : f32[2,2,4]
  %7 = lif(%6) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,2,4] loc("n2" at "m.py":4)
  %8 = mean(%7) {axes = [0], keepdim = false} : f32[1,2,4]
  %9 = linear(%8) {weight = @head.weight : f32[3,4], bias = @head.bias : f32[3]} : f32[1,2,3] loc("head" at "m.py":5)
  output(%9) {layouts = [0]}
}
"""

RESIDUAL_INTEGER = """\
graph @ms {
  %0 = input() {name = "x", layout = "B"} : f32[1,2,4]
  %1 = quantize(%0) {exp = 8, lo = 0, hi = 256} : i32[1,2,4]
  %2 = repeat_time(%1) {T = 2} : i32[2,2,4]
  %3 = qgain(%2) {factor = 8} : i32[2,2,4]
  %4 = qlif(%3) {du = 4095, dv = 2048, vth = 4095} : i32[2,2,4]
  %5 = qdense(%4) {weight = @a.weight : i32[4,4], bias = @a.bias : i32[4], weight_exp = 4, axis = 2, graded = false, host = false} : i32[2,2,4] loc("a" at "m.py":1)
  %6 = qlif(%5) {du = 4095, dv = 2048, vth = 4095} : i32[2,2,4] loc("n1" at "m.py":2)
  %7 = qdense(%6) {weight = @b.weight : i32[4,4], bias = none, weight_exp = 3, axis = 2, graded = false, host = false} : i32[2,2,4] loc("b" at "m.py":3)
  %8 = add(%5, %7) : i32[2,2,4]
  %9 = qlif(%8) {du = 4095, dv = 2048, vth = 4095} : i32[2,2,4] loc("n2" at "m.py":4)
  %10 = sum(%9) {axes = [0], keepdim = false} : i32[1,2,4]
  %11 = qdense(%10) {weight = @head.weight : i32[3,4], bias = @head.bias : i32[3], weight_exp = 0, axis = 2, graded = true, host = true} : i64[1,2,3] loc("head" at "m.py":5)
  output(%11) {layouts = [0]}
}
"""


def test_residual_fan_in_shares_one_scale_and_the_readout_runs_on_the_host():
    graph = graph_from_text(RESIDUAL)
    result = Quantize()(graph)
    integer, report, ranges = result.graph, result.report, result.ranges
    assert result.graph is not graph and print_graph(integer) == RESIDUAL_INTEGER
    by_module = {layer.module: layer for layer in report.layers}
    assert by_module["a"].scale_out == by_module["b"].scale_out  # both feed n2 through the add
    assert by_module["head"].kind == "host"
    assert not ranges.problems
    x = np.random.default_rng(1).uniform(0, 1, (64, 4)).astype(np.float32)
    float_logits = run_float(graph, [torch.from_numpy(x)]).outputs[0].numpy()
    integer_logits = run_intsim(integer, [x]).outputs[0] / report.output_scales[0]
    assert np.mean(float_logits.argmax(-1) == integer_logits.argmax(-1)) >= 0.95


@pytest.mark.parametrize("edit, error, message", [
    (("v_reset = 0.0, decay_input = true} : f32[2,2,4] loc(\"n1\"", "v_reset = none, decay_input = true} : "
      "f32[2,2,4] loc(\"n1\""), InputError,
     "quantize: lif in n1 \\(m.py:2\\) resets soft \\(v_reset=None\\); Lava's LIF resets to 0"),
    (("%6 = add(%3, %5)", "%6 = mul(%3, %5)"), PassError, "quantize: scale-classes: mul multiplies an analog value"),
    (("%5 = linear(%4)", "%5 = linear(%3)"), InputError,
     "quantize: linear in b \\(m.py:3\\) reads the analog output of another weight op"),
])
def test_what_lava_cannot_do_is_named(edit, error, message):
    graph = graph_from_text(RESIDUAL.replace(*edit))
    with pytest.raises(error, match=message):
        Quantize()(graph)


def test_the_host_readouts_bias_bounds_its_output_scale():
    # A classifier with tiny weights and a bias of ±1: its 16-bit weights alone would allow an output scale near
    # 2**40, where round(bias * scale) is beyond int32 (it used to wrap to INT32_MIN, and the logits were wrong).
    from spikec.nn import MultiStepLIF

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
            self.lif = MultiStepLIF(2.0)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            x = x.unsqueeze(0).repeat(2, 1, 1, 1, 1)
            y = self.lif(self.bn(self.conv(x.flatten(0, 1))).reshape(2, -1, 4, 4, 4))
            return self.head(y.flatten(3).mean(3).mean(0))

    torch.manual_seed(0)
    net, x = Net().eval(), torch.rand(2, 1, 4, 4)
    with torch.no_grad():
        net.bn.bias.fill_(1.0)
        net.head.weight.mul_(1e-4)
        net.head.bias.copy_(torch.tensor([1.0, -1.0]))
    compiled = spikec.compile(net, x)
    head = next(n for n in compiled.graph.nodes if n.op == "qdense" and n.attrs["host"])
    scale = compiled.output_scales[0]
    assert np.array_equal(head.attrs["bias"], np.round(np.array([1.0, -1.0]) * scale))
    logits = run_intsim(compiled.graph, [x.numpy()]).outputs[0] / scale
    assert np.allclose(logits, net(x).detach().numpy(), atol=1e-3)


_POOLED = """\
graph @pooled {
  %0 = input() {name = "x", layout = "B"} : f32[1,2,2,6,6]
  %1 = repeat_time(%0) {T = 2} : f32[2,2,2,6,6]
  %2 = conv2d(%1) {weight = @conv.weight : f32[4,2,3,3], bias = none, stride = [1, 1], padding = [1, 1], \
dilation = [1, 1], groups = 1} : f32[2,2,4,6,6] loc("conv" at "m.py":1)
  %3 = lif(%2) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,2,4,6,6] loc("n" at "m.py":2)
  %4 = reshape(%2) {shape = [4, 36]} : f32[2,2,4,36]
  %5 = mean(%4) {axes = [3], keepdim = false} : f32[2,2,4] loc("pool" at "m.py":3)
  %6 = READER
  %7 = reshape(%3) {shape = [144]} : f32[2,2,144]
  %8 = mean(%7) {axes = [2], keepdim = false} : f32[2,2] loc("rate" at "m.py":5)
  output(%6, %8) {layouts = [1, 1]}
}
"""
_LIF_READS = ('lif(%5) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,2,4] '
              'loc("m" at "m.py":4)')
_HEAD_READS = 'linear(%5) {weight = @head.weight : f32[3,4], bias = none} : f32[2,2,3] loc("head" at "m.py":4)'


@pytest.mark.parametrize("reader, shifted", [(_LIF_READS, True), (_HEAD_READS, False)])
def test_a_mean_of_analog_values_a_neuron_reads_is_a_shifted_sum(reader, shifted):
    # A neuron reading the mean of 36 conv outputs reads their sum shifted by floor(log2 36) = 5 bits, on the conv's
    # scale (times 36/32); the host readout reads the exact sum, and a mean of spikes is always an exact sum.
    graph = graph_from_text(_POOLED.replace("READER", reader))
    result = Quantize(QuantizeOptions(input_exp=8))(graph)
    pool = [n for n in result.graph.nodes if n.module == "pool"]
    rate = [n.op for n in result.graph.nodes if n.module == "rate"]
    assert [n.op for n in pool] == (["sum", "qshift"] if shifted else ["sum"]) and rate == ["sum"]
    if shifted:
        assert pool[1].attrs["shift"] == 5
        conv = next(layer for layer in result.report.layers if layer.module == "conv")
        assert next(n for n in result.report.neurons if n.module == "m").scale_in == conv.scale_out * 36 / 32
