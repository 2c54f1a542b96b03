"""`spikec simulate` and `spikec report` give the same numbers on any engine and number of workers (timings aside),
read data larger than memory shard by shard or memory-mapped, and leave no output file or worker behind when
stopped (docs/scale-out.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from spikec.cli import main
from spikec.datasets import load_digits_split

DIGITS_MODEL = "examples/digits/checkpoints/spikingformer-cifar.pt"


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _without_timings(report: dict) -> dict:
    for backend in report["backends"].values():
        backend.pop("seconds")
    return report


def _simulate(*args) -> dict:
    code, out, err = run("simulate", *args, "--format", "json")
    assert code == 0, err
    return _without_timings(json.loads(out))


@pytest.fixture(scope="module")
def loihi2_artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "digits"
    code, _, err = run("compile", DIGITS_MODEL, "--input-exp", "4", "--target", "loihi2", "-o", out)
    assert code == 0, err
    return out


@pytest.mark.ray
def test_simulate_gives_the_same_report_on_every_engine_and_worker_count():
    """The digits test split, torch and intsim: accuracy, predictions, agreement, per-layer spike agreement and
    fidelity equal key for key with 1 worker, 2 local processes and 2 Ray actors."""
    args = (DIGITS_MODEL, "--input-exp", "4", "--backend", "torch,intsim")
    one = _simulate(*args)
    assert one["samples"] == 450 and one["backends"]["intsim"]["accuracy"] > 0.9
    assert _simulate(*args, "--engine", "local", "--workers", "2") == one
    assert _simulate(*args, "--engine", "ray", "--workers", "2") == one


@pytest.mark.slow
@pytest.mark.lava
def test_lava_stays_bit_exact_with_intsim_on_two_workers(loihi2_artifact):
    args = (loihi2_artifact, "--backend", "lava", "--compare", "intsim", "--limit", "16", "--batch-size", "8")
    one = _simulate(*args)
    assert one["bit_exact"] == {"intsim/lava": True}
    assert _simulate(*args, "--workers", "2") == one


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.ray
def test_lava_stays_bit_exact_with_intsim_on_ray(loihi2_artifact):
    args = (loihi2_artifact, "--backend", "lava", "--compare", "intsim", "--limit", "64", "--batch-size", "16")
    one = _simulate(*args)
    assert one["bit_exact"] == {"intsim/lava": True}
    assert _simulate(*args, "--engine", "ray", "--workers", "2") == one


def test_report_is_the_same_on_two_workers(tmp_path):
    reports = []
    for workers in ("1", "2"):
        out = tmp_path / f"r{workers}"
        code, _, err = run("report", DIGITS_MODEL, "--data", "digits", "--limit", "200", "--batch-size", "32",
                           "--raster-sample", "150", "--workers", workers, "-o", out, "--format", "json")
        assert code == 0, err
        reports.append(json.loads((out / "report.json").read_text()))
        assert (out / "raster.png").stat().st_size > 0
    assert reports[0]["totals"]["spikes"] > 0
    assert reports[1] == reports[0]


def _digits_as(tmp_path, form: str) -> str:
    x, y = load_digits_split("test")
    if form == "shards":
        os.mkdir(tmp_path / "shards")
        for i, start in enumerate(range(0, 450, 100)):      # shard boundaries that are not batch boundaries
            np.savez(tmp_path / "shards" / f"part-{i:03}.npz", x=x[start:start + 100], y=y[start:start + 100])
        return str(tmp_path / "shards")
    os.mkdir(tmp_path / "memmap")
    np.save(tmp_path / "memmap" / "x.npy", x)
    np.save(tmp_path / "memmap" / "y.npy", y)
    return str(tmp_path / "memmap")


@pytest.fixture(scope="module")
def whole_split_report(loihi2_artifact):
    return _simulate(loihi2_artifact, "--batch-size", "64")


@pytest.mark.parametrize("form, workers", [("shards", "2"), ("memmap", "1")])
def test_data_read_by_index_gives_the_report_of_the_data_read_whole(tmp_path, loihi2_artifact, whole_split_report,
                                                                     form, workers):
    data = _digits_as(tmp_path, form)
    assert _simulate(loihi2_artifact, "--data", data, "--batch-size", "64", "--workers", workers) == \
        whole_split_report


def test_an_npy_without_labels_reports_no_accuracy(tmp_path, loihi2_artifact):
    np.save(tmp_path / "x.npy", load_digits_split("test")[0][:10])
    report = _simulate(loihi2_artifact, "--data", tmp_path / "x.npy")
    assert report["samples"] == 10 and report["backends"]["intsim"]["accuracy"] is None


def test_simulate_writes_its_output_file_whole(tmp_path, loihi2_artifact):
    out = tmp_path / "report.json"
    code, stdout, err = run("simulate", loihi2_artifact, "--limit", "5", "--format", "json", "-o", out)
    assert code == 0, err
    assert out.read_text() == stdout and json.loads(stdout)["samples"] == 5
    assert os.listdir(tmp_path) == ["report.json"]


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.lava
def test_a_stopped_run_leaves_no_output_file_and_no_worker(tmp_path, loihi2_artifact):
    """SIGTERM while two workers run Lava shards: exit 143, no output file (not even a part), no process left."""
    marker = f"SPIKEC_TEST_RUN={os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    out = tmp_path / "out.json"
    process = subprocess.Popen([sys.executable, "-m", "spikec", "simulate", str(loihi2_artifact), "--backend", "lava",
                                "--limit", "64", "--batch-size", "8", "--workers", "2", "-o", str(out)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_processes_with(marker)) < 3 and time.monotonic() < deadline:    # the driver and its two workers
        time.sleep(0.2)
    time.sleep(3)                                                               # the workers are running shards
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    assert os.listdir(tmp_path) == []
    deadline = time.monotonic() + 15
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []


def test_without_ray_the_ray_engine_is_one_clear_error(tmp_path):
    """Ray is an extra: where it is missing (here an importable ``ray`` that fails as a missing one does),
    --engine ray says how to install it, in one line, exit 2."""
    shim = tmp_path / "ray"
    shim.mkdir()
    (shim / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "spikec", "simulate", DIGITS_MODEL, "--limit", "4", "--engine",
                             "ray", "--workers", "2"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == \
        "spikec: error: --engine ray needs Ray: pip install 'spikec[distributed]'"


@pytest.mark.parametrize("args, message", [
    (["--address", "10.0.0.1:6379"], "--address names a Ray cluster: it needs --engine ray"),
    pytest.param(["--engine", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1",
                 marks=pytest.mark.ray),
])
def test_engine_misuse_is_one_line(args, message):
    code, _, err = run("simulate", DIGITS_MODEL, "--limit", "4", *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
