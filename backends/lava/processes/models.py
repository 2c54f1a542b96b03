"""fixed_pt models of spikec's processes (:mod:`.process`): each calls intsim's rule for its op.

The rules of ``spikec.backends.intsim.interpreter.INT_RULES`` take ``[T, B, ...]`` arrays and an IR node; here
each step is one ``[1, 1, ...]`` slice and the node a stand-in holding the op's attributes. Messages arrive
summed in int32 (Lava's InPort) and leave as int32 (the channel's dtype).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikec.backends.intsim.fixed_point import wrap_int32
from spikec.backends.intsim.interpreter import INT_RULES
from spikec.backends.lava.processes.process import (AndNot, Bias, Gain, Integrator, MatMul, MaxPool, MemSink, Mul,
                                                    ReduceSum)

_PORT_IN = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
_PORT_OUT = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
_OP_PARAMS = {"MaxPool": ("kernel", "stride", "padding", "dilation", "ceil_mode"), "ReduceSum": ("axes", "keepdim"),
              "Gain": ("factor",), "Integrator": ("axes", "keepdim")}


def _stub_node(attrs: dict, dtype: str = "i32") -> SimpleNamespace:
    """What an intsim rule reads of its node: ``attrs`` and the output dtype."""
    return SimpleNamespace(attrs=attrs, output=SimpleNamespace(type=SimpleNamespace(dtype=dtype)))


def _received(port, bias) -> np.ndarray:
    x = port.recv().astype(np.int64)
    return x if bias is None else wrap_int32(x + np.asarray(bias, dtype=np.int64))


class _UnaryModel(PyLoihiProcessModel):
    a_in = _PORT_IN
    s_out = _PORT_OUT
    op = ""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        kind = type(self).kind
        self.node = _stub_node({k: self.proc_params[k] for k in _OP_PARAMS.get(kind, ())})
        self.in_bias = self.proc_params.get("in_bias")

    def apply(self, x: np.ndarray) -> np.ndarray:
        return INT_RULES[self.op](self.node, [x[None, None]])[0, 0]

    def run_spk(self) -> None:
        self.s_out.send(self.apply(_received(self.a_in, self.in_bias)))


class _BinaryModel(PyLoihiProcessModel):
    a_in = _PORT_IN
    b_in = _PORT_IN
    s_out = _PORT_OUT
    op = ""

    def run_spk(self) -> None:
        a = _received(self.a_in, self.proc_params.get("a_bias"))
        b = _received(self.b_in, self.proc_params.get("b_bias"))
        self.s_out.send(INT_RULES[self.op](None, [a[None, None], b[None, None]])[0, 0])


def _fixed_pt(process):
    def wrap(model):
        model.kind = process.__name__
        return implements(proc=process, protocol=LoihiProtocol)(requires(CPU)(tag("fixed_pt")(model)))
    return wrap


@_fixed_pt(MaxPool)
class PyMaxPoolModel(_UnaryModel):
    op = "maxpool"


@_fixed_pt(ReduceSum)
class PyReduceSumModel(_UnaryModel):
    op = "sum"


@_fixed_pt(Gain)
class PyGainModel(_UnaryModel):
    op = "qgain"


@_fixed_pt(Bias)
class PyBiasModel(_UnaryModel):
    def apply(self, x: np.ndarray) -> np.ndarray:
        return wrap_int32(x + np.asarray(self.proc_params["bias"], dtype=np.int64))


@_fixed_pt(Integrator)
class PyIntegratorModel(_UnaryModel):
    """intsim's ``sum`` over the time axis and ``axes``: each step's slice is summed over the other axes exactly
    (int64), the running total kept exactly, and sent wrapped to int32 — equal, by modular arithmetic, to
    wrapping the whole sum once as intsim does."""

    op = "sum"

    def __init__(self, proc_params):
        super().__init__(proc_params)
        axes = tuple(a for a in self.proc_params["axes"] if a != 0)
        self.node = _stub_node({"axes": axes, "keepdim": self.proc_params["keepdim"]}, "i64")
        self.total = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        step = INT_RULES["sum"](self.node, [x[None, None]])[0, 0] if self.node.attrs["axes"] else x
        period = self.proc_params["T"]
        if self.total is None or self.time_step % period == self.proc_params["reset_offset"] % period:
            self.total = np.zeros(np.shape(step), dtype=np.int64)
        self.total = self.total + step
        return wrap_int32(self.total).reshape(self.proc_params["shape"])


@_fixed_pt(MatMul)
class PyMatMulModel(_BinaryModel):
    op = "matmul"


@_fixed_pt(Mul)
class PyMulModel(_BinaryModel):
    op = "mul"


@_fixed_pt(AndNot)
class PyAndNotModel(_BinaryModel):
    op = "and_not"


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
