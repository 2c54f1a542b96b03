"""Lava's fixed-point rules, one named helper per rule.

Every integer operation of intsim goes through these helpers, so that each rounding and overflow rule is
written once, next to the Lava code it mirrors (lava-nc 0.10.0, ``fixed_pt`` models; paths are inside the
installed ``lava`` package). Values are held in ``int64`` arrays; where Lava computes in ``int32`` the
helpers say so and wrap explicitly (:func:`wrap_int32`), so an ``int64`` result equals Lava's ``int32`` one.

The LIF neuron (``proc/lif/models.py``, ``AbstractPyLifModelFixed``) per step, with ``a`` the input::

    u = wrap24_once(wrap_int32(decay(u, du + 1) + (a << 6)))
    v = saturate(wrap_int32(decay(v, dv) + u + (bias_mant << bias_exp)))
    spike = v > vth << 6;  v[spike] = 0

Dense weights (``proc/dense/models.py`` with ``utils/weightutils.py``): cast to int32, clip by sign mode,
then drop the low ``8 - num_weight_bits (+1 if MIXED)`` bits; the accumulated input is scaled by
``2**weight_exp`` with a floor shift.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

__all__ = [
    "INT16_MIN", "INT16_MAX", "INT32_MIN", "INT32_MAX", "DECAY_BITS", "DECAY_SHIFT", "DECAY_UNITY", "DECAY_MAX",
    "DS_OFFSET", "DU_NO_CURRENT_MEMORY", "ACTIVATION_SHIFT", "THRESHOLD_SHIFT", "STATE_BITS", "STATE_LIMIT", "V_MAX",
    "MESSAGE_BITS", "MESSAGE_LIMIT", "U_EXACT", "VTH_BITS", "VTH_MAX", "BIAS_MANT_BITS", "BIAS_EXP_BITS",
    "BIAS_EXP_LIMIT", "WEIGHT_BITS", "SIGN_MODE_RANGES", "DENSE_MANTISSA_MIN", "DENSE_MANTISSA_MAX",
    "DENSE_MANTISSA_STEP", "FLOAT32_EXACT", "FLOAT64_EXACT", "SignMode", "exact_dtype", "shift_toward_zero",
    "shift_floor", "wrap_int32", "wrap24", "wrap24_once", "saturate", "decay", "scaled_activation",
    "scaled_threshold", "scaled_bias", "int_array", "cast_weights", "infer_sign_mode", "clip_weights",
    "truncation_bits", "truncate_weights", "prepare_dense_weights",
]

# --- storage widths ----------------------------------------------------------------------------------------

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
"""``bias_mant`` and ``bias_exp`` are int16 Vars (``proc/lif/models.py:84-85``, ``LavaPyType(..., np.int16)``)."""
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
"""``u``, ``v``, weights and every message are int32 (``proc/lif/models.py:80-81``; ``CspSendPort.send`` copies into
an int32 buffer, ``magma/compiler/channels/pypychannel.py:246-247``; ``PyInPortVectorDense.recv`` sums in it)."""

# --- LIF (proc/lif/models.py, AbstractPyLifModelFixed.__init__) ------------------------------------------

DECAY_BITS = 12
"""``du`` and ``dv`` are unsigned 12-bit registers, 0 to 4095 (``proc/lif/models.py:82-83``, ``precision=12``)."""
DECAY_SHIFT = 12
"""Decays are 12-bit fractions: ``x * (4096 - d) >> 12`` (``proc/lif/models.py:104``, ``decay_shift = 12``)."""
DECAY_UNITY = 1 << DECAY_SHIFT
"""4096, the du/dv scale: a decay constant ``d`` keeps ``(4096 - d) / 4096`` (``proc/lif/models.py:105``,
``decay_unity``)."""
DECAY_MAX = (1 << DECAY_BITS) - 1
"""4095, the largest ``du`` and ``dv`` (``proc/lif/models.py:252-253``: "unsigned 12-bit integer (0 to 4095)")."""
DS_OFFSET = 1
"""The current's decay is ``du + 1`` (``proc/lif/models.py:94``, ``ds_offset = 1``; the voltage's offset,
``dm_offset``, is 0, ``:95``), so ``du`` spans effective decays 0..4096 from ``du = -1`` (lava-dl netx's "no
current decay") to ``du = 4095``."""
DU_NO_CURRENT_MEMORY = DECAY_UNITY - DS_OFFSET
"""4095: ``u * (4096 - (4095 + 1)) = 0``, the current forgets itself each step and ``u = a << 6``
(``proc/lif/models.py:145-149``). What quantization emits for every neuron (``docs/design.md``, §5)."""
ACTIVATION_SHIFT = 6
"""Synaptic input is MSB-aligned into the 24-bit current: ``a << 6`` (``proc/lif/models.py:108``, ``act_shift``;
applied at ``:155``)."""
THRESHOLD_SHIFT = 6
"""The threshold mantissa is MSB-aligned the same way: ``vth << 6`` (``proc/lif/models.py:107``, ``vth_shift``;
applied at ``:273``)."""
STATE_BITS = 24
"""``u`` and ``v`` are 24-bit registers (``proc/lif/models.py:101``, ``uv_bitwidth = 24``)."""
STATE_LIMIT = 1 << (STATE_BITS - 1)
"""``max_uv_val = 2**23`` (``proc/lif/models.py:102``) bounds both ``u`` and ``v`` (:func:`wrap24_once`,
:func:`saturate`)."""
V_MAX = STATE_LIMIT - 1
"""``v`` saturates to ``[-V_MAX, V_MAX]`` (``proc/lif/models.py:176-177``, ``neg_voltage_limit`` /
``pos_voltage_limit``: symmetric, ``-2**23`` itself is excluded)."""
U_EXACT = STATE_LIMIT >> ACTIVATION_SHIFT
"""``2**17``: for ``-U_EXACT < a <= U_EXACT``, ``u = a << 6`` lies in ``(-2**23, 2**23]``, which Lava's current wrap
keeps as is (``proc/lif/models.py:161-170``, :func:`wrap24_once`), so with ``du = 4095`` the current is exactly the
scaled input."""
VTH_BITS = 17
"""Loihi's threshold mantissa is unsigned 17-bit, 0 to 131071 (``proc/lif/models.py:257``, ``PyLifModelBitAcc``
docstring; ``vth`` is ``LavaPyType(int, np.int32, precision=17)``, ``:263``)."""
VTH_MAX = (1 << VTH_BITS) - 1
"""The largest ``vth`` intsim accepts: a larger one could never be exceeded by the saturated ``v``
(``VTH_MAX << 6 = V_MAX - 63``)."""
BIAS_MANT_BITS = 13
"""Loihi's bias mantissa is signed 13-bit, -4096 to 4095 (``proc/lif/models.py:254``, and ``precision=13`` at
``:84``; Lava's Python model holds it in int16 and does not enforce this)."""
BIAS_EXP_BITS = 3
"""Loihi's bias exponent is unsigned 3-bit, 0 to 7 (``proc/lif/models.py:256``, ``precision=3`` at ``:85``; not
enforced by the Python model)."""
BIAS_EXP_LIMIT = 31 - 15
"""16: ``scale_bias`` shifts the int16 mantissa in int32 (``proc/lif/models.py:116-121``), which cannot overflow
for ``|bias_exp| <= 16``, the range intsim accepts."""

# --- messages ----------------------------------------------------------------------------------------------

MESSAGE_BITS = 24
"""Graded messages are 24-bit as Lava models them: the port types' ``precision=24`` and the Conv's wrap,
``signed_clamp(x, bits=24)`` (``proc/conv/models.py:73-79``). Lava enforces only the Conv's wrap."""
MESSAGE_LIMIT = 1 << (MESSAGE_BITS - 1)
"""A 24-bit message lies in ``[-2**23, 2**23)``: :func:`wrap24` (``proc/conv/utils.py:83-84``, ``base // 2``)."""


class SignMode(Enum):
    """Sign mode of a Dense weight matrix; values and names as Lava's ``utils.weightutils.SignMode``."""

    MIXED = 1
    EXCITATORY = 2
    INHIBITORY = 3


# --- Dense weights (utils/weightutils.py) ------------------------------------------------------------------

WEIGHT_BITS = 8
"""Weights are clipped to 8 bits and ``num_weight_bits`` is at most 8 (``utils/weightutils.py:207``,
``max_num_weight_bits = 8``; ``proc/dense/models.py:87``, ``clip_weights(..., num_bits=8)``)."""
SIGN_MODE_RANGES = {
    SignMode.MIXED: (-(1 << WEIGHT_BITS), (1 << WEIGHT_BITS) - 1),
    SignMode.EXCITATORY: (0, (1 << WEIGHT_BITS) - 1),
    SignMode.INHIBITORY: (-((1 << WEIGHT_BITS) - 1), 0),
}
"""The 8-bit clip of each sign mode: MIXED ``[-256, 255]``, EXCITATORY ``[0, 255]``, INHIBITORY ``[-255, 0]``
(``utils/weightutils.py:283-284``, ``min_wgt`` / ``max_wgt``; INHIBITORY weights are negated around the clip,
``:280-281``)."""
DENSE_MANTISSA_STEP = 2
"""MIXED spends one bit on the sign: at 8 weight bits ``truncate_weights`` drops ``k = 8 - 8 + 1`` low bit, so the
mantissas that survive are even (``utils/weightutils.py:235-239``; :func:`truncation_bits`)."""
DENSE_MANTISSA_MIN = SIGN_MODE_RANGES[SignMode.MIXED][0]
"""-256, the smallest mantissa a MIXED Dense keeps."""
DENSE_MANTISSA_MAX = SIGN_MODE_RANGES[SignMode.MIXED][1] // DENSE_MANTISSA_STEP * DENSE_MANTISSA_STEP
"""254, the largest: spikec's Dense weights are the even values of ``[-256, 254]``, which Lava's default MIXED,
8-bit preparation (:func:`prepare_dense_weights`) leaves unchanged."""

# --- exact float accumulation ------------------------------------------------------------------------------

FLOAT32_EXACT = 1 << 24
"""float32 has a 24-bit significand (IEEE 754 binary32): every integer of magnitude below ``2**24`` is exact."""
FLOAT64_EXACT = 1 << 53
"""float64 has a 53-bit significand (binary64). Lava's Conv convolves in float64 (``proc/conv/utils.py:290``,
``scipy.signal.convolve2d``), so its sums are exact only below ``2**53``."""


def exact_dtype(bound: int) -> np.dtype:
    """The cheapest type that sums integers exactly when no partial sum can reach ``bound`` in magnitude: float32
    below ``2**24``, float64 below ``2**53``, else int64. Every product and partial sum is then an integer the
    float type represents exactly, whatever the summation order, so float BLAS gives the exact integer result.
    """
    if bound < FLOAT32_EXACT:
        return np.dtype(np.float32)
    if bound < FLOAT64_EXACT:
        return np.dtype(np.float64)
    return np.dtype(np.int64)


# --- shifts, wraps and saturation --------------------------------------------------------------------------

def shift_toward_zero(x: np.ndarray, n: int) -> np.ndarray:
    """``sign(x) * (|x| >> n)``: a right shift that rounds toward zero, not toward minus infinity.

    Lava: ``AbstractPyLifModelFixed.subthr_dynamics`` rounds both decays this way
    (``np.sign(d) * np.right_shift(np.abs(d), self.decay_shift)``, ``proc/lif/models.py:150-152`` and ``:181-183``).
    Computed in two passes as ``(x + ((x >> 63) & (2**n - 1))) >> n``, the same value: adding ``2**n - 1`` to a
    negative ``x`` first turns the floor shift into one toward zero.
    """
    x = np.asarray(x, dtype=np.int64)
    return (x + ((x >> 63) & ((1 << n) - 1))) >> n


def shift_floor(x: np.ndarray, exp) -> np.ndarray:
    """``x << exp`` for ``exp >= 0``, else ``x >> -exp`` (arithmetic shift: rounds toward minus infinity).

    ``exp`` may be an array (per-neuron bias exponents). Lava: ``AbstractPyDenseModelBitAcc.run_spk`` scales the
    accumulated input by ``weight_exp`` this way; ``AbstractPyLifModelFixed.scale_bias`` scales ``bias_mant`` by
    ``bias_exp``. So ``-3`` with ``exp = -1`` gives ``-2``, not ``-1``.
    """
    x = np.asarray(x, dtype=np.int64)
    if np.ndim(exp) == 0:  # one exponent for the whole array (a Dense's weight_exp): one pass, not three
        exp = int(exp)
        return x << exp if exp >= 0 else x >> -exp
    exp = np.asarray(exp, dtype=np.int64)
    return np.where(exp >= 0, x << np.maximum(exp, 0), x >> np.maximum(-exp, 0))


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap into int32: ``((x + 2**31) mod 2**32) - 2**31``.

    Lava computes in ``int32`` numpy arrays, which wrap silently: the sum of all messages arriving at one InPort
    (``PyInPortVectorDense.recv`` adds them into the port's dtype), ``a << 6`` and ``u + (a << 6)`` in the LIF,
    ``decay(v) + u + bias`` before the LIF saturates it, the graded Dense dot product, and every message a channel
    carries (``CspSendPort.send`` stores into an ``int32`` shared buffer).
    """
    x = np.asarray(x, dtype=np.int64)
    return ((x - INT32_MIN) & 0xFFFFFFFF) + INT32_MIN


def wrap24(x: np.ndarray) -> np.ndarray:
    """Signed 24-bit wrap: ``((x + 2**23) mod 2**24) - 2**23``.

    Lava: ``proc/conv/utils.signed_clamp(x, bits=24)``, applied to every Conv output (``PyConvModelFixed``).
    """
    x = np.asarray(x, dtype=np.int64)
    return ((x + MESSAGE_LIMIT) & (2 * MESSAGE_LIMIT - 1)) - MESSAGE_LIMIT


def wrap24_once(x: np.ndarray) -> np.ndarray:
    """Lava's LIF current overflow: subtract ``2**24`` once where ``x > 2**23``, add it once where ``x <= -2**23``.

    Lava: ``AbstractPyLifModelFixed.subthr_dynamics`` (``wrapped_curr``). It is not :func:`wrap24`: for
    ``-3 * 2**23 < x <= 3 * 2**23`` it lands in ``(-2**23, 2**23]``, not two's complement's ``[-2**23, 2**23)``
    (``2**23`` stays, ``-2**23`` becomes ``2**23``); beyond that one correction is not enough and ``u`` keeps a
    value outside 24 bits (``x = 2**25`` gives ``u = 2**24``), which Lava stores in its ``int32`` ``u``.
    """
    x = np.asarray(x, dtype=np.int64)
    return np.where(x > STATE_LIMIT, x - 2 * STATE_LIMIT, np.where(x <= -STATE_LIMIT, x + 2 * STATE_LIMIT, x))


def saturate(x: np.ndarray) -> np.ndarray:
    """Clip to ``[-(2**23 - 1), 2**23 - 1]``.

    Lava: ``AbstractPyLifModelFixed.subthr_dynamics`` clips the updated voltage to ``neg_voltage_limit`` /
    ``pos_voltage_limit``. Only ``v`` saturates; ``u`` wraps (:func:`wrap24_once`).
    """
    return np.clip(np.asarray(x, dtype=np.int64), -V_MAX, V_MAX)


# --- LIF scalings ------------------------------------------------------------------------------------------

def decay(x: np.ndarray, decay_constant: int) -> np.ndarray:
    """``shift_toward_zero(x * (4096 - decay_constant), 12)``, the product taken in int64.

    Lava: ``AbstractPyLifModelFixed.subthr_dynamics``. The current uses ``decay_constant = du + 1``
    (``ds_offset = 1``: ``du = 4095`` forgets ``u`` entirely, ``du = -1`` keeps it), the voltage uses
    ``decay_constant = dv`` (``dm_offset = 0``: ``dv = 0`` is a perfect integrator).
    """
    return shift_toward_zero(np.asarray(x, dtype=np.int64) * (DECAY_UNITY - decay_constant), DECAY_SHIFT)


def scaled_activation(a: np.ndarray) -> np.ndarray:
    """``a << 6`` in int32: wraps when ``|a| >= 2**25``.

    Lava: ``AbstractPyLifModelFixed.subthr_dynamics`` (``np.left_shift(activation_in, self.act_shift)`` on the
    ``int32`` input vector).
    """
    return wrap_int32(np.asarray(a, dtype=np.int64) << ACTIVATION_SHIFT)


def scaled_threshold(vth: int) -> int:
    """``vth << 6``; a neuron spikes when ``v > vth << 6`` (strictly).

    Lava: ``PyLifModelBitAcc.scale_threshold`` (computed once, at the first step) and ``spiking_activation``.
    """
    return vth << THRESHOLD_SHIFT


def scaled_bias(bias_mant: np.ndarray, bias_exp: np.ndarray) -> np.ndarray:
    """``shift_floor(bias_mant, bias_exp)``, added to ``v`` each step as is (not shifted by 6 like the input).

    Lava: ``AbstractPyLifModelFixed.scale_bias`` (``int32``; no overflow for ``bias_mant`` in int16 and
    ``|bias_exp| <= 16``, the range :class:`~spikec.backends.intsim.kernels.LifParams` accepts).
    """
    return shift_floor(bias_mant, bias_exp)


# --- storage types and Dense weights -----------------------------------------------------------------------

def int_array(x, what: str, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """``x`` as an int64 array, refusing non-integers and, when bounds are given, values outside ``[lo, hi]``.

    Lava stores state, parameters and weights in fixed-width numpy arrays (``LavaPyType`` dtypes) and casts
    silently on the way in; intsim refuses values such a cast would change instead of changing them.
    """
    array = np.asarray(x)
    if array.dtype.kind not in "biu":
        raise TypeError(f"{what} must be integers, got dtype {array.dtype}")
    if array.size and lo is not None and hi is not None:
        smallest, largest = int(array.min()), int(array.max())
        if smallest < lo or largest > hi:
            raise ValueError(f"{what} must lie in [{lo}, {hi}], got values in [{smallest}, {largest}]")
    return array.astype(np.int64)


def cast_weights(weights) -> np.ndarray:
    """Weights as Lava's ``int32`` weight Var holds them: floats truncated toward zero.

    Lava: the process builder fills the ``int32`` ``weights`` array with ``var[:] = value``
    (``magma/compiler/builders/py_builder.py``), a C cast. Values that do not fit int32 are refused.
    """
    array = np.asarray(weights)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(np.abs(array) >= 2.0**31):
            raise ValueError("weights must be finite and fit int32")
        array = np.trunc(array).astype(np.int64)
    return int_array(array, "weights", INT32_MIN, INT32_MAX)


def infer_sign_mode(weights: np.ndarray) -> SignMode:
    """EXCITATORY if ``min(W) >= 0``, else INHIBITORY if ``max(W) <= 0``, else MIXED (all-zero: EXCITATORY).

    Lava: ``utils/weightutils.determine_sign_mode``, used by ``AbstractPyDenseModelBitAcc.run_spk`` when the
    Dense process was given no ``sign_mode``, on the weights after the int32 cast.
    """
    if np.min(weights) >= 0:
        return SignMode.EXCITATORY
    if np.max(weights) <= 0:
        return SignMode.INHIBITORY
    return SignMode.MIXED


def clip_weights(weights: np.ndarray, sign_mode: SignMode) -> np.ndarray:
    """Clip to the 8-bit range of the sign mode: MIXED ``[-256, 255]``, EXCITATORY ``[0, 255]``,
    INHIBITORY ``[-255, 0]``.

    Lava: ``utils/weightutils.clip_weights(weights, sign_mode, num_bits=8)``. A given sign mode that does not
    match the weights clips them (EXCITATORY zeroes negative weights).
    """
    lo, hi = SIGN_MODE_RANGES[sign_mode]
    return np.clip(np.asarray(weights, dtype=np.int64), lo, hi)


def truncation_bits(sign_mode: SignMode, num_weight_bits: int) -> int:
    """``k = 8 - num_weight_bits + (1 if MIXED else 0)``: how many low bits of each weight Lava drops.

    Lava: ``utils/weightutils.truncate_weights`` (``max_num_weight_bits = 8``; MIXED spends one bit on the sign).
    """
    return WEIGHT_BITS - num_weight_bits + (1 if sign_mode is SignMode.MIXED else 0)


def truncate_weights(weights: np.ndarray, sign_mode: SignMode, num_weight_bits: int) -> np.ndarray:
    """``(W >> k) << k`` with ``k`` from :func:`truncation_bits`; INHIBITORY weights are negated around it.

    Lava: ``utils/weightutils.truncate_weights``. The shift floors, so MIXED and EXCITATORY weights round toward
    minus infinity (default MIXED keeps the even values of ``[-256, 254]``), INHIBITORY ones toward zero.
    """
    k = truncation_bits(sign_mode, num_weight_bits)
    w = np.asarray(weights, dtype=np.int64)
    if sign_mode is SignMode.INHIBITORY:
        return -((-w >> k) << k)
    return (w >> k) << k


def prepare_dense_weights(weights, num_weight_bits: int = 8, sign_mode: SignMode | None = None) -> np.ndarray:
    """The weights a Lava Dense uses: :func:`cast_weights`, then the sign mode (given, or
    :func:`infer_sign_mode` of the cast weights), :func:`clip_weights`, :func:`truncate_weights`.

    Lava: ``AbstractPyDenseModelBitAcc.run_spk`` prepares them once, at the first step. ``weight_exp`` is not
    applied here: Lava scales the accumulated sum, not the weights (:func:`shift_floor`).
    """
    if not 1 <= num_weight_bits <= WEIGHT_BITS:
        raise ValueError(f"num_weight_bits must be in 1..8, got {num_weight_bits}")
    w = cast_weights(weights)
    if w.ndim != 2:
        raise ValueError(f"Dense weights must be a 2-D (out, in) matrix, got shape {w.shape}")
    mode = sign_mode or infer_sign_mode(w)
    return truncate_weights(clip_weights(w, mode), mode, num_weight_bits)
