"""TorchScript archives are refused like pickled modules: ``torch.load(weights_only=True)`` hands a
``torch.jit.save`` zip to ``torch.jit.load``, which runs the archive's TorchScript ``__setstate__``, so a
checkpoint could write any file on the user's machine without ``--allow-pickle``."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from typing import List, Tuple

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from conftest import small_config, small_input, small_model
from spikec.cli import main
from spikec.errors import InputError
from spikec.frontends.torch import ModelSource, load_model

pytestmark = pytest.mark.core

TINY = '{"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 16, "T": 2}'
SJ_MODEL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "sj_model.py")
PAYLOAD = b"written by a checkpoint\n"


class _FileWriter(nn.Module):
    """The attack: TorchScript's ``__setstate__`` runs while the archive is loaded; ``torch.from_file`` with
    ``shared=True`` maps an attacker-chosen path and ``copy_`` writes the attacker's bytes through to it."""

    def __init__(self, path: str, payload: List[int]):
        super().__init__()
        self.path = path
        self.payload = payload
        self.written = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, List[int], bool]:
        return self.path, self.payload, self.training

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, List[int], bool]) -> None:
        self.path, self.payload, self.training = state
        target = torch.from_file(self.path, shared=True, size=len(self.payload), dtype=torch.uint8)
        # kept in an attribute: TorchScript drops a copy_ into a tensor nothing reads afterwards
        self.written = int(target.copy_(torch.tensor(self.payload, dtype=torch.uint8)).sum())


def _disguise(archive: bytes) -> bytes:
    """Add a second central directory, naming ``constants.pkl`` ``constantz.pkl``, right before the end
    record: Python's ``zipfile`` reads that one (it finds the directory from its size), torch's reader the
    original one (from its offset), so only a check asking torch's reader sees a TorchScript archive."""
    end = archive.rindex(b"PK\x05\x06")
    size, offset = struct.unpack("<LL", archive[end + 12:end + 20])
    directory = archive[offset:offset + size]
    fake = directory.replace(b"/constants.pkl", b"/constantz.pkl")
    assert fake != directory
    return archive[:end] + fake + archive[end:]


def _load_as_torch_does(archive: str) -> None:
    """Up to torch 2.5, ``torch.load(weights_only=True)`` hands a TorchScript archive to ``torch.jit.load``,
    which runs it; from 2.6 on it refuses the archive, and ``torch.jit.load`` itself still runs it."""
    try:
        with pytest.warns(UserWarning, match="TorchScript archive"):
            torch.load(archive, map_location="cpu", weights_only=True)
    except RuntimeError as exc:
        assert "TorchScript archives" in str(exc)
        torch.jit.load(archive, map_location="cpu")


@pytest.fixture(params=["saved", "disguised"])
def attack(request, tmp_path) -> tuple[str, str]:
    """A live malicious archive (checked: loading it as torch does writes PAYLOAD into the victim file) and
    that victim file, zeroed again."""
    victim, archive = tmp_path / "victim.bin", tmp_path / "evil.pt"
    torch.jit.save(torch.jit.script(_FileWriter(str(victim), list(PAYLOAD))), str(archive))
    if request.param == "disguised":
        archive.write_bytes(_disguise(archive.read_bytes()))
    victim.write_bytes(bytes(len(PAYLOAD)))
    _load_as_torch_does(str(archive))
    assert victim.read_bytes() == PAYLOAD, "the test archive does not attack: it tests nothing"
    victim.write_bytes(bytes(len(PAYLOAD)))
    return str(archive), str(victim)


def _run(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stderr


def _refusal(path: str) -> str:
    return (f"spikec: error: {path} is a TorchScript archive (torch.jit.save); loading it would run code from "
            "the file. Save a checkpoint dict {arch, config, state_dict} instead, or pass --allow-pickle if you "
            "trust the file\n")


def _model_refusal(path: str) -> str:
    return (f"spikec: error: {path} is a TorchScript archive (torch.jit.save): spikec traces a model's Python "
            "code, which the archive does not hold, and loading it would run code from the file. Save a "
            "checkpoint dict {arch, config, state_dict} instead, or pass the model's code with --model "
            "FILE.py:NAME and this file with --weights (and --allow-pickle if you trust it)\n")


@pytest.mark.parametrize("command", [["inspect"], ["verify", "--spike-driven"], ["compile", "-o", "{out}"],
                                     ["simulate", "--limit", "2"]], ids=lambda c: c[0])
@pytest.mark.parametrize("given_as", ["model", "arch-weights",
                                      pytest.param("model-weights", marks=pytest.mark.spikingjelly_legacy)])
def test_torchscript_archive_is_refused_without_running_it(attack, tmp_path, command, given_as):
    archive, victim = attack
    out = tmp_path / "out"
    model = {"model": [archive],
             "arch-weights": ["--arch", "spikingformer-cifar", "--model-args", TINY, "--weights", archive],
             "model-weights": ["--model", f"{SJ_MODEL}:build", "--input-shape", "1,3,8,8", "--weights", archive],
             }[given_as]
    before = sorted(os.listdir(tmp_path))
    code, err = _run(*[a.format(out=out) for a in command], *model)
    assert open(victim, "rb").read() == bytes(len(PAYLOAD)), "the archive's code ran"
    assert (code, err) == (2, _model_refusal(archive) if given_as == "model" else _refusal(archive))
    assert sorted(os.listdir(tmp_path)) == before and not out.exists()


def test_torchscript_model_is_not_loaded_even_with_allow_pickle(attack):
    """Its forward runs in TorchScript, out of the tracer's sight: loading it could only run its code."""
    archive, victim = attack
    result = _run("inspect", archive, "--allow-pickle", "--input-shape", "1,3,8,8")
    assert open(victim, "rb").read() == bytes(len(PAYLOAD)), "the archive's code ran"
    assert result == (2, _model_refusal(archive))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_allow_pickle_takes_the_weights_of_a_torchscript_model(tmp_path):
    arch, path = "spikingformer-cifar", str(tmp_path / "traced.pt")
    source_model = small_model(arch, seed=1).eval()
    x = small_input(arch)
    with torch.no_grad():  # without autograd the spike function is plain torch ops, which TorchScript can save
        torch.jit.save(torch.jit.trace(source_model, x, check_trace=False), path)
    source = ModelSource(arch=arch, model_args=small_config(arch), weights=path)
    with pytest.raises(InputError, match="is a TorchScript archive"):
        load_model(source)
    loaded = load_model(dataclasses.replace(source, allow_pickle=True))
    assert torch.equal(loaded.module.eval()(x), source_model(x))
    args = ["inspect", "--arch", arch, "--model-args", json.dumps(small_config(arch)), "--weights", path]
    assert _run(*args) == (2, _refusal(path))
    assert _run(*args, "--allow-pickle") == (0, "")
