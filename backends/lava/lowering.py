"""Lowering: a quantized IR graph and its delay plan to a :class:`~.netlist.ProcessGraph` of Lava processes.

The parts, each in its own module:

- :mod:`.regions`: which nodes are the host's input encoding, on chip, or the host's readout; computed once
  and shared with the runtime, which encodes on the host what lowering made sources of;
- :mod:`.lowering_streams`: streams (the OutPorts and bias that make a value), the netlist being built, and a
  value realised at a delay: sources, relays, ``Bias`` processes, probes;
- :mod:`.lowering_rules`: the rule of each on-chip op (``RULES``, the mapping per op);
- this module: the walk over the graph in order, the readout's integrators and boundary probes, the sinks.

**The readout's edge.** A time sum of an on-chip value is a readout ``Integrator`` (the host reads its running
sum at each sample's last step). Every other on-chip value the host readout reads is probed as it is, its
stream's bias recorded for the host to add; a neuron group's spikes and an integrator are probed already.
Sinks are added last (spike and integral probes, then value probes), so process names and order, and hence
the manifest and ``lava_net.py``, depend only on the graph.
"""

from __future__ import annotations

from spikec.backends.lava.lowering_rules import RULES
from spikec.backends.lava.lowering_streams import Lowering, Stream
from spikec.backends.lava.mapping import MappingOptions, plan_mapping
from spikec.backends.lava.netlist import Probe, ProcessGraph
from spikec.backends.lava.regions import host_regions
from spikec.ir import Graph, Node, Value
from spikec.ir.ops import spike_valued
from spikec.passes.balance_delays import BalanceDelays
from spikec.passes.range_analysis import RangeReport, analyze_ranges

__all__ = ["lower"]


def lower(graph: Graph, name: str | None = None, ranges: RangeReport | None = None,
          options: MappingOptions = MappingOptions()) -> ProcessGraph:
    """Lower a quantized graph to Lava processes (see the module docstring). Deterministic: the same graph
    always gives the same process graph.

    ``ranges`` is the graph's range analysis, which decides where a neuron group's bias may go and which values
    fit a graded spike; the compile passes the one it proved the graph with, and it is computed here only when
    not given (a graph read back from an artifact). The mapping decisions (:mod:`.mapping`) come first: the
    delay plan depends on them."""
    if ranges is None:
        ranges = analyze_ranges(graph)
    else:
        _check_ranges(graph, ranges)
    regions = host_regions(graph)
    mapping = plan_mapping(graph, regions, ranges, options)
    plan = BalanceDelays(latency=mapping.latency)(graph)
    low = Lowering(graph, plan, ranges, regions, RULES, mapping)
    value_sinks: list[tuple[Probe, Stream]] = []
    for node in graph.nodes:
        region = regions.region(node)
        if region == "integrator":
            _integrator(low, node)
        elif region == "readout":
            for value in node.inputs:
                if regions.region(value.producer) == "chip":
                    _boundary(low, value, value_sinks)
        elif region == "chip":
            low.realize(node.output, 0)
    for probe in low.net.probes:
        if probe.kind != "value":
            low.net.add_sink(probe, Stream.port(probe.name, "s_out", probe.shape))
    for probe, stream in value_sinks:
        low.net.add_sink(probe, stream.bare())
    net = low.net
    depths = {i: plan.depth_of(n) for i, n in enumerate(graph.nodes) if n.outputs}
    recorded = max((p.depth for p in net.probes), default=0)
    chip = [i for i, n in enumerate(graph.nodes) if regions.region(n) == "chip"]
    return ProcessGraph(name or graph.name, plan.timesteps, recorded, net.processes, net.connections, net.sources,
                        net.probes, regions.host_nodes(graph), net.arrays, depths, chip,
                        mapping.decisions(low.index))


def _check_ranges(graph: Graph, ranges: RangeReport) -> None:
    """Another graph's analysis would miss every value: it is refused rather than read as "nothing is known".
    (The analysis gives every value an op computes one; the graph's inputs are not computed, and the output
    node makes no value.)"""
    if any(ranges.get(n.output) is None for n in graph.nodes if n.inputs and n.outputs):
        raise ValueError(f"lower: ranges is not the range analysis of graph {graph.name!r}")


def _integrator(low: Lowering, node: Node) -> None:
    shape = node.output.type.sample_shape
    stream = low.input_stream(node, 0, 0)
    name = low.tag(node, 0, "integrator")
    args = {"in_shape": list(stream.shape), "shape": list(shape), "axes": list(node.attrs["axes"]),
            "keepdim": node.attrs["keepdim"], "T": low.plan.timesteps, "reset_offset": low.plan.reset_offset(node)}
    if stream.biased:
        args["in_bias"] = low.net.array(f"lava.{name}.in_bias", stream.bias)
    low.process(node, name, "Integrator", args, "readout", 0, {"a_in": stream.shape}, {"s_out": shape})
    low.net.connect(stream.bare(), name, "a_in", stream.shape)
    low.probe(node, name, "integral", shape, "int32")


def _boundary(low: Lowering, value: Value, value_sinks: list[tuple[Probe, Stream]]) -> None:
    """An on-chip value the host readout reads: probe its stream (its sink is added last); the host adds the
    bias."""
    node = value.producer
    if any(p.node == low.index[id(node)] for p in low.net.probes):
        return                           # a neuron group's spikes, or a value another readout node reads
    stream = low.realize(value, 0)
    name = f"value{low.index[id(node)]}"
    bias_key = None
    if stream.biased:
        bias_key = f"lava.{name}.bias"
        low.net.array(bias_key, stream.bias)
    dtype = "int8" if spike_valued(value) else "int32"
    value_sinks.append((low.probe(node, name, "value", stream.shape, dtype, bias_key), stream))
