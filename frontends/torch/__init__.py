"""The PyTorch frontend: load a model safely, then trace it into spikec's IR."""

from spikec.frontends.torch.loading import (LoadedModel, ModelSource, example_input, load_model, parse_shape,
                                            read_checkpoint)
from spikec.frontends.torch.tracer import TraceResult, trace_module

__all__ = ["LoadedModel", "ModelSource", "example_input", "load_model", "parse_shape", "read_checkpoint",
           "TraceResult", "trace_module", "trace_source"]


def trace_source(source: ModelSource, seed: int = 0) -> tuple[LoadedModel, TraceResult]:
    """Load the model ``source`` names and trace it on a deterministic random input of its shape."""
    loaded = load_model(source)
    return loaded, trace_module(loaded.module, example_input(loaded, seed), loaded.input_layout, loaded.name)
