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

__all__ = ["DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION", "load_digits_split", "load_npz_data", "load_data", "open_data",
           "Dataset", "ArrayDataset", "MemmapDataset", "ShardedDataset"]

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
    _check_shape(path, x, batch_axis)
    _check_values(path, x)


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


class Dataset:
    """Samples stacked along the batch axis of an input layout (0 for ``B``, 1 for ``TB``), read by index.

    ``name`` is what ``--data`` named, ``shape`` the shape of the whole ``x`` (``len(self)`` samples along the
    axis), ``labels`` the ``int64`` class indices or None. :meth:`read` returns samples ``start`` to ``stop`` as
    a contiguous ``float32`` array. A data set read from files pickles as its name, so the workers of a
    scale-out run (:mod:`spikec.engines`) open it themselves and read only their shards."""

    def __init__(self, name: str, layout: str, shape: tuple[int, ...], labels: np.ndarray | None,
                 limit: int | None):
        self.name, self.layout, self.limit = name, layout, limit
        self.axis = 0 if layout == "B" else 1
        count = shape[self.axis] if limit is None else min(limit, shape[self.axis])
        self.shape = tuple(count if i == self.axis else d for i, d in enumerate(shape))
        self.labels = None if labels is None else labels[:count]

    def __len__(self) -> int:
        return self.shape[self.axis]

    def read(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, len(self))
        return np.ascontiguousarray(self._read(start, stop), dtype=np.float32)

    def _read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def _take(self, x, start: int, stop: int) -> np.ndarray:
        index = [slice(None)] * x.ndim
        index[self.axis] = slice(start, stop)
        return x[tuple(index)]

    def __reduce__(self):
        path = self.name if self.name == "digits" else os.path.abspath(self.name)   # a worker's cwd may differ
        return open_data, (path, self.layout, self.limit)


class ArrayDataset(Dataset):
    """Samples held in memory: the digits split, an ``.npz`` read whole, or an array the caller passed (``name``
    None: it pickles with its array)."""

    def __init__(self, x: np.ndarray, labels: np.ndarray | None, layout: str, limit: int | None = None,
                 name: str | None = None):
        super().__init__(name or "array", layout, x.shape, labels, limit)
        self.x, self.from_file = x, name is not None

    def _read(self, start, stop):
        return self._take(self.x, start, stop)

    def __reduce__(self):
        if self.from_file:
            return super().__reduce__()
        return ArrayDataset, (self._take(self.x, 0, len(self)), self.labels, self.layout)


class MemmapDataset(Dataset):
    """An ``.npy`` of inputs, memory-mapped: a file ``x.npy``, or a directory holding ``x.npy`` and optionally
    ``y.npy`` (labels, read whole). Only the batches read are loaded."""

    def __init__(self, name: str, layout: str, limit: int | None):
        x_path = os.path.join(name, "x.npy") if os.path.isdir(name) else name
        y_path = os.path.join(name, "y.npy") if os.path.isdir(name) else None
        self.x = _memmap(x_path)
        _check_shape(x_path, self.x, 0 if layout == "B" else 1)
        labels = None
        if y_path is not None and os.path.exists(y_path):
            labels = _labels(y_path, _memmap(y_path), self.x.shape[0 if layout == "B" else 1], 0)
        super().__init__(name, layout, self.x.shape, labels, limit)
        self.x_path = x_path

    def _read(self, start, stop):
        batch = np.array(self._take(self.x, start, stop))
        _check_values(self.x_path, batch)
        return batch


class ShardedDataset(Dataset):
    """A directory of ``.npz`` shards (read in the order of their names), each with an array ``x`` and, in all
    of them or none, labels ``y``. Opening reads only the arrays' headers and the labels; :meth:`read` loads
    the shards a batch overlaps, one at a time (the last one stays loaded)."""

    def __init__(self, name: str, layout: str, limit: int | None, files: list[str]):
        axis = 0 if layout == "B" else 1
        self.files = files
        shapes = [_npz_x_shape(path) for path in files]
        rest = {tuple(d for i, d in enumerate(s) if i != axis) for s in shapes}
        if any(len(s) <= axis for s in shapes) or len(rest) != 1:
            shown = ", ".join(f"{os.path.basename(p)} {list(s)}" for p, s in zip(files, shapes))
            raise InputError(f"{name}: the shards' x arrays must have the same shape except along the batch axis "
                             f"{axis}: {shown}")
        counts = [s[axis] for s in shapes]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        shape = list(shapes[0])
        shape[axis] = int(self.offsets[-1])
        super().__init__(name, layout, tuple(shape), _shard_labels(name, files, counts), limit)
        self._loaded: tuple[int, np.ndarray] | None = None

    def _shard(self, index: int) -> np.ndarray:
        if self._loaded is None or self._loaded[0] != index:
            x, _ = load_npz_data(self.files[index], self.axis)
            self._loaded = (index, x)
        return self._loaded[1]

    def _read(self, start, stop):
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        parts = []
        for index in range(first, len(self.files)):
            lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
            if lo >= stop:
                break
            parts.append(self._take(self._shard(index), max(start, lo) - lo, min(stop, hi) - lo))
        return np.concatenate(parts, axis=self.axis)


def _memmap(path: str) -> np.ndarray:
    require_regular_file(path, "an .npy file", limit=None)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # not an .npy, a truncated file, an object array
        raise InputError(f"{path} is not a readable .npy file: {type(exc).__name__}: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise InputError(f"{path} is an .npz archive, not an .npy array")
    return array


def _check_shape(path: str, x: np.ndarray, batch_axis: int) -> None:
    if x.ndim <= batch_axis:
        raise InputError(f"{path}: 'x' has shape {list(x.shape)}; it needs a batch axis at position {batch_axis}")
    if x.dtype.kind not in "biuf":
        raise InputError(f"{path}: 'x' has dtype {x.dtype}; inputs must be real numbers")


def _check_values(path: str, x: np.ndarray) -> None:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise InputError(f"{path}: 'x' holds {bad} NaN or infinite value(s); inputs must be finite")


def _npz_x_shape(path: str) -> tuple[int, ...]:
    """The shape of the array ``x`` of an ``.npz``, from its header alone."""
    require_regular_file(path, "an .npz file")
    try:
        with zipfile.ZipFile(path) as archive, archive.open("x.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"npy format version {version[0]}.{version[1]}")
            shape, _, dtype = read_header(member)
    except KeyError:
        raise InputError(f"{path} has no array 'x'; save each shard as numpy.savez(path, x=inputs, y=labels)") \
            from None
    except Exception as exc:  # not a zip, a damaged header
        raise InputError(f"{path} is not a readable .npz file: {type(exc).__name__}: {exc}") from None
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: 'x' has dtype {dtype}; inputs must be real numbers")
    return tuple(shape)


def _shard_labels(name: str, files: list[str], counts: list[int]) -> np.ndarray | None:
    """Every shard's ``y`` (only that member is read), or None when no shard has labels."""
    labels = []
    for path, count in zip(files, counts):
        with np.load(path, allow_pickle=False) as npz:
            labels.append(_labels(path, npz["y"], count, 0) if "y" in npz.files else None)
    if all(y is None for y in labels):
        return None
    missing = [os.path.basename(p) for p, y in zip(files, labels) if y is None]
    if missing:
        raise InputError(f"{name}: some shards have labels y and some do not (without: {', '.join(missing[:4])})")
    return np.concatenate(labels)


def open_data(data: str, layout: str, limit: int | None = None) -> Dataset:
    """What ``--data`` names, samples stacked along the batch axis of the input ``layout`` (axis 0 for ``B``,
    1 for ``TB``), the first ``limit`` of them:

    * ``digits``: the digits test split above;
    * a ``.npz`` with arrays ``x`` and optional ``y`` (:func:`load_npz_data`), read whole;
    * an ``.npy`` of inputs, or a directory holding ``x.npy`` and optional ``y.npy``: memory-mapped;
    * a directory of ``.npz`` shards, each with ``x`` and (all or none) ``y``: read shard by shard.
    """
    if layout not in ("B", "TB"):
        raise InputError(f"input layout must be B or TB, got {layout!r}")
    axis = 0 if layout == "B" else 1
    if data == "digits":
        if layout != "B":
            raise InputError("--data digits holds images [N, 1, 8, 8]: it needs a model of input layout B")
        x, y = load_digits_split("test")
        return ArrayDataset(x, y, layout, limit, data)
    if os.path.isdir(data):
        if os.path.exists(os.path.join(data, "x.npy")):
            return MemmapDataset(data, layout, limit)
        files = sorted(os.path.join(data, f) for f in os.listdir(data) if f.endswith(".npz"))
        if not files:
            raise InputError(f"{data} is a directory with neither x.npy nor .npz shards")
        return ShardedDataset(data, layout, limit, files)
    if data.endswith(".npy"):
        return MemmapDataset(data, layout, limit)
    x, y = load_npz_data(data, axis)
    return ArrayDataset(x, y, layout, limit, data)


def load_data(data: str, layout: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`open_data`, read whole: ``(x, y)``, ``y`` None without labels."""
    dataset = open_data(data, layout, limit)
    return dataset.read(0, len(dataset)), dataset.labels
