"""Value types and source locations of the IR.

Every IR value is a tensor whose axis 0 is time and axis 1 is the batch: ``[T, B, ...]``. A value that
has been averaged over time (the readout) keeps a time axis of length 1, and so does the model's input
before direct encoding repeats it over T. The axes after the batch are the *sample* axes; view ops act
only on those, so a graph traced at one batch size runs at any other.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spikec.errors import IRError

__all__ = ["DTYPES", "TensorType", "Location", "numpy_dtype", "dtype_name"]

DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "i8": np.dtype(np.int8),
    "i16": np.dtype(np.int16),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}
_NAME_OF_DTYPE = {v: k for k, v in DTYPES.items()}


def numpy_dtype(name: str) -> np.dtype:
    if name not in DTYPES:
        raise IRError(f"unknown dtype {name!r}; IR dtypes are {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype) -> str:
    dt = np.dtype(dtype)
    if dt not in _NAME_OF_DTYPE:
        raise IRError(f"numpy dtype {dt} has no IR dtype; IR dtypes are {', '.join(DTYPES)}")
    return _NAME_OF_DTYPE[dt]


@dataclasses.dataclass(frozen=True)
class TensorType:
    """Shape ``[T, B, *sample]`` and element type of one value."""

    shape: tuple[int, ...]
    dtype: str = "f32"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))
        if len(self.shape) < 2:
            raise IRError(f"an IR value needs at least a time and a batch axis, got shape {list(self.shape)}")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in self.shape):
            raise IRError(f"shape dimensions must be positive integers, got {list(self.shape)}")
        numpy_dtype(self.dtype)

    @property
    def time(self) -> int:
        return self.shape[0]

    @property
    def batch(self) -> int:
        return self.shape[1]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.shape[2:]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"


@dataclasses.dataclass(frozen=True)
class Location:
    """Where an op came from: the module path (``block.0.attn.q_conv``) and the source ``file:line``."""

    module: str
    file: str | None = None
    line: int | None = None

    def __post_init__(self):
        if (self.file is None) != (self.line is None):
            raise IRError("a location has both a file and a line, or neither")
        if self.line is not None and self.line < 1:
            raise IRError(f"line numbers start at 1, got {self.line}")

    @property
    def file_line(self) -> str | None:
        return None if self.file is None else f"{self.file}:{self.line}"

    def __str__(self) -> str:
        where = self.file_line
        module = self.module or "<top>"
        return f"{where} ({module})" if where else module
