"""spikingjelly 2.0's own spiking transformers (``activation_based.model``: Spikformer, Spike-driven Transformer,
QKFormer), in small configurations of the package's code as it ships: each traces, its traced graph computes what
the module computes with every neuron layer firing, and ``verify --spike-driven`` gives the verdict its code
deserves:

- Spikformer adds spikes to spikes (SEW residuals), so its q/k/v projection and MLP multiply weights by spike
  counts: not spike-driven.
- The Spike-driven Transformer adds membrane potentials before the neurons (MS residuals): spike-driven.
- QKFormer's patch embedding and blocks add spikes too (SEW): not spike-driven.
"""

from __future__ import annotations

import pytest
import torch

from conftest import batchnorm_set_to_fire
from spikec.api import verify
from spikec.backends.float.interpreter import run_float
from spikec.frontends.torch import trace_module

pytestmark = [pytest.mark.spikingjelly2, pytest.mark.core]

CONFIGS = {
    "spikformer": ("Spikformer", dict(T=2, img_size_h=16, img_size_w=16, patch_size=4, num_classes=10,
                                      embed_dims=32, num_heads=2, depths=1), 16),
    "spike_driven_transformer": ("SpikeDrivenTransformer", dict(T=2, num_classes=10, embed_dims=32, num_heads=2,
                                                                depths=1, pooling_stat="0011"), 32),
    "qkformer": ("QKFormer", dict(T=2, num_classes=10, embed_dims=48, num_heads=(1, 2, 2), depths=(1, 1, 1)), 32),
}


def _firing_model(name: str):
    import importlib

    from spikingjelly.activation_based import functional

    cls_name, config, size = CONFIGS[name]
    torch.manual_seed(0)
    module = getattr(importlib.import_module(f"spikingjelly.activation_based.model.{name}"), cls_name)(**config)
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    return batchnorm_set_to_fire(module, x, functional.reset_net), x, functional.reset_net


@pytest.mark.parametrize("name", CONFIGS)
def test_spikingjelly2_models_trace_and_run_exactly_with_every_layer_firing(name):
    module, x, reset = _firing_model(name)
    graph = trace_module(module, x[:1]).graph
    reset(module)
    with torch.no_grad():
        expected = module(x)
    run = run_float(graph, [x], keep_values=True)
    assert torch.equal(run.outputs[0], expected)
    rates = [float(run.of(n).mean()) for n in graph.nodes if n.op == "lif"]
    assert len(rates) >= 10 and min(rates) > 0.001, rates


def _errors(report) -> list[tuple[str, str]]:
    return [(f.rule, f.module) for f in report.findings if f.severity == "error"]


def test_spikingjelly2_spikformer_is_flagged_at_its_sew_fed_projections():
    module, x, _ = _firing_model("spikformer")
    report = verify(module, x[:1])
    assert _errors(report) == [("SD001", "blocks.0.attn.qkv_conv_bn.0"), ("SD001", "blocks.0.mlp.fc1.0")]
    assert report.exit_code() == 1
    # each names the model's own line, not the spikingjelly wrapper (functional/forward.py) that ran the op
    assert {f.file for f in report.findings} == {"spikingjelly/activation_based/model/spikformer.py"}


def test_spikingjelly2_spike_driven_transformer_is_spike_driven():
    module, x, _ = _firing_model("spike_driven_transformer")
    report = verify(module, x[:1])
    assert _errors(report) == [] and report.exit_code() == 0


def test_spikingjelly2_qkformer_is_flagged_where_spikes_are_added():
    module, x, _ = _firing_model("qkformer")
    errors = _errors(verify(module, x[:1]))
    assert errors and {rule for rule, _ in errors} == {"SD001"}
    assert ("SD001", "stage3.0.attn.qkv_conv_bn.0") in errors


def test_spikingjelly2_spike_driven_transformer_with_plif_neurons_traces_exactly():
    """SDT built with ``spiking_neuron=ParametricLIFNode`` (SDT V1's ``spike_mode=plif``), each layer's decay
    learned apart: every neuron is a ``plif`` op with its module's ``sigmoid(w)``, and the graph runs exactly."""
    from spikingjelly.activation_based import functional, neuron
    from spikingjelly.activation_based.model.spike_driven_transformer import SpikeDrivenTransformer

    torch.manual_seed(0)
    module = SpikeDrivenTransformer(**CONFIGS["spike_driven_transformer"][1], spiking_neuron=neuron.ParametricLIFNode,
                                    init_tau=2.0, detach_reset=True)
    plifs = [m for m in module.modules() if isinstance(m, neuron.ParametricLIFNode)]
    with torch.no_grad():
        for i, m in enumerate(plifs):
            m.w.add_(0.1 * i)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    module = batchnorm_set_to_fire(module, x, functional.reset_net)
    graph = trace_module(module, x[:1]).graph
    traced = [n for n in graph.nodes if n.op == "plif"]
    assert len(traced) == len(plifs) >= 10 and not any(n.op == "lif" for n in graph.nodes)
    assert len({n.attrs["decay"] for n in traced}) == len(traced)
    functional.reset_net(module)
    with torch.no_grad():
        expected = module(x)
    run = run_float(graph, [x], keep_values=True)
    assert torch.equal(run.outputs[0], expected)
    assert min(float(run.of(n).mean()) for n in traced) > 0.05
