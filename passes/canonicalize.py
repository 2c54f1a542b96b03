"""canonicalize: put view chains and no-op arithmetic in one form, and drop what computes nothing.

Rules (each preserves the value exactly). One run applies them once to every node, in order, then erases
the nodes left dead; a rewrite can enable another (a composed transpose that is the identity), so the pass
asks the pass manager to repeat it until a run changes nothing (``fixed_point``):

* ``reshape(reshape(x, a), b) -> reshape(x, b)``: row-major reshapes compose to the last one.
* ``reshape(x, shape) -> x`` when ``shape`` is already x's sample shape.
* ``transpose(transpose(x, p), q) -> transpose(x, p∘q)`` with ``(p∘q)[i] = p[q[i]]``;
  ``transpose(x, identity) -> x``.
* ``scale(x, 1.0) -> x``; ``scale(scale(x, f), g) -> scale(x, f*g)`` only when ``f*g`` is exact in
  float32 arithmetic (both are powers of two), so the float result does not change.
* dead nodes (no user, not ``input``/``output``) are erased.

The frontend already keeps time and batch apart, so there are no time-merging reshapes to normalise.
"""

from __future__ import annotations

import dataclasses
import math

from spikec.errors import PassError
from spikec.ir import Graph, Node
from spikec.ir.ops import OpCategory, ops_with
from spikec.passes.base import AnalysisCache, PassResult, Transform, erase_dead_nodes

__all__ = ["Canonicalize"]


def _is_power_of_two(f: float) -> bool:
    mantissa, _ = math.frexp(f)
    return f != 0 and abs(mantissa) == 0.5


def _bypass(graph: Graph, node: Node) -> None:
    graph.replace_all_uses(node.output, node.inputs[0])


def _producer(node: Node, op: str) -> Node | None:
    producer = node.inputs[0].producer
    return producer if producer.op == op else None


def _rewrite(graph: Graph, node: Node) -> bool:
    if node.op == "reshape":
        if tuple(node.attrs["shape"]) == node.inputs[0].type.sample_shape:
            _bypass(graph, node)
            return True
        inner = _producer(node, "reshape")
        if inner is not None:
            node.set_input(0, inner.inputs[0])
            return True
    if node.op == "transpose":
        perm = node.attrs["perm"]
        if perm == tuple(range(len(perm))):
            _bypass(graph, node)
            return True
        inner = _producer(node, "transpose")
        if inner is not None:
            composed = tuple(inner.attrs["perm"][i] for i in perm)
            replacement = graph.create_node("transpose", [inner.inputs[0]], {"perm": composed},
                                            node.locs + inner.locs, before=node)
            graph.replace_all_uses(node.output, replacement.output)
            return True
    if node.op == "scale":
        factor = node.attrs["factor"]
        if factor == 1.0:
            _bypass(graph, node)
            return True
        inner = _producer(node, "scale")
        if inner is not None and _is_power_of_two(factor) and _is_power_of_two(inner.attrs["factor"]):
            replacement = graph.create_node("scale", [inner.inputs[0]],
                                            {"factor": factor * inner.attrs["factor"]}, node.locs + inner.locs,
                                            before=node)
            graph.replace_all_uses(node.output, replacement.output)
            return True
    return False


@dataclasses.dataclass(frozen=True)
class Canonicalize(Transform):
    """Collapse view chains and no-op scales, and erase dead nodes.

    In place, repeated to a fixed point; the rules are in the module docstring. Requires: nothing beyond a
    verified graph. Ensures: no dead node is left (every node but the inputs and the output has a user)."""

    name = "canonicalize"
    fixed_point = True

    def apply(self, graph: Graph, analyses: AnalysisCache) -> PassResult:
        rewritten = any([_rewrite(graph, node) for node in list(graph.nodes) if node.graph is graph])
        return PassResult(graph, erase_dead_nodes(graph) or rewritten)

    def ensures(self, graph: Graph, result: PassResult) -> None:
        boundary = ops_with(category=OpCategory.BOUNDARY)
        dead = next((n for n in graph.nodes if n.op not in boundary and not any(v.uses for v in n.outputs)), None)
        if dead is not None:
            raise PassError(f"{dead.describe()} is dead (nothing uses its result) and was left")
