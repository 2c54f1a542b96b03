"""The IR's contract: printing round-trips exactly (text with or without weights, and JSON), the verifier
rejects broken graphs with a message naming the node, and edits through the API keep use lists right."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikec.errors import IRError
from spikec.ir import (OPS, Graph, Location, TensorType, dumps, graph_difference, loads, parse_graph, print_graph,
                       to_networkx, verify_graph, weight_table)

pytestmark = pytest.mark.core


def _input(graph: Graph, shape, layout="B"):
    return graph.create_node("input", [], {"name": "x", "layout": layout}, output_types=[TensorType(shape)]).output


def _conv_attrs(weight, padding=(1, 1)):
    return {"weight": weight, "bias": None, "stride": (1, 1), "padding": padding, "dilation": (1, 1), "groups": 1}


def _small_graph() -> Graph:
    g = Graph("small")
    x = _input(g, (1, 2, 3, 8, 8))
    y = g.add("repeat_time", [x], {"T": 4}, [Location("", "model.py", 10)])
    w = np.arange(6 * 3 * 3 * 3, dtype=np.float32).reshape(6, 3, 3, 3) / 100
    y = g.add("conv2d", [y], _conv_attrs(w), [Location("conv", "model.py", 11)])
    y = g.add("lif", [y], {"tau": 2.0, "v_threshold": 1.0, "v_reset": 0.0, "decay_input": True},
              [Location("lif", "model.py", 12)])
    z = g.add("scale", [y], {"factor": 0.125}, [Location("", "model.py", 13), Location("attn", "model.py", 40)])
    y = g.add("add", [y, z])
    y = g.add("mean", [y], {"axes": (0,), "keepdim": False})
    g.create_node("output", [y], {"layouts": (0,)})
    return g


GOLDEN_SMALL = """\
graph @small {
  %0 = input() {name = "x", layout = "B"} : f32[1,2,3,8,8]
  %1 = repeat_time(%0) {T = 4} : f32[4,2,3,8,8] loc("" at "model.py":10)
  %2 = conv2d(%1) {weight = @conv.weight : f32[6,3,3,3], bias = none, stride = [1, 1], padding = [1, 1], \
dilation = [1, 1], groups = 1} : f32[4,2,6,8,8] loc("conv" at "model.py":11)
  %3 = lif(%2) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[4,2,6,8,8] \
loc("lif" at "model.py":12)
  %4 = scale(%3) {factor = 0.125} : f32[4,2,6,8,8] loc("" at "model.py":13, "attn" at "model.py":40)
  %5 = add(%3, %4) : f32[4,2,6,8,8]
  %6 = mean(%5) {axes = [0], keepdim = false} : f32[1,2,6,8,8]
  output(%6) {layouts = [0]}
}
"""


def test_printed_form_is_golden():
    assert print_graph(_small_graph()) == GOLDEN_SMALL


def test_round_trip_with_and_without_weights():
    g = _small_graph()
    assert graph_difference(parse_graph(print_graph(g, with_weights=True)), g) is None
    assert graph_difference(parse_graph(print_graph(g), weights=weight_table(g)), g) is None
    assert graph_difference(loads(dumps(g), weight_table(g)), g) is None
    assert dumps(loads(dumps(g), weight_table(g))) == dumps(g)


def test_every_op_has_a_docstring():
    for name, definition in OPS.items():
        assert definition.doc, f"op {name} has no docstring"


def test_networkx_view_has_one_edge_per_use():
    g = _small_graph()
    view = to_networkx(g)
    assert view.number_of_nodes() == len(g.nodes)
    assert view.number_of_edges() == sum(len(n.inputs) for n in g.nodes)
    assert view.nodes[2]["op"] == "conv2d" and view.nodes[2]["module"] == "conv"


def test_set_input_and_replace_all_uses_keep_use_lists():
    g = _small_graph()
    lif, scale, add = g.nodes[3], g.nodes[4], g.nodes[5]
    add.set_input(1, lif.output)
    assert (add, 1) in lif.output.uses and not scale.output.uses
    g.erase(scale)
    g.replace_all_uses(lif.output, g.nodes[2].output)
    assert not lif.output.uses and add.inputs == (g.nodes[2].output, g.nodes[2].output)
    verify_graph(g)


def test_erasing_a_used_node_names_its_users():
    g = _small_graph()
    with pytest.raises(IRError, match=r"cannot erase lif in lif \(model.py:12\): its result is still used by scale"):
        g.erase(g.nodes[3])


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.replace("f32[4,2,6,8,8] loc(\"conv\"", "f32[4,2,7,8,8] loc(\"conv\""),
     "model.py:11: node 2 \\(conv2d in conv\\): declares f32\\[4,2,7,8,8\\] but its shape rule gives f32\\[4,2,6,8,8\\]"),
    (lambda t: t.replace("%5 = add(%3, %4)", "%5 = add(%3, %9)"), "add uses %9 before it is defined"),
    (lambda t: t.replace("{T = 4}", "{}"), "repeat_time: attributes: missing T"),
    (lambda t: t.replace("{T = 4}", "{T = 4.0}"), "repeat_time: attribute T must be int, got 4.0"),
    (lambda t: t.replace("lif(%2)", "leaky(%2)"), "unknown op 'leaky'"),
    (lambda t: t.replace("{factor = 0.125}", "{factor = 0.125, gain = 2}"), "scale: attributes: unknown gain"),
    (lambda t: t.replace("  output(%6) {layouts = [0]}\n", ""), "0 output nodes"),
    (lambda t: t.replace("graph @small {", "graph small {"), "1:7: expected handle"),
    (lambda t: t.replace("= [1, 1], groups", "= [1, 1] groups"), "expected ','"),
])
def test_broken_text_is_rejected_with_a_located_message(mutate, message):
    g = _small_graph()
    with pytest.raises(IRError, match=message):
        parse_graph(mutate(print_graph(g)), weights=weight_table(g))


def test_missing_weights_are_named():
    with pytest.raises(IRError, match="no array for @conv.weight"):
        parse_graph(print_graph(_small_graph()))


def test_weights_of_the_wrong_shape_are_rejected():
    with pytest.raises(IRError, match=r"@conv.weight is declared f32\[6, 3, 3, 3\] but the array is float32\[6, 3\]"):
        parse_graph(print_graph(_small_graph()), weights={"conv.weight": np.zeros((6, 3), np.float32)})


def test_shape_rules_reject_bad_nodes_where_they_are_built():
    g = Graph("bad")
    x = _input(g, (1, 1, 3, 8, 8))
    with pytest.raises(IRError, match=r"model.py:5 \(enc\): conv2d: weight expects 4 input channels, got 3"):
        g.add("conv2d", [x], _conv_attrs(np.zeros((6, 4, 3, 3), np.float32)), [Location("enc", "model.py", 5)])
    with pytest.raises(IRError, match="transpose: perm .* must keep the time and batch axes first"):
        g.add("transpose", [x], {"perm": (1, 0, 2, 3, 4)})
    with pytest.raises(IRError, match="mean: axes .* other than the batch axis 1"):
        g.add("mean", [x], {"axes": (1,), "keepdim": False})


# ---------------------------------------------------------------- random graphs


_FLOATS = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


@st.composite
def _weights(draw, shape):
    values = draw(st.lists(_FLOATS, min_size=1, max_size=8))
    return np.resize(np.array(values, dtype=np.float32), shape)


def _draw_lif(draw, g, v, values):
    return {"tau": draw(st.floats(1.01, 100)), "v_threshold": draw(_FLOATS), "v_reset": draw(st.none() | _FLOATS),
            "decay_input": draw(st.booleans())}, [v]


def _draw_if(draw, g, v, values):
    return {"v_threshold": draw(_FLOATS), "v_reset": draw(st.none() | _FLOATS)}, [v]


def _draw_scale(draw, g, v, values):
    return {"factor": draw(st.floats(allow_nan=False, allow_infinity=False))}, [v]


def _draw_binary(draw, g, v, values):
    return {}, [v, draw(st.sampled_from([u for u in values if u.type == v.type]))]


def _draw_linear(draw, g, v, values):
    out = draw(st.integers(1, 4))
    return {"weight": draw(_weights((out, v.type.shape[-1]))), "bias": draw(st.none() | _weights((out,)))}, [v]


def _draw_batchnorm(draw, g, v, values):
    c = v.type.shape[2]
    return {"weight": draw(st.none() | _weights((c,))), "bias": draw(st.none() | _weights((c,))),
            "running_mean": draw(_weights((c,))), "running_var": draw(_weights((c,))),
            "eps": draw(st.floats(1e-8, 1e-3)), "axis": 2}, [v]


def _draw_reduction(draw, g, v, values):
    axes = draw(st.lists(st.sampled_from([0] + list(range(2, v.type.rank))), min_size=1, max_size=2, unique=True))
    return {"axes": tuple(axes), "keepdim": draw(st.booleans())}, [v]


def _draw_reshape(draw, g, v, values):
    return {"shape": (int(np.prod(v.type.sample_shape)),)}, [v]


def _draw_transpose(draw, g, v, values):
    return {"perm": (0, 1, *draw(st.permutations(list(range(2, v.type.rank)))))}, [v]


def _draw_slice(draw, g, v, values):
    axis = draw(st.integers(2, v.type.rank - 1))
    start = draw(st.integers(0, v.type.shape[axis] - 1))
    return {"axis": axis, "start": start, "stop": draw(st.integers(start + 1, v.type.shape[axis]))}, [v]


def _draw_conv(draw, g, v, values):
    t = v.type
    spatial = t.rank - 3
    out, k = draw(st.integers(1, 4)), draw(st.integers(1, min(3, *t.shape[3:])))
    return {"weight": draw(_weights((out, t.shape[2]) + (k,) * spatial)), "bias": draw(st.none() | _weights((out,))),
            "stride": (draw(st.integers(1, 2)),) * spatial, "padding": (draw(st.integers(0, 1)),) * spatial,
            "dilation": (1,) * spatial, "groups": 1}, [v]


def _draw_matmul(draw, g, v, values):
    return {}, [v, g.add("transpose", [v], {"perm": (0, 1, 3, 2)})]


def _draw_pool(draw, g, v, values, *, average: bool):
    k = draw(st.integers(1, min(v.type.shape[-2:])))
    attrs = {"kernel": (k, k), "stride": (draw(st.integers(1, 2)),) * 2,
             "padding": (draw(st.integers(0, k // 2)),) * 2, "ceil_mode": draw(st.booleans())}
    if average:
        return attrs | {"count_include_pad": draw(st.booleans()), "divisor": draw(st.none() | st.integers(1, 9))}, [v]
    return attrs | {"dilation": (1, 1)}, [v]


# The ops a random graph draws from, by the rank of the value they read, and how each draws its attributes.
_DRAW_OP = {"lif": _draw_lif, "if": _draw_if, "scale": _draw_scale, "add": _draw_binary, "mul": _draw_binary,
            "and_not": _draw_binary, "linear": _draw_linear, "batchnorm": _draw_batchnorm, "mean": _draw_reduction,
            "sum": _draw_reduction, "reshape": _draw_reshape, "transpose": _draw_transpose, "slice": _draw_slice}
_DRAW_RANK_OP = {5: {"conv2d": _draw_conv, "maxpool": functools.partial(_draw_pool, average=False),
                     "avgpool": functools.partial(_draw_pool, average=True)},
                 4: {"conv1d": _draw_conv, "matmul": _draw_matmul}}


@st.composite
def random_graphs(draw) -> Graph:
    """Chains of random valid ops with random attributes, rank-5 and rank-4 values, and skip connections."""
    g = Graph(draw(st.sampled_from(["g", "model_1", "net"])))
    batch = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 4))
    size = draw(st.integers(2, 6))
    x = _input(g, (1, batch, channels, size, size))
    values = [g.add("repeat_time", [x], {"T": draw(st.integers(1, 4))})]
    for _ in range(draw(st.integers(1, 10))):
        v = draw(st.sampled_from([u for u in values if u.type.rank >= 3]))
        loc = draw(st.lists(st.builds(Location, st.text("abc.0123", max_size=12),
                                      st.sampled_from(["m.py", "dir/f.py"]), st.integers(1, 999)), max_size=2))
        rules = {**_DRAW_OP, **_DRAW_RANK_OP.get(v.type.rank, {})}
        op = draw(st.sampled_from(list(rules)))
        attrs, inputs = rules[op](draw, g, v, values)
        values.append(g.add(op, inputs, attrs, loc))
    last = values[-1]
    layout = 0 if last.type.time == 1 and draw(st.booleans()) else 1
    g.create_node("output", [last], {"layouts": (layout,)})
    return g


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_random_graphs_round_trip(g):
    verify_graph(g)
    text = print_graph(g, with_weights=True)
    parsed = parse_graph(text)
    assert graph_difference(parsed, g) is None
    assert print_graph(parsed, with_weights=True) == text
    assert graph_difference(parse_graph(print_graph(g), weights=weight_table(g)), g) is None
    assert graph_difference(loads(dumps(g), weight_table(g)), g) is None
