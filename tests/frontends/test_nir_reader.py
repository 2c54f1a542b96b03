"""NIR graphs built with the ``nir`` package's own API are read as IR: `spikec verify`, `compile` and `simulate`
take the ``.nir`` file (T from --timesteps, time-major data); NIR's sum of incoming edges becomes an add; what
spikec cannot express is refused in one line naming every such node."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
from click.testing import CliRunner

from spikec.cli import main
from spikec.frontends.torch import ModelSource, trace_source

pytestmark = pytest.mark.core

RNG = np.random.default_rng(0)
W1 = RNG.normal(0.1, 0.5, (16, 8)).astype(np.float32)
W2 = np.abs(RNG.normal(0.2, 0.5, (4, 16))).astype(np.float32)


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _lif(n: int, tau: float, r: float, threshold: float = 0.5) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, r), v_leak=np.zeros(n), v_threshold=np.full(n, threshold),
                   v_reset=np.zeros(n))


def _mlp(path, second=None, extra_edges=()) -> str:
    """Linear -> LIF -> Linear -> LIF, written with nir's API (Affine with a bias, then Linear)."""
    nodes = {"input": nir.Input(input_type={"input": np.array([8])}),
             "fc1": nir.Affine(weight=W1, bias=np.full(16, 0.2, np.float32)), "lif1": _lif(16, 2.0, 1.0),
             "fc2": nir.Linear(weight=W2), "lif2": second or _lif(4, 4.0, 4.0, 1.0),
             "output": nir.Output(output_type={"output": np.array([4])})}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output"),
             *extra_edges]
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges))
    return str(path)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=RNG.uniform(0, 1, (4, 60, 8)).astype(np.float32), y=RNG.integers(0, 4, 60))
    return path


def test_a_nir_mlp_verifies_compiles_and_simulates(tmp_path, data):
    graph = _mlp(tmp_path / "mlp.nir")
    code, out, err = run("verify", "--spike-driven", graph, "-T", "4")
    assert code == 0 and "mlp: spike-driven: 0 errors, 0 warnings" in out + err, err
    code, _, err = run("compile", graph, "-T", "4", "--data", data, "-o", tmp_path / "art")
    assert code == 0, err
    code, out, err = run("simulate", graph, "-T", "4", "--data", data, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["samples"] == 60 and set(report["backends"]) == {"float", "intsim"}
    assert report["agreement"]["float/intsim"] >= 0.95
    assert [layer["module"] for layer in report["layers"]] == ["lif1", "lif2"]
    assert all(layer["agreement"]["float/intsim"] >= 0.98 for layer in report["layers"])
    code, out, err = run("simulate", tmp_path / "art", "--data", data, "--compare", "intsim", "--format", "json")
    assert code == 0 and json.loads(out)["bit_exact"] == {"intsim/onnxruntime": True}, err


def test_the_ir_keeps_nir_node_names_and_parameters(tmp_path):
    _, traced = trace_source(ModelSource(checkpoint=_mlp(tmp_path / "mlp.nir"), timesteps=3, input_layout="TB"))
    ops = [(n.op, n.module) for n in traced.graph.nodes]
    assert ops == [("input", "input"), ("linear", "fc1"), ("lif", "lif1"), ("linear", "fc2"), ("lif", "lif2"),
                   ("sum", "output"), ("output", "")]
    lif1, lif2 = (n for n in traced.graph.nodes if n.op == "lif")
    assert (lif1.attrs["tau"], lif1.attrs["decay_input"], lif2.attrs["tau"], lif2.attrs["decay_input"]) == \
        (2.0, True, 4.0, False)
    assert traced.graph.input_nodes[0].output.type.shape == (3, 1, 8)
    fc1 = next(n for n in traced.graph.nodes if n.op == "linear")
    assert np.array_equal(fc1.attrs["weight"], W1)


def test_two_incoming_edges_are_summed(tmp_path):
    skip = nir.Linear(weight=np.ones((4, 8), np.float32))
    path = tmp_path / "skip.nir"
    nodes = {"input": nir.Input(input_type={"input": np.array([8])}), "a": nir.Linear(weight=W2 @ W1),
             "b": skip, "lif": _lif(4, 2.0, 1.0), "output": nir.Output(output_type={"output": np.array([4])})}
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("input", "b"), ("a", "lif"),
                                                          ("b", "lif"), ("lif", "output")]))
    _, traced = trace_source(ModelSource(checkpoint=str(path), timesteps=2, input_layout="TB"))
    add = next(n for n in traced.graph.nodes if n.op == "add")
    assert {v.producer.module for v in add.inputs} == {"a", "b"} and add.output.users()[0].op == "lif"


@pytest.mark.parametrize("second, message", [
    (nir.CubaLIF(tau_syn=np.full(4, 2.0), tau_mem=np.full(4, 4.0), r=np.ones(4), v_leak=np.zeros(4),
                 v_threshold=np.ones(4)), "lif2: CubaLIF (no spikec op)"),
    (nir.LIF(tau=np.arange(2.0, 6.0), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4),
             v_reset=np.zeros(4)), "lif2: tau differs between neurons (spikec takes one value per layer)"),
    (nir.LIF(tau=np.full(4, 2.0), r=np.ones(4), v_leak=np.full(4, -1.0), v_threshold=np.ones(4),
             v_reset=np.zeros(4)), "lif2: LIF leaking toward v_leak != v_reset"),
    (_lif(4, 2.0, 3.0), "lif2: LIF with r = 3 (spikec takes r = 1, decay_input, or r = tau)"),
])
def test_what_spikec_cannot_express_is_refused_in_one_line(tmp_path, second, message):
    code, _, err = run("compile", _mlp(tmp_path / "bad.nir", second), "-T", "4", "-o", tmp_path / "out")
    assert code == 2 and err == f"spikec: error: bad: spikec cannot read 1 NIR node(s): {message}\n"


def test_bad_nir_inputs_are_one_line(tmp_path):
    graph = _mlp(tmp_path / "mlp.nir")
    code, _, err = run("compile", graph, "-o", tmp_path / "out")
    assert code == 2 and "a NIR graph describes one time step; say how many to run with --timesteps T" in err
    code, _, err = run("compile", graph, "-T", "2", "--input-shape", "1,8", "-o", tmp_path / "out")
    assert code == 2 and "is a NIR graph: --input-shape do not apply to it" in err
    fake = tmp_path / "fake.nir"
    fake.write_text("not hdf5")
    code, _, err = run("verify", "--spike-driven", fake, "-T", "2")
    assert code == 2 and err.count("\n") == 1 and "is not a readable NIR file" in err, err
