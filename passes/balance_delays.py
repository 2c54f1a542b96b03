"""balance-delays: the latency of every value of an integer graph on a pipelined target, the delay each edge
needs so that every node's inputs arrive together, and each neuron group's reset phase (docs/design.md, §6).

**Time.** intsim is synchronous: at step ``t`` every op sees step ``t`` of its inputs. Lava is pipelined: a
synapse process (Dense, Sparse, Conv) sends at step ``τ`` what it received at ``τ - 1``, so it costs one step;
neurons and spikec's own processes receive and send within a step and cost none. With ``lat(n)`` the latency
of node ``n`` (1 for an on-chip ``qdense`` or ``qconv2d``, else 0), the **depth** of a value is the number of
steps by which Lava runs behind intsim at that value::

    depth(input) = 0
    depth(n)     = max_i depth(n.inputs[i]) + lat(n)

so Lava's value of ``n`` at (1-based) step ``τ = t + 1 + depth(n)`` is intsim's value at (0-based) step ``t``
(a source emits step ``t`` of the encoded input at ``τ = t + 1``).

**Balance.** A node whose inputs have different depths must see each input late by the difference, so the
edge from input ``i`` carries the delay::

    delay(n, i) = max_j depth(n.inputs[j]) - depth(n.inputs[i])      (>= 0; 0 on the longest path)

The backend realises a delay ``δ`` on the value it is applied to: inside a Dense/Sparse synapse (a delayed
synapse holds 0..63 steps: it arrives at ``τ + 1 + d``), by relay neurons (an identity synapse and a
relay neuron: ``δ`` steps) for a spike train or beyond 63, or by copying a stateless producer with delayed
inputs. Delays compose: the delay realised on ``n.inputs[i]`` when ``n`` itself is wanted ``δ`` late is
``δ + delay(n, i)``.

**Resets and samples.** Samples stream back to back with period ``T``: sample ``s``, step ``t`` of a value
of depth ``d`` is on the wire at ``τ = s T + t + 1 + d``. Every neuron group is a LIFReset that zeroes its
state before the update at the first step of each wave::

    reset_interval = T,   reset_offset = (1 + depth(n)) mod T       (Lava resets when τ mod T = offset mod T)

so a neuron starts each sample from rest, and whatever its bias charged before the wave arrived is
discarded. A run of ``B`` samples takes ``B T + max depth`` steps; the outputs of a layer of depth ``d`` are
the steps ``d + 1 .. d + B T``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from spikec.errors import PassError
from spikec.ir import Graph, Node
from spikec.ir.ops import OpCategory, Phase, op_traits
from spikec.passes.base import Analysis, AnalysisCache

__all__ = ["BalanceDelays", "DelayPlan", "lava_latency"]


def lava_latency(node: Node) -> int:
    """Steps a node costs in Lava: one for an on-chip synapse group, a weight op of the integer graph not on
    the host (``qconv2d``, ``qdense`` with ``host`` false)."""
    traits = op_traits(node.op)
    synapse = traits.category is OpCategory.WEIGHT and Phase.INTEGER in traits.phase
    return 1 if synapse and not node.attrs.get("host", False) else 0


@dataclasses.dataclass(frozen=True)
class DelayPlan:
    """Depths, edge delays and reset phases of one graph (an analysis result, keyed by node: nodes compare by
    identity)."""

    timesteps: int
    depth: dict[Node, int]                   # node -> depth of its output
    edge_delay: dict[tuple[Node, int], int]  # (node, input position) -> delay on that edge

    def depth_of(self, node: Node) -> int:
        return self.depth[node]

    def delay(self, node: Node, position: int) -> int:
        return self.edge_delay.get((node, position), 0)

    def reset_offset(self, node: Node) -> int:
        """The LIFReset ``reset_offset`` of a neuron group: reset at the first step of every wave."""
        return (1 + self.depth[node]) % self.timesteps

    @property
    def max_depth(self) -> int:
        return max(self.depth.values(), default=0)

    def run_steps(self, samples: int, depth: int | None = None) -> int:
        """Steps that stream ``samples`` samples through values of depth up to ``depth`` (default: all)."""
        return samples * self.timesteps + (self.max_depth if depth is None else depth)


@dataclasses.dataclass(frozen=True)
class BalanceDelays(Analysis):
    """Compute the depths, edge delays and reset phases of an integer graph on a pipelined target.

    The result is a :class:`DelayPlan`; the math is in the module docstring. ``latency`` gives each node's
    cost in steps.

    Requires: nothing beyond a verified graph (its topological order gives every input its depth first).
    Ensures: the plan balances every node: each input's depth plus the delay on its edge is the same for
    all inputs, and the node's depth is that plus its latency (a source's is 0)."""

    name = "balance-delays"
    latency: Callable[[Node], int] = lava_latency

    def compute(self, graph: Graph, analyses: AnalysisCache) -> DelayPlan:
        timesteps = max((v.type.time for v in graph.values()), default=1)
        depth: dict[Node, int] = {}
        edge_delay: dict[tuple[Node, int], int] = {}
        for node in graph.nodes:
            if node.op == "output":
                continue
            if not node.inputs:
                depth[node] = 0
                continue
            arrivals = [depth[v.producer] for v in node.inputs]
            latest = max(arrivals)
            for position, arrival in enumerate(arrivals):
                if arrival < latest:
                    edge_delay[(node, position)] = latest - arrival
            cost = self.latency(node)
            if cost < 0:
                raise PassError(f"{node.describe()} has a negative latency {cost}")
            depth[node] = latest + cost
        return DelayPlan(timesteps, depth, edge_delay)

    def ensures(self, graph: Graph, plan: DelayPlan) -> None:
        for node in graph.nodes:
            if node.op == "output":
                continue
            arrivals = {plan.depth_of(v.producer) + plan.delay(node, i) for i, v in enumerate(node.inputs)}
            expected = max(arrivals) + self.latency(node) if arrivals else 0
            if len(arrivals) > 1 or plan.depth_of(node) != expected:
                raise PassError(f"{node.describe()}: its inputs arrive at depths {sorted(arrivals)} and it is "
                                f"placed at depth {plan.depth_of(node)}; the plan does not balance it")
