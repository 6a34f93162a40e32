"""The core's public face: ``tinysnn.__all__`` resolves, and importing the package imports no torch."""

from __future__ import annotations

import subprocess
import sys

import tinysnn


def test_every_public_name_resolves() -> None:
    assert tinysnn.__all__ == sorted(tinysnn.__all__)
    for name in tinysnn.__all__:
        assert getattr(tinysnn, name) is not None


def test_importing_tinysnn_or_its_runner_imports_no_torch() -> None:
    code = "import sys, tinysnn, tinysnn.deploy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
