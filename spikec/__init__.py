"""spikec: a deployment compiler for trained PyTorch spiking transformers (see README.md)."""

__version__ = "0.1.0"

__all__ = ["__version__", "verify", "compile", "simulate", "report", "Calibrate", "Engine", "open_data",
           "export_program"]


def __getattr__(name: str):
    """Load the API on first use, so that ``import spikec`` stays light (no torch)."""
    if name in ("verify", "compile", "simulate", "report", "Calibrate"):
        from spikec import api

        return getattr(api, name)
    if name == "Engine":
        from spikec.engines import Engine

        return Engine
    if name == "open_data":
        from spikec.datasets import open_data

        return open_data
    if name == "export_program":
        from spikec.frontends.torch.exported import export_program

        return export_program
    raise AttributeError(f"module 'spikec' has no attribute {name!r}")
