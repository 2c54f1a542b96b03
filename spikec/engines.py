"""Where ``spikec simulate`` and ``spikec report`` run their samples: in this process, on a pool of processes on
this machine, or on the actors of a Ray cluster (docs/scale-out.md).

The samples are cut into **shards**: runs of consecutive samples whose boundaries fall on multiples of the batch
size, so every worker sees exactly the batches one process would, and a shard's results do not depend on which
worker ran it or how many there are. A task (a picklable callable of a :class:`Shard`) runs each shard; the
driver gets the results back in shard order and merges them.

Each worker is one process that runs one shard at a time, so a worker that dies is known by its shard:

* ``local``: each worker is a one-process :class:`concurrent.futures.ProcessPoolExecutor` started with
  ``spawn`` (a fresh interpreter: no state or threads inherited from the driver);
* ``ray``: each worker is a Ray actor (``num_cpus=1``) on the cluster at ``address``, or on a local Ray
  instance started for the run and shut down after it.

A task builds what it needs (the compiled model) on its first shard in a worker process and keeps it for the next
ones (:func:`worker_state`). A shard whose worker raised or died is run again up to ``retries`` times, on a fresh
worker when the old one died; a :class:`~spikec.errors.SpikecError` that says the input is wrong (exit code 2) is
not retried. An interrupted run stops every worker.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import sys
from typing import Callable, Sequence

from spikec.errors import InputError, SpikecError

__all__ = ["Engine", "Shard", "ShardError", "ENGINES", "shards_of", "map_shards", "worker_state", "counting"]

ENGINES = ("local", "ray")
SHARDS_PER_WORKER = 4
"""Shards per worker when the samples allow: a slow or retried shard then holds up a quarter of a worker's work,
not all of it."""


@dataclasses.dataclass(frozen=True)
class Engine:
    """How to run shards: ``kind`` local or ray, ``workers`` processes (local) or actors (ray), ``address`` an
    existing Ray cluster (None: start a local instance), ``retries`` how often a failed shard runs again."""

    kind: str = "local"
    workers: int = 1
    address: str | None = None
    retries: int = 0

    def __post_init__(self):
        if self.kind not in ENGINES:
            raise InputError(f"unknown engine {self.kind!r}; engines: {', '.join(ENGINES)}")
        if self.workers < 1:
            raise InputError(f"--workers takes a number >= 1, got {self.workers}")
        if self.retries < 0:
            raise InputError(f"--retries takes a number >= 0, got {self.retries}")
        if self.address is not None and self.kind != "ray":
            raise InputError("--address names a Ray cluster: it needs --engine ray")

    def require(self) -> None:
        """Fail now, before any model is compiled, when the engine's package is missing."""
        if self.kind == "ray":
            _import_ray()

    @property
    def in_process(self) -> bool:
        """One local worker: the run stays in this process, as without an engine."""
        return self.kind == "local" and self.workers == 1


@dataclasses.dataclass(frozen=True)
class Shard:
    """Samples ``start`` to ``stop`` (exclusive) of the data, the ``index``-th shard."""

    index: int
    start: int
    stop: int

    def __str__(self) -> str:
        return f"shard {self.index} (samples {self.start}-{self.stop - 1})"


class ShardError(SpikecError):
    """A shard failed on every attempt: its worker died (killed, out of memory; exit code 1) or raised (the
    exit code of what it raised, 3 for an internal error). The message names the shard, the attempts and the
    last failure."""

    exit_code = 1


class _RemoteError(SpikecError):
    """A SpikecError raised in a worker, carried back with its message and exit code (pickled as such)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return type(self), (self.message, self.exit_code)


def shards_of(count: int, batch_size: int, workers: int) -> list[Shard]:
    """Cut ``count`` samples into shards of whole batches: about :data:`SHARDS_PER_WORKER` per worker, never
    fewer samples than one batch except in the last."""
    batches = -(-count // batch_size)
    per_shard = max(1, -(-batches // (workers * SHARDS_PER_WORKER)))
    starts = range(0, count, per_shard * batch_size)
    return [Shard(i, start, min(start + per_shard * batch_size, count)) for i, start in enumerate(starts)]


def counting(progress: Callable[[int, int], None] | None, total: int) -> Callable[[int], None] | None:
    """``progress(done, total)`` as a callable of the samples just finished (None stays None)."""
    if progress is None:
        return None
    done = 0

    def advance(samples: int) -> None:
        nonlocal done
        done += samples
        progress(done, total)
    return advance


_STATE: dict = {}


def worker_state(key, build: Callable):
    """What ``build()`` returns, built once per worker process for ``key`` (one run's token) and kept for the
    shards of that run that follow."""
    if _STATE.get("key") != key:
        _STATE.clear()
        _STATE.update(key=key, value=build())
    return _STATE["value"]


def _call(task: Callable, shard: Shard):
    """Run ``task`` on ``shard`` in a worker; a SpikecError travels back as one (its class need not pickle)."""
    try:
        return task(shard)
    except SpikecError as exc:
        raise _RemoteError(str(exc), exc.exit_code) from None


def _start_worker(threads: int) -> None:
    """A local worker's start: its share of the cores for torch; Ctrl-C is for the driver, which stops it; and
    no start method chosen, as in a fresh interpreter (spawn leaves its own set, and Lava sets fork when it is
    imported, which fails once one is set)."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    multiprocessing.set_start_method(None, force=True)
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _start_method_kept():
    """Starting a process fixes this process's default start method (multiprocessing reads it for the child):
    leave it unset if it was, since Lava sets fork when it is first imported, which fails once one is set."""
    before = multiprocessing.get_start_method(allow_none=True)
    try:
        yield
    finally:
        if before is None:
            multiprocessing.set_start_method(None, force=True)


class _Worker:
    """A worker that runs one shard at a time: ``submit`` one, tell whether a failure means it ``died``, and
    ``stop``; a restart is a stop and a fresh start."""

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self._start()


class _LocalWorker(_Worker):
    """One spawned process (a one-worker process pool; it starts its process at the first submit)."""

    def __init__(self, threads: int):
        self.threads = threads
        self._start()

    def _start(self) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(1, multiprocessing.get_context("spawn"),
                                                           initializer=_start_worker, initargs=(self.threads,))

    def submit(self, task, shard) -> concurrent.futures.Future:
        with _start_method_kept():
            return self.pool.submit(_call, task, shard)

    def died(self, exc: BaseException) -> bool:
        return isinstance(exc, concurrent.futures.process.BrokenProcessPool)

    def stop(self) -> None:
        # shutdown() waits for a running shard to end: a stopped run ends its workers' processes now
        for process in list(getattr(self.pool, "_processes", {}).values()):
            process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


class _ShardActor:
    """The Ray actor: runs shards in its process (the task keeps its state in :func:`worker_state`)."""

    def run(self, task, shard):
        return _call(task, shard)


class _RayWorker(_Worker):
    """One Ray actor."""

    def __init__(self, ray, actor_class):
        self.ray, self.actor_class = ray, actor_class
        self._start()

    def _start(self) -> None:
        self.actor = self.actor_class.remote()

    def submit(self, task, shard) -> concurrent.futures.Future:
        return self.actor.run.remote(task, shard).future()

    def died(self, exc: BaseException) -> bool:
        return isinstance(exc, self.ray.exceptions.RayActorError)

    def stop(self) -> None:
        self.ray.kill(self.actor, no_restart=True)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'spikec[distributed]'") from None
    return ray


class _RaySession:
    """Ray for one run: connected to ``address`` or to a local instance of ``workers`` CPUs started here, and
    disconnected (the local instance shut down) at the end; or the caller's own Ray session, left open."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.ray = _import_ray()
        self.connected_here = False

    def __enter__(self):
        import logging

        actor_class = self.ray.remote(num_cpus=1)(_ShardActor)
        if self.ray.is_initialized():       # the caller's own Ray session: use it, and leave it open
            return [_RayWorker(self.ray, actor_class) for _ in range(self.engine.workers)]
        options = dict(logging_level=logging.ERROR, log_to_driver=False)
        if self.engine.address is not None:
            _check_reachable(self.engine.address)
        try:
            if self.engine.address is None:
                # the local instance's workers import what this process can (its sys.path, a --model file's)
                path = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
                self.ray.init(num_cpus=self.engine.workers, include_dashboard=False,
                              runtime_env={"env_vars": path}, **options)
            else:
                self.ray.init(address=self.engine.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.engine.address or "a local Ray instance"
            raise InputError(f"cannot start Ray on {where}: {exc}") from None
        self.connected_here = True
        return [_RayWorker(self.ray, actor_class) for _ in range(self.engine.workers)]

    def __exit__(self, *exc):
        if self.connected_here:
            self.ray.shutdown()


def _check_reachable(address: str) -> None:
    """Refuse a HOST:PORT nothing listens on at once: Ray itself retries the connection for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return                  # auto, or a ray:// client address: Ray reports those itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start it with "
                         "`ray start --head` and pass the address it prints") from None


def _failure(exc: BaseException) -> BaseException:
    """The error a worker's failure stands for: a worker's SpikecError as itself, Ray's wrapper unwrapped."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _dispatch(workers: list, task: Callable, shards: Sequence[Shard], retries: int, progress) -> list:
    """Run every shard on the first idle worker, one shard per worker at a time; results in shard order."""
    pending = collections.deque(shards)
    attempts = collections.Counter()
    results: list = [None] * len(shards)
    running: dict = {}
    idle = list(workers)
    while pending or running:
        while idle and pending:
            worker, shard = idle.pop(), pending.popleft()
            running[worker.submit(task, shard)] = (worker, shard)
        done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
            worker, shard = running.pop(future)
            idle.append(worker)
            try:
                results[shard.index] = future.result()
            except Exception as exc:  # a worker's failure, whatever it raised: reported with its shard below
                _retry_or_raise(worker, shard, _failure(exc), attempts, retries, pending)
                continue
            if progress is not None:
                progress(shard)
    return results


def _retry_or_raise(worker, shard: Shard, failure: BaseException, attempts, retries: int, pending) -> None:
    died = worker.died(failure)
    if died:
        worker.restart()
    if isinstance(failure, SpikecError) and failure.exit_code == 2:
        raise InputError(str(failure))
    attempts[shard] += 1
    if attempts[shard] <= retries:
        pending.appendleft(shard)
        return
    what = "its worker died" if died else str(failure) if isinstance(failure, SpikecError) else \
        f"{type(failure).__name__}: {failure}"
    tries = f"{attempts[shard]} attempt{'s' if attempts[shard] > 1 else ''}"
    error = ShardError(f"{shard} failed after {tries} ({what}); --retries K runs a failed shard again")
    if not died:    # a worker's internal error stays one (exit code 3); a dead worker is the run's failure
        error.exit_code = failure.exit_code if isinstance(failure, SpikecError) else 3
    raise error


def map_shards(task: Callable, shards: Sequence[Shard], engine: Engine, progress=None) -> list:
    """``[task(shard) for shard in shards]``, run on ``engine``'s workers; ``progress(shard)`` is called as each
    shard finishes. Without workers to spare (one local worker) the shards run here, in order."""
    if engine.in_process or not shards:
        results = []
        for shard in shards:
            results.append(task(shard))
            if progress is not None:
                progress(shard)
        return results
    workers = min(engine.workers, len(shards))
    if engine.kind == "ray":
        with _RaySession(dataclasses.replace(engine, workers=workers)) as pool:
            return _run_on(pool, task, shards, engine.retries, progress)
    threads = max(1, (os.cpu_count() or 1) // workers)
    return _run_on([_LocalWorker(threads) for _ in range(workers)], task, shards, engine.retries, progress)


def _run_on(workers: list, task, shards, retries: int, progress) -> list:
    try:
        return _dispatch(workers, task, shards, retries, progress)
    finally:
        for worker in workers:
            worker.stop()
