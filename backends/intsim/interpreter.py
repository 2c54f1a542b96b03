"""intsim: run a quantized IR graph with integer arithmetic only, in synchronous time (docs/design.md, §5–6).

Synchronous time: at step t every op sees step t of its inputs. The graph is feed-forward, so each op is
applied to its whole ``[T, B, ...]`` input at once (every step and sample in one vectorised call); only the
neuron carries state across steps, and loops over t inside its rule. Lava's pipelined run of the same
network, shifted by each layer's depth, must give the same spikes (the Lava backend's job).

Every rule uses the kernels of :mod:`.kernels` (Lava's LIF, Dense and Conv, proven bit-identical to Lava)
or, for ops Lava has no process for, the integer rule written here once:

    quantize       floor(x * 2**exp + 0.5), clipped to [lo, hi]
    qgain          x * factor                               (int32, wraps)
    add            a + b                                    (int32, wraps: Lava sums an InPort in int32)
    mul, and_not   a * b, (1 - a) * b                       (int32)
    matmul         exact integer product, then int32 wrap   (spike counts; float64 BLAS when exact)
    sum            exact integer sum, int32 wrap (int64 on the host readout)
    maxpool        integer max over windows (padding never wins)
    views          move elements, change nothing
    qdense (host)  exact int64 product, floor shift by weight_exp, + bias

Values are int64 numpy arrays holding the stated width; the loop is :mod:`spikec.ir.interpret`'s.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from spikec.backends.intsim.fixed_point import shift_floor, wrap24, wrap_int32
from spikec.backends.intsim.kernels import (LifParams, LifState, conv, conv_weight_from_torch, dense,
                                            image_from_torch, image_to_torch, lif_step, xy_from_hw)
from spikec.ir import Graph, Node
from spikec.ir.interpret import Run, interpret

__all__ = ["run_intsim", "INT_RULES", "exact_dtype", "lif_no_current_memory"]

_FLOAT32_EXACT = 2 ** 24
_FLOAT64_EXACT = 2 ** 53


def exact_dtype(bound: int) -> np.dtype | None:
    """The float type whose BLAS sums integers exactly when no partial sum can reach ``bound``: every
    partial sum is then an integer the type represents exactly, whatever the summation order."""
    if bound < _FLOAT32_EXACT:
        return np.dtype(np.float32)
    if bound < _FLOAT64_EXACT:
        return np.dtype(np.float64)
    return None


def _peak(a: np.ndarray) -> int:
    return int(np.abs(a).max(initial=0))


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of integer arrays, exactly: in the float type :func:`exact_dtype` allows (its results are
    exact integers, so the cast back loses nothing), else in int64."""
    dtype = exact_dtype(_peak(a) * _peak(b) * a.shape[-1])
    if dtype is None:
        return np.matmul(a, b)
    product = torch.matmul(torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)),
                           torch.from_numpy(np.ascontiguousarray(b, dtype=dtype)))
    return product.numpy().astype(np.int64)


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
    bound = _peak(x) * _peak(w) * int(np.prod(w.shape[1:]))
    dtype = exact_dtype(bound)
    if dtype is not None:
        flat = torch.from_numpy(x.reshape(T * B, *x.shape[2:]).astype(dtype))
        out = F.conv2d(flat, torch.from_numpy(w.astype(dtype)), None, a["stride"], a["padding"], a["dilation"],
                       a["groups"])
        y = out.numpy().astype(np.int64)
        y = y if bound < 2 ** 23 else wrap24(y)  # below 2**23 the wrap is an identity
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
        y = shift_floor(_exact_matmul(flat, w.T), a["weight_exp"])
    else:
        operand = flat if a["graded"] else (flat != 0).astype(np.int64)
        if exact_dtype(_peak(operand) * _peak(w) * w.shape[1]) is None:
            y = dense(flat, a["weight"], a["weight_exp"], graded=a["graded"])
        else:
            y = wrap_int32(shift_floor(wrap_int32(_exact_matmul(operand, w.T)), a["weight_exp"]))
    if a["bias"] is not None:
        y = y + a["bias"].astype(np.int64)
        y = y if a["host"] else wrap_int32(y)
    return np.moveaxis(y.reshape(*moved.shape[:-1], -1), -1, a["axis"])


def _qlif(node, inputs):
    """Lava's LIF over the time axis: the fused form when ``du = 4095`` (what quantization emits), else
    the kernel's :func:`.kernels.lif_step` itself."""
    (x,), a = inputs, node.attrs
    if a["du"] == 4095:
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

    ``du = 4095`` zeroes the current's memory (``u * (4096 - 4096) = 0``), so each step ``u`` is
    ``wrap24_once(a << 6)`` with the shift in int32. The decay ``v * (4096 - dv)`` is formed in int64 and
    shifted toward zero as ``(p + ((p >> 63) & 4095)) >> 12`` (adding 4095 to a negative product first makes
    the floor shift round toward zero); the sum wraps in int32 and saturates to ±(2**23 - 1). Identical to
    the kernel (tests/backends/test_intsim_rules.py), with fewer passes over memory.
    """
    threshold = vth << 6
    limit = 2 ** 23
    keep = 4096 - dv
    # |a| < 2**17 makes every wrap an identity: u = a << 6 stays inside (-2**23, 2**23), and the sum of
    # the decayed v (|v| < 2**23) and u stays far inside int32. Skipping them then changes nothing.
    small = _peak(x) < 2 ** 17
    v = np.zeros(x.shape[1:], dtype=np.int64)
    spikes = np.empty(x.shape, dtype=np.int64)
    for t in range(x.shape[0]):
        if small:
            u = x[t] << 6
        else:
            u = (x[t].astype(np.int32) << np.int32(6)).astype(np.int64)
            u = np.where(u > limit, u - 2 * limit, np.where(u <= -limit, u + 2 * limit, u))
        product = v * keep
        v = ((product + ((product >> 63) & 4095)) >> 12) + u
        if not small:
            v = ((v + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31
        np.clip(v, -(limit - 1), limit - 1, out=v)
        fired = v > threshold
        v[fired] = 0
        spikes[t] = fired
    return spikes


def _maxpool(node, inputs):
    (x,), a = inputs, node.attrs
    lead = x.shape[:-2]
    flat = torch.from_numpy(x.reshape(-1, 1, *x.shape[-2:]).astype(np.float64))
    y = F.max_pool2d(flat, a["kernel"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"]).numpy()
    return y.astype(np.int64).reshape(*lead, *y.shape[-2:])


def _sum(node, inputs):
    (x,), a = inputs, node.attrs
    y = x.sum(axis=tuple(a["axes"]), keepdims=True)
    drop = tuple(axis for axis in a["axes"] if axis != 0 and not a["keepdim"])
    y = np.squeeze(y, axis=drop) if drop else y
    return y if node.output.type.dtype == "i64" else wrap_int32(y)


def _matmul(node, inputs):
    return wrap_int32(_exact_matmul(inputs[0], inputs[1]))


INT_RULES: dict[str, Callable[[Node, list[np.ndarray]], np.ndarray]] = {
    "quantize": _quantize,
    "qconv2d": _qconv2d,
    "qdense": _qdense,
    "qgain": lambda node, inputs: wrap_int32(inputs[0] * node.attrs["factor"]),
    "qlif": _qlif,
    "add": lambda node, inputs: wrap_int32(inputs[0] + inputs[1]),
    "mul": lambda node, inputs: wrap_int32(inputs[0] * inputs[1]),
    "and_not": lambda node, inputs: wrap_int32((1 - inputs[0]) * inputs[1]),
    "matmul": _matmul,
    "sum": _sum,
    "maxpool": _maxpool,
    "repeat_time": lambda node, inputs: np.repeat(inputs[0], node.attrs["T"], axis=0),
    "to_time_major": lambda node, inputs: np.swapaxes(inputs[0][0], 0, 1),
    "reshape": lambda node, inputs: inputs[0].reshape(*inputs[0].shape[:2], *node.attrs["shape"]),
    "transpose": lambda node, inputs: np.transpose(inputs[0], node.attrs["perm"]),
}


def _bind_input(node: Node, data: Any) -> np.ndarray:
    x = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    x = x.astype(np.float32)
    return x[None] if node.attrs["layout"] == "B" else x


def run_intsim(graph: Graph, inputs: Sequence[Any], keep_values: bool = False) -> Run:
    """Run the quantized ``graph`` on ``inputs`` (one float array per ``input`` node, PyTorch layout)."""
    return interpret(graph, inputs, INT_RULES, _bind_input, "intsim", keep_values)
