"""Lowering's bookkeeping: streams, the process graph being built, and a value realised at a delay.

**Streams.** A value is realised as a *stream*: the OutPorts (each with its views) whose messages, summed at
an InPort, give the value, and a constant ``bias`` (the biases of the synapse groups in it, in message
units). A neuron group takes the bias as its ``bias_mant`` (:mod:`.lowering_rules`), spikec's processes as
``in_bias``; anything else gets it through a ``Bias`` process (:meth:`Lowering.unbiased`).

**Delays** (:mod:`spikec.passes.balance_delays`). :meth:`Lowering.realize` gives a value's stream ``δ`` steps
late, once per ``(value, δ)``, shared by every reader, so that every synapse group exists once:

- an encoded value is a second source sending later;
- a spike train goes through relay neurons (:meth:`Lowering.relay`);
- a synapse group's output that only one op reads takes the delay in its synapses (up to
  :data:`MAX_SYNAPSE_DELAY`; its rule passes the rest, or a Conv's whole delay, to its input);
- any other value (a residual stream's sum, a value read at several delays, a product neuron's output) is
  realised once, on time, and relayed as graded spikes (:meth:`Lowering.graded_relay`): the residual stream of
  ``L`` blocks costs ``L`` relays, not ``L²/2`` copies of the earlier blocks' synapses. Where the value does not
  fit a graded message, its op's rule is applied to delayed inputs instead.

**Neurons between synapses.** On the chip a synapse group reads neurons. Where a rule builds synapses that read
another synapse group's output, :meth:`Lowering.neurons` puts a ``GradedVec`` (``vth = 0``: it sends what it
receives, within the step) between them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping as TypingMapping, NoReturn

import numpy as np

from spikec.backends.intsim.fixed_point import DECAY_MAX, DU_NO_CURRENT_MEMORY, MESSAGE_BITS
from spikec.backends.lava.helpers import layout_ref
from spikec.backends.lava.mapping import MESSAGE_MAX, Mapping
from spikec.backends.lava.netlist import Connection, Probe, ProcessSpec, SourceSpec
from spikec.backends.lava.regions import Regions
from spikec.errors import LoweringError
from spikec.ir import Graph, Node, Value
from spikec.ir.ops import spike_valued
from spikec.ir.printer import weight_names
from spikec.passes.balance_delays import DelayPlan
from spikec.passes.range_analysis import RangeReport

__all__ = ["MAX_SYNAPSE_DELAY", "NEURON_KINDS", "Term", "Stream", "Netlist", "Lowering", "Rule"]

MAX_SYNAPSE_DELAY = 63
"""Loihi 2's synaptic delays are 6-bit (Lava's DelayDense/DelaySparse models refuse more)."""
NEURON_KINDS = frozenset({"LIF", "LIFReset", "GradedVec", "GradedReluVec", "ProdNeuron", "RingBuffer"})
"""Processes whose output a synapse group may read: neurons, and the sources that stand for the input's."""
_DELAY_TAKING = ("qdense", "qconv2d")


@dataclasses.dataclass(frozen=True)
class Term:
    proc: str
    port: str
    views: tuple = ()


@dataclasses.dataclass(frozen=True)
class Stream:
    terms: tuple[Term, ...]
    shape: tuple[int, ...]
    bias: np.ndarray | None = None      # int64, the value's sample shape

    @classmethod
    def port(cls, proc: str, port: str, shape: tuple[int, ...]) -> "Stream":
        """The stream of one OutPort, with no views and no bias."""
        return cls((Term(proc, port),), shape)

    @property
    def biased(self) -> bool:
        return self.bias is not None and bool(self.bias.any())

    def bare(self) -> "Stream":
        """The same OutPorts without the bias, for a consumer that took the bias some other way."""
        return Stream(self.terms, self.shape)

    def view(self, kind: str, arg: tuple, shape: tuple) -> "Stream":
        terms = tuple(Term(t.proc, t.port, t.views + ((kind, tuple(arg)),)) for t in self.terms)
        bias = None
        if self.bias is not None:
            bias = self.bias.reshape(arg) if kind == "reshape" else np.transpose(self.bias, arg)
        return Stream(terms, tuple(shape), bias)


class Netlist:
    """The process graph built so far, in the order it was built: the manifest and ``lava_net.py`` keep that
    order, so building in the same order makes the same bytes."""

    def __init__(self):
        self.processes: list[ProcessSpec] = []
        self.connections: list[Connection] = []
        self.sources: list[SourceSpec] = []
        self.probes: list[Probe] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.kinds: dict[str, str] = {}

    def add(self, spec: ProcessSpec) -> str:
        if spec.name in self.kinds:
            raise LoweringError(f"lava: process name {spec.name} used twice (a lowering bug)")
        self.kinds[spec.name] = spec.kind
        self.processes.append(spec)
        return spec.name

    def array(self, key: str, value: np.ndarray) -> dict:
        """Store a derived array (saved in ``weights.npz``) and return the argument that refers to it."""
        self.arrays[key] = np.ascontiguousarray(value)
        return {"$": "array", "key": key}

    def connect(self, stream: Stream, dst: str, dst_port: str, port_shape: tuple[int, ...]) -> None:
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

    def add_sink(self, probe: Probe, stream: Stream) -> None:
        """The ``MemSink`` recording ``probe``, fed by ``stream``."""
        self.add(ProcessSpec(probe.sink, "MemSink",
                             {"shape": list(probe.shape), "path": {"$": "sink_path", "name": probe.sink},
                              "steps": {"$": "steps"}, "dtype": probe.dtype},
                             "sink", probe.node, probe.module, 0, {"a_in": probe.shape}, {}))
        self.connect(stream, probe.sink, "a_in", probe.shape)


Rule = Callable[["Lowering", Node, int], Stream]
"""An op's lowering rule: ``rule(lowering, node, delay)`` realises ``node``'s value ``delay`` steps late."""


class Lowering:
    """One lowering of one graph: what it reads (the delay plan, the range analysis, the regions, the rule of
    each op) and what it builds (the :class:`Netlist`, and every ``(value, delay)`` realised so far)."""

    def __init__(self, graph: Graph, plan: DelayPlan, ranges: RangeReport, regions: Regions,
                 rules: TypingMapping[str, Rule], mapping: Mapping):
        self.graph, self.plan, self.ranges, self.regions, self.rules = graph, plan, ranges, regions, rules
        self.mapping = mapping
        self.index = {id(n): i for i, n in enumerate(graph.nodes)}
        self.handles = weight_names(graph)
        self.net = Netlist()
        self._memo: dict[tuple[int, int], Stream] = {}
        self._graded: dict[tuple, str] = {}      # a stream's terms and shape -> the GradedVec sending it

    def fail(self, node: Node, message: str) -> NoReturn:
        where = node.locs[0].file_line if node.locs else None
        raise LoweringError(f"lava: {node.describe()}: {message}", where)

    def tag(self, node: Node, delay: int = 0, prefix: str | None = None) -> str:
        """A process name: the prefix (the op by default), the node's index, and ``_dN`` for a copy N steps late."""
        base = f"{prefix or node.op}{self.index[id(node)]}"
        return base if not delay else f"{base}_d{delay}"

    def process(self, node: Node, name: str, kind: str, args: dict, role: str, delay: int,
                in_ports: dict, out_ports: dict) -> str:
        """Add the process ``name`` realising ``node``, ``delay`` steps late."""
        return self.net.add(ProcessSpec(name, kind, args, role, self.index[id(node)], node.module, delay,
                                        in_ports, out_ports))

    def probe(self, node: Node, name: str, kind: str, shape: tuple[int, ...], dtype: str,
              bias: str | None = None) -> Probe:
        """Record the stream ``name`` sends (its sink is ``sink_<name>``), read back at ``node``'s depth."""
        probe = Probe(name, self.index[id(node)], node.module, f"sink_{name}", kind, self.plan.depth_of(node),
                      shape, dtype, bias)
        self.net.probes.append(probe)
        return probe

    def synapse_delay(self, delay: int) -> int:
        """How much of ``delay`` a synapse group can take in its own synapses."""
        return min(delay, MAX_SYNAPSE_DELAY)

    def realize(self, value: Value, delay: int) -> Stream:
        key = (id(value), delay)
        if key not in self._memo:
            node = value.producer
            region = self.regions.region(node)
            if region == "encoding":
                self._memo[key] = self._source(node, delay)
            elif region != "chip":
                self.fail(node, "an on-chip op reads a value of the host readout")
            elif delay and spike_valued(value):
                self._memo[key] = self.relay(value, delay)
            else:
                relayed = None
                if delay and not self._takes_own_delay(value):
                    relayed = self.graded_relay(value, delay)
                self._memo[key] = relayed or self._rule(node)(self, node, delay)
        return self._memo[key]

    def _takes_own_delay(self, value: Value) -> bool:
        """Whether a late ``value`` is best made by its own synapse group, late: one reader, so no other copy."""
        return value.producer.op in _DELAY_TAKING and len(value.uses) == 1

    def fits_message(self, value: Value, stream: Stream) -> bool:
        """Whether ``stream`` of ``value`` without its bias fits a graded spike, for every input the range
        analysis admits (the bias, a constant, stays with the stream)."""
        interval = self.ranges.get(value)
        if interval is None:
            return False
        bias = int(np.abs(stream.bias).max(initial=0)) if stream.biased else 0
        return max(abs(interval.lo), abs(interval.hi)) + bias <= MESSAGE_MAX

    def _rule(self, node: Node) -> Rule:
        rule = self.rules.get(node.op)
        if rule is None:
            self.fail(node, f"{node.op} has no Lava mapping (no rule in spikec.backends.lava.lowering_rules.RULES)")
        return rule

    def input_stream(self, node: Node, position: int, delay: int) -> Stream:
        """Input ``position`` of ``node`` as ``node`` needs it ``delay`` steps late: the plan's wait added."""
        return self.realize(node.inputs[position], delay + self.plan.delay(node, position))

    def unbiased(self, stream: Stream, node: Node, delay: int, prefix: str = "bias") -> Stream:
        """``stream`` with its bias turned into messages (a ``Bias`` process) when it has one."""
        if not stream.biased:
            return stream.bare()
        name = self.tag(node, delay, prefix)
        shape = stream.shape
        self.process(node, name, "Bias", {"in_shape": list(shape), "shape": list(shape),
                                          "bias": self.net.array(f"lava.{name}.bias", stream.bias)},
                     "op", delay, {"a_in": shape}, {"s_out": shape})
        self.net.connect(stream.bare(), name, "a_in", shape)
        return Stream.port(name, "s_out", shape)

    def _source(self, node: Node, delay: int) -> Stream:
        value = node.output
        if value.type.time != self.plan.timesteps:
            self.fail(node, f"the encoded input has {value.type.time} time steps; on-chip ops need "
                            f"{self.plan.timesteps}")
        name = self.tag(node, delay, "source")
        shape = value.type.sample_shape
        self.net.sources.append(SourceSpec(name, self.index[id(node)], delay, shape))
        self.process(node, name, "RingBuffer", {"data": {"$": "source_data", "name": name}}, "source", delay,
                     {}, {"s_out": shape})
        return Stream.port(name, "s_out", shape)

    def neurons(self, stream: Stream, node: Node, delay: int, prefix: str = "graded") -> Stream:
        """``stream`` as neuron outputs a synapse group can read: as it is when every term is a neuron's (or a
        source's), else through a ``GradedVec`` with ``vth = 0``, which sends what it receives (the bias stays
        with the stream)."""
        if all(self.net.kinds[t.proc] in NEURON_KINDS for t in stream.terms):
            return stream
        key = (stream.terms, stream.shape)
        if key not in self._graded:
            name = self.tag(node, delay, prefix)
            # one op can need several (an IAND of two slices): the second and later get a suffix, in build order
            copies = 1
            while name in self.net.kinds:
                copies += 1
                name = f"{self.tag(node, delay, prefix)}_{copies}"
            shape = stream.shape
            self.process(node, name, "GradedVec", {"shape": list(shape), "vth": 0, "exp": 0}, "neuron", delay,
                         {"a_in": shape}, {"s_out": shape})
            self.net.connect(stream.bare(), name, "a_in", shape)
            self._graded[key] = name
        return Stream((Term(self._graded[key], "s_out"),), stream.shape, stream.bias)

    def synapses(self, node: Node, delay: int, stream: Stream, weights: dict, out_shape: tuple[int, ...], *,
                 weight_exp: int = 0, sign_mode: str = "EXCITATORY", prefix: str = "syn",
                 synapse_delay: int = 0, role: str = "synapse") -> Stream:
        """A ``Sparse`` (``DelaySparse`` with ``synapse_delay``) group reading ``stream`` (as neurons) with the
        weight matrix ``weights`` (a layout reference) into ``out_shape``; binary when the stream is spikes."""
        source = self.neurons(stream, node, delay)
        size_in, size_out = math.prod(source.shape), math.prod(out_shape)
        spikes = len(source.terms) == 1 and self.net.kinds[source.terms[0].proc] in ("LIF", "LIFReset")
        graded = not spikes
        args = {"weights": weights, "weight_exp": weight_exp, "num_message_bits": MESSAGE_BITS if graded else 0,
                "sign_mode": {"$": "sign_mode", "name": sign_mode}}
        kind = "Sparse"
        if synapse_delay:
            kind, args = "DelaySparse", {**args, "delays": synapse_delay}
        name = self.tag(node, delay, prefix)
        self.process(node, name, kind, args, role, delay, {"s_in": (size_in,)}, {"a_out": (size_out,)})
        self.net.connect(source.bare(), name, "s_in", (size_in,))
        view = () if tuple(out_shape) == (size_out,) else (("reshape", tuple(out_shape)),)
        return Stream((Term(name, "a_out", view),), tuple(out_shape))

    def graded_relay(self, value: Value, delay: int) -> Stream | None:
        """``value`` ``delay`` steps late as graded spikes: its stream on time (or at the last shorter delay)
        through a ``GradedVec`` and an identity synapse group taking up to 64 steps; the bias stays with the
        stream. Each ``(value, delay)`` is one relay, shared by every reader. None when the value does not fit
        a graded spike."""
        node, shape = value.producer, value.type.sample_shape
        step = min(delay, MAX_SYNAPSE_DELAY + 1)
        stream = self.realize(value, delay - step)
        if not self.fits_message(value, stream):
            return None
        size = math.prod(shape)
        relayed = self.synapses(node, delay, stream, layout_ref("identity", size), shape, prefix="relay_syn",
                                synapse_delay=step - 1, role="relay")
        return Stream(relayed.terms, shape, stream.bias)

    def relay(self, value: Value, delay: int) -> Stream:
        """A spike train ``delay`` steps late: identity synapses (delay up to 63) into LIFs with ``vth = 0``
        (``v = 64 > 0`` fires for a spike, ``v = 0`` does not; the reset keeps ``v`` at 0, and ``du = dv = 4095``
        keep nothing of a step in the next). Longer delays chain relays of at most 64 steps each, sharing the
        shorter ones."""
        node, shape = value.producer, value.type.sample_shape
        size = math.prod(shape)
        step = min(delay, MAX_SYNAPSE_DELAY + 1)
        stream = self.realize(value, delay - step)
        relayed = self.synapses(node, delay, stream, layout_ref("identity", size), shape, prefix="relay_syn",
                                synapse_delay=step - 1, role="relay")
        neuron = self.tag(node, delay, "relay")
        args = {"shape": list(shape), "du": DU_NO_CURRENT_MEMORY, "dv": DECAY_MAX, "vth": 0}
        self.process(node, neuron, "LIF", args, "relay", delay, {"a_in": shape}, {"s_out": shape})
        self.net.connect(relayed, neuron, "a_in", shape)
        return Stream.port(neuron, "s_out", shape)

