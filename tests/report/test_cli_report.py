"""`spikec report` from the command line: rows for every weight op and attention product, the four models'
totals, the PNGs, the schema; exit 2 with one line for bad input; nothing half-written on failure."""

from __future__ import annotations

import json
import os
from importlib import resources

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from spikec.cli import main
from spikec.reporting import MODEL_NAMES

pytestmark = pytest.mark.core

TINY = '{"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 8, "in_channels": 1, "T": 2}'
DIGITS = "examples/digits/checkpoints"
SCHEMA = json.loads(resources.files("spikec.schemas").joinpath("report.schema.json").read_text())


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def model(arch):
    return ["--arch", arch, "--model-args", TINY]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.random.default_rng(0).uniform(0, 1, (5, 1, 8, 8)).astype(np.float32))
    return path


def _ops(report, kind=None):
    return [row["op"] for row in report["layers"] if kind is None or row["kind"] == kind]


@pytest.mark.parametrize("arch, products", [("spikingformer-cifar", ["matmul", "matmul"]),
                                            ("spikformer-cifar", ["matmul", "matmul"]),
                                            ("sdt-cifar", ["mul", "mul"])])
def test_json_report_has_every_weight_op_and_attention_product(tmp_path, data, arch, products):
    out = tmp_path / "r"
    code, stdout, err = run("report", *model(arch), "--data", data, "-o", out, "--format", "json")
    assert code == 0, err
    report = json.loads(stdout)
    jsonschema.validate(report, SCHEMA)
    assert report == json.loads((out / "report.json").read_text())
    assert _ops(report, "product") == products
    if arch == "sdt-cifar":
        assert "sum" in _ops(report, "reduction")
    weight_ops = sum(1 for line in (out / "report.json").read_text().splitlines() if '"kind": "weight"' in line)
    assert weight_ops == len(_ops(report, "weight")) > 5
    assert set(report["totals"]["energy_mj"]) == set(MODEL_NAMES)
    assert all(e > 0 for e in report["totals"]["energy_mj"].values())
    assert sorted(os.listdir(out)) == ["energy_per_layer.png", "firing_rates.png", "quantization_error.png",
                                       "raster.png", "report.json"]
    assert report["provenance"]["samples"] == 5 and report["provenance"]["T"] == 2
    assert all(row["file"] and row["line"] for row in report["layers"])


def test_digits_checkpoints_report_and_the_paper_method(tmp_path):
    """The trained Spikformer and Spikingformer: the paper method charges only the encoding conv (and the
    graded readout) as MACs; Spikingformer's spike-driven blocks read spikes only."""
    reports = {}
    for name in ("spikformer-cifar", "spikingformer-cifar"):
        code, stdout, err = run("report", f"{DIGITS}/{name}.pt", "--data", "digits", "--limit", "8", "-o",
                                tmp_path / name, "--format", "json")
        assert code == 0, err
        reports[name] = json.loads(stdout)
    spikingformer = reports["spikingformer-cifar"]
    domains = {row["module"]: row["domain"] for row in spikingformer["layers"] if row["kind"] == "weight"}
    assert domains.pop("patch_embed.block0_conv") == "analog" and domains.pop("head") == "graded"
    assert set(domains.values()) == {"spike"}
    graded = [r for r in reports["spikformer-cifar"]["layers"] if r["kind"] == "weight" and r["domain"] == "graded"]
    assert len(graded) > 1 and all(r["macs"] == r["T"] * r["flops"] for r in graded)


def test_sew_as_ac_charges_graded_inputs_as_accumulates(tmp_path, data):
    code, stdout, err = run("report", *model("spikformer-cifar"), "--data", data, "-o", tmp_path / "r",
                            "--format", "json", "--sew-as-ac")
    assert code == 0, err
    report = json.loads(stdout)
    graded = [r for r in report["layers"] if r["kind"] == "weight" and r["domain"] == "graded"]
    assert graded and all(r["macs"] == 0 and r["energy_pj"]["paper"] == pytest.approx(0.9 * r["sops"])
                          for r in graded)
    assert report["provenance"]["sew_as_ac"] is True


def test_loihi2_artifact_report_has_a_runtime_bound_and_markdown(tmp_path, data):
    artifact = tmp_path / "a"
    assert run("compile", *model("spikingformer-cifar"), "--target", "loihi2", "-o", artifact)[0] == 0
    out = tmp_path / "r"
    code, stdout, err = run("report", artifact, "--data", data, "-o", out, "--format", "markdown", "--raster",
                            "block.0.attn.q_lif", "--raster-sample", "4")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    runtime = report["loihi_runtime"]
    assert runtime["step_ns"] > 0 and runtime["neuro_cores"] >= 1
    assert (out / "report.md").read_text() == stdout
    for png in report["plots"]:
        assert f"![{png[:-4]}]({png})" in stdout and (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Intel publishes no per-operation energy for Loihi 2" in stdout


def test_float_backend_reports_an_uncompiled_model(tmp_path, data):
    code, stdout, err = run("report", *model("spikingformer-cifar"), "--data", data, "-o", tmp_path / "r",
                            "--backend", "float")
    assert code == 0, err
    assert "conv2d" in stdout and "qconv2d" not in stdout
    assert "quantization_error.png" not in os.listdir(tmp_path / "r")


GOOD = ["--arch", "spikingformer-cifar", "--model-args", TINY]


@pytest.mark.parametrize("args, message", [
    ([*GOOD, "--data", "missing.npz"], "missing.npz: no such file"),
    (["--arch", "no-such-arch", "--data", "DATA"], "no-such-arch"),
    ([f"{DIGITS}/missing.pt", "--data", "digits"], "missing.pt"),
    ([*GOOD, "--data", "DATA", "--raster", "block.9.nothing"], "--raster 'block.9.nothing' is not a neuron group"),
    ([*GOOD, "--data", "DATA", "--raster-sample", "99"], "--raster-sample 99 is past the last of the 5 samples"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, data, args, message):
    code, _, err = run("report", *[str(data) if a == "DATA" else a for a in args], "-o", tmp_path / "r")
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("spikec: error: ") and message in err
    assert not (tmp_path / "r").exists()


def test_float_backend_of_an_artifact_is_refused(tmp_path, data):
    artifact = tmp_path / "a"
    assert run("compile", *model("spikingformer-cifar"), "-o", artifact)[0] == 0
    code, _, err = run("report", artifact, "--data", data, "--backend", "float", "-o", tmp_path / "r")
    assert code == 2 and "the float backend needs the model itself" in err


def test_an_output_dir_of_other_files_is_refused(tmp_path, data):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    code, _, err = run("report", *model("spikingformer-cifar"), "--data", data, "-o", tmp_path / "r")
    assert code == 2 and "not a spikec report" in err
    assert (tmp_path / "r" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("failure, code", [(KeyboardInterrupt, 130), (RuntimeError, 3)])
def test_a_failed_report_leaves_nothing_half_written(tmp_path, data, monkeypatch, failure, code):
    out = tmp_path / "out" / "r"
    assert run("report", *model("spikingformer-cifar"), "--data", data, "-o", out)[0] == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    def fail_midway(report, directory, *args):
        with open(os.path.join(directory, "firing_rates.png"), "wb") as f:
            f.write(b"partial")
        raise failure("stop")

    monkeypatch.setattr("spikec.reporting.output.write_plots", fail_midway)
    got, _, err = run("report", *model("spikingformer-cifar"), "--data", data, "-o", out, "--limit", "2")
    assert got == code, err
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert os.listdir(tmp_path / "out") == ["r"]


def test_the_python_api_takes_an_array_and_a_module_source(tmp_path):
    import spikec
    from spikec.errors import InputError
    from spikec.frontends.torch import ModelSource

    x = np.random.default_rng(1).uniform(0, 1, (7, 1, 8, 8)).astype(np.float32)
    source = ModelSource(arch="sdt-cifar", model_args=json.loads(TINY))
    report = spikec.report(source, x, str(tmp_path / "r"), fmt="text", limit=3, raster="block.0.attn.v_lif")
    jsonschema.validate(report, SCHEMA)
    assert report["provenance"]["samples"] == 3 and report["provenance"]["data"] == "array"
    assert "raster.png" in report["plots"] and (tmp_path / "r" / "report.txt").read_text().startswith("sdt_cifar")
    with pytest.raises(InputError, match="needs a batch axis"):
        spikec.report(source, np.float32(1.0), str(tmp_path / "s"))


def test_a_previous_report_is_replaced_whole(tmp_path, data):
    out = tmp_path / "out" / "r"
    assert run("report", *model("spikingformer-cifar"), "--data", data, "-o", out, "--format", "markdown")[0] == 0
    assert "report.md" in os.listdir(out)
    assert run("report", *model("spikingformer-cifar"), "--data", data, "-o", out, "--limit", "3")[0] == 0
    assert "report.md" not in os.listdir(out) and "report.txt" in os.listdir(out)
    assert json.loads((out / "report.json").read_text())["provenance"]["samples"] == 3
    assert os.listdir(tmp_path / "out") == ["r"]
