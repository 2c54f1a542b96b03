"""Random-graph differential tests: random small spiking networks (``random_models.py``), compiled for loihi2, give
the same spikes on Lava as on intsim on every neuron layer, every time step and every sample, and the same logits.

Spike matmuls run ``--attention on-chip`` for even seeds and ``embedded`` for odd ones. A model the compiler
refuses (``InputError`` / ``UnsupportedError``: a known limitation, not a wrong answer) is skipped here and
counted by the slow campaign, which bounds how often the generator draws one. Every failure names the seed and
the command that reproduces it (``python bench/random_graphs.py --seed N``).
"""

from __future__ import annotations

import time

import pytest
import torch

import spikec
from random_models import FEATURES, attention_for, random_case, reproducer, run_seed
from spikec.backends.lava.lowering_rules import RULES
from spikec.errors import InputError

pytestmark = pytest.mark.lava

FIXED_SEEDS = (9, 10, 11, 26, 27, 33, 39, 40, 41, 46, 60, 64, 68, 75, 77, 81, 88, 97, 100, 101, 109, 113, 114, 116,
               118, 121, 125, 133, 135, 147, 154, 169, 180)
"""Seeds chosen so that together they cover every feature of the generator and every on-chip op of the lowering
(both checked below) in several models each."""
QUICK_SEEDS = (10, 26, 33, 64, 109, 113, 114, 121)
"""The fixed seeds ``make test`` runs on Lava: a smallest set that still covers every feature and every on-chip op
(checked below); the other fixed seeds run in the slow tier."""


SLOW_START = 1000
SLOW_MIN_SEEDS = 50
SLOW_BUDGET_S = 480
"""The slow campaign runs at least ``SLOW_MIN_SEEDS`` seeds from ``SLOW_START`` and adds more while under
``SLOW_BUDGET_S`` seconds."""
MAX_REFUSED_SHARE = 0.1


def _compiled(seed: int):
    case = random_case(seed)
    return spikec.compile(case.model, case.x, target="loihi2", attention=attention_for(seed))


def test_random_model_is_deterministic_per_seed():
    """The same seed gives the same architecture, weights, batch-norm statistics and input batch; another seed
    gives another model."""
    first, again, other = random_case(3), random_case(3), random_case(4)
    assert first.summary == again.summary and torch.equal(first.x, again.x)
    a, b = first.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert other.summary != first.summary or other.x.shape != first.x.shape or not torch.equal(other.x, first.x)


@pytest.mark.parametrize("seed", FIXED_SEEDS)
def test_random_model_is_small_and_fires_on_every_neuron_layer(seed):
    """The generator's contract: an eval-mode model, a batch of 2 or 3 images of 4x4 to 8x8 in [0, 1), T of 1 to
    4, and every neuron layer of the float model firing on the batch."""
    case = random_case(seed)
    assert not case.model.training
    B, _, H, W = case.x.shape
    assert 2 <= B <= 3 and 4 <= H <= 8 and 4 <= W <= 8 and 1 <= case.model.T <= 4
    assert 0 <= float(case.x.min()) and float(case.x.max()) < 1
    silent = [name for name, rate in case.firing.items() if rate == 0]
    assert case.firing and not silent, f"seed {seed}: silent layers {silent}; reproduce: {reproducer(seed)}"


def test_quick_seeds_cover_every_feature_of_the_generator():
    """Every block feature the generator can draw (``FEATURES``) appears in some quick seed's model."""
    assert set(QUICK_SEEDS) <= set(FIXED_SEEDS)
    covered = {op for seed in QUICK_SEEDS for op in random_case(seed).ops}
    assert [f for f in FEATURES if f not in covered] == []


def test_quick_seeds_compile_to_every_on_chip_op_and_both_attention_placements():
    """Together the quick seeds' integer graphs hold every op lowering has a rule for (``RULES``), spike matmuls
    both on chip and on the embedded cores, 3x3 convolutions, one-token and token-wise dense layers (the latter
    from ``nn.Linear`` over tokens, 1x1 ``Conv1d`` or 1x1 ``Conv2d``), graded max-pools on the max tree, products
    on ``ProdNeuron`` and a broadcast IAND on spikec's ``AndNot``."""
    ops: set[str] = set()
    for seed in QUICK_SEEDS:
        compiled = _compiled(seed)
        ops |= {n.op for n in compiled.graph.nodes}
        ops |= {f"qconv2d {n.attrs['weight'].shape[2]}" for n in compiled.graph.nodes if n.op == "qconv2d"}
        ops |= {f"qdense rank{n.inputs[0].type.rank}" for n in compiled.graph.nodes
                if n.op == "qdense" and not n.attrs["host"]}
        ops |= {f"matmul {d['attention']}" for d in compiled.lowered.process_graph.attention}
        ops |= {p.kind for p in compiled.lowered.process_graph.processes}
    wanted = set(RULES) | {"matmul on-chip", "matmul embedded", "qconv2d 3", "qdense rank3", "qdense rank4",
                           "qdense rank5", "GradedReluVec", "ProdNeuron", "AndNot"}
    assert sorted(wanted - ops) == []


@pytest.mark.parametrize("seed", [s if s in QUICK_SEEDS else pytest.param(s, marks=pytest.mark.slow)
                                  for s in FIXED_SEEDS])
def test_random_graph_is_bit_exact_on_lava(seed):
    """intsim and Lava agree on every neuron layer's spikes, step and sample, and on the logits; every layer
    fires on intsim too, so the comparison is not between silent layers."""
    result = run_seed(seed)
    if result.status == "refused":
        pytest.skip(f"seed {seed} refused by the compiler: {result.detail}")
    assert result.exact, result.failure()
    silent = [layer for layer, rate in result.firing.items() if rate == 0]
    assert not silent, f"seed {seed}: layers silent on intsim {silent}; reproduce: {reproducer(seed)}"


def test_a_refused_model_is_reported_as_refused_not_as_a_failure(monkeypatch):
    """``run_seed`` counts the compiler's ``InputError`` as a refusal, with its reason."""
    def refuse(*args, **kwargs):
        raise InputError("quantize: a known limitation")

    monkeypatch.setattr(spikec, "compile", refuse)
    result = run_seed(FIXED_SEEDS[0])
    assert (result.status, result.detail) == ("refused", "InputError: quantize: a known limitation")
    assert not result.exact


@pytest.mark.slow
def test_random_graph_campaign_is_bit_exact_on_lava(capsys):
    """At least 50 random graphs (seeds from 1000; more while under eight minutes) are all bit-exact between intsim
    and Lava; at most a tenth are refused by the compiler."""
    start, results = time.perf_counter(), []
    seed = SLOW_START
    while len(results) < SLOW_MIN_SEEDS or time.perf_counter() - start < SLOW_BUDGET_S:
        results.append(run_seed(seed))
        seed += 1
    refused = [r for r in results if r.status == "refused"]
    failures = [r.failure() for r in results if r.status not in ("exact", "refused")]
    ran = len(results) - len(refused)
    with capsys.disabled():
        print(f"\nrandom-graph campaign: {len(results)} seeds ({SLOW_START}..{seed - 1}), {ran} graphs run, "
              f"{ran - len(failures)} exact, {len(refused)} refused, {len(failures)} failed, "
              f"{time.perf_counter() - start:.0f} s")
    assert failures == [], "\n".join(failures)
    assert len(refused) <= MAX_REFUSED_SHARE * len(results), [f"seed {r.seed}: {r.detail}" for r in refused]
