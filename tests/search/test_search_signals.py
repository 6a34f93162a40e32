"""``tinysnn-search run`` stopped by a signal: one line saying what was stopped, exit 128 + the signal,
the trials it held re-queued (never left RUNNING), whatever exception the signal became on its way up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, List

import optuna
import pytest
from optuna.trial import TrialState

import search.runner
from search import cli
from search.cli import main

SPEC = """
[study]
name = "sig"
trials = 2
population = 2
seed = 2
storage = "sqlite:///{tmp}/s.db"
artifacts = "{tmp}/a"
[data]
dataset = "digits"
train_samples = 100
test_samples = 40
[encoding]
time_steps = 20
[space]
n_neurons = 6
quantize = "qW"
[space.bits.weights]
int = 1
frac = [3, 4, 5, 6, 7, 8]
[checkpoint]
every = 50
"""


def _spec(tmp_path: Path) -> str:
    path = tmp_path / "sig.toml"
    path.write_text(SPEC.format(tmp=tmp_path))
    return str(path)


def _load(tmp_path: Path) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.load_study(study_name="sig", storage=f"sqlite:///{tmp_path}/s.db")


def _one_line(err: str) -> str:
    lines = [s for s in err.strip().splitlines() if s.startswith("tinysnn-search:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(5)  # the handler raises at the next bytecode; never reached
    raise AssertionError("the signal did not stop the run")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_before_any_trial_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, signum: int
) -> None:
    before = signal.getsignal(signum)
    monkeypatch.setattr(cli, "cmd_run", lambda args: _kill_self(signum))  # start-up: loading, importing
    assert main(["run", _spec(tmp_path)]) == 128 + signum
    line = _one_line(capsys.readouterr().err)
    assert f"stopped by {signal.Signals(signum).name}" in line and "nothing to re-queue" in line
    assert signal.getsignal(signum) == before  # main restores the handlers it replaced


def test_ctrl_c_inside_a_numba_call_exits_130_with_the_stop_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def interrupted_inside_numba(args: Any) -> int:
        try:
            _kill_self(signal.SIGINT)
        except KeyboardInterrupt:  # what numba's dispatcher turns it into
            raise SystemError(
                "CPUDispatcher(<function encode_isi>) returned a result with an exception set"
            ) from None
        return 0

    monkeypatch.setattr(cli, "cmd_run", interrupted_inside_numba)
    assert main(["run", _spec(tmp_path)]) == 130
    assert "stopped by Ctrl-C (SIGINT)" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT], ids=["SIGHUP", "SIGINT"])
def test_a_signal_mid_trial_requeues_the_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, signum: int
) -> None:
    run_study = search.runner.run_study

    def signalled_at_first_checkpoint(spec: Any, **kwargs: Any) -> Any:
        return run_study(spec, **kwargs, on_checkpoint=lambda path, sample: _kill_self(signum))

    monkeypatch.setattr(search.runner, "run_study", signalled_at_first_checkpoint)
    monkeypatch.chdir(tmp_path)
    assert main(["run", _spec(tmp_path), "--no-progress"]) == 128 + signum
    study = _load(tmp_path)
    failed = [t.number for t in study.trials if t.state == TrialState.FAIL]
    states: List[TrialState] = [t.state for t in study.trials]
    assert len(failed) == 2 and states.count(TrialState.WAITING) == 2  # re-queued, none left RUNNING
    assert TrialState.RUNNING not in states
    assert f"trials {failed} were failed and re-queued" in _one_line(capsys.readouterr().err)


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (Linux: the SigCgt mask of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc/PID/status (Linux)")
def test_sigterm_while_a_real_worker_starts_up(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "run", _spec(tmp_path), "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not _catches(proc.pid, signal.SIGTERM) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # the handler is in place; torch, numba and the data still load
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM; no trial was running here, nothing to re-queue" in _one_line(err)


def test_a_signal_while_a_trial_is_asked_waits_until_the_trial_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    duplicate_of = search.runner._duplicate_of

    def signalled_between_ask_and_held(study: Any, number: int, params: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, raised once the trial is held
        return duplicate_of(study, number, params)

    monkeypatch.setattr(search.runner, "_duplicate_of", signalled_between_ask_and_held)
    monkeypatch.chdir(tmp_path)
    assert main(["run", _spec(tmp_path), "--no-progress"]) == 128 + signal.SIGTERM
    study = _load(tmp_path)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # the one trial asked, re-queued
    assert "trials [0] were failed and re-queued" in _one_line(capsys.readouterr().err)


def test_a_stop_whose_exception_was_swallowed_still_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from search._workers import Stopped

    run_study = search.runner.run_study

    def swallowed(path: Any, sample: int) -> None:
        try:
            _kill_self(signal.SIGTERM)
        except Stopped:  # as Python does with an exception raised inside a finalizer
            pass

    def signalled_at_first_checkpoint(spec: Any, **kwargs: Any) -> Any:
        return run_study(spec.replace(trials=4), **kwargs, on_checkpoint=swallowed)

    monkeypatch.setattr(search.runner, "run_study", signalled_at_first_checkpoint)
    monkeypatch.chdir(tmp_path)
    assert main(["run", _spec(tmp_path), "--no-progress"]) == 128 + signal.SIGTERM
    study = _load(tmp_path)
    # raised again at the next safe point, once trial 0 is told: the rest is re-queued, not run
    states = [t.state for t in study.trials]
    assert states[0] == TrialState.COMPLETE and TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) < 4 and states.count(TrialState.WAITING) >= 1
    assert "stopped by SIGTERM; trials [1] were failed and re-queued" in _one_line(capsys.readouterr().err)
