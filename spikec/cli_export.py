"""The ``export`` command (registered on :data:`spikec.cli.main`)."""

from __future__ import annotations

import os

import click

from spikec.cli_common import handle_errors
from spikec.errors import InputError

__all__ = ["export_command"]

FORMATS = ("onnx",)


@click.command("export")
@handle_errors
@click.argument("artifact", metavar="ARTIFACT")
@click.option("--to", "fmt", type=click.Choice(FORMATS), required=True,
              help="onnx: the integer graph as ONNX (opset 18), bit-exact with intsim on onnxruntime.")
@click.option("-o", "--output", "out_file", required=True, type=click.Path(dir_okay=False),
              help="The file to write; it is written whole or not at all.")
def export_command(artifact, fmt, out_file):
    """Export ARTIFACT (a directory written by `spikec compile`) for another tool.

    onnx: every value an int64 tensor, every op exact integer arithmetic (ConvInteger, int64 MatMul, shifts as
    floor divisions, the LIF unrolled over time), so that onnxruntime computes intsim's logits and spikes bit
    for bit. Outputs: output_0 (the logits, in the compiled output scale) and spikes_<i>, the spikes [T, B, ...]
    of the i-th neuron layer (metadata maps each to its module path). `spikec simulate ARTIFACT --backend
    onnxruntime --compare intsim` checks the export on data (docs/interop.md).

    \b
    Examples:
      spikec export out/digits --to onnx -o digits.onnx
    """
    from spikec.backends.onnx import export_onnx
    from spikec.compiler import load_artifact
    from spikec.files import check_output_file, write_file_atomically

    if not os.path.isdir(artifact):
        raise InputError(f"{artifact} is not an artifact directory: compile the model first "
                         "(spikec compile MODEL -o OUT), then export OUT")
    check_output_file(out_file)
    compiled = load_artifact(artifact)
    model = export_onnx(compiled.graph, compiled.name)
    write_file_atomically(out_file, model.SerializeToString())
    click.echo(f"exported {compiled.name} to ONNX (opset {model.opset_import[0].version}, {len(model.graph.node)} "
               f"nodes, {len(model.graph.output) - 1} neuron layers) -> {out_file}", err=True)
