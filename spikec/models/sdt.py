"""Spike-driven Transformer V1 (Yao et al., NeurIPS 2023): spike-driven self-attention without a MatMul.

Same topology as ``BICLab/Spike-Driven-Transformer`` (``model/spikeformer.py``, ``module/sps.py``,
``module/ms_conv.py``) with the same module names, so an official ``state_dict`` loads by key. Modules the
official code builds but never calls are built here too and never called: each block's
``attn.talking_heads`` (a Conv1d whose weight is in the checkpoints) and ``attn.attn_lif``, and
``patch_embed.rpe_lif``.

Data flow, ``[T, B, C, H, W]`` throughout:

* ``patch_embed`` (MS-SPS): four 3x3 conv + BN stages. Stages 0-2 end in a LIF whose spikes are
  optionally max-pooled; in stage 3 the optional pool (``maxpool3``) acts on the BN output *before*
  ``proj_lif3``. That pooled BN output is added back after ``proj_lif3 -> rpe_conv -> rpe_bn`` (a membrane
  shortcut around the relative position embedding). ``pooling_stat`` ("1111", "0011", ...) switches the
  four pools: ImageNet "1111", CIFAR and CIFAR10-DVS "0011", DVS128-Gesture "0111".
* every block, membrane-shortcut residuals on analog values:
  attention ``shortcut_lif -> q/k/v 1x1 conv + BN + LIF -> kv = k * v (Hadamard) -> sum over tokens ->
  talking_heads_lif (threshold 0.5) -> q * kv -> proj_conv + proj_bn``, plus the identity; then the MLP
  ``fc1_lif -> fc1_conv + fc1_bn -> fc2_lif -> fc2_conv + fc2_bn``, plus the identity (and, when the hidden
  size equals the width, an extra residual around fc1 as in the official code).
* ``dvs_mode`` (the official CIFAR10-DVS setting) applies an ``Erode`` 3x3 max-pool (stride 1) to k, v,
  k * v and the attention output.
* readout: mean over tokens -> ``head_lif`` -> ``head`` Linear at every time step -> mean over time.

Image variants repeat the image over ``T`` steps inside ``forward``; the DVS variant takes event frames
``[B, T, C, H, W]``. ``forward`` returns logits ``[B, num_classes]`` (the official forward returns
``(logits, hook)``; with ``TET=True`` it skips the mean over time, which is a training-loss choice).
"""

from __future__ import annotations

import torch
from torch import nn

from spikec.models import event_input_shape, image_input_shape, register, time_major_input
from spikec.nn import MultiStepLIF

__all__ = ["SpikeDrivenTransformer", "sdt_cifar", "sdt_imagenet", "sdt_dvs"]


def _split_tb(x: torch.Tensor, T: int, B: int) -> torch.Tensor:
    """``[T*B, C, H, W] -> [T, B, C, H, W]``."""
    _, C, H, W = x.shape
    return x.reshape(T, B, C, H, W)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False)


class Erode(nn.Module):
    """3x3 max-pool with stride 1 over the last two axes of a 5-d tensor (``MaxPool3d`` kernel (1, 3, 3))."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class MS_SPS(nn.Module):
    """Spiking patch splitting with a membrane-shortcut relative position embedding."""

    def __init__(self, in_channels: int, embed_dim: int, tau: float, pooling_stat: str):
        super().__init__()
        d = embed_dim
        self.pooling_stat = pooling_stat
        self.proj_conv = _conv3x3(in_channels, d // 8)
        self.proj_bn = nn.BatchNorm2d(d // 8)
        self.proj_lif = MultiStepLIF(tau=tau, detach_reset=True)
        self.maxpool = _pool()
        self.proj_conv1 = _conv3x3(d // 8, d // 4)
        self.proj_bn1 = nn.BatchNorm2d(d // 4)
        self.proj_lif1 = MultiStepLIF(tau=tau, detach_reset=True)
        self.maxpool1 = _pool()
        self.proj_conv2 = _conv3x3(d // 4, d // 2)
        self.proj_bn2 = nn.BatchNorm2d(d // 2)
        self.proj_lif2 = MultiStepLIF(tau=tau, detach_reset=True)
        self.maxpool2 = _pool()
        self.proj_conv3 = _conv3x3(d // 2, d)
        self.proj_bn3 = nn.BatchNorm2d(d)
        self.proj_lif3 = MultiStepLIF(tau=tau, detach_reset=True)
        self.maxpool3 = _pool()
        self.rpe_conv = _conv3x3(d, d)
        self.rpe_bn = nn.BatchNorm2d(d)
        self.rpe_lif = MultiStepLIF(tau=tau, detach_reset=True)  # unused in forward (as in the official code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = x.flatten(0, 1)
        stages = (
            (self.proj_conv, self.proj_bn, self.proj_lif, self.maxpool),
            (self.proj_conv1, self.proj_bn1, self.proj_lif1, self.maxpool1),
            (self.proj_conv2, self.proj_bn2, self.proj_lif2, self.maxpool2),
        )
        for i, (conv, bn, lif, pool) in enumerate(stages):
            x = lif(_split_tb(bn(conv(x)), T, B)).flatten(0, 1)
            if self.pooling_stat[i] == "1":
                x = pool(x)
        x = self.proj_bn3(self.proj_conv3(x))
        if self.pooling_stat[3] == "1":
            x = self.maxpool3(x)  # pools the BN output, before the LIF
        x_feat = x
        x = self.proj_lif3(_split_tb(x, T, B)).flatten(0, 1)
        x = self.rpe_bn(self.rpe_conv(x))
        return _split_tb(x + x_feat, T, B)


class MS_SSA_Conv(nn.Module):
    """Spike-driven self-attention (SDSA) on ``[T, B, C, H, W]`` with the identity added at the end."""

    def __init__(self, dim: int, num_heads: int, tau: float, dvs: bool):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.dvs = dvs
        if dvs:
            self.pool = Erode()
        self.q_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.q_bn = nn.BatchNorm2d(dim)
        self.q_lif = MultiStepLIF(tau=tau, detach_reset=True)
        self.k_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.k_bn = nn.BatchNorm2d(dim)
        self.k_lif = MultiStepLIF(tau=tau, detach_reset=True)
        self.v_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.v_bn = nn.BatchNorm2d(dim)
        self.v_lif = MultiStepLIF(tau=tau, detach_reset=True)
        # attn_lif and talking_heads are built for checkpoint compatibility and never called.
        self.attn_lif = MultiStepLIF(tau=tau, v_threshold=0.5, detach_reset=True)
        self.talking_heads = nn.Conv1d(num_heads, num_heads, kernel_size=1, stride=1, bias=False)
        self.talking_heads_lif = MultiStepLIF(tau=tau, v_threshold=0.5, detach_reset=True)
        self.proj_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm2d(dim)
        self.shortcut_lif = MultiStepLIF(tau=tau, detach_reset=True)

    def _heads(self, s: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W] -> [T, B, heads, N, C / heads]``."""
        T, B, C, H, W = s.shape
        return (s.flatten(3).transpose(-1, -2)
                .reshape(T, B, H * W, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        identity = x
        x_flat = self.shortcut_lif(x).flatten(0, 1)
        q = self.q_lif(self.q_bn(self.q_conv(x_flat)).reshape(T, B, C, H, W))
        k = self.k_lif(self.k_bn(self.k_conv(x_flat)).reshape(T, B, C, H, W))
        v = self.v_lif(self.v_bn(self.v_conv(x_flat)).reshape(T, B, C, H, W))
        if self.dvs:
            k = self.pool(k)
            v = self.pool(v)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        kv = k * v  # Hadamard product of spikes: [T, B, heads, N, d]
        if self.dvs:
            kv = self.pool(kv)
        kv = self.talking_heads_lif(kv.sum(dim=-2, keepdim=True))  # integer column sums -> spikes
        x = q * kv
        if self.dvs:
            x = self.pool(x)
        x = x.transpose(3, 4).reshape(T, B, C, H, W).flatten(0, 1)
        x = self.proj_bn(self.proj_conv(x)).reshape(T, B, C, H, W)
        return x + identity


class MS_MLP_Conv(nn.Module):
    """Spiking MLP with its residual; an extra residual around fc1 when ``hidden == dim``."""

    def __init__(self, dim: int, hidden: int, tau: float):
        super().__init__()
        self.hidden = hidden
        self.res = dim == hidden
        self.fc1_conv = nn.Conv2d(dim, hidden, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc1_lif = MultiStepLIF(tau=tau, detach_reset=True)
        self.fc2_conv = nn.Conv2d(hidden, dim, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm2d(dim)
        self.fc2_lif = MultiStepLIF(tau=tau, detach_reset=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        identity = x
        x = self.fc1_lif(x).flatten(0, 1)
        x = self.fc1_bn(self.fc1_conv(x)).reshape(T, B, self.hidden, H, W)
        if self.res:
            x = identity + x
            identity = x
        x = self.fc2_lif(x).flatten(0, 1)
        x = self.fc2_bn(self.fc2_conv(x)).reshape(T, B, C, H, W)
        return x + identity


class MS_Block_Conv(nn.Module):
    """Attention then MLP; each adds its own residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, tau: float, dvs: bool):
        super().__init__()
        self.attn = MS_SSA_Conv(dim, num_heads, tau, dvs)
        self.mlp = MS_MLP_Conv(dim, int(dim * mlp_ratio), tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class SpikeDrivenTransformer(nn.Module):
    """The whole network: ``patch_embed``, ``block`` (ModuleList), ``head_lif``, ``head``."""

    def __init__(self, img_size: int, in_channels: int, num_classes: int, embed_dim: int, num_heads: int,
                 mlp_ratio: float, depth: int, T: int, tau: float, pooling_stat: str, dvs_mode: bool,
                 event_input: bool):
        super().__init__()
        for key, val in (("img_size", img_size), ("in_channels", in_channels), ("num_classes", num_classes),
                         ("embed_dim", embed_dim), ("num_heads", num_heads), ("depth", depth), ("T", T)):
            if int(val) != val or val < 1:
                raise ValueError(f"{key} must be a positive integer, got {val!r}")
        if embed_dim % 8:
            raise ValueError(f"embed_dim must be a multiple of 8 (MS-SPS uses D/8, D/4, D/2), got {embed_dim}")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio}")
        if not (isinstance(pooling_stat, str) and len(pooling_stat) == 4 and set(pooling_stat) <= {"0", "1"}):
            raise ValueError(f"pooling_stat must be four characters of 0/1 (e.g. '1111'), got {pooling_stat!r}")
        self.img_size = img_size
        self.num_classes = num_classes
        self.T = T
        self.dvs = bool(dvs_mode)
        self.event_input = bool(event_input)
        self.patch_embed = MS_SPS(in_channels, embed_dim, tau, pooling_stat)
        self.block = nn.ModuleList(MS_Block_Conv(embed_dim, num_heads, mlp_ratio, tau, self.dvs)
                                   for _ in range(depth))
        self.head_lif = MultiStepLIF(tau=tau, detach_reset=True)
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
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
        x = self.head_lif(self.forward_features(x))
        return self.head(x).mean(0)




@register("sdt-cifar", "sdt", image_input_shape,
          "Spike-driven Transformer CIFAR-10/100 (2-512, T=4, pooling 0011): SDSA, MS residual, 8x8 tokens")
def sdt_cifar(img_size: int = 32, in_channels: int = 3, num_classes: int = 10, embed_dim: int = 512,
              num_heads: int = 8, mlp_ratio: float = 4, depth: int = 2, T: int = 4, tau: float = 2.0,
              pooling_stat: str = "0011", dvs_mode: bool = False) -> SpikeDrivenTransformer:
    """Official ``conf/cifar10/2_512_300E_t4.yml``; num_classes=100 gives the CIFAR-100 model."""
    return SpikeDrivenTransformer(img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T,
                                  tau, pooling_stat, dvs_mode, event_input=False)


@register("sdt-imagenet", "sdt", image_input_shape,
          "Spike-driven Transformer ImageNet (8-512, T=4, pooling 1111): SDSA, MS residual, 14x14 tokens")
def sdt_imagenet(img_size: int = 224, in_channels: int = 3, num_classes: int = 1000, embed_dim: int = 512,
                 num_heads: int = 8, mlp_ratio: float = 4, depth: int = 8, T: int = 4, tau: float = 2.0,
                 pooling_stat: str = "1111", dvs_mode: bool = False) -> SpikeDrivenTransformer:
    """Official ``conf/imagenet/8_512_300E_t4.yml`` (also published: 8-384, 6-512, 10-512, 8-768)."""
    return SpikeDrivenTransformer(img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T,
                                  tau, pooling_stat, dvs_mode, event_input=False)


@register("sdt-dvs", "sdt", event_input_shape,
          "Spike-driven Transformer CIFAR10-DVS (2-256, T=10, pooling 0011, Erode): input [B, T, 2, 64, 64]")
def sdt_dvs(img_size: int = 64, in_channels: int = 2, num_classes: int = 10, embed_dim: int = 256,
            num_heads: int = 8, mlp_ratio: float = 4, depth: int = 2, T: int = 10, tau: float = 2.0,
            pooling_stat: str = "0011", dvs_mode: bool = True) -> SpikeDrivenTransformer:
    """Official ``conf/cifar10-dvs/2_256_200E_t10_TET.yml`` (dvs_mode on). For DVS128-Gesture use
    img_size=128, num_classes=11, pooling_stat="0111", dvs_mode=False, T=10 or 16."""
    return SpikeDrivenTransformer(img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T,
                                  tau, pooling_stat, dvs_mode, event_input=True)
