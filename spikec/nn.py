"""Spiking neurons for multi-step tensors laid out ``[T, B, ...]``.

The dynamics follow spikingjelly's ``MultiStepLIFNode`` to the last float operation, so a model built
from these neurons and the same model built from spikingjelly's give identical spikes. Per time step::

    charge    decay_input, v_reset in {0, None}:  H = V + (X - V) / tau
              decay_input, other v_reset:         H = V + (X - (V - v_reset)) / tau
              no decay_input, v_reset in {0, None}: H = V * (1 - 1 / tau) + X
              no decay_input, other v_reset:      H = V - (V - v_reset) / tau + X
              PLIF (a learned decay d = sigmoid(w)): as LIF, with "/ tau" read "* d" and
                                                  "1 - 1 / tau" read "1 - d", computed in the input's dtype
              IF neuron:                          H = V + X
    fire      S = 1 if H - v_threshold >= 0 else 0
    reset     hard (v_reset is a number): V = (1 - S) * H + S * v_reset
              soft (v_reset is None):     V = H - S * v_threshold

V starts at ``v_reset`` (0 for a soft reset). Unlike spikingjelly, the neurons keep no state between
calls: every ``forward`` is one whole sequence, which is what inference and tracing want.
Training uses a sigmoid surrogate gradient (spikingjelly's ``Sigmoid(alpha=4)`` default).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.overrides import handle_torch_function, has_torch_function_variadic

__all__ = ["MultiStepLIF", "MultiStepIF", "iand", "lif_sequence", "plif_sequence", "if_sequence"]


class _SigmoidSurrogateSpike(torch.autograd.Function):
    """Heaviside forward; derivative of ``sigmoid(alpha * x)`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * sig * (1.0 - sig), None


def _fire(h: torch.Tensor, v_threshold: float, surrogate_alpha: float) -> torch.Tensor:
    if h.requires_grad:
        return _SigmoidSurrogateSpike.apply(h - v_threshold, surrogate_alpha)
    return (h - v_threshold >= 0).to(h)


def _reset(h: torch.Tensor, spike: torch.Tensor, v_threshold: float, v_reset: float | None,
           detach_reset: bool) -> torch.Tensor:
    s = spike.detach() if detach_reset else spike
    if v_reset is None:
        return h - s * v_threshold
    return (1.0 - s) * h + s * v_reset


def _sequence(x_seq: torch.Tensor, charge: Callable, v_threshold: float, v_reset: float | None,
              detach_reset: bool, surrogate_alpha: float) -> torch.Tensor:
    """Run ``H = charge(V, X)``, fire and reset over ``x_seq[0..T-1]``; the spike sequence (same shape, dtype)."""
    v: torch.Tensor | float = 0.0 if v_reset is None else v_reset
    spikes = []
    for x in x_seq:
        h = charge(v, x)
        spike = _fire(h, v_threshold, surrogate_alpha)
        v = _reset(h, spike, v_threshold, v_reset, detach_reset)
        spikes.append(spike)
    return torch.stack(spikes)


def _leaky_charge(leak: Callable, keep, v_reset: float | None, decay_input: bool) -> Callable:
    """The LIF charge of the module docstring, ``leak(y)`` being ``y / tau`` (LIF) or ``y * d`` (PLIF) and ``keep``
    ``1 - 1 / tau`` or ``1 - d``: the float operations spikingjelly performs, in its order."""
    reset_is_zero = v_reset is None or v_reset == 0.0
    if decay_input and reset_is_zero:
        return lambda v, x: v + leak(x - v)
    if decay_input:
        return lambda v, x: v + leak(x - (v - v_reset))
    if reset_is_zero:
        return lambda v, x: v * keep + x
    return lambda v, x: v - leak(v - v_reset) + x


def lif_sequence(x_seq: torch.Tensor, tau: float, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = True,
                 surrogate_alpha: float = 4.0) -> torch.Tensor:
    """Run a LIF neuron over ``x_seq[0..T-1]`` and return the spike sequence (same shape, same dtype)."""
    charge = _leaky_charge(lambda y: y / tau, 1.0 - 1.0 / tau, v_reset, decay_input)
    return _sequence(x_seq, charge, v_threshold, v_reset, detach_reset, surrogate_alpha)


def plif_sequence(x_seq: torch.Tensor, decay: float, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                  decay_input: bool = True, detach_reset: bool = True,
                  surrogate_alpha: float = 4.0) -> torch.Tensor:
    """Run a parametric LIF neuron (spikingjelly's ``ParametricLIFNode``, whose charge multiplies by its decay
    ``d = sigmoid(w)`` where the LIF divides by ``tau``) over ``x_seq`` and return the spike sequence."""
    d = torch.tensor(decay, dtype=x_seq.dtype, device=x_seq.device)
    charge = _leaky_charge(lambda y: y * d, 1.0 - d, v_reset, decay_input)
    return _sequence(x_seq, charge, v_threshold, v_reset, detach_reset, surrogate_alpha)


def if_sequence(x_seq: torch.Tensor, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                detach_reset: bool = True, surrogate_alpha: float = 4.0) -> torch.Tensor:
    """Run an integrate-and-fire neuron (no leak) over ``x_seq`` and return the spike sequence."""
    return _sequence(x_seq, lambda v, x: v + x, v_threshold, v_reset, detach_reset, surrogate_alpha)


def _check_neuron_args(v_threshold: float, v_reset: float | None) -> None:
    if not math.isfinite(v_threshold):
        raise ValueError(f"v_threshold must be finite, got {v_threshold}")
    if v_reset is not None and not math.isfinite(v_reset):
        raise ValueError(f"v_reset must be finite or None (soft reset), got {v_reset}")


class MultiStepLIF(nn.Module):
    """Leaky integrate-and-fire neuron over a ``[T, ...]`` sequence (see the module docstring)."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = True, surrogate_alpha: float = 4.0):
        super().__init__()
        if not tau > 1.0:
            raise ValueError(f"tau must be > 1 (tau = 1 would forget everything each step), got {tau}")
        _check_neuron_args(v_threshold, v_reset)
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.decay_input = bool(decay_input)
        self.detach_reset = bool(detach_reset)
        self.surrogate_alpha = float(surrogate_alpha)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"MultiStepLIF expects [T, ...] input, got shape {tuple(x_seq.shape)}")
        return lif_sequence(x_seq, self.tau, self.v_threshold, self.v_reset, self.decay_input,
                            self.detach_reset, self.surrogate_alpha)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"decay_input={self.decay_input}")


class MultiStepIF(nn.Module):
    """Integrate-and-fire neuron (no leak) over a ``[T, ...]`` sequence."""

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0, detach_reset: bool = True,
                 surrogate_alpha: float = 4.0):
        super().__init__()
        _check_neuron_args(v_threshold, v_reset)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)
        self.surrogate_alpha = float(surrogate_alpha)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"MultiStepIF expects [T, ...] input, got shape {tuple(x_seq.shape)}")
        return if_sequence(x_seq, self.v_threshold, self.v_reset, self.detach_reset, self.surrogate_alpha)

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}, v_reset={self.v_reset}"


def iand(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """SEW-IAND residual ``(NOT a) AND s`` for spike tensors: ``(1 - a) * s``, still binary.

    ``a`` is the block's output spikes and ``s`` the identity (shortcut) spikes, as in SEW-ResNet.
    It dispatches through ``__torch_function__`` so that spikec's tracer records it as one op.
    """
    if has_torch_function_variadic(a, s):
        return handle_torch_function(iand, (a, s), a, s)
    if _iand_op is not None:
        return _iand_op(a, s)
    return _iand_values(a, s)


def _iand_values(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return (1.0 - a) * s


_iand_op: Callable | None = None
"""spikec's custom op ``spikec::iand`` while :func:`spikec.frontends.torch.exported.exportable_neurons` is active:
torch.export records a call of it as one op, where it would record ``(1 - a) * s`` as two."""
