"""Trace a PyTorch module into the IR by running it once on a real example input.

A ``TorchFunctionMode`` sees every torch-level call (``F.conv2d``, ``F.linear``, ``Tensor.flatten``,
``@``, ...) while the model runs eagerly, so Python control flow on shapes (``if len(x.shape) < 5``)
simply runs. Recognised neuron modules are not traced into: each call becomes one ``lif``/``if`` op.
Global module hooks keep the module path of the op being recorded; the innermost stack frame outside
torch and spikec gives its ``file:line``.

Roles. The IR keeps every value ``[T, B, ...]``, but models flatten time into the batch around every
conv (``x.flatten(0, 1)`` ... ``reshape(T, B, ...)``). Each traced tensor therefore has a *role* saying
how the PyTorch tensor lays out the IR value:

    TB      torch [T, B, *s]     IR [T, B, *s]
    MERGED  torch [T*B, *s]      IR [T, B, *s]      (after flatten(0, 1); undone by reshape(T, B, ...))
    BATCH   torch [B, *s]        IR [1, B, *s]      (the input before direct encoding; means over time)

so merging and splitting time never appears in the IR, and per-sample ops (conv, linear, pooling,
views) apply to the IR value with their axes shifted. Ops that would mix time or batch with sample
axes are reported as unsupported.

Errors (an unsupported op, an unknown stateful module) do not stop the trace: each is recorded with its
location, its result is marked poisoned so nothing downstream reports again, and all are raised
together at the end.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import functools
import math
import os
import sys
import traceback
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import spikec.nn as snn
from spikec.errors import InputError
from spikec.frontends.torch.neurons import is_neuron, looks_stateful, neuron_op
from spikec.ir import Graph, Location, TensorType, Value, verify_graph

__all__ = ["trace_module", "TraceResult", "returned_tensors"]


class Role(enum.Enum):
    TB = "TB"
    MERGED = "MERGED"
    BATCH = "BATCH"


@dataclasses.dataclass
class Traced:
    value: Value | None  # None: poisoned by an earlier error
    role: Role
    unfinished: str | None = None  # why the value cannot be read yet (a pad border written in part)


@dataclasses.dataclass
class TraceResult:
    graph: Graph
    output: Any  # what the PyTorch model returned on the example input


def _neuron_spikes(op: str, attrs: dict, x: torch.Tensor) -> torch.Tensor:
    """A recognised neuron's spikes, computed by :mod:`spikec.nn` as the module computes them."""
    if op == "lif":
        return snn.lif_sequence(x, attrs["tau"], attrs["v_threshold"], attrs["v_reset"], attrs["decay_input"])
    if op == "plif":
        return snn.plif_sequence(x, attrs["decay"], attrs["v_threshold"], attrs["v_reset"], attrs["decay_input"])
    return snn.if_sequence(x, attrs["v_threshold"], attrs["v_reset"])


class _Unsupported(Exception):
    """Raised by a handler; becomes one diagnostic at the op's location."""


# Frames in these files are library code, never the user's model: the op's line is the first other frame.
_LIBRARY_PREFIXES = (
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # spikec.frontends
)
_LIBRARY_FILES = (os.path.abspath(snn.__file__), os.path.abspath(contextlib.__file__))


def _display_path(path: str) -> str:
    """A stable, machine-independent path: spikec's own files relative to the spikec checkout
    (``spikec/models/spikformer.py``); an installed package's relative to its site-packages
    (``spikingjelly/activation_based/model/spikformer.py``); the user's files relative to the working directory
    when they are under it (``src/model.py``, which CI code scanning maps back to the repository), else to the
    sys.path entry holding them."""
    path = os.path.abspath(path)
    spikec_root = os.path.dirname(os.path.dirname(os.path.abspath(snn.__file__)))
    if path.startswith(os.path.join(spikec_root, "spikec") + os.sep):
        return os.path.relpath(path, spikec_root)
    roots = [os.path.abspath(p) for p in sys.path if p]
    # an installed package (spikingjelly's models) by its import path, even in a virtual environment under the cwd
    installed = [r for r in roots if os.path.basename(r) in ("site-packages", "dist-packages")
                 and path.startswith(r + os.sep)]
    if installed:
        return os.path.relpath(path, max(installed, key=len))
    cwd = os.getcwd()
    if path.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(path, cwd)
    best = max((r for r in roots if path.startswith(r.rstrip(os.sep) + os.sep)), key=len, default=None)
    return os.path.relpath(path, best) if best else path


@functools.lru_cache(maxsize=4)
def _package_root(init_file: str) -> str:
    return os.path.dirname(os.path.abspath(init_file)) + os.sep


def _spikingjelly_library(filename: str) -> bool:
    """Whether ``filename`` is spikingjelly's own machinery (its layer wrappers, functional helpers, neurons),
    which calls the op a model line asked for; its ``model`` packages are model code like the user's."""
    init_file = getattr(sys.modules.get("spikingjelly"), "__file__", None)
    if init_file is None:
        return False
    root = _package_root(init_file)
    return filename.startswith(root) and f"{os.sep}model{os.sep}" not in filename[len(root):]


def _user_frame(frames=None) -> tuple[str, int] | None:
    """The innermost frame of the user's code (``frames`` defaults to the current stack)."""
    for frame in reversed(frames if frames is not None else traceback.extract_stack()):
        if frame.filename.startswith("<"):
            continue
        filename = os.path.abspath(frame.filename)
        if filename.startswith(_LIBRARY_PREFIXES) or filename in _LIBRARY_FILES or _spikingjelly_library(filename):
            continue
        return _display_path(filename), frame.lineno
    return None


_RECORDED_LOCATION: contextvars.ContextVar[Location | None] = contextvars.ContextVar("spikec_location", default=None)


@contextlib.contextmanager
def recorded_location(location: Location):
    """Ops traced inside take ``location`` instead of the live stack's: a torch.export program's node records the
    module path and line it was exported from (frontends/torch/exported.py), which its run does not have."""
    token = _RECORDED_LOCATION.set(location)
    try:
        yield
    finally:
        _RECORDED_LOCATION.reset(token)


def _pair(value, n: int = 2) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return tuple(int(value[0]) for _ in range(n))
        return tuple(int(v) for v in value)
    return tuple(int(value) for _ in range(n))


def _param(tensor: torch.Tensor | None, cache: dict[int, np.ndarray]) -> np.ndarray | None:
    if tensor is None:
        return None
    key = id(tensor)
    if key not in cache:
        cache[key] = tensor.detach().cpu().to(torch.float32).numpy().copy()
    return cache[key]


class _Tracer(TorchFunctionMode):
    def __init__(self, model: nn.Module, graph: Graph, merged_neurons_at_batch_1: bool = False):
        super().__init__()
        self.merged_neurons_at_batch_1 = merged_neurons_at_batch_1
        self.graph = graph
        self.traced: dict[int, Traced] = {}
        self.keepalive: list[torch.Tensor] = []
        self.module_names = {id(m): name for name, m in model.named_modules()}
        self.module_stack: list[str] = []
        self.paused = False
        self.errors: list[str] = []
        self.params: dict[int, np.ndarray] = {}
        self.pad_borders: dict[int, tuple] = {}  # id(tensor) -> (its pad node, the fill of each border cell)
        self.T: int | None = None
        self.B: int | None = None

    # -- bookkeeping ---------------------------------------------------------------------------------

    def location(self) -> Location:
        recorded = _RECORDED_LOCATION.get()
        if recorded is not None:
            return recorded
        module = self.module_stack[-1] if self.module_stack else ""
        frame = _user_frame()
        return Location(module, *frame) if frame else Location(module)

    def error(self, message: str) -> None:
        loc = self.location()
        where = loc.file_line or "<unknown>"
        subject = f" in {loc.module}" if loc.module else ""
        self.errors.append(f"{where}: error{subject}: {message}")

    def lookup(self, tensor) -> Traced | None:
        return self.traced.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None

    def bind(self, tensor: torch.Tensor, value: Value | None, role: Role) -> None:
        self.traced[id(tensor)] = Traced(value, role)
        self.keepalive.append(tensor)

    def emit(self, op: str, inputs: list[Value], attrs: dict[str, Any]) -> Value:
        return self.graph.add(op, inputs, attrs, [self.location()])

    # -- module calls --------------------------------------------------------------------------------

    def enter_module(self, module: nn.Module, args) -> None:
        parent = self.module_stack[-1] if self.module_stack else ""
        self.module_stack.append(self.module_names.get(id(module), parent))

    def exit_module(self, module: nn.Module, args, output) -> None:
        self.module_stack.pop()

    def neuron_forward(self, module: nn.Module, original: Callable) -> Callable:
        def forward(x, *rest, **kwargs):
            self.paused = True
            try:
                op, attrs = neuron_op(module)
                spikes = _neuron_spikes(op, attrs, x)
            except InputError as exc:
                self.paused = False
                self.error(exc.message)
                spikes = original(x, *rest, **kwargs)
                self.poison(spikes)
                return spikes
            finally:
                self.paused = False
            if self.lookup(x) is None or rest or kwargs:
                self.error(f"{type(module).__name__} is called on a value spikec cannot trace")
                self.poison(spikes)
            else:
                self.bind_neuron(type(module).__name__, op, attrs, x, spikes)
            return spikes
        return forward

    def bind_neuron(self, name: str, op: str, attrs: dict, x: torch.Tensor, spikes: torch.Tensor) -> None:
        """Record the neuron ``name`` (its class or custom op, for messages) turning the traced ``x`` into
        ``spikes`` as one ``op``, or report why it cannot be."""
        source = self.lookup(x)
        if source.value is None:
            self.poison(spikes)
        elif source.role is Role.MERGED and self.merged_neurons_at_batch_1 and source.value.type.batch == 1:
            # at batch 1 the [T*B, ...] tensor is [T, ...]: the neuron runs over the T steps of the IR value
            self.bind(spikes, self.emit(op, [source.value], attrs), Role.MERGED)
        elif source.role is not Role.TB:
            self.error(self._misplaced_neuron(name, source, x))
            self.poison(spikes)
        else:
            self.bind(spikes, self.emit(op, [source.value], attrs), Role.TB)

    def _misplaced_neuron(self, name: str, source: Traced, x: torch.Tensor) -> str:
        message = (f"{name} gets a {source.role.value} tensor of shape {list(x.shape)}; "
                   "multi-step neurons take [T, B, ...]")
        if source.role is not Role.MERGED:
            return message
        if self.merged_neurons_at_batch_1:
            return (f"{message}; --merged-neurons-at-batch-1 needs an example input of batch 1, got batch "
                    f"{source.value.type.batch}")
        return (f"{message}. On time and batch merged it runs over T*B steps, T only at batch 1: if the model is "
                "meant to run one sample at a time, pass --merged-neurons-at-batch-1 (docs/design.md, "
                "'Merged neurons')")

    def unknown_stateful_forward(self, module: nn.Module, original: Callable) -> Callable:
        def forward(*args, **kwargs):
            self.error(f"unknown stateful module {type(module).__module__}.{type(module).__qualname__}; "
                       "spikec recognises spikec.nn neurons and spikingjelly LIF/IF nodes")
            self.paused = True
            try:
                out = original(*args, **kwargs)
            finally:
                self.paused = False
            self.poison(out)
            return out
        return forward

    def poison(self, out) -> None:
        for tensor in returned_tensors(out):
            self.bind(tensor, None, Role.TB)

    # -- the mode ------------------------------------------------------------------------------------

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.paused:
            return out
        sources = [self.lookup(t) for t in returned_tensors((args, kwargs))]
        sources = [s for s in sources if s is not None]
        if not sources:
            return out
        handler = _HANDLERS.get(getattr(func, "__name__", ""))
        if getattr(func, "__name__", "") in _VALUE_READS:
            self.error(f"{_func_name(func)} reads a traced value into Python (data-dependent control flow): "
                       "spikec traces one run, so what follows would hold for this input only")
            return out
        if not returned_tensors(out) and func.__name__ != "__setitem__":
            return out  # shape queries: dim(), size(), __len__ ...
        unfinished = next((s.unfinished for s in sources if s.unfinished), None)
        if unfinished is not None and func.__name__ != "__setitem__":
            self.error(f"{_func_name(func)} reads {unfinished}")
            self.poison(out)
            return out
        if handler is None:
            self.error(f"unsupported op {_func_name(func)} on a traced tensor")
            self.poison(out)
            return out
        if any(s.value is None for s in sources):
            self.poison(out)  # downstream of a reported problem: nothing new to say
            return out
        try:
            result = handler(self, func, args, kwargs, out)
        except _Unsupported as exc:
            self.error(f"{_func_name(func)}: {exc}")
            self.poison(out)
            return out
        if result is not None:
            value, role = result
            self.bind(out, value, role)
        return out


_VALUE_READS = frozenset({"item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__complex__",
                          "__array__"})
"""Tensor methods that turn traced values (not shapes) into Python values."""


def _func_name(func) -> str:
    if isinstance(func, torch._ops.OpOverload):
        return str(func)  # an exported program's op: aten.addmm.default
    qual = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    module = getattr(func, "__module__", None) or ""
    if qual.startswith(("_TensorBase.", "TensorBase.")):
        qual = "Tensor." + qual.split(".", 1)[1]
    if qual.startswith("_VariableFunctionsClass."):
        qual = qual.split(".", 1)[1]
    if module.startswith("torch._C") or not module:
        module = "torch"
    return qual if qual.startswith("Tensor.") else f"{module}.{qual}"


def returned_tensors(obj) -> list[torch.Tensor]:
    """The tensors in what a module returned, in order (through tuples, lists and dict values): the traced
    graph's outputs, the first being the logits (SDT's forward returns ``(logits, hook)``)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in returned_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in returned_tensors(item)]
    return []


# ---------------------------------------------------------------- axis bookkeeping


def _norm_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise _Unsupported(f"dimension {dim} out of range for {ndim} dims")
    return dim % ndim


def _ir_axis(role: Role, torch_dim: int) -> int:
    """IR axis of a torch axis; raises for the merged/batch axis of MERGED/BATCH tensors."""
    if role is Role.TB:
        return torch_dim
    if torch_dim == 0:
        raise _Unsupported("operates on the batch (or merged time-batch) axis")
    return torch_dim + 1


def _sample_dims_ok(role: Role, dims: list[int]) -> None:
    first_sample = 2 if role is Role.TB else 1
    if any(d < first_sample for d in dims):
        raise _Unsupported("mixes the time or batch axis with sample axes; spikec needs them kept apart")


def _primary(tracer: _Tracer, tensor) -> Traced:
    source = tracer.lookup(tensor)
    if source is None:
        raise _Unsupported("applied to a constant tensor (only traced activations are supported here)")
    return source


# ---------------------------------------------------------------- handlers


def _h_alias(tracer, func, args, kwargs, out):
    source = _primary(tracer, args[0])
    if isinstance(out, torch.Tensor) and tuple(out.shape) != tuple(args[0].shape):
        raise _Unsupported("changes the shape")
    return source.value, source.role


def _h_to(tracer, func, args, kwargs, out):
    if out.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise _Unsupported(f"casts activations to {out.dtype}")
    return _h_alias(tracer, func, args, kwargs, out)


def _h_dropout(tracer, func, args, kwargs, out):
    training = kwargs.get("training", args[2] if len(args) > 2 else False)
    if training:
        raise _Unsupported("dropout in training mode; call model.eval()")
    return _h_alias(tracer, func, args, kwargs, out)


def _conv(tracer, func, args, kwargs, out, spatial: int):
    names = ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
    bound = dict(zip(names, args)) | kwargs
    source = _primary(tracer, bound["input"])
    if source.role is Role.TB:
        raise _Unsupported(f"conv{spatial}d on a [T, B, ...] tensor; flatten time into the batch first")
    if tracer.lookup(bound["weight"]) is not None:
        raise _Unsupported("the weight is an activation (a dynamic convolution)")
    padding = bound.get("padding", 0)
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        else:
            kernel = bound["weight"].shape[2:]
            dil = _pair(bound.get("dilation", 1), spatial)
            padding = tuple(d * (k - 1) // 2 for d, k in zip(dil, kernel))
            if any((d * (k - 1)) % 2 for d, k in zip(dil, kernel)):
                raise _Unsupported("padding='same' with an even kernel pads asymmetrically")
    attrs = {
        "weight": _param(bound["weight"], tracer.params), "bias": _param(bound.get("bias"), tracer.params),
        "stride": _pair(bound.get("stride", 1), spatial), "padding": _pair(padding, spatial),
        "dilation": _pair(bound.get("dilation", 1), spatial), "groups": int(bound.get("groups", 1)),
    }
    return tracer.emit(f"conv{spatial}d", [source.value], attrs), source.role


def _h_conv2d(tracer, func, args, kwargs, out):
    return _conv(tracer, func, args, kwargs, out, 2)


def _h_conv1d(tracer, func, args, kwargs, out):
    return _conv(tracer, func, args, kwargs, out, 1)


def _h_linear(tracer, func, args, kwargs, out):
    bound = dict(zip(["input", "weight", "bias"], args)) | kwargs
    source = _primary(tracer, bound["input"])
    if tracer.lookup(bound["weight"]) is not None:
        raise _Unsupported("the weight is an activation")
    _sample_dims_ok(source.role, [bound["input"].dim() - 1])
    attrs = {"weight": _param(bound["weight"], tracer.params), "bias": _param(bound.get("bias"), tracer.params)}
    return tracer.emit("linear", [source.value], attrs), source.role


def _h_batch_norm(tracer, func, args, kwargs, out):
    names = ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"]
    bound = dict(zip(names, args)) | kwargs
    source = _primary(tracer, bound["input"])
    if bound.get("training", False):
        raise _Unsupported("batch norm in training mode; call model.eval()")
    if bound["running_mean"] is None or bound["running_var"] is None:
        raise _Unsupported("batch norm without running statistics (track_running_stats=False)")
    attrs = {
        "weight": _param(bound.get("weight"), tracer.params), "bias": _param(bound.get("bias"), tracer.params),
        "running_mean": _param(bound["running_mean"], tracer.params),
        "running_var": _param(bound["running_var"], tracer.params),
        "eps": float(bound.get("eps", 1e-5)), "axis": _ir_axis(source.role, 1),
    }
    if source.role is Role.TB:
        raise _Unsupported("batch norm over axis 1 of a [T, B, ...] tensor normalises the batch axis")
    return tracer.emit("batchnorm", [source.value], attrs), source.role


def _pool_attrs(bound: dict, spatial_dims: int) -> dict:
    kernel = _pair(bound["kernel_size"], spatial_dims)
    stride = bound.get("stride")
    stride = kernel if stride is None or stride == [] or stride == () else _pair(stride, spatial_dims)
    return {"kernel": kernel, "stride": stride, "padding": _pair(bound.get("padding", 0), spatial_dims)}


def _pool_source(tracer, tensor) -> Traced:
    source = _primary(tracer, tensor)
    first_sample = 2 if source.role is Role.TB else 1
    if tensor.dim() - 2 < first_sample:
        raise _Unsupported("pools over the time or batch axis")
    return source


def _h_max_pool2d(tracer, func, args, kwargs, out):
    names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
    bound = dict(zip(names, args)) | kwargs
    if bound.get("return_indices", False):
        raise _Unsupported("max pooling that returns indices")
    source = _pool_source(tracer, bound["input"])
    attrs = _pool_attrs(bound, 2) | {"dilation": _pair(bound.get("dilation", 1)),
                                     "ceil_mode": bool(bound.get("ceil_mode", False))}
    return tracer.emit("maxpool", [source.value], attrs), source.role


def _h_max_pool3d(tracer, func, args, kwargs, out):
    names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
    bound = dict(zip(names, args)) | kwargs
    attrs3 = _pool_attrs(bound, 3)
    dilation = _pair(bound.get("dilation", 1), 3)
    if attrs3["kernel"][0] != 1 or attrs3["stride"][0] != 1 or attrs3["padding"][0] != 0 or dilation[0] != 1:
        raise _Unsupported("3-D max pooling is supported only with kernel (1, k, k): a 2-D pool per channel")
    if bound.get("return_indices", False):
        raise _Unsupported("max pooling that returns indices")
    source = _pool_source(tracer, bound["input"])
    attrs = {"kernel": attrs3["kernel"][1:], "stride": attrs3["stride"][1:], "padding": attrs3["padding"][1:],
             "dilation": dilation[1:], "ceil_mode": bool(bound.get("ceil_mode", False))}
    return tracer.emit("maxpool", [source.value], attrs), source.role


def _h_avg_pool2d(tracer, func, args, kwargs, out):
    names = ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]
    bound = dict(zip(names, args)) | kwargs
    source = _pool_source(tracer, bound["input"])
    divisor = bound.get("divisor_override")
    attrs = _pool_attrs(bound, 2) | {"ceil_mode": bool(bound.get("ceil_mode", False)),
                                     "count_include_pad": bool(bound.get("count_include_pad", True)),
                                     "divisor": None if divisor is None else int(divisor)}
    return tracer.emit("avgpool", [source.value], attrs), source.role


def _view_result(tracer: _Tracer, source: Traced, out: torch.Tensor) -> tuple[Value, Role]:
    """Lower any reshape-like op by comparing the output shape with the roles' layouts."""
    shape = tuple(out.shape)
    T, B = source.value.type.time, source.value.type.batch
    candidates = []
    if source.role is Role.BATCH:
        candidates = [(Role.BATCH, shape[:1] == (B,), shape[1:])]
    else:
        candidates = [(Role.TB, shape[:2] == (T, B), shape[2:]),
                      (Role.MERGED, len(shape) >= 1 and shape[0] == T * B, shape[1:])]
    for role, fits, sample in candidates:
        if not fits:
            continue
        if tuple(sample) == source.value.type.sample_shape:
            return source.value, role
        if not sample:
            raise _Unsupported("removes every sample axis")
        return tracer.emit("reshape", [source.value], {"shape": tuple(int(d) for d in sample)}), role
    raise _Unsupported(f"reshapes {list(source.value.type.shape)} (as {source.role.value}) to {list(shape)}, "
                       "which mixes the time or batch axis with sample axes")


def _h_view(tracer, func, args, kwargs, out):
    source = _primary(tracer, args[0])
    name = func.__name__
    if name == "unsqueeze" and source.role is Role.BATCH:
        dim = _norm_dim(args[1] if len(args) > 1 else kwargs["dim"], args[0].dim() + 1)
        if dim == 0:
            return source.value, Role.TB  # [B, ...] -> [1, B, ...]: the IR value already is [1, B, ...]
    if name == "flatten" and source.role is Role.TB:
        start = _norm_dim(args[1] if len(args) > 1 else kwargs.get("start_dim", 0), args[0].dim())
        end = _norm_dim(args[2] if len(args) > 2 else kwargs.get("end_dim", -1), args[0].dim())
        if (start, end) == (0, 1):
            return source.value, Role.MERGED
    return _view_result(tracer, source, out)


def _permutation(func, args, kwargs, ndim: int) -> list[int]:
    if func.__name__ in ("transpose", "swapaxes", "swapdims"):
        a = _norm_dim(args[1] if len(args) > 1 else kwargs["dim0"], ndim)
        b = _norm_dim(args[2] if len(args) > 2 else kwargs["dim1"], ndim)
        perm = list(range(ndim))
        perm[a], perm[b] = perm[b], perm[a]
        return perm
    dims = args[1:] if len(args) > 1 else kwargs["dims"]
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    return [_norm_dim(d, ndim) for d in dims]


def _h_permute(tracer, func, args, kwargs, out):
    source = _primary(tracer, args[0])
    ndim = args[0].dim()
    perm = _permutation(func, args, kwargs, ndim)
    if perm == list(range(ndim)):
        return source.value, source.role
    if source.role is Role.BATCH and perm[:2] == [1, 0] and perm[2:] == list(range(2, ndim)):
        return tracer.emit("to_time_major", [source.value], {}), Role.TB
    if source.role is Role.TB:
        _sample_dims_ok(Role.TB, [d for i, d in enumerate(perm) if i != d])
        ir_perm = perm
    else:
        if perm[0] != 0:
            raise _Unsupported("moves the batch (or merged time-batch) axis")
        ir_perm = [0, 1] + [d + 1 for d in perm[1:]]
    return tracer.emit("transpose", [source.value], {"perm": tuple(ir_perm)}), source.role


def _h_repeat(tracer, func, args, kwargs, out):
    source = _primary(tracer, args[0])
    sizes = args[1:] if len(args) > 1 else kwargs["repeats"]
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple, torch.Size)):
        sizes = sizes[0]
    sizes = [int(s) for s in sizes]
    if source.role is not Role.TB or len(sizes) != args[0].dim() or any(s != 1 for s in sizes[1:]):
        raise _Unsupported("only direct encoding, x.unsqueeze(0).repeat(T, 1, ...), is supported")
    if source.value.type.time != 1:
        raise _Unsupported("repeats a value that already has a time axis")
    return tracer.emit("repeat_time", [source.value], {"T": sizes[0]}), Role.TB


def _reduce(tracer, func, args, kwargs, out, op: str):
    source = _primary(tracer, args[0])
    ndim = args[0].dim()
    dim = args[1] if len(args) > 1 else kwargs.get("dim", kwargs.get("axis"))
    if dim is None:
        raise _Unsupported(f"{op} over all axes mixes time and batch")
    keepdim = bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False))
    if kwargs.get("dtype") is not None:
        raise _Unsupported(f"{op} with a dtype")
    dims = sorted({_norm_dim(d, ndim) for d in (dim if isinstance(dim, (list, tuple)) else [dim])})
    if source.role is Role.TB:
        if 1 in dims:
            raise _Unsupported(f"{op} over the batch axis")
        axes = dims
        role = Role.BATCH if 0 in dims and not keepdim else Role.TB
    else:
        axes = [_ir_axis(source.role, d) for d in dims]
        role = source.role
    return tracer.emit(op, [source.value], {"axes": tuple(axes), "keepdim": keepdim}), role


def _h_mean(tracer, func, args, kwargs, out):
    return _reduce(tracer, func, args, kwargs, out, "mean")


def _h_sum(tracer, func, args, kwargs, out):
    return _reduce(tracer, func, args, kwargs, out, "sum")


def _h_adaptive_avg_pool2d(tracer, func, args, kwargs, out):
    """A global average pool (output size 1, SpikingResformer's head) is a mean over the two spatial axes."""
    size = args[1] if len(args) > 1 else kwargs["output_size"]
    sizes = (size, size) if isinstance(size, int) else tuple(size)
    if sizes != (1, 1):
        raise _Unsupported(f"adaptive_avg_pool2d to {list(sizes)}; only the global average (output size 1) is "
                           "supported")
    ndim = args[0].dim()
    return _reduce(tracer, func, (args[0], [ndim - 2, ndim - 1], True), {}, out, "mean")


def _h_getitem(tracer, func, args, kwargs, out):
    """``x[a:b, ...]`` with slices (and one ``...``): one ``slice`` op per axis it narrows."""
    source = _primary(tracer, args[0])
    shape = tuple(args[0].shape)
    value = source.value
    for dim, part in enumerate(_normalized_index(args[1], shape)):
        if (part.start, part.stop) == (0, shape[dim]):
            continue
        axis = _ir_axis(source.role, dim)
        _sample_dims_ok(Role.TB, [axis])
        value = tracer.emit("slice", [value], {"axis": axis, "start": part.start, "stop": part.stop})
    return value, source.role


def _part_bounds(func, args, kwargs, size: int) -> list[tuple[int, int]]:
    """The ``[start, stop)`` ranges of ``chunk(n)``, ``split(size)`` or ``split([sizes])`` along an axis of
    ``size`` elements, as torch cuts them."""
    if func.__name__ == "chunk":
        chunks = int(args[1] if len(args) > 1 else kwargs["chunks"])
        step = -(-size // chunks)
        sizes = [min(step, size - start) for start in range(0, size, step)]
    else:
        spec = args[1] if len(args) > 1 else kwargs["split_size_or_sections"]
        sizes = [int(s) for s in spec] if isinstance(spec, (list, tuple)) else \
            [min(int(spec), size - start) for start in range(0, size, int(spec))]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [(start, start + n) for start, n in zip(starts, sizes)]


def _h_split(tracer, func, args, kwargs, out):
    """``chunk`` and ``split`` along a sample axis: one ``slice`` op per part (the q/k/v split of a fused
    projection)."""
    source = _primary(tracer, args[0])
    dim = _norm_dim(int(args[2] if len(args) > 2 else kwargs.get("dim", 0)), args[0].dim())
    axis = _ir_axis(source.role, dim)
    _sample_dims_ok(Role.TB, [axis])
    size = args[0].shape[dim]
    for part, (start, stop) in zip(out, _part_bounds(func, args, kwargs, size)):
        value = source.value if (start, stop) == (0, size) else \
            tracer.emit("slice", [source.value], {"axis": axis, "start": start, "stop": stop})
        tracer.bind(part, value, source.role)
    return None


def _h_pad(tracer, func, args, kwargs, out):
    """``F.pad`` with a constant on the sample axes after the channel axis (``[N, C, H, W]`` by 1 or 2 axes)."""
    bound = dict(zip(["input", "pad", "mode", "value"], args)) | kwargs
    source = _primary(tracer, bound["input"])
    mode = bound.get("mode") or "constant"
    if mode != "constant":
        raise _Unsupported(f"mode={mode!r}; only constant padding is supported")
    torch_pads = [int(p) for p in bound["pad"]]
    if len(torch_pads) not in (2, 4) or any(p < 0 for p in torch_pads):
        raise _Unsupported(f"pad {torch_pads}: spikec pads the last one or two axes by amounts >= 0")
    ndim, padded = bound["input"].dim(), len(torch_pads) // 2
    first_sample = 2 if source.role is Role.TB else 1
    if ndim - padded <= first_sample:
        raise _Unsupported("pads the channel, batch or time axis; spikec pads only the axes after the channels")
    pads = tuple(p for i in reversed(range(padded)) for p in torch_pads[2 * i:2 * i + 2])  # IR: axis order
    value = float(bound.get("value") or 0.0)
    fill = np.full(source.value.type.shape[2], value, dtype=np.float32)
    return tracer.emit("pad", [source.value], {"pads": pads, "fill": fill}), source.role


def _border_cells(pad: Value) -> np.ndarray:
    """A boolean ``[C, *padded axes]`` map of the pad's border."""
    pads, shape = pad.producer.attrs["pads"], pad.type.shape
    padded = len(pads) // 2
    inside = np.zeros(shape[pad.type.rank - padded:], dtype=bool)
    inside[tuple(slice(pads[2 * i], shape[pad.type.rank - padded + i] - pads[2 * i + 1]) for i in range(padded))] = True
    return np.broadcast_to(~inside, (shape[2], *inside.shape))


def _h_setitem(tracer, func, args, kwargs, out):
    """``x[region] = constant`` on the border of a pad, as RepVGG-style BN-and-pad layers (Meta-SpikeFormer's
    ``BNAndPadLayer``) write each side of it in turn. The border becomes a ``pad`` whose fill is the written
    constant once every border cell of each channel holds one value; until then reading ``x`` is an error."""
    target, index, written = args[0], args[1], args[2]
    source = tracer.lookup(target)
    if source is None or tracer.lookup(written) is not None:
        raise _Unsupported("writes an activation into a tensor; spikec traces assignments of constants only")
    pad = source.value.producer if source.value is not None else None
    state = tracer.pad_borders.get(id(target))
    if state is None:
        if pad is None or pad.op != "pad":
            raise _Unsupported("assigns into an activation; spikec traces only writes to a pad's border "
                               "(a BN-and-pad layer)")
        border = _border_cells(source.value)
        cells = np.where(border, pad.attrs["fill"].reshape(-1, *[1] * (border.ndim - 1)), np.nan)
        state = (pad, cells)
    pad, cells = state
    shape = tuple(target.shape)
    region = _normalized_index(index, shape)
    first_sample = 2 if source.role is Role.TB else 1
    if any(region[d] != slice(0, shape[d], 1) for d in range(first_sample + 1)):
        raise _Unsupported("assigns to part of the batch, time or channel axes; a border write covers them all")
    padded = len(pad.attrs["pads"]) // 2
    if any(region[d] != slice(0, shape[d], 1) for d in range(first_sample + 1, len(shape) - padded)):
        raise _Unsupported("assigns to part of an axis the pad does not pad")
    constant = torch.as_tensor(written, dtype=torch.float32).detach().cpu().numpy()
    block = np.broadcast_to(constant, target[index].shape)
    per_channel = block.reshape(*block.shape[:first_sample], block.shape[first_sample], -1)
    if not np.all(per_channel == per_channel[(0,) * first_sample][:, :1]):
        raise _Unsupported("assigns values that vary over batch, time or position; a border holds one value per "
                           "channel")
    spatial = (slice(None),) + tuple(region[len(shape) - padded:])
    if not np.all(_border_cells(pad.output)[spatial]):
        raise _Unsupported("assigns inside the padded tensor, not only on its border")
    cells = cells.copy()
    cells[spatial] = per_channel[(0,) * first_sample][:, 0].reshape(-1, *[1] * padded)
    fills = [np.unique(c[~np.isnan(c)]) for c in cells]
    if all(f.size == 1 for f in fills):
        fill = np.array([f[0] for f in fills], dtype=np.float32)
        value = tracer.graph.add("pad", [pad.inputs[0]], {"pads": pad.attrs["pads"], "fill": fill}, pad.locs)
        tracer.pad_borders[id(target)] = (value.producer, cells)
        tracer.bind(target, value, source.role)
        if not pad.output.uses and not any(t.value is pad.output for t in tracer.traced.values()):
            tracer.graph.erase(pad)  # the border it was traced with is overwritten: nothing reads it
    else:
        tracer.pad_borders[id(target)] = (pad, cells)
        tracer.bind(target, source.value, source.role)
        tracer.traced[id(target)].unfinished = (f"a pad border written in part (the border of {pad.describe()} "
                                                "holds more than one value per channel)")
    return None


def _normalized_index(index, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """An index of slices (and at most one ``...``) as one ``slice(start, stop, 1)`` per axis."""
    index = index if isinstance(index, tuple) else (index,)
    if sum(i is Ellipsis for i in index) > 1:
        raise _Unsupported("an index with more than one '...'")
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (len(shape) - len(index) + 1) + index[at + 1:]
    if len(index) > len(shape) or not all(isinstance(i, slice) for i in index):
        raise _Unsupported("indexes with something other than slices (x[:, :, a:b]); integers, None, masks and "
                           "index tensors are not supported")
    index = index + (slice(None),) * (len(shape) - len(index))
    normalized = []
    for dim, part in enumerate(index):
        start, stop, step = part.indices(shape[dim])
        if step != 1 or stop <= start:
            raise _Unsupported(f"a slice {start}:{stop}:{step}; only non-empty slices with step 1 are supported")
        normalized.append(slice(start, stop, 1))
    return tuple(normalized)


def _binary_roles(a: Traced, b: Traced) -> Role:
    roles = {a.role, b.role}
    if roles == {Role.TB, Role.BATCH} or len(roles) == 1:
        return Role.TB if Role.TB in roles else a.role
    raise _Unsupported(f"combines a {a.role.value} tensor with a {b.role.value} tensor")


def _h_cat(tracer, func, args, kwargs, out):
    """``torch.cat`` (and ``concat``/``concatenate``) of traced values along a sample axis."""
    tensors = list(args[0] if args else kwargs["tensors"])
    dim = int(args[1] if len(args) > 1 else kwargs.get("dim", kwargs.get("axis", 0)))
    parts = [tracer.lookup(t) for t in tensors]
    if any(p is None for p in parts):
        raise _Unsupported("concatenates a constant with an activation (only activations are supported)")
    roles = {p.role for p in parts}
    if len(roles) != 1:
        raise _Unsupported(f"concatenates {' and '.join(sorted(r.value for r in roles))} tensors")
    role = roles.pop()
    axis = _ir_axis(role, _norm_dim(dim, tensors[0].dim()))
    _sample_dims_ok(Role.TB, [axis])
    if len(parts) == 1:
        return parts[0].value, role
    return tracer.emit("concat", [p.value for p in parts], {"axis": axis}), role


def _h_add(tracer, func, args, kwargs, out):
    a, b = tracer.lookup(args[0]), tracer.lookup(args[1])
    alpha = kwargs.get("alpha", 1)
    if alpha != 1:
        raise _Unsupported("add with alpha")
    if a is None or b is None:
        raise _Unsupported("adds a constant to an activation (only activation + activation is supported)")
    _check_same_rank(args[0], args[1])
    return tracer.emit("add", [a.value, b.value], {}), _binary_roles(a, b)


def _check_same_rank(x, y) -> None:
    if x.dim() != y.dim():
        raise _Unsupported(f"broadcasts tensors of different rank ({x.dim()} and {y.dim()})")


def _h_mul(tracer, func, args, kwargs, out):
    a, b = tracer.lookup(args[0]), tracer.lookup(args[1])
    if a is not None and b is not None:
        _check_same_rank(args[0], args[1])
        return tracer.emit("mul", [a.value, b.value], {}), _binary_roles(a, b)
    traced, other = (a, args[1]) if a is not None else (b, args[0])
    activation = args[0] if a is not None else args[1]
    if isinstance(other, torch.Tensor) and other.numel() != 1:
        return _scale_by(tracer, traced, activation, other), traced.role
    factor = float(other.item() if isinstance(other, torch.Tensor) else other)
    if not math.isfinite(factor):
        raise _Unsupported(f"multiplies by {factor} (an untrained buffer?)")
    return tracer.emit("scale", [traced.value], {"factor": factor}), traced.role


def _scale_by(tracer, traced: Traced, activation: torch.Tensor, constant: torch.Tensor) -> Value:
    """A constant tensor that varies only over sample axes (one factor per channel or head)."""
    try:
        fits = torch.broadcast_shapes(constant.shape, activation.shape) == activation.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise _Unsupported(f"multiplies an activation of shape {list(activation.shape)} by a constant of shape "
                           f"{list(constant.shape)} that does not broadcast to it")
    full = constant.reshape((1,) * (activation.dim() - constant.dim()) + tuple(constant.shape))
    first_sample = 2 if traced.role is Role.TB else 1
    if any(d != 1 for d in full.shape[:first_sample]):
        raise _Unsupported("multiplies by a constant that varies over the time or batch axis")
    factors = full.reshape(full.shape[first_sample:]).detach().cpu().to(torch.float32).numpy().copy()
    if not np.all(np.isfinite(factors)):
        raise _Unsupported("multiplies by a constant tensor holding infinite or NaN values (an untrained buffer?)")
    return tracer.emit("scale_by", [traced.value], {"factors": factors})


def _h_div(tracer, func, args, kwargs, out):
    source = tracer.lookup(args[0])
    divisor = args[1]
    if source is None or tracer.lookup(divisor) is not None or kwargs.get("rounding_mode"):
        raise _Unsupported("only division of an activation by a constant is supported")
    divisor = float(divisor.item() if isinstance(divisor, torch.Tensor) else divisor)
    mantissa, _ = math.frexp(divisor)
    if divisor == 0 or abs(mantissa) != 0.5:
        raise _Unsupported(f"division by {divisor}: only powers of two divide exactly as a scale; "
                           "multiply by the reciprocal instead")
    return tracer.emit("scale", [source.value], {"factor": 1.0 / divisor}), source.role


def _h_matmul(tracer, func, args, kwargs, out):
    a, b = tracer.lookup(args[0]), tracer.lookup(args[1])
    if a is None or b is None:
        raise _Unsupported("a product with a constant matrix; use nn.Linear")
    _check_same_rank(args[0], args[1])
    if a.role is not Role.TB or b.role is not Role.TB:
        raise _Unsupported("matmul operands must be [T, B, ...] tensors")
    return tracer.emit("matmul", [a.value, b.value], {}), Role.TB


def _h_iand(tracer, func, args, kwargs, out):
    a, s = tracer.lookup(args[0]), tracer.lookup(args[1])
    if a is None or s is None:
        raise _Unsupported("iand of a constant")
    _check_same_rank(args[0], args[1])
    return tracer.emit("and_not", [a.value, s.value], {}), _binary_roles(a, s)


def _h_neuron(tracer, func, args, kwargs, out):
    """A neuron a torch.export program kept as spikec's custom op (``torch.ops.spikec.lif_neuron(x, tau=...)``,
    frontends/torch/exported.py): one neuron op whose attributes are the call's keyword arguments."""
    tracer.bind_neuron(f"spikec.{func.__name__}", func.__name__.removesuffix("_neuron"), dict(kwargs), args[0], out)


_HANDLERS: dict[str, Callable] = {
    "conv2d": _h_conv2d, "conv1d": _h_conv1d, "linear": _h_linear, "batch_norm": _h_batch_norm,
    "_max_pool2d": _h_max_pool2d, "max_pool2d": _h_max_pool2d, "_max_pool3d": _h_max_pool3d,
    "max_pool3d": _h_max_pool3d, "avg_pool2d": _h_avg_pool2d,
    "dropout": _h_dropout, "contiguous": _h_alias, "clone": _h_alias, "detach": _h_alias, "float": _h_to,
    "to": _h_to, "type_as": _h_to,
    "flatten": _h_view, "unflatten": _h_view, "reshape": _h_view, "view": _h_view, "unsqueeze": _h_view,
    "squeeze": _h_view,
    "permute": _h_permute, "transpose": _h_permute, "swapaxes": _h_permute, "swapdims": _h_permute,
    "repeat": _h_repeat, "mean": _h_mean, "sum": _h_sum, "adaptive_avg_pool2d": _h_adaptive_avg_pool2d,
    "cat": _h_cat, "concat": _h_cat, "concatenate": _h_cat,
    "__getitem__": _h_getitem, "__setitem__": _h_setitem, "pad": _h_pad, "chunk": _h_split, "split": _h_split,
    "add": _h_add, "__add__": _h_add, "__radd__": _h_add,
    "mul": _h_mul, "__mul__": _h_mul, "__rmul__": _h_mul,
    "div": _h_div, "__truediv__": _h_div, "true_divide": _h_div,
    "matmul": _h_matmul, "__matmul__": _h_matmul, "bmm": _h_matmul,
    "iand": _h_iand, "lif_neuron": _h_neuron, "plif_neuron": _h_neuron, "if_neuron": _h_neuron,
}


# ---------------------------------------------------------------- entry point


def _model_name(model: nn.Module) -> str:
    name = type(model).__name__
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "model"


def trace_module(model: nn.Module, example_input: torch.Tensor, input_layout: str = "B",
                 name: str | None = None, merged_neurons_at_batch_1: bool = False) -> TraceResult:
    """Trace ``model`` on ``example_input`` into a verified IR graph.

    ``input_layout`` says how the input tensor maps onto ``[T, B, ...]``: ``"B"`` for ``[B, ...]`` (the
    model encodes over time itself, or takes ``[B, T, ...]`` and permutes), ``"TB"`` for ``[T, B, ...]``.
    Raises :class:`InputError` listing every unsupported op and unknown stateful module, each with its
    ``file:line`` and module path.

    ``merged_neurons_at_batch_1``: a neuron called on time and batch merged (``[T*B, ...]``, QKFormer's stage-3
    ``proj_lif``) runs over ``T*B`` steps, which are the ``T`` time steps only at batch 1. With this option and an
    example input of batch 1 such a neuron is traced as one over the value's ``T`` steps, so spikec computes
    every sample as the model does at batch 1 (at batch ``B > 1`` the model itself carries one sample's state
    into the next).
    """
    _check_example_input(example_input, input_layout)
    graph = Graph(name or _model_name(model))
    tracer = _Tracer(model, graph, merged_neurons_at_batch_1)
    shape = tuple(example_input.shape)
    ir_shape = (1, *shape) if input_layout == "B" else shape
    x = example_input.detach().to(torch.float32).clone()
    input_value = graph.create_node("input", [], {"name": "x", "layout": input_layout},
                                    output_types=[TensorType(ir_shape)]).output
    tracer.bind(x, input_value, Role.BATCH if input_layout == "B" else Role.TB)
    out = _run_traced(model, tracer, x)
    outputs, layouts = _traced_outputs(tracer, out)
    if tracer.errors:
        unique = list(dict.fromkeys(tracer.errors))
        raise InputError(f"cannot trace {type(model).__name__}: {len(unique)} problem(s)\n" + "\n".join(unique))
    if not outputs:
        raise InputError("the model returns no tensor")
    graph.create_node("output", outputs, {"layouts": tuple(layouts)})
    verify_graph(graph)
    return TraceResult(graph, out)


def _check_example_input(example_input: torch.Tensor, input_layout: str) -> None:
    if input_layout not in ("B", "TB"):
        raise InputError(f"input layout must be B or TB, got {input_layout!r}")
    if not isinstance(example_input, torch.Tensor) or not example_input.is_floating_point():
        raise InputError("the example input must be a floating-point tensor")
    rank_needed = 2 if input_layout == "B" else 3
    if example_input.dim() < rank_needed:
        raise InputError(f"an input with layout {input_layout} needs at least {rank_needed} dims, "
                         f"got shape {list(example_input.shape)}")


def _patch_neurons(model: nn.Module, tracer: _Tracer) -> list[nn.Module]:
    """Route every neuron and unknown stateful module's forward through the tracer; returns those patched."""
    patched: list[nn.Module] = []
    for module in model.modules():
        if module is model:
            continue
        if is_neuron(module):
            module.forward = tracer.neuron_forward(module, module.forward)
            patched.append(module)
        elif looks_stateful(module):
            module.forward = tracer.unknown_stateful_forward(module, module.forward)
            patched.append(module)
    return patched


def _run_traced(model: nn.Module, tracer: _Tracer, x: torch.Tensor):
    """Run ``model`` on ``x`` under the tracer, in eval mode; the model is left as it was found."""
    patched = _patch_neurons(model, tracer)
    hooks = [nn.modules.module.register_module_forward_pre_hook(tracer.enter_module),
             nn.modules.module.register_module_forward_hook(tracer.exit_module)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tracer:
            return model(x)
    except InputError:
        raise
    except SystemExit as exc:
        raise InputError(f"the model called sys.exit({exc.code!r}) while running on an input of shape "
                         f"{list(x.shape)}") from None
    except Exception as exc:  # the user's model failed to run on the example input
        frame = _user_frame(traceback.extract_tb(exc.__traceback__))
        where = f" ({frame[0]}:{frame[1]})" if frame else ""
        raise InputError(f"the model failed on an input of shape {list(x.shape)}: "
                         f"{type(exc).__name__}: {exc}{where}") from exc
    finally:
        for hook in hooks:
            hook.remove()
        for module in patched:
            del module.forward
        model.train(was_training)


def _traced_outputs(tracer: _Tracer, out) -> tuple[list, list[int]]:
    """The IR values of the model's returned tensors and their layouts (1: time-major); problems go to
    ``tracer.errors``."""
    outputs, layouts = [], []
    for tensor in returned_tensors(out):
        source = tracer.lookup(tensor)
        if source is None:
            tracer.errors.append("error: the model returns a tensor that does not depend on its input")
            continue
        if source.value is None:
            continue
        if source.role is Role.MERGED:
            tracer.errors.append("error: the model returns a [T*B, ...] tensor; reshape it to [T, B, ...]")
            continue
        outputs.append(source.value)
        layouts.append(1 if source.role is Role.TB else 0)
    return outputs, layouts
