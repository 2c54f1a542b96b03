"""The digits split (fixed, stratified, in [0, 1]), the npz input loader's one-line errors, and the committed
digits checkpoints: each loads through spikec's own loader and scores its recorded float test accuracy."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from spikec.datasets import ArrayDataset, load_digits_split, load_npz_data, open_data
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


# ---------------------------------------------------------------- data sets read by index


def _shards(tmp_path, x, y=None, sizes=(3, 5, 2)):
    directory = tmp_path / "shards"
    directory.mkdir()
    start = 0
    for i, size in enumerate(sizes):
        arrays = {"x": x[start:start + size], **({} if y is None else {"y": y[start:start + size]})}
        np.savez(directory / f"part-{i}.npz", **arrays)
        start += size
    return str(directory)


def test_shards_and_memmaps_read_the_samples_the_whole_array_holds(tmp_path):
    x = np.random.default_rng(1).random((10, 1, 4, 4)).astype(np.float32)
    y = np.arange(10) % 3
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "mm").mkdir()
    np.save(tmp_path / "mm" / "x.npy", x)
    np.save(tmp_path / "mm" / "y.npy", y)
    for data in (_shards(tmp_path, x, y), str(tmp_path / "mm"), str(tmp_path / "x.npy")):
        dataset = open_data(data, "B")
        assert len(dataset) == 10 and dataset.shape == x.shape
        for start, stop in ((0, 10), (2, 9), (3, 8), (8, 10), (4, 5)):    # within and across shard boundaries
            assert np.array_equal(dataset.read(start, stop), x[start:stop])
        if data.endswith("x.npy"):
            assert dataset.labels is None
        else:
            assert np.array_equal(dataset.labels, y)
        limited = open_data(data, "B", limit=4)
        assert len(limited) == 4 and np.array_equal(limited.read(0, 100), x[:4])


def test_time_major_shards_stack_samples_along_axis_1(tmp_path):
    x = np.random.default_rng(2).random((2, 6, 3)).astype(np.float32)
    directory = tmp_path / "tb"
    directory.mkdir()
    np.savez(directory / "a.npz", x=x[:, :4])
    np.savez(directory / "b.npz", x=x[:, 4:])
    dataset = open_data(str(directory), "TB")
    assert len(dataset) == 6 and np.array_equal(dataset.read(3, 6), x[:, 3:6])


def test_a_data_set_read_from_files_pickles_as_its_name(tmp_path):
    x = np.zeros((1000, 1, 8, 8), np.float32)
    data = _shards(tmp_path, x, sizes=(600, 400))
    dataset = open_data(data, "B", limit=700)
    dataset.read(0, 10)                                  # a loaded shard does not travel either
    blob = pickle.dumps(dataset)
    assert len(blob) < 1000
    again = pickle.loads(blob)
    assert len(again) == 700 and np.array_equal(again.read(590, 610), x[590:610])
    array = ArrayDataset(x[:3], None, "B")
    assert np.array_equal(pickle.loads(pickle.dumps(array)).read(0, 3), x[:3])


def _open_error(*args) -> str:
    with pytest.raises(InputError) as info:
        open_data(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_shard_directories_are_one_line_each(tmp_path):
    (tmp_path / "empty").mkdir()
    assert _open_error(str(tmp_path / "empty"), "B") == f"{tmp_path / 'empty'} is a directory with neither x.npy " \
                                                        "nor .npz shards"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.savez(mixed / "a.npz", x=np.zeros((2, 3)), y=np.zeros(2, np.int64))
    np.savez(mixed / "b.npz", x=np.zeros((2, 3)))
    assert _open_error(str(mixed), "B") == f"{mixed}: some shards have labels y and some do not (without: b.npz)"
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    np.savez(shapes / "a.npz", x=np.zeros((2, 3)))
    np.savez(shapes / "b.npz", x=np.zeros((2, 4)))
    assert _open_error(str(shapes), "B") == (f"{shapes}: the shards' x arrays must have the same shape except along "
                                             "the batch axis 0: a.npz [2, 3], b.npz [2, 4]")
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    np.savez(unnamed / "a.npz", images=np.zeros((2, 3)))
    assert _open_error(str(unnamed), "B") == (f"{unnamed / 'a.npz'} has no array 'x'; save each shard as "
                                              "numpy.savez(path, x=inputs, y=labels)")


def test_bad_npy_inputs_are_one_line_each(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{}, 1], dtype=object), allow_pickle=True)
    assert _open_error(str(tmp_path / "objects.npy"), "B").startswith(
        f"{tmp_path / 'objects.npy'} is not a readable .npy file: ValueError:")
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    assert _open_error(str(tmp_path / "text.npy"), "B") == \
        f"{tmp_path / 'text.npy'}: 'x' has dtype <U1; inputs must be real numbers"
    x = np.zeros((4, 3), np.float32)
    x[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    dataset = open_data(str(tmp_path / "nan.npy"), "B")
    assert np.array_equal(dataset.read(0, 3), x[:3])           # checked as each batch is read
    with pytest.raises(InputError, match=r"nan\.npy: 'x' holds 1 NaN or infinite value\(s\); inputs must be finite"):
        dataset.read(2, 4)
    assert _open_error(str(tmp_path / "absent.npy"), "B") == f"{tmp_path / 'absent.npy'}: no such file"
