"""A study killed mid-trial (SIGKILL) resumes with the same command: no trial lost or duplicated, and the
re-queued trials continue from their checkpoint to the result an uninterrupted run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import List

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from search import load_spec, run_study
from search.report import _row

# One size, so that each batch of 2 trials is one population: checkpoints at samples 50, 100, 150 and
# 200 (after training) for the first; the worker is killed at the 6th checkpoint, sample 100 of the second.
SPEC = """
[study]
name = "resume"
trials = 4
population = 2
seed = 3

[sampler]
name = "tpe"
startup_trials = 4

[data]
dataset = "digits"
train_samples = 200
test_samples = 100

[encoding]
time_steps = 50

[space]
n_neurons = 12
quantize = ["qW", "qWN"]
scheme = ["ptq", "itq"]
rounding = ["truncate", "stochastic"]

[space.bits.weights]
int = 1
frac = { low = 3, high = 8 }

[space.bits.vmem]
int = 9
frac = { low = 0, high = 4 }

[space.bits.vth]
int = 8
frac = { low = 0, high = 4 }

[checkpoint]
every = 50
"""
ROOT = Path(__file__).resolve().parents[2]


def _start(tmp: Path, args: List[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, *args], cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _cli(tmp: Path) -> subprocess.Popen:
    return _start(tmp, ["-m", "search.cli", "run", "spec.toml", "--no-progress"])


def _trials(storage: str) -> List[FrozenTrial]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.load_study(study_name="resume", storage=storage).get_trials()


def _paused_worker(tmp: Path, checkpoint: int) -> subprocess.Popen:
    """A worker that hangs after its ``checkpoint``-th checkpoint, once it got there."""
    marker = tmp / "paused"
    proc = _start(
        tmp, [str(ROOT / "tests" / "search" / "_paused_worker.py"), "spec.toml", str(checkpoint), str(marker)]
    )
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), proc.communicate()[0] if proc.poll() is not None else "worker never paused"
    return proc


def _continued(retries: List[FrozenTrial]) -> bool:
    """Whether the retries that train continued from the checkpoint at sample 100, and the others (PTQ
    trials whose training fingerprint was stored) evaluated the stored network (at its sample 200)."""
    trained = [r for r in retries if r.user_attrs["trained_by"] == r.number]
    stored = [r for r in retries if r.user_attrs["trained_by"] != r.number]
    return (
        bool(trained)
        and all(r.user_attrs["resumed_from_sample"] == 100 for r in trained)
        and all(
            r.user_attrs["resumed_from_sample"] == 200 and "training_fingerprint" in r.user_attrs
            for r in stored
        )
    )


def test_killed_study_resumes_from_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(SPEC)
    storage = f"sqlite:///{tmp_path}/runs/resume.db"
    proc = _paused_worker(tmp_path, 6)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    before = _trials(storage)
    running = [t for t in before if t.state == TrialState.RUNNING]
    by_number_before = {t.number: t for t in before}
    assert [t.state for t in before].count(TrialState.COMPLETE) == 2 and len(running) == 2
    for t in running:  # a running trial already says what it trains (status table, dashboard)
        assert {"variant", "n_neurons", "quant", "quant_text", "weights_format", "vmem_format"} <= set(
            t.user_attrs
        )
        row = _row(t)
        assert row[3] == t.params["quantize"] and ("Q" in row[4]) == (row[3] != "fp32")

    resumed = _cli(tmp_path)
    out = resumed.communicate(timeout=180)[0]
    assert resumed.returncode == 0, out
    assert "continue from" in out and "at sample 100" in out

    after = _trials(storage)
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    failed = [t for t in after if t.state == TrialState.FAIL]
    assert len(complete) == 4  # the budget, no more
    assert sorted(t.number for t in failed) == sorted(t.number for t in running)
    retries = [t for t in complete if "retry_of" in t.user_attrs]
    for r in retries:  # a retry carries what it trains while it waits
        assert (
            r.user_attrs["quant_text"] == by_number_before[r.user_attrs["retry_of"]].user_attrs["quant_text"]
        )
    assert sorted(t.user_attrs["retry_of"] for t in retries) == sorted(t.number for t in failed)  # once each
    by_number = {t.number: t for t in after}
    for r in retries:
        dead = by_number[r.user_attrs["retry_of"]]
        assert r.params == dead.params and r.user_attrs["weight_seed"] == dead.user_attrs["weight_seed"]
    assert _continued(retries)
    assert not list((tmp_path / "runs" / "resume" / "checkpoints").glob("*.pt"))
    assert not list((tmp_path / "runs" / "resume").glob("tmp-*"))  # the killed worker's folder is cleaned

    # The same study without the kill: the re-queued trials match the trials they replace.
    spec = load_spec(tmp_path / "spec.toml").replace(
        storage=f"sqlite:///{tmp_path}/ref.db", artifacts=str(tmp_path / "ref")
    )
    run_study(spec, progress=False, log=lambda s: None)
    reference = {t.number: t for t in _trials(f"sqlite:///{tmp_path}/ref.db")}
    for r in retries:
        ref = reference[r.user_attrs["retry_of"]]
        assert ref.params == r.params
        assert ref.values == r.values  # exact: same weights, same spikes, same accuracy
        assert ref.user_attrs["spikes_per_sample_train"] == pytest.approx(
            r.user_attrs["spikes_per_sample_train"]
        )
    for t in complete:
        if "retry_of" not in t.user_attrs:
            assert reference[t.number].values == t.values


def test_a_live_worker_finishes_the_trials_of_a_worker_killed_meanwhile(tmp_path: Path) -> None:
    # worker A hangs mid-trial (sample 100 of the first population); worker B trains the other two
    # trials, then waits for A's instead of exiting; A is killed; B re-queues and finishes them.
    (tmp_path / "spec.toml").write_text(SPEC.replace("seed = 3", "seed = 3\nheartbeat_s = 1"))
    storage = f"sqlite:///{tmp_path}/runs/resume.db"
    a = _paused_worker(tmp_path, 2)
    b = _cli(tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and b.poll() is None:
        if [t.state for t in _trials(storage)].count(TrialState.COMPLETE) == 2:
            break
        time.sleep(0.5)
    assert b.poll() is None, "worker B exited while A's trials were still running: " + b.communicate()[0]
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    out = b.communicate(timeout=240)[0]
    assert b.returncode == 0, out
    after = _trials(storage)
    states = [t.state for t in after]
    assert states.count(TrialState.COMPLETE) == 4 and TrialState.RUNNING not in states  # the budget, exactly
    retries = [t for t in after if t.state == TrialState.COMPLETE and "retry_of" in t.user_attrs]
    assert len(retries) == 2 and _continued(retries)


def test_three_workers_started_together_hold_the_budget_without_duplicates(tmp_path: Path) -> None:
    # a budget that is not a multiple of the population, on a fresh storage that all three create at once
    (tmp_path / "spec.toml").write_text(SPEC.replace("trials = 4", "trials = 5"))
    storage = f"sqlite:///{tmp_path}/runs/resume.db"
    workers = [_cli(tmp_path) for _ in range(3)]
    outs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outs
    trials = _trials(storage)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5  # exactly the budget
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == len(params)  # no two trials train the same configuration


def _draws(trials: List[FrozenTrial]) -> List[tuple]:
    """The study's trials in draw order, a retry standing where the trial it replaces was drawn."""
    by_number = {t.number: t for t in trials}
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.state == TrialState.COMPLETE:
            first = by_number[t.user_attrs.get("retry_of", t.number)]
            out.append((first.number, t.params, t.values, t.user_attrs["weight_seed"]))
    return [draw[1:] for draw in sorted(out, key=lambda d: d[0])]


def test_a_study_stopped_and_resumed_twice_draws_the_trials_of_an_uninterrupted_one(tmp_path: Path) -> None:
    # TPE models from the third trial on; rejected combinations (ITQ V_th too coarse for theta+) are
    # told PRUNED between the trials; the worker is killed in the second population, and the resumed
    # worker again in its third checkpoint (sample 50 of the third population).
    spec_text = SPEC.replace("trials = 4", "trials = 8").replace("startup_trials = 4", "startup_trials = 2")
    (tmp_path / "spec.toml").write_text(spec_text)
    storage = f"sqlite:///{tmp_path}/runs/resume.db"
    for checkpoint in (6, 3):
        proc = _paused_worker(tmp_path, checkpoint)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        (tmp_path / "paused").unlink()
    resumed = _cli(tmp_path)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    stopped = _trials(storage)
    assert [t.state for t in stopped].count(TrialState.FAIL) == 4  # two kills, two trials each

    spec = load_spec(tmp_path / "spec.toml").replace(
        storage=f"sqlite:///{tmp_path}/ref.db", artifacts=str(tmp_path / "ref")
    )
    run_study(spec, progress=False, log=lambda s: None)
    uninterrupted = _trials(f"sqlite:///{tmp_path}/ref.db")
    assert len(_draws(uninterrupted)) == 8
    assert _draws(stopped) == _draws(uninterrupted)  # same parameters, seeds and values, draw for draw
