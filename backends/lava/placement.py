"""Placement of a process graph on Loihi 2: each neuron group split into core slices, the cores packed onto chips.

The figures a core and a chip hold are :class:`CoreLimits` (their values and sources:
:data:`spikec.backends.lava.resources.LIMITS`). The model:

* A *group* is a neuron group (a neuro-core process that is not a synapse group: LIF, LIFReset, GradedVec,
  ProdNeuron, ...) with every connection into it. Loihi stores a synapse on the core of its target neuron, so a
  synapse group sits on the cores of the neurons it feeds. A synapse group that feeds no neuron group (its sums go
  to a process on the embedded cores) is a group of its own: each of its outputs still takes a compartment of a
  neuro core, counted as a neuron.
* A core holds a slice of a group's neurons (numbered in the row-major order of its input port). On it, summed
  over the connections into the slice:

  ``synapses``        the synapses into its neurons;
  ``weights_stored``  bytes of synapse memory, modelled as one byte per stored weight (an 8-bit mantissa; the
                      weight exponent is one per synapse group, and Loihi's compressed synapse encodings are not
                      modelled). Dense/Sparse: the nonzero weights of the slice's rows. Conv: the kernel rows
                      (``kX * kY * Cin/groups`` weights) of the output channels the slice holds, once per core (the
                      weights are shared across positions: Loihi 2's convolutional weight sharing);
  ``fan_in``          input axons: Dense/Sparse, the nonzero columns of the slice's rows; Conv, the input positions
                      its windows cover times the input channels of its channel groups; one per neuron for a
                      connection straight from a process that is not a synapse group. Two synapse groups reading
                      one source are counted apart (an upper bound).
* Slicing. A group no Conv feeds is cut into runs of neurons. A group a Conv feeds is taken in channel-major
  order (each channel's positions side by side, whatever order the views give its neurons: a core may hold
  any set of neurons) and cut into runs of whole output channels when one channel's positions fit a core, so
  that each core stores only its channels' kernel rows; else into tiles, runs of positions times runs of
  channels (a kernel row is then stored once per core holding its channel). Each run is the longest, from
  where the last one ended, whose neurons and ``weights_stored`` fit a core (the fan-in too, when
  :class:`CoreLimits` bounds it): they only grow with a run, so the runs are the fewest that fit. A unit that
  fits no core alone (one neuron with more weights than a core's memory) is over a limit wherever it goes: its
  run takes the following units that keep within what it needs alone, and the resource report flags its core.
* Chips: the cores in process order, each on the first chip with room for it (cores, neurons and synapses per
  chip); a core that exceeds a chip's neurons or synapses alone takes a new chip, which the report flags.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Union

import numpy as np
import scipy.sparse

from spikec.backends.lava.helpers import layout
from spikec.backends.lava.netlist import NEURO_CORE_KINDS, Connection, ProcessGraph, ProcessSpec

__all__ = ["SYNAPSE_KINDS", "CoreLimits", "Load", "MatrixSynapses", "ConvSynapses", "Feed", "Group", "Core", "Chip",
           "Placement", "is_neuron_group", "synapse_models", "placement_groups", "split_group", "pack_chips",
           "place"]

SYNAPSE_KINDS = frozenset({"Conv", "Dense", "DelayDense", "Sparse", "DelaySparse"})
"""The neuro-core kinds that are synapse groups; the other neuro-core kinds are neuron groups."""


@dataclasses.dataclass(frozen=True)
class CoreLimits:
    neurons: int                 # per core
    weight_bytes: int            # synapse memory per core
    fan_in: int | None           # input axons per core; None: not a constraint
    cores_per_chip: int
    neurons_per_chip: int
    synapses_per_chip: int


@dataclasses.dataclass(frozen=True)
class Load:
    """What a set of connections puts on one core besides its neurons."""

    synapses: int = 0
    weights_stored: int = 0
    fan_in: int = 0

    def __add__(self, other: Load) -> Load:
        return Load(self.synapses + other.synapses, self.weights_stored + other.weights_stored,
                    self.fan_in + other.fan_in)


Rows = Union[slice, np.ndarray]
"""A set of neurons, or of the synapse outputs they read: a contiguous range, or indices."""


def _count(rows: Rows) -> int:
    return rows.stop - rows.start if isinstance(rows, slice) else rows.size


def _present(values: np.ndarray) -> np.ndarray:
    """The distinct values of a non-negative int array, sorted (a count per value: no sort)."""
    return np.flatnonzero(np.bincount(values)) if values.size else values


class MatrixSynapses:
    """A Dense/Sparse synapse group as its CSR matrix (rows: outputs, columns: inputs), explicit zeros dropped (a
    zero weight is no synapse)."""

    def __init__(self, matrix):
        self.matrix = scipy.sparse.csr_matrix(matrix)
        self.matrix.eliminate_zeros()
        self.values = self.matrix.data

    def load(self, rows: Rows) -> Load:
        """Synapses and weights stored: the nonzeros of ``rows``; fan-in: their distinct columns."""
        m = self.matrix
        columns = m.indices[m.indptr[rows.start]:m.indptr[rows.stop]] if isinstance(rows, slice) else m[rows].indices
        return Load(columns.size, columns.size, _present(columns).size)


def _window_coords(out_len: int, kernel: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """Input coordinate ``o * stride - padding + a * dilation`` of kernel tap ``a`` (rows) at output ``o``."""
    return np.arange(out_len)[None, :] * stride - padding + np.arange(kernel)[:, None] * dilation


class ConvSynapses:
    """A Lava Conv: kernel (Cout, kX, kY, Cin/groups), input (X, Y, C), output (X', Y', Cout), output index
    ``(x' * Y' + y') * Cout + c``. Nothing is built per synapse: counts come from the geometry."""

    def __init__(self, kernel: np.ndarray, in_shape, out_shape, args: Mapping):
        self.values = kernel
        cout, kx, ky, self.cin = kernel.shape
        self.in_xy, self.out_shape = tuple(in_shape[:2]), tuple(out_shape)
        self.row = kx * ky * self.cin
        self.channels_per_group = cout // args["groups"]
        self.coords = [_window_coords(self.out_shape[axis], kernel.shape[1 + axis], args["stride"][axis],
                                      args["padding"][axis], args["dilation"][axis]) for axis in (0, 1)]
        self.valid = [(c >= 0) & (c < n) for c, n in zip(self.coords, self.in_xy)]
        self.taps = np.outer(self.valid[0].sum(0), self.valid[1].sum(0)).ravel()  # in-map taps per position

    @property
    def channel_size(self) -> int:
        """Output positions per channel, X' * Y'."""
        return self.out_shape[0] * self.out_shape[1]

    def channel_major(self) -> np.ndarray:
        """The output index of each element of the (Cout, X', Y') order, where a channel's positions are adjacent."""
        return np.arange(math.prod(self.out_shape)).reshape(self.out_shape).transpose(2, 0, 1).ravel()

    def load(self, rows: Rows) -> Load:
        """Synapses: the in-map taps of each output times Cin/groups; weights stored: a kernel row per distinct
        output channel; fan-in: the input positions the windows cover times the input channels of the channel
        groups the slice touches."""
        index = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
        positions, channels = np.divmod(index, self.out_shape[2])
        kept = _present(channels)
        groups = _present(kept // self.channels_per_group).size
        fan_in = self._inputs_read(_present(positions)) * self.cin * groups
        return Load(int(self.taps[positions].sum()) * self.cin, kept.size * self.row, fan_in)

    def _inputs_read(self, positions: np.ndarray) -> int:
        """Distinct input positions (x, y) the windows of output ``positions`` cover inside the map."""
        xo, yo = np.divmod(positions, self.out_shape[1])
        xs, ys = self.coords[0][:, None, xo], self.coords[1][None, :, yo]        # (kX, 1, n), (1, kY, n)
        inside = self.valid[0][:, None, xo] & self.valid[1][None, :, yo]
        return _present((xs * self.in_xy[1] + ys)[inside]).size


SynapseModel = Union[MatrixSynapses, ConvSynapses]


@dataclasses.dataclass(frozen=True, eq=False)
class Feed:
    """One connection into a group: its synapse group (``None`` for a connection straight from a process that is
    not one: one input axon per neuron) and the synapse output each target neuron reads (``None``: its own index)."""

    synapse: str | None
    model: SynapseModel | None
    order: np.ndarray | None

    def load(self, neurons: Rows) -> Load:
        if self.model is None:
            return Load(fan_in=_count(neurons))
        return self.model.load(neurons if self.order is None else self.order[neurons])


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """A group to place. Slices are taken over ``members`` (its neurons in channel-major order when a Conv
    feeds it; None: in their own order); a slice ``rows`` holds the neurons ``members[rows]``."""

    name: str
    neurons: int
    feeds: tuple[Feed, ...]
    channel: int = 1             # positions per output channel of the Conv feeding it, else 1
    members: np.ndarray | None = None

    def neurons_of(self, rows: Rows) -> Rows:
        return rows if self.members is None else self.members[rows]

    def load(self, rows: Rows) -> Load:
        neurons = self.neurons_of(rows)
        return sum((feed.load(neurons) for feed in self.feeds), Load())


@dataclasses.dataclass(frozen=True)
class Core:
    group: str
    chip: int
    neurons: int
    synapses: int
    weights_stored: int
    fan_in: int


@dataclasses.dataclass
class Chip:
    cores: int = 0
    neurons: int = 0
    synapses: int = 0

    def admits(self, neurons: int, synapses: int, limits: CoreLimits) -> bool:
        return (self.cores < limits.cores_per_chip and self.neurons + neurons <= limits.neurons_per_chip
                and self.synapses + synapses <= limits.synapses_per_chip)


@dataclasses.dataclass(frozen=True)
class Placement:
    groups: dict[str, list[int]]     # group -> its core ids, in slice order
    cores: list[Core]
    chips: list[Chip]
    synapses: dict[str, Load]        # synapse group -> what it puts on all its cores together

    def to_json(self) -> dict:
        return {"groups": {name: list(ids) for name, ids in self.groups.items()},
                "cores": [dataclasses.asdict(core) for core in self.cores],
                "chips": [dataclasses.asdict(chip) for chip in self.chips]}


# ------------------------------------------------------------------ from the process graph


def is_neuron_group(spec: ProcessSpec) -> bool:
    return spec.kind in NEURO_CORE_KINDS and spec.kind not in SYNAPSE_KINDS and spec.role != "sink"


def _synapse_model(spec: ProcessSpec, weights: Mapping[str, np.ndarray]) -> SynapseModel:
    """The weights of a synapse process (``weight`` of a Conv, ``weights`` of the others): an IR weight as it is,
    or the layout :func:`.helpers.layout` builds."""
    ref = spec.args["weight" if spec.kind == "Conv" else "weights"]
    values = weights[ref["key"]] if ref["$"] == "weight" else layout(ref, weights)
    if spec.kind == "Conv":
        return ConvSynapses(np.asarray(values), spec.in_ports["s_in"], spec.out_ports["a_out"], spec.args)
    return MatrixSynapses(values)


def synapse_models(pg: ProcessGraph, weights: Mapping[str, np.ndarray]) -> dict[str, SynapseModel]:
    """Synapse process name -> its model, in process order."""
    return {spec.name: _synapse_model(spec, weights) for spec in pg.processes if spec.kind in SYNAPSE_KINDS}


def _target_order(connection: Connection, shape: tuple[int, ...], neurons: int) -> np.ndarray | None:
    """The source output each target neuron reads through the connection's views (``None`` when its own)."""
    order = np.arange(math.prod(shape)).reshape(shape)
    for kind, arg in connection.views:
        order = order.reshape(arg) if kind == "reshape" else order.transpose(arg)
    order = order.ravel()
    if order.size != neurons:
        raise ValueError(f"{connection.src} -> {connection.dst}: {order.size} outputs for {neurons} neurons")
    return None if np.array_equal(order, np.arange(order.size)) else order


def _channel_unit(feeds: tuple[Feed, ...], neurons: int) -> tuple[int, np.ndarray | None]:
    """Positions per channel of the first Conv feeding the group, and the group's neurons in channel-major order
    (each channel's positions side by side, so that runs of whole channels are runs of that order; None when
    the neurons are in that order already); ``(1, None)`` when no Conv feeds each of its channels' positions."""
    conv = next((f for f in feeds if isinstance(f.model, ConvSynapses)), None)
    if conv is None or neurons % conv.model.channel_size:
        return 1, None
    order = np.arange(neurons) if conv.order is None else conv.order
    channels = order % conv.model.out_shape[2]
    if np.any(np.bincount(channels, minlength=neurons // conv.model.channel_size) != conv.model.channel_size):
        return 1, None
    members = np.argsort(channels, kind="stable")
    return conv.model.channel_size, None if np.array_equal(members, np.arange(neurons)) else members


def _neuron_group(spec: ProcessSpec, into: list[Connection], processes: Mapping[str, ProcessSpec],
                  models: Mapping[str, SynapseModel]) -> Group:
    neurons = math.prod(next(iter(spec.out_ports.values())))
    feeds = tuple(Feed(c.src, models[c.src], _target_order(c, processes[c.src].out_ports[c.src_port], neurons))
                  if c.src in models else Feed(None, None, None) for c in into)
    return Group(spec.name, neurons, feeds, *_channel_unit(feeds, neurons))


def _synapse_group(spec: ProcessSpec, model: SynapseModel) -> Group:
    """A synapse group that feeds no neuron group: its outputs as compartments, channels side by side."""
    order = model.channel_major() if isinstance(model, ConvSynapses) else None
    feeds = (Feed(spec.name, model, order),)
    neurons = math.prod(spec.out_ports["a_out"])
    return Group(spec.name, neurons, feeds, *_channel_unit(feeds, neurons))


def placement_groups(pg: ProcessGraph, models: Mapping[str, SynapseModel]) -> list[Group]:
    """The groups to place, in process order: every neuron group with the connections into it, and every synapse
    group that feeds no neuron group."""
    processes = {spec.name: spec for spec in pg.processes}
    into: dict[str, list[Connection]] = {}
    for c in pg.connections:
        into.setdefault(c.dst, []).append(c)
    feeding = {c.src for c in pg.connections if c.src in models and is_neuron_group(processes[c.dst])}
    groups = []
    for spec in pg.processes:
        if is_neuron_group(spec):
            groups.append(_neuron_group(spec, into.get(spec.name, []), processes, models))
        elif spec.name in models and spec.name not in feeding:
            groups.append(_synapse_group(spec, models[spec.name]))
    return groups


# ------------------------------------------------------------------ slicing and packing


def _longest_fit(fits: Callable[[int], bool], limit: int, guess: int) -> int:
    """The largest ``m`` in ``[1, limit]`` with ``fits(m)``, for ``fits`` true up to some length and false beyond;
    0 when even ``fits(1)`` is false. Starts from ``guess`` (the last slice's length), so that equal slices cost
    two checks; gallops up from it, or bisects below it."""
    guess = max(1, min(guess, limit))
    good, bad = (guess, limit + 1) if fits(guess) else (0, guess)
    step = 1
    while bad == limit + 1 and good + step <= limit:
        if not fits(good + step):
            bad = good + step
        else:
            good, step = good + step, 2 * step
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    return good


def _within(load: Load, limits: CoreLimits) -> bool:
    fan_in_fits = limits.fan_in is None or load.fan_in <= limits.fan_in
    return load.weights_stored <= limits.weight_bytes and fan_in_fits


def _relaxed(limits: CoreLimits, load: Load) -> CoreLimits:
    """``limits`` raised to what ``load`` (one unit's, over them) needs."""
    fan_in = None if limits.fan_in is None else max(limits.fan_in, load.fan_in)
    return dataclasses.replace(limits, weight_bytes=max(limits.weight_bytes, load.weights_stored), fan_in=fan_in)


def _runs(load_of: Callable[[int, int], Load], units: int, cap: int,
          limits: CoreLimits) -> tuple[list[tuple[int, int]], bool]:
    """``units`` units cut into runs ``(first, count)`` of at most ``cap`` (the neurons a core holds), each the
    longest from where the last ended whose ``load_of(first, count)`` fits ``limits``; and whether every unit
    fits alone. A unit that does not starts a run within what it needs alone (:func:`_relaxed`)."""
    runs, first, length, every_unit_fits = [], 0, 1, True
    while first < units:
        room = min(units - first, cap)
        length = _longest_fit(lambda count: _within(load_of(first, count), limits), room, length)
        if not length:
            every_unit_fits = False
            relaxed = _relaxed(limits, load_of(first, 1))
            length = _longest_fit(lambda count: _within(load_of(first, count), relaxed), room, 1)
        runs.append((first, length))
        first += length
    return runs, every_unit_fits


def _tiles(group: Group, limits: CoreLimits) -> list[Rows]:
    """Slices of a channel-major group (C channels of P positions) whose channels do not fit a core alone: runs
    of positions, each the longest whose first channel fits a core, times runs of channels, each the longest
    that fits a core with them."""
    positions, channels = group.channel, group.neurons // group.channel

    def tile(c: int, c_count: int, p: int, p_count: int) -> np.ndarray:
        return (np.arange(c, c + c_count)[:, None] * positions + np.arange(p, p + p_count)[None, :]).ravel()

    slices = []
    position_runs, _ = _runs(lambda p, count: group.load(tile(0, 1, p, count)), positions, limits.neurons, limits)
    for p, p_count in position_runs:
        blocks, _ = _runs(lambda c, count: group.load(tile(c, count, p, p_count)), channels,
                          limits.neurons // p_count, limits)
        slices += [tile(c, c_count, p, p_count) for c, c_count in blocks]
    return slices


def _unit_runs(group: Group, unit: int, limits: CoreLimits) -> tuple[list[Rows], bool]:
    """Runs of whole units of ``unit`` neurons (:func:`_runs`), as neuron ranges."""
    def load_of(first: int, count: int) -> Load:
        return group.load(slice(first * unit, (first + count) * unit))

    runs, every_unit_fits = _runs(load_of, group.neurons // unit, limits.neurons // unit, limits)
    return [slice(first * unit, (first + count) * unit) for first, count in runs], every_unit_fits


def split_group(group: Group, limits: CoreLimits) -> list[Rows]:
    """The group's core slices (sets of its neurons): runs of neurons for a group no Conv feeds; runs of whole
    channels when each channel fits a core alone; else tiles of positions and channels (:func:`_tiles`)."""
    if group.channel == 1:
        return _unit_runs(group, 1, limits)[0]
    if group.channel <= limits.neurons:
        slices, every_channel_fits = _unit_runs(group, group.channel, limits)
        if every_channel_fits:
            return slices
    return _tiles(group, limits)


def pack_chips(loads: list[tuple[int, int]], limits: CoreLimits) -> tuple[list[int], list[Chip]]:
    """First fit of cores ``(neurons, synapses)``, in order, onto chips: each core's chip, and the chips."""
    chips: list[Chip] = []
    open_chips: list[int] = []               # chips with a free core, in order
    chip_of = []
    for neurons, synapses in loads:
        index = next((i for i in open_chips if chips[i].admits(neurons, synapses, limits)), None)
        if index is None:
            index = len(chips)
            chips.append(Chip())
            open_chips.append(index)
        chip = chips[index]
        chip.cores, chip.neurons, chip.synapses = chip.cores + 1, chip.neurons + neurons, chip.synapses + synapses
        if chip.cores >= limits.cores_per_chip:
            open_chips.remove(index)
        chip_of.append(index)
    return chip_of, chips


def place(groups: list[Group], limits: CoreLimits) -> Placement:
    """Slice every group onto cores (core ids in group order), then pack the cores onto chips."""
    slices, assignment, per_synapse = [], {}, {}
    for group in groups:
        ids = []
        for rows in split_group(group, limits):
            neurons = group.neurons_of(rows)
            loads = [(feed.synapse, feed.load(neurons)) for feed in group.feeds]
            for name, load in loads:
                if name is not None:
                    per_synapse[name] = per_synapse.get(name, Load()) + load
            ids.append(len(slices))
            slices.append((group.name, _count(neurons), sum((load for _, load in loads), Load())))
        assignment[group.name] = ids
    chip_of, chips = pack_chips([(neurons, load.synapses) for _, neurons, load in slices], limits)
    cores = [Core(name, chip, neurons, load.synapses, load.weights_stored, load.fan_in)
             for (name, neurons, load), chip in zip(slices, chip_of)]
    return Placement(assignment, cores, chips, per_synapse)
