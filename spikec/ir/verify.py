"""The graph verifier that every pass and test calls: the IR's invariants, checked all at once.

1. Ops are registered, and nodes are in topological order (every input defined by an earlier node).
2. Use lists agree with the inputs (what ``Node.set_input`` keeps true).
3. Each node's attributes fit its op's schema, and the shape rule gives exactly the output types the
   node carries (``input`` declares its type; it must be ``[T, B, ...]`` with T = 1 for layout ``B``).
4. ``input`` nodes come first, and there is exactly one ``output`` node, last.
"""

from __future__ import annotations

from spikec.errors import IRError
from spikec.ir.graph import Graph, Node, topological_check
from spikec.ir.ops import OPS, check_attrs, infer_types

__all__ = ["verify_graph"]


def _verify_node(node: Node) -> None:
    if node.op not in OPS:
        raise IRError(f"unknown op {node.op!r}")
    for position, value in enumerate(node.inputs):
        if (node, position) not in value.uses:
            raise IRError(f"input {position} is missing from its value's use list")
    for value in node.outputs:
        for user, position in value.uses:
            if user.inputs[position] is not value:
                raise IRError(f"a use list names {user.describe()} input {position}, which is another value")
    if node.op == "input":
        check_attrs("input", node.attrs)
        if len(node.outputs) != 1:
            raise IRError("input defines exactly one value")
        layout = node.attrs["layout"]
        if layout not in ("B", "TB"):
            raise IRError(f"input layout must be \"B\" or \"TB\", got {layout!r}")
        if layout == "B" and node.output.type.time != 1:
            raise IRError(f"an input with layout B has T = 1, got {node.output.type}")
        return
    expected = infer_types(node.op, [v.type for v in node.inputs], node.attrs)
    actual = [v.type for v in node.outputs]
    if expected != actual:
        shown = ", ".join(str(t) for t in expected) or "nothing"
        raise IRError(f"declares {', '.join(str(t) for t in actual) or 'nothing'} but its shape rule gives {shown}")


def verify_graph(graph: Graph) -> None:
    """Raise :class:`IRError` naming the first node that breaks an invariant."""
    topological_check(graph.nodes)
    seen_other = False
    for index, node in enumerate(graph.nodes):
        if node.graph is not graph:
            raise IRError(f"node {index} ({node.describe()}) does not belong to graph @{graph.name}")
        if node.op == "input" and seen_other:
            raise IRError(f"input node {index} comes after other ops; inputs come first")
        seen_other = seen_other or node.op != "input"
        try:
            _verify_node(node)
        except IRError as exc:
            where = node.locs[0].file_line if node.locs and node.locs[0].file_line else None
            raise IRError(f"node {index} ({node.op}{' in ' + node.module if node.module else ''}): {exc.message}",
                          where) from None
    output = graph.output_node
    if graph.nodes[-1] is not output:
        raise IRError("the output node must be the last node")
