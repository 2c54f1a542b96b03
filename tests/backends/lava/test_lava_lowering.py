"""Lowering an integer graph to Lava processes: the mapping per op, delays, biases, relays, determinism, the
rule table's coverage of the integer ops, the compile's range analysis reused, and the diagnostics for what
has no mapping. The hand-built graphs also run on Lava (tiny, a second each)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lava_cases import LAVA_TIMEOUT_S, assert_bit_exact, dense, encoded_input, lif, residual_graph, skip_graph, \
    zoo_case
from spikec.backends.lava import helpers, lowering_streams
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.lowering_rules import RULES
from spikec.backends.lava.regions import HOST_ONLY_OPS
from spikec.backends.lava.runtime import run_lava
from spikec.errors import LoweringError
from spikec.ir import Graph, Location
from spikec.ir.ops import Phase, ops_with
from spikec.passes.range_analysis import analyze_ranges


def _by_name(pg):
    return {p.name: p for p in pg.processes}


def _inputs_of(pg, name):
    return sorted((c.src, c.src_port, c.views) for c in pg.connections if c.dst == name)


def test_residual_graph_maps_to_dense_delaydense_lifreset_and_an_integrator():
    pg = lower(residual_graph(T=3, bias=True))
    procs = _by_name(pg)
    assert sorted(procs) == sorted([
        "source2", "dense3", "lif4", "dense5", "lif6", "dense7", "graded3_d2", "relay_syn3_d2", "lif9",
        "integrator10", "sink_lif4", "sink_lif6", "sink_lif9", "sink_integrator10"])
    assert procs["dense3"].kind == "Dense" and procs["dense3"].args["num_message_bits"] == 24
    assert procs["dense5"].args["num_message_bits"] == 0          # spikes in: binary messages
    assert procs["dense3"].args["sign_mode"] == {"$": "sign_mode", "name": "MIXED"}
    # The MS residual's short path: d1's synapses exist once; d1 is relayed 2 steps late as graded spikes (a
    # GradedVec sending what it receives, and identity synapses that take 1 + 1 steps) into the same LIF port.
    assert procs["graded3_d2"].kind == "GradedVec" and procs["graded3_d2"].args["vth"] == 0
    assert _inputs_of(pg, "graded3_d2") == [("dense3", "a_out", ())]
    relay = procs["relay_syn3_d2"]
    assert relay.kind == "DelaySparse" and relay.args["delays"] == 1 and relay.args["num_message_bits"] == 24
    assert relay.args["weights"] == {"$": "layout", "fn": "identity", "args": [6]}
    assert _inputs_of(pg, "lif9") == [("dense7", "a_out", ()), ("relay_syn3_d2", "a_out", ())]
    # Each LIF resets when its wave arrives: offset (1 + depth) % T.
    assert [(n, procs[n].kind, procs[n].args["reset_offset"]) for n in ("lif4", "lif6", "lif9")] == [
        ("lif4", "LIFReset", 2), ("lif6", "LIFReset", 0), ("lif9", "LIFReset", 1)]
    assert all(procs[n].args["reset_interval"] == 3 for n in ("lif4", "lif6", "lif9"))
    # The biases of both synapse groups feeding lif9 are its bias_mant << 6.
    graph = residual_graph(T=3, bias=True)
    expected = graph.nodes[3].attrs["bias"] + graph.nodes[7].attrs["bias"]
    assert procs["lif9"].args["bias_exp"] == 6
    assert np.array_equal(pg.arrays[procs["lif9"].args["bias_mant"]["key"]], expected)
    assert pg.host_nodes == [11, 12]                           # the classifier and the output, on the host
    assert [(p.name, p.kind, p.depth) for p in pg.probes] == [
        ("lif4", "spikes", 1), ("lif6", "spikes", 2), ("lif9", "spikes", 3), ("integrator10", "integral", 3)]


@pytest.mark.lava
def test_residual_graph_runs_bit_exact():
    graph = residual_graph(T=3, bias=True)
    x = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    assert_bit_exact(graph, x, run_lava(graph, [x], timeout=LAVA_TIMEOUT_S))


@pytest.mark.lava
def test_a_bias_the_lif_cannot_take_becomes_bias_messages():
    # With current memory (du < 4095) intsim's bias decays through u; Lava's bias_mant goes to v: not the same,
    # so the bias travels as messages into the neurons' input port instead.
    g = Graph("memory")
    r = encoded_input(g, 4, 3)
    s = lif(g, dense(g, r, 5, graded=True, bias=True), du=1024)
    g.create_node("output", [s], {"layouts": (1,)})
    pg = lower(g)
    procs = _by_name(pg)
    assert "bias_mant" not in procs["lif4"].args
    assert procs["bias4"].kind == "Bias" and _inputs_of(pg, "lif4") == [("bias4", "s_out", ())]
    x = np.random.default_rng(1).random((2, 4)).astype(np.float32)
    assert_bit_exact(g, x, run_lava(g, [x], timeout=LAVA_TIMEOUT_S))


@pytest.mark.lava
def test_spike_delays_chain_relays_beyond_the_synapse_limit(monkeypatch):
    # With synaptic delays capped at 1 step (Loihi: 63), a 3-step wait is relay chains of at most 2 steps:
    # s1 -> [Sparse, LIF] (1 step) -> [DelaySparse 1, LIF] (2 more).
    monkeypatch.setattr(lowering_streams, "MAX_SYNAPSE_DELAY", 1)
    graph = skip_graph(T=2, hops=3)
    pg = lower(graph)
    procs = _by_name(pg)
    relays = sorted((p.name, p.kind, p.args.get("delays")) for p in pg.processes if p.role == "relay")
    assert relays == [("relay4_d1", "LIF", None), ("relay4_d3", "LIF", None), ("relay_syn4_d1", "Sparse", None),
                      ("relay_syn4_d3", "DelaySparse", 1)]
    assert procs["relay4_d3"].args == {"shape": [5], "du": 4095, "dv": 4095, "vth": 0}
    assert _inputs_of(pg, "relay_syn4_d3")[0][0] == "relay4_d1"
    x = np.random.default_rng(2).random((3, 5)).astype(np.float32)
    assert_bit_exact(graph, x, run_lava(graph, [x], pg, timeout=LAVA_TIMEOUT_S))


def test_token_wise_linear_is_a_shared_weight_conv_never_a_dense_one():
    # Each token-wise linear stores its (out, in) weights once: a 1x1 Conv over (tokens, channels), the weight
    # exponent (and any folded gain) in the integer weights, since Lava's Conv has no exponent.
    graph, _ = zoo_case("spikingformer-cifar")
    pg = lower(graph)
    token_wise = [n for n in graph.nodes if n.op == "qdense" and not n.attrs["host"]]
    convs = {p.node: p for p in pg.processes if p.kind == "Conv"}
    assert token_wise
    for node in token_wise:
        spec = convs[graph.nodes.index(node)]
        assert spec.args["weight"]["fn"] == "conv_weight" and spec.args["weight"]["args"] == [node.attrs["weight_exp"]]
        c_in = node.inputs[0].type.sample_shape[node.attrs["axis"] - 2]
        assert spec.in_ports["s_in"][-1] == c_in
    assert not [p for p in pg.processes if p.kind in ("Dense", "DelayDense", "Sparse", "DelaySparse")
                and p.args["weights"].get("fn") == "token_dense"]


def test_token_dense_applies_the_same_weights_at_every_position():
    rng = np.random.default_rng(3)
    w = rng.integers(-4, 5, (3, 4))
    x = rng.integers(0, 2, (2, 4, 5))                       # [pre, features, post]: the features axis in the middle
    matrix = helpers.token_dense(w, 2, 5)
    expected = np.einsum("oi,pil->pol", w, x)
    assert matrix.shape == (2 * 3 * 5, 2 * 4 * 5) and matrix.nnz == 2 * 5 * np.count_nonzero(w)
    assert np.array_equal(matrix @ x.ravel(), expected.ravel())


def test_lowering_is_deterministic():
    first, second = lower(residual_graph(bias=True)), lower(residual_graph(bias=True))
    assert json.dumps(first.to_json(), sort_keys=True) == json.dumps(second.to_json(), sort_keys=True)
    assert first.arrays.keys() == second.arrays.keys()
    assert all(np.array_equal(first.arrays[k], second.arrays[k]) for k in first.arrays)


def test_broadcasting_add_has_no_mapping_and_says_so():
    g = Graph("broadcast")
    r = encoded_input(g, 4, 2)
    a = dense(g, r, 4, graded=True)
    b = g.add("sum", [a], {"axes": (2,), "keepdim": True})
    s = lif(g, g.add("add", [a, b]))
    g.create_node("output", [s], {"layouts": (1,)})
    with pytest.raises(LoweringError, match=r"lava: add\b.*a broadcasting add \(\[4\] \+ \[1\]\) has no Lava mapping"):
        lower(g)


def test_on_chip_op_reading_the_host_readout_is_refused():
    g = Graph("late")
    r = encoded_input(g, 4, 2)
    s = lif(g, dense(g, r, 4, graded=True))
    h = dense(g, s, 4, host=True)
    back = g.add("qgain", [h], {"factor": 2})
    g.create_node("output", [back], {"layouts": (1,)})
    pg = lower(g)               # the gain follows the host readout, so it runs on the host too
    assert pg.host_nodes == [5, 6, 7]


INTEGER_OPS = sorted(ops_with(phase=Phase.INTEGER))
"""Every op an integer graph can hold, by the registry's traits (the integer-only ops and those of both phases)."""


@pytest.mark.parametrize("op", INTEGER_OPS)
def test_every_integer_op_has_a_lowering_rule_unless_it_is_host_only_by_design(op):
    # The host classifier (qdense with host) and time sums are the readout by their attributes, not their op, so
    # their op has a rule (for its on-chip form).
    if op in HOST_ONLY_OPS:
        assert op not in RULES, f"{op} is host-only by design, yet has a lowering rule"
    else:
        assert op in RULES, f"{op} can run on chip but has no lowering rule in lowering_rules.RULES"


def test_the_rule_table_holds_only_integer_ops_and_the_host_only_ops_are_the_encoding_and_the_boundary():
    assert sorted(set(RULES) - set(INTEGER_OPS)) == []
    assert HOST_ONLY_OPS == {"input", "quantize", "repeat_time", "to_time_major", "output"}


def test_an_op_without_a_rule_is_refused_naming_the_op_and_its_module(monkeypatch):
    g = Graph("gain")
    r = encoded_input(g, 4, 2)
    gain = g.add("qgain", [dense(g, r, 4, graded=True)], {"factor": 2}, [Location("block.0.mlp.gain", "m.py", 7)])
    g.create_node("output", [lif(g, gain)], {"layouts": (1,)})
    monkeypatch.delitem(RULES, "qgain")
    with pytest.raises(LoweringError, match=r"lava: qgain in block\.0\.mlp\.gain \(m\.py:7\): qgain has no Lava "
                                            r"mapping \(no rule in spikec\.backends\.lava\.lowering_rules\.RULES\)"):
        lower(g)


def test_lowering_takes_the_compile_s_range_analysis_and_refuses_another_graph_s():
    graph = residual_graph(T=3, bias=True)
    given = lower(graph, ranges=analyze_ranges(graph))
    assert json.dumps(given.to_json(), sort_keys=True) == json.dumps(lower(graph).to_json(), sort_keys=True)
    assert given.process("lif9").args["bias_exp"] == 6              # the bias went to the neurons, as proven
    with pytest.raises(ValueError, match="not the range analysis of graph 'residual'"):
        lower(graph, ranges=analyze_ranges(residual_graph(T=3, bias=True)))
