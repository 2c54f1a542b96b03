"""The ``compile`` and ``simulate`` commands (registered on :data:`spikec.cli.main`)."""

from __future__ import annotations

import json
import math
import os
import sys

import click

from spikec.cli_common import ProgressBar, engine_options, handle_errors, model_options
from spikec.datasets import open_data
from spikec.errors import InputError
from spikec.ir.ops import OpCategory, op_traits
from spikec.registry import BACKENDS, TARGETS

__all__ = ["compile_command", "simulate_command"]


def _input_range(ctx, param, value):
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected LO,HI, e.g. -1,1 or 0,255") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise click.BadParameter(f"expected two finite numbers LO < HI, got {value!r}")
    return lo, hi


def _quantize_options(command):
    options = [
        click.option("--input-exp", type=click.IntRange(0, 16), default=None,
                     help="The input is quantized as round(x * 2**input_exp). Default: 8 (images in [0, 1]); "
                          "0 for the DVS zoo models (event counts)."),
        click.option("--input-range", callback=_input_range, metavar="LO,HI",
                     help="The range the input lies in; values outside are clipped, and the overflow proof "
                          "holds for inputs inside. Default: 0,1; 0,255 for the DVS zoo models. A mean/std "
                          "normalised image wants e.g. -3,3."),
        click.option("--allow-saturation", is_flag=True,
                     help="Accept neurons whose membrane can saturate at 24 bits instead of failing."),
        click.option("--calibrate", type=click.IntRange(min=0), default=None, metavar="N",
                     help="Choose the input exponent (up to the default) from N samples of the data, or N random "
                          "inputs in the input range without data: the one with the smallest estimated error "
                          "of the encoding layer's output (input and weight rounding). 0: no calibration. "
                          "Default: 64. --input-exp sets the exponent instead (the two exclude each other)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _list_passes(ctx, param, value):
    """--passes: print the compile pipeline, one pass a line, and exit. It is eager, so it needs no MODEL."""
    if not value or ctx.resilient_parsing:
        return
    from spikec.passes.manager import standard_pipeline

    for line in standard_pipeline().describe():
        click.echo(line)
    ctx.exit(0)


def _ir_printer(name: str | None):
    """The pass callback of --print-ir-after NAME: after each run of pass NAME (of every pass for all), the
    graph in the IR's text form on stderr. An unknown NAME is refused before the model is traced."""
    if name is None:
        return None
    from spikec.ir import print_graph
    from spikec.passes.manager import PASSES, standard_pipeline

    names = [p.name for p in standard_pipeline().passes]
    if name != "all" and name not in names:
        what = "is not a pass of the compile pipeline" if name in PASSES else "is not the name of a pass"
        raise InputError(f"--print-ir-after: {name!r} {what}; choose one of {', '.join(names)}, or all")

    def print_ir(transform, result):
        if name in ("all", transform.name):
            click.echo(f"// IR after {transform.name}{'' if result.modified else ' (unchanged)'}", err=True)
            click.echo(print_graph(result.graph), err=True, nl=False)

    return print_ir


@click.command("compile")
@handle_errors
@model_options
@click.option("--target", type=click.Choice(list(TARGETS)), default="intsim", show_default=True,
              help="; ".join(f"{t.name}: {t.summary}" for t in TARGETS.values()) + ".")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(), help="Artifact directory to write.")
@click.option("--force", is_flag=True, help="Replace the output directory even if it holds other files than a "
                                            "spikec artifact (they are deleted).")
@_quantize_options
@click.option("--attention", type=click.Choice(["auto", "on-chip", "embedded"]), default="auto", show_default=True,
              help="loihi2: where spike matmuls (Spikformer's q k^T and attn v) run: on-chip as product neurons "
                   "and sums on neuro cores, embedded on the embedded cores, auto on-chip when a matmul's product "
                   "neurons fit in 16 neuro cores.")
@click.option("--explain", is_flag=True, help="Say why each fold that did not happen did not.")
@click.option("--strict", is_flag=True, help="loihi2: fail (exit code 1, nothing written) when the network exceeds "
                                             "a Loihi 2 limit, instead of warning.")
@click.option("--print-ir-after", metavar="PASS|all",
              help="Print the IR to stderr, in its text form, after every run of the pass PASS (all: of every "
                   "pass); --passes lists them.")
@click.option("--passes", is_flag=True, is_eager=True, expose_value=False, callback=_list_passes,
              help="List the passes of the compile pipeline, one a line, and exit.")
@click.option("--data", default=None,
              help="Calibration data: 'digits' (scikit-learn's digits test split) or a .npz with an array x "
                   "stacking inputs along the batch axis. Default: random inputs in the input range.")
def compile_command(source, target, out_dir, force, input_exp, input_range, allow_saturation, calibrate, attention,
                    explain, strict, print_ir_after, data):
    """Compile MODEL to integers with Lava's fixed-point rules and write an artifact directory.

    The artifact holds manifest.json (scales, ranges, versions, the IR as JSON), model.ir and weights.npz.
    With --target loihi2 it also holds lava_net.py (the network's Lava processes, runnable with spikec installed) and,
    in manifest.json, the processes, connections, delays, reset offsets and the resource report against
    Loihi 2's limits. It is written atomically (nothing is left behind on failure) and byte-identically for
    equal inputs. An existing output directory is replaced only when it is empty or holds a spikec
    artifact and nothing else (or with --force).

    \b
    Examples:
      spikec compile examples/digits/checkpoints/spikingformer-cifar.pt -o out/digits
      spikec compile --arch spikformer-cifar --model-args '{"depth": 2}' -o out/spikformer
      spikec compile examples/digits/checkpoints/spikingformer-cifar.pt --target loihi2 -o out/digits-loihi2
      spikec compile --arch spikformer-dvs -o out/dvs --input-range 0,64
      spikec compile graph.nir -T 8 --data inputs.npz -o out/graph     # a NIR graph, run for 8 steps
      spikec compile model.pt2 -o out/model          # a torch.export program (spikec.export_program)
    """
    from spikec.api import check_resources, compile_source
    from spikec.compiler import check_output_dir

    check_output_dir(out_dir, force)
    x = None if data is None or input_exp is not None else _calibration_data(data, source.input_layout, calibrate)
    _, compiled = compile_source(source, target=target, input_exp=input_exp, input_range=input_range,
                                 allow_saturation=allow_saturation, callback=_ir_printer(print_ir_after),
                                 calibrate=_calibrate(calibrate, input_exp, x, data), attention=attention)
    resources = getattr(compiled.lowered, "resources", None)
    if resources is not None:
        _report_resources(resources, strict)
    check_resources(compiled, strict)
    compiled.write(out_dir, force=force)
    q = compiled.quantization
    worst = max(q.layers, key=lambda layer: layer.relative_error) if q.layers else None
    lo, hi = q.input_range
    groups = sum(op_traits(n.op).category is OpCategory.WEIGHT for n in compiled.graph.nodes)
    click.echo(f"compiled {compiled.name} for {target}: {len(compiled.graph.nodes)} integer ops, "
               f"{groups} synapse groups, {len(q.neurons)} neuron groups, input in [{lo:g}, {hi:g}] "
               f"at 2**-{q.input_exp} -> {out_dir}", err=True)
    if q.calibration is not None:
        click.echo(f"calibrated input exponent: {q.calibration['why']}", err=True)
    if worst is not None:
        click.echo(f"largest weight quantization error: {100 * worst.relative_error:.2f}% ({worst.module})", err=True)
    if explain:
        for skip in compiled.skipped:
            click.echo(f"note: {skip}", err=True)


def _calibration_data(data, layout: str, calibrate: int | None):
    """The samples of ``data`` (a --data value or a Dataset) that --calibrate reads: the first N of them."""
    from spikec.api import Calibrate

    dataset = open_data(data, layout) if isinstance(data, str) else data
    return dataset.read(0, min(len(dataset), Calibrate.samples if calibrate is None else calibrate))


def _calibrate(calibrate: int | None, input_exp: int | None, x, data_name: str | None):
    """What --calibrate asks for (:class:`spikec.api.Calibrate`); it and --input-exp exclude each other."""
    from spikec.api import Calibrate

    if calibrate is not None and input_exp is not None:
        raise InputError("--input-exp and --calibrate exclude each other: --input-exp sets the exponent that "
                         "--calibrate would choose")
    return Calibrate(Calibrate.samples if calibrate is None else calibrate, x, data_name or "data")


def _report_resources(resources: dict, strict: bool) -> None:
    """Say what the network takes of Loihi 2 as placed (neuro cores, chips, neurons, synapses, weight bytes, the
    share of the on-chip ops that run on neuro cores), with the probes' sinks (instrumentation, not the network)
    apart, and every per-core or per-chip limit exceeded (an error with --strict, which
    :func:`spikec.api.check_resources` enforces)."""
    totals = resources["totals"]
    click.echo(f"loihi2: {totals['neuro_cores']} neuro cores on {totals['chips']} chip(s), {totals['neurons']} "
               f"neurons, {totals['synapses']} synapses, {totals['weights_stored']} weights stored (bytes), "
               f"{totals['on_chip_fraction']:.1%} of the on-chip ops on neuro cores; "
               f"{totals['neuro_core_processes']} processes on neuro cores, {totals['host_processes']} on the "
               f"embedded/host CPU, {totals['probe_processes']} probes", err=True)
    for line in resources["violations"]:
        click.echo(f"{'error' if strict else 'warning'}: Loihi 2 limit exceeded: {line}", err=True)


def _backend_list() -> str:
    """The registered backends for ``--help``: each name, what it runs, and the targets it needs."""
    return "; ".join(f"{b.name}: {b.summary}" + (f" ({' or '.join(b.targets)} artifacts)" if b.targets else "")
                     for b in BACKENDS.values())


@click.command("simulate")
@handle_errors
@model_options
@click.option("--backend", "backends", metavar="NAMES",
              help="Comma-separated backends to run and compare: " + _backend_list()
                   + ". Default: torch,intsim for a model; intsim for an artifact (with --compare: lava for a "
                     "loihi2 artifact, else onnxruntime).")
@click.option("--compare", "compare_with", type=click.Choice(["intsim"]),
              help="Also run this reference and check the lava or onnxruntime backend against it bit for bit: "
                   "every spike of every neuron layer and the logits; a mismatch names the first diverging layer, "
                   "time step and neuron.")
@click.option("--lava-models", type=click.Choice(["spikec", "lava"]), default="spikec", show_default=True,
              help="lava backend: run Lava's Conv/Sparse/DelaySparse/DelayDense with spikec's vectorised models "
                   "(bit-identical) or with Lava's own.")
@click.option("--data", default="digits", show_default=True,
              help="'digits' (scikit-learn's digits test split); a .npz with arrays x and optional y; an .npy of "
                   "x, or a directory with x.npy and optional y.npy (memory-mapped); or a directory of .npz shards "
                   "(read shard by shard). x stacks the samples along the batch axis of the input layout ([N, ...] "
                   "for B, [T, N, ...] for TB).")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N samples.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@_quantize_options
@engine_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-o", "--output", "out_file", type=click.Path(dir_okay=False),
              help="Also write the report (text or json) to this file; it is written whole or not at all.")
def simulate_command(source, backends, compare_with, lava_models, data, limit, batch_size, input_exp, input_range,
                     allow_saturation, calibrate, engine, fmt, out_file):
    """Run MODEL (a model, a directory written by `spikec compile`, or an ONNX file written by `spikec export`) on
    data with several backends.

    Prints accuracy (when the data has labels), time per sample, prediction agreement between backends and
    the fraction of identical spikes on every neuron layer (float vs intsim). An artifact runs on intsim and on
    onnxruntime (its ONNX export); one compiled with --target loihi2 also on lava (Lava's fixed_pt models,
    Loihi2SimCfg). With --compare intsim the json adds "bit_exact": {"intsim/lava": true|false} (or
    "intsim/onnxruntime") and, on a mismatch, the first diverging layer, time step and neuron (exit code 1).
    Data outside the compiled input range is clipped, with a warning. --workers and --engine ray spread the
    samples over processes or a Ray cluster; the report is the same (docs/scale-out.md).

    \b
    Examples:
      spikec simulate examples/digits/checkpoints/spikingformer-cifar.pt --backend torch,float,intsim
      spikec simulate out/digits --data my_test.npz --format json
      spikec simulate out/digits-loihi2 --compare intsim --limit 20
      spikec simulate digits.onnx --backend onnxruntime --compare intsim
      spikec simulate out/digits --data /data/val-shards --engine ray --workers 8 -o val.json
    """
    from spikec.files import check_output_file, write_file_atomically
    from spikec.simulation import SimulationPlan

    chosen = None if backends is None else [b.strip() for b in backends.split(",") if b.strip()]
    if source.checkpoint and (os.path.isdir(source.checkpoint) or source.checkpoint.endswith(".onnx")):
        if input_exp is not None or input_range is not None or allow_saturation or calibrate is not None:
            raise InputError(f"{source.checkpoint} is already compiled: --input-exp, --input-range, "
                             "--allow-saturation and --calibrate apply when simulating a model; recompile the "
                             "artifact to change them")
        plan = SimulationPlan.of(source.checkpoint)
        dataset = open_data(data, plan.layout, limit)
    else:
        dataset = open_data(data, source.input_layout, limit)
        x = _calibration_data(dataset, source.input_layout, calibrate)
        plan = SimulationPlan.of(source, dataset, input_exp=input_exp, input_range=input_range,
                                 allow_saturation=allow_saturation, calibrate=_calibrate(calibrate, input_exp, x, data))
    if out_file is not None:
        check_output_file(out_file)
    with ProgressBar("simulating") as bar:
        report = plan.run(dataset, backends=chosen, compare=compare_with, batch_size=batch_size,
                          lava_models=lava_models, progress=bar, engine=engine)
    clip = report.input_clipping
    if clip is not None:
        click.echo(f"warning: {100 * clip['clipped_fraction']:.2f}% of the input values lie outside the compiled "
                   f"input range [{clip['range'][0]:g}, {clip['range'][1]:g}] and were clipped (data min "
                   f"{clip['min']:g}, max {clip['max']:g}); compile with --input-range LO,HI to cover them",
                   err=True)
    text = json.dumps(report.to_json(), indent=1, sort_keys=True) + "\n" if fmt == "json" else report.to_text()
    if out_file is not None:
        write_file_atomically(out_file, text)
    click.echo(text, nl=False)
    if not report.exact:
        sys.exit(1)
