"""No Lava run can hang or litter: a job runs in a forked child with a timeout; a hung, failing or orphaned
run is killed with everything it forked, and its shared memory is removed."""

from __future__ import annotations

import dataclasses
import glob
import multiprocessing
import os
import re
import signal
import time

import numpy as np
import pytest

from lava_cases import residual_graph
from spikec.backends.lava.child import LavaRunError, run_isolated
from spikec.backends.lava.lowering import lower
from spikec.backends.lava.runtime import run_lava

pytestmark = pytest.mark.lava


def _ours() -> set[str]:
    """spikec's shared-memory segments left by processes that have ended: a leak. (A segment of a process still
    running belongs to a run in progress, this test's or another's on the same machine.)"""
    segments = glob.glob("/dev/shm/psm_spikec*")
    return {path for path in segments if not _alive(int(re.match(r"/dev/shm/psm_spikec(\d+)_", path).group(1)))}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
    except (FileNotFoundError, StopIteration):
        return False
    return "Z" not in state and "X" not in state


def test_a_hung_job_is_killed_at_its_timeout():
    before = _ours()
    start = time.monotonic()
    with pytest.raises(LavaRunError, match="did not finish within 2 s"):
        run_isolated(lambda: time.sleep(600), timeout=2)
    assert time.monotonic() - start < 20
    assert multiprocessing.active_children() == []
    assert _ours() <= before


def test_a_run_that_stalls_once_is_run_again_with_a_warning(tmp_path):
    """The first attempt stalls past its timeout (it sleeps); the second, in a fresh child, finishes. Every
    sink is zeroed again for it."""
    from spikec.backends.lava.runtime import _run_retrying_a_stall

    pg = lower(residual_graph())
    sinks = {probe.sink: str(tmp_path / f"{probe.sink}.bin") for probe in pg.probes}
    marker = tmp_path / "stalled"

    def job():
        if not marker.exists():
            marker.touch()
            time.sleep(600)
        return {"build": 0.0, "run": 0.0}

    with pytest.warns(RuntimeWarning, match=r"did not finish within 2 s; it was stopped; running it once more"):
        assert _run_retrying_a_stall(job, 2, pg, 3, sinks, str(tmp_path)) == {"build": 0.0, "run": 0.0}
    assert all(os.path.getsize(path) > 0 for path in sinks.values())
    marker.unlink()

    def stalls():
        time.sleep(600)

    with pytest.raises(LavaRunError, match=r"did not finish within 2 s; it was stopped, twice$"):
        _run_retrying_a_stall(stalls, 2, pg, 3, sinks, str(tmp_path))


def test_an_exception_in_the_job_comes_back_with_its_traceback():
    with pytest.raises(LavaRunError, match=r"(?s)raised an exception.*ZeroDivisionError"):
        run_isolated(lambda: 1 // 0, timeout=30)


def test_a_failing_lava_model_is_reported_or_stopped_never_hung():
    # A sink told to store a dtype numpy does not know fails inside its Lava process. Lava may raise or hang
    # in that state; either way the run ends by its timeout and leaves no process or shared memory behind.
    graph = residual_graph()
    pg = lower(graph)
    pg.processes = [dataclasses.replace(p, args={**p.args, "dtype": "no-such-dtype"}) if p.kind == "MemSink" else p
                    for p in pg.processes]
    before = _ours()
    start = time.monotonic()
    x = np.zeros((1, 4), dtype=np.float32)
    with pytest.raises(LavaRunError):
        run_lava(graph, [x], pg, timeout=5)
    assert time.monotonic() - start < 40
    assert multiprocessing.active_children() == []
    assert _ours() <= before


def _orphaned_parent(pid_file: str) -> None:
    def job():
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    run_isolated(job, timeout=600)


def test_a_run_whose_parent_dies_kills_itself(tmp_path):
    pid_file = str(tmp_path / "child.pid")
    parent = multiprocessing.get_context("fork").Process(target=_orphaned_parent, args=(pid_file,))
    parent.start()
    deadline = time.monotonic() + 30
    while not os.path.exists(pid_file) or not open(pid_file).read():
        assert time.monotonic() < deadline, "the Lava child never started"
        time.sleep(0.05)
    child = int(open(pid_file).read())
    assert _alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.join()
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the orphaned Lava child outlived its parent"
        time.sleep(0.1)
