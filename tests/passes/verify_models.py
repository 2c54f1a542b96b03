"""Small models that break the spike-driven rules on purpose; their lines appear in golden diagnostics,
so regenerate the goldens after editing this file (see tests/passes/test_spike_driven.py)."""

from __future__ import annotations

import torch
from torch import nn

from spikec.nn import MultiStepLIF


class IntProducts(nn.Module):
    """SD003: sums of spikes (integers) multiplied with each other, by a matmul and elementwise."""

    def __init__(self, dim: int = 8, T: int = 2):
        super().__init__()
        self.T = T
        self.embed = nn.Linear(dim, dim)
        self.lif_a = MultiStepLIF(tau=2.0)
        self.lif_b = MultiStepLIF(tau=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, N, dim]
        B, N, D = x.shape
        h = self.embed(x.unsqueeze(0).repeat(self.T, 1, 1, 1).flatten(0, 1)).reshape(self.T, B, N, D)
        s = self.lif_a(h) + self.lif_b(h)
        scores = s @ s.transpose(-2, -1)
        gated = s * s
        return (scores @ gated).mean(0)


class PooledSpikes(nn.Module):
    """SD004: average pooling of spikes right before a conv; SD005: max-pooling of a conv output."""

    def __init__(self, channels: int = 4, classes: int = 3, T: int = 2):
        super().__init__()
        self.T = T
        self.conv = nn.Conv2d(2, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.lif = MultiStepLIF(tau=2.0)
        self.avgpool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.maxpool = nn.MaxPool2d(2)
        self.lif2 = MultiStepLIF(tau=2.0)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 2, 8, 8]
        T, B = self.T, x.shape[0]
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1).flatten(0, 1)
        s = self.lif(self.bn(self.conv(x)).reshape(T, B, -1, 8, 8))
        y = self.conv2(self.avgpool(s.flatten(0, 1)))
        s2 = self.lif2(self.maxpool(y).reshape(T, B, -1, 2, 2))
        return self.head(s2.flatten(2, 4).mean(0).reshape(B, -1, 4).mean(2))
