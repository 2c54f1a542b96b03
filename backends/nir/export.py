"""The float graph as a NIR graph (the ``nir`` package, 1.0), for the simulators and chips that read NIR
(docs/interop.md).

NIR describes one time step of a network in continuous time; spikec's IR runs ``[T, B, ...]`` values. The
export maps each per-step op to its NIR primitive, shapes without the time and batch axes:

    input         Input (the sample shape)
    repeat_time   dropped: NIR feeds its input at every step, which is what repeat_time does
    conv2d        Conv2d (input_shape, weight, stride, padding, dilation, groups, bias; zeros without one)
    linear        Affine (weight, bias), Linear without a bias
    lif           LIF with dt = 1 (below)
    if            IF (r = 1)
    avgpool       AvgPool2d (count_include_pad and ceil_mode off only)
    reshape       Flatten, when it flattens every sample axis
    output        Output

spikec's LIF, ``H = V + (X - (V - v_reset)) / tau`` (``decay_input``; else ``V - (V - v_reset) / tau + X``), is
NIR's ``tau dv/dt = (v_leak - v) + r I`` integrated with forward Euler at ``dt = 1``: ``tau = tau``,
``v_leak = v_reset``, ``r = 1`` (``r = tau`` without ``decay_input``), ``v_threshold = v_threshold`` and
``v_reset = v_reset``; every parameter is an array of the layer's per-step shape. spikec fires when
``H >= v_threshold``; NIR leaves the comparison at the threshold to its reader.

Everything else (attention's products, max pooling, residual adds, means, soft resets) has no NIR primitive:
:func:`export_nir` refuses the graph with one line listing those ops.
"""

from __future__ import annotations

import numpy as np

from spikec.errors import UnsupportedError
from spikec.ir import Graph, Node

__all__ = ["export_nir", "NIR_OPS"]

NIR_OPS = ("input", "output", "repeat_time", "conv2d", "linear", "lif", "if", "avgpool", "reshape")
"""The float ops with a NIR primitive."""


def _per_step(value) -> tuple[int, ...]:
    return tuple(value.type.shape[2:])


def _full(value, x: float) -> np.ndarray:
    return np.full(_per_step(value), x, dtype=np.float32)


def _why_not(node: Node) -> str | None:
    """Why ``node`` has no NIR primitive though its op has one (an attribute NIR cannot express), else None."""
    a = node.attrs
    if node.op in ("lif", "if") and a["v_reset"] is None:
        return "a soft reset"
    if node.op == "avgpool" and (a["count_include_pad"] and any(a["padding"]) or a["ceil_mode"] or a["divisor"]):
        return "padding counted, ceil_mode or a divisor"
    if node.op == "reshape" and len(a["shape"]) != 1:
        return "a reshape that is not a flatten"
    if node.op == "conv2d" and len(node.inputs[0].type.shape) != 5:
        return "not a 2-D image convolution"
    return None


def _node(node: Node):
    import nir

    a, out = node.attrs, node.output
    if node.op == "conv2d":
        weight = a["weight"].astype(np.float32)
        bias = np.zeros(weight.shape[0], np.float32) if a["bias"] is None else a["bias"].astype(np.float32)
        return nir.Conv2d(input_shape=tuple(node.inputs[0].type.shape[3:]), weight=weight, stride=tuple(a["stride"]),
                          padding=tuple(a["padding"]), dilation=tuple(a["dilation"]), groups=a["groups"], bias=bias)
    if node.op == "linear":
        weight = a["weight"].astype(np.float32)
        return nir.Linear(weight=weight) if a["bias"] is None else nir.Affine(weight=weight,
                                                                              bias=a["bias"].astype(np.float32))
    if node.op == "lif":
        tau = float(a["tau"])
        return nir.LIF(tau=_full(out, tau), r=_full(out, 1.0 if a["decay_input"] else tau),
                       v_leak=_full(out, a["v_reset"]), v_threshold=_full(out, a["v_threshold"]),
                       v_reset=_full(out, a["v_reset"]))
    if node.op == "if":
        return nir.IF(r=_full(out, 1.0), v_threshold=_full(out, a["v_threshold"]), v_reset=_full(out, a["v_reset"]))
    if node.op == "avgpool":
        return nir.AvgPool2d(kernel_size=np.array(a["kernel"]), stride=np.array(a["stride"]),
                             padding=np.array(a["padding"]))
    if node.op == "reshape":
        return nir.Flatten(input_type={"input": np.array(_per_step(node.inputs[0]))}, start_dim=0, end_dim=-1)
    raise AssertionError(node.op)   # _check_exportable admits no other op


def _check_exportable(graph: Graph) -> None:
    missing: dict[str, Node] = {}
    for node in graph.nodes:
        reason = _why_not(node) if node.op in NIR_OPS else "no NIR primitive"
        if reason is not None:
            missing.setdefault(f"{node.op} ({reason})", node)
    if missing:
        shown = ", ".join(f"{what} at {node.describe()}" for what, node in missing.items())
        raise UnsupportedError(f"{graph.name}: NIR cannot express {len(missing)} kind(s) of op: {shown}")
    if len(graph.input_nodes) != 1 or len(graph.output_node.inputs) != 1:
        raise UnsupportedError(f"{graph.name}: NIR export takes a model with one input and one output, not "
                               f"{len(graph.input_nodes)} and {len(graph.output_node.inputs)}")


def export_nir(graph: Graph):
    """The NIR graph (``nir.NIRGraph``) of the float ``graph``; see the module docstring. Raises
    :class:`UnsupportedError` listing every kind of op NIR cannot express."""
    import nir

    _check_exportable(graph)
    nodes, edges, name_of, used = {}, [], {}, set()
    for node in graph.nodes:
        if node.op == "repeat_time":
            name_of[node.output] = name_of[node.inputs[0]]
            continue
        name = _name(node, used)
        if node.op == "input":
            nodes[name] = nir.Input(input_type={"input": np.array(_per_step(node.output))})
            name_of[node.output] = name
            continue
        if node.op == "output":
            (value,) = node.inputs
            nodes[name] = nir.Output(output_type={"output": np.array(_per_step(value))})
            edges.append((name_of[value], name))
            continue
        nodes[name] = _node(node)
        edges.append((name_of[node.inputs[0]], name))
        name_of[node.output] = name
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"producer": "spikec", "model": graph.name})


def _name(node: Node, used: set) -> str:
    """A unique node name: the module path (dots as underscores) or the op, numbered on a clash."""
    base = node.op if node.op in ("input", "output") else (node.module or node.op).replace(".", "_")
    name, count = base, 1
    while name in used:
        count += 1
        name = f"{base}_{count}"
    used.add(name)
    return name
