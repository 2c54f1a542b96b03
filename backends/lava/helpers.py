"""Weight layouts the process graph derives from the IR's weights when a network is built.

``lava_net.py`` imports these functions, so a generated module and the runtime builder build every process from
the same arrays in the same way.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

__all__ = ["conv_weight", "token_dense", "identity", "uniform_delays"]


def conv_weight(weight):
    """A PyTorch conv2d weight (Cout, Cin/groups, kH, kW) as Lava's Conv weight (Cout, X, Y, Cin/groups):
    Lava convolves (the kernel flipped) where PyTorch correlates, and X is the width."""
    return np.ascontiguousarray(np.asarray(weight)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def token_dense(weight, pre, post):
    """The synapses of a token-wise linear layer: the same (out, in) weights for every position, as the sparse
    block matrix kron(I_pre, kron(W, I_post)) from the row-major flattened input to the flattened output."""
    blocks = scipy.sparse.kron(scipy.sparse.csr_matrix(np.asarray(weight, dtype=np.int32)),
                               scipy.sparse.identity(post, dtype=np.int32), format="csr")
    return scipy.sparse.kron(scipy.sparse.identity(pre, dtype=np.int32), blocks, format="csr").astype(np.int32)


def identity(size):
    """One-to-one synapses of weight 1 (a relay's)."""
    return scipy.sparse.identity(size, dtype=np.int32, format="csr")


def uniform_delays(weights, delay):
    """The delay matrix of a DelaySparse whose synapses all wait ``delay`` steps: the weights' sparsity, so
    that Lava stores one delay per synapse rather than one per (row, column) pair."""
    delays = scipy.sparse.csr_matrix(weights, copy=True).astype(np.int64)
    delays.data[:] = delay
    return delays
