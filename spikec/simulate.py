"""``spikec simulate``: run a model on data with several backends and compare them.

Backends: ``torch`` (the PyTorch module), ``float`` (the float interpreter of the traced IR) and
``intsim`` (the integer simulator of the compiled graph). Reported per backend: accuracy (when labels are
given), samples and seconds; between backends: the fraction of samples with the same prediction, and for
``float``/``intsim`` the fraction of identical spikes on every neuron layer (matched in graph order:
quantization keeps one ``qlif`` per ``lif``).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Callable, Iterable

import numpy as np
import torch

from spikec.errors import InputError

__all__ = ["BACKENDS", "SimulationReport", "simulate", "FORMAT_VERSION"]

FORMAT_VERSION = 1
BACKENDS = ("torch", "float", "intsim")


@dataclasses.dataclass
class _Tally:
    predictions: list[np.ndarray] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


@dataclasses.dataclass
class _LayerCounts:
    """Identical spikes and spikes compared, per neuron layer, per backend pair."""

    modules: list[str] = dataclasses.field(default_factory=list)
    same: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    total: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def add(self, layer_spikes: dict[str, list]) -> None:
        for a, b in itertools.combinations(layer_spikes, 2):
            pair, spikes_a, spikes_b = f"{a}/{b}", layer_spikes[a], layer_spikes[b]
            if len(spikes_a) != len(spikes_b):
                raise InputError(f"backends {a} and {b} have {len(spikes_a)} and {len(spikes_b)} neuron layers")
            self.modules = [module for module, _ in spikes_a]
            same = self.same.setdefault(pair, [0] * len(spikes_a))
            total = self.total.setdefault(pair, [0] * len(spikes_a))
            for i, ((_, sa), (_, sb)) in enumerate(zip(spikes_a, spikes_b)):
                same[i] += int((sa == sb).sum())
                total[i] += sa.size

    def rows(self) -> list[dict]:
        return [{"index": i, "module": module,
                 "agreement": {pair: self.same[pair][i] / self.total[pair][i] for pair in self.same}}
                for i, module in enumerate(self.modules)]


@dataclasses.dataclass
class SimulationReport:
    model: str
    samples: int
    accuracy: dict[str, float | None]
    seconds: dict[str, float]
    agreement: dict[str, float]
    layers: list[dict]

    def to_json(self) -> dict:
        return {
            "version": FORMAT_VERSION, "model": self.model, "samples": self.samples,
            "backends": {name: {"accuracy": self.accuracy[name], "samples": self.samples,
                                "seconds": round(self.seconds[name], 4)} for name in self.accuracy},
            "agreement": self.agreement, "layers": self.layers,
        }

    def to_text(self) -> str:
        lines = [f"model {self.model}: {self.samples} samples"]
        for name in self.accuracy:
            acc = self.accuracy[name]
            shown = "n/a (no labels)" if acc is None else f"{100 * acc:.2f}%"
            lines.append(f"  {name:7} accuracy {shown:>16}   {self.seconds[name]:.2f} s "
                         f"({1000 * self.seconds[name] / max(self.samples, 1):.2f} ms/sample)")
        for pair, value in self.agreement.items():
            lines.append(f"  prediction agreement {pair}: {100 * value:.2f}%")
        if self.layers:
            pairs = list(self.layers[0]["agreement"])
            lines.append(f"  spike agreement per neuron layer ({', '.join(pairs)}):")
            worst = min(self.layers, key=lambda l: min(l["agreement"].values()))
            for layer in self.layers:
                values = ", ".join(f"{100 * v:.2f}%" for v in layer["agreement"].values())
                marker = "  <- lowest" if layer is worst and min(worst["agreement"].values()) < 1 else ""
                lines.append(f"    {layer['index']:3} {layer['module'] or '-':40} {values}{marker}")
        return "\n".join(lines) + "\n"


def _batches(x: np.ndarray, batch_size: int) -> Iterable[tuple[int, np.ndarray]]:
    for start in range(0, len(x), batch_size):
        yield start, x[start:start + batch_size]


def simulate(name: str, x: np.ndarray, y: np.ndarray | None, runners: dict[str, Callable],
             batch_size: int = 64, progress: Callable | None = None) -> SimulationReport:
    """Run every runner on ``x`` in batches. A runner maps a float batch to ``(logits, layer_spikes)``
    where ``layer_spikes`` is a list of neuron-layer spike arrays, or None when it has none."""
    if len(x) == 0:
        raise InputError("the data set is empty")
    tallies = {name: _Tally() for name in runners}
    layers = _LayerCounts()
    batches = list(_batches(x, batch_size))
    steps = progress(batches) if progress else batches
    for _, batch in steps:
        layer_spikes = {}
        for backend, run in runners.items():
            start = time.perf_counter()
            logits, spikes = run(batch)
            tallies[backend].seconds += time.perf_counter() - start
            tallies[backend].predictions.append(np.asarray(logits).argmax(axis=-1))
            if spikes is not None:
                layer_spikes[backend] = spikes
        layers.add(layer_spikes)
    predictions = {k: np.concatenate(t.predictions) for k, t in tallies.items()}
    accuracy = {k: (None if y is None else float((p == y).mean())) for k, p in predictions.items()}
    agreement = {f"{a}/{b}": float((predictions[a] == predictions[b]).mean())
                 for a, b in itertools.combinations(runners, 2)}
    return SimulationReport(name, len(x), accuracy, {k: t.seconds for k, t in tallies.items()}, agreement,
                            layers.rows())


def torch_runner(module: torch.nn.Module) -> Callable:
    module.eval()

    def run(batch):
        with torch.no_grad():
            out = module(torch.from_numpy(batch))
        return out.numpy(), None
    return run


def float_runner(graph) -> Callable:
    from spikec.backends.float.interpreter import run_float

    neurons = [n for n in graph.nodes if n.op in ("lif", "if")]

    def run(batch):
        result = run_float(graph, [torch.from_numpy(batch)], keep_values=True)
        return result.outputs[0].numpy(), [(n.module, result.of(n).numpy().astype(np.int64)) for n in neurons]
    return run


def intsim_runner(graph, output_scale: float) -> Callable:
    from spikec.backends.intsim.interpreter import run_intsim

    neurons = [n for n in graph.nodes if n.op == "qlif"]

    def run(batch):
        result = run_intsim(graph, [batch], keep_values=True)
        return result.outputs[0] / output_scale, [(n.module, result.of(n)) for n in neurons]
    return run
