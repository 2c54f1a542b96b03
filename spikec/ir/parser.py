"""Parse the text form written by :mod:`spikec.ir.printer` back into a verified :class:`Graph`.

``parse_graph(print_graph(g, with_weights=True)) == g`` and
``parse_graph(print_graph(g), weights=weight_table(g)) == g`` (structural equality, see
:func:`spikec.ir.graph.graphs_equal`). Errors are :class:`IRError` with ``line:column``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any, Mapping

import numpy as np

from spikec.errors import IRError
from spikec.ir.graph import Graph, Value
from spikec.ir.types import Location, TensorType, numpy_dtype

__all__ = ["parse_graph"]

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>//[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<value>%[A-Za-z0-9_]+)
  | (?P<handle>@[A-Za-z0-9_.~\-]+)
  | (?P<float>-?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|inf\b|nan\b))
  | (?P<int>-?\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(){}\[\],=:])
""", re.VERBOSE)


_MAX_NESTING = 16
"""No op has an attribute nested deeper (a pooling window is two levels); deeper input is refused, not recursed."""
_INT64_DIGITS = 20
"""A literal longer than this (sign included) is beyond int64 without converting it."""


@dataclasses.dataclass
class _Token:
    kind: str
    text: str
    line: int
    column: int


@dataclasses.dataclass
class _Handle:
    name: str
    dtype: str
    shape: tuple[int, ...]


def _tokenize(text: str) -> list[_Token]:
    tokens, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise IRError(f"{line}:{pos - line_start + 1}: unexpected character {text[pos]!r}")
        kind = match.lastgroup
        if kind not in ("ws", "comment"):
            tokens.append(_Token(kind, match.group(), line, pos - line_start + 1))
        newlines = match.group().count("\n")
        if newlines:
            line += newlines
            line_start = match.start() + match.group().rindex("\n") + 1
        pos = match.end()
    tokens.append(_Token("eof", "", line, pos - line_start + 1))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def error(self, message: str) -> IRError:
        shown = self.tok.text or "end of input"
        if len(shown) > 40:
            shown = shown[:37] + "..."
        return IRError(f"{self.tok.line}:{self.tok.column}: {message} (at {shown!r})")

    def accept(self, text: str) -> bool:
        if self.tok.text == text and self.tok.kind in ("punct", "ident"):
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.error(f"expected {text!r}")

    def take(self, kind: str) -> str:
        if self.tok.kind != kind:
            raise self.error(f"expected {kind}")
        text = self.tok.text
        self.pos += 1
        return text

    def comma_list(self, close: str, item):
        items = []
        if self.accept(close):
            return items
        while True:
            items.append(item())
            if self.accept(close):
                return items
            self.expect(",")

    # -- grammar ---------------------------------------------------------------------------------

    def array_type(self) -> tuple[str, tuple[int, ...]]:
        dtype = self.take("ident")
        self.expect("[")
        dims = tuple(self.comma_list("]", self.integer))
        try:
            numpy_dtype(dtype)
        except IRError as exc:
            raise self.error(exc.message) from None
        return dtype, dims

    def type_(self) -> TensorType:
        dtype, dims = self.array_type()
        try:
            return TensorType(dims, dtype)
        except IRError as exc:
            raise self.error(exc.message) from None

    def integer(self) -> int:
        """An int literal; one beyond int64 is no attribute or dimension any op has."""
        tok = self.tok
        value = int(self.take("int")) if len(tok.text) <= _INT64_DIGITS else None
        if value is None or not -(1 << 63) <= value < (1 << 63):
            self.pos -= value is not None
            raise self.error("an integer beyond 64 bits")
        return value

    def attr_value(self, depth: int = 0) -> Any:
        tok = self.tok
        if tok.kind == "ident" and tok.text in ("none", "true", "false"):
            self.pos += 1
            return {"none": None, "true": True, "false": False}[tok.text]
        if tok.kind == "int":
            return self.integer()
        if tok.kind in ("float", "string"):
            self.pos += 1
            return float(tok.text) if tok.kind == "float" else self.string_literal(tok)
        if tok.kind == "punct" and tok.text == "[":
            if depth >= _MAX_NESTING:
                raise self.error(f"attribute lists nested deeper than {_MAX_NESTING}")
            self.pos += 1
            return tuple(self.comma_list("]", lambda: self.attr_value(depth + 1)))
        if tok.kind == "handle":
            self.pos += 1
            self.expect(":")
            return _Handle(tok.text[1:], *self.array_type())
        raise self.error("expected an attribute value")

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if not self.accept("{"):
            return attrs

        def item():
            name = self.take("ident")
            if name in attrs:
                raise self.error(f"attribute {name} given twice")
            self.expect("=")
            attrs[name] = self.attr_value()

        self.comma_list("}", item)
        return attrs

    def string_literal(self, tok: _Token) -> str:
        """A JSON string literal (the printer writes them with ``json.dumps``)."""
        try:
            return json.loads(tok.text)
        except ValueError as exc:
            raise IRError(f"{tok.line}:{tok.column}: a string that is not a JSON string literal ({exc.msg})") \
                from None

    def string(self) -> str:
        tok = self.tok
        self.take("string")
        return self.string_literal(tok)

    def location(self) -> Location:
        module = self.string()
        if not self.accept("at"):
            return Location(module)
        file = self.string()
        self.expect(":")
        line = int(self.take("int"))
        try:
            return Location(module, file, line)
        except IRError as exc:
            raise self.error(exc.message) from None

    def node(self) -> dict:
        start = self.tok
        results = []
        if self.tok.kind == "value":
            results = [self.take("value")]
            while self.accept(","):
                results.append(self.take("value"))
            self.expect("=")
        op = self.take("ident")
        self.expect("(")
        operands = self.comma_list(")", lambda: self.take("value"))
        attrs = self.attributes()
        types = []
        if self.accept(":"):
            types = [self.type_()]
            while self.accept(","):
                types.append(self.type_())
        if len(types) != len(results):
            raise self.error(f"{op} defines {len(results)} value(s) but declares {len(types)} type(s)")
        locs = []
        if self.accept("loc"):
            self.expect("(")
            locs = self.comma_list(")", self.location)
        return dict(op=op, results=results, operands=operands, attrs=attrs, types=types, locs=locs, at=start)

    def resources(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        if not self.accept("resources"):
            return arrays
        self.expect("{")
        while not self.accept("}"):
            name = self.take("handle")[1:]
            self.expect("=")
            dtype, shape = self.array_type()
            try:
                raw = base64.b64decode(self.string(), validate=True)
                array = np.frombuffer(raw, dtype=numpy_dtype(dtype).newbyteorder("<"))
                arrays[name] = array.astype(numpy_dtype(dtype)).reshape(shape)
            except (ValueError, TypeError) as exc:
                raise self.error(f"resource @{name} does not hold {dtype}{list(shape)}: {exc}") from None
        return arrays

    def graph_text(self):
        self.expect("graph")
        name = self.take("handle")[1:]
        self.expect("{")
        records = []
        while not self.accept("}"):
            records.append(self.node())
        arrays = self.resources()
        if self.tok.kind != "eof":
            raise self.error("expected end of input")
        return name, records, arrays


def _resolve(value: Any, arrays: Mapping[str, np.ndarray], record: dict) -> Any:
    if not isinstance(value, _Handle):
        return value
    where = f"{record['at'].line}:{record['at'].column}"
    if value.name not in arrays:
        raise IRError(f"{where}: no array for @{value.name}: print the graph with weights or pass weights=")
    array = np.asarray(arrays[value.name])
    if array.dtype != numpy_dtype(value.dtype) or array.shape != value.shape:
        raise IRError(f"{where}: @{value.name} is declared {value.dtype}{list(value.shape)} but the array is "
                      f"{array.dtype}{list(array.shape)}")
    return array


def parse_graph(text: str, weights: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Parse and verify a printed graph; tensor handles come from its resources section or ``weights``."""
    from spikec.ir.verify import verify_graph

    name, records, arrays = _Parser(text).graph_text()
    arrays = {**(weights or {}), **arrays}
    graph = Graph(name)
    values: dict[str, Value] = {}
    for record in records:
        where = f"{record['at'].line}:{record['at'].column}"
        try:
            inputs = [values[n] for n in record["operands"]]
        except KeyError as missing:
            raise IRError(f"{where}: {record['op']} uses {missing.args[0]} before it is defined") from None
        attrs = {k: _resolve(v, arrays, record) for k, v in record["attrs"].items()}
        try:
            node = graph.create_node(record["op"], inputs, attrs, record["locs"], output_types=record["types"])
        except IRError as exc:
            raise IRError(f"{where}: {exc.message}") from None
        for result, value in zip(record["results"], node.outputs):
            if result in values:
                raise IRError(f"{where}: {result} is defined twice")
            values[result] = value
    verify_graph(graph)
    return graph
