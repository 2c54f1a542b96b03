"""Fuzzing of every loader at spikec's boundary: whatever bytes or values a file holds, the IR parser raises only
``IRError``, and the checkpoint, npz data and artifact loaders (the loihi2 process graph included) raise only
``InputError`` (one line, exit 2), never another exception (which the CLI would report as spikec's own bug,
exit 3)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays, scalar_dtypes

from spikec.compiler import load_artifact
from spikec.datasets import load_npz_data
from spikec.errors import InputError, IRError
from spikec.frontends.torch import ModelSource
from spikec.frontends.torch.loading import load_model
from spikec.ir import parse_graph, print_graph
from spikec.models import build_model

CONFIG = {"depth": 1, "embed_dim": 16, "num_heads": 2, "img_size": 8, "in_channels": 1, "T": 2}
ARCH = "spikingformer-cifar"
FUZZ = settings(max_examples=int(os.environ.get("SPIKEC_FUZZ_EXAMPLES", 100)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory):
    import spikec

    model = build_model(ARCH, CONFIG).eval()
    path = tmp_path_factory.mktemp("artifact") / "art"
    spikec.compile(model, torch.rand(1, 1, 8, 8), target="loihi2").write(str(path))
    return path


def _mutations(text: bytes) -> st.SearchStrategy[bytes]:
    """``text`` with a span replaced by random bytes, cut short, or with a span repeated."""
    position = st.integers(0, len(text))
    replaced = st.tuples(position, st.integers(0, 40), st.binary(max_size=40)).map(
        lambda t: text[:t[0]] + t[2] + text[t[0] + t[1]:])
    cut = position.map(lambda p: text[:p])
    repeated = st.tuples(position, st.integers(1, 30), st.integers(2, 50)).map(
        lambda t: text[:t[0]] + text[t[0]:t[0] + t[1]] * t[2] + text[t[0]:])
    return replaced | cut | repeated


def test_the_ir_parser_raises_only_ir_errors(artifact_dir):
    text = (artifact_dir / "model.ir").read_bytes()
    weights = dict(np.load(artifact_dir / "weights.npz"))

    @FUZZ
    @given(_mutations(text))
    def parse(data):
        try:
            graph = parse_graph(data.decode("utf-8", errors="replace"), weights=weights)
        except IRError:
            return
        assert print_graph(graph)            # what parses is a graph that prints

    parse()


def test_the_artifact_loader_raises_only_input_errors(artifact_dir):
    manifest = json.loads((artifact_dir / "manifest.json").read_text())

    @FUZZ
    @given(st.sampled_from(sorted(manifest)), json_values, st.booleans(), st.integers(0, 20))
    def load(key, value, nested, which):
        edited = json.loads(json.dumps(manifest))
        if nested and isinstance(edited[key], dict) and edited[key]:
            inner = sorted(edited[key])
            edited[key][inner[which % len(inner)]] = value
        else:
            edited[key] = value
        work = tempfile.mkdtemp()
        try:
            copy = os.path.join(work, "art")
            shutil.copytree(artifact_dir, copy)
            with open(os.path.join(copy, "manifest.json"), "w") as f:
                json.dump(edited, f)
            try:
                load_artifact(copy).process_graph()      # the loihi2 part is read when a Lava run needs it
            except InputError:
                pass
        finally:
            shutil.rmtree(work)

    load()


def test_the_npz_data_loader_raises_only_input_errors(tmp_path):
    @FUZZ
    @given(st.dictionaries(st.sampled_from(["x", "y", "z"]),
                           arrays(scalar_dtypes(), array_shapes(min_dims=0, max_dims=4, max_side=4)), max_size=3),
           st.integers(0, 1))
    def load(members, batch_axis):
        path = tmp_path / "data.npz"
        np.savez(path, **members)
        try:
            x, y = load_npz_data(str(path), batch_axis)
        except InputError:
            return
        assert np.all(np.isfinite(x)) and (y is None or y.dtype.kind in "iu")

    load()


tensors = st.one_of(
    arrays(st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.uint8]),
           array_shapes(min_dims=0, max_dims=3, max_side=3)).map(torch.from_numpy),
    st.floats(allow_nan=True).map(torch.tensor))


def test_the_checkpoint_loader_raises_only_input_errors(tmp_path):
    state = build_model(ARCH, CONFIG).state_dict()
    keys = sorted(state)

    @FUZZ
    @given(st.dictionaries(st.sampled_from(["arch", "config", "state_dict", "input_shape", "timesteps", "other"]),
                           json_values | tensors, max_size=4),
           st.sampled_from(keys), tensors, st.booleans())
    def load(entries, key, tensor, whole):
        payload = {"arch": ARCH, "config": dict(CONFIG), "state_dict": dict(state)}
        if whole:
            payload.update(entries)
        else:
            payload["state_dict"][key] = tensor
        path = tmp_path / "ckpt.pt"
        torch.save(payload, path)
        try:
            load_model(ModelSource(checkpoint=str(path)))
        except InputError:
            pass

    load()
