"""reparameterize: chains of convs, batch norms and pads between two weight ops become one weight op, exactly (up to
float32 rounding), so that the spike-driven verdict is about the network a chip runs; the frontend traces the
BN-and-pad layer (``F.pad`` then a write of each border side) that such chains are built with."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import spikec
import spikec.nn as snn
from spikec.api import compile as compile_model
from spikec.backends.float.interpreter import run_float
from spikec.cli import main
from spikec.errors import InputError
from spikec.frontends.torch import ModelSource, load_model, trace_module
from spikec.passes.base import AnalysisCache
from spikec.passes.reparameterize import Reparameterize

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "metaformer_like.py")


def _reset(model):
    for m in model.modules():
        if hasattr(m, "reset") and m is not model:
            m.reset()


def _metaformer():
    from conftest import batchnorm_set_to_fire

    loaded = load_model(ModelSource(model=f"{FIXTURE}:TinyMetaFormer", input_shape=(2, 1, 16, 16)))
    torch.manual_seed(0)
    return batchnorm_set_to_fire(loaded.module, torch.rand(8, 1, 16, 16), _reset)


@pytest.mark.spikingjelly_legacy
def test_meta_spikeformer_traces_exactly_and_folds_into_a_graph_that_computes_the_same():
    model = _metaformer()
    x = torch.rand(6, 1, 16, 16)
    graph = trace_module(model, x[:1]).graph
    assert sum(n.op == "pad" for n in graph.nodes) == 4          # one per RepConv, its border written whole
    _reset(model)
    with torch.no_grad():
        expected = model(x)
    traced = run_float(graph, [x], keep_values=True)
    assert torch.equal(traced.outputs[0], expected)
    rates = {n.module: float(traced.of(n).mean()) for n in graph.nodes if n.op == "lif"}
    assert min(rates.values()) > 0.01, rates                    # every neuron layer fires (attention: 1.6%)

    result = Reparameterize()(graph, AnalysisCache())
    assert not [n for n in graph.nodes if n.op == "pad"] and not result.skipped
    chains = {f.node.module: f.folded for f in result.folds}
    assert chains["blocks.0.attn.q_conv.0.body.0"] == (
        "pad blocks.0.attn.q_conv.0.body.1", "conv2d blocks.0.attn.q_conv.0.body.0",
        "batchnorm blocks.0.attn.q_conv.0.body.1.bn", "conv2d blocks.0.attn.q_conv.0.body.2.0",
        "conv2d blocks.0.attn.q_conv.0.body.2.1")
    assert chains["conv_blocks.0.Conv.dwconv"] == ("conv2d conv_blocks.0.Conv.dwconv",
                                                   "conv2d conv_blocks.0.Conv.pwconv2")
    assert len(chains) == 5
    folded = {n.module: n for n in graph.nodes}["blocks.0.attn.q_conv.0.body.0"]
    assert folded.attrs["weight"].shape == (16, 16, 3, 3) and folded.attrs["padding"] == (1, 1)
    after = run_float(graph, [x], keep_values=True)
    assert torch.allclose(after.outputs[0], expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    neurons = [n for n in graph.nodes if n.op == "lif"]               # the same nodes before and after
    agreement = np.mean([float((traced.of(n) == after.of(n)).float().mean()) for n in neurons])
    assert agreement > 0.999, agreement                           # float32 rounding may flip a spike at threshold


def _verify(*args):
    result = CliRunner().invoke(main, ["verify", "--spike-driven", "--model", f"{FIXTURE}:TinyMetaFormer",
                                       "--input-shape", "1,1,16,16", *args])
    return result.exit_code, result.stdout


@pytest.mark.spikingjelly_legacy
def test_verify_checks_the_deployable_network_and_no_fold_the_traced_one():
    code, text = _verify()
    assert code == 0, text
    assert "checked after reparameterizing 5 chains into single weight ops" in text
    assert ("metaformer_like.py:44: conv2d in blocks.0.attn.q_conv.0.body.0: pad blocks.0.attn.q_conv.0.body.1 -> "
            "conv2d blocks.0.attn.q_conv.0.body.0 -> batchnorm") in text
    assert "TinyMetaFormer: spike-driven: 0 errors" in text

    code, text = _verify("--no-fold")
    assert code == 1 and "TinyMetaFormer: not spike-driven: 9 errors" in text
    assert "metaformer_like.py:44: error[SD002]: conv2d in blocks.0.attn.q_conv.0.body.2.0" in text
    assert "metaformer_like.py:61: error[SD002]: conv2d in conv_blocks.0.Conv.pwconv2" in text
    assert "reparameterizing" not in text


@pytest.mark.slow
@pytest.mark.spikingjelly_legacy
def test_meta_spikeformer_compiles_and_intsim_agrees_with_the_module():
    """Untrained weights set to fire put many membranes near threshold, where 8-bit weights flip spikes that then
    multiply layer by layer: the zoo's SDT with the same firing weights agrees 0.66-0.89 past its patch embedding.
    The two neuron layers before the first reparameterized conv must agree to 99%."""
    model = _metaformer()
    x = np.random.default_rng(0).uniform(0, 1, (16, 1, 16, 16)).astype(np.float32)
    compiled = compile_model(model, torch.from_numpy(x[:1]))
    assert not [n for n in compiled.graph.nodes if n.op in ("pad", "conv2d", "batchnorm")]
    report = spikec.simulate(model, x, backends=["torch", "intsim"]).to_json()
    agreement = {layer["module"]: layer["agreement"]["float/intsim"] for layer in report["layers"]}
    assert agreement["conv_blocks.0.Conv.lif1"] > 0.99 and agreement["conv_blocks.0.Conv.lif2"] > 0.99, agreement
    assert min(agreement.values()) > 0.65, agreement


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.spikingjelly_legacy
def test_meta_spikeformer_runs_bit_exact_on_lava(tmp_path):
    model = _metaformer()
    x = np.random.default_rng(1).uniform(0, 1, (2, 1, 16, 16)).astype(np.float32)
    spikec.compile(model, torch.from_numpy(x[:1]), target="loihi2").write(str(tmp_path / "metaformer"))
    report = spikec.simulate(str(tmp_path / "metaformer"), x, backends=["lava"], compare="intsim").to_json()
    assert report["bit_exact"] == {"intsim/lava": True}


# ---------------------------------------------------------------- the rules, one at a time


class Chain(nn.Module):
    """lif -> conv a -> (bn) -> pad -> conv b: what is foldable depends on the pad and the convs."""

    def __init__(self, a_kernel=1, a_bias=False, b_padding=0, fill_from_bn=True, pad_value=None):
        super().__init__()
        self.lif = snn.MultiStepLIF()
        self.a = nn.Conv2d(3, 4, a_kernel, padding=a_kernel // 2, bias=a_bias)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 5, 3, padding=b_padding)
        self.fill_from_bn, self.pad_value = fill_from_bn, pad_value
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.bias.uniform_(-1, 1)

    def forward(self, x):
        s = self.lif(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)).flatten(0, 1)
        y = self.bn(self.a(s))
        if self.pad_value is not None:
            y = F.pad(y, [1, 1, 1, 1], value=self.pad_value)
        elif self.fill_from_bn:
            border = (self.bn.bias - self.bn.running_mean * self.bn.weight
                      / torch.sqrt(self.bn.running_var + self.bn.eps)).view(1, -1, 1, 1)
            y = F.pad(y, [1, 1, 1, 1])
            y[:, :, :1], y[:, :, -1:], y[:, :, :, :1], y[:, :, :, -1:] = border, border, border, border
        out = self.b(y)
        return out.reshape(2, x.shape[0], *out.shape[1:])


def _fold(model, x):
    graph = trace_module(model.eval(), x).graph
    result = Reparameterize()(graph, AnalysisCache())
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(run_float(graph, [x]).outputs[0], expected, atol=1e-5)
    return graph, result


def test_a_pad_with_its_batch_norm_s_zero_moves_above_the_1x1_conv_and_everything_folds():
    graph, result = _fold(Chain(), torch.rand(2, 3, 6, 6) * 3)
    assert [n.op for n in graph.nodes] == ["input", "repeat_time", "lif", "conv2d", "output"]
    assert len(result.folds) == 1 and len(result.folds[0].folded) == 4


def test_a_zero_pad_becomes_the_conv_s_padding_and_a_biased_conv_before_it_is_left_with_a_reason():
    graph, result = _fold(Chain(fill_from_bn=False, pad_value=0.0, b_padding=0), torch.rand(2, 3, 6, 6) * 3)
    convs = [n for n in graph.nodes if n.op == "conv2d"]
    assert "pad" not in [n.op for n in graph.nodes] and convs[1].attrs["padding"] == (1, 1)
    # the batch norm's shift, now a's bias, makes b's zero border something no single conv computes
    assert len(convs) == 2 and "not folded with conv2d in a" in str(result.skipped[0])


def test_a_padded_second_conv_after_a_biased_pointwise_conv_is_left_with_a_reason():
    graph, result = _fold(Chain(fill_from_bn=False, b_padding=1), torch.rand(2, 3, 6, 6) * 3)
    assert [n.op for n in graph.nodes].count("conv2d") == 2
    assert "neither is a pointwise op whose fold is exact" in str(result.skipped[0])


def test_two_kxk_convs_are_left_as_they_are():
    graph, result = _fold(Chain(a_kernel=3, fill_from_bn=False), torch.rand(2, 3, 6, 6) * 3)
    assert [n.op for n in graph.nodes].count("conv2d") == 2 and result.skipped


def test_a_pad_left_unfolded_is_refused_by_quantize_in_one_line():
    with pytest.raises(InputError, match=r"quantize: pad \(.*\): pad cannot be quantized \(reparameterize absorbs"):
        compile_model(Chain(fill_from_bn=False, pad_value=0.5).eval(), torch.rand(1, 3, 6, 6))


# ---------------------------------------------------------------- the frontend's limits


class Writes(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.lif, self.how = snn.MultiStepLIF(), how

    def forward(self, x):
        s = self.lif(x.unsqueeze(0)).flatten(0, 1)
        if self.how == "reflect":
            return F.pad(s, [1, 1, 1, 1], mode="reflect")
        y = F.pad(s, [1, 1, 1, 1])
        if self.how == "half":
            y[:, :, :1] = 0.5
        elif self.how == "inside":
            y[:, :, 2:3] = 0.5
        elif self.how == "plain":
            s[:, :, :1] = 1.0
            return s
        return y.reshape(1, x.shape[0], *y.shape[1:]) * 2


@pytest.mark.parametrize("how, message", [
    ("reflect", "torch.nn.functional.pad: mode='reflect'; only constant padding is supported"),
    ("half", "reads a pad border written in part"),
    ("inside", "assigns inside the padded tensor, not only on its border"),
    ("plain", "spikec traces only writes to a pad's border"),
])
def test_what_the_frontend_cannot_trace_is_reported_at_its_line(how, message):
    with pytest.raises(InputError, match=r"test_reparameterize\.py:\d+: error: .*" + message.replace("(", r"\(")
                       .replace(")", r"\)").replace("'", ".")):
        trace_module(Writes(how), torch.rand(2, 3, 4, 4))
