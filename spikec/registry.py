"""The compile targets and simulation backends, in one registry: the CLI's choices, the API's checks and
the error messages all read it, so a new target or backend is one entry here.

A **target** is what ``spikec compile --target`` produces: which files its artifact holds beyond
``manifest.json``, ``model.ir`` and ``weights.npz``, how it lowers the integer graph (its part of the
artifact), and which backends run the result. A **backend** is what ``spikec simulate --backend`` runs:
what it needs from the simulation (the PyTorch module, the traced float graph, or a compiled integer
graph, of some targets only) and how it makes a runner (a function from a float batch to logits and
per-layer spikes, :func:`spikec.simulation.simulate`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

__all__ = ["Target", "Backend", "TARGETS", "BACKENDS", "target"]


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    summary: str
    files: tuple[str, ...]                      # beyond manifest.json, model.ir and weights.npz
    lower: Callable | None                      # (integer graph, name, ranges) -> the target's artifact part


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    summary: str
    needs: str                                  # "PyTorch model", "float graph" or "compiled model"
    targets: tuple[str, ...] | None             # targets whose compiled models it runs (None: any)
    make_runner: Callable                       # (plan, lava_models) -> runner
    package: str | None = None                  # the optional package it runs on, checked before any work
    install: str = ""                           # how to install that package

    def check_installed(self) -> None:
        """One line saying how to install the backend's package when it is missing (exit 2, before any work)."""
        from spikec.errors import InputError

        if self.package is None:
            return
        try:
            importlib.import_module(self.package)
        except ImportError:
            raise InputError(f"the {self.name} backend needs {self.package.split('.')[0]}, which is not installed: "
                             f"{self.install}") from None

    def runs(self, plan) -> bool:
        """Whether this backend can run what ``plan`` (a :class:`spikec.simulation.SimulationPlan`) holds."""
        if self.needs == "PyTorch model":
            return plan.module is not None
        if self.needs == "float graph":
            return plan.float_graph is not None
        return self.targets is None or plan.compiled.target in self.targets


def _lower_loihi2(graph, name: str, ranges, attention: str):
    from spikec.backends.lava.artifact import lava_artifact
    from spikec.backends.lava.mapping import MappingOptions

    return lava_artifact(graph, name, ranges, MappingOptions(attention))


def _torch(plan, lava_models):
    from spikec.simulation import batch_axis, torch_runner

    return torch_runner(plan.module, batch_axis(plan.layout) if plan.per_sample else None)


def _float(plan, lava_models):
    from spikec.simulation import float_runner

    return float_runner(plan.float_graph)


def _intsim(plan, lava_models):
    from spikec.simulation import intsim_runner

    return intsim_runner(plan.compiled.graph, plan.compiled.output_scales[0], getattr(plan.compiled, "ranges", None))


def _onnxruntime(plan, lava_models):
    from spikec.simulation import onnxruntime_runner

    return onnxruntime_runner(plan.compiled.graph, plan.compiled.output_scales[0], plan.onnx_file)


def _lava(plan, lava_models):
    from spikec.simulation import lava_runner

    return lava_runner(plan.compiled.graph, plan.compiled.output_scales[0], lava_models,
                       plan.compiled.process_graph())


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("intsim", "the integer reference simulator's artifact", (), None),
    Target("loihi2", "also the Lava process graph, its resource report and lava_net.py", ("lava_net.py",),
           _lower_loihi2),
)}

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "the PyTorch module itself", "PyTorch model", None, _torch),
    Backend("float", "the float interpreter of the traced IR", "float graph", None, _float),
    Backend("intsim", "the integer simulator of the compiled graph", "compiled model", None, _intsim),
    Backend("lava", "Lava's bit-accurate CPU models (Loihi2SimCfg, fixed_pt)", "compiled model", ("loihi2",),
            _lava, "lava.magma.core", "pip install 'spikec[lava]' (lava-nc 0.10.0 runs on Python 3.10)"),
    Backend("onnxruntime", "onnxruntime on the graph's ONNX export (spikec export)", "compiled model", None,
            _onnxruntime, "onnxruntime", "pip install 'spikec[interop]'"),
)}


def target(name: str) -> Target:
    from spikec.errors import InputError

    if name not in TARGETS:
        raise InputError(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")
    return TARGETS[name]
