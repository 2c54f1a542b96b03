"""A neuron called on time and batch merged (``[T*B, ...]``, as the official QKFormer's stage-3 ``proj_lif``) runs
over T*B steps: refused by default, with what to do; with ``merged_neurons_at_batch_1`` traced, at batch 1, as a
neuron over the T steps, so the graph computes every sample as the model does at batch 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import spikec.nn as snn
from spikec.backends.float.interpreter import run_float
from spikec.cli import main
from spikec.errors import InputError
from spikec.frontends.torch import trace_module
from spikec.simulation import torch_runner

pytestmark = pytest.mark.core


class MergedProjection(nn.Module):
    """QKFormer's attention tail: conv, BN and LIF on the merged [T*B, C, N] tensor, reshaped to [T, B, ...]
    only afterwards."""

    def __init__(self, T=3):
        super().__init__()
        self.T = T
        self.lif_in = snn.MultiStepLIF()
        self.proj_conv, self.proj_bn = nn.Conv1d(4, 6, 1), nn.BatchNorm1d(6)
        self.proj_lif = snn.MultiStepLIF()
        self.head = nn.Linear(6 * 5, 3)
        with torch.no_grad():
            self.proj_bn.bias.fill_(1.0)

    def forward(self, x):
        B = x.shape[0]
        s = self.lif_in(x.unsqueeze(0).repeat(self.T, 1, 1, 1) * 3)                 # [T, B, 4, 5]
        y = self.proj_lif(self.proj_bn(self.proj_conv(s.flatten(0, 1))))          # [T*B, 6, 5]
        return self.head(y.reshape(self.T, B, -1)).mean(0)


def test_a_merged_neuron_is_refused_with_the_option_that_traces_it():
    with pytest.raises(InputError) as error:
        trace_module(MergedProjection(), torch.rand(1, 4, 5))
    assert ("test_merged_neurons.py:40: error in proj_lif: MultiStepLIF gets a MERGED tensor of shape [3, 6, 5]; "
            "multi-step neurons take [T, B, ...]. On time and batch merged it runs over T*B steps, T only at batch "
            "1: if the model is meant to run one sample at a time, pass --merged-neurons-at-batch-1") in str(error.value)


def test_with_the_option_the_graph_computes_each_sample_as_the_model_does_at_batch_1():
    torch.manual_seed(0)
    model = MergedProjection().eval()
    graph = trace_module(model, torch.rand(1, 4, 5), merged_neurons_at_batch_1=True).graph
    assert [n.op for n in graph.nodes].count("lif") == 2
    x = torch.rand(5, 4, 5)
    with torch.no_grad():
        one_at_a_time = torch.cat([model(x[i:i + 1]) for i in range(5)])
        batched = model(x)
    run = run_float(graph, [x], keep_values=True)
    # equal up to float32 summation order (BLAS sums a batch of 5 in another order than a batch of 1)
    assert torch.allclose(run.outputs[0], one_at_a_time, rtol=1e-5, atol=1e-6)
    # the model at batch 5 carries one sample's state into the next
    assert not torch.allclose(batched, one_at_a_time, rtol=1e-3, atol=1e-3)
    lif = [n for n in graph.nodes if n.op == "lif"][1]
    assert 0.05 < float(run.of(lif).mean()) < 0.95    # proj_lif fires
    per_sample, _ = torch_runner(model, per_sample_axis=0)(x.numpy())
    assert np.array_equal(per_sample, one_at_a_time.numpy())


def test_the_option_needs_an_example_input_of_batch_1():
    with pytest.raises(InputError, match=r"--merged-neurons-at-batch-1 needs an example input of batch 1, got "
                                         r"batch 2"):
        trace_module(MergedProjection(), torch.rand(2, 4, 5), merged_neurons_at_batch_1=True)


def test_the_cli_flag_reaches_the_tracer_and_simulate_runs_the_module_one_sample_at_a_time(tmp_path):
    model_file = tmp_path / "merged.py"
    model_file.write_text(open(__file__).read())
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(0).uniform(0, 1, (6, 4, 5)).astype(np.float32),
             y=np.zeros(6, dtype=np.int64))
    args = ["--model", f"{model_file}:MergedProjection", "--input-shape", "1,4,5"]
    refused = CliRunner().invoke(main, ["verify", "--spike-driven", *args])
    assert refused.exit_code == 2 and "--merged-neurons-at-batch-1" in refused.stderr
    result = CliRunner().invoke(main, ["simulate", *args, "--merged-neurons-at-batch-1", "--backend", "torch,intsim",
                                       "--data", str(tmp_path / "data.npz"), "--calibrate", "0"])
    assert result.exit_code == 0, result.stderr
