"""Resource report of a process graph against Loihi 2's limits (docs/lava.md, "Resource report and Loihi 2
limits").

Every limit names its source (:data:`LIMITS`); ``docs/lava.md`` repeats them. :mod:`.placement` splits each
neuron group into core slices and packs the cores onto chips; the report gives that placement, each core's and
chip's load, and checks every core and every chip against the limits. A network that needs many chips is not
over a limit: a core or a chip that holds more than it can is. spikec's own processes (spike matmul, pooling,
sums, gains, readout integrators) and the sources run on the embedded/host CPU and take no neuro core; they are
listed apart, and ``on_chip_fraction`` says what share of the on-chip region's ops run on neuro cores. The
probes' sinks record what the host reads back; they are instrumentation, not part of the network, so they are
counted apart from both.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from spikec.backends.intsim.fixed_point import (BIAS_EXP_BITS, BIAS_MANT_BITS, DENSE_MANTISSA_MAX, DENSE_MANTISSA_MIN,
                                                DENSE_MANTISSA_STEP, MESSAGE_BITS, SIGN_MODE_RANGES, VTH_BITS,
                                                WEIGHT_BITS, SignMode)
from spikec.backends.lava.lowering_streams import MAX_SYNAPSE_DELAY
from spikec.backends.lava.netlist import NEURO_CORE_KINDS, ProcessGraph, ProcessSpec
from spikec.backends.lava.placement import (ConvSynapses, CoreLimits, Load, MatrixSynapses, Placement, is_neuron_group,
                                            place, placement_groups, synapse_models)

__all__ = ["Limit", "LIMITS", "core_limits", "resource_report", "embedded_ops", "limit_violations"]


@dataclasses.dataclass(frozen=True)
class Limit:
    value: int
    what: str
    source: str


_BRIEF = "Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief (2021)"
_LAVA_LIF = "lava-nc 0.10.0, lava/proc/lif/models.py, PyLifModelBitAcc docstring (Loihi's LIF register widths)"

LIMITS: dict[str, Limit] = {
    "neuro_cores_per_chip": Limit(128, "neuro cores per chip", _BRIEF + ": 128 neuromorphic cores per chip"),
    "embedded_cores_per_chip": Limit(6, "embedded x86 cores per chip (where spikec's processes run)",
                                     _BRIEF + ": 6 embedded x86 (Lakemont) cores per chip"),
    "neurons_per_chip": Limit(1 << 20, "neurons per chip (about 1M)", _BRIEF + ": up to 1M neurons per chip"),
    "synapses_per_chip": Limit(120_000_000, "synapses per chip", _BRIEF + ": up to 120M synapses per chip"),
    "neurons_per_core": Limit(8192, "neurons per neuro core",
                              "Orchard et al., 'Efficient Neuromorphic Signal Processing with Loihi 2', IEEE SiPS "
                              "2021 (up to 8192 neurons per core; medium confidence)"),
    "synapse_memory_per_core": Limit(128 * 1024, "synapse memory bytes per neuro core (1 byte per stored weight)",
                                     _BRIEF + ": 128 KB synaptic memory of a 192 KB memory per core"),
    "fan_in": Limit(4096, "input axons per core (fan-in; a Loihi 1 figure, reported, not checked)",
                    "Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro "
                    "38(1), 2018 (Loihi 1: 4096 input axons per core; Loihi 2 publishes no figure, and its "
                    "convolutional connections share axons across positions)"),
    "weight_bits": Limit(WEIGHT_BITS, "weight mantissa bits (shared exponent per synapse group)",
                         "lava-nc 0.10.0, lava/utils/weightutils.py (max_num_weight_bits = 8)"),
    "message_bits": Limit(MESSAGE_BITS, "graded spike payload bits as Lava models them (hardware: up to 32)",
                          "lava-nc 0.10.0 fixed_pt port types (precision=24); " + _BRIEF
                          + ": graded spikes with up to 32-bit payload"),
    "delay": Limit(MAX_SYNAPSE_DELAY, "synaptic delay steps",
                   "lava-nc 0.10.0, lava/proc/dense/models.py, PyDelayDenseModelBitAcc ('Loihi 2 has a maximum "
                   "of 6 bits for delays')"),
    "bias_mant_bits": Limit(BIAS_MANT_BITS, "signed bias mantissa bits", _LAVA_LIF),
    "bias_exp": Limit((1 << BIAS_EXP_BITS) - 1, "bias exponent (unsigned 3-bit)", _LAVA_LIF),
    "vth_bits": Limit(VTH_BITS, "threshold mantissa bits (unsigned)", _LAVA_LIF),
}

_CORE_CHECKS = (("neurons_per_core", "neurons"), ("synapse_memory_per_core", "weights_stored"))
"""The per-core limits placement keeps to and the report checks. Fan-in is counted and reported
(``per_core_peaks``, ``notes``) against Loihi 1's figure, but not a limit: Loihi 2 publishes none, and counting
each source neuron as an axon overstates what a shared-weight (convolutional) connection needs."""
_CHIP_CHECKS = (("neuro_cores_per_chip", "cores"), ("neurons_per_chip", "neurons"),
                ("synapses_per_chip", "synapses"))
_PEAKS = ("neurons", "weights_stored", "fan_in", "synapses")


def core_limits() -> CoreLimits:
    """What one core and one chip hold, as :data:`LIMITS` says now."""
    value = {key: limit.value for key, limit in LIMITS.items()}
    return CoreLimits(value["neurons_per_core"], value["synapse_memory_per_core"], None,
                      value["neuro_cores_per_chip"], value["neurons_per_chip"], value["synapses_per_chip"])


def _signed_bits(peak: int) -> int:
    """Bits of a two's-complement integer holding values up to ``peak`` in magnitude."""
    return max(1, int(peak).bit_length() + 1)


def _mantissa(w: np.ndarray) -> np.ndarray:
    """``w / 2**e`` for the largest ``e`` dividing every weight: Loihi stores an 8-bit mantissa and one exponent
    per synapse group, so ``m << e`` (e.g. a Conv's weights, which Lava stores as integers, having no exponent)
    costs only the bits of ``m``."""
    nonzero = np.abs(w[w != 0]).astype(np.int64)
    if not nonzero.size:
        return w
    lowest_bit = int(np.bitwise_and(nonzero, -nonzero).min())
    return w.astype(np.int64) // lowest_bit


def _weight_bits(w: np.ndarray) -> int:
    """Bits Loihi needs per weight: 8 when the mantissa ``m`` (:func:`_mantissa`) fits one of Lava's 8-bit sign
    modes (MIXED: ``2 m`` even in [-256, 254] at an exponent one lower; EXCITATORY: [0, 255]; INHIBITORY:
    [-255, 0]), else the two's-complement width of ``m``."""
    m = _mantissa(np.asarray(w))
    lo, hi = int(m.min(initial=0)), int(m.max(initial=0))
    (ex_lo, ex_hi), (in_lo, in_hi) = SIGN_MODE_RANGES[SignMode.EXCITATORY], SIGN_MODE_RANGES[SignMode.INHIBITORY]
    mixed = DENSE_MANTISSA_MIN <= DENSE_MANTISSA_STEP * lo and DENSE_MANTISSA_STEP * hi <= DENSE_MANTISSA_MAX
    if ex_lo <= lo and hi <= ex_hi or in_lo <= lo and hi <= in_hi or mixed:
        return WEIGHT_BITS
    return _signed_bits(max(abs(lo), abs(hi)))


def _synapse_row(spec: ProcessSpec, model: MatrixSynapses | ConvSynapses, placed: Load, targets: list[str]) -> dict:
    return {"name": spec.name, "kind": spec.kind, "module": spec.module, "node": spec.node, "targets": targets,
            "synapses": placed.synapses, "weights_stored": placed.weights_stored,
            "shared": isinstance(model, ConvSynapses), "weight_bits": _weight_bits(model.values),
            "delay": int(spec.args.get("delays", 0)),
            "message_bits": MESSAGE_BITS if spec.args.get("num_message_bits", 0) else 1}


def _neuron_row(spec: ProcessSpec, pg: ProcessGraph, placement: Placement) -> dict:
    bias = spec.args.get("bias_mant")
    bias_bits = _signed_bits(int(np.abs(pg.arrays[bias["key"]]).max(initial=0))) if isinstance(bias, dict) else 0
    ids = placement.groups[spec.name]
    return {"name": spec.name, "kind": spec.kind, "role": spec.role, "module": spec.module, "node": spec.node,
            "neurons": sum(placement.cores[i].neurons for i in ids),
            "synapses_in": sum(placement.cores[i].synapses for i in ids), "cores": len(ids),
            "bias_mant_bits": bias_bits, "vth": int(spec.args.get("vth", 0))}


def embedded_ops(pg: ProcessGraph) -> list[dict]:
    """The on-chip region's IR nodes run off the neuro cores: some process made for the node (its probe's sink
    aside) is of a kind outside ``NEURO_CORE_KINDS`` (one of spikec's processes, on the embedded cores)."""
    off: dict[int, list[ProcessSpec]] = {}
    for spec in pg.processes:
        if spec.node is not None and spec.role != "sink" and spec.kind not in NEURO_CORE_KINDS:
            off.setdefault(spec.node, []).append(spec)
    return [{"node": node, "kind": "+".join(sorted({s.kind for s in off[node]})), "module": off[node][0].module}
            for node in pg.chip_nodes if node in off]


def _totals(pg: ProcessGraph, placement: Placement, embedded: list[dict], host: list[dict]) -> dict:
    """Network totals; ``on_chip_fraction`` = (chip nodes - embedded ops) / chip nodes (1 with no chip node)."""
    chip_nodes = len(pg.chip_nodes)
    sinks = sum(spec.role == "sink" for spec in pg.processes)
    return {"neuro_cores": len(placement.cores), "chips": len(placement.chips),
            **{key: sum(getattr(core, key) for core in placement.cores)
               for key in ("neurons", "synapses", "weights_stored")},
            "on_chip_fraction": (chip_nodes - len(embedded)) / chip_nodes if chip_nodes else 1.0,
            "neuro_core_processes": len(pg.processes) - len(host) - sinks, "host_processes": len(host),
            "probe_processes": sinks}


def resource_report(pg: ProcessGraph, weights: Mapping[str, np.ndarray]) -> dict:
    """The placement (group -> cores -> chip), each core's load, the per-core peaks and network totals, per
    neuron group and synapse group what they hold and their bit widths, the host-only processes, the on-chip
    region's ops that run on the embedded cores, and every limit exceeded (``violations``)."""
    models = synapse_models(pg, weights)
    groups = placement_groups(pg, models)
    placement = place(groups, core_limits())
    targets: dict[str, list[str]] = {name: [] for name in models}
    for group in groups:
        for feed in group.feeds:
            if feed.synapse is not None and group.name not in targets[feed.synapse]:
                targets[feed.synapse].append(group.name)
    host = [{"name": s.name, "kind": s.kind, "role": s.role, "module": s.module, "node": s.node}
            for s in pg.processes if s.kind not in NEURO_CORE_KINDS and s.role != "sink"]
    embedded = embedded_ops(pg)
    report = {"limits": {k: dataclasses.asdict(v) for k, v in LIMITS.items()},
              "totals": _totals(pg, placement, embedded, host),
              "per_core_peaks": {key: max((getattr(core, key) for core in placement.cores), default=0)
                                 for key in _PEAKS},
              "placement": placement.to_json(),
              "neuron_groups": [_neuron_row(s, pg, placement) for s in pg.processes if is_neuron_group(s)],
              "synapse_groups": [_synapse_row(s, models[s.name], placement.synapses.get(s.name, Load()),
                                              targets[s.name]) for s in pg.processes if s.name in models],
              "host_processes": host, "embedded_ops": embedded}
    report["violations"] = limit_violations(report)
    report["notes"] = _fan_in_notes(placement)
    return report


def _fan_in_notes(placement: Placement) -> list[str]:
    """Cores reading more input axons than a Loihi 1 core had: a note, not a violation (see ``_CORE_CHECKS``)."""
    limit = LIMITS["fan_in"]
    over = [core.fan_in for core in placement.cores if core.fan_in > limit.value]
    if not over:
        return []
    return [f"{len(over)} of {len(placement.cores)} cores read more than {limit.value} input axons (peak "
            f"{max(over)}), Loihi 1's figure; Loihi 2 publishes none (source: {limit.source})"]


def _over(key: str, value: int, where: str) -> list[str]:
    """The violation line of limit ``key`` at ``where`` (what, how much, the limit's whole source), if over."""
    limit = LIMITS[key]
    if value <= limit.value:
        return []
    return [f"{where}: {limit.what} {value} > {limit.value} (source: {limit.source})"]


def _core_violations(report: dict) -> list[str]:
    """Per group and per-core limit: how many of its cores are over, and the worst one."""
    names = {row["name"]: row["module"] or row["kind"] for row in report["neuron_groups"] + report["synapse_groups"]}
    cores = report["placement"]["cores"]
    lines = []
    for group, ids in report["placement"]["groups"].items():
        for key, field in _CORE_CHECKS:
            over = [i for i in ids if cores[i][field] > LIMITS[key].value]
            if over:
                worst = max(over, key=lambda i: (cores[i][field], -i))
                where = (f"{group} ({names[group]}), {len(over)} of its {len(ids)} core(s) (worst: "
                         f"core {worst} on chip {cores[worst]['chip']})")
                lines += _over(key, cores[worst][field], where)
    return lines


def limit_violations(report: dict) -> list[str]:
    """One line per exceeded limit: what, where (the group and its cores, the chip, the process), how much, and
    the limit's source."""
    lines = _core_violations(report)
    for index, chip in enumerate(report["placement"]["chips"]):
        for key, field in _CHIP_CHECKS:
            lines += _over(key, chip[field], f"chip {index}")
    for g in report["neuron_groups"]:
        where = f"{g['name']} ({g['module'] or g['kind']})"
        lines += _over("bias_mant_bits", g["bias_mant_bits"], where)
        lines += _over("vth_bits", max(0, g["vth"]).bit_length(), where)
    for s in report["synapse_groups"]:
        where = f"{s['name']} ({s['module'] or s['kind']})"
        for key in ("weight_bits", "delay", "message_bits"):
            lines += _over(key, s[key], where)
    return lines
