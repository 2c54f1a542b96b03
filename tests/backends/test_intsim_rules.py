"""intsim's op rules compute exactly what the Lava-proven kernels compute: the conv in PyTorch's layout
(through exact float BLAS when the bound allows) equals Lava's flipped-kernel Conv in Lava's layout, and
the dense rule equals Lava's Dense, for binary and graded input, on random cases large enough to leave
the float32 and float64 fast paths."""

from __future__ import annotations

import pytest
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spikec.backends.intsim.fixed_point import wrap_int32
from spikec.backends.intsim.interpreter import INT_RULES
from spikec.backends.intsim.kernels import (conv, conv_weight_from_torch, dense, image_from_torch, image_to_torch,
                                            xy_from_hw)
from spikec.ir import Graph, TensorType

pytestmark = pytest.mark.core


def _node(op: str, input_shape, attrs):
    g = Graph("rule")
    x = g.create_node("input", [], {"name": "x", "layout": "TB"}, output_types=[TensorType(input_shape, "i32")]).output
    return g.create_node(op, [x], attrs)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), magnitude=st.sampled_from([1, 2 ** 10, 2 ** 20]),
       kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1), groups=st.sampled_from([1, 2]))
def test_qconv2d_equals_lava_conv(seed, magnitude, kernel, stride, padding, groups):
    rng = np.random.default_rng(seed)
    cin, cout = 2 * groups, 2 * groups
    x = rng.integers(-magnitude, magnitude + 1, size=(2, 2, cin, 5, 4))
    w = rng.integers(-256, 255, size=(cout, cin // groups, kernel, kernel)).astype(np.int32)
    bias = rng.integers(-1000, 1000, size=cout).astype(np.int32)
    attrs = {"weight": w, "bias": bias, "stride": (stride, stride), "padding": (padding, padding),
             "dilation": (1, 1), "groups": groups}
    got = INT_RULES["qconv2d"](_node("qconv2d", x.shape, attrs), [x])
    lava = conv(image_from_torch(x.reshape(4, *x.shape[2:])), conv_weight_from_torch(w), stride=xy_from_hw(stride),
                padding=xy_from_hw(padding), groups=groups, graded=True)
    expected = wrap_int32(image_to_torch(lava).reshape(2, 2, cout, *image_to_torch(lava).shape[2:])
                          + bias.reshape(1, 1, -1, 1, 1))
    assert np.array_equal(got, expected)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), graded=st.booleans(), magnitude=st.sampled_from([1, 2 ** 12, 2 ** 24]),
       weight_exp=st.integers(-6, 6), fan_in=st.sampled_from([3, 64, 700]))
def test_qdense_equals_lava_dense(seed, graded, magnitude, weight_exp, fan_in):
    rng = np.random.default_rng(seed)
    x = rng.integers(0 if not graded else -magnitude, magnitude + 1, size=(2, 3, fan_in))
    if not graded:
        x = (x != 0).astype(np.int64)
    w = (2 * rng.integers(-128, 128, size=(5, fan_in))).astype(np.int32)
    attrs = {"weight": w, "bias": None, "weight_exp": weight_exp, "axis": 2, "graded": graded, "host": False}
    got = INT_RULES["qdense"](_node("qdense", x.shape, attrs), [x])
    expected = dense(x.reshape(-1, fan_in), w, weight_exp, graded=graded).reshape(2, 3, 5)
    assert np.array_equal(got, expected)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), dv=st.sampled_from([0, 1, 1024, 2048, 2731, 4095]),
       vth=st.sampled_from([0, 1, 100, 4095, 2 ** 17 - 1]),
       magnitude=st.sampled_from([10, 2 ** 16, 2 ** 17 - 1, 2 ** 17, 2 ** 20, 2 ** 31 - 1]))
def test_fused_lif_equals_the_lava_kernel(seed, dv, vth, magnitude):
    """Both of the fused form's paths (every ``|a| < 2**17``, wraps skipped; or not) against the kernel, with inputs
    that saturate ``v`` and wrap ``a << 6`` and ``u`` (``magnitude`` sets the largest ``|a|``)."""
    from spikec.backends.intsim.interpreter import lif_no_current_memory
    from spikec.backends.intsim.kernels import LifParams, LifState, lif_step

    rng = np.random.default_rng(seed)
    x = rng.integers(-magnitude, magnitude, size=(6, 3, 17), endpoint=True)
    x.flat[rng.integers(x.size)] = magnitude * rng.choice([-1, 1])
    params, state = LifParams(du=4095, dv=dv, vth=vth), LifState.zeros((3, 17))
    expected = []
    for t in range(6):
        state, fired = lif_step(state, x[t], params, time_step=t + 1)
        expected.append(fired)
    assert np.array_equal(lif_no_current_memory(x, dv, vth), np.stack(expected).astype(np.int64))


def test_fused_lif_rounds_the_decay_toward_zero():
    """``v = -64`` decays with ``dv = 1`` to ``trunc(-64 * 4095 / 4096) = -63`` (a floor shift would give -64), so
    the next input ``a = vth + 1`` lifts ``v`` to ``64 vth + 1``, just above the threshold: random inputs almost
    never tell the two roundings apart by the spikes alone, this one does."""
    from spikec.backends.intsim.interpreter import lif_no_current_memory
    from spikec.backends.intsim.kernels import LifParams, LifState, lif_step

    x = np.array([-1, 6]).reshape(2, 1, 1)
    state, expected = LifState.zeros((1, 1)), []
    for t in range(2):
        state, fired = lif_step(state, x[t], LifParams(du=4095, dv=1, vth=5), time_step=t + 1)
        expected.append(int(fired[0, 0]))
    assert expected == [0, 1]
    assert lif_no_current_memory(x, 1, 5)[:, 0, 0].tolist() == expected
