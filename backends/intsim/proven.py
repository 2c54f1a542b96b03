"""intsim's proven rules: the integer rules of :mod:`.interpreter` computed on torch tensors, relying on the
compile's range analysis (``passes/range_analysis.py``) instead of scanning values at run time.

A :class:`Proof` holds a :class:`~spikec.passes.range_analysis.RangeReport` that the graph may rely on (see
:func:`proof_for`): no overflow finding other than saturation, float inputs only (their ``quantize`` bounds
everything after it) and every ``and_not`` gated by a value in ``[0, 1]``. Then every interval holds every value
the reference rules compute, every int32 wrap, 24-bit wrap and current wrap of the reference is an identity, and
each rule below gets, from the intervals alone, a bound on every partial sum it forms. A value is a torch tensor
in the cheapest exact type for that bound (:func:`.fixed_point.exact_dtype`: float32 below ``2**24``, float64
below ``2**53``): integer sums and products whose every partial result stays below the bound are exact in any
summation order, and scaling by a power of two is always exact. What each rule relies on:

    quantize       the reference's float64 arithmetic, in torch
    qconv2d/qdense F.conv2d / matmul in the exact type for sum |w| * max |x| per output; a weight exponent is a
                   power-of-two scale then floor; the bias in the exact type for the sum's bound plus max |bias|
    qlif (du=4095) every |a| < 2**17 (so u = a << 6); v * (4096 - dv) / 4096 truncated in float32 when
                   4096 - dv is a power of two (the scale is exact and |decay(v) + u| <= 2**24), else float64;
                   the clamp only where the report says v may saturate
    add, mul, ...  the exact type for the operands' bounds; no wrap
    maxpool        uint8 for spikes (bool, as the LIF emits them), else the value's float type
    views          move elements, change nothing

Where a bound leaves the exact float types, a Dense's int32 wrap could act, or a LIF keeps current memory, the rule
runs the reference rule of :mod:`.interpreter` on int64 arrays. ``tests/backends/test_intsim_proven.py`` proves every
rule equal to the reference, value by value, on every zoo model and on targeted cases.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from spikec.backends.intsim.fixed_point import (ACTIVATION_SHIFT, DECAY_UNITY, DU_NO_CURRENT_MEMORY, FLOAT32_EXACT,
                                                FLOAT64_EXACT, INT32_MAX, V_MAX, scaled_threshold)
from spikec.ir import Graph, Node

__all__ = ["Proof", "proof_for", "PROVEN_RULES", "to_numpy"]


def _exact_type(bound: int) -> torch.dtype:
    """The torch counterpart of :func:`.fixed_point.exact_dtype`."""
    if bound < FLOAT32_EXACT:
        return torch.float32
    return torch.float64 if bound < FLOAT64_EXACT else torch.int64


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """An integer-valued tensor as the int64 array the reference rules hold."""
    return t.to(torch.int64).numpy()


class Proof:
    """What the range report proves about one graph, with the per-run weight tensors and weight bounds."""

    def __init__(self, report, reference: dict[str, Callable]):
        self.report = report
        self.reference = reference
        self.saturating = {p.node for p in report.problems if p.saturation}
        self._weights: dict[tuple[int, torch.dtype, int], torch.Tensor] = {}
        self._row_sums: dict[int, int] = {}

    def bound(self, value) -> int:
        """The largest magnitude ``value`` can take."""
        interval = self.report.of(value)
        return max(abs(interval.lo), abs(interval.hi))

    def binary(self, value) -> bool:
        interval = self.report.of(value)
        return interval.lo >= 0 and interval.hi <= 1

    def weight(self, array: np.ndarray, dtype: torch.dtype, shift: int = 0) -> torch.Tensor:
        """``array << shift`` (a node's weights or bias) as a tensor of ``dtype``, made once per run."""
        key = (id(array), dtype, shift)
        if key not in self._weights:
            self._weights[key] = torch.from_numpy(np.asarray(array, dtype=np.int64) << shift).to(dtype)
        return self._weights[key]

    def row_sum(self, array: np.ndarray) -> int:
        """``max over outputs of sum |w|``: with ``max |x|`` it bounds every partial sum of one output."""
        if id(array) not in self._row_sums:
            w = np.abs(np.asarray(array, dtype=np.int64)).reshape(array.shape[0], -1)
            self._row_sums[id(array)] = int(w.sum(axis=1).max(initial=0))
        return self._row_sums[id(array)]

    def fallback(self, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
        """The reference rule, on int64 arrays."""
        return torch.from_numpy(self.reference[node.op](node, [to_numpy(a) for a in args]))


def proof_for(graph: Graph, report, reference: dict[str, Callable]) -> Proof | None:
    """A :class:`Proof` when ``report`` (a range report of ``graph``) may be relied on, else None."""
    if any(not p.saturation for p in report.problems):
        return None
    for node in graph.nodes:
        if node.op == "input" and not node.output.type.dtype.startswith("f"):
            return None  # a raw integer input is bound as float32 by the reference: nothing is proven of it
        if any(v.type.dtype.startswith("i") and report.get(v) is None for v in node.outputs):
            return None  # a report of another graph
        if node.op == "and_not":
            gate = report.get(node.inputs[0])
            if gate is None or gate.lo < 0 or gate.hi > 1:
                return None
    return Proof(report, reference)


def _bias_bound(bias) -> int:
    return 0 if bias is None else int(np.abs(bias.astype(np.int64)).max(initial=0))


def _add_bias(y: torch.Tensor, bias, bound: int, shape, proof: Proof) -> torch.Tensor:
    """``y + bias`` exactly, ``bound`` bounding ``|y|``; in place when ``y``'s type holds the sum."""
    if bias is None:
        return y
    dtype = _exact_type(bound + _bias_bound(bias))
    y = y.add_(proof.weight(bias, dtype).reshape(shape)) if y.dtype == dtype else y.to(dtype) + proof.weight(
        bias, dtype).reshape(shape)
    return y


def _quantize(proof: Proof, node: Node, args):
    (x,), a = args, node.attrs
    y = torch.floor(x.to(torch.float64) * 2.0 ** a["exp"] + 0.5).clamp_(a["lo"], a["hi"])
    return y.to(_exact_type(proof.bound(node.output)))


def _qconv2d(proof: Proof, node: Node, args):
    (x,), a = args, node.attrs
    w, bias = a["weight"], a["bias"]
    bound = proof.row_sum(w) * proof.bound(node.inputs[0])   # also below 2**23: the 24-bit wrap never acts
    dtype = _exact_type(bound + _bias_bound(bias))           # the bias is one more term of the sum
    if dtype == torch.int64:
        return proof.fallback(node, args)
    T, B = x.shape[:2]
    y = F.conv2d(x.reshape(T * B, *x.shape[2:]).to(dtype), proof.weight(w, dtype),
                 None if bias is None else proof.weight(bias, dtype), a["stride"], a["padding"], a["dilation"],
                 a["groups"])
    return y.reshape(T, B, *y.shape[1:])


def _qdense(proof: Proof, node: Node, args):
    (x,), a = args, node.attrs
    w, exp = a["weight"], a["weight_exp"]
    binary = not a["host"] and not a["graded"]
    bound = proof.row_sum(w) * (1 if binary else proof.bound(node.inputs[0]))
    shifted = bound << exp if exp >= 0 else -(-bound >> -exp)   # |floor(y / 2**k)| <= ceil(bound / 2**k)
    dtype = _exact_type(bound)
    if dtype == torch.int64 or (not a["host"] and max(bound, shifted) > INT32_MAX):  # the int32 wraps must not act
        return proof.fallback(node, args)
    moved = x.movedim(a["axis"], -1)
    flat = moved.reshape(-1, moved.shape[-1])
    if binary and not proof.binary(node.inputs[0]):
        flat = flat != 0
    if exp >= 0 and _exact_type(shifted + _bias_bound(a["bias"])) == dtype:
        # every partial sum of x @ (W << exp) + bias stays below the bound: one exact GEMM with the bias
        w = proof.weight(w, dtype, exp).T
        y = flat.to(dtype) @ w if a["bias"] is None else torch.addmm(proof.weight(a["bias"], dtype), flat.to(dtype), w)
    else:
        y = (flat.to(dtype) @ proof.weight(w, dtype).T).mul_(2.0 ** exp)     # a power-of-two scale: exact
        y = _add_bias(y.floor_() if exp < 0 else y, a["bias"], shifted, (-1,), proof)
    return y.reshape(*moved.shape[:-1], -1).movedim(-1, a["axis"])


def _qlif(proof: Proof, node: Node, args):
    """Lava's LIF with ``du = 4095`` (:func:`.interpreter.lif_no_current_memory`), in place over the time axis."""
    (x,), a = args, node.attrs
    if a["du"] != DU_NO_CURRENT_MEMORY:
        return proof.fallback(node, args)
    keep = DECAY_UNITY - a["dv"]
    dtype = torch.float32 if keep & (keep - 1) == 0 else torch.float64
    scale = keep / DECAY_UNITY                           # k / 4096, exact in either type
    threshold = float(scaled_threshold(a["vth"]))
    saturates = node in proof.saturating
    steps, x = x.shape[0], x.to(dtype)
    spikes = torch.empty(x.shape, dtype=torch.bool)
    v = x[0] * float(1 << ACTIVATION_SHIFT)             # the first step: v = 0 decays to 0
    for t in range(steps):
        if t:
            if keep != DECAY_UNITY:
                v.mul_(scale).trunc_()                   # decay: v * k / 4096 rounded toward zero
            v.add_(x[t], alpha=1 << ACTIVATION_SHIFT)    # |a| < 2**17 (proven): u = a << 6, below 2**23
        if saturates:
            v.clamp_(-V_MAX, V_MAX)
        torch.gt(v, threshold, out=spikes[t])
        if t + 1 < steps:                                # the last reset is never read
            v.masked_fill_(spikes[t], 0)
    return spikes


def _exact(bound: int, *xs: torch.Tensor) -> list[torch.Tensor]:
    dtype = _exact_type(bound)
    return [x.to(dtype) for x in xs]


def _add(proof: Proof, node: Node, args):
    a, b = _exact(sum(proof.bound(v) for v in node.inputs), *args)
    return a + b


def _mul(proof: Proof, node: Node, args):
    a, b = _exact(proof.bound(node.inputs[0]) * proof.bound(node.inputs[1]), *args)
    return a * b


def _and_not(proof: Proof, node: Node, args):
    gate, s = _exact(proof.bound(node.inputs[1]), *args)   # the gate lies in [0, 1] (proof_for)
    return (1 - gate) * s


def _qgain(proof: Proof, node: Node, args):
    (x,) = _exact(proof.bound(node.inputs[0]) * abs(node.attrs["factor"]), *args)
    return x * node.attrs["factor"]


def _qshift(proof: Proof, node: Node, args):
    """``floor(x / 2**shift)``: exact in the type that holds ``x`` (a division by a power of two is exact)."""
    (x,) = _exact(proof.bound(node.inputs[0]), *args)
    return torch.div(x, 2 ** node.attrs["shift"], rounding_mode="floor")


def _matmul(proof: Proof, node: Node, args):
    n = node.inputs[0].type.shape[-1]
    a, b = _exact(n * proof.bound(node.inputs[0]) * proof.bound(node.inputs[1]), *args)
    return a @ b


def _sum(proof: Proof, node: Node, args):
    axes, n = node.attrs["axes"], int(np.prod([node.inputs[0].type.shape[a] for a in node.attrs["axes"]]))
    (x,) = _exact(n * proof.bound(node.inputs[0]), *args)
    y = x.sum(dim=tuple(axes), keepdim=True)
    drop = [axis for axis in axes if axis != 0 and not node.attrs["keepdim"]]
    return y.squeeze(tuple(drop)) if drop else y


def _maxpool(proof: Proof, node: Node, args):
    """The max over windows, exact in any type that holds the values: uint8 for spikes, else a float type (padding
    is skipped, never compared, so it never wins)."""
    (x,), a = args, node.attrs
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    elif not x.is_floating_point():   # int64 from a reference rule
        x = x.to(torch.float32 if proof.bound(node.inputs[0]) < FLOAT32_EXACT else torch.float64)
    y = F.max_pool2d(x.reshape(-1, *x.shape[-3:]), a["kernel"], a["stride"], a["padding"], a["dilation"],
                     a["ceil_mode"])
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def _repeat_time(proof: Proof, node: Node, args):
    (x,), steps = args, node.attrs["T"]
    return x.expand(steps, *x.shape[1:]) if x.shape[0] == 1 else x.repeat_interleave(steps, dim=0)


PROVEN_RULES: dict[str, Callable[[Proof, Node, list[torch.Tensor]], torch.Tensor]] = {
    "quantize": _quantize,
    "qconv2d": _qconv2d,
    "qdense": _qdense,
    "qgain": _qgain,
    "qshift": _qshift,
    "qlif": _qlif,
    "add": _add,
    "mul": _mul,
    "and_not": _and_not,
    "matmul": _matmul,
    "sum": _sum,
    "maxpool": _maxpool,
    "repeat_time": _repeat_time,
    "to_time_major": lambda proof, node, args: args[0][0].transpose(0, 1),
    "reshape": lambda proof, node, args: args[0].reshape(*args[0].shape[:2], *node.attrs["shape"]),
    "slice": lambda proof, node, args: args[0].narrow(node.attrs["axis"], node.attrs["start"],
                                                      node.attrs["stop"] - node.attrs["start"]),
    "transpose": lambda proof, node, args: args[0].permute(*node.attrs["perm"]),
}
"""One proven rule per op of the integer graph (``INT_RULES``' keys)."""
