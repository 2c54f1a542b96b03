"""What every rewrite pass shares: a name, preconditions, postconditions, and errors that name the pass.

A pass is a small frozen dataclass; its fields are its options. Calling it on a graph checks
``requires``, runs ``apply`` (which says whether it changed the graph), verifies the graph, checks
``ensures``, and re-raises any failure as a :class:`PassError` that starts with the pass name. When a
pattern does not apply to a node, the pass records a :class:`Skip` (node + reason) so that
``--explain`` can say why a fold did not happen.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Iterable, Sequence

from spikec.errors import PassError, SpikecError
from spikec.ir import Graph, Node, verify_graph

__all__ = ["RewritePass", "Skip", "run_pipeline", "erase_dead_nodes", "single_user"]


@dataclasses.dataclass(frozen=True)
class Skip:
    """A node a pass looked at and left alone, and why."""

    node: Node
    reason: str

    def __str__(self) -> str:
        return f"{self.node.describe()}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class RewritePass:
    name: ClassVar[str] = "pass"

    def requires(self, graph: Graph) -> None:
        """Raise :class:`PassError` when the graph is not in the form this pass expects."""

    def apply(self, graph: Graph, skipped: list[Skip]) -> bool:
        raise NotImplementedError

    def ensures(self, graph: Graph) -> None:
        """Raise :class:`PassError` when the pass broke its promise."""

    def __call__(self, graph: Graph, skipped: list[Skip] | None = None) -> bool:
        skipped = [] if skipped is None else skipped
        try:
            self.requires(graph)
            changed = self.apply(graph, skipped)
            verify_graph(graph)
            self.ensures(graph)
        except PassError:
            raise
        except SpikecError as exc:
            raise PassError(f"{self.name}: {exc.message}", exc.where) from exc
        return changed


def run_pipeline(graph: Graph, passes: Sequence[RewritePass], skipped: list[Skip] | None = None) -> list[str]:
    """Run ``passes`` in order; return the names of the ones that changed the graph."""
    return [p.name for p in passes if p(graph, skipped)]


def single_user(node: Node) -> Node | None:
    """The only node using ``node``'s (single) output, or None when it has several users or none."""
    users = node.output.users()
    return users[0] if len(users) == 1 and len(node.output.uses) == 1 else None


def erase_dead_nodes(graph: Graph, keep: Iterable[str] = ("input", "output")) -> bool:
    """Erase nodes whose outputs nobody uses, last first, until none is left. Returns whether any was."""
    keep = set(keep)
    changed = False
    for node in reversed(list(graph.nodes)):
        if node.op not in keep and all(not v.uses for v in node.outputs):
            graph.erase(node)
            changed = True
    return changed
