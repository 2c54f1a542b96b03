"""``spikec inspect``: the printed IR, a layer table and the traced parameter count of a model."""

from __future__ import annotations

import dataclasses

import numpy as np

from spikec.ir import Graph, print_graph
from spikec.ir.ops import op_traits

__all__ = ["Layer", "InspectReport", "layer_table", "parameter_count", "inspect_graph", "FORMAT_VERSION"]

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Layer:
    index: int
    op: str
    module: str
    output_shape: tuple[int, ...] | None
    parameters: int
    file: str | None
    line: int | None


@dataclasses.dataclass(frozen=True)
class InspectReport:
    model: str
    input_shape: tuple[int, ...]
    input_layout: str
    graph: Graph
    layers: list[Layer]
    parameters: int

    def to_json(self) -> dict:
        return {
            "version": FORMAT_VERSION, "model": self.model, "input_shape": list(self.input_shape),
            "input_layout": self.input_layout, "parameters": self.parameters, "nodes": len(self.graph.nodes),
            "ir": print_graph(self.graph),
            "layers": [{"index": layer.index, "op": layer.op, "module": layer.module,
                        "output_shape": None if layer.output_shape is None else list(layer.output_shape),
                        "parameters": layer.parameters, "file": layer.file, "line": layer.line}
                       for layer in self.layers],
        }

    def to_text(self) -> str:
        header = (f"model {self.model}: input {list(self.input_shape)} (layout {self.input_layout}), "
                  f"{len(self.graph.nodes)} IR nodes, {self.parameters:,} parameters")
        rows = [("#", "op", "module", "output", "params", "source")]
        for layer in self.layers:
            shape = "-" if layer.output_shape is None else "[" + ",".join(map(str, layer.output_shape)) + "]"
            source = f"{layer.file}:{layer.line}" if layer.file else "-"
            params = f"{layer.parameters:,}" if layer.parameters else ""
            rows.append((str(layer.index), layer.op, layer.module or "-", shape, params, source))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        table = "\n".join("  ".join(c.ljust(w) if i != 4 else c.rjust(w) for i, (c, w) in
                                    enumerate(zip(row, widths))).rstrip() for row in rows)
        return f"{header}\n\n{print_graph(self.graph)}\n{table}\n\ntotal parameters: {self.parameters:,}\n"


def _node_parameters(node) -> list[np.ndarray]:
    return [node.attrs[a] for a in op_traits(node.op).parameters if node.attrs.get(a) is not None]


def parameter_count(graph: Graph) -> int:
    """Learned parameters the graph uses, each array counted once even if several ops share it."""
    unique = {id(a): a for node in graph.nodes for a in _node_parameters(node)}
    return int(sum(a.size for a in unique.values()))


def layer_table(graph: Graph) -> list[Layer]:
    layers = []
    for index, node in enumerate(graph.nodes):
        loc = node.locs[0] if node.locs else None
        shape = node.outputs[0].shape if node.outputs else None
        layers.append(Layer(index, node.op, node.module, shape, int(sum(a.size for a in _node_parameters(node))),
                            loc.file if loc else None, loc.line if loc else None))
    return layers


def inspect_graph(graph: Graph, model: str, input_shape, input_layout: str) -> InspectReport:
    return InspectReport(model, tuple(input_shape), input_layout, graph, layer_table(graph), parameter_count(graph))
