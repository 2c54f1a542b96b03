"""``spikec simulate``: run a model on data with several backends and compare them.

Backends (:data:`spikec.registry.BACKENDS`): ``torch`` (the PyTorch module), ``float`` (the float interpreter of
the traced IR), ``intsim`` (the integer simulator of the compiled graph), ``lava`` (Lava's bit-accurate CPU
models) and ``onnxruntime`` (the graph's ONNX export). Reported per backend: accuracy (when labels are given),
samples and seconds; between backends: the fraction of samples with the same prediction, and the fraction of
identical spikes on every neuron layer (matched in graph order: quantization keeps one ``qlif`` per ``lif``).

The samples run in shards of whole batches (:func:`run_shard`), in this process or on the workers of an
:class:`~spikec.engines.Engine`; :func:`merge_shards` adds their counts up to the report of the whole data.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import Callable

import numpy as np
import torch

from spikec.budget import check_simulation_memory
from spikec.errors import InputError
from spikec.ir.ops import OpCategory, Phase, ops_with

__all__ = ["SimulationPlan", "SimulationReport", "ShardResult", "run_shard", "merge_shards", "batch_axis",
           "check_data_shape", "fidelity", "AGREEMENT_FLOOR", "FORMAT_VERSION"]

FORMAT_VERSION = 1


@dataclasses.dataclass
class _LayerCounts:
    """Identical spikes and spikes compared, per neuron layer, per backend pair; sums, so the counts of shards
    add up to those of the whole run."""

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

    def absorb(self, other: "_LayerCounts") -> None:
        self.modules = self.modules or other.modules
        for pair in other.same:
            for mine, theirs in ((self.same, other.same), (self.total, other.total)):
                counts = mine.setdefault(pair, [0] * len(theirs[pair]))
                mine[pair] = [a + b for a, b in zip(counts, theirs[pair])]

    def rows(self) -> list[dict]:
        return [{"index": i, "module": module,
                 "agreement": {pair: self.same[pair][i] / self.total[pair][i] for pair in self.same}}
                for i, module in enumerate(self.modules)]


@dataclasses.dataclass
class _Clipping:
    """How much of the input the compiled encoding clips: each ``quantize`` node computes
    ``clip(floor(x * 2**exp + 0.5), lo, hi)`` (intsim's rule). Counts and extremes, so shards add up."""

    exp: int
    lo: int
    hi: int
    clipped: int = 0
    values: int = 0
    low: float = math.inf
    high: float = -math.inf

    @classmethod
    def of(cls, graph) -> "_Clipping | None":
        nodes = [n for n in graph.nodes if n.op == "quantize"]
        return cls(**{k: nodes[0].attrs[k] for k in ("exp", "lo", "hi")}) if nodes else None

    def add(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        levels = np.floor(x.astype(np.float64) * 2.0 ** self.exp + 0.5)
        self.clipped += int(np.count_nonzero((levels < self.lo) | (levels > self.hi)))
        self.values += x.size
        self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))

    def absorb(self, other: "_Clipping") -> None:
        self.clipped += other.clipped
        self.values += other.values
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)

    def to_json(self) -> dict | None:
        """The compiled range, the fraction of input values outside it and the data's extremes; None when
        nothing was clipped."""
        if not self.clipped:
            return None
        step = 2.0 ** self.exp
        return {"range": [self.lo / step, self.hi / step], "clipped_fraction": self.clipped / self.values,
                "min": self.low, "max": self.high}


@dataclasses.dataclass
class ShardResult:
    """One shard's run (:mod:`spikec.engines`): per backend the predictions and logits of its samples, in order,
    and the seconds spent; the spike agreement counts per neuron layer; the input clipping; the bit-exact
    comparison of its samples (a :class:`~spikec.backends.lava.compare.BitExactWatch`) when one was asked for."""

    start: int
    predictions: dict[str, np.ndarray]
    logits: dict[str, np.ndarray]
    seconds: dict[str, float]
    layers: _LayerCounts
    clipping: _Clipping | None
    bit_exact: object | None = None


@dataclasses.dataclass
class SimulationReport:
    """Accuracy, time and agreement per backend; ``bit_exact`` holds the lava/intsim comparison when one was
    asked for (:class:`spikec.backends.lava.compare.BitExactWatch`), ``input_clipping`` how much of the
    data the compiled input range clipped. ``predictions`` and ``logits`` hold every sample's, per backend, in
    sample order."""

    model: str
    samples: int
    accuracy: dict[str, float | None]
    seconds: dict[str, float]
    agreement: dict[str, float]
    layers: list[dict]
    bit_exact: object | None = None
    input_clipping: dict | None = None
    fidelity: dict | None = None
    predictions: dict[str, np.ndarray] | None = None
    logits: dict[str, np.ndarray] | None = None

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


COMPARED = ("lava", "onnxruntime")
"""The backends ``compare`` checks bit for bit against intsim: each runs the compiled integer graph."""

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


def check_data_shape(x, input_shape: tuple[int, ...], layout: str, what: str) -> None:
    """Raise unless ``x`` (an array or a :class:`~spikec.datasets.Dataset`) stacks samples of ``input_shape``
    (the model's input, batch 1) along the batch axis of ``layout``."""
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


def run_shard(runners: dict[str, Callable], data, shard, batch_size: int, *,
              spikes_of: dict[str, Callable] | None = None, watch=None, clipping: "_Clipping | None" = None,
              progress: Callable | None = None) -> ShardResult:
    """Run every runner on the samples of ``shard`` (a :class:`~spikec.engines.Shard`) of ``data`` (a
    :class:`~spikec.datasets.Dataset`), batch by batch from its start. A runner maps a float batch to
    ``(logits, layer_spikes)``, ``layer_spikes`` a list of neuron-layer spike arrays or None. ``spikes_of``:
    runners run for their layer spikes only (compared, not reported as a backend); ``watch``: a bit-exact
    comparison starting at the shard's first sample (its runners wrapped already); ``clipping``: the input
    clipping to count; ``progress(n)`` after each batch of ``n`` samples."""
    predictions = {name: [] for name in runners}
    logits = {name: [] for name in runners}
    seconds = dict.fromkeys(runners, 0.0)
    layers = _LayerCounts()
    for start in range(shard.start, shard.stop, batch_size):
        batch = data.read(start, min(start + batch_size, shard.stop))
        if clipping is not None:
            clipping.add(batch)
        layer_spikes = {}
        for backend, run in runners.items():
            began = time.perf_counter()
            out, spikes = run(batch)
            seconds[backend] += time.perf_counter() - began
            out = np.asarray(out)
            logits[backend].append(out)
            predictions[backend].append(out.argmax(axis=-1))
            if spikes is not None:
                layer_spikes[backend] = spikes
        reference = {backend: run(batch)[1] for backend, run in (spikes_of or {}).items()}
        layers.add({**reference, **layer_spikes})   # the reference first: its pairs read "float/intsim"
        if progress is not None:
            progress(batch.shape[data.axis])
    return ShardResult(shard.start, {k: np.concatenate(v) for k, v in predictions.items()},
                       {k: np.concatenate(v) for k, v in logits.items()}, seconds, layers, clipping, watch)


def merge_shards(name: str, results: list[ShardResult], labels: np.ndarray | None) -> SimulationReport:
    """The report of a whole run from the results of its shards, in sample order: predictions and logits
    concatenated, seconds and counts summed, the first divergence of the earliest shard that has one."""
    results = sorted(results, key=lambda r: r.start)
    backends = list(results[0].predictions)
    predictions = {k: np.concatenate([r.predictions[k] for r in results]) for k in backends}
    layers, clipping = _LayerCounts(), results[0].clipping
    for result in results:
        layers.absorb(result.layers)
        if clipping is not None and result is not results[0]:
            clipping.absorb(result.clipping)
    accuracy = {k: (None if labels is None else float((p == labels).mean())) for k, p in predictions.items()}
    agreement = {f"{a}/{b}": float((predictions[a] == predictions[b]).mean())
                 for a, b in itertools.combinations(backends, 2)}
    report = SimulationReport(name, len(predictions[backends[0]]), accuracy,
                              {k: sum(r.seconds[k] for r in results) for k in backends}, agreement, layers.rows(),
                              input_clipping=clipping.to_json() if clipping is not None else None,
                              predictions=predictions,
                              logits={k: np.concatenate([r.logits[k] for r in results]) for k in backends})
    if results[0].bit_exact is not None:
        from spikec.backends.lava.compare import BitExactWatch

        report.bit_exact = BitExactWatch.merged([r.bit_exact for r in results])
    return report


@dataclasses.dataclass(frozen=True)
class _SimulationTask:
    """One shard of a simulation, in a worker (:func:`spikec.engines.map_shards`): the plan rebuilt from its
    recipe once per worker, then :meth:`SimulationPlan.run_shard`."""

    token: str              # one run: its workers build the plan once, and anew for the next run
    recipe: tuple
    data: object
    backends: tuple[str, ...]
    compare: str | None
    batch_size: int
    lava_models: str

    def __call__(self, shard) -> ShardResult:
        from spikec.engines import worker_state

        def build():
            model, options = self.recipe
            plan = SimulationPlan.of(model, None, **options)
            return plan, plan.runners(list(self.backends), self.lava_models)

        plan, runners = worker_state(self.token, build)
        return plan.run_shard(runners, self.data, shard, list(self.backends), self.compare, self.batch_size)


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
    recipe: tuple | None = None     # (model, options): what SimulationPlan.of rebuilds this plan from
    onnx_file: str | None = None    # the ONNX export the onnxruntime backend runs (else it exports the graph)
    per_sample: bool = False        # the module computes what was traced at batch 1 only (merged neurons)

    @classmethod
    def of(cls, model, x=None, *, compiled=None, input_layout: str = "B", **compile_options) -> "SimulationPlan":
        """``model``: a compiled artifact (directory, Artifact or CompiledModel), a ModelSource, a checkpoint
        path, or an ``nn.Module`` (compiled on the first sample of ``x`` unless ``compiled`` is given). ``x``:
        the data (an array or a :class:`~spikec.datasets.Dataset`); a model is calibrated on its first samples
        unless ``compile_options`` hold a ``calibrate``."""
        import os

        from spikec.compiler import Artifact, CompiledModel, load_artifact
        from spikec.frontends.torch import ModelSource

        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            if os.path.isdir(path):
                return dataclasses.replace(cls.of(load_artifact(path)), recipe=(os.path.abspath(path), {}))
            if path.endswith(".onnx"):       # a `spikec export` file: the artifact it carries, run from the file
                from spikec.backends.onnx import load_embedded_artifact

                return dataclasses.replace(cls.of(load_embedded_artifact(path)), recipe=(os.path.abspath(path), {}),
                                           onnx_file=os.path.abspath(path))
            model = ModelSource(checkpoint=path)
        if isinstance(model, (Artifact, CompiledModel)):
            return cls(model.name, model, model.input_shape, model.input_layout, recipe=(model, {}))
        if isinstance(model, ModelSource):
            from spikec.api import Calibrate, compile_source

            if "calibrate" not in compile_options:   # calibrated on the data it is simulated on
                compile_options["calibrate"] = Calibrate(data=_first(x, Calibrate.samples, model.input_layout))
            loaded, compiled = compile_source(model, **compile_options)
            return cls(loaded.name, compiled, loaded.input_shape, loaded.input_layout, loaded.module,
                       compiled.float_graph, (model, compile_options),
                       per_sample=model.merged_neurons_at_batch_1)
        if isinstance(model, torch.nn.Module):
            if compiled is None:
                from spikec.api import compile as compile_module

                compiled = compile_module(model, torch.from_numpy(_first(x, 1, input_layout)),
                                          input_layout=input_layout, **compile_options)
            return cls(compiled.name, compiled, compiled.input_shape, input_layout, model, compiled.float_graph,
                       (model, {"compiled": compiled, "input_layout": input_layout}))
        raise InputError(f"cannot simulate a {type(model).__name__}: pass an nn.Module, a ModelSource, or a "
                         "compiled artifact")

    def available(self) -> list[str]:
        """The registered backends (:data:`spikec.registry.BACKENDS`) that can run what this plan holds."""
        from spikec.registry import BACKENDS

        return [name for name, backend in BACKENDS.items() if backend.runs(self)]

    def choose(self, backends, compare: str | None) -> list[str]:
        """The backends to run, in order (a ``compare`` reference first), or one clear error."""
        from spikec.registry import BACKENDS

        if backends is None and compare:
            backends = ["lava"] if self.compiled.target == "loihi2" else ["onnxruntime"]
        elif backends is None:   # a model without a PyTorch module (a NIR graph) runs on the float interpreter
            backends = ["torch", "intsim"] if self.module is not None else \
                ["float", "intsim"] if self.float_graph is not None else ["intsim"]
        chosen = list(backends)
        if not chosen or len(set(chosen)) != len(chosen):
            raise InputError(f"backends must be distinct names from {', '.join(self.available())}, "
                             f"got {','.join(chosen)}")
        for name in chosen:
            self._check_available(name)
        for name in chosen:
            BACKENDS[name].check_installed()
        if compare is not None:
            if compare != "intsim":
                raise InputError(f"--compare takes intsim, got {compare!r}")
            candidates = [b for b in chosen if b in COMPARED]
            if len(candidates) != 1:
                raise InputError(f"--compare intsim checks one backend against intsim, lava (an artifact compiled "
                                 f"with --target loihi2) or onnxruntime: run it with --backend lava or --backend "
                                 f"onnxruntime{'' if not candidates else ', not both'}")
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
            lava_models: str = "spikec", progress: Callable | None = None, engine=None) -> "SimulationReport":
        """Run the backends on ``x`` (an array, labels ``y``, or a :class:`~spikec.datasets.Dataset` with its
        labels) on ``engine`` (a :class:`~spikec.engines.Engine`; default: this process). ``progress(done,
        total)`` is called as samples finish."""
        from spikec.datasets import ArrayDataset
        from spikec.engines import Engine, counting, map_shards, shards_of

        engine = engine or Engine()
        chosen = self.choose(backends, compare)
        data = x if hasattr(x, "read") else ArrayDataset(np.asarray(x), None if y is None else np.asarray(y),
                                                         self.layout)
        if len(data.shape) <= data.axis or len(data) == 0:
            raise InputError("the data set is empty")
        check_data_shape(data, self.input_shape, self.layout, self.name)
        check_simulation_memory(self.compiled.graph, min(batch_size, len(data)))
        advance = counting(progress, len(data))
        if engine.in_process:
            runners = self.runners(chosen, lava_models)
            shard = shards_of(len(data), len(data), 1)[0]
            results = [self.run_shard(runners, data, shard, chosen, compare, batch_size, advance)]
        else:
            if self.recipe is None:
                raise InputError(f"{self.name} cannot be sent to workers: build the plan with SimulationPlan.of")
            import uuid

            task = _SimulationTask(uuid.uuid4().hex, self.recipe, data, tuple(chosen), compare, batch_size,
                                   lava_models)
            shards = shards_of(len(data), batch_size, engine.workers)
            results = map_shards(task, shards, engine,
                                 None if advance is None else lambda shard: advance(shard.stop - shard.start))
        report = merge_shards(self.name, results, data.labels)
        report.fidelity = fidelity(self.compiled, report.layers) if "intsim" in chosen else None
        return report

    def run_shard(self, runners: dict[str, Callable], data, shard, chosen: list[str], compare: str | None,
                  batch_size: int, progress: Callable | None = None) -> ShardResult:
        """One shard of :meth:`run` with ``runners`` (:meth:`runners` of ``chosen``): with ``compare``, lava is
        checked against the reference from the shard's first sample; with torch and intsim but no float, the
        float interpreter (the traced module, exactly) gives intsim's spike reference, as torch has none."""
        watch = None
        if compare is not None:
            from spikec.backends.lava.compare import BitExactWatch

            candidate = next(b for b in chosen if b in COMPARED)
            watch = BitExactWatch(compare, candidate, offset=shard.start)
            runners = {b: watch.wrap(b, r) if b in (compare, candidate) else r for b, r in runners.items()}
        reference = {"float": float_runner(self.float_graph)} if "intsim" in chosen and "float" not in chosen \
            and "torch" in chosen and self.float_graph is not None else None
        return run_shard(runners, data, shard, batch_size, spikes_of=reference, watch=watch,
                         clipping=_Clipping.of(self.compiled.graph), progress=progress)


def _first(x, count: int, layout: str) -> np.ndarray | None:
    """The first ``count`` samples of ``x`` (an array or a Dataset), float32; None without data."""
    if x is None:
        return None
    if hasattr(x, "read"):
        return x.read(0, count)
    x = np.asarray(x)
    axis = batch_axis(layout)
    if x.ndim <= axis:
        raise InputError(f"the data's x has shape {list(x.shape)}: it needs a batch axis {axis} (input layout "
                         f"{layout})")
    return np.ascontiguousarray(np.take(x, np.arange(min(count, x.shape[axis])), axis=axis), dtype=np.float32)


def lava_runner(graph, scale: float, lava_models: str = "spikec", process_graph=None) -> Callable:
    """Lava's bit-accurate CPU models; ``lava_models`` picks spikec's vectorised models of Lava's built-in
    synapse processes (proven bit-identical) or Lava's own. ``process_graph``: the compile's (its mapping
    options included); without one the graph is lowered with the default options."""
    from spikec.backends.lava.compare import lava_runner as make

    if lava_models not in ("spikec", "lava"):
        raise InputError(f"lava models must be spikec or lava, got {lava_models!r}")
    return make(graph, scale, fast=lava_models == "spikec", process_graph=process_graph)


def torch_runner(module: torch.nn.Module, per_sample_axis: int | None = None) -> Callable:
    """The PyTorch module itself; its stateful neurons are reset before every batch, so no batch starts
    from the state the previous one left. Its logits are the first tensor it returns, as the traced graph's
    first output is. With ``per_sample_axis`` (the input's batch axis) it runs one sample at a time and stacks the
    logits along their first axis: a model traced with merged neurons at batch 1 computes that only at batch 1."""
    from spikec.frontends.torch.neurons import reset_neuron_state
    from spikec.frontends.torch.tracer import returned_tensors

    module.eval()

    def run_batch(batch):
        reset_neuron_state(module)
        with torch.no_grad():
            out = returned_tensors(module(torch.from_numpy(batch)))
        if not out:
            raise InputError("the model's forward returned no tensor of logits")
        return out[0].numpy()

    def run(batch):
        if per_sample_axis is not None:
            samples = np.split(batch, batch.shape[per_sample_axis], axis=per_sample_axis)
            return np.concatenate([run_batch(np.ascontiguousarray(s)) for s in samples]), None
        return run_batch(batch), None
    return run


def onnxruntime_runner(graph, output_scale: float, onnx_file: str | None = None) -> Callable:
    """onnxruntime on ``onnx_file``, or on the ONNX export of the compiled ``graph`` made here
    (:func:`spikec.backends.onnx.export_onnx`): its logits and the spikes of every neuron layer, as intsim gives
    them."""
    import onnxruntime

    from spikec.backends.onnx import export_onnx

    neuron_ops = ops_with(category=OpCategory.NEURON, phase=Phase.INTEGER)
    modules = [n.module for n in graph.nodes if n.op in neuron_ops]
    model = onnx_file if onnx_file is not None else export_onnx(graph).SerializeToString()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])

    def run(batch):
        logits, *spikes = session.run(["output_0", *(f"spikes_{i}" for i in range(len(modules)))],
                                      {"input_0": batch})
        return logits / output_scale, list(zip(modules, spikes))
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
