"""spikec's Python API: the functions the CLI is a thin layer over (docs/design.md, §1).

``verify`` runs the spike-driven check: trace, value domains, rules; with ``observe`` it also runs the
float interpreter on real inputs and records the values each checked operand takes (the histograms of
the Spikingformer paper's Fig. 3), next to the static domain. Observed values must lie in the static
domain; one that does not is a bug in the analysis (``Report.disagreements``).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from spikec.diagnostics import HISTOGRAM_CAP, Observation, Report
from spikec.errors import InputError, PassError, VerifyError
from spikec.ir import Graph, Node

__all__ = ["verify", "verify_graph", "check_observations", "load_data", "compile", "compile_source", "folded_graph",
           "quantize_options", "check_resources", "simulate", "report"]

DISTINCT_CAP = 1 << 16  # beyond this many distinct values an operand keeps only min, max and integrality


def verify(model, example_input, *, strict: bool = False, observe: int = 0, data=None,
           input_layout: str = "B", seed: int = 0, name: str | None = None, fold: bool = True) -> Report:
    """Check that ``model`` (an ``nn.Module``) is spike-driven; ``example_input`` is what its forward takes.

    ``strict`` makes the exempt encoding layer and readout errors. ``observe`` > 0 also runs that many
    inputs through the float interpreter: random ones, or the first ``observe`` samples of ``data`` (an
    array stacking model inputs along the batch axis; all of them when ``observe`` is 0). With ``fold`` (the
    default) the check reads the deployable network: chains of convs, batch norms and pads between two weight
    ops are folded into one weight op first (:mod:`spikec.passes.reparameterize`), and the report lists them.
    """
    from spikec.frontends.torch import trace_module

    graph = trace_module(model, example_input, input_layout, name).graph
    return verify_graph(graph, strict=strict, observe=observe, data=data, seed=seed, fold=fold)


@dataclasses.dataclass(frozen=True)
class Calibrate:
    """What a compile calibrates its input exponent on (:mod:`spikec.passes.quantize`, ``_calibrate``): the
    first ``samples`` inputs of ``data`` (stacked along the batch axis of the input layout), or that many
    random inputs uniform in the input range when there is no data. ``samples = 0``: no calibration."""

    samples: int = 64
    data: np.ndarray | None = None
    name: str = "data"


def calibration_samples(calibrate: Calibrate, input_shape, layout: str, input_range, seed: int = 0,
                        name: str = "the model"):
    """The :class:`~spikec.passes.quantize.Calibration` ``calibrate`` asks for, samples first, for the model
    ``name`` taking ``input_shape`` (batch 1) in ``layout``; None for ``samples = 0``."""
    from spikec.backends.float.interpreter import observe_float
    from spikec.passes.quantize import Calibration
    from spikec.simulation import batch_axis, check_data_shape

    if calibrate.samples < 0:
        raise InputError(f"--calibrate takes a number of samples >= 0, got {calibrate.samples}")
    if calibrate.samples == 0:
        return None
    axis = batch_axis(layout)
    if calibrate.data is None:
        shape = (calibrate.samples, *(d for i, d in enumerate(input_shape) if i != axis))
        samples = np.random.default_rng(seed).uniform(input_range[0], input_range[1], shape).astype(np.float32)
        return Calibration(samples, "random")
    data = np.asarray(calibrate.data)
    check_data_shape(data, tuple(input_shape), layout, name)
    count = min(calibrate.samples, data.shape[axis])
    return Calibration(np.moveaxis(np.take(data, np.arange(count), axis=axis), axis, 0).astype(np.float32),
                       calibrate.name, observe_float)


def quantize_options(loaded=None, *, input_exp: int | None = None, input_range=None,
                     allow_saturation: bool = False, calibration=None):
    """The quantizer's options: what the caller chose, else what fits the model's input
    (:class:`~spikec.frontends.torch.LoadedModel` ``input_exp``/``input_range``), else images in [0, 1] at
    8 fractional bits. With ``calibration`` and no ``input_exp``, quantize chooses the input exponent up to
    that default from the calibration samples; a given ``input_exp`` overrides calibration."""
    from spikec.passes.quantize import QuantizeOptions

    defaults = QuantizeOptions()
    exp = input_exp if input_exp is not None else getattr(loaded, "input_exp", defaults.input_exp)
    lo_hi = input_range if input_range is not None else getattr(loaded, "input_range", defaults.input_range)
    return QuantizeOptions(input_exp=int(exp), input_range=(float(lo_hi[0]), float(lo_hi[1])),
                           allow_saturation=allow_saturation,
                           calibration=None if input_exp is not None else calibration)


def compile(model, example_input, *, target: str = "intsim", input_layout: str = "B", input_exp: int | None = None,
            input_range: tuple[float, float] | None = None, allow_saturation: bool = False, name: str | None = None,
            attention: str = "auto", calibrate: Calibrate = Calibrate(), seed: int = 0):
    """Trace ``model`` on ``example_input`` and compile it to Lava fixed point (:mod:`spikec.compiler`), as
    ``spikec compile`` does; ``.write(out_dir)`` on the result writes the artifact ``spikec compile`` writes.
    Without ``input_range`` the input is taken as an image in [0, 1]; without ``input_exp`` the input exponent
    (at most 8 fractional bits) is calibrated as ``calibrate`` says (:class:`Calibrate`: by default on 64
    random inputs in the input range; ``Calibrate(0)`` keeps 8 bits). ``attention`` (loihi2): where spike
    matmuls run, ``auto``, ``on-chip`` or ``embedded``."""
    from spikec.compiler import compile_graph
    from spikec.frontends.torch import trace_module
    from spikec.simulation import batch_axis

    graph = trace_module(model, example_input, input_layout, name).graph
    shape = list(example_input.shape)
    shape[batch_axis(input_layout)] = 1
    lo_hi = quantize_options(input_range=input_range).input_range
    calibration = None if input_exp is not None else calibration_samples(
        calibrate, tuple(shape), input_layout, lo_hi, seed, graph.name)
    options = quantize_options(input_exp=input_exp, input_range=input_range, allow_saturation=allow_saturation,
                               calibration=calibration)
    return compile_graph(graph, graph.name, tuple(example_input.shape), input_layout, target, options,
                         attention=attention)


def compile_source(source, *, target: str = "intsim", input_exp: int | None = None, input_range=None,
                   allow_saturation: bool = False, seed: int = 0, callback=None,
                   calibrate: Calibrate = Calibrate(), attention: str = "auto"):
    """Load the model a :class:`~spikec.frontends.torch.ModelSource` names, trace it and compile it, as
    ``spikec compile`` does; returns ``(loaded, compiled)``. ``callback(pass, result)`` runs after every pass
    of the compile pipeline (:mod:`spikec.passes.manager`), e.g. to print the IR. Without ``input_exp`` the
    input exponent is calibrated as ``calibrate`` says (:class:`Calibrate`)."""
    from spikec.compiler import compile_graph
    from spikec.frontends.torch import trace_source

    loaded, traced = trace_source(source, seed)
    lo_hi = quantize_options(loaded, input_range=input_range).input_range
    calibration = None if input_exp is not None else calibration_samples(
        calibrate, loaded.input_shape, loaded.input_layout, lo_hi, seed, loaded.name)
    options = quantize_options(loaded, input_exp=input_exp, input_range=input_range,
                               allow_saturation=allow_saturation, calibration=calibration)
    compiled = compile_graph(traced.graph, loaded.name, loaded.input_shape, loaded.input_layout, target, options,
                             callback, attention)
    return loaded, compiled


def folded_graph(source, seed: int = 0) -> tuple[str, Graph]:
    """The model a :class:`~spikec.frontends.torch.ModelSource` names, traced and folded by the float part of the
    compile pipeline (batch norms and scales into the weights, canonicalized), unquantized; returns its name
    and the float graph."""
    from spikec.frontends.torch import trace_source
    from spikec.passes.manager import float_pipeline

    loaded, traced = trace_source(source, seed)
    return loaded.name, float_pipeline().run(traced.graph).graph


def check_resources(compiled, strict: bool) -> None:
    """With ``strict``, refuse a compile whose network exceeds a limit of its target's hardware (the
    violations its resource report lists: a core or a chip of the placement holding more than it can, a bit
    width over Loihi's; needing many chips is none): :class:`VerifyError`, exit code 1, nothing written."""
    resources = getattr(compiled.lowered, "resources", None)
    if strict and resources and resources["violations"]:
        raise VerifyError(f"{len(resources['violations'])} {compiled.target} limit(s) exceeded (--strict); "
                          "nothing written")


def simulate(model, x, y=None, *, backends=None, compare: str | None = None, batch_size: int = 64,
             progress=None, **options):
    """Run ``model`` on the samples ``x`` (labels ``y`` optional) with ``backends`` and compare them.

    ``model`` is an ``nn.Module`` (traced on the first sample of ``x``, whose samples lie along the batch
    axis of ``input_layout``), a :class:`~spikec.frontends.torch.ModelSource`, or a compiled artifact
    (a directory written by ``spikec compile``, or its :func:`~spikec.compiler.load_artifact`). Backends:
    torch, float, intsim for a model (default torch and intsim); intsim, and lava for a ``loihi2`` artifact
    (default intsim; lava with ``compare``). ``compare="intsim"`` also checks lava against intsim bit for
    bit. Returns a :class:`spikec.simulation.SimulationReport`.

    ``x`` may also be a :class:`~spikec.datasets.Dataset` (:func:`spikec.datasets.open_data`), read batch by
    batch, with its labels. ``engine``: a :class:`spikec.engines.Engine` to run the samples on worker processes
    or a Ray cluster (default: this process); the report is the same for any. ``progress(done, total)`` is
    called as samples finish.

    ``options``: ``input_layout`` ("B" or "TB", for a module), ``compiled`` (a :func:`compile` result of the
    module to reuse), ``lava_models`` ("spikec" or "lava"), and :func:`compile`'s ``input_exp``,
    ``input_range``, ``allow_saturation``.
    """
    from spikec.simulation import SimulationPlan

    lava_models = options.pop("lava_models", "spikec")
    engine = options.pop("engine", None)
    plan = SimulationPlan.of(model, x, **options)
    return plan.run(x, y, backends=backends, compare=compare, batch_size=batch_size, lava_models=lava_models,
                    progress=progress, engine=engine)


def report(model, data, out_dir: str, *, progress=None, **options) -> dict:
    """SOPs, firing rates and energy per layer of ``model`` on ``data`` under the energy models of
    ``spikec report``, written with its plots into ``out_dir``; returns the report's JSON
    (:func:`spikec.reporting.report`). ``options``: the fields of :class:`spikec.reporting.ReportOptions`
    (``fmt``, ``backend``, ``limit``, ``sew_as_ac``, ``raster``, ``raster_sample``, ``batch_size``, ``engine``), and
    :func:`compile`'s ``input_exp``, ``input_range``, ``allow_saturation`` for a model compiled here."""
    import dataclasses

    from spikec.reporting import ReportOptions, report as make

    fields = {f.name for f in dataclasses.fields(ReportOptions)}
    chosen = ReportOptions(**{k: v for k, v in options.items() if k in fields})
    return make(model, data, out_dir, chosen, progress, {k: v for k, v in options.items() if k not in fields})


def verify_graph(graph: Graph, *, strict: bool = False, observe: int = 0, data=None, seed: int = 0,
                 data_name: str = "data", fold: bool = True) -> Report:
    """:func:`verify` on a traced graph (the CLI's entry point); with ``fold`` the graph is reparameterized in
    place first."""
    from spikec.diagnostics import Reparameterized
    from spikec.passes.base import AnalysisCache
    from spikec.passes.reparameterize import Reparameterize
    from spikec.passes.spike_driven import SpikeDriven
    from spikec.passes.value_domains import ValueDomains

    analyses = AnalysisCache()
    folds = Reparameterize()(graph, analyses).folds if fold else ()
    reparameterized = tuple(Reparameterized(f.node.op, f.node.module, *(
        (f.node.locs[0].file, f.node.locs[0].line) if f.node.locs and f.node.locs[0].file else (None, None)),
        f.folded) for f in folds)
    findings = SpikeDriven(strict=strict)(graph, analyses)
    domains = ValueDomains()(graph, analyses)  # the domains the check read, from the cache
    if not observe and data is None:
        return Report(graph.name, findings, strict, reparameterized=reparameterized)
    if data is None:
        count, samples, source = observe, _random_samples(graph, observe, seed), "random"
    else:
        count, samples, source = *_data_samples(graph, np.asarray(data), observe), data_name
    return Report(graph.name, findings, strict, _observe(graph, domains, samples), count, source, reparameterized)


def check_observations(report: Report) -> None:
    """Raise when an observed value lies outside its operand's static domain: the static analysis is then
    wrong, which is spikec's bug (exit 3), not the model's."""
    if not report.disagreements:
        return
    o = report.disagreements[0]
    subject = f"{o.op} in {o.module}" if o.module else o.op
    where = f"{o.file}:{o.line}" if o.file else "no source line"
    raise PassError(f"value-domains: {subject} ({where}) saw values in "
                    f"[{o.minimum:g}, {o.maximum:g}] outside its static domain {o.static_domain}; this is a bug in "
                    "spikec's analysis, please report it")


def load_data(path: str) -> np.ndarray:
    """The array ``x`` of a ``.npz`` file (:func:`spikec.datasets.load_npz_data`: finite real numbers)."""
    from spikec.datasets import load_npz_data

    x, _ = load_npz_data(path)
    return x


# ---------------------------------------------------------------- inputs


def _only_input(graph: Graph) -> Node:
    nodes = graph.input_nodes
    if len(nodes) != 1:
        raise InputError(f"observed mode needs a model with one input, this one has {len(nodes)}")
    return nodes[0]


def _batch_axis(node: Node) -> int:
    """The batch axis of the PyTorch tensor the input takes: ``[B, ...]`` or ``[T, B, ...]``."""
    return 0 if node.attrs["layout"] == "B" else 1


def _torch_shape(node: Node, batch: int) -> tuple[int, ...]:
    shape = node.output.type.shape
    if node.attrs["layout"] == "B":
        return (batch, *shape[2:])
    return (shape[0], batch, *shape[2:])


def _data_samples(graph: Graph, data: np.ndarray, observe: int) -> tuple[int, Iterator[np.ndarray]]:
    """How many inputs of ``data`` to run (the first ``observe``, or all), and those inputs one by one."""
    from spikec.simulation import check_data_shape

    node = _only_input(graph)
    axis = _batch_axis(node)
    check_data_shape(data, _torch_shape(node, 1), node.attrs["layout"], graph.name)
    if data.shape[axis] == 0:
        raise InputError("x holds no inputs (its batch axis is empty)")
    count = min(observe, data.shape[axis]) if observe else data.shape[axis]
    return count, (np.take(data, [i], axis=axis).astype(np.float32) for i in range(count))


def _random_samples(graph: Graph, count: int, seed: int) -> Iterator[np.ndarray]:
    """Uniform [0, 1) inputs, as the example input the model was traced with."""
    rng = np.random.default_rng(seed + 1)
    shape = _torch_shape(_only_input(graph), 1)
    return (rng.random(shape, dtype=np.float32) for _ in range(count))


# ---------------------------------------------------------------- observing


class _Seen:
    """Distinct values and counts seen at one operand, merged over runs (numpy arrays)."""

    def __init__(self):
        self.values = np.empty(0, np.float64)
        self.counts = np.empty(0, np.int64)
        self.capped = False
        self.elements = 0
        self.minimum = np.inf
        self.maximum = -np.inf
        self.integral = True

    def add(self, tensor) -> None:
        array = tensor.detach().cpu().numpy().astype(np.float64).ravel()
        self.elements += array.size
        self.minimum = min(self.minimum, float(array.min()))
        self.maximum = max(self.maximum, float(array.max()))
        self.integral = self.integral and bool(np.all(array == np.round(array)))
        if self.capped:
            return
        values, inverse = np.unique(np.concatenate([self.values, array]), return_inverse=True)
        weights = np.concatenate([self.counts, np.ones(array.size, np.int64)])
        self.values, self.counts = values, np.bincount(inverse, weights=weights).astype(np.int64)
        if self.values.size > DISTINCT_CAP:
            self.capped, self.values, self.counts = True, self.values[:0], self.counts[:0]

    def observation(self, node: Node, position: int, static) -> Observation:
        loc = node.locs[0] if node.locs else None
        distinct = DISTINCT_CAP + 1 if self.capped else int(self.values.size)
        histogram = tuple((float(v), int(c)) for v, c in zip(self.values[:HISTOGRAM_CAP], self.counts))
        return Observation(node.op, node.module, loc.file if loc else None, loc.line if loc else None, position,
                           str(static), static.contains(self.minimum, self.maximum, self.integral), self.elements,
                           distinct, self.minimum, self.maximum, histogram, distinct > HISTOGRAM_CAP)


def _observe(graph: Graph, domains, samples: Iterator[np.ndarray]) -> tuple[Observation, ...]:
    from spikec.backends.float.interpreter import run_float
    from spikec.passes.spike_driven import checked_operands

    sites = checked_operands(graph)
    seen = {site: _Seen() for site in sites}
    for x in samples:
        run = run_float(graph, [x], keep_values=True)
        for node, position in sites:
            seen[(node, position)].add(run.values[node.inputs[position].producer])
    return tuple(seen[(n, p)].observation(n, p, domains[n.inputs[p]]) for n, p in sites)
