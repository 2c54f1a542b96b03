"""Throughput of intsim against PyTorch float, measured in one process.

Models: Spikformer-4-384 CIFAR (random weights and batch-norm statistics, T=4, batch 16) and, when its
checkpoint exists, the digits Spikingformer (quantized with input_exp 4, as `make demo` does). For each: images
per second of the PyTorch module (float32, eval, no_grad) and of intsim on the compiled integer graph, over
the same batches, and their ratio (intsim / torch; above 1 means intsim is faster). Also reported: how often
the two predict the same class.

intsim runs with the range report of the compile (`ranges=compiled.ranges`), so it takes its proven rules. With
`--profile`, each model's line is followed by cProfile's top entries for one intsim run and for one torch run.

    .venv/bin/python bench/intsim_vs_torch.py [--repeats 3] [--threads 2] [--profile [TOP]] [--cpu-time]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

import torch

import spikec
from spikec.backends.intsim.interpreter import run_intsim
from spikec.frontends.torch import ModelSource, load_model
from spikec.models import build_model

DIGITS = os.path.join(os.path.dirname(__file__), "..", "examples", "digits", "checkpoints", "spikingformer-cifar.pt")


def _randomize_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.3)
    return model.eval()


def _best_of(repeats: int, fn, clock=time.perf_counter) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = clock()
        result = fn()
        best = min(best, clock() - start)
    return best, result


def _profile(label: str, fn, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    print(f"  profile of one {label} run (top {top} by own time):")
    stats = pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime")
    stats.print_stats(top)


def measure(name: str, model: torch.nn.Module, x: torch.Tensor, args: argparse.Namespace, input_exp: int = 8) -> None:
    compiled = spikec.compile(model, x[:1], input_exp=input_exp, name=name)
    batch = x.numpy()

    def torch_run():
        with torch.no_grad():
            return model(x)

    def intsim_run():
        return run_intsim(compiled.graph, [batch], ranges=compiled.ranges).outputs[0]

    clock = time.process_time if args.cpu_time else time.perf_counter
    torch_seconds, logits = _best_of(args.repeats, torch_run, clock)
    intsim_seconds, out = _best_of(args.repeats, intsim_run, clock)
    agree = float((logits.numpy().argmax(-1) == out.argmax(-1)).mean())
    n = len(x)
    print(f"{name:28} batch {n:3}  torch {n / torch_seconds:8.1f} img/s   intsim {n / intsim_seconds:8.1f} img/s   "
          f"ratio intsim/torch {torch_seconds / intsim_seconds:5.2f}   same prediction {100 * agree:.0f}%", flush=True)
    if args.profile:
        _profile(f"intsim ({name})", intsim_run, args.profile)
        _profile(f"torch ({name})", torch_run, args.profile)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per backend; the best is kept")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (intsim's and torch's)")
    parser.add_argument("--profile", type=int, nargs="?", const=12, default=0, metavar="TOP",
                        help="print cProfile's TOP entries (default 12) of one intsim and one torch run per model")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with this process's CPU time, not the wall clock: steadier on a shared machine "
                             "(use with --threads 1; idle worker threads may count as busy)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    spikformer = _randomize_batchnorm(build_model("spikformer-cifar", {"T": 4}))
    measure("spikformer-4-384 cifar", spikformer, torch.rand(16, 3, 32, 32), args)

    if os.path.exists(DIGITS):
        from spikec.datasets import load_digits_split

        loaded = load_model(ModelSource(checkpoint=DIGITS))
        x, _ = load_digits_split("test")
        measure("digits spikingformer", loaded.module.eval(), torch.from_numpy(x), args, input_exp=4)
    else:
        print(f"(skipping the digits model: {DIGITS} not found)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
