"""Shared test helpers: small zoo configurations and models with non-trivial batch-norm statistics; and the
optional packages some tests need.

A test that needs an optional package carries its marker (``lava``, ``ray``, ``spikingjelly_legacy``,
``spikingjelly2``, ``py311``) and is skipped where the package is missing, so the core suite runs on Python 3.11
without Lava. ``SPIKEC_TEST_REQUIRE`` (a comma list of markers, set by ``make test``) turns a missing package into
an error instead: an environment that should have it never skips its tests silently.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

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


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _spikingjelly_major() -> int | None:
    try:
        return int(importlib.metadata.version("spikingjelly").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return None


# marker -> (whether this environment has it, what it is)
OPTIONAL = {
    "lava": (_installed("lava.magma.core"), "lava-nc (pip install 'spikec[lava]', Python 3.10)"),
    "ray": (_installed("ray"), "Ray (pip install 'spikec[distributed]')"),
    "spikingjelly_legacy": (_spikingjelly_major() == 0, "spikingjelly 0.0.0.0.x (its clock_driven package)"),
    "spikingjelly2": ((_spikingjelly_major() or 0) >= 2, "spikingjelly 2.0"),
    "py311": (bool(os.environ.get("SPIKEC_TEST_PY311")),
              "a Python 3.11 environment with spikec installed, named by SPIKEC_TEST_PY311 (make test's .venv-py311)"),
}

# modules that import Lava at the top: collected only where it is installed
collect_ignore = [] if OPTIONAL["lava"][0] else ["backends/lava/test_lava_models.py",
                                                 "backends/test_intsim_lava_oracle.py"]


def pytest_collection_modifyitems(config, items):
    required = {name for name in os.environ.get("SPIKEC_TEST_REQUIRE", "").split(",") if name}
    unknown = required - set(OPTIONAL)
    if unknown:
        raise pytest.UsageError(f"SPIKEC_TEST_REQUIRE names unknown markers: {', '.join(sorted(unknown))}")
    for marker, (present, what) in OPTIONAL.items():
        if marker in required and not present:
            raise pytest.UsageError(f"these tests need {what}, which this environment lacks (SPIKEC_TEST_REQUIRE)")
        if present:
            continue
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=f"needs {what}"))


def batchnorm_set_to_fire(model: torch.nn.Module, x: torch.Tensor, reset=lambda model: None,
                          mean: float = 0.8, std: float = 1.5) -> torch.nn.Module:
    """Set every batch norm's statistics, in order, from what it reads on ``x``, so that it outputs about
    ``N(mean, std)`` per channel: an untrained model then fires in every layer, and a bit-exact check on it
    proves something. ``reset`` clears the neurons' state between the calibration runs."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for norm in norms:
        seen = []
        hook = norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
        reset(model)
        with torch.no_grad():
            model(x)
        hook.remove()
        data = torch.cat([s.transpose(0, 1).reshape(norm.num_features, -1) for s in seen], dim=1)
        with torch.no_grad():
            norm.running_mean.copy_(data.mean(dim=1))
            norm.running_var.copy_(data.var(dim=1) + 1e-3)
            norm.weight.fill_(std)
            norm.bias.fill_(mean)
    reset(model)
    return model
