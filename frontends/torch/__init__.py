"""The PyTorch frontend: load a model safely, then trace it into spikec's IR."""

from spikec.frontends.torch.loading import (LoadedModel, ModelSource, example_input, load_model, parse_shape,
                                            read_checkpoint)
from spikec.frontends.torch.tracer import TraceResult, trace_module

__all__ = ["LoadedModel", "ModelSource", "example_input", "load_model", "parse_shape", "read_checkpoint",
           "TraceResult", "trace_module", "trace_source"]


def trace_source(source: ModelSource, seed: int = 0) -> tuple[LoadedModel, TraceResult]:
    """Load the model ``source`` names and trace it on a deterministic random input of its shape. A ``.nir``
    file is read by the NIR frontend instead (:mod:`spikec.frontends.nir`): it has no PyTorch module."""
    if source.checkpoint and source.checkpoint.endswith(".nir"):
        return _read_nir(source)
    loaded = load_model(source)
    return loaded, trace_module(loaded.module, example_input(loaded, seed), loaded.input_layout, loaded.name,
                                source.merged_neurons_at_batch_1)


def _read_nir(source: ModelSource) -> tuple[LoadedModel, TraceResult]:
    from spikec.errors import InputError
    from spikec.frontends.nir import read_nir

    extra = [flag for flag, given in (("--model", source.model), ("--arch", source.arch),
                                      ("--weights", source.weights), ("--input-shape", source.input_shape),
                                      ("--model-args", source.model_args)) if given]
    if extra:
        raise InputError(f"{source.checkpoint} is a NIR graph: {', '.join(extra)} do not apply to it")
    model = read_nir(source.checkpoint, source.timesteps)
    return LoadedModel(None, model.input_shape, "TB", model.name), TraceResult(model.graph, None)
