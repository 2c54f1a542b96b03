"""`spikec compile --target loihi2` and `spikec simulate OUT --backend lava --compare intsim`."""

from __future__ import annotations

import pytest
import json
import os

import numpy as np
from click.testing import CliRunner

from spikec.backends.lava import compare, resources
from spikec.cli import main

pytestmark = pytest.mark.lava

TINY = '{"depth": 1, "embed_dim": 16, "num_heads": 2, "img_size": 8, "T": 2}'


def run(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _data(tmp_path, samples: int = 3):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.random((samples, 3, 8, 8)).astype(np.float32), y=np.arange(samples) % 10)
    return path


def test_compile_loihi2_writes_the_lava_artifact_and_reports_resources(tmp_path):
    code, _, err = run("compile", "--arch", "spikingformer-cifar", "--model-args", TINY, "--target", "loihi2",
                       "-o", tmp_path / "out")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["lava_net.py", "manifest.json", "model.ir", "weights.npz"]
    assert "loihi2: " in err and "neuro cores" in err and "embedded/host CPU" in err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["target"] == "loihi2" and manifest["lava"]["processes"]


def test_strict_fails_on_an_exceeded_limit_and_writes_nothing(tmp_path, monkeypatch):
    # A core with one byte of synapse memory: every neuron with more than one weight is over it, on any placement.
    monkeypatch.setitem(resources.LIMITS, "synapse_memory_per_core",
                        resources.Limit(1, "synapse memory bytes per neuro core", "a test's core with one byte"))
    args = ("compile", "--arch", "spikingformer-cifar", "--model-args", TINY, "--target", "loihi2")
    code, _, err = run(*args, "-o", tmp_path / "warned")
    assert code == 0 and "warning: Loihi 2 limit exceeded: " in err and "synapse memory bytes per neuro core" in err
    code, _, err = run(*args, "--strict", "-o", tmp_path / "strict")
    assert code == 1
    assert "error: Loihi 2 limit exceeded: " in err
    assert "(source: a test's core with one byte)" in err
    assert not os.path.exists(tmp_path / "strict")


def test_simulate_artifact_on_lava_is_bit_exact_with_intsim(tmp_path):
    code, _, err = run("compile", "--arch", "sdt-cifar", "--model-args", TINY, "--target", "loihi2",
                       "-o", tmp_path / "out")
    assert code == 0, err
    # with --compare, a loihi2 artifact runs on lava by default
    code, out, err = run("simulate", tmp_path / "out", "--compare", "intsim", "--data", _data(tmp_path),
                         "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["bit_exact"] == {"intsim/lava": True} and report["first_divergence"] == {}
    assert set(report["backends"]) == {"intsim", "lava"} and report["backends"]["lava"]["seconds"] > 0
    assert report["agreement"] == {"intsim/lava": 1.0}
    assert all(layer["agreement"]["intsim/lava"] == 1.0 for layer in report["layers"])


def test_a_mismatch_names_the_first_diverging_layer_step_and_neuron(tmp_path, monkeypatch):
    # A stand-in for the Lava runner that returns intsim's answer with one spike flipped: layer 2, time
    # step 1, sample 1. The check must find exactly that, fail with exit code 1, and say so.
    from spikec.simulation import intsim_runner

    def flipped_runner(graph, scale, **_):
        reference = intsim_runner(graph, scale)

        def run_batch(batch):
            logits, layers = reference(batch)
            module, spikes = layers[2]
            spikes = spikes.copy()
            spikes[1, 1, 3, 0, 1] ^= 1
            return logits, [*layers[:2], (module, spikes), *layers[3:]]
        return run_batch

    monkeypatch.setattr(compare, "lava_runner", flipped_runner)
    code, _, _ = run("compile", "--arch", "spikingformer-cifar", "--model-args", TINY, "--target", "loihi2",
                     "-o", tmp_path / "out")
    assert code == 0
    code, out, _ = run("simulate", tmp_path / "out", "--backend", "lava", "--compare", "intsim",
                       "--data", _data(tmp_path), "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["bit_exact"] == {"intsim/lava": False}
    first = report["first_divergence"]["intsim/lava"]
    assert (first["layer"], first["sample"], first["time_step"], first["neuron"]) == (2, 1, 1, [3, 0, 1])
    assert first["module"] == "patch_embed.block3_lif"
    code, out, _ = run("simulate", tmp_path / "out", "--backend", "lava", "--compare", "intsim",
                       "--data", _data(tmp_path))
    assert code == 1
    assert ("first divergence: layer 2 (patch_embed.block3_lif), sample 1, time step 1, neuron [3, 0, 1]"
            in out)


def test_lava_runs_loihi2_artifacts_and_says_so_otherwise(tmp_path):
    code, _, err = run("simulate", "--arch", "sdt-cifar", "--model-args", TINY, "--backend", "intsim",
                       "--compare", "intsim", "--data", _data(tmp_path))
    assert code == 2 and "checks one backend against intsim, lava (an artifact compiled with --target loihi2) or " \
        "onnxruntime: run it with --backend lava or --backend onnxruntime" in err
    code, _, err = run("simulate", "--arch", "sdt-cifar", "--model-args", TINY, "--backend", "lava",
                       "--data", _data(tmp_path))
    assert code == 2 and "the lava backend runs an artifact compiled with --target loihi2" in err
    run("compile", "--arch", "sdt-cifar", "--model-args", TINY, "-o", tmp_path / "intsim")
    code, _, err = run("simulate", tmp_path / "intsim", "--backend", "lava", "--data", _data(tmp_path))
    assert code == 2 and "compile it with --target loihi2 to run it on lava" in err
