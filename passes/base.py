"""The one contract every pass keeps: a name, options, preconditions, postconditions, and errors that name it.

A pass is a frozen dataclass. Its fields are its options; the class-level ``name`` is what the pipeline,
``spikec compile --passes`` and ``--print-ir-after`` call it. There are two kinds, so that a pipeline can
tell a rewrite from a computation and an analysis result is never read from a graph it no longer describes:

* A :class:`Transform` rewrites the IR: ``transform(graph)`` returns a :class:`PassResult`
  ``(graph, modified, skipped)``. An *in-place* transform (``in_place = True``) changes the graph it is
  given and must return that same object; a *functional* one leaves its input alone and must return a new
  graph. Both are checked. ``skipped`` lists the nodes a pattern looked at and left, and why, so that
  ``--explain`` can say why a fold did not happen.
* An :class:`Analysis` computes a result object and never changes the graph: ``analysis(graph, analyses)``
  returns the result cached in the :class:`AnalysisCache` ``analyses`` for that graph and that analysis
  (its class and options), computing it on first use. A transform that modifies a graph in place drops
  the graph's cached results.

Calling a pass runs ``requires(graph)``, the work, for a transform the in-place/functional check and
:func:`spikec.ir.verify_graph` on its result, then ``ensures(graph, result)``. Every failure in them, a
:class:`~spikec.errors.SpikecError` or any other exception, is re-raised as a :class:`PassError` whose
message starts with ``NAME: `` and which chains the original, so an error names the pass it came from; a
pass run inside another names both (``quantize: scale-classes: ...``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, ClassVar, Iterable, Iterator

from spikec.errors import InputError, PassError, SpikecError
from spikec.ir import Graph, Node, verify_graph
from spikec.ir.ops import OpCategory, ops_with

__all__ = ["Pass", "Transform", "Analysis", "PassResult", "AnalysisCache", "Skip", "erase_dead_nodes",
           "single_user", "unexplained"]


@dataclasses.dataclass(frozen=True)
class Skip:
    """A node a pass looked at and left alone, and why."""

    node: Node
    reason: str

    def __str__(self) -> str:
        return f"{self.node.describe()}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class PassResult:
    """What a transform gives back: the graph (the one it was given for an in-place pass, a new one for a
    functional pass), whether it changed anything, and the nodes it left alone with the reason."""

    graph: Graph
    modified: bool
    skipped: tuple[Skip, ...] = ()


@contextlib.contextmanager
def _named(name: str) -> Iterator[None]:
    """Re-raise every failure inside as a :class:`PassError` that starts with ``name`` and chains the original;
    an :class:`InputError` (the user's model cannot be compiled as asked, e.g. weights that all quantize to 0)
    stays one. A message that already starts with ``name`` (a helper that names the pass itself) is not named
    twice."""
    try:
        yield
    except SpikecError as exc:
        message = exc.message if exc.message.startswith(f"{name}: ") else f"{name}: {exc.message}"
        raise (InputError if isinstance(exc, InputError) else PassError)(message, exc.where) from exc
    except Exception as exc:
        raise PassError(f"{name}: {type(exc).__name__}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class Pass:
    """What transforms and analyses share: the name, and the pre- and postcondition hooks (module docstring)."""

    name: ClassVar[str]

    def requires(self, graph: Graph) -> None:
        """Raise when ``graph`` is not in the form this pass works on. By default any verified graph is."""

    def ensures(self, graph: Graph, result: Any) -> None:
        """Raise when ``result`` (a :class:`PassResult` for a transform) breaks the pass's promise about the
        ``graph`` it was given. By default a pass promises nothing beyond a verified IR."""


class Transform(Pass):
    """A pass that rewrites the IR. Subclasses implement :meth:`apply` and say whether they work in place.

    ``fixed_point``: one :meth:`apply` may leave work that its own rewrites made possible, so the pass
    manager repeats the pass until a run modifies nothing (:class:`spikec.passes.manager.FixedPoint`)."""

    in_place: ClassVar[bool] = True
    fixed_point: ClassVar[bool] = False

    def apply(self, graph: Graph, analyses: AnalysisCache) -> PassResult:
        raise NotImplementedError

    def __call__(self, graph: Graph, analyses: AnalysisCache | None = None) -> PassResult:
        analyses = AnalysisCache() if analyses is None else analyses
        with _named(self.name):
            self.requires(graph)
            result = self.apply(graph, analyses)
            if not isinstance(result, PassResult):
                raise PassError(f"apply returned {type(result).__name__}, not a PassResult")
            if self.in_place and result.modified:
                analyses.invalidate(graph)
            self._check_kind(graph, result)
            verify_graph(result.graph)
            self.ensures(graph, result)
        return result

    def _check_kind(self, graph: Graph, result: PassResult) -> None:
        if self.in_place and result.graph is not graph:
            raise PassError("an in-place pass returned a graph other than the one it was given")
        if not self.in_place and result.graph is graph:
            raise PassError("a functional pass returned the graph it was given instead of a new one")


class Analysis(Pass):
    """A pass that computes a result object from a graph and never changes it. Subclasses implement
    :meth:`compute`, which reads the results of other analyses of the same graph from ``analyses``."""

    def compute(self, graph: Graph, analyses: AnalysisCache) -> Any:
        raise NotImplementedError

    def __call__(self, graph: Graph, analyses: AnalysisCache | None = None) -> Any:
        """The result for ``graph``: the one ``analyses`` holds, else computed now (and kept there)."""
        return (AnalysisCache() if analyses is None else analyses).get(self, graph)

    def checked_compute(self, graph: Graph, analyses: AnalysisCache) -> Any:
        """:meth:`compute` between ``requires`` and ``ensures``, its errors named (what the cache runs)."""
        with _named(self.name):
            self.requires(graph)
            result = self.compute(graph, analyses)
            self.ensures(graph, result)
        return result


class AnalysisCache:
    """Analysis results, per graph object and per analysis (a frozen dataclass: equal options, one entry).

    A result describes the graph as it was when computed; :meth:`Transform.__call__` drops a graph's
    results when an in-place transform modifies it, so what :meth:`get` returns is always current."""

    def __init__(self):
        self._results: dict[Graph, dict[Analysis, Any]] = {}

    def get(self, analysis: Analysis, graph: Graph) -> Any:
        results = self._results.setdefault(graph, {})
        if analysis not in results:
            results[analysis] = analysis.checked_compute(graph, self)
        return results[analysis]

    def invalidate(self, graph: Graph) -> None:
        self._results.pop(graph, None)


def unexplained(result: PassResult, op: str) -> Node | None:
    """The first ``op`` node left in ``result.graph`` that ``result.skipped`` does not explain. A fold pass
    promises that every node it could not fold is recorded with the reason, for ``--explain``."""
    explained = {skip.node for skip in result.skipped}
    return next((n for n in result.graph.nodes if n.op == op and n not in explained), None)


def single_user(node: Node) -> Node | None:
    """The only node using ``node``'s (single) output, or None when it has several users or none."""
    users = node.output.users()
    return users[0] if len(users) == 1 and len(node.output.uses) == 1 else None


def erase_dead_nodes(graph: Graph, keep: Iterable[str] = ops_with(category=OpCategory.BOUNDARY)) -> bool:
    """Erase nodes whose outputs nobody uses, last first, until none is left, except the ops in ``keep`` (by
    default the graph's inputs and output). Returns whether any was."""
    keep = set(keep)
    changed = False
    for node in reversed(list(graph.nodes)):
        if node.op not in keep and all(not v.uses for v in node.outputs):
            graph.erase(node)
            changed = True
    return changed
