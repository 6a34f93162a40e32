"""Constraint values through Optuna's public API (``Trial.set_constraint``, Optuna >= 5) and through the
Optuna 4 path (``constraints_func`` and the ``constraints`` list): the same draws either way, an Optuna 4
study resumed under 5, selection, and the dashboard's view of infeasible trials."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Tuple

import optuna
import pytest
from optuna.trial import TrialState

from search import load_spec, run_study, select
from search._constraints import (
    CONSTRAINTS_KEY,
    public_constraints,
    tell_constraints,
    told_constraints,
)
from search._study import make_sampler, open_storage
from search.cli import dashboard_app

from ._wsgi import wsgi_get

OPTUNA_5 = public_constraints()  # decided before any test takes set_constraint away
needs_optuna_5 = pytest.mark.skipif(not OPTUNA_5, reason="Trial.set_constraint needs Optuna >= 5")

SPEC = """
[study]
name = "{name}"
trials = {trials}
population = 2
seed = 5
storage = "sqlite:///{root}/{name}.db"
artifacts = "{root}/{name}"

[sampler]
name = "tpe"
startup_trials = 2

[data]
dataset = "digits"
train_samples = 40
test_samples = 30

[encoding]
time_steps = 20

[space]
n_neurons = [4, 8]
quantize = ["fp32", "qW"]
scheme = ["ptq"]

[space.bits.weights]
int = 1
frac = {{ low = 2, high = 8 }}

[constraints]
max_memory_norm = 0.3
min_accuracy = 0.5        # out of reach of these networks: the samplers rank trials by their violations

[checkpoint]
every = 0
"""


def optuna_4(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this Optuna look like Optuna 4 to search._constraints: no Trial.set_constraint (on Trial nor
    on the base class that declares it)."""
    for cls in optuna.trial.Trial.__mro__:
        if "set_constraint" in vars(cls):
            monkeypatch.delattr(cls, "set_constraint")
    assert not public_constraints()


def _run(root: Path, name: str, trials: int) -> optuna.Study:
    path = root / f"{name}.toml"
    path.write_text(SPEC.format(root=root, name=name, trials=trials))
    run_study(load_spec(path), progress=False, log=lambda s: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/{name}.db")


def _drawn(study: optuna.Study) -> List[Tuple[str, Dict[str, Any], Any, List[float]]]:
    """Each trial's state, parameters, values and constraint values, by number."""
    return [(t.state.name, t.params, t.values, told_constraints(t)) for t in study.get_trials()]


@pytest.mark.parametrize("public", [True, False])
def test_the_values_are_told_once_and_read_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, public: bool
) -> None:
    if public and not OPTUNA_5:
        pytest.skip("Trial.set_constraint needs Optuna >= 5")
    if not public:
        optuna_4(monkeypatch)
    storage = open_storage(f"sqlite:///{tmp_path}/c.db")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    tell_constraints(trial, storage, [0.25, -0.5])
    study.tell(trial, [0.5, 0.1])
    (frozen,) = study.get_trials()
    assert told_constraints(frozen) == [0.25, -0.5]
    if public:  # Optuna's own record, read back as Optuna reads it
        assert frozen.constraints == {"0": 0.25, "1": -0.5} and CONSTRAINTS_KEY not in frozen.system_attrs
    else:
        assert frozen.system_attrs[CONSTRAINTS_KEY] == [0.25, -0.5]


def test_the_sampler_takes_a_constraints_func_only_from_optuna_4(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SPEC.format(root=tmp_path, name="s", trials=2))
    spec = load_spec(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # Optuna 5 deprecates constraints_func
        sampler = make_sampler(spec, 0)
    assert (sampler._constraints_func is None) is OPTUNA_5
    optuna_4(monkeypatch)
    assert make_sampler(spec, 0)._constraints_func is not None


@needs_optuna_5
def test_both_paths_draw_alike_and_an_optuna_4_study_resumes_under_5(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    public = _run(tmp_path, "public", trials=8)
    drawn = _drawn(public)
    states = [state for state, _, _, _ in drawn]
    assert states.count("COMPLETE") == 8 and "PRUNED" in states  # duplicates pruned: infeasible too
    assert all(c for _, _, _, c in drawn) and any(v <= 0 for _, _, _, c in drawn for v in c)
    with monkeypatch.context() as m:
        optuna_4(m)
        assert _drawn(_run(tmp_path, "legacy", trials=8)) == drawn  # the samplers read the same values
        begun = len(_run(tmp_path, "upgraded", trials=4).get_trials())  # begun under Optuna 4 ...
    upgraded = _run(tmp_path, "upgraded", trials=8)  # ... resumed under 5
    assert _drawn(upgraded) == drawn
    kinds = [CONSTRAINTS_KEY in t.system_attrs for t in upgraded.get_trials()]
    assert kinds == [True] * begun + [False] * (len(drawn) - begun)  # the record of the Optuna that told it


def test_a_study_told_under_optuna_4_without_recorded_limits_selects_alike_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for acc, mem, violation in [(0.9, 0.5, 0.2), (0.6, 0.2, -0.1), (0.5, 0.1, 0.0), (0.4, 0.3, -0.2)]:
        study.add_trial(
            optuna.trial.create_trial(  # the list, as Optuna 4 recorded it; no LIMITS_KEY
                values=[acc, mem, 1e-9],
                user_attrs={"accuracy": acc},
                system_attrs={CONSTRAINTS_KEY: [violation]},
            )
        )

    def chosen() -> List[Tuple[int, float]]:
        return [(c.number, c.reward) for c in select(study, 0.2)[1]]

    now = chosen()
    assert [n for n, _ in now] == [1, 2]  # trial 0 is over its limit, trial 3 dominated
    optuna_4(monkeypatch)
    assert chosen() == now


@needs_optuna_5
def test_the_dashboard_shows_the_constraints_told_through_the_public_api(tmp_path: Path) -> None:
    from optuna_dashboard import wsgi

    study = _run(tmp_path, "shown", trials=4)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert all(CONSTRAINTS_KEY not in t.system_attrs for t in complete)
    told = [told_constraints(t) for t in complete]
    assert any(v > 0 for values in told for v in values)  # an infeasible trial to show

    def shown(app: Any) -> List[Any]:
        trials = wsgi_get(app, f"/api/studies/{study._study_id}")["trials"]
        return [t["constraints"] for t in trials if t["state"] == "Complete"]

    url = f"sqlite:///{tmp_path}/shown.db"
    assert shown(wsgi(open_storage(url))) == [[]] * 4  # optuna-dashboard alone sees none
    assert shown(dashboard_app(url, None)[0]) == told  # tinysnn-search dashboard
    assert all(CONSTRAINTS_KEY not in t.system_attrs for t in study.get_trials())  # nothing written
