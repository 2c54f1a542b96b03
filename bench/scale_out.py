"""Wall time of ``spikec simulate`` on one worker, on local worker processes and on Ray actors, in one process,
with the check that every run's report equals the one-worker report (timings aside).

Two runs of the digits Spikingformer: torch and intsim on the whole test split (the model compiled by each
worker), and the loihi2 artifact on Lava with ``--compare intsim`` on the first ``--lava-samples`` samples. Each
row gives the wall time (worker start and model build included) and its ratio to one worker.

    .venv/bin/python bench/scale_out.py [--workers 2] [--lava-samples 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from spikec.api import compile_source  # noqa: E402
from spikec.datasets import open_data  # noqa: E402
from spikec.engines import Engine  # noqa: E402
from spikec.frontends.torch import ModelSource  # noqa: E402
from spikec.simulation import SimulationPlan  # noqa: E402

CHECKPOINT = os.path.join(REPO, "examples", "digits", "checkpoints", "spikingformer-cifar.pt")


def _without_timings(report) -> dict:
    result = report.to_json()
    for backend in result["backends"].values():
        backend.pop("seconds")
    return result


def _rows(label: str, make_plan, data, engines, **run) -> list[str]:
    rows, reference, baseline = [], None, None
    for engine in engines:
        start = time.perf_counter()
        report = make_plan().run(data, engine=engine, **run)
        seconds = time.perf_counter() - start
        reference = reference or _without_timings(report)
        baseline = baseline or seconds
        same = _without_timings(report) == reference
        rows.append(f"{label:34} {engine.kind:5} {engine.workers:2} workers  {seconds:7.2f} s  "
                    f"{seconds / baseline:5.2f}x  same report: {same}")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lava-samples", type=int, default=128)
    args = parser.parse_args(argv)
    engines = [Engine(), Engine("local", args.workers), Engine("ray", args.workers)]
    source = ModelSource(checkpoint=CHECKPOINT)
    digits = open_data("digits", "B")
    rows = _rows("torch+intsim, digits test split", lambda: SimulationPlan.of(source, digits, input_exp=4),
                 digits, engines, backends=["torch", "intsim"])
    with tempfile.TemporaryDirectory() as tmp:
        _, compiled = compile_source(source, target="loihi2", input_exp=4)
        compiled.write(os.path.join(tmp, "artifact"))
        subset = open_data("digits", "B", args.lava_samples)
        rows += _rows(f"lava vs intsim, {args.lava_samples} samples",
                      lambda: SimulationPlan.of(os.path.join(tmp, "artifact")), subset, engines,
                      backends=["lava"], compare="intsim")
    print(f"{os.cpu_count()} cores")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
