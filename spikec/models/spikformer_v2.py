"""Spikformer V2 (Zhou et al., arXiv 2401.02020): Spikformer with a Spiking Convolutional Stem (SCS).

**No official code exists** (the ZK-Zhou/spikformer README says the V2 code will be released later; issues
#20 and #32 asking for it are open), so this module is a reconstruction and its module names are ours.
A checkpoint of the authors' model, should one appear, will not load into it by key.

What the public record says, and what this module takes from it:

* Abstract (paraphrased): V2 adds a Spiking Convolutional Stem (SCS), built from supplementary
  convolutional layers, to Spikformer -> the network is Spikformer with its patch embedding (SPS)
  replaced by an SCS that *adds* conv layers to it; everything after the stem is Spikformer.
* Abstract (paraphrased): the 8-layer V2 reaches 80.38% ImageNet accuracy at 4 time steps; the STEP
  benchmark's model table lists that result as the 8-512 model -> defaults depth=8, embed_dim=512,
  T=4, 224x224 ImageNet input. (The 172M 16-layer T=1 model is the SSL-pretrained one.)
* Third-party summaries of the paper describe the SCS as a deeper convolutional stem meant to
  reduce the information SPS loses -> the extra layers are full conv + BN + spiking-neuron layers
  placed where SPS loses information, before each max-pool.

The paper's method section (exact layer count, kernel sizes, strides, widths of the SCS) was not
available to us, so the following are **our choices**:

1. SCS = the Spikformer ImageNet SPS with one supplementary ``3x3 conv (stride 1, no bias) -> BN -> LIF``
   unit per stage, inserted after the stage's own conv-BN-LIF and before its max-pool, at the stage's
   width (D/8, D/4, D/2, D). Downsampling stays SPS's: four 3x3 / stride-2 max-pools on spikes
   (224 -> 14x14 = 196 tokens), then the SPS relative position embedding (``rpe_conv/bn/lif``) merged with
   the pooled spikes. Names: the SPS part keeps the official Spikformer names (``proj_conv``, ``proj_bn``,
   ``proj_lif``, ``maxpool``, ``proj_conv1``, ..., ``rpe_conv``), the supplementary units are
   ``supp_conv{k}`` / ``supp_bn{k}`` / ``supp_lif{k}`` with Spikformer's suffix rule (none for stage 0).
   Consequence: every Spikformer-ImageNet SPS key exists here with the same shape, so a Spikformer
   ImageNet checkpoint initialises the V2 stem and blocks (``strict=False``; missing = the ``supp_*``
   keys, unexpected = the unused ``norm1`` / ``norm2``). Every supplementary conv sees spikes, so the
   only conv with analog input is still ``patch_embed.proj_conv`` (the encoding layer).
2. Blocks, attention and readout are Spikformer ImageNet's (``q@(k^T v) * 0.125``, 1x1 Conv1d q/k/v,
   1x1 Conv2d MLP, SEW residual, mean over tokens then time, ``head``), without the never-used
   ``norm1`` / ``norm2`` / ``drop_path`` of the official V1 blocks (there is no checkpoint to match).
3. Residual: SEW ADD by default, as in Spikformer V1 (the paper's choice for V2 is not public; issue #22
   asks; the thread we could read has no answer). ``residual="iand"`` gives SEW-IAND as in
   :mod:`spikec.models.spikformer` (the SCS's RPE merge and both block residuals).
4. Parameter count of the default 8-512 config: 32,824,744 (Spikformer 8-512 without its unused
   LayerNorms, 29,689,384, plus 3,135,360 for the supplementary units). A third-party table lists the
   8-layer V2 at 51.55M; we could not check that figure against the paper and did not tune our stem to it.
"""

from __future__ import annotations

import torch
from torch import nn

from spikec.models import image_input_shape, register, time_major_input
from spikec.models.spikformer import (VARIANTS, SPS, ConvMLP, ConvSSA, _suffix, check_config,
                                      init_weights, merge)

__all__ = ["SCS", "BlockV2", "SpikformerV2", "spikformer_v2"]


class SCS(SPS):
    """Spiking Convolutional Stem: SPS with a supplementary conv-BN-LIF unit before each stage's pool.

    Stage k: ``proj_conv{k} -> proj_bn{k} -> proj_lif{k} -> supp_conv{k} -> supp_bn{k} -> supp_lif{k}
    -> maxpool{k}``; then ``rpe_conv -> rpe_bn -> rpe_lif`` merged with the pooled spikes.
    ``[T, B, C_in, H, W] -> [T, B, D, H/16, W/16]``.
    """

    def __init__(self, in_channels: int, embed_dim: int, tau: float, residual: str = "add"):
        super().__init__(in_channels, embed_dim, tau, pools=(0, 1, 2, 3), residual=residual, out_layout="tbchw")

    def _add_stage(self, k: int, c_in: int, c_out: int, tau: float, pool: bool) -> None:
        s = _suffix(k)
        self._add_unit(f"proj_conv{s}", f"proj_bn{s}", f"proj_lif{s}", c_in, c_out, tau)
        self._add_unit(f"supp_conv{s}", f"supp_bn{s}", f"supp_lif{s}", c_out, c_out, tau)
        if pool:
            self._add_pool(f"maxpool{s}")


class BlockV2(nn.Module):
    """Spikformer ImageNet block without the unused LayerNorms: ``x (+) attn(x)``, then ``x (+) mlp(x)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, tau: float, residual: str):
        super().__init__()
        spec = VARIANTS["imagenet"]
        self.residual = residual
        self.attn = ConvSSA(dim, num_heads, tau, spec.attn_order, spec.attn_scale)
        self.mlp = ConvMLP(dim, int(dim * mlp_ratio), tau, dims=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = merge(x, self.attn(x), self.residual)
        return merge(x, self.mlp(x), self.residual)


class SpikformerV2(nn.Module):
    """``patch_embed`` (SCS), ``block`` (ModuleList of :class:`BlockV2`), ``head``; image input ``[B, C, H, W]``."""

    def __init__(self, img_size: int, in_channels: int, num_classes: int, embed_dim: int, num_heads: int,
                 mlp_ratio: float, depth: int, T: int, tau: float, residual: str = "add"):
        super().__init__()
        check_config(img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T, residual,
                     min_divisor=16)
        self.img_size = img_size
        self.num_classes = num_classes
        self.T = T
        self.residual = residual
        self.patch_embed = SCS(in_channels, embed_dim, tau, residual)
        self.block = nn.ModuleList(BlockV2(embed_dim, num_heads, mlp_ratio, tau, residual) for _ in range(depth))
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_in, H, W] -> [T, B, D]``: the residual stream averaged over tokens."""
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = time_major_input(x, self.T, False)
        x = self.forward_features(x)
        return self.head(x.mean(0))


@register("spikformer-v2", "spikformer-v2", image_input_shape,
          "Spikformer V2 ImageNet (8-512, T=4): Spikformer with our reconstruction of the SCS stem "
          "(SPS + one conv-BN-LIF per stage); no official code, names are ours")
def spikformer_v2(img_size: int = 224, in_channels: int = 3, num_classes: int = 1000, embed_dim: int = 512,
                  num_heads: int = 8, mlp_ratio: float = 4, depth: int = 8, T: int = 4, tau: float = 2.0,
                  residual: str = "add") -> SpikformerV2:
    """The paper's 8-layer ImageNet model (80.38% at T=4) as we reconstruct it; see the module docstring."""
    return SpikformerV2(img_size, in_channels, num_classes, embed_dim, num_heads, mlp_ratio, depth, T, tau,
                        residual)
