"""reparameterize: fold chains of linear ops between two weight ops into one weight op, as RepVGG-style models
(Meta-SpikeFormer's RepConv, MobileNet-style SepConv) are deployed.

A weight op that reads another weight op's output (through batch norms and pads, with no neuron between) makes
float-float products: the spike-driven check flags it, although the chain is one linear map on the spikes the
first op reads. The rewrites, each exact in real arithmetic, applied until none applies:

* **batch norm into the op before it**, where the batch norm feeds a weight op or a pad (fold-batchnorm's
  fold: ``W' = g W``, ``b' = g b + h``). A batch norm feeding a neuron is left to fold-batchnorm.
* **pad above a pointwise conv**: ``pad(A x, c) = A pad(x, 0)`` when ``A`` is a 1x1 convolution (stride 1,
  padding 0) and each channel's fill ``c`` is what ``A`` makes of 0, its bias (float32 ``c`` and bias, computed
  by different roundings of one real number, must agree to 1e-5 relative).
* **a zero pad into the conv it feeds**: ``conv(pad(x, 0), p) = conv(x, p + pad)`` for a pad even on each axis.
* **two convs into one**, ``B(A x)`` with ``A``'s output read by ``B`` alone and one of them pointwise. With
  dense weights (groups expanded) ``A [M, Cin, k...]``, ``B [Cout, M, k...]``:

  - ``B`` pointwise (1x1, stride 1, padding 0): ``W = B·A`` over ``M``, ``b = B b_A + b_B``, ``A``'s geometry;
  - ``A`` pointwise (1x1, stride 1): ``W[o, i, k] = sum_m B[o, m, k] A[m, i]``, ``b = b_B + sum_{m,k} B[o, m, k]
    b_A[m]``, ``B``'s stride and dilation, padding ``p_A + p_B``. It needs ``p_B = 0`` or ``A`` without bias or
    padding: ``B``'s zero padding of ``A x`` is not ``A`` of a zero-padded ``x`` when ``A`` adds a bias.

  The result is one dense conv (groups 1): a depthwise ``k x k`` then a pointwise conv become one ``k x k`` conv.
* **two linears into one**: ``W = W_B W_A``, ``b = W_B b_A + b_B``.

Each weight op left records the ops folded into it (``ReparameterizeResult.folds``), for the report.

Precondition: none. Postcondition: no weight op reads another weight op's output directly where one of the two
is pointwise (each such pair would have been composed), except where recorded as skipped, with why.
In float32 the rewrites are exact up to rounding (the tests require 1e-4 relative on the model's output).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spikec.errors import PassError
from spikec.ir import Graph, Node
from spikec.passes.base import AnalysisCache, PassResult, Skip, Transform, erase_dead_nodes, single_user
from spikec.passes.fold_batchnorm import _find_weight_op, _fold

__all__ = ["Reparameterize", "ReparameterizeResult", "Fold"]

_CONVS = ("conv1d", "conv2d")
_FILL_TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Fold:
    """One weight op of the result and the ops of the traced graph folded into it, in the order they ran."""

    node: Node
    folded: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.node.describe()}: {' -> '.join(self.folded)}"


@dataclasses.dataclass(frozen=True)
class ReparameterizeResult(PassResult):
    folds: tuple[Fold, ...] = ()


def _pointwise(node: Node, allow_padding: bool = False) -> bool:
    a = node.attrs
    return (node.op in _CONVS and all(k == 1 for k in a["weight"].shape[2:]) and all(s == 1 for s in a["stride"])
            and (allow_padding or all(p == 0 for p in a["padding"])))


def _dense(node: Node) -> np.ndarray:
    """A conv's weight ``[Cout, Cin, k...]`` with its groups expanded into a block-diagonal dense weight."""
    w, groups = node.attrs["weight"].astype(np.float64), node.attrs["groups"]
    if groups == 1:
        return w
    cout, cin_group = w.shape[:2]
    dense = np.zeros((cout, cin_group * groups, *w.shape[2:]))
    per_group = cout // groups
    for g in range(groups):
        rows = slice(g * per_group, (g + 1) * per_group)
        dense[rows, g * cin_group:(g + 1) * cin_group] = w[rows]
    return dense


def _bias(node: Node) -> np.ndarray:
    b = node.attrs["bias"]
    return np.zeros(node.attrs["weight"].shape[0]) if b is None else b.astype(np.float64)


def _compose_convs(a: Node, b: Node) -> dict | None:
    """The attributes of one conv computing ``b(a(x))``, or None when the pair has no exact single conv."""
    wa, wb = _dense(a), _dense(b)
    if _pointwise(b):
        matrix = wb.reshape(wb.shape[:2])
        weight = np.einsum("om,mi...->oi...", matrix, wa)
        bias = matrix @ _bias(a) + _bias(b)
        geometry = {k: a.attrs[k] for k in ("stride", "padding", "dilation")}
    elif _pointwise(a, allow_padding=True) and all(d == 1 for d in a.attrs["dilation"]):
        padded_b = any(p for p in b.attrs["padding"])
        if padded_b and (a.attrs["bias"] is not None and np.any(a.attrs["bias"]) or any(a.attrs["padding"])):
            return None
        weight = np.einsum("om...,mi->oi...", wb, wa.reshape(wa.shape[:2]))
        bias = _bias(b) + wb.reshape(*wb.shape[:2], -1).sum(axis=2) @ _bias(a)
        geometry = {"stride": b.attrs["stride"], "dilation": b.attrs["dilation"],
                    "padding": tuple(p + q for p, q in zip(a.attrs["padding"], b.attrs["padding"]))}
    else:
        return None
    has_bias = a.attrs["bias"] is not None or b.attrs["bias"] is not None
    return {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32) if has_bias else None,
            **geometry, "groups": 1}


class _Rewriter:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.folded: dict[Node, list[str]] = {}

    def history(self, node: Node) -> list[str]:
        return self.folded.pop(node, None) or [f"{node.op} {node.module}".strip()]

    def replace(self, old: Node, op: str, inputs, attrs: dict, locs, history: list[str]) -> Node:
        new = self.graph.create_node(op, inputs, attrs, tuple(dict.fromkeys(locs)), before=old)
        self.graph.replace_all_uses(old.output, new.output)
        self.folded[new] = history
        return new

    def rewrite(self, node: Node) -> bool:
        if node.op == "batchnorm":
            user = single_user(node)
            op, _ = _find_weight_op(node)
            if user is None or op is None or user.op not in (*_CONVS, "linear", "pad"):
                return False
            history = self.history(op) + self.history(node)
            _fold(op, node)
            self.graph.replace_all_uses(node.output, node.inputs[0])
            self.graph.erase(node)
            self.folded[op] = history
            return True
        if node.op == "pad":
            return self._hoist_pad(node)
        if node.op in _CONVS:
            return self._absorb_pad(node) or self._compose(node)
        if node.op == "linear":
            return self._compose_linears(node)
        return False

    def _hoist_pad(self, pad: Node) -> bool:
        conv = pad.inputs[0].producer
        if not _pointwise(conv) or single_user(conv) is not pad:
            return False
        if not np.allclose(pad.attrs["fill"], _bias(conv), rtol=_FILL_TOLERANCE, atol=_FILL_TOLERANCE):
            return False
        zero_pad = self.graph.create_node("pad", [conv.inputs[0]], {"pads": pad.attrs["pads"],
                                          "fill": np.zeros_like(pad.attrs["fill"], shape=conv.inputs[0].shape[2])},
                                          pad.locs, before=conv)
        self.folded[zero_pad] = self.history(pad)
        self.replace(pad, conv.op, [zero_pad.output], dict(conv.attrs), conv.locs, self.history(conv))
        return True

    def _absorb_pad(self, conv: Node) -> bool:
        pad = conv.inputs[0].producer
        pads = pad.attrs["pads"] if pad.op == "pad" else ()
        spatial = conv.attrs["weight"].ndim - 2
        if (pad.op != "pad" or np.any(pad.attrs["fill"]) or len(pads) != 2 * spatial
                or any(pads[2 * i] != pads[2 * i + 1] for i in range(spatial)) or single_user(pad) is not conv):
            return False
        padding = tuple(p + pads[2 * i] for i, p in enumerate(conv.attrs["padding"]))
        self.replace(conv, conv.op, [pad.inputs[0]], dict(conv.attrs, padding=padding), conv.locs + pad.locs,
                     self.history(pad) + self.history(conv))
        return True

    def _compose(self, b: Node) -> bool:
        a = b.inputs[0].producer
        if a.op != b.op or single_user(a) is not b:
            return False
        attrs = _compose_convs(a, b)
        if attrs is None:
            return False
        self.replace(b, b.op, [a.inputs[0]], attrs, a.locs + b.locs, self.history(a) + self.history(b))
        return True

    def _compose_linears(self, b: Node) -> bool:
        a = b.inputs[0].producer
        if a.op != "linear" or single_user(a) is not b:
            return False
        wa, wb = a.attrs["weight"].astype(np.float64), b.attrs["weight"].astype(np.float64)
        has_bias = a.attrs["bias"] is not None or b.attrs["bias"] is not None
        bias = (wb @ _bias(a) + _bias(b)).astype(np.float32) if has_bias else None
        self.replace(b, "linear", [a.inputs[0]], {"weight": (wb @ wa).astype(np.float32), "bias": bias},
                     a.locs + b.locs, self.history(a) + self.history(b))
        return True


def _chained(graph: Graph) -> list[tuple[Node, Node]]:
    """Weight ops reading a weight op's output directly: what is left unfolded."""
    return [(n, n.inputs[0].producer) for n in graph.nodes
            if n.op in (*_CONVS, "linear") and n.inputs[0].producer.op in (*_CONVS, "linear")]


@dataclasses.dataclass(frozen=True)
class Reparameterize(Transform):
    """Fold chains of convs, batch norms and pads between two weight ops into one weight op.

    In place; the rewrites and their math are in the module docstring. Requires: nothing beyond a verified
    graph. Ensures: every weight op still reading another weight op's output is recorded as skipped, with why."""

    name = "reparameterize"

    def apply(self, graph: Graph, analyses: AnalysisCache) -> ReparameterizeResult:
        rewriter = _Rewriter(graph)
        changed = False
        while any([rewriter.rewrite(n) for n in list(graph.nodes) if n.graph is graph]):
            changed = True
            erase_dead_nodes(graph)
        folds = tuple(Fold(node, tuple(history)) for node, history in rewriter.folded.items()
                      if node.graph is graph and len(history) > 1)
        skipped = tuple(Skip(b, f"not folded with {a.describe()}: neither is a pointwise op whose fold is exact "
                                "(or the first has other users)") for b, a in _chained(graph))
        return ReparameterizeResult(graph, changed, skipped, folds)

    def ensures(self, graph: Graph, result: PassResult) -> None:
        explained = {s.node for s in result.skipped}
        left = next((b for b, _ in _chained(graph) if b not in explained), None)
        if left is not None:
            raise PassError(f"{left.describe()} still reads a weight op's output, and no Skip says why")
