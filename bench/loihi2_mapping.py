"""What `spikec compile --target loihi2` makes of the CIFAR-size zoo models: parameters, weights stored, synapses,
neurons, neuro cores, chips, the share of the integer graph's ops on neuro cores, and the placement's per-core
peaks, at depth 1, 2 and 4 (synapses and neurons must grow linearly with depth).

    .venv/bin/python bench/loihi2_mapping.py [--arch spikformer-cifar ...] [--depths 1,2,4] [--attention auto]
                                             [--embed-dim 256]

The zoo models carry random weights (seeded) with every batch norm calibrated on a batch of random images (its
statistics, gains in [0.7, 1.3], biases in [0.4, 1.4]), as a trained model's would be; the resource figures
depend on the architecture, not on the weights, except where a weight is zero.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import torch  # noqa: E402

import spikec  # noqa: E402
from spikec.errors import SpikecError  # noqa: E402
from spikec.models import build_model, default_input_shape  # noqa: E402

ARCHS = ("spikformer-cifar", "spikingformer-cifar", "sdt-cifar")
COLUMNS = ("arch", "depth", "params", "weights_stored", "stored/params", "synapses", "neurons", "neuro_cores",
           "chips", "on_chip", "peak neurons/core", "peak bytes/core", "peak fan-in", "compile s")


def calibrated_model(arch: str, config: dict, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    """The zoo model ``arch`` with ``config``, seeded, its batch norms calibrated on 4 random images."""
    torch.manual_seed(seed)
    model = build_model(arch, config)
    x = torch.rand(default_input_shape(arch, config, batch=4), generator=torch.Generator().manual_seed(seed))
    for bn in model.modules():
        if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
            bn.reset_running_stats()
            bn.momentum = None
            with torch.no_grad():
                bn.weight.uniform_(0.7, 1.3)
                bn.bias.uniform_(0.4, 1.4)
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval(), x[:1]


def measure(arch: str, depth: int, attention: str, embed_dim: int | None) -> dict:
    config = {"depth": depth} if embed_dim is None else {"depth": depth, "embed_dim": embed_dim}
    model, x = calibrated_model(arch, config)
    start = time.perf_counter()
    # allow_saturation: the range analysis's worst case for a deep MS residual stream leaves some random-weight
    # SDT layers without weights otherwise; what a neuron may saturate at changes no resource figure.
    compiled = spikec.compile(model, x, target="loihi2", name=arch, attention=attention, allow_saturation=True)
    seconds = time.perf_counter() - start
    resources = compiled.lowered.resources
    totals, peaks = resources["totals"], resources["per_core_peaks"]
    params = sum(p.numel() for p in model.parameters())
    name = arch if embed_dim is None else f"{arch} ({embed_dim})"
    return {"arch": name, "depth": depth, "params": params, "weights_stored": totals["weights_stored"],
            "stored/params": f"{totals['weights_stored'] / params:.2f}", "synapses": totals["synapses"],
            "neurons": totals["neurons"], "neuro_cores": totals["neuro_cores"], "chips": totals["chips"],
            "on_chip": f"{totals['on_chip_fraction']:.1%}", "peak neurons/core": peaks["neurons"],
            "peak bytes/core": peaks["weights_stored"], "peak fan-in": peaks["fan_in"],
            "compile s": f"{seconds:.1f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS))
    parser.add_argument("--depths", default="1,2,3,4")
    parser.add_argument("--attention", default="auto", choices=["auto", "on-chip", "embedded"])
    parser.add_argument("--embed-dim", type=int, default=None, help="width instead of the zoo default")
    args = parser.parse_args()
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS), flush=True)
    for arch in args.arch:
        for depth in args.depths.split(","):
            try:
                row = measure(arch, int(depth), args.attention, args.embed_dim)
            except SpikecError as exc:              # a random-weight model the quantizer refuses: say why
                print(f"| {arch} | {depth} | not compiled: {exc.message} |", flush=True)
                continue
            print("| " + " | ".join(str(row[c]) for c in COLUMNS) + " |", flush=True)


if __name__ == "__main__":
    main()
