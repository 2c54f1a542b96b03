"""The import layering of the pipeline: the IR imports no pass, backend or frontend; passes import no backend
but the numerics spec; frontends import no backend. Checked on the source, so a lazy import inside a function
counts too."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# folder in the repository -> spikec packages its modules must not import
FORBIDDEN = {
    "spikec/ir": ("spikec.passes", "spikec.backends", "spikec.frontends"),
    "passes": ("spikec.backends",),
    "frontends": ("spikec.backends", "spikec.passes"),
}

# folder -> modules it may import although FORBIDDEN covers them. The passes quantize and prove ranges against
# Lava's integer rules, so they import the numerics spec: Lava's fixed-point constants and pure integer helpers,
# with no simulator behind them (test_the_numerics_spec_imports_only_numpy_and_math keeps it that way).
ALLOWED = {"passes": ("spikec.backends.intsim.fixed_point",)}
NUMERICS_SPEC = "backends/intsim/fixed_point.py"


def _imports(path: str) -> list[tuple[int, str]]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _modules(folder: str):
    for directory, _, files in os.walk(os.path.join(ROOT, folder)):
        yield from (os.path.join(directory, f) for f in sorted(files) if f.endswith(".py"))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layers_import_only_what_comes_before_them(folder):
    broken = [f"{os.path.relpath(path, ROOT)}:{line} imports {name}"
              for path in _modules(folder) for line, name in _imports(path)
              if name.startswith(FORBIDDEN[folder]) and name not in ALLOWED.get(folder, ())]
    assert broken == []


def test_the_numerics_spec_imports_only_numpy_and_math():
    """What makes the passes' exception sound: the spec imports numpy, math and the language's own ``__future__``
    and ``enum`` (for ``SignMode``), nothing relative and nothing dynamically; importing it, through its packages,
    loads no other spikec backend module, no torch and no Lava."""
    path = os.path.join(ROOT, NUMERICS_SPEC)
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add("." * node.level + (node.module or "").split(".")[0])
    assert roots <= {"__future__", "enum", "math", "numpy"}
    assert not [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in ("__import__", "importlib")]
    probe = ("import sys, spikec.backends.intsim.fixed_point; "
             "print(*sorted(m for m in sys.modules if m.startswith(('spikec.backends', 'torch', 'lava'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.split() == ["spikec.backends", "spikec.backends.intsim", "spikec.backends.intsim.fixed_point"]


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from spikec.backends.intsim import run_intsim\n")
    assert _imports(str(module)) == [(2, "spikec.backends.intsim")]
