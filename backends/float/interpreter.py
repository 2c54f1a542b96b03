"""The float interpreter: runs an IR graph with PyTorch's float32 kernels.

It is the reference every float-preserving pass is tested against, and it reproduces the traced
model's output exactly: each op makes the same torch call the model made, on the same layout (a conv
runs on the time-merged batch ``[T*B, C, H, W]``, a neuron on ``[T, B, ...]`` with :mod:`spikec.nn`'s
arithmetic, which is spikingjelly's). The batch size may differ from the one the graph was traced with.

Rules are a table keyed by op name (``EVAL_RULES``); every op in the registry has one. Values are freed
after their last use unless ``keep_values`` asks for them (e.g. to compare per-layer spikes).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import spikec.nn as snn
from spikec.errors import InputError, SpikecError
from spikec.ir import Graph, Node

__all__ = ["run_float", "EVAL_RULES", "FloatRun"]

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


def _batchnorm(node, inputs):
    (x,), a = inputs, node.attrs
    moved = _merged(torch.movedim(x, a["axis"], 2))
    y = F.batch_norm(moved, _t(a["running_mean"]), _t(a["running_var"]), _t(a["weight"]), _t(a["bias"]),
                     False, 0.0, a["eps"])
    return torch.movedim(_split(y, x.movedim(a["axis"], 2)), 2, a["axis"])


def _lif(node, inputs):
    a = node.attrs
    return snn.lif_sequence(inputs[0], a["tau"], a["v_threshold"], a["v_reset"], a["decay_input"])


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
    (x,), axes, keepdim = inputs, node.attrs["axes"], node.attrs["keepdim"]
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
    "if": _if,
    "add": lambda node, inputs: inputs[0] + inputs[1],
    "mul": lambda node, inputs: inputs[0] * inputs[1],
    "and_not": lambda node, inputs: (1.0 - inputs[0]) * inputs[1],
    "scale": lambda node, inputs: inputs[0] * node.attrs["factor"],
    "matmul": lambda node, inputs: inputs[0] @ inputs[1],
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "mean": _mean_rule,
    "sum": _reduce(torch.sum),
    "reshape": lambda node, inputs: inputs[0].reshape(*inputs[0].shape[:2], *node.attrs["shape"]),
    "transpose": lambda node, inputs: inputs[0].permute(*node.attrs["perm"]),
}


class FloatRun:
    """The outputs of one run and, with ``keep_values``, every node's value keyed by node."""

    def __init__(self, outputs: list[torch.Tensor], values: dict[Node, torch.Tensor]):
        self.outputs = outputs
        self.values = values

    def of(self, node: Node) -> torch.Tensor:
        return self.values[node]


def _last_uses(graph: Graph) -> dict[int, list[Node]]:
    last: dict[int, Node] = {}
    for node in graph.nodes:
        for value in node.inputs:
            last[id(value.producer)] = node
    freed: dict[int, list[Node]] = {}
    for producer_id, user in last.items():
        freed.setdefault(id(user), []).append(producer_id)
    return freed


def _bind_input(node: Node, tensor: Any) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.as_tensor(np.asarray(tensor))
    x = tensor.to(torch.float32)
    want = node.output.type.sample_shape if node.attrs["layout"] == "B" else node.output.type.shape[2:]
    lead = 1 if node.attrs["layout"] == "B" else 2
    if x.dim() != lead + len(want) or tuple(x.shape[lead:]) != tuple(want):
        expected = ["B", *want] if lead == 1 else ["T", "B", *want]
        raise InputError(f"input {node.attrs['name']} expects shape {expected}, got {list(x.shape)}")
    return x.unsqueeze(0) if node.attrs["layout"] == "B" else x


def run_float(graph: Graph, inputs: Sequence[Any], keep_values: bool = False) -> FloatRun:
    """Run ``graph`` on ``inputs`` (one tensor per ``input`` node, in PyTorch's layout)."""
    input_nodes = graph.input_nodes
    if len(inputs) != len(input_nodes):
        raise InputError(f"the graph takes {len(input_nodes)} input(s), got {len(inputs)}")
    env: dict[int, torch.Tensor] = {}
    kept: dict[Node, torch.Tensor] = {}
    frees = _last_uses(graph)
    outputs: list[torch.Tensor] = []
    with torch.no_grad():
        for node in graph.nodes:
            if node.op == "input":
                result = _bind_input(node, inputs[input_nodes.index(node)])
            elif node.op == "output":
                args = [env[id(v.producer)] for v in node.inputs]
                outputs = [a if keep else a.squeeze(0) for a, keep in zip(args, node.attrs["layouts"])]
                break
            else:
                try:
                    result = EVAL_RULES[node.op](node, [env[id(v.producer)] for v in node.inputs])
                except SpikecError:
                    raise
                except Exception as exc:
                    raise SpikecError(f"float interpreter failed at {node.describe()}: {exc}") from exc
            env[id(node)] = result
            if keep_values:
                kept[node] = result
            if not keep_values:
                for producer_id in frees.get(id(node), []):
                    env.pop(producer_id, None)
    return FloatRun(outputs, kept)
