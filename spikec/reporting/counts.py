"""What a run of the data does, per op: the counts ``spikec report`` charges energy for (docs/report.md).

Counted ops (every op of these kinds in the graph, float or integer phase):

* **weight ops** (conv2d, conv1d, linear, qconv2d, qdense): ``flops`` = the dense multiply-accumulates of one
  time step of one sample (output elements x fan-in); ``sops`` = ``input_rate x T x flops``, the
  syops-counter rule, with ``input_rate`` the fraction of nonzero input elements over all steps and samples.
* **products**: ``matmul`` (attention's q@k^T and @v): ``flops`` = output elements x inner size; ``sops`` =
  the exact number of nonzero operand pairs, ``sum_k nnz(A[:, k]) * nnz(B[k, :])`` per step and batch of
  leading axes. ``mul`` and ``and_not`` (SDT's Hadamard product, SEW-IAND): ``flops`` = output elements,
  ``sops`` = nonzero outputs (a nonzero product needs both operands nonzero).
* **sums** (SDT's column sum, the readout's sums): ``flops`` = input elements (one add each), ``sops`` =
  nonzero input elements.
* **neurons** (lif, if, qlif): spikes per step; every neuron is updated at every step.

For a product or sum ``input_rate`` is ``sops / (T x flops)``. Everything is summed over the samples and
divided by their number when the report is made, so counts are per sample, averaged over the data.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from spikec.ir import Graph, Node
from spikec.ir.ops import OpCategory, op_traits, spike_valued

__all__ = ["Activity", "Site", "input_domain", "counted_sites"]

_PRODUCT_KINDS = {"matmul": "product", "mul": "product", "and_not": "product", "sum": "reduction"}


@dataclasses.dataclass
class Site:
    """One counted op: ``counts[t]`` are the nonzero inputs (weight ops), operand pairs (matmul) or outputs of
    step ``t`` summed over samples, integers, so that runs over parts of the data add up exactly; ``events``
    are the synaptic events (sops), ``counts x scale``."""

    node: Node
    kind: str               # weight, product, reduction
    domain: str             # spike, analog (the encoding layer), graded (SEW sums, counts, means)
    flops: int              # dense operations of one step of one sample
    counts: np.ndarray      # int64[T]
    scale: float = 1.0      # events per count: a weight op's fan-out, flops / input elements of one sample

    @property
    def events(self) -> np.ndarray:
        return self.counts * self.scale


@dataclasses.dataclass
class NeuronSite:
    node: Node
    neurons: int
    spikes: np.ndarray      # int64[T], summed over samples
    feeding: tuple[Node, ...]   # the weight ops whose messages this neuron group integrates


def _reaches_input(value, memo: dict) -> bool:
    """Whether ``value`` is computed from the model input with no weight op or neuron in between."""
    node = value.producer
    if node in memo:
        return memo[node]
    category = op_traits(node.op).category
    if node.op == "input":
        result = True
    elif category in (OpCategory.WEIGHT, OpCategory.NEURON):
        result = False
    else:
        result = any(_reaches_input(v, memo) for v in node.inputs)
    memo[node] = result
    return result


def input_domain(value, memo: dict | None = None) -> str:
    """``spike`` (0/1 by construction), ``analog`` (the model input, encoded) or ``graded`` (any other
    non-binary activation: SEW residual sums, spike counts, means)."""
    if spike_valued(value):
        return "spike"
    return "analog" if _reaches_input(value, {} if memo is None else memo) else "graded"


def _weight_flops(node: Node) -> int:
    w = node.attrs["weight"]
    out = node.output.type.shape
    fan_in = int(np.prod(w.shape[1:]))
    return math.prod(out[2:]) * fan_in


def _flops(node: Node) -> int:
    if node.op == "matmul":
        return math.prod(node.output.type.shape[2:]) * node.inputs[0].type.shape[-1]
    if node.op == "sum":
        return math.prod(node.inputs[0].type.shape[2:])
    return math.prod(node.output.type.shape[2:])


def _feeding(value, seen: set) -> list[Node]:
    """The weight ops whose outputs reach ``value`` through ops that are neither weights nor neurons."""
    node = value.producer
    if node in seen:
        return []
    seen.add(node)
    category = op_traits(node.op).category
    if category is OpCategory.WEIGHT:
        return [node]
    if category is OpCategory.NEURON or node.op == "input":
        return []
    return [w for v in node.inputs for w in _feeding(v, seen)]


def counted_sites(graph: Graph) -> tuple[list[Site], list[NeuronSite]]:
    """Every weight op, product and sum, and every neuron group of ``graph``, with zero counts."""
    sites, neurons, memo = [], [], {}
    for node in graph.nodes:
        category = op_traits(node.op).category
        T = node.inputs[0].type.time if node.inputs else 0
        if category is OpCategory.WEIGHT:
            flops = _weight_flops(node)
            sites.append(Site(node, "weight", input_domain(node.inputs[0], memo), flops, _zeros(T),
                              flops / math.prod(node.inputs[0].type.shape[2:])))
        elif node.op in _PRODUCT_KINDS:
            domain = "spike" if all(spike_valued(v) for v in node.inputs) else "graded"
            sites.append(Site(node, _PRODUCT_KINDS[node.op], domain, _flops(node), _zeros(T)))
        elif category is OpCategory.NEURON:
            neurons.append(NeuronSite(node, math.prod(node.output.type.shape[2:]), _zeros(T),
                                      tuple(_feeding(node.inputs[0], set()))))
    return sites, neurons


def _zeros(steps: int) -> np.ndarray:
    return np.zeros(steps, dtype=np.int64)


def _per_step(mask: np.ndarray) -> np.ndarray:
    return np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1).astype(np.int64)


def _counts(site: Site, args: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """What one batch adds to ``site.counts``, per step, summed over its samples."""
    op = site.node.op
    if site.kind == "weight":
        return _per_step(args[0] != 0)
    if op == "matmul":
        a, b = args
        pairs = (a != 0).sum(axis=-2, dtype=np.int64) * (b != 0).sum(axis=-1, dtype=np.int64)  # leading axes broadcast
        return pairs.reshape(pairs.shape[0], -1).sum(axis=1)
    if op == "sum":
        return _per_step(args[0] != 0)
    return _per_step(out != 0)


class Activity:
    """Counts of a graph's runs, accumulated batch by batch (:meth:`add`) and over runs on parts of the data
    (:meth:`absorb` of another's :meth:`tally`); optionally the spikes of one neuron group for one sample
    (``raster``: its module path and the sample's index in the data; ``first`` the index of the first sample
    this one counts)."""

    def __init__(self, graph: Graph, raster: tuple[str, int] | None = None, first: int = 0):
        self.graph = graph
        self.sites, self.neuron_sites = counted_sites(graph)
        self.samples = 0
        self.raster_module, self.raster_sample = raster if raster else (None, None)
        self.raster: np.ndarray | None = None
        self.first = first

    def add(self, values: dict, bound_inputs: dict, batch: int) -> None:
        """One run: ``values`` maps every non-input node to its output (numpy arrays), ``bound_inputs``
        every input node to the value it produced."""
        def value_of(v) -> np.ndarray:
            return bound_inputs[v.producer] if v.producer.op == "input" else values[v.producer]

        for site in self.sites:
            site.counts += _counts(site, [value_of(v) for v in site.node.inputs], values[site.node])
        for group in self.neuron_sites:
            spikes = values[group.node]
            group.spikes += np.count_nonzero(spikes.reshape(spikes.shape[0], -1), axis=1)
            local = None if self.raster_sample is None else self.raster_sample - self.first - self.samples
            if group.node.module == self.raster_module and self.raster is None and 0 <= local < batch:
                self.raster = spikes[:, local].reshape(spikes.shape[0], -1).astype(np.int8)
        self.samples += batch

    def tally(self) -> tuple:
        """The counts alone (no graph): what a worker sends back for :meth:`absorb`."""
        return ([site.counts for site in self.sites], [group.spikes for group in self.neuron_sites], self.samples,
                self.raster)

    def absorb(self, tally: tuple) -> None:
        """Add the counts of another run of the same graph (:meth:`tally`)."""
        counts, spikes, samples, raster = tally
        for site, more in zip(self.sites, counts, strict=True):
            site.counts += more
        for group, more in zip(self.neuron_sites, spikes, strict=True):
            group.spikes += more
        self.samples += samples
        self.raster = self.raster if self.raster is not None else raster
