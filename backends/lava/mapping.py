"""The mapping decisions lowering makes before it builds anything, because the delay plan depends on them: which
integer gains fold into the synapse group that feeds them, where each spike matmul runs (``--attention``), and
so each node's latency in steps (docs/lava.md, "Mapping per op").

**Gains.** ``qgain 2**k`` after a synapse group (a conv, a linear, an on-chip sum or matmul), reached through
views that nothing else reads, is folded into that group: ``2**k`` joins its weight exponent (Dense, Sparse) or
its integer weights (Lava's Conv, which has no exponent: ``W << k`` is the 8-bit mantissa ``W`` with exponent
``k`` on the chip). Any other gain is an identity synapse group of weight ``factor``, one step.

**Attention.** A spike matmul ``C = A @ B`` (``A [.., n, k]``, ``B [.., k, m]``) on chip is a ``ProdNeuron`` per
term ``A[.., i, j] * B[.., j, l]``, fed by two fan-out synapse groups, and a synapse group summing the terms
over ``j``: two steps, ``batch * n * k * m`` neurons. ``--attention embedded`` runs it as spikec's ``MatMul`` on
the embedded cores instead; ``auto`` (the default) puts it on chip when its product neurons fit in
:data:`ATTENTION_SHARE` neurons (16 neuro cores, one eighth of a chip), else on the embedded cores.

**Max-pool of graded values** (SDT's stem pools a conv's output) is a tree of ``max(a, b) = a + relu(b - a)``
over the window's ``n`` inputs: ``L = ceil(log2 n)`` levels of ReLU neurons (``GradedReluVec``, exact on
integers), each fed by synapse groups from the input and the earlier levels, and the output a sum of synapse
groups from all of them: ``L + 1`` steps. It needs the differences of two inputs to fit a graded spike (the
range analysis says); otherwise spikec's ``MaxPool`` runs it on the embedded cores.

**Token-wise linears** are 1x1 Convs, whose weights every token shares, when their sums fit Lava's Conv (24 bits,
the range analysis says) and the shared weights store no more than a Sparse of the nonzeros per token (a group of
outlier weights is sparse); a negative weight exponent ``e`` becomes a ``GradedVec`` and an identity synapse group
of exponent ``e`` after the Conv, the floor shift Lava's Dense would apply to the same sum: two steps.

**Latency** (steps a node adds to the pipeline; :mod:`spikec.passes.balance_delays` balances them): 1 for a
synapse group (conv, linear, sum, spike max-pool's window, IAND's pair, a broadcast product's fan-out, an
unfolded gain, a shift, a slice), 2 for an on-chip matmul and a token-wise linear with a negative exponent,
``L + 1`` for a graded max tree, 0 for neurons, views, adds, folded gains, products of equal shapes and the
embedded cores' processes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from spikec.backends.intsim.fixed_point import MESSAGE_BITS, SIGN_MODE_RANGES, SignMode
from spikec.backends.lava.helpers import max_tree_levels
from spikec.backends.lava.regions import Regions
from spikec.errors import InputError
from spikec.ir import Graph, Node
from spikec.ir.ops import spike_valued
from spikec.passes.range_analysis import RangeReport

__all__ = ["ATTENTION_MODES", "ATTENTION_SHARE", "MappingOptions", "Mapping", "plan_mapping", "matmul_neurons",
           "and_not_on_neurons", "gain_mantissa", "gain_on_synapses"]

ATTENTION_MODES = ("auto", "on-chip", "embedded")
ATTENTION_SHARE = 16 * 8192
"""Product neurons a spike matmul may take on chip under ``--attention auto``: 16 neuro cores of 8,192 neurons
(docs/lava.md, "Resource report and Loihi 2 limits"), an eighth of a chip's 128 cores."""

MESSAGE_MAX = (1 << (MESSAGE_BITS - 1)) - 1
"""The largest magnitude a graded spike carries exactly (24-bit messages, as Lava's ports type them)."""
_EXCITATORY_WEIGHT_MAX = SIGN_MODE_RANGES[SignMode.EXCITATORY][1]
_FOLDING_PRODUCERS = ("qconv2d", "qdense", "sum", "matmul")
_VIEWS = ("reshape", "transpose")


@dataclasses.dataclass(frozen=True)
class MappingOptions:
    attention: str = "auto"

    def __post_init__(self):
        if self.attention not in ATTENTION_MODES:
            raise InputError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {self.attention!r}")


@dataclasses.dataclass
class Mapping:
    """The decisions for one graph (nodes compare by identity)."""

    gains: dict[Node, int]           # synapse-forming node -> the power-of-two gain folded into its weights
    folded: frozenset[Node]          # the qgain nodes so folded (no process of their own)
    matmuls: dict[Node, tuple[str, str]]  # matmul -> ("on-chip" | "embedded", why)
    max_trees: dict[Node, int]       # max-pool of graded values on neuro cores -> its ReLU levels
    token_convs: dict[Node, int]     # token-wise linear as a shared-weight 1x1 Conv -> its weight exponent

    def gain_exp(self, node: Node) -> int:
        """``k`` of the gain ``2**k`` folded into ``node``'s synapses (0 when none)."""
        return gain_mantissa(self.gains.get(node, 1))[1]

    def on_chip_matmul(self, node: Node) -> bool:
        return self.matmuls[node][0] == "on-chip"

    def latency(self, node: Node) -> int:
        op = node.op
        if op in ("qconv2d", "qdense"):
            if node.attrs.get("host", False):
                return 0
            return 2 if self.token_convs.get(node, 0) < 0 else 1
        if op == "matmul":
            return 2 if self.on_chip_matmul(node) else 0
        if op == "qgain":
            return 0 if node in self.folded or not gain_on_synapses(node) else 1
        if op == "mul":
            return int(any(v.type.sample_shape != node.output.type.sample_shape for v in node.inputs))
        if op == "maxpool":
            return 1 if spike_valued(node.inputs[0]) else self.max_trees.get(node, -1) + 1
        if op == "and_not":
            return 1 if and_not_on_neurons(node) else 0
        if op == "sum":
            return 0 if 0 in node.attrs["axes"] else 1
        if op in ("qshift", "slice"):
            return 1
        return 0

    def decisions(self, index: dict[int, int]) -> list[dict]:
        """The attention decisions for the manifest: node index, where, why."""
        return [{"node": index[id(n)], "module": n.module, "attention": where, "why": why}
                for n, (where, why) in self.matmuls.items()]


def and_not_on_neurons(node: Node) -> bool:
    """Whether an IAND runs on neuro cores (+1/-1 synapses into OR neurons, one step): both operands spikes of
    the output's shape. A broadcast one runs as spikec's ``AndNot``, which sends within the step."""
    shape = node.output.type.sample_shape
    return all(v.type.sample_shape == shape and spike_valued(v) for v in node.inputs)


def gain_mantissa(factor: int) -> tuple[int, int]:
    """``factor = m * 2**e`` with ``m`` odd."""
    exp = (factor & -factor).bit_length() - 1
    return factor >> exp, exp


def gain_on_synapses(node: Node) -> bool:
    """Whether an unfolded gain is an identity synapse group (one step): its odd mantissa fits an EXCITATORY
    weight (at most 255); otherwise spikec's ``Gain`` runs it within the step."""
    return gain_mantissa(node.attrs["factor"])[0] <= _EXCITATORY_WEIGHT_MAX


def matmul_neurons(node: Node) -> int:
    """Product neurons of an on-chip ``A @ B``: one per term, ``batch * n * k * m``."""
    a, b = (v.type.sample_shape for v in node.inputs)
    return math.prod(node.output.type.sample_shape[:-2]) * a[-2] * a[-1] * b[-1]


def plan_mapping(graph: Graph, regions: Regions, ranges: RangeReport,
                 options: MappingOptions = MappingOptions()) -> Mapping:
    on_chip = [n for n in graph.nodes if regions.region(n) == "chip"]
    matmuls = {n: _place_matmul(n, options.attention) for n in on_chip if n.op == "matmul"}
    max_trees = {n: max_tree_levels(n.attrs["kernel"]) for n in on_chip
                 if n.op == "maxpool" and not spike_valued(n.inputs[0]) and _differences_fit(n, ranges)}
    gains: dict[Node, int] = {}
    folded = set()
    for node in graph.nodes:
        if node.op != "qgain" or regions.region(node) != "chip":
            continue
        producer = _folding_producer(node, regions)
        if producer is None or (producer.op == "matmul" and matmuls[producer][0] != "on-chip"):
            continue
        gains[producer] = node.attrs["factor"]
        folded.add(node)
    token_convs = {n: n.attrs["weight_exp"] + gain_mantissa(gains.get(n, 1))[1] for n in on_chip
                   if n.op == "qdense" and not n.attrs["host"] and n.inputs[0].type.rank > 3}
    token_convs = {n: e for n, e in token_convs.items()
                   if _sharing_stores_less(n) and _conv_sums_fit(n, e, gains, folded, ranges)}
    return Mapping(gains, frozenset(folded), matmuls, max_trees, token_convs)


def _sharing_stores_less(node: Node) -> bool:
    """Whether a token-wise linear's ``(out, in)`` weights, stored once as a Conv's, take no more than a Sparse
    ``kron(I, W)`` holding its nonzeros once per token: not so for a group of a few outlier weights
    (quantize's outlier split)."""
    weight = node.attrs["weight"]
    tokens = math.prod(node.inputs[0].type.sample_shape) // weight.shape[1]
    return weight.size <= tokens * np.count_nonzero(weight)


def _conv_sums_fit(node: Node, exp: int, gains: dict[Node, int], folded: set[Node], ranges: RangeReport) -> bool:
    """Whether a token-wise linear's sums fit Lava's Conv, which wraps them to 24 bits where a Dense does not:
    its output (the folded gain included, the bias excluded) scaled up by the ``2**-exp`` that a negative
    exponent's shift takes off after the Conv."""
    value = node.output
    while value.users() and value.users()[0] in folded:
        value = value.users()[0].output
    interval = ranges.get(value)
    if interval is None:
        return False
    bias = node.attrs["bias"]
    widest = max(abs(interval.lo), abs(interval.hi))
    widest += 0 if bias is None else int(abs(bias.astype(np.int64)).max(initial=0)) * gains.get(node, 1)
    scale = 1 << max(0, -exp)
    return (widest + 1) * scale <= MESSAGE_MAX

def _differences_fit(pool: Node, ranges: RangeReport) -> bool:
    """Whether the max tree's ReLU inputs, differences of two inputs of a window, fit a graded spike."""
    interval = ranges.get(pool.inputs[0])
    return interval is not None and 2 * max(abs(interval.lo), abs(interval.hi)) <= MESSAGE_MAX


def _place_matmul(node: Node, attention: str) -> tuple[str, str]:
    neurons = matmul_neurons(node)
    if attention != "auto":
        return attention, f"--attention {attention}"
    if neurons <= ATTENTION_SHARE:
        return "on-chip", f"{neurons} product neurons fit the share of {ATTENTION_SHARE} (16 neuro cores)"
    return "embedded", f"{neurons} product neurons exceed the share of {ATTENTION_SHARE} (16 neuro cores)"


def _folding_producer(gain: Node, regions: Regions) -> Node | None:
    """The synapse-forming node whose weights can absorb ``gain``: reached through views, each value on the way
    read by nothing else; the factor a power of two."""
    factor = gain.attrs["factor"]
    if factor & (factor - 1):
        return None
    value = gain.inputs[0]
    while len(value.uses) == 1 and regions.region(value.producer) == "chip":
        producer = value.producer
        if producer.op in _VIEWS:
            value = producer.inputs[0]
            continue
        if producer.op in _FOLDING_PRODUCERS and not producer.attrs.get("host", False) and \
                not (producer.op == "sum" and 0 in producer.attrs["axes"]):
            return producer
        return None
    return None
