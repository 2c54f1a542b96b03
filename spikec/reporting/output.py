"""The report's text and markdown forms, and its output directory, written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from spikec.errors import InputError
from spikec.files import current_umask
from spikec.reporting.plots import PLOT_FILES, write_plots

__all__ = ["to_text", "to_markdown", "write_outputs", "check_report_dir", "REPORT_FILES"]

REPORT_FILES = ("report.json", "report.txt", "report.md", *PLOT_FILES.values())

_HEADER = ("op", "module", "source", "domain", "T", "FLOPs", "SOPs", "MACs", "rate")


def _source(row: dict) -> str:
    return f"{row['file']}:{row['line']}" if row.get("file") else "-"


def _cells(row: dict, models: list[str]) -> list[str]:
    if row["kind"] == "neuron":
        cells = [row["op"], row["module"] or "-", _source(row), f"{row['neurons']} neurons", str(row["T"]),
                 "-", "-", "-", f"{row['rate']:.4f}"]
    else:
        cells = [row["op"], row["module"] or "-", _source(row), row["domain"], str(row["T"]), f"{row['flops']:,}",
                 f"{row['sops']:,.0f}", f"{row['macs']:,}", f"{row['input_rate']:.4f}"]
    return cells + [f"{row['energy_pj'][m] / 1000:,.2f}" for m in models]


def _table(report: dict) -> tuple[list[str], list[list[str]]]:
    models = list(report["models"])
    header = [*_HEADER, *(f"{m} nJ" for m in models)]
    return header, [_cells(r, models) for r in report["layers"] + report["neurons"]]


def _totals(report: dict) -> list[str]:
    t = report["totals"]
    lines = [f"{m:10} {e:.6f} mJ per sample   ({report['ratio_to_baseline'][m]:.3f} x the ann-int8 baseline)"
             for m, e in t["energy_mj"].items()]
    lines.append(f"SOPs {t['sops']:,.0f}   MACs {t['macs']:,}   dense FLOPs/step {t['flops']:,}   spikes "
                 f"{t['spikes']:,.0f}   SRAM traffic {t['memory_bytes']:,.0f} bytes (int8-45nm)")
    runtime = report["loihi_runtime"]
    if runtime:
        lines.append(f"loihi runtime lower bound: {runtime['step_ns']:.1f} ns per step, {runtime['sample_us']:.3f} "
                     f"us per sample (busiest: {runtime['busiest_group']}, {runtime['neuro_cores']} neuro cores)")
    return lines


def _provenance(report: dict) -> str:
    p = report["provenance"]
    versions = ", ".join(f"{k} {v}" for k, v in p["versions"].items())
    return (f"{report['model']} on {p['backend']}: {p['samples']} samples of {p['data']}, T = {p['T']}"
            f"{', SEW inputs as ACs' if p['sew_as_ac'] else ''}; graph sha256 {p['graph_sha256'][:16]}; {versions}")


def to_text(report: dict) -> str:
    header, rows = _table(report)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:{'<' if i < 4 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [_provenance(report), "", line.format(*header), *(line.format(*r) for r in rows), ""]
    lines += _totals(report)
    lines += ["", "energy models (constants and sources in report.json):"]
    lines += [f"  {name}: {m['summary']}; {m['bits']}-bit, {m['node']}" for name, m in report["models"].items()]
    return "\n".join(lines) + "\n"


def to_markdown(report: dict, plots: list[str]) -> str:
    header, rows = _table(report)
    lines = [f"# Energy report: {report['model']}", "", _provenance(report), "", "## Totals", ""]
    lines += [f"- {line}" for line in _totals(report)]
    lines += ["", "## Per layer (per sample, averaged over the data)", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    lines += ["", "## Energy models", ""]
    for name, m in report["models"].items():
        lines += [f"### {name}", "", f"{m['summary']} ({m['bits']}-bit, {m['node']}).", ""]
        lines += [f"- `{k}` = {c['value']:g} {c['unit']}: {c['what']} ({c['source']})"
                  for k, c in m["constants"].items()]
        lines += [f"- {note}" for note in m["notes"]] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p[:-4]}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def check_report_dir(out_dir: str) -> None:
    """Refuse an output directory whose replacement would delete files that are not a spikec report."""
    out_dir = os.path.abspath(out_dir)
    if not os.path.lexists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise InputError(f"{out_dir} exists and is not a directory; choose another output directory")
    if os.path.commonpath([os.getcwd(), out_dir]) == out_dir:
        raise InputError(f"{out_dir} is the working directory or holds it; write the report to a new directory")
    entries = sorted(os.listdir(out_dir))
    if not entries:
        return
    try:
        with open(os.path.join(out_dir, "report.json")) as f:
            previous = json.load(f).get("format") == "spikec.report"
    except (OSError, ValueError, AttributeError):
        previous = False
    extra = [e for e in entries if e not in REPORT_FILES]
    if not previous or extra:
        shown = ", ".join((extra or entries)[:3])
        raise InputError(f"{out_dir} already exists and holds files that are not a spikec report ({shown}); "
                         "writing would delete them: choose another output directory")


def write_outputs(report: dict, out_dir: str, fmt: str, raster=None, raster_of=None) -> str:
    """Write report.json, the PNGs and, for text or markdown, report.txt or report.md into ``out_dir``:
    everything goes to a temporary directory beside it, renamed into place only when complete. Returns
    the form ``fmt`` asks for, to print; ``report`` gains the list of ``plots`` written."""
    out_dir = os.path.abspath(out_dir)
    check_report_dir(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".spikec-report-", dir=parent)
    try:
        plots = write_plots(report, staging, raster, raster_of)
        report["plots"] = plots
        text = json.dumps(report, indent=1, sort_keys=True) + "\n"
        with open(os.path.join(staging, "report.json"), "w") as f:
            f.write(text)
        if fmt != "json":
            text = to_markdown(report, plots) if fmt == "markdown" else to_text(report)
            with open(os.path.join(staging, "report.md" if fmt == "markdown" else "report.txt"), "w") as f:
                f.write(text)
        os.chmod(staging, 0o777 & ~current_umask())
        if os.path.isdir(out_dir):      # the previous report moves aside until the new one is in place
            previous = tempfile.mkdtemp(prefix=".spikec-report-old-", dir=parent)
            os.rmdir(previous)
            os.replace(out_dir, previous)
            os.replace(staging, out_dir)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return text
