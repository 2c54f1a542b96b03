"""Scale classes: which integer scale every value of a float graph gets when it is quantized.

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
    views, maxpool, repeat     scale(x)

Unifying ``r1 * R1 = r2 * R2`` attaches one root under the other with the ratio ``r1 / r2`` (a weighted
union-find). This is how every synapse group feeding one neuron group ends up with that group's scale:
the MS residual stream of Spikingformer adds the messages of every block, so all of them form one class.
Two different fixed scales meeting in an add is an error: the model adds values spikec cannot put on
one integer grid.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from spikec.errors import PassError
from spikec.ir import Graph, Node, Value

__all__ = ["ONE", "Scale", "ScaleClasses", "solve_scale_classes"]

ONE = "ONE"
_PRODUCTS = ("mul", "matmul", "and_not")
_SAME = ("transpose", "reshape", "maxpool", "repeat_time", "to_time_major", "sum")


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
        self.of_value: dict[int, Scale] = {}

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
                raise PassError(f"quantize: {node.describe()} adds values on different fixed scales "
                                f"({a.ratio} and {b.ratio}); spikec cannot put them on one integer grid")
            return
        if b.root == ONE:
            a, b = b, a
        # b.ratio * b.root = a.ratio * a.root  =>  b.root = (a.ratio / b.ratio) * a.root
        self.parent[b.root] = (a.ratio / b.ratio, a.root)

    def scale(self, value: Value) -> Scale:
        return self.resolve(self.of_value[id(value)])


def _node_scale(classes: ScaleClasses, node: Node) -> Scale:
    inputs = [classes.scale(v) for v in node.inputs]
    if node.op == "input":
        raise AssertionError("inputs are seeded by the caller")
    if node.op in ("lif", "if"):
        return Scale(Fraction(1), ONE)
    if node.op in ("conv2d", "conv1d", "linear"):
        return Scale(Fraction(1), classes.fresh(f"m{len(classes.parent)}"))
    if node.op == "add":
        classes.unify(inputs[0], inputs[1], node)
        return classes.scale(node.inputs[0])
    if node.op in _PRODUCTS:
        if not all(s.fixed for s in inputs):
            raise PassError(f"quantize: {node.describe()} multiplies an analog value (the output of a weight op); "
                            "spikec quantizes products of spikes and spike counts only")
        return Scale(inputs[0].ratio * inputs[1].ratio, ONE) if node.op != "and_not" else inputs[1]
    if node.op in _SAME:
        return inputs[0]
    if node.op == "mean":
        count = 1
        for axis in node.attrs["axes"]:
            count *= node.inputs[0].type.shape[axis]
        return Scale(inputs[0].ratio * count, inputs[0].root)
    raise PassError(f"quantize: {node.describe()}: {node.op} cannot be quantized "
                    "(run fold-batchnorm and fold-scales first; avgpool is not supported yet)")


def solve_scale_classes(graph: Graph, input_exp: int) -> ScaleClasses:
    """The symbolic scale of every value of ``graph`` (a folded float graph)."""
    classes = ScaleClasses()
    for node in graph.nodes:
        if node.op == "output":
            continue
        if node.op == "input":
            classes.of_value[id(node.output)] = Scale(Fraction(2) ** input_exp, ONE)
            continue
        classes.of_value[id(node.output)] = _node_scale(classes, node)
    return classes
