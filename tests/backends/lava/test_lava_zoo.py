"""Lava and intsim give identical spike trains on every neuron layer, for every zoo family and the trained
digits models (docs/design.md, §5: intsim and Lava agree spike for spike on every layer, always).

``make test`` runs one case of each contract (an SDT family, Spikformer's spike matmuls on chip and embedded, a
trained digits model); the other families and placements and Lava's own models run in the slow tier, since the
random-graph tests cover every op they map and the oracle tests compare spikec's models with Lava's own.

Each run streams the batch through Lava's fixed_pt models (spikec's vectorised Conv/Sparse models) in a forked
child under a timeout; ``test_lava_own_models_*`` runs Lava's own models. Families: MS residual
(Spikingformer, SDT), SEW residual with add and with IAND (Spikformer, Spikformer V2), attention by spike
matmul (Spikformer, Spikingformer) and by Hadamard product and column sum (SDT), max-pooling, event input
(DVS: ``to_time_major``), and both readouts (time integrator before the classifier; classifier on spikes).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from lava_cases import DIGITS, LAVA_TIMEOUT_S, assert_bit_exact, digits_case, spike_count, zoo_case
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.mapping import MappingOptions
from spikec.backends.lava.runtime import run_lava
from spikec.models import zoo_names

pytestmark = pytest.mark.lava


_BATCH = {"spikformer-imagenet": 3}
"""Its q (kᵀ v) / 8 over 4 tokens leaves the second block's attention silent in float too: a third sample gives
the first block's attention spikes."""


def _slow_unless(quick: tuple, cases: list) -> list:
    """``cases`` (values or tuples of parameters) marked slow except those in ``quick``."""
    return [case if case in quick else pytest.param(*(case if isinstance(case, tuple) else (case,)),
                                                    marks=pytest.mark.slow) for case in cases]


@pytest.mark.parametrize("arch", _slow_unless(("sdt-cifar",), zoo_names()))
def test_zoo_family_runs_bit_exact_on_lava(arch):
    graph, x = zoo_case(arch, batch=_BATCH.get(arch, 2))
    counts = spike_count(graph, x)
    assert sum(c > 0 for c in counts) >= len(counts) - 2, f"too many silent layers to prove much: {counts}"
    assert_bit_exact(graph, x, run_lava(graph, [x], timeout=LAVA_TIMEOUT_S))


_MATMUL_FAMILIES = [a for a in zoo_names() if a.startswith(("spikformer", "spikingformer"))]


@pytest.mark.parametrize("attention", ["on-chip", "embedded"])
@pytest.mark.parametrize("arch", _slow_unless(("spikformer-cifar",), _MATMUL_FAMILIES))
def test_spike_matmul_families_run_bit_exact_with_attention_on_chip_and_embedded(arch, attention):
    graph, x = zoo_case(arch, batch=1)
    pg = lower(graph, options=MappingOptions(attention))
    assert pg.attention and all(d["attention"] == attention for d in pg.attention)
    assert_bit_exact(graph, x, run_lava(graph, [x], pg, timeout=LAVA_TIMEOUT_S))


@pytest.mark.slow
def test_spikformer_iand_residual_runs_bit_exact_on_lava():
    graph, x = zoo_case("spikformer-cifar", residual="iand")
    assert any(n.op == "and_not" for n in graph.nodes)
    assert_bit_exact(graph, x, run_lava(graph, [x], timeout=LAVA_TIMEOUT_S))


@pytest.mark.parametrize("arch, attention", _slow_unless(
    (("spikingformer-cifar", "on-chip"),), [("spikingformer-cifar", "on-chip"), ("spikingformer-cifar", "embedded"),
                                           ("spikformer-cifar", "on-chip"), ("spikformer-cifar", "embedded"),
                                           ("sdt-cifar", "auto")]))
def test_trained_digits_model_runs_bit_exact_on_lava(arch, attention):
    if not os.path.isfile(os.path.join(DIGITS, f"{arch}.pt")):
        pytest.skip(f"no committed checkpoint {arch}.pt")
    graph, x, _ = digits_case(arch, samples=4)
    pg = lower(graph, options=MappingOptions(attention))
    assert_bit_exact(graph, x, run_lava(graph, [x], pg, timeout=LAVA_TIMEOUT_S))


@pytest.mark.slow
def test_lava_own_models_give_the_same_spikes():
    """The switch to Lava's own Conv/Sparse/DelaySparse/DelayDense models: still bit-exact with intsim (so
    spikec's fast models and Lava's agree on a whole network)."""
    graph, x = zoo_case("spikingformer-cifar", batch=1, embed_dim=16, img_size=8)
    run = run_lava(graph, [x], fast=False, timeout=LAVA_TIMEOUT_S)
    assert_bit_exact(graph, x, run)


@pytest.mark.slow
def test_samples_stream_back_to_back_and_match_one_by_one():
    """A batch runs as one stream (period T, neurons reset as each wave arrives): every sample's spikes equal
    those of the same sample run alone, so no state leaks from one sample into the next."""
    graph, x = zoo_case("sdt-cifar", batch=3)
    batch = run_lava(graph, [x], timeout=LAVA_TIMEOUT_S)
    alone = run_lava(graph, [x[2:3]], timeout=LAVA_TIMEOUT_S)
    for index, value in alone.values.items():
        assert np.array_equal(batch.values[index][:, 2:3], value), graph.nodes[index].module
    pg = lower(graph)
    assert batch.steps == 3 * pg.timesteps + pg.max_depth


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["spikingformer-cifar", "spikformer-cifar", "sdt-cifar"])
def test_trained_digits_model_is_bit_exact_on_the_whole_test_split_with_every_op_on_neuro_cores(arch):
    graph, x, _ = digits_case(arch, samples=450)
    pg = lower(graph)
    assert not {p.kind for p in pg.processes} & {"MatMul", "MaxPool", "AndNot", "Gain", "Bias"}
    assert_bit_exact(graph, x, run_lava(graph, [x], pg, timeout=1800))
