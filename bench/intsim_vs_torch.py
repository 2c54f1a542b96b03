"""Throughput of intsim against PyTorch float, measured in one process.

Models: Spikformer-4-384 CIFAR (random weights and batch-norm statistics, T=4, batch 16) and, when its
checkpoint exists, the digits Spikingformer (quantized with input_exp 4, as `make demo` does). For each: images
per second of the PyTorch module (float32, eval, no_grad) and of intsim on the compiled integer graph, over
the same batches, and their ratio (intsim / torch; above 1 means intsim is faster). Also reported: how often
the two predict the same class.

    .venv/bin/python bench/intsim_vs_torch.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
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


def _best_of(repeats: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(name: str, model: torch.nn.Module, x: torch.Tensor, repeats: int, input_exp: int = 8) -> None:
    compiled = spikec.compile(model, x[:1], input_exp=input_exp, name=name)
    with torch.no_grad():
        torch_seconds, logits = _best_of(repeats, lambda: model(x))
    batch = x.numpy()
    intsim_seconds, out = _best_of(repeats, lambda: run_intsim(compiled.graph, [batch]).outputs[0])
    agree = float((logits.numpy().argmax(-1) == out.argmax(-1)).mean())
    n = len(x)
    print(f"{name:28} batch {n:3}  torch {n / torch_seconds:8.1f} img/s   intsim {n / intsim_seconds:8.1f} img/s   "
          f"ratio intsim/torch {torch_seconds / intsim_seconds:5.2f}   same prediction {100 * agree:.0f}%")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per backend; the best is kept")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    spikformer = _randomize_batchnorm(build_model("spikformer-cifar", {"T": 4}))
    measure("spikformer-4-384 cifar", spikformer, torch.rand(16, 3, 32, 32), args.repeats)

    if os.path.exists(DIGITS):
        from spikec.datasets import load_digits_split

        loaded = load_model(ModelSource(checkpoint=DIGITS))
        x, _ = load_digits_split("test")
        measure("digits spikingformer", loaded.module.eval(), torch.from_numpy(x), args.repeats, input_exp=4)
    else:
        print(f"(skipping the digits model: {DIGITS} not found)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
