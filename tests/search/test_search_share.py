"""Train once, quantize many: PTQ trials of one training fingerprint share one stored FP32 network, in a
batch, across a resumed run and across workers; a damaged stored network is refused and retrained."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

import search.objective
from search import SpecError, parse_spec, run_study
from search._study import open_storage
from search.objective import Member, evaluate_population, load_context
from search.spec import StudySpec
from tinysnn.train import RunCallbacks, RunResult, RunSpec
from tinysnn.train import run as tinysnn_run

ROOT = Path(__file__).resolve().parents[2]

# Every trial is a PTQ trial of the same network: with weight seeds per training, one training serves all.
SPEC: Dict[str, Any] = {
    "study": {"name": "share", "trials": 3, "population": 3, "seed": 4},
    "sampler": {"name": "random"},
    "data": {"dataset": "digits", "train_samples": 200, "test_samples": 100},
    "encoding": {"time_steps": 50},
    "space": {
        "n_neurons": 8,
        "quantize": ["qW", "qWN"],
        "scheme": ["ptq"],
        "rounding": ["truncate", "stochastic"],
        "bits": {
            "weights": {"int": 1, "frac": {"low": 3, "high": 8}},
            "vmem": {"int": 9, "frac": {"low": 0, "high": 4}},
            "vth": {"int": 8, "frac": {"low": 0, "high": 4}},
        },
    },
    "checkpoint": {"every": 100},
}


def _spec(folder: Path, **study: Any) -> StudySpec:
    table = dict(SPEC["study"], storage=f"sqlite:///{folder}/s.db", artifacts=str(folder / "a"), **study)
    return parse_spec(dict(SPEC, study=table))


def _trials(spec: StudySpec) -> List[FrozenTrial]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage_url)
    return study.get_trials(states=(TrialState.COMPLETE,))


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> List[int]:
    """Networks the runs of this test trained (evaluating a stored network trains none)."""
    count: List[int] = []

    def counting(spec: RunSpec, callbacks: RunCallbacks) -> RunResult:
        if spec.resume is None or spec.resume.next_sample < spec.total_samples:
            count.append(spec.population.n_networks)
        return tinysnn_run(spec, callbacks)

    monkeypatch.setattr(search.objective, "run", counting)
    return count


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study of 3 PTQ trials, run once; each test works on its own copy."""
    folder = tmp_path_factory.mktemp("first")
    run_study(_spec(folder), progress=False, log=lambda s: None)
    return folder


def _copy(first_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(first_run, tmp_path / "copy")
    return tmp_path / "copy"


def test_ptq_trials_of_one_training_train_once_and_score_as_if_trained_alone(
    tmp_path: Path, trainings: List[int]
) -> None:
    spec = _spec(tmp_path)
    lines: List[str] = []
    run_study(spec, progress=False, log=lines.append)
    assert sum(trainings) == 1
    done = _trials(spec)
    assert len(done) == 3 and len({t.user_attrs["training_fingerprint"] for t in done}) == 1
    assert len({t.user_attrs["weight_seed"] for t in done}) == 1  # common random numbers
    assert [t.user_attrs["trained_by"] for t in done] == [0, 0, 0]
    assert len({t.params["weights_frac"] for t in done}) > 1 or len({t.params["rounding"] for t in done}) > 1
    assert any("evaluate the network trial 0 trained" in s for s in lines)
    stored = list((tmp_path / "a" / "trained").glob("*.pt"))
    assert [p.stem for p in stored] == [done[0].user_attrs["training_fingerprint"]]

    ctx = load_context(spec, tmp_path / "alone", progress=False)
    for t in done:  # each trained on its own, from the same seed
        config = spec.space.suggest(optuna.trial.FixedTrial(t.params), ctx.n_input)
        alone = evaluate_population(ctx, [Member(t.number, t.params, config, t.user_attrs["weight_seed"])])
        assert list(alone[0].values) == t.values
        assert alone[0].attrs["spikes_per_sample_train"] == t.user_attrs["spikes_per_sample_train"]


def test_a_resumed_run_finds_the_stored_network(
    first_run: Path, tmp_path: Path, trainings: List[int]
) -> None:
    spec = _spec(_copy(first_run, tmp_path), trials=5)
    report = run_study(spec, progress=False, log=lambda s: None)
    assert report.complete == 5 and sum(trainings) == 0
    assert {t.user_attrs["trained_by"] for t in _trials(spec)} == {0}


def test_a_second_worker_reuses_the_stored_network(first_run: Path, tmp_path: Path) -> None:
    folder = _copy(first_run, tmp_path)
    spec = _spec(folder, trials=4)
    table = dict(spec.raw, study=dict(spec.raw["study"], trials=4))
    (folder / "spec.toml").write_text(_toml(table))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "search.cli", "run", "spec.toml", "--no-progress"]
    proc = subprocess.run(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout
    assert "evaluate the network trial 0 trained" in proc.stdout
    assert "trained network stored" not in proc.stdout
    assert "by #0" in proc.stdout  # the status table shows the reuse
    assert [t.user_attrs["trained_by"] for t in _trials(spec)] == [0, 0, 0, 0]


def test_a_damaged_stored_network_is_set_aside_and_trained_afresh(
    first_run: Path, tmp_path: Path, trainings: List[int]
) -> None:
    folder = _copy(first_run, tmp_path)
    spec = _spec(folder, trials=5)
    (stored,) = (folder / "a" / "trained").glob("*.pt")
    data = bytearray(stored.read_bytes())
    data[-100] ^= 0xFF
    stored.write_bytes(bytes(data))
    lines: List[str] = []
    run_study(spec, progress=False, log=lines.append)
    assert sum(trainings) == 1
    assert any(f"stored network {stored} is damaged (checksum mismatch" in s for s in lines)
    assert stored.with_name(stored.name + ".damaged").is_file() and stored.is_file()
    done = _trials(spec)
    assert [t.user_attrs["trained_by"] for t in done] == [0, 0, 0, 3, 3]
    assert done[3].user_attrs["spikes_per_sample_train"] == done[0].user_attrs["spikes_per_sample_train"]


def test_trials_of_a_shared_training_stopped_mid_training_continue_from_its_checkpoint(
    first_run: Path, tmp_path: Path, trainings: List[int]
) -> None:
    spec = _spec(tmp_path)

    def interrupt(path: Path, next_sample: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # at sample 100 of the one network trained for all three
        run_study(spec, progress=False, log=lambda s: None, on_checkpoint=interrupt)
    assert not list((tmp_path / "a" / "trained").glob("*.pt"))
    trainings.clear()
    lines: List[str] = []
    report = run_study(spec, progress=False, log=lines.append)
    assert report.complete == 3 and sum(trainings) == 1
    assert any("continue from" in s and "at sample 100" in s for s in lines)
    done = _trials(spec)
    leader = [t for t in done if t.user_attrs["trained_by"] == t.number]
    assert len(leader) == 1 and leader[0].user_attrs["resumed_from_sample"] == 100
    assert {t.user_attrs["trained_by"] for t in done} == {leader[0].number}
    uninterrupted = {t.number: t.values for t in _trials(_spec(first_run))}
    assert sorted(t.values for t in done) == sorted(uninterrupted.values())


def test_weight_seed_per_trial_seeds_each_draw_and_shares_only_equal_seeds(
    tmp_path: Path, trainings: List[int]
) -> None:
    spec = _spec(tmp_path, trials=4, population=4, weight_seed="per_trial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(
            study_name="share",
            storage=open_storage(spec.study.storage_url),
            directions=["maximize", "minimize", "minimize"],
        )
    for frac in (4, 6):  # an explicit equal seed: one training for both
        study.enqueue_trial(
            {"quantize": "qW", "rounding": "truncate", "weights_frac": frac}, user_attrs={"weight_seed": 7}
        )
    study.set_user_attr("spec_fingerprint", spec.fingerprint())
    run_study(spec, progress=False, log=lambda s: None)
    done = _trials(spec)
    seeds = [t.user_attrs["weight_seed"] for t in done]
    assert seeds[:2] == [7, 7] and len(set(seeds[1:])) == 3  # the drawn trials are seeded apart
    assert [t.user_attrs["trained_by"] for t in done] == [0, 0, 2, 3]
    assert sum(trainings) == 3


def test_a_bad_weight_seed_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        _spec(tmp_path, weight_seed="sometimes")
    assert str(err.value) == "study.weight_seed = 'sometimes': choose per_training or per_trial"


def _toml(table: Dict[str, Any]) -> str:
    """A TOML text of a spec table (strings, numbers and inline tables are all it holds)."""

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return f'"{v}"' if isinstance(v, str) else str(v)

    out = []
    for name, section in table.items():
        out.append(f"[{name}]")
        out += [f"{k} = {value(v)}" for k, v in section.items()]
    return "\n".join(out) + "\n"


def test_the_spec_chooses_the_simulator_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: List[str] = []

    def recording(spec: RunSpec, callbacks: RunCallbacks) -> RunResult:
        asked.append(spec.backend)
        return tinysnn_run(spec, callbacks)

    monkeypatch.setattr(search.objective, "run", recording)
    spec = _spec(tmp_path, trials=1, population=1, backend="torch")
    run_study(spec, progress=False, log=lambda s: None)
    assert asked == ["torch"]
    assert [t.user_attrs["backend"] for t in _trials(spec)] == ["torch"]
