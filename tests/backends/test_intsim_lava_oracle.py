"""intsim's kernels are bit-identical to Lava's fixed_pt models (lava-nc 0.10.0), with Lava as the oracle.

Two layers of evidence:

1. **Lava's model code, in-process.** ``PyLifModelBitAcc``, ``PyLifResetModelBitAcc``, ``PyDenseModelBitAcc`` and
   ``PyConvModelFixed`` are instantiated without the runtime and stepped through stand-in ports, over hundreds of
   random cases including the extremes (int32 wraps, ``u`` beyond 24 bits, saturation). The stand-ins encode
   what the runtime does around ``run_spk``: Vars hold the process's values in the model's dtypes, ``time_step``
   counts from 1, an InPort delivers this step's message as int32, an OutPort stores into an int32 buffer.
2. **Networks on Lava's runtime.** RingBuffer source → Dense → LIF/LIFReset → sinks, and source → Conv → sink,
   run on ``Loihi2SimCfg(select_tag="fixed_pt")``: this checks layer 1's stand-ins and the timing. Each network
   runs in a forked child under a timeout (a hung Lava run cannot block the suite), ``stop()`` is always called,
   and the child's shared memory is removed whatever happens.

Batches: Lava runs one sample; the kernels take a batch axis. A LIF batch is the same population repeated (the
neuron is elementwise); a Dense batch is a block-diagonal weight matrix (zero blocks change neither the sign
mode Lava infers nor any sum); a Conv batch is the sequence of time steps (Conv has no state).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.utils import signed_clamp as lava_signed_clamp
from lava.proc.conv.process import Conv
from lava.proc.dense.models import PyDenseModelBitAcc
from lava.proc.dense.process import Dense
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from spikec.backends.lava.child import run_isolated
from lava.proc.lif.models import PyLifModelBitAcc, PyLifResetModelBitAcc
from lava.proc.lif.process import LIF, LIFReset
from lava.utils.weightutils import SignMode as LavaSignMode
from lava.utils.weightutils import clip_weights as lava_clip_weights
from lava.utils.weightutils import truncate_weights as lava_truncate_weights

from spikec.backends.intsim import fixed_point as fp
from spikec.backends.intsim.fixed_point import INT32_MAX, INT32_MIN, STATE_LIMIT, V_MAX, SignMode, prepare_dense_weights
from spikec.backends.intsim.kernels import LifParams, LifState, conv, dense, lif_step

pytestmark = pytest.mark.lava

LAVA_TIMEOUT_S = 60
"""A small network compiles and runs in well under a second; one that takes a minute is hung."""

NETWORK_EXAMPLES = 24
MODEL_CODE_EXAMPLES = 300


# --- strategies -----------------------------------------------------------------------------------------------

INT32 = st.one_of(st.sampled_from([INT32_MIN, INT32_MAX]), st.integers(INT32_MIN, INT32_MAX))
GRADED = st.one_of(st.integers(-8, 8), st.integers(-(1 << 17), 1 << 17), INT32)
BINARY = st.one_of(st.sampled_from([0, 0, 1]), st.integers(-3, 3))  # any nonzero message is a spike
DU = st.one_of(st.sampled_from([-1, 0, 4095]), st.integers(-1, 4095))
DV = st.one_of(st.sampled_from([0, 4095]), st.integers(0, 4095))
VTH = st.one_of(st.integers(0, 16), st.integers(0, (1 << 17) - 1))
BIAS_MANT = st.one_of(st.integers(-64, 64), st.sampled_from([-(1 << 15), (1 << 15) - 1]),
                      st.integers(-(1 << 15), (1 << 15) - 1))
BIAS_EXP = st.one_of(st.integers(0, 7), st.sampled_from([-16, 16]), st.integers(-16, 16))
STATE = st.one_of(st.just(0), st.integers(-V_MAX, V_MAX))
SIGN_MODES = st.sampled_from([None, None, SignMode.MIXED, SignMode.EXCITATORY, SignMode.INHIBITORY])


@st.composite
def lif_params(draw, neurons: int) -> LifParams:
    reset = draw(st.none() | st.tuples(st.integers(1, 6), st.integers(0, 8)))
    return LifParams(du=draw(DU), dv=draw(DV), vth=draw(VTH),
                     bias_mant=draw(arrays(np.int64, neurons, elements=BIAS_MANT)),
                     bias_exp=draw(arrays(np.int64, neurons, elements=BIAS_EXP)),
                     reset_interval=reset[0] if reset else None, reset_offset=reset[1] if reset else 0)


@st.composite
def raw_weights(draw, shape: tuple[int, int]) -> np.ndarray:
    """Weights as a user hands them to Lava's Dense: any sign pattern, beyond 8 bits, sometimes fractional."""
    lo, hi = draw(st.sampled_from([(-300, 300), (0, 300), (-300, 0)]))
    w = draw(arrays(np.int64, shape, elements=st.integers(lo, hi)))
    if draw(st.booleans()):
        return w + draw(arrays(np.float64, shape, elements=st.floats(-0.99, 0.99)))
    return w


# --- layer 1: Lava's model code, stepped in-process -----------------------------------------------------------

class _InPort:
    """Stands in for ``PyInPortVectorDense``: ``recv`` returns this step's message, int32 like the channels
    from RingBuffer, Dense and Conv (the real port adds all incoming messages into the port dtype)."""

    def __init__(self):
        self.message = None

    def recv(self) -> np.ndarray:
        return self.message


class _OutPort:
    """Stands in for ``PyOutPortVectorDense``: ``send`` stores into an int32 buffer, as ``CspSendPort.send`` does."""

    def __init__(self, shape: tuple[int, ...]):
        self.sent = np.zeros(shape, dtype=np.int32)

    def send(self, data: np.ndarray) -> None:
        self.sent[...] = data


def _int32_var(value, shape) -> np.ndarray:
    """A Var as the process builder makes it: ``var = np.ndarray(shape, dtype); var[:] = value``."""
    var = np.zeros(shape, dtype=np.int32)
    var[:] = value
    return var


@settings(max_examples=MODEL_CODE_EXAMPLES, deadline=None)
@given(st.data())
def test_lif_step_is_lavas_lif_model_code(data):
    batch, neurons, steps = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 12))
    params = data.draw(lif_params(neurons))
    extreme = st.one_of(STATE, INT32)
    state = LifState(data.draw(arrays(np.int64, (batch, neurons), elements=extreme)),
                     data.draw(arrays(np.int64, (batch, neurons), elements=extreme)))
    a_in = data.draw(arrays(np.int64, (steps, batch, neurons), elements=GRADED))

    flat = batch * neurons  # Lava's population: the batch laid side by side
    if params.reset_interval is None:
        model = PyLifModelBitAcc({})
    else:
        model = PyLifResetModelBitAcc({"reset_interval": params.reset_interval, "reset_offset": params.reset_offset})
    model.u, model.v = _int32_var(state.u.ravel(), flat), _int32_var(state.v.ravel(), flat)
    model.du, model.dv, model.vth = params.du, params.dv, params.vth  # int Vars are passed through as given
    model.bias_mant = np.tile(np.broadcast_to(params.bias_mant, neurons), batch).astype(np.int16)
    model.bias_exp = np.tile(np.broadcast_to(params.bias_exp, neurons), batch).astype(np.int16)
    model.a_in, model.s_out = _InPort(), _OutPort((flat,))

    for step in range(1, steps + 1):
        model.time_step = step  # PyLoihiProcessModel._spike increments time_step, then calls run_spk
        model.a_in.message = a_in[step - 1].ravel().astype(np.int32)
        model.run_spk()
        state, spikes = lif_step(state, a_in[step - 1], params, time_step=step)
        assert np.array_equal(spikes.ravel(), model.s_out.sent.astype(bool)), f"spikes at step {step}"
        assert np.array_equal(state.u.ravel(), model.u), f"u at step {step}"
        assert np.array_equal(state.v.ravel(), model.v), f"v at step {step}"


@settings(max_examples=MODEL_CODE_EXAMPLES, deadline=None)
@given(st.data())
def test_dense_is_lavas_dense_model_code(data):
    n_in, n_out, steps = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 5)), data.draw(st.integers(1, 8))
    weights = data.draw(raw_weights((n_out, n_in)))
    weight_exp, num_weight_bits = data.draw(st.integers(-8, 8)), data.draw(st.integers(1, 8))
    sign_mode, graded = data.draw(SIGN_MODES), data.draw(st.booleans())
    x = data.draw(arrays(np.int64, (steps, n_in), elements=GRADED if graded else BINARY))

    proc_params = {"weight_exp": weight_exp, "num_weight_bits": num_weight_bits}
    if sign_mode is not None:
        proc_params["sign_mode"] = LavaSignMode[sign_mode.name]
    model = PyDenseModelBitAcc(proc_params)
    model.weights = _int32_var(weights, weights.shape)
    model.num_message_bits = np.array([24 if graded else 0])
    model.a_buff = np.zeros(n_out, dtype=np.int32)
    model.s_in, model.a_out = _InPort(), _OutPort((n_out,))
    sent = []
    for step in range(steps):
        model.s_in.message = x[step].astype(np.int32)
        model.run_spk()
        sent.append(model.a_out.sent.copy())

    # The time steps are the kernel's batch. Lava sends at step t what it received at t - 1: zeros first.
    expected = dense(x, prepare_dense_weights(weights, num_weight_bits, sign_mode), weight_exp, graded=graded)
    assert np.array_equal(sent[0], np.zeros(n_out))
    assert np.array_equal(np.array(sent[1:]).reshape(-1, n_out), expected[:-1])


@st.composite
def conv_geometry(draw) -> dict:
    groups = draw(st.integers(1, 2))
    kx, ky, dx, dy = (draw(st.integers(1, 3)) for _ in range(4))
    px, py, sx, sy = draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    smallest_x, smallest_y = max(1, dx * (kx - 1) + 1 - 2 * px), max(1, dy * (ky - 1) + 1 - 2 * py)
    return dict(groups=groups, cin=groups * draw(st.integers(1, 2)), cout=groups * draw(st.integers(1, 2)),
                kernel=(kx, ky), stride=(sx, sy), padding=(px, py), dilation=(dx, dy),
                size=(draw(st.integers(smallest_x, smallest_x + 3)), draw(st.integers(smallest_y, smallest_y + 3))))


def _conv_case(data) -> tuple[dict, np.ndarray, np.ndarray, bool]:
    """A geometry, weights ``(Cout, Kx, Ky, Cin/groups)`` and ``[T, X, Y, Cin]`` messages whose sums stay below
    ``2**31`` (where Lava's float64-to-int32 cast is defined) but can pass ``2**23`` (the 24-bit wrap)."""
    g = data.draw(conv_geometry())
    graded = data.draw(st.booleans())
    weight = data.draw(arrays(np.int64, (g["cout"], *g["kernel"], g["cin"] // g["groups"]),
                              elements=st.integers(-300, 300)))
    messages = st.one_of(st.integers(-8, 8), st.integers(-(1 << 18), 1 << 18)) if graded else BINARY
    x = data.draw(arrays(np.int64, (data.draw(st.integers(1, 6)), *g["size"], g["cin"]), elements=messages))
    return g, weight, x, graded


def _conv_kernel(g: dict, weight: np.ndarray, x: np.ndarray, graded: bool) -> np.ndarray:
    return conv(x, weight, stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=g["groups"],
                graded=graded)


@settings(max_examples=MODEL_CODE_EXAMPLES // 2, deadline=None)
@given(st.data())
def test_conv_is_lavas_conv_model_code(data):
    g, weight, x, graded = _conv_case(data)
    expected = _conv_kernel(g, weight, x, graded)

    model = PyConvModelFixed({})
    model.weight = _int32_var(weight, weight.shape)
    model.kernel_size = np.array(g["kernel"], dtype=np.int8)
    model.stride, model.padding = np.array(g["stride"], dtype=np.int8), np.array(g["padding"], dtype=np.int8)
    model.dilation, model.groups = np.array(g["dilation"], dtype=np.int8), np.array([g["groups"]], dtype=np.int8)
    model.num_message_bits = np.array([24 if graded else 0], dtype=np.int8)
    model.a_buf = np.zeros(expected.shape[1:], dtype=np.int32)
    model.s_in, model.a_out = _InPort(), _OutPort(expected.shape[1:])
    sent = []
    for step in range(len(x)):
        model.s_in.message = x[step].astype(np.int32)
        model.run_spk()
        sent.append(model.a_out.sent.copy())

    assert np.array_equal(np.array(sent[1:]).reshape(-1, *expected.shape[1:]), expected[:-1])


# --- layer 2: networks on Lava's runtime ----------------------------------------------------------------------

def run_lava(build, num_steps: int) -> dict[str, np.ndarray]:
    """Builds a network with ``build() -> (any process of it, {name: Var})``, runs it ``num_steps`` steps on the
    fixed_pt models, and returns each Var's value read after the run, before ``stop()``.

    The run happens in :func:`spikec.backends.lava.child.run_isolated`'s forked child: killed when it outlives
    ``LAVA_TIMEOUT_S``, its shared memory removed in every case, so a hung Lava run cannot block the suite.
    """
    def job():
        root, readers = build()
        try:
            root.run(condition=RunSteps(num_steps=num_steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            return {name: np.asarray(var.get()).astype(np.int64) for name, var in readers.items()}
        finally:
            root.stop()

    return run_isolated(job, LAVA_TIMEOUT_S, "the oracle's Lava network")


@dataclass
class DenseLifCase:
    """A source → Dense → LIF network for a batch of samples."""

    x: np.ndarray  # [B, in, T]: what the source sends at steps 1..T
    weights: np.ndarray  # (out, in), raw: the Dense casts, clips and truncates them
    weight_exp: int
    num_weight_bits: int
    sign_mode: SignMode | None
    graded: bool
    lif: LifParams  # bias_mant, bias_exp per neuron: (out,)
    u0: np.ndarray  # [B, out]
    v0: np.ndarray


def intsim_dense_lif(case: DenseLifCase) -> tuple[np.ndarray, np.ndarray, LifState]:
    """The kernels in Lava's pipelined timing: the Dense output arriving at each step, the spikes, the final state.

    Lava's Dense sends at step t what it received at step t - 1 (zeros at step 1), so with 0-based steps k the LIF
    sees ``dense(x[..., k - 1])`` at k >= 1 and zeros at k = 0. The LIF costs no step: its spikes at step k land in
    the sink's column k, and so does the Dense output it consumed.
    """
    batch, _, steps = case.x.shape
    weights = prepare_dense_weights(case.weights, case.num_weight_bits, case.sign_mode)
    a = np.zeros((steps, batch, len(weights)), dtype=np.int64)
    for k in range(1, steps):
        a[k] = dense(case.x[..., k - 1], weights, case.weight_exp, graded=case.graded)
    state, spikes = LifState(case.u0, case.v0), np.zeros(a.shape, dtype=bool)
    for k in range(steps):
        state, spikes[k] = lif_step(state, a[k], case.lif, time_step=k + 1)
    return a, spikes, state


def lava_dense_lif(case: DenseLifCase) -> dict[str, np.ndarray]:
    """The same network on Lava, the batch laid out block-diagonally; results as ``[T, B, out]`` and ``[B, out]``."""
    batch, n_in, steps = case.x.shape
    n_out = case.weights.shape[0]
    neurons = batch * n_out

    def build():
        source = Source(data=case.x.reshape(batch * n_in, steps).astype(np.int32))
        sign = {} if case.sign_mode is None else {"sign_mode": LavaSignMode[case.sign_mode.name]}
        synapses = Dense(weights=scipy.linalg.block_diag(*[case.weights] * batch), weight_exp=case.weight_exp,
                         num_weight_bits=case.num_weight_bits, num_message_bits=24 if case.graded else 0, **sign)
        p = case.lif
        neuron = dict(shape=(neurons,), u=case.u0.ravel(), v=case.v0.ravel(), du=p.du, dv=p.dv, vth=p.vth,
                      bias_mant=np.tile(np.broadcast_to(p.bias_mant, n_out), batch),
                      bias_exp=np.tile(np.broadcast_to(p.bias_exp, n_out), batch))
        if p.reset_interval is None:
            lif = LIF(**neuron)
        else:
            lif = LIFReset(**neuron, reset_interval=p.reset_interval, reset_offset=p.reset_offset)
        a_sink, s_sink = Sink(shape=(neurons,), buffer=steps), Sink(shape=(neurons,), buffer=steps)
        source.s_out.connect(synapses.s_in)
        synapses.a_out.connect(lif.a_in)
        synapses.a_out.connect(a_sink.a_in)
        lif.s_out.connect(s_sink.a_in)
        return source, {"a": a_sink.data, "spikes": s_sink.data, "u": lif.u, "v": lif.v}

    out = run_lava(build, steps)
    series = {name: out[name].reshape(batch, n_out, steps).transpose(2, 0, 1) for name in ("a", "spikes")}
    return {**series, "u": out["u"].reshape(batch, n_out), "v": out["v"].reshape(batch, n_out)}


def assert_dense_lif_matches_lava(case: DenseLifCase) -> tuple[np.ndarray, np.ndarray, LifState]:
    a, spikes, state = intsim_dense_lif(case)
    lava = lava_dense_lif(case)
    assert np.array_equal(a, lava["a"]), "Dense output"
    assert np.array_equal(spikes, lava["spikes"].astype(bool)), "spikes"
    assert np.array_equal(state.u, lava["u"]), "final u"
    assert np.array_equal(state.v, lava["v"]), "final v"
    return a, spikes, state


@st.composite
def dense_lif_cases(draw) -> DenseLifCase:
    batch, n_in, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    steps, graded = draw(st.integers(8, 16)), draw(st.booleans())
    return DenseLifCase(
        x=draw(arrays(np.int64, (batch, n_in, steps), elements=GRADED if graded else BINARY)),
        weights=draw(raw_weights((n_out, n_in))), weight_exp=draw(st.integers(-3, 3)),
        num_weight_bits=draw(st.integers(1, 8)), sign_mode=draw(SIGN_MODES), graded=graded,
        lif=draw(lif_params(n_out)),
        u0=draw(arrays(np.int64, (batch, n_out), elements=STATE)),
        v0=draw(arrays(np.int64, (batch, n_out), elements=STATE)))


@settings(max_examples=NETWORK_EXAMPLES, deadline=None)
@given(dense_lif_cases())
def test_dense_lif_network_matches_lava(case):
    assert_dense_lif_matches_lava(case)


@pytest.mark.slow
@settings(max_examples=10 * NETWORK_EXAMPLES, deadline=None)
@given(dense_lif_cases())
def test_dense_lif_network_matches_lava_extended(case):
    assert_dense_lif_matches_lava(case)


def lava_conv(g: dict, weight: np.ndarray, x: np.ndarray, graded: bool, weight_exp: int,
              num_weight_bits: int) -> np.ndarray:
    """``x`` ``[T, X, Y, C]`` sent step by step through Lava's Conv; the sink's ``[T, X', Y', Cout]``."""
    steps = len(x)

    def build():
        source = Source(data=x.transpose(1, 2, 3, 0).astype(np.int32))
        synapses = Conv(weight=weight, input_shape=x.shape[1:], padding=g["padding"], stride=g["stride"],
                        dilation=g["dilation"], groups=g["groups"], weight_exp=weight_exp,
                        num_weight_bits=num_weight_bits, num_message_bits=24 if graded else 0)
        sink = Sink(shape=synapses.output_shape, buffer=steps)
        source.s_out.connect(synapses.s_in)
        synapses.a_out.connect(sink.a_in)
        return source, {"a": sink.data}

    return run_lava(build, steps)["a"].transpose(3, 0, 1, 2)


def _check_conv_network(data) -> None:
    g, weight, x, graded = _conv_case(data)
    # Lava's Conv ignores weight_exp and num_weight_bits: random values must change nothing.
    weight_exp, num_weight_bits = data.draw(st.integers(-3, 3)), data.draw(st.integers(1, 8))
    lava = lava_conv(g, weight, x, graded, weight_exp, num_weight_bits)
    # The time steps are the kernel's batch; the Conv delivers step t's input at step t + 1.
    expected = _conv_kernel(g, weight, x, graded)
    assert np.array_equal(lava[0], np.zeros_like(lava[0]))
    assert np.array_equal(lava[1:], expected[:-1])


@settings(max_examples=NETWORK_EXAMPLES * 2 // 3, deadline=None)
@given(st.data())
def test_conv_network_matches_lava(data):
    _check_conv_network(data)


@pytest.mark.slow
@settings(max_examples=5 * NETWORK_EXAMPLES, deadline=None)
@given(st.data())
def test_conv_network_matches_lava_extended(data):
    _check_conv_network(data)


# --- layer 2: pinned cases, one per rule that is easy to get wrong ---------------------------------------------

def _impulse(values: list[int], steps: int) -> np.ndarray:
    """One sample whose inputs send ``values`` at step 1 and nothing after: ``[1, len(values), steps]``."""
    x = np.zeros((1, len(values), steps), dtype=np.int64)
    x[0, :, 0] = values
    return x


def _case(x, weights, lif, *, weight_exp=0, num_weight_bits=8, sign_mode=None, graded=True) -> DenseLifCase:
    n_out = len(weights)
    return DenseLifCase(x=x, weights=np.array(weights), weight_exp=weight_exp, num_weight_bits=num_weight_bits,
                        sign_mode=sign_mode, graded=graded, lif=lif, u0=np.zeros((len(x), n_out), dtype=np.int64),
                        v0=np.zeros((len(x), n_out), dtype=np.int64))


def test_u_wraps_once_and_can_leave_24_bits():
    # The LIF sees the impulse at step 2, the last. a = 2**17 + 1: u = 2**23 + 64 wraps to -2**23 + 64.
    # a = 2**19 + 4: u = 2**25 + 256 is corrected once, to 2**24 + 256 (the next step would correct it again).
    # a = 2**25 + 1: a << 6 wraps in int32 first, then u is corrected once.
    case = _case(_impulse([(1 << 17) + 1, (1 << 19) + 4, (1 << 25) + 1], 2), np.eye(3, dtype=np.int64),
                 LifParams(du=-1, dv=0, vth=(1 << 17) - 1))
    _, _, state = assert_dense_lif_matches_lava(case)
    assert state.u.tolist() == [[-STATE_LIMIT + 64, 2 * STATE_LIMIT + 256, INT32_MIN + 2 * STATE_LIMIT + 64]]


def test_v_saturates_at_minus_2_pow_23_plus_1():
    # bias = -4096 << 7 = -2**19 per step, no decay: after 16 steps v would be -2**23.
    case = _case(np.zeros((1, 1, 16), dtype=np.int64), [[0]], LifParams(du=0, dv=0, vth=1, bias_mant=-4096,
                                                                         bias_exp=7))
    _, _, state = assert_dense_lif_matches_lava(case)
    assert state.v.tolist() == [[-V_MAX]]


def test_binary_dense_floors_a_negative_sum_with_a_negative_exponent():
    # The message -7 is a spike (binary input); INHIBITORY 8-bit weights keep -3; floor(-3 / 2) = -2, not -1.
    x = np.full((1, 1, 4), -7, dtype=np.int64)
    case = _case(x, [[-3]], LifParams(du=4095, dv=4095, vth=1), weight_exp=-1, graded=False)
    a, _, _ = assert_dense_lif_matches_lava(case)
    assert a[1:].ravel().tolist() == [-2, -2, -2]


def test_v_sums_in_int32_before_it_saturates():
    # bias = 32767 << 16 = 2**31 - 2**16. Step 1: v = bias saturates to V_MAX and spikes. Step 2: u = 2**11 << 6
    # and v = 2**17 + bias passes 2**31 - 1: the int32 sum wraps negative and saturates to -V_MAX.
    case = _case(_impulse([1 << 11], 2), [[1]], LifParams(du=0, dv=0, vth=1, bias_mant=(1 << 15) - 1, bias_exp=16))
    _, spikes, state = assert_dense_lif_matches_lava(case)
    assert spikes.ravel().tolist() == [True, False] and state.v.tolist() == [[-V_MAX]]


def test_du_4095_makes_u_the_scaled_input():
    x = np.array([[[5, -9, 300, 1 << 20, 0, 7, 11]]])  # 2**20 << 6 passes 24 bits
    case = _case(x, [[1]], LifParams(du=4095, dv=4095, vth=(1 << 17) - 1))
    a, _, state = assert_dense_lif_matches_lava(case)
    assert a[-1].tolist() == [[7]] and state.u.tolist() == [[7 << 6]]


def test_lif_reset_zeroes_u_and_v_at_its_phase():
    # interval 4, offset 1: reset at steps 1, 5, 9 (1-based), before the update. Step 10 leaves v = 2 * bias.
    lif = LifParams(du=0, dv=0, vth=(1 << 17) - 1, bias_mant=100, reset_interval=4, reset_offset=1)
    case = _case(np.zeros((1, 1, 10), dtype=np.int64), [[0]], lif)
    _, _, state = assert_dense_lif_matches_lava(case)
    assert state.v.tolist() == [[200]]


def test_messages_into_one_port_are_summed_in_int32():
    # Two sources send 2**30 each into one graded Dense: the port's int32 sum is -2**31, so
    # dense = -2**31 >> 8 = -2**23, where an unwrapped sum would give +2**23.
    steps = 3
    data = np.full((1, steps), 1 << 30, dtype=np.int32)

    def build():
        first, second = Source(data=data), Source(data=data)
        synapses = Dense(weights=np.array([[1]]), weight_exp=-8, num_message_bits=24)
        sink = Sink(shape=(1,), buffer=steps)
        first.s_out.connect(synapses.s_in)
        second.s_out.connect(synapses.s_in)
        synapses.a_out.connect(sink.a_in)
        return first, {"a": sink.data}

    lava = run_lava(build, steps)["a"]
    expected = dense(np.array([[2 << 30]]), prepare_dense_weights(np.array([[1]])), -8, graded=True)
    assert expected.tolist() == [[-(1 << 23)]]
    assert lava[0, 1:].tolist() == [-(1 << 23)] * (steps - 1)


def test_conv_wraps_at_24_bits_and_ignores_weight_exp():
    # 255 * 2**16 = 2**24 - 2**16 wraps to -2**16; weight_exp = -3 and num_weight_bits = 2 are ignored.
    g = dict(groups=1, kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1))
    x = np.full((2, 1, 1, 1), 1 << 16, dtype=np.int64)
    weight = np.full((1, 1, 1, 1), 255, dtype=np.int64)
    expected = _conv_kernel(g, weight, x, True)
    assert expected.ravel().tolist() == [-(1 << 16)] * 2
    assert lava_conv(g, weight, x, True, weight_exp=-3, num_weight_bits=2)[1:].ravel().tolist() == [-(1 << 16)]


def test_fixed_point_constants_are_lavas_own():
    """Each named constant of ``fixed_point`` read back from Lava's code: the LIF model's attributes and Var types,
    the sign modes' 8-bit clips, what MIXED truncation keeps, and the Conv's 24-bit clamp."""
    lif = PyLifModelBitAcc({})
    assert (lif.decay_shift, lif.decay_unity, lif.act_shift, lif.vth_shift) == (
        fp.DECAY_SHIFT, fp.DECAY_UNITY, fp.ACTIVATION_SHIFT, fp.THRESHOLD_SHIFT)
    assert (lif.uv_bitwidth, lif.max_uv_val, lif.ds_offset) == (fp.STATE_BITS, fp.STATE_LIMIT, fp.DS_OFFSET)
    assert fp.V_MAX == np.int32(lif.max_uv_val) - 1 and fp.U_EXACT << lif.act_shift == lif.max_uv_val
    assert fp.DU_NO_CURRENT_MEMORY + lif.ds_offset == lif.decay_unity
    assert (PyLifModelBitAcc.du.precision, PyLifModelBitAcc.dv.precision) == (fp.DECAY_BITS, fp.DECAY_BITS)
    assert (PyLifModelBitAcc.vth.precision, PyLifModelBitAcc.bias_mant.precision,
            PyLifModelBitAcc.bias_exp.precision) == (fp.VTH_BITS, fp.BIAS_MANT_BITS, fp.BIAS_EXP_BITS)
    int16, int32 = np.iinfo(np.int16), np.iinfo(np.int32)
    assert PyLifModelBitAcc.bias_mant.d_type is np.int16 and (fp.INT16_MIN, fp.INT16_MAX) == (int16.min, int16.max)
    assert PyLifModelBitAcc.u.d_type is np.int32 and (fp.INT32_MIN, fp.INT32_MAX) == (int32.min, int32.max)
    assert inspect.signature(lava_truncate_weights).parameters["max_num_weight_bits"].default == fp.WEIGHT_BITS
    extremes = np.array([[-1000, 1000]])
    for mode, (lo, hi) in fp.SIGN_MODE_RANGES.items():
        assert lava_clip_weights(extremes, LavaSignMode[mode.name], num_bits=fp.WEIGHT_BITS).tolist() == [[lo, hi]]
    kept = np.unique(lava_truncate_weights(np.arange(-256, 256).reshape(1, -1), LavaSignMode.MIXED, fp.WEIGHT_BITS))
    assert kept.tolist() == list(range(fp.DENSE_MANTISSA_MIN, fp.DENSE_MANTISSA_MAX + 1, fp.DENSE_MANTISSA_STEP))
    assert PyConvModelFixed.a_out.precision == fp.MESSAGE_BITS
    edges = np.array([fp.MESSAGE_LIMIT - 1, fp.MESSAGE_LIMIT, -fp.MESSAGE_LIMIT, -fp.MESSAGE_LIMIT - 1])
    assert np.array_equal(lava_signed_clamp(edges, bits=fp.MESSAGE_BITS), fp.wrap24(edges))
