"""intsim: run a quantized IR graph with integer arithmetic only, in synchronous time (docs/design.md, §5–6).

Synchronous time: at step t every op sees step t of its inputs. The graph is feed-forward, so each op is
applied to its whole ``[T, B, ...]`` input at once (every step and sample in one vectorised call); only the
neuron carries state across steps, and loops over t inside its rule. Lava's pipelined run of the same
network, shifted by each layer's depth, must give the same spikes (the Lava backend's job).

Every rule uses the kernels of :mod:`.kernels` (Lava's LIF, Dense and Conv, proven bit-identical to Lava)
or, for ops Lava has no process for, the integer rules of :mod:`.rules` (``qgain``, ``add``, ``mul``, ``and_not``,
``matmul``, ``sum``, ``maxpool``), which spikec's own Lava processes call too. Written here:

    quantize       floor(x * 2**exp + 0.5), clipped to [lo, hi]   (the host's input encoding)
    views          move elements, change nothing
    qdense (host)  exact int64 product, floor shift by weight_exp, + bias

Values are int64 numpy arrays holding the stated width; the loop is :mod:`spikec.ir.interpret`'s. These are the
reference rules (``INT_RULES``). :func:`run_intsim` runs the proven rules of :mod:`.proven` instead when the graph's
range report may be relied on: the same values, on torch tensors, without the wraps and scans the report proves
unneeded.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from spikec.backends.intsim.fixed_point import (ACTIVATION_SHIFT, DU_NO_CURRENT_MEMORY, MESSAGE_LIMIT, U_EXACT,
                                                decay, exact_dtype, saturate, scaled_activation, scaled_threshold,
                                                shift_floor, wrap24, wrap24_once, wrap_int32)
from spikec.backends.intsim.kernels import (LifParams, LifState, conv, conv_weight_from_torch, dense,
                                            image_from_torch, image_to_torch, lif_step, xy_from_hw)
from spikec.backends.intsim.proven import PROVEN_RULES, Proof, proof_for, to_numpy
from spikec.backends.intsim.rules import add, and_not, exact_matmul, gain, matmul, maxpool, mul, peak, reduce_sum
from spikec.ir import Graph, Node
from spikec.ir.interpret import Run, interpret

__all__ = ["run_intsim", "INT_RULES", "lif_no_current_memory"]


def _quantize(node, inputs):
    (x,), a = inputs, node.attrs
    return np.clip(np.floor(x.astype(np.float64) * 2.0 ** a["exp"] + 0.5), a["lo"], a["hi"]).astype(np.int64)


def _qconv2d(node, inputs):
    """Lava's Conv (:func:`.kernels.conv`, a flipped-kernel convolution in Lava's layout) equals PyTorch's
    cross-correlation in PyTorch's layout; computed with ``F.conv2d`` in an exact float type when the bound
    allows, else by the kernel itself. Then wrap24 and the bias."""
    (x,), a = inputs, node.attrs
    T, B = x.shape[:2]
    w = a["weight"]
    bound = peak(x) * peak(w) * int(np.prod(w.shape[1:]))
    dtype = exact_dtype(bound)
    if dtype.kind == "f":
        flat = torch.from_numpy(x.reshape(T * B, *x.shape[2:]).astype(dtype))
        out = F.conv2d(flat, torch.from_numpy(w.astype(dtype)), None, a["stride"], a["padding"], a["dilation"],
                       a["groups"])
        y = out.numpy().astype(np.int64)
        y = y if bound < MESSAGE_LIMIT else wrap24(y)  # below 2**23 the wrap is an identity
    else:
        lava = conv(image_from_torch(x.reshape(T * B, *x.shape[2:])), conv_weight_from_torch(w),
                    stride=xy_from_hw(a["stride"]), padding=xy_from_hw(a["padding"]),
                    dilation=xy_from_hw(a["dilation"]), groups=a["groups"], graded=True)
        y = image_to_torch(lava)
    y = y.reshape(T, B, *y.shape[1:])
    if a["bias"] is not None:
        y = wrap_int32(y + a["bias"].astype(np.int64).reshape(1, 1, -1, 1, 1))
    return y


def _qdense(node, inputs):
    """Lava's Dense (:func:`.kernels.dense`): binary input sums weight columns, graded input is a wrapping
    int32 dot; the sum is floor-shifted by ``weight_exp`` and cast to int32. Exact float BLAS when the
    bound allows (the wrap then never happens, as range analysis proves), else the kernel. The host
    readout is the same product in int64."""
    (x,), a = inputs, node.attrs
    moved = np.moveaxis(x, a["axis"], -1)
    flat = moved.reshape(-1, moved.shape[-1])
    w = a["weight"].astype(np.int64)
    if a["host"]:
        y = shift_floor(exact_matmul(flat, w.T), a["weight_exp"])
    else:
        operand = flat if a["graded"] else (flat != 0).astype(np.int64)
        if exact_dtype(peak(operand) * peak(w) * w.shape[1]).kind != "f":
            y = dense(flat, a["weight"], a["weight_exp"], graded=a["graded"])
        else:
            y = wrap_int32(shift_floor(wrap_int32(exact_matmul(operand, w.T)), a["weight_exp"]))
    if a["bias"] is not None:
        y = y + a["bias"].astype(np.int64)
        y = y if a["host"] else wrap_int32(y)
    return np.moveaxis(y.reshape(*moved.shape[:-1], -1), -1, a["axis"])


def _qlif(node, inputs):
    """Lava's LIF over the time axis: the fused form when ``du = 4095`` (what quantization emits), else
    the kernel's :func:`.kernels.lif_step` itself."""
    (x,), a = inputs, node.attrs
    if a["du"] == DU_NO_CURRENT_MEMORY:
        return lif_no_current_memory(x, a["dv"], a["vth"])
    params = LifParams(du=a["du"], dv=a["dv"], vth=a["vth"])
    state = LifState.zeros(x.shape[1:])
    spikes = np.empty_like(x)
    for t in range(x.shape[0]):
        state, fired = lif_step(state, x[t], params, time_step=t + 1)
        spikes[t] = fired
    return spikes


def lif_no_current_memory(x: np.ndarray, dv: int, vth: int) -> np.ndarray:
    """:func:`.kernels.lif_step` for ``du = 4095`` and no bias, fused over the time axis of ``x``.

    ``du = 4095`` (:data:`.fixed_point.DU_NO_CURRENT_MEMORY`) zeroes the current's memory (``decay(u, 4096) = 0``),
    so the kernel's step reduces to ``u = wrap24_once(scaled_activation(a))`` and
    ``v = saturate(wrap_int32(decay(v, dv) + u))``: no current state, no bias. That int32 wrap never acts: after
    its wrap ``u`` lies in ``[-2**31 + 2**24, 2**31 - 2**24)`` and ``|decay(v)| < 2**23``, so it is left out. When
    every ``|a| < 2**17`` (:data:`.fixed_point.U_EXACT`) the wraps of ``u`` are identities too, and ``u = a << 6``.
    Identical to the kernel (tests/backends/test_intsim_rules.py), with fewer passes over memory.
    """
    threshold = scaled_threshold(vth)
    small = peak(x) < U_EXACT
    v = np.zeros(x.shape[1:], dtype=np.int64)
    spikes = np.empty(x.shape, dtype=np.int64)
    for t in range(x.shape[0]):
        u = x[t] << ACTIVATION_SHIFT if small else wrap24_once(scaled_activation(x[t]))
        v = saturate(decay(v, dv) + u)
        fired = v > threshold
        v[fired] = 0
        spikes[t] = fired
    return spikes


def _sum(node, inputs):
    a = node.attrs
    return reduce_sum(inputs[0], a["axes"], a["keepdim"], wide=node.output.type.dtype == "i64")


def _maxpool(node, inputs):
    a = node.attrs
    return maxpool(inputs[0], a["kernel"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"])


INT_RULES: dict[str, Callable[[Node, list[np.ndarray]], np.ndarray]] = {
    "quantize": _quantize,
    "qconv2d": _qconv2d,
    "qdense": _qdense,
    "qgain": lambda node, inputs: gain(inputs[0], node.attrs["factor"]),
    "qshift": lambda node, inputs: shift_floor(inputs[0], -node.attrs["shift"]),
    "qlif": _qlif,
    "add": lambda node, inputs: add(inputs[0], inputs[1]),
    "mul": lambda node, inputs: mul(inputs[0], inputs[1]),
    "and_not": lambda node, inputs: and_not(inputs[0], inputs[1]),
    "matmul": lambda node, inputs: matmul(inputs[0], inputs[1]),
    "sum": _sum,
    "maxpool": _maxpool,
    "repeat_time": lambda node, inputs: np.repeat(inputs[0], node.attrs["T"], axis=0),
    "to_time_major": lambda node, inputs: np.swapaxes(inputs[0][0], 0, 1),
    "reshape": lambda node, inputs: inputs[0].reshape(*inputs[0].shape[:2], *node.attrs["shape"]),
    "slice": lambda node, inputs: np.take(inputs[0], np.arange(node.attrs["start"], node.attrs["stop"]),
                                          axis=node.attrs["axis"]),
    "transpose": lambda node, inputs: np.transpose(inputs[0], node.attrs["perm"]),
}


def _bind_input(node: Node, data: Any) -> np.ndarray:
    x = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    x = x.astype(np.float32)
    return x[None] if node.attrs["layout"] == "B" else x


def run_intsim(graph: Graph, inputs: Sequence[Any], keep_values: bool = False, ranges=None,
               reference: bool = False) -> Run:
    """Run the quantized ``graph`` on ``inputs`` (one float array per ``input`` node, PyTorch layout).

    ``ranges`` is the graph's range report (``CompiledModel.ranges``: what the compile proved); without it the range
    analysis runs here. When the report may be relied on (:func:`.proven.proof_for`) the proven rules of
    :mod:`.proven` run, on torch tensors; else, or with ``reference``, the reference rules (``INT_RULES``). Both
    give the same int64 arrays (``tests/backends/test_intsim_proven.py``).
    """
    proof = None if reference else _proof(graph, ranges)
    if proof is None:
        return interpret(graph, inputs, INT_RULES, _bind_input, "intsim", keep_values)
    rules = {op: functools.partial(rule, proof) for op, rule in PROVEN_RULES.items()}
    run = interpret(graph, inputs, rules, lambda node, data: torch.from_numpy(_bind_input(node, data)), "intsim",
                    keep_values)
    return Run([to_numpy(o) for o in run.outputs], {node: to_numpy(v) for node, v in run.values.items()})


def _proof(graph: Graph, ranges) -> Proof | None:
    if ranges is None:
        from spikec.errors import SpikecError
        from spikec.passes.range_analysis import analyze_ranges

        try:
            ranges = analyze_ranges(graph)
        except SpikecError:
            return None  # not a graph the analysis reads: the reference rules name what they cannot run
    return proof_for(graph, ranges, INT_RULES)
