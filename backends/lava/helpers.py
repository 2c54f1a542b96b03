"""Weight layouts the process graph derives from the IR's weights when a network is built.

A synapse process's weights are described in the manifest as ``{"$": "layout", "fn": F, "key": K, "args": A}``
(``key`` only when F reads an IR weight): the matrix is ``LAYOUTS[F](W[K], *A)``. ``lava_net.py`` imports
these functions, so a generated module, the runtime builder and the resource report build every matrix from the
same arrays in the same way.

Every sparse layout is a CSR matrix from the row-major flattened input to the flattened output (rows: targets),
int32.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse

__all__ = ["LAYOUTS", "layout", "layout_ref", "conv_weight", "ones_kernel", "token_dense", "identity", "part",
           "window", "broadcast", "reduce", "max_tree", "max_tree_levels", "pool_candidates", "uniform_delays"]


def conv_weight(weight, exp=0):
    """A PyTorch conv2d weight (Cout, Cin/groups, kH, kW), or a linear's (Cout, Cin) as a 1x1 kernel, as Lava's
    Conv weight (Cout, X, Y, Cin/groups), scaled by ``2**exp``: Lava convolves (the kernel flipped) where
    PyTorch correlates, X is the width, and Lava's Conv applies no weight exponent of its own, so a
    mantissa-and-exponent weight is stored as the integer it stands for."""
    weight = np.asarray(weight)
    if weight.ndim == 2:
        weight = weight[:, :, None, None]
    flipped = weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1).astype(np.int64) << exp
    return np.ascontiguousarray(flipped.astype(np.int32))


def ones_kernel(channels, kernel):
    """A depthwise Conv kernel of ones, ``(C, X, Y, 1)`` for a PyTorch ``(h, w)`` ``kernel``: every window's sum,
    channel by channel (a spike max-pool's count)."""
    return np.ones((channels, kernel[1], kernel[0], 1), dtype=np.int32)


def token_dense(weight, pre, post):
    """The synapses of a token-wise linear layer: the same (out, in) weights for every position, as the sparse
    block matrix kron(I_pre, kron(W, I_post)) from the row-major flattened input to the flattened output."""
    blocks = scipy.sparse.kron(scipy.sparse.csr_matrix(np.asarray(weight, dtype=np.int32)),
                               scipy.sparse.identity(post, dtype=np.int32), format="csr")
    return scipy.sparse.kron(scipy.sparse.identity(pre, dtype=np.int32), blocks, format="csr").astype(np.int32)


def identity(size, weight=1):
    """One-to-one synapses of one weight (a relay's, a gain's)."""
    return (scipy.sparse.identity(size, dtype=np.int32, format="csr") * int(weight)).astype(np.int32)


def _selection(targets: np.ndarray, sources: np.ndarray, shape: tuple[int, int], weight: int):
    data = np.full(targets.size, int(weight), np.int32)
    return scipy.sparse.csr_matrix((data, (targets.ravel(), sources.ravel())), shape=shape, dtype=np.int32)


def part(in_shape, axis, start, stop):
    """A slice ``start:stop`` along ``axis`` of an array of ``in_shape``: each output element reads the input
    element ``start`` further along that axis, weight 1."""
    index = np.arange(math.prod(in_shape)).reshape(tuple(in_shape))
    sources = np.take(index, np.arange(start, stop), axis=axis)
    return _selection(np.arange(sources.size), sources, (sources.size, index.size), 1)


def window(in_shape, out_shape, kernel, stride, padding, dilation):
    """The pooling windows of a (C, H, W) map: output (c, i, j) reads every input (c, y, x) of its window
    (``y = i * stride - padding + a * dilation`` for ``a < kernel``, inside the map), weight 1. Padding reads
    nothing."""
    (c, h, w), (_, ho, wo) = in_shape, out_shape
    rows, cols = [], []
    for a in range(kernel[0]):
        ys = np.arange(ho) * stride[0] - padding[0] + a * dilation[0]
        for b in range(kernel[1]):
            xs = np.arange(wo) * stride[1] - padding[1] + b * dilation[1]
            valid = (ys[:, None] >= 0) & (ys[:, None] < h) & (xs[None, :] >= 0) & (xs[None, :] < w)
            oi, oj = np.nonzero(valid)
            for ch in range(c):
                rows.append((ch * ho + oi) * wo + oj)
                cols.append((ch * h + ys[oi]) * w + xs[oj])
    targets, sources = np.concatenate(rows), np.concatenate(cols)
    return _selection(targets, sources, (c * ho * wo, c * h * w), 1)


def broadcast(aligned_shape, out_shape, weight=1):
    """Fan-out: every output element reads the input element numpy broadcasting gives it, the input having
    ``aligned_shape`` (its shape with size-1 axes where the output repeats it)."""
    size = math.prod(aligned_shape)
    sources = np.broadcast_to(np.arange(size).reshape(aligned_shape), tuple(out_shape))
    return _selection(np.arange(sources.size), sources, (sources.size, size), weight)


def reduce(in_shape, kept_shape, weight=1):
    """A sum over the axes where ``kept_shape`` is 1: every input element feeds its output element."""
    out_size = math.prod(kept_shape)
    targets = np.broadcast_to(np.arange(out_size).reshape(kept_shape), tuple(in_shape))
    return _selection(targets, np.arange(targets.size), (out_size, targets.size), weight)


def pool_candidates(in_shape, out_shape, kernel, stride, padding, dilation):
    """For each window offset, the input index every output position reads (-1 where the offset falls in the
    padding), as an int array of the output's size."""
    (c, h, w), (_, ho, wo) = in_shape, out_shape
    channels = np.arange(c)[:, None, None]
    for a in range(kernel[0]):
        ys = (np.arange(ho) * stride[0] - padding[0] + a * dilation[0])[None, :, None]
        for b in range(kernel[1]):
            xs = (np.arange(wo) * stride[1] - padding[1] + b * dilation[1])[None, None, :]
            valid = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            yield np.where(valid, (channels * h + ys) * w + xs, -1).ravel()


def _rows(matrix, keep: np.ndarray):
    return scipy.sparse.diags(keep.astype(np.int32)) @ matrix


@functools.lru_cache(maxsize=16)
def _max_tree(in_shape, out_shape, kernel, stride, padding, dilation):
    """The max of every window as a tree of ``max(a, b) = a + relu(b - a)``, each candidate a linear form of
    the input (source 0) and the ReLU neurons of earlier levels (source ``l``). Returns the ReLU inputs of each
    level ``l = 1..L`` and the output, as {target: {source: matrix}}; padding never wins (where one side of a
    pair is padding, the pair is the other side, with no ReLU)."""
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    sizes = {0: n_in}
    forms = []
    for index in pool_candidates(in_shape, out_shape, kernel, stride, padding, dilation):
        valid = index >= 0
        forms.append(({0: _selection(np.nonzero(valid)[0], index[valid], (n_out, n_in), 1)}, valid))
    targets, level = {}, 0
    while len(forms) > 1:
        level += 1
        pairs = len(forms) // 2
        sizes[level] = pairs * n_out
        relu_in = {s: [] for s in range(level)}
        merged = []
        for p in range(pairs):
            (a, a_valid), (b, b_valid) = forms[2 * p], forms[2 * p + 1]
            both = a_valid & b_valid
            for s in range(level):
                zero = scipy.sparse.csr_matrix((n_out, sizes[s]), dtype=np.int32)
                relu_in[s].append(_rows(b.get(s, zero) - a.get(s, zero), both))
            form = {s: _rows(m, a_valid) for s, m in a.items()}
            for s, m in b.items():
                form[s] = form.get(s, scipy.sparse.csr_matrix((n_out, sizes[s]), dtype=np.int32)) + \
                    _rows(m, b_valid & ~a_valid)
            form[level] = _selection(np.arange(n_out), p * n_out + np.arange(n_out), (n_out, sizes[level]), 1)
            form[level] = _rows(form[level], both)
            merged.append((form, a_valid | b_valid))
        targets[level] = {s: scipy.sparse.vstack(m, format="csr") for s, m in relu_in.items()}
        forms = merged + forms[2 * pairs:]
    targets[level + 1] = forms[0][0]
    return targets


def max_tree(in_shape, out_shape, kernel, stride, padding, dilation, target, source, weight=1):
    """One synapse group of the max tree (:func:`_max_tree`): from ``source`` (0: the input; ``l``: the ReLU
    neurons of level ``l``) into ``target`` (a level's ReLU neurons, or the output at ``L + 1``), scaled by
    ``weight``."""
    tree = _max_tree(tuple(in_shape), tuple(out_shape), tuple(kernel), tuple(stride), tuple(padding),
                     tuple(dilation))
    matrix = tree[target][source] * int(weight)
    matrix.eliminate_zeros()
    return scipy.sparse.csr_matrix(matrix, dtype=np.int32)


def max_tree_levels(kernel) -> int:
    """The ReLU levels ``L`` of the max tree over a window of ``kernel``: ``ceil(log2(kh * kw))``."""
    return (math.prod(kernel) - 1).bit_length()


def uniform_delays(weights, delay):
    """The delay matrix of a DelaySparse whose synapses all wait ``delay`` steps: the weights' sparsity, so
    that Lava stores one delay per synapse rather than one per (row, column) pair."""
    delays = scipy.sparse.csr_matrix(weights, copy=True).astype(np.int64)
    delays.data[:] = delay
    return delays


LAYOUTS: dict[str, Callable] = {f.__name__: f for f in (conv_weight, ones_kernel, token_dense, identity, part, window,
                                                         broadcast, reduce, max_tree)}
"""Layout name (``fn`` of a ``layout`` reference) -> the function that builds it."""


def layout_ref(fn: str, *args, key: str | None = None) -> dict:
    """The manifest's reference to ``LAYOUTS[fn](W[key], *args)`` (``key`` when the layout reads an IR weight)."""
    if fn not in LAYOUTS:
        raise KeyError(f"no weight layout {fn!r}")
    ref = {"$": "layout", "fn": fn}
    if key is not None:
        ref["key"] = key
    ref["args"] = [list(a) if isinstance(a, (tuple, list)) else a for a in args]
    return ref


def layout(ref: Mapping, weights: Mapping[str, np.ndarray]):
    """The matrix a ``layout`` reference describes."""
    fn = LAYOUTS[ref["fn"]]
    args: Sequence = [tuple(a) if isinstance(a, list) else a for a in ref["args"]]
    return fn(weights[ref["key"]], *args) if "key" in ref else fn(*args)
