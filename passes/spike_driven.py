"""The spike-driven check (docs/design.md, §4): which ops multiply by something other than spikes?

With the domains of :mod:`spikec.passes.value_domains`, each checked op has one rule:

* ``conv1d`` / ``conv2d`` / ``linear`` (and the quantized ``qconv2d`` / ``qdense``): the activation input
  must be ``spike``. Otherwise the op does
  integer-float (SD001) or float-float (SD002) multiplications, or SD004 when the op right before it
  turned integers or spikes into real values (average pooling, a mean, a scale, a batch norm).
  Exempt, reported as notes unless ``strict``: the *encoding layer*, a weight op whose input is computed
  from the model input without any neuron or weight op in between, and the *readout*, a weight op that
  reads a ``mean`` and has no neuron downstream.
* ``matmul`` / ``mul`` of two dynamic values: spike-driven when at least one operand is ``spike``
  (select-and-accumulate); otherwise SD003.
* ``maxpool`` / ``and_not``: on a core these are OR and AND-NOT of spikes; on any other domain they run
  off-core (SD005, a warning).

Every finding carries a chain of notes back to the producer that made its input non-binary: from the
input's producer, follow the operand that carries the non-binary domain until an op that created it
(from spikes, or a weight op, a batch norm or the model input, which make real values from anything).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from spikec.diagnostics import Finding, Note, Operand
from spikec.errors import PassError
from spikec.ir import OPS, Graph, Node, Value
from spikec.ir.ops import OpCategory, ops_with
from spikec.passes.base import Analysis, AnalysisCache
from spikec.passes.value_domains import Domain, DomainMap, ValueDomains

__all__ = ["SpikeDriven", "checked_operands", "WEIGHT_OPS"]

# Both phases: the check runs on float graphs and on quantized ones.
WEIGHT_OPS = ops_with(category=OpCategory.WEIGHT)
NEURON_OPS = ops_with(category=OpCategory.NEURON)
VIEW_OPS = ops_with(category=OpCategory.VIEW)  # all of them: they move elements, the time encodings too
# Ops with learned parameters (weight ops, batch norm) and the model input make real values whatever they read.
REAL_SOURCES = frozenset(op for op, definition in OPS.items() if definition.traits.parameters) | {"input"}
MAX_NOTES = 4  # longer chains show their first two steps, a count, and the origin


def _name(domain: Domain) -> str:
    return "spikes" if domain.is_spike else str(domain)


def _file_line(node: Node) -> tuple[str | None, int | None]:
    loc = node.locs[0] if node.locs else None
    return (loc.file, loc.line) if loc else (None, None)


def _at(node: Node) -> str:
    file, line = _file_line(node)
    where = f"{file}:{line}" if file else "<unknown>"
    return f"{where} ({node.module})" if node.module else where


def _subject(node: Node) -> str:
    return f"{node.op} in {node.module}" if node.module else node.op


class _Context:
    """The graph, its domains, and two facts per node the rules need: which values are computed from
    the model input alone (no neuron, no weight op), and which nodes have a neuron downstream."""

    def __init__(self, graph: Graph, domains: DomainMap, strict: bool):
        self.domains = domains
        self.strict = strict
        self.encoded = self._encoded(graph)
        self.feeds_neuron = self._feeds_neuron(graph)

    @staticmethod
    def _encoded(graph: Graph) -> set[Value]:
        encoded: set[Value] = set()
        for node in graph.nodes:
            derived = node.op not in NEURON_OPS | WEIGHT_OPS and all(v in encoded for v in node.inputs)
            if node.op == "input" or node.inputs and derived:
                encoded.update(node.outputs)
        return encoded

    @staticmethod
    def _feeds_neuron(graph: Graph) -> set[Node]:
        feeds: set[Node] = set()
        for node in reversed(graph.nodes):
            users = [u for v in node.outputs for u in v.users()]
            if any(u.op in NEURON_OPS or u in feeds for u in users):
                feeds.add(node)
        return feeds

    def domain(self, value: Value) -> Domain:
        return self.domains[value]

    def producer(self, value: Value) -> Node:
        """The op that computed ``value``, looking through views (they move elements, not change them)."""
        node = value.producer
        while node.op in VIEW_OPS and len(node.inputs) == 1:
            node = node.inputs[0].producer
        return node

    def exemption(self, node: Node) -> str | None:
        value = node.inputs[0]
        if value in self.encoded:
            return "encoding layer"
        if self.producer(value).op == "mean" and node not in self.feeds_neuron:
            return "readout"
        return None

    def operand(self, value: Value) -> Operand:
        d = self.domain(value)
        return Operand(str(d), (d.lo, d.hi) if d.is_int else None)

    def finding(self, node: Node, position: int, rule: str, severity: str, message: str,
                notes: list[Note], exempt: str | None = None) -> Finding:
        return Finding(rule, severity, node.op, node.module, *_file_line(node), message,
                       tuple(self.operand(v) for v in node.inputs), tuple(notes), exempt, position)


# ---------------------------------------------------------------- the note chain


def _explain_add(ctx: _Context, node: Node) -> str:
    a, b = (ctx.domain(v) for v in node.inputs)
    kind = "SEW residual add" if a.is_int and b.is_int else "add"
    return f"{kind} at {_at(node)} adds {_name(b)} to {_name(a)}"


def _operands(ctx: _Context, node: Node) -> str:
    return " and ".join(_name(ctx.domain(v)) for v in node.inputs)


def _count(node: Node) -> int:
    return math.prod(node.inputs[0].shape[axis] for axis in node.attrs["axes"])


_EXPLAIN: dict[str, Callable[[_Context, Node], str]] = {
    "input": lambda ctx, n: f"the model input {n.attrs['name']} is analog",
    "add": _explain_add,
    "matmul": lambda ctx, n: f"matmul at {_at(n)} sums {n.inputs[0].shape[-1]} products of {_operands(ctx, n)}",
    "mul": lambda ctx, n: f"elementwise product at {_at(n)} of {_operands(ctx, n)}",
    "and_not": lambda ctx, n: f"and_not at {_at(n)} of {_operands(ctx, n)}",
    "sum": lambda ctx, n: f"sum of {_count(n)} values at {_at(n)} of {_operands(ctx, n)}",
    "mean": lambda ctx, n: f"mean of {_count(n)} values at {_at(n)} averages {_operands(ctx, n)}",
    "avgpool": lambda ctx, n: f"avgpool at {_at(n)} averages {_operands(ctx, n)}",
    "scale": lambda ctx, n: f"scale by {n.attrs['factor']:g} at {_at(n)} of {_operands(ctx, n)}",
    "maxpool": lambda ctx, n: f"maxpool at {_at(n)} of {_operands(ctx, n)}",
}


def _explain(ctx: _Context, node: Node) -> str:
    if node.op in _EXPLAIN:
        return _EXPLAIN[node.op](ctx, node)
    return f"{node.op} at {_at(node)} outputs {_name(ctx.domain(node.outputs[0]))} values"


def _carrier(ctx: _Context, node: Node) -> Value | None:
    """The operand that brought the non-binary domain into ``node``, or None where ``node`` made it."""
    if node.op in REAL_SOURCES:
        return None
    carriers = [v for v in node.inputs if not ctx.domain(v).is_spike]
    made_real = not ctx.domain(node.outputs[0]).is_int and all(ctx.domain(v).is_int for v in carriers)
    if not carriers or made_real:
        return None
    return max(carriers, key=lambda v: (not ctx.domain(v).is_int, ctx.domain(v).hi or 0))


def _note(ctx: _Context, node: Node, label: str) -> Note:
    return Note(f"{label}: {_explain(ctx, node)}", node.op, node.module, *_file_line(node))


def _chain(ctx: _Context, value: Value, lead: str) -> list[Note]:
    notes = []
    label = f"{lead} is {ctx.domain(value)}"
    while value is not None:
        node = ctx.producer(value)
        notes.append(_note(ctx, node, label))
        value = _carrier(ctx, node)
        label = str(ctx.domain(value)) if value is not None else ""
    if len(notes) <= MAX_NOTES:
        return notes
    skipped = Note(f"... {len(notes) - 3} more steps ...", "", "", None, None)
    return notes[:2] + [skipped, notes[-1]]


# ---------------------------------------------------------------- rules


def _weight_op(ctx: _Context, node: Node, position: int) -> Finding | None:
    value = node.inputs[0]
    d = ctx.domain(value)
    if d.is_spike:
        return None
    rule = "SD001" if d.is_int else "SD002"
    kind = f"non-binary integer activations {d}" if d.is_int else "real-valued activations"
    message = f"{_subject(node)} multiplies weights by {kind}"
    notes = _chain(ctx, value, "input")
    exempt = ctx.exemption(node)
    if exempt:
        severity = "error" if ctx.strict else "note"
        label = f"{exempt} (an error under --strict)" if ctx.strict else f"exempt: {exempt}"
        return ctx.finding(node, position, rule, severity, f"{label}: {message}", notes, exempt)
    producer = ctx.producer(value)
    made_from_integers = producer.op not in WEIGHT_OPS | {"input"} and all(ctx.domain(v).is_int
                                                                           for v in producer.inputs)
    if not d.is_int and made_from_integers:
        message = (f"{_subject(node)} multiplies weights by real values that {producer.op} at {_at(producer)} "
                   f"made from {_operands(ctx, producer)}")
        return ctx.finding(node, position, "SD004", "error", message, notes)
    return ctx.finding(node, position, rule, "error", message, notes)


def _product(ctx: _Context, node: Node, position: int) -> Finding | None:
    left, right = node.inputs
    if ctx.domain(left).is_spike or ctx.domain(right).is_spike:
        return None
    what = "matmul" if node.op == "matmul" else "elementwise product"
    where = f" in {node.module}" if node.module else ""
    message = (f"{what}{where} multiplies {ctx.domain(left)} by {ctx.domain(right)}: "
               "neither operand is a spike tensor")
    notes = _chain(ctx, left, "left operand") + _chain(ctx, right, "right operand")
    return ctx.finding(node, position, "SD003", "error", message, notes)


def _spike_only(ctx: _Context, node: Node, position: int) -> Finding | None:
    analog = [v for v in node.inputs if not ctx.domain(v).is_spike]
    if not analog:
        return None
    domains = " and ".join(str(ctx.domain(v)) for v in analog)
    message = f"{_subject(node)} gets {domains} values, not spikes: it cannot run on a neuromorphic core"
    notes = [n for v in analog for n in _chain(ctx, v, "input")]
    return ctx.finding(node, position, "SD005", "warning", message, notes)


CHECKS: dict[str, Callable[[_Context, Node, int], Finding | None]] = {
    **{op: _weight_op for op in sorted(WEIGHT_OPS)},
    "matmul": _product,
    "mul": _product,
    "maxpool": _spike_only,
    "and_not": _spike_only,
}


def checked_operands(graph: Graph) -> list[tuple[Node, int]]:
    """Every (node, input position) whose domain a rule reads: what observed mode records."""
    return [(node, i) for node in graph.nodes if node.op in CHECKS for i in range(len(node.inputs))]


@dataclasses.dataclass(frozen=True)
class SpikeDriven(Analysis):
    """Check every op against the spike-driven rules; the findings come in graph (execution) order.

    Requires: what value-domains requires (it reads that analysis of the same graph, from the cache).
    Ensures: every finding sits at a checked op, at that op's position, in execution order."""

    name = "spike-driven"
    strict: bool = False

    def compute(self, graph: Graph, analyses: AnalysisCache) -> tuple[Finding, ...]:
        ctx = _Context(graph, ValueDomains()(graph, analyses), self.strict)
        found = [CHECKS[n.op](ctx, n, i) for i, n in enumerate(graph.nodes) if n.op in CHECKS]
        return tuple(f for f in found if f is not None)

    def ensures(self, graph: Graph, findings: tuple[Finding, ...]) -> None:
        positions = [f.position for f in findings]
        if positions != sorted(positions):
            raise PassError("the findings are not in execution order")
        misplaced = next((f for f in findings if f.op not in CHECKS or graph.nodes[f.position].op != f.op), None)
        if misplaced is not None:
            raise PassError(f"a {misplaced.rule} finding on {misplaced.op} is not at a checked {misplaced.op} op "
                            f"(position {misplaced.position})")
