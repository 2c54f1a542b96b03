"""spikec's vectorised fixed_pt models for Lava's own Conv, Sparse, DelaySparse and DelayDense processes.

Lava's models for these are correct but slow: Conv convolves every (output, input) channel pair separately
with scipy; Sparse indexes CSR columns per step; DelaySparse and DelayDense rebuild their per-delay weight
stacks at every step (DelaySparse also writes zeros into a CSR matrix, one entry at a time). Each model here
subclasses Lava's bit-accurate model and keeps its code for everything but that cost:

* Conv: the step is intsim's ``kernels.conv`` (Lava-proven: ``tests/backends/test_intsim_lava_oracle.py``),
  falling back to Lava's own ``utils.conv`` where that kernel refuses (sums beyond 2**53 or 2**31, where
  Lava's float64 arithmetic is inexact or its int32 cast undefined).
* Sparse: ``W @ s`` as one CSR product in int64: exactly Lava's sum (binary input: int64 column sums; graded:
  the int32 dot, which wraps as the int64 sum wrapped to int32 does).
* DelaySparse, DelayDense: Lava's own step, with the per-delay weight stack computed once (the weights and
  delays are static; Lava recomputes the same matrix every step).

They are plugged in with ``Loihi2SimCfg(exception_proc_model_map=FAST_MODELS)``; ``tests/backends/lava``
runs each against Lava's model on random inputs and requires identical messages at every step.
"""

from __future__ import annotations

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.magma.core.resources import CPU
from lava.proc.conv import utils as conv_utils
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.process import Conv
from lava.proc.dense.models import PyDelayDenseModelBitAcc
from lava.proc.dense.process import DelayDense
from lava.proc.sparse.models import PyDelaySparseModelBitAcc, PySparseModelBitAcc
from lava.proc.sparse.process import DelaySparse, Sparse
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

from spikec.backends.intsim.fixed_point import WEIGHT_BITS, shift_floor, wrap_int32
from spikec.backends.intsim.kernels import conv as conv_kernel

__all__ = ["FAST_MODELS", "FastConvModel", "FastSparseModel", "FastDelaySparseModel", "FastDelayDenseModel"]


def _fixed_pt(process):
    def wrap(model):
        return implements(proc=process, protocol=LoihiProtocol)(requires(CPU)(tag("fixed_pt")(model)))
    return wrap


@_fixed_pt(Conv)
class FastConvModel(PyConvModelFixed):
    def run_spk(self) -> None:
        if self.a_buf is None:
            self.a_buf = np.zeros_like(self.a_out.shape)
        self.a_out.send(self.a_buf)
        graded = self.num_message_bits.item() > 0
        s_in = self.s_in.recv() if graded else self.s_in.recv().astype(bool)
        try:
            a_out = conv_kernel(s_in.astype(np.int64)[None], self.weight, stride=tuple(self.stride),
                                padding=tuple(self.padding), dilation=tuple(self.dilation),
                                groups=int(self.groups[0]), graded=graded)[0]
        except OverflowError:
            a_out = self.clamp_precision(conv_utils.conv(s_in, self.weight, self.kernel_size, self.stride,
                                                         self.padding, self.dilation, self.groups[0]))
        self.a_buf = a_out.astype(np.int32)


@_fixed_pt(Sparse)
class FastSparseModel(PySparseModelBitAcc):
    def run_spk(self) -> None:
        self.weight_exp = self.proc_params.get("weight_exp", 0)
        if not self.weights_set:
            num_weight_bits = self.proc_params.get("num_weight_bits", WEIGHT_BITS)
            sign_mode = self.proc_params.get("sign_mode") or determine_sign_mode(self.weights)
            self.weights = clip_weights(self.weights, sign_mode, num_bits=WEIGHT_BITS)
            self.weights = truncate_weights(self.weights, sign_mode, num_weight_bits)
            self.weights_set = True
            self.weights64 = self.weights.astype(np.int64).tocsr()
        self.a_out.send(self.a_buff)
        if self.num_message_bits.item() > 0:
            a_accum = wrap_int32(self.weights64 @ self.s_in.recv().astype(np.int64))
        else:
            a_accum = self.weights64 @ self.s_in.recv().astype(bool).astype(np.int64)
        self.a_buff = shift_floor(a_accum, self.weight_exp)  # Lava's shift by weight_exp, proc/sparse/models.py:103-107


class _CachedDelayStack:
    """Lava's ``calc_act`` with ``get_delay_wgts_mat`` computed once (weights and delays never change)."""

    _stack = None

    def calc_act(self, s_in) -> np.ndarray:
        if self._stack is None:
            self._stack = self.get_delay_wgts_mat(self.weights, self.delays, self.a_buff.shape[-1] - 1)
        return self._stacked_act(self._stack, s_in)


@_fixed_pt(DelaySparse)
class FastDelaySparseModel(_CachedDelayStack, PyDelaySparseModelBitAcc):
    def _stacked_act(self, stack, s_in) -> np.ndarray:
        return np.reshape(stack.dot(s_in), (self.a_buff.shape[-1], self.weights.shape[0])).T


@_fixed_pt(DelayDense)
class FastDelayDenseModel(_CachedDelayStack, PyDelayDenseModelBitAcc):
    def _stacked_act(self, stack, s_in) -> np.ndarray:
        return np.reshape(np.sum(stack * s_in, axis=1), (self.a_buff.shape[-1], self.weights.shape[0])).T


FAST_MODELS = {Conv: FastConvModel, Sparse: FastSparseModel, DelaySparse: FastDelaySparseModel,
               DelayDense: FastDelayDenseModel}
"""Process type -> spikec's model, for ``Loihi2SimCfg(exception_proc_model_map=...)``."""
