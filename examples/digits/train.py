"""Train tiny spiking transformers on scikit-learn's 8x8 digits and save spikec checkpoint dicts.

The committed checkpoints in ``examples/digits/checkpoints/`` come from running this script with its
defaults (``python examples/digits/train.py``). Each architecture is a zoo model (``spikec zoo``) shrunk to
8x8 single-channel inputs, trained on the fixed train split of ``spikec.datasets.load_digits_split`` with
Adam (decoupled weight decay), a cosine learning-rate schedule, label smoothing, +-1 pixel random shifts,
and spikec's sigmoid surrogate gradient for the LIF neurons. Everything is seeded and runs on
``--threads`` CPU threads (2 by default), so a rerun on the same machine gives the same weights.

Each checkpoint is ``{"arch", "config", "state_dict", "input_shape", "timesteps", "float_test_accuracy",
"dataset", "training"}``; ``float_test_accuracy`` is the accuracy of the saved weights, reloaded through
spikec's own loader, on the whole 450-image test split in eval mode (one batch).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

# Idle OpenMP threads sleep instead of spinning: with spinning, two threads on a busy 2-core machine run
# several times slower than one. Must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:  # run from a checkout without installing spikec
    sys.path.insert(0, REPO)

from spikec.datasets import load_digits_split  # noqa: E402
from spikec.models import build_model  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")
INPUT_SHAPE = [1, 1, 8, 8]
COMMON = {"img_size": 8, "in_channels": 1, "num_classes": 10, "T": 4, "tau": 2.0}

# The committed configurations: zoo options, and the training recipe of each.
RECIPES: dict[str, dict] = {
    "spikingformer-cifar": {
        "config": {**COMMON, "embed_dim": 64, "num_heads": 4, "mlp_ratio": 4, "depth": 1},
        "epochs": 40, "lr": 2e-3,
    },
    "spikformer-cifar": {
        "config": {**COMMON, "embed_dim": 64, "num_heads": 4, "mlp_ratio": 4, "depth": 1},
        "epochs": 40, "lr": 2e-3,
    },
    "sdt-cifar": {
        "config": {**COMMON, "embed_dim": 64, "num_heads": 4, "mlp_ratio": 4, "depth": 1},
        "epochs": 40, "lr": 2e-3,
    },
}
BATCH_SIZE = 64
WEIGHT_DECAY = 1e-2
LABEL_SMOOTHING = 0.1
WARMUP_EPOCHS = 2
SEED = 0


def shift_augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Move each image by a random whole number of pixels in ``[-max_shift, max_shift]`` on each axis,
    filling with zeros (the digits' background)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    out = torch.empty_like(x)
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            sel = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            out[sel] = padded[sel, :, dy:dy + h, dx:dx + w]
    return out


@torch.no_grad()
def evaluate(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of ``module`` in eval mode on ``(x, y)``, run as one batch (as the tests do)."""
    module.eval()
    pred = module(x).argmax(dim=1)
    return int((pred == y).sum()) / len(y)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_one(arch: str, epochs: int, out_dir: str, seed: int = SEED, log=print) -> dict:
    recipe = RECIPES[arch]
    config = dict(recipe["config"])
    lr = recipe["lr"]
    x_train, y_train = (torch.from_numpy(a) for a in load_digits_split("train"))
    x_test, y_test = (torch.from_numpy(a) for a in load_digits_split("test"))

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(arch, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = math.ceil(len(x_train) / BATCH_SIZE)
    warmup_epochs = min(WARMUP_EPOCHS, epochs // 5)  # short test runs skip the warmup
    total, warmup = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch

    start, cpu_start = time.perf_counter(), time.process_time()
    step = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        running, seen = 0.0, 0
        for i in range(0, len(order), BATCH_SIZE):
            idx = order[i:i + BATCH_SIZE]
            xb = shift_augment(x_train[idx], generator)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, warmup, lr)
            loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss) * len(idx)
            seen += len(idx)
            step += 1
        if (epoch + 1) % 5 == 0 or epoch == epochs - 1:
            acc = evaluate(model, x_test, y_test)
            log(f"  {arch} epoch {epoch + 1:3d}/{epochs}  loss {running / seen:.4f}  test acc {acc:.4f}  "
                f"{time.perf_counter() - start:6.1f}s (cpu {time.process_time() - cpu_start:.1f}s)")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    # Record the accuracy of exactly what is saved: a fresh zoo model holding the saved weights.
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    fresh = build_model(arch, config)
    fresh.load_state_dict(state, strict=True)
    accuracy = evaluate(fresh, x_test, y_test)
    checkpoint = {
        "arch": arch,
        "config": config,
        "state_dict": state,
        "input_shape": list(INPUT_SHAPE),
        "timesteps": config["T"],
        "float_test_accuracy": accuracy,
        "dataset": "digits: spikec.datasets.load_digits_split('test'), 450 images",
        "training": {"epochs": epochs, "batch_size": BATCH_SIZE, "optimizer": "AdamW", "lr": lr,
                     "weight_decay": WEIGHT_DECAY, "schedule": f"{warmup_epochs}-epoch warmup, cosine",
                     "label_smoothing": LABEL_SMOOTHING, "augment": "random shift +-1 px", "seed": seed},
    }
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{arch}.pt")
    tmp = path + ".tmp"
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)

    # Check the file the way users will read it: through spikec's loader, weights only.
    from spikec.frontends.torch import ModelSource, load_model

    torch.load(path, map_location="cpu", weights_only=True)
    reloaded = load_model(ModelSource(checkpoint=path)).module
    again = evaluate(reloaded, x_test, y_test)
    if again != accuracy:
        raise RuntimeError(f"{path}: reloaded accuracy {again} differs from the recorded {accuracy}")
    size = os.path.getsize(path)
    log(f"{arch}: test accuracy {accuracy:.4f} ({round(accuracy * len(y_test))}/{len(y_test)}), "
        f"trained in {seconds:.1f}s wall, {cpu_seconds:.1f}s cpu, "
        f"{sum(p.numel() for p in model.parameters())} parameters, {size / 1024:.0f} KiB -> {path}")
    return {"arch": arch, "accuracy": accuracy, "seconds": seconds, "cpu_seconds": cpu_seconds, "path": path,
            "bytes": size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train tiny spiking transformers (zoo architectures) on the 8x8 digits and save spikec "
                    "checkpoint dicts. With no options it reproduces the committed checkpoints.")
    parser.add_argument("--arch", nargs="+", choices=sorted(RECIPES), default=list(RECIPES), metavar="NAME",
                        help=f"architectures to train (default: all of {', '.join(RECIPES)})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for every architecture (default: each one's committed recipe, "
                             + ", ".join(f"{a} {r['epochs']}" for a, r in RECIPES.items()) + ")")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="folder for <arch>.pt (default: examples/digits/checkpoints)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads for torch (default 2; the committed checkpoints used 2)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    results = []
    for arch in args.arch:
        epochs = args.epochs if args.epochs is not None else RECIPES[arch]["epochs"]
        print(f"training {arch} for {epochs} epochs: {RECIPES[arch]['config']}", flush=True)
        results.append(train_one(arch, epochs, args.out, args.seed, log=lambda s: print(s, flush=True)))
    print("\nsummary:")
    for r in results:
        print(f"  {r['arch']:22s} acc {r['accuracy']:.4f}  {r['seconds']:6.1f}s wall  "
              f"{r['cpu_seconds']:6.1f}s cpu  {r['bytes'] / 1024:5.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
