"""The compiled artifact (docs/design.md, §7): identical bytes for identical inputs, nothing written on failure,
a faithful round trip through disk, and one clear error for every kind of damage."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import small_input, small_model
from spikec.backends.intsim.interpreter import run_intsim
from spikec.compiler import compile_graph, load_artifact
from spikec.errors import InputError
from spikec.frontends.torch import trace_module
from spikec.ir import graph_difference

ARCH = "spikingformer-cifar"


def _compile():
    model, x = small_model(ARCH), small_input(ARCH)
    return compile_graph(trace_module(model, x).graph, "tiny", tuple(x.shape), "B")


def _files(path):
    return {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}


def test_artifact_is_byte_identical_and_round_trips(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    compiled = _compile()
    compiled.write(str(first))
    _compile().write(str(second))
    assert _files(first) == _files(second)
    assert sorted(_files(first)) == ["manifest.json", "model.ir", "weights.npz"]
    loaded = load_artifact(str(first))
    assert graph_difference(loaded.graph, compiled.graph) is None
    assert loaded.output_scales == compiled.output_scales and loaded.timesteps == 2
    x = small_input(ARCH, batch=3, seed=5).numpy()
    assert np.array_equal(run_intsim(loaded.graph, [x]).outputs[0], run_intsim(compiled.graph, [x]).outputs[0])


def test_rewriting_an_artifact_replaces_it_whole(tmp_path):
    out = tmp_path / "art"
    _compile().write(str(out))
    (out / "weights.npz").write_bytes(b"stale")
    _compile().write(str(out))
    assert sorted(os.listdir(out)) == ["manifest.json", "model.ir", "weights.npz"]
    assert load_artifact(str(out)).name == "tiny"
    assert [p for p in os.listdir(tmp_path) if p != "art"] == []


@pytest.mark.parametrize("target", ["intsim", "loihi2"])
def test_a_loaded_artifact_writes_the_same_bytes_again(tmp_path, target):
    model, x = small_model(ARCH), small_input(ARCH)
    compile_graph(trace_module(model, x).graph, "tiny", tuple(x.shape), "B", target).write(str(tmp_path / "a"))
    loaded = load_artifact(str(tmp_path / "a"))
    assert loaded.target == target and loaded.name == "tiny" and loaded.input_shape == tuple(x.shape)
    loaded.write(str(tmp_path / "b"))
    assert _files(tmp_path / "b") == _files(tmp_path / "a")
    assert ("lava_net.py" in _files(tmp_path / "b")) == (target == "loihi2")


def test_an_empty_directory_is_written_into(tmp_path):
    (tmp_path / "art").mkdir()
    _compile().write(str(tmp_path / "art"))
    assert sorted(os.listdir(tmp_path / "art")) == ["manifest.json", "model.ir", "weights.npz"]


def _user_files(root):
    (root / "train.py").write_text("print('train')\n")
    (root / "data").mkdir()
    (root / "data" / "x.bin").write_bytes(b"\x00" * 8)
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_directory_that_is_not_an_artifact_is_never_replaced(tmp_path):
    (tmp_path / "proj").mkdir()
    before = _user_files(tmp_path / "proj")
    with pytest.raises(InputError, match=r"already exists and is not a spikec artifact \(it holds data, train.py\); "
                                         r"writing would delete it: .* pass --force"):
        _compile().write(str(tmp_path / "proj"))
    assert {p: p.read_bytes() for p in (tmp_path / "proj").rglob("*") if p.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ["proj"]


def test_the_working_directory_is_never_replaced(tmp_path, monkeypatch):
    (tmp_path / "proj").mkdir()
    before = _user_files(tmp_path / "proj")
    monkeypatch.chdir(tmp_path / "proj")
    for target in (".", ".."):
        with pytest.raises(InputError, match="is the working directory or holds it"):
            _compile().write(target, force=True)
    assert {p: p.read_bytes() for p in (tmp_path / "proj").rglob("*") if p.is_file()} == before


def test_an_artifact_with_the_users_files_beside_it_is_kept(tmp_path):
    out = tmp_path / "art"
    _compile().write(str(out))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"holds a spikec artifact and also notes.txt, which writing would delete"):
        _compile().write(str(out))
    assert (out / "notes.txt").read_text() == "mine"


def test_force_replaces_any_directory(tmp_path):
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "notes.txt").write_text("x")
    _compile().write(str(tmp_path / "scratch"), force=True)
    assert sorted(os.listdir(tmp_path / "scratch")) == ["manifest.json", "model.ir", "weights.npz"]


def test_the_artifact_directory_follows_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        _compile().write(str(tmp_path / "art"))
    finally:
        os.umask(previous)
    assert (tmp_path / "art").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "art" / "model.ir").stat().st_mode & 0o777 == 0o644


def test_a_failed_compile_writes_nothing(tmp_path, monkeypatch):
    compiled = _compile()
    monkeypatch.setattr("spikec.compiler._write_npz", lambda path, arrays: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        compiled.write(str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []


def _edit_manifest(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _set(key, value):
    return lambda p: _edit_manifest(p, lambda m: m.__setitem__(key, value))


@pytest.mark.parametrize("damage, message", [
    (lambda p: os.remove(p / "weights.npz"), "is not a complete spikec artifact: missing weights.npz"),
    (lambda p: (p / "manifest.json").write_text("{"), "manifest.json is corrupt: "),
    (lambda p: (p / "manifest.json").write_text("[1, 2]"), "manifest.json is not a spikec artifact manifest"),
    (lambda p: (p / "manifest.json").write_text('{"format": "other"}'), "is not a spikec artifact manifest"),
    (_set("version", 1), "is a spikec artifact of version 1; this spikec reads version 3: compile the model again"),
    (lambda p: (p / "weights.npz").write_bytes(b"PK\x03\x04broken"), "weights.npz was changed after spikec wrote it"),
    (lambda p: (p / "model.ir").write_text((p / "model.ir").read_text().replace("qlif", "qlaf", 1)),
     "model.ir was changed after spikec wrote it"),
    (_set("target", "gpu"), "'target' must be one of intsim, loihi2"),
    (_set("input_layout", "BT"), "'input_layout' must be B or TB"),
    (_set("input_shape", None), "'input_shape' must be a list of positive integers"),
    (_set("input_shape", [1, -3, 8, 8]), "'input_shape' must be a list of positive integers"),
    (_set("timesteps", "2"), "'timesteps' must be a positive integer"),
    (_set("model", ["x"]), "'model' must be the model's name"),
    (_set("quantization", None), "'quantization.output_scales' must be a list of positive numbers"),
    (_set("digests", {}), "'digests' must give the sha256 of model.ir, weights.npz"),
    (lambda p: _edit_manifest(p, lambda m: m["digests"].__setitem__("../etc/passwd", "0")),
     "the manifest vouches for '../etc/passwd', which the artifact does not hold"),
])
def test_damaged_artifacts_are_named(tmp_path, damage, message):
    path = tmp_path / "art"
    _compile().write(str(path))
    damage(path)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        load_artifact(str(path))


def test_missing_artifact_says_how_to_make_one(tmp_path):
    with pytest.raises(InputError, match=r"no such artifact directory \(run `spikec compile ... -o"):
        load_artifact(str(tmp_path / "nothing"))


def test_unquantizable_model_names_the_layer():
    model, x = small_model(ARCH), small_input(ARCH)
    graph = trace_module(model, x).graph
    lif = next(n for n in graph.nodes if n.op == "lif")
    lif.attrs["v_reset"] = None
    with pytest.raises(InputError, match=r"quantize: lif in patch_embed.block1_lif \(spikec/models/spikingformer.py:\d+\) "
                                         r"resets soft"):
        compile_graph(graph, "tiny", tuple(x.shape), "B")
