"""The compile pipeline: trace, fold, quantize, prove ranges; and the compiled artifact on disk (docs/design.md, §7).

``compile_graph`` runs the passes on a traced float graph into a :class:`CompiledModel`;
:meth:`Artifact.write` (an artifact is what the directory holds, in memory) writes the artifact
directory atomically (a temporary directory beside it, renamed into place only when complete) and
byte-identically for identical inputs (sorted JSON, fixed zip timestamps); ``load_artifact`` reads it back,
checking every file, and says clearly what is missing or corrupt.

Artifact (``--target intsim``)::

    manifest.json   format, version, model, input shape/layout, time steps, target, versions, the IR as
                    JSON, quantization scales per layer and neuron, value ranges of every layer, and the
                    sha256 of every other file (checked on loading: a tampered artifact is refused)
    model.ir        the integer graph in the IR's text form (weights by handle)
    weights.npz     the integer weights, one array per handle

``--target loihi2`` adds (``spikec.backends.lava.artifact``): the Lava process graph, delays, reset offsets,
probes and the resource report in ``manifest.json`` under ``lava``; the neuron groups' biases in
``weights.npz`` (``lava.*``); and ``lava_net.py``, the module holding the network's processes.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from importlib import metadata

import numpy as np

from spikec import __version__
from spikec.errors import InputError, IRError, UnsupportedError
from spikec.files import current_umask
from spikec.registry import TARGETS, target as registered_target
from spikec.ir import Graph, dumps, parse_graph, print_graph, weight_table
from spikec.ir.ops import OpCategory, op_traits
from spikec.passes.base import Skip
from spikec.passes.manager import Callback, standard_pipeline
from spikec.passes.quantize import QuantizationReport, Quantize, QuantizeOptions
from spikec.passes.range_analysis import RangeReport

__all__ = ["Artifact", "CompiledModel", "compile_graph", "load_artifact", "read_manifest", "check_output_dir",
           "ARTIFACT_VERSION", "ARTIFACT_FILES"]

ARTIFACT_VERSION = 3
_FILES = ("manifest.json", "model.ir", "weights.npz")
_DIGESTED = ("model.ir", "weights.npz")      # and every target file; manifest.json records their sha256
ARTIFACT_FILES = (*_FILES, *(f for t in TARGETS.values() for f in t.files))   # what an artifact of any target holds


@dataclasses.dataclass
class CompiledModel:
    name: str
    target: str
    input_shape: tuple[int, ...]
    input_layout: str
    graph: Graph                         # the integer graph
    quantization: QuantizationReport | None = None
    ranges: RangeReport | None = None
    float_graph: Graph | None = None     # the folded float graph it was quantized from (not saved)
    skipped: list[Skip] = dataclasses.field(default_factory=list)
    lowered: object | None = None        # the target's part of the artifact (loihi2: a LavaArtifact)

    @property
    def timesteps(self) -> int:
        return max(v.type.time for v in self.graph.values())

    @property
    def output_scales(self) -> list[float]:
        return list(self.quantization.output_scales)

    def process_graph(self):
        """The target's process graph (loihi2: what ``lava_net.py`` builds), or None for a target without one."""
        return getattr(self.lowered, "process_graph", None)

    def to_artifact(self) -> "Artifact":
        """The files this compile result writes, in memory."""
        arrays = weight_table(self.graph)
        files: dict[str, str] = {}
        if self.lowered is not None:
            arrays.update(self.lowered.arrays)
            files.update(self.lowered.files)
        return Artifact(self.manifest_dict(), self.graph, arrays, files)

    def write(self, out_dir: str, force: bool = False) -> None:
        """Write the artifact (:meth:`Artifact.write`)."""
        self.to_artifact().write(out_dir, force)

    def manifest_dict(self) -> dict:
        q = self.quantization
        layer_ranges = []
        for node in self.graph.nodes:
            interval = self.ranges.get(node.output) if node.outputs else None
            if interval is not None:
                row = {"op": node.op, "module": node.module, "lo": interval.lo, "hi": interval.hi}
                if self.ranges.accumulation_of(node) is not None:
                    row["accumulation"] = self.ranges.accumulation_of(node)
                layer_ranges.append(row)
        return {
            "format": "spikec.artifact", "version": ARTIFACT_VERSION, "target": self.target, "model": self.name,
            "input_shape": list(self.input_shape), "input_layout": self.input_layout, "timesteps": self.timesteps,
            "versions": package_versions(),
            "files": {"ir": "model.ir", "weights": "weights.npz"},
            "quantization": {
                "input_exp": q.input_exp, "input_range": list(q.input_range), "output_scales": q.output_scales,
                "iterations": q.iterations, "calibration": q.calibration,
                "layers": [dataclasses.asdict(layer) for layer in q.layers],
                "neurons": [dataclasses.asdict(n) for n in q.neurons],
            },
            "ranges": layer_ranges,
            "graph": json.loads(dumps(self.graph)),
            **(self.lowered.manifest() if self.lowered is not None else {}),
        }

@dataclasses.dataclass
class Artifact:
    """A compiled model as its directory holds it: the manifest, the integer graph (``model.ir``), every
    array of ``weights.npz`` and the target's extra text files (``lava_net.py`` for loihi2). A fresh compile
    becomes one (:meth:`CompiledModel.to_artifact`), :func:`load_artifact` reads one back, and writing a
    loaded artifact gives the same bytes again."""

    manifest: dict
    graph: Graph
    arrays: dict[str, np.ndarray]
    files: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.manifest["model"]

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["input_shape"])

    @property
    def input_layout(self) -> str:
        return self.manifest["input_layout"]

    @property
    def timesteps(self) -> int:
        return int(self.manifest["timesteps"])

    @property
    def output_scales(self) -> list[float]:
        return list(self.manifest["quantization"]["output_scales"])

    def process_graph(self):
        """The process graph the manifest records (loihi2), as ``lava_net.py`` builds it; None without one."""
        if "lava" not in self.manifest:
            return None
        from spikec.backends.lava.artifact import process_graph_from_manifest

        try:
            return process_graph_from_manifest(self.name, self.manifest["lava"], self.arrays)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # The manifest is the one file the digests do not cover: a hand-edited 'lava' section is bad input.
            raise InputError(f"manifest.json: its 'lava' section is damaged ({type(exc).__name__}: {exc}); "
                             "compile the model again") from None

    def write(self, out_dir: str, force: bool = False) -> None:
        """Write the artifact atomically: nothing appears at ``out_dir`` unless every file was written.

        An existing ``out_dir`` is replaced only when it is empty or holds a spikec artifact and nothing
        else (:func:`check_output_dir`), or with ``force``. The directory gets the user's umask, like any
        other file the user creates."""
        out_dir = os.path.abspath(out_dir)
        check_output_dir(out_dir, force)
        parent = os.path.dirname(out_dir)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {parent}: {exc.strerror}") from None
        _remove_stale_staging(parent)
        try:
            staging = tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-", dir=parent)
        except OSError as exc:
            raise InputError(f"cannot write into {parent}: {exc.strerror}") from None
        try:
            os.chmod(staging, 0o777 & ~current_umask())
            with open(os.path.join(staging, "model.ir"), "w") as f:
                f.write(print_graph(self.graph))
            for file_name, text in self.files.items():
                with open(os.path.join(staging, file_name), "w") as f:
                    f.write(text)
            _write_npz(os.path.join(staging, "weights.npz"), self.arrays)
            digests = {name: _sha256(os.path.join(staging, name)) for name in (*_DIGESTED, *sorted(self.files))}
            with open(os.path.join(staging, "manifest.json"), "w") as f:
                json.dump({**self.manifest, "digests": digests}, f, indent=1, sort_keys=True)
                f.write("\n")
            _move_into_place(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


_STAGING = ".spikec-"      # + the writing process's pid: what a killed writer leaves is recognisable


def _move_into_place(staging: str, out_dir: str) -> None:
    """Rename the finished ``staging`` directory to ``out_dir``, moving an existing one aside first. Another
    process may be writing the same ``out_dir`` at once: whoever renames last wins, and no attempt fails on
    the other's half-done move."""
    parent = os.path.dirname(out_dir)
    for _ in range(8):
        try:
            os.replace(staging, out_dir)         # out_dir absent, or an empty directory
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise InputError(f"cannot write {out_dir}: {exc.strerror}") from None
        previous = tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-old-", dir=parent)
        os.rmdir(previous)
        try:
            os.replace(out_dir, previous)
        except FileNotFoundError:                # another writer moved it first
            continue
        shutil.rmtree(previous, ignore_errors=True)
    raise InputError(f"{out_dir} is being written by other processes at the same time; try again")


def _remove_stale_staging(parent: str) -> None:
    """Remove the staging directories of writers that were killed (SIGKILL leaves no chance to clean up)."""
    for name in os.listdir(parent):
        pid = name[len(_STAGING):].split("-", 1)[0]
        if not name.startswith(_STAGING) or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holds_artifact(path: str) -> bool:
    try:
        with open(os.path.join(path, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == "spikec.artifact"


def check_output_dir(out_dir: str, force: bool = False) -> None:
    """Refuse an output directory whose replacement would destroy the user's files.

    Writing an artifact replaces ``out_dir`` whole. That is safe when it does not exist, is empty, or holds
    a spikec artifact (its manifest says so) and no other file; anything else needs ``force``. The working
    directory (or a folder above it) is never replaced."""
    out_dir = os.path.abspath(out_dir)
    if not os.path.lexists(out_dir):
        return
    if os.path.islink(out_dir):
        raise InputError(f"{out_dir} is a symbolic link; name the directory itself (or a new one)")
    if not os.path.isdir(out_dir):
        raise InputError(f"{out_dir} exists and is not a directory; choose another output directory")
    cwd = os.getcwd()
    if os.path.commonpath([cwd, out_dir]) == out_dir:
        raise InputError(f"{out_dir} is the working directory or holds it; write the artifact to a new "
                         "directory, e.g. -o out/model")
    entries = sorted(os.listdir(out_dir))
    if force or not entries:
        return
    if not _holds_artifact(out_dir):
        shown = ", ".join(entries[:3]) + (f" (+{len(entries) - 3} more)" if len(entries) > 3 else "")
        raise InputError(f"{out_dir} already exists and is not a spikec artifact (it holds {shown}); writing "
                         "would delete it: choose another output directory, or pass --force to replace it")
    extra = [e for e in entries if e not in ARTIFACT_FILES]
    if extra:
        raise InputError(f"{out_dir} holds a spikec artifact and also {', '.join(extra[:3])}"
                         f"{' ...' if len(extra) > 3 else ''}, which writing would delete: move them, or pass "
                         "--force to replace the directory")


def package_versions() -> dict:
    """The versions of spikec and the packages its results depend on, for provenance (None: not installed)."""
    versions = {"spikec": __version__}
    for package in ("torch", "numpy", "lava-nc"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with fixed timestamps and order, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def compile_graph(graph: Graph, name: str, input_shape, input_layout: str, target: str = "intsim",
                  options: QuantizeOptions = QuantizeOptions(), callback: Callback | None = None,
                  attention: str = "auto") -> CompiledModel:
    """Fold, quantize and range-check a traced float graph (which is changed in place by the folds) with the
    compile pipeline (:func:`spikec.passes.manager.standard_pipeline`); ``callback(pass, result)`` runs after
    every pass run. ``attention`` says where loihi2 runs spike matmuls (``auto``, ``on-chip``, ``embedded``)."""
    lower = registered_target(target).lower
    if lower is None and attention != "auto":
        raise InputError(f"attention={attention!r} applies to --target loihi2 only, not {target}")
    if not any(op_traits(node.op).category is OpCategory.NEURON for node in graph.nodes):
        raise UnsupportedError(f"{name} has no spiking neuron (LIF or IF): spikec compiles spiking networks, and "
                               "this model would run on no neuron of the chip")
    run = standard_pipeline(options).run(graph, callback)
    quantized = run.last(Quantize.name)
    integer, report, ranges = quantized.graph, quantized.report, quantized.ranges
    compiled = CompiledModel(name, target, tuple(input_shape), input_layout, integer, report, ranges, graph,
                             list(run.skipped))
    if lower is not None:
        compiled.lowered = lower(integer, name, ranges, attention)
    return compiled


def read_manifest(path: str) -> dict:
    """The manifest of the artifact directory ``path``, once its files are known to be there."""
    if not os.path.isdir(path):
        raise InputError(f"{path}: no such artifact directory (run `spikec compile ... -o {path}` first)")
    missing = [f for f in _FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise InputError(f"{path} is not a complete spikec artifact: missing {', '.join(missing)}")
    try:
        with open(os.path.join(path, "manifest.json")) as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}/manifest.json is corrupt: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "spikec.artifact":
        raise InputError(f"{path}/manifest.json is not a spikec artifact manifest")
    if manifest.get("version") != ARTIFACT_VERSION:
        raise InputError(f"{path} is a spikec artifact of version {manifest.get('version')!r}; this spikec reads "
                         f"version {ARTIFACT_VERSION}: compile the model again")
    _check_manifest(manifest, f"{path}/manifest.json")
    return manifest


def _check_manifest(manifest: dict, where: str) -> None:
    """The entries spikec reads from a manifest, with their types: a damaged or hand-edited one is refused
    with the entry named, never half-read."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise InputError(f"{where}: {what}")

    need(isinstance(manifest.get("model"), str), "'model' must be the model's name")
    need(isinstance(manifest.get("target"), str) and manifest["target"] in TARGETS,
         f"'target' must be one of {', '.join(TARGETS)}")
    need(isinstance(manifest.get("input_layout"), str) and manifest["input_layout"] in ("B", "TB"),
         "'input_layout' must be B or TB")
    shape = manifest.get("input_shape")
    need(isinstance(shape, list) and bool(shape) and all(_positive_int(d) for d in shape),
         "'input_shape' must be a list of positive integers")
    need(_positive_int(manifest.get("timesteps")), "'timesteps' must be a positive integer")
    scales = manifest.get("quantization", {}).get("output_scales") if isinstance(manifest.get("quantization"),
                                                                                   dict) else None
    need(isinstance(scales, list) and bool(scales) and all(_positive_number(v) for v in scales),
         "'quantization.output_scales' must be a list of positive numbers")
    digests = manifest.get("digests")
    need(isinstance(digests, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in digests.items())
         and set(_DIGESTED) <= set(digests), f"'digests' must give the sha256 of {', '.join(_DIGESTED)}")
    need(manifest["target"] != "loihi2" or isinstance(manifest.get("lava"), dict),
         "a loihi2 artifact needs its 'lava' section")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_digests(path: str, manifest: dict) -> None:
    """Every file the manifest vouches for has the bytes it was written with: a tampered or damaged
    model.ir, weights.npz or lava_net.py is refused before it is used."""
    for name, expected in sorted(manifest["digests"].items()):
        file = os.path.join(path, name)
        if name not in ARTIFACT_FILES or not os.path.isfile(file):
            raise InputError(f"{path}: the manifest vouches for {name!r}, which the artifact does not hold")
        if _sha256(file) != expected:
            raise InputError(f"{path}/{name} was changed after spikec wrote it (its sha256 differs from the "
                             "manifest's); compile the model again")


def load_artifact(path: str) -> Artifact:
    """Read a compiled directory back; every problem is one :class:`InputError` line."""
    manifest = read_manifest(path)
    _check_digests(path, manifest)
    try:
        with np.load(os.path.join(path, "weights.npz"), allow_pickle=False) as archive:
            weights = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}/weights.npz is corrupt: {exc}") from None
    text = _read_text(path, "model.ir")
    try:
        graph = parse_graph(text, weights=weights)
    except IRError as exc:
        raise InputError(f"{path}/model.ir does not match weights.npz or is corrupt: {exc}") from None
    files = {name: _read_text(path, name) for name in ARTIFACT_FILES
             if name not in _FILES and os.path.isfile(os.path.join(path, name))}
    return Artifact(manifest, graph, weights, files)


def _read_text(path: str, name: str) -> str:
    """An artifact's text file, which spikec writes as UTF-8."""
    try:
        with open(os.path.join(path, name), encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}/{name} is not UTF-8 text (byte {exc.start}): the artifact is corrupt") from None
