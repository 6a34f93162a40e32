"""Worker liveness and re-queueing (search._workers), and a run stopped by an error or a corrupt checkpoint."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Tuple

import optuna
import pytest
from optuna.trial import TrialState

from search import CheckpointError, parse_spec, run_study
from search._study import draw_index, open_storage
from search._workers import (
    BEAT_KEY,
    SAMPLED,
    WORKER_KEY,
    fail_and_requeue,
    identity,
    reap,
    stale_reason,
    trial_id,
    trial_worker,
)


def _study(tmp_path: Path) -> Tuple[optuna.Study, Any]:
    storage = open_storage(f"sqlite:///{tmp_path}/w.db")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.create_study(storage=storage, study_name="w"), storage


def test_stale_reason() -> None:
    me = identity()
    study = optuna.create_study()
    t = study.ask()
    t.suggest_int("n", 1, 3)
    frozen = study.trials[0]
    now = time.time()
    assert trial_worker(frozen) is None  # no worker claimed it
    frozen.system_attrs[WORKER_KEY] = dict(me)
    assert trial_worker(frozen) == me
    frozen.system_attrs[BEAT_KEY] = now - 1000
    assert stale_reason(frozen, 60, me, now) is None  # this very process
    frozen.system_attrs[WORKER_KEY] = dict(me, pid=2**22 + 12345)  # no such process here
    assert "is gone" in str(stale_reason(frozen, 60, me, now))
    frozen.system_attrs[WORKER_KEY] = dict(me, host="elsewhere")
    frozen.system_attrs[BEAT_KEY] = now - 10
    assert stale_reason(frozen, 60, me, now) is None  # another machine, beating
    frozen.system_attrs[BEAT_KEY] = now - 100
    assert "no heartbeat from elsewhere" in str(stale_reason(frozen, 60, me, now))


def test_stale_trial_is_requeued_once(tmp_path: Path) -> None:
    study, storage = _study(tmp_path)
    trial = study.ask()
    trial.suggest_int("n_neurons", 10, 20)
    trial.set_user_attr(SAMPLED, True)
    trial.set_user_attr("weight_seed", 7)
    storage.set_trial_system_attr(trial_id(trial), WORKER_KEY, {"host": "elsewhere", "pid": 1, "ns": ""})
    storage.set_trial_system_attr(trial_id(trial), BEAT_KEY, time.time() - 1000)
    alive = study.ask()  # a trial of a live worker on another machine
    storage.set_trial_system_attr(trial_id(alive), WORKER_KEY, {"host": "elsewhere", "pid": 2, "ns": ""})
    storage.set_trial_system_attr(trial_id(alive), BEAT_KEY, time.time())
    frozen = study.trials[0]
    assert reap(study, storage, 60, lambda s: None) == [0]
    assert fail_and_requeue(study, storage, frozen, "again") is None  # a second worker loses the race
    assert reap(study, storage, 60, lambda s: None) == []
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    retry = study.trials[2]
    assert retry.user_attrs["retry_of"] == 0 and retry.user_attrs["weight_seed"] == 7
    assert retry.system_attrs["fixed_params"] == frozen.params
    assert "no heartbeat" in study.trials[0].user_attrs["fail_reason"]


def test_a_trial_whose_worker_died_while_sampling_is_failed_not_requeued(tmp_path: Path) -> None:
    study, storage = _study(tmp_path)
    trial = study.ask()
    trial.suggest_int("n_neurons", 10, 20)  # the worker died before the next parameter and the mark
    storage.set_trial_system_attr(trial_id(trial), WORKER_KEY, {"host": "elsewhere", "pid": 1, "ns": ""})
    storage.set_trial_system_attr(trial_id(trial), BEAT_KEY, time.time() - 1000)
    assert reap(study, storage, 60, lambda s: None) == []
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert reap(study, storage, 60, lambda s: None) == []  # nor re-queued later as an orphan


def test_draw_index_counts_fresh_draws_and_gives_a_retry_its_first_trials_index() -> None:
    study = optuna.create_study()
    dist = {"n": optuna.distributions.IntDistribution(1, 9)}

    def add(state: TrialState, **attrs: Any) -> None:
        values = [0.5] if state == TrialState.COMPLETE else None
        study.add_trial(
            optuna.trial.create_trial(
                params={"n": 1}, distributions=dist, state=state, values=values, user_attrs=attrs
            )
        )

    add(TrialState.COMPLETE, sampled=True)  # 0: draw 0
    add(TrialState.FAIL, sampled=True)  # 1: draw 1, killed while training
    add(TrialState.FAIL)  # 2: killed while being sampled: abandoned, no draw
    add(TrialState.PRUNED)  # 3: draw 2, rejected before training
    add(TrialState.FAIL, sampled=True, retry_of=1)  # 4: the retry of 1, killed too
    add(TrialState.COMPLETE, sampled=True, retry_of=4)  # 5: its retry
    add(TrialState.COMPLETE, sampled=True)  # 6: draw 3
    assert [draw_index(study, n) for n in range(7)] == [0, 1, 2, 2, 1, 1, 3]


SPEC = {
    "study": {"name": "stop", "trials": 2, "population": 2, "seed": 2},
    "data": {"dataset": "digits", "train_samples": 100, "test_samples": 60},
    "encoding": {"time_steps": 40},
    "space": {
        "n_neurons": 8,
        "quantize": "qW",
        "bits": {"weights": {"int": 1, "frac": {"low": 3, "high": 8}}},
    },
    "checkpoint": {"every": 50},
}


def test_stopped_run_loses_no_trial_and_a_corrupt_checkpoint_is_named(tmp_path: Path) -> None:
    raw = dict(
        SPEC, study=dict(SPEC["study"], storage=f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    )
    spec = parse_spec(raw)

    def interrupt(path: Path, next_sample: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(spec, progress=False, log=lambda s: None, on_checkpoint=interrupt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="stop", storage=spec.study.storage_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    ckpt = Path(study.trials[2].user_attrs["checkpoint"])
    assert ckpt.is_file() and ckpt.parent == tmp_path / "a" / "checkpoints"

    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{ckpt.name} is corrupt.*delete"):
        run_study(spec, progress=False, log=lambda s: None)
    assert [t.state for t in study.trials].count(TrialState.WAITING) == 2  # re-queued again, not lost

    ckpt.unlink()
    lines = []
    report = run_study(spec, progress=False, log=lines.append)
    assert report.complete == 2 and any("is gone; training from sample 0" in s for s in lines)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs["retry_of"] for t in done) == [2, 3]
    assert {tuple(sorted(t.params.items())) for t in done} == {
        tuple(sorted(t.params.items())) for t in study.trials[:2]
    }
