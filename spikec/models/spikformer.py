"""Spikformer (Zhou et al., ICLR 2023): spiking self-attention (SSA) with spike-element-wise residuals.

Same topology as ``ZK-Zhou/spikformer`` (``cifar10/``, ``imagenet/`` and ``cifar10dvs/`` models) with the same
module names, so an official ``state_dict`` loads by key. Modules the official code builds but never calls
are built here too and never called: every block's ``norm1`` / ``norm2`` LayerNorms and (ImageNet, DVS)
``drop_path``; the DVS model's ``pos_embed`` parameter, final ``norm`` LayerNorm, and each attention's
``attn_drop`` and ``res_lif``.

Data flow (the residual stream is ``[T, B, N, C]`` for CIFAR, ``[T, B, C, H, W]`` for ImageNet and
``[T, B, C, N]`` for DVS; every conv / linear / BN runs on ``x.flatten(0, 1)`` and its output is split back
to ``[T, B, ...]`` before the LIF):

* ``patch_embed`` (SPS): four stages 3x3 conv -> BN -> LIF with widths D/8, D/4, D/2, D; a 3x3 max-pool
  (stride 2) after a stage's LIF pools its spikes. CIFAR pools after stages 2 and 3 only (``maxpool2``,
  ``maxpool3``: 32x32 -> 8x8 tokens); ImageNet and DVS pool after all four (``maxpool``, ``maxpool1..3``:
  224 -> 14x14, 128 -> 8x8). Then the relative position embedding ``rpe_conv -> rpe_bn -> rpe_lif`` whose
  spikes are added to the pooled spikes, so the SPS output is in {0, 1, 2}.
* every block (SEW residual): ``x = x + attn(x)``, ``x = x + mlp(x)``. Both branches end in a LIF, so the
  stream holds integer spike counts: block ``l`` (0-based) sees q/k/v input in {0 .. 2 + 2l} and fc1 input
  in {0 .. 3 + 2l}.
* attention: q/k/v projections (CIFAR ``*_linear``: Linear with bias; ImageNet/DVS ``*_conv``: Conv1d k=1
  without bias) -> BN -> LIF, heads ``[T, B, h, N, d]``, then the spike matmuls, ``attn_lif``
  (threshold 0.5), and ``proj_* -> proj_bn -> proj_lif``. Order and scale per variant:
  CIFAR ``((q @ k^T) * 0.125) @ v``; ImageNet ``(q @ (k^T @ v)) * 0.125``; DVS ``((q @ k^T) @ v) * 0.25``.
* MLP: ``fc1 -> fc1_bn -> fc1_lif -> fc2 -> fc2_bn -> fc2_lif`` with hidden width ``mlp_ratio * D``:
  Linear + BatchNorm1d (CIFAR), 1x1 Conv2d + BatchNorm2d (ImageNet), 1x1 Conv1d + BatchNorm1d (DVS).
* readout: mean over tokens -> ``[T, B, D]``, mean over time, ``head`` Linear.

``residual="iand"`` replaces each SEW add (the SPS's RPE add and both block residuals) by SEW-IAND
``(1 - branch) * identity`` (:func:`spikec.nn.iand`), which keeps the stream binary, so every conv / linear
after the encoding layer sees spikes. It is not an official variant; a checkpoint trained with ``"add"``
loads into it (same keys) but computes something else.

Image variants repeat the image over ``T`` steps inside ``forward`` (direct encoding; the official ImageNet
forward hard-codes T=4, here ``T`` is configurable with default 4). The DVS variant takes event frames
``[B, T, C, H, W]`` (the official layout) and moves time first. ``forward`` returns logits ``[B, classes]``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from spikec.models import event_input_shape, image_input_shape, register, time_major_input
from spikec.nn import MultiStepLIF, iand

__all__ = ["Spikformer", "SPS", "LinearSSA", "ConvSSA", "LinearMLP", "ConvMLP", "Block",
           "spikformer_cifar", "spikformer_imagenet", "spikformer_dvs"]

RESIDUALS = ("add", "iand")


@dataclasses.dataclass(frozen=True)
class Variant:
    """What distinguishes the three official models (one row of :data:`VARIANTS`)."""

    name: str
    stream: str            # residual-stream layout: "tbnc" (CIFAR), "tbchw" (ImageNet), "tbcn" (DVS)
    pools: tuple[int, ...]  # SPS stages followed by a max-pool
    attn_order: str        # "qk*s@v" (CIFAR), "q@kv*s" (ImageNet), "qk@v*s" (DVS)
    attn_scale: float
    mlp_dims: int          # 0: Linear + BN1d on [TB, N, C]; 1: Conv1d + BN1d; 2: Conv2d + BN2d
    norm_eps: float        # eps of the unused LayerNorms
    drop_path: bool        # blocks carry an (unused, parameter-free) ``drop_path``
    dvs_extras: bool       # pos_embed, final norm, attn_drop, res_lif (all unused)
    min_divisor: int       # img_size must be a multiple of this (the official reshapes assume it)


VARIANTS = {
    "cifar": Variant("cifar", "tbnc", (2, 3), "qk*s@v", 0.125, 0, 1e-5, False, False, 4),
    "imagenet": Variant("imagenet", "tbchw", (0, 1, 2, 3), "q@kv*s", 0.125, 2, 1e-6, True, False, 16),
    "dvs": Variant("dvs", "tbcn", (0, 1, 2, 3), "qk@v*s", 0.25, 1, 1e-6, True, True, 16),
}


def _lif(tau: float, v_threshold: float = 1.0) -> MultiStepLIF:
    return MultiStepLIF(tau=tau, v_threshold=v_threshold, detach_reset=True)


def _split_tb(x: torch.Tensor, T: int, B: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.reshape(T, B, *x.shape[1:])


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False)


def _suffix(k: int) -> str:
    """Official SPS naming: stage 0 has no index (``proj_conv``), stage k>0 has it (``proj_conv1``)."""
    return "" if k == 0 else str(k)


def merge(identity: torch.Tensor, branch: torch.Tensor, residual: str) -> torch.Tensor:
    """The SEW residual: ``identity + branch`` ("add", official) or ``(1 - branch) * identity`` ("iand")."""
    if residual == "add":
        return identity + branch
    return iand(branch, identity)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, order: str, scale: float) -> torch.Tensor:
    """Spike attention on ``[T, B, heads, N, d]`` in the official order of each variant (no softmax)."""
    if order == "qk*s@v":
        return ((q @ k.transpose(-2, -1)) * scale) @ v
    if order == "qk@v*s":
        return ((q @ k.transpose(-2, -1)) @ v) * scale
    return (q @ (k.transpose(-2, -1) @ v)) * scale


class SPS(nn.Module):
    """Spiking patch splitting: ``[T, B, C_in, H, W]`` -> residual stream in ``out_layout``.

    Stages ``proj_conv{k} -> proj_bn{k} -> proj_lif{k} [-> maxpool{k}]`` (k = "", 1, 2, 3), then
    ``rpe_conv -> rpe_bn -> rpe_lif`` merged with the pooled spikes. Subclasses add conv units to a stage by
    overriding :meth:`_add_stage`; :attr:`steps` lists what ``forward`` runs, in order.
    """

    def __init__(self, in_channels: int, embed_dim: int, tau: float, pools: tuple[int, ...],
                 residual: str = "add", out_layout: str = "tbchw"):
        super().__init__()
        self.residual = residual
        self.out_layout = out_layout
        self.steps: list[tuple[str, ...]] = []  # ("unit", conv, bn, lif) or ("pool", name)
        d = embed_dim
        c_in = in_channels
        for k, c_out in enumerate((d // 8, d // 4, d // 2, d)):
            self._add_stage(k, c_in, c_out, tau, pool=k in pools)
            c_in = c_out
        self.rpe_conv = _conv3x3(d, d)
        self.rpe_bn = nn.BatchNorm2d(d)
        self.rpe_lif = _lif(tau)

    def _add_unit(self, conv: str, bn: str, lif: str, c_in: int, c_out: int, tau: float) -> None:
        setattr(self, conv, _conv3x3(c_in, c_out))
        setattr(self, bn, nn.BatchNorm2d(c_out))
        setattr(self, lif, _lif(tau))
        self.steps.append(("unit", conv, bn, lif))

    def _add_pool(self, name: str) -> None:
        setattr(self, name, _pool())
        self.steps.append(("pool", name))

    def _add_stage(self, k: int, c_in: int, c_out: int, tau: float, pool: bool) -> None:
        s = _suffix(k)
        self._add_unit(f"proj_conv{s}", f"proj_bn{s}", f"proj_lif{s}", c_in, c_out, tau)
        if pool:
            self._add_pool(f"maxpool{s}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = x.flatten(0, 1)
        for step in self.steps:
            if step[0] == "pool":
                x = getattr(self, step[1])(x)
                continue
            conv, bn, lif = (getattr(self, name) for name in step[1:])
            x = lif(_split_tb(bn(conv(x)), T, B)).flatten(0, 1)
        x_feat = _split_tb(x, T, B)
        x_rpe = self.rpe_lif(_split_tb(self.rpe_bn(self.rpe_conv(x)), T, B))
        x = merge(x_feat, x_rpe, self.residual)  # [T, B, D, h, w]
        if self.out_layout == "tbnc":
            return x.flatten(3).transpose(-1, -2)
        if self.out_layout == "tbcn":
            return x.flatten(3)
        return x


class LinearSSA(nn.Module):
    """CIFAR spiking self-attention on ``[T, B, N, C]`` with Linear projections (all with bias)."""

    def __init__(self, dim: int, num_heads: int, tau: float, order: str, scale: float):
        super().__init__()
        self.num_heads = num_heads
        self.order = order
        self.scale = scale
        self.q_linear = nn.Linear(dim, dim)
        self.q_bn = nn.BatchNorm1d(dim)
        self.q_lif = _lif(tau)
        self.k_linear = nn.Linear(dim, dim)
        self.k_bn = nn.BatchNorm1d(dim)
        self.k_lif = _lif(tau)
        self.v_linear = nn.Linear(dim, dim)
        self.v_bn = nn.BatchNorm1d(dim)
        self.v_lif = _lif(tau)
        self.attn_lif = _lif(tau, v_threshold=0.5)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = _lif(tau)

    @staticmethod
    def _linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        """``[TB, N, C_in] -> [TB, N, C_out]``; BatchNorm1d normalises channels through ``[TB, C, N]``."""
        return bn(linear(x).transpose(-1, -2)).transpose(-1, -2)

    def _heads(self, s: torch.Tensor) -> torch.Tensor:
        """``[T, B, N, C] -> [T, B, heads, N, C / heads]``."""
        T, B, N, C = s.shape
        return s.reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape
        x_flat = x.flatten(0, 1)
        q = self._heads(self.q_lif(self._linear_bn(self.q_linear, self.q_bn, x_flat).reshape(T, B, N, C)))
        k = self._heads(self.k_lif(self._linear_bn(self.k_linear, self.k_bn, x_flat).reshape(T, B, N, C)))
        v = self._heads(self.v_lif(self._linear_bn(self.v_linear, self.v_bn, x_flat).reshape(T, B, N, C)))
        x = attend(q, k, v, self.order, self.scale)
        x = self.attn_lif(x.transpose(2, 3).reshape(T, B, N, C)).flatten(0, 1)
        return self.proj_lif(self._linear_bn(self.proj_linear, self.proj_bn, x).reshape(T, B, N, C))


class ConvSSA(nn.Module):
    """ImageNet / DVS spiking self-attention on ``[T, B, C, *spatial]`` with 1x1 Conv1d projections.

    q/k/v convs have no bias, ``proj_conv`` has one. ``dvs_extras`` adds the DVS model's ``attn_drop``
    (Dropout) and ``res_lif``, which the official code builds and never calls.
    """

    def __init__(self, dim: int, num_heads: int, tau: float, order: str, scale: float, dvs_extras: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.order = order
        self.scale = scale
        self.q_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.q_bn = nn.BatchNorm1d(dim)
        self.q_lif = _lif(tau)
        self.k_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.k_bn = nn.BatchNorm1d(dim)
        self.k_lif = _lif(tau)
        self.v_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.v_bn = nn.BatchNorm1d(dim)
        self.v_lif = _lif(tau)
        if dvs_extras:
            self.attn_drop = nn.Dropout(0.2)  # unused in forward (as in the official code)
            self.res_lif = _lif(tau)  # unused in forward (as in the official code)
        self.attn_lif = _lif(tau, v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = _lif(tau)

    def _heads(self, s: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, N] -> [T, B, heads, N, C / heads]``."""
        T, B, C, N = s.shape
        return s.transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C = x.shape[0], x.shape[1], x.shape[2]
        spatial = x.shape[3:]
        x = x.flatten(3)  # [T, B, C, N]
        N = x.shape[3]
        x_flat = x.flatten(0, 1)
        q = self._heads(self.q_lif(self.q_bn(self.q_conv(x_flat)).reshape(T, B, C, N)))
        k = self._heads(self.k_lif(self.k_bn(self.k_conv(x_flat)).reshape(T, B, C, N)))
        v = self._heads(self.v_lif(self.v_bn(self.v_conv(x_flat)).reshape(T, B, C, N)))
        x = attend(q, k, v, self.order, self.scale)
        x = self.attn_lif(x.transpose(3, 4).reshape(T, B, C, N)).flatten(0, 1)
        return self.proj_lif(self.proj_bn(self.proj_conv(x)).reshape(T, B, C, *spatial))


class LinearMLP(nn.Module):
    """CIFAR MLP on ``[T, B, N, C]``: ``fc1_linear -> fc1_bn -> fc1_lif -> fc2_linear -> fc2_bn -> fc2_lif``."""

    def __init__(self, dim: int, hidden: int, tau: float):
        super().__init__()
        self.hidden = hidden
        self.fc1_linear = nn.Linear(dim, hidden)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_lif = _lif(tau)
        self.fc2_linear = nn.Linear(hidden, dim)
        self.fc2_bn = nn.BatchNorm1d(dim)
        self.fc2_lif = _lif(tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape
        x = self.fc1_linear(x.flatten(0, 1))
        x = self.fc1_lif(self.fc1_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, self.hidden))
        x = self.fc2_linear(x.flatten(0, 1))
        return self.fc2_lif(self.fc2_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C))


class ConvMLP(nn.Module):
    """1x1-conv MLP on ``[T, B, C, *spatial]``: Conv2d + BN2d (``dims=2``, ImageNet) or Conv1d + BN1d (DVS)."""

    def __init__(self, dim: int, hidden: int, tau: float, dims: int):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.hidden = hidden
        self.fc1_conv = conv(dim, hidden, kernel_size=1, stride=1)
        self.fc1_bn = bn(hidden)
        self.fc1_lif = _lif(tau)
        self.fc2_conv = conv(hidden, dim, kernel_size=1, stride=1)
        self.fc2_bn = bn(dim)
        self.fc2_lif = _lif(tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C = x.shape[0], x.shape[1], x.shape[2]
        spatial = x.shape[3:]
        x = self.fc1_lif(self.fc1_bn(self.fc1_conv(x.flatten(0, 1))).reshape(T, B, self.hidden, *spatial))
        return self.fc2_lif(self.fc2_bn(self.fc2_conv(x.flatten(0, 1))).reshape(T, B, C, *spatial))


class Block(nn.Module):
    """``x = x (+) attn(x)``, ``x = x (+) mlp(x)``; ``norm1`` / ``norm2`` / ``drop_path`` are never called."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, tau: float, variant: Variant, residual: str):
        super().__init__()
        self.residual = residual
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=variant.norm_eps)  # unused in forward (as in the official code)
        if variant.mlp_dims == 0:
            self.attn = LinearSSA(dim, num_heads, tau, variant.attn_order, variant.attn_scale)
        else:
            self.attn = ConvSSA(dim, num_heads, tau, variant.attn_order, variant.attn_scale, variant.dvs_extras)
        if variant.drop_path:
            self.drop_path = nn.Identity()  # unused in forward (as in the official code)
        self.norm2 = nn.LayerNorm(dim, eps=variant.norm_eps)  # unused in forward (as in the official code)
        if variant.mlp_dims == 0:
            self.mlp = LinearMLP(dim, hidden, tau)
        else:
            self.mlp = ConvMLP(dim, hidden, tau, variant.mlp_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = merge(x, self.attn(x), self.residual)
        return merge(x, self.mlp(x), self.residual)


def check_config(img_size: int, in_channels: int, num_classes: int, embed_dim: int, num_heads: int,
                 mlp_ratio: float, depth: int, T: int, residual: str, min_divisor: int) -> None:
    """Raise ``ValueError`` for a configuration the Spikformer topology cannot take."""
    for key, val in (("img_size", img_size), ("in_channels", in_channels), ("num_classes", num_classes),
                     ("embed_dim", embed_dim), ("num_heads", num_heads), ("depth", depth), ("T", T)):
        if isinstance(val, bool) or int(val) != val or val < 1:
            raise ValueError(f"{key} must be a positive integer, got {val!r}")
    if embed_dim % 8:
        raise ValueError(f"embed_dim must be a multiple of 8 (the stem uses D/8, D/4, D/2), got {embed_dim}")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    if img_size % min_divisor:
        raise ValueError(f"img_size must be a multiple of {min_divisor}, got {img_size}")
    if not mlp_ratio > 0 or int(embed_dim * mlp_ratio) < 1:
        raise ValueError(f"mlp_ratio must give a positive hidden width, got {mlp_ratio}")
    if residual not in RESIDUALS:
        raise ValueError(f"residual must be one of {', '.join(RESIDUALS)}, got {residual!r}")


def init_weights(m: nn.Module) -> None:
    """The official ``_init_weights``: Linear ~ trunc_normal(0.02), bias 0; LayerNorm (1, 0); convs as torch."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class Spikformer(nn.Module):
    """The whole network: ``patch_embed`` (SPS), ``block`` (ModuleList), ``head``; DVS adds unused extras.

    ``variant`` is a key of :data:`VARIANTS` (``"cifar"``, ``"imagenet"``, ``"dvs"``).
    """

    def __init__(self, variant: str, img_size: int, in_channels: int, num_classes: int, embed_dim: int,
                 num_heads: int, mlp_ratio: float, depth: int, T: int, tau: float, residual: str = "add"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown Spikformer variant {variant!r}; known: {', '.join(VARIANTS)}")
        spec = VARIANTS[variant]
        check_config(img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T, residual,
                     spec.min_divisor)
        self.variant = variant
        self.stream = spec.stream
        self.event_input = variant == "dvs"
        self.img_size = img_size
        self.num_classes = num_classes
        self.T = T
        self.residual = residual
        self.patch_embed = SPS(in_channels, embed_dim, tau, spec.pools, residual, out_layout=spec.stream)
        if spec.dvs_extras:
            num_patches = (img_size // 16) ** 2
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim))  # unused in forward
        self.block = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, tau, spec, residual)
                                   for _ in range(depth))
        if spec.dvs_extras:
            self.norm = nn.LayerNorm(embed_dim, eps=spec.norm_eps)  # unused in forward
        self.head = nn.Linear(embed_dim, num_classes)
        if spec.dvs_extras:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_in, H, W] -> [T, B, D]``: the residual stream averaged over tokens."""
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        if self.stream == "tbnc":
            return x.mean(2)
        if self.stream == "tbcn":
            return x.mean(3)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = time_major_input(x, self.T, self.event_input)
        x = self.forward_features(x)
        return self.head(x.mean(0))




@register("spikformer-cifar", "spikformer", image_input_shape,
          "Spikformer CIFAR-10/100 (4-384, T=4): SPS with 2 pools (32x32 -> 8x8 tokens), Linear SSA, SEW residual")
def spikformer_cifar(img_size: int = 32, in_channels: int = 3, num_classes: int = 10, embed_dim: int = 384,
                     num_heads: int = 12, mlp_ratio: float = 4, depth: int = 4, T: int = 4, tau: float = 2.0,
                     residual: str = "add") -> Spikformer:
    """Official ``cifar10/`` config (``cifar10.yml``); num_classes=100 gives the CIFAR-100 model."""
    return Spikformer("cifar", img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T, tau,
                      residual)


@register("spikformer-imagenet", "spikformer", image_input_shape,
          "Spikformer ImageNet (8-512, T=4): SPS with 4 pools (224 -> 14x14 tokens), q@(k^T v) SSA, SEW residual")
def spikformer_imagenet(img_size: int = 224, in_channels: int = 3, num_classes: int = 1000, embed_dim: int = 512,
                        num_heads: int = 8, mlp_ratio: float = 4, depth: int = 8, T: int = 4, tau: float = 2.0,
                        residual: str = "add") -> Spikformer:
    """Official ``imagenet/`` factory (8-512, 8 heads); embed_dim / depth give 8-384, 6-512, 10-512, 8-768."""
    return Spikformer("imagenet", img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T,
                      tau, residual)


@register("spikformer-dvs", "spikformer", event_input_shape,
          "Spikformer CIFAR10-DVS (2-256, 16 heads, T=16): input [B, T, 2, 128, 128] event frames, scale 0.25")
def spikformer_dvs(img_size: int = 128, in_channels: int = 2, num_classes: int = 10, embed_dim: int = 256,
                   num_heads: int = 16, mlp_ratio: float = 4, depth: int = 2, T: int = 16, tau: float = 2.0,
                   residual: str = "add") -> Spikformer:
    """Official ``cifar10dvs/`` factory; ``T`` (the training script's ``--T``) only sets the input length."""
    return Spikformer("dvs", img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T, tau,
                      residual)
