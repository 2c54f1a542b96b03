"""NIR -> IR: a ``.nir`` file read as a spikec graph (:mod:`.reader`)."""

from spikec.frontends.nir.reader import NirModel, read_nir

__all__ = ["NirModel", "read_nir"]
