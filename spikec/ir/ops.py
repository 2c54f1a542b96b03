"""The op registry: for every op its docstring, attribute schema, arity, shape rule and traits.

The traits (:class:`OpTraits`) are the one place that says what kind of op an op is: passes and backends
ask :func:`ops_with` / :func:`op_traits` instead of keeping their own lists of op names, so a new op is
classified once, here, and every per-op rule table elsewhere covers it or fails naming it.

Axis convention (see :mod:`spikec.ir.types`): axis 0 is time, axis 1 the batch, the rest are sample
axes. Ops that act per sample (conv, linear, pooling, views) never touch axes 0 and 1.

Attribute kinds: ``int``, ``float``, ``bool``, ``str``, ``ints`` / ``floats`` (tuples), ``tensor``
(a numpy array: weights), and any kind followed by ``?`` when ``none`` is allowed. Every attribute an op
declares must be present on its nodes (``none`` for an absent optional one); no other attribute may be.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, Callable, Sequence

import numpy as np

from spikec.errors import IRError
from spikec.ir.types import Location, TensorType

__all__ = ["OpDef", "OpTraits", "OpCategory", "Phase", "OPS", "op_def", "op_traits", "ops_with", "spike_valued",
           "infer_types", "check_attrs", "ATTR_KINDS"]

ATTR_KINDS = ("int", "float", "bool", "str", "ints", "floats", "tensor")

ShapeRule = Callable[[list[TensorType], dict[str, Any]], list[TensorType]]


class OpCategory(enum.Enum):
    """What kind of computation an op is; every op has exactly one category."""

    BOUNDARY = "boundary"        # the graph's inputs and its output
    VIEW = "view"                # moves elements without changing them (reshape, transpose, time encodings)
    WEIGHT = "weight"            # weighted sums over learned weights: the synapses (conv, linear, qconv2d, qdense)
    NEURON = "neuron"            # stateful over time, fires spikes whatever it reads
    ELEMENTWISE = "elementwise"  # each output element from the same element of its input(s) and constants
    PRODUCT = "product"          # multiplies two dynamic values, elementwise or as matrices
    POOL = "pool"                # a reduction over windows of the last two axes
    REDUCTION = "reduction"      # a reduction over whole axes


class Phase(enum.Flag):
    """The graphs an op appears in: the traced float graph, the integer graph quantize makes, or both.
    An op of both phases computes the same on integers as on floats, so quantize copies it as it is."""

    FLOAT = 1
    INTEGER = 2
    BOTH = 3


@dataclasses.dataclass(frozen=True)
class OpTraits:
    """What kind of op an op is, for the passes and backends that treat ops by kind.

    * ``category``: see :class:`OpCategory`.
    * ``phase``: see :class:`Phase`.
    * ``preserves_spikes``: the output is 0/1 whenever every input is, because the op moves, selects or
      multiplies its inputs' elements (views, max-pool, ``mul``, ``and_not``). A neuron's output is 0/1
      whatever it reads; its category says so.
    * ``per_step``: output step ``t`` is computed from input step ``t`` alone, for every attribute value.
      It tells the views that keep the time axis (``reshape``, ``transpose``) from those that make it
      (``repeat_time``, ``to_time_major``); neurons carry state over time and reductions may sum over it.
    * ``parameters``: the attributes holding the model's learned parameters (weights and biases; batch
      norm's running statistics are buffers, not parameters).
    """

    category: OpCategory
    phase: Phase
    preserves_spikes: bool = False
    per_step: bool = False
    parameters: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class OpDef:
    """An op: ``num_inputs`` is None for a variadic op; ``infer`` is None when the output type is
    declared rather than derived (only ``input``)."""

    name: str
    doc: str
    num_inputs: int | None
    attrs: dict[str, str]
    infer: ShapeRule | None
    traits: OpTraits

    def __post_init__(self):
        for attr, kind in self.attrs.items():
            if kind.rstrip("?") not in ATTR_KINDS:
                raise ValueError(f"op {self.name}: attribute {attr} has unknown kind {kind!r}")
        if not isinstance(self.traits, OpTraits):
            raise ValueError(f"op {self.name}: needs its OpTraits, got {self.traits!r}")
        unknown = [p for p in self.traits.parameters if p not in self.attrs]
        if unknown:
            raise ValueError(f"op {self.name}: parameters {unknown} are not attributes of the op")


OPS: dict[str, OpDef] = {}


def _register(name: str, num_inputs: int | None, attrs: dict[str, str], traits: OpTraits):
    def wrap(rule):
        if name in OPS:
            raise ValueError(f"op {name} registered twice")
        doc = (rule.__doc__ or "").strip()
        OPS[name] = OpDef(name, doc, num_inputs, attrs, None if name == "input" else rule, traits)
        return rule

    return wrap


def op_def(name: str) -> OpDef:
    if name not in OPS:
        raise IRError(f"unknown op {name!r}")
    return OPS[name]


def op_traits(name: str) -> OpTraits:
    return op_def(name).traits


def ops_with(category: OpCategory | None = None, phase: Phase | None = None, preserves_spikes: bool | None = None,
             per_step: bool | None = None) -> frozenset[str]:
    """The registered ops whose traits match every criterion given. ``phase`` matches the ops that appear
    in that phase: ``Phase.FLOAT`` gives the float-only ops and those of both phases."""
    def matches(t: OpTraits) -> bool:
        return ((category is None or t.category is category) and (phase is None or phase in t.phase)
                and (preserves_spikes is None or t.preserves_spikes == preserves_spikes)
                and (per_step is None or t.per_step == per_step))

    return frozenset(name for name, definition in OPS.items() if matches(definition.traits))


def spike_valued(value) -> bool:
    """Whether every element of ``value`` (a :class:`spikec.ir.Value`) is 0 or 1 by construction: a
    neuron's output, or what an op that preserves spikes makes of such values. It needs no analysis, so
    quantize and the Lava lowering use it to tell binary synapse input from graded; the value-domain
    analysis (docs/design.md, §4) finds more, e.g. a mean over one element."""
    node = value.producer
    traits = op_traits(node.op)
    if traits.category is OpCategory.NEURON:
        return True
    return traits.preserves_spikes and all(spike_valued(v) for v in node.inputs)


def _kind_matches(kind: str, value: Any) -> bool:
    if kind.endswith("?"):
        return value is None or _kind_matches(kind[:-1], value)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, float)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "ints":
        return isinstance(value, tuple) and all(_kind_matches("int", v) for v in value)
    if kind == "floats":
        return isinstance(value, tuple) and all(_kind_matches("float", v) for v in value)
    if kind == "tensor":
        return isinstance(value, np.ndarray)
    return False


def check_attrs(op: str, attrs: dict[str, Any]) -> None:
    """Raise unless ``attrs`` has exactly the op's attributes, each of its declared kind."""
    spec = op_def(op).attrs
    missing = [a for a in spec if a not in attrs]
    unknown = [a for a in attrs if a not in spec]
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise IRError(f"{op}: attributes: {'; '.join(parts)}")
    for name, kind in spec.items():
        if not _kind_matches(kind, attrs[name]):
            raise IRError(f"{op}: attribute {name} must be {kind}, got {attrs[name]!r:.60}")


def infer_types(op: str, input_types: Sequence[TensorType], attrs: dict[str, Any],
                locs: Sequence[Location] = ()) -> list[TensorType]:
    """Check arity and attributes, then apply the op's shape rule. Errors name the op and its location."""
    definition = op_def(op)
    where = str(locs[0]) if locs else None
    try:
        if definition.num_inputs is not None and len(input_types) != definition.num_inputs:
            raise IRError(f"{op} takes {definition.num_inputs} input(s), got {len(input_types)}")
        check_attrs(op, attrs)
        if definition.infer is None:
            raise IRError(f"{op} declares its output type; give output_types")
        return definition.infer(list(input_types), attrs)
    except IRError as exc:
        raise IRError(exc.message if exc.message.startswith(op) else f"{op}: {exc.message}", where) from None


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise IRError(message)


def _need_same_dtype(types: Sequence[TensorType]) -> str:
    dtypes = {t.dtype for t in types}
    _need(len(dtypes) == 1, f"inputs have different dtypes {sorted(dtypes)}")
    return types[0].dtype


def _broadcast(a: TensorType, b: TensorType) -> TensorType:
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise IRError(f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    _need(len(shape) == max(a.rank, b.rank) and a.rank == b.rank,
          f"operands must have the same rank (time and batch first), got {list(a.shape)} and {list(b.shape)}")
    _need(shape[1] == a.batch == b.batch, "operands must have the same batch size")
    return TensorType(tuple(shape), _need_same_dtype([a, b]))


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool = False) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    _need(span >= 0, f"kernel {kernel} (dilation {dilation}) is larger than the padded input {size + 2 * padding}")
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _check_tuple(attrs: dict, name: str, length: int, minimum: int) -> tuple[int, ...]:
    value = attrs[name]
    _need(len(value) == length, f"{name} needs {length} values, got {list(value)}")
    _need(all(v >= minimum for v in value), f"{name} values must be >= {minimum}, got {list(value)}")
    return value


def _sample_axis(t: TensorType, axis: int, what: str) -> None:
    _need(2 <= axis < t.rank, f"{what} {axis} is not a sample axis of a rank-{t.rank} value (axes 0, 1 are T, B)")


# ---------------------------------------------------------------- graph boundary


@_register("input", 0, {"name": "str", "layout": "str"}, OpTraits(OpCategory.BOUNDARY, Phase.BOTH))
def _input(types, attrs):
    """A model input. ``layout`` tells how the PyTorch tensor maps onto the IR value: ``"B"`` means
    the tensor is ``[B, ...]`` and the IR value ``[1, B, ...]`` (a time axis of length 1, before direct
    encoding); ``"TB"`` means the tensor already is ``[T, B, ...]``."""


@_register("output", None, {"layouts": "ints"}, OpTraits(OpCategory.BOUNDARY, Phase.BOTH))
def _output(types, attrs):
    """The model's outputs, in order. ``layouts[i]`` is 1 when output ``i`` is returned to PyTorch with
    its time axis (``[T, B, ...]``), 0 when the length-1 time axis is dropped (``[B, ...]``)."""
    _need(len(types) >= 1, "output needs at least one value")
    _need(len(attrs["layouts"]) == len(types), f"layouts has {len(attrs['layouts'])} entries for {len(types)} outputs")
    for t, keeps_time in zip(types, attrs["layouts"]):
        _need(keeps_time in (0, 1), f"layouts entries are 0 or 1, got {keeps_time}")
        _need(keeps_time or t.time == 1, f"an output without a time axis must have T = 1, got {t}")
    return []


# ---------------------------------------------------------------- time


@_register("repeat_time", 1, {"T": "int"}, OpTraits(OpCategory.VIEW, Phase.BOTH, preserves_spikes=True))
def _repeat_time(types, attrs):
    """Direct encoding: repeat a ``[1, B, ...]`` value over ``T`` time steps, ``y[t] = x[0]``."""
    (x,) = types
    _need(x.time == 1, f"repeat_time needs a value with T = 1, got {x}")
    _need(attrs["T"] >= 1, f"T must be >= 1, got {attrs['T']}")
    return [x.with_shape((attrs["T"], *x.shape[1:]))]


@_register("to_time_major", 1, {}, OpTraits(OpCategory.VIEW, Phase.BOTH, preserves_spikes=True))
def _to_time_major(types, attrs):
    """Move a time axis that the input carries after the batch (``[1, B, T, ...]``, e.g. event frames
    given as ``[B, T, C, H, W]``) to the front: ``y[t, b, ...] = x[0, b, t, ...]``."""
    (x,) = types
    _need(x.time == 1 and x.rank >= 3, f"to_time_major needs [1, B, T, ...], got {x}")
    return [x.with_shape((x.shape[2], x.batch, *x.shape[3:]))]


# ---------------------------------------------------------------- weight ops


def _check_bias(attrs, out_features: int) -> None:
    bias = attrs["bias"]
    if bias is not None:
        _need(bias.shape == (out_features,), f"bias shape {list(bias.shape)} does not match {out_features} outputs")


def _conv(types, attrs, spatial: int):
    (x,) = types
    w = attrs["weight"]
    _need(x.rank == 3 + spatial, f"conv{spatial}d needs [T, B, C, {'H, W' if spatial == 2 else 'L'}], got {x}")
    _need(w.ndim == 2 + spatial, f"weight must have rank {2 + spatial}, got shape {list(w.shape)}")
    stride = _check_tuple(attrs, "stride", spatial, 1)
    padding = _check_tuple(attrs, "padding", spatial, 0)
    dilation = _check_tuple(attrs, "dilation", spatial, 1)
    groups = attrs["groups"]
    _need(groups >= 1 and x.shape[2] % groups == 0 and w.shape[0] % groups == 0,
          f"groups={groups} must divide input channels {x.shape[2]} and output channels {w.shape[0]}")
    _need(w.shape[1] * groups == x.shape[2],
          f"weight expects {w.shape[1] * groups} input channels, got {x.shape[2]}")
    _check_bias(attrs, w.shape[0])
    spatial_out = tuple(_conv_out(x.shape[3 + i], w.shape[2 + i], stride[i], padding[i], dilation[i])
                        for i in range(spatial))
    return [x.with_shape((x.time, x.batch, w.shape[0], *spatial_out))]


_CONV_ATTRS = {"weight": "tensor", "bias": "tensor?", "stride": "ints", "padding": "ints",
               "dilation": "ints", "groups": "int"}


@_register("conv2d", 1, _CONV_ATTRS,
           OpTraits(OpCategory.WEIGHT, Phase.FLOAT, per_step=True, parameters=("weight", "bias")))
def _conv2d(types, attrs):
    """2-D cross-correlation per time step and sample, as ``torch.nn.functional.conv2d``:
    ``[T, B, Cin, H, W] -> [T, B, Cout, H', W']`` with ``weight [Cout, Cin/groups, kh, kw]``."""
    return _conv(types, attrs, 2)


@_register("conv1d", 1, _CONV_ATTRS,
           OpTraits(OpCategory.WEIGHT, Phase.FLOAT, per_step=True, parameters=("weight", "bias")))
def _conv1d(types, attrs):
    """1-D cross-correlation per time step and sample, as ``torch.nn.functional.conv1d``:
    ``[T, B, Cin, L] -> [T, B, Cout, L']`` with ``weight [Cout, Cin/groups, k]``."""
    return _conv(types, attrs, 1)


@_register("linear", 1, {"weight": "tensor", "bias": "tensor?"},
           OpTraits(OpCategory.WEIGHT, Phase.FLOAT, per_step=True, parameters=("weight", "bias")))
def _linear(types, attrs):
    """``y = x @ weight.T + bias`` over the last axis: ``[..., in] -> [..., out]``, weight ``[out, in]``."""
    (x,) = types
    w = attrs["weight"]
    _need(w.ndim == 2, f"weight must be [out, in], got shape {list(w.shape)}")
    _need(x.rank >= 3, f"linear needs at least one sample axis, got {x}")
    _need(w.shape[1] == x.shape[-1], f"weight expects {w.shape[1]} input features, got {x.shape[-1]}")
    _check_bias(attrs, w.shape[0])
    return [x.with_shape((*x.shape[:-1], w.shape[0]))]


@_register("batchnorm", 1, {"weight": "tensor?", "bias": "tensor?", "running_mean": "tensor",
                            "running_var": "tensor", "eps": "float", "axis": "int"},
           OpTraits(OpCategory.ELEMENTWISE, Phase.FLOAT, per_step=True, parameters=("weight", "bias")))
def _batchnorm(types, attrs):
    """Inference batch norm along channel ``axis`` (an IR axis >= 2):
    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` (weight 1, bias 0 when none)."""
    (x,) = types
    axis = attrs["axis"]
    _sample_axis(x, axis, "channel axis")
    channels = x.shape[axis]
    for name in ("weight", "bias", "running_mean", "running_var"):
        value = attrs[name]
        if value is not None:
            _need(value.shape == (channels,), f"{name} shape {list(value.shape)} does not match {channels} channels")
    _need(attrs["eps"] > 0, f"eps must be > 0, got {attrs['eps']}")
    return [x]


# ---------------------------------------------------------------- neurons


def _check_neuron(attrs) -> None:
    _need(math.isfinite(attrs["v_threshold"]), f"v_threshold must be finite, got {attrs['v_threshold']}")
    reset = attrs["v_reset"]
    _need(reset is None or math.isfinite(reset), f"v_reset must be finite or none, got {reset}")


@_register("lif", 1, {"tau": "float", "v_threshold": "float", "v_reset": "float?", "decay_input": "bool"},
           OpTraits(OpCategory.NEURON, Phase.FLOAT))
def _lif(types, attrs):
    """Leaky integrate-and-fire neurons, one per element, run over the time axis (spikingjelly's
    MultiStepLIFNode; the exact float update is in :mod:`spikec.nn`)::

        H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau      (decay_input; else V - (V - v_reset)/tau + X)
        S[t] = H[t] >= v_threshold
        V[t] = v_reset where S[t] else H[t]    (v_reset = none: V[t] = H[t] - S[t] * v_threshold)

    V[-1] = v_reset (0 when none). The output is the spike tensor S, with the input's shape."""
    (x,) = types
    _need(attrs["tau"] > 1.0, f"tau must be > 1, got {attrs['tau']}")
    _check_neuron(attrs)
    return [x]


@_register("plif", 1, {"decay": "float", "v_threshold": "float", "v_reset": "float?", "decay_input": "bool"},
           OpTraits(OpCategory.NEURON, Phase.FLOAT))
def _plif(types, attrs):
    """Parametric LIF neurons (spikingjelly's ParametricLIFNode, Fang et al. 2021): ``lif`` with a learned decay
    ``decay = sigmoid(w)`` multiplying where ``lif`` divides by ``tau``::

        H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) * decay      (decay_input; else V - (V - v_reset) * decay + X)

    fire and reset as ``lif``; ``decay`` is the float32 value the module computes from its weight ``w``."""
    (x,) = types
    _need(0.0 < attrs["decay"] < 1.0, f"decay must be in (0, 1), got {attrs['decay']}")
    _check_neuron(attrs)
    return [x]


@_register("if", 1, {"v_threshold": "float", "v_reset": "float?"}, OpTraits(OpCategory.NEURON, Phase.FLOAT))
def _if(types, attrs):
    """Integrate-and-fire neurons (no leak): ``H[t] = V[t-1] + X[t]``; fire and reset as ``lif``."""
    _check_neuron(attrs)
    return [types[0]]


# ---------------------------------------------------------------- elementwise


@_register("add", 2, {}, OpTraits(OpCategory.ELEMENTWISE, Phase.BOTH, per_step=True))
def _add(types, attrs):
    """Elementwise ``a + b`` with broadcasting (a residual connection)."""
    return [_broadcast(*types)]


@_register("mul", 2, {}, OpTraits(OpCategory.PRODUCT, Phase.BOTH, preserves_spikes=True, per_step=True))
def _mul(types, attrs):
    """Elementwise ``a * b`` of two dynamic values with broadcasting (e.g. SDSA's ``k * v``)."""
    return [_broadcast(*types)]


@_register("and_not", 2, {}, OpTraits(OpCategory.PRODUCT, Phase.BOTH, preserves_spikes=True, per_step=True))
def _and_not(types, attrs):
    """SEW-IAND ``(NOT a) AND s`` on spikes, computed as ``(1 - a) * s``; ``a`` is the block output,
    ``s`` the shortcut."""
    return [_broadcast(*types)]


@_register("scale", 1, {"factor": "float"}, OpTraits(OpCategory.ELEMENTWISE, Phase.FLOAT, per_step=True))
def _scale(types, attrs):
    """Multiply by a constant: ``y = x * factor`` (e.g. the attention scale 0.125)."""
    _need(math.isfinite(attrs["factor"]), f"factor must be finite, got {attrs['factor']}")
    return [types[0]]


@_register("scale_by", 1, {"factors": "tensor"}, OpTraits(OpCategory.ELEMENTWISE, Phase.FLOAT, per_step=True))
def _scale_by(types, attrs):
    """Multiply by a constant tensor broadcast over the sample axes, ``y = x * factors[None, None]``: a scale per
    channel or head, e.g. SpikingResformer's attention scale ``1 / sqrt(firing_rate * d)`` per head.
    ``factors`` has the rank of the sample shape; each of its axes is 1 or the value's."""
    (x,) = types
    factors = attrs["factors"]
    _need(factors.ndim == x.rank - 2 and all(f in (1, s) for f, s in zip(factors.shape, x.sample_shape)),
          f"factors of shape {list(factors.shape)} do not broadcast over sample shape {list(x.sample_shape)}")
    _need(bool(np.all(np.isfinite(factors))), "factors must be finite")
    return [x]


@_register("matmul", 2, {}, OpTraits(OpCategory.PRODUCT, Phase.BOTH, per_step=True))
def _matmul(types, attrs):
    """Product of two dynamic values over their last two axes, leading axes broadcast:
    ``[..., n, k] @ [..., k, m] -> [..., n, m]`` (attention's ``q @ k^T`` and ``attn @ v``)."""
    a, b = types
    _need(a.rank == b.rank and a.rank >= 4, f"matmul needs two values of equal rank >= 4, got {a} and {b}")
    _need(a.shape[-1] == b.shape[-2], f"inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
    try:
        lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise IRError(f"leading axes of {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    return [TensorType((*lead, a.shape[-2], b.shape[-1]), _need_same_dtype(types))]


# ---------------------------------------------------------------- pooling and reductions


def _pool(types, attrs):
    (x,) = types
    _need(x.rank >= 4, f"pooling needs [T, B, ..., H, W], got {x}")
    kernel = _check_tuple(attrs, "kernel", 2, 1)
    stride = _check_tuple(attrs, "stride", 2, 1)
    padding = _check_tuple(attrs, "padding", 2, 0)
    _need(all(2 * p <= k for p, k in zip(padding, kernel)), "padding must be at most half the kernel")
    dilation = attrs.get("dilation", (1, 1))
    out = tuple(_conv_out(x.shape[-2 + i], kernel[i], stride[i], padding[i], dilation[i], attrs["ceil_mode"])
                for i in range(2))
    return [x.with_shape((*x.shape[:-2], *out))]


@_register("maxpool", 1, {"kernel": "ints", "stride": "ints", "padding": "ints", "dilation": "ints",
                          "ceil_mode": "bool"},
           OpTraits(OpCategory.POOL, Phase.BOTH, preserves_spikes=True, per_step=True))
def _maxpool(types, attrs):
    """Max over ``kernel`` windows of the last two axes, as ``torch.nn.functional.max_pool2d``
    (padding is -inf). Of spikes it is an OR, still a spike."""
    _check_tuple(attrs, "dilation", 2, 1)
    return _pool(types, attrs)


@_register("avgpool", 1, {"kernel": "ints", "stride": "ints", "padding": "ints", "ceil_mode": "bool",
                          "count_include_pad": "bool", "divisor": "int?"},
           OpTraits(OpCategory.POOL, Phase.FLOAT, per_step=True))
def _avgpool(types, attrs):
    """Mean over ``kernel`` windows of the last two axes, as ``torch.nn.functional.avg_pool2d``
    (``divisor`` overrides the window size when given)."""
    divisor = attrs["divisor"]
    _need(divisor is None or divisor >= 1, f"divisor must be >= 1, got {divisor}")
    return _pool(types, attrs)


def _reduce(types, attrs):
    (x,) = types
    axes = attrs["axes"]
    _need(len(axes) >= 1 and len(set(axes)) == len(axes), f"axes must be distinct and non-empty, got {list(axes)}")
    _need(all(0 <= a < x.rank and a != 1 for a in axes),
          f"axes {list(axes)} must be IR axes of a rank-{x.rank} value other than the batch axis 1")
    shape = []
    for axis, size in enumerate(x.shape):
        if axis not in axes:
            shape.append(size)
        elif axis == 0 or attrs["keepdim"]:
            shape.append(1)
    return [x.with_shape(shape)]


@_register("mean", 1, {"axes": "ints", "keepdim": "bool"}, OpTraits(OpCategory.REDUCTION, Phase.FLOAT))
def _mean(types, attrs):
    """Mean over ``axes``. Averaging over time (axis 0) keeps a time axis of length 1; other axes are
    dropped unless ``keepdim``. The batch axis cannot be reduced."""
    return _reduce(types, attrs)


@_register("sum", 1, {"axes": "ints", "keepdim": "bool"}, OpTraits(OpCategory.REDUCTION, Phase.BOTH))
def _sum(types, attrs):
    """Sum over ``axes``, with the axis rules of ``mean`` (e.g. SDSA's column sum of ``k * v``)."""
    return _reduce(types, attrs)


# ---------------------------------------------------------------- views


@_register("slice", 1, {"axis": "int", "start": "int", "stop": "int"},
           OpTraits(OpCategory.VIEW, Phase.BOTH, preserves_spikes=True, per_step=True))
def _slice(types, attrs):
    """``x[..., start:stop, ...]`` along the sample axis ``axis``: the elements ``start <= i < stop`` (a
    query/key split such as SpikingResformer's ``y[:, :, :, :C // h]``)."""
    (x,) = types
    axis, start, stop = attrs["axis"], attrs["start"], attrs["stop"]
    _need(2 <= axis < x.rank, f"axis {axis} must be a sample axis of a rank-{x.rank} value (2..{x.rank - 1})")
    _need(0 <= start < stop <= x.shape[axis], f"slice {start}:{stop} must be a non-empty part of 0:{x.shape[axis]}")
    shape = list(x.shape)
    shape[axis] = stop - start
    return [x.with_shape(shape)]


@_register("concat", None, {"axis": "int"},
           OpTraits(OpCategory.VIEW, Phase.FLOAT, preserves_spikes=True, per_step=True))
def _concat(types, attrs):
    """``torch.cat`` of two or more values along the sample axis ``axis``; every other axis equal."""
    _need(len(types) >= 2, f"concat needs at least two values, got {len(types)}")
    first, axis = types[0], attrs["axis"]
    _sample_axis(first, axis, "axis")
    for t in types[1:]:
        _need(t.rank == first.rank and all(a == b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis),
              f"values of shapes {list(first.shape)} and {list(t.shape)} differ off axis {axis}")
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in types)
    return [TensorType(tuple(shape), _need_same_dtype(types))]


@_register("pad", 1, {"pads": "ints", "fill": "tensor"}, OpTraits(OpCategory.VIEW, Phase.FLOAT, per_step=True))
def _pad(types, attrs):
    """Constant padding of the last ``len(pads) // 2`` axes, ``pads`` = (before, after) per axis in axis order
    (``(top, bottom, left, right)`` for ``[T, B, C, H, W]``); the border of channel ``c`` (axis 2, never padded)
    holds ``fill[c]``. ``F.pad(x, p, value=v)`` is a pad with ``fill`` all ``v``; RepVGG-style BN-and-pad layers
    fill with what their batch norm makes of 0."""
    (x,) = types
    pads, fill = attrs["pads"], attrs["fill"]
    _need(len(pads) in (2, 4) and all(p >= 0 for p in pads), f"pads must be 2 or 4 values >= 0, got {list(pads)}")
    padded = len(pads) // 2
    _need(x.rank - padded >= 3, f"pad of {padded} axes needs a channel axis 2 before them, got {x}")
    _need(fill.shape == (x.shape[2],), f"fill shape {list(fill.shape)} does not match {x.shape[2]} channels")
    shape = list(x.shape)
    for i in range(padded):
        shape[x.rank - padded + i] += pads[2 * i] + pads[2 * i + 1]
    return [x.with_shape(shape)]


@_register("reshape", 1, {"shape": "ints"}, OpTraits(OpCategory.VIEW, Phase.BOTH, preserves_spikes=True, per_step=True))
def _reshape(types, attrs):
    """Reshape the sample axes (row-major), keeping T and B: ``[T, B, *a] -> [T, B, *shape]``.
    Flatten, unsqueeze and squeeze of sample axes are reshapes."""
    (x,) = types
    shape = attrs["shape"]
    _need(all(d >= 1 for d in shape), f"shape must be positive, got {list(shape)}")
    _need(math.prod(shape) == math.prod(x.sample_shape),
          f"cannot reshape sample shape {list(x.sample_shape)} to {list(shape)}")
    return [x.with_shape((x.time, x.batch, *shape))]


@_register("transpose", 1, {"perm": "ints"},
           OpTraits(OpCategory.VIEW, Phase.BOTH, preserves_spikes=True, per_step=True))
def _transpose(types, attrs):
    """Permute axes: ``y.shape[i] = x.shape[perm[i]]``. ``perm`` keeps axes 0 and 1 (time, batch)."""
    (x,) = types
    perm = attrs["perm"]
    _need(sorted(perm) == list(range(x.rank)), f"perm {list(perm)} is not a permutation of {x.rank} axes")
    _need(perm[0] == 0 and perm[1] == 1, f"perm {list(perm)} must keep the time and batch axes first")
    return [x.with_shape(tuple(x.shape[p] for p in perm))]


# ---------------------------------------------------------------- integer ops (after quantization)
#
# Integer values are i32 (messages, membrane inputs, spike counts; spikes are 0/1) or i64 (the host
# readout). The exact arithmetic of every integer op is written once, in spikec.backends.intsim, after
# Lava's bit-accurate models (docs/lava-semantics.md).


def _integer_input(x: TensorType, op: str) -> None:
    _need(x.dtype in ("i32", "i64"), f"{op} takes an integer value, got {x}")


@_register("quantize", 1, {"exp": "int", "lo": "int", "hi": "int"},
           OpTraits(OpCategory.ELEMENTWISE, Phase.INTEGER, per_step=True))
def _quantize(types, attrs):
    """Analog input to integers (graded spikes): ``y = clip(floor(x * 2**exp + 0.5), lo, hi)`` as i32."""
    (x,) = types
    _need(x.dtype in ("f32", "f64"), f"quantize takes a float value, got {x}")
    _need(attrs["lo"] <= attrs["hi"], f"empty range [{attrs['lo']}, {attrs['hi']}]")
    return [TensorType(x.shape, "i32")]


@_register("qconv2d", 1, {"weight": "tensor", "bias": "tensor?", "stride": "ints", "padding": "ints",
                          "dilation": "ints", "groups": "int"},
           OpTraits(OpCategory.WEIGHT, Phase.INTEGER, per_step=True, parameters=("weight", "bias")))
def _qconv2d(types, attrs):
    """Integer 2-D convolution with Lava Conv semantics: ``y = wrap24(conv(x, weight)) + bias`` per time step,
    weights already Lava's integers (Lava's Conv has no weight exponent); ``bias`` (i32 per output
    channel, in message units) is added every step and reaches the neurons through their bias."""
    (x,) = types
    _integer_input(x, "qconv2d")
    _need(attrs["weight"].dtype.kind == "i", "qconv2d weights must be integers")
    (out,) = _conv([x.with_shape(x.shape)], attrs, 2)
    return [TensorType(out.shape, "i32")]


@_register("qdense", 1, {"weight": "tensor", "bias": "tensor?", "weight_exp": "int", "axis": "int",
                         "graded": "bool", "host": "bool"},
           OpTraits(OpCategory.WEIGHT, Phase.INTEGER, per_step=True, parameters=("weight", "bias")))
def _qdense(types, attrs):
    """Integer dense synapses along ``axis`` (the last axis for a linear, the channel axis for a 1x1 conv),
    ``weight [out, in]`` integers. On chip (``host`` false) it is Lava's Dense: binary input sums weight
    columns in int64, graded input is an int32 dot (wrapping); the sum is shifted by ``weight_exp`` (floor)
    and cast to int32; then ``bias`` (message units) is added. On the host (the readout classifier) the same
    in int64 without wrapping, giving i64."""
    (x,) = types
    _integer_input(x, "qdense")
    w, axis = attrs["weight"], attrs["axis"]
    _need(w.ndim == 2 and w.dtype.kind == "i",
          f"weight must be an integer [out, in] matrix, got {w.dtype}{list(w.shape)}")
    _sample_axis(x, axis, "axis")
    _need(w.shape[1] == x.shape[axis], f"weight expects {w.shape[1]} inputs, got {x.shape[axis]}")
    _check_bias(attrs, w.shape[0])
    shape = list(x.shape)
    shape[axis] = w.shape[0]
    return [TensorType(tuple(shape), "i64" if attrs["host"] else "i32")]


@_register("qlif", 1, {"du": "int", "dv": "int", "vth": "int"}, OpTraits(OpCategory.NEURON, Phase.INTEGER))
def _qlif(types, attrs):
    """Lava's LIF (``PyLifModelBitAcc``) on the i32 input ``a`` (the sum of its synapses' messages), per step::

        u = sign(u*(4096-(du+1))) * (|u*(4096-(du+1))| >> 12) + (a << 6), wrapped to 24 bits
        v = sign(v*(4096-dv)) * (|v*(4096-dv)| >> 12) + u, saturated to +-(2**23-1)
        s = v > (vth << 6);  v = 0 where s

    Output: the spikes s (0/1, i32)."""
    (x,) = types
    _need(x.dtype == "i32", f"qlif takes i32 input, got {x}")
    _need(-1 <= attrs["du"] <= 4095 and 0 <= attrs["dv"] <= 4095, "du must be in -1..4095 and dv in 0..4095")
    _need(0 <= attrs["vth"] < 2 ** 17, f"vth must be in 0..2**17-1 (vth << 6 is 24-bit), got {attrs['vth']}")
    return [x]


@_register("qgain", 1, {"factor": "int"}, OpTraits(OpCategory.ELEMENTWISE, Phase.INTEGER, per_step=True))
def _qgain(types, attrs):
    """Multiply an integer value by an integer constant, ``y = x * factor`` in int32: the gain quantization
    puts on integer counts (e.g. spike-matmul outputs) before a neuron, so that its threshold lands
    between reachable membrane values."""
    (x,) = types
    _integer_input(x, "qgain")
    _need(attrs["factor"] >= 1, f"factor must be a positive integer, got {attrs['factor']}")
    return [x]


@_register("qshift", 1, {"shift": "int"}, OpTraits(OpCategory.ELEMENTWISE, Phase.INTEGER, per_step=True))
def _qshift(types, attrs):
    """Divide an integer value by ``2**shift``, rounding toward minus infinity: ``y = x >> shift``, Lava's
    floor shift of a synapse group's sum by a negative weight exponent. Quantization puts it after the sum that
    stands for a mean of ``n`` analog values, so that the neuron reading the mean keeps the scale of the values
    averaged (``n`` times it would leave no room for its threshold)."""
    (x,) = types
    _integer_input(x, "qshift")
    _need(1 <= attrs["shift"] <= 31, f"shift must be in 1..31, got {attrs['shift']}")
    return [x]
