"""The report's PNGs, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["write_plots", "PLOT_FILES"]

PLOT_FILES = {"rates": "firing_rates.png", "raster": "raster.png", "energy": "energy_per_layer.png",
              "quantization": "quantization_error.png"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _label(row: dict) -> str:
    return f"{row['module'] or '-'} ({row['op']})"


def _rates(plt, report: dict, path: str) -> None:
    neurons = report["neurons"]
    T = max(len(n["rate_per_step"]) for n in neurons)
    grid = np.full((len(neurons), T), np.nan)
    for i, n in enumerate(neurons):
        grid[i, :len(n["rate_per_step"])] = n["rate_per_step"]
    fig, ax = plt.subplots(figsize=(2.5 + 0.6 * T, 1.2 + 0.28 * len(neurons)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
    ax.set_yticks(range(len(neurons)), [n["module"] or "-" for n in neurons], fontsize=7)
    ax.set_xticks(range(T), [str(t) for t in range(T)])
    ax.set_xlabel("time step")
    ax.set_title(f"{report['model']}: firing rate per neuron group and step", fontsize=9)
    fig.colorbar(image, ax=ax, label="spikes per neuron")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _raster(plt, raster: np.ndarray, module: str, sample: int, path: str) -> None:
    T, n = raster.shape
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.35 * T))
    steps, cells = np.nonzero(raster)
    ax.scatter(cells, steps, marker="|", s=60, color="black", linewidths=0.8)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(T - 0.5, -0.5)
    ax.set_yticks(range(T))
    ax.set_xlabel("neuron (flattened)")
    ax.set_ylabel("time step")
    ax.set_title(f"spike raster of {module}, sample {sample} ({int(raster.sum())} spikes)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _energy(plt, report: dict, path: str) -> None:
    rows = report["layers"] + report["neurons"]
    models = list(report["models"])
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.3 * len(rows)))
    y = np.arange(len(rows))
    for i, model in enumerate(models):
        values = [row["energy_pj"][model] or np.nan for row in rows]   # a model that charges nothing: no bar
        ax.barh(y + i * width, values, height=width, label=model)
    ax.set_yticks(y + 0.4 - width / 2, [_label(r) for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("energy per sample (pJ, log scale)")
    ax.set_title(f"{report['model']}: energy per layer by model", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _quantization(plt, report: dict, path: str) -> None:
    layers = report["quantization_error"]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * len(layers)))
    ax.barh(range(len(layers)), [100 * layer["relative_error"] for layer in layers], color="tab:red")
    ax.set_yticks(range(len(layers)), [layer["module"] for layer in layers], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("relative weight quantization error (%)")
    ax.set_title(f"{report['model']}: weight quantization error per layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(report: dict, out_dir: str, raster: np.ndarray | None = None,
                raster_of: tuple[str, int] | None = None) -> list[str]:
    """Draw every plot the report has data for into ``out_dir``; returns the file names written."""
    plt = _pyplot()
    written = []
    if report["neurons"]:
        _rates(plt, report, os.path.join(out_dir, PLOT_FILES["rates"]))
        written.append(PLOT_FILES["rates"])
    if raster is not None and raster_of is not None:
        _raster(plt, raster, raster_of[0], raster_of[1], os.path.join(out_dir, PLOT_FILES["raster"]))
        written.append(PLOT_FILES["raster"])
    if report["layers"] or report["neurons"]:
        _energy(plt, report, os.path.join(out_dir, PLOT_FILES["energy"]))
        written.append(PLOT_FILES["energy"])
    if report["quantization_error"]:
        _quantization(plt, report, os.path.join(out_dir, PLOT_FILES["quantization"]))
        written.append(PLOT_FILES["quantization"])
    return written
