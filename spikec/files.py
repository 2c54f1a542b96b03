"""Checks on the files a user names, before anything reads them: a FIFO, a device such as ``/dev/zero`` or
a file larger than what spikec can hold would otherwise hang the read or exhaust memory."""

from __future__ import annotations

import os
import stat

from spikec.errors import InputError

__all__ = ["require_regular_file", "MAX_INPUT_BYTES"]

MAX_INPUT_BYTES = 8 << 30
"""The largest file (or uncompressed archive member) spikec reads into memory: 8 GiB."""


def require_regular_file(path: str, what: str) -> None:
    """Raise :class:`InputError` unless ``path`` is an existing regular file of at most ``MAX_INPUT_BYTES``;
    ``what`` names it in the messages, with its article (e.g. "a checkpoint file", "an .npz file")."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a directory, not {what}")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file (a pipe, socket or device); spikec reads {what} "
                         "from a regular file")
    if info.st_size > MAX_INPUT_BYTES:
        raise InputError(f"{path} is {info.st_size / 2**30:.1f} GiB; spikec reads at most "
                         f"{MAX_INPUT_BYTES >> 30} GiB into memory")
