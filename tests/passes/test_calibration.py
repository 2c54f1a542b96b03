"""quantize's calibration: the input exponent it chooses from calibration samples, the estimate it chooses by
(the encoding layer's weight error at the chosen exponent is the one the built graph has), exact data, and the
error for weights that all quantize to 0."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import graph_from_text
from spikec.errors import InputError
from spikec.passes.quantize import Calibration, Quantize, QuantizeOptions

pytestmark = pytest.mark.core

ENCODER = """\
graph @enc {
  %0 = input() {name = "x", layout = "B"} : f32[1,2,3,8,8]
  %1 = repeat_time(%0) {T = 2} : f32[2,2,3,8,8]
  %2 = conv2d(%1) {weight = @conv.weight : f32[6,3,3,3], bias = none, stride = [1, 1], padding = [1, 1], \
dilation = [1, 1], groups = 1} : f32[2,2,6,8,8] loc("conv" at "m.py":1)
  %3 = lif(%2) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,2,6,8,8] loc("n" at "m.py":2)
  %4 = mean(%3) {axes = [0], keepdim = false} : f32[1,2,6,8,8]
  %5 = reshape(%4) {shape = [384]} : f32[1,2,384]
  %6 = linear(%5) {weight = @head.weight : f32[3,384], bias = none} : f32[1,2,3] loc("head" at "m.py":3)
  output(%6) {layouts = [0]}
}
"""


def _calibrated(samples: np.ndarray, source: str = "test", input_range=(0.0, 1.0), **weights):
    options = QuantizeOptions(input_range=input_range, calibration=Calibration(samples.astype(np.float32), source))
    return Quantize(options)(graph_from_text(ENCODER, **weights)).report


def _conv_error(report) -> float:
    return next(layer.relative_error for layer in report.layers if layer.module == "conv")


def test_an_encoding_conv_keeps_8_bit_weights_at_every_input_exponent():
    # The conv sums at a finer scale than its output's and shifts the sum down (qshift), so the input's bits
    # cost its weights nothing: calibration takes the finest input.
    samples = np.random.default_rng(1).uniform(0, 1, (16, 3, 8, 8))
    report = _calibrated(samples)
    by_exp = {c["input_exp"]: c for c in report.calibration["candidates"]}
    assert max(c["weight_error"] for c in by_exp.values()) < 0.02 and report.input_exp == 8
    conv = next(layer for layer in report.layers if layer.module == "conv")
    assert conv.weight_exp < 0 and 128 <= conv.max_weight <= 256 and conv.relative_error < 0.01


def test_calibration_trades_input_bits_for_encoding_weight_bits():
    # Event counts in [0, 255] at 2**-8 would make the conv's 24-bit sums overflow at a finer scale: range
    # analysis takes the finer bits away, and each input bit costs a weight bit again.
    samples = np.random.default_rng(1).uniform(0, 255, (16, 3, 8, 8))
    report = _calibrated(samples, input_range=(0.0, 255.0))
    cal = report.calibration
    by_exp = {c["input_exp"]: c for c in cal["candidates"]}
    assert sorted(by_exp) == list(range(9)) and cal["samples"] == 16 and cal["source"] == "test"
    assert report.input_exp == cal["input_exp"] == min(by_exp, key=lambda e: (by_exp[e]["error"], -e))
    assert 0 < report.input_exp < 8
    assert by_exp[report.input_exp]["error"] < by_exp[8]["error"]
    # the estimate is the weight error of the graph quantize then builds at the chosen exponent
    assert by_exp[report.input_exp]["weight_error"] == pytest.approx(_conv_error(report), rel=1e-5)
    fixed = Quantize(QuantizeOptions(input_exp=8, input_range=(0.0, 255.0)))(graph_from_text(ENCODER)).report
    assert fixed.calibration is None and _conv_error(fixed) == pytest.approx(by_exp[8]["weight_error"], rel=1e-5)


def test_data_on_a_grid_is_encoded_exactly():
    samples = np.random.default_rng(2).integers(0, 17, (16, 3, 8, 8)) / 16.0   # digits' pixels: k/16
    cal = _calibrated(samples, "digits").calibration
    by_exp = {c["input_exp"]: c for c in cal["candidates"]}
    assert [e for e in by_exp if by_exp[e]["input_error"] == 0] == [8, 7, 6, 5, 4]
    assert cal["input_exp"] >= 4 and "input rounding error on the 16 digits samples: none" in cal["why"]


def test_calibration_is_deterministic():
    samples = np.random.default_rng(3).uniform(0, 1, (8, 3, 8, 8))
    assert _calibrated(samples) == _calibrated(samples.copy())


def test_weights_that_all_quantize_to_zero_are_an_error_naming_the_layer():
    tiny = np.full((6, 3, 3, 3), 1e-6, np.float32)
    graph = graph_from_text(ENCODER, **{"conv.weight": tiny})
    with pytest.raises(InputError, match=r"conv2d in conv \(m.py:1\): every weight quantizes to 0 .*smaller --input-exp"):
        Quantize(QuantizeOptions(input_exp=8))(graph)


TWO_CONVS = ENCODER.replace(
    "  %4 = mean(%3) {axes = [0], keepdim = false} : f32[1,2,6,8,8]\n",
    "  %7 = conv2d(%3) {weight = @conv2.weight : f32[6,6,3,3], bias = none, stride = [1, 1], padding = [1, 1], "
    "dilation = [1, 1], groups = 1} : f32[2,2,6,8,8] loc(\"conv2\" at \"m.py\":4)\n"
    "  %8 = lif(%7) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,2,6,8,8] "
    "loc(\"n2\" at \"m.py\":5)\n"
    "  %4 = mean(%8) {axes = [0], keepdim = false} : f32[1,2,6,8,8]\n")


def test_bias_correction_takes_the_mean_rounding_error_off_each_layer():
    # With calibration data (an observer that runs the float graph), each layer's bias absorbs (W - W_q) E[x]: the
    # mean of the integer layer's output over the data then matches the float layer's, where without it the
    # weights' rounding leaves a drift. Measured on the second conv, whose 8-bit weights read spikes (the
    # encoding conv's residual group leaves it almost no rounding to correct).
    from spikec.backends.float.interpreter import observe_float, run_float
    from spikec.backends.intsim.interpreter import run_intsim

    rng = np.random.default_rng(4)
    samples = (rng.integers(0, 9, (24, 3, 8, 8)) / 8).astype(np.float32)    # exact at 2**-3: no input rounding
    graph = graph_from_text(TWO_CONVS, **{"conv.weight": rng.normal(0, 0.6, (6, 3, 3, 3)).astype(np.float32)})
    conv_float = next(n for n in graph.nodes if n.op == "conv2d" and n.module == "conv2")
    float_run = run_float(graph, [samples], keep_values=True)
    assert float(float_run.of(next(n for n in graph.nodes if n.module == "n")).mean()) > 0.05   # conv2 reads spikes
    drifts = {}
    for observe in (None, observe_float):
        options = QuantizeOptions(input_exp=3, calibration=Calibration(samples, "test", observe))
        result = Quantize(options)(graph)
        conv_int = next(n for n in result.graph.nodes if n.module == "conv2" and n.output.users()[0].op == "qlif")
        scale = next(layer.scale_out for layer in result.report.layers if layer.module == "conv2")
        y_int = run_intsim(result.graph, [samples], keep_values=True).of(conv_int) / scale
        y_float = np.asarray(float_run.of(conv_float))
        drifts[observe] = np.abs((y_int - y_float).mean(axis=(0, 1, 3, 4))).max()
        assert result.report.calibration["bias_corrected_layers"] == (0 if observe is None else 3)
    assert drifts[observe_float] < drifts[None] / 3


def test_the_encoding_conv_gets_a_residual_group_of_16_bit_weights():
    # Two synapse groups read the input: the 8-bit weights W with a gain 2**k and the 8-bit residual r of what W
    # left, k bits finer; their sum is floor-shifted to the output scale. The second conv keeps one 8-bit group.
    samples = np.random.default_rng(5).uniform(0, 1, (8, 3, 8, 8))
    graph = graph_from_text(TWO_CONVS)
    result = Quantize(QuantizeOptions(calibration=Calibration(samples.astype(np.float32), "test")))(graph)
    ops = [n.op for n in result.graph.nodes if n.module == "conv"]
    assert ops == ["qconv2d", "qgain", "qconv2d", "add", "qshift"]
    layers = {layer.module: layer for layer in result.report.layers}
    assert layers["conv"].residual_bits > 0 and layers["conv"].relative_error < 1e-3
    assert layers["conv2"].residual_bits == 0 and layers["conv2"].relative_error > 1e-3
    assert [n.op for n in result.graph.nodes if n.module == "conv2"].count("qconv2d") == 1


def test_range_analysis_takes_residual_bits_off_where_the_sums_could_wrap():
    # Event counts in [0, 255] at 2**-8: the gained group's 24-bit sums would wrap with 8 residual bits.
    samples = np.random.default_rng(6).uniform(0, 255, (8, 3, 8, 8)).astype(np.float32)
    options = QuantizeOptions(input_exp=0, input_range=(0.0, 255.0), calibration=Calibration(samples, "test"))
    wide = Quantize(options)(graph_from_text(ENCODER))
    conv = next(layer for layer in wide.report.layers if layer.module == "conv")
    assert conv.residual_bits < 8 and wide.ranges.problems == []
