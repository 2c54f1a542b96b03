"""The graph: ``Value``s produced by ``Node``s, kept in topological order in a ``Graph``.

Nodes compare by identity. A node's inputs are only changed through :meth:`Node.set_input` or
:meth:`Graph.replace_all_uses`, which keep every value's use list right, so passes never edit edges by
hand. Structural equality of whole graphs (what the printer round trip promises) is
:func:`graphs_equal`.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from spikec.errors import IRError
from spikec.ir.types import Location, TensorType

__all__ = ["Value", "Node", "Graph", "graphs_equal", "graph_difference"]


class Value:
    """One tensor in the graph: output ``index`` of ``producer``."""

    __slots__ = ("type", "producer", "index", "uses")

    def __init__(self, type: TensorType, producer: "Node", index: int):
        self.type = type
        self.producer = producer
        self.index = index
        self.uses: list[tuple[Node, int]] = []

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    def users(self) -> list["Node"]:
        seen: dict[int, Node] = {}
        for node, _ in self.uses:
            seen.setdefault(id(node), node)
        return list(seen.values())

    def __repr__(self) -> str:
        return f"<Value {self.type} of {self.producer.op}#{self.index}>"


class Node:
    """An operation: ``op`` names its rules in the op registry (:mod:`spikec.ir.ops`)."""

    __slots__ = ("op", "_inputs", "attrs", "outputs", "locs", "graph")

    def __init__(self, op: str, inputs: Sequence[Value], attrs: dict[str, Any],
                 output_types: Sequence[TensorType], locs: Sequence[Location] = ()):
        self.op = op
        self._inputs: list[Value] = []
        self.attrs = dict(attrs)
        self.outputs = tuple(Value(t, self, i) for i, t in enumerate(output_types))
        self.locs = tuple(locs)
        self.graph: Graph | None = None
        for value in inputs:
            self._inputs.append(value)
            value.uses.append((self, len(self._inputs) - 1))

    @property
    def inputs(self) -> tuple[Value, ...]:
        return tuple(self._inputs)

    @property
    def output(self) -> Value:
        if len(self.outputs) != 1:
            raise IRError(f"{self.op} has {len(self.outputs)} outputs, not one")
        return self.outputs[0]

    @property
    def module(self) -> str:
        """The module path of the first location (the op's own module for a traced op)."""
        return self.locs[0].module if self.locs else ""

    def set_input(self, position: int, value: Value) -> None:
        old = self._inputs[position]
        old.uses.remove((self, position))
        self._inputs[position] = value
        value.uses.append((self, position))

    def _drop_inputs(self) -> None:
        for position, value in enumerate(self._inputs):
            value.uses.remove((self, position))
        self._inputs = []

    def describe(self) -> str:
        """``op in module (file:line)`` for diagnostics."""
        text = self.op
        if self.module:
            text += f" in {self.module}"
        if self.locs and self.locs[0].file_line:
            text += f" ({self.locs[0].file_line})"
        return text

    def __repr__(self) -> str:
        return f"<Node {self.describe()}>"


class Graph:
    """Nodes in topological order: ``input`` nodes first, one ``output`` node last."""

    def __init__(self, name: str = "main"):
        self.name = name
        self.nodes: list[Node] = []

    def create_node(self, op: str, inputs: Sequence[Value] = (), attrs: dict[str, Any] | None = None,
                    locs: Sequence[Location] = (), output_types: Sequence[TensorType] | None = None,
                    before: Node | None = None) -> Node:
        """Make a node, infer its output types from the op's shape rule unless given, and insert it
        at the end (or just before ``before``)."""
        from spikec.ir.ops import infer_types

        attrs = dict(attrs or {})
        for value in inputs:
            if value.producer.graph is not self:
                raise IRError(f"{op}: an input value does not belong to graph @{self.name}")
        if output_types is None:
            output_types = infer_types(op, [v.type for v in inputs], attrs, locs)
        node = Node(op, inputs, attrs, output_types, locs)
        node.graph = self
        if before is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(self.nodes.index(before), node)
        return node

    def add(self, op: str, inputs: Sequence[Value] = (), attrs: dict[str, Any] | None = None,
            locs: Sequence[Location] = ()) -> Value:
        """Create a single-output node at the end and return its value."""
        return self.create_node(op, inputs, attrs, locs).output

    def replace_all_uses(self, old: Value, new: Value) -> None:
        for node, position in list(old.uses):
            node.set_input(position, new)

    def erase(self, node: Node) -> None:
        for value in node.outputs:
            if value.uses:
                users = ", ".join(u.describe() for u in value.users())
                raise IRError(f"cannot erase {node.describe()}: its result is still used by {users}")
        node._drop_inputs()
        self.nodes.remove(node)
        node.graph = None

    @property
    def input_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "input"]

    @property
    def output_node(self) -> Node:
        outputs = [n for n in self.nodes if n.op == "output"]
        if len(outputs) != 1:
            raise IRError(f"graph @{self.name} has {len(outputs)} output nodes, expected one")
        return outputs[0]

    def values(self) -> Iterator[Value]:
        for node in self.nodes:
            yield from node.outputs

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __str__(self) -> str:
        from spikec.ir.printer import print_graph

        return print_graph(self)


def _attr_difference(name: str, a: Any, b: Any) -> str | None:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return f"attribute {name}: tensor vs non-tensor"
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"attribute {name}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
        if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            return f"attribute {name}: tensor contents differ"
        return None
    if type(a) is not type(b) or a != b:
        if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
            return None
        return f"attribute {name}: {a!r} vs {b!r}"
    return None


def _value_positions(graph: Graph) -> dict[int, tuple[int, int]]:
    return {id(v): (i, v.index) for i, n in enumerate(graph.nodes) for v in n.outputs}


def graph_difference(a: Graph, b: Graph) -> str | None:
    """The first structural difference between two graphs, or None when they are equal.

    Equal means: same name, same ops in the same order, same attributes (tensors by dtype, shape and
    contents), same input wiring, same output types, same locations. Value names do not exist in the IR,
    so they cannot differ.
    """
    if a.name != b.name:
        return f"graph names differ: @{a.name} vs @{b.name}"
    if len(a.nodes) != len(b.nodes):
        return f"node counts differ: {len(a.nodes)} vs {len(b.nodes)}"
    pos_a, pos_b = _value_positions(a), _value_positions(b)
    for i, (na, nb) in enumerate(zip(a.nodes, b.nodes)):
        where = f"node {i} ({na.op})"
        if na.op != nb.op:
            return f"{where}: op {na.op} vs {nb.op}"
        if [pos_a[id(v)] for v in na.inputs] != [pos_b[id(v)] for v in nb.inputs]:
            return f"{where}: inputs are wired differently"
        if [v.type for v in na.outputs] != [v.type for v in nb.outputs]:
            return f"{where}: output types differ"
        if set(na.attrs) != set(nb.attrs):
            return f"{where}: attribute names differ: {sorted(na.attrs)} vs {sorted(nb.attrs)}"
        for name in na.attrs:
            diff = _attr_difference(name, na.attrs[name], nb.attrs[name])
            if diff:
                return f"{where}: {diff}"
        if na.locs != nb.locs:
            return f"{where}: locations differ: {na.locs} vs {nb.locs}"
    return None


def graphs_equal(a: Graph, b: Graph) -> bool:
    return graph_difference(a, b) is None


def topological_check(nodes: Iterable[Node]) -> None:
    """Raise unless every input of every node is produced by an earlier node."""
    defined: set[int] = set()
    for node in nodes:
        for value in node.inputs:
            if id(value) not in defined:
                raise IRError(f"{node.describe()} uses a value before it is defined")
        defined.update(id(v) for v in node.outputs)
