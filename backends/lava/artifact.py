"""What ``--target loihi2`` adds to the compiled artifact (docs/design.md, §7): the process graph and the resource
report in ``manifest.json`` (under ``lava``), the arrays lowering derived (neuron biases) in ``weights.npz``, and
``lava_net.py``; and the process graph read back from a manifest (what ``lava_net.py`` runs)."""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from spikec.backends.lava.emit import emit_lava_net
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.mapping import MappingOptions
from spikec.backends.lava.netlist import Connection, Probe, ProcessGraph, ProcessSpec, SourceSpec
from spikec.backends.lava.resources import resource_report
from spikec.ir import Graph
from spikec.ir.printer import weight_table
from spikec.passes.range_analysis import RangeReport

__all__ = ["LavaArtifact", "lava_artifact", "process_graph_from_manifest"]


@dataclasses.dataclass
class LavaArtifact:
    process_graph: ProcessGraph
    resources: dict
    arrays: dict[str, np.ndarray]            # added to weights.npz
    files: dict[str, str]                    # file name -> text

    def manifest(self) -> dict:
        pg = self.process_graph
        kinds: dict[str, int] = {}
        for spec in pg.processes:
            kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
        return {"lava": {**pg.to_json(), "module": "lava_net.py", "process_counts": dict(sorted(kinds.items())),
                         "resources": self.resources,
                         "run_steps": f"B * {pg.timesteps} + {pg.max_depth} for B samples"}}


def lava_artifact(graph: Graph, name: str, ranges: RangeReport | None = None,
                  options: MappingOptions = MappingOptions()) -> LavaArtifact:
    """Lower ``graph`` and make everything the loihi2 artifact holds beyond the intsim one. ``ranges``: the
    compile's range analysis of ``graph``, so lowering need not repeat it (:func:`.lowering.lower`)."""
    pg = lower(graph, name, ranges=ranges, options=options)
    weights = weight_table(graph)
    clash = sorted(set(weights) & set(pg.arrays))
    if clash:
        raise ValueError(f"derived arrays clash with IR weights: {clash}")
    return LavaArtifact(pg, resource_report(pg, weights), dict(pg.arrays), {"lava_net.py": emit_lava_net(pg)})


def process_graph_from_manifest(name: str, lava: dict, weights: Mapping[str, np.ndarray]) -> ProcessGraph:
    """The process graph a ``manifest.json`` records under ``lava`` (the inverse of ``ProcessGraph.to_json``),
    with its derived arrays (the ``lava.*`` entries of ``weights``).

    ``lava_net.py`` runs on this rather than on a fresh lowering of ``model.ir``: its ``build`` was generated
    from this very graph, so sinks, sources and depths match its processes even if spikec's lowering changed
    since the compile.
    """
    def ports(spec: dict) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v) for k, v in spec.items()}

    processes = [ProcessSpec(p["name"], p["kind"], p["args"], p["role"], p["node"], p["module"], p["delay"],
                             ports(p["in_ports"]), ports(p["out_ports"])) for p in lava["processes"]]
    connections = [Connection(*c["src"].rsplit(".", 1), *c["dst"].rsplit(".", 1),
                              tuple((kind, tuple(arg)) for kind, arg in c["views"])) for c in lava["connections"]]
    sources = [SourceSpec(s["name"], s["node"], s["delay"], tuple(s["shape"])) for s in lava["sources"]]
    probes = [Probe(**{**p, "shape": tuple(p["shape"])}) for p in lava["probes"]]
    arrays = {k: v for k, v in weights.items() if k.startswith("lava.")}
    return ProcessGraph(name, lava["timesteps"], lava["max_depth"], processes, connections, sources, probes,
                        list(lava["host_nodes"]), arrays, {int(k): v for k, v in lava["depths"].items()},
                        list(lava["chip_nodes"]), list(lava["attention"]))
