"""Random small spiking networks for the intsim-vs-Lava differential campaign (``test_lava_random_graphs.py``,
``bench/random_graphs.py``).

``random_model(seed)`` draws a tiny architecture, ``[T, B, ...]`` throughout as the zoo writes it (direct
encoding ``x.unsqueeze(0).repeat(T, 1, 1, 1, 1)``, convs and linears on ``x.flatten(0, 1)``, a BN after each
of them), from blocks that together cover every op the compiler maps to Lava (docs/lava.md, "Mapping per op"):

* image stage ``[T, B, C, H, W]``: 3x3 / 1x1 convs (strided, unpadded, dilated, grouped now and then) + BN +
  LIF or IF (random tau, threshold, decay_input; hard reset to 0, the one spikec supports); max-pools of spikes (2-D with and without ``ceil_mode``, and the DVS
  ``MaxPool3d (1, 3, 3)`` erosion); a max-pool of a BN output before the LIF (SDT's stem) and of a graded
  stream; SEW residual blocks (add of spikes, or ``spikec.nn.iand``); MS residual blocks (add of BN outputs,
  read by the next LIF);
* token stage, in one of three layouts: ``[T, B, N, C]`` with ``nn.Linear`` (Spikformer CIFAR), ``[T, B, C, N]``
  with 1x1 ``Conv1d`` (Spikformer DVS), ``[T, B, C, H, W]`` with 1x1 ``Conv2d`` (SDT): projection units,
  MLPs (SEW or MS), Spikformer attention (``q @ k^T * scale @ v`` in its three orders, then a LIF) and SDT
  attention (``k * v``, column sum with keepdim, talking-heads LIF, ``q * attn`` or, now and then, the broadcast
  IAND ``iand(attn, q)``), with 1, 2 or 4 heads;
* a classifier head: mean over tokens and time then a linear; or the SDT head (mean over tokens, LIF, linear,
  mean over time); or an on-chip hidden linear + BN + neuron before the classifier.

Every batch norm is calibrated on the input batch (its statistics are the batch's, as in
``lava_cases.active_model``) with a gain and a bias scaled to the input level at which the neuron it feeds
fires within ``T`` steps (:func:`drive`; some biases negative, so some neurons are driven below rest), so that
neurons fire. The generator retries with the next sub-seed (fresh weights,
a stronger bias, and after a few tries a fresh architecture) until every neuron layer fires on the batch.

Deterministic per seed: the same seed gives the same model and input on any machine (its own ``random.Random``
and torch generators; the global torch RNG is left as it was).
"""

from __future__ import annotations

import collections
import dataclasses
import random
import time

import numpy as np
import torch
from torch import nn

import spikec
from lava_cases import LAVA_TIMEOUT_S, assert_bit_exact
from spikec.backends.intsim.interpreter import run_intsim
from spikec.backends.lava.runtime import run_lava
from spikec.errors import InputError
from spikec.nn import MultiStepIF, MultiStepLIF, iand

__all__ = ["FEATURES", "RandomCase", "random_case", "random_model", "firing_rates", "SeedResult", "run_seed",
           "attention_for", "reproducer"]

FEATURES = (
    "conv3x3", "conv1x1", "conv_strided", "conv_dilated", "conv_grouped", "conv_unpadded",
    "lif_decay_input", "lif_no_decay_input", "if",
    "maxpool_spikes", "maxpool_spikes_ceil", "maxpool_erode3d", "maxpool_graded",
    "linear_tokens", "conv1d_tokens", "conv1x1_tokens", "linear_one_token",
    "ms_residual", "sew_add", "iand", "slice_channels",
    "ssa_matmul", "sdsa", "mul_same_shape", "mul_broadcast", "sum_tokens_keepdim", "iand_broadcast",
    "bn_strong_bias",
    "head_mean", "head_lif", "head_hidden",
)
"""What the blocks put in a model, named; a test requires the quick seeds (run by `make test`) to cover every one."""

MAX_ATTEMPTS = 24
_ARCH_EVERY = 6  # attempts per architecture before a fresh one is drawn
_CHANNELS = (2, 4, 6, 8, 12, 16)
_MAX_ATTENTION_TOKENS = 16


@dataclasses.dataclass
class RandomCase:
    """One drawn model: ``model`` (eval mode), its input batch ``x`` ``[B, C, H, W]`` in [0, 1), the features it
    uses (``ops``), each neuron layer's firing rate on ``x`` (``firing``, by module name) and the sub-seed that
    made every layer fire (``attempt``)."""

    seed: int
    model: nn.Module
    x: torch.Tensor
    ops: tuple[str, ...]
    firing: dict[str, float]
    attempt: int
    summary: str


@dataclasses.dataclass
class _State:
    """What flows between blocks: ``kind`` ("spike": 0/1, "count": small non-negative integers of a SEW add,
    "graded": BN outputs), ``layout`` ("image" [T, B, C, H, W], "tokens" [T, B, N, C], "channels" [T, B, C, N])
    and the sample shape."""

    kind: str
    layout: str
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return self.shape[-1] if self.layout == "tokens" else self.shape[0]

    @property
    def tokens(self) -> int:
        if self.layout == "tokens":
            return self.shape[0]
        return self.shape[1] if self.layout == "channels" else self.shape[1] * self.shape[2]


class _Draw:
    """The random choices of one architecture, and the features they add."""

    def __init__(self, rng: random.Random, T: int):
        self.rng = rng
        self.T = T
        self.ops: list[str] = []

    def tag(self, *names: str) -> None:
        self.ops.extend(names)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def channels(self, at_least: int = 2) -> int:
        return self.rng.choice([c for c in _CHANNELS if c >= at_least])

    def threshold(self) -> float:
        """Mostly 0.3-1.5; a tenth each of small (0.05-0.3) and large (1.5-3) thresholds."""
        roll = self.rng.random()
        low, high = (0.05, 0.3) if roll < 0.1 else (1.5, 3.0) if roll < 0.2 else (0.3, 1.5)
        return round(self.rng.uniform(low, high), 3)

    def neuron(self, threshold: float | None = None) -> nn.Module:
        """A LIF (random tau and decay_input) or an IF neuron, hard reset to 0 (what Lava's LIF does)."""
        theta = threshold if threshold is not None else self.threshold()
        if self.chance(0.2):
            self.tag("if")
            return MultiStepIF(v_threshold=theta)
        decay_input = self.chance(0.6)
        self.tag("lif_decay_input" if decay_input else "lif_no_decay_input")
        tau = self.rng.choice([1.5, 2.0, 2.0, 3.0, 4.0, round(self.rng.uniform(1.2, 5.0), 3)])
        return MultiStepLIF(tau=tau, v_threshold=theta, decay_input=decay_input)

    def bn(self, kind: str, channels: int, reader: nn.Module | None) -> nn.Module:
        """A batch norm (``kind`` "1d" or "2d") tagged with the drive its reader needs to fire, and now and then
        with ``strong`` biases on some channels (large integer biases: Lava's ``bias_exp = 7`` form, or a
        ``Bias`` process for odd ones)."""
        bn = nn.BatchNorm1d(channels) if kind == "1d" else nn.BatchNorm2d(channels)
        bn.drive = drive(reader, self.T) if reader is not None else 1.0
        bn.strong = self.chance(0.1)
        if bn.strong:
            self.tag("bn_strong_bias")
        return bn


def drive(neuron: nn.Module, T: int) -> float:
    """The constant input at which ``neuron`` first fires at step ``T`` (it fires within ``T`` steps above it)."""
    theta = neuron.v_threshold
    if isinstance(neuron, MultiStepIF):
        return theta / T
    keep = 1.0 - 1.0 / neuron.tau
    if neuron.decay_input:
        return theta / (1.0 - keep ** T)
    return theta / sum(keep ** t for t in range(T))


def _split(x: torch.Tensor, T: int, B: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.reshape(T, B, *x.shape[1:])


# ---------------------------------------------------------------- image stage


class SpikePool(nn.Module):
    """Max-pool of spikes: a ``MaxPool2d`` on ``x.flatten(0, 1)``, or SDT's DVS erosion (``MaxPool3d`` with kernel
    (1, 3, 3), stride 1) on the ``[T, B, C, H, W]`` tensor itself."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.pool, nn.MaxPool3d):
            return self.pool(x)
        return _split(self.pool(x.flatten(0, 1)), x.shape[0], x.shape[1])


class ConvUnit(nn.Module):
    """``conv -> BN [-> max-pool of the BN output] [-> neuron [-> max-pool of spikes]]`` on ``[T, B, C, H, W]``;
    without a neuron the unit's output is the (graded) BN output."""

    def __init__(self, conv: nn.Conv2d, bn: nn.Module, neuron: nn.Module | None = None,
                 graded_pool: nn.Module | None = None, spike_pool: nn.Module | None = None):
        super().__init__()
        self.conv, self.bn, self.neuron = conv, bn, neuron
        self.graded_pool, self.spike_pool = graded_pool, spike_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1)))
        if self.graded_pool is not None:
            y = self.graded_pool(y)
        y = _split(y, T, B)
        if self.neuron is None:
            return y
        s = self.neuron(y)
        return s if self.spike_pool is None else self.spike_pool(s)


class SEWBlock(nn.Module):
    """SEW residual around two spiking units: ``s + f(s)`` (spike counts) or ``iand(f(s), s)`` (spikes)."""

    def __init__(self, first: nn.Module, second: nn.Module, merge: str):
        super().__init__()
        self.first, self.second, self.merge = first, second, merge

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        branch = self.second(self.first(s))
        return s + branch if self.merge == "add" else iand(branch, s)


class ChannelSplit(nn.Module):
    """Two halves of the channels by slicing (SpikingResformer's ``y[:, :, :C // h]``), merged by IAND."""

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        half = s.shape[2] // 2
        return iand(s[:, :, :half], s[:, :, half:2 * half])


class MSBlock(nn.Module):
    """Membrane-shortcut residual: ``x + BN(conv(neuron(x)))``, the sum of BN outputs the next LIF reads."""

    def __init__(self, neuron: nn.Module, unit: nn.Module):
        super().__init__()
        self.neuron, self.unit = neuron, unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.unit(self.neuron(x))


class GradedPool(nn.Module):
    """Max-pool of a graded stream (``x.flatten(0, 1)`` pooled): SDT's ``maxpool3`` on the BN output."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _split(self.pool(x.flatten(0, 1)), x.shape[0], x.shape[1])


def _pool_out(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool) -> int:
    """PyTorch's pooled length (a last window that starts in the padding is dropped)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (span + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _draw_pool2d(d: _Draw, h: int, w: int) -> nn.MaxPool2d | None:
    """A 2-D max-pool whose output is at least 1x1, or None when the map is too small for every option."""
    options = [(2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 1), (2, 1, 0, 1), (3, 2, 0, 1), (2, 1, 1, 2), (3, 3, 1, 1)]
    d.rng.shuffle(options)
    ceil = d.chance(0.5)
    for kernel, stride, padding, dilation in options:
        if min(h, w) >= 4 and stride == 1 and padding == 0 and dilation == 1 and d.chance(0.5):
            continue  # a shrinking stride-1 pool is kept rare on larger maps
        if all(_pool_out(n, kernel, stride, padding, dilation, ceil) >= 1 for n in (h, w)):
            return nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil)
    return None


def _pool_tags(pool: nn.MaxPool2d, graded: bool) -> list[str]:
    if graded:
        return ["maxpool_graded"]
    return ["maxpool_spikes", "maxpool_spikes_ceil"] if pool.ceil_mode else ["maxpool_spikes"]


def _draw_conv(d: _Draw, c_in: int, c_out: int, h: int, w: int) -> nn.Conv2d:
    """A 3x3 (padded, now and then strided, dilated or grouped) or 1x1 conv, with or without a bias."""
    bias = d.chance(0.4)
    if d.chance(0.3):
        d.tag("conv1x1")
        return nn.Conv2d(c_in, c_out, 1, bias=bias)
    d.tag("conv3x3")
    stride, dilation, groups, padding = 1, 1, 1, None
    roll = d.rng.random()
    if roll < 0.15 and min(h, w) >= 4:
        stride = 2
        d.tag("conv_strided")
    elif roll < 0.22 and min(h, w) >= 5:
        padding = 0
        d.tag("conv_unpadded")
    elif roll < 0.25 and min(h, w) >= 3:
        dilation = 2
        d.tag("conv_dilated")
    elif roll < 0.4 and c_in == c_out and c_in % 2 == 0:
        groups = d.rng.choice([2, c_in])
        d.tag("conv_grouped")
    padding = dilation if padding is None else padding
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias)


def _conv_out(conv: nn.Conv2d, size: int, axis: int) -> int:
    k, s, p, dil = conv.kernel_size[axis], conv.stride[axis], conv.padding[axis], conv.dilation[axis]
    return (size + 2 * p - dil * (k - 1) - 1) // s + 1


def _keeps_shape(conv: nn.Conv2d, h: int, w: int) -> bool:
    return (_conv_out(conv, h, 0), _conv_out(conv, w, 1)) == (h, w)


def _spiking_conv(d: _Draw, state: _State, c_out: int, pool_spikes: bool = True) -> nn.Module:
    """conv -> BN -> neuron, then (sometimes) a max-pool of the spikes."""
    _, h, w = state.shape
    conv = _draw_conv(d, state.channels, c_out, h, w)
    neuron = d.neuron()
    spike_pool = None
    if pool_spikes and d.chance(0.45):
        h2, w2 = _conv_out(conv, h, 0), _conv_out(conv, w, 1)
        if d.chance(0.2):
            spike_pool = SpikePool(nn.MaxPool3d((1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1)))
            d.tag("maxpool_erode3d")
        else:
            pool = _draw_pool2d(d, h2, w2)
            if pool is not None:
                spike_pool = SpikePool(pool)
                d.tag(*_pool_tags(pool, graded=False))
    return ConvUnit(conv, d.bn("2d", c_out, neuron), neuron, spike_pool=spike_pool)


def _graded_pool_unit(d: _Draw, state: _State, c_out: int) -> nn.Module | None:
    """SDT's stem stage: conv -> BN -> max-pool (of the graded BN output) -> LIF."""
    _, h, w = state.shape
    pool = _draw_pool2d(d, h, w)
    if pool is None:
        return None
    conv = nn.Conv2d(state.channels, c_out, 3, padding=1, bias=d.chance(0.3))
    d.tag("conv3x3", *_pool_tags(pool, graded=True))
    neuron = d.neuron()
    return ConvUnit(conv, d.bn("2d", c_out, neuron), neuron, graded_pool=pool)


def _to_graded(d: _Draw, state: _State) -> nn.Module:
    """conv -> BN, no neuron: the BN output starts an MS residual stream (Spikingformer's and SDT's tokenizers)."""
    _, h, w = state.shape
    c_out = d.channels()
    conv = _draw_conv(d, state.channels, c_out, h, w)
    return ConvUnit(conv, d.bn("2d", c_out, None))


def _image_block(d: _Draw, state: _State) -> nn.Module | None:
    """One image-stage block that reads ``state``."""
    roll = d.rng.random()
    if state.kind == "graded":
        if roll < 0.55:
            neuron = d.neuron()
            unit = ConvUnit(_draw_conv(d, state.channels, state.channels, 1, 1), d.bn("2d", state.channels, None))
            d.tag("ms_residual")
            return MSBlock(neuron, unit)
        if roll < 0.75:
            pool = _draw_pool2d(d, *state.shape[1:])
            d.tag(*(_pool_tags(pool, graded=True) if pool is not None else []))
            return GradedPool(pool) if pool is not None else None
        return nn.Sequential(d.neuron(), _spiking_conv(d, _State("spike", "image", state.shape), d.channels()))
    if state.kind == "spike" and roll < 0.4:
        c = state.channels
        first = _spiking_conv(d, state, d.channels(), pool_spikes=False)
        first_out = first.conv.out_channels
        h, w = state.shape[1:]
        if not _keeps_shape(first.conv, h, w):
            return first
        second = _spiking_conv(d, _State("spike", "image", (first_out, h, w)), c, pool_spikes=False)
        if not _keeps_shape(second.conv, h, w):
            return nn.Sequential(first, second)
        merge = d.rng.choice(["add", "iand"])
        d.tag("sew_add" if merge == "add" else "iand")
        return SEWBlock(first, second, merge)
    if state.kind == "spike" and roll < 0.43 and state.channels >= 4:
        d.tag("slice_channels")
        return ChannelSplit()
    if state.kind == "spike" and roll < 0.5:
        pool = _draw_pool2d(d, *state.shape[1:])
        d.tag(*(_pool_tags(pool, graded=False) if pool is not None else []))
        return SpikePool(pool) if pool is not None else None
    if roll < 0.65:
        return _spiking_conv(d, state, d.channels())
    if roll < 0.8:
        return _graded_pool_unit(d, state, d.channels())
    return _to_graded(d, state)


# ---------------------------------------------------------------- token stage


class ToTokens(nn.Module):
    """``[T, B, C, H, W]`` -> ``[T, B, N, C]`` (``flatten(3).transpose(-1, -2)``) or ``[T, B, C, N]``."""

    def __init__(self, layout: str):
        super().__init__()
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(3)
        return x.transpose(-1, -2) if self.layout == "tokens" else x


class Proj(nn.Module):
    """A token-wise linear + BN, graded output, in the stream's layout: ``nn.Linear`` over ``[T, B, N, C]``
    (applied to the 4-d tensor or to ``x.flatten(0, 1)``, BatchNorm1d through ``[TB, C, N]``), a 1x1 ``Conv1d``
    over ``[T, B, C, N]``, or a 1x1 ``Conv2d`` over ``[T, B, C, H, W]``."""

    def __init__(self, layout: str, proj: nn.Module, bn: nn.Module, merged: bool = False):
        super().__init__()
        self.layout, self.proj, self.bn, self.merged = layout, proj, bn, merged

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        if self.layout != "tokens":
            return _split(self.bn(self.proj(x.flatten(0, 1))), T, B)
        y = self.proj(x.flatten(0, 1)) if self.merged else self.proj(x).flatten(0, 1)
        return _split(self.bn(y.transpose(-1, -2)).transpose(-1, -2), T, B)


class Spiking(nn.Module):
    """``neuron(proj(x))``."""

    def __init__(self, proj: nn.Module, neuron: nn.Module):
        super().__init__()
        self.proj, self.neuron = proj, neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.proj(x))


def _proj(d: _Draw, layout: str, c_in: int, c_out: int, reader: nn.Module | None) -> Proj:
    bias = d.chance(0.5)
    if layout == "tokens":
        d.tag("linear_tokens")
        return Proj(layout, nn.Linear(c_in, c_out, bias=bias), d.bn("1d", c_out, reader), merged=d.chance(0.5))
    if layout == "channels":
        d.tag("conv1d_tokens")
        return Proj(layout, nn.Conv1d(c_in, c_out, 1, bias=bias), d.bn("1d", c_out, reader))
    d.tag("conv1x1_tokens")
    return Proj(layout, nn.Conv2d(c_in, c_out, 1, bias=bias), d.bn("2d", c_out, reader))


def _spiking_proj(d: _Draw, layout: str, c_in: int, c_out: int, threshold: float | None = None) -> Spiking:
    neuron = d.neuron(threshold)
    return Spiking(_proj(d, layout, c_in, c_out, neuron), neuron)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, order: str, scale: float) -> torch.Tensor:
    """Spikformer's spike attention on ``[T, B, heads, N, d]`` (no softmax), in each official order."""
    if order == "qk*s@v":
        return ((q @ k.transpose(-2, -1)) * scale) @ v
    if order == "qk@v*s":
        return ((q @ k.transpose(-2, -1)) @ v) * scale
    return (q @ (k.transpose(-2, -1) @ v)) * scale


@dataclasses.dataclass(frozen=True)
class AttentionForm:
    kind: str       # "ssa" (Spikformer: spike matmuls) or "sdsa" (SDT: k * v, column sum, q * attn)
    layout: str
    shape: tuple[int, ...]
    heads: int
    residual: str   # "add", "iand" (SEW, on spikes) or "ms" (membrane shortcut, on a graded stream)
    order: str = "qk*s@v"
    scale: float = 0.125
    mask: str = "mul"  # SDSA: q * attn, or iand(attn, q) = (1 - attn) * q (broadcast IAND)


class Attention(nn.Module):
    """Spikformer's SSA or SDT's SDSA with its residual; q, k, v and the output projection are ``Spiking`` /
    ``Proj`` units in the stream's layout."""

    def __init__(self, form: AttentionForm, qkv: list[nn.Module], core: nn.Module, proj: nn.Module,
                 shortcut: nn.Module | None):
        super().__init__()
        self.form = form
        self.q, self.k, self.v = qkv
        self.core, self.proj, self.shortcut = core, proj, shortcut

    def _heads(self, s: torch.Tensor) -> torch.Tensor:
        """The stream's layout -> ``[T, B, heads, N, C / heads]``."""
        T, B = s.shape[:2]
        h = self.form.heads
        if self.form.layout == "tokens":
            N, C = s.shape[2:]
            return s.reshape(T, B, N, h, C // h).permute(0, 1, 3, 2, 4)
        s = s.flatten(3)
        C, N = s.shape[2:]
        return s.reshape(T, B, h, C // h, N).transpose(-1, -2)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        """``[T, B, heads, N, d]`` -> the stream's layout."""
        T, B = y.shape[:2]
        if self.form.layout == "tokens":
            return y.transpose(2, 3).reshape(T, B, *self.form.shape)
        return y.transpose(-1, -2).reshape(T, B, *self.form.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.shortcut is None else self.shortcut(x)
        q, k, v = (self._heads(unit(s)) for unit in (self.q, self.k, self.v))
        if self.form.kind == "ssa":
            y = self.core(self._merge(_attend(q, k, v, self.form.order, self.form.scale)))
        else:
            attn = self.core((k * v).sum(dim=-2, keepdim=True))
            y = self._merge(q * attn if self.form.mask == "mul" else iand(attn, q))
        y = self.proj(y)
        if self.form.residual == "ms":
            return x + y
        return x + y if self.form.residual == "add" else iand(y, x)


def _attention(d: _Draw, state: _State) -> nn.Module:
    """SSA or SDSA with 1, 2 or 4 heads; SEW residual (add, or IAND on spikes) or MS on a graded stream."""
    C = state.channels
    heads = d.rng.choice([h for h in (1, 2, 4) if C % h == 0])
    residual = {"graded": "ms", "spike": d.rng.choice(["add", "iand"]), "count": "add"}[state.kind]
    kind = d.rng.choice(["ssa", "sdsa"])
    mask = "iand" if kind == "sdsa" and d.chance(0.25) else "mul"
    form = AttentionForm(kind, state.layout, state.shape, heads, residual, d.rng.choice(["qk*s@v", "qk@v*s", "q@kv*s"]),
                         d.rng.choice([0.125, 0.25, 0.5, 1.0, 0.3, 0.75]), mask)
    qkv = [_spiking_proj(d, state.layout, C, C) for _ in range(3)]
    core = d.neuron(threshold=round(d.rng.uniform(0.25, 1.0), 3))  # attn_lif / talking_heads_lif, near 0.5
    if kind == "ssa":
        d.tag("ssa_matmul")
    else:
        d.tag("sdsa", "mul_same_shape", "sum_tokens_keepdim", "mul_broadcast" if mask == "mul" else "iand_broadcast")
    if residual == "ms":
        proj, shortcut = _proj(d, state.layout, C, C, None), d.neuron()
        d.tag("ms_residual")
    else:
        proj, shortcut = _spiking_proj(d, state.layout, C, C), None
        d.tag("sew_add" if residual == "add" else "iand")
    return Attention(form, qkv, core, proj, shortcut)


class MLP(nn.Module):
    """Token-wise MLP: MS (``x + fc2(n2(fc1(n1(x))))``, graded stream), SEW (``x + n2(fc2(n1(fc1(x))))`` or IAND)
    or plain (``n2(fc2(n1(fc1(x))))``)."""

    def __init__(self, fc1: nn.Module, fc2: nn.Module, residual: str, pre: nn.Module | None = None):
        super().__init__()
        self.fc1, self.fc2, self.residual, self.pre = fc1, fc2, residual, pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(self.fc1(x if self.pre is None else self.pre(x)))
        if self.residual == "plain":
            return y
        if self.residual == "iand":
            return iand(y, x)
        return x + y


def _mlp(d: _Draw, state: _State) -> nn.Module:
    C, hidden = state.channels, d.channels()
    if state.kind == "graded":
        d.tag("ms_residual")
        return MLP(_spiking_proj(d, state.layout, C, hidden), _proj(d, state.layout, hidden, C, None), "ms",
                   pre=d.neuron())
    residual = d.rng.choice(["add", "iand", "plain"] if state.kind == "spike" else ["add", "plain"])
    out = C if residual != "plain" else d.channels()
    d.tag(*{"add": ["sew_add"], "iand": ["iand"], "plain": []}[residual])
    return MLP(_spiking_proj(d, state.layout, C, hidden), _spiking_proj(d, state.layout, hidden, out), residual)


def _token_block(d: _Draw, state: _State) -> nn.Module | None:
    roll = d.rng.random()
    if roll < 0.5 and state.tokens <= _MAX_ATTENTION_TOKENS:
        return _attention(d, state)
    if roll < 0.8:
        return _mlp(d, state)
    if state.kind == "graded":
        return nn.Sequential(d.neuron(), _spiking_proj(d, state.layout, state.channels, d.channels()))
    return _spiking_proj(d, state.layout, state.channels, d.channels())


# ---------------------------------------------------------------- head and network


class Head(nn.Module):
    """Classifier: mean over tokens, then ``fc(mean over time)`` ("mean", Spikformer), ``mean over time of
    fc(neuron(.))`` ("lif", SDT), or an on-chip linear + BN + neuron on the pooled token before ``fc``
    ("hidden")."""

    def __init__(self, layout: str, kind: str, fc: nn.Linear, hidden: nn.Module | None = None,
                 time_first: bool = True):
        super().__init__()
        self.layout, self.kind, self.fc, self.hidden, self.time_first = layout, kind, fc, hidden, time_first

    def _pool_tokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "tokens":
            return x.mean(2)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self._pool_tokens(x)
        if self.kind == "mean":
            return self.fc(pooled.mean(0))
        s = self.hidden(pooled)
        return self.fc(s.mean(0)) if self.time_first else self.fc(s).mean(0)


class HiddenToken(nn.Module):
    """``[T, B, C] -> neuron(BN(linear([pre](.))))`` on ``x.flatten(0, 1)``, or just ``neuron(.)``."""

    def __init__(self, neuron: nn.Module, linear: nn.Linear | None = None, bn: nn.Module | None = None,
                 pre: nn.Module | None = None):
        super().__init__()
        self.neuron, self.linear, self.bn, self.pre = neuron, linear, bn, pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.linear is None:
            return self.neuron(x)
        if self.pre is not None:
            x = self.pre(x)
        T, B = x.shape[:2]
        return self.neuron(_split(self.bn(self.linear(x.flatten(0, 1))), T, B))


def _head(d: _Draw, state: _State, classes: int) -> Head:
    kind = d.rng.choice(["mean", "lif", "hidden"])
    d.tag(f"head_{kind}")
    C = state.channels
    if kind == "mean":
        return Head(state.layout, kind, nn.Linear(C, classes))
    if kind == "lif":
        threshold = round(d.rng.uniform(0.1, 0.6), 3) if state.kind != "graded" else None
        return Head(state.layout, kind, nn.Linear(C, classes), HiddenToken(d.neuron(threshold)), d.chance(0.5))
    width = d.channels()
    pre = d.neuron() if state.kind == "graded" else None  # a weight op reads spikes (or counts), never BN outputs
    neuron = d.neuron()
    d.tag("linear_one_token")
    hidden = HiddenToken(neuron, nn.Linear(C, width, bias=d.chance(0.5)), d.bn("1d", width, neuron), pre)
    return Head(state.layout, kind, nn.Linear(width, classes), hidden, d.chance(0.5))


class RandomNet(nn.Module):
    """``x [B, C, H, W]`` repeated over ``T`` steps, the drawn blocks, the head."""

    def __init__(self, T: int, blocks: list[nn.Module], head: Head):
        super().__init__()
        self.T = T
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _next_state(block: nn.Module, state: _State, T: int, B: int, kind: str) -> _State:
    """The state after ``block``: its output shape (by running it on zeros) and ``kind``."""
    with torch.no_grad():
        y = block.eval()(torch.zeros(T, B, *state.shape))
    return _State(kind, state.layout, tuple(y.shape[2:]))


def _out_kind(block: nn.Module, state: _State) -> str:
    if isinstance(block, (MSBlock, GradedPool)) or (isinstance(block, ConvUnit) and block.neuron is None):
        return "graded"
    if isinstance(block, Attention) and block.form.residual == "ms":
        return "graded"
    if isinstance(block, MLP) and block.residual == "ms":
        return "graded"
    merges = (isinstance(block, SEWBlock) and block.merge == "add") or \
        (isinstance(block, Attention) and block.form.residual == "add") or \
        (isinstance(block, MLP) and block.residual == "add")
    return "count" if merges else "spike"


def _shrink(d: _Draw, state: _State) -> nn.Module:
    """A 2x2 / stride-2 max-pool (of spikes or of the graded stream) before the token stage, so that attention
    has few enough tokens to run in seconds."""
    pool = nn.MaxPool2d(2, 2, ceil_mode=d.chance(0.5))
    if state.kind == "spike":
        d.tag(*_pool_tags(pool, graded=False))
        return SpikePool(pool)
    d.tag(*_pool_tags(pool, graded=True))
    return GradedPool(pool)


def _draw_blocks(d: _Draw, state: _State, B: int, token_stage: bool) -> tuple[list[nn.Module], _State]:
    blocks: list[nn.Module] = []
    roll = d.rng.random()
    stem = _spiking_conv(d, state, d.channels()) if roll < 0.5 else \
        _graded_pool_unit(d, state, d.channels()) if roll < 0.9 else None
    if stem is None:
        stem = _to_graded(d, state)
    for index in range(d.rng.randint(1, 3) + (0 if token_stage else 1)):
        block = stem if index == 0 else _image_block(d, state)
        if block is None:
            continue
        state = _next_state(block, state, d.T, B, _out_kind(block, state))
        blocks.append(block)
    if token_stage:
        if state.tokens > _MAX_ATTENTION_TOKENS and d.chance(0.6):
            blocks.append(_shrink(d, state))
            state = _next_state(blocks[-1], state, d.T, B, state.kind)
        layout = d.rng.choice(["tokens", "channels", "image"])
        if layout != "image":
            blocks.append(ToTokens(layout))
            state = _next_state(blocks[-1], state, d.T, B, state.kind)
            state = _State(state.kind, layout, state.shape)
        for _ in range(d.rng.randint(1, 2)):
            block = _token_block(d, state)
            state = _next_state(block, state, d.T, B, _out_kind(block, state))
            blocks.append(block)
    return blocks, state


def _draw_architecture(rng: random.Random) -> tuple[RandomNet, tuple[int, ...], list[str]]:
    T = rng.randint(1, 4)
    d = _Draw(rng, T)
    B, c_in = rng.randint(2, 3), rng.randint(1, 3)
    h, w = rng.randint(4, 8), rng.randint(4, 8)
    blocks, state = _draw_blocks(d, _State("graded", "image", (c_in, h, w)), B, token_stage=d.chance(0.75))
    head = _head(d, state, rng.randint(2, 5))
    return RandomNet(T, blocks, head).eval(), (B, c_in, h, w), d.ops


# ---------------------------------------------------------------- calibration and firing


def _neurons(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, (MultiStepLIF, MultiStepIF))}


def firing_rates(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Each neuron layer's firing rate (spikes / elements) on ``x``, by module name, in call order."""
    rates: dict[str, float] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: rates.__setitem__(name, float(out.mean())))
             for name, m in _neurons(model).items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return rates


def _calibrate(model: nn.Module, x: torch.Tensor, generator: torch.Generator, boost: float) -> None:
    """Every BN takes the statistics of its input on ``x``, a gain of 0.6-1.2 and a bias of -0.3-1.2 (some
    channels driven below rest) times its reader's drive (times ``boost``); a ``strong`` BN's bias is 6 times
    that on a quarter of its channels."""
    for bn in model.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.reset_running_stats()
            bn.momentum = None
            n = bn.num_features
            with torch.no_grad():
                bn.weight.copy_((torch.rand(n, generator=generator) * 0.6 + 0.6) * bn.drive)
                bias = (torch.rand(n, generator=generator) * 1.5 - 0.3) * bn.drive * boost
                strong = torch.rand(n, generator=generator) < (0.25 if bn.strong else 0.0)
                bn.bias.copy_(torch.where(strong, bias.abs() * 6, bias))
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def _attempt(seed: int, attempt: int) -> RandomCase:
    arch_rng = random.Random(f"spikec-random-graph/{seed}/{attempt // _ARCH_EVERY}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + attempt // _ARCH_EVERY)
        model, shape, ops = _draw_architecture(arch_rng)
    generator = torch.Generator().manual_seed(seed * 1000 + attempt)
    # weights: fresh per attempt (kaiming-uniform-like, as nn's defaults)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                bound = 1.0 / max(1, p[0].numel()) ** 0.5
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound * 3 ** 0.5)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    _calibrate(model, x, generator, boost=1.0 + 0.25 * (attempt % _ARCH_EVERY))
    firing = firing_rates(model, x)
    summary = describe(model)
    return RandomCase(seed, model, x, tuple(dict.fromkeys(ops)), firing, attempt, summary)


def describe(model: RandomNet) -> str:
    """One line: T, the blocks and the head."""
    parts = [type(b).__name__ if not isinstance(b, ToTokens) else f"ToTokens({b.layout})" for b in model.blocks]
    return f"T={model.T} " + " -> ".join(parts + [f"Head({model.head.kind})"])


def random_case(seed: int) -> RandomCase:
    """The model of ``seed``: the first sub-seed whose every neuron layer fires on the input batch."""
    last = None
    for attempt in range(MAX_ATTEMPTS):
        case = _attempt(seed, attempt)
        if case.firing and all(rate > 0 for rate in case.firing.values()):
            return case
        last = case
    silent = [name for name, rate in last.firing.items() if rate == 0]
    raise RuntimeError(f"seed {seed}: no sub-seed in {MAX_ATTEMPTS} made every layer fire (silent: {silent})")


def random_model(seed: int) -> tuple[nn.Module, torch.Tensor]:
    """``(model in eval mode, input batch [B, C, H, W] of 2 or 3 samples)`` for ``seed``; every neuron layer
    fires on the batch."""
    case = random_case(seed)
    return case.model, case.x


# ---------------------------------------------------------------- one seed through the campaign


def attention_for(seed: int) -> str:
    """Where the seed's spike matmuls run: ``on-chip`` for even seeds, ``embedded`` for odd ones."""
    return "on-chip" if seed % 2 == 0 else "embedded"


def reproducer(seed: int) -> str:
    return f"python bench/random_graphs.py --seed {seed}"


@dataclasses.dataclass
class SeedResult:
    """What one seed gave: ``status`` is "exact", "mismatch" (``detail``: the first divergence, from
    ``assert_bit_exact``), "refused" (the compiler raised ``InputError``/``UnsupportedError`` on the model:
    ``detail`` says why) or "error" (anything else raised: a compiler or runtime bug)."""

    seed: int
    attention: str
    status: str
    detail: str = ""
    summary: str = ""
    ops: tuple[str, ...] = ()
    ir_ops: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    firing: dict[str, float] = dataclasses.field(default_factory=dict)   # intsim, per qlif node
    seconds: float = 0.0
    lava_seconds: float = 0.0

    @property
    def exact(self) -> bool:
        return self.status == "exact"

    def failure(self) -> str:
        """The line a failing test prints: seed, what went wrong, the reproducer."""
        return (f"seed {self.seed} (--attention {self.attention}, {self.summary}): {self.status}: {self.detail}\n"
                f"reproduce: {reproducer(self.seed)}")


def _ir_coverage(compiled) -> collections.Counter:
    """The integer ops (conv kernels and graded/spike pools told apart) and Lava process kinds of a compile."""
    found: collections.Counter = collections.Counter()
    for node in compiled.graph.nodes:
        op = node.op
        if op == "qconv2d":
            op = "qconv2d {}x{}".format(*node.attrs["weight"].shape[2:])
        elif op == "qdense":
            op = "qdense host" if node.attrs["host"] else f"qdense rank{node.inputs[0].type.rank}"
        found[op] += 1
    for spec in compiled.lowered.process_graph.processes:
        found[f"lava:{spec.kind}"] += 1
    for decision in compiled.lowered.process_graph.attention:
        found[f"matmul:{decision['attention']}"] += 1
    return found


def _intsim_firing(graph, x: np.ndarray) -> dict[str, float]:
    reference = run_intsim(graph, [x], keep_values=True)
    return {f"{i}:{n.module}": float(reference.of(n).mean()) for i, n in enumerate(graph.nodes) if n.op == "qlif"}


def run_seed(seed: int, attention: str | None = None, timeout: float = LAVA_TIMEOUT_S) -> SeedResult:
    """Draw the seed's model, compile it for loihi2, run intsim and Lava on its batch and compare every neuron
    layer's spikes, every step and sample, and the logits."""
    attention = attention or attention_for(seed)
    start = time.perf_counter()
    case = random_case(seed)
    result = SeedResult(seed, attention, "exact", summary=case.summary, ops=case.ops)
    x = case.x.numpy()
    try:
        compiled = spikec.compile(case.model, case.x, target="loihi2", attention=attention)
    except InputError as exc:  # UnsupportedError is an InputError
        result.status, result.detail = "refused", f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.seconds = time.perf_counter() - start
        return result
    except Exception as exc:  # noqa: BLE001 (a crash of the compiler is a finding, reported with its seed)
        result.status, result.detail = "error", f"compile raised {type(exc).__name__}: {exc}"
        result.seconds = time.perf_counter() - start
        return result
    result.ir_ops = _ir_coverage(compiled)
    try:
        result.firing = _intsim_firing(compiled.graph, x)
        lava_start = time.perf_counter()
        run = run_lava(compiled.graph, [x], compiled.lowered.process_graph, timeout=timeout)
        result.lava_seconds = time.perf_counter() - lava_start
        assert_bit_exact(compiled.graph, x, run)
    except AssertionError as exc:
        result.status, result.detail = "mismatch", str(exc).splitlines()[0]
    except Exception as exc:  # noqa: BLE001
        result.status, result.detail = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
    result.seconds = time.perf_counter() - start
    return result
