"""The lowering rule of every op that runs on chip (:data:`RULES`): ``rule(lowering, node, delay)`` realises
``node``'s value ``delay`` steps late as a :class:`~.lowering_streams.Stream`, adding the processes and
connections it needs to the :class:`~.lowering_streams.Netlist`.

**Mapping per op** (why, and the cost of each: ``docs/lava.md``)::

    qconv2d                  Conv (Lava's; input and output through transpose ports, C,H,W <-> X,Y,C)
    qdense, one token        Dense / DelayDense, sign mode MIXED (the quantizer's even 8-bit weights are kept)
    qdense, token-wise       a 1x1 Conv, weights W << weight_exp, shared by every token; Sparse kron(I, W) when
                             the exponent is negative or the output exceeds a graded message
    qlif                     LIFReset (reset at each wave); the synapse biases as bias_mant << 6
    add                      nothing: the terms' OutPorts connect to the consumer's one InPort (Lava sums them)
    reshape, transpose       nothing: Lava's virtual ports on the connections
    qgain 2**k               folded into the synapse group feeding it (:mod:`.mapping`); else an identity Sparse
    qshift k                 an identity Sparse of exponent -k (Lava's floor shift)
    slice                    a Sparse of ones selecting the part (Lava's virtual ports only reshape and transpose)
    mul                      ProdNeuron (vth 0, exp 0: sends a * b); a broadcast operand through a fan-out Sparse
    maxpool of spikes        depthwise Conv of ones into OR neurons (LIF, vth 0)
    and_not of spikes        +1 and -1 identity Sparse into OR neurons
    sum within a step        Sparse of ones
    matmul                   fan-out Sparse into ProdNeuron terms, Sparse of ones over the inner axis; or spikec's
                             MatMul on the embedded cores (--attention)
    maxpool of graded values spikec's MaxPool on the embedded cores (intsim's rule)

**Delays** (:meth:`~.lowering_streams.Lowering.realize`). A Dense/Sparse synapse group read by one op takes up
to 63 steps in its synapses and passes the rest to its input; a Conv passes it all to its input; a view passes
it to its input; a spike train is relayed by LIFs, any other value by graded relays.

The ops without a rule are the host's by design (:data:`.regions.HOST_ONLY_OPS`), as are the host classifier
and time sums, which :mod:`.lowering` handles by region; any other op without a rule is refused by name.
"""

from __future__ import annotations

import math

import numpy as np

from spikec.backends.intsim.fixed_point import ACTIVATION_SHIFT, BIAS_MANT_BITS, DECAY_MAX, DU_NO_CURRENT_MEMORY, \
    INT16_MAX, INT16_MIN, MESSAGE_BITS, U_EXACT, WEIGHT_BITS, SignMode, prepare_dense_weights
from spikec.backends.lava.helpers import layout_ref, max_tree, pool_candidates
from spikec.backends.lava.lowering_streams import Lowering, Rule, Stream, Term
from spikec.backends.lava.mapping import and_not_on_neurons, gain_mantissa, gain_on_synapses
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
    """A neuron group, on time (a late spike train is a relay: :meth:`.lowering_streams.Lowering.realize`)."""
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
    """A conv or linear: Lava's Conv where the weights are shared (a spatial conv; a token-wise linear as a 1x1
    Conv), a Dense for one token, and a Sparse ``kron(I, W)`` for a token-wise linear whose exponent is
    negative or whose output exceeds a graded message. A folded gain ``2**k`` scales the weights."""
    in_shape = node.inputs[0].type.sample_shape
    exp = node.attrs.get("weight_exp", 0) + low.mapping.gain_exp(node)
    if node.op == "qconv2d":
        return _conv(low, node, delay, exp)
    _check_dense_weights(low, node)
    if node in low.mapping.token_convs:
        return _pointwise_conv(low, node, delay, exp)
    kind, syn_delay = ("Dense" if len(in_shape) == 1 else "Sparse"), low.synapse_delay(delay)
    stream = low.unbiased(low.input_stream(node, 0, delay - syn_delay), node, delay)
    name = low.tag(node, delay, "dense")
    args, in_port, out_port, out_view = _dense_args(node, low.handles[(id(node), "weight")], kind, syn_delay, exp)
    low.net.connect(stream, name, "s_in", in_port)
    if syn_delay:
        kind = "Delay" + kind
    low.process(node, name, kind, args, "synapse", delay, {"s_in": in_port}, {"a_out": out_port})
    return Stream((Term(name, "a_out", out_view),), node.output.type.sample_shape, _synapse_bias(low, node))


def _conv(low: Lowering, node: Node, delay: int, exp: int) -> Stream:
    """A spatial conv: Lava's Conv, whose delay is its input's (Lava's Conv has none)."""
    stream = low.unbiased(low.input_stream(node, 0, delay), node, delay)
    name = low.tag(node, delay, "conv")
    handle = low.handles[(id(node), "weight")]
    args, (in_port, out_port), out_view = _conv_args(node, handle, not spike_valued(node.inputs[0]), exp)
    low.net.connect(stream.view("transpose", (2, 1, 0), in_port), name, "s_in", in_port)
    low.process(node, name, "Conv", args, "synapse", delay, {"s_in": in_port}, {"a_out": out_port})
    return Stream((Term(name, "a_out", out_view),), node.output.type.sample_shape, _synapse_bias(low, node))


def _pointwise_conv(low: Lowering, node: Node, delay: int, exp: int) -> Stream:
    """A token-wise linear ``[P.., C, Q..] -> [P.., C', Q..]`` as a 1x1 Conv over the image ``(X, Y) = (P, Q)``
    with ``C`` channels, weights ``W << exp``: the ``(C', C)`` weights stored once, shared by every token. A
    negative ``exp`` is the floor shift of an identity synapse group after the Conv (:mod:`.mapping`)."""
    in_shape, out_shape = node.inputs[0].type.sample_shape, node.output.type.sample_shape
    k = node.attrs["axis"] - 2
    pre, post = math.prod(in_shape[:k]), math.prod(in_shape[k + 1:])
    c_in, c_out = in_shape[k], out_shape[k]
    shift = min(exp, 0)
    stream = low.unbiased(low.input_stream(node, 0, delay), node, delay)
    name = low.tag(node, delay, "conv")
    in_port, out_port = (pre, post, c_in), (pre, post, c_out)
    args = {"weight": layout_ref("conv_weight", exp - shift, key=low.handles[(id(node), "weight")]),
            "input_shape": list(in_port), "padding": [0, 0], "stride": [1, 1], "dilation": [1, 1], "groups": 1,
            "num_message_bits": MESSAGE_BITS if node.attrs["graded"] else 0}
    image = stream.view("reshape", (pre, c_in, post), (pre, c_in, post)).view("transpose", (0, 2, 1), in_port)
    low.net.connect(image, name, "s_in", in_port)
    low.process(node, name, "Conv", args, "synapse", delay, {"s_in": in_port}, {"a_out": out_port})
    out_view = (("transpose", (0, 2, 1)), ("reshape", tuple(out_shape)))
    sums = Stream((Term(name, "a_out", out_view),), out_shape)
    if shift:
        sums = low.synapses(node, delay, sums, layout_ref("identity", math.prod(out_shape)), out_shape,
                            weight_exp=shift, prefix="shift")
    return Stream(sums.terms, out_shape, _synapse_bias(low, node))


def _synapse_bias(low: Lowering, node: Node) -> np.ndarray | None:
    """The bias a synapse group adds to its messages every step (a folded gain included), broadcast to its
    output's sample shape."""
    a = node.attrs
    if a["bias"] is None:
        return None
    out_shape = node.output.type.sample_shape
    axis = 0 if node.op == "qconv2d" else a["axis"] - 2
    shape = [1] * len(out_shape)
    shape[axis] = out_shape[axis]
    bias = a["bias"].astype(np.int64) << low.mapping.gain_exp(node)
    return np.broadcast_to(bias.reshape(shape), out_shape).copy()


def _check_dense_weights(low: Lowering, node: Node) -> None:
    w = node.attrs["weight"]
    if not np.array_equal(prepare_dense_weights(w, WEIGHT_BITS, SignMode.MIXED), w):
        low.fail(node, "weights are not 8-bit even mantissas in [-256, 254] "
                       "(Lava's MIXED Dense would change them)")


def _conv_args(node: Node, handle: str, graded: bool, exp: int):
    a = node.attrs
    c, h, w = node.inputs[0].type.sample_shape
    cout, ho, wo = node.output.type.sample_shape
    args = {"weight": layout_ref("conv_weight", exp, key=handle), "input_shape": [w, h, c],
            "padding": [a["padding"][1], a["padding"][0]], "stride": [a["stride"][1], a["stride"][0]],
            "dilation": [a["dilation"][1], a["dilation"][0]], "groups": a["groups"],
            "num_message_bits": MESSAGE_BITS if graded else 0}
    return args, ((w, h, c), (wo, ho, cout)), (("transpose", (2, 1, 0)),)


def _dense_args(node: Node, handle: str, kind: str, syn_delay: int, exp: int):
    a = node.attrs
    in_shape, out_shape = node.inputs[0].type.sample_shape, node.output.type.sample_shape
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    if kind == "Dense":
        weights = {"$": "weight", "key": handle}
    else:
        k = a["axis"] - 2
        weights = layout_ref("token_dense", math.prod(in_shape[:k]), math.prod(in_shape[k + 1:]), key=handle)
    args = {"weights": weights, "weight_exp": exp, "num_message_bits": MESSAGE_BITS if a["graded"] else 0,
            "sign_mode": {"$": "sign_mode", "name": "MIXED"}}
    if syn_delay:
        args["delays"] = syn_delay
    view = () if len(out_shape) == 1 else (("reshape", tuple(out_shape)),)
    return args, (n_in,), (n_out,), view


# ------------------------------------------------------------------ spike logic on neurons


def _or_neurons(low: Lowering, node: Node, delay: int, name: str, synapse_streams: list[Stream]) -> Stream:
    """Neurons that fire when their synapses bring a positive sum: ``du = dv = 4095`` keep nothing of a step,
    ``vth = 0``, so ``v = 64 a`` fires for ``a >= 1`` and stays at rest otherwise (the relay's neuron)."""
    shape = node.output.type.sample_shape
    args = {"shape": list(shape), "du": DU_NO_CURRENT_MEMORY, "dv": DECAY_MAX, "vth": 0}
    low.process(node, name, "LIF", args, "neuron", delay, {"a_in": shape}, {"s_out": shape})
    for stream in synapse_streams:
        low.net.connect(stream, name, "a_in", shape)
    return Stream.port(name, "s_out", shape)


def maxpool_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """A max-pool of spikes is an OR over each window: window synapses of weight 1 (a depthwise Conv) into
    neurons that fire for one spike. A max-pool of graded values is a max tree (:mod:`.mapping`), or spikec's
    ``MaxPool`` on the embedded cores where the tree's differences would not fit a graded spike."""
    if not spike_valued(node.inputs[0]):
        return _max_tree(low, node, delay) if node in low.mapping.max_trees else op_rule(low, node, delay)
    a = node.attrs
    stream = low.input_stream(node, 0, delay)
    in_shape, out_shape = node.inputs[0].type.sample_shape, node.output.type.sample_shape
    if not a["ceil_mode"]:
        return _or_neurons(low, node, delay, low.tag(node, delay), [_window_conv(low, node, delay, stream)])
    weights = layout_ref("window", in_shape, out_shape, a["kernel"], a["stride"], a["padding"], a["dilation"])
    window = low.synapses(node, delay, stream, weights, out_shape, prefix="window")
    return _or_neurons(low, node, delay, low.tag(node, delay), [window])


def _window_conv(low: Lowering, node: Node, delay: int, stream: Stream) -> Stream:
    """A spike max-pool's windows as a depthwise Conv of ones (zero padding adds no spike): the count of each
    window, its C x k x k weights shared by every position. (With ``ceil_mode`` the windows past the map have no
    Conv form: a window Sparse instead.)"""
    a = node.attrs
    c, h, w = node.inputs[0].type.sample_shape
    _, ho, wo = node.output.type.sample_shape
    name = low.tag(node, delay, "window")
    args = {"weight": layout_ref("ones_kernel", c, a["kernel"]), "input_shape": [w, h, c],
            "padding": [a["padding"][1], a["padding"][0]], "stride": [a["stride"][1], a["stride"][0]],
            "dilation": [a["dilation"][1], a["dilation"][0]], "groups": c, "num_message_bits": 0}
    in_port, out_port = (w, h, c), (wo, ho, c)
    low.net.connect(stream.view("transpose", (2, 1, 0), in_port), name, "s_in", in_port)
    low.process(node, name, "Conv", args, "synapse", delay, {"s_in": in_port}, {"a_out": out_port})
    return Stream((Term(name, "a_out", (("transpose", (2, 1, 0)),)),), node.output.type.sample_shape)


def _max_tree(low: Lowering, node: Node, delay: int) -> Stream:
    """The max tree of :func:`.helpers.max_tree`: level ``l``'s ReLU neurons (``GradedReluVec``, vth 0) read the
    input ``l - 1`` steps late and level ``j``'s ``l - 1 - j`` late through MIXED synapses of weight ±2 and
    exponent -1 (exactly ±1); the output sums the input ``L`` steps late and level ``j`` ``L - j`` late. The
    input's bias, equal over each window, is the output's."""
    a = node.attrs
    levels = low.mapping.max_trees[node]
    stream = low.input_stream(node, 0, delay)
    in_shape, out_shape = node.inputs[0].type.sample_shape, node.output.type.sample_shape
    tree = (in_shape, out_shape, a["kernel"], a["stride"], a["padding"], a["dilation"])
    sources = {0: low.neurons(stream, node, delay)}
    for level in range(1, levels + 1):
        size = max_tree(*tree, level, 0).shape[0]
        name = low.tag(node, delay, f"relu{level}_")
        low.process(node, name, "GradedReluVec", {"shape": [size], "vth": 0, "exp": 0}, "neuron", delay,
                    {"a_in": (size,)}, {"s_out": (size,)})
        for term in _tree_synapses(low, node, delay, tree, level, sources, (size,), False):
            low.net.connect(Stream((term,), (size,)), name, "a_in", (size,))
        sources[level] = Stream.port(name, "s_out", (size,))
    terms = _tree_synapses(low, node, delay, tree, levels + 1, sources, out_shape, True)
    return Stream(tuple(terms), out_shape, _window_bias(low, node, stream.bias, tree))


def _tree_synapses(low: Lowering, node: Node, delay: int, tree: tuple, target: int, sources: dict,
                   shape: tuple[int, ...], output: bool) -> list[Term]:
    """The synapse groups from every source into the tree's ``target`` (a ReLU level, or the ``output``), each
    late by the steps between its source's level and the target's; groups with no synapse are left out."""
    terms = []
    for source, stream in sources.items():
        if not max_tree(*tree, target, source).nnz:
            continue
        weight, exp, mode = (1, 0, "EXCITATORY") if output else (2, -1, "MIXED")
        ref = layout_ref("max_tree", *tree, target, source, weight)
        out = low.synapses(node, delay, stream, ref, shape, weight_exp=exp, sign_mode=mode,
                           prefix=f"tree{target}_{source}_", synapse_delay=target - 1 - source)
        terms.extend(out.terms)
    return terms


def _window_bias(low: Lowering, node: Node, bias: np.ndarray | None, tree: tuple) -> np.ndarray | None:
    """The output's bias: the input's, which must be the same over each window (a conv's per-channel bias is)."""
    if bias is None or not bias.any():
        return None
    candidates = np.stack(list(pool_candidates(*tree)))
    valid = candidates >= 0
    values = np.where(valid, bias.ravel()[np.maximum(candidates, 0)], 0)
    first = values[np.argmax(valid, axis=0), np.arange(values.shape[1])]
    if np.any(valid & (values != first)):
        low.fail(node, "its input's bias differs within a pooling window; the max tree cannot carry it")
    return first.reshape(node.output.type.sample_shape)


def and_not_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """SEW-IAND ``(1 - a) * s`` of spikes: ``s`` through weight +1 and ``a`` through weight -1 into neurons that
    fire for a positive sum, i.e. for ``s = 1, a = 0``. With broadcasting, spikec's ``AndNot`` on the embedded
    cores."""
    shape = node.output.type.sample_shape
    if not and_not_on_neurons(node):
        return op_rule(low, node, delay)
    size = math.prod(shape)
    inhibit, excite = (low.input_stream(node, i, delay) for i in range(2))
    terms = [low.synapses(node, delay, excite, layout_ref("identity", size), shape, prefix="excite"),
             low.synapses(node, delay, inhibit, layout_ref("identity", size, -1), shape, prefix="inhibit",
                          sign_mode="INHIBITORY")]
    return _or_neurons(low, node, delay, low.tag(node, delay), terms)


# ------------------------------------------------------------------ sums, gains and products on cores


def sum_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """A sum over axes within a step: a synapse group of ones from the summed neurons (a folded gain as its
    exponent); the stream's bias is summed the same way."""
    a = node.attrs
    if 0 in a["axes"]:
        low.fail(node, "a time sum inside the network has no Lava mapping")
    stream = low.input_stream(node, 0, delay)
    in_shape, out_shape = node.inputs[0].type.sample_shape, node.output.type.sample_shape
    kept = tuple(1 if i in [x - 2 for x in a["axes"]] else d for i, d in enumerate(in_shape))
    exp = low.mapping.gain_exp(node)
    out = low.synapses(node, delay, stream, layout_ref("reduce", in_shape, kept), out_shape, weight_exp=exp)
    bias = None
    if stream.biased:
        bias = (stream.bias.sum(axis=tuple(i for i, d in enumerate(kept) if d == 1)) << exp).reshape(out_shape)
    return Stream(out.terms, out_shape, bias)


def gain_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """An integer gain: nothing when it is folded into the synapse group that feeds it (:mod:`.mapping`), else an
    identity synapse group of weight ``m``, exponent ``e`` (``factor = m * 2**e``, ``m`` odd, at most 255)."""
    stream = low.input_stream(node, 0, delay)
    if node in low.mapping.folded:
        return stream
    factor = node.attrs["factor"]
    if not gain_on_synapses(node):
        return op_rule(low, node, delay)
    mantissa, exp = gain_mantissa(factor)
    shape = node.output.type.sample_shape
    out = low.synapses(node, delay, stream, layout_ref("identity", math.prod(shape), mantissa), shape,
                       weight_exp=exp, prefix="gain")
    return Stream(out.terms, shape, None if not stream.biased else stream.bias * factor)


def slice_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """A slice: a synapse group of ones selecting its elements (one step), since Lava's virtual ports only
    reshape and transpose; the stream's bias is sliced the same way."""
    a = node.attrs
    stream = low.input_stream(node, 0, delay)
    shape = node.output.type.sample_shape
    axis = a["axis"] - 2
    out = low.synapses(node, delay, stream.bare(),
                       layout_ref("part", stream.shape, axis, a["start"], a["stop"]), shape, prefix="slice")
    bias = None if not stream.biased else np.take(stream.bias, np.arange(a["start"], a["stop"]), axis=axis)
    return Stream(out.terms, shape, bias)


def shift_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """``x >> k``: an identity synapse group of exponent ``-k`` reading ``x`` as neurons, Lava's floor shift of
    the group's sum (one step). The stream's bias passes the shift where it is a multiple of ``2**k``, as a finer
    conv's bias is (``floor((c + b 2**k) / 2**k) = floor(c / 2**k) + b``); any other is added first."""
    bits = node.attrs["shift"]
    stream = low.input_stream(node, 0, delay)
    if not low.fits_message(node.inputs[0], stream):
        low.fail(node, "its input can exceed a graded spike (24 bits), which the shift's synapses would read")
    bias = None
    if stream.biased and not (stream.bias % (1 << bits)).any():
        stream, bias = stream.bare(), stream.bias >> bits
    shape = node.output.type.sample_shape
    out = low.synapses(node, delay, low.unbiased(stream, node, delay), layout_ref("identity", math.prod(shape)),
                       shape, weight_exp=-bits, prefix="shift")
    return Stream(out.terms, shape, bias)


def mul_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """A product on ``ProdNeuron`` (vth 0, exp 0: it sends ``a * b``): an operand of the output's shape goes
    straight in, a broadcast one through a fan-out synapse group (one step, which the other operand waits)."""
    shape = node.output.type.sample_shape
    values = node.inputs
    fanned = [v.type.sample_shape != shape for v in values]
    streams = []
    for i, (value, fan) in enumerate(zip(values, fanned)):
        if not fan:
            stream = low.unbiased(low.input_stream(node, i, delay + any(fanned)), node, delay, f"bias{i}_")
        else:
            stream = _fan_out(low, node, delay, i, _aligned(value.type.sample_shape, shape), shape)
        streams.append(stream)
    return _prod_neurons(low, node, delay, low.tag(node, delay), shape, streams)


def _aligned(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (len(out_shape) - len(shape)) + tuple(shape)


def _fan_out(low: Lowering, node: Node, delay: int, position: int, aligned: tuple[int, ...],
             out_shape: tuple[int, ...]) -> Stream:
    """Operand ``position`` of ``node`` repeated into ``out_shape`` by a synapse group of weight 1."""
    stream = low.unbiased(low.input_stream(node, position, delay), node, delay, f"bias{position}_")
    return low.synapses(node, delay, stream, layout_ref("broadcast", aligned, out_shape), out_shape,
                        prefix=f"fan{position}_")


def _prod_neurons(low: Lowering, node: Node, delay: int, name: str, shape: tuple[int, ...],
                  streams: list[Stream]) -> Stream:
    low.process(node, name, "ProdNeuron", {"shape": list(shape), "vth": 0, "exp": 0}, "op", delay,
                {"a_in1": shape, "a_in2": shape}, {"s_out": shape})
    low.net.connect(streams[0], name, "a_in1", shape)
    low.net.connect(streams[1], name, "a_in2", shape)
    return Stream.port(name, "s_out", shape)


def matmul_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """``C = A @ B`` on chip (:mod:`.mapping`): ``P[.., i, j, l] = A[.., i, j] * B[.., j, l]`` on ``ProdNeuron``,
    each operand fanned out by a synapse group, and ``C`` the sum of ``P`` over ``j`` by a synapse group of ones
    (a folded gain as its exponent): two steps. On the embedded cores: spikec's ``MatMul``."""
    if not low.mapping.on_chip_matmul(node):
        return op_rule(low, node, delay)
    a, b = (v.type.sample_shape for v in node.inputs)
    out = node.output.type.sample_shape
    batch = out[:-2]
    terms = (*batch, a[-2], a[-1], b[-1])
    fanned = [_fan_out(low, node, delay, 0, _aligned((*a[:-2], a[-2], a[-1], 1), terms), terms),
              _fan_out(low, node, delay, 1, _aligned((*b[:-2], 1, b[-2], b[-1]), terms), terms)]
    products = _prod_neurons(low, node, delay, low.tag(node, delay, "products"), terms, fanned)
    kept = (*batch, a[-2], 1, b[-1])
    summed = low.synapses(node, delay, products, layout_ref("reduce", terms, kept), out,
                          weight_exp=low.mapping.gain_exp(node), prefix="sum")
    return Stream(summed.terms, out)


# ------------------------------------------------------------------ the embedded cores: spikec's processes


def op_rule(low: Lowering, node: Node, delay: int) -> Stream:
    """An op with no neuro-core form here: spikec's process on the embedded cores."""
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


_PROCESSES = {
    "maxpool": _pool_params,
    "matmul": lambda node: ("MatMul", {}),
    "and_not": lambda node: ("AndNot", {}),
    "qgain": lambda node: ("Gain", {"factor": node.attrs["factor"]}),
}
"""Op -> its spikec process kind on the embedded cores and the constructor arguments it adds
(``backends/lava/processes``), for the forms that have no neuro-core mapping."""


RULES: dict[str, Rule] = {
    "reshape": view_rule,
    "transpose": view_rule,
    "add": add_rule,
    "qlif": lif_rule,
    "qdense": synapse_rule,
    "qconv2d": synapse_rule,
    "mul": mul_rule,
    "maxpool": maxpool_rule,
    "matmul": matmul_rule,
    "and_not": and_not_rule,
    "sum": sum_rule,
    "qgain": gain_rule,
    "qshift": shift_rule,
    "slice": slice_rule,
}
"""Op -> its lowering rule: every integer op that can run on chip (a test checks it against the registry)."""
