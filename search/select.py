"""Pick one model from the Pareto front with the reward of docs/method.md §3 (Eq. 3).

    R = acc - mu * M_norm  [ - nu * E_norm ]

acc in [0, 1], M_norm the normalized memory (the study's second objective), mu >= 0: a small mu picks
large, precise models, a large mu small, coarse ones. The optional energy term (our addition, nu >= 0)
uses E_norm = E / max E over the front, so that nu weighs energy on the same 0..1 scale as memory.

The candidates are the study's Pareto front (:func:`pareto_front`: complete, feasible and
non-dominated). A trial is ranked on its confirmed values (``tinysnn-search confirm``: re-trained on
the full data of a spec with ``[fidelity]``) where it has them, else on its values (the fidelity it
was searched at); Optuna keeps a trial's values as they were told, so the confirmed ones are kept
apart (:data:`CONFIRMED_PREFIX`). The argmax of R over all trials is always on the front (a trial
that dominates another has a reward at least as high), so nothing is lost by looking there only.
Ties go to the higher accuracy, then the smaller memory, then the lower trial number.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._constraints import told_constraints
from .errors import SearchError

__all__ = [
    "CONFIRMED_PREFIX",
    "DEFAULT_MUS",
    "LIMITS_KEY",
    "Candidate",
    "complete_trials",
    "front",
    "has_fidelity",
    "limit_violations",
    "mu_sweep",
    "pareto_front",
    "rank",
    "ranked_values",
    "reward",
    "select",
    "violated_limits",
]

DEFAULT_MUS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The mu values docs/method.md §3 sweeps."""

LIMITS_KEY = "constraint_limits"
"""Study user attribute: the spec's ``[constraints]`` (:meth:`search.spec.ConstraintSection.limits`),
written whenever a study is opened from its spec."""
CONFIRMED_PREFIX = "confirmed_trial_"
"""Study user attribute ``confirmed_trial_<number>``: the ``confirmed_*`` values of a trial re-trained
on the full data. A COMPLETE trial's own attributes cannot change, the study's can."""
CONFIRMED_KEYS = ("confirmed_accuracy", "confirmed_memory_norm", "confirmed_energy")
_LIMITED = (
    ("max_memory_norm", "memory_norm", 1.0),
    ("max_energy_j", "energy", 1.0),
    ("min_accuracy", "accuracy", -1.0),
)
"""(limit key, objective, sign): the violation is sign * (objective - limit); accuracy last, so that
the trials of a study made before min_accuracy existed keep their constraint values' positions."""


def limit_violations(limits: Mapping[str, Optional[float]], objectives: Mapping[str, Any]) -> List[float]:
    """Constraint values (feasible when all <= 0) of ``objectives`` (accuracy, memory_norm, energy)
    under ``limits`` (the keys of ``[constraints]``; None: no limit), memory and energy first.

    Example:
        >>> limit_violations({"min_accuracy": 0.2, "max_memory_norm": 0.5},
        ...                  {"accuracy": 0.1, "memory_norm": 0.25})
        [-0.25, 0.1]
    """
    out: List[float] = []
    for key, objective, sign in _LIMITED:
        limit = limits.get(key)
        if limit is None:
            continue
        value = objectives.get(objective)
        out.append(sign * (float(value) - float(limit)) if isinstance(value, (int, float)) else 1.0)
    return out


def violated_limits(limits: Mapping[str, Optional[float]], objectives: Mapping[str, Any]) -> List[str]:
    """The keys of ``limits`` (``min_accuracy``, ``max_memory_norm``, ``max_energy_j``) that
    ``objectives`` break, in the order of :func:`limit_violations`.

    Example:
        >>> violated_limits({"min_accuracy": 0.2, "max_memory_norm": 0.5},
        ...                 {"accuracy": 0.1, "memory_norm": 0.25})
        ['min_accuracy']
    """
    keys = [key for key, _, _ in _LIMITED if limits.get(key) is not None]
    return [key for key, value in zip(keys, limit_violations(limits, objectives)) if value > 0]


def has_fidelity(study: optuna.Study) -> bool:
    """Whether the study was searched on a ``[fidelity]`` subset (its spec had the table) or holds a
    confirmation: only then does a trial's fidelity (``cheap`` / ``confirmed``) tell anything."""
    attrs = study.user_attrs
    return bool(attrs.get("spec_science", {}).get("fidelity")) or any(
        k.startswith(CONFIRMED_PREFIX) for k in attrs
    )


def complete_trials(study: optuna.Study) -> List[FrozenTrial]:
    """The study's complete trials, each with its confirmation (if any) among its user attributes
    (copies: nothing is written)."""
    study_attrs = study.user_attrs  # one read of the storage
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        confirmed = study_attrs.get(f"{CONFIRMED_PREFIX}{t.number}")
        if confirmed:
            t = copy.copy(t)
            t.user_attrs = {**t.user_attrs, **confirmed}
        out.append(t)
    return out


def ranked_values(trial: FrozenTrial) -> Tuple[Tuple[float, float, float], str]:
    """(accuracy, memory_norm, energy) a trial is ranked on, and their fidelity: ``confirmed`` (the full
    data) where :func:`complete_trials` found a confirmation, else ``cheap`` (the values it was told)."""
    a = trial.user_attrs
    if all(isinstance(a.get(k), (int, float)) for k in CONFIRMED_KEYS):
        acc, mem, energy = (float(a[k]) for k in CONFIRMED_KEYS)
        return (acc, mem, energy), "confirmed"
    acc, mem, energy = (float(v) for v in trial.values)
    return (acc, mem, energy), "cheap"


def _feasible(trial: FrozenTrial, values: Sequence[float], limits: Optional[Mapping[str, Any]]) -> bool:
    if limits is None:  # a study not opened since its limits were recorded: what its trials were told
        return all(v <= 0 for v in told_constraints(trial))
    named = dict(zip(("accuracy", "memory_norm", "energy"), values))
    return all(v <= 0 for v in limit_violations(limits, named))


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Accuracy maximized, memory and energy minimized."""
    better_or_equal = a[0] >= b[0] and a[1] <= b[1] and a[2] <= b[2]
    return better_or_equal and tuple(a) != tuple(b)


def front(
    trials: Sequence[FrozenTrial],
    values: Callable[[FrozenTrial], Sequence[float]],
    limits: Optional[Mapping[str, Any]],
) -> List[FrozenTrial]:
    """The feasible trials of ``trials`` that no other feasible one dominates on ``values``, by number."""
    scored = [(t, tuple(values(t))) for t in trials]
    ok = [(t, v) for t, v in scored if _feasible(t, v, limits)]
    return sorted((t for t, v in ok if not any(_dominates(w, v) for _, w in ok)), key=lambda t: t.number)


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
        fidelity: ``confirmed`` (values of the full data) or ``cheap`` (the values searched at).
        attrs: the trial's user attributes.
    """

    number: int
    accuracy: float
    memory_norm: float
    energy: float
    energy_norm: float
    reward: float
    fidelity: str
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
    """The study's Pareto front on :func:`ranked_values` (confirmed where confirmed), feasible under the
    study's recorded limits, by trial number; the trials carry their confirmations."""
    return front(complete_trials(study), lambda t: ranked_values(t)[0], study.user_attrs.get(LIMITS_KEY))


def rank(trials: Sequence[FrozenTrial], mu: float, nu: float = 0.0) -> List[Candidate]:
    """Score ``trials`` (usually the front) by R on their :func:`ranked_values`, best first."""
    usable = [t for t in trials if t.values is not None and len(t.values) == 3]
    scored = [(t, *ranked_values(t)) for t in usable]
    e_max = max((values[2] for _, values, _ in scored), default=0.0)
    out = []
    for t, (acc, mem, energy), fidelity in scored:
        e_norm = energy / e_max if e_max > 0 else 0.0
        out.append(
            Candidate(
                t.number,
                acc,
                mem,
                energy,
                e_norm,
                reward(acc, mem, mu, e_norm, nu),
                fidelity,
                dict(t.user_attrs),
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
    limits = study.user_attrs.get(LIMITS_KEY)
    if limits is not None:
        return any(limit is not None for limit in limits.values())
    return any(told_constraints(t) for t in study.get_trials(deepcopy=False))
