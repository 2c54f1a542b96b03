"""spikec's fixed_pt processes: the integer ops of spikec's IR that Lava has no built-in process for.

Each process applies exactly intsim's rule for its op (the functions of ``spikec.backends.intsim.rules``, called
by name by the models in :mod:`.models`), receives and sends within one time step (no latency, like Lava's neurons),
and runs on a CPU: on Loihi 2 that is the embedded (Lakemont) or host processor, never a neuro core.
Ports carry int32 messages (``LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)``); an InPort sums every
OutPort connected to it, so an ``add`` feeding one of these processes needs no process of its own.

``in_bias`` / ``a_bias`` / ``b_bias`` (optional, the shape of the port) are constant messages added to an
input every step: the biases of the synapse groups whose sum arrives there (intsim adds them at the synapse).
"""

from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess

__all__ = ["MaxPool", "MatMul", "AndNot", "Gain", "Bias", "Integrator", "MemSink"]


class _Unary(AbstractProcess):
    def __init__(self, *, in_shape: tuple, shape: tuple, name: str | None = None, **params) -> None:
        super().__init__(in_shape=tuple(in_shape), shape=tuple(shape), name=name, **params)
        self.a_in = InPort(shape=tuple(in_shape))
        self.s_out = OutPort(shape=tuple(shape))


class _Binary(AbstractProcess):
    def __init__(self, *, a_shape: tuple, b_shape: tuple, shape: tuple, name: str | None = None, **params) -> None:
        super().__init__(a_shape=tuple(a_shape), b_shape=tuple(b_shape), shape=tuple(shape), name=name, **params)
        self.a_in = InPort(shape=tuple(a_shape))
        self.b_in = InPort(shape=tuple(b_shape))
        self.s_out = OutPort(shape=tuple(shape))


class MaxPool(_Unary):
    """Max over windows of the last two axes (intsim's ``maxpool``; of spikes: an OR).
    Params: ``kernel``, ``stride``, ``padding``, ``dilation``, ``ceil_mode`` (as the IR op), ``in_bias``."""


class MatMul(_Binary):
    """Product of two dynamic operands over their last two axes, wrapped to int32 (intsim's ``matmul``:
    attention's ``q @ k^T`` and ``attn @ v`` on spikes and spike counts). Params: ``a_bias``, ``b_bias``."""


class AndNot(_Binary):
    """SEW-IAND ``(1 - a) * b`` (intsim's ``and_not``). Params: ``a_bias``, ``b_bias``."""


class Gain(_Unary):
    """``x * factor`` in int32 (intsim's ``qgain``). Params: ``factor``, ``in_bias``."""


class Bias(_Unary):
    """``x + bias`` in int32: a synapse group's bias as messages, where no neuron can take it. Params: ``bias``."""


class Integrator(_Unary):
    """Readout integrator: accumulates its input over each sample's ``T`` steps (intsim's ``sum`` over the time
    axis and ``axes``), starting from zero at the first step of every wave (``time_step % T == reset_offset %
    T``), and sends the running sum (int32): the host reads it at each sample's last step.
    Params: ``axes`` (IR axes, 0 among them), ``keepdim``, ``T``, ``reset_offset``, ``in_bias``."""


class MemSink(AbstractProcess):
    """Writes what arrives at ``a_in`` each step into row ``time_step - 1`` of a ``[steps, *shape]`` array of
    ``dtype`` in the file at ``path`` (a memmap the host created): a spike-train reader that costs one array
    copy per step instead of Lava's ``Var.get`` (~25 us per element)."""

    def __init__(self, *, shape: tuple, path: str, steps: int, dtype: str = "int32", name: str | None = None) -> None:
        super().__init__(shape=tuple(shape), path=path, steps=steps, dtype=dtype, name=name)
        self.a_in = InPort(shape=tuple(shape))
