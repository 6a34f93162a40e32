"""Tests of the tinysnn.energy package as a whole: its modules import alone, without torch."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import tinysnn.energy


def test_public_names_resolve() -> None:
    assert all(hasattr(tinysnn.energy, name) for name in tinysnn.energy.__all__)


def test_every_module_imports_alone_without_torch() -> None:
    modules = sorted(f"tinysnn.energy.{m.name}" for m in pkgutil.iter_modules(tinysnn.energy.__path__))
    assert {"tinysnn.energy.meters", "tinysnn.energy.opcount", "tinysnn.energy.costs"} <= set(modules)
    for module in modules:  # a fresh interpreter per module: an import cycle fails whichever comes first
        code = f"import sys, {module}; assert 'torch' not in sys.modules, 'imports torch'"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, f"{module}: {done.stderr}"
