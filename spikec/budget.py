"""The memory a simulation would take, checked before anything is allocated: an unreasonable ``-T`` or
``--batch-size`` is refused with the layer and the size named, instead of an out-of-memory kill."""

from __future__ import annotations

import math

from spikec.errors import InputError

__all__ = ["MEMORY_BUDGET_BYTES", "check_simulation_memory"]

MEMORY_BUDGET_BYTES = 8 << 30
"""What one simulated batch may hold at once: 8 GiB, a third of a 24 GiB machine."""


def check_simulation_memory(graph, batch: int, budget: int = MEMORY_BUDGET_BYTES) -> None:
    """Refuse a batch whose values would exceed ``budget``. The bound: every value of ``graph`` at batch
    ``batch``, 8 bytes an element (intsim's int64; the runners keep every neuron layer's spikes, so values
    are not freed early)."""
    sizes = [(8 * batch * math.prod(v.type.shape) // max(v.type.batch, 1), v) for v in graph.values()]
    total = sum(size for size, _ in sizes)
    if total <= budget:
        return
    largest, value = max(sizes, key=lambda pair: pair[0])
    node = value.producer
    per_sample = max(total // batch, 1)
    fits = budget // per_sample
    advice = f"use --batch-size {fits} or less" if fits >= 1 else "reduce T or the input size"
    raise InputError(f"simulating {batch} sample(s) at once needs about {total / 2**30:.1f} GiB, more than the "
                     f"{budget >> 30} GiB budget (largest: {node.op} in {node.module or '-'}, "
                     f"{largest / 2**30:.1f} GiB); {advice}")
