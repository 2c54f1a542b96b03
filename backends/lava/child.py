"""Run a Lava job in a forked child that cannot hang or litter the caller.

Lava forks an OS process per leaf process plus a runtime service, talks to them through POSIX shared memory,
hangs at exit when ``stop()`` was never called, and can hang in ``stop()`` after an exception inside a model
(``docs/lava-semantics.md``, "Things that bite"). So a job runs in a forked child that:

* leads its own process group (everything Lava forks from it is in that group, and is killed with it);
* forks a watcher in a group of its own that, should the caller die first (SIGKILL), kills the run's group and
  then removes its shared memory;
* names its shared-memory segments ``psm_spikec<pid>_*`` (Lava's SharedMemoryManager server, forked from the
  child, names segments through ``multiprocessing.shared_memory._make_filename``), so they can be removed;
* uses one torch thread (a multi-threaded torch in the parent before the fork hangs torch in the child);
* sends back the job's result, or the traceback of its exception, through a pipe.

The parent waits at most ``timeout`` seconds; then, and in every other case, it kills what is left of the
group and removes the child's shared memory.
"""

from __future__ import annotations

import contextlib
import glob
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import time
import traceback
import warnings
from multiprocessing import shared_memory
from typing import Any, Callable

from spikec.errors import SpikecError

__all__ = ["LavaRunError", "LavaRunTimeout", "run_isolated"]


class LavaRunError(SpikecError):
    """A Lava run failed, timed out, or died."""

    exit_code = 3


class LavaRunTimeout(LavaRunError):
    """A Lava run did not finish within its timeout (it was stopped)."""


def _shm_prefix(pid: int) -> str:
    return f"psm_spikec{pid}_"


def _remove_shared_memory(pid: int) -> None:
    for path in glob.glob(f"/dev/shm/{_shm_prefix(pid)}*"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a killed caller stays a zombie until its own parent reaps it, and that parent may be
    waiting for the run's output pipes to close."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _litter(run: int, leftovers: tuple[str, ...]) -> bool:
    return bool(glob.glob(f"/dev/shm/{_shm_prefix(run)}*")) or any(os.path.exists(p) for p in leftovers)


def _watch_parent(parent: int, run: int, leftovers: tuple[str, ...]) -> None:
    """In a watcher process of its own group: should the caller ``parent`` die before it cleaned up (SIGKILL),
    kill the run's whole group ``run``, wait for it to be gone, then remove what the run left (its shared
    memory and the caller's ``leftovers``, the run's sink directory). Killing first means no process of the
    run can create a segment or a file after the removal; a watcher inside the group could not outlive the
    kill. It returns once the run has ended and the caller has removed what it left."""
    while _alive(parent):
        if os.getppid() != run and not _litter(run, leftovers):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run, signal.SIGKILL)
    deadline = time.monotonic() + 10            # a killed process can still write for a moment: wait them out
    while time.monotonic() < deadline:
        try:
            os.killpg(run, 0)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.05)
    _remove_shared_memory(run)
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)


def _child(job: Callable[[], Any], writer, parent: int, leftovers: tuple[str, ...]) -> None:
    os.setpgid(0, 0)
    if os.fork() == 0:
        os.setpgid(0, 0)
        # The watcher holds no descriptor of the run's: the caller's pipe and its process sentinel close when the
        # run's process ends, and whoever reads the caller's output sees it end with the caller.
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        try:
            _watch_parent(parent, os.getppid(), leftovers)
        finally:
            os._exit(0)
    prefix = _shm_prefix(os.getpid())
    shared_memory._make_filename = lambda: f"/{prefix}{secrets.token_hex(4)}"
    try:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        # Lava's DelaySparse model and its model search warn on every run; they say nothing about the result.
        warnings.filterwarnings("ignore", message=".*sparsity structure.*")
        warnings.filterwarnings("ignore", message="Cannot import module.*")
        writer.send(("ok", job()))
    except BaseException:
        writer.send(("error", traceback.format_exc()))
    finally:
        writer.close()


def run_isolated(job: Callable[[], Any], timeout: float, what: str = "Lava run",
                 leftovers: tuple[str, ...] = ()) -> Any:
    """``job()`` in a forked child (see the module docstring); its result must be picklable. ``leftovers``
    are paths the child removes should the parent die without cleaning up.

    Raises :class:`LavaRunError` when the job raised (with its traceback), did not finish within ``timeout``
    seconds, or the child died without an answer.
    """
    # Lava's runtime sets the fork start method when it is first imported: do that here, not in the child.
    import lava.magma.core.process.process  # noqa: F401

    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(job, writer, os.getpid(), tuple(leftovers)), daemon=False)
    child.start()
    writer.close()
    status, payload, answered = "error", None, False
    try:
        if not reader.poll(timeout):
            raise LavaRunTimeout(f"{what} did not finish within {timeout:g} s; it was stopped")
        status, payload = reader.recv()
        answered = True
    except EOFError:
        raise LavaRunError(f"{what}: the Lava process died without an answer") from None
    finally:
        reader.close()
        if answered:
            child.join(10)          # it answered: give it time to exit on its own
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if child.is_alive():
            child.kill()
        child.join()
        _remove_shared_memory(child.pid)
    if status != "ok":
        raise LavaRunError(f"{what} raised an exception:\n{payload}")
    return payload
