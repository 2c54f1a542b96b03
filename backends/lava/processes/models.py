"""fixed_pt models of spikec's processes (:mod:`.process`): each calls intsim's rule for its op.

The rules are the functions of :mod:`spikec.backends.intsim.rules`, imported by name: the same functions intsim's
interpreter applies to an op's whole ``[T, B, ...]`` value, here applied to one step, a ``[1, 1, ...]`` slice, with
the process's parameters as the op's attributes. Messages arrive summed in int32 (Lava's InPort) and leave as int32
(the channel's dtype).
"""

from __future__ import annotations

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikec.backends.intsim.fixed_point import MESSAGE_BITS, wrap_int32
from spikec.backends.intsim.rules import add, and_not, gain, matmul, maxpool, reduce_sum
from spikec.backends.lava.processes.process import AndNot, Bias, Gain, Integrator, MatMul, MaxPool, MemSink

_PORT_IN = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=MESSAGE_BITS)
_PORT_OUT = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=MESSAGE_BITS)


def _received(port, bias) -> np.ndarray:
    x = port.recv().astype(np.int64)
    return x if bias is None else add(x, np.asarray(bias, dtype=np.int64))


def _step(rule, *args, **attrs) -> np.ndarray:
    """``rule`` applied to one step: each message as a ``[1, 1, ...]`` value, as intsim holds it."""
    return rule(*(x[None, None] for x in args), **attrs)[0, 0]


class _UnaryModel(PyLoihiProcessModel):
    """Receives ``a_in`` plus its ``in_bias``, sends :meth:`apply` of it."""

    a_in = _PORT_IN
    s_out = _PORT_OUT

    def run_spk(self) -> None:
        self.s_out.send(self.apply(_received(self.a_in, self.proc_params.get("in_bias"))))


class _BinaryModel(PyLoihiProcessModel):
    """Receives ``a_in`` and ``b_in`` plus their biases, sends ``rule(a, b)``."""

    a_in = _PORT_IN
    b_in = _PORT_IN
    s_out = _PORT_OUT

    def run_spk(self) -> None:
        a = _received(self.a_in, self.proc_params.get("a_bias"))
        b = _received(self.b_in, self.proc_params.get("b_bias"))
        self.s_out.send(_step(self.rule, a, b))


def _fixed_pt(process):
    def wrap(model):
        return implements(proc=process, protocol=LoihiProtocol)(requires(CPU)(tag("fixed_pt")(model)))
    return wrap


@_fixed_pt(MaxPool)
class PyMaxPoolModel(_UnaryModel):
    def apply(self, x: np.ndarray) -> np.ndarray:
        p = self.proc_params
        return _step(maxpool, x, kernel=p["kernel"], stride=p["stride"], padding=p["padding"],
                     dilation=p["dilation"], ceil_mode=p["ceil_mode"])


@_fixed_pt(Gain)
class PyGainModel(_UnaryModel):
    def apply(self, x: np.ndarray) -> np.ndarray:
        return gain(x, self.proc_params["factor"])


@_fixed_pt(Bias)
class PyBiasModel(_UnaryModel):
    def apply(self, x: np.ndarray) -> np.ndarray:
        return add(x, np.asarray(self.proc_params["bias"], dtype=np.int64))


@_fixed_pt(Integrator)
class PyIntegratorModel(_UnaryModel):
    """intsim's ``sum`` over the time axis and ``axes``: each step's slice is summed over the other axes exactly
    (int64), the running total kept exactly, and sent wrapped to int32 — equal, by modular arithmetic, to
    wrapping the whole sum once as intsim does."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.axes = tuple(a for a in self.proc_params["axes"] if a != 0)
        self.total = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        keepdim = self.proc_params["keepdim"]
        step = _step(reduce_sum, x, axes=self.axes, keepdim=keepdim, wide=True) if self.axes else x
        period = self.proc_params["T"]
        if self.total is None or self.time_step % period == self.proc_params["reset_offset"] % period:
            self.total = np.zeros(np.shape(step), dtype=np.int64)
        self.total = self.total + step
        return wrap_int32(self.total).reshape(self.proc_params["shape"])


@_fixed_pt(MatMul)
class PyMatMulModel(_BinaryModel):
    rule = staticmethod(matmul)


@_fixed_pt(AndNot)
class PyAndNotModel(_BinaryModel):
    rule = staticmethod(and_not)


@implements(proc=MemSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMemSinkModel(PyLoihiProcessModel):
    a_in = _PORT_IN

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = self.proc_params
        self.rows = np.memmap(p["path"], dtype=np.dtype(p["dtype"]), mode="r+", shape=(p["steps"], *p["shape"]))

    def run_spk(self) -> None:
        data = self.a_in.recv()
        if self.time_step <= len(self.rows):
            self.rows[self.time_step - 1] = data
