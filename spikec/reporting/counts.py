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
    """One counted op: ``events[t]`` are the synaptic events (sops) of step ``t`` summed over samples."""

    node: Node
    kind: str               # weight, product, reduction
    domain: str             # spike, analog (the encoding layer), graded (SEW sums, counts, means)
    flops: int              # dense operations of one step of one sample
    events: np.ndarray      # float64[T]


@dataclasses.dataclass
class NeuronSite:
    node: Node
    neurons: int
    spikes: np.ndarray      # float64[T], summed over samples
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
            sites.append(Site(node, "weight", input_domain(node.inputs[0], memo), _weight_flops(node), np.zeros(T)))
        elif node.op in _PRODUCT_KINDS:
            domain = "spike" if all(spike_valued(v) for v in node.inputs) else "graded"
            sites.append(Site(node, _PRODUCT_KINDS[node.op], domain, _flops(node), np.zeros(T)))
        elif category is OpCategory.NEURON:
            neurons.append(NeuronSite(node, math.prod(node.output.type.shape[2:]), np.zeros(T),
                                      tuple(_feeding(node.inputs[0], set()))))
    return sites, neurons


def _per_step(mask: np.ndarray) -> np.ndarray:
    return np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1).astype(np.float64)


def _events(site: Site, args: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """Synaptic events of one batch, per step, summed over its samples."""
    op = site.node.op
    if site.kind == "weight":
        x = args[0]
        per_sample = math.prod(x.shape[2:])
        return _per_step(x != 0) / per_sample * site.flops
    if op == "matmul":
        a, b = args
        pairs = (a != 0).sum(axis=-2) * (b != 0).sum(axis=-1)     # [..., k], leading axes broadcast
        return pairs.reshape(pairs.shape[0], -1).sum(axis=1).astype(np.float64)
    if op == "sum":
        return _per_step(args[0] != 0)
    return _per_step(out != 0)


class Activity:
    """Counts of a graph's runs, accumulated batch by batch (:meth:`add`); optionally the spikes of one
    neuron group for one sample (``raster``: its module path and the sample's index in the data)."""

    def __init__(self, graph: Graph, raster: tuple[str, int] | None = None):
        self.graph = graph
        self.sites, self.neuron_sites = counted_sites(graph)
        self.samples = 0
        self.raster_module, self.raster_sample = raster if raster else (None, None)
        self.raster: np.ndarray | None = None

    def add(self, values: dict, bound_inputs: dict, batch: int) -> None:
        """One run: ``values`` maps every non-input node to its output (numpy arrays), ``bound_inputs``
        every input node to the value it produced."""
        def value_of(v) -> np.ndarray:
            return bound_inputs[v.producer] if v.producer.op == "input" else values[v.producer]

        for site in self.sites:
            site.events += _events(site, [value_of(v) for v in site.node.inputs], values[site.node])
        for group in self.neuron_sites:
            spikes = values[group.node]
            group.spikes += spikes.reshape(spikes.shape[0], -1).sum(axis=1, dtype=np.float64)
            local = None if self.raster_sample is None else self.raster_sample - self.samples
            if group.node.module == self.raster_module and self.raster is None and 0 <= local < batch:
                self.raster = spikes[:, local].reshape(spikes.shape[0], -1).astype(np.int8)
        self.samples += batch
