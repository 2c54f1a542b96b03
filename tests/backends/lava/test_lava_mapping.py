"""The on-chip mapping of every op (docs/lava.md, "Mapping per op"): gains folded into synapse weights, pools,
IAND, sums, broadcast products and spike matmuls on neuro cores, residual streams relayed once, each checked for
its structure and run bit-exact against intsim on Lava, on hand-built graphs whose every layer fires."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from lava_cases import LAVA_TIMEOUT_S, assert_bit_exact, dense, encoded_input, lif, spike_count
from spikec.backends.lava.helpers import layout
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.mapping import MappingOptions
from spikec.backends.lava.netlist import NEURO_CORE_KINDS
from spikec.backends.lava.runtime import run_lava
from spikec.errors import InputError
from spikec.ir import Graph
from spikec.ir.printer import weight_table

pytestmark = pytest.mark.lava


def _kinds(pg) -> collections.Counter:
    return collections.Counter(p.kind for p in pg.processes if p.role != "sink")


def _readout(g: Graph, s) -> None:
    flat = g.add("reshape", [s], {"shape": (int(np.prod(s.type.sample_shape)),)})
    total = g.add("sum", [flat], {"axes": (0,), "keepdim": False})
    g.create_node("output", [dense(g, total, 3, host=True, graded=True)], {"layouts": (0,)})


def _conv(g: Graph, x, c_out: int, bias: bool = True):
    c_in = x.type.sample_shape[0]
    w = ((np.arange(c_out * c_in * 9).reshape(c_out, c_in, 3, 3) * 5) % 7 * 2 - 5).astype(np.int32)
    b = ((np.arange(c_out) * 3) % 5 * 2 + 1).astype(np.int32) if bias else None
    return g.add("qconv2d", [x], {"weight": w, "bias": b, "stride": (1, 1), "padding": (1, 1), "dilation": (1, 1),
                                  "groups": 1})


def _pool(g: Graph, x, ceil_mode: bool):
    return g.add("maxpool", [x], {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 1),
                                  "ceil_mode": ceil_mode})


def pooling_graph(ceil_mode: bool = False) -> Graph:
    """conv -> gain 4 -> lif -> max-pool of spikes -> conv -> max-pool of graded values -> lif -> token sum
    within the step -> lif -> readout."""
    g = Graph("pools")
    image = g.add("reshape", [encoded_input(g, 2 * 6 * 6, 3)], {"shape": (2, 6, 6)})
    s1 = lif(g, g.add("qgain", [_conv(g, image, 3)], {"factor": 4}), vth=40)
    s2 = lif(g, _pool(g, _conv(g, _pool(g, s1, ceil_mode), 4), ceil_mode), vth=2)
    channels, height, width = s2.type.sample_shape
    tokens = g.add("reshape", [s2], {"shape": (channels, height * width)})
    s3 = lif(g, g.add("sum", [tokens], {"axes": (3,), "keepdim": False}), vth=1)
    _readout(g, s3)
    return g


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_gains_pools_and_sums_run_on_neuro_cores_bit_exact(ceil_mode):
    # ceil_mode: the last windows reach past the map (6 -> 4 instead of 3), so the spike pool's windows are a
    # Sparse rather than a depthwise Conv, and the max tree's pairs with padding keep their other side.
    graph = pooling_graph(ceil_mode)
    pg = lower(graph)
    kinds = _kinds(pg)
    assert set(kinds) - {"RingBuffer", "Integrator"} <= NEURO_CORE_KINDS, kinds
    conv = next(p for p in pg.processes if p.kind == "Conv")
    assert conv.args["weight"]["args"] == [2]                 # the gain 4 is the kernel's exponent
    window = next(p for p in pg.processes if p.name.startswith("window"))
    assert (window.kind, (window.args.get("weight") or window.args["weights"])["fn"]) == \
        (("Sparse", "window") if ceil_mode else ("Conv", "ones_kernel"))
    assert kinds["GradedReluVec"] == 4                         # ceil(log2 9) levels of the max tree
    x = np.random.default_rng(0).random((2, 72)).astype(np.float32)
    assert all(spike_count(graph, x)), spike_count(graph, x)
    assert_bit_exact(graph, x, run_lava(graph, [x], pg, timeout=LAVA_TIMEOUT_S))


def attention_graph(gain: int = 8) -> Graph:
    """q, k, v = lif(dense) over 4 tokens of 6 features; y = (q @ kᵀ) @ v; lif(gain * y); and a broadcast
    product and an IAND beside it."""
    g = Graph("attention")
    tokens = g.add("reshape", [encoded_input(g, 24, 2)], {"shape": (4, 6)})
    q, k, v = (lif(g, dense(g, tokens, 6, graded=True, bias=True, exp=e), vth=v) for e, v in
               ((0, 2), (1, 3), (0, 4)))
    attn = g.add("matmul", [q, g.add("transpose", [k], {"perm": (0, 1, 3, 2)})])
    y = lif(g, g.add("qgain", [g.add("matmul", [attn, v])], {"factor": gain}), vth=20)
    column = lif(g, g.add("sum", [k], {"axes": (2,), "keepdim": True}), vth=1)
    gated = g.add("mul", [y, column])
    z = lif(g, dense(g, g.add("and_not", [gated, q]), 6, bias=True), vth=1)
    _readout(g, z)
    return g


@pytest.mark.parametrize("attention", ["on-chip", "embedded"])
def test_spike_matmul_runs_where_attention_says_bit_exact(attention):
    graph = attention_graph()
    pg = lower(graph, options=MappingOptions(attention))
    kinds = _kinds(pg)
    if attention == "on-chip":
        assert "MatMul" not in kinds and "Gain" not in kinds
        assert set(kinds) - {"RingBuffer", "Integrator"} <= NEURO_CORE_KINDS, kinds
    else:
        assert kinds["MatMul"] == 2
    assert [d["attention"] for d in pg.attention] == [attention, attention]
    x = np.random.default_rng(1).random((2, 24)).astype(np.float32)
    assert all(spike_count(graph, x)), spike_count(graph, x)
    assert_bit_exact(graph, x, run_lava(graph, [x], pg, timeout=LAVA_TIMEOUT_S))


def test_auto_attention_puts_a_matmul_on_chip_when_its_products_fit():
    graph = attention_graph()
    pg = lower(graph)
    assert [d["attention"] for d in pg.attention] == ["on-chip", "on-chip"]
    assert "product neurons fit" in pg.attention[0]["why"]
    with pytest.raises(InputError, match="attention must be one of auto, on-chip, embedded"):
        MappingOptions("host")


def test_a_matmul_on_chip_is_products_and_a_sum_of_ones():
    # q [4, 6] @ kᵀ [6, 4]: 4 * 6 * 4 = 96 product neurons, each fed once by q and once by k, and 16 sums
    # of 6 products each; the second product, attn [4, 4] @ v [4, 6], is 4 * 4 * 6 = 96 more.
    graph = attention_graph()
    pg = lower(graph, options=MappingOptions("on-chip"))
    weights = weight_table(graph)
    products = [p for p in pg.processes if p.kind == "ProdNeuron" and p.name.startswith("products")]
    assert [p.args["shape"] for p in products] == [[4, 6, 4], [4, 4, 6]]
    first = products[0].name.removeprefix("products")
    fan_q, fan_k, summed = (pg.process(f"{prefix}{first}") for prefix in ("fan0_", "fan1_", "sum"))
    assert [layout(p.args["weights"], weights).nnz for p in (fan_q, fan_k, summed)] == [96, 96, 96]
    assert layout(summed.args["weights"], weights).shape == (16, 96)


def residual_chain(depth: int) -> Graph:
    """An MS residual stream of ``depth`` blocks: x_k = x_(k-1) + dense(lif(dense(lif(x_(k-1)))))."""
    g = Graph(f"chain{depth}")
    x = dense(g, encoded_input(g, 6, 2), 6, graded=True, bias=True)
    for _ in range(depth):
        branch = dense(g, lif(g, dense(g, lif(g, x), 6, bias=True)), 6, bias=True)
        x = g.add("add", [x, branch])
    _readout(g, lif(g, x))
    return g


def test_a_residual_stream_keeps_one_synapse_group_per_layer_and_grows_linearly():
    synapses = {}
    for depth in (1, 2, 4):
        graph = residual_chain(depth)
        pg = lower(graph)
        weights = weight_table(graph)
        per_node = collections.Counter(p.node for p in pg.processes if p.role == "synapse")
        assert all(count == 1 for count in per_node.values()), per_node     # no delayed copies
        synapses[depth] = sum(layout(p.args["weights"], weights).nnz if p.args["weights"]["$"] == "layout"
                              else np.count_nonzero(weights[p.args["weights"]["key"]])
                              for p in pg.processes if "weights" in p.args)
    assert synapses[4] - synapses[2] == 2 * (synapses[2] - synapses[1]) > 0, synapses
    graph = residual_chain(2)
    x = np.random.default_rng(2).random((2, 6)).astype(np.float32)
    assert all(spike_count(graph, x)), spike_count(graph, x)
    assert_bit_exact(graph, x, run_lava(graph, [x], timeout=LAVA_TIMEOUT_S))
