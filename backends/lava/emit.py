"""Emitting ``lava_net.py``: a readable Python module that builds a model's Lava processes from ``weights.npz``,
runs samples through them and returns every neuron group's spike trains and the logits.

The module holds the network: ``build``, generated from the :class:`~.netlist.ProcessGraph` with one line per
process and one per connection; the weight layout helpers it calls it imports from :mod:`.helpers`, as the
runtime builder does, so both build the same processes. Everything around the network (the host's input
encoding and readout, the streaming of samples, the run in a forked child under a timeout, the alignment of
what the sinks recorded) it imports from :func:`spikec.backends.lava.runtime.run_lava_net`, so those rules
have one implementation. It needs Lava, numpy, scipy and spikec installed, and the artifact beside it.

Every string that comes from the user's model (module paths, the model's name, weight keys) enters the text
through ``ascii()``: a Python string literal, escaped down to ASCII, so that no name can break out of a
literal, a comment or the docstring, and the file's bytes do not depend on the locale's encoding.
Deterministic: the same process graph always gives the same bytes.
"""

from __future__ import annotations

from typing import Any

from spikec import __version__
from spikec.backends.lava.netlist import KINDS, ProcessGraph
from spikec.errors import LoweringError

__all__ = ["emit_lava_net", "spike_keys"]

_NO_NAME_KINDS = ("GradedVec", "GradedReluVec", "ProdNeuron", "RingBuffer")


def _literal(value: Any) -> str:
    if isinstance(value, list):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return _reference(value)
    if isinstance(value, float):
        return repr(float(value))
    return ascii(value)


def _reference(ref: dict) -> str:
    kind = ref["$"]
    if kind in ("weight", "array"):
        return f"W[{ref['key']!a}]"
    if kind == "layout":
        args = [f"W[{ref['key']!a}]"] if "key" in ref else []
        args += [_literal(a) for a in ref["args"]]
        return f"{ref['fn']}({', '.join(args)})"
    if kind == "sign_mode":
        return f"SignMode.{ref['name']}"
    if kind == "source_data":
        return f"source_data[{ref['name']!a}]"
    if kind == "sink_path":
        return f"sink_paths[{ref['name']!a}]"
    if kind == "steps":
        return "steps"
    raise LoweringError(f"lava: cannot emit argument reference {kind!r}")


def _process_line(spec) -> str:
    args = dict(spec.args)
    if spec.kind == "DelaySparse":
        args["delays"] = {"$": "uniform_delays", "value": args["delays"]}
    parts = [] if spec.kind in _NO_NAME_KINDS else [f"name={spec.name!a}"]
    for key, value in args.items():
        if isinstance(value, dict) and value.get("$") == "uniform_delays":
            parts.append(f"delays=uniform_delays({_reference(args['weights'])}, {value['value']})")
        else:
            parts.append(f"{key}={_literal(value)}")
    line = f"    p[{spec.name!a}] = {KINDS[spec.kind][1]}({', '.join(parts)})"
    if spec.kind in _NO_NAME_KINDS:
        line += f"\n    p[{spec.name!a}].name = {spec.name!a}"
    return line


def _connection_line(c) -> str:
    port = f"p[{c.src!a}].{c.src_port}"
    for kind, arg in c.views:
        port += f".reshape({_literal(list(arg))})" if kind == "reshape" else f".transpose({list(arg)!a})"
    return f"    {port}.connect(p[{c.dst!a}].{c.dst_port})"


def spike_keys(pg: ProcessGraph) -> dict[str, str]:
    """The key of every neuron group's spike trains in ``lava_net.py``'s results -> its probe's name.

    A key is the neuron group's module path (the probe's name when it has none). Module paths come from the
    user's code and need not be unique (a module called twice gives two neuron groups): the second and later
    groups of a path, in probe order, are ``path#2``, ``path#3``, ..., skipping any key already taken, so every
    key is unique and the same for the same process graph.
    """
    keys: dict[str, str] = {}
    for probe in pg.probes:
        if probe.kind != "spikes":
            continue
        base = probe.module or probe.name
        key, count = base, 1
        while key in keys:
            count += 1
            key = f"{base}#{count}"
        keys[key] = probe.name
    return keys


_RUN = '''
def run(x, timeout=DEFAULT_TIMEOUT_S):
    """Run the samples `x` ([B, ...] float, as the model takes them) back to back on Lava's fixed_pt models, in
    a forked child that is stopped after `timeout` seconds.

    Returns (logits, spikes): the float logits of each model output (the integer readout divided by its scale,
    as `spikec simulate --backend lava` reports them), and {key of SPIKES: [T, B, ...] int64} for every neuron
    group, aligned to the model's time steps. spikec's runtime does the host's encoding and readout with
    intsim's rules, and the streaming, isolation and read-back of the run, from the artifact beside this file.
    """
    logits, probes = run_lava_net(build, os.path.dirname(os.path.abspath(__file__)), [x], timeout=timeout)
    return logits, {key: probes[probe] for key, probe in SPIKES.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help=".npy file of samples [B, ...] (float, as the model takes them)")
    parser.add_argument("-o", "--output", default="lava_out.npz", help="where to save logits and spike trains")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="stop the Lava run after this many seconds (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        x = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read {args.input}: {exc}")
    try:
        logits, spikes = run(x, timeout=args.timeout)
    except SpikecError as exc:
        parser.exit(exc.exit_code, f"lava_net.py: error: {exc}\\n")
    np.savez(args.output, logits=logits[0], **{f"spikes/{key}": value for key, value in spikes.items()})
    print(f"{len(logits[0])} samples: predictions {logits[0].argmax(axis=-1).tolist()}")


if __name__ == "__main__":
    main()
'''


def emit_lava_net(pg: ProcessGraph) -> str:
    """The source text of ``lava_net.py`` for ``pg``.

    Module paths and the model's name only ever enter the text as ``ascii()`` string literals, in code and in
    comments alike (see the module docstring).
    """
    lava_imports: dict[str, list[str]] = {}
    for kind in sorted({spec.kind for spec in pg.processes}):
        module, cls = KINDS[kind]
        lava_imports.setdefault(module, []).append(cls)
    import_lines = [f"from {module} import {', '.join(sorted(classes))}" for module, classes in sorted(
        lava_imports.items()) if module.startswith("lava.")]
    import_lines.append("from lava.utils.weightutils import SignMode")
    spikec_lines = [f"from {module} import {', '.join(sorted(classes))}" for module, classes in sorted(
        lava_imports.items()) if module.startswith("spikec.")]
    layouts = sorted({ref["fn"] for spec in pg.processes for ref in spec.args.values()
                      if isinstance(ref, dict) and ref.get("$") == "layout"} | {"uniform_delays"})
    spikec_lines += [f"from spikec.backends.lava.helpers import {', '.join(layouts)}",
                     "from spikec.backends.lava.runtime import DEFAULT_TIMEOUT_S, run_lava_net",
                     "from spikec.errors import SpikecError"]

    out = [
        '"""The Lava process graph spikec compiled for Loihi 2 (model: NAME below), built from weights.npz.',
        "",
        f"Generated by spikec {__version__} (`spikec compile --target loihi2`); recompile rather than edit.",
        f"{len(pg.processes)} processes, {len(pg.connections)} connections, T = {pg.timesteps}, deepest layer "
        f"{pg.max_depth} steps.",
        "",
        "    python lava_net.py SAMPLES.npy [-o lava_out.npz] [--timeout SECONDS]",
        "",
        "runs the samples on Loihi2SimCfg(select_tag=\"fixed_pt\") back to back (T steps each, every neuron group",
        "reset when its wave arrives) and saves the logits and every neuron group's spike trains, aligned to the",
        "model's time steps. Built-in Lava processes where Lava has them; spikec's fixed_pt processes",
        "(spikec.backends.lava.processes) for spike matmul, pooling, sums, gains and the readout integrator.",
        "`build` below is the whole network; spikec's runtime (spikec.backends.lava.runtime.run_lava_net) does",
        "the host's input encoding and readout with intsim's rules, and runs `build`'s network in a forked",
        "child under a timeout, reading the artifact (manifest.json, model.ir, weights.npz) beside this file.",
        '"""',
        "",
        "import argparse",
        "import os",
        "",
        "import numpy as np",
        *import_lines,
        "",
        *spikec_lines,
        "",
        f"NAME = {pg.name!a}",
        "",
        "# Neuron groups' spike trains in run()'s results: key (the module path; #2, #3, ... for a path that",
        "# several neuron groups share) -> the process (and probe) of build() that makes them.",
        f"SPIKES = {_pretty(spike_keys(pg))}",
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
            out.append(f"    # {spec.role}: {spec.module!a}{node}")
        out.append(_process_line(spec))
    out.append("")
    out.extend(_connection_line(c) for c in pg.connections)
    out.append("    return p")
    out.append("")
    out.append(_RUN.rstrip())
    return "\n".join(out) + "\n"


def _pretty(value: dict[str, str]) -> str:
    """A dict literal, one entry per line."""
    return "{" + "".join(f"\n    {k!a}: {v!a}," for k, v in value.items()) + ("\n}" if value else "}")
