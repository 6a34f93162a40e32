"""The Optuna layer of tinysnn: study specs, the search space, multi-objective trials, resumable runs.

The core (``tinysnn``) never imports this package. Public API::

    from search import load_spec, run_study, select, mu_sweep

    spec = load_spec("studies/quickstart.toml")
    report = run_study(spec)                       # create or resume; runs to the trial budget
    study = optuna.load_study(study_name=report.study_name, storage=report.storage_url)
    best, front = select(study, mu=0.2)            # R = acc - mu * M_norm on the Pareto front
    confirm_study(spec)                            # a [fidelity] spec: the front re-trained on [data]
"""

from __future__ import annotations

from typing import Any

from .errors import CheckpointError, SearchError, SpecError, StorageError
from .select import DEFAULT_MUS, Candidate, mu_sweep, pareto_front, rank, reward, select  # optuna only

# The rest is imported on first use (module __getattr__), so that `tinysnn-search status`, `select`
# and every error path answer without importing torch.
_LAZY = {
    "METRIC_NAMES": "_study", "RunReport": "runner", "run_study": "runner", "Rejected": "space",
    "ConfirmReport": "confirm", "confirm_study": "confirm",
    "SearchSpace": "space",
    "TrialConfig": "space", "StudySpec": "spec", "load_spec": "spec", "parse_spec": "spec",
    "trial_worker": "_workers", "verified_bytes": "_checkpoint",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MUS",
    "METRIC_NAMES",
    "Candidate",
    "CheckpointError",
    "ConfirmReport",
    "Rejected",
    "RunReport",
    "SearchError",
    "SearchSpace",
    "SpecError",
    "StorageError",
    "StudySpec",
    "TrialConfig",
    "confirm_study",
    "load_spec",
    "mu_sweep",
    "pareto_front",
    "parse_spec",
    "rank",
    "reward",
    "run_study",
    "select",
    "trial_worker",
    "verified_bytes",
]
