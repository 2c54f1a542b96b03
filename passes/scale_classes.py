"""scale-classes: which integer scale every value of a float graph gets when it is quantized (an analysis
quantize runs first).

An integer value stands for a float value times its *scale*: ``x_int ≈ scale * x``. Scales are solved
symbolically first, as ``ratio * root`` where the root is either ``ONE`` (a fixed unit) or a free scale
``m`` to be chosen later:

    input                      2**input_exp * ONE       (the quantized image)
    lif / if output            1 * ONE                  (spikes are exact 0/1)
    conv / linear output       1 * m_k                  (a fresh free scale per weight op: its messages)
    add(a, b)                  scale(a) = scale(b)      (unify: both sides must share one scale)
    mul, matmul, and_not       scale(a) * scale(b)      (only of ONE-rooted operands: exact integers)
    sum over n elements        scale(x)                 (the integer sum stands for the float sum)
    mean over n elements       n * scale(x)             (quantized as a sum: sum = n * mean)
                               n / 2**k * scale(x)      (an analog x a neuron reads: the sum shifted by
                                                         k = floor(log2 n), ``mean_shift``)
    views, maxpool, repeat     scale(x)

Unifying ``r1 * R1 = r2 * R2`` attaches one root under the other with the ratio ``r1 / r2`` (a weighted
union-find). This is how every synapse group feeding one neuron group ends up with that group's scale:
the MS residual stream of Spikingformer adds the messages of every block, so all of them form one class.
Two different fixed scales meeting in an add is an error: the model adds values spikec cannot put on
one integer grid.

The shift of a mean keeps the neuron that reads it on the scale of the values averaged: SDT's head LIF reads the
mean of the residual stream over its tokens, and at ``n`` times the stream's scale its threshold would need
``log2 n`` more bits than the stream's own neurons, which would take them from the whole residual class. A
mean of exact values (spike counts) stays an exact sum: a gain gives its neuron room instead.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from spikec.errors import PassError
from spikec.ir import OPS, Graph, Node, Value
from spikec.ir.ops import OpCategory, Phase, ops_with
from spikec.passes.base import Analysis, AnalysisCache

__all__ = ["ONE", "Scale", "ScaleClasses", "ScaleClassAnalysis"]

ONE = "ONE"
_NEURONS = ops_with(category=OpCategory.NEURON, phase=Phase.FLOAT)
_WEIGHT_OPS = ops_with(category=OpCategory.WEIGHT, phase=Phase.FLOAT)
_PRODUCTS = ops_with(category=OpCategory.PRODUCT, phase=Phase.FLOAT)
# quantize copies an op of both phases as it is, so one of one input gives on ``s * x`` its float result times
# ``s``: its output keeps its input's scale (views, max-pool, sum).
_SAME = frozenset(op for op in ops_with(phase=Phase.BOTH) if OPS[op].num_inputs == 1)


@dataclasses.dataclass(frozen=True)
class Scale:
    """``ratio * root``; ``root`` is ``ONE`` or the name of a free scale."""

    ratio: Fraction
    root: str

    @property
    def fixed(self) -> bool:
        return self.root == ONE


class ScaleClasses:
    """A weighted union-find over scale roots: ``find(r)`` gives ``(ratio, top)`` with ``r = ratio * top``."""

    def __init__(self):
        self.parent: dict[str, tuple[Fraction, str]] = {ONE: (Fraction(1), ONE)}
        self.of_value: dict[Value, Scale] = {}
        self.mean_shift: dict[Node, int] = {}   # mean -> k: quantized as its sum floor-shifted by k bits

    def fresh(self, name: str) -> str:
        self.parent[name] = (Fraction(1), name)
        return name

    def find(self, root: str) -> tuple[Fraction, str]:
        ratio, parent = self.parent[root]
        if parent == root:
            return Fraction(1), root
        up_ratio, top = self.find(parent)
        self.parent[root] = (ratio * up_ratio, top)
        return self.parent[root]

    def resolve(self, scale: Scale) -> Scale:
        ratio, top = self.find(scale.root)
        return Scale(scale.ratio * ratio, top)

    def unify(self, a: Scale, b: Scale, node: Node) -> None:
        a, b = self.resolve(a), self.resolve(b)
        if a.root == b.root:
            if a.ratio != b.ratio:
                raise PassError(f"{node.describe()} adds values on different fixed scales "
                                f"({a.ratio} and {b.ratio}); spikec cannot put them on one integer grid")
            return
        if b.root == ONE:
            a, b = b, a
        # b.ratio * b.root = a.ratio * a.root  =>  b.root = (a.ratio / b.ratio) * a.root
        self.parent[b.root] = (a.ratio / b.ratio, a.root)

    def scale(self, value: Value) -> Scale:
        return self.resolve(self.of_value[value])


def _read_by_neuron(value: Value) -> bool:
    """Whether a neuron reads ``value`` itself, or through ops that keep its scale."""
    stack, seen = [value], set()
    while stack:
        for user in stack.pop().users():
            if user.op in _NEURONS:
                return True
            if user.op in _SAME and user not in seen:
                seen.add(user)
                stack.append(user.output)
    return False


def _node_scale(classes: ScaleClasses, node: Node) -> Scale:
    inputs = [classes.scale(v) for v in node.inputs]
    if node.op == "input":
        raise AssertionError("inputs are seeded by the caller")
    if node.op in _NEURONS:
        return Scale(Fraction(1), ONE)
    if node.op in _WEIGHT_OPS:
        return Scale(Fraction(1), classes.fresh(f"m{len(classes.parent)}"))
    if node.op == "add":
        classes.unify(inputs[0], inputs[1], node)
        return classes.scale(node.inputs[0])
    if node.op in _PRODUCTS:
        if not all(s.fixed for s in inputs):
            raise PassError(f"{node.describe()} multiplies an analog value (the output of a weight op); "
                            "spikec quantizes products of spikes and spike counts only")
        return Scale(inputs[0].ratio * inputs[1].ratio, ONE) if node.op != "and_not" else inputs[1]
    if node.op in _SAME:
        return inputs[0]
    if node.op == "mean":
        count = 1
        for axis in node.attrs["axes"]:
            count *= node.inputs[0].type.shape[axis]
        shift = 0 if inputs[0].fixed or not _read_by_neuron(node.output) else count.bit_length() - 1
        if shift:
            classes.mean_shift[node] = shift
        return Scale(inputs[0].ratio * count / 2 ** shift, inputs[0].root)
    raise PassError(f"{node.describe()}: {node.op} cannot be quantized "
                    "(run fold-batchnorm and fold-scales first; avgpool is not supported yet)")


@dataclasses.dataclass(frozen=True)
class ScaleClassAnalysis(Analysis):
    """Solve the symbolic scale of every value of a folded float graph.

    The model input is at ``2**input_exp``; the rules are in the module docstring.

    Requires: a float graph (every value f32 or f64: not quantized yet). Ensures: every value has a scale,
    and the two operands of every ``add`` resolve to one scale (the unification held)."""

    name = "scale-classes"
    input_exp: int

    def requires(self, graph: Graph) -> None:
        value = next((v for v in graph.values() if v.type.dtype not in ("f32", "f64")), None)
        if value is not None:
            raise PassError(f"{value.producer.describe()} gives {value.type}; scale classes are solved on a float "
                            "graph (this one is quantized already)")

    def compute(self, graph: Graph, analyses: AnalysisCache) -> ScaleClasses:
        classes = ScaleClasses()
        for node in graph.nodes:
            if node.op == "output":
                continue
            if node.op == "input":
                classes.of_value[node.output] = Scale(Fraction(2) ** self.input_exp, ONE)
                continue
            classes.of_value[node.output] = _node_scale(classes, node)
        return classes

    def ensures(self, graph: Graph, classes: ScaleClasses) -> None:
        for node in graph.nodes:
            if any(v not in classes.of_value for v in node.outputs):
                raise PassError(f"{node.describe()} has a value without a scale")
            if node.op == "add" and classes.scale(node.inputs[0]) != classes.scale(node.inputs[1]):
                raise PassError(f"{node.describe()} adds values whose scales were not unified")
