"""The pass manager: runs transforms in order, repeats a pass or a group of passes to a fixed point where asked,
and holds the compile pipeline and the registry of every pass by name.

**Running.** :meth:`PassManager.run` calls each step on the graph the previous one returned, with one
:class:`~spikec.passes.base.AnalysisCache` for the whole run. Calling a transform checks its contract
(:mod:`spikec.passes.base`): its ``requires``, the in-place/functional rule, :func:`spikec.ir.verify_graph` on
the graph it returns and its ``ensures``, so the IR is verified after every pass run and a failure names the
pass. After every pass run, the optional ``callback(pass, result)`` sees the pass and its
:class:`~spikec.passes.base.PassResult` (``spikec compile --print-ir-after`` prints the graph there).

**Fixed points.** A :class:`FixedPoint` step runs its passes in turn, round after round, until one whole
round modifies nothing. With ``modified_r`` whether round ``r`` changed the graph, it stops after the first
round ``r`` with ``modified_r = False``, so the last round is a no-op and its results describe the final
graph. A transform that declares ``fixed_point = True`` becomes such a step on its own. ``max_rounds`` bounds
the loop: rewrites that undo each other are a bug, reported with the passes named, never an endless loop.

**The compile pipeline** is :func:`standard_pipeline`, defined here and nowhere else: reparameterize,
fold-batchnorm, fold-scales, canonicalize (to its fixed point), quantize (docs/design.md, §5).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Union

from spikec.errors import PassError
from spikec.ir import Graph
from spikec.passes.balance_delays import BalanceDelays
from spikec.passes.base import AnalysisCache, Pass, PassResult, Skip, Transform
from spikec.passes.canonicalize import Canonicalize
from spikec.passes.fold_batchnorm import FoldBatchNorm
from spikec.passes.fold_scales import FoldScales
from spikec.passes.quantize import Quantize, QuantizeOptions
from spikec.passes.reparameterize import Reparameterize
from spikec.passes.range_analysis import RangeAnalysis
from spikec.passes.scale_classes import ScaleClassAnalysis
from spikec.passes.spike_driven import SpikeDriven
from spikec.passes.value_domains import ValueDomains

__all__ = ["float_pipeline", "PassManager", "FixedPoint", "PipelineResult", "Callback", "PASSES", "standard_pipeline"]

Callback = Callable[[Transform, PassResult], None]

PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in (
    Reparameterize, FoldBatchNorm, FoldScales, Canonicalize, Quantize,
    ValueDomains, SpikeDriven, ScaleClassAnalysis, RangeAnalysis, BalanceDelays,
)}
"""Every pass spikec has, by name, analyses included: ``--print-ir-after`` names a pass of the compile pipeline,
and tells one outside it from a name no pass has."""


@dataclasses.dataclass(frozen=True)
class FixedPoint:
    """Transforms run in turn, round after round, until a whole round modifies nothing (module docstring)."""

    passes: tuple[Transform, ...]
    max_rounds: int = 64

    @property
    def name(self) -> str:
        return ", ".join(p.name for p in self.passes)


Step = Union[Transform, FixedPoint]


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """The final graph and every pass run that led to it, in order: ``(pass, result)``."""

    graph: Graph
    runs: tuple[tuple[Transform, PassResult], ...]

    def last(self, name: str) -> PassResult:
        """The result of the last run of the pass called ``name``."""
        for transform, result in reversed(self.runs):
            if transform.name == name:
                return result
        raise KeyError(f"no pass {name!r} ran")

    @property
    def skipped(self) -> tuple[Skip, ...]:
        """What each pass left alone in its last run (the one that describes the final graph), in the order
        the passes first ran."""
        last: dict[str, PassResult] = {}
        for transform, result in self.runs:
            last[transform.name] = result
        return tuple(skip for result in last.values() for skip in result.skipped)


def _step(step: Step) -> Step:
    if isinstance(step, FixedPoint):
        if not step.passes or not all(isinstance(p, Transform) for p in step.passes):
            raise TypeError(f"a fixed point groups one or more transforms, got {step.passes!r}")
        return step
    if not isinstance(step, Transform):
        raise TypeError(f"a pipeline step is a transform or a FixedPoint, got {step!r}")
    return FixedPoint((step,)) if step.fixed_point else step


class PassManager:
    """A sequence of steps (transforms and :class:`FixedPoint` groups) run on one graph (module docstring)."""

    def __init__(self, steps: Iterable[Step]):
        self.steps: tuple[Step, ...] = tuple(_step(s) for s in steps)

    @property
    def passes(self) -> tuple[Transform, ...]:
        """Every transform of the pipeline once, in the order the steps name them."""
        return tuple(p for s in self.steps for p in (s.passes if isinstance(s, FixedPoint) else (s,)))

    def describe(self) -> list[str]:
        """One line per pass, in order (``spikec compile --passes``): its name, how it runs, and the first
        line of its docstring."""
        lines = []
        for step in self.steps:
            for transform in step.passes if isinstance(step, FixedPoint) else (step,):
                kind = "in place" if transform.in_place else "functional"
                kind += ", to a fixed point" if isinstance(step, FixedPoint) else ""
                summary = (type(transform).__doc__ or "").strip().splitlines()[0]
                lines.append(f"{transform.name:<16} {kind:<28} {summary}")
        return lines

    def run(self, graph: Graph, callback: Callback | None = None,
            analyses: AnalysisCache | None = None) -> PipelineResult:
        analyses = AnalysisCache() if analyses is None else analyses
        runs: list[tuple[Transform, PassResult]] = []

        def run_pass(transform: Transform, current: Graph) -> PassResult:
            result = transform(current, analyses)
            runs.append((transform, result))
            if callback is not None:
                callback(transform, result)
            return result

        for step in self.steps:
            if isinstance(step, FixedPoint):
                graph = _to_fixed_point(step, graph, run_pass)
            else:
                graph = run_pass(step, graph).graph
        return PipelineResult(graph, tuple(runs))


def _to_fixed_point(step: FixedPoint, graph: Graph, run_pass: Callable[[Transform, Graph], PassResult]) -> Graph:
    for _ in range(step.max_rounds):
        modified = False
        for transform in step.passes:
            result = run_pass(transform, graph)
            graph, modified = result.graph, modified or result.modified
        if not modified:
            return graph
    raise PassError(f"{step.name}: no fixed point after {step.max_rounds} rounds (every round changed the graph)")


def float_pipeline() -> PassManager:
    """The float part of the compile pipeline: reparameterize, the folds and canonicalize. Its result is the folded
    float graph (what NIR export reads)."""
    return PassManager([Reparameterize(), FoldBatchNorm(), FoldScales(), Canonicalize()])


def standard_pipeline(options: QuantizeOptions = QuantizeOptions()) -> PassManager:
    """The compile pipeline: reparameterize, the folds, canonicalize to its fixed point (:func:`float_pipeline`),
    then quantize with ``options``. Its last run is quantize's, whose
    :class:`~spikec.passes.quantize.QuantizeResult` holds the integer graph, the quantization report and the range
    analysis."""
    return PassManager([*float_pipeline().steps, Quantize(options)])
