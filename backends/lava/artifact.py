"""What ``--target loihi2`` adds to the compiled artifact (DESIGN §7): the process graph and the resource
report in ``manifest.json`` (under ``lava``), the arrays lowering derived (neuron biases) in ``weights.npz``, and
``lava_net.py``."""

from __future__ import annotations

import dataclasses

import numpy as np

from spikec.backends.lava.emit import emit_lava_net
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.netlist import ProcessGraph
from spikec.backends.lava.resources import resource_report
from spikec.ir import Graph
from spikec.ir.printer import weight_table

__all__ = ["LavaArtifact", "lava_artifact"]


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


def lava_artifact(graph: Graph, name: str) -> LavaArtifact:
    """Lower ``graph`` and make everything the loihi2 artifact holds beyond the intsim one."""
    pg = lower(graph, name)
    weights = weight_table(graph)
    clash = sorted(set(weights) & set(pg.arrays))
    if clash:
        raise ValueError(f"derived arrays clash with IR weights: {clash}")
    return LavaArtifact(pg, resource_report(pg, weights), dict(pg.arrays), {"lava_net.py": emit_lava_net(pg, graph)})
