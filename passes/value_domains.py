"""Value-domain analysis: for every IR value, is it spikes, bounded integers, or real numbers?

The domains form a chain (docs/design.md, §4)::

    spike  ⊂  int[lo, hi]  ⊂  real

``spike`` is ``int[0, 1]``: a value whose every element is 0 or 1. ``int[lo, hi]`` holds integers
``lo <= x <= hi``; ``real`` holds anything. The model input is ``real`` (an analog image or event counts).

Rules, one per op (``DOMAIN_RULES``), with ``a = [a.lo, a.hi]`` and ``b`` the input intervals::

    lif, if, qlif                    spike (a neuron fires 0 or 1)
    views, repeat_time,              the input's (elements move, values do not change; max-pool pads
      to_time_major, maxpool           with -inf, which is never the max, and of spikes it is an OR)
    add                              int[a.lo + b.lo, a.hi + b.hi]              (spike + spike = int[0, 2])
    mul                              int[min P, max P],  P = {a.lo b.lo, a.lo b.hi, a.hi b.lo, a.hi b.hi}
    and_not(a, b) = (1 - a) b        as mul, with 1 - a = int[1 - a.hi, 1 - a.lo]
    matmul, inner size n             int[n min P, n max P]                      (n products per output)
    sum over n elements              int[n a.lo, n a.hi]
    scale, qgain by an integer f     int[min(f a.lo, f a.hi), max(f a.lo, f a.hi)]
    quantize (clip to [lo, hi])      int[lo, hi]
    mean over n = 1 element          the input's
    conv1d, conv2d, linear,          real: weighted sums, affine maps and averages are not integers
      batchnorm, avgpool, mean,
      scale by a non-integer, input
    qconv2d, qdense                  real: integers, but bounded from their weights by the range
                                       analysis (spikec.passes.range_analysis), not here

Any rule with a ``real`` operand gives ``real``. Every integer bound is exact for independent operands:
each output element can reach it (all terms of a sum at the same extreme). So Spikformer's SEW stream
is exact: the SPS output is spike + spike = int[0, 2], block ``l`` reads int[0, 2 + 2l] at q/k/v and
int[0, 3 + 2l] at fc1 (each residual adds one spike tensor).

Results live apart from the graph, in a :class:`DomainMap` keyed by ``Value``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterator, Mapping

import numpy as np

from spikec.errors import PassError
from spikec.ir import Graph, Node, Value
from spikec.ir.ops import OpCategory, op_traits
from spikec.passes.base import Analysis, AnalysisCache

__all__ = ["Domain", "SPIKE", "REAL", "DOMAIN_RULES", "DomainMap", "ValueDomains"]


@dataclasses.dataclass(frozen=True)
class Domain:
    """``int[lo, hi]`` when both bounds are given, else ``real``. ``spike`` is ``int[0, 1]``."""

    lo: int | None = None
    hi: int | None = None

    def __post_init__(self):
        if (self.lo is None) != (self.hi is None):
            raise ValueError(f"an integer domain needs both bounds, got [{self.lo}, {self.hi}]")
        if self.lo is not None and self.lo > self.hi:
            raise ValueError(f"empty integer domain [{self.lo}, {self.hi}]")

    @property
    def is_int(self) -> bool:
        return self.lo is not None

    @property
    def is_spike(self) -> bool:
        """Every element is 0 or 1."""
        return self.is_int and self.lo >= 0 and self.hi <= 1

    def contains(self, minimum: float, maximum: float, integral: bool) -> bool:
        """Whether values in ``[minimum, maximum]`` (all integers when ``integral``) lie in this domain."""
        if not self.is_int:
            return True
        return integral and self.lo <= minimum and maximum <= self.hi

    def __str__(self) -> str:
        if not self.is_int:
            return "real"
        if (self.lo, self.hi) == (0, 1):
            return "spike"
        return f"int[{self.lo},{self.hi}]"


SPIKE = Domain(0, 1)
REAL = Domain()

Rule = Callable[[Node, tuple[Domain, ...]], tuple[Domain, ...]]


def _interval_product(a: Domain, b: Domain) -> tuple[int, int]:
    products = (a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi)
    return min(products), max(products)


def _reduced_size(node: Node) -> int:
    shape = node.inputs[0].shape
    return math.prod(shape[axis] for axis in node.attrs["axes"])


def _same(node, domains):
    return (domains[0],)


def _spike(node, domains):
    return (SPIKE,)


def _real(node, domains):
    return (REAL,)


def _add(node, domains):
    a, b = domains
    if not (a.is_int and b.is_int):
        return (REAL,)
    return (Domain(a.lo + b.lo, a.hi + b.hi),)


def _mul(node, domains):
    a, b = domains
    if not (a.is_int and b.is_int):
        return (REAL,)
    return (Domain(*_interval_product(a, b)),)


def _and_not(node, domains):
    a, s = domains
    if not (a.is_int and s.is_int):
        return (REAL,)
    return (Domain(*_interval_product(Domain(1 - a.hi, 1 - a.lo), s)),)


def _matmul(node, domains):
    a, b = domains
    if not (a.is_int and b.is_int):
        return (REAL,)
    inner = node.inputs[0].shape[-1]
    lo, hi = _interval_product(a, b)
    return (Domain(inner * lo, inner * hi),)


def _sum(node, domains):
    (a,) = domains
    if not a.is_int:
        return (REAL,)
    n = _reduced_size(node)
    return (Domain(n * a.lo, n * a.hi),)


def _mean(node, domains):
    return domains if _reduced_size(node) == 1 else (REAL,)


def _scale(node, domains):
    (a,) = domains
    factor = node.attrs["factor"]
    if not a.is_int or factor != int(factor):
        return (REAL,)
    ends = sorted((int(factor) * a.lo, int(factor) * a.hi))
    return (Domain(*ends),)


def _shift(node, domains):
    (a,) = domains
    if not a.is_int:
        return (REAL,)
    bits = node.attrs["shift"]
    return (Domain(a.lo >> bits, a.hi >> bits),)


def _quantize(node, domains):
    return (Domain(node.attrs["lo"], node.attrs["hi"]),)


def _concat(node, domains):
    if not all(d.is_int for d in domains):
        return (REAL,)
    return (Domain(min(d.lo for d in domains), max(d.hi for d in domains)),)


def _pad(node, domains):
    (a,) = domains
    fill = node.attrs["fill"]
    if not a.is_int or not np.all(fill == np.round(fill)):
        return (REAL,)
    return (Domain(min(a.lo, int(fill.min())), max(a.hi, int(fill.max()))),)


def _output(node, domains):
    return ()


DOMAIN_RULES: dict[str, Rule] = {
    "input": _real,
    "output": _output,
    "repeat_time": _same,
    "to_time_major": _same,
    "reshape": _same,
    "slice": _same,
    "pad": _pad,
    "concat": _concat,
    "transpose": _same,
    "conv1d": _real,
    "conv2d": _real,
    "linear": _real,
    "batchnorm": _real,
    "lif": _spike,
    "plif": _spike,
    "if": _spike,
    "add": _add,
    "mul": _mul,
    "and_not": _and_not,
    "scale": _scale,
    "scale_by": _real,
    "matmul": _matmul,
    "maxpool": _same,
    "avgpool": _real,
    "mean": _mean,
    "sum": _sum,
    "quantize": _quantize,
    "qconv2d": _real,
    "qdense": _real,
    "qlif": _spike,
    "qgain": _scale,
    "qshift": _shift,
}


class DomainMap(Mapping[Value, Domain]):
    """The analysis result: the domain of every value of one graph (kept apart from the IR)."""

    def __init__(self, domains: dict[Value, Domain]):
        self._domains = domains

    def __getitem__(self, value: Value) -> Domain:
        return self._domains[value]

    def __iter__(self) -> Iterator[Value]:
        return iter(self._domains)

    def __len__(self) -> int:
        return len(self._domains)


@dataclasses.dataclass(frozen=True)
class ValueDomains(Analysis):
    """Compute the domain of every value (an analysis: the graph is never changed).

    Precondition: every op of the graph has a rule. Postconditions: every value has a domain, and
    every neuron output is ``spike``.
    """

    name = "value-domains"

    def requires(self, graph: Graph) -> None:
        missing = [n for n in graph.nodes if n.op not in DOMAIN_RULES]
        if missing:
            raise PassError(f"no domain rule for {missing[0].describe()}")

    def compute(self, graph: Graph, analyses: AnalysisCache) -> DomainMap:
        domains: dict[Value, Domain] = {}
        for node in graph.nodes:
            results = DOMAIN_RULES[node.op](node, tuple(domains[v] for v in node.inputs))
            if len(results) != len(node.outputs):
                raise PassError(f"the {node.op} rule gave {len(results)} domains for "
                                f"{len(node.outputs)} outputs at {node.describe()}")
            domains.update(zip(node.outputs, results))
        return DomainMap(domains)

    def ensures(self, graph: Graph, domains: DomainMap) -> None:
        for node in graph.nodes:
            if any(v not in domains for v in node.outputs):
                raise PassError(f"{node.describe()} has a value without a domain")
            if op_traits(node.op).category is OpCategory.NEURON and not domains[node.output].is_spike:
                raise PassError(f"neuron {node.describe()} is not spike-valued")

