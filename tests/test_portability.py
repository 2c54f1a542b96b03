"""Artifacts are portable between the two environments: one compiled by the core on Python 3.11 (torch 2.13,
numpy 2, spikingjelly 2.0, no Lava; ``make test``'s ``.venv-py311``, named by ``SPIKEC_TEST_PY311``) holds the
same ``model.ir``, ``weights.npz`` and ``lava_net.py`` bytes as the Python 3.10 compile of the same model (the
manifest differs only in the package versions it records), and runs bit-exact on Lava from Python 3.10. A model of
spikingjelly 2.0 (installable on Python 3.11 only) compiled there runs bit-exact on Lava here."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from spikec.backends.intsim.interpreter import run_intsim
from spikec.cli import main
from spikec.compiler import load_artifact
from spikec.datasets import load_digits_split

pytestmark = [pytest.mark.py311, pytest.mark.lava]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = os.path.join(ROOT, "examples", "digits", "checkpoints", "spikingformer-cifar.pt")
SAME_BYTES = ("model.ir", "weights.npz", "lava_net.py")


def _run_py311(*args: str, cwd: str) -> str:
    result = subprocess.run([os.environ["SPIKEC_TEST_PY311"], *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _manifest(path) -> dict:
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    manifest.pop("versions")
    return manifest


def _lava_check(artifact, data) -> dict:
    result = CliRunner().invoke(main, ["simulate", str(artifact), "--backend", "lava", "--compare", "intsim",
                                       "--data", str(data), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_a_checkpoint_compiled_on_python_311_is_the_310_compile_and_runs_bit_exact_on_lava(tmp_path):
    here, there = tmp_path / "py310", tmp_path / "py311"
    assert CliRunner().invoke(main, ["compile", CHECKPOINT, "--target", "loihi2", "-o", str(here)]).exit_code == 0
    _run_py311("-m", "spikec", "compile", CHECKPOINT, "--target", "loihi2", "-o", str(there), cwd=ROOT)
    with open(there / "manifest.json", encoding="utf-8") as f:
        versions = json.load(f)["versions"]
    assert versions["lava-nc"] is None and not versions["torch"].startswith("2.3.")   # compiled without Lava
    for name in SAME_BYTES:
        assert (here / name).read_bytes() == (there / name).read_bytes(), name
    assert _manifest(here) == _manifest(there)
    data = tmp_path / "digits.npz"
    images, labels = load_digits_split("test")
    np.savez(data, x=images[:6], y=labels[:6])
    assert _lava_check(there, data)["bit_exact"] == {"intsim/lava": True}


BUILD_SDT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[2])
    from conftest import batchnorm_set_to_fire
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.model.spike_driven_transformer import SpikeDrivenTransformer
    torch.manual_seed(0)
    model = SpikeDrivenTransformer(**{CONFIG})
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.save(batchnorm_set_to_fire(model, x, functional.reset_net).state_dict(), sys.argv[1])
""")
SDT_CONFIG = {"T": 2, "num_classes": 10, "embed_dims": 32, "num_heads": 2, "depths": 1, "pooling_stat": "0011"}


def test_a_spikingjelly2_model_compiled_on_python_311_runs_bit_exact_on_lava(tmp_path):
    weights, artifact = tmp_path / "sdt.pt", tmp_path / "sdt"
    _run_py311("-c", BUILD_SDT.replace("{CONFIG}", repr(SDT_CONFIG)), str(weights), os.path.join(ROOT, "tests"),
               cwd=tmp_path)
    _run_py311("-m", "spikec", "compile", "--model",
               "spikingjelly.activation_based.model.spike_driven_transformer:SpikeDrivenTransformer",
               "--model-args", json.dumps(SDT_CONFIG), "--weights", str(weights), "--input-shape", "1,3,32,32",
               "--target", "loihi2", "-o", str(artifact), cwd=tmp_path)
    data = tmp_path / "images.npz"
    x = np.random.default_rng(1).uniform(0, 1, (6, 3, 32, 32)).astype(np.float32)
    np.savez(data, x=x)
    graph = load_artifact(str(artifact)).graph
    reference = run_intsim(graph, [x], keep_values=True)
    assert min(int(reference.of(n).sum()) for n in graph.nodes if n.op == "qlif") > 0   # every layer fires
    assert _lava_check(artifact, data)["bit_exact"] == {"intsim/lava": True}
