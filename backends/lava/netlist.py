"""The process-graph description: what lowering produces, what the manifest records, and what both the
runtime builder (:mod:`.build`) and the emitter of ``lava_net.py`` (:mod:`.emit`) are generated from.

A :class:`ProcessSpec` is one Lava process: its ``kind`` (a key of :data:`KINDS`, naming a Lava or spikec
process class) and the keyword arguments of its constructor. Argument values are JSON literals (lists stand
for tuples) or references, dicts with a ``"$"`` key, resolved when the network is built:

    {"$": "weight", "key": K}                     the IR weight K of weights.npz, as it is
    {"$": "array", "key": K}                      an array lowering derived (a neuron group's bias), in weights.npz
    {"$": "layout", "fn": F, "key": K, "args": A} the weight matrix helpers.LAYOUTS[F](W[K], *A) (key only when F
                                                  reads an IR weight): a conv kernel in Lava's layout, windows,
                                                  fan-outs, sums, identities (:mod:`.helpers`)
    {"$": "sign_mode", "name": "MIXED"}           lava.utils.weightutils.SignMode
    {"$": "source_data", "name": S}               the spike/graded data a source sends, given at run time
    {"$": "sink_path", "name": S}                 the file sink S records into, given at run time
    {"$": "steps"}                                the number of steps of the run, given at run time

A :class:`Connection` joins an OutPort to an InPort through Lava's virtual ports (``views``: reshape and
transpose, applied in order). Several connections into one InPort are summed by Lava.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["KINDS", "NEURO_CORE_KINDS", "ProcessSpec", "Connection", "Probe", "SourceSpec", "ProcessGraph"]

KINDS: dict[str, tuple[str, str]] = {
    "Conv": ("lava.proc.conv.process", "Conv"),
    "Dense": ("lava.proc.dense.process", "Dense"),
    "DelayDense": ("lava.proc.dense.process", "DelayDense"),
    "Sparse": ("lava.proc.sparse.process", "Sparse"),
    "DelaySparse": ("lava.proc.sparse.process", "DelaySparse"),
    "LIF": ("lava.proc.lif.process", "LIF"),
    "LIFReset": ("lava.proc.lif.process", "LIFReset"),
    "GradedVec": ("lava.proc.graded.process", "GradedVec"),
    "GradedReluVec": ("lava.proc.graded.process", "GradedReluVec"),
    "ProdNeuron": ("lava.proc.prodneuron.process", "ProdNeuron"),
    "RingBuffer": ("lava.proc.io.source", "RingBuffer"),
    "MaxPool": ("spikec.backends.lava.processes.process", "MaxPool"),
    "MatMul": ("spikec.backends.lava.processes.process", "MatMul"),
    "AndNot": ("spikec.backends.lava.processes.process", "AndNot"),
    "Gain": ("spikec.backends.lava.processes.process", "Gain"),
    "Bias": ("spikec.backends.lava.processes.process", "Bias"),
    "Integrator": ("spikec.backends.lava.processes.process", "Integrator"),
    "MemSink": ("spikec.backends.lava.processes.process", "MemSink"),
}
"""Process kind -> (module, class). The first eleven are Lava's own; the rest are spikec's fixed_pt processes."""

NEURO_CORE_KINDS = frozenset({"Conv", "Dense", "DelayDense", "Sparse", "DelaySparse", "LIF", "LIFReset",
                              "GradedVec", "GradedReluVec", "ProdNeuron"})
"""Kinds that map to Loihi 2 neuro cores; every other kind runs on the embedded (Lakemont) or host CPU."""


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    name: str
    kind: str
    args: dict[str, Any]
    role: str                    # synapse | neuron | relay | op | source | sink | readout
    node: int | None = None      # index of the IR node it realises (None for relays' own synapses, sinks)
    module: str = ""
    delay: int = 0               # extra steps this copy runs late (a delayed copy of the node)
    in_ports: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    out_ports: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "role": self.role, "node": self.node, "module": self.module,
                "delay": self.delay, "args": self.args,
                "in_ports": {k: list(v) for k, v in self.in_ports.items()},
                "out_ports": {k: list(v) for k, v in self.out_ports.items()}}


@dataclasses.dataclass(frozen=True)
class Connection:
    src: str
    src_port: str
    dst: str
    dst_port: str
    views: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def to_json(self) -> dict:
        return {"src": f"{self.src}.{self.src_port}", "dst": f"{self.dst}.{self.dst_port}",
                "views": [[kind, list(arg)] for kind, arg in self.views]}


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A source process sending the host-encoded value of IR node ``node``, ``delay`` steps late."""

    name: str
    node: int
    delay: int
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Probe:
    """A recorded stream: ``sink`` writes what arrives each step. ``kind`` is ``spikes`` (a neuron group's
    output), ``value`` (an on-chip value the host reads; ``bias`` is added on the host) or ``integral`` (a
    readout integrator, read at the last step of each sample)."""

    name: str
    node: int
    module: str
    sink: str
    kind: str
    depth: int
    shape: tuple[int, ...]
    dtype: str                   # int8 | int32: how the sink stores it
    bias: str | None = None      # key of the array added on the host (value probes)

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"shape": list(self.shape)}


@dataclasses.dataclass
class ProcessGraph:
    """Everything needed to build, run and read back one model on Lava."""

    name: str
    timesteps: int
    max_depth: int
    processes: list[ProcessSpec]
    connections: list[Connection]
    sources: list[SourceSpec]
    probes: list[Probe]
    host_nodes: list[int]                        # IR nodes the host evaluates after the run (readout)
    arrays: dict[str, np.ndarray]                # derived arrays ({"$": "array"} references)
    depths: dict[int, int]                       # IR node index -> depth
    chip_nodes: list[int] = dataclasses.field(default_factory=list)  # IR nodes of the on-chip region
    attention: list[dict] = dataclasses.field(default_factory=list)  # where each spike matmul runs, and why

    def process(self, name: str) -> ProcessSpec:
        for spec in self.processes:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_json(self) -> dict:
        return {
            "timesteps": self.timesteps, "max_depth": self.max_depth,
            "processes": [p.to_json() for p in self.processes],
            "connections": [c.to_json() for c in self.connections],
            "sources": [dataclasses.asdict(s) | {"shape": list(s.shape)} for s in self.sources],
            "probes": [p.to_json() for p in self.probes],
            "host_nodes": list(self.host_nodes),
            "depths": {str(k): v for k, v in sorted(self.depths.items())},
            "chip_nodes": list(self.chip_nodes),
            "attention": list(self.attention),
        }
