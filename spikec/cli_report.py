"""The ``report`` command (registered on :data:`spikec.cli.main`)."""

from __future__ import annotations

import os

import click

from spikec.cli_common import ProgressBar, engine_options, handle_errors, model_options

__all__ = ["report_command"]


@click.command("report")
@handle_errors
@model_options
@click.option("--data", required=True, metavar="digits|FILE.npz|FILE.npy|DIR",
              help="'digits' (scikit-learn's digits test split); a .npz whose array x stacks the samples along the "
                   "batch axis of the input layout; an .npy of x, or a directory with x.npy (memory-mapped); or a "
                   "directory of .npz shards.")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N samples.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(),
              help="Directory to write report.json and the PNGs to (replaced only if it holds a spikec report).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="What to print and write besides report.json: report.txt, or report.md embedding the PNGs.")
@click.option("--backend", type=click.Choice(["intsim", "float"]), default="intsim", show_default=True,
              help="intsim: the compiled integer graph (a model is compiled first); float: the float interpreter "
                   "of the traced, uncompiled model.")
@click.option("--sew-as-ac", is_flag=True,
              help="Charge weight ops on graded input (SEW residual sums, spike counts) as accumulates (E_AC x "
                   "SOPs) instead of MACs.")
@click.option("--raster", metavar="MODULE", help="Neuron group (module path) of the spike raster (default: the "
                                                 "first).")
@click.option("--raster-sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="Sample of the spike raster (its index in the data).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@engine_options
def report_command(source, data, limit, out_dir, fmt, backend, sew_as_ac, raster, raster_sample, batch_size, engine):
    """Measure SOPs, firing rates and energy per layer of MODEL (a model, or a directory written by
    `spikec compile`) on data, under four energy models, with plots.

    Every weight op, attention product (spike matmul, Hadamard product, column sum) and neuron group gets a
    row: module path, source line, input domain, T, FLOPs, SOPs, MACs, input firing rate and energy per
    sample under each model: paper (the Spikformer/Spikingformer method, 45 nm 32-bit float costs),
    int8-45nm (8-bit integer costs plus SRAM traffic), loihi (Loihi 1's published per-event figures; Intel
    publishes none for Loihi 2) and ann-int8 (the equal-shape non-spiking baseline). OUT_DIR gets
    report.json (spikec/schemas/report.schema.json), firing_rates.png, raster.png, energy_per_layer.png and,
    for a compiled model, quantization_error.png; it is written atomically.

    \b
    Examples:
      spikec report examples/digits/checkpoints/spikingformer-cifar.pt --data digits -o out/report
      spikec report out/digits-loihi2 --data digits --limit 100 -o out/report-loihi2 --format markdown
      spikec report model.pt --data test.npz --backend float --raster block.0.attn.q_lif -o out/r --format json
    """
    from spikec.reporting import ReportOptions, report

    artifact = bool(source.checkpoint and os.path.isdir(source.checkpoint))

    options = ReportOptions(fmt, backend, limit, sew_as_ac, raster, raster_sample, batch_size, engine)
    with ProgressBar("measuring") as bar:
        result = report(source.checkpoint if artifact else source, data, out_dir, options, bar)
    name = {"json": "report.json", "text": "report.txt", "markdown": "report.md"}[fmt]
    with open(os.path.join(out_dir, name)) as f:
        click.echo(f.read(), nl=False)
    totals = ", ".join(f"{m} {e:.4g} mJ" for m, e in result["totals"]["energy_mj"].items())
    click.echo(f"report of {result['model']} ({result['provenance']['samples']} samples): {totals} per sample "
               f"-> {out_dir}", err=True)
