"""The spike-driven check: the verdict on every zoo model, each rule on a model that breaks it, golden
text diagnostics, and observed mode agreeing with the static domains.

Golden files live in tests/golden/verify/. After an intended change of the diagnostics (or of a source
line they cite, in spikec/models/ or tests/passes/verify_models.py), regenerate them with

    SPIKEC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/passes/test_spike_driven.py

and review the diff.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from spikec.api import verify, verify_graph
from spikec.errors import PassError
from spikec.frontends.torch import trace_module
from spikec.models import build_model, default_input_shape, zoo_names
from spikec.nn import MultiStepLIF
from spikec.passes.spike_driven import SpikeDriven, checked_operands
from spikec.passes import value_domains
from spikec.passes.base import AnalysisCache
from spikec.passes.value_domains import ValueDomains

sys.path.insert(0, str(Path(__file__).parent))
from verify_models import IntProducts, PooledSpikes  # noqa: E402

pytestmark = pytest.mark.core

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "verify"
UPDATE = os.environ.get("SPIKEC_UPDATE_GOLDEN") == "1"
DEPTH = 2


def small_config(name: str, **overrides) -> dict:
    image = 16 if name.endswith("cifar") else 32
    return {"depth": DEPTH, "embed_dim": 32, "num_heads": 2, "T": 2, "img_size": image, **overrides}


@functools.lru_cache(maxsize=None)
def traced(name: str, residual: str | None = None, excite: bool = False):
    """A small zoo model's graph; ``excite`` sets batch-norm affine parameters so that neurons fire."""
    config = small_config(name, **({"residual": residual} if residual else {}))
    torch.manual_seed(0)
    model = build_model(name, config)
    if excite:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                nn.init.uniform_(module.weight, 0.5, 3.0)
                nn.init.uniform_(module.bias, 0.0, 3.0)
    return trace_module(model, torch.rand(default_input_shape(name, config)), name=name.replace("-", "_")).graph


def summary(report) -> set[tuple]:
    return {(f.severity, f.rule, f.module, f.input_domain, f.exempt) for f in report.findings}


def _conv_names(name: str) -> tuple[str, str]:
    return ("linear", "fc1_linear") if name == "spikformer-cifar" else ("conv", "fc1_conv")


def _encoder(name: str) -> str:
    return "patch_embed.block0_conv" if name == "spikingformer-cifar" else "patch_embed.proj_conv"


SPIKFORMERS = [n for n in zoo_names() if n.startswith("spikformer")]
SPIKINGFORMERS = [n for n in zoo_names() if n.startswith("spikingformer")]
SDTS = [n for n in zoo_names() if n.startswith("sdt")]


def test_the_zoo_is_covered():
    assert sorted(SPIKFORMERS + SPIKINGFORMERS + SDTS) == zoo_names()


@pytest.mark.parametrize("name", SPIKFORMERS)
def test_spikformer_fails_exactly_at_qkv_and_fc1(name):
    proj, fc1 = _conv_names(name)
    errors = {("error", "SD001", f"block.{block}.attn.{q}_{proj}", f"int[0,{2 + 2 * block}]", None)
              for block in range(DEPTH) for q in "qkv"}
    errors |= {("error", "SD001", f"block.{block}.mlp.{fc1}", f"int[0,{3 + 2 * block}]", None) for block in range(DEPTH)}
    notes = {("note", "SD002", "patch_embed.proj_conv", "real", "encoding layer"),
             ("note", "SD002", "head", "real", "readout")}
    report = verify_graph(traced(name))
    assert summary(report) == errors | notes
    assert report.exit_code() == 1


@pytest.mark.parametrize("name", SPIKINGFORMERS)
def test_spikingformer_passes_with_only_notes(name):
    report = verify_graph(traced(name))
    assert summary(report) == {("note", "SD002", _encoder(name), "real", "encoding layer"),
                               ("note", "SD002", "head", "real", "readout")}
    assert report.exit_code("warning") == 0


@pytest.mark.parametrize("name", SPIKINGFORMERS)
def test_spikingformer_attention_has_one_spike_operand(name):
    """(QK^T)V and Q(K^T V) multiply an integer by spikes: select-and-accumulate, accepted."""
    graph = traced(name)
    domains = ValueDomains()(graph)
    products = [[domains[v] for v in n.inputs] for n in graph.nodes if n.op == "matmul"]
    assert any(not a.is_spike or not b.is_spike for a, b in products)
    assert all(a.is_spike or b.is_spike for a, b in products)


@pytest.mark.parametrize("name", SDTS)
def test_sdt_passes_with_the_encoder_note_and_the_analog_maxpool_warning(name):
    report = verify_graph(traced(name))
    assert summary(report) == {("note", "SD002", "patch_embed.proj_conv", "real", "encoding layer"),
                               ("warning", "SD005", "patch_embed.maxpool3", "real", None)}
    assert report.exit_code() == 0 and report.exit_code("warning") == 1


def test_spikformer_with_sew_iand_passes():
    report = verify_graph(traced("spikformer-cifar", residual="iand"))
    assert {(f.severity, f.exempt) for f in report.findings} == {("note", "encoding layer"), ("note", "readout")}


def test_strict_makes_the_exemptions_errors():
    report = verify_graph(traced("spikingformer-cifar"), strict=True)
    assert [(f.severity, f.exempt) for f in report.findings] == [("error", "encoding layer"), ("error", "readout")]
    assert report.findings[0].message.startswith("encoding layer (an error under --strict): conv2d in ")
    assert report.exit_code() == 1


def test_integer_products_are_sd003():
    report = verify(IntProducts(), torch.rand(1, 4, 8))
    assert [(f.rule, f.op, f.input_domain) for f in report.findings if f.severity == "error"] == [
        ("SD003", "matmul", "int[0,2] and int[0,2]"), ("SD003", "mul", "int[0,2] and int[0,2]"),
        ("SD003", "matmul", "int[0,32] and int[0,4]")]


def test_pooled_spikes_are_sd004_and_analog_maxpool_is_sd005():
    report = verify(PooledSpikes(), torch.rand(1, 2, 8, 8))
    assert [(f.severity, f.rule, f.module) for f in report.findings] == [
        ("note", "SD002", "conv"), ("error", "SD004", "conv2"), ("warning", "SD005", "maxpool"),
        ("note", "SD002", "head")]
    assert "that avgpool at tests/passes/verify_models.py:" in report.findings[1].message


def test_findings_come_in_execution_order():
    report = verify_graph(traced("spikformer-cifar"))
    positions = [f.position for f in report.findings]
    assert positions == sorted(positions)
    assert report.findings[0].module == "patch_embed.proj_conv" and report.findings[-1].module == "head"


def test_long_note_chains_are_shortened():
    graph = traced("spikformer-cifar")
    report = verify_graph(graph)
    deepest = next(f for f in report.findings if f.module == f"block.{DEPTH - 1}.mlp.fc1_linear")
    assert len(deepest.notes) == 2 * DEPTH
    assert deepest.notes[-1].message.endswith("(patch_embed) adds spikes to spikes")
    chain = verify_graph(traced("spikingformer-cifar")).findings[-1].notes
    assert len(chain) == 4 and chain[2].message.startswith("... ") and chain[3].op == "batchnorm"


def test_check_reads_the_domains_from_the_cache_and_names_their_failure(monkeypatch):
    graph = traced("spikformer-cifar")
    analyses = AnalysisCache()
    domains = ValueDomains()(graph, analyses)
    assert SpikeDriven()(graph, analyses) == SpikeDriven()(graph)
    assert ValueDomains()(graph, analyses) is domains
    monkeypatch.delitem(value_domains.DOMAIN_RULES, "maxpool")
    with pytest.raises(PassError, match=r"^spike-driven: value-domains: no domain rule for maxpool in patch_embed"):
        SpikeDriven()(graph)


# ---------------------------------------------------------------- golden text


GOLDEN_CASES = {
    "spikformer-cifar": lambda: verify_graph(traced("spikformer-cifar")),
    "spikformer-cifar-iand": lambda: verify_graph(traced("spikformer-cifar", residual="iand")),
    "spikformer-imagenet-strict": lambda: verify_graph(traced("spikformer-imagenet"), strict=True),
    "spikingformer-cifar": lambda: verify_graph(traced("spikingformer-cifar")),
    "sdt-cifar": lambda: verify_graph(traced("sdt-cifar")),
    "int-products": lambda: verify(IntProducts(), torch.rand(1, 4, 8)),
    "pooled-spikes": lambda: verify(PooledSpikes(), torch.rand(1, 2, 8, 8)),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_text(case):
    text = GOLDEN_CASES[case]().to_text()
    path = GOLDEN / f"{case}.txt"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with SPIKEC_UPDATE_GOLDEN=1"
    assert text == path.read_text()


# ---------------------------------------------------------------- observed mode


@pytest.mark.parametrize("name", zoo_names())
def test_observed_values_lie_in_the_static_domains(name):
    graph = traced(name, excite=True)
    report = verify_graph(graph, observe=2)
    assert report.disagreements == ()
    assert len(report.observations) == len(checked_operands(graph))
    assert report.exit_code() == verify_graph(graph).exit_code()


def test_observed_spikformer_reaches_the_static_bounds():
    """The SEW bounds are exact: firing neurons fill q/k/v inputs up to 2 + 2l."""
    report = verify_graph(traced("spikformer-cifar", excite=True), observe=2)
    maxima = {o.module: o.maximum for o in report.observations}
    assert [maxima[f"block.{block}.attn.q_linear"] for block in range(DEPTH)] == [2.0 + 2 * block for block in range(DEPTH)]
    q0 = next(o for o in report.observations if o.module == "block.0.attn.q_linear")
    assert [v for v, _ in q0.histogram] == [0.0, 1.0, 2.0] and sum(c for _, c in q0.histogram) == q0.elements


def test_a_disagreement_is_reported(monkeypatch):
    """Pretend the analysis said spike where the model computes spike counts."""
    from spikec.passes import value_domains

    monkeypatch.setitem(value_domains.DOMAIN_RULES, "add", lambda node, domains: (value_domains.SPIKE,))
    report = verify_graph(traced("spikformer-cifar", excite=True), observe=1)
    assert {o.module for o in report.disagreements} >= {"block.0.attn.q_linear", "block.0.mlp.fc1_linear"}
    assert "outside the static domain (a spikec bug: please report it)" in report.to_text()


class _NormalizedSpikes(nn.Module):
    """LIF -> BatchNorm -> Linear: the batch norm makes the spikes real right before the weight op."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 4)
        self.lif = MultiStepLIF(tau=2.0)
        self.norm = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4, 4)
        self.lif2 = MultiStepLIF(tau=2.0)

    def forward(self, x):  # [B, 4]
        T, B = 2, x.shape[0]
        s = self.lif(self.embed(x.unsqueeze(0).repeat(T, 1, 1).flatten(0, 1)).reshape(T, B, 4))
        return self.lif2(self.fc(self.norm(s.flatten(0, 1))).reshape(T, B, 4)).mean(0)


def test_batchnorm_of_spikes_before_a_weight_op_is_sd004():
    report = verify(_NormalizedSpikes(), torch.rand(1, 4))
    (error,) = [f for f in report.findings if f.severity == "error"]
    assert (error.rule, error.module) == ("SD004", "fc")
    assert "real values that batchnorm at " in error.message and error.message.endswith("(norm) made from spikes")
