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

__all__ = ["DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION", "load_digits_split", "load_npz_data"]

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
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory, not an .npz file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not an .npz file; save inputs with numpy.savez(path, x=inputs, y=labels)")
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
    if x.ndim <= batch_axis:
        raise InputError(f"{path}: 'x' has shape {list(x.shape)}; it needs a batch axis at position {batch_axis}")
    count = x.shape[batch_axis]
    if y is not None and y.ndim == 0:
        raise InputError(f"{path}: 'y' is a scalar; it needs one label per input in 'x' ({count})")
    if y is not None and len(y) != count:
        raise InputError(f"{path}: 'y' has {len(y)} labels but 'x' has {count} inputs along axis {batch_axis}")
    return x, y
