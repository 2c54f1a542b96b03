"""The package builds without a warning from its build backend, and the wheel holds what spikec reads at
run time (the report schema) and its entry points."""

from __future__ import annotations

import pytest
import os
import shutil
import subprocess
import sys
import zipfile

pytestmark = pytest.mark.core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_wheel_builds_quietly_and_holds_the_schema(tmp_path):
    source = tmp_path / "src"      # a copy, so the build leaves nothing in the working tree
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    for package in ("spikec", "frontends", "passes", "backends"):
        shutil.copytree(os.path.join(ROOT, package), source / package, ignore=ignore)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(source)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # pip's own notices about this machine's package index configuration are not the package's
    warnings = [line for line in (result.stdout + result.stderr).splitlines()
                if "warning" in line.lower() and not line.startswith("WARNING: Location ")]
    assert warnings == []
    (wheel,) = [name for name in os.listdir(tmp_path) if name.endswith(".whl")]
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    assert "spikec/schemas/verify-report.schema.json" in names
    assert "spikec/__main__.py" in names
