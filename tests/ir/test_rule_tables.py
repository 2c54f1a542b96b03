"""Op traits and the per-op rule tables: every table covers every op of its phase, and an op a table lacks is
an error that names it. Adding an op touches the registry (its traits) and these tables, nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from spikec.backends.float.interpreter import EVAL_RULES, run_float
from spikec.backends.intsim.interpreter import INT_RULES, run_intsim
from spikec.errors import InputError, IRError, PassError, SpikecError
from spikec.ir import OPS, Graph, OpDef, TensorType
from spikec.ir.ops import OpCategory, OpTraits, Phase, infer_types, op_traits, ops_with, spike_valued
from spikec.passes import fold_batchnorm, fold_scales, scale_classes, spike_driven
from spikec.passes.quantize import QUANTIZE_RULES, UNQUANTIZABLE, Quantize, unquantizable
from spikec.passes.range_analysis import RANGE_RULES, analyze_ranges
from spikec.passes.value_domains import DOMAIN_RULES, ValueDomains

FLOAT_OPS = ops_with(phase=Phase.FLOAT)
INTEGER_OPS = ops_with(phase=Phase.INTEGER)
BOUNDARY = ops_with(category=OpCategory.BOUNDARY)  # the interpreters' shared loop binds inputs and outputs itself

# ---------------------------------------------------------------- the traits


def _same(types, attrs):
    return [types[0]]


def test_an_op_needs_its_traits():
    with pytest.raises(ValueError, match="op probe: needs its OpTraits"):
        OpDef("probe", "", 1, {}, _same, None)
    with pytest.raises(ValueError, match=r"op probe: parameters \['weight'\] are not attributes"):
        OpDef("probe", "", 1, {}, _same, OpTraits(OpCategory.WEIGHT, Phase.FLOAT, parameters=("weight",)))


# The ops registered when the lists of op names in the passes were replaced by traits. Each derived set,
# restricted to these ops, is the list it replaced, so every caller behaves as before; ops added later only
# have to be classified in the registry.
KNOWN = frozenset({
    "input", "output", "repeat_time", "to_time_major", "conv2d", "conv1d", "linear", "batchnorm", "lif", "if", "add",
    "mul", "and_not", "scale", "matmul", "maxpool", "avgpool", "mean", "sum", "reshape", "transpose", "quantize",
    "qconv2d", "qdense", "qlif", "qgain"})
REPLACED = {
    "spike_driven.WEIGHT_OPS": (spike_driven.WEIGHT_OPS, {"conv1d", "conv2d", "linear", "qconv2d", "qdense"}),
    "spike_driven.NEURON_OPS": (spike_driven.NEURON_OPS, {"lif", "if", "qlif"}),
    "spike_driven.VIEW_OPS": (spike_driven.VIEW_OPS, {"reshape", "transpose", "repeat_time", "to_time_major"}),
    "spike_driven.REAL_SOURCES": (spike_driven.REAL_SOURCES, {"conv1d", "conv2d", "linear", "qconv2d", "qdense",
                                                              "batchnorm", "input"}),
    "spike_driven.CHECKS weight ops": ({op for op, rule in spike_driven.CHECKS.items()
                                        if rule is spike_driven._weight_op},
                                       {"conv1d", "conv2d", "linear", "qconv2d", "qdense"}),
    "fold_batchnorm._WEIGHT_OPS": (fold_batchnorm._WEIGHT_OPS, {"conv2d", "conv1d", "linear"}),
    "fold_scales._WEIGHT_OPS": (fold_scales._WEIGHT_OPS, {"conv2d", "conv1d", "linear"}),
    "fold_scales._NEURONS": (fold_scales._NEURONS, {"lif", "if"}),
    "fold_scales._COMMUTING": (fold_scales._COMMUTING, {"transpose", "reshape", "sum", "mean"}),
    "scale_classes._NEURONS": (scale_classes._NEURONS, {"lif", "if"}),
    "scale_classes._WEIGHT_OPS": (scale_classes._WEIGHT_OPS, {"conv2d", "conv1d", "linear"}),
    "scale_classes._PRODUCTS": (scale_classes._PRODUCTS, {"mul", "matmul", "and_not"}),
    "scale_classes._SAME": (scale_classes._SAME, {"transpose", "reshape", "maxpool", "repeat_time", "to_time_major",
                                                  "sum"}),
    "float neurons (simulation.float_runner)": (ops_with(category=OpCategory.NEURON, phase=Phase.FLOAT),
                                                {"lif", "if"}),
    "integer neurons (simulation.intsim_runner)": (ops_with(category=OpCategory.NEURON, phase=Phase.INTEGER),
                                                   {"qlif"}),
    "views keeping the time axis (Lava lowering)": (ops_with(category=OpCategory.VIEW, per_step=True),
                                                    {"reshape", "transpose"}),
    "kept by erase_dead_nodes": (BOUNDARY, {"input", "output"}),
    "ops with learned parameters (inspect)": ({op for op in OPS if op_traits(op).parameters},
                                              {"conv2d", "conv1d", "linear", "batchnorm", "qconv2d", "qdense"}),
}


@pytest.mark.parametrize("name", sorted(REPLACED))
def test_derived_op_sets_are_the_lists_they_replaced(name):
    derived, replaced = REPLACED[name]
    assert set(derived) & KNOWN == replaced


def _value(op: str, *inputs):
    """A stand-in value produced by ``op`` from ``inputs``: what spike_valued reads."""
    node = type("N", (), {"op": op, "inputs": inputs})()
    return type("V", (), {"producer": node})()


def test_spike_valued_follows_neurons_through_the_ops_that_preserve_spikes():
    spikes, analog = _value("lif", _value("input")), _value("input")
    assert spike_valued(spikes) and spike_valued(_value("qlif", analog))
    assert spike_valued(_value("reshape", _value("maxpool", spikes)))
    assert spike_valued(_value("and_not", spikes, _value("repeat_time", spikes)))
    assert not spike_valued(analog)
    assert not spike_valued(_value("mul", spikes, analog))
    assert not spike_valued(_value("add", spikes, spikes))
    assert not spike_valued(_value("sum", spikes))


# ---------------------------------------------------------------- coverage: one test per table


@pytest.mark.parametrize("op", sorted(OPS))
def test_shape_rules_cover_every_op(op):
    assert (OPS[op].infer is None) == (op == "input")  # an input declares its type


@pytest.mark.parametrize("op", sorted(FLOAT_OPS - BOUNDARY))
def test_float_interpreter_covers_every_float_op(op):
    assert op in EVAL_RULES


@pytest.mark.parametrize("op", sorted(INTEGER_OPS - BOUNDARY))
def test_intsim_covers_every_integer_op(op):
    assert op in INT_RULES


@pytest.mark.parametrize("op", sorted(OPS))
def test_value_domains_cover_every_op(op):
    assert op in DOMAIN_RULES


@pytest.mark.parametrize("op", sorted(INTEGER_OPS))
def test_range_analysis_covers_every_integer_op(op):
    assert op in RANGE_RULES


@pytest.mark.parametrize("op", sorted(FLOAT_OPS))
def test_quantize_covers_every_float_op(op):
    """Rewritten by a rule, copied as an op of both phases, or refused with a reason of its own."""
    assert unquantizable(op) is None or op in UNQUANTIZABLE


@pytest.mark.parametrize("table, phase", [(EVAL_RULES, Phase.FLOAT), (INT_RULES, Phase.INTEGER),
                                          (RANGE_RULES, Phase.INTEGER), (QUANTIZE_RULES, Phase.FLOAT),
                                          (UNQUANTIZABLE, Phase.FLOAT)],
                         ids=["float", "intsim", "range", "quantize", "unquantizable"])
def test_tables_hold_only_ops_of_their_phase(table, phase):
    assert set(table) <= ops_with(phase=phase)


# ---------------------------------------------------------------- a missing rule names the op


@pytest.fixture
def probe(monkeypatch):
    """Register a throwaway one-input op ``probe`` of the given phase (removed after the test)."""
    def register(phase: Phase) -> str:
        traits = OpTraits(OpCategory.ELEMENTWISE, phase, per_step=True)
        monkeypatch.setitem(OPS, "probe", OpDef("probe", "the identity, known to no rule table", 1, {}, _same, traits))
        return "probe"
    return register


def _graph(op: str, dtype: str, attrs: dict | None = None) -> Graph:
    """input -> ``op`` -> output on a [2, 1, 3] value."""
    graph = Graph(op)
    x = graph.create_node("input", [], {"name": "x", "layout": "TB"}, output_types=[TensorType((2, 1, 3), dtype)])
    y = graph.add(op, [x.output], attrs)
    graph.create_node("output", [y], {"layouts": (1,)})
    return graph


def test_float_interpreter_names_an_op_without_a_rule(probe):
    with pytest.raises(SpikecError, match="float interpreter has no rule for probe"):
        run_float(_graph(probe(Phase.FLOAT), "f32"), [np.zeros((2, 1, 3), np.float32)])


def test_intsim_names_an_op_without_a_rule(probe):
    with pytest.raises(SpikecError, match="intsim has no rule for probe"):
        run_intsim(_graph(probe(Phase.INTEGER), "i32"), [np.zeros((2, 1, 3), np.int32)])


def test_value_domains_name_an_op_without_a_rule(probe):
    with pytest.raises(PassError, match="value-domains: no domain rule for probe"):
        ValueDomains()(_graph(probe(Phase.BOTH), "f32"))


def test_range_analysis_names_an_op_without_a_rule(probe):
    with pytest.raises(PassError, match="range-analysis: no interval rule for probe"):
        analyze_ranges(_graph(probe(Phase.INTEGER), "i32"))


def test_quantize_names_an_op_without_a_rule(probe):
    with pytest.raises(PassError, match=r"quantize: probe: probe cannot be quantized \(quantize has no rule for it\)"):
        Quantize()(_graph(probe(Phase.FLOAT), "f32"))


def test_quantize_copies_an_op_of_both_phases_and_refuses_the_rest(probe):
    assert unquantizable(probe(Phase.BOTH)) is None
    assert unquantizable("qlif") == "quantize has no rule for it"
    with pytest.raises(InputError, match=r"quantize: scale: scale cannot be quantized \(run fold-scales first"):
        Quantize()(_graph("scale", "f32", {"factor": 0.5}))


def test_shape_rules_name_an_op_without_one():
    with pytest.raises(IRError, match="unknown op 'probe'"):
        infer_types("probe", [TensorType((2, 1, 3))], {})
    with pytest.raises(IRError, match="input declares its output type"):
        infer_types("input", [], {"name": "x", "layout": "TB"})
