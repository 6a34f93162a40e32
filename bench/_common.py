"""What every benchmark records: the git revision, the CPU and the load (shared by bench/*.py)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import List, Sequence

ROOT = Path(__file__).resolve().parent.parent


def git_revision() -> str:
    """Short HEAD hash, with '-dirty' when tracked files differ from it. Call it before running."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> List[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def check_quant_args(quants: Sequence[str]) -> None:
    """Exit with one line naming the first ``--quant`` text that is not ``fp32`` or a valid quantization."""
    from tinysnn.quant import parse_quant_arg

    for q in quants:
        try:
            parse_quant_arg(q)
        except ValueError as exc:
            raise SystemExit(f"--quant {q!r}: {exc}") from None
