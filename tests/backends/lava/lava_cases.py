"""Models and checks the Lava backend's tests share.

``zoo_case``: a zoo architecture at a tiny size (embed 32, 2 heads, depth 2, T = 2) with random weights whose
batch norms are calibrated on the test batch and biased upward, so that nearly every neuron layer fires
(random weights with default statistics leave most layers silent, and silent layers prove little).
``digits_case``: a committed trained digits checkpoint and real test images.
``assert_bit_exact``: every probe of a Lava run (each neuron group's spike trains, the readout values) and
the outputs equal intsim's; a failure names the first differing layer, time step, sample and neuron.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

import spikec
from spikec.api import compile_source
from spikec.backends.intsim.interpreter import run_intsim
from spikec.frontends.torch import ModelSource
from spikec.ir import Graph, TensorType
from spikec.models import build_model, default_input_shape

LAVA_TIMEOUT_S = 120
"""A tiny model runs in seconds; a run that takes minutes is hung (the runtime kills it)."""

_IMAGE = {"cifar": 16, "imagenet": 32, "dvs": 32, "v2": 32}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DIGITS = os.path.join(REPO, "examples", "digits", "checkpoints")


def tiny_config(arch: str) -> dict:
    return {"embed_dim": 32, "num_heads": 2, "depth": 2, "T": 2, "img_size": _IMAGE[arch.rsplit("-", 1)[1]]}


def active_model(arch: str, config: dict, x: torch.Tensor, seed: int = 0) -> torch.nn.Module:
    """Random weights; every batch norm takes the batch statistics of ``x`` (so pre-activations are normalised)
    with gains in [0.7, 1.3] and biases in [0.4, 1.4] (so neurons fire)."""
    torch.manual_seed(seed)
    model = build_model(arch, config)
    generator = torch.Generator().manual_seed(seed)
    for bn in model.modules():
        if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
            bn.reset_running_stats()
            bn.momentum = None
            with torch.no_grad():
                bn.weight.copy_(torch.rand(bn.num_features, generator=generator) * 0.6 + 0.7)
                bn.bias.copy_(torch.rand(bn.num_features, generator=generator) + 0.4)
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


@functools.lru_cache(maxsize=None)
def zoo_compiled(arch: str, batch: int = 2, target: str = "intsim", **extra):
    """``(CompiledModel, input batch)`` of ``arch`` at a tiny size (cached: compile once per session)."""
    config = {**tiny_config(arch), **extra}
    x = torch.rand(default_input_shape(arch, config, batch), generator=torch.Generator().manual_seed(0))
    model = active_model(arch, config, x)
    return spikec.compile(model, x, target=target, name=arch), x.numpy()


def zoo_case(arch: str, batch: int = 2, **extra):
    """``(integer graph, input batch)`` of ``arch`` at a tiny size."""
    compiled, x = zoo_compiled(arch, batch, **extra)
    return compiled.graph, x


@functools.lru_cache(maxsize=None)
def digits_case(arch: str, samples: int = 3):
    """``(integer graph, digits test images, labels)`` of a committed trained checkpoint."""
    from spikec.datasets import load_digits_split

    _, compiled = compile_source(ModelSource(checkpoint=os.path.join(DIGITS, f"{arch}.pt")))
    x, y = load_digits_split("test")
    return compiled.graph, np.ascontiguousarray(x[:samples], dtype=np.float32), y[:samples]


def first_difference(expected: np.ndarray, got: np.ndarray) -> str:
    if expected.shape != got.shape:
        return f"shapes {expected.shape} vs {got.shape}"
    t, s, *neuron = min(map(tuple, np.argwhere(expected != got)))
    return (f"time step {t}, sample {s}, neuron {neuron}: intsim {expected[(t, s, *neuron)]}, "
            f"lava {got[(t, s, *neuron)]}")


def assert_bit_exact(graph, x: np.ndarray, run) -> None:
    """Every probe of ``run`` (a LavaRun) and its outputs equal intsim's on ``x``."""
    reference = run_intsim(graph, [x], keep_values=True)
    neurons = [i for i, n in enumerate(graph.nodes) if n.op == "qlif"]
    assert set(neurons) <= set(run.values), "every neuron group is recorded"
    for index in sorted(run.values):
        node = graph.nodes[index]
        expected = reference.of(node)
        got = run.values[index]
        assert expected.shape == got.shape and np.array_equal(expected, got), \
            f"node {index} ({node.op} {node.module}) differs: {first_difference(expected, got)}"
    assert len(run.outputs) == len(reference.outputs), "Lava returned every output"
    for expected, got in zip(reference.outputs, run.outputs, strict=True):
        assert np.array_equal(expected, got), "outputs differ"


def spike_count(graph, x: np.ndarray) -> list[int]:
    """Spikes per neuron layer on intsim (tests check that what they compare is not silent)."""
    reference = run_intsim(graph, [x], keep_values=True)
    return [int(reference.of(n).sum()) for n in graph.nodes if n.op == "qlif"]


# ---------------------------------------------------------------- hand-built integer graphs


def dense(g: Graph, x, n: int, *, host: bool = False, graded: bool = False, bias: bool = False, exp: int = 0):
    """A qdense along the last axis with small even weights (and a bias of varied signs)."""
    fan_in = x.type.shape[-1]
    w = ((np.arange(n * fan_in).reshape(n, fan_in) * 7) % 9 * 2 - 6).astype(np.int32)
    b = ((np.arange(n) * 5) % 7 - 3).astype(np.int32) * 4 if bias else None
    return g.add("qdense", [x], {"weight": w, "bias": b, "weight_exp": exp, "axis": x.type.rank - 1,
                                 "graded": graded, "host": host})


def lif(g: Graph, x, vth: int = 1, du: int = 4095, dv: int = 2048):
    return g.add("qlif", [x], {"du": du, "dv": dv, "vth": vth})


def encoded_input(g: Graph, features: int, T: int, batch: int = 2):
    x = g.create_node("input", [], {"name": "x", "layout": "B"},
                      output_types=[TensorType((1, batch, features), "f32")]).output
    q = g.add("quantize", [x], {"exp": 3, "lo": 0, "hi": 8})
    return g.add("repeat_time", [q], {"T": T})


def residual_graph(T: int = 3, bias: bool = False) -> Graph:
    """x -> d1 -> s1 -> d2 -> s2 -> d3;  a = d1 + d3 (MS residual) -> s3 -> time sum -> host classifier."""
    g = Graph("residual")
    r = encoded_input(g, 4, T)
    d1 = dense(g, r, 6, graded=True, bias=bias)
    s1 = lif(g, d1)
    d2 = dense(g, s1, 6, bias=bias)
    s2 = lif(g, d2)
    d3 = dense(g, s2, 6, bias=bias)
    a = g.add("add", [d1, d3])
    s3 = lif(g, a)
    total = g.add("sum", [s3], {"axes": (0,), "keepdim": False})
    out = dense(g, total, 3, host=True, graded=True)
    g.create_node("output", [out], {"layouts": (0,)})
    return g


def skip_graph(T: int = 2, hops: int = 3) -> Graph:
    """s1 -> (hops dense+lif layers) -> sn;  y = and_not(sn, s1): s1 waits ``hops`` steps (a relay)."""
    g = Graph("skip")
    r = encoded_input(g, 5, T)
    s = first = lif(g, dense(g, r, 5, graded=True, bias=True))
    for _ in range(hops):
        s = lif(g, dense(g, s, 5, bias=True))
    y = g.add("and_not", [s, first])
    z = lif(g, dense(g, y, 4, bias=True))
    out = dense(g, z, 3, host=True)
    g.create_node("output", [out], {"layouts": (1,)})
    return g
