"""``spikec compile --target loihi2`` writes lava_net.py: a module holding the network's process graph (``build``)
that runs it through spikec's runtime, with the CLI's isolation and timeout, and gives intsim's spikes (keyed
by module path) and intsim's float logits. It carries no copy of spikec's host rules or run loop, no name from
the user's model can inject code into it, and the artifact is byte-identical across runs."""

from __future__ import annotations

import ast
import filecmp
import glob
import importlib.util
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lava_cases import LAVA_TIMEOUT_S, residual_graph, zoo_compiled
from spikec.backends.intsim.interpreter import run_intsim
from spikec.backends.lava.artifact import process_graph_from_manifest
from spikec.backends.lava.child import LavaRunError
from spikec.backends.lava.emit import emit_lava_net, spike_keys
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.runtime import DEFAULT_TIMEOUT_S
from spikec.compiler import load_artifact
from spikec.ir import Location
from spikec.simulation import intsim_runner

pytestmark = pytest.mark.lava


def _import(path: str):
    spec = importlib.util.spec_from_file_location("lava_net_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(args: list[str], cwd) -> tuple[int, str, str]:
    """Run ``python lava_net.py ARGS``; whatever Lava leaves in the script's session is killed afterwards."""
    process = subprocess.Popen([sys.executable, *args], cwd=cwd, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=LAVA_TIMEOUT_S)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return process.returncode, out, err


def _scaled_intsim(compiled, x: np.ndarray) -> np.ndarray:
    """intsim's float logits, as `spikec simulate` computes them (the integer readout over the output scale)."""
    logits, _ = intsim_runner(compiled.graph, compiled.output_scales[0])(x)
    return logits


def _neuron_modules(graph) -> list[str]:
    return [n.module for n in graph.nodes if n.op == "qlif"]


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
    assert {"Conv", "Sparse", "DelaySparse", "LIFReset", "ProdNeuron", "GradedVec"} <= kinds
    assert all({"src", "dst", "views"} <= set(c) for c in lava["connections"])
    resets = {p["name"]: p["args"]["reset_offset"] for p in lava["processes"] if p["kind"] == "LIFReset"}
    depths = {p["name"]: p["depth"] for p in lava["probes"] if p["kind"] == "spikes"}
    assert resets == {name: (1 + depth) % manifest["timesteps"] for name, depth in depths.items()}
    assert any(p["kind"] == "DelaySparse" and p["args"]["delays"] > 0 for p in lava["processes"])
    resources = lava["resources"]
    assert resources["totals"]["neuro_cores"] >= 1
    assert all("> " in v and "source: " in v for v in resources["violations"])
    host_kinds = {h["kind"] for h in resources["host_processes"]}
    # The input's source, no more: the classifier's token pooling and time sum are the host's readout, which
    # reads the residual stream's value probe.
    assert host_kinds == {"RingBuffer"}
    assert resources["totals"]["on_chip_fraction"] == 1.0 and not resources["embedded_ops"]
    assert [d["attention"] for d in lava["attention"]] == ["on-chip"] * 4   # 2 blocks, q kᵀ and (q kᵀ) v
    assert resources["totals"]["probe_processes"] == len(lava["probes"])
    assert all(limit["source"] for limit in resources["limits"].values())
    assert load_artifact(str(tmp_path / "art")).target == "loihi2"


def test_the_manifest_gives_back_the_process_graph_lava_net_was_generated_from(tmp_path):
    compiled, _ = zoo_compiled("spikingformer-cifar", target="loihi2")
    compiled.write(str(tmp_path / "art"))
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    with np.load(tmp_path / "art" / "weights.npz") as archive:
        weights = {k: archive[k] for k in archive.files}
    pg = process_graph_from_manifest(compiled.name, manifest["lava"], weights)
    expected = compiled.lowered.process_graph
    for field in ("name", "timesteps", "max_depth", "processes", "connections", "sources", "probes", "host_nodes",
                  "depths", "chip_nodes", "attention"):
        assert getattr(pg, field) == getattr(expected, field), field
    assert sorted(pg.arrays) == sorted(expected.arrays)
    assert all(np.array_equal(pg.arrays[k], expected.arrays[k]) for k in expected.arrays)


def test_lava_net_holds_the_network_and_no_copy_of_spikecs_rules(tmp_path):
    compiled, _ = zoo_compiled("spikingformer-cifar", target="loihi2")
    compiled.write(str(tmp_path / "art"))
    text = (tmp_path / "art" / "lava_net.py").read_text()
    tree = ast.parse(text)
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert {"build", "run", "main"} <= functions
    assert not functions & {"wrap_int32", "shift_floor", "encode", "readout", "aligned", "source_stream",
                            "load_weights"}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not used & {"clip", "floor", "repeat", "swapaxes", "moveaxis", "memmap", "tempfile", "RunSteps",
                       "Loihi2SimCfg"}
    assert "0xFFFFFFFF" not in text and ">> -exp" not in text
    assert "from spikec.backends.lava.runtime import DEFAULT_TIMEOUT_S, run_lava_net" in text
    lines = text.splitlines()
    built = [line for line in lines if line.startswith("    p[") and "] = " in line and "].name = " not in line]
    assert len(built) == len(compiled.lowered.process_graph.processes)
    assert len([line for line in lines if ".connect(" in line]) == len(compiled.lowered.process_graph.connections)


def test_lava_net_imported_and_run_gives_intsims_spikes_by_module_and_float_logits(tmp_path):
    compiled, x = zoo_compiled("spikingformer-cifar", target="loihi2")
    compiled.write(str(tmp_path / "art"))
    module = _import(str(tmp_path / "art" / "lava_net.py"))
    logits, spikes = module.run(x, timeout=LAVA_TIMEOUT_S)
    assert logits[0].dtype == np.float64
    assert np.array_equal(logits[0], _scaled_intsim(compiled, x))
    reference = run_intsim(compiled.graph, [x], keep_values=True)
    neurons = [n for n in compiled.graph.nodes if n.op == "qlif"]
    assert list(spikes) == _neuron_modules(compiled.graph)
    assert "block.0.mlp.mlp1_lif" in spikes
    for node, (key, value) in zip(neurons, spikes.items()):
        assert np.array_equal(value, reference.of(node)), key
    assert multiprocessing.active_children() == []


def test_lava_net_runs_as_a_script(tmp_path):
    compiled, x = zoo_compiled("sdt-cifar", batch=1, target="loihi2", embed_dim=16, img_size=8)
    compiled.write(str(tmp_path / "art"))
    np.save(tmp_path / "x.npy", x)
    # --timeout 60: a run that stalls is stopped and run again well within the test's own wait
    code, out, err = _script([str(tmp_path / "art" / "lava_net.py"), str(tmp_path / "x.npy"), "--timeout", "60",
                              "-o", str(tmp_path / "out.npz")], tmp_path)
    assert code == 0, err[-2000:]
    reference = run_intsim(compiled.graph, [x], keep_values=True)
    with np.load(tmp_path / "out.npz") as saved:
        assert np.array_equal(saved["logits"], _scaled_intsim(compiled, x))
        neurons = [n for n in compiled.graph.nodes if n.op == "qlif"]
        assert sorted(saved.files) == sorted(["logits", *(f"spikes/{n.module}" for n in neurons)])
        assert all(np.array_equal(saved[f"spikes/{n.module}"], reference.of(n)) for n in neurons)
    assert "predictions" in out


def test_lava_net_run_stops_at_its_timeout_and_cleans_up(tmp_path):
    compiled, x = zoo_compiled("sdt-cifar", batch=1, target="loihi2", embed_dim=16, img_size=8)
    compiled.write(str(tmp_path / "art"))
    module = _import(str(tmp_path / "art" / "lava_net.py"))
    assert module.run.__defaults__ == (DEFAULT_TIMEOUT_S,)
    before = set(glob.glob("/dev/shm/psm_spikec*"))
    start = time.monotonic()
    with pytest.raises(LavaRunError, match=r"Lava run of sdt-cifar .* did not finish within 0\.5 s"):
        module.run(x, timeout=0.5)
    assert time.monotonic() - start < 30
    assert multiprocessing.active_children() == []
    assert set(glob.glob("/dev/shm/psm_spikec*")) <= before


def test_lava_net_script_takes_a_timeout_and_says_when_it_is_exceeded_or_input_is_bad(tmp_path):
    compiled, x = zoo_compiled("sdt-cifar", batch=1, target="loihi2", embed_dim=16, img_size=8)
    compiled.write(str(tmp_path / "art"))
    np.save(tmp_path / "x.npy", x)
    code, out, err = _script([str(tmp_path / "art" / "lava_net.py"), str(tmp_path / "x.npy"), "--timeout", "0.5",
                              "-o", str(tmp_path / "out.npz")], tmp_path)
    assert code == 3, err[-2000:]
    assert "lava_net.py: error: Lava run of sdt-cifar" in err and "did not finish within 0.5 s" in err
    assert "Traceback" not in err and not (tmp_path / "out.npz").exists()
    code, _, err = _script([str(tmp_path / "art" / "lava_net.py"), str(tmp_path / "missing.npy")], tmp_path)
    assert code == 2 and "cannot read" in err and "Traceback" not in err


_HOSTILE = 'blk\nINJECTED = 1\n# "\'"""\r\x85'
"""A module path with newlines, quotes, a docstring terminator and a character outside ASCII."""


def test_module_paths_and_names_from_the_model_cannot_inject_code():
    graph = residual_graph()
    lifs = [n for n in graph.nodes if n.op == "qlif"]
    for node in (*lifs[:2], graph.nodes[3]):              # two neuron groups and a synapse group share the path
        node.locs = (Location(_HOSTILE),)
    lifs[2].locs = (Location(_HOSTILE + "#2"),)           # and a third's path is the key the second gets
    pg = lower(graph, name='m"""\nINJECTED = 2\n')
    text = emit_lava_net(pg)
    assert text.isascii()
    tree = ast.parse(text)
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "INJECTED"]
    assert ast.get_docstring(tree).startswith("The Lava process graph spikec compiled for Loihi 2")
    constants = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert _HOSTILE in constants and 'm"""\nINJECTED = 2\n' in constants
    spikes = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                  and n.targets[0].id == "SPIKES")
    assert spikes == {_HOSTILE: "lif4", _HOSTILE + "#2": "lif6", _HOSTILE + "#2#2": "lif9"} == spike_keys(pg)
