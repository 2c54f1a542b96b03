"""Process models, stepped in-process through stand-in ports (as Lava's runtime steps them; see
tests/backends/test_intsim_lava_oracle.py for the stand-ins' justification):

* spikec's vectorised models for Lava's Conv, Sparse, DelaySparse and DelayDense send exactly what Lava's own
  bit-accurate models send, step by step, on random weights and messages including int32 and 24-bit wraps;
* spikec's own processes (MaxPool, MatMul, Mul, AndNot, ReduceSum, Gain, Bias, Integrator) compute intsim's
  rule for their op, with their input biases and, for the integrator, the reset at each wave.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.dense.models import PyDelayDenseModelBitAcc
from lava.proc.sparse.models import PyDelaySparseModelBitAcc, PySparseModelBitAcc
from lava.utils.weightutils import SignMode

from spikec.backends.intsim.fixed_point import wrap_int32
from spikec.backends.intsim.interpreter import INT_RULES
from spikec.backends.lava.fast_models import FastConvModel, FastDelayDenseModel, FastDelaySparseModel, \
    FastSparseModel
from spikec.backends.lava.processes import models as spikec_models

pytestmark = pytest.mark.lava

CASES = 120


class _InPort:
    def __init__(self):
        self.message = None

    def recv(self):
        return self.message


class _OutPort:
    def __init__(self, shape):
        self.sent = np.zeros(shape, dtype=np.int32)
        self.shape = shape

    def send(self, data):
        self.sent[...] = data


def _step_all(models, messages, in_ports=("s_in",)):
    """Feed the same messages to every model; return what each sent at every step."""
    sent = [[] for _ in models]
    for message in messages:
        for model, out in zip(models, sent):
            for port, value in zip(in_ports, message if len(in_ports) > 1 else (message,)):
                getattr(model, port).message = value.astype(np.int32)
            model.time_step = getattr(model, "time_step", 0) + 1
            model.run_spk()
            out.append(model.a_out.sent.copy() if hasattr(model, "a_out") else model.s_out.sent.copy())
    return [np.array(s) for s in sent]


def _messages(rng, shape, graded, steps):
    if not graded:
        return rng.integers(-1, 2, (steps, *shape))
    scale = rng.choice([8, 1 << 12, 1 << 20, 1 << 30])
    return rng.integers(-scale, scale, (steps, *shape))


# ---------------------------------------------------------------- spikec's models of Lava's processes


def _conv_model(cls, weight, geometry, graded, out_shape):
    model = cls({})
    model.weight = weight.astype(np.int32)
    model.kernel_size = np.array(weight.shape[1:3], dtype=np.int8)
    for key in ("stride", "padding", "dilation"):
        setattr(model, key, np.array(geometry[key], dtype=np.int8))
    model.groups = np.array([geometry["groups"]], dtype=np.int8)
    model.num_message_bits = np.array([24 if graded else 0], dtype=np.int8)
    model.a_buf = np.zeros(out_shape, dtype=np.int32)
    model.s_in, model.a_out = _InPort(), _OutPort(out_shape)
    return model


def test_fast_conv_model_sends_what_lavas_conv_model_sends():
    rng = np.random.default_rng(0)
    for _ in range(CASES // 2):
        groups = int(rng.integers(1, 3))
        cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        kx, ky = (int(k) for k in rng.integers(1, 4, 2))
        geometry = {"stride": tuple(rng.integers(1, 3, 2)), "padding": tuple(rng.integers(0, 2, 2)),
                    "dilation": tuple(rng.integers(1, 3, 2)), "groups": groups}
        size = [int(geometry["dilation"][i] * ((kx, ky)[i] - 1) + 1 + rng.integers(0, 4)) for i in range(2)]
        out_shape = tuple((size[i] + 2 * geometry["padding"][i] - geometry["dilation"][i] * ((kx, ky)[i] - 1) - 1)
                          // geometry["stride"][i] + 1 for i in range(2)) + (cout,)
        weight = rng.integers(-300, 301, (cout, kx, ky, cin // groups))
        graded = bool(rng.integers(0, 2))
        x = _messages(rng, (*size, cin), graded, 4) // (1 << 10 if graded else 1)
        models = [_conv_model(cls, weight, geometry, graded, out_shape) for cls in (PyConvModelFixed, FastConvModel)]
        lava, fast = _step_all(models, x)
        assert np.array_equal(lava, fast)


def _sparse_pair(rng, graded, delays):
    n_out, n_in = (int(n) for n in rng.integers(1, 7, 2))
    dense_w = rng.integers(-300, 301, (n_out, n_in)) * (rng.random((n_out, n_in)) < 0.6)
    sign = [None, SignMode.MIXED, SignMode.EXCITATORY, SignMode.INHIBITORY][int(rng.integers(0, 4))]
    params = {"weight_exp": int(rng.integers(-4, 5)), "num_weight_bits": int(rng.integers(1, 9))}
    if sign is not None:
        params["sign_mode"] = sign
    weights = scipy.sparse.csr_matrix(dense_w.astype(np.int32))
    max_delay = int(rng.integers(0, 4)) if delays else 0
    return n_in, n_out, weights, params, max_delay


def test_fast_sparse_model_sends_what_lavas_sparse_model_sends():
    rng = np.random.default_rng(1)
    for _ in range(CASES):
        graded = bool(rng.integers(0, 2))
        n_in, n_out, weights, params, _ = _sparse_pair(rng, graded, False)
        models = []
        for cls in (PySparseModelBitAcc, FastSparseModel):
            model = cls(dict(params))
            model.weights = weights.copy()
            model.a_buff = np.zeros(n_out, dtype=np.int32)
            model.num_message_bits = np.array([24 if graded else 0])
            model.s_in, model.a_out = _InPort(), _OutPort((n_out,))
            models.append(model)
        lava, fast = _step_all(models, _messages(rng, (n_in,), graded, 5))
        assert np.array_equal(lava, fast)


@pytest.mark.filterwarnings("ignore:Changing the sparsity structure")
def test_fast_delay_sparse_model_sends_what_lavas_model_sends():
    rng = np.random.default_rng(2)
    for _ in range(CASES // 2):
        graded = bool(rng.integers(0, 2))
        n_in, n_out, weights, params, max_delay = _sparse_pair(rng, graded, True)
        delays = weights.copy().astype(np.int32)
        delays.data = rng.integers(0, max_delay + 1, delays.nnz).astype(np.int32)
        models = []
        for cls in (PyDelaySparseModelBitAcc, FastDelaySparseModel):
            model = cls(dict(params))
            model.weights, model.delays = weights.copy(), delays.copy()
            model.a_buff = np.zeros((n_out, max_delay + 1), dtype=np.int32)
            model.num_message_bits = np.array([24 if graded else 0])
            model.s_in, model.a_out = _InPort(), _OutPort((n_out,))
            models.append(model)
        lava, fast = _step_all(models, _messages(rng, (n_in,), graded, 6) // (1 << 8))
        assert np.array_equal(lava, fast)


def test_fast_delay_dense_model_sends_what_lavas_model_sends():
    rng = np.random.default_rng(3)
    for _ in range(CASES // 2):
        graded = bool(rng.integers(0, 2))
        n_in, n_out, weights, params, max_delay = _sparse_pair(rng, graded, True)
        delays = rng.integers(0, max_delay + 1, (n_out, n_in)).astype(np.int32)
        models = []
        for cls in (PyDelayDenseModelBitAcc, FastDelayDenseModel):
            model = cls(dict(params))
            model.weights, model.delays = weights.toarray().astype(np.int32), delays.copy()
            model.a_buff = np.zeros((n_out, max_delay + 1), dtype=np.int32)
            model.num_message_bits = np.array([24 if graded else 0])
            model.s_in, model.a_out = _InPort(), _OutPort((n_out,))
            models.append(model)
        lava, fast = _step_all(models, _messages(rng, (n_in,), graded, 6) // (1 << 8))
        assert np.array_equal(lava, fast)


# ---------------------------------------------------------------- spikec's own processes


def _run_unary(model_cls, params, x, T):
    """x: [T * samples, *in_shape] messages; returns the sent [T * samples, *out_shape]."""
    model = model_cls(dict(params))
    model.a_in, model.s_out = _InPort(), _OutPort(tuple(params["shape"]))
    return _step_all([model], x, ("a_in",))[0]


def _stub(attrs, dtype="i32"):
    return SimpleNamespace(attrs=attrs, output=SimpleNamespace(type=SimpleNamespace(dtype=dtype)))


def test_maxpool_gain_and_bias_processes_apply_intsims_rules_with_their_input_bias():
    rng = np.random.default_rng(4)
    x = rng.integers(-40, 40, (3, 2, 5, 6))                     # [steps, C, H, W]
    bias = rng.integers(-9, 9, (2, 5, 6))
    pool = {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 1), "ceil_mode": False}
    cases = [
        (spikec_models.PyMaxPoolModel, "maxpool", pool, (2, 3, 3)),
        (spikec_models.PyGainModel, "qgain", {"factor": 64}, (2, 5, 6)),
    ]
    for cls, op, attrs, shape in cases:
        sent = _run_unary(cls, {"in_shape": (2, 5, 6), "shape": shape, "in_bias": bias, **attrs}, x, 1)
        expected = INT_RULES[op](_stub(attrs), [wrap_int32(x + bias)[:, None]])[:, 0]
        assert np.array_equal(sent, expected), op
    sent = _run_unary(spikec_models.PyBiasModel, {"in_shape": (2, 5, 6), "shape": (2, 5, 6), "bias": bias}, x, 1)
    assert np.array_equal(sent, x + bias)


@pytest.mark.parametrize("model_cls, op", [(spikec_models.PyMatMulModel, "matmul"),
                                           (spikec_models.PyAndNotModel, "and_not")])
def test_two_input_processes_apply_intsims_rules(model_cls, op):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2, (3, 2, 4, 5))
    b = rng.integers(0, 2, (3, 2, 5, 3)) if op == "matmul" else rng.integers(0, 3, (3, 2, 1, 5))
    a_bias = rng.integers(0, 3, (2, 4, 5))
    out = INT_RULES[op](None, [wrap_int32(a + a_bias)[:, None], b[:, None]])[:, 0]
    model = model_cls({"a_shape": (2, 4, 5), "b_shape": b.shape[1:], "shape": out.shape[1:], "a_bias": a_bias})
    model.a_in, model.b_in, model.s_out = _InPort(), _InPort(), _OutPort(out.shape[1:])
    sent = _step_all([model], list(zip(a, b)), ("a_in", "b_in"))[0]
    assert np.array_equal(sent, out)


def test_integrator_restarts_at_each_wave_and_sums_like_intsim():
    # T = 3, depth 4: waves start at steps tau = 5, 8, 11, ... (offset (1 + 4) % 3 = 2). Sample s's running
    # sum at its last step equals intsim's time sum of that sample.
    rng = np.random.default_rng(6)
    T, depth, samples = 3, 4, 3
    x = rng.integers(-50, 50, (T, samples, 4, 2))              # intsim's [T, B, tokens, features]
    stream = np.zeros((depth + samples * T, 4, 2), dtype=np.int64)
    stream[depth:] = x.transpose(1, 0, 2, 3).reshape(samples * T, 4, 2)
    stream[:depth] = 999                                       # garbage before the first wave
    attrs = {"axes": (0, 2), "keepdim": False}
    params = {"in_shape": (4, 2), "shape": (2,), "T": T, "reset_offset": (1 + depth) % T, "in_bias": None, **attrs}
    sent = _run_unary(spikec_models.PyIntegratorModel, params, stream, T)
    read = sent[depth + T - 1::T][:samples]
    expected = INT_RULES["sum"](_stub(attrs), [x])[0]
    assert np.array_equal(read, expected)
