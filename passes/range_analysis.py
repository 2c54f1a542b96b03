"""range-analysis: an integer interval for every value of a quantized graph, computed from the weights
(as tinygrad's ``_min_max`` does), and a proof that nothing overflows for any spike input.

Intervals ``[lo, hi]`` are per tensor. Rules (``x = [xlo, xhi]``; ``w`` the weights feeding one output):

    quantize            [lo, hi] of its clip
    qdense, binary x    Σ min(w, 0) .. Σ max(w, 0)   per output, then floor-shifted by weight_exp, + bias
    qdense/qconv, graded Σ min(w·xlo, w·xhi) .. Σ max(w·xlo, w·xhi)   (a conv's zero padding adds 0)
    qgain f             f·x;   qshift k: floor(x / 2**k)
    add                 [alo + blo, ahi + bhi];   mul: min/max of the four products
    matmul (inner n)    n · (min/max of the four products);   sum over n elements: n·x
    and_not(a, s)       (1 - a) s with a in [0, 1]:  [min(0, slo), max(0, shi)]
    qlif                [0, 1]
    views, maxpool, repeat   x

Checks (each failure names the node):
* a graded Dense accumulates in int32: |Σ| < 2**31; a Conv wraps at 24 bits: |Σ| < 2**23;
* messages into a neuron: ``u = a << 6`` wraps at 24 bits unless -2**17 < a < 2**17;
* a neuron's ``v`` saturates at ±(2**23 - 1): above, ``v <= (vth << 6) + 64 a_hi`` (v is at most the
  threshold before the step); below, ``v >= 64 a_lo · 4096 / dv`` (the fixed point of the decay), or
  ``64 a_lo · T`` for dv = 0. Saturation is reported separately (``--allow-saturation`` accepts it);
* every other integer value stays within int32 (int64 on the host).

Every op of the integer graph has a rule in ``RANGE_RULES``; a graph with any other op is an error naming it
(:class:`RangeAnalysis` requires it), and every integer value gets an interval (it ensures that).

The limits and shifts are Lava's, named once in :mod:`spikec.backends.intsim.fixed_point` (the numerics spec: the
one backend module a pass may import).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from spikec.backends.intsim.fixed_point import (ACTIVATION_SHIFT, DECAY_UNITY, INT32_MIN, MESSAGE_LIMIT, U_EXACT,
                                                V_MAX, exact_dtype, scaled_threshold, shift_floor)
from spikec.errors import PassError
from spikec.ir import Graph, Node, Value
from spikec.ir.ops import OpCategory, Phase, op_traits
from spikec.passes.base import Analysis, AnalysisCache

__all__ = ["Interval", "RangeProblem", "RangeReport", "RangeAnalysis", "analyze_ranges", "RANGE_RULES"]

INT32 = -INT32_MIN  # int32 holds [-INT32, INT32)
INT64 = 2 ** 63


@dataclasses.dataclass(frozen=True)
class Interval:
    lo: int
    hi: int

    def __str__(self) -> str:
        return f"[{self.lo}, {self.hi}]"


@dataclasses.dataclass(frozen=True)
class RangeProblem:
    node: Node
    message: str
    saturation: bool = False

    def __str__(self) -> str:
        return f"{self.node.describe()}: {self.message}"


@dataclasses.dataclass
class RangeReport:
    intervals: dict[Value, Interval]
    problems: list[RangeProblem]
    accumulation: dict[Node, str]      # weight node -> "float32" | "float64" | "int64": the exact arithmetic

    def of(self, value: Value) -> Interval:
        return self.intervals[value]

    def get(self, value: Value) -> Interval | None:
        """The interval of ``value``, or None for a value without one (a float model input)."""
        return self.intervals.get(value)

    def accumulation_of(self, node: Node) -> str | None:
        """The exact arithmetic of a weight node's sums, or None for a node that sums no weights."""
        return self.accumulation.get(node)


def _weighted_sums(weight: np.ndarray, x: Interval, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-output bounds of ``Σ_j w_ij x_j`` for ``weight [out, fan_in]``."""
    w = weight.astype(np.int64)
    if binary:
        lo_terms, hi_terms = np.minimum(w, 0), np.maximum(w, 0)
    else:
        a, b = w * x.lo, w * x.hi
        lo_terms = np.minimum(np.minimum(a, b), 0) if x.lo <= 0 <= x.hi else np.minimum(a, b)
        hi_terms = np.maximum(np.maximum(a, b), 0) if x.lo <= 0 <= x.hi else np.maximum(a, b)
    return lo_terms.sum(axis=1), hi_terms.sum(axis=1)


def _with_bias(lo: np.ndarray, hi: np.ndarray, bias) -> Interval:
    if bias is not None:
        lo, hi = lo + bias.astype(np.int64), hi + bias.astype(np.int64)
    return Interval(int(lo.min(initial=0)), int(hi.max(initial=0)))


class _Analysis:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.intervals: dict[Value, Interval] = {}
        self.problems: list[RangeProblem] = []
        self.accumulation: dict[Node, str] = {}

    def get(self, value: Value) -> Interval:
        return self.intervals[value]

    def need(self, node: Node, ok: bool, message: str, saturation: bool = False) -> None:
        if not ok:
            self.problems.append(RangeProblem(node, message, saturation))

    def run(self) -> RangeReport:
        for node in self.graph.nodes:
            interval = RANGE_RULES[node.op](self, node)
            if interval is None:
                continue
            limit = INT64 if node.output.type.dtype == "i64" else INT32
            self.need(node, -limit <= interval.lo and interval.hi < limit,
                      f"values reach {interval}, beyond {node.output.type.dtype}")
            self.intervals[node.output] = interval
        return RangeReport(self.intervals, self.problems, self.accumulation)

    def _input(self, node: Node) -> Interval | None:
        """Nothing is known of a raw integer input; a float input has no interval (its ``quantize`` has)."""
        dtype = node.output.type.dtype
        if dtype not in ("i32", "i64"):
            return None
        limit = INT64 if dtype == "i64" else INT32
        return Interval(-limit, limit - 1)

    def _output(self, node: Node) -> None:
        return None

    def _same(self, node: Node) -> Interval:
        return self.get(node.inputs[0])

    def _quantize(self, node: Node) -> Interval:
        return Interval(node.attrs["lo"], node.attrs["hi"])

    def _qgain(self, node: Node) -> Interval:
        x, f = self.get(node.inputs[0]), node.attrs["factor"]
        gained = Interval(x.lo * f, x.hi * f)
        conv = node.inputs[0].producer
        if conv.op == "qconv2d" and len(node.inputs[0].uses) == 1:
            # on Lava a gain right after a conv joins its weights (Lava's Conv has no exponent), so the conv's
            # 24-bit wrap applies to the gained sums, its bias (gained too) left out as the conv's check leaves it
            bias = conv.attrs["bias"]
            peak = 0 if bias is None else int(np.abs(bias.astype(np.int64)).max(initial=0)) * f
            self.need(node, max(abs(gained.lo), abs(gained.hi)) - peak < MESSAGE_LIMIT,
                      f"the convolution with its gain {f} reaches {gained} and wraps at 24 bits")
        return gained

    def _qshift(self, node: Node) -> Interval:
        x, bits = self.get(node.inputs[0]), node.attrs["shift"]
        summed = node.inputs[0].producer
        if summed.op == "add":
            # on Lava the shift's synapses read its input as graded spikes, the biases of the groups it sums kept
            # apart: a conv's own sum is held within them by its 24-bit wrap check, a sum of synapse groups (a conv
            # and its residual group) is checked here
            biases = [v.producer.attrs.get("bias") for v in summed.inputs]
            bias = sum(int(np.abs(b.astype(np.int64)).max(initial=0)) for b in biases if b is not None)
            self.need(node, max(abs(x.lo), abs(x.hi)) + bias < MESSAGE_LIMIT,
                      f"its input reaches {x} (and biases of {bias}), beyond a graded spike (24 bits)")
        return Interval(x.lo >> bits, x.hi >> bits)

    def _record_accumulation(self, node: Node, weight: np.ndarray, x: Interval) -> None:
        """Which arithmetic sums this layer exactly: a float type is exact when no partial sum, in any
        order, can reach its integer limit (:func:`~spikec.backends.intsim.fixed_point.exact_dtype`); that bound
        is ``Σ |w| · max |x|`` per output."""
        bound = int(np.abs(weight.astype(np.int64)).sum(axis=1).max(initial=0)) * max(abs(x.lo), abs(x.hi), 1)
        self.accumulation[node] = exact_dtype(bound).name

    def _qdense(self, node: Node) -> Interval:
        a, x = node.attrs, self.get(node.inputs[0])
        lo, hi = _weighted_sums(a["weight"], x, binary=not a["graded"])
        self._record_accumulation(node, a["weight"], x if a["graded"] else Interval(0, 1))
        if a["graded"] and not a["host"]:
            self.need(node, int(lo.min(initial=0)) > -INT32 and int(hi.max(initial=0)) < INT32,
                      f"the int32 dot product reaches [{lo.min()}, {hi.max()}] and wraps")
        return _with_bias(shift_floor(lo, a["weight_exp"]), shift_floor(hi, a["weight_exp"]), a["bias"])

    def _qconv2d(self, node: Node) -> Interval:
        a, x = node.attrs, self.get(node.inputs[0])
        w = a["weight"].reshape(a["weight"].shape[0], -1)
        lo, hi = _weighted_sums(w, x, binary=x.lo >= 0 and x.hi <= 1)
        self._record_accumulation(node, w, x)
        self.need(node, int(lo.min(initial=0)) >= -MESSAGE_LIMIT and int(hi.max(initial=0)) < MESSAGE_LIMIT,
                  f"the convolution reaches [{lo.min()}, {hi.max()}] and wraps at 24 bits")
        return _with_bias(lo, hi, a["bias"])

    def _add(self, node: Node) -> Interval:
        a, b = (self.get(v) for v in node.inputs)
        return Interval(a.lo + b.lo, a.hi + b.hi)

    def _products(self, node: Node, n: int = 1) -> Interval:
        a, b = (self.get(v) for v in node.inputs)
        products = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
        return Interval(n * min(products), n * max(products))

    def _mul(self, node: Node) -> Interval:
        return self._products(node)

    def _matmul(self, node: Node) -> Interval:
        return self._products(node, node.inputs[0].type.shape[-1])

    def _and_not(self, node: Node) -> Interval:
        s = self.get(node.inputs[1])
        return Interval(min(0, s.lo), max(0, s.hi))

    def _sum(self, node: Node) -> Interval:
        x = self.get(node.inputs[0])
        n = int(np.prod([node.inputs[0].type.shape[a] for a in node.attrs["axes"]]))
        return Interval(n * x.lo, n * x.hi)

    def _qlif(self, node: Node) -> Interval:
        a, x = node.attrs, self.get(node.inputs[0])
        self.need(node, -U_EXACT < x.lo and x.hi < U_EXACT,
                  f"its input reaches {x}; u = a << 6 wraps at 24 bits unless |a| < 2**17")
        top = scaled_threshold(a["vth"]) + (max(x.hi, 0) << ACTIVATION_SHIFT)
        steps = node.inputs[0].type.time
        bottom = (min(x.lo, 0) << ACTIVATION_SHIFT) * (DECAY_UNITY / a["dv"] if a["dv"] else steps)
        self.need(node, top <= V_MAX and bottom >= -V_MAX,
                  f"its membrane can reach [{int(bottom)}, {top}] and saturates at +-(2**23 - 1)", saturation=True)
        return Interval(0, 1)


RANGE_RULES: dict[str, Callable[[_Analysis, Node], Interval | None]] = {
    "input": _Analysis._input,
    "output": _Analysis._output,
    "quantize": _Analysis._quantize,
    "qconv2d": _Analysis._qconv2d,
    "qdense": _Analysis._qdense,
    "qgain": _Analysis._qgain,
    "qshift": _Analysis._qshift,
    "qlif": _Analysis._qlif,
    "add": _Analysis._add,
    "mul": _Analysis._mul,
    "and_not": _Analysis._and_not,
    "matmul": _Analysis._matmul,
    "sum": _Analysis._sum,
    "maxpool": _Analysis._same,
    "repeat_time": _Analysis._same,
    "to_time_major": _Analysis._same,
    "reshape": _Analysis._same,
    "slice": _Analysis._same,
    "transpose": _Analysis._same,
}
"""The interval of each op's output (None: it has no integer output), with the checks of the module docstring."""


@dataclasses.dataclass(frozen=True)
class RangeAnalysis(Analysis):
    """Bound every integer value of a quantized graph and find the overflows the bounds allow.

    The rules and checks are in the module docstring. An overflow is a finding of the report, not a
    failure of the pass.

    Requires: every op has an interval rule (``RANGE_RULES``: the integer graph's ops). Ensures: every
    integer value has an interval, and every integer weight op the arithmetic that sums it exactly."""

    name = "range-analysis"

    def requires(self, graph: Graph) -> None:
        node = next((n for n in graph.nodes if n.op not in RANGE_RULES), None)
        if node is not None:
            raise PassError(f"no interval rule for {node.describe()}: range analysis reads quantized graphs")

    def compute(self, graph: Graph, analyses: AnalysisCache) -> RangeReport:
        return _Analysis(graph).run()

    def ensures(self, graph: Graph, report: RangeReport) -> None:
        for node in graph.nodes:
            if any(v.type.dtype.startswith("i") and report.get(v) is None for v in node.outputs):
                raise PassError(f"{node.describe()} has an integer value without an interval")
            traits = op_traits(node.op)
            weight_op = traits.category is OpCategory.WEIGHT and Phase.INTEGER in traits.phase
            if weight_op and report.accumulation_of(node) is None:
                raise PassError(f"{node.describe()} sums weights in no recorded arithmetic")


def analyze_ranges(graph: Graph) -> RangeReport:
    """:class:`RangeAnalysis` of ``graph`` without a cache, for callers that hold no
    :class:`~spikec.passes.base.AnalysisCache` (the Lava lowering)."""
    return RangeAnalysis()(graph)
