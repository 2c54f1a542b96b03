"""``spikec verify --spike-driven``: exit codes, the three formats (JSON against its schema, SARIF against
the official SARIF 2.1.0 schema), observed mode, bad input, and the Python and pytest entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import spikec
from spikec.cli import main
from spikec.diagnostics import RULES, report_schema
from spikec.frontends.torch.neurons import is_neuron
from spikec.models import build_model
from spikec.testing import assert_spike_driven

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parents[2]
SARIF_SCHEMA = ROOT / "tests" / "data" / "sarif-schema-2.1.0.json"
MODELS = ROOT / "tests" / "passes" / "verify_models.py"
SMALL = '{"depth": 2, "embed_dim": 32, "num_heads": 2, "T": 2, "img_size": 16}'


@pytest.fixture(scope="module", autouse=True)
def _optional_neuron_libraries_imported():
    """Import spikingjelly (if installed) before the CLI runs: its import prints a CUDA notice to stderr."""
    is_neuron(nn.Identity())


def run(*args: str):
    return CliRunner().invoke(main, ["verify", *args])


def zoo(arch: str, *args: str):
    return run("--spike-driven", "--arch", arch, "--model-args", SMALL, *args)


def test_violations_exit_1_with_text_on_stdout():
    result = zoo("spikformer-cifar")
    assert result.exit_code == 1, result.output
    assert "error[SD001]: linear in block.1.mlp.fc1_linear multiplies weights by non-binary integer " \
           "activations int[0,5]" in result.stdout
    assert result.stdout.rstrip().splitlines()[-2] == \
        "spikformer_cifar: not spike-driven: 8 errors, 0 warnings, 2 notes"
    assert result.stderr == ""


def test_clean_model_exits_0():
    result = zoo("spikingformer-cifar")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("spikingformer_cifar: spike-driven: 0 errors, 0 warnings, 2 notes")


@pytest.mark.parametrize("args, code", [((), 0), (("--fail-on", "warning"), 1),
                                        (("--fail-on", "warning", "--exit-zero"), 0)])
def test_fail_on_and_exit_zero(args, code):
    assert zoo("sdt-cifar", *args).exit_code == code


def test_exit_zero_and_strict():
    assert zoo("spikformer-cifar", "--exit-zero").exit_code == 0
    strict = zoo("spikingformer-cifar", "--strict")
    assert strict.exit_code == 1 and "error[SD002]: readout (an error under --strict)" in strict.stdout


def test_json_report_validates_against_its_schema():
    result = zoo("spikformer-cifar", "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    jsonschema.Draft202012Validator(report_schema()).validate(report)
    assert report["version"] == 1 and report["summary"] == {"error": 8, "warning": 0, "note": 2}
    q = next(f for f in report["findings"] if f["module"] == "block.1.attn.q_linear")
    assert {k: q[k] for k in ("rule", "severity", "op", "file", "input_domain")} == {
        "rule": "SD001", "severity": "error", "op": "linear", "file": "spikec/models/spikformer.py",
        "input_domain": "int[0,4]"}
    assert isinstance(q["line"], int) and q["operands"] == [{"domain": "int[0,4]", "range": [0, 4]}]
    assert "error[SD001]" in result.stderr  # the text goes to stderr


def test_schema_lists_every_rule():
    rules = report_schema()["$defs"]["finding"]["properties"]["rule"]["enum"]
    assert rules == list(RULES)


def test_sarif_validates_against_the_sarif_2_1_0_schema():
    result = zoo("spikformer-cifar", "--format", "sarif")
    sarif = json.loads(result.stdout)
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(sarif)
    (run_,) = sarif["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES) and all(r["help"]["text"] for r in rules)
    first_error = next(r for r in run_["results"] if r["level"] == "error")
    location = first_error["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "spikec/models/spikformer.py"
    assert location["physicalLocation"]["region"]["startLine"] >= 1
    assert location["logicalLocations"] == [{"fullyQualifiedName": "block.0.attn.q_linear", "kind": "module"}]
    assert first_error["relatedLocations"][0]["message"]["text"].startswith("input is int[0,2]: SEW residual add")
    assert [r["level"] for r in run_["results"]].count("note") == 2


def test_user_model_with_integer_products():
    result = run("--spike-driven", "--model", f"{MODELS}:IntProducts", "--input-shape", "1,4,8")
    assert result.exit_code == 1
    assert "verify_models.py:26: error[SD003]: matmul multiplies int[0,2] by int[0,2]" in result.stdout


def test_observe_random_inputs():
    result = zoo("spikformer-cifar", "--observe", "2", "--format", "json")
    observed = json.loads(result.stdout)["observed"]
    assert observed["samples"] == 2 and observed["source"] == "random" and observed["agree"]
    assert "observed on 2 random inputs" in result.stderr


def test_observe_inputs_from_a_file(tmp_path):
    path = tmp_path / "inputs.npz"
    np.savez(path, x=np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32))
    result = zoo("spikingformer-cifar", "--data", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["observed"]["samples"] == 3
    one = zoo("spikingformer-cifar", "--data", str(path), "--observe", "1")
    assert f"observed on 1 input from {path}, at every operand the rules read:" in one.stdout


def test_a_static_observed_disagreement_is_an_internal_error(monkeypatch, tmp_path):
    """Pretend the analysis said spike where the model adds two spike tensors; strong inputs make them fire."""
    from spikec.passes import value_domains

    monkeypatch.setitem(value_domains.DOMAIN_RULES, "add", lambda node, domains: (value_domains.SPIKE,))
    path = tmp_path / "strong.npz"
    np.savez(path, x=np.full((2, 4, 8), 100.0, np.float32))
    result = run("--spike-driven", "--model", f"{MODELS}:IntProducts", "--input-shape", "1,4,8", "--data", str(path))
    assert result.exit_code == 3
    assert "outside the static domain (a spikec bug: please report it)" in result.stdout
    assert result.stderr.startswith("spikec: error: value-domains: matmul (tests/passes/verify_models.py:26) saw values in [0, ")
    assert result.stderr.endswith("outside its static domain spike; this is a bug in spikec's analysis, "
                                  "please report it\n")


def _bad_inputs(tmp_path: Path) -> dict[str, list[str]]:
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    no_x = tmp_path / "no_x.npz"
    np.savez(no_x, inputs=np.zeros((2, 3, 16, 16)))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((2, 3, 8, 8)))
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((2, 3, 16, 16)))
    arch = ["--arch", "spikformer-cifar", "--model-args", SMALL]
    return {
        "missing file": ["--spike-driven", str(tmp_path / "missing.pt")],
        "non-torch file": ["--spike-driven", str(text)],
        "wrong --input-shape": ["--spike-driven", *arch, "--input-shape", "1,3,16"],
        "unparsable --input-shape": ["--spike-driven", *arch, "--input-shape", "1,three"],
        "missing --data": ["--spike-driven", *arch, "--data", str(tmp_path / "missing.npz")],
        "--data not npz": ["--spike-driven", *arch, "--data", str(text)],
        "--data without x": ["--spike-driven", *arch, "--data", str(no_x)],
        "--data of one array": ["--spike-driven", *arch, "--data", str(single)],
        "--data of the wrong shape": ["--spike-driven", *arch, "--data", str(wrong)],
        "no check named": arch,
        "unknown model name": ["--spike-driven", "--model", f"{MODELS}:Nope", "--input-shape", "1,4,8"],
    }


def test_every_bad_input_exits_2_with_one_line(tmp_path):
    for case, args in _bad_inputs(tmp_path).items():
        result = run(*args)
        assert result.exit_code == 2, (case, result.output)
        assert result.stdout == "", case
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("spikec: error: "), (case, result.stderr)


def test_wrong_data_shape_names_the_expected_shape(tmp_path):
    args = _bad_inputs(tmp_path)["--data of the wrong shape"]
    # The same message as simulate's (one check of a data set's shape for every command).
    assert run(*args).stderr == ("spikec: error: the data's x has shape [2, 3, 8, 8] but spikformer_cifar takes "
                                 "[N, 3, 16, 16] (N samples along the batch axis of input layout B)\n")


def test_help_shows_an_example():
    result = CliRunner().invoke(main, ["verify", "--help"])
    assert result.exit_code == 0 and "spikec verify --spike-driven --arch spikformer-cifar" in result.output


# ---------------------------------------------------------------- Python API and pytest helper


def _model(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(arch, json.loads(SMALL))


def test_python_api_returns_the_report_the_cli_prints():
    report = spikec.verify(_model("spikformer-cifar"), torch.rand(1, 3, 16, 16), name="spikformer_cifar")
    cli = json.loads(zoo("spikformer-cifar", "--format", "json").stdout)
    assert report.to_json() == cli


def test_assert_spike_driven():
    report = assert_spike_driven(_model("spikingformer-cifar"), torch.rand(1, 3, 16, 16), observe=1)
    assert report.count("note") == 2
    with pytest.raises(AssertionError, match=r"(?s)Spikformer is not spike-driven:.*error\[SD001\]"):
        assert_spike_driven(_model("spikformer-cifar"), torch.rand(1, 3, 16, 16))


def test_import_spikec_stays_light():
    code = "import sys, spikec; print('torch' in sys.modules, spikec.verify.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "spikec.api"]


def test_pre_commit_hook_runs_the_check():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "- id: spikec-spike-driven" in text
    assert "entry: spikec verify --spike-driven" in text


def test_docs_describe_every_rule():
    text = (ROOT / "docs" / "verify.md").read_text()
    for rule in RULES.values():
        assert f"### {rule.id} {rule.name}" in text
