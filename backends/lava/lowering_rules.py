"""The lowering rule of every op that runs on chip (:data:`RULES`): ``rule(lowering, node, delay)`` realises
``node``'s value ``delay`` steps late as a :class:`~.lowering_streams.Stream`, adding the processes and
connections it needs to the :class:`~.lowering_streams.Netlist`.

**Mapping per op** (why: ``docs/lava.md``)::

    qconv2d                  Conv (Lava's; input and output through transpose ports, C,H,W <-> X,Y,C)
    qdense, one token        Dense / DelayDense, sign mode MIXED (the quantizer's even 8-bit weights are kept)
    qdense, token-wise       Sparse / DelaySparse with kron(I, W): per-token weights, Dense's rule incl. weight_exp
    qlif                     LIFReset (reset at each wave, docs/design.md §6); the synapse biases as bias_mant << 6
    add                      nothing: the terms' OutPorts connect to the consumer's one InPort (Lava sums them)
    reshape, transpose       nothing: Lava's virtual ports on the connections
    mul (same shapes)        ProdNeuron (vth 0, exp 0: sends a * b)
    maxpool, matmul, mul (broadcast), and_not, sum, qgain
                             spikec's MaxPool, MatMul, Mul, AndNot, ReduceSum, Gain (host-only, intsim's rules)

**Delays.** A Dense/Sparse synapse group takes up to 63 steps in its synapses and passes the rest to its input;
a Conv (no delays in Lava) passes it all to its input; an ``add`` or a view passes it to its inputs; a spike
train (a neuron group's output, or a max-pool, product or IAND of spike trains) is relayed
(:meth:`~.lowering_streams.Lowering.relay`); any other op is copied with delayed inputs.

The ops without a rule are the host's by design (:data:`.regions.HOST_ONLY_OPS`), as are the host classifier
and time sums, which :mod:`.lowering` handles by region; any other op without a rule is refused by name.
"""

from __future__ import annotations

import math

import numpy as np

from spikec.backends.intsim.fixed_point import ACTIVATION_SHIFT, BIAS_MANT_BITS, DU_NO_CURRENT_MEMORY, INT16_MAX, \
    INT16_MIN, MESSAGE_BITS, U_EXACT, WEIGHT_BITS, SignMode, prepare_dense_weights
from spikec.backends.lava.lowering_streams import Lowering, Rule, Stream, Term
from spikec.errors import LoweringError
from spikec.ir import Node
from spikec.ir.ops import spike_valued

__all__ = ["RULES"]

_LIF_BIAS_EXP = ACTIVATION_SHIFT
"""``bias_mant << 6`` added to ``v`` is intsim's bias added to ``a`` before ``a << 6`` (when ``u`` has no memory)."""
_BIAS_HALVED = 1 << (BIAS_MANT_BITS - 1)
"""An even bias of this magnitude or more is halved into ``bias_exp = 7``, to fit Loihi's 13-bit mantissa."""


# ------------------------------------------------------------------ views and sums: no process


def view_rule(low: Lowering, node: Node, delay: int) -> Stream:
    inner = low.input_stream(node, 0, delay)
    shape = node.output.type.sample_shape
    if node.op == "reshape":
        return inner.view("reshape", shape, shape)
    return inner.view("transpose", tuple(p - 2 for p in node.attrs["perm"][2:]), shape)


def add_rule(low: Lowering, node: Node, delay: int) -> Stream:
    a, b = (low.input_stream(node, i, delay) for i in range(2))
    shape = node.output.type.sample_shape
    if a.shape != shape or b.shape != shape:
        low.fail(node, f"a broadcasting add ({list(a.shape)} + {list(b.shape)}) has no Lava mapping yet")
    if a.bias is None and b.bias is None:
        bias = None
    else:
        bias = (np.zeros(shape, np.int64) if a.bias is None else a.bias) + (0 if b.bias is None else b.bias)
    return Stream(a.terms + b.terms, shape, bias)


# ------------------------------------------------------------------ neuron groups


def lif_rule(low: Lowering, node: Node, delay: int) -> Stream:
    if delay:
        return low.relay(node.output, delay)
    a = node.attrs
    shape = node.output.type.sample_shape
    name = low.tag(node, 0, "lif")
    stream = low.input_stream(node, 0, 0)
    args = {"shape": list(shape), "du": a["du"], "dv": a["dv"], "vth": a["vth"],
            "reset_interval": low.plan.timesteps, "reset_offset": low.plan.reset_offset(node)}
    if stream.biased:
        if _bias_fits_lif(low, node, stream):
            mant, exp = _lif_bias(stream.bias)
            args["bias_mant"] = low.net.array(f"lava.{name}.bias_mant", mant)
            args["bias_exp"] = low.net.array(f"lava.{name}.bias_exp", exp) if exp.ndim else int(exp)
        else:
            stream = low.unbiased(stream, node, 0)
    low.process(node, name, "LIFReset", args, "neuron", 0, {"a_in": shape}, {"s_out": shape})
    low.net.connect(Stream(stream.terms, shape), name, "a_in", shape)
    low.probe(node, name, "spikes", shape, "int8")
    return Stream.port(name, "s_out", shape)


def _bias_fits_lif(low: Lowering, node: Node, stream: Stream) -> bool:
    """Whether the neurons' ``bias_mant << 6`` gives intsim's result: no current memory (``du = 4095``), an
    int16 mantissa, and an input without the bias that Lava's ``u = a << 6`` keeps unwrapped."""
    bias = stream.bias
    if node.attrs["du"] != DU_NO_CURRENT_MEMORY or bias.min() < INT16_MIN or bias.max() > INT16_MAX:
        return False
    interval = low.ranges.of(node.inputs[0])
    lo, hi = interval.lo - int(bias.max()), interval.hi - int(bias.min())
    return -U_EXACT < lo and hi <= U_EXACT


def _lif_bias(bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``bias << 6`` as Lava's ``bias_mant << bias_exp``: ``bias_exp = 6, bias_mant = bias``, or, for even biases
    beyond Loihi's 13-bit mantissa, ``bias_exp = 7`` and half the mantissa (the same value, one bit fewer).
    ``bias_exp`` is a scalar when it is 6 everywhere."""
    halve = (bias % 2 == 0) & (np.abs(bias) >= _BIAS_HALVED)
    if not halve.any():
        return bias.astype(np.int16), np.array(_LIF_BIAS_EXP)
    exp = np.where(halve, _LIF_BIAS_EXP + 1, _LIF_BIAS_EXP).astype(np.int16)
    return (bias >> (exp - _LIF_BIAS_EXP)).astype(np.int16), exp


# ------------------------------------------------------------------ synapse groups


def synapse_rule(low: Lowering, node: Node, delay: int) -> Stream:
    in_shape = node.inputs[0].type.sample_shape
    handle = low.handles[(id(node), "weight")]
    if node.op == "qconv2d":
        kind, syn_delay = "Conv", 0
    else:
        _check_dense_weights(low, node)
        kind, syn_delay = ("Dense" if len(in_shape) == 1 else "Sparse"), low.synapse_delay(delay)
    stream = low.unbiased(low.input_stream(node, 0, delay - syn_delay), node, delay)
    name = low.tag(node, delay, "conv" if kind == "Conv" else "dense")
    if kind == "Conv":
        args, (in_port, out_port), out_view = _conv_args(node, handle, not spike_valued(node.inputs[0]))
        low.net.connect(stream.view("transpose", (2, 1, 0), in_port), name, "s_in", in_port)
    else:
        args, in_port, out_port, out_view = _dense_args(node, handle, kind, syn_delay)
        low.net.connect(stream, name, "s_in", in_port)
        if syn_delay:
            kind = "Delay" + kind
    low.process(node, name, kind, args, "synapse", delay, {"s_in": in_port}, {"a_out": out_port})
    return Stream((Term(name, "a_out", out_view),), node.output.type.sample_shape, _synapse_bias(node))


def _synapse_bias(node: Node) -> np.ndarray | None:
    """The bias a synapse group adds to its messages every step, broadcast to its output's sample shape."""
    a = node.attrs
    if a["bias"] is None:
        return None
    out_shape = node.output.type.sample_shape
    axis = 0 if node.op == "qconv2d" else a["axis"] - 2
    shape = [1] * len(out_shape)
    shape[axis] = out_shape[axis]
    return np.broadcast_to(a["bias"].astype(np.int64).reshape(shape), out_shape).copy()


def _check_dense_weights(low: Lowering, node: Node) -> None:
    w = node.attrs["weight"]
    if not np.array_equal(prepare_dense_weights(w, WEIGHT_BITS, SignMode.MIXED), w):
        low.fail(node, "weights are not 8-bit even mantissas in [-256, 254] "
                       "(Lava's MIXED Dense would change them)")


def _conv_args(node: Node, handle: str, graded: bool):
    a = node.attrs
    c, h, w = node.inputs[0].type.sample_shape
    cout, ho, wo = node.output.type.sample_shape
    args = {"weight": {"$": "conv_weight", "key": handle}, "input_shape": [w, h, c],
            "padding": [a["padding"][1], a["padding"][0]], "stride": [a["stride"][1], a["stride"][0]],
            "dilation": [a["dilation"][1], a["dilation"][0]], "groups": a["groups"],
            "num_message_bits": MESSAGE_BITS if graded else 0}
    return args, ((w, h, c), (wo, ho, cout)), (("transpose", (2, 1, 0)),)


def _dense_args(node: Node, handle: str, kind: str, syn_delay: int):
    a = node.attrs
    in_shape, out_shape = node.inputs[0].type.sample_shape, node.output.type.sample_shape
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    if kind == "Dense":
        weights = {"$": "weight", "key": handle}
    else:
        k = a["axis"] - 2
        weights = {"$": "token_dense", "key": handle, "pre": math.prod(in_shape[:k]),
                   "post": math.prod(in_shape[k + 1:])}
    args = {"weights": weights, "weight_exp": a["weight_exp"], "num_message_bits": MESSAGE_BITS if a["graded"] else 0,
            "sign_mode": {"$": "sign_mode", "name": "MIXED"}}
    if syn_delay:
        args["delays"] = syn_delay
    view = () if len(out_shape) == 1 else (("reshape", tuple(out_shape)),)
    return args, (n_in,), (n_out,), view


# ------------------------------------------------------------------ stateless ops: ProdNeuron, spikec's processes


def mul_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """A product: a ProdNeuron when both operands have the output's shape, else spikec's broadcasting ``Mul``."""
    if delay and spike_valued(node.output):
        return low.relay(node.output, delay)
    shape = node.output.type.sample_shape
    streams = [low.input_stream(node, i, delay) for i in range(2)]
    if any(s.shape != shape for s in streams):
        return _spikec_process(low, node, delay, streams)
    streams = [low.unbiased(s, node, delay, f"bias{i}_") for i, s in enumerate(streams)]
    name = low.tag(node, delay)
    low.process(node, name, "ProdNeuron", {"shape": list(shape), "vth": 0, "exp": 0}, "op", delay,
                {"a_in1": shape, "a_in2": shape}, {"s_out": shape})
    low.net.connect(streams[0], name, "a_in1", shape)
    low.net.connect(streams[1], name, "a_in2", shape)
    return Stream.port(name, "s_out", shape)


def op_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """A stateless op with no built-in process: a spikec process; a spike train late is relayed instead."""
    if delay and spike_valued(node.output):
        return low.relay(node.output, delay)
    return _spikec_process(low, node, delay, [low.input_stream(node, i, delay) for i in range(len(node.inputs))])


def _spikec_process(low: Lowering, node: Node, delay: int, streams: list[Stream]) -> Stream:
    """spikec's process for ``node`` (:data:`_PROCESSES`), taking its inputs' biases as ``in_bias`` /
    ``a_bias`` / ``b_bias``."""
    shape = node.output.type.sample_shape
    name = low.tag(node, delay)
    kind, params = _PROCESSES[node.op](node)
    if len(streams) == 1:
        args = {"in_shape": list(streams[0].shape), "shape": list(shape), **params}
        if streams[0].biased:
            args["in_bias"] = low.net.array(f"lava.{name}.in_bias", streams[0].bias)
        ports = {"a_in": streams[0].shape}
    else:
        args = {"a_shape": list(streams[0].shape), "b_shape": list(streams[1].shape), "shape": list(shape),
                **params}
        for port, stream in zip("ab", streams):
            if stream.biased:
                args[f"{port}_bias"] = low.net.array(f"lava.{name}.{port}_bias", stream.bias)
        ports = {"a_in": streams[0].shape, "b_in": streams[1].shape}
    low.process(node, name, kind, args, "op", delay, ports, {"s_out": shape})
    for (port, port_shape), stream in zip(ports.items(), streams):
        low.net.connect(stream.bare(), name, port, port_shape)
    return Stream.port(name, "s_out", shape)


def _pool_params(node: Node):
    a = node.attrs
    return "MaxPool", {k: (list(a[k]) if isinstance(a[k], tuple) else a[k])
                       for k in ("kernel", "stride", "padding", "dilation", "ceil_mode")}


def _sum_params(node: Node):
    if 0 in node.attrs["axes"]:
        raise LoweringError(f"lava: {node.describe()}: a time sum inside the network has no Lava mapping")
    return "ReduceSum", {"axes": list(node.attrs["axes"]), "keepdim": node.attrs["keepdim"]}


_PROCESSES = {
    "maxpool": _pool_params,
    "matmul": lambda node: ("MatMul", {}),
    "mul": lambda node: ("Mul", {}),
    "and_not": lambda node: ("AndNot", {}),
    "sum": _sum_params,
    "qgain": lambda node: ("Gain", {"factor": node.attrs["factor"]}),
}
"""Op -> its spikec process kind and the constructor arguments it adds (``backends/lava/processes``)."""

RULES: dict[str, Rule] = {
    "reshape": view_rule,
    "transpose": view_rule,
    "add": add_rule,
    "qlif": lif_rule,
    "qdense": synapse_rule,
    "qconv2d": synapse_rule,
    "mul": mul_rule,
    "maxpool": op_rule,
    "matmul": op_rule,
    "and_not": op_rule,
    "sum": op_rule,
    "qgain": op_rule,
}
"""Op -> its lowering rule: every integer op that can run on chip (a test checks it against the registry)."""
