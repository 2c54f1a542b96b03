"""What every ``spikec`` command shares: error handling with exit codes, and the model options.

Exit codes (docs/design.md, §8): 0 success, 1 checks found problems, 2 bad input or usage, 3 internal error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import traceback

import click

from spikec.errors import InputError, SpikecError

__all__ = ["EXIT_INTERNAL", "SpikecGroup", "handle_errors", "model_options", "model_source", "parse_model_args",
           "engine_options", "ProgressBar"]

EXIT_INTERNAL = 3


def _fail(message: str, code: int) -> None:
    click.echo(f"spikec: error: {message}", err=True)
    sys.exit(code)


class SpikecGroup(click.Group):
    """The command group: a usage error (an unknown option, a value out of range) is one line and exit 2,
    like every other bad input, instead of click's usage block."""

    def main(self, *args, **kwargs):
        kwargs.update(standalone_mode=False, prog_name="spikec")
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as exc:
            command = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            _fail(f"{command}{exc.format_message()} (see --help)", 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.exceptions.Abort:
            _fail("interrupted", 130)


def handle_errors(command):
    """Map spikec's exceptions to exit codes with one clear message; tracebacks only with --debug.

    ``--debug`` is accepted before the subcommand (``spikec --debug compile ...``) and after it
    (``spikec compile ... --debug``), since error messages tell the user to rerun with it."""

    @functools.wraps(command)
    def wrapper(*args, debug_traceback: bool = False, **kwargs):
        debug = debug_traceback or click.get_current_context().find_root().params.get("debug", False)
        try:
            with _terminate_cleanly():
                return command(*args, **kwargs)
        except Terminated as exc:
            _fail(f"stopped by {signal.Signals(exc.signum).name}; nothing was left half-written", 128 + exc.signum)
        except SpikecError as exc:
            if debug:
                traceback.print_exc()
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:     # the reader went away (`spikec zoo | head -1`), as for any shell tool
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
        except Exception as exc:  # a bug in spikec, not in the user's input
            if debug:
                traceback.print_exc()
            _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                  EXIT_INTERNAL)

    return click.option("--debug", "debug_traceback", is_flag=True, help="Show Python tracebacks for errors.")(wrapper)


def _refuse_constant(name: str):
    raise InputError(f"--model-args holds {name}; options must be finite numbers")


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C, so every ``finally`` removes what it made (staging
    directories, Lava's shared memory and child processes) instead of the process vanishing mid-write."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _terminate_cleanly():
    def stop(signum, frame):
        raise Terminated(signum)

    if threading.current_thread() is not threading.main_thread():   # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_model_args(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"--model-args is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise InputError("--model-args is nested too deeply") from None
    if not isinstance(value, dict):
        raise InputError("--model-args must be a JSON object, e.g. '{\"depth\": 2}'")
    return value


def model_options(command):
    """The options every command that reads a model shares; the command receives them as one
    :class:`~spikec.frontends.torch.ModelSource` in its ``source`` parameter."""
    options = [
        click.argument("checkpoint", required=False, metavar="[MODEL]"),
        click.option("--model", "model_ref", metavar="FILE.py:NAME|module:NAME",
                     help="Build the model from your own code (NAME is a class or factory)."),
        click.option("--arch", metavar="NAME", help="Build a zoo architecture (see `spikec zoo`); without --weights "
                                                    "its weights are random, the same in every run."),
        click.option("--model-args", metavar="JSON", help="Keyword arguments for --model or config for --arch."),
        click.option("--weights", metavar="FILE", type=click.Path(),
                     help="State dict for --model/--arch (raw, or under 'state_dict'/'model' as timm saves)."),
        click.option("--allow-pickle", is_flag=True,
                     help="Allow a checkpoint or .pt2 program that pickles Python objects, or TorchScript "
                          "--weights (runs code from the file!)."),
        click.option("--input-shape", metavar="B,...", help="Shape the model's forward takes, e.g. 1,3,32,32."),
        click.option("--timesteps", "-T", type=click.IntRange(min=1),
                     help="Time steps T of a zoo model, or how many steps a NIR graph (MODEL.nir) runs."),
        click.option("--input-layout", type=click.Choice(["B", "TB"]), default="B", show_default=True,
                     help="B: forward takes [B, ...] and encodes over time itself; TB: it takes [T, B, ...]."),
        click.option("--merged-neurons-at-batch-1", is_flag=True,
                     help="Trace a neuron called on time and batch merged ([T*B, ...], QKFormer's stage 3) as one "
                          "over T steps: what the model computes at batch 1. Needs --input-shape of batch 1."),
    ]

    @functools.wraps(command)
    def with_source(*args, **kwargs):
        given = {name: kwargs.pop(name) for name in _MODEL_PARAMS}
        return command(*args, source=model_source(**given), **kwargs)

    for option in reversed(options):
        with_source = option(with_source)
    return with_source


_MODEL_PARAMS = ("checkpoint", "model_ref", "arch", "model_args", "weights", "allow_pickle", "input_shape",
                 "timesteps", "input_layout", "merged_neurons_at_batch_1")


def model_source(**given):
    """The :class:`~spikec.frontends.torch.ModelSource` the model options (:data:`_MODEL_PARAMS`) name."""
    from spikec.frontends.torch import ModelSource, parse_shape

    shape, checkpoint = given["input_shape"], given["checkpoint"]
    # a NIR graph runs one step at a time: its input is always time-major
    layout = "TB" if checkpoint and checkpoint.endswith(".nir") else given["input_layout"]
    return ModelSource(checkpoint=checkpoint, model=given["model_ref"], arch=given["arch"],
                       model_args=parse_model_args(given["model_args"]), weights=given["weights"],
                       allow_pickle=given["allow_pickle"], input_shape=parse_shape(shape) if shape else None,
                       timesteps=given["timesteps"], input_layout=layout,
                       merged_neurons_at_batch_1=given["merged_neurons_at_batch_1"])


def engine_options(command):
    """Where the samples run (docs/scale-out.md): the command receives one :class:`~spikec.engines.Engine` in its
    ``engine`` parameter."""
    from spikec.engines import ENGINES, Engine

    options = [
        click.option("--engine", "engine_kind", type=click.Choice(ENGINES), default="local", show_default=True,
                     help="local: worker processes on this machine (with --workers 1, this process); ray: the "
                          "actors of a Ray cluster (pip install 'spikec[distributed]')."),
        click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Worker processes or Ray actors; each runs shards of whole batches, so the results are "
                          "the same for any number."),
        click.option("--address", metavar="ADDR",
                     help="ray: the cluster to join (HOST:PORT of `ray start --head`, or auto). Default: a local "
                          "Ray instance, started for the run and shut down after it."),
        click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Run a shard again, up to K times, when its worker raised or died."),
    ]

    @functools.wraps(command)
    def with_engine(*args, engine_kind, workers, address, retries, **kwargs):
        engine = Engine(engine_kind, workers, address, retries)
        engine.require()
        return command(*args, engine=engine, **kwargs)

    for option in reversed(options):
        with_engine = option(with_engine)
    return with_engine


class ProgressBar:
    """A progress bar on stderr, shown from the first ``bar(done, total)`` a run reports (the total is known
    only once the data is open) and closed with the ``with`` block."""

    def __init__(self, label: str):
        self.label, self.bar, self.done = label, None, 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
