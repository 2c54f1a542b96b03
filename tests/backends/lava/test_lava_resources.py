"""The resource summary of ``--target loihi2``: the probes' sinks are instrumentation, counted apart from the
network's processes; weights are checked by their mantissa; the report is deterministic; and every exceeded
limit cites its whole source."""

from __future__ import annotations

import json

import numpy as np

from lava_cases import residual_graph
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.resources import LIMITS, _weight_bits, limit_violations, resource_report
from spikec.cli_numerics import _report_resources
from spikec.ir.printer import weight_table


def test_probe_sinks_are_counted_apart_from_the_networks_processes(capsys):
    # residual_graph: x -> d1 -> s1 -> d2 -> s2 -> d3; s3 = lif(d1 + d3); time sum; host classifier.
    # On neuro cores: the synapse groups d1, d2, d3, the neuron groups s1, s2, s3, and d1's graded relay (a
    # GradedVec and its delaying identity synapses: d1's sums wait the two hops of d2 and d3): 8. On the host
    # CPU: the input's source and the time sum's readout integrator: 2 (the classifier runs on the host after
    # the run, as no process). Probes: one sink per neuron group and one for the integrator: 4.
    # Cores: one per neuron group (6 neurons each), the relay's included: 4, on one chip. d1 (6x4), d2 and d3
    # (6x6) have weights (7k mod 9) * 2 - 6, zero where k = 3 (mod 9): 21, 32 and 32 nonzero; d1 feeds s1 and
    # the relay (21 each), the relay 6 identity synapses into s3: 21 + 32 + 21 + 38 = 112 weights stored.
    graph = residual_graph()
    report = resource_report(lower(graph), weight_table(graph))
    totals = report["totals"]
    assert (totals["neuro_core_processes"], totals["host_processes"], totals["probe_processes"]) == (8, 2, 4)
    assert (totals["neuro_cores"], totals["chips"], totals["neurons"], totals["weights_stored"]) == (4, 1, 24, 112)
    assert sorted(h["kind"] for h in report["host_processes"]) == ["Integrator", "RingBuffer"]
    _report_resources(report, strict=False)
    assert capsys.readouterr().err == ("loihi2: 4 neuro cores on 1 chip(s), 24 neurons, 112 synapses, 112 weights "
                                       "stored (bytes), 100.0% of the on-chip ops on neuro cores; 8 processes on "
                                       "neuro cores, 2 on the embedded/host CPU, 4 probes\n")


def test_the_report_is_deterministic():
    graph = residual_graph(bias=True)
    pg, weights = lower(graph), weight_table(graph)
    assert json.dumps(resource_report(pg, weights)) == json.dumps(resource_report(pg, weights))


def test_weight_bits_count_the_mantissa_after_a_shared_power_of_two():
    # 127 << 3 and -128 << 3: mantissas 127 and -128, 8-bit signed (MIXED at one exponent lower): 8 bits.
    assert _weight_bits(np.array([127 << 3, -128 << 3, 0])) == 8
    assert _weight_bits(np.array([255 << 5, 1 << 5])) == 8            # mantissas 255, 1: EXCITATORY
    assert _weight_bits(np.array([255, -1])) == 9                     # no shared factor: 255 needs 9 signed bits
    assert _weight_bits(np.array([300 << 2, 4])) == 10                # mantissas 300 and 1: 10 bits


def test_a_violation_cites_the_whole_source_of_its_limit():
    # One group on two cores, the second storing one byte more than a core holds; a chip holding 129 cores.
    cores = [{"group": "lif4", "chip": 0, "neurons": 8, "synapses": 0, "weights_stored": stored, "fan_in": 1}
             for stored in (10, LIMITS["synapse_memory_per_core"].value + 1)]
    report = {"placement": {"groups": {"lif4": [0, 1]}, "cores": cores,
                            "chips": [{"cores": LIMITS["neuro_cores_per_chip"].value + 1, "neurons": 16,
                                       "synapses": 0}]},
              "neuron_groups": [{"name": "lif4", "module": "block.0.mlp.fc1_lif", "kind": "LIFReset",
                                 "bias_mant_bits": 0, "vth": 1}],
              "synapse_groups": []}
    memory, chip = limit_violations(report)
    assert chip == f"chip 0: neuro cores per chip 129 > 128 (source: {LIMITS['neuro_cores_per_chip'].source})"
    assert memory.startswith("lif4 (block.0.mlp.fc1_lif), 1 of its 2 core(s) (worst: core 1 on chip 0): synapse "
                             "memory bytes per neuro core (1 byte per stored weight) 131073 > 131072 (source: ")
    source = LIMITS["synapse_memory_per_core"].source
    assert memory.endswith(f"(source: {source})") and source.startswith("Intel Labs, 'Taking Neuromorphic "
                                                                        "Computing to the Next Level with Loihi 2'")
    assert source.endswith(": 128 KB synaptic memory of a 192 KB memory per core")
