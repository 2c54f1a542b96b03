"""quantize: turn a folded float graph into an integer graph with Lava's fixed-point semantics.

Inputs: a float graph after fold-batchnorm, fold-scales and canonicalize (no batchnorm or scale left).
Output: a new graph of integer ops (:mod:`spikec.ir.ops` ``quantize``, ``qconv2d``, ``qdense``,
``qgain``, ``qlif``, plus the structural ops on i32 values) and a :class:`QuantizationReport`. Every float op
has a rule (``QUANTIZE_RULES``), is an op of both phases, copied as it is, or is refused with the reason
(``UNQUANTIZABLE``); any other op is an error naming it, before anything is built.

**Scales.** Every value gets a scale (:mod:`spikec.passes.scale_classes`): ``x_int ≈ scale * x``. Each free
class scale is a power of two ``m = 2**k``, chosen as large as these limits allow:

* a neuron reading the class: its threshold mantissa (below) at most ``2**vth_bits`` (precision with
  headroom: Lava's ``v`` is 24-bit and ``vth << 6`` must fit);
* the host readout: 16-bit weights.

Then range analysis (:mod:`spikec.passes.range_analysis`) checks every message and state; where one can
overflow, the class (or gain) responsible is halved and the graph rebuilt, until none can.

**Synapses.** A conv/linear ``y = W x + b`` with input scale ``s_in`` and output scale ``s`` needs integer
weights ``≈ (s / s_in) W``. A dense group (linear, 1x1 conv) uses Lava's Dense format: 8-bit even mantissas
``W_int`` in ``[-256, 254]`` and a shared exponent ``e`` (``e = ceil(log2(max|t| / 254))`` for the target
``t = (s / s_in) W``), messages ``(W_int x) * 2**e`` (floor shift). A spatial conv uses ``W_int =`` the
target rounded to even; Lava's Conv has no weight exponent, so where the target exceeds 8 bits the conv sums
``t / 2**e`` (``e = ceil(log2(max|t| / 254)) > 0``, its bias at that scale too) and an exact ``qgain 2**e``
follows it; where the largest target fits 7 bits and the weight error exceeds ``_FINER_ERROR`` (typically the
encoding layer, whose input scale is ``2**input_exp``), the conv sums at ``2**-e`` times the output scale
(``e < 0``, 8-bit weights ``t / 2**e``) and a floor shift ``qshift -e`` brings the sum down (range analysis
takes bits off ``-e`` where the conv's 24-bit sums could wrap). Either kind takes one exponent less, its largest
weights clipped to 8 bits, where that gives a smaller error. The encoding conv (the layer reading the analog
input) adds a residual group: the 8-bit residual ``r`` of what its ``W`` left, ``k`` bits finer, summed with ``W``
(through a gain ``2**k``) and floor-shifted to the output scale, 16-bit weights in all
(:meth:`_Builder._residual`). A Dense group whose bulk's weight error exceeds
``_OUTLIER_ERROR`` because a few weights set its exponent is split into two groups whose messages sum at the
neurons (:func:`_split_outliers`).
The bias becomes ``round(s * b)`` messages added every step. Nonzero weights that all quantize to
0 are an :class:`InputError` naming the layer.

**Input.** The model input is assumed to lie in ``input_range`` (default [0, 1], normalised images) and is
clipped there: ``x_int = clip(floor(x * 2**input_exp + 0.5))``. Event counts want ``input_exp = 0`` and their
count range. With ``options.calibration``, quantize chooses ``input_exp`` in ``0..options.input_exp``
(``_calibrate``): every bit of the input costs the encoding layer (the weight op reading the input) a weight
bit, since its output scale does not depend on the input exponent; the exponent with the smallest
``sqrt(input_error² + weight_error²)`` wins, the input's rounding error measured on the calibration samples.
The graph is then built at that exponent and range analysis proves it, as for a given exponent.

**Neurons.** spikingjelly's LIF ``H = V (1 - 1/τ) + X/τ`` (decay_input) maps to Lava's
``v = v (1 - dv/4096) + (a << 6)`` with ``du = 4095`` (no current memory), ``dv = round(4096/τ)`` and
``v = c H`` for ``c = 64 s_in τ`` (``c = 64 s_in`` without decay_input or for IF, where ``dv = 0``; a PLIF,
whose charge multiplies by its learned decay ``d``, is a LIF of ``τ = 1/d``). The
float neuron fires when ``H >= θ``, i.e. ``v >= c θ``; Lava fires when ``v > vth << 6``. spikec sets
``vth = ceil(c θ / 64) - 1``, the largest mantissa strictly below ``c θ / 64``, so Lava fires for
``v >= 64 vth + 1``: the two agree unless a reachable ``v`` lies in the ``< 64``-wide gap below ``c θ``.
Neurons fed by exact integer counts (spike matmuls) get a power-of-two gain (``qgain``) that makes ``c θ``
large enough for that gap to hold no reachable value. The reset must be hard, to 0 (Lava's).

**Readout.** A weight op whose output reaches the model output without passing a neuron is the host
classifier: 16-bit weights, int64. Means become sums (the scale absorbs ``1/n``); a mean of analog values that a
neuron reads becomes its sum floor-shifted by ``floor(log2 n)`` bits (``qshift``), so that the neuron keeps the
scale of the values averaged.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Callable

import numpy as np

from spikec.backends.intsim.fixed_point import (DECAY_UNITY, DENSE_MANTISSA_MAX, DENSE_MANTISSA_MIN,
                                                DENSE_MANTISSA_STEP, DU_NO_CURRENT_MEMORY)
from spikec.errors import InputError, PassError, UnsupportedError
from spikec.ir import Graph, Node, Value
from spikec.ir.ops import OpCategory, Phase, op_traits, spike_valued
from spikec.passes.base import AnalysisCache, PassResult, Transform
from spikec.passes.range_analysis import RangeAnalysis, RangeReport
from spikec.passes.scale_classes import ONE, Scale, ScaleClassAnalysis, ScaleClasses

__all__ = ["Calibration", "QuantizeOptions", "QuantizationReport", "LayerQuantization", "NeuronQuantization",
           "Quantize", "QuantizeResult", "QUANTIZE_RULES", "UNQUANTIZABLE", "unquantizable"]

_MAX_ITERATIONS = 64
_OUTLIER_ERROR = 0.04
"""The weight error of a Dense group's bulk above which its largest weights are looked at as outliers
(_split_outliers)."""
_FINEST_CONV_SUM = 16
"""The most fractional bits a spatial conv sums at (before range analysis takes any away)."""
_FINER_ERROR = 0.02
"""A spatial conv's weight error at its output scale above which it sums finer (_weight_error)."""
_RESIDUAL_BITS = 8
"""How many bits finer than its 8-bit weights the encoding conv keeps in a residual group (before range analysis
takes any away): the two groups give it 16-bit weights (_Builder._residual)."""


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Calibration inputs: ``samples`` (model inputs, batch first) and where they came from (a data set's name,
    or ``random``). ``observe(graph, samples, visit)`` runs a float graph on them, ``visit(node, args)`` seeing
    every op's arguments (the float backend's ``observe_float``); given for data, it turns on bias correction
    (:func:`_input_means`)."""

    samples: np.ndarray
    source: str
    observe: Callable[[Graph, np.ndarray, Callable], None] | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class QuantizeOptions:
    input_exp: int = 8          # the image is quantized as round(x * 2**input_exp) ...
    input_range: tuple[float, float] = (0.0, 1.0)  # ... clipped to this range (what range analysis assumes)
    vth_bits: int = 12          # threshold mantissas aim at 2**vth_bits
    allow_saturation: bool = False
    # with calibration, quantize chooses the input exponent in 0..input_exp from it (_calibrate)
    calibration: Calibration | None = dataclasses.field(default=None, compare=False, hash=False)

    def __post_init__(self):
        lo, hi = self.input_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InputError(f"the input range must be two finite numbers LO < HI, got {lo}, {hi}")
        if not 0 <= self.input_exp <= 16:
            raise InputError(f"the input exponent must lie in 0..16, got {self.input_exp}")


@dataclasses.dataclass(frozen=True)
class LayerQuantization:
    module: str
    op: str
    kind: str                   # "dense", "conv" or "host"
    scale_in: float
    scale_out: float
    weight_exp: int
    max_weight: int
    relative_error: float       # ||W_int 2^e / (s/s_in) - W|| / ||W||
    outliers: int = 0           # weights also held by an outlier group at exponent outlier_exp (_split_outliers)
    outlier_exp: int | None = None
    residual_bits: int = 0      # the encoding conv's residual group: 8-bit weights this many bits finer


@dataclasses.dataclass(frozen=True)
class NeuronQuantization:
    module: str
    scale_in: float
    gain: int
    du: int
    dv: int
    vth: int
    threshold_exact: float      # c θ / 64, of which vth is the largest integer below


@dataclasses.dataclass(frozen=True)
class QuantizationReport:
    input_exp: int
    input_range: tuple[float, float]  # inputs outside are clipped; range analysis holds for inputs inside
    layers: list[LayerQuantization]
    neurons: list[NeuronQuantization]
    output_scales: list[float]  # float output ≈ integer output / scale
    iterations: int
    calibration: dict | None = None  # how the input exponent was chosen (_calibrate), None when it was given


# ---------------------------------------------------------------- float-graph facts


def _feeds_output_directly(node: Node) -> bool:
    """Whether the output is reachable from ``node`` without passing a neuron or another weight op: then
    ``node`` is the last weight op before the output, the readout classifier."""
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        for user in current.outputs[0].users() if current.outputs else []:
            if user.op == "output":
                return True
            if op_traits(user.op).category not in (OpCategory.NEURON, OpCategory.WEIGHT) and user not in seen:
                seen.add(user)
                stack.append(user)
    return False


def _is_pointwise_conv(node: Node) -> bool:
    a = node.attrs
    kernel = a["weight"].shape[2:]
    return (all(k == 1 for k in kernel) and all(s == 1 for s in a["stride"]) and all(p == 0 for p in a["padding"])
            and a["groups"] == 1)


def _synapse_kind(node: Node) -> str:
    if _feeds_output_directly(node):
        return "host"
    if node.op == "linear" or _is_pointwise_conv(node):
        return "dense"
    if node.op == "conv1d":
        raise UnsupportedError(f"quantize: {node.describe()}: a conv1d with kernel {node.attrs['weight'].shape[2]} "
                               "has no Lava synapse; only 1x1 (token-wise) conv1d is supported")
    return "conv"


# ---------------------------------------------------------------- choosing the scales


@dataclasses.dataclass
class _Plan:
    """The exponent of every free class root and the gain exponent of every integer-fed neuron."""

    root_exp: dict[str, int]
    gain_exp: dict[Node, int]
    residual: dict[Node, int] = dataclasses.field(default_factory=dict)  # encoding conv -> its residual group's bits
    finest: dict[Node, int] = dataclasses.field(default_factory=dict)  # spatial conv -> the most bits it may
                                                                       # sum finer than its output scale

    def finest_of(self, node: Node) -> int:
        return self.finest.get(node, _FINEST_CONV_SUM)

    def residual_of(self, node: Node) -> int:
        return self.residual.get(node, _RESIDUAL_BITS)


def _numeric(scale: Scale, plan: _Plan) -> Fraction:
    return scale.ratio * (Fraction(2) ** plan.root_exp[scale.root] if scale.root != ONE else 1)


def _tau(node: Node) -> float:
    """A leaky neuron's time constant: a PLIF's is ``1 / decay``."""
    return node.attrs["tau"] if node.op == "lif" else 1.0 / node.attrs["decay"]


def _threshold_factor(node: Node) -> float:
    """``c θ / (64 s_in)``: τθ with decay_input, else θ."""
    a = node.attrs
    if node.op in ("lif", "plif") and a["decay_input"]:
        return _tau(node) * a["v_threshold"]
    return a["v_threshold"]


def _exact_gain_exp(node: Node, ratio: float, factor: float) -> int:
    """The gain exponent that puts every membrane value an integer-fed LIF can reach on a multiple of 64, so that
    the gap of less than 64 below ``c θ`` holds none and the neuron fires exactly as the float one: with
    ``τ = 2**j`` the membrane after ``T`` steps has the denominator ``τ**T`` (``τ**(T-1)`` without decay_input),
    so ``c = 64 s τ`` (``64 s``) needs ``s >= τ**(T-1)``. 0 when no gain within the threshold's 17 bits gives it
    (a τ not a power of two, or too many steps): then the gap is left as it is."""
    if node.op != "lif" or node.attrs["tau"] <= 1 or not math.log2(node.attrs["tau"]).is_integer():
        return 0
    steps = node.inputs[0].type.time
    exp = max(0, math.ceil(int(math.log2(node.attrs["tau"])) * (steps - 1) - math.log2(ratio)))
    return exp if math.log2(ratio * factor) + exp < math.log2(2 ** 17 - 1) else 0


def _initial_plan(graph: Graph, classes: ScaleClasses, options: QuantizeOptions) -> _Plan:
    limits: dict[str, list[float]] = {}
    gains: dict[Node, int] = {}
    target = 2.0 ** options.vth_bits
    for node in graph.nodes:
        if op_traits(node.op).category is OpCategory.NEURON:
            s = classes.scale(node.inputs[0])
            factor = _threshold_factor(node)
            if not math.isfinite(factor):
                raise InputError(f"quantize: {node.describe()} has tau {node.attrs.get('tau')} and threshold "
                                 f"{node.attrs['v_threshold']}: both must be finite")
            if factor <= 0:
                raise PassError(f"quantize: {node.describe()} has a non-positive threshold {node.attrs['v_threshold']}")
            if s.fixed:
                gain_exp = max(0, math.floor(math.log2(target / (float(s.ratio) * factor))))
                gains[node] = max(gain_exp, _exact_gain_exp(node, float(s.ratio), factor))
            else:
                limits.setdefault(s.root, []).append(math.log2(target / (float(s.ratio) * factor)))
        elif op_traits(node.op).category is OpCategory.WEIGHT:
            kind = _synapse_kind(node)
            if kind == "host":
                continue  # its scale follows its input's, once that is chosen (_Builder._host_scale)
            if not classes.scale(node.inputs[0]).fixed:
                raise UnsupportedError(f"quantize: {node.describe()} reads the analog output of another weight op "
                                       "(e.g. conv -> batch norm -> conv): Loihi's synapses read spikes or a "
                                       "neuron's graded output; put a neuron between them, or fold the pair")
    root_exp = {root: math.floor(min(values)) for root, values in limits.items()}
    for root in classes.parent:
        top = classes.find(root)[1]
        root_exp.setdefault(top, 0)
    return _Plan(root_exp, gains)


# ---------------------------------------------------------------- weights


def _even_round(x: np.ndarray) -> np.ndarray:
    return DENSE_MANTISSA_STEP * np.round(x / DENSE_MANTISSA_STEP)


def _quantize_weights(weight: np.ndarray, ratio: float, kind: str, finest: int = 0) -> tuple[np.ndarray, int]:
    """Integer weights and exponent for ``ratio * weight`` (see the module docstring); a spatial conv's exponent
    is at least ``-finest``."""
    target = weight.astype(np.float64) * ratio
    peak = float(np.abs(target).max(initial=0.0))
    if kind == "conv":
        exp = 0 if peak == 0 else max(-finest, math.ceil(math.log2(peak / DENSE_MANTISSA_MAX)))
        return _mantissas(target, exp), exp
    if kind == "host":
        exp = 0 if peak <= 32767 else math.ceil(math.log2(peak / 32767))
        return np.clip(np.round(target / 2.0 ** exp), -32767, 32767).astype(np.int32), exp
    exp = 0 if peak == 0 else math.ceil(math.log2(peak / DENSE_MANTISSA_MAX))
    return _mantissas(target, exp), exp


def _mantissas(target: np.ndarray, exp: int) -> np.ndarray:
    """The even 8-bit mantissas of ``target`` at exponent ``exp``, clipped to ``[-256, 254]``."""
    return np.clip(_even_round(target / 2.0 ** exp), DENSE_MANTISSA_MIN, DENSE_MANTISSA_MAX).astype(np.int32)


def _weight_error(weight: np.ndarray, ratio: float, kind: str, finest: int = 0) -> tuple[np.ndarray, int, float]:
    """The integer weights and exponent for ``ratio * weight`` and their relative error
    ``||W_int 2^e / ratio - W|| / ||W||`` (1 when every weight quantizes to 0). A spatial conv sums finer (down
    to ``2**-finest``) only where its weights at the output scale have an error above ``_FINER_ERROR``: the
    shift after it costs a neuron and a synapse per output on Lava.

    An 8-bit group whose largest weight lands just above a power of two leaves the rest a bit unused: one
    exponent less, the largest weights clipped to the 8 bits, is taken where its error is smaller."""
    w_int, exp = _quantize_weights(weight, ratio, kind)
    error = _relative_error(weight, w_int, exp, ratio)
    lowest = 0 if kind == "conv" else -math.inf
    if kind == "conv" and finest and error > _FINER_ERROR:
        w_int, exp = _quantize_weights(weight, ratio, kind, finest)
        error = _relative_error(weight, w_int, exp, ratio)
        lowest = -finest
    if kind != "host" and exp - 1 >= lowest and w_int.any():
        clipped = _mantissas(weight.astype(np.float64) * ratio, exp - 1)
        clipped_error = _relative_error(weight, clipped, exp - 1, ratio)
        if clipped_error < error:
            w_int, exp, error = clipped, exp - 1, clipped_error
    return w_int, exp, error


def _residual_group(weight: np.ndarray, ratio: float, w_int: np.ndarray, exp: int, bits: int):
    """The 8-bit residual ``r`` of the target ``ratio * weight`` that ``W 2**exp`` leaves, ``bits`` finer, and
    the error of the two groups together; ``(None, error of W)`` when ``r`` is all zero."""
    target = weight.astype(np.float64) * ratio
    residual = _mantissas(target - w_int * 2.0 ** exp, exp - bits)
    if not residual.any():
        return None, _relative_error(weight, w_int, exp, ratio)
    return residual, _relative_error(weight, w_int * 2.0 ** exp + residual * 2.0 ** (exp - bits), 0, ratio)


def _relative_error(weight: np.ndarray, w_int: np.ndarray, exp: int, ratio: float) -> float:
    approx = w_int.astype(np.float64) * 2.0 ** exp / ratio
    return float(np.linalg.norm(approx - weight) / max(np.linalg.norm(weight), 1e-30))


@dataclasses.dataclass(frozen=True)
class _OutlierSplit:
    """A Dense group's weights as two groups reading the same input: ``low`` at the exponent the bulk of the
    weights needs and ``high``, nonzero only at the outliers, at the exponent of the largest weight."""

    low: np.ndarray
    low_exp: int
    high: np.ndarray
    high_exp: int
    error: float


def _split_outliers(weight: np.ndarray, ratio: float, error: float) -> _OutlierSplit | None:
    """Split a Dense group whose few largest weights take its shared exponent from the rest (PyTorch's
    ``trunc_normal_(std=0.02)`` can draw a weight at its bound 2, a hundred deviations out).

    The trigger is the error of the bulk, the weights below the 99th percentile of ``|W|``: the error of the
    whole group (``error``) hides it where an outlier holds most of the group's norm. With ``exp`` the exponent
    of the largest target, for ``d = 1..8``: ``low = round(t / 2**(exp - d))`` clipped to 8 bits, and ``high =
    round((t - low 2**(exp - d)) / 2**exp)`` takes what the clip left; the ``d`` with the smallest error wins.
    The split is kept when its outliers are at most 1% of the weights, its error is no larger than the single
    group's and its bulk error is at most half the single group's; the two groups' messages sum at the neurons
    they feed."""
    target = weight.astype(np.float64) * ratio
    bulk = np.abs(weight) <= np.quantile(np.abs(weight), 0.99)
    w_int, exp = _quantize_weights(weight, ratio, "dense")
    single_bulk = _relative_error(weight[bulk], w_int[bulk], exp, ratio)
    if single_bulk <= _OUTLIER_ERROR:
        return None
    best = None
    for drop in range(1, 9):
        low = _mantissas(target, exp - drop)
        high = _mantissas(target - low * 2.0 ** (exp - drop), exp)
        approx = (high * 2.0 ** exp + low * 2.0 ** (exp - drop)) / ratio
        split_error = _relative_error(weight, approx, 0, 1.0)
        if np.count_nonzero(high) <= 0.01 * high.size and (best is None or split_error < best.error):
            best = _OutlierSplit(low, exp - drop, high, exp, split_error)
    if best is None or best.error > error:
        return None
    approx = (best.high * 2.0 ** best.high_exp + best.low * 2.0 ** best.low_exp) / ratio
    return best if _relative_error(weight[bulk], approx[bulk], 0, 1.0) <= single_bulk / 2 else None


# ---------------------------------------------------------------- building the integer graph


class _Builder:
    def __init__(self, graph: Graph, classes: ScaleClasses, plan: _Plan, options: QuantizeOptions,
                 input_means: dict[Node, np.ndarray]):
        self.src, self.classes, self.plan, self.options = graph, classes, plan, options
        self.out = Graph(graph.name)
        self.env: dict[Value, Value] = {}
        self.knob_of: dict[Node, tuple[str, object]] = {}  # integer node -> ("root", name) | ("gain", float node)
        self.layers: list[LayerQuantization] = []
        self.neurons: list[NeuronQuantization] = []
        self.zeroed: list[Node] = []  # weight ops with nonzero float weights that all quantize to 0
        self.layer_of: dict[Node, LayerQuantization] = {}  # float weight op -> its row of the report
        self.input_means = input_means          # float weight op -> E[input] per input feature (bias correction)
        self.encoding = frozenset(_encoding_layers(graph))

    def value(self, v: Value) -> Value:
        return self.env[v]

    def scale(self, v: Value) -> float:
        return float(_numeric(self.classes.scale(v), self.plan))

    def emit(self, op: str, inputs, attrs, src: Node, knob=None) -> Value:
        node = self.out.create_node(op, inputs, attrs, src.locs)
        if knob is not None:
            self.knob_of[node] = knob
        return node.output

    def build(self) -> Graph:
        for node in self.src.nodes:
            # Quantize.requires checked every op first: one without a rule is an op of both phases.
            result = QUANTIZE_RULES.get(node.op, _Builder._structural)(self, node)
            if result is not None:
                self.env[node.output] = result
        return self.out

    def _input(self, node: Node) -> Value:
        raw = self.out.create_node("input", [], dict(node.attrs), output_types=[node.output.type]).output
        lo, hi = self.options.input_range
        step = 2.0 ** self.options.input_exp
        attrs = {"exp": self.options.input_exp, "lo": math.floor(lo * step + 0.5), "hi": math.floor(hi * step + 0.5)}
        return self.emit("quantize", [raw], attrs, node)

    def _output(self, node: Node) -> None:
        self.out.create_node("output", [self.value(v) for v in node.inputs], dict(node.attrs), node.locs)

    def _mean(self, node: Node) -> Value:
        total = self.emit("sum", [self.value(node.inputs[0])], dict(node.attrs), node)
        shift = self.classes.mean_shift.get(node, 0)
        return self.emit("qshift", [total], {"shift": shift}, node) if shift else total

    def _structural(self, node: Node) -> Value:
        return self.emit(node.op, [self.value(v) for v in node.inputs], dict(node.attrs), node)

    def _host_scale(self, node: Node, s_in: float) -> None:
        """The readout's output scale: the largest power of two keeping its weights within 16 bits and its bias,
        ``round(bias * scale)``, within int32."""
        out = self.classes.scale(node.output)
        peak = float(np.abs(node.attrs["weight"]).max(initial=0.0))
        exp = 0 if peak == 0 else math.floor(math.log2(32767 * s_in / (float(out.ratio) * peak)))
        bias = node.attrs["bias"]
        bias_peak = 0.0 if bias is None else float(np.abs(bias.astype(np.float64)).max(initial=0.0))
        if bias_peak:
            exp = min(exp, math.floor(math.log2((2**31 - 1) / (float(out.ratio) * bias_peak))))
        self.plan.root_exp[out.root] = exp

    def _weight_op(self, node: Node) -> Value:
        kind = _synapse_kind(node)
        if kind == "host":
            self._host_scale(node, self.scale(node.inputs[0]))
        s_in, s_out = self.scale(node.inputs[0]), self.scale(node.output)
        weight = node.attrs["weight"]
        w_int, exp, error = _weight_error(weight, s_out / s_in, kind, self.plan.finest_of(node))
        split = _split_outliers(weight, s_out / s_in, error) if kind == "dense" else None
        if split is not None:
            w_int, exp, error = split.low, split.low_exp, split.error
        residual, residual_bits = None, 0
        if kind == "conv" and node in self.encoding:
            residual, residual_bits, error = self._residual(node, s_in, s_out, w_int, exp, error)
        if not w_int.any() and np.any(weight):
            self.zeroed.append(node)
        self.layers.append(LayerQuantization(
            node.module, node.op, kind, s_in, s_out, exp, int(np.abs(w_int).max(initial=0)), error,
            0 if split is None else int(np.count_nonzero(split.high)), None if split is None else split.high_exp,
            residual_bits))
        self.layer_of[node] = self.layers[-1]
        quantized = w_int * 2.0 ** exp if split is None else w_int * 2.0 ** exp + split.high * 2.0 ** split.high_exp
        if residual is not None:
            quantized = quantized + residual * 2.0 ** (exp - residual_bits)
        float_bias = self._corrected_bias(node, quantized / (s_out / s_in))
        bias = None if float_bias is None else np.round(float_bias * s_out).astype(np.int32)
        knob = ("root", self.classes.scale(node.output).root)
        x = self.value(node.inputs[0])
        if kind == "conv":
            attrs = {k: node.attrs[k] for k in ("stride", "padding", "dilation", "groups")}
            if residual is not None:
                return self._conv_with_residual(node, x, attrs, w_int, residual, residual_bits, exp, bias)
            if exp == 0:
                return self.emit("qconv2d", [x], {"weight": w_int, "bias": bias, **attrs}, node, knob)
            if exp < 0:
                # the conv sums at 2**-exp times the output scale, so its small weights keep 8 bits, and a floor
                # shift brings the sum to the output scale; its bias, at the output scale, passes the shift exact
                fine_bias = None if bias is None else (bias.astype(np.int64) << -exp).astype(np.int32)
                y = self.emit("qconv2d", [x], {"weight": w_int, "bias": fine_bias, **attrs}, node, ("finer", node))
                return self.emit("qshift", [y], {"shift": -exp}, node, knob)
            # Lava's Conv has no weight exponent: the conv sums at 2**-exp of the output scale (its bias too) and
            # a power-of-two gain, exact, brings the sum to the output scale
            bias = None if float_bias is None else np.round(float_bias * s_out / 2.0 ** exp)
            conv_attrs = {"weight": w_int, "bias": None if bias is None else bias.astype(np.int32), **attrs}
            y = self.emit("qconv2d", [x], conv_attrs, node, knob)
            return self.emit("qgain", [y], {"factor": 2 ** exp}, node, knob)
        axis = node.inputs[0].type.rank - 1 if node.op == "linear" else 2
        attrs = {"weight": w_int.reshape(w_int.shape[0], -1), "bias": bias, "weight_exp": exp, "axis": axis,
                 "graded": not spike_valued(node.inputs[0]), "host": kind == "host"}
        y = self.emit("qdense", [x], attrs, node, knob)
        if split is None:
            return y
        outliers = {**attrs, "weight": split.high.reshape(w_int.shape[0], -1), "bias": None,
                    "weight_exp": split.high_exp}
        return self.emit("add", [y, self.emit("qdense", [x], outliers, node, knob)], {}, node, knob)

    def _residual(self, node: Node, s_in: float, s_out: float, w_int: np.ndarray, exp: int, error: float):
        """The residual group of the encoding conv (the layer reading the analog input, whose 8-bit weights cost
        the most fidelity): ``r = round((t - W 2**exp) / 2**(exp - k))``, 8-bit, holding what the 8-bit ``W`` left
        of the target ``t``, ``k`` bits finer; ``(r, k, error)``, or ``(None, 0, error)`` where range analysis
        took the residual bits down to ``exp`` or ``r`` is all zero."""
        weight, ratio, bits = node.attrs["weight"], s_out / s_in, self.plan.residual_of(node)
        bias = node.attrs["bias"]
        if bias is not None:
            # the bias sums at the residual's scale too: within int32, with a bit to spare for its correction
            peak = float(np.abs(bias.astype(np.float64)).max(initial=0.0)) * s_out
            bits = min(bits, 29 + exp - math.ceil(math.log2(peak + 1)))
        if bits <= max(exp, 0):
            return None, 0, error
        residual, residual_error = _residual_group(weight, ratio, w_int, exp, bits)
        return (None, 0, error) if residual is None else (residual, bits, residual_error)

    def _conv_with_residual(self, node: Node, x: Value, attrs: dict, w_int: np.ndarray, residual: np.ndarray,
                            bits: int, exp: int, bias) -> Value:
        """Two synapse groups reading the input, summed, then floor-shifted to the output scale: ``W`` with a gain
        ``2**k`` (on Lava the gain joins the Conv's weights: the 8-bit mantissas ``W`` at exponent ``k``) and the
        residual ``r``; the sum stands for the target at ``2**-(k - exp)`` times the output scale, the bias too.
        Range analysis takes residual bits off where a group's 24-bit sums, or the shift's graded input, could
        wrap."""
        fine = bits - exp
        wide_bias = None if bias is None else bias.astype(np.int64) << fine
        if wide_bias is not None and np.abs(wide_bias).max(initial=0) >= 2 ** 31:
            raise PassError(f"quantize: {node.describe()}: its bias at the residual group's scale exceeds int32")
        own = ("residual", node)
        main = self.emit("qconv2d", [x], {"weight": w_int, "bias": None, **attrs}, node, own)
        main = self.emit("qgain", [main], {"factor": 2 ** bits}, node, own)
        rest = self.emit("qconv2d", [x], {"weight": residual, "bias": None if wide_bias is None else
                                          wide_bias.astype(np.int32), **attrs}, node, own)
        return self.emit("qshift", [self.emit("add", [main, rest], {}, node, own)], {"shift": fine}, node, own)

    def _corrected_bias(self, node: Node, quantized: np.ndarray) -> np.ndarray | None:
        """The float bias the integer bias rounds: the op's, plus, with calibration data, the mean its weights'
        rounding takes off, ``(W - W_q) E[x]`` (:func:`_input_means`)."""
        bias = node.attrs["bias"]
        bias = None if bias is None else bias.astype(np.float64)
        mean = self.input_means.get(node)
        if mean is None:
            return bias
        delta = node.attrs["weight"].astype(np.float64) - quantized.reshape(node.attrs["weight"].shape)
        if node.op == "conv2d":
            groups = node.attrs["groups"]
            taps = _tap_means(mean, node.attrs).reshape(groups, *delta.shape[1:])
            per_output = taps[np.arange(delta.shape[0]) // (delta.shape[0] // groups)]
        else:
            per_output = mean.reshape(1, -1)
        correction = (delta.reshape(delta.shape[0], -1) * per_output.reshape(-1, delta[0].size)).sum(axis=1)
        return correction if bias is None else bias + correction

    def _neuron(self, node: Node) -> Value:
        a = node.attrs
        if a["v_reset"] != 0.0:
            reset = "soft (v_reset=None)" if a["v_reset"] is None else f"to {a['v_reset']}"
            raise UnsupportedError(f"quantize: {node.describe()} resets {reset}; Lava's LIF resets to 0: spikec "
                                   "supports hard-reset neurons (v_reset=0.0) only")
        scale_in = self.classes.scale(node.inputs[0])
        x = self.value(node.inputs[0])
        gain_exp = self.plan.gain_exp.get(node, 0)
        knob = ("gain", node) if scale_in.fixed else ("root", scale_in.root)
        if gain_exp > 0:
            x = self.emit("qgain", [x], {"factor": 2 ** gain_exp}, node, knob)
        s_in = self.scale(node.inputs[0]) * 2 ** gain_exp
        exact = s_in * _threshold_factor(node)
        vth = math.ceil(exact) - 1
        if vth < 0:
            raise PassError(f"quantize: {node.describe()}: the threshold {a['v_threshold']} is below one integer step")
        dv = round(DECAY_UNITY / _tau(node)) if node.op in ("lif", "plif") else 0
        self.neurons.append(NeuronQuantization(node.module, s_in, 2 ** gain_exp, DU_NO_CURRENT_MEMORY, dv, vth, exact))
        return self.emit("qlif", [x], {"du": DU_NO_CURRENT_MEMORY, "dv": dv, "vth": vth}, node, knob)


QUANTIZE_RULES = {
    "input": _Builder._input,
    "output": _Builder._output,
    "mean": _Builder._mean,
    "conv2d": _Builder._weight_op,
    "conv1d": _Builder._weight_op,
    "linear": _Builder._weight_op,
    "lif": _Builder._neuron,
    "plif": _Builder._neuron,
    "if": _Builder._neuron,
}
"""The float ops quantize rewrites; the ops of both phases are copied as they are (``_Builder._structural``)."""

UNQUANTIZABLE = {
    "batchnorm": "run fold-batchnorm first; compile --explain says why a batch norm was not folded",
    "scale": "run fold-scales first; compile --explain says why a scale was not folded",
    "scale_by": "a scale per channel or head is not supported on chip yet: fold-scales folds one scale per tensor",
    "avgpool": "average pooling is not supported yet",
    "concat": "concatenation is not supported on chip yet",
    "pad": "reparameterize absorbs a pad into the convolution it feeds; compile --explain says why this one was not",
}
"""The float ops quantize refuses, with what to do about them."""


def unquantizable(op: str) -> str | None:
    """Why quantize refuses ``op``, or None when it has a rule or is an op of both phases (copied as it is)."""
    if op in QUANTIZE_RULES or op_traits(op).phase is Phase.BOTH:
        return None
    return UNQUANTIZABLE.get(op, "quantize has no rule for it")


# ---------------------------------------------------------------- calibration


def _encoding_layers(graph: Graph) -> list[Node]:
    """The weight ops that read the model input through value-preserving ops only (views, repeat, max-pool):
    their integer weights are ``scale_out / 2**input_exp * W``, so the input exponent costs them bits."""
    found, stack, seen = [], [v for n in graph.input_nodes for v in n.outputs], set()
    while stack:
        for user in stack.pop().users():
            if user in seen:
                continue
            seen.add(user)
            if op_traits(user.op).category is OpCategory.WEIGHT and _synapse_kind(user) != "host":
                found.append(user)
            elif op_traits(user.op).phase is Phase.BOTH and len(user.inputs) == 1:
                stack.extend(user.outputs)
    return [n for n in graph.nodes if n in found]


def _input_error(samples: np.ndarray, options: QuantizeOptions, exp: int) -> float:
    """The relative error ``||x_int 2^-exp - x|| / ||x||`` of the input encoding on ``samples`` (clipped to
    the input range first: clipping is not rounding)."""
    lo, hi = options.input_range
    x = np.clip(samples.astype(np.float64), lo, hi)
    step = 2.0 ** exp
    levels = np.clip(np.floor(x * step + 0.5), math.floor(lo * step + 0.5), math.floor(hi * step + 0.5))
    return float(np.linalg.norm(levels / step - x) / max(np.linalg.norm(x), 1e-30))


def _encoding_weight_error(node: Node, layer: LayerQuantization, exp: int, finest: int, residual_bits: int) -> float:
    """The relative weight error of the encoding layer ``node`` at input exponent ``exp``, at its output scale
    in the graph built at a larger exponent (``layer``): no limit on that scale depends on the input exponent
    (weights ``scale_out / 2**exp * W`` too large for 8 bits get an exponent, a spatial conv's as a gain); a
    conv's with its residual group of ``residual_bits`` (as range analysis left it in that graph)."""
    ratio = layer.scale_out / 2.0 ** exp
    w_int, weight_exp, error = _weight_error(node.attrs["weight"], ratio, layer.kind, finest)
    if layer.kind != "conv" or residual_bits <= max(weight_exp, 0):
        return error
    return _residual_group(node.attrs["weight"], ratio, w_int, weight_exp, residual_bits)[1]


def _rounded(value: float) -> float:
    return float(f"{value:.6g}")


def _calibrate(graph: Graph, builder: _Builder, options: QuantizeOptions) -> tuple[int, dict]:
    """Choose the input exponent in ``0..options.input_exp`` (the graph built at ``options.input_exp`` is
    ``builder``): the one with the smallest estimated relative error of the encoding layers' output,
    ``sqrt(input_error² + weight_error²)``: the input's rounding error measured on the calibration samples,
    and the worst encoding layer's weight rounding error. Ties go to the larger exponent."""
    data = options.calibration
    samples = np.asarray(data.samples)
    encoders = _encoding_layers(graph)
    info = {"samples": int(samples.shape[0]) if samples.ndim else 0, "source": data.source,
            "min": _rounded(float(samples.min(initial=0.0))), "max": _rounded(float(samples.max(initial=0.0)))}
    if not encoders:
        return options.input_exp, {**info, "input_exp": options.input_exp, "candidates": [],
                                   "why": "no weight op reads the input: kept the model's input exponent"}
    candidates = []
    for exp in range(options.input_exp, -1, -1):
        errors = [(_encoding_weight_error(n, builder.layer_of[n], exp, builder.plan.finest_of(n),
                                          builder.layer_of[n].residual_bits), n.module) for n in encoders]
        weight_error, module = max(errors, key=lambda e: e[0])
        input_error = _input_error(samples, options, exp)
        candidates.append({"input_exp": exp, "input_error": _rounded(input_error), "weight_error":
                           _rounded(weight_error), "layer": module, "error": _rounded(math.hypot(input_error,
                                                                                                  weight_error))})
    best = min(candidates, key=lambda c: (c["error"], -c["input_exp"]))
    rounding = "none" if best["input_error"] == 0 else f"{100 * best['input_error']:.2f}%"
    why = (f"2**-{best['input_exp']} gives the smallest estimated error of the encoding layer's output, "
           f"{100 * best['error']:.2f}% (input rounding error on the {info['samples']} {data.source} samples: "
           f"{rounding}; weight rounding error in {best['layer']}: {100 * best['weight_error']:.2f}%)")
    return best["input_exp"], {**info, "input_exp": best["input_exp"], "why": why, "candidates": candidates}


def _input_means(graph: Graph, calibration: Calibration | None) -> dict[Node, np.ndarray]:
    """``E[x]`` per input feature of every weight op's input ``x`` over the calibration data, the float graph run
    by the calibration's ``observe``: none for random inputs, whose activations say nothing of the data's.

    Bias correction: rounding the weights changes a layer's output by ``(W_q - W) x``, which averages to
    ``(W_q - W) E[x]`` over the data; adding ``(W - W_q) E[x]`` to the bias before it is rounded takes that
    systematic part off (a neuron's firing depends on its membrane's mean drift). For a conv, ``E[x]`` is the
    mean over the positions of each input channel."""
    if calibration is None or calibration.observe is None:
        return {}
    # a conv keeps the mean input image (over time and batch): its kernel taps see the padding's zeros at the
    # border, so each tap's mean input is taken over the positions it reads (_tap_means)
    weight_ops = {n for n in graph.nodes if op_traits(n.op).category is OpCategory.WEIGHT}
    sums: dict[Node, np.ndarray] = {}
    counts: dict[Node, int] = {}

    def visit(node: Node, args: list) -> None:
        if node not in weight_ops:
            return
        x = np.asarray(args[0], dtype=np.float64)
        if node.op == "conv2d":
            sums[node] = sums.get(node, 0.0) + x.sum(axis=(0, 1))
            counts[node] = counts.get(node, 0) + x.shape[0] * x.shape[1]
            return
        axis = x.ndim - 1 if node.op == "linear" else 2
        sums[node] = sums.get(node, 0.0) + x.sum(axis=tuple(a for a in range(x.ndim) if a != axis))
        counts[node] = counts.get(node, 0) + x.size // x.shape[axis]

    calibration.observe(graph, calibration.samples, visit)
    return {node: sums[node] / counts[node] for node in sums}


def _tap_means(image: np.ndarray, attrs: dict) -> np.ndarray:
    """``[C, kh, kw]``: the mean over a conv's output positions of the input each kernel tap reads (0 in the
    padding), from the mean input image ``[C, H, W]``."""
    (ph, pw), (sh, sw), (dh, dw) = attrs["padding"], attrs["stride"], attrs["dilation"]
    kh, kw = attrs["weight"].shape[2:]
    padded = np.pad(image, ((0, 0), (ph, ph), (pw, pw)))
    out_h = (padded.shape[1] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[2] - dw * (kw - 1) - 1) // sw + 1
    taps = np.empty((image.shape[0], kh, kw))
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i * dh:i * dh + sh * (out_h - 1) + 1:sh, j * dw:j * dw + sw * (out_w - 1) + 1:sw]
            taps[:, i, j] = window.mean(axis=(1, 2))
    return taps


def _check_quantizable(graph: Graph) -> None:
    for node in graph.nodes:
        reason = unquantizable(node.op)
        if reason is not None:
            error = UnsupportedError if node.op in UNQUANTIZABLE else PassError   # a known limitation, or a gap
            raise error(f"quantize: {node.describe()}: {node.op} cannot be quantized ({reason})")


def _overflows(ranges: RangeReport, options: QuantizeOptions) -> list:
    """The range problems ``options`` does not accept (all of them, or all but saturation)."""
    return [p for p in ranges.problems if not (options.allow_saturation and p.saturation)]


def _not_integer(node: Node) -> str | None:
    """Why ``node`` does not belong in an integer graph, or None when it does."""
    if Phase.INTEGER not in op_traits(node.op).phase:
        return f"{node.describe()} is not an op of the integer graph"
    if node.op == "input":
        readers = [u for u in node.output.users() if u.op != "quantize"]
        return f"the model input is read by {readers[0].describe()}, not only by quantize" if readers else None
    value = next((v for v in node.outputs if not v.type.dtype.startswith("i")), None)
    if value is not None:
        return f"{node.describe()} gives {value.type}, not integers"
    array = next((k for k, a in node.attrs.items() if isinstance(a, np.ndarray) and a.dtype.kind != "i"), None)
    if array is not None:
        return f"{node.describe()}: its {array} is a {node.attrs[array].dtype} array, not integers"
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizeResult(PassResult):
    """quantize's result: the new integer graph, the scales chosen for it (``report``) and its range analysis
    (``ranges``), which proves that no message or state of it overflows."""

    report: QuantizationReport
    ranges: RangeReport


@dataclasses.dataclass(frozen=True)
class Quantize(Transform):
    """Quantize a folded float graph into a new integer graph with Lava's fixed-point semantics.

    Functional; the math is in the module docstring. Where range analysis finds an overflow, the scale or
    gain responsible is halved and the graph built again.

    Requires: every op has a rule or is copied (``unquantizable``), so no batch norm or scale is left (the
    folds' job); scale-classes requires a float graph. Ensures: every op of the result is an integer-phase
    op, every value but the model inputs is an integer and the inputs feed only ``quantize``, every weight
    is an integer array, and range analysis of the result finds no overflow (saturation only when
    ``allow_saturation``)."""

    name = "quantize"
    in_place = False
    options: QuantizeOptions = QuantizeOptions()

    def requires(self, graph: Graph) -> None:
        _check_quantizable(graph)

    def apply(self, graph: Graph, analyses: AnalysisCache) -> QuantizeResult:
        options = self.options
        means = _input_means(graph, options.calibration)
        builder, integer, ranges, iterations = _build_proven(graph, analyses, options, means)
        calibration = None
        if options.calibration is not None:
            exp, calibration = _calibrate(graph, builder, options)
            calibration["bias_corrected_layers"] = len(means)
            if exp != options.input_exp:
                options = dataclasses.replace(options, input_exp=exp, calibration=None)
                builder, integer, ranges, iterations = _build_proven(graph, analyses, options, means)
        _check_nonzero(graph, builder)
        outputs = [builder.scale(v) for v in graph.output_node.inputs]
        report = QuantizationReport(options.input_exp, tuple(options.input_range), builder.layers, builder.neurons,
                                    outputs, iterations, calibration)
        return QuantizeResult(integer, True, report=report, ranges=ranges)

    def ensures(self, graph: Graph, result: QuantizeResult) -> None:
        problem = next((p for p in map(_not_integer, result.graph.nodes) if p is not None), None)
        if problem is not None:
            raise PassError(problem)
        overflows = _overflows(result.ranges, self.options)
        if overflows:
            raise PassError(f"{overflows[0]}: the quantized graph can overflow")


def _check_nonzero(graph: Graph, builder: _Builder) -> None:
    """Refuse a weight op whose nonzero weights all quantize to 0: it would compute nothing."""
    if not builder.zeroed:
        return
    node = builder.zeroed[0]
    layer = builder.layer_of[node]
    hint = ("a smaller --input-exp (or --calibrate) gives it more weight bits" if node in _encoding_layers(graph)
            else "range analysis proves no larger output scale free of overflow")
    raise InputError(f"quantize: {node.describe()}: every weight quantizes to 0 (input scale {layer.scale_in:g}, "
                     f"output scale {layer.scale_out:g}, largest |weight| "
                     f"{float(np.abs(node.attrs['weight']).max()):.3g}); {hint}")


def _build_proven(graph: Graph, analyses: AnalysisCache, options: QuantizeOptions, means: dict[Node, np.ndarray]):
    """Build the integer graph, halving the scale or gain responsible for each overflow range analysis finds
    until it finds none: ``(builder, integer graph, ranges, iterations)``."""
    classes = ScaleClassAnalysis(options.input_exp)(graph, analyses)
    plan = _initial_plan(graph, classes, options)
    for iteration in range(1, _MAX_ITERATIONS + 1):
        builder = _Builder(graph, classes, plan, options, means)
        integer = builder.build()
        ranges = RangeAnalysis()(integer)
        problems = _overflows(ranges, options)
        if not problems:
            return builder, integer, ranges, iteration
        for knob in {builder.knob_of.get(p.node) for p in problems}:
            if knob is None:
                continue
            kind, key = knob
            if kind == "root":
                plan.root_exp[key] -= 1
            elif kind == "finer":
                plan.finest[key] = -builder.layer_of[key].weight_exp - 1
            elif kind == "residual":
                plan.residual[key] = plan.residual_of(key) - 1
            elif plan.gain_exp.get(key, 0) > 0:
                plan.gain_exp[key] -= 1
        if all(builder.knob_of.get(p.node) is None for p in problems):
            break
    first = problems[0]
    # The model's own magnitudes (e.g. weights of 1e30) put the value beyond Loihi's integers at every scale:
    # the model cannot be compiled as it is, which is the input's limit, not a fault of the compile.
    raise UnsupportedError(f"{first.node.describe()}: {first.message}; no choice of scales avoids it "
                           "(pass --allow-saturation to accept saturating neurons)")
