"""intsim's integer kernels: one time step of Lava's LIF, Dense and Conv fixed_pt models, over a batch.

Each kernel computes what the Lava process model computes in one ``run_spk``, with the arithmetic of
:mod:`.fixed_point`, for a leading batch axis ``B`` of independent samples (Lava runs one sample at a time).
Arrays are ``int64`` holding Lava's ``int32`` / 24-bit values.

Time: the kernels are the synchronous rule. In Lava a Dense or Conv process sends at step ``t`` what it received
at step ``t - 1`` (it sends its buffer before it receives), so a spike emitted at ``t`` reaches the next neuron at
``t + 1``; a LIF receives, updates and sends within one step. intsim applies the kernels in graph order within a
step, and the Lava backend balances the one-step hops (docs/design.md, §6).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from spikec.backends.intsim.fixed_point import (
    BIAS_EXP_LIMIT, DECAY_MAX, DS_OFFSET, FLOAT64_EXACT, INT16_MAX, INT16_MIN, INT32_MAX, INT32_MIN, SIGN_MODE_RANGES,
    VTH_MAX, SignMode, decay, exact_dtype, int_array, saturate, scaled_activation, scaled_bias, scaled_threshold,
    shift_floor, wrap24, wrap24_once, wrap_int32,
)

__all__ = [
    "LifParams", "LifState", "lif_step", "dense", "conv",
    "conv_weight_from_torch", "conv_weight_to_torch", "image_from_torch", "image_to_torch", "xy_from_hw",
]


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of int64 operands, exactly: through float BLAS in the type :func:`.fixed_point.exact_dtype` allows
    for the bound on every partial sum (every product and sum is then an exactly representable integer, in any
    summation order), else in int64."""
    dtype = exact_dtype(int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * a.shape[-1])
    if dtype.kind == "f":
        return (a.astype(dtype) @ b.astype(dtype)).astype(np.int64)
    return a @ b


# --- LIF ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LifParams:
    """Parameters of a LIF (or, with ``reset_interval``, LIFReset) population, as Lava's ``LIF`` takes them.

    ``du``, ``dv``, ``vth`` are shared by the population; ``bias_mant`` and ``bias_exp`` broadcast against the
    neuron axes. Accepted ranges are those where Lava's model is defined and its storage keeps the value:
    ``du`` in ``[-1, 4095]`` (the effective current decay ``du + 1`` lies in ``[0, 4096]``; lava-dl netx emits
    ``du = -1`` for "no current decay"), ``dv`` in ``[0, 4095]``, ``vth`` in ``[0, 2**17 - 1]`` (Lava's 17-bit
    threshold; a larger one could never be exceeded by the saturated ``v``), ``bias_mant`` in int16 (the dtype
    of Lava's Var) and ``bias_exp`` in ``[-16, 16]`` (the int32 shift cannot overflow).

    ``LIFReset`` (``reset_interval`` set): ``u = v = 0`` before the update of every step ``t`` (1-based) with
    ``t % reset_interval == reset_offset % reset_interval`` (Lava: ``PyLifResetModelBitAcc.run_spk``; the
    ``LIFReset`` process requires ``reset_interval >= 1`` and ``reset_offset >= 0``).
    """

    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray | int = 0
    bias_exp: np.ndarray | int = 0
    reset_interval: int | None = None
    reset_offset: int = 0

    def __post_init__(self):
        for name, lo, hi in (("du", -DS_OFFSET, DECAY_MAX), ("dv", 0, DECAY_MAX), ("vth", 0, VTH_MAX)):
            value = operator.index(getattr(self, name))  # Lava's fixed_pt LIF crashes on a float du/dv/vth
            if not lo <= value <= hi:
                raise ValueError(f"LIF {name} must be in [{lo}, {hi}], got {value}")
            object.__setattr__(self, name, value)
        bias_mant = int_array(self.bias_mant, "LIF bias_mant", INT16_MIN, INT16_MAX)
        object.__setattr__(self, "bias_mant", bias_mant)
        object.__setattr__(self, "bias_exp", int_array(self.bias_exp, "LIF bias_exp", -BIAS_EXP_LIMIT, BIAS_EXP_LIMIT))
        if self.reset_interval is not None and operator.index(self.reset_interval) < 1:
            raise ValueError(f"LIFReset reset_interval must be >= 1, got {self.reset_interval}")
        if operator.index(self.reset_offset) < 0:  # Lava's LIFReset process refuses it too
            raise ValueError(f"LIFReset reset_offset must be >= 0, got {self.reset_offset}")

    @property
    def bias(self) -> np.ndarray:
        """The bias added to ``v`` each step (:func:`.fixed_point.scaled_bias`)."""
        return scaled_bias(self.bias_mant, self.bias_exp)

    @property
    def threshold(self) -> int:
        """``v`` must exceed this to spike (:func:`.fixed_point.scaled_threshold`)."""
        return scaled_threshold(self.vth)

    def resets_at(self, time_step: int) -> bool:
        """Whether a LIFReset population zeroes ``u`` and ``v`` at this 1-based step."""
        if self.reset_interval is None:
            return False
        return time_step % self.reset_interval == self.reset_offset % self.reset_interval


@dataclass(frozen=True, eq=False)
class LifState:
    """``u`` (current) and ``v`` (voltage) of a LIF population, ``[B, *neurons]`` int64 arrays of int32 values."""

    u: np.ndarray
    v: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "u", int_array(self.u, "LIF u", INT32_MIN, INT32_MAX))
        object.__setattr__(self, "v", int_array(self.v, "LIF v", INT32_MIN, INT32_MAX))
        if self.u.shape != self.v.shape:
            raise ValueError(f"LIF u and v must have one shape, got {self.u.shape} and {self.v.shape}")

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> LifState:
        return cls(np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64))


def lif_step(state: LifState, a_in: np.ndarray, params: LifParams,
             time_step: int | None = None) -> tuple[LifState, np.ndarray]:
    """One step of Lava's ``PyLifModelBitAcc`` (``PyLifResetModelBitAcc`` when ``params.reset_interval`` is set).

    ``a_in`` is the sum of every message arriving this step (summed in int32, as Lava's InPort does);
    ``time_step`` is the 1-based step, needed only for LIFReset. Returns the new state and the spikes (bool)::

        u = v = 0                                               if LIFReset resets at time_step
        u = wrap24_once(wrap_int32(decay(u, du + 1) + wrap_int32(a_in << 6)))
        v = saturate(wrap_int32(decay(v, dv) + u + bias))
        spikes = v > vth << 6;  v[spikes] = 0                   (u is not reset)

    Timing: a LIF costs no step. Its spikes at step ``t`` are sent at ``t``; through a Dense or Conv they reach
    the next LIF at ``t + 1``.
    """
    u, v = state.u, state.v
    if params.reset_interval is not None:
        if time_step is None:
            raise ValueError("a LIFReset step needs the 1-based time_step")
        if params.resets_at(time_step):
            u, v = np.zeros_like(u), np.zeros_like(v)
    a = wrap_int32(int_array(a_in, "LIF input"))
    u = wrap24_once(wrap_int32(decay(u, params.du + DS_OFFSET) + scaled_activation(a)))
    v = saturate(wrap_int32(decay(v, params.dv) + u + params.bias))
    spikes = v > params.threshold
    return LifState(u, np.where(spikes, 0, v)), spikes


# --- Dense -------------------------------------------------------------------------------------------------

def dense(x: np.ndarray, weights: np.ndarray, weight_exp: int, *, graded: bool = False) -> np.ndarray:
    """One step of Lava's ``PyDenseModelBitAcc``: ``[B, in]`` messages to ``[B, out]`` int32 values.

    ``weights`` come from :func:`.fixed_point.prepare_dense_weights` (``(out, in)``, Lava's layout);
    ``graded`` is Lava's ``num_message_bits > 0``. ``x`` is the sum of the messages arriving at the Dense,
    taken in int32 as Lava's InPort does::

        binary (graded=False): acc = sum of W[:, j] over j with x_j != 0        int64, no wrap
        graded (graded=True):  acc = wrap_int32(W @ x)                          numpy's int32 dot wraps
        out = wrap_int32(shift_floor(acc, weight_exp))                         the channel is int32

    Timing: Lava's Dense sends at step ``t`` the ``out`` of what it received at ``t - 1`` (zeros at step 1); a LIF
    fed by it sees ``dense(x[t - 1])`` at step ``t``.
    """
    if not -31 <= operator.index(weight_exp) <= 31:
        raise ValueError(f"Dense weight_exp must be in [-31, 31], got {weight_exp}")
    w = int_array(weights, "Dense weights", *SIGN_MODE_RANGES[SignMode.MIXED])
    x = wrap_int32(int_array(x, "Dense input"))
    if graded:
        acc = wrap_int32(_exact_matmul(x, w.T))
    else:
        acc = _exact_matmul((x != 0).astype(np.int64), w.T)
    return wrap_int32(shift_floor(acc, weight_exp))


# --- Conv --------------------------------------------------------------------------------------------------

def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """An int or an ``(x, y)`` pair as a pair (Lava: ``proc/conv/utils.make_tuple``)."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    x, y = value
    return int(x), int(y)


def conv(x: np.ndarray, weight: np.ndarray, *, stride: int | tuple[int, int] = 1,
         padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, groups: int = 1,
         graded: bool = False) -> np.ndarray:
    """One step of Lava's ``PyConvModelFixed``: ``[B, X, Y, Cin]`` messages to ``[B, X', Y', Cout]`` values.

    Lava's layout: ``X`` is the image width, ``Y`` its height; ``weight`` is ``(Cout, Kx, Ky, Cin / groups)``
    and ``stride``/``padding``/``dilation`` are ``(x, y)`` pairs (convert from PyTorch with
    :func:`conv_weight_from_torch`, :func:`image_from_torch`, :func:`xy_from_hw`). With ``s = x != 0`` for
    binary input (``graded=False``) and ``s = x`` for graded input (``num_message_bits > 0``)::

        out[b, i, j, k] = wrap24(sum over c, p, q of
                                 s_pad[b, i*sx + p*dx, j*sy + q*dy, c] * weight[k, Kx-1-p, Ky-1-q, c])

    a true convolution (the kernel flipped against PyTorch's cross-correlation), per group. Lava computes it with
    ``scipy.signal.convolve2d`` in float64, casts to int32 and applies ``signed_clamp(bits=24)``
    (``proc/conv/models.py``, ``proc/conv/utils.py``); ``weight_exp`` and ``num_weight_bits`` are ignored by
    that model, and its weights are not clipped. Where Lava's float64 sums could round or its int32 cast is
    undefined (a sum reaching ``2**31``), this kernel raises ``OverflowError`` instead of guessing.

    Timing: like Dense, Lava's Conv sends at step ``t`` the ``out`` of what it received at ``t - 1``.
    """
    (sx, sy), (px, py), (dx, dy) = _pair(stride), _pair(padding), _pair(dilation)
    w = int_array(weight, "Conv weight", INT32_MIN, INT32_MAX)
    s = wrap_int32(int_array(x, "Conv input"))
    s = s if graded else (s != 0).astype(np.int64)
    if s.ndim != 4 or w.ndim != 4:
        raise ValueError(f"Conv input must be [B, X, Y, C] and weight (Cout, Kx, Ky, Cin/groups), got "
                         f"{s.shape} and {w.shape}")
    cout, kx, ky, cin_group = w.shape
    if s.shape[3] != cin_group * groups or cout % groups:
        raise ValueError(f"Conv with {groups} groups: input has {s.shape[3]} channels, weight {w.shape}")
    span_x, span_y = dx * (kx - 1) + 1, dy * (ky - 1) + 1
    if s.shape[1] + 2 * px < span_x or s.shape[2] + 2 * py < span_y:
        raise ValueError(f"Conv kernel {w.shape[1:3]} (dilation {(dx, dy)}) is larger than the padded input")
    if int(np.abs(s).max(initial=0)) * int(np.abs(w).max(initial=0)) * kx * ky * cin_group >= FLOAT64_EXACT:
        raise OverflowError("Conv input and weights too large for Lava's float64 convolution to be exact")

    padded = np.pad(s, ((0, 0), (px, px), (py, py), (0, 0)))
    windows = sliding_window_view(padded, (span_x, span_y), axis=(1, 2))[:, ::sx, ::sy, :, ::dx, ::dy]
    batch, out_x, out_y = windows.shape[:3]
    flipped = w[:, ::-1, ::-1, :]
    cout_group = cout // groups
    out = np.empty((batch, out_x, out_y, cout), dtype=np.int64)
    for g in range(groups):
        patches = windows[:, :, :, g * cin_group:(g + 1) * cin_group].reshape(batch * out_x * out_y, -1)
        kernel = flipped[g * cout_group:(g + 1) * cout_group].transpose(0, 3, 1, 2).reshape(cout_group, -1)
        out[..., g * cout_group:(g + 1) * cout_group] = _exact_matmul(patches, kernel.T).reshape(
            batch, out_x, out_y, cout_group)
    if out.size and np.abs(out).max() > INT32_MAX:
        raise OverflowError("Conv sum reaches 2**31, where Lava's float64-to-int32 cast is undefined")
    return wrap24(out)


def conv_weight_from_torch(weight: np.ndarray) -> np.ndarray:
    """A PyTorch conv2d weight ``(Cout, Cin/groups, kH, kW)`` as Lava's Conv weight ``(Cout, Kx, Ky, Cin/groups)``.

    Spatially flipped (Lava convolves, PyTorch correlates) and transposed:
    ``w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)``.
    """
    return np.ascontiguousarray(np.asarray(weight)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def conv_weight_to_torch(weight: np.ndarray) -> np.ndarray:
    """The inverse of :func:`conv_weight_from_torch`."""
    return np.ascontiguousarray(np.asarray(weight).transpose(0, 3, 2, 1)[:, :, ::-1, ::-1])


def image_from_torch(x: np.ndarray) -> np.ndarray:
    """A PyTorch ``[B, C, H, W]`` image batch in Lava's ``[B, X, Y, C]`` layout (``X`` = width)."""
    return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 2, 1))


def image_to_torch(x: np.ndarray) -> np.ndarray:
    """Lava's ``[B, X, Y, C]`` as PyTorch's ``[B, C, H, W]`` (the same axis swap: it is its own inverse)."""
    return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 2, 1))


def xy_from_hw(pair: int | tuple[int, int]) -> tuple[int, int]:
    """A PyTorch ``(h, w)`` stride/padding/dilation as Lava's ``(x, y)``: the pair reversed."""
    h, w = _pair(pair)
    return w, h
