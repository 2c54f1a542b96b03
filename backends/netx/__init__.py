"""lava-dl netx: the integer graph of a feed-forward spiking model as the HDF5 file ``netx.hdf5.Network`` reads,
bit-exact with intsim on Lava (:mod:`.export`)."""

from spikec.backends.netx.export import NETX_OPS, NetxFile, export_netx, netx_dense_scaling

__all__ = ["export_netx", "netx_dense_scaling", "NetxFile", "NETX_OPS"]
