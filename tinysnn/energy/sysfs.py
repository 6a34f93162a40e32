"""Reading sysfs files for the meters that take their figures from there (Jetson rails, RAPL).

Every sysfs path is taken under a ``sysfs_root`` (default ``/``), so that tests can build a fake
tree.
"""

from typing import Optional

from .meters import EnergyMeterError

__all__ = ["read_number", "read_text"]


def read_number(path: str, fix: str) -> float:
    """Read one number from a sysfs file, with an error that names the file and the fix."""
    try:
        with open(path) as handle:
            text = handle.read()
    except PermissionError as exc:
        raise EnergyMeterError(f"cannot read {path}: permission denied. {fix}") from exc
    except OSError as exc:
        raise EnergyMeterError(f"cannot read {path} ({exc.strerror or exc}). {fix}") from exc
    try:
        return float(text.strip())
    except ValueError as exc:
        raise EnergyMeterError(f"{path} does not hold a number: {text.strip()!r}") from exc


def read_text(path: str) -> Optional[str]:
    """Read a sysfs file as stripped text, or None if it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None
