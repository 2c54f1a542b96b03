"""Small data sets for examples, tests and ``spikec simulate --data``.

``digits`` is scikit-learn's copy of the UCI 8x8 handwritten digits (1797 images, grey levels 0..16,
10 classes). It ships inside scikit-learn, so it needs no download. The split is fixed:

* stratified by class, 25% test, ``sklearn.model_selection.train_test_split(..., random_state=0)``,
  which gives 1347 training and 450 test images;
* images are ``float32 [N, 1, 8, 8]`` scaled to ``[0, 1]`` by dividing by 16, labels ``int64 [N]``.

The training script (``examples/digits/train.py``), the committed checkpoints' recorded accuracies and the
tests all use this one function, so it must not change: a different split would silently change every
recorded number.

``load_npz_data`` reads the user's own inputs: a ``.npz`` with an array ``x`` and optionally ``y`` labels.
"""

from __future__ import annotations

import functools
import os
import zipfile

import numpy as np

from spikec.errors import InputError
from spikec.files import MAX_INPUT_BYTES, require_regular_file

__all__ = ["DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION", "load_digits_split", "load_npz_data", "load_data"]

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.25


@functools.lru_cache(maxsize=1)
def _digits_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y)
    arrays = {"train": (x_train, y_train), "test": (x_test, y_test)}
    for xs, ys in arrays.values():
        xs.setflags(write=False)
        ys.setflags(write=False)
    return arrays


def load_digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed ``"train"`` (1347) or ``"test"`` (450) part of the 8x8 digits (see the module docstring).

    Returns ``(x float32 [N, 1, 8, 8] in [0, 1], y int64 [N])``, fresh writable copies on every call.
    """
    if split not in ("train", "test"):
        raise InputError(f"digits split must be 'train' or 'test', got {split!r}")
    x, y = _digits_split()[split]
    return x.copy(), y.copy()


def load_npz_data(path: str, batch_axis: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Read inputs ``x`` and optional labels ``y`` from a ``.npz`` file (``np.savez(path, x=..., y=...)``).

    The samples are stacked along ``batch_axis`` of ``x``: 0 for a model that takes ``[B, ...]``, 1 for one
    that takes ``[T, B, ...]`` (``x`` is then ``[T, N, ...]``). Each problem is an :class:`InputError` with
    one line: a missing file, a file that is not an npz, no ``x`` array, a ``y`` whose length does not match
    the number of samples. Object arrays are refused (they would need pickle, which runs code).
    """
    path = os.fspath(path)
    require_regular_file(path, "an .npz file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not an .npz file; save inputs with numpy.savez(path, x=inputs, y=labels)")
    _check_members(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if "x" not in names:
                found = ", ".join(names) if names else "none"
                raise InputError(f"{path} has no array 'x' (arrays: {found}); save inputs as "
                                 "numpy.savez(path, x=inputs, y=labels)")
            x = npz["x"]
            y = npz["y"] if "y" in names else None
    except InputError:
        raise
    except Exception as exc:  # a zip that is not an npz, a corrupt member, an object array
        raise InputError(f"{path} is not a readable .npz file: {type(exc).__name__}: {exc}") from None
    _check_inputs(path, x, batch_axis)
    if y is not None:
        y = _labels(path, y, x.shape[batch_axis], batch_axis)
    return x, y


def _check_members(path: str) -> None:
    """Refuse an archive whose arrays would not fit in memory once decompressed (a zip bomb or a data set
    too large to read whole)."""
    with zipfile.ZipFile(path) as archive:
        size = sum(info.file_size for info in archive.infolist())
    if size > MAX_INPUT_BYTES:
        raise InputError(f"{path} holds {size / 2**30:.1f} GiB of arrays; spikec reads at most "
                         f"{MAX_INPUT_BYTES >> 30} GiB of data into memory")


def _check_inputs(path: str, x: np.ndarray, batch_axis: int) -> None:
    if x.ndim <= batch_axis:
        raise InputError(f"{path}: 'x' has shape {list(x.shape)}; it needs a batch axis at position {batch_axis}")
    if x.dtype.kind not in "biuf":
        raise InputError(f"{path}: 'x' has dtype {x.dtype}; inputs must be real numbers")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise InputError(f"{path}: 'x' holds {bad} NaN or infinite value(s); inputs must be finite")


def _labels(path: str, y: np.ndarray, count: int, batch_axis: int) -> np.ndarray:
    """``y`` as int64 class indices, one per sample, or one clear error."""
    if y.ndim != 1:
        raise InputError(f"{path}: 'y' has shape {list(y.shape)}; it needs one label per input in 'x' ({count})")
    if len(y) != count:
        raise InputError(f"{path}: 'y' has {len(y)} labels but 'x' has {count} inputs along axis {batch_axis}")
    integral = y.dtype.kind in "iu" or (y.dtype.kind == "f" and np.isfinite(y).all() and np.all(y == np.round(y)))
    if not integral:
        raise InputError(f"{path}: 'y' has dtype {y.dtype}; labels must be integer class indices")
    return y.astype(np.int64)


def load_data(data: str, layout: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """What ``--data`` names: ``digits`` (the test split above) or a ``.npz`` (:func:`load_npz_data`), samples
    stacked along the batch axis of the input ``layout`` (axis 0 for ``B``, 1 for ``TB``); the first ``limit``
    samples. Returns ``(x, y)``, ``y`` None without labels."""
    axis = 0 if layout == "B" else 1
    if data == "digits":
        if layout != "B":
            raise InputError("--data digits holds images [N, 1, 8, 8]: it needs a model of input layout B")
        x, y = load_digits_split("test")
    else:
        x, y = load_npz_data(data, axis)
    if limit is not None:
        x, y = np.take(x, np.arange(min(limit, x.shape[axis])), axis=axis), None if y is None else y[:limit]
    return x, y
