"""spikec's own fixed_pt Lava processes, for the integer ops Lava has no process for.

Lava's compiler imports every ``.py`` file of a process's directory when it looks for models, so this
package holds nothing but process and model definitions, with no import side effects: ``process.py``
(the processes) and ``models.py`` (their ``PyLoihiProcessModel``s, tagged ``fixed_pt``).
"""
