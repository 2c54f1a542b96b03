"""``torch.export`` programs (``.pt2``) as input (frontends/torch/exported.py): a zoo model exported with
``spikec.export_program`` traces to the printed IR of the module itself, locations included, and ``verify`` gives the
module's verdict; spikec's and spikingjelly's neurons and ``iand`` stay one op each; a program whose neurons were
unrolled, one lowered to core ATen, a corrupt file and one that pickles code are each refused in one line."""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import spikec
import spikec.nn as snn
from conftest import randomize_batchnorm
from spikec.cli import main
from spikec.frontends.torch import ModelSource, example_input, load_model, trace_module, trace_source
from spikec.frontends.torch.exported import exportable_neurons
from spikec.ir import print_graph
from spikec.models import build_model

TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 16, "T": 2}


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stderr


# torch.export takes 4 to 9 s a zoo model: sdt-cifar runs in make test on Python 3.10 and in make test-slow on 3.11
# (torch 2.13), spikformer-cifar in the 3.10 slow tier.
@pytest.fixture(scope="module", params=["sdt-cifar", pytest.param("spikformer-cifar", marks=pytest.mark.slow)])
def exported(request, tmp_path_factory):
    """(arch, the zoo module as ``--arch`` builds it, the .pt2 of it)."""
    loaded = load_model(ModelSource(arch=request.param, model_args=TINY))
    path = tmp_path_factory.mktemp("pt2") / f"{request.param}.pt2"
    spikec.export_program(loaded.module, example_input(loaded), path)
    return request.param, loaded.module, path


class _ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.lif = snn.MultiStepLIF()
        self.head = nn.Linear(4, 2)

    def forward(self, x):                                # [B, 1, 4, 4]
        x = x.unsqueeze(0).repeat(2, 1, 1, 1, 1)
        T, B = x.shape[:2]
        s = self.lif(self.bn(self.conv(x.flatten(0, 1))).reshape(T, B, 4, 4, 4))
        return self.head(s.mean((0, 3, 4)))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small model's ExportedProgram and the .pt2 holding it."""
    path = tmp_path_factory.mktemp("pt2") / "small.pt2"
    return spikec.export_program(_ConvNet(), torch.rand(1, 1, 4, 4), path), path


def test_a_pt2_traces_to_the_modules_ir(exported):
    _, module, path = exported
    loaded, traced = trace_source(ModelSource(checkpoint=str(path)))
    assert loaded.input_shape == (1, 3, 16, 16)      # the program's, its free batch axis at 1
    expected = print_graph(trace_module(module, torch.rand(loaded.input_shape)).graph)
    assert print_graph(traced.graph) == expected
    assert 'loc("block.0.' in expected and '"spikec/models/' in expected   # locations are compared too


def test_verify_gives_the_modules_verdict(exported):
    arch, _, path = exported
    runner = CliRunner()
    from_program = runner.invoke(main, ["verify", "--spike-driven", str(path), "--format", "json"])
    from_module = runner.invoke(main, ["verify", "--spike-driven", "--arch", arch, "--model-args", json.dumps(TINY),
                                       "--format", "json"])
    assert from_program.exit_code == from_module.exit_code == {"spikformer-cifar": 1, "sdt-cifar": 0}[arch]
    program_report, module_report = json.loads(from_program.stdout), json.loads(from_module.stdout)
    assert program_report.pop("model") != module_report.pop("model")   # the class name, the zoo name
    assert program_report == module_report


def test_the_program_runs_at_any_batch_size_as_the_module(exported):
    _, module, path = exported
    loaded = load_model(ModelSource(checkpoint=str(path)))
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), module.eval()(x), rtol=0, atol=1e-6)


@pytest.mark.core
def test_exportable_neurons_restores_the_model():
    model = build_model("spikformer-cifar", TINY)
    with exportable_neurons(model):
        assert "forward" in vars(model.patch_embed.proj_lif) and snn._iand_op is not None
    assert not any("forward" in vars(m) for m in model.modules()) and snn._iand_op is None


def _same_ir_through_a_pt2(model: nn.Module, x: torch.Tensor, path, layout: str = "B") -> None:
    spikec.export_program(model, x, path, input_layout=layout)
    traced = trace_source(ModelSource(checkpoint=str(path), input_shape=tuple(x.shape), input_layout=layout))[1]
    assert print_graph(traced.graph) == print_graph(trace_module(model, x, layout).graph)


@pytest.mark.slow
def test_iand_residuals_stay_one_op(tmp_path):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model("spikformer-cifar", {**TINY, "residual": "iand"}))
    _same_ir_through_a_pt2(model, torch.rand(2, 3, 16, 16), tmp_path / "iand.pt2")
    assert "and_not" in print_graph(trace_source(ModelSource(checkpoint=str(tmp_path / "iand.pt2")))[1].graph)


@pytest.mark.core
def test_spikingjelly_neurons_stay_one_op(tmp_path):
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 16)
            self.lif = neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="m")
            self.plif = neuron.ParametricLIFNode(init_tau=3.0, detach_reset=True, step_mode="m")
            self.if_node = neuron.IFNode(v_reset=None, step_mode="m")
            self.head = nn.Linear(16, 4)

        def forward(self, x):                            # [T, B, 8]
            return self.head(self.if_node(self.plif(self.lif(self.fc(x)))).mean(0))

    torch.manual_seed(0)
    _same_ir_through_a_pt2(Net().eval(), torch.rand(2, 1, 8), tmp_path / "sj.pt2", "TB")


class _ManyOps(nn.Module):
    """The ops the zoo does not use, as the torch functions a model calls (torch 2.3 and 2.13 export some of them
    as other ATen ops: split.Tensor for chunk, view for flatten)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.drop = nn.Dropout(0.1)
        self.lif = snn.MultiStepLIF()
        self.if_node = snn.MultiStepIF()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):                                # [B, 2, 8, 8]
        x = x.unsqueeze(0).repeat(2, 1, 1, 1, 1)
        T, B = x.shape[:2]
        s = self.lif(self.drop(self.pool(self.conv(x.flatten(0, 1)).float())).reshape(T, B, 8, 4, 4))
        a, b = s.chunk(2, dim=2)
        c, d = torch.split(s, [3, 5], dim=2)
        z = torch.cat([a, b], dim=2) + torch.cat([s[:, :, :, :2], s[:, :, :, 2:]], dim=3) * 0.5
        z = F.pad(z, (1, 1, 1, 1))[:, :, :, 1:5, 1:5] / 2
        z = z.flatten(3).unflatten(3, (4, 4))
        z = F.adaptive_avg_pool2d(z.flatten(0, 1), 1).reshape(T, B, 8, 1, 1)
        q = self.fc(self.if_node(c.flatten(3)[..., :4]))
        return z.mean((0, 3, 4)), q.mean(0), d.sum(2)


@pytest.mark.core
def test_other_ops_trace_as_in_the_module(tmp_path):
    torch.manual_seed(0)
    _same_ir_through_a_pt2(_ManyOps().eval(), torch.rand(1, 2, 8, 8), tmp_path / "ops.pt2")


class _LifNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = snn.MultiStepLIF()

    def forward(self, x):                                # [T, B, 8]
        return self.lif(x).mean(0)


@pytest.mark.core
def test_a_program_whose_neurons_were_unrolled_is_refused_in_one_line(tmp_path):
    path = tmp_path / "plain.pt2"
    torch.export.save(torch.export.export(_LifNet().eval(), (torch.rand(2, 2, 8),)), path)
    code, err = run("verify", "--spike-driven", path, "--input-layout", "TB")
    assert code == 2
    assert err.count("\n") == 1 and "neurons were exported as their arithmetic" in err
    assert "(lif: spikec.nn.MultiStepLIF)" in err and "spikec.export_program" in err


@pytest.mark.core
def test_a_program_lowered_to_core_aten_is_refused_in_one_line(small, tmp_path):
    path = tmp_path / "lowered.pt2"
    torch.export.save(small[0].run_decompositions(), path)
    code, err = run("verify", "--spike-driven", path)
    assert code == 2
    assert err.count("\n") == 1 and "is lowered to core ATen (aten.addmm" in err and "spikec.export_program" in err


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _rewritten(source, path, replace) -> None:
    """``path``: the zip archive ``source`` with each member's bytes replaced by ``replace(name, data)``."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for item in original.infolist():
            copy.writestr(item, replace(item.filename, original.read(item)))


@pytest.mark.core
@pytest.mark.parametrize("damage", ["truncated", "bad json", "another zip"])
def test_a_corrupt_pt2_is_one_line(small, tmp_path, damage):
    path = tmp_path / "bad.pt2"
    if damage == "truncated":
        data = small[1].read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif damage == "bad json":
        _rewritten(small[1], path, lambda name, data: b"{not json" if name.endswith(".json") else data)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "a zip, not a program")
    logged = _Records()
    logging.getLogger("torch.export").addHandler(logged)   # torch 2.13 logs each format it failed to read
    try:
        code, err = run("verify", "--spike-driven", path)
    finally:
        logging.getLogger("torch.export").removeHandler(logged)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"spikec: error: {path} is not a torch.export program")
    assert logged.records == []


class _Touch:
    """Unpickled, it creates ``path``: the code a crafted program would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.mark.core
def test_a_pt2_that_pickles_code_is_refused(small, tmp_path):
    """torch.export.load would unpickle it (torch 2.3: its constants; 2.13: its sample inputs, after a weights_only
    attempt fails)."""
    source, path, marker = small[1], tmp_path / "crafted.pt2", tmp_path / "ran"
    payload = io.BytesIO()
    torch.save({"x": _Touch(marker)}, payload)
    _rewritten(source, path, lambda name, data: payload.getvalue()
               if name == "serialized_constants.pt" or name.endswith("sample_inputs/model.pt") else data)
    code, err = run("verify", "--spike-driven", path)
    assert code == 2 and not marker.exists()
    assert err.count("\n") == 1 and f"pickles Python objects ({os.mkdir.__module__}.mkdir)" in err and "--allow-pickle" in err


@pytest.mark.core
def test_options_a_program_does_not_take(small):
    path = small[1]
    code, err = run("verify", "--spike-driven", path, "--weights", path)
    assert code == 2 and err.count("\n") == 1 and "--weights do not apply to it" in err
    code, err = run("verify", "--spike-driven", path, "--input-shape", "4,1,8,8")
    assert code == 2 and err.count("\n") == 1
    assert "takes inputs of shape [" in err and ", 1, 4, 4] (named axes are free)" in err
    assert run("verify", "--spike-driven", path, "--input-shape", "4,1,4,4")[0] == 0
