"""What `spikec compile --target loihi2` makes of the CIFAR-size zoo models: parameters, weights stored, synapses,
neurons, neuro cores, chips, the share of the integer graph's ops on neuro cores, and the placement's per-core
peaks, at depth 1, 2 and 4 (synapses and neurons must grow linearly with depth).

    .venv/bin/python bench/loihi2_mapping.py [--arch spikformer-cifar ...] [--depths 1,2,4] [--attention auto]

The zoo models carry random weights (seeded); their resource figures depend on the architecture, not on the
weights, except where a weight is zero.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from spikec.api import compile_source  # noqa: E402
from spikec.errors import SpikecError  # noqa: E402
from spikec.frontends.torch import ModelSource  # noqa: E402

ARCHS = ("spikformer-cifar", "spikingformer-cifar", "sdt-cifar")
COLUMNS = ("arch", "depth", "params", "weights_stored", "stored/params", "synapses", "neurons", "neuro_cores",
           "chips", "on_chip", "peak neurons/core", "peak bytes/core", "peak fan-in", "compile s")


def measure(arch: str, depth: int, attention: str) -> dict:
    start = time.perf_counter()
    loaded, compiled = compile_source(ModelSource(arch=arch, model_args={"depth": depth}), target="loihi2",
                                      attention=attention)
    seconds = time.perf_counter() - start
    resources = compiled.lowered.resources
    totals, peaks = resources["totals"], resources["per_core_peaks"]
    params = sum(p.numel() for p in loaded.module.parameters())
    return {"arch": arch, "depth": depth, "params": params, "weights_stored": totals["weights_stored"],
            "stored/params": f"{totals['weights_stored'] / params:.2f}", "synapses": totals["synapses"],
            "neurons": totals["neurons"], "neuro_cores": totals["neuro_cores"], "chips": totals["chips"],
            "on_chip": f"{totals['on_chip_fraction']:.1%}", "peak neurons/core": peaks["neurons"],
            "peak bytes/core": peaks["weights_stored"], "peak fan-in": peaks["fan_in"],
            "compile s": f"{seconds:.1f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS))
    parser.add_argument("--depths", default="1,2,4")
    parser.add_argument("--attention", default="auto", choices=["auto", "on-chip", "embedded"])
    args = parser.parse_args()
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS), flush=True)
    for arch in args.arch:
        for depth in args.depths.split(","):
            try:
                row = measure(arch, int(depth), args.attention)
            except SpikecError as exc:              # a random-weight model the quantizer refuses: say why
                print(f"| {arch} | {depth} | not compiled: {exc.message} |", flush=True)
                continue
            print("| " + " | ".join(str(row[c]) for c in COLUMNS) + " |", flush=True)


if __name__ == "__main__":
    main()
