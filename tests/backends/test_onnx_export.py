"""The ONNX export, checked by its consumer: onnxruntime, reading the file `spikec export` writes, gives intsim's
logits and every neuron layer's spikes bit for bit, on the trained digits checkpoints over the whole test split,
on every zoo family and on the random graphs that cover every op; what it cannot express is refused in one line."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from click.testing import CliRunner

from spikec.api import compile_source
from spikec.backends.intsim.interpreter import run_intsim
from spikec.backends.onnx import export_onnx
from spikec.cli import main
from spikec.datasets import load_digits_split
from spikec.errors import UnsupportedError
from spikec.files import current_umask
from spikec.frontends.torch import ModelSource
from spikec.models import zoo_names

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lava"))     # the firing models the Lava tests use
from lava_cases import DIGITS, zoo_compiled  # noqa: E402
from random_models import random_case  # noqa: E402
from test_lava_random_graphs import QUICK_SEEDS  # noqa: E402


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _assert_bit_exact(graph, session, x) -> list[int]:
    """onnxruntime's outputs equal intsim's on ``x``; returns the spikes of each neuron layer (to show they fire)."""
    reference = run_intsim(graph, [x], keep_values=True)
    neurons = [n for n in graph.nodes if n.op == "qlif"]
    outputs = session.run(None, {"input_0": np.ascontiguousarray(x, dtype=np.float32)})
    assert np.array_equal(outputs[0], reference.outputs[0]), "logits differ"
    for index, node in enumerate(neurons):
        assert np.array_equal(outputs[1 + index], reference.of(node)), f"spikes of {node.module} differ"
    return [int(reference.of(n).sum()) for n in neurons]


def _session(model) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("arch, options", [("spikingformer-cifar", {}), ("spikformer-cifar", {"input_exp": 4}),
                                           ("sdt-cifar", {})])
def test_digits_checkpoints_exported_by_the_cli_run_bit_exact_on_onnxruntime(tmp_path, arch, options):
    """Default compiles read 8 fractional input bits, so the encoding convolution takes two base-256 digits;
    --input-exp 4 takes one."""
    _, compiled = compile_source(ModelSource(checkpoint=os.path.join(DIGITS, f"{arch}.pt")), **options)
    compiled.write(tmp_path / "artifact")
    code, _, err = run("export", tmp_path / "artifact", "--to", "onnx", "-o", tmp_path / "model.onnx")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["artifact", "model.onnx"]
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x, _ = load_digits_split("test")
    spikes = _assert_bit_exact(compiled.graph, session, x)
    assert all(spikes), f"silent neuron layers prove little: {spikes}"
    modules = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert modules["spikes_0"] == next(n.module for n in compiled.graph.nodes if n.op == "qlif")


@pytest.mark.parametrize("arch", zoo_names())
def test_every_zoo_family_runs_bit_exact_on_onnxruntime(arch):
    compiled, x = zoo_compiled(arch, batch=2)
    spikes = _assert_bit_exact(compiled.graph, _session(export_onnx(compiled.graph)), x)
    assert sum(s > 0 for s in spikes) >= len(spikes) - 2, f"too many silent layers to prove much: {spikes}"


@pytest.mark.parametrize("seed", QUICK_SEEDS)
def test_random_graphs_run_bit_exact_on_onnxruntime(seed):
    """The random graphs whose seeds together hold every block the compiler maps."""
    import spikec

    case = random_case(seed)
    compiled = spikec.compile(case.model, case.x)
    _assert_bit_exact(compiled.graph, _session(export_onnx(compiled.graph)), case.x.numpy())


def test_a_float_graph_is_refused_naming_the_ops(tmp_path):
    _, compiled = compile_source(ModelSource(checkpoint=os.path.join(DIGITS, "sdt-cifar.pt")))
    with pytest.raises(UnsupportedError) as refused:
        export_onnx(compiled.float_graph)
    message = str(refused.value)
    assert message.startswith("sdt_cifar: ops ONNX export has no rule for: conv2d, ") and "\n" not in message
    assert "lif" in message and "(first at conv2d" in message


def test_simulate_checks_the_exported_file_against_intsim(tmp_path):
    """The file carries its artifact, so simulate runs the file on onnxruntime and its graph on intsim."""
    code, _, err = run("compile", os.path.join(DIGITS, "spikformer-cifar.pt"), "-o", tmp_path / "art")
    assert code == 0, err
    assert run("export", tmp_path / "art", "--to", "onnx", "-o", tmp_path / "m.onnx")[0] == 0
    assert oct(os.stat(tmp_path / "m.onnx").st_mode & 0o777) == oct(0o666 & ~current_umask())
    for model in (tmp_path / "m.onnx", tmp_path / "art"):
        code, out, err = run("simulate", model, "--backend", "onnxruntime", "--compare", "intsim", "--limit", "100",
                             "--format", "json")
        assert code == 0, err
        report = json.loads(out)
        assert report["bit_exact"] == {"intsim/onnxruntime": True}
        assert report["backends"]["onnxruntime"]["accuracy"] == report["backends"]["intsim"]["accuracy"] > 0.9


def test_an_onnx_file_spikec_did_not_write_is_refused(tmp_path):
    _, compiled = compile_source(ModelSource(checkpoint=os.path.join(DIGITS, "sdt-cifar.pt")))
    onnx.save(export_onnx(compiled.graph), str(tmp_path / "bare.onnx"))        # no artifact inside
    (tmp_path / "junk.onnx").write_bytes(b"\x00not protobuf")
    for name, message in (("bare.onnx", "was not written by `spikec export --to onnx`"),
                          ("junk.onnx", "is not a readable ONNX file")):
        code, _, err = run("simulate", tmp_path / name, "--backend", "onnxruntime")
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_model_is_compiled_with_the_defaults_then_exported(tmp_path):
    code, _, err = run("export", os.path.join(DIGITS, "sdt-cifar.pt"), "--to", "onnx", "-o", tmp_path / "m.onnx")
    assert code == 0 and "exported sdt_cifar to ONNX (opset 18" in err, err
    onnx.checker.check_model(str(tmp_path / "m.onnx"))


@pytest.mark.parametrize("args, message", [
    (["missing.pt", "--to", "onnx", "-o", "{tmp}/x.onnx"], "missing.pt: no such file"),
    (["examples/digits/checkpoints/sdt-cifar.pt", "--to", "tflite", "-o", "{tmp}/x"], "Invalid value for '--to'"),
    (["examples/digits/checkpoints/sdt-cifar.pt", "--to", "onnx", "-o", "{tmp}"], "is a directory"),
])
def test_export_misuse_is_one_line(tmp_path, args, message):
    code, _, err = run("export", *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert os.listdir(tmp_path) == []
