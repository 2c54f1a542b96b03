"""ONNX: the compiled integer graph exported for onnxruntime, bit-exact with intsim (:mod:`.export`)."""

from spikec.backends.onnx.export import export_onnx

__all__ = ["export_onnx"]
