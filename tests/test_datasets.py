"""The digits split (fixed, stratified, in [0, 1]), the npz input loader's one-line errors, and the committed
digits checkpoints: each loads through spikec's own loader and scores its recorded float test accuracy."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from spikec.datasets import load_digits_split, load_npz_data
from spikec.errors import InputError
from spikec.frontends.torch import ModelSource, load_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINTS = os.path.join(REPO, "examples", "digits", "checkpoints")
DIGITS_ARCHS = ["spikingformer-cifar", "spikformer-cifar", "sdt-cifar"]


# ---------------------------------------------------------------- the digits split


def test_digits_split_shapes_types_and_range():
    x_train, y_train = load_digits_split("train")
    x_test, y_test = load_digits_split("test")
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)
    assert y_train.shape == (1347,) and y_test.shape == (450,)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        # grey levels 0..16 divided by 16: every value is a multiple of 1/16
        assert np.array_equal(x * 16, np.round(x * 16))
    assert set(np.unique(y_train)) == set(range(10)) and set(np.unique(y_test)) == set(range(10))


def test_digits_split_is_deterministic_and_returns_fresh_copies():
    x1, y1 = load_digits_split("test")
    x1[0] = 5.0  # the caller may scribble on its copy
    x2, y2 = load_digits_split("test")
    x3, y3 = load_digits_split("test")
    assert np.array_equal(x2, x3) and np.array_equal(y2, y3)
    assert x2.max() == 1.0
    # pinned: the first labels and checksums of the split, so a change in scikit-learn's splitter shows up
    assert y2[:10].tolist() == [2, 0, 4, 9, 4, 1, 2, 4, 6, 7]
    assert int(y2.sum()) == 2016 and float(x2.astype(np.float64).sum()) == 8794.5625


def test_digits_split_is_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    full = load_digits()
    _, y_train = load_digits_split("train")
    x_test, y_test = load_digits_split("test")
    counts = np.bincount(full.target, minlength=10)
    test_counts = np.bincount(y_test, minlength=10)
    train_counts = np.bincount(y_train, minlength=10)
    assert np.array_equal(test_counts + train_counts, counts)
    # each class holds its 25% share of the test split, to within one image
    assert np.all(np.abs(test_counts - counts * 0.25) <= 1)
    # the test images are exactly the images not in the training split
    x_train, _ = load_digits_split("train")
    every = {img.tobytes() for img in (full.images.astype(np.float32) / 16).reshape(-1, 1, 8, 8)}
    test_set = {img.tobytes() for img in x_test}
    train_set = {img.tobytes() for img in x_train}
    assert test_set | train_set == every


def test_digits_split_rejects_an_unknown_split():
    with pytest.raises(InputError, match=r"^digits split must be 'train' or 'test', got 'val'$"):
        load_digits_split("val")


# ---------------------------------------------------------------- npz inputs


def test_npz_loader_reads_x_and_optional_y(tmp_path):
    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    y = np.arange(5)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    np.savez(tmp_path / "x.npz", x=x)
    got_x, got_y = load_npz_data(str(tmp_path / "xy.npz"))
    assert np.array_equal(got_x, x) and np.array_equal(got_y, y)
    got_x, got_y = load_npz_data(tmp_path / "x.npz")
    assert np.array_equal(got_x, x) and got_y is None


def _message(path) -> str:
    with pytest.raises(InputError) as info:
        load_npz_data(str(path))
    text = str(info.value)
    assert "\n" not in text
    return text


def test_npz_loader_missing_file(tmp_path):
    path = tmp_path / "absent.npz"
    assert _message(path) == f"{path}: no such file"


def test_npz_loader_not_an_npz(tmp_path):
    path = tmp_path / "inputs.npy"
    np.save(path, np.zeros((2, 3)))
    assert _message(path) == (f"{path} is not an .npz file; save inputs with "
                              "numpy.savez(path, x=inputs, y=labels)")
    text = tmp_path / "inputs.txt"
    text.write_text("1 2 3\n")
    assert _message(text) == (f"{text} is not an .npz file; save inputs with "
                              "numpy.savez(path, x=inputs, y=labels)")


def test_npz_loader_directory(tmp_path):
    assert _message(tmp_path) == f"{tmp_path} is a directory, not an .npz file"


def test_npz_loader_no_x_array(tmp_path):
    path = tmp_path / "wrong.npz"
    np.savez(path, images=np.zeros((2, 3)), y=np.zeros(2))
    assert _message(path) == (f"{path} has no array 'x' (arrays: images, y); save inputs as "
                              "numpy.savez(path, x=inputs, y=labels)")


def test_npz_loader_y_length_mismatch(tmp_path):
    path = tmp_path / "short.npz"
    np.savez(path, x=np.zeros((4, 1, 8, 8)), y=np.zeros(3, dtype=np.int64))
    assert _message(path) == f"{path}: 'y' has 3 labels but 'x' has 4 inputs along axis 0"


def test_npz_loader_counts_time_major_samples_along_axis_1(tmp_path):
    path = tmp_path / "tb.npz"
    np.savez(path, x=np.zeros((2, 5, 1, 8, 8)), y=np.zeros(5, dtype=np.int64))
    x, y = load_npz_data(str(path), batch_axis=1)
    assert x.shape == (2, 5, 1, 8, 8) and len(y) == 5
    with pytest.raises(InputError, match="'y' has 5 labels but 'x' has 2 inputs along axis 0"):
        load_npz_data(str(path))


def test_npz_loader_refuses_object_arrays(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    text = _message(path)
    assert text.startswith(f"{path} is not a readable .npz file: ValueError:")


# ---------------------------------------------------------------- committed digits checkpoints


@pytest.fixture(scope="module")
def digits_test_split():
    x, y = load_digits_split("test")
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("arch", DIGITS_ARCHS)
def test_committed_checkpoint_reproduces_its_float_test_accuracy(arch, digits_test_split):
    path = os.path.join(CHECKPOINTS, f"{arch}.pt")
    assert os.path.getsize(path) < 2 * 1024 * 1024
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["arch"] == arch and payload["input_shape"] == [1, 1, 8, 8]
    assert payload["timesteps"] == payload["config"]["T"]
    recorded = payload["float_test_accuracy"]
    assert isinstance(recorded, float) and recorded >= 0.9

    loaded = load_model(ModelSource(checkpoint=path))
    assert loaded.input_shape == (1, 1, 8, 8)
    module = loaded.module.eval()
    x, y = digits_test_split
    with torch.no_grad():
        pred = module(x).argmax(dim=1)
    assert int((pred == y).sum()) / len(y) == recorded
