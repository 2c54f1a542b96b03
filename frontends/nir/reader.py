"""NIR graphs (the ``nir`` package, 1.0; written by snnTorch, Norse, sinabs, rockpool or ``nir`` itself) as
spikec IR, so that ``spikec verify``, ``compile`` and ``simulate`` take a ``.nir`` file (docs/interop.md).

A NIR graph describes one time step; the IR runs ``T`` of them: the input is ``[T, B, *shape]`` (input layout
``TB``, ``T`` from ``--timesteps``) and every node runs at every step. Each node becomes the IR op of the same
meaning, the inverse of the NIR export's mapping:

    Input              input (layout TB)
    Affine, Linear     linear
    Conv2d             conv2d (integer padding)
    LIF                lif with dt = 1: v_leak = v_reset, r = 1 (decay_input) or r = tau (not), scalar parameters
    IF                 if (r = 1)
    AvgPool2d          avgpool; SumPool2d is avgpool then a scale by the window's size
    Flatten            reshape
    Output             output of the sum over the T steps (spike counts, for a spiking last layer): the
                       model's logits, ``[B, ...]``

A node with several incoming edges receives their sum (NIR's rule): the IR adds them first. Anything else
(CubaLIF's synaptic current, per-neuron time constants, a leak toward a potential other than the reset) is
refused with one line that lists every such node.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from spikec.errors import InputError, UnsupportedError
from spikec.ir import Graph, Location, TensorType
from spikec.ir.verify import verify_graph

__all__ = ["read_nir", "NirModel"]


@dataclasses.dataclass
class NirModel:
    """A NIR file read as IR: its name, the graph, and the input it takes (``[T, 1, *shape]``, layout TB)."""

    name: str
    graph: Graph
    input_shape: tuple[int, ...]


def _uniform(node_name: str, what: str, value) -> float:
    array = np.asarray(value, dtype=np.float64)
    if array.size == 0 or not np.all(array == array.flat[0]):
        raise _Refused(f"{node_name}: {what} differs between neurons (spikec takes one value per layer)")
    return float(array.flat[0])


class _Refused(Exception):
    """One node the reader cannot map, with why."""


def _pair(value) -> tuple[int, ...]:
    array = tuple(np.atleast_1d(np.asarray(value)).astype(int).tolist())
    return array * 2 if len(array) == 1 else array


def _neuron(name: str, node) -> tuple[str, dict]:
    import nir

    if isinstance(node, nir.IF):
        if _uniform(name, "r", node.r) != 1.0:
            raise _Refused(f"{name}: IF with r != 1")
        return "if", {"v_threshold": _uniform(name, "v_threshold", node.v_threshold),
                      "v_reset": _uniform(name, "v_reset", 0.0 if node.v_reset is None else node.v_reset)}
    tau, r = _uniform(name, "tau", node.tau), _uniform(name, "r", node.r)
    v_reset = _uniform(name, "v_reset", 0.0 if node.v_reset is None else node.v_reset)
    if _uniform(name, "v_leak", node.v_leak) != v_reset:
        raise _Refused(f"{name}: LIF leaking toward v_leak != v_reset")
    if not tau > 1:
        raise _Refused(f"{name}: LIF with tau = {tau:g} (spikec needs tau > 1 at dt = 1)")
    if r not in (1.0, tau):
        raise _Refused(f"{name}: LIF with r = {r:g} (spikec takes r = 1, decay_input, or r = tau)")
    return "lif", {"tau": tau, "v_threshold": _uniform(name, "v_threshold", node.v_threshold), "v_reset": v_reset,
                   "decay_input": r == 1.0}


def _op(name: str, node, x) -> tuple[str, dict]:
    """The IR op and attributes of the NIR ``node`` that reads the value ``x``."""
    import nir

    if isinstance(node, nir.Affine):
        return "linear", {"weight": np.asarray(node.weight, np.float32), "bias": np.asarray(node.bias, np.float32)}
    if isinstance(node, nir.Linear):
        return "linear", {"weight": np.asarray(node.weight, np.float32), "bias": None}
    if isinstance(node, nir.Conv2d):
        if isinstance(node.padding, str):
            raise _Refused(f"{name}: Conv2d with padding {node.padding!r} (spikec takes integer padding)")
        bias = np.asarray(node.bias, np.float32)
        return "conv2d", {"weight": np.asarray(node.weight, np.float32), "bias": bias if bias.ndim else None,
                          "stride": _pair(node.stride), "padding": _pair(node.padding),
                          "dilation": _pair(node.dilation), "groups": int(node.groups)}
    if isinstance(node, (nir.LIF, nir.IF)):
        return _neuron(name, node)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return "avgpool", {"kernel": _pair(node.kernel_size), "stride": _pair(node.stride),
                           "padding": _pair(node.padding), "ceil_mode": False, "count_include_pad": True,
                           "divisor": None}
    if isinstance(node, nir.Flatten):
        sample = list(x.type.shape[2:])
        end = node.end_dim % len(sample)
        return "reshape", {"shape": (*sample[:node.start_dim], math.prod(sample[node.start_dim:end + 1]),
                                     *sample[end + 1:])}
    raise _Refused(f"{name}: {type(node).__name__} (no spikec op)")


def _order(graph) -> list[str]:
    """The node names in topological order, or one clear error for a cycle (a recurrent NIR graph)."""
    pending = {name: {a for a, b in graph.edges if b == name} for name in graph.nodes}
    order = []
    while pending:
        ready = sorted(name for name, sources in pending.items() if not sources - set(order))
        if not ready:
            raise UnsupportedError(f"the NIR graph has a cycle through {', '.join(sorted(pending))}: spikec reads "
                                   "feed-forward graphs")
        order += ready
        for name in ready:
            del pending[name]
    return order


def _build(nir_graph, name: str, timesteps: int) -> tuple[Graph, tuple[int, ...]]:
    import nir

    inputs = [n for n, node in nir_graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in nir_graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedError(f"{name}: spikec reads NIR graphs with one Input and one Output node, not "
                               f"{len(inputs)} and {len(outputs)}")
    graph, values, refused = Graph(name), {}, []
    shape = tuple(int(d) for d in np.atleast_1d(nir_graph.nodes[inputs[0]].input_type["input"]))
    input_shape = (timesteps, 1, *shape)
    for node_name in _order(nir_graph):
        node, loc = nir_graph.nodes[node_name], [Location(node_name)]
        sources = [values[a] for a, b in nir_graph.edges if b == node_name and a in values]
        if node_name == inputs[0]:
            values[node_name] = graph.create_node("input", [], {"name": node_name, "layout": "TB"},
                                                  output_types=[TensorType(input_shape)], locs=loc).output
            continue
        if not sources:
            continue                            # behind a refused node: its own refusal says enough
        x = sources[0]
        for other in sources[1:]:
            x = graph.add("add", [x, other], {}, loc)
        if node_name == outputs[0]:         # the readout: what reaches Output, summed over the T steps
            readout = graph.add("sum", [x], {"axes": (0,), "keepdim": False}, loc)
            graph.create_node("output", [readout], {"layouts": (0,)})
            continue
        try:
            op, attrs = _op(node_name, node, x)
        except _Refused as exc:
            refused.append(str(exc))
            continue
        value = graph.add(op, [x], attrs, loc)
        if isinstance(node, nir.SumPool2d):
            value = graph.add("scale", [value], {"factor": float(math.prod(attrs["kernel"]))}, loc)
        values[node_name] = value
    if refused:
        raise UnsupportedError(f"{name}: spikec cannot read {len(refused)} NIR node(s): {'; '.join(refused)}")
    verify_graph(graph)
    return graph, input_shape


def read_nir(path: str, timesteps: int | None) -> NirModel:
    """The IR of the NIR file at ``path`` run for ``timesteps`` steps (see the module docstring)."""
    from spikec.files import require_regular_file

    require_regular_file(path, "a NIR file")
    if timesteps is None:
        raise InputError(f"{path}: a NIR graph describes one time step; say how many to run with --timesteps T")
    try:
        import nir
    except ImportError:
        raise InputError("reading NIR needs the nir package: pip install 'spikec[interop]'") from None
    try:
        nir_graph = nir.read(path)
    except Exception as exc:  # not HDF5, not a NIR graph, an unknown node type
        raise InputError(f"{path} is not a readable NIR file: {type(exc).__name__}: {exc}") from None
    name = os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    graph, input_shape = _build(nir_graph, name, timesteps)
    return NirModel(name, graph, input_shape)
