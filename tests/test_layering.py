"""The import layering of the pipeline: the IR imports no pass, backend or frontend; passes import no backend;
frontends import no backend. Checked on the source, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# folder in the repository -> spikec packages its modules must not import
FORBIDDEN = {
    "spikec/ir": ("spikec.passes", "spikec.backends", "spikec.frontends"),
    "passes": ("spikec.backends",),
    "frontends": ("spikec.backends", "spikec.passes"),
}


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
              if name.startswith(FORBIDDEN[folder])]
    assert broken == []


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from spikec.backends.intsim import run_intsim\n")
    assert _imports(str(module)) == [(2, "spikec.backends.intsim")]
