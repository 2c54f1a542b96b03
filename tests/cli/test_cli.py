"""The command line (docs/design.md, §8): help with examples, `inspect` output, and exit codes with one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from spikec.cli import main

pytestmark = pytest.mark.core

TINY = '{"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 16, "T": 2}'


def run(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", [[], ["inspect"], ["zoo"]])
def test_help_shows_an_example(command):
    code, out, _ = run(*command, "--help")
    assert code == 0
    assert "Example" in out and "spikec " in out


def test_inspect_text_lists_ir_layers_and_parameters():
    code, out, err = run("inspect", "--arch", "spikingformer-cifar", "--model-args", TINY)
    assert code == 0, err
    assert out.startswith("model spikingformer_cifar: input [1, 3, 16, 16] (layout B), 61 IR nodes, 28,942 parameters")
    assert "graph @spikingformer_cifar {" in out
    assert "conv2d       patch_embed.block0_conv" in out
    assert out.endswith("total parameters: 28,942\n")


def test_inspect_json_is_machine_readable():
    code, out, _ = run("inspect", "--arch", "sdt-cifar", "--model-args", TINY, "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["version"] == 1 and report["model"] == "sdt_cifar"
    assert report["parameters"] == sum(layer["parameters"] for layer in report["layers"])
    assert report["ir"].startswith("graph @sdt_cifar {")
    first_conv = next(layer for layer in report["layers"] if layer["op"] == "conv2d")
    assert first_conv["module"] == "patch_embed.proj_conv" and first_conv["file"] == "spikec/models/sdt.py"


def test_timesteps_option_sets_T():
    code, out, _ = run("inspect", "--arch", "spikformer-cifar", "--model-args", TINY, "-T", "3", "--format", "json")
    assert code == 0
    assert "repeat_time(%0) {T = 3}" in json.loads(out)["ir"]


@pytest.mark.parametrize("args, message", [
    (["inspect", "missing.pt"], "missing.pt: no such file"),
    (["inspect"], "name one model: a checkpoint file, --model FILE.py:NAME, or --arch NAME"),
    (["inspect", "--arch", "spikformer-cifar", "--model-args", "{depth: 2}"],
     "--model-args is not valid JSON: Expecting property name enclosed in double quotes at character 1"),
    (["inspect", "--arch", "spikformer-cifar", "--model-args", "[2]"],
     "--model-args must be a JSON object, e.g. '{\"depth\": 2}'"),
    (["inspect", "--arch", "spikformer-cifar", "--input-shape", "1,3,a"],
     "input shape '1,3,a' is not a comma-separated list of integers, e.g. 1,3,32,32"),
    (["inspect", "--arch", "spikformer-cifar", "--model-args", '{"width": 3}'],
     "spikformer-cifar has no option(s) width; options: T, depth, embed_dim, img_size, in_channels, mlp_ratio, "
     "num_classes, num_heads, residual, tau"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert err == f"spikec: error: {message}\n"


def test_unknown_arch_lists_the_zoo():
    code, _, err = run("inspect", "--arch", "spikformer")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("spikec: error: unknown zoo architecture 'spikformer'; known: sdt-cifar, ")


def test_internal_errors_exit_3_with_a_hint(monkeypatch):
    import spikec.frontends.torch as frontend

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(frontend, "trace_source", broken)
    code, _, err = run("inspect", "--arch", "spikformer-cifar")
    assert code == 3
    assert err == "spikec: error: internal error: RuntimeError: boom (rerun with --debug for the traceback)\n"


def test_console_script_runs_as_a_process(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    proc = subprocess.run([sys.executable, "-m", "spikec.cli", "inspect", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == f"spikec: error: {bad} is not a PyTorch checkpoint (torch.load cannot read it: UnpicklingError)\n"


def test_target_and_backend_choices_come_from_the_registry(tmp_path):
    import numpy as np

    from spikec.registry import BACKENDS, TARGETS

    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3, 16, 16), np.float32))

    _, compile_help, _ = run("compile", "--help")
    _, simulate_help, _ = run("simulate", "--help")
    folded = " ".join(simulate_help.split())
    assert all(f"{name}:" in " ".join(compile_help.split()) for name in TARGETS)
    assert all(f"{name}: {b.summary}" in folded for name, b in BACKENDS.items())
    code, _, err = run("simulate", "--arch", "spikingformer-cifar", "--model-args", TINY, "--backend", "gpu",
                       "--data", str(tmp_path / "d.npz"))
    assert code == 2 and err == f"spikec: error: unknown backend 'gpu'; backends: {', '.join(BACKENDS)}\n"
