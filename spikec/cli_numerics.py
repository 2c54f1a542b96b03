"""The ``compile`` and ``simulate`` commands (registered on :data:`spikec.cli.main`)."""

from __future__ import annotations

import json
import os
import sys

import click
import numpy as np

from spikec.cli_common import handle_errors, model_options, model_source
from spikec.errors import InputError

__all__ = ["compile_command", "simulate_command"]


def _quantize_options(command):
    options = [
        click.option("--input-exp", type=click.IntRange(0, 16), default=8, show_default=True,
                     help="The input is quantized as round(x * 2**input_exp) (images in [0, 1]: 8; event counts: 0)."),
        click.option("--allow-saturation", is_flag=True,
                     help="Accept neurons whose membrane can saturate at 24 bits instead of failing."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _compile_source(source, seed: int, input_exp: int, allow_saturation: bool, target: str = "intsim"):
    from spikec.compiler import compile_graph
    from spikec.frontends.torch import trace_source
    from spikec.passes.quantize import QuantizeOptions

    loaded, traced = trace_source(source, seed)
    options = QuantizeOptions(input_exp=input_exp, allow_saturation=allow_saturation)
    compiled = compile_graph(traced.graph, loaded.name, loaded.input_shape, loaded.input_layout, target, options)
    return loaded, compiled


@click.command("compile")
@model_options
@click.option("--target", type=click.Choice(["intsim", "loihi2"]), default="intsim", show_default=True,
              help="intsim: the integer reference simulator's artifact; loihi2: also the Lava process graph, "
                   "its resource report and lava_net.py.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(), help="Artifact directory to write.")
@_quantize_options
@click.option("--explain", is_flag=True, help="Say why each fold that did not happen did not.")
@click.option("--strict", is_flag=True, help="loihi2: fail (exit code 1, nothing written) when the network exceeds "
                                             "a Loihi 2 limit, instead of warning.")
@handle_errors
def compile_command(checkpoint, model_ref, arch, model_args, weights, allow_pickle, input_shape, timesteps,
                    input_layout, target, out_dir, input_exp, allow_saturation, explain, strict):
    """Compile MODEL to integers with Lava's fixed-point rules and write an artifact directory.

    The artifact holds manifest.json (scales, ranges, versions, the IR as JSON), model.ir and weights.npz.
    With --target loihi2 it also holds lava_net.py (a standalone module building the Lava processes) and,
    in manifest.json, the processes, connections, delays, reset offsets and the resource report against
    Loihi 2's limits. It is written atomically (nothing is left behind on failure) and byte-identically for
    equal inputs.

    \b
    Examples:
      spikec compile examples/digits/checkpoints/spikingformer-cifar.pt -o out/digits
      spikec compile --arch spikformer-cifar --model-args '{"depth": 2}' -o out/spikformer
      spikec compile examples/digits/checkpoints/spikingformer-cifar.pt --target loihi2 -o out/digits-loihi2
    """
    source = model_source(checkpoint, model_ref, arch, model_args, weights, allow_pickle, input_shape, timesteps,
                     input_layout)
    _, compiled = _compile_source(source, 0, input_exp, allow_saturation, target)
    if compiled.lava is not None:
        _report_resources(compiled.lava.resources, strict)
    compiled.write(out_dir)
    q = compiled.quantization
    worst = max(q.layers, key=lambda l: l.relative_error) if q.layers else None
    click.echo(f"compiled {compiled.name} for {target}: {len(compiled.graph.nodes)} integer ops, "
               f"{len(q.layers)} synapse groups, {len(q.neurons)} neuron groups -> {out_dir}", err=True)
    if worst is not None:
        click.echo(f"largest weight quantization error: {100 * worst.relative_error:.2f}% ({worst.module})", err=True)
    if explain:
        for skip in compiled.skipped:
            click.echo(f"note: {skip}", err=True)


def _report_resources(resources: dict, strict: bool) -> None:
    """Say what the network takes of Loihi 2; warn about every limit exceeded, or fail with --strict."""
    from spikec.errors import VerifyError

    totals = resources["totals"]
    click.echo(f"loihi2: {totals['neuro_cores']} neuro cores ({totals['chips']} chip(s)), {totals['neurons']} neurons, "
               f"{totals['synapses']} synapses; {totals['neuro_core_processes']} processes on neuro cores, "
               f"{totals['host_processes']} on the embedded/host CPU", err=True)
    for line in resources["violations"]:
        click.echo(f"{'error' if strict else 'warning'}: Loihi 2 limit exceeded: {line}", err=True)
    if strict and resources["violations"]:
        raise VerifyError(f"{len(resources['violations'])} Loihi 2 limit(s) exceeded (--strict); nothing written")


def _load_data(data: str, limit: int | None):
    from spikec.datasets import load_digits_split, load_npz_data

    if data == "digits":
        x, y = load_digits_split("test")
    else:
        x, y = load_npz_data(data)
    if limit is not None:
        x, y = x[:limit], None if y is None else y[:limit]
    return np.ascontiguousarray(x, dtype=np.float32), y


def _check_shape(x: np.ndarray, input_shape, what: str) -> None:
    if tuple(x.shape[1:]) != tuple(input_shape[1:]):
        raise InputError(f"the data's samples have shape {list(x.shape[1:])} but {what} takes "
                         f"{list(input_shape[1:])}")


@click.command("simulate")
@model_options
@click.option("--backend", "backends", default="torch,intsim", show_default=True,
              help="Comma-separated backends to run and compare: torch, float, intsim; lava for an artifact "
                   "compiled with --target loihi2.")
@click.option("--compare", "compare_with", type=click.Choice(["intsim"]),
              help="Also run this reference and check the lava backend against it bit for bit: every spike of "
                   "every neuron layer and the logits; a mismatch names the first diverging layer, time step "
                   "and neuron.")
@click.option("--lava-models", type=click.Choice(["spikec", "lava"]), default="spikec", show_default=True,
              help="lava backend: run Lava's Conv/Sparse/DelaySparse/DelayDense with spikec's vectorised models "
                   "(bit-identical) or with Lava's own.")
@click.option("--data", default="digits", show_default=True,
              help="'digits' (scikit-learn's digits test split) or a .npz with arrays x and optional y.")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N samples.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@_quantize_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def simulate_command(checkpoint, model_ref, arch, model_args, weights, allow_pickle, input_shape, timesteps,
                     input_layout, backends, compare_with, lava_models, data, limit, batch_size, input_exp,
                     allow_saturation, fmt):
    """Run MODEL (a model, or a directory written by `spikec compile`) on data with several backends.

    Prints accuracy (when the data has labels), time per sample, prediction agreement between backends and
    the fraction of identical spikes on every neuron layer (float vs intsim). An artifact runs on intsim; one
    compiled with --target loihi2 also on lava (Lava's fixed_pt models, Loihi2SimCfg). With --compare intsim
    the json adds "bit_exact": {"intsim/lava": true|false} and, on a mismatch, the first diverging layer,
    time step and neuron (exit code 1).

    \b
    Examples:
      spikec simulate examples/digits/checkpoints/spikingformer-cifar.pt --backend torch,float,intsim
      spikec simulate out/digits --backend intsim --data my_test.npz --format json
      spikec simulate out/digits-loihi2 --backend lava --compare intsim --limit 20
    """
    from spikec.simulate import BACKENDS, float_runner, intsim_runner, simulate, torch_runner

    artifact = bool(checkpoint and os.path.isdir(checkpoint))
    known = (*BACKENDS, "lava") if artifact else BACKENDS    # Lava runs a compiled --target loihi2 artifact
    chosen = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in known]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise InputError(f"--backend takes distinct names from {', '.join(known)}, got {backends!r}")
    if compare_with is not None:
        if "lava" not in chosen:
            raise InputError(f"--compare {compare_with} checks the lava backend against {compare_with}: run an "
                             "artifact compiled with --target loihi2 with --backend lava")
        chosen = [compare_with] + [b for b in chosen if b != compare_with]
    x, y = _load_data(data, limit)
    runners = {}
    if artifact:
        from spikec.compiler import load_artifact

        compiled = load_artifact(checkpoint)
        if compiled.target == "loihi2" and any(b not in ("intsim", "lava") for b in chosen):
            raise InputError(f"{checkpoint} is a compiled artifact: it runs on intsim and lava only "
                             "(--backend intsim,lava)")
        if compiled.target != "loihi2" and chosen != ["intsim"]:
            hint = "; compile it with --target loihi2 to run it on lava" if "lava" in chosen else ""
            raise InputError(f"{checkpoint} is a compiled artifact: it runs on intsim only (--backend intsim){hint}")
        _check_shape(x, compiled.input_shape, checkpoint)
        name = compiled.name
    else:
        source = model_source(checkpoint, model_ref, arch, model_args, weights, allow_pickle, input_shape, timesteps,
                         input_layout)
        loaded, compiled = _compile_source(source, 0, input_exp, allow_saturation)
        _check_shape(x, loaded.input_shape, loaded.name)
        name = loaded.name
        if "torch" in chosen:
            runners["torch"] = torch_runner(loaded.module)
        if "float" in chosen:
            runners["float"] = float_runner(compiled.float_graph)
    if "intsim" in chosen:
        runners["intsim"] = intsim_runner(compiled.graph, compiled.output_scales[0])
    if "lava" in chosen:
        from spikec.backends.lava.compare import lava_runner

        runners["lava"] = lava_runner(compiled.graph, compiled.output_scales[0], fast=lava_models == "spikec")
    runners = {b: runners[b] for b in chosen}
    watch = None
    if compare_with is not None:
        from spikec.backends.lava.compare import BitExactWatch

        watch = BitExactWatch(compare_with, "lava")
        runners = {b: watch.wrap(b, r) if b in (compare_with, "lava") else r for b, r in runners.items()}

    def progress(batches):
        with click.progressbar(batches, label="simulating", file=sys.stderr) as bar:
            yield from bar

    report = simulate(name, x, y, runners, batch_size, progress)
    if fmt == "json":
        click.echo(json.dumps({**report.to_json(), **(watch.to_json() if watch else {})}, indent=1, sort_keys=True))
    else:
        click.echo(report.to_text() + (watch.to_text() if watch else ""), nl=False)
    if watch is not None and not watch.exact:
        sys.exit(1)
