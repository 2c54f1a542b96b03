"""spikec's graph IR: types, op registry, graph, text printer/parser, JSON and verifier."""

from spikec.ir.graph import Graph, Node, Value, graph_difference, graphs_equal
from spikec.ir.ops import OPS, OpDef, op_def
from spikec.ir.parser import parse_graph
from spikec.ir.printer import print_graph, weight_table
from spikec.ir.serialize import dumps, from_json, loads, to_json, to_networkx
from spikec.ir.types import Location, TensorType
from spikec.ir.verify import verify_graph

__all__ = ["Graph", "Node", "Value", "graphs_equal", "graph_difference", "OPS", "OpDef", "op_def",
           "parse_graph", "print_graph", "weight_table", "dumps", "loads", "to_json", "from_json",
           "to_networkx", "Location", "TensorType", "verify_graph"]
