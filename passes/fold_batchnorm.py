"""fold-batchnorm: merge an inference batch norm into the conv or linear that produces its input.

Batch norm along channel ``c`` is the affine map ``y = g_c * x + h_c`` with::

    g = weight / sqrt(running_var + eps)          (weight = 1 when the BN has none)
    h = bias - running_mean * g                   (bias = 0 when the BN has none)

A weight op ``x = W s + b`` whose output channels are the BN's channels absorbs it exactly (in real
arithmetic)::

    W' = g[:, None, ...] * W        b' = g * b + h        (b = 0 when the op had no bias)

so ``y = W' s + b'``. The BN may sit behind transposes (Spikformer's ``bn(x.transpose(-1, -2))`` on a
Linear output): the BN axis is followed back through each transpose, and the fold happens when it lands
on the weight op's channel axis (axis 2 for conv, the last axis for linear). Every value between the
weight op and the BN must have that single user, or another reader would see the changed weights.

Precondition: none. Postcondition: no batch norm is left without a recorded reason (a ``Skip``: the
pass could not fold it); quantize then requires that none is left at all.
In float32 the fold is exact up to rounding (the tests require 1e-5).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spikec.ir import Graph, Node
from spikec.ir.ops import OpCategory, Phase, ops_with
from spikec.errors import InputError, PassError
from spikec.passes.base import AnalysisCache, PassResult, Skip, Transform, single_user, unexplained

__all__ = ["FoldBatchNorm", "batchnorm_affine"]

_WEIGHT_OPS = ops_with(category=OpCategory.WEIGHT, phase=Phase.FLOAT)


def batchnorm_affine(node: Node) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel ``(g, h)`` of a batch norm node, in float64. Statistics no trained batch norm has (a
    variance below ``-eps``, or not finite) are an :class:`InputError` naming the node."""
    a = node.attrs
    for name in ("running_mean", "running_var", "weight", "bias"):
        if a[name] is not None and not np.all(np.isfinite(a[name])):
            raise InputError(f"{node.describe()}: its {name} holds NaN or infinite values")
    if np.any(a["running_var"].astype(np.float64) + a["eps"] <= 0):
        raise InputError(f"{node.describe()}: its running_var holds {float(a['running_var'].min()):g}, but a "
                         "variance is never negative (corrupt batch-norm statistics)")
    weight = np.ones_like(a["running_var"], dtype=np.float64) if a["weight"] is None else a["weight"].astype(np.float64)
    bias = np.zeros_like(weight) if a["bias"] is None else a["bias"].astype(np.float64)
    g = weight / np.sqrt(a["running_var"].astype(np.float64) + a["eps"])
    return g, bias - a["running_mean"].astype(np.float64) * g


def _channel_axis(op: Node) -> int:
    return op.output.type.rank - 1 if op.op == "linear" else 2


def _find_weight_op(bn: Node) -> tuple[Node | None, str]:
    """Walk back from the BN through transposes to a weight op whose channel axis is the BN axis."""
    axis = bn.attrs["axis"]
    node = bn.inputs[0].producer
    while node.op == "transpose":
        axis = node.attrs["perm"][axis]
        if single_user(node) is None:
            return None, f"the transpose at {node.describe()} has other users"
        node = node.inputs[0].producer
    if node.op not in _WEIGHT_OPS:
        return None, f"its input comes from {node.op}, not a conv or linear"
    if single_user(node) is None:
        return None, f"{node.describe()} has other users, which would see the folded weights"
    if axis != _channel_axis(node):
        return None, f"it normalises axis {axis}, not the channel axis of {node.describe()}"
    return node, ""


def _fold(op: Node, bn: Node) -> None:
    g, h = batchnorm_affine(bn)
    weight = op.attrs["weight"].astype(np.float64)
    bias = np.zeros(weight.shape[0]) if op.attrs["bias"] is None else op.attrs["bias"].astype(np.float64)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    op.attrs["weight"] = (weight * g.reshape(shape)).astype(np.float32)
    op.attrs["bias"] = (bias * g + h).astype(np.float32)
    op.locs = op.locs + tuple(loc for loc in bn.locs if loc not in op.locs)


@dataclasses.dataclass(frozen=True)
class FoldBatchNorm(Transform):
    """Fold every inference batch norm into the conv or linear before it.

    In place; the math is in the module docstring. Requires: nothing beyond a verified graph.
    Ensures: every batch norm left is recorded as skipped, with why."""

    name = "fold-batchnorm"

    def apply(self, graph: Graph, analyses: AnalysisCache) -> PassResult:
        changed, skipped = False, []
        for bn in [n for n in graph.nodes if n.op == "batchnorm"]:
            op, reason = _find_weight_op(bn)
            if op is None:
                skipped.append(Skip(bn, f"batch norm not folded: {reason}"))
                continue
            _fold(op, bn)
            graph.replace_all_uses(bn.output, bn.inputs[0])
            graph.erase(bn)
            changed = True
        return PassResult(graph, changed, tuple(skipped))

    def ensures(self, graph: Graph, result: PassResult) -> None:
        left = unexplained(result, "batchnorm")
        if left is not None:
            raise PassError(f"{left.describe()} is left without a reason (no Skip records why it was not folded)")
