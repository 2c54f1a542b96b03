"""The netx export, checked by its consumer: the file `spikec export --to netx` writes is loaded by lava-dl's
``netx.hdf5.Network``, and the network netx builds, run on Lava's fixed-point CPU models, spikes exactly as intsim
in every layer, every step and every sample; netx's weight rescaling is predicted exactly; what netx cannot express
(the digits transformers) is refused in one line naming the ops."""

from __future__ import annotations

import json
import os
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from spikec.backends.intsim.interpreter import run_intsim
from spikec.backends.intsim.kernels import LifParams, LifState, image_from_torch, lif_step
from spikec.backends.netx import export_netx, netx_dense_scaling
from spikec.backends.netx.export import _dense_scaling_loss
from spikec.cli import main
from spikec.compiler import load_artifact

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lava"))     # the digits checkpoints the Lava tests use
from lava_cases import DIGITS, LAVA_TIMEOUT_S  # noqa: E402

CONV_DENSE = '''
import torch
from torch import nn
from spikec.nn import MultiStepLIF


class ConvDense(nn.Module):
    """LIF encoder -> conv -> LIF -> flatten -> dense -> LIF -> dense -> LIF on 8x8 images, T = 4; weights and
    biases set so that every layer fires, and so that every dense layer quantizes to weights netx can hold."""

    def __init__(self, fc2_gain=0.5):
        super().__init__()
        torch.manual_seed(0)
        self.encode = MultiStepLIF(tau=2.0, v_threshold=0.5)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.lif1 = MultiStepLIF(tau=2.0)
        self.fc1 = nn.Linear(4 * 8 * 8, 16)
        self.lif2 = MultiStepLIF(tau=2.0)
        self.fc2 = nn.Linear(16, 10)
        self.lif3 = MultiStepLIF(tau=2.0)
        with torch.no_grad():
            self.conv.weight.mul_(3)
            self.conv.bias.fill_(0.9)
            self.fc1.bias.fill_(1.1)
            self.fc2.weight.mul_(fc2_gain)
            self.fc2.bias.fill_(1.1)
        self.eval()

    def forward(self, x):
        T = 4
        x = self.encode(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
        y = self.lif1(self.conv(x.flatten(0, 1)).reshape(T, x.shape[1], 4, 8, 8))
        y = self.lif2(self.fc1(y.flatten(2)))
        return self.lif3(self.fc2(y)).mean(0)
'''


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def conv_dense(tmp_path):
    path = tmp_path / "conv_dense.py"
    path.write_text(CONV_DENSE)
    return f"{path}:ConvDense"


def _run_netx(path: str, encoded: np.ndarray, neuron_shapes: list[tuple[int, ...]]):
    """Run the network ``netx.hdf5.Network`` builds from ``path`` with the arguments the file names, on Lava's
    fixed_pt models, the samples of ``encoded`` ([T, B, ...], PyTorch's layout) streamed back to back. Returns each
    block's spikes [T, B, ...] in PyTorch's layout, aligned to intsim's time (block k's step t of sample s is Lava's
    step s T + t + 1 + k), and the first block's neuron state ``(u, v)`` after the last sample's last step."""
    from spikec.backends.lava.child import run_isolated

    with h5py.File(path, "r") as f:
        network_args = json.loads(f.attrs["network_args"])
    timesteps, batch = encoded.shape[:2]
    steps = batch * timesteps + len(neuron_shapes)
    stream = encoded.swapaxes(0, 1).reshape(batch * timesteps, *encoded.shape[2:])
    lava_shapes = [s[::-1] for s in [encoded.shape[2:], *neuron_shapes]]     # (C, H, W) -> Lava's (X, Y, C)
    data = np.zeros((*lava_shapes[0], steps), dtype=np.int32)
    data[..., :batch * timesteps] = np.moveaxis(image_from_torch(stream) if len(lava_shapes[0]) == 3 else stream, 0, -1)
    sinks = [os.path.join(os.path.dirname(path), f"block{k}.bin") for k in range(len(neuron_shapes))]
    for sink, shape in zip(sinks, lava_shapes[1:]):
        np.memmap(sink, dtype=np.int8, mode="w+", shape=(steps, *shape)).flush()

    def job():
        from lava.lib.dl.netx.hdf5 import Network
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.source import RingBuffer

        from spikec.backends.lava.processes.process import MemSink

        net = Network(net_config=path, **network_args)
        assert len(net.layers) == len(neuron_shapes), str(net)
        source = RingBuffer(data=data)
        source.s_out.connect(net.inp)
        for block, sink, shape in zip(net.layers, sinks, lava_shapes[1:]):
            block.out.connect(MemSink(shape=shape, path=sink, steps=steps, dtype="int8").a_in)
        neurons = net.layers[0].neuron
        try:
            net.run(condition=RunSteps(num_steps=batch * timesteps + 1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            state = tuple(image_from_torch(var.get()[None]).astype(np.int64)[0] if len(lava_shapes[1]) == 3 else
                          var.get().astype(np.int64) for var in (neurons.u, neurons.v))
            net.run(condition=RunSteps(num_steps=steps - batch * timesteps - 1))
        finally:
            net.stop()
        return state

    state = run_isolated(job, LAVA_TIMEOUT_S, f"netx run of {path}")
    spikes = []
    for k, (sink, shape) in enumerate(zip(sinks, lava_shapes[1:]), start=1):
        rows = np.array(np.memmap(sink, dtype=np.int8, mode="r", shape=(steps, *shape)), dtype=np.int64)
        trains = rows[k:k + batch * timesteps].reshape(batch * timesteps, *shape)
        trains = image_from_torch(trains) if len(shape) == 3 else trains
        spikes.append(trains.reshape(batch, timesteps, *shape[::-1]).swapaxes(0, 1))
    return spikes, state


def _final_state(neuron, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """intsim's LIF (its Lava-proven kernel) run on one sample's ``inputs`` [T, ...]: ``(u, v)`` after the last step."""
    state = LifState.zeros(inputs.shape[1:])
    params = LifParams(du=neuron.attrs["du"], dv=neuron.attrs["dv"], vth=neuron.attrs["vth"])
    for step in inputs:
        state, _ = lif_step(state, step, params)
    return state.u, state.v


def _assert_netx_spikes_equal_intsim(graph, x, net_file):
    """Run the netx file on intsim's encoding of ``x``; every neuron layer fires and spikes as on intsim. Returns
    intsim's run, the encoded input, netx's spikes per layer and the encoder's final (u, v)."""
    reference = run_intsim(graph, [x], keep_values=True)
    neurons = [n for n in graph.nodes if n.op == "qlif"]
    encoded = reference.of(neurons[0].inputs[0].producer)
    spikes, state = _run_netx(str(net_file), encoded, [n.output.type.sample_shape for n in neurons])
    rates = {n.module: round(float(reference.of(n).mean()), 3) for n in neurons}
    assert all(rate > 0.05 for rate in rates.values()), f"every layer must fire to prove much: {rates}"
    for node, got in zip(neurons, spikes):
        assert np.array_equal(got, reference.of(node)), f"spikes of {node.module} differ (firing rates {rates})"
    return reference, encoded, spikes, state


@pytest.mark.lava
def test_a_conv_dense_model_exported_by_the_cli_runs_bit_exact_on_netx(tmp_path, conv_dense):
    """Compiled with the defaults, exported from the artifact, built by netx and run on Lava: every block's spikes
    (the encoder, the conv, both dense layers) and the output's spike counts equal intsim's on 4 samples of T = 4."""
    code, _, err = run("compile", "--model", conv_dense, "--input-shape", "1,1,8,8", "-o", tmp_path / "artifact")
    assert code == 0, err
    code, _, err = run("export", tmp_path / "artifact", "--to", "netx", "-o", tmp_path / "model.net")
    assert code == 0 and "to netx HDF5 (input -> conv -> conv -> flatten -> dense -> dense)" in err, err
    graph = load_artifact(str(tmp_path / "artifact")).graph
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    reference, encoded, spikes, state = _assert_netx_spikes_equal_intsim(graph, x, tmp_path / "model.net")
    assert np.array_equal(spikes[-1].sum(axis=0), reference.outputs[0]), "spike counts differ"
    encoder = next(n for n in graph.nodes if n.op == "qlif")
    for name, got, want in zip("uv", state, _final_state(encoder, encoded[:, -1])):
        assert np.array_equal(got, want), f"the encoder's {name} differs"


@pytest.mark.lava
def test_neurons_with_current_memory_keep_it_on_netx(tmp_path, conv_dense):
    """``du = iDecay - 1`` and ``dv = vDecay`` as netx reads them, on the encoder (no bias, so netx can hold it)
    given a current that keeps half of itself each step, which quantization never emits."""
    assert run("compile", "--model", conv_dense, "--input-shape", "1,1,8,8", "-o", tmp_path / "artifact")[0] == 0
    graph = load_artifact(str(tmp_path / "artifact")).graph
    neurons = [n for n in graph.nodes if n.op == "qlif"]
    neurons[0].attrs.update(du=2047, dv=1024)
    (tmp_path / "model.net").write_bytes(export_netx(graph).content)
    x = np.random.default_rng(1).random((3, 1, 8, 8), dtype=np.float32)
    _, encoded, _, state = _assert_netx_spikes_equal_intsim(graph, x, tmp_path / "model.net")
    u, v = _final_state(neurons[0], encoded[:, -1])
    assert np.array_equal(state[0], u) and np.array_equal(state[1], v), "the decays differ: u or v is not intsim's"
    assert np.abs(u).max() > 4096 * 64, "a current too small to show its decay proves little"


def test_a_model_is_compiled_with_the_defaults_then_exported_as_its_artifact_is(tmp_path, conv_dense):
    """The file holds what netx reads, in slayer's format, and exporting the model gives the artifact's bytes."""
    assert run("compile", "--model", conv_dense, "--input-shape", "1,1,8,8", "-o", tmp_path / "artifact")[0] == 0
    assert run("export", tmp_path / "artifact", "--to", "netx", "-o", tmp_path / "a.net")[0] == 0
    code, _, err = run("export", "--model", conv_dense, "--input-shape", "1,1,8,8", "--to", "netx", "-o",
                       tmp_path / "b.net")
    assert code == 0, err
    assert (tmp_path / "a.net").read_bytes() == (tmp_path / "b.net").read_bytes()
    with h5py.File(tmp_path / "a.net", "r") as f:
        kinds = [f[f"layer/{k}/type"][0].decode() for k in range(len(f["layer"]))]
        assert kinds == ["input", "conv", "conv", "flatten", "dense", "dense"]
        encoder, conv, fc2 = f["layer/1"], f["layer/2"], f["layer/5"]
        assert encoder.attrs["spikec"] == "qlif in encode (conv_dense.py:31)"
        assert fc2.attrs["spikec"] == "qdense in fc2 (conv_dense.py:34); qlif in lif3 (conv_dense.py:34)"
        assert encoder["groups"][()] == 1 and encoder["weight"].shape == (1, 1, 1, 1)
        assert conv["weight"].shape == (4, 1, 3, 3) and list(conv["padding"][()]) == [1, 1]
        assert {k: int(v[()]) for k, v in conv["neuron"].items() if k not in ("type", "gradedSpike")} == \
            {"iDecay": 4096, "vDecay": 2048, "vThMant": 4095, "refDelay": 1}
        assert json.loads(f.attrs["network_args"]) == {"input_message_bits": 24, "reset_interval": 4,
                                                       "reset_offset": 1}


@pytest.mark.lava
def test_netx_dense_rescaling_and_its_exactness_are_predicted():
    """Where netx keeps the stored weights in range, netx_dense_scaling gives lava-dl's optimize_weight_bits' shift and
    bits, and _dense_scaling_loss is None exactly where Lava's Dense, given netx's rescaled weights (Lava's own
    sign mode, clip and truncation), computes the stored weights' products for every binary input (and, for graded
    input, only where it does)."""
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(0)
    cases = [np.array([[-1, 0]]), np.array([[-128, 0]]), np.array([[-256, 0, 0]]), np.array([[-200, -3, 0]]),
             np.array([[1, 0]]), np.array([[-3, -1]]), np.array([[254, -256]]), np.array([[255, 0]]),
             np.array([[300, 0]]), np.array([[127, -128]]), np.eye(3, dtype=np.int64)]
    cases += [rng.integers(lo, hi, (4, 6)) * 2 ** rng.integers(0, 4) for lo, hi in
              [(-256, 255), (0, 255), (-255, 1), (-64, 64), (-3, 3), (0, 2)] for _ in range(20)]
    verdicts = []
    for weight in (w.astype(np.int64) for w in cases if w.any()):
        shift, bits = netx_dense_scaling(weight)
        binary_loss, graded_loss = _dense_scaling_loss(weight, graded=False), _dense_scaling_loss(weight, graded=True)
        if shift < 0:           # netx clips such weights, or shifts them by a negative count
            assert binary_loss is not None and graded_loss is not None, weight
            continue
        with np.errstate(divide="ignore"):          # netx divides by a largest weight of 0
            stored, netx_bits, exp, _ = optimize_weight_bits(weight.copy())
        assert (-exp, netx_bits) == (shift, bits), weight
        mode = determine_sign_mode(stored)
        with np.errstate(all="ignore"):
            prepared = truncate_weights(clip_weights(stored, mode, num_bits=8), mode, bits).astype(np.int64)
        columns = weight.shape[1]
        every_binary = (np.arange(2 ** columns)[None, :] >> np.arange(columns)[:, None]) & 1
        computes = np.array_equal((prepared @ every_binary) >> shift, weight @ every_binary)
        assert (binary_loss is None) == computes, (weight, binary_loss)
        graded = rng.integers(-100, 100, (columns, 32))
        assert graded_loss is not None or np.array_equal((prepared @ graded) >> shift, weight @ graded), weight
        verdicts.append(computes)
    assert any(verdicts) and not all(verdicts), "both verdicts must occur"


@pytest.mark.parametrize("arch", ["spikingformer-cifar", "spikformer-cifar", "sdt-cifar"])
def test_the_digits_transformers_are_refused_in_one_line_naming_the_ops(tmp_path, arch):
    code, _, err = run("export", os.path.join(DIGITS, f"{arch}.pt"), "--to", "netx", "-o", tmp_path / "m.net")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("spikec: error: netx export supports input, dense, conv and flatten layers; "), err
    for what in ("maxpool at maxpool in patch_embed.", "qdense (the host classifier",
                 "qdense (token-wise) at qdense in block.0.attn.", "(spikec/models/"):
        assert what in err, err
    assert ("matmul at matmul in block.0.attn" in err) != (arch == "sdt-cifar"), err
    assert os.listdir(tmp_path) == []


@pytest.mark.core
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, conv_dense):
    """A dense layer whose quantized weights need exponent 1 (beyond netx's 8 bits), and an output directory that
    does not exist."""
    wide = ["--model", conv_dense, "--model-args", '{"fc2_gain": 1.0}', "--input-shape", "1,1,8,8"]
    for args, message in (
            ([*wide, "--to", "netx", "-o", tmp_path / "m.net"],
             "ConvDense has qdense (weights in [-500, 496], beyond the 8 bits netx rescales a dense layer into) at "
             "qdense in fc2 (conv_dense.py:"),
            (["--model", conv_dense, "--input-shape", "1,1,8,8", "--to", "netx", "-o", tmp_path / "no" / "m.net"],
             "the directory")):
        code, _, err = run("export", *args)
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == ["conv_dense.py"]
