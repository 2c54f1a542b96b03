"""fold-scales: move constant scales (attention's ``* 0.125``) downstream and fold them away.

A ``scale`` by ``f`` commutes with every linear op of one scaled operand, so it moves past its single
user when that user is::

    transpose, reshape, sum, mean, maxpool (f > 0)   s(f x)        = f s(x)
    matmul (either operand)                          (f a) @ b     = f (a @ b)
    add of two values scaled by the same f           f a + f b     = f (a + b)

and it disappears into its single user when that is::

    conv / linear:  W (f x) + b = (f W) x + b                    -> weight *= f
    lif / if (f > 0): a neuron driven by f X with threshold θ and reset r behaves like one driven by X
                    with threshold θ / f and reset r / f: its state is f times smaller at every step, and
                    H >= θ  <=>  H / f >= θ / f                  -> v_threshold /= f, v_reset /= f

Both are exact in real arithmetic. For a power-of-two ``f`` (the attention scales 0.125 and 0.25) they
are exact in float32 too, so the float interpreter gives identical spikes before and after.
A scale with several users, or before an op it does not commute with, stays and is recorded as a Skip.

Precondition: none. Postcondition: no scale is left without a recorded reason (a ``Skip``); quantize then
requires that none is left at all.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spikec.errors import PassError
from spikec.ir import OPS, Graph, Node
from spikec.ir.ops import OpCategory, Phase, ops_with
from spikec.passes.base import AnalysisCache, PassResult, Skip, Transform, single_user, unexplained

__all__ = ["FoldScales"]

_WEIGHT_OPS = ops_with(category=OpCategory.WEIGHT, phase=Phase.FLOAT)
_NEURONS = ops_with(category=OpCategory.NEURON, phase=Phase.FLOAT)
# Scales move below reductions and below the one-input views that keep the time axis, for any sign of the factor
# (below a concat it would scale the other parts too); not below a pad, whose border the scale would have to scale.
_COMMUTING = frozenset(op for op in ops_with(category=OpCategory.REDUCTION, phase=Phase.FLOAT)
                       | ops_with(category=OpCategory.VIEW, phase=Phase.FLOAT, per_step=True)
                       if OPS[op].num_inputs == 1) - {"pad"}


def _scaled_twin(add: Node, scale: Node) -> Node | None:
    other = add.inputs[1] if add.inputs[0] is scale.output else add.inputs[0]
    twin = other.producer
    if twin is scale or twin.op != "scale" or twin.attrs["factor"] != scale.attrs["factor"]:
        return None
    return twin if single_user(twin) is add else None


def _move_below(graph: Graph, scale: Node, user: Node, inputs_from: list[Node]) -> None:
    """Rewire ``user`` to read the scales' inputs, and put one scale after it."""
    for removed in inputs_from:
        for position, value in enumerate(user.inputs):
            if value is removed.output:
                user.set_input(position, removed.inputs[0])
    index = graph.nodes.index(user)
    after = graph.nodes[index + 1] if index + 1 < len(graph.nodes) else None
    readers = list(user.output.uses)
    moved = graph.create_node("scale", [user.output], {"factor": scale.attrs["factor"]}, scale.locs, before=after)
    for reader, position in readers:
        reader.set_input(position, moved.output)
    for removed in inputs_from:
        graph.erase(removed)


def _step(graph: Graph, scale: Node) -> str | None:
    """Fold or move one scale; return a reason when it must stay."""
    factor = scale.attrs["factor"]
    user = single_user(scale)
    if user is None:
        return "its result has several users"
    if user.op in _WEIGHT_OPS:
        user.attrs["weight"] = (user.attrs["weight"].astype(np.float64) * factor).astype(np.float32)
    elif user.op in _NEURONS:
        if factor <= 0:
            return "a neuron cannot absorb a non-positive scale (it would flip the threshold test)"
        user.attrs["v_threshold"] = user.attrs["v_threshold"] / factor
        if user.attrs["v_reset"] is not None:
            user.attrs["v_reset"] = user.attrs["v_reset"] / factor
    elif user.op in _COMMUTING or user.op == "matmul" or (user.op == "maxpool" and factor > 0):
        _move_below(graph, scale, user, [scale])
        return None
    elif user.op == "add" and _scaled_twin(user, scale) is not None:
        _move_below(graph, scale, user, [scale, _scaled_twin(user, scale)])
        return None
    else:
        return f"{user.op} does not commute with a scale"
    user.locs = user.locs + tuple(loc for loc in scale.locs if loc not in user.locs)
    graph.replace_all_uses(scale.output, scale.inputs[0])
    graph.erase(scale)
    return None


@dataclasses.dataclass(frozen=True)
class FoldScales(Transform):
    """Move every constant scale downstream until an op absorbs it.

    In place; the math is in the module docstring. Requires: nothing beyond a verified graph.
    Ensures: every scale left is recorded as skipped, with why."""

    name = "fold-scales"

    def apply(self, graph: Graph, analyses: AnalysisCache) -> PassResult:
        changed, stuck = False, {}
        while True:
            pending = [n for n in graph.nodes if n.op == "scale" and n not in stuck]
            if not pending:
                break
            reason = _step(graph, pending[0])
            if reason is None:
                changed = True
            else:
                stuck[pending[0]] = reason
        skipped = tuple(Skip(node, f"scale not folded: {reason}") for node, reason in stuck.items())
        return PassResult(graph, changed, skipped)

    def ensures(self, graph: Graph, result: PassResult) -> None:
        left = unexplained(result, "scale")
        if left is not None:
            raise PassError(f"{left.describe()} is left without a reason (no Skip records why it was not folded)")
