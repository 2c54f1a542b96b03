"""The Lava backend: lower a quantized graph to Lava processes, balance its delays, run it on Lava's fixed_pt
models bit-exactly with intsim, and emit a standalone ``lava_net.py`` (``docs/design.md`` §6-7, ``docs/lava.md``).

Importing this package does not import Lava; :mod:`.runtime` and :mod:`.build` do, when they run.
"""

from spikec.backends.lava.lowering import lower
from spikec.backends.lava.netlist import ProcessGraph

__all__ = ["lower", "ProcessGraph"]
