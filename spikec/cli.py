"""The ``spikec`` command line (docs/design.md, §8): a thin layer over the Python API.

Exit codes: 0 success, 1 checks found problems, 2 bad input or usage, 3 internal error.
"""

from __future__ import annotations

import json
import sys

import click

from spikec import __version__
from spikec.cli_common import SpikecGroup, handle_errors, model_options
from spikec.cli_export import export_command
from spikec.cli_numerics import compile_command, simulate_command
from spikec.cli_report import report_command
from spikec.errors import InputError

@click.group(cls=SpikecGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="spikec")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def main(debug: bool) -> None:
    """spikec compiles trained PyTorch spiking transformers for Loihi-class neuromorphic hardware.

    \b
    Example:
      spikec inspect --arch spikingformer-cifar --model-args '{"depth": 1}'
    """


@main.command()
@handle_errors
@model_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random example input.")
def inspect(source, fmt, seed):
    """Trace MODEL and print its IR, a layer table and its parameter count.

    MODEL is a checkpoint dict {arch, config, state_dict} saved with torch.save, a torch.export program
    (MODEL.pt2, made with spikec.export_program) or a NIR graph (MODEL.nir); or name the model with --model
    (your code) or --arch (the zoo).

    \b
    Examples:
      spikec inspect checkpoint.pt
      spikec inspect --arch spikformer-cifar --model-args '{"depth": 2, "embed_dim": 128}' -T 4
      spikec inspect --model model.py:Spikformer --weights model_best.pth.tar --input-shape 1,3,32,32
    """
    from spikec.frontends.torch import trace_source
    from spikec.inspect import inspect_graph

    loaded, traced = trace_source(source, seed)
    report = inspect_graph(traced.graph, loaded.name, loaded.input_shape, loaded.input_layout)
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=1, sort_keys=True))
    else:
        click.echo(report.to_text(), nl=False)


def _emit_report(report, fmt: str) -> None:
    """Text goes to stdout; with json/sarif the machine form goes to stdout and the text to stderr."""
    text = report.to_text()
    if fmt == "text":
        click.echo(text, nl=False)
        return
    click.echo(text, nl=False, err=True)
    click.echo(json.dumps(report.to_json() if fmt == "json" else report.to_sarif(), indent=1))


@main.command()
@handle_errors
@model_options
@click.option("--spike-driven", "spike_driven", is_flag=True,
              help="Check that every weight op multiplies by spikes only (rules SD001-SD005, docs/verify.md).")
@click.option("--strict", is_flag=True, help="Report the encoding layer and the readout as errors, not exempt notes.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True,
              help="json and sarif go to stdout, the text to stderr.")
@click.option("--fail-on", type=click.Choice(["error", "warning"]), default="error", show_default=True,
              help="Exit 1 when a finding is at least this severe.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 whatever the findings (bad input still exits 2).")
@click.option("--observe", type=click.IntRange(0, 100_000), default=0, metavar="N",
              help="Also run N inputs through the float interpreter and show the values each checked op reads.")
@click.option("--data", "data_path", metavar="FILE.npz",
              help="Inputs for --observe: array x, inputs stacked along the batch axis (default: random inputs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--no-fold", "no_fold", is_flag=True,
              help="Check the graph as traced: do not first fold chains of convs, batch norms and pads between "
                   "two weight ops into one (RepConv, SepConv), as deployment does.")
def verify(source, spike_driven, strict, fmt, fail_on, exit_zero, observe, data_path, seed, no_fold):
    """Check MODEL: with --spike-driven, that no weight is multiplied by a non-binary activation.

    Lists every violation with its rule, op, module path, source line, input domain and the producer that
    made the input non-binary. The check reads the deployable network: chains of linear ops between two weight
    ops (a conv, batch norm, pad and conv, as RepConv and SepConv) are folded into one weight op first, and
    the report lists each fold; --no-fold checks the graph as traced. Exit codes: 0 clean, 1 findings at or
    above --fail-on, 2 bad input, 3 internal error.

    \b
    Examples:
      spikec verify --spike-driven --arch spikformer-cifar --model-args '{"depth": 2}'
      spikec verify --spike-driven --model model.py:Spikformer --weights model_best.pth.tar \\
          --input-shape 1,3,32,32 --format sarif > spikec.sarif
      spikec verify --spike-driven checkpoint.pt --observe 16 --data inputs.npz
    """
    from spikec.api import check_observations, load_data, verify_graph
    from spikec.frontends.torch import trace_source

    if not spike_driven:
        raise InputError("name the check to run, e.g. spikec verify --spike-driven MODEL")
    data = load_data(data_path) if data_path else None
    _, traced = trace_source(source, seed)
    report = verify_graph(traced.graph, strict=strict, observe=observe, data=data, seed=seed,
                          data_name=data_path or "data", fold=not no_fold)
    _emit_report(report, fmt)
    check_observations(report)
    sys.exit(0 if exit_zero else report.exit_code(fail_on))


@main.command()
@handle_errors
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def zoo(fmt):
    """List the zoo architectures, their defaults and the input shape each takes.

    \b
    Example:
      spikec zoo
    """
    from spikec.models import default_input_shape, zoo_entry, zoo_names

    entries = [zoo_entry(n) for n in zoo_names()]
    if fmt == "json":
        click.echo(json.dumps([{"name": e.name, "family": e.family, "summary": e.summary,
                                "defaults": e.config_defaults(), "input_shape": list(default_input_shape(e.name))}
                               for e in entries], indent=1, sort_keys=True))
        return
    for e in entries:
        defaults = ", ".join(f"{k}={v}" for k, v in e.config_defaults().items())
        click.echo(f"{e.name:24} {e.summary}\n{'':24} input {list(default_input_shape(e.name))}; {defaults}")


main.add_command(compile_command)
main.add_command(simulate_command)
main.add_command(report_command)
main.add_command(export_command)

if __name__ == "__main__":
    main()
