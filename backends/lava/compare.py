"""The Lava backend inside ``spikec simulate``: a runner, and the bit-exactness check against intsim.

``BitExactWatch`` wraps two runners (a reference such as intsim and a candidate such as Lava) and compares
what they return for every batch: the logits and every neuron group's spike trains, already aligned to the
model's time by the Lava runtime. It keeps the first divergence in graph order: the layer (the earliest
neuron group that differs, so the cause, not its consequences), the sample, the time step and the neuron.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from spikec.backends.lava.netlist import ProcessGraph
from spikec.ir import Graph
from spikec.ir.ops import OpCategory, Phase, ops_with

__all__ = ["lava_runner", "BitExactWatch", "Divergence"]


def lava_runner(graph: Graph, output_scale: float, *, fast: bool = True, timeout: float | None = None,
                process_graph: ProcessGraph | None = None) -> Callable:
    """A ``spikec.simulation`` runner: each batch is one Lava run (samples back to back) of ``process_graph``
    (by default, the graph lowered with the default mapping options)."""
    from spikec.backends.lava.lowering import lower
    from spikec.backends.lava.runtime import DEFAULT_TIMEOUT_S, run_lava

    pg = process_graph or lower(graph)
    neuron_ops = ops_with(category=OpCategory.NEURON, phase=Phase.INTEGER)
    neurons = [(i, n) for i, n in enumerate(graph.nodes) if n.op in neuron_ops]

    def run(batch):
        result = run_lava(graph, [batch], pg, fast=fast, timeout=timeout or DEFAULT_TIMEOUT_S)
        return result.outputs[0] / output_scale, [(n.module, result.values[i]) for i, n in neurons]
    run.process_graph = pg
    return run


@dataclasses.dataclass(frozen=True)
class Divergence:
    layer: int          # index among the neuron groups, in graph order
    module: str
    sample: int
    time_step: int
    neuron: tuple[int, ...]
    reference: int
    candidate: int

    def __str__(self) -> str:
        return (f"layer {self.layer} ({self.module or '-'}), sample {self.sample}, time step {self.time_step}, "
                f"neuron {list(self.neuron)}: {self.reference} vs {self.candidate}")


class BitExactWatch:
    """Compare a candidate backend with a reference one, batch by batch; ``offset`` is the index of the first
    sample compared (a shard's start, :mod:`spikec.engines`)."""

    def __init__(self, reference: str, candidate: str, offset: int = 0):
        self.reference, self.candidate = reference, candidate
        self.exact = True
        self.first: Divergence | None = None
        self.logits_differ = 0
        self._pending: dict[str, tuple] = {}
        self._offset = offset

    @classmethod
    def merged(cls, watches: list["BitExactWatch"]) -> "BitExactWatch":
        """One comparison of the samples of ``watches`` (consecutive runs, in sample order): exact when each is,
        the first divergence the earliest run's, the differing logits summed."""
        whole = cls(watches[0].reference, watches[0].candidate, watches[0]._offset)
        for watch in watches:
            whole.exact &= watch.exact
            whole.first = whole.first or watch.first
            whole.logits_differ += watch.logits_differ
        return whole

    @property
    def pair(self) -> str:
        return f"{self.reference}/{self.candidate}"

    def wrap(self, name: str, runner: Callable) -> Callable:
        def run(batch):
            result = runner(batch)
            self._pending[name] = result
            if len(self._pending) == 2:
                self._compare(len(result[0]))     # logits are [B, ...] whatever the input layout
            return result
        return run

    def _compare(self, batch: int) -> None:
        (ref_logits, ref_layers), (cand_logits, cand_layers) = (self._pending[self.reference],
                                                                 self._pending[self.candidate])
        self._pending = {}
        differing = np.any(np.asarray(ref_logits) != np.asarray(cand_logits), axis=-1)
        self.logits_differ += int(differing.sum())
        self.exact &= not differing.any()
        for layer, ((module, a), (_, b)) in enumerate(zip(ref_layers, cand_layers)):
            if a.shape == b.shape and np.array_equal(a, b):
                continue
            self.exact = False
            if self.first is None:
                self.first = self._locate(layer, module, a, b)
            break
        self._offset += batch

    def _locate(self, layer: int, module: str, a: np.ndarray, b: np.ndarray) -> Divergence:
        if a.shape != b.shape:
            return Divergence(layer, module, self._offset, 0, (), -1, -1)
        where = np.argwhere(a != b)
        t, s, *neuron = min(map(tuple, where))    # the earliest time step first, then the sample
        return Divergence(layer, module, self._offset + int(s), int(t), tuple(int(n) for n in neuron),
                          int(a[(t, s, *neuron)]), int(b[(t, s, *neuron)]))

    def to_json(self) -> dict:
        first = None if self.first is None else dataclasses.asdict(self.first) | {"neuron": list(self.first.neuron)}
        return {"bit_exact": {self.pair: bool(self.exact)},
                "first_divergence": {self.pair: first} if not self.exact else {},
                "logits_differ": {self.pair: self.logits_differ}}

    def to_text(self) -> str:
        if self.exact:
            return f"  bit-exact {self.pair}: yes (every spike of every neuron layer, and the logits)\n"
        lines = [f"  bit-exact {self.pair}: NO"]
        if self.first is not None:
            lines.append(f"    first divergence: {self.first}")
        if self.logits_differ:
            lines.append(f"    samples with different logits: {self.logits_differ}")
        return "\n".join(lines) + "\n"
