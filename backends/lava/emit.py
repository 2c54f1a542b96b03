"""Emitting ``lava_net.py``: a readable, standalone Python module that builds a model's Lava processes from
``weights.npz``, runs samples through them and returns every neuron group's spike trains and the logits.

The module is generated from the :class:`~.netlist.ProcessGraph` (one line per process, one per connection) and
the IR's host parts (the input encoding and the readout, as numpy code). It needs Lava, numpy, scipy, and
spikec's own fixed_pt processes (``spikec.backends.lava.processes``) for the ops Lava has no process for. The
weight layout helpers are copied from :mod:`.helpers`, so the runtime builder and the module agree.
Deterministic: the same process graph always gives the same bytes.
"""

from __future__ import annotations

import inspect
from typing import Any

from spikec import __version__
from spikec.backends.lava import helpers
from spikec.backends.lava.lowering import host_regions
from spikec.backends.lava.netlist import KINDS, ProcessGraph
from spikec.errors import LoweringError
from spikec.ir import Graph, Node
from spikec.ir.printer import weight_names

__all__ = ["emit_lava_net"]

_NO_NAME_KINDS = ("GradedVec", "ProdNeuron", "RingBuffer")


def _literal(value: Any) -> str:
    if isinstance(value, list):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return _reference(value)
    if isinstance(value, float):
        return repr(float(value))
    return repr(value)


def _reference(ref: dict) -> str:
    kind = ref["$"]
    if kind in ("weight", "array"):
        return f"W[{ref['key']!r}]"
    if kind == "conv_weight":
        return f"conv_weight(W[{ref['key']!r}])"
    if kind == "token_dense":
        return f"token_dense(W[{ref['key']!r}], {ref['pre']}, {ref['post']})"
    if kind == "identity":
        return f"identity({ref['size']})"
    if kind == "sign_mode":
        return f"SignMode.{ref['name']}"
    if kind == "source_data":
        return f"source_data[{ref['name']!r}]"
    if kind == "sink_path":
        return f"sink_paths[{ref['name']!r}]"
    if kind == "steps":
        return "steps"
    raise LoweringError(f"lava: cannot emit argument reference {kind!r}")


def _process_line(spec) -> str:
    args = dict(spec.args)
    if spec.kind == "DelaySparse":
        args["delays"] = {"$": "uniform_delays", "value": args["delays"]}
    parts = [] if spec.kind in _NO_NAME_KINDS else [f"name={spec.name!r}"]
    for key, value in args.items():
        if isinstance(value, dict) and value.get("$") == "uniform_delays":
            parts.append(f"delays=uniform_delays({_reference(args['weights'])}, {value['value']})")
        else:
            parts.append(f"{key}={_literal(value)}")
    line = f"    p[{spec.name!r}] = {KINDS[spec.kind][1]}({', '.join(parts)})"
    if spec.kind in _NO_NAME_KINDS:
        line += f"\n    p[{spec.name!r}].name = {spec.name!r}"
    return line


def _connection_line(c) -> str:
    port = f"p[{c.src!r}].{c.src_port}"
    for kind, arg in c.views:
        port += f".reshape({_literal(list(arg))})" if kind == "reshape" else f".transpose({list(arg)!r})"
    return f"    {port}.connect(p[{c.dst!r}].{c.dst_port})"


# ---------------------------------------------------------------- host parts as numpy code


def _host_expr(node: Node, args: list[str], names: dict) -> str:
    a = node.attrs
    if node.op == "input":
        return "np.asarray(x, dtype=np.float32)" + ("[None]" if a["layout"] == "B" else "")
    if node.op == "quantize":
        return (f"np.clip(np.floor({args[0]}.astype(np.float64) * {2.0 ** a['exp']!r} + 0.5), {a['lo']}, "
                f"{a['hi']}).astype(np.int64)")
    if node.op == "repeat_time":
        return f"np.repeat({args[0]}, {a['T']}, axis=0)"
    if node.op == "to_time_major":
        return f"np.swapaxes({args[0]}[0], 0, 1)"
    if node.op == "reshape":
        return f"{args[0]}.reshape({args[0]}.shape[0], {args[0]}.shape[1], *{tuple(a['shape'])!r})"
    if node.op == "transpose":
        return f"np.transpose({args[0]}, {tuple(a['perm'])!r})"
    if node.op == "sum":
        drop = tuple(ax for ax in a["axes"] if ax != 0 and not a["keepdim"])
        expr = f"{args[0]}.sum(axis={tuple(a['axes'])!r}, keepdims=True)"
        if drop:
            expr = f"np.squeeze({expr}, axis={drop!r})"
        return expr if node.output.type.dtype == "i64" else f"wrap_int32({expr})"
    if node.op == "qdense" and a["host"]:
        weight = f"W[{names[(id(node), 'weight')]!r}].astype(np.int64)"
        expr = f"shift_floor(np.moveaxis({args[0]}, {a['axis']}, -1) @ {weight}.T, {a['weight_exp']})"
        if a["bias"] is not None:
            expr = f"({expr} + W[{names[(id(node), 'bias')]!r}].astype(np.int64))"
        return f"np.moveaxis({expr}, -1, {a['axis']})"
    raise LoweringError(f"lava: {node.describe()}: lava_net.py cannot compute {node.op} on the host")


def _host_code(graph: Graph, indices: list[int], names: dict, inputs: dict[int, str]) -> list[str]:
    lines = []
    for index in indices:
        node = graph.nodes[index]
        if node.op == "output":
            outs = [(f"v{graph.nodes.index(v.producer)}" if keep else f"v{graph.nodes.index(v.producer)}[0]")
                    for v, keep in zip(node.inputs, node.attrs["layouts"])]
            lines.append(f"    return [{', '.join(outs)}]")
            continue
        args = [inputs.get(graph.nodes.index(v.producer), f"v{graph.nodes.index(v.producer)}") for v in node.inputs]
        lines.append(f"    v{index} = {_host_expr(node, args, names)}  # {node.op} {node.module}".rstrip())
    return lines


_HOST_HELPERS = '''
def wrap_int32(x):
    """Two's-complement wrap into int32 (Lava computes in int32 arrays)."""
    return ((np.asarray(x, dtype=np.int64) + 2**31) & 0xFFFFFFFF) - 2**31


def shift_floor(x, exp):
    """x * 2**exp with a floor shift (Lava's weight_exp)."""
    return x << exp if exp >= 0 else x >> -exp
'''

_RUN = '''
def aligned(rows, probe, samples):
    """A sink's rows as the model's time: step s*T + t + 1 + depth of the run is step t of sample s."""
    depth = probe["depth"]
    if probe["kind"] == "integral":
        return rows[depth + T - 1: depth + samples * T: T].astype(np.int64)[None]
    window = rows[depth: depth + samples * T].astype(np.int64)
    return window.reshape(samples, T, *rows.shape[1:]).swapaxes(0, 1)


def source_stream(value, delay, steps):
    """An encoded [T, B, ...] value as a RingBuffer's [..., steps]: samples back to back, `delay` steps late."""
    data = np.zeros((*value.shape[2:], steps), dtype=np.int32)
    stream = value.reshape(value.shape[0], value.shape[1], -1).transpose(1, 0, 2).reshape(-1, data[..., 0].size)
    stream = stream[: max(0, steps - delay)]
    data.reshape(-1, steps)[:, delay: delay + len(stream)] = stream.T
    return data


def run(x, weights=None, workdir=None):
    """Run the samples `x` ([B, ...] as the model takes them) on Loihi2SimCfg(select_tag="fixed_pt").

    Returns (logits, spikes): the readout's outputs, and {probe name: [T, B, ...] int64} for every neuron group
    (and the values the readout reads), aligned to the model's time steps.
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    W = load_weights() if weights is None else weights
    encoded = encode(x)
    samples = len(x)
    steps = samples * T + MAX_DEPTH
    tmp = tempfile.mkdtemp(prefix="lava_net-", dir=workdir)
    try:
        sink_paths = {}
        for probe in PROBES:
            sink_paths[probe["sink"]] = os.path.join(tmp, probe["sink"] + ".bin")
            np.memmap(sink_paths[probe["sink"]], dtype=probe["dtype"], mode="w+",
                      shape=(steps, *probe["shape"])).flush()
        source_data = {name: source_stream(encoded[s["node"]], s["delay"], steps) for name, s in SOURCES.items()}
        p = build(W, source_data, sink_paths, steps)
        first = next(iter(p.values()))
        try:
            first.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        finally:
            first.stop()
        values = {}
        for probe in PROBES:
            rows = np.array(np.memmap(sink_paths[probe["sink"]], dtype=probe["dtype"], mode="r",
                                      shape=(steps, *probe["shape"])))
            value = aligned(rows, probe, samples)
            values[probe["name"]] = value if probe["bias"] is None else wrap_int32(value + W[probe["bias"]])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return readout(encoded, {probe["node"]: values[probe["name"]] for probe in PROBES}, W), values


def load_weights(path=None):
    """The arrays of weights.npz (beside this file unless `path` is given)."""
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights.npz")
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help=".npy file of samples [B, ...] (float, as the model takes them)")
    parser.add_argument("-o", "--output", default="lava_out.npz", help="where to save logits and spike trains")
    args = parser.parse_args(argv)
    logits, spikes = run(np.load(args.input))
    np.savez(args.output, **{"logits": logits[0]}, **{f"spikes/{k}": v for k, v in spikes.items()})
    print(f"{len(logits[0])} samples: predictions {np.asarray(logits[0]).argmax(axis=-1).tolist()}")


if __name__ == "__main__":
    main()
'''


def emit_lava_net(pg: ProcessGraph, graph: Graph) -> str:
    """The source text of ``lava_net.py`` for ``pg``, lowered from ``graph``."""
    names = weight_names(graph)
    kinds = sorted({spec.kind for spec in pg.processes})
    lava_imports: dict[str, list[str]] = {}
    for kind in kinds:
        module, cls = KINDS[kind]
        lava_imports.setdefault(module, []).append(cls)
    import_lines = [f"from {module} import {', '.join(sorted(classes))}" for module, classes in sorted(
        lava_imports.items()) if module.startswith("lava.")]
    import_lines.append("from lava.utils.weightutils import SignMode")
    spikec_lines = [f"from {module} import {', '.join(sorted(classes))}" for module, classes in sorted(
        lava_imports.items()) if module.startswith("spikec.")]
    sources = {s.name: {"node": s.node, "delay": s.delay, "shape": list(s.shape)} for s in pg.sources}
    probes = [{"name": p.name, "node": p.node, "module": p.module, "sink": p.sink, "kind": p.kind,
               "depth": p.depth, "shape": list(p.shape), "dtype": p.dtype, "bias": p.bias} for p in pg.probes]

    encoding_ids, _, _ = host_regions(graph)
    encoding = [i for i, n in enumerate(graph.nodes) if id(n) in encoding_ids]
    encode_lines = _host_code(graph, encoding, names, {})
    returned = ", ".join(f"{i}: v{i}" for i in encoding)
    probe_inputs = {p.node: f"values[{p.node}]" for p in pg.probes}
    readout_lines = _host_code(graph, pg.host_nodes, names, {**probe_inputs,
                                                             **{i: f"encoded[{i}]" for i in encoding}})

    out = [
        f'"""{pg.name}: the Lava process graph spikec compiled for Loihi 2, built from weights.npz.',
        "",
        f"Generated by spikec {__version__} (`spikec compile --target loihi2`); recompile rather than edit.",
        f"{len(pg.processes)} processes, {len(pg.connections)} connections, T = {pg.timesteps}, deepest layer "
        f"{pg.max_depth} steps.",
        "",
        "    python lava_net.py SAMPLES.npy [-o lava_out.npz]",
        "",
        "runs the samples on Loihi2SimCfg(select_tag=\"fixed_pt\") back to back (T steps each, every neuron group",
        "reset when its wave arrives) and saves the logits and every neuron group's spike trains, aligned to the",
        "model's time steps. Built-in Lava processes where Lava has them; spikec's fixed_pt processes",
        "(spikec.backends.lava.processes) for spike matmul, pooling, sums, gains and the readout integrator.",
        '"""',
        "",
        "import argparse",
        "import os",
        "import shutil",
        "import tempfile",
        "",
        "import numpy as np",
        "import scipy.sparse",
        *import_lines,
        "",
        *spikec_lines,
        "",
        f"T = {pg.timesteps}",
        f"MAX_DEPTH = {pg.max_depth}",
        f"SOURCES = {_pretty(sources)}",
        f"PROBES = {_pretty(probes)}",
        "",
        "",
        *[inspect.getsource(f).rstrip() + "\n\n" for f in (helpers.conv_weight, helpers.token_dense, helpers.identity,
                                                         helpers.uniform_delays)],
        _HOST_HELPERS.strip() + "\n\n",
        "def encode(x):",
        '    """The host\'s input encoding of the samples `x`: {node index: [T, B, ...] int64}."""',
        *encode_lines,
        f"    return {{{returned}}}",
        "",
        "",
        "def readout(encoded, values, W):",
        '    """The host\'s readout after the run (the classifier), on the read-back values."""',
        *(readout_lines or ["    return []"]),
        "",
        "",
        "def build(W, source_data, sink_paths, steps):",
        '    """Every process of the network, by name, connected. Several OutPorts into one InPort are summed."""',
        "    p = {}",
    ]
    module = None
    for spec in pg.processes:
        if spec.module != module or spec.role in ("source", "sink"):
            module = spec.module
            node = "" if spec.node is None else f" (node {spec.node})"
            out.append(f"    # {spec.role}: {spec.module or '-'}{node}")
        out.append(_process_line(spec))
    out.append("")
    out.extend(_connection_line(c) for c in pg.connections)
    out.append("    return p")
    out.append("")
    out.append(_RUN.rstrip())
    return "\n".join(out) + "\n"


def _pretty(value) -> str:
    """A Python literal, one entry per line for lists and dicts of entries."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        body = "".join(f"    {k!r}: {v!r},\n" for k, v in value.items())
        return "{\n" + body + "}"
    if isinstance(value, list) and value:
        return "[\n" + "".join(f"    {v!r},\n" for v in value) + "]"
    return repr(value)

