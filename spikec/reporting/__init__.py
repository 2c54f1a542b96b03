"""``spikec report``: SOPs, firing rates and energy per layer under named energy models, with plots
(docs/report.md).

:func:`report` runs data through a model or an artifact (the compiled integer graph on intsim, or the
traced float graph with ``backend="float"``), counts every weight op, attention product, sum and neuron
update (:mod:`.counts`), charges them under each energy model (:mod:`.models`) and writes report.json,
the PNGs and the text or markdown form into an output directory, atomically (:mod:`.output`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spikec.engines import Engine
from spikec.errors import InputError
from spikec.reporting.build import BACKENDS, FORMAT_VERSION, Subject, make_report, measure, subject_of
from spikec.reporting.models import MODEL_NAMES, MODELS
from spikec.reporting.output import check_report_dir, to_markdown, to_text, write_outputs

__all__ = ["report", "ReportOptions", "load_report_data", "FORMATS", "BACKENDS", "FORMAT_VERSION", "MODELS",
           "MODEL_NAMES", "Subject", "subject_of", "measure", "make_report", "to_text", "to_markdown"]

FORMATS = ("text", "json", "markdown")


def load_report_data(data, layout: str, limit: int | None = None):
    """``--data`` (:func:`spikec.datasets.open_data`) or an array of inputs; returns the data set (a
    :class:`~spikec.datasets.Dataset`) and its name for the provenance."""
    from spikec.datasets import ArrayDataset, open_data
    from spikec.simulation import batch_axis

    if isinstance(data, str):
        return open_data(data, layout, limit), data
    x, axis = np.asarray(data), batch_axis(layout)
    if x.ndim <= axis:
        raise InputError(f"the data's x has shape {list(x.shape)}: it needs a batch axis {axis} "
                         f"(input layout {layout})")
    return ArrayDataset(x, None, layout, limit), "array"


def _raster_of(subject: Subject, module: str | None, sample: int) -> tuple[str, int] | None:
    """The neuron group (by module path) whose spikes the raster shows: ``module``, else the first one."""
    from spikec.reporting.counts import counted_sites

    groups = [n.node.module for n in counted_sites(subject.graph)[1]]
    if module is None:
        return (groups[0], sample) if groups else None
    if module not in groups:
        shown = ", ".join(groups[:6]) + (" ..." if len(groups) > 6 else "")
        raise InputError(f"--raster {module!r} is not a neuron group of {subject.name}; neuron groups: {shown}")
    return module, sample


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """How to measure and what to write. ``fmt``: also write report.txt (text) or report.md (markdown,
    embedding the PNGs); ``backend``: intsim or float; ``limit``: the first N samples; ``sew_as_ac``: charge
    weight ops on graded input as accumulates; ``raster``: the neuron group (module path) of the spike
    raster, for sample ``raster_sample``; ``engine``: where the samples run (:class:`spikec.engines.Engine`)."""

    fmt: str = "json"
    backend: str = "intsim"
    limit: int | None = None
    sew_as_ac: bool = False
    raster: str | None = None
    raster_sample: int = 0
    batch_size: int = 64
    engine: Engine = Engine()


def report(model, data, out_dir: str, options: ReportOptions = ReportOptions(), progress=None,
           compile_options: dict | None = None) -> dict:
    """Measure ``model`` on ``data`` and write the report into ``out_dir``; returns the report's JSON.

    ``model``: an artifact directory, a checkpoint path, a :class:`~spikec.frontends.torch.ModelSource`, or
    a compiled model. ``data``: ``"digits"``, a ``.npz`` path, or an array of inputs stacked along the batch
    axis. ``progress(done, total)`` is called as samples finish. ``compile_options``: those of
    :func:`spikec.compile`, when a model is compiled here."""
    if options.fmt not in FORMATS:
        raise InputError(f"unknown format {options.fmt!r}; choose one of {', '.join(FORMATS)}")
    check_report_dir(out_dir)
    subject = subject_of(model, options.backend, **(compile_options or {}))
    x, name = load_report_data(data, subject.layout, options.limit)
    raster_of = _raster_of(subject, options.raster, options.raster_sample)
    activity = measure(subject, x, options.batch_size, raster_of, progress, options.engine)
    result = make_report(subject, activity, name, options.sew_as_ac)
    write_outputs(result, out_dir, options.fmt, activity.raster, raster_of)
    return result
