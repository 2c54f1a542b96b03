"""Random-graph differential campaign: random small spiking networks compiled for Loihi 2, run on intsim and on
Lava's bit-accurate CPU models, compared spike for spike on every neuron layer, step and sample, and the logits.

The models come from ``tests/backends/lava/random_models.py`` (``random_model(seed)``: deterministic per seed,
every neuron layer firing on its batch). Spike matmuls run ``--attention on-chip`` for even seeds and
``embedded`` for odd ones (``--attention`` overrides). Per seed: the blocks drawn, the features they cover,
intsim's firing rate per neuron layer, exact yes/no (a mismatch names the first divergence: layer, time step,
sample, neuron), and the time. Then a summary: graphs run, exact, refused by the compiler (``InputError`` /
``UnsupportedError``, counted, not failures), mismatches and errors with their seeds, time per graph, and how often
each feature, integer op and Lava process kind was covered.

    .venv/bin/python bench/random_graphs.py                      # seeds 0..59
    .venv/bin/python bench/random_graphs.py --seeds 200 --start 1000 --time-budget 600
    .venv/bin/python bench/random_graphs.py --seed 17            # one seed, with its model

Exit status 1 when any seed mismatched or raised, else 0.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO, os.path.join(REPO, "tests", "backends", "lava")):
    if path not in sys.path:
        sys.path.insert(0, path)

from random_models import FEATURES, SeedResult, random_case, reproducer, run_seed  # noqa: E402


def _seed_line(r: SeedResult) -> str:
    verdict = {"exact": "exact yes", "mismatch": "exact NO", "error": "ERROR", "refused": "refused"}[r.status]
    rates = " ".join(f"{rate:.2f}" for rate in r.firing.values())
    lines = [f"seed {r.seed:5d}  {r.attention:8s}  {verdict:9s}  {r.seconds:5.1f} s (lava {r.lava_seconds:4.1f} s)  "
             f"{r.summary}",
             f"    ops: {' '.join(r.ops)}",
             f"    firing per layer (intsim): {rates or '-'}"]
    if r.status != "exact":
        lines.append(f"    {r.detail}")
    if r.status in ("mismatch", "error"):
        lines.append(f"    reproduce: {reproducer(r.seed)}")
    return "\n".join(lines)


def _counts(counter: collections.Counter, names=None) -> str:
    names = names if names is not None else sorted(counter)
    return "\n".join(f"    {name:28s} {counter[name]:5d}" for name in names)


def summary(results: list[SeedResult], wall: float) -> str:
    by_status = collections.Counter(r.status for r in results)
    ran = [r for r in results if r.status != "refused"]
    lines = [f"\ngraphs run: {len(ran)}, exact: {by_status['exact']}, mismatch: {by_status['mismatch']}, "
             f"error: {by_status['error']}, refused by the compiler: {by_status['refused']} "
             f"(of {len(results)} seeds, {wall:.0f} s)"]
    for r in results:
        if r.status != "exact":
            lines.append(f"  seed {r.seed} {r.status}: {r.detail}")
    if ran:
        seconds, lava = [r.seconds for r in ran], [r.lava_seconds for r in ran]
        lines.append(f"time per graph: mean {statistics.mean(seconds):.1f} s, median {statistics.median(seconds):.1f} "
                     f"s, max {max(seconds):.1f} s (Lava alone: mean {statistics.mean(lava):.1f} s)")
    features = collections.Counter(op for r in results for op in r.ops)
    lines.append("features (graphs using each):")
    lines.append(_counts(features, FEATURES))
    missing = [f for f in FEATURES if not features[f]]
    lines.append(f"features not covered: {', '.join(missing) if missing else 'none'}")
    ir = collections.Counter()
    for r in ran:
        ir.update(r.ir_ops)
    lines.append("integer ops, Lava process kinds and matmul placements (total over the graphs run):")
    lines.append(_counts(ir))
    return "\n".join(lines)


def _one_seed(seed: int, attention: str | None) -> int:
    case = random_case(seed)
    print(f"seed {seed}: sub-seed {case.attempt}, input {list(case.x.shape)}\n{case.model}")
    print("firing per layer (float model): " + ", ".join(f"{k} {v:.3f}" for k, v in case.firing.items()))
    result = run_seed(seed, attention)
    print(_seed_line(result))
    return 0 if result.status in ("exact", "refused") else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=60, help="how many seeds to run (default 60)")
    parser.add_argument("--start", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--seed", type=int, default=None, help="run this one seed and print its model")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="start no new seed after this many seconds")
    parser.add_argument("--attention", choices=["on-chip", "embedded", "auto"], default=None,
                        help="where spike matmuls run (default: on-chip for even seeds, embedded for odd)")
    args = parser.parse_args(argv)
    if args.seed is not None:
        return _one_seed(args.seed, args.attention)
    start, results = time.perf_counter(), []
    for seed in range(args.start, args.start + args.seeds):
        if args.time_budget is not None and time.perf_counter() - start > args.time_budget:
            print(f"time budget of {args.time_budget:.0f} s spent: stopping before seed {seed}")
            break
        results.append(run_seed(seed, args.attention))
        print(_seed_line(results[-1]), flush=True)
    print(summary(results, time.perf_counter() - start))
    return 1 if any(r.status in ("mismatch", "error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
