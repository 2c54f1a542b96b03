"""Run a quantized graph on Lava (``Loihi2SimCfg(select_tag="fixed_pt")``) for a batch of samples.

1. The host encodes the input with intsim's rules (``quantize``, ``repeat_time``, ...): each source's data.
2. Samples stream back to back, ``T`` steps each; sample ``s``, step ``t`` leaves a source (delay ``δ``) at step
   ``s T + t + 1 + δ``. The run lasts ``B T + D`` steps, ``D`` the deepest recorded layer.
3. The network is built (:mod:`.build`) and run in a forked child (:mod:`.child`: timeout, ``stop()`` always,
   child processes and shared memory removed). Sinks write each step into memmaps on the host.
4. Each probe is read back shifted by its depth: Lava's step ``s T + t + 1 + d`` is intsim's step ``t`` of sample
   ``s``. Integrators are read at the last step of each sample.
5. The host runs the readout (the classifier and what follows) with intsim's rules on those values.

``run_lava`` builds the network from the process graph (:mod:`.build`); ``run_lava_net`` takes the ``build``
function of a generated ``lava_net.py`` and the artifact beside it, and runs it the same way.

``fast=True`` runs Lava's built-in Conv, Dense, Sparse, DelayDense and DelaySparse processes with spikec's
vectorised models (:mod:`.fast_models`, proven bit-identical by the tests); ``fast=False`` uses Lava's own.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from spikec.backends.intsim.fixed_point import wrap_int32
from spikec.backends.intsim.interpreter import INT_RULES, _bind_input
from spikec.backends.lava.artifact import process_graph_from_manifest
from spikec.backends.lava.build import RunInputs, build_network
from spikec.backends.lava.child import LavaRunTimeout, run_isolated
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.netlist import ProcessGraph
from spikec.backends.lava.regions import Regions, host_regions
from spikec.compiler import load_artifact
from spikec.errors import InputError
from spikec.ir import Graph, Value
from spikec.ir.interpret import check_input_shape
from spikec.ir.printer import weight_table

__all__ = ["LavaRun", "run_lava", "run_lava_net", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 600.0


@dataclasses.dataclass
class LavaRun:
    """One run: the readout outputs (as intsim's ``Run.outputs``), every probe aligned to intsim's time
    (``values[node index]``: ``[T, B, ...]``, integrators ``[1, B, ...]``), and what it cost: ``build_seconds``
    to construct the processes, compile them and start Lava's runtime, ``run_seconds`` for the steps."""

    outputs: list[np.ndarray]
    values: dict[int, np.ndarray]
    steps: int
    processes: int
    build_seconds: float
    run_seconds: float

    @property
    def seconds(self) -> float:
        return self.build_seconds + self.run_seconds


def _encode(graph: Graph, regions: Regions, inputs: Sequence[Any]) -> dict[int, np.ndarray]:
    """The host's input encoding (the ``encoding`` region, the one lowering made sources of), by node index."""
    encoding = regions.encoding
    input_nodes = graph.input_nodes
    if len(inputs) != len(input_nodes):
        raise InputError(f"the graph takes {len(input_nodes)} input(s), got {len(inputs)}")
    env: dict[Value, np.ndarray] = {}
    for node in graph.nodes:
        if node not in encoding:
            continue
        if node.op == "input":
            data = inputs[input_nodes.index(node)]
            check_input_shape(node, tuple(np.shape(data)))
            env[node.output] = _bind_input(node, data)
        else:
            env[node.output] = INT_RULES[node.op](node, [env[v] for v in node.inputs])
    return {i: env[n.output] for i, n in enumerate(graph.nodes) if n in encoding}


def _source_data(value: np.ndarray, delay: int, steps: int) -> np.ndarray:
    """``[T, B, *S]`` as a RingBuffer's ``[*S, steps]``: column ``k`` is sent at step ``k + 1``."""
    timesteps, batch = value.shape[:2]
    data = np.zeros((*value.shape[2:], steps), dtype=np.int32)
    stream = value.reshape(timesteps, batch, -1).transpose(1, 0, 2).reshape(batch * timesteps, -1)
    stream = stream[: max(0, steps - delay)]
    data.reshape(-1, steps)[:, delay:delay + len(stream)] = stream.T
    return data


def _aligned(rows: np.ndarray, depth: int, timesteps: int, batch: int, kind: str) -> np.ndarray:
    if kind == "integral":
        picked = rows[depth + timesteps - 1: depth + batch * timesteps: timesteps]
        return picked.astype(np.int64)[None]
    window = rows[depth: depth + batch * timesteps].astype(np.int64)
    return window.reshape(batch, timesteps, *rows.shape[1:]).swapaxes(0, 1)


def _fast_model_map(fast: bool) -> dict:
    if not fast:
        return {}
    from spikec.backends.lava.fast_models import FAST_MODELS

    return dict(FAST_MODELS)


Builder = Callable[[RunInputs], Mapping[str, Any]]
"""Constructs and connects a network's processes for one run, returning them by name."""


def run_lava(graph: Graph, inputs: Sequence[Any], process_graph: ProcessGraph | None = None, *,
             weights: Mapping[str, np.ndarray] | None = None, fast: bool = True,
             timeout: float = DEFAULT_TIMEOUT_S, workdir: str | None = None) -> LavaRun:
    """Run ``graph`` (quantized) on Lava for the batch ``inputs`` (one float array per input node, as intsim)."""
    regions = host_regions(graph)
    pg = process_graph or lower(graph)
    weights = weight_table(graph) if weights is None else weights
    return _run(graph, regions, pg, lambda run: build_network(pg, weights, run), inputs, fast=fast, timeout=timeout,
                workdir=workdir)


def run_lava_net(build: Callable[..., Mapping[str, Any]], artifact_dir: str, inputs: Sequence[Any], *,
                 timeout: float = DEFAULT_TIMEOUT_S) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Run the network a generated ``lava_net.py`` builds, ``build(W, source_data, sink_paths, steps)``, for the
    artifact in ``artifact_dir`` (its ``manifest.json``, ``model.ir`` and ``weights.npz``).

    The module keeps only the network (``build``); the host's encoding, the streaming, the isolation and timeout of
    the run, the alignment of what the sinks recorded and the readout are this runtime's, as for ``run_lava``,
    so there is one implementation of each. Lava's own models run every process (``fast=False``): the module
    shows the network on Lava as Lava ships it.

    Returns the logits, each output divided by its scale in the manifest (what ``spikec simulate --backend
    lava`` reports), and every probe's values aligned to the model's time steps, by probe name.
    """
    compiled = load_artifact(artifact_dir)
    if "lava" not in compiled.manifest:
        raise InputError(f"{artifact_dir} was not compiled with --target loihi2: it has no Lava process graph")
    with np.load(os.path.join(artifact_dir, "weights.npz"), allow_pickle=False) as archive:
        weights = {k: archive[k] for k in archive.files}
    pg = process_graph_from_manifest(compiled.name, compiled.manifest["lava"], weights)
    result = _run(compiled.graph, host_regions(compiled.graph), pg,
                  lambda run: build(weights, run.source_data, run.sink_paths, run.steps), inputs, fast=False,
                  timeout=timeout, workdir=None)
    logits = [output / scale for output, scale in zip(result.outputs, compiled.output_scales, strict=True)]
    return logits, {probe.name: result.values[probe.node] for probe in pg.probes}


def _run(graph: Graph, regions: Regions, pg: ProcessGraph, build: Builder, inputs: Sequence[Any], *, fast: bool,
         timeout: float, workdir: str | None) -> LavaRun:
    """Encode ``inputs``, run the network ``build`` makes in a forked child, read the sinks back, aligned, and
    run the readout."""
    encoded = _encode(graph, regions, inputs)
    batch = graph.input_nodes[0].output.type.batch if not encoded else next(iter(encoded.values())).shape[1]
    steps = batch * pg.timesteps + pg.max_depth
    tmp = tempfile.mkdtemp(prefix="spikec-lava-", dir=workdir or ("/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        sink_paths = {probe.sink: os.path.join(tmp, f"{probe.sink}.bin") for probe in pg.probes}
        source_data = {s.name: _source_data(encoded[s.node], s.delay, steps) for s in pg.sources}
        run = RunInputs(source_data, sink_paths, steps)
        model_map = _fast_model_map(fast)

        def job():
            from lava.magma.core.run_conditions import RunSteps
            from lava.magma.core.run_configs import Loihi2SimCfg

            start = time.perf_counter()
            procs = build(run)
            first = next(iter(procs.values()))
            config = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=model_map)
            try:
                first.create_runtime(run_cfg=config)      # Lava's compiler, and one OS process per process
                started = time.perf_counter()
                first.run(condition=RunSteps(num_steps=steps))
                finished = time.perf_counter()
            finally:
                first.stop()
            return {"build": started - start, "run": finished - started}

        stats = _run_retrying_a_stall(job, timeout, pg, steps, sink_paths, tmp)
        values = {}
        for probe in pg.probes:
            rows = np.memmap(sink_paths[probe.sink], dtype=np.dtype(probe.dtype), mode="r",
                             shape=(steps, *probe.shape))
            value = _aligned(np.array(rows), probe.depth, pg.timesteps, batch, probe.kind)
            if probe.bias is not None:
                value = wrap_int32(value + pg.arrays[probe.bias])
            values[probe.node] = value
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    outputs = _readout(graph, pg, encoded, values)
    return LavaRun(outputs, values, steps, len(pg.processes), stats["build"], stats["run"])


def _run_retrying_a_stall(job, timeout: float, pg: ProcessGraph, steps: int, sink_paths: dict, tmp: str) -> dict:
    """``job`` in a forked child (:func:`.child.run_isolated`), into fresh zeroed sinks. Lava's multiprocess
    runtime now and then stalls and never finishes a run that otherwise takes seconds (seen under heavy load, on
    two cores); a run past its timeout is therefore stopped and run once more, with a warning. A second stall is
    the error."""
    what = f"Lava run of {pg.name} ({len(pg.processes)} processes, {steps} steps)"
    for attempt in (1, 2):
        for probe in pg.probes:
            np.memmap(sink_paths[probe.sink], dtype=np.dtype(probe.dtype), mode="w+",
                      shape=(steps, *probe.shape)).flush()
        try:
            return run_isolated(job, timeout, what, leftovers=(tmp,))
        except LavaRunTimeout as exc:
            if attempt == 2:
                raise LavaRunTimeout(f"{exc}, twice") from None
            warnings.warn(f"{exc}; running it once more", RuntimeWarning, stacklevel=2)


def _readout(graph: Graph, pg: ProcessGraph, encoded: dict[int, np.ndarray],
             values: dict[int, np.ndarray]) -> list[np.ndarray]:
    """The host's part after the run, with intsim's rules on the read-back values."""
    env: dict[int, np.ndarray] = {**encoded, **values}
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    host = set(pg.host_nodes)
    for index, node in enumerate(graph.nodes):
        if index not in host:
            continue
        args = [env[position[id(v.producer)]] for v in node.inputs]
        if node.op == "output":
            return [a if keep else a[0] for a, keep in zip(args, node.attrs["layouts"])]
        env[index] = INT_RULES[node.op](node, args)
    return []

