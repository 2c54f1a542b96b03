"""NIR: the float graph exported as NIR primitives (:mod:`.export`)."""

from spikec.backends.nir.export import export_nir

__all__ = ["export_nir"]
