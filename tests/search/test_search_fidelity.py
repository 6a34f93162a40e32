"""The accuracy constraint (``[constraints] min_accuracy``) and the two fidelities (``[fidelity]`` searched,
``tinysnn-search confirm`` on the full ``[data]``): feasibility, selection on confirmed values, idempotent
confirmation, and one clear line for bad values."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import optuna
import pytest
from optuna.distributions import IntDistribution

from search import load_spec, pareto_front, parse_spec, run_study, select
from search._constraints import CONSTRAINTS_KEY, told_constraints
from search._study import constraint_values, open_storage, open_study
from search.cli import main
from search.confirm import AGREEMENT_KEY, confirm_study
from search.errors import SpecError
from search.select import CONFIRMED_PREFIX

SPEC = """
[study]
name = "fidelity"
trials = 4
population = 2
seed = 2
storage = "sqlite:///{root}/fidelity.db"
artifacts = "{root}/run"

[sampler]
name = "random"

[data]
dataset = "digits"
train_samples = 200
test_samples = 100

[fidelity]
train_samples = 60
test_samples = 50

[encoding]
time_steps = 50
max_rate = 255.0      # tiny networks at 50 steps hardly spike at the default rate

[space]
n_neurons = [8, 12]
quantize = ["fp32", "qW"]
scheme = "ptq"
rounding = "nearest"

[space.bits.weights]
int = 1
frac = {{ low = 3, high = 8 }}

[constraints]
min_accuracy = {min_accuracy}

[checkpoint]
every = 0
"""


def _write(root: Path, min_accuracy: Any = 0.2, **replace: str) -> Path:
    text = SPEC.format(root=root, min_accuracy=min_accuracy)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = root / "fidelity.toml"
    path.write_text(text)
    return path


def _raw(**tables: Dict[str, Any]) -> Dict[str, Any]:
    raw: Dict[str, Any] = {
        "data": {"dataset": "digits", "train_samples": 200, "test_samples": 100},
        "space": {"n_neurons": 8},
    }
    raw.update(tables)
    return raw


def test_min_accuracy_defaults_to_twice_chance_and_zero_turns_it_off() -> None:
    spec = parse_spec(_raw())
    assert spec.constraints.min_accuracy == pytest.approx(0.2) and spec.constraints.active
    assert "constraints" not in spec.science()  # the default leaves existing fingerprints alone
    off = parse_spec(_raw(constraints={"min_accuracy": 0}))
    assert off.constraints.min_accuracy is None and not off.constraints.active
    assert constraint_values(spec, {"accuracy": 0.0, "memory_norm": 0.01}) == [pytest.approx(0.2)]


@pytest.mark.parametrize("value, words", [("high", "must be a number"), (-0.1, "[0, 1]"), (1.5, "[0, 1]")])
def test_bad_min_accuracy_is_one_line(value: Any, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_raw(constraints={"min_accuracy": value}))
    assert "constraints.min_accuracy" in str(err.value) and words in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "fidelity, words",
    [
        ({"train_samples": 0}, "> 0"),
        ({"test_samples": 101}, "<= data.test_samples (100)"),
        ({"train_samples": "ten"}, "must be an integer"),
        ({"epochs": 1}, "unknown key fidelity.epochs"),
    ],
)
def test_bad_fidelity_is_one_line(fidelity: Dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_raw(fidelity=fidelity))
    assert "fidelity." in str(err.value) and words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "min_accuracy, replace", [(2, {}), (0.2, {"train_samples = 60": "train_samples = 600"})]
)
def test_cli_refuses_bad_values_before_a_study_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture, min_accuracy: Any, replace: Dict[str, str]
) -> None:
    path = _write(tmp_path, min_accuracy, **replace)
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinysnn-search: error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "fidelity.db").exists()


def test_an_inaccurate_trial_is_infeasible_and_select_skips_it(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, min_accuracy=0.2))
    study = open_study(spec, open_storage(spec.study.storage_url))
    for number, (acc, mem) in enumerate([(0.0, 0.01), (0.6, 0.5), (0.5, 0.2)]):
        attrs = {"accuracy": acc, "memory_norm": mem, "energy": 1e-9}
        values = constraint_values(spec, attrs)
        attrs["feasible"] = all(v <= 0 for v in values)
        study.add_trial(
            optuna.trial.create_trial(
                params={"n_neurons": 8 + number},
                distributions={"n_neurons": IntDistribution(1, 20)},
                values=[acc, mem, 1e-9],
                user_attrs=attrs,
                system_attrs={CONSTRAINTS_KEY: values},
            )
        )
    trials = study.get_trials()
    assert trials[0].user_attrs["feasible"] is False and trials[0].system_attrs[CONSTRAINTS_KEY][0] > 0
    assert [t.number for t in pareto_front(study)] == [1, 2]
    best, ranked = select(study, mu=1.0)
    assert best.number == 2 and {c.number for c in ranked} == {1, 2}
    assert all(c.fidelity == "cheap" for c in ranked)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Path, Any, optuna.Study]]:
    root = tmp_path_factory.mktemp("fidelity")
    path = _write(root)
    spec = load_spec(path)
    assert run_study(spec, progress=False, log=lambda s: None).complete == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="fidelity", storage=spec.study.storage_url)
    yield path, spec, study


def test_trials_train_on_the_subset(searched: Tuple[Path, Any, optuna.Study]) -> None:
    _, _, study = searched
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert (t.user_attrs["train_samples"], t.user_attrs["test_samples"]) == (60, 50)
        assert len(told_constraints(t)) == 1  # min_accuracy only
    assert pareto_front(study), "the seeded study must have a feasible front to confirm"


def test_confirm_records_the_full_fidelity_and_select_ranks_on_it(
    searched: Tuple[Path, Any, optuna.Study], capsys: pytest.CaptureFixture
) -> None:
    path, spec, study = searched
    cheap_front = [t.number for t in pareto_front(study)]
    first = confirm_study(spec, progress=False, log=lambda s: None)  # the front; a later run adds to it
    assert first.chosen == cheap_front and sorted(first.trained) == cheap_front
    assert main(["confirm", str(path), "--neighbours", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "agreement:" in out and "full acc %" in out and "before" in out and "this run" in out
    study = optuna.load_study(study_name="fidelity", storage=spec.study.storage_url)
    confirmed = {
        int(k[len(CONFIRMED_PREFIX) :]): v
        for k, v in study.user_attrs.items()
        if k.startswith(CONFIRMED_PREFIX)
    }
    assert set(cheap_front) <= set(confirmed) and len(confirmed) == len(cheap_front) + 1
    for number, record in confirmed.items():
        trial = study.trials[number]
        assert (record["confirmed_train_samples"], record["confirmed_test_samples"]) == (200, 100)
        assert record["confirmed_memory_norm"] == pytest.approx(trial.values[1])
        assert 0 <= record["confirmed_accuracy"] <= 1 and record["confirmed_at"]
        assert trial.user_attrs["train_samples"] == 60  # the trial keeps its searched values
    assert study.user_attrs[AGREEMENT_KEY]["confirmed_trials"] == len(confirmed)
    _, ranked = select(study, 0.2)
    for c in ranked:
        if c.number in confirmed:
            assert c.fidelity == "confirmed" and c.accuracy == confirmed[c.number]["confirmed_accuracy"]
    assert main(["select", str(path)]) == 0
    assert "fidelity" in capsys.readouterr().out

    again = confirm_study(spec, neighbours=1, progress=False, log=lambda s: None)
    assert again.trained == [] and set(again.chosen) <= set(confirmed)


def test_confirm_needs_a_fidelity_table(
    searched: Tuple[Path, Any, optuna.Study], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path, _, _ = searched
    plain = tmp_path / "plain.toml"
    plain.write_text(path.read_text().replace("[fidelity]\ntrain_samples = 60\ntest_samples = 50\n", ""))
    assert main(["confirm", str(plain)]) == 2
    assert "no [fidelity]" in capsys.readouterr().err


def test_confirm_trains_once_for_the_ptq_trials_that_train_alike(tmp_path: Path, monkeypatch) -> None:
    import search.objective
    from tinysnn.train import run as tinysnn_run

    # four PTQ trials of one size: one FP32 training at the subset, and one on the full data to confirm
    path = _write(
        tmp_path,
        min_accuracy=0,
        **{"n_neurons = [8, 12]": "n_neurons = 8", 'quantize = ["fp32", "qW"]': 'quantize = "qW"'},
    )
    spec = load_spec(path)
    run_study(spec, progress=False, log=lambda s: None)
    trainings = []

    def counting(run_spec, callbacks):
        if run_spec.resume is None:
            trainings.append(run_spec.population.n_networks)
        return tinysnn_run(run_spec, callbacks)

    monkeypatch.setattr(search.objective, "run", counting)
    report = confirm_study(spec, neighbours=3, progress=False, log=lambda s: None)
    study = optuna.load_study(study_name="fidelity", storage=spec.study.storage_url)
    complete = [t.number for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert len(complete) == 4 and sorted(report.trained) == complete
    assert trainings == [1]
    records = [study.user_attrs[f"{CONFIRMED_PREFIX}{n}"] for n in complete]
    assert len({r["confirmed_trained_by"] for r in records}) == 1
    assert all(r["confirmed_train_samples"] == 200 for r in records)
