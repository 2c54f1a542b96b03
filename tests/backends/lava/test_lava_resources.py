"""The resource summary of ``--target loihi2``: the probes' sinks are instrumentation, counted apart from the
network's processes, and every exceeded limit cites its whole source."""

from __future__ import annotations

from lava_cases import residual_graph
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.resources import LIMITS, limit_violations, resource_report
from spikec.cli_numerics import _report_resources
from spikec.ir.printer import weight_table


def test_probe_sinks_are_counted_apart_from_the_networks_processes(capsys):
    # residual_graph: x -> d1 -> s1 -> d2 -> s2 -> d3; s3 = lif(d1 + d3); time sum; host classifier.
    # On neuro cores: the synapse groups d1, d2, d3 and a delayed copy of d1 (it waits the two hops of d2 and
    # d3), and the neuron groups s1, s2, s3: 7. On the host CPU: the input's source and the time sum's readout
    # integrator: 2 (the classifier runs on the host after the run, as no process). Probes: one sink per
    # neuron group and one for the integrator: 4.
    graph = residual_graph()
    report = resource_report(lower(graph), weight_table(graph))
    totals = report["totals"]
    assert (totals["neuro_core_processes"], totals["host_processes"], totals["probe_processes"]) == (7, 2, 4)
    assert sorted(h["kind"] for h in report["host_processes"]) == ["Integrator", "RingBuffer"]
    _report_resources(report, strict=False)
    assert "; 7 processes on neuro cores, 2 on the embedded/host CPU, 4 probes\n" in capsys.readouterr().err


def test_a_violation_cites_the_whole_source_of_its_limit():
    report = {"totals": {"neuro_cores": LIMITS["neuro_cores_per_chip"].value + 1, "neurons": 0, "synapses": 0},
              "neuron_groups": [{"name": "lif4", "module": "block.0.mlp.fc1_lif", "kind": "LIFReset",
                                 "fan_in": LIMITS["fan_in"].value + 1, "bias_mant_bits": 0, "vth": 1}],
              "synapse_groups": []}
    cores, fan_in = limit_violations(report)
    assert cores == (f"network: neuro cores per chip 129 > 128 (source: {LIMITS['neuro_cores_per_chip'].source})")
    assert fan_in.startswith("lif4 (block.0.mlp.fc1_lif): input axons per core (fan-in) 4097 > 4096 (source: ")
    assert fan_in.endswith("(source: Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip "
                           "Learning', IEEE Micro 38(1), 2018 (Loihi 1: 4096 input axons per core; Loihi 2 "
                           "publishes no lower figure))")
