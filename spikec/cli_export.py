"""The ``export`` command (registered on :data:`spikec.cli.main`)."""

from __future__ import annotations

import os

import click

from spikec.cli_common import handle_errors, model_options
from spikec.errors import InputError

__all__ = ["export_command"]

FORMATS = ("onnx", "nir", "netx")


@click.command("export")
@handle_errors
@model_options
@click.option("--to", "fmt", type=click.Choice(FORMATS), required=True,
              help="onnx: the compiled integer graph (opset 18), bit-exact with intsim on onnxruntime. nir: the "
                   "folded float graph as NIR primitives (the nir package), for a model, not an artifact. netx: "
                   "lava-dl's HDF5 network (netx.hdf5.Network) of a feed-forward conv/dense spiking model, "
                   "bit-exact with intsim on Lava.")
@click.option("-o", "--output", "out_file", required=True, type=click.Path(dir_okay=False),
              help="The file to write; it is written whole or not at all.")
def export_command(source, fmt, out_file):
    """Export MODEL (a model, or for onnx and netx a directory written by `spikec compile`) for another tool.

    onnx: every value an int64 tensor, every op exact integer arithmetic (ConvInteger, int64 MatMul, shifts as
    floor divisions, the LIF unrolled over time), so that onnxruntime computes intsim's logits and spikes bit
    for bit. Outputs: output_0 (the logits, in the compiled output scale) and spikes_<i>, the spikes [T, B, ...]
    of the i-th neuron layer (metadata maps each to its module path). A model is compiled first, with the
    defaults of `spikec compile`. The file carries its artifact, so `spikec simulate FILE.onnx --backend
    onnxruntime --compare intsim` checks the file on data against intsim.

    nir: the model traced and folded (batch norms into weights), one NIR node per conv, linear, LIF, IF, average
    pool and flatten; a model with ops NIR cannot express (attention, max pooling, residual adds) is refused,
    naming them (docs/interop.md).

    netx: the compiled integer graph as the HDF5 file lava-dl 0.6.0's netx.hdf5.Network builds Lava processes
    from: input, conv, flatten and dense layers of CUBA neurons, their weights and neuron parameters chosen so
    that the network netx builds runs bit-exact with intsim on Lava's CPU models. The file's attributes hold the
    Network's arguments (network_args) and the input encoding it is fed. A model is compiled first, with the
    defaults; what netx cannot express (attention, residual adds, shifts, the host classifier, ...) is refused,
    naming the ops.

    \b
    Examples:
      spikec export out/digits --to onnx -o digits.onnx
      spikec simulate digits.onnx --backend onnxruntime --compare intsim
      spikec export model.pt --to nir -o model.nir
      spikec export out/convnet --to netx -o convnet.net
    """
    from spikec.files import check_output_file, write_file_atomically

    check_output_file(out_file)
    artifact = bool(source.checkpoint and os.path.isdir(source.checkpoint))
    if fmt == "onnx":
        content, what = _onnx(source, artifact)
    elif fmt == "netx":
        content, what = _netx(source, artifact)
    elif artifact:
        raise InputError(f"{source.checkpoint} is a compiled artifact: NIR export reads the float model, so pass "
                         "the model itself")
    else:
        content, what = _nir(source)
    write_file_atomically(out_file, content)
    click.echo(f"exported {what} -> {out_file}", err=True)


def _onnx(source, artifact: bool) -> tuple[bytes, str]:
    import tempfile

    from spikec.backends.onnx import embed_artifact, export_onnx, require_onnx
    from spikec.compiler import load_artifact

    require_onnx()   # before a compile, which would be wasted

    with tempfile.TemporaryDirectory(prefix="spikec-export-") as tmp:
        directory = source.checkpoint
        if not artifact:
            from spikec.api import compile_source

            directory = os.path.join(tmp, "artifact")
            compile_source(source)[1].write(directory)
        compiled = load_artifact(directory)
        model = export_onnx(compiled.graph, compiled.name)
        embed_artifact(model, directory)
    return model.SerializeToString(), (f"{compiled.name} to ONNX (opset {model.opset_import[0].version}, "
                                       f"{len(model.graph.node)} nodes, {len(model.graph.output) - 1} neuron layers)")


def _nir(source) -> tuple[bytes, str]:
    import io

    import nir

    from spikec.api import folded_graph
    from spikec.backends.nir import export_nir

    name, graph = folded_graph(source)
    buffer = io.BytesIO()
    nir.write(buffer, export_nir(graph))
    return buffer.getvalue(), f"{name} to NIR ({len(graph.nodes)} IR ops)"


def _netx(source, artifact: bool) -> tuple[bytes, str]:
    from spikec.backends.netx import export_netx

    if artifact:
        from spikec.compiler import load_artifact

        compiled = load_artifact(source.checkpoint)
    else:
        from spikec.api import compile_source

        compiled = compile_source(source)[1]
    exported = export_netx(compiled.graph)
    return exported.content, f"{compiled.name} to netx HDF5 ({' -> '.join(exported.layers)})"
