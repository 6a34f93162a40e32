"""Pick one model from the Pareto front with the reward of docs/method.md §3 (Eq. 3).

    R = acc - mu * M_norm  [ - nu * E_norm ]

acc in [0, 1], M_norm the normalized memory (the study's second objective), mu >= 0: a small mu picks
large, precise models, a large mu small, coarse ones. The optional energy term (our addition, nu >= 0)
uses E_norm = E / max E over the front, so that nu weighs energy on the same 0..1 scale as memory.

The candidates are the study's Pareto front (``study.best_trials``: complete, non-dominated and, when
the study has constraints, feasible). The argmax of R over all trials is always on the front (a trial
that dominates another has a reward at least as high), so nothing is lost by looking there only.
Ties go to the higher accuracy, then the smaller memory, then the lower trial number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import optuna
from optuna.trial import FrozenTrial

from .errors import SearchError

__all__ = ["DEFAULT_MUS", "Candidate", "mu_sweep", "pareto_front", "rank", "reward", "select"]

DEFAULT_MUS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The mu values docs/method.md §3 sweeps."""


@dataclass(frozen=True)
class Candidate:
    """A Pareto-optimal trial scored by the reward.

    Attributes:
        number: the trial number.
        accuracy: objective 0, in [0, 1].
        memory_norm: objective 1.
        energy: objective 2, J per inference sample.
        energy_norm: energy / the largest energy on the front.
        reward: R for the mu (and nu) of the ranking.
        attrs: the trial's user attributes.
    """

    number: int
    accuracy: float
    memory_norm: float
    energy: float
    energy_norm: float
    reward: float
    attrs: Dict[str, Any] = field(default_factory=dict, compare=False)


def reward(
    accuracy: float, memory_norm: float, mu: float, energy_norm: float = 0.0, nu: float = 0.0
) -> float:
    """R = accuracy - mu * memory_norm - nu * energy_norm (Eq. 3, docs/method.md §3, plus the optional energy term).

    Example:
        >>> reward(0.9, 0.25, mu=0.2)
        0.85
    """
    if mu < 0 or nu < 0:
        raise ValueError(f"mu and nu must be >= 0, got mu={mu}, nu={nu}")
    return accuracy - mu * memory_norm - nu * energy_norm


def pareto_front(study: optuna.Study) -> List[FrozenTrial]:
    """The study's Pareto front (``study.best_trials``), by trial number."""
    return sorted(study.best_trials, key=lambda t: t.number)


def rank(trials: Sequence[FrozenTrial], mu: float, nu: float = 0.0) -> List[Candidate]:
    """Score ``trials`` (usually the front) by R, best first."""
    usable = [t for t in trials if t.values is not None and len(t.values) == 3]
    e_max = max((t.values[2] for t in usable), default=0.0)
    out = []
    for t in usable:
        acc, mem, energy = (float(v) for v in t.values)
        e_norm = energy / e_max if e_max > 0 else 0.0
        out.append(
            Candidate(
                t.number, acc, mem, energy, e_norm, reward(acc, mem, mu, e_norm, nu), dict(t.user_attrs)
            )
        )
    return sorted(out, key=lambda c: (-c.reward, -c.accuracy, c.memory_norm, c.number))


def select(study: optuna.Study, mu: float, nu: float = 0.0) -> Tuple[Candidate, List[Candidate]]:
    """The trial of the front with the highest R, and the whole ranked front.

    Raises:
        SearchError: if the study has no complete (feasible) trial yet.
    """
    ranked = rank(pareto_front(study), mu, nu)
    if not ranked:
        raise SearchError(
            f"study {study.study_name!r} has no complete{' feasible' if _constrained(study) else ''} trial yet: "
            "run `tinysnn-search run SPEC.toml` first"
        )
    return ranked[0], ranked


def mu_sweep(
    study: optuna.Study, mus: Sequence[float] = DEFAULT_MUS, nu: float = 0.0
) -> List[Tuple[float, Candidate]]:
    """The selected trial for each mu (docs/method.md §3: mu in {0, 0.05, 0.1, 0.2, 0.5, 1})."""
    front = pareto_front(study)
    if not front:
        select(study, 0.0)  # raises the explanatory error
    return [(float(mu), rank(front, float(mu), nu)[0]) for mu in mus]


def _constrained(study: optuna.Study) -> bool:
    return any(t.system_attrs.get("constraints") for t in study.get_trials(deepcopy=False))
