"""The model zoo: spiking transformers whose module names and state_dict keys match the official code.

Each architecture is registered under a name (``spikformer-cifar``, ``spikingformer-imagenet``, ...) with a
builder that takes keyword configuration (depth, embed_dim, num_heads, mlp_ratio, T, img_size,
in_channels, num_classes, ...) and a rule that gives the input shape its ``forward`` takes. A checkpoint
dict names its ``arch`` and ``config``; :func:`build_model` turns those back into a module.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

import torch
from torch import nn

from spikec.errors import InputError

__all__ = ["ZooEntry", "register", "build_model", "zoo_names", "zoo_entry", "default_input_shape",
           "image_input_shape", "event_input_shape", "time_major_input"]


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One architecture: how to build it and what input its ``forward`` takes."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    input_shape: Callable[[dict], tuple[int, ...]]
    summary: str

    @property
    def input_encoding(self) -> tuple[int, tuple[float, float]]:
        """``(input_exp, input_range)`` that fit the data this architecture reads: images normalised to
        [0, 1] at 8 fractional bits; event frames hold per-pixel event counts, integers quantized exactly
        (exponent 0) up to 255 per frame and polarity."""
        if self.input_shape is event_input_shape:
            return 0, (0.0, 255.0)
        return 8, (0.0, 1.0)

    def config_defaults(self) -> dict:
        params = inspect.signature(self.builder).parameters
        return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


_ZOO: dict[str, ZooEntry] = {}


def register(name: str, family: str, input_shape: Callable[[dict], tuple[int, ...]], summary: str):
    """Decorator registering a builder ``f(**config) -> nn.Module`` under ``name``."""

    def wrap(builder):
        if name in _ZOO:
            raise ValueError(f"zoo architecture {name!r} registered twice")
        _ZOO[name] = ZooEntry(name, family, builder, input_shape, summary)
        return builder

    return wrap


def _load_families() -> None:
    from spikec.models import spikformer, spikingformer, sdt, spikformer_v2  # noqa: F401  (registers)


def zoo_names() -> list[str]:
    _load_families()
    return sorted(_ZOO)


def zoo_entry(name: str) -> ZooEntry:
    _load_families()
    if name not in _ZOO:
        raise InputError(f"unknown zoo architecture {name!r}; known: {', '.join(sorted(_ZOO))}")
    return _ZOO[name]


def _full_config(entry: ZooEntry, config: dict) -> dict:
    defaults = entry.config_defaults()
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise InputError(f"{entry.name} has no option(s) {', '.join(unknown)}; "
                         f"options: {', '.join(sorted(defaults))}")
    return {**defaults, **config}


def build_model(name: str, config: dict | None = None) -> nn.Module:
    """Build zoo architecture ``name`` with ``config`` overriding its defaults (unknown keys are an error)."""
    entry = zoo_entry(name)
    full = _full_config(entry, dict(config or {}))
    try:
        return entry.builder(**full)
    except (ValueError, TypeError, AssertionError) as exc:
        raise InputError(f"cannot build {name} with config {full}: {exc}") from exc


def default_input_shape(name: str, config: dict | None = None, batch: int = 1) -> tuple[int, ...]:
    """The input shape ``forward`` takes for ``name`` built with ``config``, batch first (or [B, T, ...])."""
    entry = zoo_entry(name)
    return (batch, *entry.input_shape(_full_config(entry, dict(config or {}))))


def image_input_shape(cfg: dict) -> tuple[int, ...]:
    """Per-sample input of an image model: ``(in_channels, img_size, img_size)``."""
    return (cfg["in_channels"], cfg["img_size"], cfg["img_size"])


def event_input_shape(cfg: dict) -> tuple[int, ...]:
    """Per-sample input of an event-frame (DVS) model: ``(T, in_channels, img_size, img_size)``."""
    return (cfg["T"], cfg["in_channels"], cfg["img_size"], cfg["img_size"])


def time_major_input(x: torch.Tensor, T: int, event_input: bool) -> torch.Tensor:
    """The ``[T, B, C, H, W]`` sequence a zoo model runs on, as the official forwards make it: event frames
    ``[B, T, C, H, W]`` are moved time-first; an image ``[B, C, H, W]`` is repeated over ``T`` steps
    (direct encoding)."""
    if event_input:
        return x.permute(1, 0, 2, 3, 4)
    return x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
