"""The report's counts: against syops-counter-style forward hooks on the PyTorch modules, computed here
independently, and by hand for the attention products on a tiny graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikec.frontends.torch import trace_module
from spikec.frontends.torch.neurons import reset_neuron_state
from spikec.ir import Graph, TensorType
from spikec.models import build_model
from spikec.reporting import make_report, measure
from spikec.reporting.build import Subject

pytestmark = pytest.mark.core

CONFIG = {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 8, "in_channels": 1, "T": 2}


def _syops_hooks(module: torch.nn.Module) -> dict[str, list[float]]:
    """syops-counter's rule per conv/linear call: (nonzero inputs / inputs) x the call's dense MACs."""
    counted: dict[str, list[float]] = {}

    def hook(name):
        def count(layer, inputs, output):
            x = inputs[0]
            if isinstance(layer, torch.nn.Linear):
                macs = output.numel() * layer.in_features
            else:
                macs = output.numel() * (layer.in_channels // layer.groups) * math.prod(layer.kernel_size)
            counted.setdefault(name, []).append(float(torch.count_nonzero(x)) / x.numel() * macs)
        return count

    for name, layer in module.named_modules():
        if isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
            layer.register_forward_hook(hook(name))
    return counted


@pytest.mark.parametrize("arch", ["spikingformer-cifar", "spikformer-cifar", "sdt-cifar"])
def test_weight_op_sops_equal_syops_style_hooks(arch):
    torch.manual_seed(0)
    model = build_model(arch, CONFIG).eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    graph = trace_module(model, x[:1], "B", arch).graph
    subject = Subject(arch, "float", graph, (1, 1, 8, 8), "B", [], None)
    report = make_report(subject, measure(subject, x.numpy(), batch_size=4), "random")

    counted = _syops_hooks(model)
    reset_neuron_state(model)
    with torch.no_grad():
        model(x)
    expected = {name: sum(calls) / len(x) for name, calls in counted.items()}
    got = {row["module"]: row["sops"] for row in report["layers"] if row["kind"] == "weight"}
    assert got.keys() == expected.keys()
    for name, sops in expected.items():
        assert got[name] == pytest.approx(sops, rel=1e-9), name
    assert report["totals"]["synaptic_events"] > 0


def _spike_graph() -> Graph:
    """x [T=2, B=1, 1, 2, 3] (layout TB), and of it: x @ x^T, x * x, and x summed over its rows."""
    g = Graph("tiny")
    x = g.create_node("input", [], {"name": "x", "layout": "TB"}, output_types=[TensorType((2, 1, 1, 2, 3))]).output
    xt = g.add("transpose", [x], {"perm": (0, 1, 2, 4, 3)})
    product = g.add("matmul", [x, xt])
    hadamard = g.add("mul", [x, x])
    column = g.add("sum", [x], {"axes": (3,), "keepdim": True})
    g.create_node("output", [product, hadamard, column], {"layouts": (1, 1, 1)})
    return g


def test_attention_products_by_hand():
    spikes = np.array([[[[[1, 0, 1], [1, 1, 0]]]], [[[[0, 0, 0], [0, 1, 1]]]]], np.float32)   # [2, 1, 1, 2, 3]
    graph = _spike_graph()
    subject = Subject("tiny", "float", graph, (2, 1, 1, 2, 3), "TB", [], None)
    rows = {row["op"]: row for row in make_report(subject, measure(subject, spikes), "hand")["layers"]}
    # matmul: sum over k of nnz(column k of x) * nnz(row k of x^T) = step 0: 2*2 + 1*1 + 1*1, step 1: 0 + 1 + 1
    assert rows["matmul"]["flops"] == 2 * 2 * 3 and rows["matmul"]["sops"] == 6 + 2
    assert rows["matmul"]["input_rate_per_step"] == [6 / 12, 2 / 12]
    assert rows["matmul"]["input_rate"] == pytest.approx(8 / 24)
    assert rows["matmul"]["energy_pj"]["paper"] == pytest.approx(0.9 * 8)
    assert rows["matmul"]["energy_pj"]["loihi"] == pytest.approx(23.6 * 8)
    assert rows["matmul"]["energy_pj"]["ann-int8"] == pytest.approx(0.23 * 12)
    # mul: a nonzero product needs both operands nonzero: 4 + 2 of 6 elements per step
    assert (rows["mul"]["flops"], rows["mul"]["sops"], rows["mul"]["input_rate"]) == (6, 6, 0.5)
    # sum: one add per nonzero input element
    assert (rows["sum"]["flops"], rows["sum"]["sops"], rows["sum"]["T"]) == (6, 6, 2)


def test_neuron_rates_per_step_and_the_raster():
    torch.manual_seed(0)
    model = build_model("spikingformer-cifar", CONFIG).eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    graph = trace_module(model, x[:1], "B", "m").graph
    subject = Subject("m", "float", graph, (1, 1, 8, 8), "B", [], None)
    first = next(n for n in graph.nodes if n.op == "lif")
    activity = measure(subject, x.numpy(), batch_size=2, raster=(first.module, 2))
    report = make_report(subject, activity, "random")
    from spikec.backends.float.interpreter import run_float

    spikes = run_float(graph, [x], keep_values=True).of(first).numpy()        # [T, 3, ...]
    row = next(n for n in report["neurons"] if n["module"] == first.module)
    per_step = spikes.reshape(2, 3, -1).mean(axis=(1, 2))
    assert row["rate_per_step"] == pytest.approx(per_step.tolist())
    assert row["rate"] == pytest.approx(spikes.mean())
    assert np.array_equal(activity.raster, spikes[:, 2].reshape(2, -1))


@pytest.mark.parametrize("name", ["spikingformer-cifar", "spikformer-cifar", "sdt-cifar"])
def test_attention_products_of_the_digits_models_by_brute_force(name):
    """Every matmul, Hadamard product and sum of the trained digits models (small, and firing in their
    attention), against a brute-force count of the nonzero operand pairs (products of the 0/1 masks) from the
    float interpreter's values."""
    from spikec.backends.float.interpreter import run_float
    from spikec.datasets import load_digits_split
    from spikec.frontends.torch import ModelSource, trace_source

    _, traced = trace_source(ModelSource(checkpoint=f"examples/digits/checkpoints/{name}.pt"))
    graph = traced.graph
    x = load_digits_split("test")[0][:6]
    subject = Subject(name, "float", graph, (1, 1, 8, 8), "B", [], None)
    rows = [r for r in make_report(subject, measure(subject, x), "digits")["layers"] if r["kind"] != "weight"]
    values = run_float(graph, [torch.from_numpy(x)], keep_values=True)
    expected = []
    for node in (n for n in graph.nodes if n.op in ("matmul", "mul", "sum")):
        args = [(values.of(v.producer).numpy() != 0).astype(np.int64) for v in node.inputs]
        if node.op == "matmul":
            expected.append(float(np.matmul(args[0], args[1]).sum()))   # (n, k, m) with both operands nonzero
        elif node.op == "mul":
            expected.append(float((args[0] * args[1]).sum()))          # broadcast, both operands nonzero
        else:
            expected.append(float(args[0].sum()))
    assert len(rows) == len(expected) >= 2 and all(e > 0 for e in expected)
    assert [r["sops"] * len(x) for r in rows] == pytest.approx(expected)
