"""spikec: a deployment compiler for trained PyTorch spiking transformers (see README.md)."""

__version__ = "0.1.0"
