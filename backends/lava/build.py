"""The runtime builder: Lava process objects from a :class:`~.netlist.ProcessGraph` (the same processes the
emitted ``lava_net.py`` builds; the tests run both).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Mapping

import numpy as np

from spikec.backends.lava import helpers
from spikec.backends.lava.netlist import KINDS, ProcessGraph
from spikec.errors import LoweringError

__all__ = ["RunInputs", "build_network", "resolve", "process_class"]


class RunInputs:
    """What a run supplies: the data of each source, the file of each sink, and the number of steps."""

    def __init__(self, source_data: Mapping[str, np.ndarray], sink_paths: Mapping[str, str], steps: int):
        self.source_data, self.sink_paths, self.steps = source_data, sink_paths, steps


def process_class(kind: str) -> type:
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name)


@functools.lru_cache(maxsize=None)
def takes_name(kind: str) -> bool:
    """Whether the constructor takes ``name`` (GradedVec, ProdNeuron and RingBuffer do not: named afterwards)."""
    parameters = inspect.signature(process_class(kind).__init__).parameters.values()
    return any(p.name == "name" or p.kind is p.VAR_KEYWORD for p in parameters)


def resolve(value: Any, weights: Mapping[str, np.ndarray], arrays: Mapping[str, np.ndarray],
            run: RunInputs) -> Any:
    """An argument of the description as the value the constructor takes (see :mod:`.netlist`)."""
    if isinstance(value, list):
        return tuple(resolve(v, weights, arrays, run) for v in value)
    if not isinstance(value, dict):
        return value
    ref = value["$"]
    if ref == "weight":
        return weights[value["key"]]
    if ref == "array":
        return arrays[value["key"]]
    if ref == "layout":
        return helpers.layout(value, weights)
    if ref == "sign_mode":
        from lava.utils.weightutils import SignMode

        return SignMode[value["name"]]
    if ref == "source_data":
        return run.source_data[value["name"]]
    if ref == "sink_path":
        return run.sink_paths[value["name"]]
    if ref == "steps":
        return run.steps
    raise LoweringError(f"lava: unknown argument reference {ref!r}")


def build_network(graph: ProcessGraph, weights: Mapping[str, np.ndarray], run: RunInputs) -> dict[str, Any]:
    """Construct every process and make every connection; returns the processes by name."""
    procs: dict[str, Any] = {}
    for spec in graph.processes:
        args = {k: resolve(v, weights, graph.arrays, run) for k, v in spec.args.items()}
        if spec.kind == "DelaySparse":
            args["delays"] = helpers.uniform_delays(args["weights"], args["delays"])
        if takes_name(spec.kind):
            procs[spec.name] = process_class(spec.kind)(name=spec.name, **args)
        else:
            procs[spec.name] = process_class(spec.kind)(**args)
            procs[spec.name].name = spec.name
    for c in graph.connections:
        port = getattr(procs[c.src], c.src_port)
        for kind, arg in c.views:
            port = port.reshape(tuple(arg)) if kind == "reshape" else port.transpose(list(arg))
        port.connect(getattr(procs[c.dst], c.dst_port))
    return procs
