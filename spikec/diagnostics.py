"""Findings of spikec's checks and their three renderings: text for people, JSON for scripts, SARIF
2.1.0 for CI code scanning (docs/design.md, §8).

A :class:`Finding` is one diagnostic at one op, like a compiler's::

    spikec/models/spikformer.py:199: error[SD001]: linear in block.0.attn.q_linear multiplies weights by ...
      note: input is int[0,2]: SEW residual add at spikec/models/spikformer.py:103 (patch_embed) adds ...

Every rule has a stable id, a name, a one-line summary and a help text (:data:`RULES`). The JSON form
(``FORMAT_VERSION``) is described by ``spikec/schemas/verify-report.schema.json`` (:func:`report_schema`).
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

from spikec import __version__

__all__ = ["Rule", "RULES", "SEVERITIES", "Operand", "Note", "Finding", "Observation", "Reparameterized", "Report",
           "FORMAT_VERSION", "SARIF_SCHEMA_URI", "report_schema"]

FORMAT_VERSION = 1
SEVERITIES = ("error", "warning", "note")
SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
HISTOGRAM_CAP = 16  # distinct values listed per observed operand


@dataclasses.dataclass(frozen=True)
class Rule:
    id: str
    name: str
    summary: str
    help: str
    severity: str


RULES: dict[str, Rule] = {rule.id: rule for rule in (
    Rule("SD001", "IntegerActivationWeightProduct",
         "A conv/linear multiplies its weights by integer, non-binary activations.",
         "A weight op is spike-driven when it reads spikes (0 or 1): every synaptic event is then an "
         "accumulate, not a multiply. This input holds spike counts, typically made by a spike-element-wise "
         "(SEW) residual that adds spike tensors. Keep the stream binary (SEW-IAND, or a membrane-shortcut "
         "residual that adds before a neuron), or put a spiking neuron right before the op.",
         "error"),
    Rule("SD002", "RealActivationWeightProduct",
         "A conv/linear multiplies its weights by real-valued (analog) activations.",
         "The op needs float multiply-accumulates, which a neuromorphic core does not do. Put a spiking neuron "
         "before it. The encoding layer that reads the analog input and the readout classifier that reads an "
         "analog average are exempt and reported as notes; --strict makes them errors.",
         "error"),
    Rule("SD003", "NonSpikeDynamicProduct",
         "A dynamic matmul or elementwise product has no spike operand.",
         "A product of two dynamic values is spike-driven when at least one operand is a spike tensor: the "
         "binary operand selects which entries of the other to accumulate. With no binary operand it needs "
         "real multipliers. Put a neuron on one operand, or reorder the product so that one stays binary "
         "(e.g. q @ (k^T @ v) with spiking q).",
         "error"),
    Rule("SD004", "SpikesMadeNonBinaryBeforeWeightOp",
         "An op turns spikes into non-binary values right before a weight op.",
         "Average pooling, a mean, a constant scale or a batch norm between a neuron and a conv/linear hands the "
         "weight op real values instead of spikes. Move the op after the weight op, fold it into the weights "
         "(scale, batch norm), or use max-pooling, which keeps spikes binary.",
         "error"),
    Rule("SD005", "AnalogOpOffCore",
         "A non-weight op that neuromorphic cores do only on spikes gets non-spike values.",
         "Max-pooling and IAND run on a neuromorphic core only on spikes, where they are OR and AND-NOT. On "
         "analog or integer values they must run off-core (embedded or host processor). Move the op after "
         "the next neuron to keep it on-core.",
         "warning"),
)}


@dataclasses.dataclass(frozen=True)
class Operand:
    """The static domain of one operand a rule reads; ``range`` is ``(lo, hi)`` for an integer domain."""

    domain: str
    range: tuple[int, int] | None


@dataclasses.dataclass(frozen=True)
class Note:
    """One step of a finding's explanation, at the op it talks about."""

    message: str
    op: str
    module: str
    file: str | None
    line: int | None


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnostic at one op; ``position`` is the op's index in the graph (the sort key)."""

    rule: str
    severity: str
    op: str
    module: str
    file: str | None
    line: int | None
    message: str
    operands: tuple[Operand, ...]
    notes: tuple[Note, ...] = ()
    exempt: str | None = None
    position: int = 0

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def input_domain(self) -> str:
        return " and ".join(o.domain for o in self.operands)

    def to_json(self) -> dict:
        return {"rule": self.rule, "severity": self.severity, "op": self.op, "module": self.module,
                "file": self.file, "line": self.line, "message": self.message, "input_domain": self.input_domain,
                "operands": [{"domain": o.domain, "range": list(o.range) if o.range else None}
                             for o in self.operands],
                "exempt": self.exempt,
                "notes": [dataclasses.asdict(n) for n in self.notes]}


@dataclasses.dataclass(frozen=True)
class Observation:
    """The values a float run saw at one operand a rule reads, next to its static domain.

    ``histogram`` lists up to ``HISTOGRAM_CAP`` distinct values with their counts (the smallest first);
    ``truncated`` says there were more.
    """

    op: str
    module: str
    file: str | None
    line: int | None
    operand: int
    static_domain: str
    within: bool
    elements: int
    distinct: int
    minimum: float
    maximum: float
    histogram: tuple[tuple[float, int], ...]
    truncated: bool

    def to_json(self) -> dict:
        return {"op": self.op, "module": self.module, "file": self.file, "line": self.line,
                "operand": self.operand, "static_domain": self.static_domain, "within_static": self.within,
                "elements": self.elements, "distinct": self.distinct, "min": self.minimum, "max": self.maximum,
                "histogram": [[v, c] for v, c in self.histogram], "histogram_truncated": self.truncated}


@dataclasses.dataclass(frozen=True)
class Reparameterized:
    """A weight op the check saw in place of a chain of ops the reparameterize pass folded into it."""

    op: str
    module: str
    file: str | None
    line: int | None
    folded: tuple[str, ...]

    def to_json(self) -> dict:
        return {"op": self.op, "module": self.module, "file": self.file, "line": self.line,
                "folded": list(self.folded)}


@dataclasses.dataclass(frozen=True)
class Report:
    """What ``spikec verify --spike-driven`` found in one model. ``observations`` is None unless observed
    mode ran, on ``samples`` inputs from ``sample_source`` ("random" or a file name)."""

    model: str
    findings: tuple[Finding, ...]
    strict: bool = False
    observations: tuple[Observation, ...] | None = None
    samples: int = 0
    sample_source: str | None = None
    reparameterized: tuple[Reparameterized, ...] = ()

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def exit_code(self, fail_on: str = "error") -> int:
        """0 when no finding is at least as severe as ``fail_on`` ("error" or "warning"), else 1."""
        failing = SEVERITIES[:SEVERITIES.index(fail_on) + 1]
        return 1 if any(f.severity in failing for f in self.findings) else 0

    @property
    def disagreements(self) -> tuple[Observation, ...]:
        """Observed values outside their static domain: each one is a bug in the value-domain analysis."""
        return tuple(o for o in self.observations or () if not o.within)

    def to_text(self) -> str:
        return _text(self)

    def to_json(self) -> dict:
        return _json(self)

    def to_sarif(self) -> dict:
        return _sarif(self)


def report_schema() -> dict:
    """The JSON schema of :meth:`Report.to_json` (shipped as ``spikec/schemas/verify-report.schema.json``)."""
    text = resources.files("spikec").joinpath("schemas/verify-report.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


# ---------------------------------------------------------------- text


def _where(file: str | None, line: int | None, module: str) -> str:
    if file is not None:
        return f"{file}:{line}"
    return module or "<model>"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _seen(o: Observation) -> str:
    if o.truncated:
        return f"{o.distinct} distinct values in [{_number(o.minimum)}, {_number(o.maximum)}]"
    return "{" + ", ".join(f"{_number(v)}: {c}" for v, c in o.histogram) + "}"


def _observation_line(o: Observation) -> str:
    subject = f"{o.op} in {o.module}" if o.module else o.op
    operand = f" operand {o.operand}" if o.op in ("matmul", "mul") else ""
    verdict = "" if o.within else "  <- outside the static domain (a spikec bug: please report it)"
    return (f"  {_where(o.file, o.line, o.module)}: {subject}{operand}: static {o.static_domain}, "
            f"seen {_seen(o)}{verdict}")


def _observed_text(report: Report) -> list[str]:
    if report.observations is None:
        return []
    inputs = _plural(report.samples, "random input" if report.sample_source == "random" else "input")
    source = "" if report.sample_source == "random" else f" from {report.sample_source}"
    lines = [f"observed on {inputs}{source}, at every operand the rules read:"]
    lines += [_observation_line(o) for o in report.observations]
    bad = len(report.disagreements)
    lines.append(f"  static and observed domains agree at all {len(report.observations)} operands" if not bad
                 else f"  {_plural(bad, 'operand')} saw values outside the static domain")
    return lines + [""]


def _summary(report: Report) -> str:
    verdict = "not spike-driven" if report.count("error") else "spike-driven"
    strict = " (--strict)" if report.strict else ""
    return (f"{report.model}: {verdict}{strict}: {_plural(report.count('error'), 'error')}, "
            f"{_plural(report.count('warning'), 'warning')}, {_plural(report.count('note'), 'note')}")


def _text(report: Report) -> str:
    lines = []
    for f in report.findings:
        lines.append(f"{_where(f.file, f.line, f.module)}: {f.severity}[{f.rule}]: {f.message}")
        lines += [f"  note: {n.message}" for n in f.notes]
    if report.findings:
        lines.append("")
    lines += _observed_text(report)
    if report.reparameterized:
        lines.append(f"checked after reparameterizing {_plural(len(report.reparameterized), 'chain')} into single "
                     "weight ops (--no-fold checks the graph as traced):")
        lines += [f"  {_where(r.file, r.line, r.module)}: {r.op} in {r.module}: {' -> '.join(r.folded)}"
                  for r in report.reparameterized]
        lines.append("")
    lines.append(_summary(report))
    fired = dict.fromkeys(f.rule for f in report.findings if f.severity != "note")
    lines += [f"help[{rule}]: {RULES[rule].help}" for rule in sorted(fired)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- JSON


def _json(report: Report) -> dict:
    observed = None
    if report.observations is not None:
        observed = {"samples": report.samples, "source": report.sample_source,
                    "agree": not report.disagreements, "sites": [o.to_json() for o in report.observations]}
    return {
        "version": FORMAT_VERSION,
        "tool": {"name": "spikec", "version": __version__},
        "check": "spike-driven",
        "model": report.model,
        "strict": report.strict,
        "summary": {s: report.count(s) for s in SEVERITIES},
        "findings": [f.to_json() for f in report.findings],
        "observed": observed,
        "reparameterized": [r.to_json() for r in report.reparameterized],
    }


# ---------------------------------------------------------------- SARIF 2.1.0


def _sarif_rule(rule: Rule) -> dict:
    return {"id": rule.id, "name": rule.name,
            "shortDescription": {"text": rule.summary}, "fullDescription": {"text": rule.summary},
            "help": {"text": rule.help, "markdown": f"**{rule.id} {rule.name}**\n\n{rule.help}"},
            "defaultConfiguration": {"level": rule.severity},
            "properties": {"tags": ["spike-driven", "neuromorphic"]}}


def _sarif_location(file: str | None, line: int | None, module: str) -> dict:
    location: dict = {}
    if file is not None:
        location["physicalLocation"] = {"artifactLocation": {"uri": file.replace("\\", "/"),
                                                             "uriBaseId": "%SRCROOT%"},
                                        "region": {"startLine": line}}
    if module:
        location["logicalLocations"] = [{"fullyQualifiedName": module, "kind": "module"}]
    return location


def _sarif_result(finding: Finding, rule_index: dict[str, int]) -> dict:
    related = [{"id": i + 1, "message": {"text": n.message}, **_sarif_location(n.file, n.line, n.module)}
               for i, n in enumerate(finding.notes)]
    result = {"ruleId": finding.rule, "ruleIndex": rule_index[finding.rule], "level": finding.severity,
              "message": {"text": finding.message},
              "locations": [_sarif_location(finding.file, finding.line, finding.module)],
              "properties": {"op": finding.op, "inputDomain": finding.input_domain, "exempt": finding.exempt}}
    if related:
        result["relatedLocations"] = related
    return result


def _sarif(report: Report) -> dict:
    rule_index = {rule_id: i for i, rule_id in enumerate(RULES)}
    driver = {"name": "spikec", "version": __version__, "semanticVersion": __version__,
              "rules": [_sarif_rule(r) for r in RULES.values()]}
    run = {"tool": {"driver": driver},
           "columnKind": "unicodeCodePoints",
           "results": [_sarif_result(f, rule_index) for f in report.findings],
           "properties": {"model": report.model, "strict": report.strict}}
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}
