"""Checks on the files a user names, before anything reads them: a FIFO, a device such as ``/dev/zero`` or
a file larger than what spikec can hold would otherwise hang the read or exhaust memory. And the atomic write
of an output file."""

from __future__ import annotations

import os
import stat
import tempfile

from spikec.errors import InputError

__all__ = ["require_regular_file", "check_output_file", "write_file_atomically", "current_umask", "MAX_INPUT_BYTES"]

MAX_INPUT_BYTES = 8 << 30
"""The largest file (or uncompressed archive member) spikec reads into memory: 8 GiB."""


def require_regular_file(path: str, what: str, limit: int | None = MAX_INPUT_BYTES) -> None:
    """Raise :class:`InputError` unless ``path`` is an existing regular file of at most ``limit`` bytes (None:
    any size, for a file that is memory-mapped rather than read); ``what`` names it in the messages, with its
    article (e.g. "a checkpoint file", "an .npz file")."""
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
    if limit is not None and info.st_size > limit:
        raise InputError(f"{path} is {info.st_size / 2**30:.1f} GiB; spikec reads at most "
                         f"{limit >> 30} GiB into memory")


def check_output_file(path: str) -> None:
    """Raise :class:`InputError` unless ``path`` can be written as a file: its directory exists and is writable,
    and it is not a directory itself. Checked before a long run, so the run is not wasted."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory; give the file to write")
    if not os.path.isdir(parent):
        raise InputError(f"cannot write {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {path}: the directory {parent} is not writable")


def write_file_atomically(path: str, content: str | bytes) -> None:
    """Write ``content`` (text, in UTF-8, or bytes) to ``path`` whole or not at all: into a temporary file beside
    it, renamed over it once complete, so an interrupted write leaves the old file (or none), never a part."""
    check_output_file(path)
    handle, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(os.path.abspath(path)))
    try:
        os.chmod(staging, 0o666 & ~current_umask())     # mkstemp makes it 0600: give it the user's umask
        with os.fdopen(handle, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        os.replace(staging, path)
    except BaseException:
        os.unlink(staging)
        raise


def current_umask() -> int:
    """This process's umask (read by setting it, then restoring it: the only way before Python 3.13)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
