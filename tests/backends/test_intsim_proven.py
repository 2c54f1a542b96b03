"""intsim's proven rules (backends/intsim/proven.py) compute exactly what the reference rules (``INT_RULES``)
compute, value by value: on every zoo model, and on hand-built graphs that take each rule's paths (float32 and
float64 accumulation, a LIF decay that is a power of two or not, with and without saturation, negative and positive
weight exponents, biases, binary input that is not 0/1, the host readout, and the ops the zoo does not use)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import spikec
from conftest import small_input, small_model
from spikec.backends.intsim.interpreter import INT_RULES, _proof, run_intsim
from spikec.backends.intsim.proven import proof_for
from spikec.ir import parse_graph
from spikec.passes.range_analysis import analyze_ranges


def _assert_same(graph, inputs, ranges=None) -> None:
    """The proven rules run (the report is relied on) and give every value the reference rules give."""
    assert _proof(graph, ranges) is not None
    reference = run_intsim(graph, inputs, keep_values=True, reference=True)
    proven = run_intsim(graph, inputs, keep_values=True, ranges=ranges)
    assert reference.values.keys() == proven.values.keys()
    for node, value in reference.values.items():
        got = proven.values[node]
        assert got.dtype == np.int64 and got.shape == value.shape, node.describe()
        assert np.array_equal(got, value), node.describe()
    for got, want in zip(proven.outputs, reference.outputs):
        assert np.array_equal(got, want)


def test_proven_rules_equal_the_reference_on_the_zoo(zoo_arch):
    model, x = small_model(zoo_arch), small_input(zoo_arch, batch=3)
    # 4 fractional input bits leave the random encoding convs of every family nonzero weights
    compiled = spikec.compile(model, x[:1], name=zoo_arch, input_exp=4)
    _assert_same(compiled.graph, [x.numpy()], compiled.ranges)
    _assert_same(compiled.graph, [x.numpy() * 4 - 2])   # clipped inputs; the analysis run by intsim itself


LIF = """\
graph @lif {{
  %0 = input() {{name = "x", layout = "TB"}} : f32[6,3,17]
  %1 = quantize(%0) {{exp = 0, lo = {lo}, hi = {hi}}} : i32[6,3,17]
  %2 = qlif(%1) {{du = 4095, dv = {dv}, vth = {vth}}} : i32[6,3,17]
  output(%2) {{layouts = [1]}}
}}
"""


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), dv=st.sampled_from([0, 1, 1024, 2048, 2731, 3072, 4094, 4095]),
       vth=st.sampled_from([0, 1, 100, 4095, 2 ** 17 - 1]), magnitude=st.sampled_from([10, 2 ** 12, 2 ** 16, 2 ** 17 - 1]),
       signed=st.booleans())
def test_proven_lif_equals_the_reference(seed, dv, vth, magnitude, signed):
    """float32 (4096 - dv a power of two: dv 0, 2048, 3072, 4095) and float64 decays; inputs that saturate ``v`` (the
    clamp runs) and inputs the analysis proves never do (the clamp is skipped)."""
    rng = np.random.default_rng(seed)
    lo = -magnitude if signed else 0
    graph = parse_graph(LIF.format(lo=lo, hi=magnitude, dv=dv, vth=vth))
    x = rng.integers(lo, magnitude, size=(6, 3, 17), endpoint=True)
    x.flat[rng.integers(x.size)] = magnitude * rng.choice([-1, 1] if signed else [1])
    _assert_same(graph, [x.astype(np.float32)])


def test_the_lif_clamp_is_skipped_only_where_no_saturation_is_proven():
    graph = parse_graph(LIF.format(lo=-10, hi=10, dv=2048, vth=100))
    assert not _proof(graph, None).saturating
    graph = parse_graph(LIF.format(lo=-(2 ** 17 - 1), hi=2 ** 17 - 1, dv=0, vth=100))
    assert [node.op for node in _proof(graph, None).saturating] == ["qlif"]
    x = np.full((6, 3, 17), -(2 ** 17 - 1), dtype=np.float32)   # v reaches -(2**23 - 1) and stays there
    _assert_same(graph, [x])


DENSE = """\
graph @dense {{
  %0 = input() {{name = "x", layout = "TB"}} : f32[2,3,{fan_in}]
  %1 = quantize(%0) {{exp = 0, lo = {lo}, hi = {hi}}} : i32[2,3,{fan_in}]
  %2 = qdense(%1) {{weight = @w : i32[5,{fan_in}], bias = {bias}, weight_exp = {exp}, axis = 2, graded = {graded}, host = {host}}} : {out}[2,3,5]
  output(%2) {{layouts = [1]}}
}}
"""


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), graded=st.booleans(), host=st.booleans(),
       magnitude=st.sampled_from([1, 3, 2 ** 6, 2 ** 12]), weight_exp=st.integers(-6, 6),
       fan_in=st.sampled_from([3, 64, 700]), bias=st.sampled_from([0, 1000, 2 ** 20]))
def test_proven_dense_equals_the_reference(seed, graded, host, magnitude, weight_exp, fan_in, bias):
    """float32 and float64 products, the weight exponent folded into one GEMM with the bias (``exp >= 0``) or a
    scale and floor after it, binary input that is not 0/1 (``x != 0``), and the host readout in int64."""
    rng = np.random.default_rng(seed)
    lo = -magnitude if graded else 0
    text = DENSE.format(fan_in=fan_in, lo=lo, hi=magnitude, bias="@b : i32[5]" if bias else "none", exp=weight_exp,
                        graded=str(graded).lower(), host=str(host).lower(), out="i64" if host else "i32")
    weights = {"w": (2 * rng.integers(-128, 128, size=(5, fan_in))).astype(np.int32),
               "b": rng.integers(-bias, bias, size=5, endpoint=True).astype(np.int32)}
    graph = parse_graph(text, weights=weights if bias else {"w": weights["w"]})
    assume(proof_for(graph, analyze_ranges(graph), INT_RULES) is not None)
    x = rng.integers(lo, magnitude, size=(2, 3, fan_in), endpoint=True)
    _assert_same(graph, [x.astype(np.float32)])


CONV = """\
graph @conv {{
  %0 = input() {{name = "x", layout = "TB"}} : f32[2,2,{cin},6,5]
  %1 = quantize(%0) {{exp = 0, lo = {lo}, hi = {hi}}} : i32[2,2,{cin},6,5]
  %2 = qconv2d(%1) {{weight = @w : i32[{cout},{cin_group},{k},{k}], bias = {bias}, stride = [{s}, {s}], padding = [{p}, {p}], dilation = [1, 1], groups = {groups}}} : i32[2,2,{cout},{h},{w}]
  output(%2) {{layouts = [1]}}
}}
"""


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), magnitude=st.sampled_from([1, 2 ** 6, 2 ** 10, 2 ** 12]),
       signed=st.booleans(), kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1),
       groups=st.sampled_from([1, 2]), bias=st.sampled_from([0, 1000, 2 ** 22]))
def test_proven_conv_equals_the_reference(seed, magnitude, signed, kernel, stride, padding, groups, bias):
    """float32 and float64 convolutions (one-signed input lets ``sum |w| max |x|`` pass ``2**24`` while every sum
    stays below ``2**23``), with the bias inside the convolution."""
    rng = np.random.default_rng(seed)
    cin, cout, lo = 4 * groups, 2 * groups, -magnitude if signed else 0
    h, w = (6 + 2 * padding - kernel) // stride + 1, (5 + 2 * padding - kernel) // stride + 1
    text = CONV.format(cin=cin, cout=cout, cin_group=cin // groups, k=kernel, lo=lo, hi=magnitude,
                       bias="@b : i32[%d]" % cout if bias else "none", s=stride, p=padding, groups=groups, h=h, w=w)
    weights = {"w": rng.integers(-256, 255, size=(cout, cin // groups, kernel, kernel)).astype(np.int32),
               "b": rng.integers(-bias, bias, size=cout, endpoint=True).astype(np.int32)}
    graph = parse_graph(text, weights=weights if bias else {"w": weights["w"]})
    assume(proof_for(graph, analyze_ranges(graph), INT_RULES) is not None)
    x = rng.integers(lo, magnitude, size=(2, 2, cin, 6, 5), endpoint=True)
    _assert_same(graph, [x.astype(np.float32)])


ELEMENTWISE = """\
graph @elementwise {{
  %0 = input() {{name = "a", layout = "TB"}} : f32[2,3,4,6]
  %1 = input() {{name = "b", layout = "TB"}} : f32[2,3,4,6]
  %2 = quantize(%0) {{exp = 0, lo = 0, hi = 1}} : i32[2,3,4,6]
  %3 = quantize(%1) {{exp = 2, lo = -{m}, hi = {m}}} : i32[2,3,4,6]
  %4 = and_not(%2, %3) : i32[2,3,4,6]
  %5 = mul(%3, %3) : i32[2,3,4,6]
  %6 = add(%4, %5) : i32[2,3,4,6]
  %7 = qgain(%6) {{factor = 8}} : i32[2,3,4,6]
  %8 = transpose(%3) {{perm = [0, 1, 3, 2]}} : i32[2,3,6,4]
  %9 = matmul(%7, %8) : i32[2,3,4,4]
  %10 = sum(%9) {{axes = [0, 3], keepdim = false}} : i32[1,3,4]
  %11 = maxpool(%3) {{kernel = [2, 2], stride = [2, 2], padding = [1, 1], dilation = [1, 1], ceil_mode = true}} : i32[2,3,3,4]
  output(%10, %11) {{layouts = [1, 1]}}
}}
"""


@pytest.mark.parametrize("m", [3, 2 ** 5, 2 ** 7])
def test_proven_elementwise_rules_equal_the_reference(m):
    """``and_not``, ``mul``, ``add``, ``qgain``, ``matmul``, ``sum`` and a padded ``maxpool`` of graded values in float32 and, for the larger ``m``,
    float64 (the matmul's bound passes ``2**24``)."""
    rng = np.random.default_rng(m)
    graph = parse_graph(ELEMENTWISE.format(m=m))
    a = rng.integers(0, 1, size=(2, 3, 4, 6), endpoint=True).astype(np.float32)
    b = rng.uniform(-m, m, size=(2, 3, 4, 6)).astype(np.float32)
    _assert_same(graph, [a, b])


def test_a_report_that_proves_nothing_runs_the_reference_rules():
    """An overflow finding, an integer input or a gate outside [0, 1] leaves the report unused."""
    graph = parse_graph(LIF.format(lo=-(2 ** 20), hi=2 ** 20, dv=2048, vth=100))   # |a| reaches 2**17: u wraps
    assert _proof(graph, None) is None
    ints = parse_graph(LIF.format(lo=-10, hi=10, dv=2048, vth=100).replace(": f32[6,3,17]", ": i32[6,3,17]", 1)
                       .replace("%1 = quantize(%0) {exp = 0, lo = -10, hi = 10} : i32[6,3,17]\n", "")
                       .replace("qlif(%1)", "qlif(%0)"))
    assert _proof(ints, None) is None
    gate = parse_graph(ELEMENTWISE.format(m=3).replace("lo = 0, hi = 1", "lo = 0, hi = 2"))
    assert _proof(gate, None) is None
