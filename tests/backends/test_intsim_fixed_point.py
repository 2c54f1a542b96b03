"""intsim's fixed-point helpers and kernels against their written rules (no Lava here).

Each helper is checked against the plain-integer statement of its rule (Python ints, exact); the Conv layout
helpers against PyTorch's conv2d. Agreement with Lava itself is ``test_intsim_lava_oracle.py``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spikec.backends.intsim.fixed_point import (
    V_MAX, SignMode, cast_weights, clip_weights, decay, exact_dtype, infer_sign_mode, prepare_dense_weights,
    saturate, scaled_activation, shift_floor, shift_toward_zero, truncate_weights, wrap24, wrap24_once, wrap_int32,
)
from spikec.backends.intsim.kernels import (
    LifParams, LifState, conv, conv_weight_from_torch, conv_weight_to_torch, dense, image_from_torch,
    image_to_torch, lif_step, xy_from_hw,
)

pytestmark = pytest.mark.core

INT40 = st.integers(-(1 << 40), 1 << 40)


# --- helpers --------------------------------------------------------------------------------------------------

@given(INT40, st.integers(0, 20))
def test_shift_toward_zero_truncates_the_quotient(x, n):
    assert int(shift_toward_zero(np.int64(x), n)) == math.trunc(Fraction(x, 1 << n))


@given(INT40, st.integers(-20, 20))
def test_shift_floor_scales_by_a_power_of_two_rounding_down(x, exp):
    assert int(shift_floor(np.int64(x), exp)) == math.floor(Fraction(x) * Fraction(2) ** exp)


def test_shift_floor_takes_per_element_exponents():
    assert shift_floor(np.array([-3, -3, 5]), np.array([-1, 1, 0])).tolist() == [-2, -6, 5]


def test_shift_toward_zero_far_beyond_int32():
    assert shift_toward_zero(np.array([-(1 << 62), (1 << 62) + 1, -1, 1]), 12).tolist() == [
        -(1 << 50), 1 << 50, 0, 0]


def test_exact_dtype_is_the_cheapest_type_that_sums_exactly_below_its_bound():
    bounds = [0, (1 << 24) - 1, 1 << 24, (1 << 53) - 1, 1 << 53]
    assert [exact_dtype(b).name for b in bounds] == ["float32", "float32", "float64", "float64", "int64"]
    # at each bound the float type stops being exact: 2**24 + 1 and 2**53 + 1 round away
    assert int(np.float32(1 << 24) + np.float32(1)) == 1 << 24 and int(np.float64(1 << 53) + 1.0) == 1 << 53


@given(arrays(np.int64, 8, elements=st.integers(-(1 << 62), 1 << 62)))
def test_wrap_int32_is_numpys_int32_cast(x):
    assert np.array_equal(wrap_int32(x), x.astype(np.int32))


@given(INT40)
def test_wrap24_keeps_the_residue_in_the_signed_24_bit_range(x):
    y = int(wrap24(np.int64(x)))
    assert -(1 << 23) <= y < 1 << 23 and (y - x) % (1 << 24) == 0


@given(st.integers(-3 * (1 << 23) + 1, 3 * (1 << 23)))
def test_wrap24_once_keeps_the_residue_in_lavas_current_range(x):
    y = int(wrap24_once(np.int64(x)))
    assert -(1 << 23) < y <= 1 << 23 and (y - x) % (1 << 24) == 0


def test_wrap24_once_corrects_only_once():
    assert wrap24_once(np.array([1 << 23, (1 << 23) + 1, 1 << 25, -(1 << 23), -(1 << 25)])).tolist() == [
        1 << 23, -(1 << 23) + 1, 1 << 24, 1 << 23, -(1 << 24)]


def test_saturate_is_symmetric():
    assert saturate(np.array([-(1 << 23), 1 << 23, 5])).tolist() == [-V_MAX, V_MAX, 5]


def test_decay_rounds_toward_zero_and_keeps_the_sign():
    assert decay(np.array([-5, 5]), 2048).tolist() == [-2, 2]
    assert decay(np.array([-5, 5]), 4096).tolist() == [0, 0]
    assert decay(np.array([-5, 5]), 0).tolist() == [-5, 5]


def test_scaled_activation_wraps_in_int32():
    assert scaled_activation(np.array([1 << 24, 1 << 25, -(1 << 25) - 1])).tolist() == [
        1 << 30, -(1 << 31), (1 << 31) - 64]


# --- Dense weights --------------------------------------------------------------------------------------------

def test_cast_truncates_floats_toward_zero():
    assert cast_weights(np.array([2.9, -2.9, -0.5])).tolist() == [2, -2, 0]


@pytest.mark.parametrize("bad", [np.array([np.nan]), np.array([2.0**31]), np.array([1 << 40])])
def test_cast_refuses_what_int32_cannot_hold(bad):
    with pytest.raises(ValueError, match="int32|weights"):
        cast_weights(bad)


@pytest.mark.parametrize("weights, mode", [
    ([[0, 3]], SignMode.EXCITATORY), ([[0, 0]], SignMode.EXCITATORY), ([[0, -3]], SignMode.INHIBITORY),
    ([[-1, 3]], SignMode.MIXED),
])
def test_infer_sign_mode(weights, mode):
    assert infer_sign_mode(np.array(weights)) is mode


def test_clip_ranges_follow_the_sign_mode():
    w = np.array([-300, -1, 300])
    assert clip_weights(w, SignMode.MIXED).tolist() == [-256, -1, 255]
    assert clip_weights(w, SignMode.EXCITATORY).tolist() == [0, 0, 255]
    assert clip_weights(w, SignMode.INHIBITORY).tolist() == [-255, -1, 0]


def test_truncation_floors_except_inhibitory():
    w = np.array([-7, -5, 5, 7])
    assert truncate_weights(w, SignMode.MIXED, 8).tolist() == [-8, -6, 4, 6]  # k = 1: even values
    assert truncate_weights(np.array([5, 7]), SignMode.EXCITATORY, 6).tolist() == [4, 4]  # k = 2
    assert truncate_weights(np.array([-5, -7]), SignMode.INHIBITORY, 6).tolist() == [-4, -4]  # toward zero


def test_prepare_default_mixed_keeps_even_values():
    w = prepare_dense_weights(np.arange(-300, 300).reshape(1, -1))
    assert w.min() == -256 and w.max() == 254 and np.all(w % 2 == 0)


def test_prepare_given_sign_mode_overrides_inference():
    assert prepare_dense_weights(np.array([[-3, 5]]), sign_mode=SignMode.EXCITATORY).tolist() == [[0, 5]]


@pytest.mark.parametrize("bits", [0, 9])
def test_prepare_refuses_weight_bits_outside_1_to_8(bits):
    with pytest.raises(ValueError, match="num_weight_bits"):
        prepare_dense_weights(np.ones((1, 1)), num_weight_bits=bits)


# --- kernels --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, error", [
    ("du", -2, ValueError), ("du", 4096, ValueError), ("dv", -1, ValueError), ("vth", 1 << 17, ValueError),
    ("du", 1.0, TypeError), ("bias_exp", 17, ValueError), ("bias_mant", 1 << 15, ValueError),
    ("bias_mant", 0.5, TypeError), ("reset_interval", 0, ValueError), ("reset_offset", -1, ValueError),
])
def test_lif_params_refuse_what_lava_cannot_represent(field, value, error):
    with pytest.raises(error):
        LifParams(**{"du": 0, "dv": 0, "vth": 1, field: value})


def test_lif_du_4095_forgets_the_current_and_du_minus_1_keeps_it():
    a = np.array([[3, -2]])
    forget, keep = LifParams(du=4095, dv=0, vth=100), LifParams(du=-1, dv=0, vth=100)
    state = LifState(np.array([[1000, 1000]]), np.zeros((1, 2), dtype=np.int64))
    assert lif_step(state, a, forget)[0].u.tolist() == [[3 << 6, -2 << 6]]
    assert lif_step(state, a, keep)[0].u.tolist() == [[1000 + (3 << 6), 1000 - (2 << 6)]]


def test_lif_spikes_strictly_above_the_scaled_threshold_and_resets_only_v():
    params = LifParams(du=4095, dv=4095, vth=1)
    state, spikes = lif_step(LifState.zeros((1, 2)), np.array([[1, 2]]), params)  # v = 64, 128 vs 64
    assert spikes.tolist() == [[False, True]]
    assert state.v.tolist() == [[64, 0]] and state.u.tolist() == [[64, 128]]


def test_lif_reset_needs_the_time_step():
    with pytest.raises(ValueError, match="time_step"):
        lif_step(LifState.zeros((1, 1)), np.zeros((1, 1), dtype=np.int64), LifParams(0, 0, 1, reset_interval=2))


def test_dense_binary_counts_any_nonzero_message_as_a_spike():
    w = np.array([[2, 4], [-6, 8]])
    assert dense(np.array([[-5, 3]]), w, 0).tolist() == [[6, 2]]
    assert dense(np.array([[-5, 3]]), w, 0, graded=True).tolist() == [[2, 54]]
    assert dense(np.array([[1, 0]]), w, -2).tolist() == [[0, -2]]  # floor(-6 / 4)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_conv_on_torch_layouts_is_torch_conv2d(data):
    groups = data.draw(st.integers(1, 2))
    cin, cout = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    kh, kw, dh, dw = (data.draw(st.integers(1, 3)) for _ in range(4))
    ph, pw = data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1))
    sh, sw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    smallest_h, smallest_w = max(1, dh * (kh - 1) + 1 - 2 * ph), max(1, dw * (kw - 1) + 1 - 2 * pw)
    h, w = data.draw(st.integers(smallest_h, smallest_h + 3)), data.draw(st.integers(smallest_w, smallest_w + 3))
    x = data.draw(arrays(np.int64, (2, cin, h, w), elements=st.integers(-50, 50)))
    weight = data.draw(arrays(np.int64, (cout, cin // groups, kh, kw), elements=st.integers(-256, 255)))

    expected = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(weight).double(), stride=(sh, sw),
                        padding=(ph, pw), dilation=(dh, dw), groups=groups).numpy().astype(np.int64)
    got = conv(image_from_torch(x), conv_weight_from_torch(weight), stride=xy_from_hw((sh, sw)),
               padding=xy_from_hw((ph, pw)), dilation=xy_from_hw((dh, dw)), groups=groups, graded=True)
    assert np.array_equal(image_to_torch(got), expected)
    assert np.array_equal(conv_weight_to_torch(conv_weight_from_torch(weight)), weight)


def test_conv_refuses_sums_where_lavas_int32_cast_is_undefined():
    with pytest.raises(OverflowError):
        conv(np.full((1, 1, 1, 2), 1 << 30), np.full((1, 1, 1, 2), 2), graded=True)
