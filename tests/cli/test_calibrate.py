"""`--calibrate` and `--data` of `spikec compile` and `spikec simulate`: the chosen input exponent and why in
manifest.json, byte-identical artifacts for identical inputs, `--input-exp` as the override, and the per-layer
fidelity report of `spikec simulate`."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from spikec.cli import main

TINY = '{"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 8, "in_channels": 1, "T": 2}'
MODEL = ["--arch", "spikingformer-cifar", "--model-args", TINY]
CHECKPOINT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "digits", "checkpoints",
                          "spikformer-cifar.pt")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def grid_data(tmp_path):
    """Pixels k/16, as scikit-learn's digits: exact at 2**-4."""
    rng = np.random.default_rng(0)
    path = tmp_path / "grid.npz"
    np.savez(path, x=(rng.integers(0, 17, (12, 1, 8, 8)) / 16).astype(np.float32), y=rng.integers(0, 10, 12))
    return path


def _quantization(out) -> dict:
    return json.loads((out / "manifest.json").read_text())["quantization"]


def test_compile_calibrates_on_data_and_records_why(tmp_path, grid_data):
    code, _, err = run("compile", *MODEL, "--data", grid_data, "--calibrate", 8, "-o", tmp_path / "a")
    assert code == 0, err
    q = _quantization(tmp_path / "a")
    cal = q["calibration"]
    assert cal["samples"] == 8 and cal["source"] == str(grid_data) and q["input_exp"] == cal["input_exp"]
    assert cal["input_exp"] >= 4 and [c["input_exp"] for c in cal["candidates"]] == list(range(8, -1, -1))
    assert all((c["input_error"] == 0) == (c["input_exp"] >= 4) for c in cal["candidates"])
    assert f"calibrated input exponent: {cal['why']}" in err


@pytest.mark.parametrize("data", ["grid", None])
def test_calibrated_artifacts_are_byte_identical(tmp_path, grid_data, data):
    # a trained checkpoint: a zoo model's random weights are drawn anew by each build in one process
    args = ["--data", grid_data] if data else []
    for out in ("a", "b"):
        code, _, err = run("compile", CHECKPOINT, *args, "-o", tmp_path / out)
        assert code == 0, err
    for name in os.listdir(tmp_path / "a"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_input_exp_overrides_calibration_and_calibrate_0_turns_it_off(tmp_path):
    assert run("compile", *MODEL, "--input-exp", 7, "-o", tmp_path / "a")[0] == 0
    assert _quantization(tmp_path / "a")["input_exp"] == 7 and _quantization(tmp_path / "a")["calibration"] is None
    assert run("compile", *MODEL, "--calibrate", 0, "-o", tmp_path / "b")[0] == 0
    assert _quantization(tmp_path / "b")["input_exp"] == 8 and _quantization(tmp_path / "b")["calibration"] is None
    assert run("compile", *MODEL, "-o", tmp_path / "c")[0] == 0
    assert _quantization(tmp_path / "c")["calibration"]["source"] == "random"


def test_calibrate_and_input_exp_exclude_each_other(tmp_path):
    code, _, err = run("compile", *MODEL, "--input-exp", 4, "--calibrate", 8, "-o", tmp_path / "a")
    assert code == 2 and err.count("\n") == 1 and "--input-exp and --calibrate exclude each other" in err
    assert not os.path.exists(tmp_path / "a")


def test_simulate_reports_fidelity_per_layer(grid_data):
    code, out, err = run("simulate", *MODEL, "--data", grid_data, "--backend", "torch,intsim", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    fidelity = report["fidelity"]
    assert fidelity["reference"] == "float/intsim" and fidelity["agreement_floor"] == 0.99
    assert [row["module"] for row in fidelity["weight_error"]][0] == "patch_embed.block0_conv"
    agreements = [layer["agreement"]["float/intsim"] for layer in report["layers"]]
    below = [i for i, a in enumerate(agreements) if a < 0.99]
    first = fidelity["first_below"]
    if below:
        assert first["index"] == below[0] and first["agreement"] == agreements[below[0]]
        assert first["source"].startswith("spikec/models/spikingformer.py:")
    else:
        assert first is None
    code, text, _ = run("simulate", *MODEL, "--data", grid_data, "--backend", "float,intsim")
    assert "weight quantization error per synapse group" in text and "patch_embed.block0_conv" in text


def test_weights_that_all_quantize_to_zero_fail_the_compile_naming_the_layer(tmp_path):
    # Pixels in [0, 255] at 2**-16 leave no room in the conv's 24-bit sums for a finer sum, nor for a weight of 2.
    code, _, err = run("compile", CHECKPOINT, "--input-exp", 16, "--input-range", "0,255", "-o", tmp_path / "a")
    assert code == 2 and err.count("\n") == 1 and not os.path.exists(tmp_path / "a")
    assert "conv2d in patch_embed.proj_conv (spikec/models/spikformer.py:" in err
    assert "every weight quantizes to 0" in err


@pytest.mark.parametrize("checkpoint", ["spikingformer-cifar", "spikformer-cifar", "sdt-cifar"])
def test_default_options_keep_every_digits_checkpoint_within_half_a_point_of_float(checkpoint):
    """`spikec simulate CHECKPOINT --backend torch,intsim` with no quantization option, on the digits test split
    (450 images): intsim's accuracy stays within 0.5 points of PyTorch's."""
    path = os.path.join(os.path.dirname(CHECKPOINT), f"{checkpoint}.pt")
    code, out, err = run("simulate", path, "--backend", "torch,intsim", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    accuracy = {name: backend["accuracy"] for name, backend in report["backends"].items()}
    assert report["samples"] == 450
    assert accuracy["intsim"] >= accuracy["torch"] - 0.005, accuracy
