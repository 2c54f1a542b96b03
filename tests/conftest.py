"""Shared test helpers: small zoo configurations and models with non-trivial batch-norm statistics."""

from __future__ import annotations

import pytest
import torch

from spikec.models import build_model, default_input_shape, zoo_names

_IMAGE_SIZE = {"cifar": 32, "imagenet": 64, "dvs": 64, "v2": 64}


def small_config(arch: str) -> dict:
    """A configuration of ``arch`` small enough to trace and run in well under a second."""
    return {"embed_dim": 64, "num_heads": 4, "depth": 2, "T": 2, "img_size": _IMAGE_SIZE[arch.rsplit("-", 1)[1]]}


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every batch norm random statistics and affine parameters, so folding and tracing are tested
    on something other than the identity."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.3)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
    return model.eval()


def small_model(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorm(build_model(arch, small_config(arch)), seed)


def small_input(arch: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(default_input_shape(arch, small_config(arch), batch), generator=generator) * 2


ZOO = zoo_names()


@pytest.fixture(params=ZOO)
def zoo_arch(request) -> str:
    return request.param
