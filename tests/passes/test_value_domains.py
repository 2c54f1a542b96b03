"""Value-domain analysis: a rule for every op, sound and exact integer bounds, Spikformer's SEW ranges."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from spikec.backends.float.interpreter import EVAL_RULES
from spikec.errors import PassError
from spikec.frontends.torch import trace_module
from spikec.ir import OPS, Graph, TensorType, print_graph
from spikec.models import build_model, default_input_shape
from spikec.passes import value_domains
from spikec.passes.value_domains import DOMAIN_RULES, REAL, SPIKE, Domain, ValueDomains

pytestmark = pytest.mark.core

SHAPE = (2, 1, 3, 4)  # [T, B, rows, cols]


def test_every_registered_op_has_a_domain_rule():
    assert set(DOMAIN_RULES) == set(OPS)


def test_domain_names_and_order():
    assert (str(SPIKE), str(Domain(0, 4)), str(REAL)) == ("spike", "int[0,4]", "real")
    assert SPIKE.is_spike and Domain(0, 0).is_spike and not Domain(0, 2).is_spike and not REAL.is_int
    assert Domain(0, 2).contains(0.0, 2.0, integral=True)
    assert not Domain(0, 2).contains(0.0, 3.0, integral=True)
    assert not Domain(0, 2).contains(0.0, 1.0, integral=False)
    assert REAL.contains(-5.0, 0.5, integral=False)
    with pytest.raises(ValueError):
        Domain(3, 1)
    with pytest.raises(ValueError):
        Domain(0, None)


def _two_inputs(shape_b=SHAPE):
    graph = Graph("g")
    x = graph.create_node("input", [], {"name": "x", "layout": "TB"}, output_types=[TensorType(SHAPE)]).output
    y = graph.create_node("input", [], {"name": "y", "layout": "TB"}, output_types=[TensorType(shape_b)]).output
    return graph, x, y


def _node(op: str, attrs: dict | None = None):
    if op == "matmul":
        graph, x, y = _two_inputs((2, 1, 4, 5))
        return graph.create_node(op, [x, y], attrs or {})
    graph, x, y = _two_inputs()
    inputs = [x, y] if OPS[op].num_inputs == 2 else [x]
    return graph.create_node(op, inputs, attrs or {})


NODES = {
    "add": lambda: _node("add"),
    "mul": lambda: _node("mul"),
    "and_not": lambda: _node("and_not"),
    "matmul": lambda: _node("matmul"),
    "sum": lambda: _node("sum", {"axes": (3,), "keepdim": False}),
    "scale": lambda: _node("scale", {"factor": -2.0}),
    "maxpool": lambda: _node("maxpool", {"kernel": (2, 2), "stride": (1, 1), "padding": (1, 1),
                                         "dilation": (1, 1), "ceil_mode": False}),
}

intervals = st.tuples(st.integers(-3, 3), st.integers(0, 4)).map(lambda t: Domain(t[0], t[0] + t[1]))


def _evaluate(node, tensors):
    return EVAL_RULES[node.op](node, tensors)


@pytest.mark.parametrize("op", sorted(NODES))
@settings(max_examples=25, deadline=None)
@given(a=intervals, b=intervals, seed=st.integers(0, 2**16))
def test_integer_rules_are_sound_and_exact(op, a, b, seed):
    """Random operands inside their domains land inside the result; constant operands at the interval
    ends reach both result bounds (the bounds are exact)."""
    node = NODES[op]()
    domains = (a, b)[:len(node.inputs)]
    (result,) = DOMAIN_RULES[op](node, domains)
    generator = torch.Generator().manual_seed(seed)
    operands = [torch.randint(d.lo, d.hi + 1, v.shape, generator=generator).float()
                for d, v in zip(domains, node.inputs)]
    out = _evaluate(node, operands)
    assert result.lo <= out.min().item() and out.max().item() <= result.hi
    reached = set()
    for ends in itertools.product(*[(d.lo, d.hi) for d in domains]):
        out = _evaluate(node, [torch.full(v.shape, float(e)) for e, v in zip(ends, node.inputs)])
        reached |= {out.min().item(), out.max().item()}
    assert {result.lo, result.hi} <= reached


BATCHNORM_ATTRS = {"weight": None, "bias": None, "running_mean": np.zeros(3, np.float32),
                   "running_var": np.ones(3, np.float32), "eps": 1e-5, "axis": 2}


@pytest.mark.parametrize("op, attrs, domains, expected", [
    ("add", {}, (SPIKE, SPIKE), Domain(0, 2)),
    ("add", {}, (Domain(0, 2), SPIKE), Domain(0, 3)),
    ("add", {}, (SPIKE, REAL), REAL),
    ("and_not", {}, (SPIKE, SPIKE), SPIKE),
    ("mul", {}, (SPIKE, SPIKE), SPIKE),
    ("mul", {}, (SPIKE, REAL), REAL),
    ("matmul", {}, (SPIKE, SPIKE), Domain(0, 4)),
    ("matmul", {}, (REAL, SPIKE), REAL),
    ("scale", {"factor": 0.125}, (Domain(0, 4),), REAL),
    ("scale", {"factor": 3.0}, (SPIKE,), Domain(0, 3)),
    ("mean", {"axes": (3,), "keepdim": False}, (SPIKE,), REAL),
    ("sum", {"axes": (2, 3), "keepdim": False}, (SPIKE,), Domain(0, 12)),
    ("lif", {"tau": 2.0, "v_threshold": 1.0, "v_reset": 0.0, "decay_input": True}, (REAL,), SPIKE),
    ("batchnorm", None, (SPIKE,), REAL),
    ("reshape", {"shape": (12,)}, (Domain(0, 2),), Domain(0, 2)),
])
def test_rule_table(op, attrs, domains, expected):
    node = _node(op, BATCHNORM_ATTRS if attrs is None else attrs)
    assert DOMAIN_RULES[op](node, domains) == (expected,)


def test_mean_over_one_element_keeps_the_domain():
    graph, x, _ = _two_inputs()
    node = graph.create_node("mean", [x], {"axes": (2,), "keepdim": True})
    lone = graph.create_node("mean", [graph.add("reshape", [x], {"shape": (1, 12)})], {"axes": (2,), "keepdim": False})
    assert DOMAIN_RULES["mean"](node, (SPIKE,)) == (REAL,)
    assert DOMAIN_RULES["mean"](lone, (SPIKE,)) == (SPIKE,)


def _trace(name: str, **config):
    torch.manual_seed(0)
    model = build_model(name, config)
    return trace_module(model, torch.rand(default_input_shape(name, config)), name=name).graph


def _input_domain(graph, domains, module: str):
    (node,) = [n for n in graph.nodes if n.module == module]
    return domains[node.inputs[0]]


@pytest.mark.parametrize("name, proj, fc1", [("spikformer-cifar", "linear", "fc1_linear"),
                                             ("spikformer-dvs", "conv", "fc1_conv")])
def test_spikformer_sew_ranges_are_exact(name, proj, fc1):
    """Block l reads int[0, 2 + 2l] at q/k/v and int[0, 3 + 2l] at fc1: the SPS add gives int[0, 2], and each
    SEW residual add adds one more spike tensor."""
    graph = _trace(name, depth=3, embed_dim=32, num_heads=2, T=2, img_size=16 if "cifar" in name else 32)
    domains = ValueDomains()(graph)
    sps_add = next(n for n in graph.nodes if n.op == "add" and n.module == "patch_embed")
    assert domains[sps_add.output] == Domain(0, 2)
    for block in range(3):
        for q in "qkv":
            assert _input_domain(graph, domains, f"block.{block}.attn.{q}_{proj}") == Domain(0, 2 + 2 * block)
        assert _input_domain(graph, domains, f"block.{block}.mlp.{fc1}") == Domain(0, 3 + 2 * block)


def test_analysis_leaves_the_graph_alone():
    graph = _trace("spikingformer-cifar", depth=1, embed_dim=32, num_heads=2, T=2, img_size=16)
    before = print_graph(graph)
    domains = ValueDomains()(graph)
    assert print_graph(graph) == before
    assert set(domains) == set(graph.values())
    assert all(domains[n.output].is_spike for n in graph.nodes if n.op == "lif")


def test_missing_rule_is_a_pass_error_naming_the_node(monkeypatch):
    graph = _trace("spikformer-cifar", depth=1, embed_dim=32, num_heads=2, T=2, img_size=16)
    monkeypatch.delitem(value_domains.DOMAIN_RULES, "maxpool")
    with pytest.raises(PassError, match=r"value-domains: no domain rule for maxpool in patch_embed.maxpool2 "
                                        r"\(spikec/models/spikformer.py:\d+\)"):
        ValueDomains()(graph)


def test_broken_rule_is_reraised_with_the_pass_name(monkeypatch):
    graph = _trace("spikformer-cifar", depth=1, embed_dim=32, num_heads=2, T=2, img_size=16)
    monkeypatch.setitem(value_domains.DOMAIN_RULES, "add", lambda node, domains: ())
    with pytest.raises(PassError, match=r"value-domains: the add rule gave 0 domains for 1 outputs at add in "
                                        r"patch_embed"):
        ValueDomains()(graph)


def test_quantized_ops():
    graph = Graph("q")
    x = graph.create_node("input", [], {"name": "x", "layout": "TB"}, output_types=[TensorType(SHAPE)]).output
    q = graph.create_node("quantize", [x], {"exp": 4, "lo": 0, "hi": 255})
    gain = graph.create_node("qgain", [q.output], {"factor": 3})
    lif = graph.create_node("qlif", [gain.output], {"du": 4095, "dv": 0, "vth": 10})
    dense = graph.create_node("qdense", [lif.output], {"weight": np.ones((5, 4), np.int32), "bias": None,
                                                        "weight_exp": 0, "axis": 3, "graded": False, "host": False})
    graph.create_node("output", [dense.output], {"layouts": (1,)})
    domains = ValueDomains()(graph)
    assert [str(domains[n.output]) for n in (q, gain, lif, dense)] == ["int[0,255]", "int[0,765]", "spike", "real"]
