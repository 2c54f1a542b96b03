"""range-analysis: an integer interval for every value of a quantized graph, computed from the weights
(as tinygrad's ``_min_max`` does), and a proof that nothing overflows for any spike input.

Intervals ``[lo, hi]`` are per tensor. Rules (``x = [xlo, xhi]``; ``w`` the weights feeding one output):

    quantize            [lo, hi] of its clip
    qdense, binary x    Σ min(w, 0) .. Σ max(w, 0)   per output, then floor-shifted by weight_exp, + bias
    qdense/qconv, graded Σ min(w·xlo, w·xhi) .. Σ max(w·xlo, w·xhi)   (a conv's zero padding adds 0)
    qgain f             f·x
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
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spikec.ir import Graph, Node

__all__ = ["Interval", "RangeProblem", "RangeReport", "analyze_ranges"]

INT32 = 2 ** 31
INT64 = 2 ** 63
WRAP24 = 2 ** 23
MESSAGE = 2 ** 17
V_MAX = 2 ** 23 - 1


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
    intervals: dict[int, Interval]     # keyed by id(Value)
    problems: list[RangeProblem]
    accumulation: dict[int, str]       # weight node -> "float32" | "float64" | "int64": the exact arithmetic

    def of(self, value) -> Interval:
        return self.intervals[id(value)]


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


def _shift(values: np.ndarray, exp: int) -> np.ndarray:
    return values << exp if exp >= 0 else values >> -exp


def _with_bias(lo: np.ndarray, hi: np.ndarray, bias) -> Interval:
    if bias is not None:
        lo, hi = lo + bias.astype(np.int64), hi + bias.astype(np.int64)
    return Interval(int(lo.min(initial=0)), int(hi.max(initial=0)))


class _Analysis:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.intervals: dict[int, Interval] = {}
        self.problems: list[RangeProblem] = []
        self.accumulation: dict[int, str] = {}

    def get(self, value) -> Interval:
        return self.intervals[id(value)]

    def need(self, node: Node, ok: bool, message: str, saturation: bool = False) -> None:
        if not ok:
            self.problems.append(RangeProblem(node, message, saturation))

    def run(self) -> RangeReport:
        for node in self.graph.nodes:
            if node.op == "input" and node.output.type.dtype in ("i32", "i64"):
                limit = INT64 if node.output.type.dtype == "i64" else INT32
                self.intervals[id(node.output)] = Interval(-limit, limit - 1)  # nothing is known of a raw input
            if node.op in ("input", "output"):
                continue
            interval = getattr(self, f"_{node.op}", self._same)(node)
            limit = INT64 if node.output.type.dtype == "i64" else INT32
            self.need(node, -limit <= interval.lo and interval.hi < limit,
                      f"values reach {interval}, beyond {node.output.type.dtype}")
            self.intervals[id(node.output)] = interval
        return RangeReport(self.intervals, self.problems, self.accumulation)

    def _same(self, node: Node) -> Interval:
        return self.get(node.inputs[0])

    def _quantize(self, node: Node) -> Interval:
        return Interval(node.attrs["lo"], node.attrs["hi"])

    def _qgain(self, node: Node) -> Interval:
        x, f = self.get(node.inputs[0]), node.attrs["factor"]
        return Interval(x.lo * f, x.hi * f)

    def _record_accumulation(self, node: Node, weight: np.ndarray, x: Interval) -> None:
        """Which arithmetic sums this layer exactly: a float type is exact when no partial sum, in any
        order, can reach its integer limit; that bound is ``Σ |w| · max |x|`` per output."""
        bound = int(np.abs(weight.astype(np.int64)).sum(axis=1).max(initial=0)) * max(abs(x.lo), abs(x.hi), 1)
        self.accumulation[id(node)] = "float32" if bound < 2 ** 24 else "float64" if bound < 2 ** 53 else "int64"

    def _qdense(self, node: Node) -> Interval:
        a, x = node.attrs, self.get(node.inputs[0])
        lo, hi = _weighted_sums(a["weight"], x, binary=not a["graded"])
        self._record_accumulation(node, a["weight"], x if a["graded"] else Interval(0, 1))
        if a["graded"] and not a["host"]:
            self.need(node, int(lo.min(initial=0)) > -INT32 and int(hi.max(initial=0)) < INT32,
                      f"the int32 dot product reaches [{lo.min()}, {hi.max()}] and wraps")
        return _with_bias(_shift(lo, a["weight_exp"]), _shift(hi, a["weight_exp"]), a["bias"])

    def _qconv2d(self, node: Node) -> Interval:
        a, x = node.attrs, self.get(node.inputs[0])
        w = a["weight"].reshape(a["weight"].shape[0], -1)
        lo, hi = _weighted_sums(w, x, binary=x.lo >= 0 and x.hi <= 1)
        self._record_accumulation(node, w, x)
        self.need(node, int(lo.min(initial=0)) >= -WRAP24 and int(hi.max(initial=0)) < WRAP24,
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
        self.need(node, -MESSAGE < x.lo and x.hi < MESSAGE,
                  f"its input reaches {x}; u = a << 6 wraps at 24 bits unless |a| < 2**17")
        top = (a["vth"] << 6) + 64 * max(x.hi, 0)
        steps = node.inputs[0].type.time
        bottom = 64 * min(x.lo, 0) * (4096 / a["dv"] if a["dv"] else steps)
        self.need(node, top <= V_MAX and bottom >= -V_MAX,
                  f"its membrane can reach [{int(bottom)}, {top}] and saturates at +-(2**23 - 1)", saturation=True)
        return Interval(0, 1)


def analyze_ranges(graph: Graph) -> RangeReport:
    """Intervals of every integer value and the overflows they prove possible (see the module docstring)."""
    return _Analysis(graph).run()
