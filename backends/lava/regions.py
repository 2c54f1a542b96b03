"""Where each node of an integer graph runs under ``--target loihi2``: the host's input encoding, the on-chip
network, or the host's readout after the run (docs/lava.md, "Mapping per op").

The classification is made once, by :func:`host_regions`, and handed to everything that depends on it:
lowering makes the encoding's values sources, the readout's time sums integrators and the readout's on-chip
inputs probes, and records the rest of the readout as ``host_nodes``; the runtime evaluates the encoding on the
host before a run. One rule, so the sources lowering builds and the data the runtime feeds them cannot disagree.

**Encoding**: ``input``, ``quantize``, ``repeat_time``, ``to_time_major`` and views of them. The input is
float and its encoding a fixed function of it, so the host computes it and sources (Lava's ``RingBuffer``)
stream it in as graded messages.

**Readout**: ``output``, the host classifier (``qdense`` with ``host``: 16-bit weights and int64 sums, beyond a
synapse group), time sums, and everything after any of them; and the classifier's pooling before them: a sum
within a step (global token pooling), or a view, that only the readout reads. A time sum of an int32 on-chip
value is an *integrator*: it runs on Lava (a readout ``Integrator`` whose running sum the host reads at each
sample's last step) and counts as readout, since the host consumes it. Every other node is on chip.
"""

from __future__ import annotations

import dataclasses

from spikec.ir import Graph, Node
from spikec.ir.ops import OpCategory, op_traits, ops_with

__all__ = ["Regions", "host_regions", "TIME_VIEWS", "STEP_VIEWS", "QUANTIZE", "HOST_ONLY_OPS"]

TIME_VIEWS = ops_with(category=OpCategory.VIEW, per_step=False)
"""Views that make the time axis (``repeat_time``, ``to_time_major``): Lava streams time, so they are the host's."""
STEP_VIEWS = ops_with(category=OpCategory.VIEW, per_step=True)
"""Views within a step (``reshape``, ``transpose``): the encoding when they view it, else Lava's virtual ports."""
QUANTIZE = "quantize"
"""The input's float-to-integer encoding, named: its traits (an integer elementwise op) are ``qgain``'s, which
runs on chip."""
HOST_ONLY_OPS = ops_with(category=OpCategory.BOUNDARY) | TIME_VIEWS | {QUANTIZE}
"""Integer ops that never run on chip, whatever their attributes, so lowering has no rule for them: the graph's
boundary (``input``, ``output``) and the encoding's own ops. (The host classifier and time sums are readout by
their attributes, and have rules for their on-chip forms.)"""


@dataclasses.dataclass(frozen=True)
class Regions:
    """The regions of one graph, as sets of its nodes; ``integrators`` is a subset of ``readout``."""

    encoding: frozenset[Node]
    readout: frozenset[Node]
    integrators: frozenset[Node]

    def region(self, node: Node) -> str:
        """``"encoding"``, ``"integrator"``, ``"readout"`` (the host's, after the run) or ``"chip"``."""
        if node in self.encoding:
            return "encoding"
        if node in self.integrators:
            return "integrator"
        return "readout" if node in self.readout else "chip"

    def host_nodes(self, graph: Graph) -> list[int]:
        """Indices of the nodes the host evaluates after the run, in graph order (the integrators run on Lava)."""
        return [i for i, n in enumerate(graph.nodes) if self.region(n) == "readout"]


def host_regions(graph: Graph) -> Regions:
    """Classify every node of ``graph`` (see the module docstring); one pass, in topological order."""
    encoding: set[Node] = set()
    readout: set[Node] = set()
    integrators: set[Node] = set()
    pooling = _readout_pooling(graph)
    for node in graph.nodes:
        if _encodes(node, encoding):
            encoding.add(node)
            continue
        if node in pooling:
            readout.add(node)
            continue
        category = op_traits(node.op).category
        after_readout = any(v.producer in readout for v in node.inputs)
        on_chip_input = bool(node.inputs) and node.inputs[0].producer not in encoding and not after_readout
        time_sum = category is OpCategory.REDUCTION and 0 in node.attrs["axes"]
        host_classifier = category is OpCategory.WEIGHT and node.attrs.get("host", False)
        if category is OpCategory.BOUNDARY or after_readout or host_classifier:
            readout.add(node)
        elif time_sum and node.output.type.dtype == "i32" and on_chip_input:
            integrators.add(node)
            readout.add(node)
        elif time_sum:
            readout.add(node)
    return Regions(frozenset(encoding), frozenset(readout), frozenset(integrators))


def _readout_pooling(graph: Graph) -> set[Node]:
    """Sums within a step and views that only the readout reads (a time sum, the host classifier, or another
    such node), found backwards from the output."""
    pooling: set[Node] = set()
    for node in reversed(graph.nodes):
        pools = node.op in STEP_VIEWS or node.op == "sum" and 0 not in node.attrs["axes"]
        users = node.output.users() if node.outputs else []
        if pools and users and all(u in pooling or _reads_for_readout(u) for u in users):
            pooling.add(node)
    return pooling


def _reads_for_readout(node: Node) -> bool:
    traits = op_traits(node.op)
    time_sum = traits.category is OpCategory.REDUCTION and 0 in node.attrs["axes"]
    return time_sum or traits.category is OpCategory.WEIGHT and node.attrs.get("host", False)


def _encodes(node: Node, encoding: set[Node]) -> bool:
    """Whether ``node`` is the host's encoding: an input (the boundary op without inputs), ``quantize``, a time
    view, or a view within a step of the encoding."""
    if op_traits(node.op).category is OpCategory.BOUNDARY:
        return not node.inputs
    if node.op == QUANTIZE or node.op in TIME_VIEWS:
        return True
    return node.op in STEP_VIEWS and node.inputs[0].producer in encoding
