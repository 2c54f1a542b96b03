"""The pass contract and the pass manager: in-place and functional transforms are checked, every error names
its pass (a raw exception inside too), pre- and postconditions are checked, fixed points stop when a round
changes nothing, analysis results are cached per graph and dropped when a transform modifies it, and the
CLI prints the IR after a pass and lists the pipeline."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from helpers import graph_from_text
from spikec.cli import main
from spikec.errors import InputError, IRError, PassError
from spikec.ir import parse_graph, print_graph
from spikec.passes.balance_delays import BalanceDelays
from spikec.passes.base import Analysis, AnalysisCache, PassResult, Transform
from spikec.passes.canonicalize import Canonicalize
from spikec.passes.fold_batchnorm import FoldBatchNorm
from spikec.passes.fold_scales import FoldScales
from spikec.passes.manager import PASSES, FixedPoint, PassManager, standard_pipeline
from spikec.passes.quantize import Quantize
from spikec.passes.range_analysis import RangeProblem
from spikec.passes.scale_classes import ScaleClassAnalysis
from spikec.passes.spike_driven import SpikeDriven
from spikec.passes.value_domains import ValueDomains

pytestmark = pytest.mark.core

FOLDABLE = """\
graph @g {
  %0 = input() {name = "x", layout = "TB"} : f32[2,1,4]
  %1 = scale(%0) {factor = 0.5} : f32[2,1,4]
  %2 = linear(%1) {weight = @fc.weight : f32[3,4], bias = @fc.bias : f32[3]} : f32[2,1,3] loc("fc" at "m.py":1)
  %3 = lif(%2) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,1,3] loc("n" at "m.py":2)
  %4 = mean(%3) {axes = [0], keepdim = false} : f32[1,1,3]
  %5 = linear(%4) {weight = @head.weight : f32[2,3], bias = none} : f32[1,1,2] loc("head" at "m.py":3)
  output(%5) {layouts = [0]}
}
"""

FOLDED = FOLDABLE.replace("%1 = scale(%0) {factor = 0.5}", "%1 = reshape(%0) {shape = [4]}")

TWO_SCALES = FOLDABLE.replace("%1 = scale(%0) {factor = 0.5} : f32[2,1,4]", """%1 = scale(%0) {factor = 2.0} : f32[2,1,4]
  %9 = scale(%1) {factor = 3.0} : f32[2,1,4]""").replace("linear(%1)", "linear(%9)")

UNFOLDABLE_BN = """\
graph @g {
  %0 = input() {name = "x", layout = "TB"} : f32[2,1,4]
  %1 = lif(%0) {tau = 2.0, v_threshold = 1.0, v_reset = 0.0, decay_input = true} : f32[2,1,4]
  %2 = add(%0, %1) : f32[2,1,4]
  %3 = batchnorm(%2) {weight = none, bias = none, running_mean = @bn.running_mean : f32[4], running_var = @bn.running_var : f32[4], eps = 1e-05, axis = 2} : f32[2,1,4] loc("bn" at "m.py":4)
  output(%3) {layouts = [1]}
}
"""

# transpose(transpose(x, p), p) composes to the identity transpose, which only the next run removes.
TWO_ROUNDS = """\
graph @t {
  %0 = input() {name = "x", layout = "TB"} : f32[2,1,3,4]
  %1 = transpose(%0) {perm = [0, 1, 3, 2]} : f32[2,1,4,3]
  %2 = transpose(%1) {perm = [0, 1, 3, 2]} : f32[2,1,3,4]
  output(%2) {layouts = [1]}
}
"""


# ---------------------------------------------------------------- transforms that break the contract


@dataclasses.dataclass(frozen=True)
class Copying(Transform):
    """Claims to work in place but returns a copy."""

    name = "copying"

    def apply(self, graph, analyses):
        return PassResult(parse_graph(print_graph(graph, with_weights=True)), False)


@dataclasses.dataclass(frozen=True)
class SameGraph(Transform):
    """Claims to be functional but hands its input back."""

    name = "same-graph"
    in_place = False

    def apply(self, graph, analyses):
        return PassResult(graph, False)


@dataclasses.dataclass(frozen=True)
class OldStyle(Transform):
    """Returns a bare flag, as rewrite passes used to."""

    name = "old-style"

    def apply(self, graph, analyses):
        return False


@dataclasses.dataclass(frozen=True)
class Raising(Transform):
    """Fails with a plain Python exception."""

    name = "raising"

    def apply(self, graph, analyses):
        raise ValueError("bad shape tuple")


@dataclasses.dataclass(frozen=True)
class IRBreaking(Transform):
    """Gives a transpose a permutation its type does not match."""

    name = "ir-breaking"

    def apply(self, graph, analyses):
        next(n for n in graph.nodes if n.op == "transpose").attrs["perm"] = (0, 1, 2, 3)
        return PassResult(graph, True)


@dataclasses.dataclass(frozen=True)
class ForgetfulFold(FoldBatchNorm):
    """fold-batchnorm that forgets to record the batch norms it leaves."""

    name = "forgetful-fold"

    def apply(self, graph, analyses):
        return PassResult(graph, super().apply(graph, analyses).modified)


@dataclasses.dataclass(frozen=True)
class LazyCanonicalize(Canonicalize):
    """canonicalize that leaves the dead nodes its rewrites make."""

    name = "lazy-canonicalize"

    def apply(self, graph, analyses):
        nodes = list(graph.nodes)
        graph.replace_all_uses(nodes[2].output, nodes[0].output)
        return PassResult(graph, True)


@dataclasses.dataclass(frozen=True)
class OverflowingQuantize(Quantize):
    """quantize whose result still has an overflow its range analysis found."""

    name = "overflowing-quantize"

    def apply(self, graph, analyses):
        result = super().apply(graph, analyses)
        lif = next(n for n in result.graph.nodes if n.op == "qlif")
        ranges = dataclasses.replace(result.ranges, problems=[RangeProblem(lif, "its input reaches [0, 2**20]")])
        return dataclasses.replace(result, ranges=ranges)


@dataclasses.dataclass(frozen=True)
class Restless(Transform):
    """Says it modified the graph on every run, so it never reaches a fixed point."""

    name = "restless"

    def apply(self, graph, analyses):
        return PassResult(graph, True)


@dataclasses.dataclass(frozen=True)
class PeelScale(Transform):
    """Bypasses one ``scale`` per run, so a group needs as many rounds as there are scales, plus one."""

    name = "peel-scale"

    def apply(self, graph, analyses):
        scale = next((n for n in graph.nodes if n.op == "scale"), None)
        if scale is None:
            return PassResult(graph, False)
        graph.replace_all_uses(scale.output, scale.inputs[0])
        graph.erase(scale)
        return PassResult(graph, True)


@dataclasses.dataclass(frozen=True)
class CountNodes(Analysis):
    """The number of nodes: an analysis whose result changes when the graph does."""

    name = "count-nodes"

    def compute(self, graph, analyses):
        return [len(graph.nodes)]


# ---------------------------------------------------------------- the contract


def test_an_in_place_pass_returning_another_graph_is_refused():
    with pytest.raises(PassError, match="^copying: an in-place pass returned a graph other than the one it was given"):
        Copying()(graph_from_text(FOLDABLE))


def test_a_functional_pass_returning_its_input_is_refused():
    with pytest.raises(PassError, match="^same-graph: a functional pass returned the graph it was given"):
        SameGraph()(graph_from_text(FOLDABLE))


def test_a_transform_must_return_a_pass_result():
    with pytest.raises(PassError, match="^old-style: apply returned bool, not a PassResult"):
        OldStyle()(graph_from_text(FOLDABLE))


def test_a_raw_exception_is_named_and_chained():
    with pytest.raises(PassError, match="^raising: ValueError: bad shape tuple$") as caught:
        PassManager([FoldScales(), Raising(), Canonicalize()]).run(graph_from_text(FOLDABLE))
    assert isinstance(caught.value.__cause__, ValueError)


def test_the_ir_is_verified_after_each_pass_and_the_failure_named():
    with pytest.raises(PassError, match="^ir-breaking: ") as caught:
        PassManager([IRBreaking()]).run(graph_from_text(TWO_ROUNDS))
    assert isinstance(caught.value.__cause__, IRError)


def test_fold_batchnorm_ensures_every_batch_norm_left_has_a_reason():
    result = FoldBatchNorm()(graph_from_text(UNFOLDABLE_BN))
    assert [s.node.op for s in result.skipped] == ["batchnorm"] and not result.modified
    with pytest.raises(PassError, match=r"^forgetful-fold: batchnorm in bn \(m.py:4\) is left without a reason"):
        ForgetfulFold()(graph_from_text(UNFOLDABLE_BN))


def test_canonicalize_ensures_no_dead_node_is_left():
    with pytest.raises(PassError, match=r"^lazy-canonicalize: transpose .*is dead"):
        LazyCanonicalize()(graph_from_text(TWO_ROUNDS))


def test_quantize_ensures_no_overflow_is_left_and_requires_folded_graphs():
    assert not Quantize()(graph_from_text(FOLDED)).ranges.problems
    with pytest.raises(PassError, match=r"^overflowing-quantize: qlif in n \(m.py:2\): its input reaches .*: the "
                                        "quantized graph can overflow"):
        OverflowingQuantize()(graph_from_text(FOLDED))
    with pytest.raises(InputError, match=r"^quantize: scale: scale cannot be quantized \(run fold-scales first"):
        Quantize()(graph_from_text(FOLDABLE))


def test_quantize_is_functional_and_its_result_is_an_integer_graph():
    graph = graph_from_text(FOLDABLE)
    FoldScales()(graph)
    before = print_graph(graph)
    result = Quantize()(graph)
    assert result.graph is not graph and print_graph(graph) == before
    assert {v.type.dtype for v in result.graph.values()} - {"f32"} == {"i32", "i64"}
    assert result.report.layers and result.ranges.of(result.graph.output_node.inputs[0])
    with pytest.raises(PassError, match="^scale-classes: quantize.* gives i32.*scale classes are solved on a float"):
        ScaleClassAnalysis(8)(result.graph)


def test_balance_delays_ensures_its_plan_balances_every_node():
    integer = Quantize()(graph_from_text(FOLDED)).graph
    plan = BalanceDelays()(integer)
    assert plan.depth_of(integer.nodes[-2]) == 1  # one on-chip synapse hop before the host readout
    calls = iter(range(1000))
    with pytest.raises(PassError, match="^balance-delays: .*the plan does not balance it"):
        BalanceDelays(latency=lambda node: next(calls))(integer)  # a latency that grows from call to call


def test_options_are_fields_and_the_name_is_the_class_s():
    assert SpikeDriven(True).strict and SpikeDriven.name == SpikeDriven(True).name == "spike-driven"
    for name, cls in PASSES.items():
        assert cls.name == name and dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
        assert "name" not in {f.name for f in dataclasses.fields(cls)}
        assert cls.__doc__.strip().splitlines()[0].endswith(".")
    assert {p.name for p in standard_pipeline().passes} <= set(PASSES)


# ---------------------------------------------------------------- the manager


def test_a_fixed_point_runs_until_a_run_changes_nothing():
    graph = graph_from_text(TWO_ROUNDS)
    seen = []
    run = PassManager([Canonicalize()]).run(graph, callback=lambda p, r: seen.append((p.name, r.modified)))
    assert seen == [("canonicalize", True), ("canonicalize", True), ("canonicalize", False)]
    assert [n.op for n in run.graph.nodes] == ["input", "output"]


def test_a_group_runs_round_after_round_and_the_callback_sees_every_run():
    graph = graph_from_text(TWO_SCALES)
    seen = []
    PassManager([FixedPoint((PeelScale(), FoldScales()))]).run(graph, lambda p, r: seen.append((p.name, r.modified)))
    assert seen == [("peel-scale", True), ("fold-scales", True), ("peel-scale", False), ("fold-scales", False)]


def test_a_pass_that_never_converges_is_stopped_and_named():
    with pytest.raises(PassError, match="^restless: no fixed point after 3 rounds"):
        PassManager([FixedPoint((Restless(),), max_rounds=3)]).run(graph_from_text(TWO_ROUNDS))


def test_the_pipeline_result_keeps_each_pass_s_last_skips():
    graph = graph_from_text(UNFOLDABLE_BN)
    run = PassManager([FoldBatchNorm(), Canonicalize()]).run(graph)
    assert [str(s) for s in run.skipped] == ["batchnorm in bn (m.py:4): batch norm not folded: its input comes "
                                             "from add, not a conv or linear"]
    assert run.last("fold-batchnorm").graph is graph
    with pytest.raises(KeyError):
        run.last("quantize")


def test_standard_pipeline_order():
    manager = standard_pipeline()
    assert [p.name for p in manager.passes] == ["reparameterize", "fold-batchnorm", "fold-scales", "canonicalize",
                                                "quantize"]
    assert isinstance(manager.steps[3], FixedPoint)
    assert [line.split()[0] for line in manager.describe()] == [p.name for p in manager.passes]


# ---------------------------------------------------------------- analyses


def test_an_analysis_is_cached_per_graph_and_options():
    graph, other = graph_from_text(FOLDABLE), graph_from_text(FOLDABLE)
    analyses = AnalysisCache()
    domains = ValueDomains()(graph, analyses)
    assert ValueDomains()(graph, analyses) is domains
    assert ValueDomains()(other, analyses) is not domains
    assert ValueDomains()(graph) is not domains  # no cache given: computed afresh
    assert SpikeDriven(strict=True)(graph, analyses) != SpikeDriven(strict=False)(graph, analyses)


def test_a_modifying_in_place_transform_invalidates_its_graph_s_results():
    graph = graph_from_text(FOLDABLE)
    analyses = AnalysisCache()
    count = CountNodes()(graph, analyses)
    assert not Canonicalize()(graph, analyses).modified
    assert CountNodes()(graph, analyses) is count  # nothing changed: the result stands
    assert PassManager([FoldScales()]).run(graph, analyses=analyses).runs[0][1].modified
    folded = CountNodes()(graph, analyses)
    assert folded == [count[0] - 1]  # recomputed for the folded graph
    assert Quantize()(graph, analyses).modified
    assert CountNodes()(graph, analyses) is folded  # a functional pass leaves its input, and its results, alone


# ---------------------------------------------------------------- the CLI

TINY = '{"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 8, "in_channels": 1, "T": 2}'
MODEL = ["--arch", "spikingformer-cifar", "--model-args", TINY]


def _compile(*args):
    return CliRunner().invoke(main, ["compile", *[str(a) for a in args]])


def test_passes_lists_the_pipeline_without_a_model():
    result = _compile("--passes")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["reparameterize", "fold-batchnorm", "fold-scales", "canonicalize",
                                                   "quantize"]
    assert "in place, to a fixed point" in lines[3] and "functional" in lines[4]


def test_print_ir_after_all_prints_every_run_and_the_last_is_the_artifact_s_ir(tmp_path):
    result = _compile(*MODEL, "-o", tmp_path / "a", "--print-ir-after", "all")
    assert result.exit_code == 0, result.stderr
    headers = [line for line in result.stderr.splitlines() if line.startswith("// IR after ")]
    assert headers[:3] == ["// IR after reparameterize (unchanged)", "// IR after fold-batchnorm",
                           "// IR after fold-scales"]
    assert headers[3] == "// IR after canonicalize" and headers[-2] == "// IR after canonicalize (unchanged)"
    assert headers[-1] == "// IR after quantize"
    model_ir = (tmp_path / "a" / "model.ir").read_text()
    last = result.stderr.split("// IR after quantize\n", 1)[1]
    assert last.startswith(model_ir) and last[len(model_ir):].startswith("compiled spikingformer_cifar for intsim: ")


def test_print_ir_after_one_pass_prints_only_that_pass(tmp_path):
    result = _compile(*MODEL, "-o", tmp_path / "a", "--print-ir-after", "fold-scales")
    assert result.exit_code == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("// IR")] == ["// IR after fold-scales"]
    assert "scale(" not in result.stderr.split("// IR after fold-scales\n", 1)[1]


@pytest.mark.parametrize("name, what", [("fold-everything", "is not the name of a pass"),
                                        ("value-domains", "is not a pass of the compile pipeline")])
def test_an_unknown_pass_name_is_bad_usage_on_one_line(tmp_path, name, what):
    result = _compile(*MODEL, "-o", tmp_path / "a", "--print-ir-after", name)
    assert result.exit_code == 2
    assert result.stderr == (f"spikec: error: --print-ir-after: {name!r} {what}; choose one of reparameterize, "
                             "fold-batchnorm, fold-scales, canonicalize, quantize, or all\n")
    assert not (tmp_path / "a").exists()

