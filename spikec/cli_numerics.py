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


def _compile_source(source, seed: int, input_exp: int, allow_saturation: bool):
    from spikec.compiler import compile_graph
    from spikec.frontends.torch import trace_source
    from spikec.passes.quantize import QuantizeOptions

    loaded, traced = trace_source(source, seed)
    options = QuantizeOptions(input_exp=input_exp, allow_saturation=allow_saturation)
    compiled = compile_graph(traced.graph, loaded.name, loaded.input_shape, loaded.input_layout, "intsim", options)
    return loaded, compiled


@click.command("compile")
@model_options
@click.option("--target", type=click.Choice(["intsim"]), default="intsim", show_default=True,
              help="intsim: the integer reference simulator's artifact.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(), help="Artifact directory to write.")
@_quantize_options
@click.option("--explain", is_flag=True, help="Say why each fold that did not happen did not.")
@handle_errors
def compile_command(checkpoint, model_ref, arch, model_args, weights, allow_pickle, input_shape, timesteps,
                    input_layout, target, out_dir, input_exp, allow_saturation, explain):
    """Compile MODEL to integers with Lava's fixed-point rules and write an artifact directory.

    The artifact holds manifest.json (scales, ranges, versions, the IR as JSON), model.ir and weights.npz.
    It is written atomically (nothing is left behind on failure) and byte-identically for equal inputs.

    \b
    Examples:
      spikec compile examples/digits/checkpoints/spikingformer-cifar.pt -o out/digits
      spikec compile --arch spikformer-cifar --model-args '{"depth": 2}' -o out/spikformer
    """
    source = model_source(checkpoint, model_ref, arch, model_args, weights, allow_pickle, input_shape, timesteps,
                     input_layout)
    _, compiled = _compile_source(source, 0, input_exp, allow_saturation)
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
              help="Comma-separated backends to run and compare: torch, float, intsim.")
@click.option("--data", default="digits", show_default=True,
              help="'digits' (scikit-learn's digits test split) or a .npz with arrays x and optional y.")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N samples.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@_quantize_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def simulate_command(checkpoint, model_ref, arch, model_args, weights, allow_pickle, input_shape, timesteps,
                     input_layout, backends, data, limit, batch_size, input_exp, allow_saturation, fmt):
    """Run MODEL (a model, or a directory written by `spikec compile`) on data with several backends.

    Prints accuracy (when the data has labels), time per sample, prediction agreement between backends and
    the fraction of identical spikes on every neuron layer (float vs intsim). An artifact runs on intsim only.

    \b
    Examples:
      spikec simulate examples/digits/checkpoints/spikingformer-cifar.pt --backend torch,float,intsim
      spikec simulate out/digits --backend intsim --data my_test.npz --format json
    """
    from spikec.simulate import BACKENDS, float_runner, intsim_runner, simulate, torch_runner

    chosen = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BACKENDS]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise InputError(f"--backend takes distinct names from {', '.join(BACKENDS)}, got {backends!r}")
    x, y = _load_data(data, limit)
    runners = {}
    if checkpoint and os.path.isdir(checkpoint):
        from spikec.compiler import load_artifact

        if chosen != ["intsim"]:
            raise InputError(f"{checkpoint} is a compiled artifact: it runs on intsim only (--backend intsim)")
        compiled = load_artifact(checkpoint)
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
    runners = {b: runners[b] for b in chosen}

    def progress(batches):
        with click.progressbar(batches, label="simulating", file=sys.stderr) as bar:
            yield from bar

    report = simulate(name, x, y, runners, batch_size, progress)
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=1, sort_keys=True))
    else:
        click.echo(report.to_text(), nl=False)
