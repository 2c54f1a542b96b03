"""Resource report of a process graph against Loihi 2's limits (docs/design.md, §7).

Every limit names its source (:data:`LIMITS`); ``docs/lava.md`` repeats them. The estimate places each neuron
group on whole neuro cores (``ceil(neurons / neurons_per_core)``, more when its input synapses do not fit), with
its input synapse groups on the same cores, as Lava's Loihi compiler does; relays count as neuron groups.
spikec's own processes (spike matmul, pooling, sums, gains, readout integrators) and the sources run on the
embedded/host CPU and take no neuro core; they are listed apart. The probes' sinks record what the host reads
back; they are instrumentation, not part of the network, so they are counted apart from both.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np

from spikec.backends.intsim.fixed_point import (BIAS_EXP_BITS, BIAS_MANT_BITS, DENSE_MANTISSA_MAX, DENSE_MANTISSA_MIN,
                                                DENSE_MANTISSA_STEP, MESSAGE_BITS, SIGN_MODE_RANGES, VTH_BITS,
                                                WEIGHT_BITS, SignMode)
from spikec.backends.lava.lowering_streams import MAX_SYNAPSE_DELAY
from spikec.backends.lava.netlist import NEURO_CORE_KINDS, ProcessGraph

__all__ = ["Limit", "LIMITS", "resource_report", "limit_violations"]


@dataclasses.dataclass(frozen=True)
class Limit:
    value: int
    what: str
    source: str


_BRIEF = ("Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief (2021): "
          "128 neuromorphic cores and 6 embedded x86 cores per chip, up to 1M neurons and 120M synapses per chip, "
          "graded spikes with up to 32-bit payload")
_LAVA_LIF = "lava-nc 0.10.0, lava/proc/lif/models.py, PyLifModelBitAcc docstring (Loihi's LIF register widths)"

LIMITS: dict[str, Limit] = {
    "neuro_cores_per_chip": Limit(128, "neuro cores per chip", _BRIEF),
    "neurons_per_chip": Limit(1 << 20, "neurons per chip (about 1M)", _BRIEF),
    "synapses_per_chip": Limit(120_000_000, "synapses per chip", _BRIEF),
    "neurons_per_core": Limit(8192, "neurons per neuro core",
                              "Orchard et al., 'Efficient Neuromorphic Signal Processing with Loihi 2', IEEE SiPS "
                              "2021 (up to 8192 neurons per core; medium confidence)"),
    "synapses_per_core": Limit(120_000_000 // 128, "synapses per neuro core (chip total / 128 cores)",
                               "derived from " + _BRIEF),
    "fan_in": Limit(4096, "input axons per core (fan-in)",
                    "Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro "
                    "38(1), 2018 (Loihi 1: 4096 input axons per core; Loihi 2 publishes no lower figure)"),
    "weight_bits": Limit(WEIGHT_BITS, "weight mantissa bits (shared exponent per synapse group)",
                         "lava-nc 0.10.0, lava/utils/weightutils.py (max_num_weight_bits = 8)"),
    "message_bits": Limit(MESSAGE_BITS, "graded spike payload bits as Lava models them (hardware: up to 32)",
                          "lava-nc 0.10.0 fixed_pt port types (precision=24); " + _BRIEF),
    "delay": Limit(MAX_SYNAPSE_DELAY, "synaptic delay steps",
                   "lava-nc 0.10.0, lava/proc/dense/models.py, PyDelayDenseModelBitAcc ('Loihi 2 has a maximum "
                   "of 6 bits for delays')"),
    "bias_mant_bits": Limit(BIAS_MANT_BITS, "signed bias mantissa bits", _LAVA_LIF),
    "bias_exp": Limit((1 << BIAS_EXP_BITS) - 1, "bias exponent (unsigned 3-bit)", _LAVA_LIF),
    "vth_bits": Limit(VTH_BITS, "threshold mantissa bits (unsigned)", _LAVA_LIF),
}


def _signed_bits(peak: int) -> int:
    """Bits of a two's-complement integer holding values up to ``peak`` in magnitude."""
    return max(1, int(peak).bit_length() + 1)


def _weight_bits(w: np.ndarray) -> int:
    """Bits Loihi needs per weight: 8 when Lava's 8-bit sign modes hold them exactly (MIXED: even values in
    [-256, 254]; EXCITATORY: [0, 255]; INHIBITORY: [-255, 0]), else the two's-complement width."""
    lo, hi = int(w.min(initial=0)), int(w.max(initial=0))
    (ex_lo, ex_hi), (in_lo, in_hi) = SIGN_MODE_RANGES[SignMode.EXCITATORY], SIGN_MODE_RANGES[SignMode.INHIBITORY]
    mixed = DENSE_MANTISSA_MIN <= lo and hi <= DENSE_MANTISSA_MAX and not np.any(w % DENSE_MANTISSA_STEP)
    if ex_lo <= lo and hi <= ex_hi or in_lo <= lo and hi <= in_hi or mixed:
        return WEIGHT_BITS
    return _signed_bits(max(abs(lo), abs(hi)))


def _synapses(spec, args: Mapping, weights: Mapping[str, np.ndarray]) -> dict:
    """Synapse count, weights stored, fan-in per target neuron, weight bits of a synapse process."""
    ref = args.get("weights", args.get("weight"))
    key = ref.get("key") if isinstance(ref, dict) else None
    if spec.kind == "Conv":
        w = weights[key]
        out = math.prod(spec.out_ports["a_out"])
        fan_in = int(np.prod(w.shape[1:]))
        return {"synapses": out * fan_in, "stored": int(w.size), "fan_in": fan_in,
                "weight_bits": _weight_bits(w), "shared": True}
    if ref.get("$") == "identity":
        return {"synapses": ref["size"], "stored": ref["size"], "fan_in": 1, "weight_bits": 1, "shared": False}
    w = weights[key]
    nonzero_rows = np.count_nonzero(w, axis=1)
    copies = ref["pre"] * ref["post"] if ref.get("$") == "token_dense" else 1
    nnz = int(np.count_nonzero(w)) * copies
    return {"synapses": nnz, "stored": nnz, "fan_in": int(nonzero_rows.max(initial=0)),
            "weight_bits": _weight_bits(w), "shared": False}


def resource_report(pg: ProcessGraph, weights: Mapping[str, np.ndarray]) -> dict:
    """Per neuron group and synapse group: neurons, synapses, fan-in, bits, delays, cores; totals (the probes'
    sinks only as ``probe_processes``); the host-only processes; and every limit exceeded (``violations``)."""
    incoming: dict[str, list[str]] = {}
    for c in pg.connections:
        incoming.setdefault(c.dst, []).append(c.src)
    groups, synapse_rows, host = [], [], []
    per_core_neurons = LIMITS["neurons_per_core"].value
    per_core_synapses = LIMITS["synapses_per_core"].value
    synapse_info = {}
    for spec in pg.processes:
        if spec.kind in ("Conv", "Dense", "DelayDense", "Sparse", "DelaySparse"):
            info = _synapses(spec, spec.args, weights)
            info["delay"] = int(spec.args.get("delays", 0))
            info["message_bits"] = MESSAGE_BITS if spec.args.get("num_message_bits", 0) else 1
            synapse_info[spec.name] = info
            synapse_rows.append({"name": spec.name, "kind": spec.kind, "module": spec.module, "node": spec.node,
                                 **info})
    probes = sum(spec.role == "sink" for spec in pg.processes)
    for spec in pg.processes:
        if spec.role == "sink":
            continue
        if spec.kind not in NEURO_CORE_KINDS or spec.name in synapse_info:
            if spec.kind not in NEURO_CORE_KINDS:
                host.append({"name": spec.name, "kind": spec.kind, "role": spec.role, "module": spec.module,
                             "node": spec.node})
            continue
        neurons = math.prod(next(iter(spec.out_ports.values())))
        feeding = [synapse_info[s] for s in incoming.get(spec.name, []) if s in synapse_info]
        synapses = sum(f["synapses"] for f in feeding)
        cores = max(math.ceil(neurons / per_core_neurons), math.ceil(synapses / per_core_synapses), 1)
        bias = spec.args.get("bias_mant")
        bias_bits = 0
        if isinstance(bias, dict):
            bias_bits = _signed_bits(int(np.abs(pg.arrays[bias["key"]]).max(initial=0)))
        groups.append({"name": spec.name, "kind": spec.kind, "role": spec.role, "module": spec.module,
                       "node": spec.node, "neurons": neurons, "synapses_in": synapses,
                       "fan_in": sum(f["fan_in"] for f in feeding), "cores": cores, "bias_mant_bits": bias_bits,
                       "vth": int(spec.args.get("vth", 0))})
    totals = {"neuro_cores": sum(g["cores"] for g in groups), "neurons": sum(g["neurons"] for g in groups),
              "synapses": sum(s["synapses"] for s in synapse_rows),
              "weights_stored": sum(s["stored"] for s in synapse_rows),
              "neuro_core_processes": len(groups) + len(synapse_rows), "host_processes": len(host),
              "probe_processes": probes}
    totals["chips"] = max(1, math.ceil(totals["neuro_cores"] / LIMITS["neuro_cores_per_chip"].value))
    report = {"limits": {k: dataclasses.asdict(v) for k, v in LIMITS.items()}, "totals": totals,
              "neuron_groups": groups, "synapse_groups": synapse_rows, "host_processes": host}
    report["violations"] = limit_violations(report)
    return report


def limit_violations(report: dict) -> list[str]:
    """One line per exceeded limit: what, where, how much, and the limit's source."""
    lines = []

    def over(key: str, value: int, where: str) -> None:
        limit = LIMITS[key]
        if value > limit.value:
            lines.append(f"{where}: {limit.what} {value} > {limit.value} (source: {limit.source})")

    totals = report["totals"]
    over("neuro_cores_per_chip", totals["neuro_cores"], "network")
    over("neurons_per_chip", totals["neurons"], "network")
    over("synapses_per_chip", totals["synapses"], "network")
    for g in report["neuron_groups"]:
        where = f"{g['name']} ({g['module'] or g['kind']})"
        over("fan_in", g["fan_in"], where)
        over("bias_mant_bits", g["bias_mant_bits"], where)
        over("vth_bits", max(0, g["vth"]).bit_length(), where)
    for s in report["synapse_groups"]:
        where = f"{s['name']} ({s['module'] or s['kind']})"
        over("weight_bits", s["weight_bits"], where)
        over("delay", s["delay"], where)
        over("message_bits", s["message_bits"], where)
    return lines

