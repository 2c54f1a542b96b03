"""Small hand-built graphs for pass tests, written as IR text so the test reads like the pass's math."""

from __future__ import annotations

import re

import numpy as np

from spikec.ir import Graph, parse_graph

_HANDLE = re.compile(r"@([A-Za-z0-9_.~\-]+) : f32\[([0-9,]*)\]")


def graph_from_text(text: str, seed: int = 0, **fixed: np.ndarray) -> Graph:
    """Parse ``text``; every ``@handle : f32[...]`` gets a random float32 array of that shape unless given
    in ``fixed``. Running variances are drawn positive."""
    rng = np.random.default_rng(seed)
    weights = dict(fixed)
    for name, dims in _HANDLE.findall(text):
        if name in weights:
            continue
        shape = tuple(int(d) for d in dims.split(","))
        values = rng.uniform(0.2, 1.5, shape) if "running_var" in name else rng.normal(0, 0.5, shape)
        weights[name] = values.astype(np.float32)
    return parse_graph(text, weights=weights)
