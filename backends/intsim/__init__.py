"""intsim: spikec's integer simulator, the executable spec of the integer semantics (docs/design.md, §5).

intsim runs a quantized graph in synchronous time (at step ``t`` every op sees step ``t`` of its inputs, as the
PyTorch model does) with exactly the fixed-point arithmetic of Lava's bit-accurate ``fixed_pt`` models. Lava's
pipelined timing (one step per Dense/Conv hop) is the Lava backend's business; with delays balanced, its spike
trains equal intsim's shifted by each layer's depth.

:mod:`.fixed_point` holds Lava's rounding, shift, wrap and saturation rules as named helpers, and its integer
constants; :mod:`.kernels` builds the per-step LIF, Dense and Conv kernels from them, over a batch of samples. Both
are proven bit-identical to Lava by ``tests/backends/test_intsim_lava_oracle.py``. :mod:`.rules` holds the integer
rules of the ops Lava has no process for, which spikec's own Lava processes call too. :mod:`.interpreter` runs a
graph with them; :mod:`.proven` holds the same rules on torch tensors, relying on the compile's range analysis, which
the interpreter runs when the analysis proves what they need.
"""
