"""The float interpreter: runs an IR graph with PyTorch's float32 kernels.

It is the reference every float-preserving pass is tested against, and it reproduces the traced
model's output exactly: each op makes the same torch call the model made, on the same layout (a conv
runs on the time-merged batch ``[T*B, C, H, W]``, a neuron on ``[T, B, ...]`` with :mod:`spikec.nn`'s
arithmetic, which is spikingjelly's). The batch size may differ from the one the graph was traced with.

Rules are a table keyed by op name (``EVAL_RULES``) for the shared loop of :mod:`spikec.ir.interpret`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import spikec.nn as snn
from spikec.ir import Graph, Node
from spikec.ir.interpret import Run, interpret

__all__ = ["run_float", "EVAL_RULES"]

Rule = Callable[[Node, list[torch.Tensor]], torch.Tensor]


def _t(array: np.ndarray | None) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(array)


def _merged(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _split(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


def _conv2d(node, inputs):
    (x,), a = inputs, node.attrs
    y = F.conv2d(_merged(x), _t(a["weight"]), _t(a["bias"]), a["stride"], a["padding"], a["dilation"], a["groups"])
    return _split(y, x)


def _conv1d(node, inputs):
    (x,), a = inputs, node.attrs
    y = F.conv1d(_merged(x), _t(a["weight"]), _t(a["bias"]), a["stride"], a["padding"], a["dilation"], a["groups"])
    return _split(y, x)


def _linear(node, inputs):
    (x,) = inputs
    return _split(F.linear(_merged(x), _t(node.attrs["weight"]), _t(node.attrs["bias"])), x)


def _pad(node, inputs):
    """The input inside, each channel's fill on the border: the values a model that pads with zeros and then
    writes its border holds."""
    (x,), a = inputs, node.attrs
    pads = a["pads"]
    torch_pads = [p for i in reversed(range(len(pads) // 2)) for p in pads[2 * i:2 * i + 2]]  # last axis first
    padded = F.pad(x, torch_pads)
    border = F.pad(torch.zeros_like(x), torch_pads, value=1.0)
    fill = _t(a["fill"]).reshape(1, 1, -1, *([1] * (x.dim() - 3)))
    return torch.where(border.bool(), fill, padded)


def _batchnorm(node, inputs):
    (x,), a = inputs, node.attrs
    moved = _merged(torch.movedim(x, a["axis"], 2))
    y = F.batch_norm(moved, _t(a["running_mean"]), _t(a["running_var"]), _t(a["weight"]), _t(a["bias"]),
                     False, 0.0, a["eps"])
    return torch.movedim(_split(y, x.movedim(a["axis"], 2)), 2, a["axis"])


def _lif(node, inputs):
    a = node.attrs
    return snn.lif_sequence(inputs[0], a["tau"], a["v_threshold"], a["v_reset"], a["decay_input"])


def _plif(node, inputs):
    a = node.attrs
    return snn.plif_sequence(inputs[0], a["decay"], a["v_threshold"], a["v_reset"], a["decay_input"])


def _if(node, inputs):
    return snn.if_sequence(inputs[0], node.attrs["v_threshold"], node.attrs["v_reset"])


def _pool_input(x: torch.Tensor) -> torch.Tensor:
    """[T, B, ..., H, W] as [N, C, H, W] (or [N, H, W]) for the 2-D pooling kernels."""
    lead = x.shape[:-2]
    channels = int(np.prod(lead[2:])) if len(lead) > 2 else None
    if channels is None:
        return x.reshape(lead[0] * lead[1], *x.shape[-2:])
    return x.reshape(lead[0] * lead[1], channels, *x.shape[-2:])


def _maxpool(node, inputs):
    (x,), a = inputs, node.attrs
    y = F.max_pool2d(_pool_input(x), a["kernel"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"])
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def _avgpool(node, inputs):
    (x,), a = inputs, node.attrs
    y = F.avg_pool2d(_pool_input(x), a["kernel"], a["stride"], a["padding"], a["ceil_mode"],
                     a["count_include_pad"], a["divisor"])
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def _reduce(fn):
    def rule(node, inputs):
        (x,), axes, keepdim = inputs, node.attrs["axes"], node.attrs["keepdim"]
        y = fn(x, dim=list(axes), keepdim=True)
        if keepdim:
            return y
        return y.squeeze(tuple(a for a in axes if a != 0)) if any(a != 0 for a in axes) else y
    return rule


def _mean_rule(node, inputs):
    (x,), axes = inputs, node.attrs["axes"]
    # Reduce time alone as the model did (x.mean(0) keeps no axis; the IR keeps it with length 1).
    if tuple(axes) == (0,):
        return x.mean(0, keepdim=True)
    return _reduce(torch.mean)(node, inputs)


EVAL_RULES: dict[str, Rule] = {
    "repeat_time": lambda node, inputs: inputs[0].repeat(node.attrs["T"], *([1] * (inputs[0].dim() - 1))),
    "to_time_major": lambda node, inputs: inputs[0][0].transpose(0, 1),
    "conv2d": _conv2d,
    "conv1d": _conv1d,
    "linear": _linear,
    "batchnorm": _batchnorm,
    "lif": _lif,
    "plif": _plif,
    "if": _if,
    "add": lambda node, inputs: inputs[0] + inputs[1],
    "mul": lambda node, inputs: inputs[0] * inputs[1],
    "and_not": lambda node, inputs: (1.0 - inputs[0]) * inputs[1],
    "scale": lambda node, inputs: inputs[0] * node.attrs["factor"],
    "scale_by": lambda node, inputs: inputs[0] * _t(node.attrs["factors"]),
    "matmul": lambda node, inputs: inputs[0] @ inputs[1],
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "mean": _mean_rule,
    "sum": _reduce(torch.sum),
    "reshape": lambda node, inputs: inputs[0].reshape(*inputs[0].shape[:2], *node.attrs["shape"]),
    "pad": _pad,
    "concat": lambda node, inputs: torch.cat(inputs, dim=node.attrs["axis"]),
    "slice": lambda node, inputs: inputs[0].narrow(node.attrs["axis"], node.attrs["start"],
                                                   node.attrs["stop"] - node.attrs["start"]),
    "transpose": lambda node, inputs: inputs[0].permute(*node.attrs["perm"]),
}


def _bind_input(node: Node, data: Any) -> torch.Tensor:
    x = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    x = x.to(torch.float32)
    return x.unsqueeze(0) if node.attrs["layout"] == "B" else x


def run_float(graph: Graph, inputs: Sequence[Any], keep_values: bool = False, visit=None) -> Run:
    """Run ``graph`` on ``inputs`` (one tensor per ``input`` node, in PyTorch's layout); ``visit(node, args)``
    sees every op's arguments (:func:`~spikec.ir.interpret.interpret`)."""
    with torch.no_grad():
        return interpret(graph, inputs, EVAL_RULES, _bind_input, "float interpreter", keep_values, visit)


def observe_float(graph: Graph, samples: np.ndarray, visit, batch_size: int = 8) -> None:
    """Run the one-input ``graph`` on ``samples`` (batch first, as a calibration holds them) ``batch_size`` at a
    time, ``visit(node, args)`` seeing every op's arguments: what quantize's bias correction measures with."""
    (node,) = graph.input_nodes
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        run_float(graph, [np.moveaxis(batch, 0, 1) if node.attrs["layout"] == "TB" else batch], visit=visit)
