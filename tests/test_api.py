"""The Python API and the command line are one implementation: on every trained digits checkpoint they
write byte-identical artifacts and score identical accuracies."""

from __future__ import annotations

import json
import os

import pytest
import torch
from click.testing import CliRunner

import spikec
from spikec.cli import main
from spikec.datasets import load_digits_split
from spikec.frontends.torch import ModelSource, load_model
from spikec.ir.printer import print_graph

CHECKPOINTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples", "digits", "checkpoints")


def _files(path):
    return {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}


@pytest.mark.parametrize("checkpoint", sorted(os.listdir(CHECKPOINTS)))
def test_api_and_cli_agree_on_the_digits_checkpoints(tmp_path, checkpoint):
    path = os.path.join(CHECKPOINTS, checkpoint)
    loaded = load_model(ModelSource(checkpoint=path))
    x, y = load_digits_split("test")

    cli = CliRunner().invoke(main, ["compile", path, "--input-exp", "4", "-o", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.stderr
    compiled = spikec.compile(loaded.module, torch.from_numpy(x[:1]), input_exp=4, name=loaded.name)
    compiled.write(str(tmp_path / "api"))
    assert _files(tmp_path / "api") == _files(tmp_path / "cli")

    cli = CliRunner().invoke(main, ["simulate", path, "--input-exp", "4", "--format", "json"])
    assert cli.exit_code == 0, cli.stderr
    report = spikec.simulate(loaded.module, x, y, backends=("torch", "intsim"), input_exp=4)
    shown = json.loads(cli.stdout)
    assert {b: shown["backends"][b]["accuracy"] for b in shown["backends"]} == report.accuracy
    assert shown["agreement"] == report.agreement
    assert report.accuracy["intsim"] > 0.95         # a trained model, compiled faithfully


def test_api_and_cli_calibrate_a_checkpoint_on_the_data_they_simulate():
    path = os.path.join(CHECKPOINTS, "spikingformer-cifar.pt")
    x, y = load_digits_split("test")
    cli = CliRunner().invoke(main, ["simulate", path, "--limit", "100", "--format", "json"])
    assert cli.exit_code == 0, cli.stderr
    report = spikec.simulate(ModelSource(checkpoint=path), x[:100], y[:100])
    shown = json.loads(cli.stdout)
    assert {b: shown["backends"][b]["accuracy"] for b in shown["backends"]} == report.accuracy
    assert shown["fidelity"] == report.fidelity and report.fidelity["reference"] == "float/intsim"
    compiled = spikec.api.compile_source(ModelSource(checkpoint=path), calibrate=spikec.api.Calibrate(data=x[:100]))[1]
    calibration = compiled.quantization.calibration
    assert calibration["source"] == "data" and calibration["samples"] == 64
    # digits' pixels are k/16: exact from 2**-4 on, and the encoding conv's weights keep 8 bits at any exponent
    assert compiled.quantization.input_exp == 8 and calibration["candidates"][0]["input_error"] == 0


def test_compile_of_a_module_calibrates_as_the_cli_does():
    # The same zoo model as a module (spikec.compile) and as --arch (the CLI's compile_source): the same random
    # calibration inputs, so the same input exponent and the same integer graph; Calibrate(0) keeps 8 bits
    # without calibrating.
    from spikec.api import compile_source
    from spikec.frontends.torch.loading import load_model

    source = ModelSource(arch="spikingformer-cifar", model_args={"depth": 1, "embed_dim": 16, "num_heads": 2,
                                                                "img_size": 8})
    _, from_cli = compile_source(source)
    module = load_model(source).module
    from_api = spikec.compile(module, torch.rand(1, 3, 8, 8), name="spikingformer_cifar")
    assert from_api.quantization.calibration == from_cli.quantization.calibration
    assert from_api.quantization.input_exp == from_cli.quantization.input_exp
    assert print_graph(from_api.graph) == print_graph(from_cli.graph)
    uncalibrated = spikec.compile(module, torch.rand(1, 3, 8, 8), calibrate=spikec.Calibrate(0))
    assert uncalibrated.quantization.input_exp == 8 and uncalibrated.quantization.calibration is None


class _ReturnsLogitsAndHook(torch.nn.Module):
    """SDT V1's forward returns ``(logits, hook)``: the logits are the first tensor, for the tracer and the torch
    backend alike."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(16, 8)
        self.lif = spikec.nn.MultiStepLIF(tau=2.0)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        h = self.lif(self.fc(x.flatten(1).unsqueeze(0).repeat(2, 1, 1) * 4))
        return self.head(h.mean(0)), {"lif": h}


def test_a_forward_returning_logits_and_a_hook_simulates_on_torch_as_traced():
    x = torch.rand(6, 1, 4, 4).numpy()
    report = spikec.simulate(_ReturnsLogitsAndHook(), x, backends=("torch", "float"))
    assert report.agreement["torch/float"] == 1.0
