"""Run data through a model or artifact and make the energy report's JSON (docs/report.md).

:class:`Subject` is what the report measures: a graph (the compiled integer graph on ``intsim``, the traced
float graph on ``float``) with the compile's quantization errors and, for a ``loihi2`` compile, its resource
report. :func:`measure` runs the data through it, :func:`make_report` turns the counts into rows, totals
and model energies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from spikec.compiler import package_versions
from spikec.errors import InputError
from spikec.ir import Graph, print_graph, weight_table
from spikec.reporting.counts import Activity
from spikec.reporting.models import (LOIHI_TIMES, MODEL_NAMES, MODELS, STATE_BYTES, charge, charged_as_mac,
                                     weight_bytes)
from spikec.simulation import check_data_shape

__all__ = ["Subject", "subject_of", "measure", "measure_shard", "make_report", "FORMAT_VERSION", "BACKENDS"]

FORMAT_VERSION = 1
BACKENDS = ("intsim", "float")


@dataclasses.dataclass
class Subject:
    name: str
    backend: str
    graph: Graph
    input_shape: tuple[int, ...]
    layout: str
    quantization_error: list[dict]
    resources: dict | None
    recipe: tuple | None = None     # (model, backend, compile options): what subject_of rebuilds it from


def _errors(layers) -> list[dict]:
    return [{"module": layer["module"], "op": layer["op"], "relative_error": float(layer["relative_error"])}
            for layer in layers]


def subject_of(model, backend: str = "intsim", **compile_options) -> Subject:
    """``model``: an artifact directory, a checkpoint path, a ModelSource, an ``Artifact`` or a
    ``CompiledModel``. ``intsim`` runs the compiled integer graph (compiling a model here with
    ``compile_options``); ``float`` runs the traced float graph of a model, uncompiled."""
    from spikec.compiler import Artifact, CompiledModel, load_artifact
    from spikec.frontends.torch import ModelSource

    if backend not in BACKENDS:
        raise InputError(f"unknown report backend {backend!r}; choose {' or '.join(BACKENDS)}")
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isdir(path):
            return dataclasses.replace(subject_of(load_artifact(path), backend),
                                       recipe=(os.path.abspath(path), backend, {}))
        model = ModelSource(checkpoint=path)
    if isinstance(model, (Artifact, CompiledModel)):
        return dataclasses.replace(_compiled_subject(model, backend), recipe=(model, backend, {}))
    if not isinstance(model, ModelSource):
        raise InputError(f"cannot report on a {type(model).__name__}: pass an artifact directory, a checkpoint, "
                         "a ModelSource or a compiled model")
    recipe = (model, backend, compile_options)
    if backend == "float":
        from spikec.frontends.torch import trace_source

        loaded, traced = trace_source(model)
        return Subject(loaded.name, backend, traced.graph, loaded.input_shape, loaded.input_layout, [], None, recipe)
    from spikec.api import compile_source

    _, compiled = compile_source(model, **compile_options)
    return dataclasses.replace(_compiled_subject(compiled, backend), recipe=recipe)


def _compiled_subject(model, backend: str) -> Subject:
    """The subject of an Artifact or a CompiledModel (only the latter keeps the float graph)."""
    from spikec.compiler import Artifact

    if isinstance(model, Artifact):
        if backend == "float":
            raise InputError(f"{model.name} is a compiled artifact: the float backend needs the model itself "
                             "(report the checkpoint with --backend float)")
        return Subject(model.name, backend, model.graph, model.input_shape, model.input_layout,
                       _errors(model.manifest["quantization"]["layers"]),
                       model.manifest.get("lava", {}).get("resources"))
    if backend == "float":
        return Subject(model.name, backend, model.float_graph, model.input_shape, model.input_layout, [], None)
    resources = getattr(model.lowered, "resources", None)
    return Subject(model.name, backend, model.graph, model.input_shape, model.input_layout,
                   _errors(dataclasses.asdict(layer) for layer in model.quantization.layers), resources)


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _bound(graph: Graph, batch: np.ndarray) -> dict:
    """What each input node produces from ``batch`` (both interpreters bind it so: ``[1, B, ...]`` for
    layout B, the tensor itself for TB)."""
    return {node: batch[None] if node.attrs["layout"] == "B" else batch for node in graph.input_nodes}


def measure(subject: Subject, x, batch_size: int = 64, raster: tuple[str, int] | None = None,
            progress=None, engine=None) -> Activity:
    """Run every sample of ``x`` (an array stacked along the batch axis of the subject's layout, or a
    :class:`~spikec.datasets.Dataset`) and count, on ``engine`` (a :class:`~spikec.engines.Engine`; default:
    this process). ``progress(done, total)`` is called as samples finish."""
    from spikec.datasets import ArrayDataset
    from spikec.engines import Engine, counting, map_shards, shards_of

    if len(subject.graph.input_nodes) != 1:
        raise InputError(f"report needs a model with one input, {subject.name} has {len(subject.graph.input_nodes)}")
    data = x if hasattr(x, "read") else ArrayDataset(np.asarray(x), None, subject.layout)
    check_data_shape(data, subject.input_shape, subject.layout, subject.name)
    if len(data) == 0:
        raise InputError("the data set is empty")
    if raster is not None and raster[1] >= len(data):
        raise InputError(f"--raster-sample {raster[1]} is past the last of the {len(data)} samples")
    engine, advance = engine or Engine(), counting(progress, len(data))
    activity = Activity(subject.graph, raster)
    if engine.in_process:
        tallies = [measure_shard(subject, data, shards_of(len(data), len(data), 1)[0], batch_size, raster, advance)]
    else:
        if subject.recipe is None:
            raise InputError(f"{subject.name} cannot be sent to workers: build the subject with subject_of")
        import uuid

        task = _ReportTask(uuid.uuid4().hex, subject.recipe, data, batch_size, raster)
        tallies = map_shards(task, shards_of(len(data), batch_size, engine.workers), engine,
                             None if advance is None else lambda shard: advance(shard.stop - shard.start))
    for tally in tallies:
        activity.absorb(tally)
    return activity


def measure_shard(subject: Subject, data, shard, batch_size: int, raster: tuple[str, int] | None,
                  progress=None) -> tuple:
    """The counts (:meth:`Activity.tally`) of the samples of ``shard`` of ``data``, batch by batch."""
    activity = Activity(subject.graph, raster, shard.start)
    for start in range(shard.start, shard.stop, batch_size):
        batch = data.read(start, min(start + batch_size, shard.stop))
        activity.add(_run(subject, batch), _bound(subject.graph, batch), batch.shape[data.axis])
        if progress is not None:
            progress(batch.shape[data.axis])
    return activity.tally()


@dataclasses.dataclass(frozen=True)
class _ReportTask:
    """One shard of a report's measurement, in a worker (:func:`spikec.engines.map_shards`): the subject
    rebuilt from its recipe once per worker."""

    token: str
    recipe: tuple
    data: object
    batch_size: int
    raster: tuple[str, int] | None

    def __call__(self, shard) -> tuple:
        from spikec.engines import worker_state

        model, backend, options = self.recipe
        subject = worker_state(self.token, lambda: subject_of(model, backend, **options))
        return measure_shard(subject, self.data, shard, self.batch_size, self.raster)


def _run(subject: Subject, batch: np.ndarray) -> dict:
    if subject.backend == "intsim":
        from spikec.backends.intsim.interpreter import run_intsim

        return run_intsim(subject.graph, [batch], keep_values=True).values
    import torch

    from spikec.backends.float.interpreter import run_float

    run = run_float(subject.graph, [torch.from_numpy(batch)], keep_values=True)
    return {node: _numpy(value) for node, value in run.values.items()}


def _location(node) -> dict:
    loc = node.locs[0] if node.locs else None
    return {"module": node.module, "op": node.op, "file": loc.file if loc else None, "line": loc.line if loc else None}


def _layer_rows(activity: Activity, sew_as_ac: bool) -> list[dict]:
    rows, n = [], activity.samples
    for index, site in enumerate(activity.sites):
        T = len(site.events)
        sops = float(site.events.sum()) / n
        per_step = [float(e) / n / site.flops if site.flops else 0.0 for e in site.events]
        row = {"index": index, **_location(site.node), "kind": site.kind, "domain": site.domain, "T": T,
               "flops": site.flops, "sops": sops, "input_rate": sops / (T * site.flops) if site.flops else 0.0,
               "input_rate_per_step": per_step, "host": bool(site.node.attrs.get("host", False))}
        row["macs"] = T * site.flops if charged_as_mac(row, sew_as_ac) else 0
        row["energy_pj"] = charge(row, sew_as_ac)
        rows.append(row)
    return rows


def _neuron_rows(activity: Activity) -> list[dict]:
    rows, n = [], activity.samples
    for group in activity.neuron_sites:
        T = len(group.spikes)
        row = {**_location(group.node), "kind": "neuron", "neurons": group.neurons, "T": T,
               "spikes": float(group.spikes.sum()) / n,
               "rate": float(group.spikes.sum()) / (n * T * group.neurons),
               "rate_per_step": [float(s) / (n * group.neurons) for s in group.spikes]}
        row["energy_pj"] = charge(row)
        rows.append(row)
    return rows


def _memory_bytes(layers: list[dict], neurons: list[dict], sew_as_ac: bool) -> float:
    """SRAM traffic the int8-45nm model charges: weight reads and neuron state, per sample."""
    weights = sum((row["macs"] if charged_as_mac(row, sew_as_ac) else row["sops"]) * weight_bytes(row)
                  for row in layers if row["kind"] == "weight")
    return float(weights + sum(STATE_BYTES * row["T"] * row["neurons"] for row in neurons))


def _loihi_runtime(activity: Activity, resources: dict | None) -> dict | None:
    """A lower bound on the time of one step on Loihi: neuro cores work in parallel, so a step takes at
    least the busiest core's synaptic ops and neuron updates (each neuron group spread evenly over its
    cores in the resource report), at Loihi 1's published op times."""
    if not resources:
        return None
    cores = {}
    for group in resources["neuron_groups"]:
        cores[group["module"]] = cores.get(group["module"], 0) + group["cores"]
    events = {id(site.node): site.events / activity.samples for site in activity.sites}
    bounds = []
    for group in activity.neuron_sites:
        if group.node.module not in cores:
            continue
        synops = sum(events[id(w)] for w in group.feeding) if group.feeding else np.zeros(1)
        count = cores[group.node.module]
        ns = (float(np.max(synops)) * LOIHI_TIMES["synop_ns"] + group.neurons * LOIHI_TIMES["neuron_update_ns"]) / count
        bounds.append((ns, group.node.module))
    if not bounds:
        return None
    ns, module = max(bounds)
    T = max(len(g.spikes) for g in activity.neuron_sites)
    return {"step_ns": ns, "sample_us": ns * T / 1000, "busiest_group": module,
            "neuro_cores": resources["totals"]["neuro_cores"],
            "method": "max over neuron groups of (peak synaptic events per step x T_SYNOP + neurons x T_UPDATE) / "
                      "the group's cores; Loihi 1 op times (Davies et al. 2018), no routing or barrier time"}


def _graph_hash(graph: Graph) -> str:
    digest = hashlib.sha256(print_graph(graph).encode())
    for name, array in sorted(weight_table(graph).items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def make_report(subject: Subject, activity: Activity, data_name: str, sew_as_ac: bool = False) -> dict:
    """The report as JSON (spikec/schemas/report.schema.json)."""
    layers = _layer_rows(activity, sew_as_ac)
    neurons = _neuron_rows(activity)
    energy = {m: sum(r["energy_pj"][m] for r in layers + neurons) for m in MODEL_NAMES}
    T = max((r["T"] for r in layers + neurons), default=1)
    totals = {"energy_mj": {m: e * 1e-9 for m, e in energy.items()},
              "sops": sum(r["sops"] for r in layers if not r["macs"]),
              "macs": sum(r["macs"] for r in layers),
              "flops": sum(r["flops"] for r in layers),
              "synaptic_events": sum(r["sops"] for r in layers),
              "spikes": sum(r["spikes"] for r in neurons),
              "memory_bytes": _memory_bytes(layers, neurons, sew_as_ac)}
    baseline = energy["ann-int8"]
    return {
        "format": "spikec.report", "version": FORMAT_VERSION, "model": subject.name, "backend": subject.backend,
        "layers": layers, "neurons": neurons, "totals": totals,
        "ratio_to_baseline": {m: (e / baseline if baseline else None) for m, e in energy.items()},
        "models": {name: model.to_json() for name, model in MODELS.items()},
        "loihi_runtime": _loihi_runtime(activity, subject.resources),
        "quantization_error": subject.quantization_error,
        "provenance": {"versions": package_versions(), "graph_sha256": _graph_hash(subject.graph), "data": data_name,
                       "samples": activity.samples, "T": T, "backend": subject.backend, "sew_as_ac": sew_as_ac},
    }
