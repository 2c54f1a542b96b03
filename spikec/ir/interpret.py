"""The interpreter loop every evaluating backend shares: walk the graph in order with an environment.

A backend supplies a table of rules, ``op -> rule(node, input_values) -> value``, and a ``bind`` that
turns one user input into the value an ``input`` node produces (``[1, B, ...]`` for layout ``B``). The loop
checks the input shapes, applies the rules, names the failing node in any error, frees each value after
its last use (unless ``keep_values``), and returns the outputs in PyTorch's layout (the length-1 time
axis dropped where the ``output`` node says so).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from spikec.errors import InputError, SpikecError
from spikec.ir.graph import Graph, Node

__all__ = ["Run", "interpret", "check_input_shape"]

Rule = Callable[[Node, list[Any]], Any]


class Run:
    """The outputs of one run and, with ``keep_values``, every node's value keyed by node."""

    def __init__(self, outputs: list[Any], values: dict[Node, Any]):
        self.outputs = outputs
        self.values = values

    def of(self, node: Node) -> Any:
        return self.values[node]


def check_input_shape(node: Node, shape: Sequence[int]) -> None:
    """Raise unless a PyTorch-layout input of ``shape`` fits ``node`` (any batch size)."""
    lead = 1 if node.attrs["layout"] == "B" else 2
    want = tuple(node.output.type.shape[2:]) if lead == 2 else node.output.type.sample_shape
    if len(shape) != lead + len(want) or tuple(shape[lead:]) != want:
        expected = ["B", *want] if lead == 1 else ["T", "B", *want]
        raise InputError(f"input {node.attrs['name']} expects shape {expected}, got {list(shape)}")


def interpret(graph: Graph, inputs: Sequence[Any], rules: dict[str, Rule], bind: Callable[[Node, Any], Any],
              backend: str, keep_values: bool = False, visit: Callable[[Node, list], None] | None = None) -> Run:
    """Evaluate ``graph`` on ``inputs`` (one per ``input`` node, in PyTorch's layout) with ``rules``;
    ``visit(node, args)``, when given, sees every op's arguments before its rule runs."""
    input_nodes = graph.input_nodes
    if len(inputs) != len(input_nodes):
        raise InputError(f"the graph takes {len(input_nodes)} input(s), got {len(inputs)}")
    last_use = {id(value): node for node in graph.nodes for value in node.inputs}
    env: dict[int, Any] = {}
    kept: dict[Node, Any] = {}
    for node in graph.nodes:
        if node.op == "input":
            data = inputs[input_nodes.index(node)]
            check_input_shape(node, tuple(data.shape))
            env[id(node.output)] = bind(node, data)
            continue
        args = [env[id(v)] for v in node.inputs]
        if node.op == "output":
            outputs = [a if keep else a[0] for a, keep in zip(args, node.attrs["layouts"])]
            return Run(outputs, kept)
        if visit is not None:
            visit(node, args)
        result = _apply(rules, node, args, backend)
        env[id(node.output)] = result
        if keep_values:
            kept[node] = result
            continue
        for value in node.inputs:
            if last_use.get(id(value)) is node:     # free each value after its last use
                env.pop(id(value), None)
    raise SpikecError(f"graph @{graph.name} has no output node")


def _apply(rules: dict[str, Rule], node: Node, args: list, backend: str) -> Any:
    """``node``'s rule on ``args``; a missing rule or a failure names the backend and the node."""
    rule = rules.get(node.op)
    if rule is None:
        raise SpikecError(f"{backend} has no rule for {node.describe()}")
    try:
        return rule(node, args)
    except SpikecError:
        raise
    except Exception as exc:
        raise SpikecError(f"{backend} failed at {node.describe()}: {type(exc).__name__}: {exc}") from exc
