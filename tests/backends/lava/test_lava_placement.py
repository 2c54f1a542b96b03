"""Placement of tiny hand-built process graphs on Loihi 2 (backends/lava/placement.py), checked against counts
worked out by hand: cores per neuron group, what each core stores and reads, chips, and the share of the on-chip
region that runs on neuro cores."""

from __future__ import annotations

import numpy as np

from spikec.backends.lava.netlist import Connection, ProcessGraph, ProcessSpec
from spikec.backends.lava.placement import CoreLimits, pack_chips
from spikec.backends.lava.resources import LIMITS, resource_report


def graph(processes, connections, chip_nodes=()) -> ProcessGraph:
    return ProcessGraph("t", 1, 0, list(processes), list(connections), [], [], [], {}, {}, list(chip_nodes))


def dense(name: str, n_out: int, n_in: int, node: int | None = None, weights=None) -> ProcessSpec:
    ref = weights or {"$": "weight", "key": name}
    return ProcessSpec(name, "Dense", {"weights": ref}, "synapse", node, "", 0, {"s_in": (n_in,)},
                       {"a_out": (n_out,)})


def lif(name: str, shape: tuple[int, ...], node: int | None = None, module: str = "") -> ProcessSpec:
    return ProcessSpec(name, "LIFReset", {"vth": 1}, "neuron", node, module, 0, {"a_in": shape}, {"s_out": shape})


def conv(name: str, in_shape, out_shape, padding=(0, 0)) -> ProcessSpec:
    args = {"weight": {"$": "weight", "key": name}, "input_shape": list(in_shape), "padding": list(padding),
            "stride": [1, 1], "dilation": [1, 1], "groups": 1, "num_message_bits": 0}
    return ProcessSpec(name, "Conv", args, "synapse", None, "", 0, {"s_in": in_shape}, {"a_out": out_shape})


def feed(src: str, dst: str, views=()) -> Connection:
    return Connection(src, "a_out", dst, "a_in", tuple(views))


def cores(report: dict, group: str) -> list[dict]:
    return [report["placement"]["cores"][i] for i in report["placement"]["groups"][group]]


def column(rows: list[dict], key: str) -> list[int]:
    return [row[key] for row in rows]


def test_a_dense_fed_group_of_20000_neurons_takes_three_cores():
    # 20,000 neurons, one weight each: ceil(20000 / 8192) = 3 cores of 8192, 8192 and 3616 neurons; each neuron
    # reads the one input (fan-in 1), stores one byte; one chip.
    pg = graph([dense("d", 20_000, 1), lif("s", (20_000,))], [feed("d", "s")])
    report = resource_report(pg, {"d": np.full((20_000, 1), 2, np.int32)})
    placed = cores(report, "s")
    assert column(placed, "neurons") == [8192, 8192, 3616]
    assert column(placed, "weights_stored") == [8192, 8192, 3616]
    assert column(placed, "fan_in") == [1, 1, 1]
    assert (report["totals"]["neuro_cores"], report["totals"]["chips"], report["violations"]) == (3, 1, [])
    assert report["neuron_groups"][0]["cores"] == 3


def test_a_conv_fed_group_is_split_by_output_channels_and_stores_each_kernel_row_once():
    # 3x3 conv, 4 -> 16 channels, 32x32, padding 1: 16 x 1024 = 16,384 neurons. 8 whole channels (8192
    # neurons) per core: 2 cores. A core stores the kernel rows of its 8 channels, 8 x (3 x 3 x 4) = 288 bytes:
    # 576 in all, each of the 16 rows once. Its windows cover all 32 x 32 inputs of 4 channels: fan-in 4096
    # (the limit, so 8 channels fit). Synapses per channel: the in-map taps, (3 * 32 - 2)**2 = 8836 positions x
    # taps, times 4 input channels = 35,344; a core's 8 channels: 282,752.
    kernel = ((np.arange(16 * 9 * 4).reshape(16, 3, 3, 4) % 7 - 3) << 4).astype(np.int32)
    pg = graph([conv("c", (32, 32, 4), (32, 32, 16), padding=(1, 1)), lif("s", (16, 32, 32))],
               [feed("c", "s", [("transpose", (2, 1, 0))])])
    report = resource_report(pg, {"c": kernel})
    placed = cores(report, "s")
    assert column(placed, "neurons") == [8192, 8192]
    assert column(placed, "weights_stored") == [288, 288]
    assert column(placed, "fan_in") == [4096, 4096]
    assert column(placed, "synapses") == [282_752, 282_752]
    assert report["totals"]["weights_stored"] == 16 * 36
    (synapse,) = report["synapse_groups"]
    assert (synapse["shared"], synapse["weight_bits"], synapse["weights_stored"]) == (True, 8, 576)
    assert report["violations"] == []


def test_a_channel_too_large_for_a_core_is_split_by_positions():
    # 1x1 conv, 1 -> 2 channels on 128 x 128: a channel's 16,384 positions exceed a core's 8192 neurons, so
    # positions are split: runs of 8192 positions of one channel, 4 cores, each storing its channel's kernel
    # row (1 weight): 4 bytes in all (a row once per core holding it). Each position reads one input: fan-in
    # 8192 per core, reported, not a limit.
    pg = graph([conv("c", (128, 128, 1), (128, 128, 2)), lif("s", (2, 128, 128))],
               [feed("c", "s", [("transpose", (2, 1, 0))])])
    report = resource_report(pg, {"c": np.full((2, 1, 1, 1), 3, np.int32)})
    placed = cores(report, "s")
    assert column(placed, "neurons") == [8192] * 4
    assert column(placed, "fan_in") == [8192] * 4
    assert column(placed, "weights_stored") == [1] * 4
    assert report["totals"]["weights_stored"] == 4 and report["violations"] == []


def test_a_token_wise_linear_as_a_1x1_conv_stores_its_weights_once():
    # 1x1 conv, 384 -> 1536 channels over 8 x 8 = 64 tokens: one channel's 64 tokens fit a core, so whole
    # channels: 8192 // 64 = 128 channels per core (128 x 384 = 49,152 bytes of kernel rows, within 128 KB):
    # 1536 / 128 = 12 cores, each kernel row stored once, 1536 x 384 = 589,824 bytes in all, the parameter
    # count. Each core reads all 64 x 384 = 24,576 inputs: above Loihi 1's 4096 axons, a note.
    kernel = np.full((1536, 1, 1, 384), 2, np.int32)
    pg = graph([conv("c", (8, 8, 384), (8, 8, 1536)), lif("s", (1536, 8, 8))],
               [feed("c", "s", [("transpose", (2, 1, 0))])])
    report = resource_report(pg, {"c": kernel})
    placed = cores(report, "s")
    assert column(placed, "neurons") == [8192] * 12
    assert column(placed, "weights_stored") == [128 * 384] * 12
    assert column(placed, "fan_in") == [64 * 384] * 12
    assert report["totals"]["weights_stored"] == 1536 * 384 and report["violations"] == []
    (note,) = report["notes"]
    assert note.startswith("12 of 12 cores read more than 4096 input axons (peak 24576), Loihi 1's figure")


def test_a_dense_whose_weights_exceed_a_cores_memory_is_split_further():
    # 100 neurons, each reading all 4096 inputs: 409,600 weights. 100 neurons fit one core, but 128 KB holds
    # 131,072 / 4096 = 32 rows: ceil(100 / 32) = 4 cores of 32, 32, 32 and 4 neurons; each reads 4096 axons.
    pg = graph([dense("d", 100, 4096), lif("s", (100,))], [feed("d", "s")])
    report = resource_report(pg, {"d": np.full((100, 4096), 2, np.int32)})
    placed = cores(report, "s")
    assert column(placed, "neurons") == [32, 32, 32, 4]
    assert column(placed, "weights_stored") == [131_072, 131_072, 131_072, 16_384]
    assert column(placed, "fan_in") == [4096] * 4
    assert report["per_core_peaks"] == {"neurons": 32, "weights_stored": 131_072, "fan_in": 4096,
                                        "synapses": 131_072}
    assert report["violations"] == []


def test_130_one_core_groups_need_two_chips_and_that_is_no_violation():
    # 130 groups of 10 neurons, 100 weights each: one core each; 128 cores per chip: 128 on chip 0, 2 on chip 1.
    processes, connections, weights = [], [], {}
    for i in range(130):
        processes += [dense(f"d{i}", 10, 10), lif(f"s{i}", (10,))]
        connections.append(feed(f"d{i}", f"s{i}"))
        weights[f"d{i}"] = np.full((10, 10), 2, np.int32)
    report = resource_report(graph(processes, connections), weights)
    assert (report["totals"]["neuro_cores"], report["totals"]["chips"]) == (130, 2)
    assert column(report["placement"]["chips"], "cores") == [128, 2]
    assert report["placement"]["groups"]["s129"] == [129] and cores(report, "s129")[0]["chip"] == 1
    assert report["violations"] == []


def test_chips_are_filled_first_fit_within_their_synapses_and_neurons():
    # At most 100 synapses per chip: 60 (chip 0), 60 (no room on chip 0: chip 1), 30 (fits chip 0: 90).
    # At most 15 neurons per chip: 10, 10 (chip 1), 5 (chip 0: 15).
    limits = CoreLimits(8192, 1 << 17, 4096, 128, 1 << 20, 100)
    assert pack_chips([(10, 60), (10, 60), (10, 30)], limits)[0] == [0, 1, 0]
    limits = CoreLimits(8192, 1 << 17, 4096, 128, 15, 10**8)
    chip_of, chips = pack_chips([(10, 0), (10, 0), (5, 0)], limits)
    assert chip_of == [0, 1, 0] and [chip.neurons for chip in chips] == [15, 10]


def test_a_neuron_that_fits_no_cores_memory_is_a_violation():
    # Rows 0 and 2 hold one weight each, row 1 all 200,000 (more than a core's 131,072 bytes): rows 0 and 1 do
    # not fit together, so row 0 ends a core. Row 1 fits no core: its core (core 1, over the limit) holds it
    # alone, since row 2 would add a byte beyond what row 1 needs alone. 3 cores: 1, 200,000 and 1 bytes.
    w = np.zeros((3, 200_000), np.int32)
    w[0, 0] = w[2, 1] = 2
    w[1] = 2
    pg = graph([dense("d", 3, 200_000), lif("s", (3,), module="block.0.fc1_lif")], [feed("d", "s")])
    report = resource_report(pg, {"d": w})
    assert column(cores(report, "s"), "weights_stored") == [1, 200_000, 1]
    assert column(cores(report, "s"), "neurons") == [1, 1, 1]
    (line,) = report["violations"]
    assert line == ("s (block.0.fc1_lif), 1 of its 3 core(s) (worst: core 1 on chip 0): synapse memory bytes per "
                    "neuro core (1 byte per stored weight) 200000 > 131072 (source: "
                    f"{LIMITS['synapse_memory_per_core'].source})")


def test_layout_references_are_built_with_the_helpers():
    # token_dense of a 3x2 weight over 4 positions (pre 1, post 4): 12 neurons, each reading the 2 inputs of its
    # position: 24 synapses, fan-in 8 (all inputs); identity of 12: one synapse and axon per neuron. One core:
    # 36 synapses, fan-in 8 + 12 = 20 (two synapse groups count apart).
    token = {"$": "layout", "fn": "token_dense", "key": "w", "args": [1, 4]}
    relay = {"$": "layout", "fn": "identity", "args": [12]}
    pg = graph([dense("d", 12, 8, weights=token), dense("r", 12, 12, weights=relay), lif("s", (12,))],
               [feed("d", "s"), feed("r", "s")])
    report = resource_report(pg, {"w": np.array([[2, 4], [6, 8], [-2, -4]], np.int32)})
    assert cores(report, "s") == [{"group": "s", "chip": 0, "neurons": 12, "synapses": 36, "weights_stored": 36,
                                   "fan_in": 20}]
    assert column(report["synapse_groups"], "synapses") == [24, 12]


def test_a_synapse_group_feeding_only_the_embedded_cores_is_placed_with_compartments_of_its_own():
    # A 6x4 dense whose sums a ReduceSum reads: no neuron group holds its synapses, so it is a group of its own,
    # one compartment per output: 1 core, 6 neurons, 24 synapses and bytes, fan-in 4.
    reduce = ProcessSpec("r", "ReduceSum", {}, "op", None, "", 0, {"a_in": (6,)}, {"s_out": (1,)})
    pg = graph([dense("d", 6, 4), reduce], [feed("d", "r")])
    report = resource_report(pg, {"d": np.full((6, 4), 2, np.int32)})
    assert report["placement"]["groups"] == {"d": [0]} and report["neuron_groups"] == []
    assert cores(report, "d") == [{"group": "d", "chip": 0, "neurons": 6, "synapses": 24, "weights_stored": 24,
                                   "fan_in": 4}]
    assert report["synapse_groups"][0]["targets"] == ["d"]


def test_on_chip_fraction_counts_the_chip_nodes_on_neuro_cores():
    # Chip nodes 1..4: a dense (node 1) and its neurons (node 2) on neuro cores, a spike matmul on the embedded
    # cores (node 3; its probe's sink does not count), a view with no process (node 4, on chip): 3 / 4.
    matmul = ProcessSpec("mm", "MatMul", {}, "op", 3, "attn.matmul", 0, {"a_in": (4,)}, {"s_out": (4,)})
    sink = ProcessSpec("sink_mm", "MemSink", {}, "sink", 3, "attn.matmul", 0, {"a_in": (4,)}, {})
    pg = graph([dense("d", 4, 4, node=1), lif("s", (4,), node=2), matmul, sink],
               [feed("d", "s"), Connection("s", "s_out", "mm", "a_in"), Connection("mm", "s_out", "sink_mm", "a_in")],
               chip_nodes=[1, 2, 3, 4])
    report = resource_report(pg, {"d": np.full((4, 4), 2, np.int32)})
    assert report["totals"]["on_chip_fraction"] == 0.75
    assert report["embedded_ops"] == [{"node": 3, "kind": "MatMul", "module": "attn.matmul"}]
    assert [h["kind"] for h in report["host_processes"]] == ["MatMul"]
