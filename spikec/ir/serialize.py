"""The IR's stable JSON form and its networkx view.

JSON (``FORMAT_VERSION`` 1)::

    {"format": "spikec.ir", "version": 1, "name": "...",
     "nodes": [{"op": "conv2d", "inputs": [[0, 0]], "outputs": ["f32[4,1,48,32,32]"],
                "attrs": {"stride": [1, 1], "bias": null, "weight": {"tensor": "patch_embed.proj_conv.weight",
                          "type": "float32[48, 3, 3, 3]"}, ...},
                "loc": [{"module": "patch_embed.proj_conv", "file": "...", "line": 52}]}, ...]}

An input ``[i, k]`` is output ``k`` of node ``i``. Value types (``outputs``) are the IR's ``dtype[shape]``
text (``f32[4,1,48,32,32]``). A tensor attribute is a named handle, as in the text form, with a ``type`` that
only describes the array: numpy's dtype name and the shape as a Python list (``float32[48, 3, 3, 3]``,
``int32[10, 64]``); reading ignores it and takes the array, by handle, from the weights mapping
(``weights.npz``). Tuples are lists, ``none`` is ``null``; a location without a source line has ``"file"``
and ``"line"`` ``null``. Floats are written so that they read back exactly; ``inf``/``nan`` are the strings
``"inf"``, ``"-inf"``, ``"nan"`` under ``{"float": ...}``. Keys are sorted (``dumps``: one-space indent, a
final newline), so equal graphs give equal bytes.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import networkx as nx
import numpy as np

from spikec.errors import IRError
from spikec.ir.graph import Graph
from spikec.ir.printer import weight_names
from spikec.ir.types import Location, TensorType

__all__ = ["FORMAT_VERSION", "to_json", "from_json", "dumps", "loads", "to_networkx"]

FORMAT_VERSION = 1


def _type_text(t: TensorType) -> str:
    return str(t)


def _parse_type(text: str) -> TensorType:
    dtype, _, rest = text.partition("[")
    try:
        dims = tuple(int(d) for d in rest.rstrip("]").split(",") if d)
    except ValueError:
        raise IRError(f"bad type {text!r}") from None
    return TensorType(dims, dtype)


def _attr_to_json(value: Any, handle: str | None) -> Any:
    if isinstance(value, np.ndarray):
        return {"tensor": handle, "type": f"{value.dtype.name}{list(value.shape)}"}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, tuple):
        return [_attr_to_json(v, None) for v in value]
    return value


def _attr_from_json(value: Any, weights: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return tuple(_attr_from_json(v, weights) for v in value)
    if isinstance(value, dict) and "float" in value:
        return float(value["float"])
    if isinstance(value, dict) and "tensor" in value:
        name = value["tensor"]
        if name not in weights:
            raise IRError(f"no array for tensor {name!r}")
        return np.asarray(weights[name])
    return value


def to_json(graph: Graph) -> dict:
    positions = {id(v): [i, v.index] for i, n in enumerate(graph.nodes) for v in n.outputs}
    handles = weight_names(graph)
    nodes = []
    for node in graph.nodes:
        nodes.append({
            "op": node.op,
            "inputs": [positions[id(v)] for v in node.inputs],
            "outputs": [_type_text(v.type) for v in node.outputs],
            "attrs": {k: _attr_to_json(v, handles.get((id(node), k))) for k, v in node.attrs.items()},
            "loc": [{"module": loc.module, "file": loc.file, "line": loc.line} for loc in node.locs],
        })
    return {"format": "spikec.ir", "version": FORMAT_VERSION, "name": graph.name, "nodes": nodes}


def from_json(data: dict, weights: Mapping[str, np.ndarray]) -> Graph:
    from spikec.ir.verify import verify_graph

    if data.get("format") != "spikec.ir" or data.get("version") != FORMAT_VERSION:
        raise IRError(f"not a spikec IR JSON document of version {FORMAT_VERSION}")
    graph = Graph(data["name"])
    for index, record in enumerate(data["nodes"]):
        try:
            inputs = [graph.nodes[i].outputs[k] for i, k in record["inputs"]]
            attrs = {k: _attr_from_json(v, weights) for k, v in record["attrs"].items()}
            locs = [Location(loc["module"], loc["file"], loc["line"]) for loc in record["loc"]]
            graph.create_node(record["op"], inputs, attrs, locs,
                              output_types=[_parse_type(t) for t in record["outputs"]])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise IRError(f"node {index}: malformed record ({exc})") from None
    verify_graph(graph)
    return graph


def dumps(graph: Graph) -> str:
    return json.dumps(to_json(graph), sort_keys=True, indent=1) + "\n"


def loads(text: str, weights: Mapping[str, np.ndarray]) -> Graph:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IRError(f"IR JSON does not parse: {exc}") from None
    return from_json(data, weights)


def to_networkx(graph: Graph) -> nx.MultiDiGraph:
    """Nodes are indices into ``graph.nodes`` (with ``op``, ``module`` and ``node`` data); an edge
    ``i -> j`` per use, keyed by the input position, with the value's ``type``."""
    view = nx.MultiDiGraph(name=graph.name)
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    for i, node in enumerate(graph.nodes):
        view.add_node(i, op=node.op, module=node.module, node=node)
    for j, node in enumerate(graph.nodes):
        for position, value in enumerate(node.inputs):
            view.add_edge(index[id(value.producer)], j, key=position, type=value.type, output=value.index)
    return view
