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

from spikec.budget import check_simulation_memory
from spikec.errors import InputError
from spikec.ir.ops import OpCategory, Phase, ops_with

__all__ = ["SimulationPlan", "SimulationReport", "simulate", "batch_axis", "check_data_shape", "fidelity",
           "AGREEMENT_FLOOR", "FORMAT_VERSION"]

FORMAT_VERSION = 1


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
    """Accuracy, time and agreement per backend; ``bit_exact`` holds the lava/intsim comparison when one was
    asked for (:class:`spikec.backends.lava.compare.BitExactWatch`), ``input_clipping`` how much of the
    data the compiled input range clipped (:func:`input_clipping`)."""

    model: str
    samples: int
    accuracy: dict[str, float | None]
    seconds: dict[str, float]
    agreement: dict[str, float]
    layers: list[dict]
    bit_exact: object | None = None
    input_clipping: dict | None = None
    fidelity: dict | None = None

    @property
    def exact(self) -> bool:
        """False only when a bit-exact comparison ran and found a difference."""
        return self.bit_exact is None or self.bit_exact.exact

    def to_json(self) -> dict:
        return {
            "version": FORMAT_VERSION, "model": self.model, "samples": self.samples,
            "backends": {name: {"accuracy": self.accuracy[name], "samples": self.samples,
                                "seconds": round(self.seconds[name], 4)} for name in self.accuracy},
            "agreement": self.agreement, "layers": self.layers,
            **({"input_clipping": self.input_clipping} if self.input_clipping else {}),
            **({"fidelity": self.fidelity} if self.fidelity else {}),
            **(self.bit_exact.to_json() if self.bit_exact is not None else {}),
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
            worst = min(self.layers, key=lambda layer: min(layer["agreement"].values()))
            for layer in self.layers:
                values = ", ".join(f"{100 * v:.2f}%" for v in layer["agreement"].values())
                marker = "  <- lowest" if layer is worst and min(worst["agreement"].values()) < 1 else ""
                lines.append(f"    {layer['index']:3} {layer['module'] or '-':40} {values}{marker}")
        lines += _fidelity_text(self.fidelity) if self.fidelity else []
        return "\n".join(lines) + "\n" + (self.bit_exact.to_text() if self.bit_exact is not None else "")


AGREEMENT_FLOOR = 0.99
"""The spike agreement with the float model below which the fidelity report names a neuron layer."""


def _fidelity_text(fidelity: dict) -> list[str]:
    lines = ["  weight quantization error per synapse group (compile's quantization report):"]
    lines += [f"    {row['module'] or '-':44} {row['kind']:5} {100 * row['relative_error']:7.2f}%"
              for row in fidelity["weight_error"]]
    first, floor = fidelity["first_below"], f"{100 * fidelity['agreement_floor']:.0f}%"
    if fidelity["reference"] is None:
        lines.append("  spike agreement with the float model: not measured (run float or torch with intsim)")
    elif first is None:
        lines.append(f"  every neuron layer agrees with the float model on >= {floor} of its spikes")
    else:
        lines.append(f"  first neuron layer below {floor} spike agreement ({fidelity['reference']}): {first['index']} "
                     f"{first['module'] or '-'} ({first['source'] or 'no source line'}): "
                     f"{100 * first['agreement']:.2f}%")
    return lines


def fidelity(compiled, layers: list[dict]) -> dict:
    """The per-layer fidelity of an integer model: the weight quantization error of every synapse group (from
    the compile's quantization report, ``compiled`` a CompiledModel or an Artifact) and the first neuron layer
    whose spikes agree with the float model's (``layers``, the float/intsim agreement) less than
    :data:`AGREEMENT_FLOOR`, with its module path and source line."""
    manifest = getattr(compiled, "manifest", None)
    rows = manifest["quantization"]["layers"] if manifest is not None else \
        [dataclasses.asdict(layer) for layer in compiled.quantization.layers]
    neurons = [n for n in compiled.graph.nodes if n.op in ops_with(category=OpCategory.NEURON, phase=Phase.INTEGER)]
    reference = "float/intsim" if layers and "float/intsim" in layers[0]["agreement"] else None
    first = next((layer for layer in layers if reference and layer["agreement"][reference] < AGREEMENT_FLOOR), None)
    if first is not None:
        locs = neurons[first["index"]].locs
        first = {"index": first["index"], "module": first["module"], "agreement": first["agreement"][reference],
                 "source": locs[0].file_line if locs and locs[0].file_line else None}
    return {"weight_error": [{k: row[k] for k in ("module", "op", "kind", "relative_error")} for row in rows],
            "agreement_floor": AGREEMENT_FLOOR, "reference": reference, "first_below": first}


def batch_axis(layout: str) -> int:
    """The axis of a model input that holds the samples: ``[B, ...]`` (layout B) or ``[T, B, ...]`` (TB)."""
    return 0 if layout == "B" else 1


def _batches(x: np.ndarray, batch_size: int, axis: int) -> Iterable[tuple[int, np.ndarray]]:
    for start in range(0, x.shape[axis], batch_size):
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, start + batch_size)
        yield start, np.ascontiguousarray(x[tuple(index)])


def check_data_shape(x: np.ndarray, input_shape: tuple[int, ...], layout: str, what: str) -> None:
    """Raise unless ``x`` stacks samples of ``input_shape`` (the model's input, batch 1) along the batch axis
    of ``layout``."""
    axis = batch_axis(layout)
    want = list(input_shape)
    got = list(x.shape)
    if len(got) == len(want) and all(g == w for i, (g, w) in enumerate(zip(got, want)) if i != axis):
        return
    expected = ", ".join("N" if i == axis else str(d) for i, d in enumerate(want))
    hint = ""
    if layout == "TB" and len(got) == len(want) and got[1] == want[0] and got[2:] == want[2:]:
        hint = "; x looks like [N, T, ...]: save np.swapaxes(x, 0, 1) instead"
    raise InputError(f"the data's x has shape {got} but {what} takes [{expected}] (N samples along the "
                     f"batch axis of input layout {layout}){hint}")


def simulate(name: str, x: np.ndarray, y: np.ndarray | None, runners: dict[str, Callable],
             batch_size: int = 64, progress: Callable | None = None, layout: str = "B",
             spikes_of: dict[str, Callable] | None = None) -> SimulationReport:
    """Run every runner on ``x`` in batches along the batch axis of ``layout``. A runner maps a float batch
    to ``(logits, layer_spikes)`` where ``layer_spikes`` is a list of neuron-layer spike arrays, or None
    when it has none. ``spikes_of``: runners run for their layer spikes only (compared, not reported as a
    backend)."""
    axis = batch_axis(layout)
    if x.ndim <= axis or x.shape[axis] == 0:
        raise InputError("the data set is empty")
    tallies = {name: _Tally() for name in runners}
    layers = _LayerCounts()
    batches = list(_batches(x, batch_size, axis))
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
        reference = {backend: run(batch)[1] for backend, run in (spikes_of or {}).items()}
        layers.add({**reference, **layer_spikes})   # the reference first: its pairs read "float/intsim"
    predictions = {k: np.concatenate(t.predictions) for k, t in tallies.items()}
    accuracy = {k: (None if y is None else float((p == y).mean())) for k, p in predictions.items()}
    agreement = {f"{a}/{b}": float((predictions[a] == predictions[b]).mean())
                 for a, b in itertools.combinations(runners, 2)}
    return SimulationReport(name, x.shape[axis], accuracy, {k: t.seconds for k, t in tallies.items()}, agreement,
                            layers.rows())


def input_clipping(graph, x: np.ndarray) -> dict | None:
    """How much of ``x`` the compiled input encoding clips: each ``quantize`` node computes
    ``clip(floor(x * 2**exp + 0.5), lo, hi)`` (intsim's rule); returns the compiled range, the fraction of
    input values outside it and the data's extremes, or None when nothing is clipped."""
    nodes = [n for n in graph.nodes if n.op == "quantize"]
    if not nodes or x.size == 0:
        return None
    a = nodes[0].attrs
    levels = np.floor(x.astype(np.float64) * 2.0 ** a["exp"] + 0.5)
    clipped = int(np.count_nonzero((levels < a["lo"]) | (levels > a["hi"])))
    if not clipped:
        return None
    step = 2.0 ** a["exp"]
    return {"range": [a["lo"] / step, a["hi"] / step], "clipped_fraction": clipped / x.size,
            "min": float(x.min()), "max": float(x.max())}


@dataclasses.dataclass
class SimulationPlan:
    """What one simulation runs on: the compiled model (a fresh :class:`~spikec.compiler.CompiledModel` or
    a loaded :class:`~spikec.compiler.Artifact`), plus the PyTorch module and the folded float graph when
    it was compiled here from a model (an artifact keeps neither).

    Backends: ``torch`` needs the module, ``float`` the float graph, ``lava`` a ``loihi2`` target;
    ``intsim`` runs every compiled model."""

    name: str
    compiled: object
    input_shape: tuple[int, ...]
    layout: str
    module: torch.nn.Module | None = None
    float_graph: object | None = None

    @classmethod
    def of(cls, model, x, *, compiled=None, input_layout: str = "B", **compile_options) -> "SimulationPlan":
        """``model``: a compiled artifact (directory, Artifact or CompiledModel), a ModelSource, a checkpoint
        path, or an ``nn.Module`` (compiled on the first sample of ``x`` unless ``compiled`` is given)."""
        import os

        from spikec.compiler import Artifact, CompiledModel, load_artifact
        from spikec.frontends.torch import ModelSource

        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            model = load_artifact(path) if os.path.isdir(path) else ModelSource(checkpoint=path)
        if isinstance(model, (Artifact, CompiledModel)):
            return cls(model.name, model, model.input_shape, model.input_layout)
        if isinstance(model, ModelSource):
            from spikec.api import Calibrate, compile_source

            # calibrated on the data it is simulated on, unless the caller says otherwise
            compile_options.setdefault("calibrate", Calibrate(data=np.asarray(x)))
            loaded, compiled = compile_source(model, **compile_options)
            return cls(loaded.name, compiled, loaded.input_shape, loaded.input_layout, loaded.module,
                       compiled.float_graph)
        if isinstance(model, torch.nn.Module):
            if compiled is None:
                from spikec.api import compile as compile_module

                first = next(_batches(np.ascontiguousarray(x, dtype=np.float32), 1, batch_axis(input_layout)))[1]
                compiled = compile_module(model, torch.from_numpy(first), input_layout=input_layout,
                                          **compile_options)
            return cls(compiled.name, compiled, compiled.input_shape, input_layout, model, compiled.float_graph)
        raise InputError(f"cannot simulate a {type(model).__name__}: pass an nn.Module, a ModelSource, or a "
                         "compiled artifact")

    def available(self) -> list[str]:
        """The registered backends (:data:`spikec.registry.BACKENDS`) that can run what this plan holds."""
        from spikec.registry import BACKENDS

        return [name for name, backend in BACKENDS.items() if backend.runs(self)]

    def choose(self, backends, compare: str | None) -> list[str]:
        """The backends to run, in order (a ``compare`` reference first), or one clear error."""
        if backends is None:
            backends = ["lava"] if compare and self.compiled.target == "loihi2" else (
                ["torch", "intsim"] if self.module is not None else ["intsim"])
        chosen = list(backends)
        if not chosen or len(set(chosen)) != len(chosen):
            raise InputError(f"backends must be distinct names from {', '.join(self.available())}, "
                             f"got {','.join(chosen)}")
        for name in chosen:
            self._check_available(name)
        if compare is not None:
            if compare != "intsim":
                raise InputError(f"--compare takes intsim, got {compare!r}")
            if "lava" not in chosen:
                raise InputError("--compare intsim checks the lava backend against intsim: run an artifact "
                                 "compiled with --target loihi2 with --backend lava")
            chosen = [compare] + [b for b in chosen if b != compare]
        return chosen

    def _check_available(self, name: str) -> None:
        from spikec.registry import BACKENDS

        if name in self.available():
            return
        if name not in BACKENDS:
            raise InputError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
        backend = BACKENDS[name]
        if backend.needs == "compiled model" and self.module is not None:
            raise InputError(f"the {name} backend runs an artifact compiled with --target "
                             f"{' or '.join(backend.targets)}: run `spikec compile MODEL --target "
                             f"{backend.targets[0]} -o OUT`, then `spikec simulate OUT --backend {name}`")
        if backend.needs == "compiled model":
            raise InputError(f"{self.name} was compiled for {self.compiled.target}: compile it with --target "
                             f"{' or '.join(backend.targets)} to run it on {name}")
        raise InputError(f"{self.name} is a compiled artifact: it runs on {' and '.join(self.available())} only "
                         f"({name} needs the {backend.needs}: simulate the model itself)")

    def runners(self, chosen: list[str], lava_models: str = "spikec") -> dict[str, Callable]:
        from spikec.registry import BACKENDS

        return {name: BACKENDS[name].make_runner(self, lava_models) for name in chosen}

    def run(self, x, y=None, *, backends=None, compare: str | None = None, batch_size: int = 64,
            lava_models: str = "spikec", progress: Callable | None = None) -> "SimulationReport":
        chosen = self.choose(backends, compare)
        x = np.ascontiguousarray(x, dtype=np.float32)
        check_data_shape(x, self.input_shape, self.layout, self.name)
        check_simulation_memory(self.compiled.graph, min(batch_size, x.shape[batch_axis(self.layout)]))
        runners = self.runners(chosen, lava_models)
        watch = None
        if compare is not None:
            from spikec.backends.lava.compare import BitExactWatch

            watch = BitExactWatch(compare, "lava")
            runners = {b: watch.wrap(b, r) if b in (compare, "lava") else r for b, r in runners.items()}
        # torch has no layer spikes: the float interpreter (the traced module, exactly) gives intsim's reference
        reference = {"float": float_runner(self.float_graph)} if "intsim" in chosen and "float" not in chosen \
            and "torch" in chosen and self.float_graph is not None else None
        report = simulate(self.name, x, y, runners, batch_size, progress, self.layout, reference)
        report.bit_exact = watch
        report.input_clipping = input_clipping(self.compiled.graph, x)
        report.fidelity = fidelity(self.compiled, report.layers) if "intsim" in chosen else None
        return report


def lava_runner(graph, scale: float, lava_models: str = "spikec", process_graph=None) -> Callable:
    """Lava's bit-accurate CPU models; ``lava_models`` picks spikec's vectorised models of Lava's built-in
    synapse processes (proven bit-identical) or Lava's own. ``process_graph``: the compile's (its mapping
    options included); without one the graph is lowered with the default options."""
    from spikec.backends.lava.compare import lava_runner as make

    if lava_models not in ("spikec", "lava"):
        raise InputError(f"lava models must be spikec or lava, got {lava_models!r}")
    return make(graph, scale, fast=lava_models == "spikec", process_graph=process_graph)


def torch_runner(module: torch.nn.Module) -> Callable:
    """The PyTorch module itself; its stateful neurons are reset before every batch, so no batch starts
    from the state the previous one left. Its logits are the first tensor it returns, as the traced graph's
    first output is."""
    from spikec.frontends.torch.neurons import reset_neuron_state
    from spikec.frontends.torch.tracer import returned_tensors

    module.eval()

    def run(batch):
        reset_neuron_state(module)
        with torch.no_grad():
            out = returned_tensors(module(torch.from_numpy(batch)))
        if not out:
            raise InputError("the model's forward returned no tensor of logits")
        return out[0].numpy(), None
    return run


def float_runner(graph) -> Callable:
    from spikec.backends.float.interpreter import run_float

    neuron_ops = ops_with(category=OpCategory.NEURON, phase=Phase.FLOAT)
    neurons = [n for n in graph.nodes if n.op in neuron_ops]

    def run(batch):
        result = run_float(graph, [torch.from_numpy(batch)], keep_values=True)
        return result.outputs[0].numpy(), [(n.module, result.of(n).numpy().astype(np.int64)) for n in neurons]
    return run


def intsim_runner(graph, output_scale: float, ranges=None) -> Callable:
    """intsim on the compiled graph. ``ranges`` is the compile's range report; without one (a loaded artifact)
    the analysis runs once here rather than on every batch. Either lets intsim use its proven fast rules."""
    from spikec.backends.intsim.interpreter import run_intsim
    from spikec.errors import SpikecError
    from spikec.passes.range_analysis import analyze_ranges

    if ranges is None:
        try:
            ranges = analyze_ranges(graph)
        except SpikecError:         # nothing proved: intsim runs its reference rules
            ranges = None
    neuron_ops = ops_with(category=OpCategory.NEURON, phase=Phase.INTEGER)
    neurons = [n for n in graph.nodes if n.op in neuron_ops]

    def run(batch):
        result = run_intsim(graph, [batch], keep_values=True, ranges=ranges)
        return result.outputs[0] / output_scale, [(n.module, result.of(n)) for n in neurons]
    return run
