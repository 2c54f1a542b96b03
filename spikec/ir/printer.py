"""The IR's text form. Deterministic: the same graph always prints the same text.

Example::

    graph @spikingformer_cifar {
      %0 = input() {name = "x", layout = "B"} : f32[1,1,3,32,32]
      %1 = repeat_time(%0) {T = 4} : f32[4,1,3,32,32] loc("" at "spikec/models/spikingformer.py":201)
      %2 = conv2d(%1) {weight = @patch_embed.proj_conv.weight : f32[48,3,3,3], bias = none, ...} : ...
      ...
      output(%40) {layouts = [0]}
    }
    resources {
      @patch_embed.proj_conv.weight = f32[48,3,3,3] "<base64 of the little-endian C-order bytes>"
    }

Values print as ``%N`` numbered in order of definition. Tensor attributes print as a handle
``@name : dtype[shape]``; the handle name is the node's module path and attribute name (made unique with
``~N``). The ``resources`` section with the array bytes is printed only when asked for
(``with_weights=True``); without it, :func:`spikec.ir.parser.parse_graph` takes the arrays from a mapping
(``weight_table``), which is how ``model.ir`` and ``weights.npz`` go together.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from spikec.ir.graph import Graph, Node
from spikec.ir.ops import OPS
from spikec.ir.types import Location, dtype_name

__all__ = ["print_graph", "weight_names", "weight_table", "format_attr"]


def weight_names(graph: Graph) -> dict[tuple[int, str], str]:
    """The handle name of every tensor attribute, keyed by (node id, attribute name)."""
    names: dict[tuple[int, str], str] = {}
    taken: set[str] = set()
    for index, node in enumerate(graph.nodes):
        for attr, value in node.attrs.items():
            if not isinstance(value, np.ndarray):
                continue
            base = f"{node.module or f'{node.op}{index}'}.{attr}"
            name, n = base, 1
            while name in taken:
                name, n = f"{base}~{n}", n + 1
            taken.add(name)
            names[(id(node), attr)] = name
    return names


def weight_table(graph: Graph) -> dict[str, np.ndarray]:
    """Handle name -> array, in print order (what ``weights.npz`` stores)."""
    by_key = weight_names(graph)
    return {by_key[(id(n), a)]: v for n in graph.nodes for a, v in n.attrs.items() if (id(n), a) in by_key}


def _tensor_type(array: np.ndarray) -> str:
    return f"{dtype_name(array.dtype)}[{','.join(str(d) for d in array.shape)}]"


def format_attr(value: Any, handle: str | None = None) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        return f"@{handle} : {_tensor_type(value)}"
    raise TypeError(f"cannot print attribute value of type {type(value).__name__}")


def _format_loc(locs: tuple[Location, ...]) -> str:
    parts = []
    for loc in locs:
        text = json.dumps(loc.module)
        if loc.file is not None:
            text += f" at {json.dumps(loc.file)}:{loc.line}"
        parts.append(text)
    return f"loc({', '.join(parts)})"


def _format_node(node: Node, value_ids: dict[int, int], handles: dict[tuple[int, str], str]) -> str:
    results = ", ".join(f"%{value_ids[id(v)]}" for v in node.outputs)
    operands = ", ".join(f"%{value_ids[id(v)]}" for v in node.inputs)
    text = f"{results} = " if results else ""
    text += f"{node.op}({operands})"
    order = list(OPS[node.op].attrs) if node.op in OPS else sorted(node.attrs)
    if node.attrs:
        items = [f"{k} = {format_attr(node.attrs[k], handles.get((id(node), k)))}" for k in order if k in node.attrs]
        text += " {" + ", ".join(items) + "}"
    if node.outputs:
        text += " : " + ", ".join(str(v.type) for v in node.outputs)
    if node.locs:
        text += " " + _format_loc(node.locs)
    return text


def print_graph(graph: Graph, with_weights: bool = False) -> str:
    """The graph as text; with ``with_weights`` a ``resources`` section holds every array's bytes."""
    value_ids = {id(v): i for i, v in enumerate(graph.values())}
    handles = weight_names(graph)
    lines = [f"graph @{graph.name} {{"]
    lines += [f"  {_format_node(node, value_ids, handles)}" for node in graph.nodes]
    lines.append("}")
    if with_weights:
        lines.append("resources {")
        for name, array in weight_table(graph).items():
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            lines.append(f"  @{name} = {_tensor_type(array)} \"{base64.b64encode(data).decode('ascii')}\"")
        lines.append("}")
    return "\n".join(lines) + "\n"
