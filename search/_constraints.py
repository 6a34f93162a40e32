"""A trial's constraint values (feasible when all <= 0), told and read back through Optuna's public API.

Optuna 5 records them with ``Trial.set_constraint`` (a system attribute ``constraints:<name>`` each)
and reads them back as ``FrozenTrial.constraints``, whichever of its formats a trial holds; its
samplers read them from there. Optuna 4 has neither: its samplers take a ``constraints_func`` (which
Optuna 5 deprecates and 7 removes) and read the list in the system attribute ``constraints``, which
the runner writes through the storage before it tells the trial. :func:`public_constraints` picks the
path; there is one per Optuna, never both. A trial told PRUNED has values too (every limit broken, as
Optuna 4's ``constraints_func`` gave it: the samplers count it infeasible).

The names are the positions ``"0"``, ``"1"``, ... of :func:`search.select.limit_violations`: the
names Optuna 5 gives the list of a study told under Optuna 4, so that a study begun under 4 and
resumed under 5 keeps one set of names (the GP sampler requires it) and its samplers see the same
values either way.

optuna-dashboard (0.21) reads only the list: :class:`ListedConstraintsStorage` serves it the list of
the trials told through ``set_constraint``.
"""

from __future__ import annotations

import copy
from typing import Any, Container, List, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._workers import trial_id

__all__ = [
    "CONSTRAINTS_KEY",
    "ListedConstraintsStorage",
    "public_constraints",
    "tell_constraints",
    "told_constraints",
]

CONSTRAINTS_KEY = "constraints"
"""Trial system attribute of the constraint values as a list: what Optuna 4's samplers and
optuna-dashboard (0.21) read, and what Optuna 5 reads a study told under Optuna 4 from."""


def public_constraints() -> bool:
    """Whether this Optuna has ``Trial.set_constraint`` and ``FrozenTrial.constraints`` (Optuna >= 5)."""
    return hasattr(optuna.trial.Trial, "set_constraint")


def tell_constraints(trial: optuna.Trial, storage: Any, values: Sequence[float]) -> None:
    """Record ``values`` as the constraints of the running ``trial`` of ``storage``, before it is told."""
    if public_constraints():
        for position, value in enumerate(values):
            trial.set_constraint(str(position), value)
    else:  # Trial.set_system_attr is deprecated (removed in Optuna 5): the storage writes the list
        storage.set_trial_system_attr(trial_id(trial), CONSTRAINTS_KEY, list(values))


def told_constraints(trial: FrozenTrial) -> List[float]:
    """The constraint values recorded for ``trial`` (empty: none), in either format."""
    if public_constraints():
        return list(trial.constraints.values())
    return list(trial.system_attrs.get(CONSTRAINTS_KEY) or [])


def _listed(trial: FrozenTrial) -> FrozenTrial:
    """``trial``, or a copy that also holds its constraint values as the list under CONSTRAINTS_KEY."""
    if CONSTRAINTS_KEY in trial.system_attrs:
        return trial
    values = told_constraints(trial)
    if not values:
        return trial
    listed = copy.copy(trial)
    listed.system_attrs = {**trial.system_attrs, CONSTRAINTS_KEY: values}
    return listed


class ListedConstraintsStorage(optuna.storages.RDBStorage):
    """An RDB storage whose trials also carry their constraint values as the list under
    CONSTRAINTS_KEY, the one record optuna-dashboard (0.21) reads and colours infeasible trials by.

    Only the trials it returns change (copies); nothing is written.
    """

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return _listed(super().get_trial(trial_id))

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Optional[Container[TrialState]] = None
    ) -> List[FrozenTrial]:
        return [_listed(t) for t in super().get_all_trials(study_id, deepcopy=deepcopy, states=states)]
