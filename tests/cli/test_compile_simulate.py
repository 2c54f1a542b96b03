"""`spikec compile` and `spikec simulate` from the command line: artifacts, reports, and exit code 2 with
one line for every bad input, with nothing written when a compile fails."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from spikec.cli import main

pytestmark = pytest.mark.core

TINY = '{"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 8, "in_channels": 1, "T": 2}'
MODEL = ["--arch", "spikingformer-cifar", "--model-args", TINY]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.uniform(0, 1, (10, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 10))
    return path


def test_compile_writes_an_artifact_and_says_so(tmp_path):
    code, out, err = run("compile", *MODEL, "-o", tmp_path / "a")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "a")) == ["manifest.json", "model.ir", "weights.npz"]
    assert err.startswith("compiled spikingformer_cifar for intsim: ")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["input_shape"] == [1, 1, 8, 8] and manifest["timesteps"] == 2
    assert {layer["accumulation"] for layer in manifest["ranges"] if "accumulation" in layer} <= {"float32", "float64",
                                                                                                  "int64"}


def test_a_failing_compile_leaves_no_directory(tmp_path):
    code, _, err = run("compile", *MODEL, "--input-shape", "1,3,8,8", "-o", tmp_path / "a")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("spikec: error: the model failed on an input of shape [1, 3, 8, 8]: ")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("target", ["scratch", "."])
def test_compile_refuses_to_replace_the_users_files(tmp_path, monkeypatch, target):
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "scratch" if target == "." else tmp_path)
    code, _, err = run("compile", *MODEL, "-o", target)
    assert code == 2 and err.count("\n") == 1 and err.startswith("spikec: error: ")
    assert sorted(os.listdir(tmp_path)) == ["scratch"] and os.listdir(tmp_path / "scratch") == ["notes.txt"]
    assert (tmp_path / "scratch" / "notes.txt").read_text() == "mine"


def test_compile_force_replaces_a_directory(tmp_path):
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "notes.txt").write_text("mine")
    code, _, err = run("compile", *MODEL, "-o", tmp_path / "scratch", "--force")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "scratch")) == ["manifest.json", "model.ir", "weights.npz"]


def test_simulate_compares_backends_as_json(data):
    code, out, err = run("simulate", *MODEL, "--backend", "torch,float,intsim", "--data", data, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["version"] == 1 and report["samples"] == 10
    assert set(report["backends"]) == {"torch", "float", "intsim"}
    assert set(report["backends"]["intsim"]) == {"accuracy", "samples", "seconds"}
    assert set(report["agreement"]) == {"torch/float", "torch/intsim", "float/intsim"}
    assert report["agreement"]["torch/float"] == 1.0
    assert [layer["module"] for layer in report["layers"]][:2] == ["patch_embed.block1_lif", "patch_embed.block2_lif"]


def test_simulate_runs_an_artifact_on_intsim(tmp_path, data):
    assert run("compile", *MODEL, "-o", tmp_path / "a")[0] == 0
    code, out, err = run("simulate", tmp_path / "a", "--backend", "intsim", "--data", data)
    assert code == 0, err
    assert out.startswith("model spikingformer_cifar: 10 samples\n  intsim  accuracy")


@pytest.mark.parametrize("args, message", [
    (["--backend", "torch,lava"], "the lava backend runs an artifact compiled with --target loihi2: run `spikec "
                                  "compile MODEL --target loihi2 -o OUT`, then `spikec simulate OUT --backend lava`"),
    (["--backend", "torch,torch"], "backends must be distinct names from torch, float, intsim, onnxruntime, got "
                                   "torch,torch"),
    (["--backend", "torch,onnx"], "unknown backend 'onnx'; backends: torch, float, intsim, lava, onnxruntime"),
])
def test_bad_backend_lists(data, args, message):
    code, _, err = run("simulate", *MODEL, "--data", data, *args)
    assert code == 2 and err == f"spikec: error: {message}\n"


def test_data_of_the_wrong_shape(tmp_path):
    path = tmp_path / "wrong.npz"
    np.savez(path, x=np.zeros((4, 3, 8, 8), np.float32))
    code, _, err = run("simulate", *MODEL, "--data", path)
    assert code == 2
    assert err == ("spikec: error: the data's x has shape [4, 3, 8, 8] but spikingformer_cifar takes [N, 1, 8, 8] "
                   "(N samples along the batch axis of input layout B)\n")


def test_an_artifact_cannot_run_on_torch(tmp_path, data):
    run("compile", *MODEL, "-o", tmp_path / "a")
    code, _, err = run("simulate", tmp_path / "a", "--backend", "torch,intsim", "--data", data)
    assert code == 2
    assert err == ("spikec: error: spikingformer_cifar is a compiled artifact: it runs on intsim and onnxruntime only "
                   "(torch needs the PyTorch model: simulate the model itself)\n")


def test_a_zoo_architecture_without_weights_compiles_to_the_same_bytes_in_every_process(tmp_path):
    # --arch without --weights initialises random weights from a fixed seed, so two runs (two processes, each
    # with its own fresh random state) write identical artifacts.
    import subprocess
    import sys

    args = ["compile", "--arch", "spikformer-cifar", "--model-args",
            '{"depth": 1, "embed_dim": 16, "num_heads": 2, "img_size": 8}']
    for name in ("first", "second"):
        subprocess.run([sys.executable, "-m", "spikec", *args, "-o", str(tmp_path / name)], check=True,
                       capture_output=True)
    for file in ("manifest.json", "model.ir", "weights.npz"):
        assert (tmp_path / "first" / file).read_bytes() == (tmp_path / "second" / file).read_bytes(), file
