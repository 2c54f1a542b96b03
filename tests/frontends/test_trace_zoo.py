"""Tracing every zoo family: the IR round-trips, the float interpreter reproduces the PyTorch model
(identical spikes on every neuron layer, logits to 1e-5, at the traced and at another batch size), every
node carries its module path and source line, and the traced parameter count equals the parameters the
model's forward actually uses."""

from __future__ import annotations

import collections

import torch

from conftest import small_input, small_model
from spikec.backends.float.interpreter import run_float
from spikec.frontends.torch import trace_module
from spikec.frontends.torch.neurons import is_neuron
from spikec.inspect import parameter_count
from spikec.ir import graph_difference, parse_graph, print_graph, weight_table


def _neuron_outputs(model, x) -> dict[str, list[torch.Tensor]]:
    names = {id(m): n for n, m in model.named_modules()}
    seen: dict[str, list[torch.Tensor]] = collections.defaultdict(list)
    hooks = [m.register_forward_hook(lambda mod, args, out: seen[names[id(mod)]].append(out))
             for m in model.modules() if is_neuron(m)]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, seen


def _used_parameters(model, x) -> int:
    called: dict[int, torch.nn.Module] = {}

    def record(module, args):
        if not any(True for _ in module.children()):  # a leaf: its parameters are the ones its forward uses
            called[id(module)] = module

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return sum(p.numel() for m in called.values() for p in m.parameters(recurse=False))


def test_trace_round_trips_and_reproduces_the_model(zoo_arch):
    model, x = small_model(zoo_arch), small_input(zoo_arch, batch=2)
    graph = trace_module(model, x).graph

    text = print_graph(graph)
    reparsed = parse_graph(text, weights=weight_table(graph))
    assert graph_difference(reparsed, graph) is None
    assert print_graph(reparsed) == text

    for batch, seed in ((2, 0), (3, 1)):
        inp = small_input(zoo_arch, batch=batch, seed=seed)
        logits, neuron_outputs = _neuron_outputs(model, inp)
        run = run_float(graph, [inp], keep_values=True)
        torch.testing.assert_close(run.outputs[0], logits, rtol=0, atol=1e-5)
        lif_nodes = [n for n in graph.nodes if n.op in ("lif", "if")]
        calls = collections.Counter()
        for node in lif_nodes:
            expected = neuron_outputs[node.module][calls[node.module]]
            calls[node.module] += 1
            assert torch.equal(run.of(node), expected), f"spikes differ at {node.describe()}"
        assert sum(calls.values()) == sum(len(v) for v in neuron_outputs.values())
        assert any(run.of(n).any() for n in lif_nodes), "no neuron fired: the comparison would be vacuous"


def test_every_op_knows_where_it_came_from(zoo_arch):
    graph = trace_module(small_model(zoo_arch), small_input(zoo_arch)).graph
    for node in graph.nodes:
        if node.op in ("input", "output"):
            continue
        (loc,) = node.locs
        assert loc.file.startswith("spikec/models/"), node
        assert loc.line >= 1
        if node.op in ("conv2d", "conv1d", "linear", "batchnorm", "lif"):
            assert loc.module, f"{node.op} without a module path"


def test_traced_parameters_are_the_used_parameters(zoo_arch):
    model, x = small_model(zoo_arch), small_input(zoo_arch)
    graph = trace_module(model, x).graph
    used = _used_parameters(model, x)
    assert parameter_count(graph) == used
