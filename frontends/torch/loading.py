"""Load the user's model safely (docs/design.md, §2) and say clearly what is wrong when it cannot be loaded.

Sources of a model, in the order the CLI checks them:

* ``--model FILE.py:NAME`` or ``--model pkg.module:NAME`` (the user's own code, e.g. the official
  Spikformer ``model.py``) with ``--model-args JSON`` and optionally ``--weights FILE``. The file is
  imported as a proper module: registered in ``sys.modules`` under its stem, its folder on ``sys.path``,
  because official model files register themselves with timm at import time. A file inside a package (its
  folder has an ``__init__.py``) is imported as that package's module, so its relative imports work; the
  working directory is on ``sys.path`` too (a repository's ``from module import ...``).
* ``--arch NAME`` (a zoo architecture) with ``--model-args`` as its config and optional ``--weights``.
* A checkpoint file: a dict ``{arch, config, state_dict, input_shape?, timesteps?}`` built from the zoo.

Checkpoints are read without executing code: first with ``torch.load(weights_only=True)``; timm-style
training checkpoints (which also pickle an ``argparse.Namespace`` of run arguments) are read with a
restricted unpickler that admits only tensor-rebuilding functions and plain containers. Anything else in
the pickle (a whole pickled ``nn.Module``) would run code on load: it is refused unless the user passes
``allow_pickle=True`` (``--allow-pickle``).

A TorchScript archive (``torch.jit.save``) is refused the same way, before torch reads it: ``torch.load``
hands such a zip to ``torch.jit.load`` whatever ``weights_only`` says, and that runs the archive's
TorchScript (its ``__setstate__`` methods, which can write any file). Whether a file is one is decided
as ``torch.load`` decides it, with torch's own zip reader: Python's ``zipfile`` finds a zip's directory
differently and can be shown other member names. With ``--allow-pickle`` it is loaded with
``torch.jit.load`` and serves as ``--weights`` through its ``state_dict()``; as the model itself it is
refused even then: its forward runs as TorchScript, which the tracer cannot see, so loading it could only
run its code.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import pickle
import sys
import zipfile
from typing import Any

import torch
from torch import nn

from spikec.budget import MEMORY_BUDGET_BYTES
from spikec.errors import InputError
from spikec.files import require_regular_file
from spikec.frontends.torch.neurons import cupy_neurons_on_cpu

__all__ = ["ModelSource", "LoadedModel", "load_model", "read_checkpoint", "parse_shape", "load_state_dict",
           "example_input"]


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """What the user named: exactly one of ``checkpoint``, ``model`` (code reference) or ``arch``."""

    checkpoint: str | None = None
    model: str | None = None
    arch: str | None = None
    model_args: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None
    allow_pickle: bool = False
    input_shape: tuple[int, ...] | None = None
    timesteps: int | None = None
    input_layout: str = "B"
    merged_neurons_at_batch_1: bool = False  # trace_module's option of that name


@dataclasses.dataclass
class LoadedModel:
    """A built model; ``input_exp`` and ``input_range`` are how its input is quantized unless the user
    says otherwise (a zoo architecture's :attr:`~spikec.models.ZooEntry.input_encoding`; else images in
    [0, 1] at 8 fractional bits)."""

    module: nn.Module
    input_shape: tuple[int, ...]
    input_layout: str
    name: str
    input_exp: int = 8
    input_range: tuple[float, float] = (0.0, 1.0)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,32,32"`` -> ``(1, 3, 32, 32)``; every dimension a positive integer."""
    try:
        dims = tuple(int(p) for p in str(text).replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise InputError(f"input shape {text!r} is not a comma-separated list of integers, e.g. 1,3,32,32") from None
    if not dims or any(d < 1 for d in dims):
        raise InputError(f"input shape {text!r} needs positive dimensions, e.g. 1,3,32,32")
    return dims


# ---------------------------------------------------------------- safe checkpoint reading

_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("argparse", "Namespace"): argparse.Namespace,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
}


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, qualified: str):
        super().__init__(qualified)
        self.qualified = qualified


class _CheckpointUnpickler(pickle.Unpickler):
    """Admits only tensors, storages, dtypes, plain containers, and timm's ``argparse.Namespace``."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return importlib.import_module("numpy.core.multiarray").scalar
        if module == "numpy" and name == "dtype":
            return importlib.import_module("numpy").dtype
        if module.startswith("numpy.dtypes") and name.endswith("DType"):
            return getattr(importlib.import_module("numpy.dtypes"), name)
        raise _RefusedGlobal(f"{module}.{name}")


class _CheckpointPickleModule:
    """The ``pickle_module`` handed to ``torch.load`` so it unpickles through the allowlist."""

    Unpickler = _CheckpointUnpickler
    __name__ = "spikec_checkpoint_pickle"

    @staticmethod
    def load(file, **kwargs):
        return _CheckpointUnpickler(file, **kwargs).load()


def _describe_unreadable(path: str, exc: Exception) -> InputError:
    with contextlib.suppress(OSError):
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            try:
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                return InputError(f"{path} is a damaged PyTorch archive"
                                  f"{f' (member {bad} is corrupt)' if bad else ''}: {exc}")
            except zipfile.BadZipFile:
                return InputError(f"{path} is a truncated or damaged PyTorch archive; save it again")
    return InputError(f"{path} is not a PyTorch checkpoint (torch.load cannot read it: {type(exc).__name__})")


def _is_torchscript_archive(path: str) -> bool:
    """Whether ``torch.load`` would hand ``path`` to ``torch.jit.load``: decided by torch's own test on torch's
    own zip reader, so that no archive this check passes is one torch dispatches."""
    with open(path, "rb") as f:
        if not torch.serialization._is_zipfile(f):
            return False
        try:
            with torch.serialization._open_zipfile_reader(f) as archive:
                return torch.serialization._is_torchscript_zip(archive)
        except RuntimeError as exc:  # torch.load could not read this zip either
            raise _describe_unreadable(path, exc) from None


def read_checkpoint(path: str, allow_pickle: bool = False) -> Any:
    """Read a ``torch.save`` file without running code from it (see the module docstring)."""
    require_regular_file(path, "a checkpoint file")
    if _is_torchscript_archive(path):
        if not allow_pickle:
            raise InputError(f"{path} is a TorchScript archive (torch.jit.save); loading it would run code from the "
                             "file. Save a checkpoint dict {arch, config, state_dict} instead, or pass --allow-pickle "
                             "if you trust the file")
        try:
            return torch.jit.load(path, map_location="cpu")
        except Exception as exc:
            raise InputError(f"{path} could not be loaded as TorchScript even with --allow-pickle: "
                             f"{type(exc).__name__}: {exc}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    except Exception as exc:  # zip, EOF and format errors: the file is not a readable checkpoint
        raise _describe_unreadable(path, exc) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_CheckpointPickleModule)
    except _RefusedGlobal as refused:
        if not allow_pickle:
            raise InputError(f"{path} pickles Python objects ({refused.qualified}); loading it would run code "
                             "from the file. Save a checkpoint dict {arch, config, state_dict} instead, or pass "
                             "--allow-pickle if you trust the file") from None
    except Exception as exc:
        raise _describe_unreadable(path, exc) from None
    try:
        with cupy_neurons_on_cpu():
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"{path} could not be unpickled even with --allow-pickle: "
                         f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- state dicts


def _state_dict_of(payload: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(payload, nn.Module):  # a pickled or TorchScript module, loaded with --allow-pickle
        payload = payload.state_dict()
    if isinstance(payload, dict):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise InputError(f"{path} holds no state_dict (expected a dict of tensors, or one under 'state_dict' or "
                         "'model')")
    bad_keys = [k for k in payload if not isinstance(k, str)]
    if bad_keys:
        raise InputError(f"{path}: the state_dict has non-string key(s) such as {bad_keys[0]!r}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in payload.items()}


def load_state_dict(module: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Load ``state`` strictly, or say which keys are missing, unexpected or of the wrong shape."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            shown = ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise InputError(f"{path} does not fit {type(module).__name__}: {'; '.join(problems)}")
    for key, tensor in state.items():
        _check_tensor(key, tensor, own[key], path)
    module.load_state_dict(state, strict=True)


def _check_tensor(key: str, tensor: torch.Tensor, own: torch.Tensor, path: str) -> None:
    """A checkpoint tensor must be dense, of the kind the model's own tensor is (a float weight, an integer
    counter such as BatchNorm's ``num_batches_tracked``), and finite: loading would otherwise cast it
    silently or carry NaN through every layer."""
    if tensor.layout != torch.strided:
        raise InputError(f"{path}: {key} is a {tensor.layout} tensor; save dense tensors (tensor.to_dense())")
    if tensor.is_complex() or tensor.dtype == torch.bool or tensor.is_floating_point() != own.is_floating_point():
        want = "floating-point" if own.is_floating_point() else str(own.dtype).replace("torch.", "")
        raise InputError(f"{path}: {key} has dtype {str(tensor.dtype).replace('torch.', '')}; the model needs "
                         f"{want} values there")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{path}: {key} holds NaN or infinite values")


# ---------------------------------------------------------------- user code


def _package_module(path: str) -> tuple[str, str] | None:
    """``(folder to import from, dotted module name)`` for a file inside a package (its folder holds an
    ``__init__.py``), so that its relative imports resolve; None for a file outside any package."""
    folder, module = os.path.split(os.path.abspath(path))
    parts = [os.path.splitext(module)[0]]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    return (folder, ".".join(parts)) if len(parts) > 1 else None


def _import_reference(reference: str):
    if ":" not in reference:
        raise InputError(f"--model {reference!r}: expected FILE.py:NAME or package.module:NAME")
    target, _, name = reference.rpartition(":")
    # the working directory is importable, as it is for `python -m` and for a model repository's own scripts
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    packaged = _package_module(target) if target.endswith(".py") and os.path.isfile(target) else None
    if packaged is not None:
        # a file of a package is imported as the package's module: its relative imports need the package
        folder, target = packaged
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module = _import_file(target, reference) if target.endswith(".py") else _import_module(target, reference)
    if not hasattr(module, name):
        raise InputError(f"--model {reference}: {target} defines no {name!r}")
    return getattr(module, name)


def _import_file(target: str, reference: str):
    """A file outside any package, as the module named by its stem, its folder on ``sys.path``."""
    if not os.path.isfile(target):
        raise InputError(f"--model {reference}: {target}: no such file")
    folder = os.path.dirname(os.path.abspath(target))
    module_name = os.path.splitext(os.path.basename(target))[0]
    if folder not in sys.path:
        sys.path.insert(0, folder)
    existing = sys.modules.get(module_name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") == os.path.abspath(target):
        return existing
    spec = importlib.util.spec_from_file_location(module_name, os.path.abspath(target))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with cupy_neurons_on_cpu():
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise InputError(f"importing {target} failed: {type(exc).__name__}: {exc}") from None
    return module


def _import_module(target: str, reference: str):
    try:
        with cupy_neurons_on_cpu():
            return importlib.import_module(target)
    except ImportError as exc:
        raise InputError(f"--model {reference}: cannot import {target}: {exc}") from None
    except (Exception, SystemExit) as exc:
        raise InputError(f"importing {target} failed: {type(exc).__name__}: {exc}") from None


def _construct(factory, args: dict, what: str) -> nn.Module:
    try:
        with cupy_neurons_on_cpu():
            model = factory(**args)
    except (Exception, SystemExit) as exc:
        raise InputError(f"building {what} with --model-args {json.dumps(args)} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise InputError(f"{what} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _checkpoint_shape(shape, path: str) -> tuple[int, ...] | None:
    """A checkpoint's ``input_shape``: a list of positive integers, or absent."""
    if shape is None:
        return None
    if not isinstance(shape, (list, tuple)) or not shape:
        raise InputError(f"{path}: 'input_shape' must be a list of positive integers, got {type(shape).__name__}")
    return tuple(_positive_int(d, f"{path}: 'input_shape' dimension") for d in shape)


def _shape_or_error(shape, what: str) -> tuple[int, ...]:
    if shape is None:
        raise InputError(f"the input shape of {what} is unknown: pass --input-shape, e.g. 1,3,32,32")
    return tuple(int(d) for d in shape)


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")
    return value


def _check_config(config: dict, where: str) -> None:
    """Zoo options are JSON scalars; ``T`` and sizes are positive integers (a checkpoint or --model-args
    could say ``T: 0``, ``2.5`` or a tensor)."""
    for key, value in config.items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool, type(None))):
            raise InputError(f"{where}: option {key!r} must be a number, string or boolean, got "
                             f"{type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{where}: option {key!r} must be finite, got {value!r}")
        if key in _POSITIVE_OPTIONS:
            _positive_int(value, f"{where}: option {key!r}")


_POSITIVE_OPTIONS = ("T", "depth", "embed_dim", "num_heads", "img_size", "in_channels", "num_classes")


def _zoo_config(arch: str, config: dict, timesteps: int | None) -> dict:
    from spikec.models import zoo_entry

    config = dict(config)
    _check_config(config, arch)
    if timesteps is not None:
        timesteps = _positive_int(timesteps, f"{arch}: timesteps")
        if "T" not in zoo_entry(arch).config_defaults():
            raise InputError(f"{arch} has no time-step option T")
        config["T"] = int(timesteps)
    return config


def _load_zoo(arch: str, config: dict, source: ModelSource, state: dict | None, state_path: str,
              input_shape=None, timesteps: int | None = None) -> LoadedModel:
    from spikec.models import build_model, default_input_shape, zoo_entry

    config = _zoo_config(arch, config, source.timesteps if source.timesteps is not None else timesteps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ZOO_INIT_SEED)       # without --weights, the same random weights in every run
        module = build_model(arch, config)
    if state is not None:
        load_state_dict(module, state, state_path)
    shape = source.input_shape or (tuple(input_shape) if input_shape else default_input_shape(arch, config))
    input_exp, input_range = zoo_entry(arch).input_encoding
    return LoadedModel(module, tuple(shape), source.input_layout, arch.replace("-", "_"), input_exp, input_range)


ZOO_INIT_SEED = 0
"""The seed a zoo architecture is initialised with, so that ``--arch`` without ``--weights`` compiles to the same
artifact every time (the caller's random state is left as it was)."""


def load_model(source: ModelSource) -> LoadedModel:
    """Build the model the user named, with its weights, and settle its input shape."""
    given = [n for n in ("checkpoint", "model", "arch") if getattr(source, n)]
    if len(given) != 1:
        raise InputError("name one model: a checkpoint file, --model FILE.py:NAME, or --arch NAME"
                         + (f" (got {', '.join(given)})" if given else ""))
    if source.model:
        return _load_code(source)
    if source.arch:
        state = None
        if source.weights:
            state = _state_dict_of(read_checkpoint(source.weights, source.allow_pickle), source.weights)
        return _load_zoo(source.arch, source.model_args, source, state, source.weights or "")
    return _load_checkpoint(source)


def _load_code(source: ModelSource) -> LoadedModel:
    """``--model FILE.py:NAME`` or ``module:NAME`` with ``--model-args`` and optional ``--weights``."""
    factory = _import_reference(source.model)
    if source.timesteps is not None:
        raise InputError("--timesteps applies to zoo models; pass T to your model through --model-args")
    module = _construct(factory, source.model_args, source.model)
    if source.weights:
        load_state_dict(module, _state_dict_of(read_checkpoint(source.weights, source.allow_pickle),
                                               source.weights), source.weights)
    name = source.model.rpartition(":")[2]
    return LoadedModel(module, _shape_or_error(source.input_shape, source.model), source.input_layout, name)


def _load_checkpoint(source: ModelSource) -> LoadedModel:
    """A checkpoint file: a zoo checkpoint dict, or (with ``--allow-pickle``) a pickled module."""
    path = source.checkpoint
    if path.endswith(".pt2"):
        from spikec.frontends.torch.exported import load_program

        return load_program(source)
    if os.path.isfile(path) and _is_torchscript_archive(path):
        raise InputError(f"{path} is a TorchScript archive (torch.jit.save): spikec traces a model's Python code, "
                         "which the archive does not hold, and loading it would run code from the file. Save a "
                         "checkpoint dict {arch, config, state_dict} instead, or pass the model's code with --model "
                         "FILE.py:NAME and this file with --weights (and --allow-pickle if you trust it)")
    payload = read_checkpoint(path, source.allow_pickle)
    if isinstance(payload, nn.Module):
        return LoadedModel(payload, _shape_or_error(source.input_shape, path), source.input_layout,
                           type(payload).__name__)
    if isinstance(payload, dict) and isinstance(payload.get("arch"), str) and "state_dict" in payload:
        config = payload.get("config", {})
        config = {} if config is None else config
        if not isinstance(config, dict):
            raise InputError(f"{path}: 'config' must be a dict of the architecture's options")
        merged = {**config, **source.model_args}
        return _load_zoo(payload["arch"], merged, source, _state_dict_of(payload, path), path,
                         _checkpoint_shape(payload.get("input_shape"), path), payload.get("timesteps"))
    if isinstance(payload, dict):
        raise InputError(f"{path} is a state_dict without an 'arch': pass the model's code with "
                         "--model FILE.py:NAME (and this file with --weights), or --arch NAME --weights FILE")
    raise InputError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict or module")


def example_input(loaded: LoadedModel, seed: int = 0) -> torch.Tensor:
    """A deterministic random input of the model's input shape; one beyond the memory budget is refused before
    it is allocated."""
    size = 4 * math.prod(loaded.input_shape)
    if size > MEMORY_BUDGET_BYTES:
        raise InputError(f"an input of shape {list(loaded.input_shape)} takes {size / 2**30:.1f} GiB, more than the "
                         f"{MEMORY_BUDGET_BYTES >> 30} GiB budget: give a smaller --input-shape")
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(loaded.input_shape, generator=generator)
