"""Spikingformer (Zhou et al., 2023): a pre-LIF spiking transformer with membrane-shortcut residuals.

Same topology as ``zhouchenlin2096/Spikingformer`` (``cifar10/``, ``imagenet/`` and ``cifar10-dvs/`` models),
with the same module names so an official ``state_dict`` loads by key, including the ``norm1`` / ``norm2``
LayerNorms the official blocks build and never call (they are built here too, and never called either).

Data flow, ``[T, B, ...]`` throughout:

* ``patch_embed`` (the tokenizer): a stem conv + BN on the (analog) input, then four stages of
  LIF -> [max-pool] -> 3x3 conv -> BN. The pools sit after the LIF, so they pool spikes. The CIFAR
  tokenizer (``block{k}_*`` names) pools in its last two stages only (32x32 -> 8x8); the ImageNet / DVS
  tokenizer (``proj{k}_*`` names) pools in all four (224 -> 14x14, 128 -> 8x8). Its output is a BN output.
* every block: ``x = x + attn(x)``, ``x = x + mlp(x)`` where both branches start with a LIF and end with a
  BN, so the residual adds analog values (membrane shortcut) and every conv after the stem sees spikes.
* attention: ``proj_lif`` (the LIF on the attention *input*, despite its name) -> q/k/v 1x1 Conv1d + BN +
  LIF -> spike matmuls scaled by 0.125 -> ``attn_lif`` (threshold 0.5) -> ``proj_conv`` + ``proj_bn``.
  ImageNet computes ``q @ (k^T @ v)``, CIFAR and DVS ``(q @ k^T) @ v``.
* readout: mean over tokens and time steps of the analog stream, then the ``head`` Linear.

Image variants repeat the image over ``T`` steps inside ``forward`` (direct encoding); the DVS variant takes
event frames ``[B, T, C, H, W]`` and moves time first. ``forward`` returns logits ``[B, num_classes]``.
"""

from __future__ import annotations

import torch
from torch import nn

from spikec.models import event_input_shape, image_input_shape, register, time_major_input
from spikec.nn import MultiStepLIF

__all__ = ["Spikingformer", "spikingformer_cifar", "spikingformer_imagenet", "spikingformer_dvs"]

ATTN_SCALE = 0.125


def _lif(tau: float, v_threshold: float = 1.0) -> MultiStepLIF:
    return MultiStepLIF(tau=tau, v_threshold=v_threshold, detach_reset=True)


def _split_tb(x: torch.Tensor, T: int, B: int) -> torch.Tensor:
    """``[T*B, C, H, W] -> [T, B, C, H, W]``."""
    _, C, H, W = x.shape
    return x.reshape(T, B, C, H, W)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False)


class CifarTokenizer(nn.Module):
    """CIFAR tokenizer: ``block0_conv/bn`` stem, then ``block{1..4}`` LIF -> [pool] -> conv -> BN.

    Only ``block3`` and ``block4`` pool (``block3_mp``, ``block4_mp``).
    """

    def __init__(self, in_channels: int, embed_dim: int, tau: float):
        super().__init__()
        d = embed_dim
        self.block0_conv = _conv3x3(in_channels, d // 8)
        self.block0_bn = nn.BatchNorm2d(d // 8)
        self.block1_lif = _lif(tau)
        self.block1_conv = _conv3x3(d // 8, d // 4)
        self.block1_bn = nn.BatchNorm2d(d // 4)
        self.block2_lif = _lif(tau)
        self.block2_conv = _conv3x3(d // 4, d // 2)
        self.block2_bn = nn.BatchNorm2d(d // 2)
        self.block3_lif = _lif(tau)
        self.block3_mp = _pool()
        self.block3_conv = _conv3x3(d // 2, d)
        self.block3_bn = nn.BatchNorm2d(d)
        self.block4_lif = _lif(tau)
        self.block4_mp = _pool()
        self.block4_conv = _conv3x3(d, d)
        self.block4_bn = nn.BatchNorm2d(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = _split_tb(self.block0_bn(self.block0_conv(x.flatten(0, 1))), T, B)
        x = self.block1_lif(x).flatten(0, 1)
        x = _split_tb(self.block1_bn(self.block1_conv(x)), T, B)
        x = self.block2_lif(x).flatten(0, 1)
        x = _split_tb(self.block2_bn(self.block2_conv(x)), T, B)
        x = self.block3_mp(self.block3_lif(x).flatten(0, 1))
        x = _split_tb(self.block3_bn(self.block3_conv(x)), T, B)
        x = self.block4_mp(self.block4_lif(x).flatten(0, 1))
        return _split_tb(self.block4_bn(self.block4_conv(x)), T, B)


class Tokenizer(nn.Module):
    """ImageNet / DVS tokenizer: ``proj_conv/bn`` stem, then ``proj{1..4}`` LIF -> pool -> conv -> BN."""

    def __init__(self, in_channels: int, embed_dim: int, tau: float):
        super().__init__()
        d = embed_dim
        self.proj_conv = _conv3x3(in_channels, d // 8)
        self.proj_bn = nn.BatchNorm2d(d // 8)
        self.proj1_lif = _lif(tau)
        self.maxpool1 = _pool()
        self.proj1_conv = _conv3x3(d // 8, d // 4)
        self.proj1_bn = nn.BatchNorm2d(d // 4)
        self.proj2_lif = _lif(tau)
        self.maxpool2 = _pool()
        self.proj2_conv = _conv3x3(d // 4, d // 2)
        self.proj2_bn = nn.BatchNorm2d(d // 2)
        self.proj3_lif = _lif(tau)
        self.maxpool3 = _pool()
        self.proj3_conv = _conv3x3(d // 2, d)
        self.proj3_bn = nn.BatchNorm2d(d)
        self.proj4_lif = _lif(tau)
        self.maxpool4 = _pool()
        self.proj4_conv = _conv3x3(d, d)
        self.proj4_bn = nn.BatchNorm2d(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = _split_tb(self.proj_bn(self.proj_conv(x.flatten(0, 1))), T, B)
        stages = (
            (self.proj1_lif, self.maxpool1, self.proj1_conv, self.proj1_bn),
            (self.proj2_lif, self.maxpool2, self.proj2_conv, self.proj2_bn),
            (self.proj3_lif, self.maxpool3, self.proj3_conv, self.proj3_bn),
            (self.proj4_lif, self.maxpool4, self.proj4_conv, self.proj4_bn),
        )
        for lif, pool, conv, bn in stages:
            x = pool(lif(x).flatten(0, 1))
            x = _split_tb(bn(conv(x)), T, B)
        return x


class SpikingSelfAttention(nn.Module):
    """Spiking self-attention on ``[T, B, C, H, W]``; returns the BN output (no LIF after ``proj``).

    ``kv_first`` picks the ImageNet order ``q @ (k^T @ v)``; otherwise ``(q @ k^T) @ v``. Both scale by 0.125.
    """

    def __init__(self, dim: int, num_heads: int, tau: float, kv_first: bool):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.kv_first = kv_first
        self.scale = ATTN_SCALE
        self.proj_lif = _lif(tau)
        self.q_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.q_bn = nn.BatchNorm1d(dim)
        self.q_lif = _lif(tau)
        self.k_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.k_bn = nn.BatchNorm1d(dim)
        self.k_lif = _lif(tau)
        self.v_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.v_bn = nn.BatchNorm1d(dim)
        self.v_lif = _lif(tau)
        self.attn_lif = _lif(tau, v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)

    def _heads(self, s: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, N] -> [T, B, heads, N, C / heads]``."""
        T, B, C, N = s.shape
        return s.transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        N = H * W
        x = self.proj_lif(x).flatten(3)  # [T, B, C, N] spikes
        x_flat = x.flatten(0, 1)
        q = self._heads(self.q_lif(self.q_bn(self.q_conv(x_flat)).reshape(T, B, C, N)))
        k = self._heads(self.k_lif(self.k_bn(self.k_conv(x_flat)).reshape(T, B, C, N)))
        v = self._heads(self.v_lif(self.v_bn(self.v_conv(x_flat)).reshape(T, B, C, N)))
        if self.kv_first:
            x = (q @ (k.transpose(-2, -1) @ v)) * self.scale
        else:
            x = ((q @ k.transpose(-2, -1)) @ v) * self.scale
        x = x.transpose(3, 4).reshape(T, B, C, N)
        x = self.attn_lif(x).flatten(0, 1)
        return self.proj_bn(self.proj_conv(x)).reshape(T, B, C, H, W)


class MLP(nn.Module):
    """``mlp1_lif -> mlp1_conv (1x1) -> mlp1_bn -> mlp2_lif -> mlp2_conv (1x1) -> mlp2_bn`` on ``[T, B, C, H, W]``."""

    def __init__(self, dim: int, hidden: int, tau: float):
        super().__init__()
        self.hidden = hidden
        self.mlp1_lif = _lif(tau)
        self.mlp1_conv = nn.Conv2d(dim, hidden, kernel_size=1, stride=1)
        self.mlp1_bn = nn.BatchNorm2d(hidden)
        self.mlp2_lif = _lif(tau)
        self.mlp2_conv = nn.Conv2d(hidden, dim, kernel_size=1, stride=1)
        self.mlp2_bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = self.mlp1_lif(x).flatten(0, 1)
        x = self.mlp1_bn(self.mlp1_conv(x)).reshape(T, B, self.hidden, H, W)
        x = self.mlp2_lif(x).flatten(0, 1)
        return self.mlp2_bn(self.mlp2_conv(x)).reshape(T, B, C, H, W)


class Block(nn.Module):
    """``x + attn(x)`` then ``x + mlp(x)``. ``norm1`` / ``norm2`` exist for checkpoint compatibility only."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, tau: float, kv_first: bool, norm_eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)  # unused in forward (as in the official code)
        self.attn = SpikingSelfAttention(dim, num_heads, tau, kv_first)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)  # unused in forward (as in the official code)
        self.mlp = MLP(dim, int(dim * mlp_ratio), tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikingformer(nn.Module):
    """The whole network: ``patch_embed``, ``block`` (ModuleList), ``head``.

    ``variant`` is ``"cifar"``, ``"imagenet"`` or ``"dvs"``; it picks the tokenizer, the attention order and
    the input convention (image repeated over ``T`` steps, or ``[B, T, C, H, W]`` event frames).
    """

    def __init__(self, variant: str, img_size: int, in_channels: int, num_classes: int, embed_dim: int,
                 num_heads: int, mlp_ratio: float, depth: int, T: int, tau: float, norm_eps: float):
        super().__init__()
        if variant not in ("cifar", "imagenet", "dvs"):
            raise ValueError(f"unknown Spikingformer variant {variant!r}")
        for key, val in (("img_size", img_size), ("in_channels", in_channels), ("num_classes", num_classes),
                         ("embed_dim", embed_dim), ("num_heads", num_heads), ("depth", depth), ("T", T)):
            if int(val) != val or val < 1:
                raise ValueError(f"{key} must be a positive integer, got {val!r}")
        if embed_dim % 8:
            raise ValueError(f"embed_dim must be a multiple of 8 (the tokenizer uses D/8, D/4, D/2), got {embed_dim}")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio}")
        self.variant = variant
        self.img_size = img_size
        self.num_classes = num_classes
        self.T = T
        self.event_input = variant == "dvs"
        tokenizer = CifarTokenizer if variant == "cifar" else Tokenizer
        self.patch_embed = tokenizer(in_channels, embed_dim, tau)
        self.block = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, tau, kv_first=variant == "imagenet", norm_eps=norm_eps)
            for _ in range(depth))
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_in, H, W] -> [T, B, D]``: the analog residual stream averaged over tokens."""
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = time_major_input(x, self.T, self.event_input)
        x = self.forward_features(x)
        return self.head(x.mean(0))




@register("spikingformer-cifar", "spikingformer", image_input_shape,
          "Spikingformer CIFAR-10/100 (4-384, T=4): pre-LIF SSA, MS residual, 32x32 -> 8x8 tokens")
def spikingformer_cifar(img_size: int = 32, in_channels: int = 3, num_classes: int = 10, embed_dim: int = 384,
                        num_heads: int = 12, mlp_ratio: float = 4, depth: int = 4, T: int = 4,
                        tau: float = 2.0) -> Spikingformer:
    """Official ``cifar10/`` config (``cifar10.yml``); num_classes=100 gives the CIFAR-100 model."""
    return Spikingformer("cifar", img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T,
                         tau, norm_eps=1e-5)


@register("spikingformer-imagenet", "spikingformer", image_input_shape,
          "Spikingformer ImageNet (8-768, T=4): 4-pool tokenizer, q@(k^T v) attention, 224 -> 14x14 tokens")
def spikingformer_imagenet(img_size: int = 224, in_channels: int = 3, num_classes: int = 1000,
                           embed_dim: int = 768, num_heads: int = 8, mlp_ratio: float = 4, depth: int = 8,
                           T: int = 4, tau: float = 2.0) -> Spikingformer:
    """Official ``imagenet/`` config (``imagenet.yml``: 8-768, 8 heads); embed_dim=384/512 give the smaller ones."""
    return Spikingformer("imagenet", img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth,
                         T, tau, norm_eps=1e-5)


@register("spikingformer-dvs", "spikingformer", event_input_shape,
          "Spikingformer CIFAR10-DVS (2-256, 16 heads, T=16, tau=1.5): input [B, T, 2, 128, 128] event frames")
def spikingformer_dvs(img_size: int = 128, in_channels: int = 2, num_classes: int = 10, embed_dim: int = 256,
                      num_heads: int = 16, mlp_ratio: float = 4, depth: int = 2, T: int = 16,
                      tau: float = 1.5) -> Spikingformer:
    """Official ``cifar10-dvs/`` config; every LIF uses tau=1.5. ``T`` only sets the expected input length."""
    return Spikingformer("dvs", img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T,
                         tau, norm_eps=1e-6)
