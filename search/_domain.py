"""One searched value of a study spec: fixed, a list of choices, or an integer or float range.

Spec grammar (TOML)::

    n_neurons = 400                              # fixed: not an Optuna parameter
    n_neurons = [100, 400, 900]                  # choices: suggest_categorical
    n_neurons = { low = 100, high = 900, step = 100 }   # suggest_int (ints) ...
    eta_post = { low = 1e-4, high = 1e-2, log = true }  # ... or suggest_float
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

from .errors import SpecError

__all__ = ["Domain", "parse_domain"]

_RANGE_KEYS = ("low", "high", "step", "log")
_KINDS = ("any", "int", "float", "number", "str")


@dataclass(frozen=True)
class Domain:
    """The values one quantity may take.

    Attributes:
        name: the Optuna parameter name (``weights_frac``).
        path: the spec key, for messages (``space.bits.weights.frac``).
        kind: ``fixed``, ``choice``, ``int`` or ``float``.
        values: the fixed value (one) or the choices.
        low: lower bound of a range (inclusive).
        high: upper bound of a range (inclusive).
        step: step of a range, None for a continuous float range.
        log: sample a range on a log scale.
    """

    name: str
    path: str
    kind: str
    values: Tuple[Any, ...] = ()
    low: float = 0
    high: float = 0
    step: Optional[float] = None
    log: bool = False

    @property
    def is_fixed(self) -> bool:
        """True when the quantity is not searched."""
        return self.kind == "fixed"

    def suggest(self, trial: Any) -> Any:
        """The value for ``trial`` (an Optuna ``Trial`` or ``FixedTrial``); fixed values are not suggested."""
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def numeric_values(self) -> List[float]:
        """Every value of a fixed, choice or int domain; the two bounds of a float range."""
        if self.kind in ("fixed", "choice"):
            return [v for v in self.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if self.kind == "int":
            step = int(self.step or 1)
            if self.log:
                return [int(self.low), int(self.high)]
            return list(range(int(self.low), int(self.high) + 1, step))
        return [self.low, self.high]

    def bounds(self) -> Tuple[float, float]:
        """(min, max) of the numeric values."""
        vals = self.numeric_values()
        return (min(vals), max(vals)) if vals else (math.nan, math.nan)

    def all_values(self) -> List[Any]:
        """Every value of a fixed or choice domain, or of a range as numbers (see numeric_values)."""
        return list(self.values) if self.kind in ("fixed", "choice") else self.numeric_values()


def _check_scalar(value: Any, path: str, kind: str, allowed: Optional[Sequence[str]]) -> Any:
    if isinstance(value, (list, dict)):
        raise SpecError(f"{path}: nested lists or tables are not allowed inside a list of choices")
    if kind in ("int", "float", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{path}: expected a number, got {value!r}")
        if kind == "int" and (not float(value).is_integer()):
            raise SpecError(f"{path}: expected an integer, got {value!r}")
        if not math.isfinite(float(value)):
            raise SpecError(f"{path}: expected a finite number, got {value!r}")
        return int(value) if kind == "int" else value
    if kind == "str":
        if not isinstance(value, str):
            raise SpecError(f"{path}: expected a string, got {value!r}")
        if allowed is not None and value not in allowed:
            raise SpecError(f"{path}: unknown value {value!r}: choose from {', '.join(allowed)}")
    return value


def parse_domain(
    value: Any,
    path: str,
    name: str,
    kind: str = "any",
    allowed: Optional[Sequence[str]] = None,
) -> Domain:
    """Parse a spec value into a :class:`Domain`.

    Args:
        value: a scalar (fixed), a list (choices) or a ``{low, high, step, log}`` table (range).
        path: the spec key, named in every error.
        name: the Optuna parameter name.
        kind: ``int``, ``float``, ``number``, ``str`` or ``any``: what the values must be.
        allowed: for strings, the accepted values.

    Raises:
        SpecError: for an empty list, an unknown range key, low > high, and values of the wrong kind.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown domain kind {kind!r}")
    if isinstance(value, list):
        if not value:
            raise SpecError(
                f"{path} is an empty list: give at least one value (a list of choices or a scalar)"
            )
        vals = tuple(_check_scalar(v, f"{path}[{i}]", kind, allowed) for i, v in enumerate(value))
        if len(set(vals)) != len(vals):
            raise SpecError(f"{path}: the choices {list(value)} repeat a value; list each value once")
        if len(vals) == 1:
            return Domain(name, path, "fixed", vals)
        return Domain(name, path, "choice", vals)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(_RANGE_KEYS))
        if unknown:
            raise SpecError(f"unknown key(s) {unknown} in {path}: a range takes {', '.join(_RANGE_KEYS)}")
        if "low" not in value or "high" not in value:
            raise SpecError(f"{path}: a range needs both low and high, e.g. {{ low = 1, high = 8 }}")
        if kind == "str":
            raise SpecError(f"{path}: expected a value or a list of values, not a range")
        num_kind = "int" if kind == "int" else "number"
        low = _check_scalar(value["low"], f"{path}.low", num_kind, None)
        high = _check_scalar(value["high"], f"{path}.high", num_kind, None)
        step = value.get("step")
        if step is not None:
            step = _check_scalar(step, f"{path}.step", num_kind, None)
            if step <= 0:
                raise SpecError(f"{path}.step must be > 0, got {step}")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise SpecError(f"{path}.log must be true or false, got {log!r}")
        if low > high:
            raise SpecError(f"{path}: low = {low} is above high = {high}")
        if log and step is not None:
            raise SpecError(f"{path}: a range takes either step or log = true, not both")
        if log and low <= 0:
            raise SpecError(f"{path}: a log range needs low > 0, got {low}")
        is_int = kind == "int" or (
            kind != "float"
            and all(isinstance(v, int) for v in (low, high))
            and (step is None or isinstance(step, int))
        )
        if low == high:
            return Domain(name, path, "fixed", (int(low) if is_int else low,))
        if is_int:
            return Domain(name, path, "int", (), int(low), int(high), int(step) if step else None, log)
        return Domain(name, path, "float", (), float(low), float(high), float(step) if step else None, log)
    return Domain(name, path, "fixed", (_check_scalar(value, path, kind, allowed),))
