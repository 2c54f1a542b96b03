"""Lowering: a quantized IR graph and its delay plan to a :class:`~.netlist.ProcessGraph` of Lava processes.

**Regions.** The host encodes the input (``input``, ``quantize``, ``repeat_time``, ``to_time_major`` and views of
them): each encoded value an on-chip op reads becomes a source (Lava's ``RingBuffer``). The host also runs the
readout after the run: the host classifier (``qdense`` with ``host``) and everything after it, and the time
sums, which on chip are readout ``Integrator`` processes whose running sums the host reads at each sample's
last step. Everything else runs as Lava processes.

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
    sum over time            spikec's Integrator (readout)

**Streams.** A value is realised as a *stream*: the OutPorts (each with its views) whose messages, summed at
an InPort, give the value, and a constant ``bias`` (the biases of the synapse groups in it, in message
units). A neuron group takes the bias as ``bias_mant = bias, bias_exp = 6`` (``bias << 6`` added to ``v``,
which equals intsim's ``(a + bias) << 6`` added through ``u`` when ``du = 4095`` and neither shift wraps);
spikec's processes take it as ``in_bias``; anything else gets it through a ``Bias`` process.

**Delays** (:mod:`spikec.passes.balance_delays`). ``realize(v, δ)`` gives ``v``'s stream ``δ`` steps late:
a synapse group takes the delay in its synapses (DelayDense/DelaySparse, up to 63) and passes the rest to its
input; a Conv (no delays in Lava) passes it all to its input; an ``add`` or a view passes it to its inputs; a
spike train (a neuron group's output, or a max-pool, product or IAND of spike trains) goes through relay
neurons (an identity DelaySparse of up to 63 steps and a LIF with ``vth = 0``, one step more per relay); any
other stateless op is copied with delayed inputs; a source is a second source sending later. Each
``(value, δ)`` is realised once and shared.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from spikec.backends.intsim.fixed_point import SignMode, prepare_dense_weights
from spikec.backends.lava.netlist import Connection, Probe, ProcessGraph, ProcessSpec, SourceSpec
from spikec.errors import LoweringError
from spikec.ir import Graph, Node, Value
from spikec.ir.printer import weight_names
from spikec.passes.balance_delays import BalanceDelays, DelayPlan
from spikec.passes.range_analysis import analyze_ranges

__all__ = ["lower", "host_regions", "MAX_SYNAPSE_DELAY"]

MAX_SYNAPSE_DELAY = 63
"""Loihi 2's synaptic delays are 6-bit (Lava's DelayDense/DelaySparse models refuse more)."""

_ENCODING = ("input", "quantize", "repeat_time", "to_time_major")
_VIEWS = ("reshape", "transpose")
_LIF_BIAS_EXP = 6
_U_EXACT = 1 << 17           # u = a << 6 is kept as is by Lava's LIF for -2**17 < a <= 2**17


@dataclasses.dataclass(frozen=True)
class _Term:
    proc: str
    port: str
    views: tuple = ()


@dataclasses.dataclass(frozen=True)
class _Stream:
    terms: tuple[_Term, ...]
    shape: tuple[int, ...]
    bias: np.ndarray | None = None      # int64, the value's sample shape

    def view(self, kind: str, arg: tuple, shape: tuple) -> "_Stream":
        terms = tuple(_Term(t.proc, t.port, t.views + ((kind, tuple(arg)),)) for t in self.terms)
        bias = None
        if self.bias is not None:
            bias = self.bias.reshape(arg) if kind == "reshape" else np.transpose(self.bias, arg)
        return _Stream(terms, tuple(shape), bias)


def host_regions(graph: Graph) -> tuple[set[int], set[int], set[int]]:
    """``(encoding, readout, integrators)`` as sets of ``id(node)``: the host's input encoding, the host's
    readout (run after Lava), and the time sums that run as readout integrators on Lava."""
    encoding: set[int] = set()
    readout: set[int] = set()
    integrators: set[int] = set()
    for node in graph.nodes:
        if node.op in _ENCODING or (node.op in _VIEWS and id(node.inputs[0].producer) in encoding):
            encoding.add(id(node))
            continue
        after_readout = any(id(v.producer) in readout for v in node.inputs)
        on_chip_input = bool(node.inputs) and id(node.inputs[0].producer) not in encoding and not after_readout
        time_sum = node.op == "sum" and 0 in node.attrs["axes"]
        if node.op == "output" or after_readout or (node.op == "qdense" and node.attrs["host"]):
            readout.add(id(node))
        elif time_sum and node.output.type.dtype == "i32" and on_chip_input:
            integrators.add(id(node))
            readout.add(id(node))
        elif time_sum:
            readout.add(id(node))
    return encoding, readout, integrators


def _binary(value: Value) -> bool:
    """Whether every element is 0 or 1 by construction: spikes and what keeps them spikes."""
    node = value.producer
    if node.op == "qlif":
        return True
    if node.op in ("maxpool", *_VIEWS):
        return _binary(node.inputs[0])
    if node.op in ("mul", "and_not"):
        return all(_binary(v) for v in node.inputs)
    return False


def _lif_bias(bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``bias << 6`` as Lava's ``bias_mant << bias_exp``: ``bias_exp = 6, bias_mant = bias``, or, for even biases
    beyond Loihi's 13-bit mantissa, ``bias_exp = 7`` and half the mantissa (the same value, one bit fewer).
    ``bias_exp`` is a scalar when it is 6 everywhere."""
    halve = (bias % 2 == 0) & (np.abs(bias) >= 1 << 12)
    if not halve.any():
        return bias.astype(np.int16), np.array(_LIF_BIAS_EXP)
    exp = np.where(halve, _LIF_BIAS_EXP + 1, _LIF_BIAS_EXP).astype(np.int16)
    return (bias >> (exp - _LIF_BIAS_EXP)).astype(np.int16), exp


def _sample_perm(perm) -> tuple[int, ...]:
    return tuple(p - 2 for p in perm[2:])


class _Lowerer:
    def __init__(self, graph: Graph, plan: DelayPlan, name: str):
        self.graph, self.plan, self.name = graph, plan, name
        self.index = {id(n): i for i, n in enumerate(graph.nodes)}
        self.handles = weight_names(graph)
        self.encoding, self.readout, self.integrators = host_regions(graph)
        self.ranges = analyze_ranges(graph)
        self.processes: list[ProcessSpec] = []
        self.connections: list[Connection] = []
        self.sources: list[SourceSpec] = []
        self.probes: list[Probe] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.memo: dict[tuple[int, int], _Stream] = {}
        self.names: set[str] = set()

    # ------------------------------------------------------------------ bookkeeping

    def fail(self, node: Node, message: str):
        where = node.locs[0].file_line if node.locs else None
        raise LoweringError(f"lava: {node.describe()}: {message}", where)

    def tag(self, node: Node, delay: int = 0, prefix: str | None = None) -> str:
        base = f"{prefix or node.op}{self.index[id(node)]}"
        return base if not delay else f"{base}_d{delay}"

    def add_process(self, spec: ProcessSpec) -> str:
        if spec.name in self.names:
            raise LoweringError(f"lava: process name {spec.name} used twice (a lowering bug)")
        self.names.add(spec.name)
        self.processes.append(spec)
        return spec.name

    def array(self, key: str, value: np.ndarray) -> dict:
        self.arrays[key] = np.ascontiguousarray(value)
        return {"$": "array", "key": key}

    def connect(self, stream: _Stream, dst: str, dst_port: str, port_shape: tuple[int, ...]) -> None:
        """Connect every term of ``stream`` to ``dst.dst_port``; a final reshape matches the port's shape."""
        if math.prod(stream.shape) != math.prod(port_shape):
            raise LoweringError(f"lava: {stream.shape} does not fit port {dst}.{dst_port} of shape {port_shape}")
        seen = set()
        for term in stream.terms:
            views = term.views if tuple(stream.shape) == tuple(port_shape) else \
                term.views + (("reshape", tuple(port_shape)),)
            if (term.proc, term.port, views) in seen:
                raise LoweringError(f"lava: {term.proc}.{term.port} reaches {dst} twice the same way; Lava cannot "
                                    "connect one port pair twice")
            seen.add((term.proc, term.port, views))
            self.connections.append(Connection(term.proc, term.port, dst, dst_port, tuple(views)))

    def unbiased(self, stream: _Stream, node: Node, delay: int, prefix: str = "bias") -> _Stream:
        """``stream`` with its bias turned into messages (a ``Bias`` process) when it has one."""
        if stream.bias is None or not stream.bias.any():
            return _Stream(stream.terms, stream.shape)
        name = self.tag(node, delay, prefix)
        shape = stream.shape
        self.add_process(ProcessSpec(name, "Bias", {"in_shape": list(shape), "shape": list(shape),
                                                    "bias": self.array(f"lava.{name}.bias", stream.bias)},
                                     "op", self.index[id(node)], node.module, delay, {"a_in": shape},
                                     {"s_out": shape}))
        self.connect(_Stream(stream.terms, shape), name, "a_in", shape)
        return _Stream((_Term(name, "s_out"),), shape)

    # ------------------------------------------------------------------ realisation

    def realize(self, value: Value, delay: int) -> _Stream:
        key = (id(value), delay)
        if key not in self.memo:
            node = value.producer
            if id(node) in self.encoding:
                self.memo[key] = self.source(node, delay)
            elif id(node) in self.readout:
                self.fail(node, "an on-chip op reads a value of the host readout")
            else:
                rule = _RULES.get(node.op)
                if rule is None:
                    self.fail(node, f"{node.op} has no Lava mapping")
                self.memo[key] = rule(self, node, delay)
        return self.memo[key]

    def input_stream(self, node: Node, position: int, delay: int) -> _Stream:
        return self.realize(node.inputs[position], delay + self.plan.delay(node, position))

    def source(self, node: Node, delay: int) -> _Stream:
        value = node.output
        if value.type.time != self.plan.timesteps:
            self.fail(node, f"the encoded input has {value.type.time} time steps; on-chip ops need "
                            f"{self.plan.timesteps}")
        name = self.tag(node, delay, "source")
        shape = value.type.sample_shape
        self.sources.append(SourceSpec(name, self.index[id(node)], delay, shape))
        self.add_process(ProcessSpec(name, "RingBuffer", {"data": {"$": "source_data", "name": name}}, "source",
                                     self.index[id(node)], node.module, delay, {}, {"s_out": shape}))
        return _Stream((_Term(name, "s_out"),), shape)

    def relay(self, value: Value, delay: int) -> _Stream:
        """A spike train ``delay`` steps late: identity synapses (delay up to 63) into LIFs with ``vth = 0``
        (``v = 64 > 0`` fires for a spike, ``v = 0`` does not; the reset keeps ``v`` at 0). Longer delays chain
        relays of at most 64 steps each, sharing the shorter ones."""
        node, shape = value.producer, value.type.sample_shape
        size = math.prod(shape)
        step = min(delay, MAX_SYNAPSE_DELAY + 1)
        stream = self.realize(value, delay - step)
        synapse, neuron = self.tag(node, delay, "relay_syn"), self.tag(node, delay, "relay")
        args = {"weights": {"$": "identity", "size": size}, "num_message_bits": 0,
                "sign_mode": {"$": "sign_mode", "name": "EXCITATORY"}}
        kind = "Sparse"
        if step > 1:
            kind, args = "DelaySparse", {**args, "delays": step - 1}
        index = self.index[id(node)]
        self.add_process(ProcessSpec(synapse, kind, args, "relay", index, node.module, delay,
                                     {"s_in": (size,)}, {"a_out": (size,)}))
        self.connect(stream, synapse, "s_in", (size,))
        self.add_process(ProcessSpec(neuron, "LIF", {"shape": list(shape), "du": 4095, "dv": 4095, "vth": 0},
                                     "relay", index, node.module, delay, {"a_in": shape}, {"s_out": shape}))
        self.connect(_Stream((_Term(synapse, "a_out"),), (size,)), neuron, "a_in", shape)
        return _Stream((_Term(neuron, "s_out"),), shape)

    # ------------------------------------------------------------------ rules

    def view_rule(self, node: Node, delay: int) -> _Stream:
        inner = self.input_stream(node, 0, delay)
        shape = node.output.type.sample_shape
        if node.op == "reshape":
            return inner.view("reshape", shape, shape)
        return inner.view("transpose", _sample_perm(node.attrs["perm"]), shape)

    def add_rule(self, node: Node, delay: int) -> _Stream:
        a, b = (self.input_stream(node, i, delay) for i in range(2))
        shape = node.output.type.sample_shape
        if a.shape != shape or b.shape != shape:
            self.fail(node, f"a broadcasting add ({list(a.shape)} + {list(b.shape)}) has no Lava mapping yet")
        if a.bias is None and b.bias is None:
            bias = None
        else:
            bias = (np.zeros(shape, np.int64) if a.bias is None else a.bias) + (0 if b.bias is None else b.bias)
        return _Stream(a.terms + b.terms, shape, bias)

    def lif_rule(self, node: Node, delay: int) -> _Stream:
        if delay:
            return self.relay(node.output, delay)
        a = node.attrs
        shape = node.output.type.sample_shape
        name = self.tag(node, 0, "lif")
        stream = self.input_stream(node, 0, 0)
        args = {"shape": list(shape), "du": a["du"], "dv": a["dv"], "vth": a["vth"],
                "reset_interval": self.plan.timesteps, "reset_offset": self.plan.reset_offset(node)}
        if stream.bias is not None and stream.bias.any():
            if self.bias_fits_lif(node, stream):
                mant, exp = _lif_bias(stream.bias)
                args["bias_mant"] = self.array(f"lava.{name}.bias_mant", mant)
                args["bias_exp"] = self.array(f"lava.{name}.bias_exp", exp) if exp.ndim else int(exp)
            else:
                stream = self.unbiased(stream, node, 0)
        self.add_process(ProcessSpec(name, "LIFReset", args, "neuron", self.index[id(node)], node.module, 0,
                                     {"a_in": shape}, {"s_out": shape}))
        self.connect(_Stream(stream.terms, shape), name, "a_in", shape)
        sink = f"sink_{name}"
        self.probes.append(Probe(name, self.index[id(node)], node.module, sink, "spikes", self.plan.depth_of(node),
                                 shape, "int8"))
        return _Stream((_Term(name, "s_out"),), shape)

    def bias_fits_lif(self, node: Node, stream: _Stream) -> bool:
        """Whether the neurons' ``bias_mant << 6`` gives intsim's result: no current memory (``du = 4095``), an
        int16 mantissa, and an input without the bias that Lava's ``u = a << 6`` keeps unwrapped."""
        bias = stream.bias
        if node.attrs["du"] != 4095 or bias.min() < -(1 << 15) or bias.max() >= 1 << 15:
            return False
        interval = self.ranges.intervals.get(id(node.inputs[0]))
        if interval is None:
            return False
        lo, hi = interval.lo - int(bias.max()), interval.hi - int(bias.min())
        return -_U_EXACT < lo and hi <= _U_EXACT

    def synapse_rule(self, node: Node, delay: int) -> _Stream:
        a = node.attrs
        out_shape = node.output.type.sample_shape
        in_shape = node.inputs[0].type.sample_shape
        handle = self.handles[(id(node), "weight")]
        if node.op == "qconv2d":
            kind, syn_delay = "Conv", 0
        else:
            self.check_dense_weights(node)
            kind, syn_delay = ("Dense" if len(in_shape) == 1 else "Sparse"), min(delay, MAX_SYNAPSE_DELAY)
        stream = self.unbiased(self.input_stream(node, 0, delay - syn_delay), node, delay)
        name = self.tag(node, delay, "conv" if kind == "Conv" else "dense")
        graded = not _binary(node.inputs[0])
        if kind == "Conv":
            args, ports, out_view = self.conv_args(node, handle, graded)
            in_port, out_port = ports
            self.connect(stream.view("transpose", (2, 1, 0), in_port), name, "s_in", in_port)
        else:
            args, in_port, out_port, out_view = self.dense_args(node, handle, kind, syn_delay)
            self.connect(stream, name, "s_in", in_port)
            if syn_delay:
                kind = "Delay" + kind
        self.add_process(ProcessSpec(name, kind, args, "synapse", self.index[id(node)], node.module, delay,
                                     {"s_in": in_port}, {"a_out": out_port}))
        bias = None
        if a["bias"] is not None:
            axis = 0 if node.op == "qconv2d" else a["axis"] - 2
            shape = [1] * len(out_shape)
            shape[axis] = out_shape[axis]
            bias = np.broadcast_to(a["bias"].astype(np.int64).reshape(shape), out_shape).copy()
        return _Stream((_Term(name, "a_out", out_view),), out_shape, bias)

    def check_dense_weights(self, node: Node) -> None:
        w = node.attrs["weight"]
        if not np.array_equal(prepare_dense_weights(w, 8, SignMode.MIXED), w):
            self.fail(node, "weights are not 8-bit even mantissas in [-256, 254] "
                            "(Lava's MIXED Dense would change them)")

    def conv_args(self, node: Node, handle: str, graded: bool):
        a = node.attrs
        c, h, w = node.inputs[0].type.sample_shape
        cout, ho, wo = node.output.type.sample_shape
        args = {"weight": {"$": "conv_weight", "key": handle}, "input_shape": [w, h, c],
                "padding": [a["padding"][1], a["padding"][0]], "stride": [a["stride"][1], a["stride"][0]],
                "dilation": [a["dilation"][1], a["dilation"][0]], "groups": a["groups"],
                "num_message_bits": 24 if graded else 0}
        return args, ((w, h, c), (wo, ho, cout)), (("transpose", (2, 1, 0)),)

    def dense_args(self, node: Node, handle: str, kind: str, syn_delay: int):
        a = node.attrs
        in_shape, out_shape = node.inputs[0].type.sample_shape, node.output.type.sample_shape
        n_in, n_out = math.prod(in_shape), math.prod(out_shape)
        if kind == "Dense":
            weights = {"$": "weight", "key": handle}
        else:
            k = a["axis"] - 2
            weights = {"$": "token_dense", "key": handle, "pre": math.prod(in_shape[:k]),
                       "post": math.prod(in_shape[k + 1:])}
        args = {"weights": weights, "weight_exp": a["weight_exp"], "num_message_bits": 24 if a["graded"] else 0,
                "sign_mode": {"$": "sign_mode", "name": "MIXED"}}
        if syn_delay:
            args["delays"] = syn_delay
        view = () if len(out_shape) == 1 else (("reshape", tuple(out_shape)),)
        return args, (n_in,), (n_out,), view

    def op_rule(self, node: Node, delay: int) -> _Stream:
        """A stateless op with no built-in process: a spikec process (a ProdNeuron for an equal-shape mul)."""
        if delay and _binary(node.output):
            return self.relay(node.output, delay)
        shape = node.output.type.sample_shape
        streams = [self.input_stream(node, i, delay) for i in range(len(node.inputs))]
        name = self.tag(node, delay)
        index = self.index[id(node)]
        if node.op == "mul" and all(s.shape == shape for s in streams):
            streams = [self.unbiased(s, node, delay, f"bias{i}_") for i, s in enumerate(streams)]
            self.add_process(ProcessSpec(name, "ProdNeuron", {"shape": list(shape), "vth": 0, "exp": 0}, "op",
                                         index, node.module, delay, {"a_in1": shape, "a_in2": shape},
                                         {"s_out": shape}))
            self.connect(streams[0], name, "a_in1", shape)
            self.connect(streams[1], name, "a_in2", shape)
            return _Stream((_Term(name, "s_out"),), shape)
        kind, params = _OP_PROCESSES[node.op](node)
        if len(streams) == 1:
            args = {"in_shape": list(streams[0].shape), "shape": list(shape), **params}
            if streams[0].bias is not None and streams[0].bias.any():
                args["in_bias"] = self.array(f"lava.{name}.in_bias", streams[0].bias)
            ports = {"a_in": streams[0].shape}
        else:
            args = {"a_shape": list(streams[0].shape), "b_shape": list(streams[1].shape), "shape": list(shape),
                    **params}
            for port, stream in zip("ab", streams):
                if stream.bias is not None and stream.bias.any():
                    args[f"{port}_bias"] = self.array(f"lava.{name}.{port}_bias", stream.bias)
            ports = {"a_in": streams[0].shape, "b_in": streams[1].shape}
        self.add_process(ProcessSpec(name, kind, args, "op", index, node.module, delay, ports, {"s_out": shape}))
        for (port, port_shape), stream in zip(ports.items(), streams):
            self.connect(_Stream(stream.terms, stream.shape), name, port, port_shape)
        return _Stream((_Term(name, "s_out"),), shape)

    def integrator(self, node: Node) -> None:
        shape = node.output.type.sample_shape
        stream = self.input_stream(node, 0, 0)
        name = self.tag(node, 0, "integrator")
        args = {"in_shape": list(stream.shape), "shape": list(shape), "axes": list(node.attrs["axes"]),
                "keepdim": node.attrs["keepdim"], "T": self.plan.timesteps,
                "reset_offset": self.plan.reset_offset(node)}
        if stream.bias is not None and stream.bias.any():
            args["in_bias"] = self.array(f"lava.{name}.in_bias", stream.bias)
        self.add_process(ProcessSpec(name, "Integrator", args, "readout", self.index[id(node)], node.module, 0,
                                     {"a_in": stream.shape}, {"s_out": shape}))
        self.connect(_Stream(stream.terms, stream.shape), name, "a_in", stream.shape)
        self.probes.append(Probe(name, self.index[id(node)], node.module, f"sink_{name}", "integral",
                                 self.plan.depth_of(node), shape, "int32"))

    def boundary(self, value: Value) -> None:
        """An on-chip value the host readout reads: record its stream; the host adds the bias."""
        node = value.producer
        if node.op == "qlif" or any(p.node == self.index[id(node)] for p in self.probes):
            return
        stream = self.realize(value, 0)
        name = f"value{self.index[id(node)]}"
        bias_key = None
        if stream.bias is not None and stream.bias.any():
            bias_key = f"lava.{name}.bias"
            self.arrays[bias_key] = np.ascontiguousarray(stream.bias)
        dtype = "int8" if _binary(value) else "int32"
        self.probes.append(Probe(name, self.index[id(node)], node.module, f"sink_{name}", "value",
                                 self.plan.depth_of(node), stream.shape, dtype, bias_key))
        self.pending_sinks.append((f"sink_{name}", stream))

    # ------------------------------------------------------------------ driver

    def run(self) -> ProcessGraph:
        self.pending_sinks: list[tuple[str, _Stream]] = []
        for node in self.graph.nodes:
            nid = id(node)
            if nid in self.encoding:
                continue
            if nid in self.integrators:
                self.integrator(node)
            elif nid in self.readout:
                for value in node.inputs:
                    producer = id(value.producer)
                    if producer not in self.readout and producer not in self.encoding:
                        self.boundary(value)
            else:
                self.realize(node.output, 0)
        for probe in self.probes:
            if probe.kind != "value":
                self.add_sink(probe, _Stream(((_Term(probe.name, "s_out")),), probe.shape))
        for sink, stream in self.pending_sinks:
            probe = next(p for p in self.probes if p.sink == sink)
            self.add_sink(probe, _Stream(stream.terms, stream.shape))
        host = [self.index[id(n)] for n in self.graph.nodes if id(n) in self.readout and id(n) not in self.integrators]
        depths = {self.index[id(n)]: self.plan.depth_of(n) for n in self.graph.nodes if n.op != "output"}
        recorded = max((p.depth for p in self.probes), default=0)
        return ProcessGraph(self.name, self.plan.timesteps, recorded, self.processes, self.connections, self.sources,
                            self.probes, host, self.arrays, depths)

    def add_sink(self, probe: Probe, stream: _Stream) -> None:
        self.add_process(ProcessSpec(probe.sink, "MemSink",
                                     {"shape": list(probe.shape), "path": {"$": "sink_path", "name": probe.sink},
                                      "steps": {"$": "steps"}, "dtype": probe.dtype},
                                     "sink", probe.node, probe.module, 0, {"a_in": probe.shape}, {}))
        self.connect(stream, probe.sink, "a_in", probe.shape)


def _pool_params(node: Node):
    a = node.attrs
    return "MaxPool", {k: (list(a[k]) if isinstance(a[k], tuple) else a[k])
                       for k in ("kernel", "stride", "padding", "dilation", "ceil_mode")}


def _sum_params(node: Node):
    if 0 in node.attrs["axes"]:
        raise LoweringError(f"lava: {node.describe()}: a time sum inside the network has no Lava mapping")
    return "ReduceSum", {"axes": list(node.attrs["axes"]), "keepdim": node.attrs["keepdim"]}


_OP_PROCESSES = {
    "maxpool": _pool_params,
    "matmul": lambda node: ("MatMul", {}),
    "mul": lambda node: ("Mul", {}),
    "and_not": lambda node: ("AndNot", {}),
    "sum": _sum_params,
    "qgain": lambda node: ("Gain", {"factor": node.attrs["factor"]}),
}

_RULES = {
    "reshape": _Lowerer.view_rule,
    "transpose": _Lowerer.view_rule,
    "add": _Lowerer.add_rule,
    "qlif": _Lowerer.lif_rule,
    "qdense": _Lowerer.synapse_rule,
    "qconv2d": _Lowerer.synapse_rule,
    **{op: _Lowerer.op_rule for op in _OP_PROCESSES},
}


def lower(graph: Graph, name: str | None = None, plan: DelayPlan | None = None) -> ProcessGraph:
    """Lower a quantized graph to Lava processes (see the module docstring). Deterministic: the same graph
    always gives the same process graph."""
    plan = plan or BalanceDelays()(graph)
    return _Lowerer(graph, plan, name or graph.name).run()
