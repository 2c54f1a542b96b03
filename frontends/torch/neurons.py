"""The neuron registry: which stateful PyTorch modules the frontend understands, and as which IR op.

Each entry maps a module class to a function returning ``(op, attrs)`` for the IR (``lif``, ``plif`` or ``if``),
or raising :class:`InputError` when the instance uses a mode spikec cannot express. The tracer does not
run a recognised neuron's own ``forward``; it records one IR op and computes the spikes with
:mod:`spikec.nn`, whose arithmetic equals spikingjelly's.

spikingjelly is optional: its classes are registered only when it imports. Models whose spikingjelly
neurons were built with ``backend='cupy'`` (every official Spikformer/Spikingformer model) cannot be
constructed without CuPy; :func:`cupy_neurons_on_cpu` lets them be built on a CPU-only machine by
constructing them with the ``torch`` backend, which spikec never runs anyway.
"""

from __future__ import annotations

import contextlib
import functools
import io
import sys
from typing import Any, Callable

from torch import nn

import spikec.nn as snn
from spikec.errors import InputError

__all__ = ["neuron_op", "is_neuron", "looks_stateful", "neuron_like", "reset_neuron_state", "cupy_neurons_on_cpu",
           "NEURON_CLASSES"]

Converter = Callable[[nn.Module], tuple[str, dict[str, Any]]]


def _float(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def _reset(module: nn.Module) -> float | None:
    return None if module.v_reset is None else _float(module.v_reset)


def _spikec_lif(m: snn.MultiStepLIF):
    return "lif", {"tau": m.tau, "v_threshold": m.v_threshold, "v_reset": m.v_reset, "decay_input": m.decay_input}


def _spikec_if(m: snn.MultiStepIF):
    return "if", {"v_threshold": m.v_threshold, "v_reset": m.v_reset}


def _require_multistep(m: nn.Module) -> None:
    step_mode = getattr(m, "step_mode", "m")
    if step_mode != "m":
        raise InputError(f"{type(m).__name__} is in single-step mode (step_mode='{step_mode}'); spikec traces "
                         "multi-step models: build it with step_mode='m'")


def _sj_lif(m):
    _require_multistep(m)
    return "lif", {"tau": _float(m.tau), "v_threshold": _float(m.v_threshold), "v_reset": _reset(m),
                   "decay_input": bool(m.decay_input)}


def _sj_plif(m):
    """spikingjelly's ParametricLIFNode: its decay is ``sigmoid(w)`` of its learned ``w``, in float32 as it
    computes it, so the traced neuron charges exactly as the module does."""
    _require_multistep(m)
    decay = _float(m.w.detach().float().sigmoid())
    if not 0.0 < decay < 1.0:
        raise InputError(f"{type(m).__name__} has w = {_float(m.w)}: its decay sigmoid(w) = {decay} rounds to "
                         "0 or 1 in float32, which no LIF can stand for")
    return "plif", {"decay": decay, "v_threshold": _float(m.v_threshold), "v_reset": _reset(m),
                    "decay_input": bool(m.decay_input)}


def _sj_if(m):
    _require_multistep(m)
    return "if", {"v_threshold": _float(m.v_threshold), "v_reset": _reset(m)}


NEURON_CLASSES: dict[type, Converter] = {snn.MultiStepLIF: _spikec_lif, snn.MultiStepIF: _spikec_if}


@contextlib.contextmanager
def _quiet():
    """spikingjelly prints CUDA and Prophesee notices at import; they are noise on a CPU machine."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


_NO_SPIKINGJELLY = {"clock": None, "activation": None, "bases": ()}


def _spikingjelly_modules(load: bool = False):
    """spikingjelly's neuron modules and memory base classes (each None when absent), once the user's code
    has imported spikingjelly, or with ``load``. A model that does not use spikingjelly never imports it:
    its import is slow, prints notices and, in ``lava_exchange.py``, catches ``BaseException`` around an
    import, which swallows a Ctrl-C."""
    if not load and "spikingjelly" not in sys.modules:
        return _NO_SPIKINGJELLY
    return _load_spikingjelly()


@functools.lru_cache(maxsize=1)
def _load_spikingjelly():
    """(clock_driven.neuron, activation_based.neuron, memory base classes), each None when absent."""
    found = {"clock": None, "activation": None, "bases": ()}
    bases = []
    with contextlib.suppress(ImportError), _quiet():
        from spikingjelly.clock_driven import base as clock_base, neuron as clock_neuron
        found["clock"] = clock_neuron
        bases.append(clock_base.MemoryModule)
        NEURON_CLASSES[clock_neuron.MultiStepLIFNode] = _sj_lif
        NEURON_CLASSES[clock_neuron.MultiStepIFNode] = _sj_if
        NEURON_CLASSES[clock_neuron.MultiStepParametricLIFNode] = _sj_plif
    with contextlib.suppress(ImportError), _quiet():
        from spikingjelly.activation_based import base as act_base, neuron as act_neuron
        found["activation"] = act_neuron
        bases.append(act_base.MemoryModule)
        NEURON_CLASSES[act_neuron.LIFNode] = _sj_lif
        NEURON_CLASSES[act_neuron.IFNode] = _sj_if
        NEURON_CLASSES[act_neuron.ParametricLIFNode] = _sj_plif
    found["bases"] = tuple(bases)
    return found


_HARMLESS_OVERRIDES = frozenset({"__init__", "extra_repr", "__repr__", "__module__", "__qualname__", "__doc__"})
"""What a neuron's subclass may define without changing its dynamics (SpikingResformer's ``LIF`` only fixes the
base class's arguments in ``__init__``)."""


def _registered_base(cls: type) -> type | None:
    return next((base for base in cls.__mro__ if base in NEURON_CLASSES), None)


def is_neuron(module: nn.Module) -> bool:
    _spikingjelly_modules()
    return _registered_base(type(module)) is not None


def neuron_op(module: nn.Module) -> tuple[str, dict[str, Any]]:
    """The IR op of a registered neuron class, or of a subclass of one whose code changes nothing but its
    constructor: spikec computes the registered class's dynamics, so any other override is refused by name."""
    _spikingjelly_modules()
    cls = type(module)
    base = _registered_base(cls)
    for klass in cls.__mro__[:cls.__mro__.index(base)]:
        changed = sorted(name for name, value in vars(klass).items()
                         if name not in _HARMLESS_OVERRIDES and (callable(value) or isinstance(value, property)))
        if changed:
            raise InputError(f"{cls.__name__} subclasses {base.__module__}.{base.__name__} and overrides "
                             f"{', '.join(changed)} (in {klass.__qualname__}): spikec computes "
                             f"{base.__name__}'s dynamics, so it cannot stand for this neuron")
    return NEURON_CLASSES[base](module)


def reset_neuron_state(model: nn.Module) -> int:
    """Reset every stateful neuron of ``model`` to its initial state; return how many were reset.

    spikingjelly neurons (``clock_driven`` and ``activation_based`` memory modules) keep their membrane
    potential between calls, so a model run batch after batch would start each batch from the last one's
    state (and fail on a batch of another size), as ``spikingjelly.*.functional.reset_net`` exists to
    prevent. spikec's own neurons keep no state between calls and need no reset."""
    bases = _spikingjelly_modules()["bases"]
    reset = 0
    for module in model.modules():
        if bases and isinstance(module, bases):
            module.reset()
            reset += 1
    return reset


def looks_stateful(module: nn.Module) -> bool:
    """A module the tracer must not trace through: spikingjelly memory modules, and leaf modules named
    like neurons (a container that merely has such a name is traced into)."""
    bases = _spikingjelly_modules()["bases"]
    if bases and isinstance(module, bases):
        return True
    if any(True for _ in module.children()):
        return False
    return neuron_like(type(module).__name__)


def neuron_like(class_name: str) -> bool:
    """Whether a class is named like a neuron (``MultiStepLIF``, ``LIFNode``, ``SpikingNeuron``)."""
    return class_name.endswith(("LIF", "IF", "Node")) or "Neuron" in class_name


@contextlib.contextmanager
def cupy_neurons_on_cpu():
    """While active, spikingjelly neurons built with ``backend='cupy'`` are built with ``backend='torch'``
    instead: ``clock_driven``'s constructors and ``activation_based``'s ``backend`` setter refuse 'cupy'
    without CuPy. spikec computes neurons itself, and ``simulate --backend torch`` runs them on the CPU; the
    package itself is not changed."""
    found = _spikingjelly_modules(load=True)
    with contextlib.ExitStack() as stack:
        if found["clock"] is not None:
            stack.enter_context(_clock_driven_on_cpu(found["clock"]))
        if found["activation"] is not None:
            stack.enter_context(_activation_based_on_cpu(found["activation"]))
        yield


@contextlib.contextmanager
def _activation_based_on_cpu(neuron_module):
    owner = next((cls for cls in neuron_module.BaseNode.__mro__ if "backend" in vars(cls)), None)
    if owner is None:  # spikingjelly 2.0: the neurons take no backend (CuPy and Triton have classes of their own)
        yield
        return
    original = vars(owner)["backend"]

    def set_backend(self, value):
        original.fset(self, "torch" if value == "cupy" else value)

    owner.backend = property(original.fget, set_backend, original.fdel, original.__doc__)
    try:
        yield
    finally:
        owner.backend = original


@contextlib.contextmanager
def _clock_driven_on_cpu(clock):
    originals = {cls: cls.__init__ for cls in (clock.MultiStepLIFNode, clock.MultiStepIFNode,
                                               clock.MultiStepParametricLIFNode)}

    def cpu_init(original):
        @functools.wraps(original)
        def init(self, *args, **kwargs):
            if kwargs.get("backend") == "cupy":
                kwargs["backend"] = "torch"
            original(self, *args, **kwargs)
        return init

    try:
        for cls, original in originals.items():
            cls.__init__ = cpu_init(original)
        yield
    finally:
        for cls, original in originals.items():
            cls.__init__ = original
