"""The compiled integer graph of a feed-forward spiking model as a lava-dl netx HDF5 file, the description
``lava.lib.dl.netx.hdf5.Network`` (lava-dl 0.6.0) builds Lava processes from, so that the network netx builds
runs bit-exact with intsim on Lava's fixed-point CPU models (docs/interop.md, "netx").

netx builds a chain of blocks from the groups ``layer/0``, ``layer/1``, ... of the file (the format lava-dl's
slayer writes): ``conv`` and ``dense`` blocks, each one Lava synapse group (``Conv``, ``Dense``) into one group of
CUBA LIF neurons (``LIFReset`` when the Network is given a reset interval), ``flatten`` between the last conv and
the first dense, after an ``input`` layer that gives the input's shape. The integer graph maps as::

    input, quantize, time views,        the host's encoding: the Network is fed these integers, one step of the
    gains or a flatten of the input     encoded input per time step, an image in Lava's (X, Y, C) order
    qlif reading the encoding           conv of 1x1 kernels of weight 1, one per channel (groups = C), or an identity
                                        dense for a vector: netx's Input block, which holds neurons, never connects
                                        its input port to them (it feeds them through their bias)
    qconv2d [qgain] qlif                conv: weight W * gain, PyTorch's [Cout, Cin/groups, kH, kW] (netx flips it
                                        into Lava's Conv layout); stride, padding, dilation (H, W); groups
    reshape that flattens an image      flatten (netx reorders Lava's (X, Y, C) into PyTorch's row-major C, H, W)
    qdense [qgain] qlif                 dense: weight W * 2**weight_exp * gain, [out, in]
    a synapse's bias (times its gain)   the layer's bias: netx makes it the neurons' bias_mant at bias_exp 6
    sum over time of the last qlif      the output: the last layer's spike counts over each sample's T steps

Each qlif becomes its layer's ``neuron`` group, netx's CUBA neuron (``hdf5.Network.get_neuron_params``):
``du = iDecay - 1``, ``dv = vDecay`` and ``vth = vThMant``, so ``iDecay = du + 1``, ``vDecay = dv``,
``vThMant = vth``; ``refDelay`` and ``gradedSpike``, which slayer writes and netx 0.6.0 does not read, say
what Lava's LIF does (no refractory steps, binary spikes).

What netx cannot express, and why a layer is refused:

* netx reads no weight exponent. It rescales every dense layer's stored integers ``H`` to fill 8 bits
  (lava-dl's ``netx.utils.optimize_weight_bits``: ``H << s`` with ``weight_exp = -s`` and the weight bits it
  computes, :func:`netx_dense_scaling`), which computes ``H x`` exactly only where Lava's Dense keeps enough of
  ``H << s`` (:func:`_dense_scaling_loss`). A negative ``weight_exp`` is a floor shift netx has no place for unless
  every weight is a multiple of ``2**-weight_exp``. Conv weights are used as they are.
* A bias moves from the synapse's messages (intsim) into the neurons (``bias_mant << 6``): the same ``v``
  when the neuron has no current memory (``du = 4095``), the mantissa fits Lava's int16 and the range analysis
  shows the input, with and without the bias, where ``u = a << 6`` cannot wrap; a folded gain needs that too.
* Everything that is not a chain of these layers: matmul, residual adds, max pooling, shifts, gains elsewhere,
  token-wise linears, the host classifier (16-bit weights summed on the host, past netx's 8-bit Dense).

:func:`export_netx` refuses a graph with one line naming every such op, its module path and source line.

The file's root attributes say how to run it: ``network_args`` (JSON), the keyword arguments of
``hdf5.Network`` that reset every layer at the step its sample's first step reaches it and make the first
synapse group read graded messages; ``input`` (JSON), the encoding the Network is fed; ``output``, what the
model's output is made of; ``timesteps``. Each layer group's ``spikec`` attribute names the IR ops it holds,
each with its module path and source line.
"""

from __future__ import annotations

import dataclasses
import io
import json
from fractions import Fraction

import numpy as np

from spikec.backends.intsim.fixed_point import (DU_NO_CURRENT_MEMORY, INT16_MAX, INT16_MIN, INT32_MAX, MESSAGE_BITS,
                                                MESSAGE_LIMIT, U_EXACT, WEIGHT_BITS, clip_weights, infer_sign_mode,
                                                truncate_weights, truncation_bits)
from spikec.errors import UnsupportedError
from spikec.ir import Graph, Node

__all__ = ["export_netx", "netx_dense_scaling", "NetxFile", "NETX_OPS"]

NETX_OPS = frozenset({"input", "output", "quantize", "repeat_time", "to_time_major", "qconv2d", "qdense", "qgain",
                      "qlif", "reshape", "sum"})
"""The integer ops a netx file can hold (in the places the module docstring says)."""

_SUPPORTED = "netx export supports input, dense, conv and flatten layers"
_ENCODING_OPS = ("input", "quantize", "repeat_time", "to_time_major", "qgain", "reshape")
_SYNAPSES = ("qconv2d", "qdense")
_EXPLAINED = {"add": "a residual connection, or the two synapse groups of a conv summed finer",
              "qshift": "a floor shift after a conv summed finer, or after a mean"}
"""Ops whose place in a model is not plain from their names: what quantization makes them stand for."""
_INPUT_MESSAGE_BITS = MESSAGE_BITS
"""netx gives the first synapse ``num_message_bits = input_message_bits``; any positive value makes Lava's Conv
and Dense read graded messages, and 24 is the width Lava's ports declare."""
_RESET_OFFSET = 1
"""netx resets layer ``k`` (its first block is 1) at the steps ``t = reset_offset + k`` modulo ``reset_interval``; a
sample's step 0 enters the source at ``s T + 1`` and reaches layer ``k``, ``k`` synapse groups on, at
``s T + 1 + k``."""
_REF_DELAY = 1
"""Loihi's refractory delay of one step: a neuron that fires can fire again at the next step, as Lava's LIF does."""


@dataclasses.dataclass(frozen=True)
class NetxFile:
    """The HDF5 bytes and the kinds of its layers, in order."""

    content: bytes
    layers: tuple[str, ...]


@dataclasses.dataclass
class _Layer:
    kind: str                         # "input", "conv", "flatten" or "dense"
    nodes: tuple[Node, ...]           # the IR nodes it holds
    shape: tuple[int, ...]            # per step, PyTorch's order
    neuron: Node | None = None
    weight: np.ndarray | None = None  # conv: [Cout, Cin/groups, kH, kW]; dense: [out, in]
    bias: np.ndarray | None = None
    conv: dict[str, object] | None = None   # stride, padding, dilation (H, W) and groups


def netx_dense_scaling(weight: np.ndarray) -> tuple[int, int]:
    """``(s, num_weight_bits)``: how netx's reader rescales the stored integer dense ``weight`` before Lava's Dense
    gets it (lava-dl 0.6.0 ``netx.utils.optimize_weight_bits``): the weights ``weight << s`` with ``weight_exp =
    -s``, and the weight bits it declares, from which Lava's Dense truncates ``8 - bits (+1 for MIXED)`` low bits.

    netx calls a matrix inhibitory when its largest weight is negative, excitatory when its smallest is not, mixed
    otherwise; ``s`` is the largest ``k`` that keeps ``weight * 2**k`` within ``[-256, 0]``, ``[0, 255]`` or, mixed,
    ``[-128, 127]``, plus one for a mixed matrix's sign bit (netx's float ``floor(log2(...))`` of these integer
    ratios is the exact one computed here). ``num_weight_bits = 8 - s - n``, with ``n`` the trailing zero bits every
    weight has (at most 8; one fewer when mixed). An all-zero matrix has no scale (netx fails on it)."""
    hi, lo = int(weight.max()), int(weight.min())
    if hi == 0 and lo == 0:
        raise ValueError("an all-zero weight matrix has no netx scale")
    signed = lo < 0 <= hi
    if hi < 0:
        scale = Fraction(256, -lo)
    elif lo >= 0:
        scale = Fraction(255, hi)
    else:
        scale = min([Fraction(128, -lo)] + ([Fraction(127, hi)] if hi > 0 else []))
    shift = scale.numerator.bit_length() - scale.denominator.bit_length()
    if Fraction(2) ** shift > scale:
        shift -= 1
    shift += signed
    nonzero = np.abs(weight[weight != 0]).astype(np.int64)
    trailing = min(WEIGHT_BITS, int(np.bitwise_and(nonzero, -nonzero).min()).bit_length() - 1)
    return shift, WEIGHT_BITS - shift - (trailing - signed)


def _dense_scaling_loss(weight: np.ndarray, graded: bool) -> str | None:
    """Why netx and Lava's Dense would not compute ``weight @ x`` exactly from the stored ``weight``, else None.

    Lava's Dense keeps ``P`` of netx's ``weight << s`` (its sign mode inferred, as netx passes none; clipped and
    truncated) and floor-shifts ``P x`` by ``s``: ``weight @ x + floor(D x / 2**s)`` with ``D = P - (weight << s)``.
    For every binary ``x`` that is ``weight @ x`` exactly when ``D >= 0`` and each row of ``D`` sums below
    ``2**s``; for graded ``x``, only when ``D = 0``."""
    if not weight.any():
        return "all-zero weights, which netx cannot rescale"
    shift, bits = netx_dense_scaling(weight)
    if shift < 0:
        return f"weights in [{weight.min()}, {weight.max()}], beyond the 8 bits netx rescales a dense layer into"
    stored = weight.astype(np.int64) << shift
    mode = infer_sign_mode(stored)
    changed = f"weights in [{weight.min()}, {weight.max()}] that Lava's Dense would change after netx's rescaling"
    if truncation_bits(mode, bits) < 0:
        return changed
    change = truncate_weights(clip_weights(stored, mode), mode, bits) - stored
    if graded and change.any() or change.min() < 0 or change.sum(axis=1).max() >= 1 << shift:
        return changed
    return None


class _Builder:
    """The layers of the chain of nodes from the input to the output, and every problem found on the way."""

    def __init__(self, graph: Graph, chain: list[Node]):
        self.graph, self.chain = graph, chain
        self.problems: dict[str, Node] = {}
        self._ranges = None

    def problem(self, what: str, node: Node) -> None:
        self.problems.setdefault(what, node)

    def ranges(self):
        if self._ranges is None:
            from spikec.passes.range_analysis import analyze_ranges

            self._ranges = analyze_ranges(self.graph)
        return self._ranges

    def layers(self) -> tuple[list[_Layer], int, str]:
        """The layers, the index of the encoding's last node in the chain, and what the output is."""
        chain, i = self.chain, 1
        while chain[i].op in _ENCODING_OPS:
            i += 1
        encoding = chain[i - 1]
        layers = [_Layer("input", tuple(chain[1:i]), encoding.output.type.sample_shape)]
        if chain[i].op == "qlif":
            layers.append(self._input_neurons(encoding, chain[i]))
            i += 1
        while chain[i].op not in ("sum", "output"):
            i = self._layer(i, layers)
        return layers, chain.index(encoding), self._output(i, layers)

    def _input_neurons(self, encoding: Node, neuron: Node) -> _Layer:
        """Neurons reading the encoding: netx's Input block never connects its input port to its neurons (it
        feeds them through their bias), so they become a layer of one-to-one synapses of weight 1, which pass each
        graded message unchanged (a depthwise 1x1 conv for an image, an identity dense for a vector)."""
        shape = neuron.output.type.sample_shape
        x = self.ranges().of(encoding.output)
        if len(shape) == 3:
            if max(abs(x.lo), abs(x.hi)) >= MESSAGE_LIMIT:
                self.problem("qlif (on an input beyond Lava's 24-bit Conv messages)", neuron)
            weight = np.ones((shape[0], 1, 1, 1), dtype=np.int64)
            conv = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": shape[0]}
            return _Layer("conv", (neuron,), shape, neuron, weight, None, conv)
        if len(shape) != 1:
            self.problem("qlif (on an input that is neither an image nor a vector)", neuron)
        weight = np.eye(int(np.prod(shape)), dtype=np.int64)
        loss = _dense_scaling_loss(weight, graded=True)
        if loss:
            self.problem(f"qlif (its identity synapses: {loss})", neuron)
        self._check_graded(neuron, weight, weight)
        return _Layer("dense", (neuron,), shape, neuron, weight)

    def _layer(self, i: int, layers: list[_Layer]) -> int:
        chain, node = self.chain, self.chain[i]
        if node.op == "reshape":
            if len(layers[-1].shape) != 3 or chain[i + 1].op != "qdense":
                self.problem("reshape (a flatten that is not between an image layer and a dense layer)", node)
            layers.append(_Layer("flatten", (node,), node.output.type.sample_shape))
            return i + 1
        if node.op not in _SYNAPSES:
            self.problem(f"{node.op} (not after a synapse)" if node.op == "qgain" else f"{node.op} (not in a layer)",
                         node)
            return i + 1
        gain = chain[i + 1] if chain[i + 1].op == "qgain" else None
        neuron = chain[i + 2 if gain else i + 1]
        if neuron.op != "qlif":
            self.problem(f"{node.op} (its sums reach the output without a neuron)", node)
            return i + (2 if gain else 1)
        layers.append(self._synapse_layer(node, gain, neuron, graded=len(layers) == 1))
        return i + (3 if gain else 2)

    def _synapse_layer(self, node: Node, gain: Node | None, neuron: Node, graded: bool) -> _Layer:
        a = node.attrs
        factor = gain.attrs["factor"] if gain else 1
        weight = a["weight"].astype(np.int64)
        conv = None
        if node.op == "qdense":
            exp = a["weight_exp"]
            if exp < 0 and np.any(weight % (1 << -exp)):
                self.problem(f"qdense (weight exponent {exp} on weights that are not multiples of {1 << -exp}: "
                             "netx has no floor shift)", node)
            weight = (weight << exp if exp >= 0 else weight >> -exp) * factor
            loss = _dense_scaling_loss(weight, graded)
            if loss:
                self.problem(f"qdense ({loss})", node)
            elif graded:
                self._check_graded(node, weight, a["weight"])
        else:
            weight = weight * factor
            if np.abs(weight).max(initial=0) > INT32_MAX:
                self.problem("qconv2d (weights times the gain beyond int32)", node)
            conv = {key: a[key] for key in ("stride", "padding", "dilation", "groups")}
        bias = None if a["bias"] is None or not a["bias"].any() else a["bias"].astype(np.int64) * factor
        if bias is not None or gain:
            self._check_moved(node, neuron, bias)
        kind = "conv" if node.op == "qconv2d" else "dense"
        nodes = (node, gain, neuron) if gain else (node, neuron)
        return _Layer(kind, nodes, neuron.output.type.sample_shape, neuron, weight, bias, conv)

    def _check_graded(self, node: Node, weight: np.ndarray, intsim_weight: np.ndarray) -> None:
        """A dense layer reading the encoding: Lava's graded Dense sums ``(H << s) x`` in int32 where intsim sums
        ``W x``; both must stay within int32 for the two to agree."""
        shift, _ = netx_dense_scaling(weight)
        x = self.ranges().of(node.inputs[0])
        peak = max(abs(x.lo), abs(x.hi))
        largest = max(int(np.abs(weight).sum(axis=1).max()) << shift, int(np.abs(intsim_weight).sum(axis=1).max()))
        if peak * largest > INT32_MAX:
            self.problem(f"{node.op} (graded input whose int32 sums could wrap after netx's rescaling)", node)

    def _check_moved(self, node: Node, neuron: Node, bias: np.ndarray | None) -> None:
        """A bias or gain moved into the layer gives intsim's ``v`` when ``u = a << 6`` cannot wrap, with and without
        the bias, and a bias only into neurons without current memory, as an int16 ``bias_mant``."""
        if bias is not None:
            if neuron.attrs["du"] != DU_NO_CURRENT_MEMORY:
                self.problem("qlif (current memory, du != 4095, behind a biased synapse)", neuron)
            if bias.min() < INT16_MIN or bias.max() > INT16_MAX:
                self.problem(f"{node.op} (a bias beyond Lava's int16 bias mantissa)", node)
        inputs = self.ranges().of(neuron.inputs[0])
        lo, hi = (inputs.lo, inputs.hi) if bias is None else (inputs.lo - int(bias.max()), inputs.hi - int(bias.min()))
        if not (-U_EXACT < min(lo, inputs.lo) and max(hi, inputs.hi) <= U_EXACT):
            self.problem(f"{node.op} (its neurons' input can reach 2**17, where Lava's u = a << 6 wraps differently "
                         "with the bias or gain in the layer)", node)

    def _output(self, i: int, layers: list[_Layer]) -> str:
        chain = self.chain
        if len(layers) == 1:
            self.problem("output (no neuron layer to export)", chain[i])
            return ""
        if chain[i].op == "output":
            if not chain[i].attrs["layouts"][0]:
                self.problem("output (spikes without their time axis)", chain[i])
            return "spikes"
        if chain[i + 1].op != "output":
            self.problem("sum (not the last layer's spike counts)", chain[i])
        return "spike counts"


def _chain(graph: Graph) -> list[Node]:
    """The nodes from the input to the output, following first inputs back from the output."""
    chain, node = [], graph.output_node
    while True:
        chain.append(node)
        if not node.inputs:
            return chain[::-1]
        node = node.inputs[0].producer


def _op_problem(node: Node) -> str | None:
    """Why ``node`` has no place in a netx file whatever surrounds it, else None."""
    a = node.attrs
    if node.op in _EXPLAINED:
        return f"{node.op} ({_EXPLAINED[node.op]})"
    if node.op not in NETX_OPS:
        return node.op
    if node.op == "qdense" and a["host"]:
        return "qdense (the host classifier: 16-bit weights summed on the host)"
    if node.op == "qdense" and node.inputs[0].type.rank != 3:
        return "qdense (token-wise)"
    if node.op == "sum" and tuple(a["axes"]) != (0,):
        return "sum (within a step)"
    if node.op == "reshape" and len(a["shape"]) != 1:
        return "reshape (not a flatten)"
    if node.op == "output" and len(node.inputs) != 1:
        return "output (several outputs)"
    return None


def _refuse(graph: Graph, problems: dict[str, Node]) -> None:
    if problems:
        shown = ", ".join(f"{what} at {node.describe()}" for what, node in problems.items())
        raise UnsupportedError(f"{_SUPPORTED}; {graph.name} has {shown}")


def export_netx(graph: Graph) -> NetxFile:
    """The netx HDF5 file of the compiled integer ``graph`` (see the module docstring). Raises
    :class:`UnsupportedError`, one line naming every op netx cannot express, with its module and source line."""
    problems: dict[str, Node] = {}
    for node in graph.nodes:
        what = _op_problem(node)
        if what:
            problems.setdefault(what, node)
    _refuse(graph, problems)
    chain = _chain(graph)
    if len(chain) != len(graph.nodes):
        on_chain = set(map(id, chain))
        branch = next(n for n in graph.nodes if id(n) not in on_chain)
        _refuse(graph, {f"{branch.op} (a branch off the chain of layers)": branch})
    builder = _Builder(graph, chain)
    layers, encoding, output = builder.layers()
    _refuse(graph, builder.problems)
    content = _hdf5(graph, layers, chain[:encoding + 1], output)
    return NetxFile(content, tuple(layer.kind for layer in layers))


def _attributes(graph: Graph, layers: list[_Layer], encoding: list[Node], output: str) -> dict[str, object]:
    quantize = next(n for n in encoding if n.op == "quantize")
    gain = int(np.prod([n.attrs["factor"] for n in encoding if n.op == "qgain"]))
    timesteps = layers[-1].neuron.output.type.time
    network = {"reset_interval": timesteps, "reset_offset": _RESET_OFFSET, "input_message_bits": _INPUT_MESSAGE_BITS}
    encoded = {"layout": encoding[0].attrs["layout"], "exp": quantize.attrs["exp"], "lo": quantize.attrs["lo"],
               "hi": quantize.attrs["hi"], "gain": gain, "shape": list(layers[0].shape)}
    return {"producer": "spikec", "model": graph.name, "timesteps": timesteps,
            "network_args": json.dumps(network, sort_keys=True), "input": json.dumps(encoded, sort_keys=True),
            "output": output}


def _name(handle, key: str, text: str) -> None:
    """A string dataset as slayer writes a block's type: one fixed-length ASCII string."""
    handle.create_dataset(key, (1,), "S10", [text.encode("ascii")])


def _write_layer(group, layer: _Layer) -> None:
    _name(group, "type", layer.kind)
    group.create_dataset("shape", data=np.array(layer.shape, dtype=np.int64))
    group.attrs["spikec"] = "; ".join(node.describe() for node in layer.nodes)
    if layer.weight is not None:
        group.create_dataset("weight", data=layer.weight.astype(np.int32))
    if layer.bias is not None:
        group.create_dataset("bias", data=layer.bias.astype(np.int32))
    if layer.conv is not None:
        group.create_dataset("inChannels", data=layer.weight.shape[1] * layer.conv["groups"])
        group.create_dataset("outChannels", data=layer.weight.shape[0])
        group.create_dataset("kernelSize", data=np.array(layer.weight.shape[2:], dtype=np.int64))
        for key in ("stride", "padding", "dilation"):
            group.create_dataset(key, data=np.array(layer.conv[key], dtype=np.int64))
        group.create_dataset("groups", data=layer.conv["groups"])
    elif layer.kind == "dense":
        group.create_dataset("inFeatures", data=layer.weight.shape[1])
        group.create_dataset("outFeatures", data=layer.weight.shape[0])
    if layer.neuron is not None:
        n = layer.neuron.attrs
        _name(group, "neuron/type", "CUBA")
        for key, value in (("iDecay", n["du"] + 1), ("vDecay", n["dv"]), ("vThMant", n["vth"]),
                           ("refDelay", _REF_DELAY)):
            group.create_dataset(f"neuron/{key}", data=np.int32(value))
        group.create_dataset("neuron/gradedSpike", data=False)


def _hdf5(graph: Graph, layers: list[_Layer], encoding: list[Node], output: str) -> bytes:
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w", track_order=True) as f:
        for key, value in _attributes(graph, layers, encoding, output).items():
            f.attrs[key] = value
        group = f.create_group("layer")
        for index, layer in enumerate(layers):
            _write_layer(group.create_group(str(index)), layer)
    return buffer.getvalue()
