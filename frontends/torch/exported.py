"""``torch.export`` programs (``.pt2``) as spikec input, and how to export a model so that its neurons stay ops.

**Neurons as custom ops.** torch.export records the ATen ops a model runs. A neuron's forward is a Python loop over
the T time steps, which export unrolls into a few dozen elementwise ops per neuron that no longer say "LIF".
Under :func:`exportable_neurons`, every neuron the registry knows (:func:`~spikec.frontends.torch.neurons.neuron_op`:
spikec.nn's and spikingjelly's) calls one of spikec's custom ops instead, ``spikec::lif_neuron``,
``spikec::plif_neuron`` or ``spikec::if_neuron``, whose arguments are the IR op's attributes; and
:func:`spikec.nn.iand` calls ``spikec::iand``. Each computes what :mod:`spikec.nn` computes (the tracer's
arithmetic) and has a fake kernel, so export keeps it as one node. :func:`export_program` exports under it.

**Reading.** :func:`load_program` reads a ``.pt2`` into a module that runs the program node by node (an fx
``Interpreter``), so the tracer sees it as it sees a model: every ATen op is called as the torch function the
model called (``aten.conv2d`` as ``F.conv2d``, ``aten.view`` as ``Tensor.reshape``, ...) and meets the same
handlers, and every node's ``nn_module_stack`` and ``stack_trace`` give the ops it records their module path and
``file:line``. A module and its ``.pt2`` therefore trace to the same IR, locations included.

**Safety.** ``torch.export.load`` unpickles the program's weights and constants with ``torch.load``, falling back
to ``weights_only=False``: a crafted file could run code. Here every ``torch.load`` it makes is ``weights_only``
and custom-object constants (TorchScript or pickled Python objects) are refused, unless ``allow_pickle``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import traceback
import zipfile

import torch
import torch.nn.functional as F
from torch import nn

import spikec.nn as snn
from spikec.errors import InputError
from spikec.files import require_regular_file
from spikec.frontends.torch.neurons import is_neuron, neuron_like, neuron_op
from spikec.frontends.torch.tracer import _user_frame, recorded_location
from spikec.ir import Location

__all__ = ["exportable_neurons", "export_program", "load_program", "ExportedModule"]

# ---------------------------------------------------------------- spikec's ops

_LIBRARY = torch.library.Library("spikec", "DEF")
_SCHEMAS = {
    "lif_neuron": "lif_neuron(Tensor x_seq, float tau, float v_threshold, float? v_reset, bool decay_input) -> Tensor",
    "plif_neuron": "plif_neuron(Tensor x_seq, float decay, float v_threshold, float? v_reset, bool decay_input) "
                   "-> Tensor",
    "if_neuron": "if_neuron(Tensor x_seq, float v_threshold, float? v_reset) -> Tensor",
    "iand": "iand(Tensor a, Tensor s) -> Tensor",
}
_KERNELS = {
    "lif_neuron": snn.lif_sequence, "plif_neuron": snn.plif_sequence, "if_neuron": snn.if_sequence,
    "iand": snn._iand_values,
}
# torch 2.4 renamed impl_abstract (the only name torch 2.3 has) to register_fake
_register_fake = getattr(torch.library, "register_fake", None) or torch.library.impl_abstract


def _same_shape(x_seq, *attrs, **named):
    return torch.empty_like(x_seq)


def _iand_shape(a, s):
    return torch.empty(torch.broadcast_shapes(a.shape, s.shape), dtype=torch.promote_types(a.dtype, s.dtype),
                       device=a.device)


for _name, _schema in _SCHEMAS.items():
    _LIBRARY.define(_schema)
    # CompositeExplicitAutograd, not CompositeImplicitAutograd: an implicit kernel is traced into, which is what
    # export must not do
    _LIBRARY.impl(_name, _KERNELS[_name], "CompositeExplicitAutograd")
    _register_fake(f"spikec::{_name}", _iand_shape if _name == "iand" else _same_shape, lib=_LIBRARY)

_NEURON_OPS = {"lif": "lif_neuron", "plif": "plif_neuron", "if": "if_neuron"}
"""IR neuron op -> spikec's custom op (``if`` is a keyword the schema parser refuses)."""


# ---------------------------------------------------------------- exporting


def _calls_op(op: str, attrs: dict):
    packet = getattr(torch.ops.spikec, _NEURON_OPS[op])

    def forward(x):
        return packet(x, **attrs)
    return forward


@contextlib.contextmanager
def exportable_neurons(model: nn.Module):
    """While active, every recognised neuron of ``model`` calls spikec's custom op for its IR op (with the
    attributes :func:`~spikec.frontends.torch.neurons.neuron_op` gives it) instead of its own forward, and
    :func:`spikec.nn.iand` calls ``spikec::iand``: ``torch.export.export(model, ...)`` then keeps each as one op.
    A neuron spikec cannot express (single-step mode, overridden dynamics) is an :class:`InputError` here.
    The ops compute inference only: they have no autograd kernel."""
    patched: dict[nn.Module, object] = {}
    try:
        for module in model.modules():
            if is_neuron(module):
                op, attrs = neuron_op(module)
                patched[module] = vars(module).get("forward")
                module.forward = _calls_op(op, attrs)
        snn._iand_op = torch.ops.spikec.iand
        yield model
    finally:
        snn._iand_op = None
        for module, own in patched.items():
            if own is None:
                del module.forward
            else:
                module.forward = own


_TORCH_2_3 = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 4)
"""torch 2.3's ``torch.export.export`` lowers conv2d, linear and matmul to core ATen (``convolution``, ``addmm``
and ``bmm`` over axes that merge time and batch with sample axes), which spikec cannot trace; its pre-dispatch
export, which torch 2.4 made the default, keeps them."""


def export_program(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike | None = None, *,
                   input_layout: str = "B"):
    """``torch.export`` ``model`` (in eval mode) on ``example_input`` with its neurons kept as spikec's ops
    (:func:`exportable_neurons`), and save it to ``path`` (``model.pt2``) when given; returns the
    ``ExportedProgram``. The batch axis (axis 0 for ``input_layout="B"``, 1 for ``"TB"``) is left free, so the
    program runs at any batch size, as spikec's IR does. ``spikec verify|compile|simulate model.pt2`` read it."""
    if input_layout not in ("B", "TB"):
        raise InputError(f"input layout must be B or TB, got {input_layout!r}")
    axis = 0 if input_layout == "B" else 1
    if example_input.dim() <= axis:
        raise InputError(f"an input with layout {input_layout} needs a batch axis {axis}, got shape "
                         f"{list(example_input.shape)}")
    if example_input.shape[axis] == 1:
        # export specialises a size-1 axis to 1 (torch's 0/1 rule); only shapes matter to it, not values
        example_input = torch.cat([example_input, example_input], dim=axis)
    dynamic = ({axis: torch.export.Dim("batch")},)
    was_training = model.training
    model.eval()
    try:
        with exportable_neurons(model), torch.no_grad():
            if _TORCH_2_3:
                from torch.export._trace import _export

                program = _export(model, (example_input,), dynamic_shapes=dynamic, pre_dispatch=True)
            else:
                # strict: dynamo records every frame of the user's code, where non-strict export keeps only the
                # frames of forward methods and would lose the line of a helper such as Spikformer's attend()
                program = torch.export.export(model, (example_input,), dynamic_shapes=dynamic, strict=True)
    finally:
        model.train(was_training)
    if path is not None:
        torch.export.save(program, path)
    return program


# ---------------------------------------------------------------- reading


class _RefusedPickle(Exception):
    """A payload that ``weights_only`` unpickling refuses (not a RuntimeError: torch.export.load swallows those and
    retries the file as another format)."""


_REFUSED_GLOBAL = re.compile(r"(?:Unsupported class|GLOBAL) ([\w.]+)")


@contextlib.contextmanager
def _tensors_only():
    """Every ``torch.load`` made inside is ``weights_only`` (tensors and plain containers only)."""
    load = torch.load

    def tensors_only(f, *args, **kwargs):
        kwargs["weights_only"] = True
        try:
            return load(f, *args, **kwargs)
        except pickle.UnpicklingError as exc:
            found = _REFUSED_GLOBAL.search(str(exc))
            raise _RefusedPickle(found.group(1) if found else "objects beyond tensors") from None

    torch.load = tensors_only
    try:
        yield
    finally:
        torch.load = load


def _archive_members(path: str) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path} is not a torch.export program: not a readable zip archive ({exc}); a truncated or "
                         "damaged file? Save it again with torch.export.save") from None


def _custom_objects(members: list[str]) -> list[str]:
    """The members of a program archive in the newer layout (torch 2.13 writes it) that hold TorchScript or pickled
    Python objects, which torch.export.load unpickles without torch.load; torch 2.3's layout keeps them inside a
    torch.load payload."""
    try:
        from torch.export.pt2_archive import constants
    except ImportError:
        return []
    prefixes = tuple(getattr(constants, name) for name in ("CUSTOM_OBJ_FILENAME_PREFIX", "OPAQUE_OBJ_FILENAME_PREFIX")
                     if hasattr(constants, name))
    return [n for n in members if "/constants/" in n and os.path.basename(n).startswith(prefixes)]


class _KeptErrors(logging.Handler):
    def __init__(self):
        super().__init__()
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.errors.append(record.exc_info[1])


@contextlib.contextmanager
def _torch_export_errors():
    """torch.export.load logs a traceback for a format it fails to read before it tries the next, and the last
    error may only point at those logs: they are kept off stderr, to name the first cause too, in one line."""
    logger = logging.getLogger("torch.export")
    kept = _KeptErrors()
    handlers, propagate = logger.handlers, logger.propagate
    logger.handlers, logger.propagate = [kept], False
    try:
        yield kept.errors
    finally:
        logger.handlers, logger.propagate = handlers, propagate


def _read_program(path: str, allow_pickle: bool):
    refuse = ("loading it would run code from the file. Pass --allow-pickle if you trust the file, or export the "
              "model again from its code")
    objects = _custom_objects(_archive_members(path))
    if objects and not allow_pickle:
        raise InputError(f"{path} holds Python or TorchScript objects ({objects[0]}); {refuse}")
    with _torch_export_errors() as logged:
        try:
            with contextlib.nullcontext() if allow_pickle else _tensors_only():
                return torch.export.load(path)
        except _RefusedPickle as exc:
            raise InputError(f"{path} pickles Python objects ({exc}); {refuse}") from None
        except Exception as exc:  # damaged members, JSON, schema versions, unknown ops: not a program torch reads
            detail = _described(exc) + "".join(f" (after {_described(e)})" for e in logged[:1] if e is not exc)
            raise InputError(f"{path} is not a torch.export program this torch ({torch.__version__}) can read "
                             f"(a program is read by the torch version that saved it): {detail}") from None


def _described(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


_LOWERED = frozenset({"aten.convolution", "aten.addmm", "aten.mm", "aten.max_pool2d_with_indices",
                      "aten._native_batch_norm_legit_functional"})
"""Ops of a program lowered to core ATen (torch 2.3's default export, or ``run_decompositions()``)."""


def _op_key(target) -> str | None:
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target.overloadpacket.__name__}"
    return None


def _type_name(entry) -> str:
    kind = entry[1]
    return kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}"


def _check_program(program, path: str) -> None:
    calls = [n for n in program.graph.nodes if n.op == "call_function" and _op_key(n.target) is not None]
    lowered = sorted({_op_key(n.target) for n in calls} & _LOWERED)
    if lowered:
        raise InputError(f"{path} is lowered to core ATen ({', '.join(lowered)}): its convolutions, linears and "
                         "matmuls run over time and batch merged with sample axes, which spikec cannot trace. "
                         "Export it with spikec.export_program(model, example_input), which keeps them whole")
    unrolled: dict[str, str] = {}
    for node in calls:
        if node.target.namespace == "spikec":
            continue
        for entry in (node.meta.get("nn_module_stack") or {}).values():
            if neuron_like(_type_name(entry).rpartition(".")[2]):
                unrolled.setdefault(entry[0], _type_name(entry))
    if unrolled:
        (first, kind), more = next(iter(unrolled.items())), len(unrolled) - 1
        raise InputError(f"{path}: its neurons were exported as their arithmetic over the time steps, not as one op "
                         f"each ({first}: {kind}{f', and {more} more' if more else ''}). Export the model with "
                         "spikec.export_program(model, example_input), which keeps every spikec and spikingjelly "
                         "neuron one op (docs/interop.md)")


def _user_input(program, path: str):
    inputs = [n for n in program.graph.nodes
              if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    if len(inputs) != 1 or not isinstance(inputs[0].meta.get("val"), torch.Tensor):
        raise InputError(f"{path} takes {len(inputs)} inputs; spikec traces programs of one tensor input")
    return inputs[0].meta["val"]


def _input_shape(program, path: str, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """The given ``--input-shape`` if the program takes it, else the program's with its free axes at 1."""
    dims = tuple(_user_input(program, path).shape)
    fixed = [d if isinstance(d, int) else None for d in dims]
    if given is None:
        return tuple(1 if d is None else d for d in fixed)
    if len(given) != len(fixed) or any(f is not None and f != g for f, g in zip(fixed, given)):
        raise InputError(f"{path} takes inputs of shape [{', '.join(str(d) for d in dims)}] (named axes are free); "
                         f"--input-shape {','.join(map(str, given))} does not fit it")
    return tuple(given)


def _program_name(program, path: str) -> str:
    """The exported model's class, as a module's trace names its graph; else the file's stem."""
    for node in program.graph.nodes:
        for entry in (node.meta.get("nn_module_stack") or {}).values():
            if entry[0] == "":
                return _type_name(entry).rpartition(".")[2]
    return os.path.splitext(os.path.basename(path))[0]


def load_program(source) -> "LoadedModel":  # noqa: F821 (loading imports this module lazily)
    """The ``.pt2`` that ``source.checkpoint`` names, as a :class:`~spikec.frontends.torch.loading.LoadedModel`
    whose module runs the program (see the module docstring); every problem is one :class:`InputError`."""
    from spikec.frontends.torch.loading import LoadedModel

    path = source.checkpoint
    extra = [flag for flag, given in (("--weights", source.weights), ("--model-args", source.model_args),
                                      ("--timesteps", source.timesteps)) if given]
    if extra:
        raise InputError(f"{path} is a torch.export program, which holds its weights and configuration: "
                         f"{', '.join(extra)} do not apply to it")
    require_regular_file(path, "a torch.export program (.pt2)")
    program = _read_program(path, source.allow_pickle)
    _check_program(program, path)
    shape = _input_shape(program, path, source.input_shape)
    return LoadedModel(ExportedModule(program), shape, source.input_layout, _program_name(program, path))


# ---------------------------------------------------------------- running


def _batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled=True):
    return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def _batch_norm_no_training(input, weight, bias, running_mean, running_var, momentum, eps):
    """torch 2.3's eval-mode batch norm: the normalised input and the (unused) saved mean and inverse std."""
    empty = torch.empty(0, dtype=input.dtype, device=input.device)  # not of the input: the tracer would flag it
    return F.batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps), empty, empty


def _slice(x, dim=0, start=None, end=None, step=1):
    return x[(slice(None),) * dim + (slice(start, end, step),)]


def _neuron(op: str):
    """A neuron node, called with its attributes by name, as the tracer's neuron handler takes them."""
    packet = getattr(torch.ops.spikec, op)
    names = [argument.name for argument in packet.default._schema.arguments[1:]]

    def call(x, *attrs, **named):
        return packet(x, **dict(zip(names, attrs)), **named)
    return call


_TORCH_CALLS = {
    "aten.conv1d": F.conv1d, "aten.conv2d": F.conv2d, "aten.linear": F.linear,
    "aten.batch_norm": _batch_norm, "aten._native_batch_norm_legit_no_training": _batch_norm_no_training,
    "aten.max_pool2d": F.max_pool2d, "aten.max_pool3d": F.max_pool3d, "aten.avg_pool2d": F.avg_pool2d,
    "aten.adaptive_avg_pool2d": F.adaptive_avg_pool2d, "aten.dropout": F.dropout,
    "aten.matmul": torch.matmul, "aten.bmm": torch.bmm,
    "aten.add": torch.add, "aten.mul": torch.mul, "aten.div": torch.div, "aten.mean": torch.mean, "aten.sum": torch.sum,
    "aten.view": torch.Tensor.reshape, "aten.reshape": torch.Tensor.reshape, "aten._unsafe_view": torch.Tensor.reshape,
    "aten.flatten": torch.Tensor.flatten, "aten.unflatten": torch.Tensor.unflatten,
    "aten.unsqueeze": torch.Tensor.unsqueeze, "aten.squeeze": torch.Tensor.squeeze,
    "aten.permute": torch.Tensor.permute, "aten.transpose": torch.Tensor.transpose, "aten.repeat": torch.Tensor.repeat,
    "aten.clone": torch.Tensor.clone, "aten.detach": torch.Tensor.detach, "aten.to": torch.Tensor.to,
    "aten.slice": _slice, "aten.split": torch.Tensor.split,
    "aten.split_with_sizes": torch.Tensor.split, "aten.chunk": torch.Tensor.chunk, "aten.cat": torch.cat,
    "aten.pad": F.pad,
    "spikec.lif_neuron": _neuron("lif_neuron"), "spikec.plif_neuron": _neuron("plif_neuron"),
    "spikec.if_neuron": _neuron("if_neuron"), "spikec.iand": snn.iand,
}
"""Each ATen op as the torch function a model calls for it, with the same arguments in the same order (adapted
where the two differ): the tracer's handlers, and its error messages, are written for those."""

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<name>.+)')


def _node_location(node) -> Location:
    """Where ``node``'s op came from: the innermost module of its ``nn_module_stack`` and the innermost frame of
    its ``stack_trace`` that is the user's code, as the tracer finds them on a live stack."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    module = stack[-1][0] if stack else ""
    frames = [traceback.FrameSummary(m["file"], int(m["line"]), m["name"], lookup_line=False)
              for m in _FRAME.finditer(node.meta.get("stack_trace") or "")]
    frame = _user_frame(frames)
    return Location(module, *frame) if frame else Location(module)


class _Interpreter(torch.fx.Interpreter):
    def run_node(self, node):
        with recorded_location(_node_location(node)):
            return super().run_node(node)

    def call_function(self, target, args, kwargs):
        call = _TORCH_CALLS.get(_op_key(target))
        if call is None:
            return super().call_function(target, args, kwargs)
        return call(*args, **kwargs)


class ExportedModule(nn.Module):
    """An ``ExportedProgram``'s module, run node by node (see the module docstring); it takes the program's one
    input tensor and returns what the exported model returned."""

    def __init__(self, program):
        super().__init__()
        self.program = program.module()

    def train(self, mode: bool = True) -> "ExportedModule":
        # the program was exported in eval mode and runs as it was exported; torch 2.3's program module raises
        # on train(), which eval() calls
        self.training = mode
        return self

    def forward(self, x):
        return _Interpreter(self.program).run(x)
