"""The integer graph as an ONNX model that onnxruntime runs bit-exactly like intsim (docs/interop.md).

Every value is an ``int64`` tensor of the IR's ``[T, B, ...]`` shape, with the batch ``B`` left free. Each IR op
becomes the ONNX ops of intsim's reference rule for it (``backends/intsim``), exact integer arithmetic only:

    quantize      floor(x * 2**exp + 0.5) clipped to [lo, hi], in double (exact for float32 inputs), then int64
    qconv2d       ConvInteger (uint8 x uint8 -> int32) on base-256 digits of x - lo(x) and on the two halves of
                  the weights (w = 2 floor(w / 2) + (w mod 2), each in 8 bits with a zero point), summed in
                  int64; lo(x) times the convolution of ones; wrap24, + bias, wrap32
    qdense        MatMul in int64 (binary inputs as 0/1), floor shift by weight_exp, wrap32, + bias
    qlif          du = 4095 only (what quantization emits): unrolled over T, u = wrap24_once(wrap32(a << 6)),
                  v = saturate(decay(v, dv) + u), spike where v > vth << 6, v reset to 0
    add, mul, and_not, qgain, matmul, sum    int64, wrapped to int32 as intsim wraps them
    maxpool       MaxPool in double (exact for int32 values; ONNX pads never win, as PyTorch's)
    views         Reshape, Transpose, Slice, Tile, Squeeze

with ``wrap32(x) = ((x + 2**31) & (2**32 - 1)) - 2**31``, the floor shift ``(x - (x mod 2**k)) / 2**k`` (ONNX's
integer ``Mod`` takes the divisor's sign, its ``Div`` truncates) and ``decay(v, dv) = (v (4096 - dv)) / 4096``
(truncating, as Lava rounds toward zero). The range report bounds every convolution input, which fixes how many
digits it needs.

The model's input is the float tensor the PyTorch module takes (``[B, ...]`` or ``[T, B, ...]``); its outputs
are the graph's outputs (``output_0`` ...) and every neuron layer's spikes (``spikes_<i>``, ``[T, B, ...]``,
the i-th neuron layer in graph order; ``metadata_props`` maps each to its module path).
"""

from __future__ import annotations

import math

import numpy as np

from spikec.errors import UnsupportedError
from spikec.ir import Graph, Node
from spikec.ir.ops import OpCategory, Phase, ops_with

__all__ = ["export_onnx", "require_onnx", "embed_artifact", "load_embedded_artifact", "ONNX_OPSET", "UNSUPPORTED",
           "ARTIFACT_KEY"]

ONNX_OPSET = 18         # BitwiseAnd on int64
INT32_OFFSET = 1 << 31
STATE_LIMIT = 1 << 23
V_MAX = STATE_LIMIT - 1


class _Builder:
    """ONNX nodes and initializers under fresh names."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers, self._count = [], [], 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value, dtype=np.int64) -> str:
        name = self.fresh("c")
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        out = self.fresh(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    # --- the integer helpers of intsim's fixed-point rules --------------------------------------------------

    def cast(self, x: str, to) -> str:
        return self.op("Cast", x, to=to)

    def wrap32(self, x: str) -> str:
        shifted = self.op("Add", x, self.const(INT32_OFFSET))
        return self.op("Sub", self.op("BitwiseAnd", shifted, self.const((1 << 32) - 1)), self.const(INT32_OFFSET))

    def wrap24(self, x: str) -> str:
        shifted = self.op("Add", x, self.const(STATE_LIMIT))
        return self.op("Sub", self.op("BitwiseAnd", shifted, self.const(2 * STATE_LIMIT - 1)),
                       self.const(STATE_LIMIT))

    def shift_floor(self, x: str, exp: int) -> str:
        """``x << exp``, or for ``exp < 0`` the arithmetic right shift (rounding toward minus infinity)."""
        if exp >= 0:
            return x if exp == 0 else self.op("Mul", x, self.const(1 << exp))
        divisor = self.const(1 << -exp)
        return self.op("Div", self.op("Sub", x, self.op("Mod", x, divisor, fmod=0)), divisor)

    def reshape(self, x: str, shape) -> str:
        return self.op("Reshape", x, self.const(list(shape)))

    def leading(self, x: str, count: int) -> str:
        """The first ``count`` dimensions of ``x`` (its time and batch sizes) as a 1-D int64 tensor."""
        return self.op("Slice", self.op("Shape", x), self.const([0]), self.const([count]))

    def reshape_leading(self, x: str, like: str, count: int, rest) -> str:
        """``x`` reshaped to the first ``count`` dimensions of ``like`` followed by ``rest``."""
        return self.op("Reshape", x, self.op("Concat", self.leading(like, count), self.const(list(rest)), axis=0))


def _quantize(b: _Builder, node: Node, x: str, _) -> str:
    from onnx import TensorProto

    a = node.attrs
    scaled = b.op("Add", b.op("Mul", b.cast(x, TensorProto.DOUBLE), b.const(2.0 ** a["exp"], np.float64)),
                  b.const(0.5, np.float64))
    levels = b.op("Clip", b.op("Floor", scaled), b.const(float(a["lo"]), np.float64),
                  b.const(float(a["hi"]), np.float64))
    return b.cast(levels, TensorProto.INT64)


def _digits(lo: int, hi: int) -> int:
    """Base-256 digits of ``x - lo`` for ``x`` in ``[lo, hi]``."""
    return max(1, math.ceil(math.log2(hi - lo + 1) / 8))


def _conv_integer(b: _Builder, x_u8: str, w: np.ndarray, a: dict) -> str:
    """``conv(x, w)`` in int64 for ``x`` uint8 and ``w`` in [-256, 255]: two ConvIntegers, on ``floor(w / 2)``
    (zero point 128) and ``w mod 2``."""
    from onnx import TensorProto

    attrs = dict(strides=list(a["stride"]), pads=[*a["padding"], *a["padding"]], dilations=list(a["dilation"]),
                 group=a["groups"])
    half, odd = np.floor_divide(w, 2), np.mod(w, 2)
    high = b.op("ConvInteger", x_u8, b.const(half + 128, np.uint8), b.const(0, np.uint8), b.const(128, np.uint8),
                **attrs)
    low = b.op("ConvInteger", x_u8, b.const(odd, np.uint8), **attrs)
    return b.op("Add", b.op("Mul", b.cast(high, TensorProto.INT64), b.const(2)), b.cast(low, TensorProto.INT64))


def _qconv2d(b: _Builder, node: Node, x: str, ranges) -> str:
    from onnx import TensorProto

    a, w = node.attrs, node.attrs["weight"].astype(np.int64)
    if w.min(initial=0) < -256 or w.max(initial=0) > 255:
        raise UnsupportedError(f"{node.describe()}: ONNX export takes conv weights in [-256, 255] (Lava's 9 bits), "
                               f"got [{w.min()}, {w.max()}]")
    bound = ranges.of(node.inputs[0])
    _, _, C, H, W = node.inputs[0].type.shape
    _, _, out_channels, Ho, Wo = node.output.type.shape
    images = b.reshape(x, [-1, C, H, W])
    offset = b.op("Sub", images, b.const(bound.lo))
    y = None
    for digit in range(_digits(bound.lo, bound.hi)):
        part = b.op("Mod", b.op("Div", offset, b.const(256 ** digit)), b.const(256), fmod=0)
        term = _conv_integer(b, b.cast(part, TensorProto.UINT8), w, a)
        term = term if digit == 0 else b.op("Mul", term, b.const(256 ** digit))
        y = term if y is None else b.op("Add", y, term)
    if bound.lo:
        ones = b.cast(b.op("Add", b.op("Mul", images, b.const(0)), b.const(1)), TensorProto.UINT8)
        y = b.op("Add", y, b.op("Mul", _conv_integer(b, ones, w, a), b.const(bound.lo)))
    y = b.wrap24(y)
    y = b.reshape_leading(y, x, 2, [out_channels, Ho, Wo])
    if a["bias"] is not None:
        y = b.wrap32(b.op("Add", y, b.const(a["bias"].astype(np.int64).reshape(1, 1, -1, 1, 1))))
    return y


def _moved(rank: int, axis: int) -> list[int]:
    """The permutation that moves ``axis`` last (it is its own inverse's counterpart: see :func:`_qdense`)."""
    return [d for d in range(rank) if d != axis] + [axis]


def _qdense(b: _Builder, node: Node, x: str, _) -> str:
    from onnx import TensorProto

    a = node.attrs
    rank, axis = node.inputs[0].type.rank, a["axis"] % node.inputs[0].type.rank
    perm = _moved(rank, axis)
    moved = b.op("Transpose", x, perm=perm) if axis != rank - 1 else x
    operand = moved
    if not a["host"] and not a["graded"]:
        operand = b.cast(b.op("Not", b.op("Equal", moved, b.const(0))), TensorProto.INT64)
    product = b.op("MatMul", operand, b.const(a["weight"].astype(np.int64).T))
    if a["host"]:
        y = b.shift_floor(product, a["weight_exp"])
    else:
        acc = b.wrap32(product) if a["graded"] else product
        y = b.wrap32(b.shift_floor(acc, a["weight_exp"]))
    if a["bias"] is not None:
        y = b.op("Add", y, b.const(a["bias"].astype(np.int64)))
        y = y if a["host"] else b.wrap32(y)
    if axis != rank - 1:
        y = b.op("Transpose", y, perm=[perm.index(d) for d in range(rank)])
    return y


def _qlif(b: _Builder, node: Node, x: str, _) -> str:
    from onnx import TensorProto

    from spikec.backends.intsim.fixed_point import ACTIVATION_SHIFT, DECAY_UNITY, DU_NO_CURRENT_MEMORY

    a = node.attrs
    if a["du"] != DU_NO_CURRENT_MEMORY:
        raise UnsupportedError(f"{node.describe()}: ONNX export takes neurons without current memory (du = "
                               f"{DU_NO_CURRENT_MEMORY}, what spikec's quantization emits), got du = {a['du']}")
    T = node.inputs[0].type.shape[0]
    threshold = b.const(a["vth"] << ACTIVATION_SHIFT)
    v, spikes = None, []
    for t in range(T):
        step = b.op("Slice", x, b.const([t]), b.const([t + 1]), b.const([0]))
        u = b.wrap32(b.op("Mul", step, b.const(1 << ACTIVATION_SHIFT)))
        u = b.op("Where", b.op("Greater", u, b.const(STATE_LIMIT)), b.op("Sub", u, b.const(2 * STATE_LIMIT)),
                 b.op("Where", b.op("LessOrEqual", u, b.const(-STATE_LIMIT)),
                      b.op("Add", u, b.const(2 * STATE_LIMIT)), u))
        if v is not None:   # decay(v, dv): the product truncated toward zero, as ONNX's integer Div does
            u = b.op("Add", b.op("Div", b.op("Mul", v, b.const(DECAY_UNITY - a["dv"])), b.const(DECAY_UNITY)), u)
        v = b.op("Clip", u, b.const(-V_MAX), b.const(V_MAX))
        fired = b.op("Greater", v, threshold)
        v = b.op("Where", fired, b.const(0), v)
        spikes.append(b.cast(fired, TensorProto.INT64))
    return spikes[0] if T == 1 else b.op("Concat", *spikes, axis=0)


def _sum(b: _Builder, node: Node, x: str, _) -> str:
    a = node.attrs
    rank = node.inputs[0].type.rank
    axes = [axis % rank for axis in a["axes"]]
    y = b.op("ReduceSum", x, b.const(axes), keepdims=1)
    drop = [axis for axis in axes if axis != 0 and not a["keepdim"]]
    if drop:
        y = b.op("Squeeze", y, b.const(drop))
    return y if node.output.type.dtype == "i64" else b.wrap32(y)


def _maxpool(b: _Builder, node: Node, x: str, _) -> str:
    from onnx import TensorProto

    a = node.attrs
    shape = node.inputs[0].type.shape
    H, W = shape[-2:]
    Ho, Wo = node.output.type.shape[-2:]
    flat = b.cast(b.reshape(x, [-1, 1, H, W]), TensorProto.DOUBLE)
    pooled = b.op("MaxPool", flat, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                  pads=[*a["padding"], *a["padding"]], dilations=list(a["dilation"]), ceil_mode=int(a["ceil_mode"]))
    return b.reshape_leading(b.cast(pooled, TensorProto.INT64), x, len(shape) - 2, [Ho, Wo])


def _repeat_time(b: _Builder, node: Node, x: str, _) -> str:
    if node.inputs[0].type.shape[0] != 1:
        raise UnsupportedError(f"{node.describe()}: ONNX export repeats a value of one time step")
    return b.op("Tile", x, b.const([node.attrs["T"]] + [1] * (node.inputs[0].type.rank - 1)))


def _binary(op: str, wrap: bool = True):
    def rule(b: _Builder, node: Node, x: str, _, y: str) -> str:
        out = b.op(op, x, y)
        return b.wrap32(out) if wrap else out
    return rule


def _and_not(b: _Builder, node: Node, x: str, _, y: str) -> str:
    return b.wrap32(b.op("Mul", b.op("Sub", b.const(1), x), y))


_UNARY = {
    "quantize": _quantize,
    "qconv2d": _qconv2d,
    "qdense": _qdense,
    "qlif": _qlif,
    "qgain": lambda b, node, x, _: b.wrap32(b.op("Mul", x, b.const(node.attrs["factor"]))),
    "qshift": lambda b, node, x, _: b.shift_floor(x, -node.attrs["shift"]),
    "sum": _sum,
    "maxpool": _maxpool,
    "repeat_time": _repeat_time,
    "to_time_major": lambda b, node, x, _: b.op("Transpose", b.op("Squeeze", x, b.const([0])),
                                                perm=[1, 0, *range(2, node.output.type.rank)]),
    "reshape": lambda b, node, x, _: b.reshape(x, [0, 0, *node.attrs["shape"]]),
    "transpose": lambda b, node, x, _: b.op("Transpose", x, perm=list(node.attrs["perm"])),
    "slice": lambda b, node, x, _: b.op("Slice", x, b.const([node.attrs["start"]]), b.const([node.attrs["stop"]]),
                                        b.const([node.attrs["axis"]])),
}
_BINARY = {
    "add": _binary("Add"),
    "mul": _binary("Mul"),
    "matmul": _binary("MatMul"),
    "and_not": _and_not,
}
UNSUPPORTED = "ops ONNX export has no rule for"


def _check_supported(graph: Graph) -> None:
    known = set(_UNARY) | set(_BINARY) | {"input", "output"}
    missing = sorted({n.op for n in graph.nodes if n.op not in known})
    if missing:
        where = ", ".join(next(n.describe() for n in graph.nodes if n.op == op) for op in missing)
        raise UnsupportedError(f"{graph.name}: {UNSUPPORTED}: {', '.join(missing)} (first at {where}); ONNX export "
                               "takes a compiled integer graph")


def _output(b: _Builder, name: str, value: str, shape: list):
    from onnx import TensorProto, helper

    b.nodes.append(helper.make_node("Identity", [value], [name]))
    return helper.make_tensor_value_info(name, TensorProto.INT64, shape)


def require_onnx():
    """The ``onnx`` package, or one line saying how to install it (it comes with the ``interop`` extra)."""
    try:
        import onnx
    except ImportError:
        from spikec.errors import InputError

        raise InputError("ONNX export and ONNX files need the onnx package, which is not installed: "
                         "pip install 'spikec[interop]'") from None
    return onnx


def export_onnx(graph: Graph, name: str | None = None):
    """The ONNX model (an ``onnx.ModelProto``, opset :data:`ONNX_OPSET`) of the compiled integer ``graph``; see
    the module docstring. Raises :class:`UnsupportedError` naming every op it has no rule for."""
    onnx = require_onnx()
    from onnx import TensorProto, helper

    from spikec.passes.range_analysis import analyze_ranges

    _check_supported(graph)
    ranges = analyze_ranges(graph)
    b = _Builder()
    names, inputs = {}, []
    for index, node in enumerate(graph.input_nodes):
        shape = node.output.type.shape
        torch_shape = ["batch", *shape[2:]] if node.attrs["layout"] == "B" else [shape[0], "batch", *shape[2:]]
        inputs.append(helper.make_tensor_value_info(f"input_{index}", TensorProto.FLOAT, torch_shape))
        value = f"input_{index}"
        names[node.output] = b.op("Unsqueeze", value, b.const([0])) if node.attrs["layout"] == "B" else value
    neuron_ops = ops_with(category=OpCategory.NEURON, phase=Phase.INTEGER)
    spikes = []
    for node in graph.nodes:
        if node.op in ("input", "output"):
            continue
        args = [names[v] for v in node.inputs]
        rule = _UNARY.get(node.op)
        out = rule(b, node, args[0], ranges) if rule else _BINARY[node.op](b, node, args[0], ranges, args[1])
        names[node.output] = out
        if node.op in neuron_ops:
            spikes.append((node, out))
    outputs = []
    for index, (value, keep) in enumerate(zip(graph.output_node.inputs, graph.output_node.attrs["layouts"])):
        shape = ["batch" if axis == 1 else d for axis, d in enumerate(value.type.shape)]
        result = names[value] if keep else b.op("Gather", names[value], b.const(0), axis=0)   # as interpret()
        outputs.append(_output(b, f"output_{index}", result, shape if keep else shape[1:]))
    for index, (node, value) in enumerate(spikes):
        outputs.append(_output(b, f"spikes_{index}", value, [node.output.type.shape[0], "batch",
                                                             *node.output.type.shape[2:]]))
    model = helper.make_model(helper.make_graph(b.nodes, name or graph.name, inputs, outputs, b.initializers),
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="spikec")
    model.ir_version = 8            # onnxruntime 1.23 reads ONNX IR up to version 10; 8 is opset 18's
    onnx.helper.set_model_props(model, {f"spikes_{i}": node.module or "" for i, (node, _) in enumerate(spikes)})
    onnx.checker.check_model(model)
    return model


ARTIFACT_KEY = "spikec.artifact"
"""The ``metadata_props`` key under which an export carries its artifact (a base64 zip of the artifact's files),
so that ``spikec simulate FILE.onnx --compare intsim`` has intsim's graph to compare with."""


def embed_artifact(model, directory: str) -> None:
    """Store the artifact directory's files in ``model``'s metadata (:data:`ARTIFACT_KEY`)."""
    import base64
    import io
    import os
    import zipfile

    from spikec.compiler import ARTIFACT_FILES

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ARTIFACT_FILES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                archive.write(path, name)
    entry = model.metadata_props.add()
    entry.key, entry.value = ARTIFACT_KEY, base64.b64encode(buffer.getvalue()).decode("ascii")


def load_embedded_artifact(path: str):
    """The artifact (:class:`spikec.compiler.Artifact`) an ONNX file written by ``spikec export`` carries; one
    clear error for any other file."""
    import base64
    import binascii
    import io
    import os
    import tempfile
    import zipfile

    from spikec.compiler import ARTIFACT_FILES, load_artifact
    from spikec.errors import InputError
    from spikec.files import MAX_INPUT_BYTES, require_regular_file

    require_regular_file(path, "an ONNX file")
    onnx = require_onnx()
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # not protobuf, truncated
        raise InputError(f"{path} is not a readable ONNX file: {type(exc).__name__}: {exc}") from None
    blob = next((p.value for p in model.metadata_props if p.key == ARTIFACT_KEY), None)
    if blob is None:
        raise InputError(f"{path} was not written by `spikec export --to onnx` (it carries no spikec artifact): "
                         "spikec simulates the ONNX files it exports")
    with tempfile.TemporaryDirectory(prefix="spikec-onnx-") as directory:
        try:
            archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(blob, validate=True)))
            members = [info for info in archive.infolist() if info.filename in ARTIFACT_FILES]  # nothing else
            if sum(info.file_size for info in members) > MAX_INPUT_BYTES:
                raise ValueError("it unpacks to more than spikec reads into memory")
            for info in members:
                with open(os.path.join(directory, info.filename), "wb") as f:
                    f.write(archive.read(info))
        except (binascii.Error, zipfile.BadZipFile, ValueError) as exc:
            raise InputError(f"{path}: its embedded spikec artifact is damaged ({exc})") from None
        return load_artifact(directory)
