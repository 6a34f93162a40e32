"""Confirm a study searched on a subset (``[fidelity]``): re-train its Pareto front on the full ``[data]``.

``tinysnn-search confirm SPEC`` takes the front of the trials' own values (the cheap fidelity), at most
``top`` of it (highest accuracy first) plus the ``neighbours`` complete trials nearest to it, and
re-trains each with its parameters and weight seed on the full data, through
:func:`search.objective.evaluate_population` with a context loaded at the ``[data]`` sample counts.
As in ``run``, FP32 and PTQ trials that train alike share one FP32 training (stored in the study's
``trained/`` folder under its full-data training fingerprint, so a later confirm run reuses it).
Optuna keeps a COMPLETE trial's values and attributes as they were told, so each result is a study
user attribute ``confirmed_trial_<number>`` (:data:`search.select.CONFIRMED_PREFIX`) holding
``confirmed_accuracy``, ``confirmed_memory_norm``, ``confirmed_energy``, ``confirmed_at`` and the
sample counts; :func:`search.select.pareto_front` and ``select`` rank on those where they exist.

It is idempotent and resumable: a trial with a confirmation is skipped, and a stopped run keeps the
populations it finished. Each run records how well the cheap front agreed with the confirmed values
(study user attribute ``confirm_agreement``).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import optuna
from optuna.trial import FixedTrial, FrozenTrial

from ._study import open_storage, open_study
from ._trained import TrainedNetworks, shares_training, training_fingerprint
from .errors import SearchError, SpecError
from .objective import Context, Member, Outcome, evaluate_population, load_context
from .pack import sqlite_path
from .select import CONFIRMED_PREFIX, LIMITS_KEY, complete_trials, front, ranked_values
from .spec import FidelitySection, StudySpec

__all__ = ["AGREEMENT_KEY", "ConfirmReport", "agreement", "confirm_study", "to_confirm"]

AGREEMENT_KEY = "confirm_agreement"
"""Study user attribute: :func:`agreement` after the last confirm run."""


@dataclass
class ConfirmReport:
    """What one confirm run did."""

    study_name: str
    chosen: List[int] = field(default_factory=list)
    """The trials to confirm: the cheap front (at most ``top``) and its ``neighbours``."""
    trained: List[int] = field(default_factory=list)
    """Those this run re-trained; the others had been confirmed before."""
    agreement: Dict[str, Any] = field(default_factory=dict)


def _cheap(trial: FrozenTrial) -> Sequence[float]:
    return trial.values


def to_confirm(study: optuna.Study, top: Optional[int] = None, neighbours: int = 0) -> List[FrozenTrial]:
    """The cheap Pareto front (feasible, on the values the trials were told), its ``top`` most accurate
    trials when given, then the ``neighbours`` complete trials off that front nearest to them
    (Euclidean distance over the objectives, each scaled by its range among the complete trials)."""
    trials = complete_trials(study)
    cheap_front = front(trials, _cheap, study.user_attrs.get(LIMITS_KEY))
    chosen = sorted(cheap_front, key=lambda t: (-t.values[0], t.number))[:top] if top else cheap_front
    on_front = {t.number for t in cheap_front}
    others = [t for t in trials if t.number not in on_front]
    if not chosen or not others or neighbours <= 0:
        return chosen
    spans = [max(t.values[i] for t in trials) - min(t.values[i] for t in trials) or 1.0 for i in range(3)]

    def scaled(t: FrozenTrial) -> List[float]:
        return [v / s for v, s in zip(t.values, spans)]

    def distance(t: FrozenTrial) -> float:
        return min(math.dist(scaled(t), scaled(f)) for f in chosen)

    return chosen + sorted(others, key=lambda t: (distance(t), t.number))[:neighbours]


def agreement(study: optuna.Study) -> Dict[str, Any]:
    """How the cheap front fared on the full data, over the confirmed trials: how many of the cheap
    front's confirmed trials stay on the front of confirmed values, and the rank correlation
    (Spearman) of cheap and confirmed accuracy."""
    import pandas

    trials = complete_trials(study)
    limits = study.user_attrs.get(LIMITS_KEY)
    confirmed = [t for t in trials if ranked_values(t)[1] == "confirmed"]
    cheap_front = {t.number for t in front(trials, _cheap, limits)}
    confirmed_front = {t.number for t in front(confirmed, lambda t: ranked_values(t)[0], limits)}
    checked = sorted(cheap_front & {t.number for t in confirmed})
    rho = None
    if len(confirmed) >= 2:
        cheap = pandas.Series([t.values[0] for t in confirmed])
        full = pandas.Series([ranked_values(t)[0][0] for t in confirmed])
        value = cheap.corr(full, method="spearman")
        rho = None if math.isnan(value) else float(value)
    return {
        "confirmed_trials": len(confirmed),
        "cheap_front_confirmed": len(checked),
        "cheap_front_kept": sum(1 for n in checked if n in confirmed_front),
        "accuracy_rank_correlation": rho,
    }


def confirm_study(
    spec: StudySpec,
    *,
    top: Optional[int] = None,
    neighbours: int = 0,
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> ConfirmReport:
    """Re-train the trials :func:`to_confirm` picks on the full data and record their confirmations.

    Raises:
        SpecError: the spec has no ``[fidelity]`` (its trials ran on the full data already), or its data
            cannot be loaded.
        SearchError: the study does not exist yet.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if not spec.fidelity.active:
        raise SpecError(
            "the spec has no [fidelity]: its trials were trained on the full [data] already, "
            "so there is nothing to confirm"
        )
    url, name = spec.study.storage_url, spec.study.name
    db = sqlite_path(url)
    if db is not None and not db.is_file():
        raise SearchError(f"no study database at {db}: run `tinysnn-search run SPEC.toml` first")
    storage = open_storage(url)
    if name not in optuna.get_all_study_names(storage):
        raise SearchError(f"no study {name!r} in {url}: run `tinysnn-search run SPEC.toml` first")
    folder = spec.study.artifact_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ctx = load_context(spec, folder, progress)  # the full fidelity: [data]'s sample counts
    study = open_study(spec, storage)
    report = ConfirmReport(name)
    chosen = to_confirm(study, top, neighbours)
    report.chosen = [t.number for t in chosen]
    todo = [t for t in chosen if ranked_values(t)[1] == "cheap"]  # the others were confirmed before
    full = dataclasses.replace(spec, fidelity=FidelitySection())  # trains on [data]: its own fingerprints
    members = []
    for t in todo:
        config = spec.space.suggest(FixedTrial(t.params), ctx.n_input)
        seed = int(t.user_attrs["weight_seed"])
        fingerprint = training_fingerprint(full, config, seed) if shares_training(config) else None
        members.append(Member(t.number, dict(t.params), config, seed, fingerprint=fingerprint))
    networks = TrainedNetworks(folder / "trained", log)
    ctx.work_dir = Path(tempfile.mkdtemp(prefix="confirm-", dir=folder))
    try:
        for o in _confirm(ctx, members, networks, log):
            for path in o.files.values():
                path.unlink(missing_ok=True)
            acc, mem, energy = o.values
            study.set_user_attr(
                f"{CONFIRMED_PREFIX}{o.number}",
                {
                    "confirmed_accuracy": acc,
                    "confirmed_memory_norm": mem,
                    "confirmed_energy": energy,
                    "confirmed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "confirmed_train_samples": o.attrs["train_samples"],
                    "confirmed_test_samples": o.attrs["test_samples"],
                    "confirmed_trained_by": o.attrs["trained_by"],
                },
            )
            report.trained.append(o.number)
    finally:
        shutil.rmtree(ctx.work_dir, ignore_errors=True)
    report.agreement = agreement(study)
    study.set_user_attr(AGREEMENT_KEY, report.agreement)
    return report


def _confirm(
    ctx: Context, members: List[Member], networks: TrainedNetworks, log: Callable[[str], None]
) -> Iterator[Outcome]:
    """The members' outcomes on the full data: those that train their own network, in populations by
    group key; then, as in ``run``, the FP32 and PTQ trials whose FP32 training another member made
    (or an earlier confirm run stored), from that stored network."""
    spec = ctx.spec
    trains: "OrderedDict[Any, List[Member]]" = OrderedDict()
    shared: "OrderedDict[str, List[Member]]" = OrderedDict()
    for m in members:
        fp = m.fingerprint
        if fp is not None and (fp in shared or networks.path(fp).is_file()):
            shared.setdefault(fp, []).append(m)
            continue
        if fp is not None:  # this member trains it; the next ones with fp wait for the stored network
            shared[fp] = []
        trains.setdefault(m.config.group_key(spec.study.group), []).append(m)
    size = spec.study.population
    for group in trains.values():
        for start in range(0, len(group), size):
            chunk = group[start : start + size]
            log(f"confirming trials {[m.number for m in chunk]} on the full data")
            yield from evaluate_population(ctx, chunk, log=log, networks=networks)
    for fp, waiting in shared.items():
        if not waiting:
            continue
        stored = networks.load(fp)
        if stored is None:  # damaged and set aside: they train it again
            yield from evaluate_population(ctx, waiting, log=log, networks=networks)
            continue
        ckpt = stored.checkpoint(spec.fingerprint(), [m.number for m in waiting], [m.params for m in waiting])
        log(
            f"confirming trials {[m.number for m in waiting]} from the network trial {stored.trained_by} "
            "trained on the full data"
        )
        yield from evaluate_population(ctx, waiting, None, ckpt, log, trained_by=stored.trained_by)
