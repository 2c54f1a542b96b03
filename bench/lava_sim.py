"""Lava simulation speed of a compiled digits model: Lava's own process models against spikec's vectorised ones,
and intsim on the same samples.

For each run: the number of Lava processes (each one an OS process in Lava's runtime), the steps run
(``B T + depth``: samples stream back to back), steps per second of the steps themselves, the time to build the
processes, compile them and start Lava's runtime, seconds per sample overall (everything, including the
forked child and reading the sinks back), and whether the spike trains of every neuron layer and the logits
equal intsim's (they must). intsim's time is for the same samples in one batch.

    .venv/bin/python bench/lava_sim.py [--model spikingformer-cifar] [--samples 16] [--own-samples 4]

Lava's own models are much slower (its Conv convolves every channel pair with scipy; its DelaySparse rebuilds
its weight stack every step), so they run fewer samples by default; per-sample figures stay comparable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from spikec.backends.intsim.interpreter import run_intsim  # noqa: E402
from spikec.backends.lava.lowering import lower  # noqa: E402
from spikec.backends.lava.runtime import run_lava  # noqa: E402
from spikec.api import compile_source  # noqa: E402
from spikec.datasets import load_digits_split  # noqa: E402
from spikec.frontends.torch import ModelSource  # noqa: E402

CHECKPOINTS = os.path.join(REPO, "examples", "digits", "checkpoints")


def _compile(model: str):
    _, compiled = compile_source(ModelSource(checkpoint=os.path.join(CHECKPOINTS, f"{model}.pt")))
    return compiled


def _exact(graph, x, run) -> bool:
    reference = run_intsim(graph, [x], keep_values=True)
    same = all(np.array_equal(reference.of(graph.nodes[i]), v) for i, v in run.values.items())
    return same and all(np.array_equal(a, b) for a, b in zip(reference.outputs, run.outputs))


def _lava_row(label: str, graph, pg, x, fast: bool) -> dict:
    start = time.perf_counter()
    run = run_lava(graph, [x], pg, fast=fast, timeout=3600)
    total = time.perf_counter() - start
    return {"label": label, "samples": len(x), "processes": run.processes, "steps": run.steps,
            "steps_per_s": run.steps / run.run_seconds, "build_s": run.build_seconds, "total_s": total,
            "s_per_sample": total / len(x), "exact": _exact(graph, x, run)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="spikingformer-cifar",
                        help="a digits checkpoint in examples/digits/checkpoints (without .pt)")
    parser.add_argument("--samples", type=int, default=16, help="samples for spikec's models and intsim")
    parser.add_argument("--own-samples", type=int, default=4, help="samples for Lava's own models (0: skip)")
    args = parser.parse_args(argv)

    compiled = _compile(args.model)
    graph = compiled.graph
    pg = lower(graph)
    images, _ = load_digits_split("test")
    x = np.ascontiguousarray(images[: args.samples], dtype=np.float32)
    kinds: dict[str, int] = {}
    for spec in pg.processes:
        kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
    print(f"{args.model}: {len(pg.processes)} Lava processes, T = {pg.timesteps}, deepest layer {pg.max_depth} "
          f"steps; {', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}")

    rows = [_lava_row("lava, spikec models", graph, pg, x, fast=True)]
    if args.own_samples:
        rows.append(_lava_row("lava, Lava's own models", graph, pg, x[: args.own_samples], fast=False))
    start = time.perf_counter()
    run_intsim(graph, [x])
    intsim = time.perf_counter() - start

    print(f"{'run':26} {'samples':>7} {'procs':>5} {'steps':>6} {'steps/s':>8} {'start s':>8} {'total s':>8} "
          f"{'s/sample':>9} {'exact':>6}")
    for r in rows:
        print(f"{r['label']:26} {r['samples']:7d} {r['processes']:5d} {r['steps']:6d} {r['steps_per_s']:8.2f} "
              f"{r['build_s']:8.2f} {r['total_s']:8.2f} {r['s_per_sample']:9.3f} {str(r['exact']):>6}")
    print(f"{'intsim':26} {len(x):7d} {'':5} {'':6} {'':8} {'':8} {intsim:8.3f} {intsim / len(x):9.4f}")
    if len(rows) == 2:
        speedup = rows[1]["s_per_sample"] / rows[0]["s_per_sample"]
        print(f"spikec's models: {speedup:.1f}x faster per sample than Lava's own; intsim "
              f"{rows[0]['s_per_sample'] / (intsim / len(x)):.0f}x faster than Lava with spikec's models")


if __name__ == "__main__":
    main()
