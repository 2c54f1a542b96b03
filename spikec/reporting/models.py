"""The energy models of ``spikec report``: each names its constants, bit width, process node and sources.

A model charges a per-sample row (a counted op or a neuron group, :mod:`.counts`) in picojoules. The rows'
fields: ``kind`` (weight, product, reduction, neuron), ``domain`` (spike, analog, graded), ``T``, ``flops``
(dense operations of one step), ``sops`` (synaptic events over all steps); a neuron row has ``neurons``,
``T`` and ``spikes``. ``charged_as_mac(row, sew_as_ac)`` is the one rule of which weight ops count as MACs.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Constant", "EnergyModel", "MODELS", "MODEL_NAMES", "charged_as_mac", "charge", "weight_bytes",
           "STATE_BYTES", "LOIHI_TIMES"]

_HOROWITZ = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
             "Fig. 1.1.9 (45 nm, 0.9 V)")
_DAVIES = ("M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro 38(1), "
           "2018, Table 2 (Loihi 1, 14 nm, pre-silicon SPICE figures; the same numbers SANA-FE's loihi.yaml uses)")
_LEMAIRE = ("E. Lemaire et al., 'An analytical estimation of spiking neural networks energy efficiency', ICONIP "
            "2022 (memory accesses, not arithmetic, dominate SNN energy)")
_SPIKINGFORMER = ("Zhou et al., 'Spikingformer' (2023) and 'Spikformer' (ICLR 2023) energy method: "
                  "E = E_MAC x FLOPs(encoding layer) + E_AC x sum SOPs, SOPs = firing rate x T x FLOPs")


@dataclasses.dataclass(frozen=True)
class Constant:
    value: float
    unit: str
    what: str
    source: str


@dataclasses.dataclass(frozen=True)
class EnergyModel:
    name: str
    summary: str
    bits: int
    node: str
    constants: dict[str, Constant]
    notes: tuple[str, ...]

    def to_json(self) -> dict:
        return {"summary": self.summary, "bits": self.bits, "node": self.node, "notes": list(self.notes),
                "constants": {k: dataclasses.asdict(c) for k, c in self.constants.items()}}


_SRAM_BYTE = Constant(10.0 / 8, "pJ/byte", "SRAM access, 8 KB array, 64-bit word (10 pJ) per byte",
                      _HOROWITZ + "; " + _LEMAIRE)
_MAC8 = Constant(0.23, "pJ", "8-bit integer multiply (0.2 pJ) plus 8-bit add (0.03 pJ)", _HOROWITZ)
_ADD8 = Constant(0.03, "pJ", "8-bit integer add", _HOROWITZ)

STATE_BYTES = 12        # a neuron's u and v, 24 bits each (Lava's LIF registers), read and written per update
LOIHI_TIMES = {"synop_ns": 3.5, "neuron_update_ns": 5.3}   # Davies et al. 2018, Table 2 (Loihi 1)

MODELS: dict[str, EnergyModel] = {m.name: m for m in (
    EnergyModel(
        "paper", "the spiking-transformer papers' method (Spikformer / Spikingformer energy script)", 32, "45 nm",
        {"E_MAC": Constant(4.6, "pJ", "32-bit float multiply-accumulate (3.7 pJ multiply + 0.9 pJ add)", _HOROWITZ),
         "E_AC": Constant(0.9, "pJ", "32-bit float add", _HOROWITZ)},
        (_SPIKINGFORMER,
         "The encoding layer (analog input) is charged E_MAC x FLOPs at every time step (the input repeats).",
         "Weight ops on graded input (SEW residual sums, spike counts, means) are charged as MACs at every "
         "step; --sew-as-ac charges them E_AC x SOPs instead.",
         "Spike matmuls, Hadamard products and sums are charged E_AC x SOPs; neuron updates and memory are "
         "not charged, as in the papers.",
         "These are 32-bit float costs: a deployed integer network pays neither.")),
    EnergyModel(
        "int8-45nm", "the same counts at 8-bit integer costs, with SRAM traffic", 8, "45 nm",
        {"E_MAC8": _MAC8, "E_ADD8": _ADD8, "E_SRAM_BYTE": _SRAM_BYTE,
         "STATE_BYTES": Constant(STATE_BYTES, "bytes", "neuron state read and written per update (u and v, "
                                 "24 bits each)", "lava-nc 0.10.0, lava/proc/lif/models.py (24-bit u, v)")},
        ("A synaptic event reads its weight from SRAM (1 byte; 2 for the 16-bit host readout) and adds it: "
         "E_ADD8 + bytes x E_SRAM_BYTE. A MAC-charged op pays E_MAC8 + a weight read per MAC.",
         "A neuron update is a leak multiply-add (E_MAC8), a threshold compare (E_ADD8) and STATE_BYTES of "
         "SRAM traffic.",
         "Products and sums pay E_ADD8 per event; their operands' traffic is not charged.",
         "Activation and spike traffic between layers is not charged: a lower bound on memory energy.")),
    EnergyModel(
        "loihi", "Loihi 1's published per-event figures (Intel publishes no per-op Loihi 2 energy)", 8, "14 nm",
        {"E_SYNOP": Constant(23.6, "pJ", "synaptic spike op (per synapse an event reaches)", _DAVIES),
         "E_UPDATE_INACTIVE": Constant(52.0, "pJ", "neuron update, inactive", _DAVIES),
         "E_UPDATE_ACTIVE": Constant(81.0, "pJ", "neuron update, active", _DAVIES),
         "E_SPIKE": Constant(1.7, "pJ", "within-tile spike energy", _DAVIES),
         "T_SYNOP": Constant(LOIHI_TIMES["synop_ns"], "ns", "synaptic spike op time", _DAVIES),
         "T_UPDATE": Constant(LOIHI_TIMES["neuron_update_ns"], "ns", "neuron update time, inactive", _DAVIES)},
        ("Intel publishes no per-operation energy for Loihi 2; these are Loihi 1's pre-silicon figures.",
         "Every synaptic event costs E_SYNOP, graded spikes included; a neuron update costs E_UPDATE_ACTIVE at "
         "a step where the neuron fires (plus E_SPIKE) and E_UPDATE_INACTIVE otherwise.",
         "Spike matmuls, products and sums run on neuro cores in spikec's Lava mapping (a matmul on the embedded "
         "cores under --attention embedded); every event is charged E_SYNOP as if it ran on neuro cores.",
         "Static power, host I/O and routing beyond the tile are not charged.")),
    EnergyModel(
        "ann-int8", "the equal-shape non-spiking baseline: the same network's MACs once, at 8 bits", 8, "45 nm",
        {"E_MAC8": _MAC8, "E_ADD8": _ADD8, "E_SRAM_BYTE": _SRAM_BYTE},
        ("Every weight op and product is charged FLOPs x E_MAC8 once (no time steps), with a weight read per "
         "MAC for weight ops; sums FLOPs x E_ADD8; activations (ReLU) are not charged.",)),
)}

MODEL_NAMES = tuple(MODELS)


def charged_as_mac(row: dict, sew_as_ac: bool) -> bool:
    """Whether the paper method charges ``row`` as MACs: weight ops on the analog input, and on graded
    input unless ``sew_as_ac``."""
    if row["kind"] != "weight":
        return False
    return row["domain"] == "analog" or (row["domain"] == "graded" and not sew_as_ac)


def weight_bytes(row: dict) -> int:
    return 2 if row.get("host") else 1


def _paper(row: dict, sew_as_ac: bool) -> float:
    c = MODELS["paper"].constants
    if row["kind"] == "neuron":
        return 0.0
    if charged_as_mac(row, sew_as_ac):
        return c["E_MAC"].value * row["T"] * row["flops"]
    return c["E_AC"].value * row["sops"]


def _int8(row: dict, sew_as_ac: bool) -> float:
    c = MODELS["int8-45nm"].constants
    mac, add, byte = c["E_MAC8"].value, c["E_ADD8"].value, c["E_SRAM_BYTE"].value
    if row["kind"] == "neuron":
        return row["T"] * row["neurons"] * (mac + add + STATE_BYTES * byte)
    if row["kind"] != "weight":
        return add * row["sops"]
    if charged_as_mac(row, sew_as_ac):
        return row["T"] * row["flops"] * (mac + weight_bytes(row) * byte)
    return row["sops"] * (add + weight_bytes(row) * byte)


def _loihi(row: dict, sew_as_ac: bool) -> float:
    c = MODELS["loihi"].constants
    if row["kind"] != "neuron":
        return c["E_SYNOP"].value * row["sops"]
    updates = row["T"] * row["neurons"]
    return ((updates - row["spikes"]) * c["E_UPDATE_INACTIVE"].value
            + row["spikes"] * (c["E_UPDATE_ACTIVE"].value + c["E_SPIKE"].value))


def _ann(row: dict, sew_as_ac: bool) -> float:
    c = MODELS["ann-int8"].constants
    if row["kind"] == "neuron":
        return 0.0
    if row["kind"] == "reduction":
        return c["E_ADD8"].value * row["flops"]
    reads = weight_bytes(row) * c["E_SRAM_BYTE"].value if row["kind"] == "weight" else 0.0
    return row["flops"] * (c["E_MAC8"].value + reads)


_CHARGE = {"paper": _paper, "int8-45nm": _int8, "loihi": _loihi, "ann-int8": _ann}


def charge(row: dict, sew_as_ac: bool = False) -> dict[str, float]:
    """``row``'s energy in pJ per sample under every model."""
    return {name: float(_CHARGE[name](row, sew_as_ac)) for name in MODEL_NAMES}
