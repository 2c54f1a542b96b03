"""ONNX: the compiled integer graph exported for onnxruntime, bit-exact with intsim (:mod:`.export`)."""

from spikec.backends.onnx.export import embed_artifact, export_onnx, load_embedded_artifact, require_onnx

__all__ = ["export_onnx", "embed_artifact", "load_embedded_artifact", "require_onnx"]
