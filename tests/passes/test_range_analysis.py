"""range-analysis: the intervals are sound (every value intsim computes on random inputs lies inside
its interval, on every zoo model) and an overflow is named with the node and the bound."""

from __future__ import annotations

import numpy as np

from conftest import small_input, small_model
from helpers import graph_from_text
from spikec.backends.intsim.interpreter import run_intsim
from spikec.compiler import compile_graph
from spikec.frontends.torch import trace_module
from spikec.passes.quantize import Calibration, QuantizeOptions
from spikec.passes.range_analysis import RangeAnalysis


def test_intervals_contain_every_observed_value(zoo_arch):
    model, x = small_model(zoo_arch), small_input(zoo_arch, batch=4)
    # calibrated on x: at the default 2**-8 some zoo models' encoding weights all quantize to 0
    options = QuantizeOptions(calibration=Calibration(x.numpy(), "random"))
    compiled = compile_graph(trace_module(model, x).graph, zoo_arch, x.shape, "B", options=options)
    assert not compiled.ranges.problems
    run = run_intsim(compiled.graph, [x.numpy() * 0.5], keep_values=True)
    for node, value in run.values.items():
        interval = compiled.ranges.of(node.output)
        assert interval.lo <= int(value.min()) and int(value.max()) <= interval.hi, node.describe()


OVERFLOW = """\
graph @big {
  %0 = input() {name = "x", layout = "TB"} : i32[2,1,300]
  %1 = qdense(%0) {weight = @w : i32[4,300], bias = none, weight_exp = 7, axis = 2, graded = false, host = false} : i32[2,1,4] loc("fc" at "m.py":3)
  %2 = qlif(%1) {du = 4095, dv = 2048, vth = 100} : i32[2,1,4] loc("lif" at "m.py":4)
  output(%2) {layouts = [1]}
}
"""


def test_overflowing_messages_are_named():
    graph = graph_from_text(OVERFLOW, w=np.full((4, 300), 254, dtype=np.int32))
    report = RangeAnalysis()(graph)
    problems = [str(p) for p in report.problems]
    assert problems[0] == ("qlif in lif (m.py:4): its input reaches [0, 9753600]; u = a << 6 wraps at 24 bits "
                           "unless |a| < 2**17")
    assert problems[1].startswith("qlif in lif (m.py:4): its membrane can reach [0, ")
