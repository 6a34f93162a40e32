"""The Optuna layer of tinysnn: study specs, the search space, multi-objective trials, resumable runs.

The core (``tinysnn``) never imports this package. Public API::

    from search import load_spec, run_study, select, mu_sweep

    spec = load_spec("studies/quickstart.toml")
    report = run_study(spec)                       # create or resume; runs to the trial budget
    study = optuna.load_study(study_name=report.study_name, storage=report.storage_url)
    best, front = select(study, mu=0.2)            # R = acc - mu * M_norm on the Pareto front
"""

from __future__ import annotations

from .errors import CheckpointError, SearchError, SpecError, StorageError
from .objective import METRIC_NAMES
from .runner import RunReport, run_study
from .select import DEFAULT_MUS, Candidate, mu_sweep, pareto_front, rank, reward, select
from .space import Rejected, SearchSpace, TrialConfig
from .spec import StudySpec, load_spec, parse_spec

__all__ = [
    "DEFAULT_MUS",
    "METRIC_NAMES",
    "Candidate",
    "CheckpointError",
    "Rejected",
    "RunReport",
    "SearchError",
    "SearchSpace",
    "SpecError",
    "StorageError",
    "StudySpec",
    "TrialConfig",
    "load_spec",
    "mu_sweep",
    "pareto_front",
    "parse_spec",
    "rank",
    "reward",
    "run_study",
    "select",
]
