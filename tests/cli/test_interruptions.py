"""Interrupted and concurrent runs leave nothing behind: SIGTERM, SIGHUP and SIGKILL during a Lava run, a
writer killed mid-compile, two compiles racing for one output directory, and output paths that cannot be."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from spikec.cli import main
from spikec.compiler import load_artifact

CONFIG = json.dumps({"depth": 1, "embed_dim": 16, "num_heads": 2, "img_size": 8, "in_channels": 1, "T": 2})
MODEL = ["--arch", "spikingformer-cifar", "--model-args", CONFIG]
SPIKEC = [sys.executable, "-m", "spikec"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _lava_leftovers() -> set[str]:
    return set(glob.glob("/dev/shm/psm_spikec*")) | set(glob.glob("/dev/shm/spikec-lava-*"))


@pytest.fixture(scope="module")
def loihi2_artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "net"
    assert run("compile", *MODEL, "--target", "loihi2", "-o", out)[0] == 0
    return out


@pytest.mark.lava
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_a_stopped_lava_run_leaves_no_shared_memory_or_processes(loihi2_artifact, tmp_path, sig):
    before = _lava_leftovers()
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0, 1, (256, 1, 8, 8)).astype(np.float32))
    proc = subprocess.Popen([*SPIKEC, "simulate", str(loihi2_artifact), "--compare", "intsim", "--data", str(data),
                             "--batch-size", "256"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (_lava_leftovers() - before) and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be stopped"
    time.sleep(1.0)                     # Lava's processes and shared memory are up
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig
        assert err.strip().splitlines()[-1] == (f"spikec: error: stopped by {signal.Signals(sig).name}; nothing "
                                                "was left half-written")
    deadline = time.monotonic() + 15    # after SIGKILL, the run's watcher notices within a second
    while time.monotonic() < deadline and _lava_leftovers() - before:
        time.sleep(0.5)
    assert _lava_leftovers() - before == set()


def test_a_killed_writers_staging_directory_is_removed_by_the_next_write(tmp_path):
    dead = tmp_path / ".spikec-999999999-abcd"    # no such pid: its writer was killed
    dead.mkdir()
    (dead / "manifest.json").write_text("")
    mine = tmp_path / f".spikec-{os.getpid()}-live"
    mine.mkdir()
    assert run("compile", *MODEL, "-o", tmp_path / "out")[0] == 0
    assert sorted(os.listdir(tmp_path)) == sorted([mine.name, "out"])


def test_concurrent_compiles_to_one_directory_both_succeed(tmp_path):
    for round_ in range(3):
        out = tmp_path / f"out{round_}"
        procs = [subprocess.Popen([*SPIKEC, "compile", *MODEL, "-o", str(out)], stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        errors = [p.communicate(timeout=300)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors
        assert load_artifact(str(out)).name == "spikingformer_cifar"
    assert all(not name.startswith(".spikec-") for name in os.listdir(tmp_path))


def _symlink(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    return tmp_path / "link", "is a symbolic link; name the directory itself"


def _under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "out", "cannot create"


def _too_long(tmp_path):
    return tmp_path / ("x" * 300), "cannot write"


@pytest.mark.parametrize("make", [_symlink, _under_a_file, _too_long])
def test_impossible_output_paths_exit_2(tmp_path, make):
    out, expect = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    code, _, err = run("compile", *MODEL, "-o", out)
    assert code == 2 and err.count("\n") == 1 and expect in err, err
    assert sorted(os.listdir(tmp_path)) == before
