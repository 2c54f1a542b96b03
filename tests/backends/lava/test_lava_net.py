"""``spikec compile --target loihi2`` writes lava_net.py: a standalone module that builds the same processes
from weights.npz and, run on its own, gives intsim's spikes and logits. The artifact is byte-identical across
runs."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import os
import signal
import subprocess
import sys

import numpy as np

from lava_cases import LAVA_TIMEOUT_S, zoo_compiled
from spikec.backends.intsim.interpreter import run_intsim
from spikec.backends.lava.child import run_isolated
from spikec.compiler import load_artifact


def _import(path: str):
    spec = importlib.util.spec_from_file_location("lava_net_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loihi2_artifact_is_byte_identical_across_compiles(tmp_path):
    compiled, _ = zoo_compiled("sdt-cifar", target="loihi2")
    compiled.write(str(tmp_path / "a"))
    again, _ = zoo_compiled.__wrapped__("sdt-cifar", target="loihi2")
    again.write(str(tmp_path / "b"))
    names = ["lava_net.py", "manifest.json", "model.ir", "weights.npz"]
    assert sorted(os.listdir(tmp_path / "a")) == names
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert mismatch == [] and errors == []


def test_manifest_records_processes_connections_delays_resets_and_resources(tmp_path):
    compiled, _ = zoo_compiled("spikingformer-cifar", target="loihi2")
    compiled.write(str(tmp_path / "art"))
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    lava = manifest["lava"]
    kinds = {p["kind"] for p in lava["processes"]}
    assert {"Conv", "Sparse", "DelaySparse", "LIFReset", "MatMul", "MaxPool", "Integrator"} <= kinds
    assert all({"src", "dst", "views"} <= set(c) for c in lava["connections"])
    resets = {p["name"]: p["args"]["reset_offset"] for p in lava["processes"] if p["kind"] == "LIFReset"}
    depths = {p["name"]: p["depth"] for p in lava["probes"] if p["kind"] == "spikes"}
    assert resets == {name: (1 + depth) % manifest["timesteps"] for name, depth in depths.items()}
    assert any(p["kind"] == "DelaySparse" and p["args"]["delays"] > 0 for p in lava["processes"])
    resources = lava["resources"]
    assert resources["totals"]["neuro_cores"] >= 1
    assert all("> " in v and "source: " in v for v in resources["violations"])
    assert {h["kind"] for h in resources["host_processes"]} >= {"MatMul", "MaxPool", "Integrator", "MemSink"}
    assert all(limit["source"] for limit in resources["limits"].values())
    assert load_artifact(str(tmp_path / "art")).target == "loihi2"


def test_lava_net_imported_and_run_gives_intsims_spikes_and_logits(tmp_path):
    compiled, x = zoo_compiled("spikingformer-cifar", target="loihi2")
    compiled.write(str(tmp_path / "art"))
    module = _import(str(tmp_path / "art" / "lava_net.py"))
    logits, spikes = run_isolated(lambda: module.run(x), LAVA_TIMEOUT_S)
    reference = run_intsim(compiled.graph, [x], keep_values=True)
    assert np.array_equal(logits[0], reference.outputs[0])
    for probe in module.PROBES:
        expected = reference.of(compiled.graph.nodes[probe["node"]])
        assert np.array_equal(spikes[probe["name"]], expected), probe["name"]


def test_lava_net_runs_as_a_script(tmp_path):
    compiled, x = zoo_compiled("sdt-cifar", batch=1, target="loihi2", embed_dim=16, img_size=8)
    compiled.write(str(tmp_path / "art"))
    np.save(tmp_path / "x.npy", x)
    process = subprocess.Popen([sys.executable, str(tmp_path / "art" / "lava_net.py"), str(tmp_path / "x.npy"),
                                "-o", str(tmp_path / "out.npz")], cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=LAVA_TIMEOUT_S)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)    # whatever Lava left behind in the script's session
        except ProcessLookupError:
            pass
    assert process.returncode == 0, err[-2000:]
    reference = run_intsim(compiled.graph, [x], keep_values=True)
    with np.load(tmp_path / "out.npz") as saved:
        assert np.array_equal(saved["logits"], reference.outputs[0])
        lifs = [i for i, n in enumerate(compiled.graph.nodes) if n.op == "qlif"]
        assert all(np.array_equal(saved[f"spikes/lif{i}"], reference.of(compiled.graph.nodes[i])) for i in lifs)
    assert "predictions" in out
