"""intsim's integer rules for the ops Lava has no process for, written once (docs/design.md, §5).

This module is the interface between intsim and spikec's own Lava processes: intsim's interpreter applies these
functions to whole ``[T, B, ...]`` values (``interpreter.INT_RULES`` adapts an IR node's attributes to their
parameters), and the process models of ``backends/lava/processes/models.py`` import them by name and apply them to
one step, a ``[1, 1, ...]`` slice, with the process's parameters. A rule takes arrays and named attributes, never an
IR node. Values are ``int64`` arrays holding int32 values; the int32 wraps are those of Lava's InPorts and channels
(:func:`.fixed_point.wrap_int32`)::

    add            a + b                                    (int32, wraps: Lava sums an InPort in int32)
    mul, and_not   a * b, (1 - a) * b                       (int32)
    gain           x * factor                               (int32, wraps)
    matmul         exact integer product, then int32 wrap   (spike counts; exact float BLAS when the bound allows)
    reduce_sum     exact integer sum, int32 wrap (int64 when ``wide``: the host readout)
    maxpool        integer max over windows (padding never wins)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spikec.backends.intsim.fixed_point import exact_dtype, wrap_int32

__all__ = ["add", "mul", "and_not", "gain", "matmul", "reduce_sum", "maxpool"]
"""The rules; the process models import those of the ops that can run on the embedded cores. :func:`exact_matmul`
and :func:`peak` are shared with the interpreter's ``qdense`` and ``qconv2d``."""


def peak(a: np.ndarray) -> int:
    """The largest magnitude in ``a`` (0 for an empty array)."""
    return int(np.abs(a).max(initial=0))


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of integer arrays, exactly: in the float type :func:`.fixed_point.exact_dtype` allows (its results
    are exact integers, so the cast back loses nothing), else in int64."""
    dtype = exact_dtype(peak(a) * peak(b) * a.shape[-1])
    if dtype.kind != "f":
        return np.matmul(a, b)
    product = torch.matmul(torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)),
                           torch.from_numpy(np.ascontiguousarray(b, dtype=dtype)))
    return product.numpy().astype(np.int64)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` in int32 (broadcasting), as Lava's InPort sums the messages that arrive at it."""
    return wrap_int32(a + b)


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a * b`` in int32 (broadcasting)."""
    return wrap_int32(a * b)


def and_not(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SEW-IAND ``(1 - a) * b`` in int32."""
    return wrap_int32((1 - a) * b)


def gain(x: np.ndarray, factor: int) -> np.ndarray:
    """``x * factor`` in int32."""
    return wrap_int32(x * factor)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The exact product over the last two axes (:func:`exact_matmul`), wrapped to int32."""
    return wrap_int32(exact_matmul(a, b))


def reduce_sum(x: np.ndarray, axes, keepdim: bool, wide: bool = False) -> np.ndarray:
    """The exact sum over ``axes`` (IR axes); the time axis 0 is kept, with length 1, even when summed. The result
    is wrapped to int32, or kept in int64 when ``wide`` (an ``i64`` value of the host readout)."""
    y = x.sum(axis=tuple(axes), keepdims=True)
    drop = tuple(axis for axis in axes if axis != 0 and not keepdim)
    y = np.squeeze(y, axis=drop) if drop else y
    return y if wide else wrap_int32(y)


def maxpool(x: np.ndarray, kernel, stride, padding, dilation, ceil_mode: bool) -> np.ndarray:
    """The max over windows of the last two axes, as PyTorch's ``max_pool2d`` with these attributes (its padding
    is minus infinity, so it never wins); computed in float64, exact for int32 values."""
    lead = x.shape[:-2]
    flat = torch.from_numpy(x.reshape(-1, 1, *x.shape[-2:]).astype(np.float64))
    y = F.max_pool2d(flat, kernel, stride, padding, dilation, ceil_mode).numpy()
    return y.astype(np.int64).reshape(*lead, *y.shape[-2:])
