"""balance-delays: depths, edge delays, reset offsets and run length, on a hand-built residual graph."""

from __future__ import annotations

import pytest

from lava_cases import residual_graph
from spikec.errors import PassError
from spikec.ir import Graph
from spikec.passes.balance_delays import BalanceDelays, lava_latency


def table(g: Graph, plan) -> str:
    rows = []
    for i, node in enumerate(g.nodes):
        if node.op == "output":
            continue
        delays = [plan.delay(node, p) for p in range(len(node.inputs))]
        reset = f" reset_offset={plan.reset_offset(node)}" if node.op == "qlif" else ""
        rows.append(f"%{i} {node.op} depth={plan.depth_of(node)} delays={delays}{reset}")
    return "\n".join(rows)


def test_depths_delays_and_resets_of_a_residual_graph():
    g = residual_graph()
    plan = BalanceDelays()(g)
    assert table(g, plan) == "\n".join([
        "%0 input depth=0 delays=[]",
        "%1 quantize depth=0 delays=[0]",
        "%2 repeat_time depth=0 delays=[0]",
        "%3 qdense depth=1 delays=[0]",
        "%4 qlif depth=1 delays=[0] reset_offset=2",
        "%5 qdense depth=2 delays=[0]",
        "%6 qlif depth=2 delays=[0] reset_offset=0",
        "%7 qdense depth=3 delays=[0]",
        "%8 add depth=3 delays=[2, 0]",          # the short path (d1) waits 2 steps for the long one (d3)
        "%9 qlif depth=3 delays=[0] reset_offset=1",
        "%10 sum depth=3 delays=[0]",
        "%11 qdense depth=3 delays=[0]",         # the host classifier costs no Lava step
    ])
    assert plan.max_depth == 3
    assert plan.run_steps(5) == 5 * 3 + 3


def test_reset_offset_is_the_first_step_of_each_wave():
    # Sample s, step t of a depth-d value is on the wire at tau = s*T + t + 1 + d; LIFReset resets when
    # tau % T == offset % T: exactly at t = 0 of every sample.
    g = residual_graph(T=4)
    plan = BalanceDelays()(g)
    for node in g.nodes:
        if node.op != "qlif":
            continue
        d = plan.depth_of(node)
        resets = [tau for tau in range(1, 40) if tau % 4 == plan.reset_offset(node) % 4]
        assert resets == [s * 4 + 1 + d for s in range(-1, 10) if 1 <= s * 4 + 1 + d < 40]


def test_latency_model_is_one_step_per_on_chip_synapse():
    g = residual_graph()
    costs = {node.op + ("-host" if node.attrs.get("host") else ""): lava_latency(node) for node in g.nodes}
    assert costs == {"input": 0, "quantize": 0, "repeat_time": 0, "qdense": 1, "qlif": 0, "add": 0, "sum": 0,
                     "qdense-host": 0, "output": 0}


def test_negative_latency_is_refused_with_the_node_named():
    with pytest.raises(PassError, match=r"balance-delays: qlif\b.* has a negative latency -1"):
        BalanceDelays(latency=lambda node: -1 if node.op == "qlif" else 0)(residual_graph())
