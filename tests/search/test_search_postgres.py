"""A tiny study on PostgreSQL (postgresql://postgres@127.0.0.1:5432/test, trust auth).

Skipped with the reason when the server is unreachable, unless TINYSNN_REQUIRE_POSTGRES=1 (CI), in
which case it fails. The study gets a unique name and is deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import METRIC_NAMES, parse_spec, run_study, select
from search._study import open_storage
from search.errors import StorageError

URL = os.environ.get("TINYSNN_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _storage():  # type: ignore[no-untyped-def]
    try:
        return open_storage(URL)
    except StorageError as exc:
        if os.environ.get("TINYSNN_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"TINYSNN_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable ({exc}); set TINYSNN_REQUIRE_POSTGRES=1 to make this a failure")


def test_tiny_study_on_postgres(tmp_path: Path) -> None:
    storage = _storage()
    name = f"tinysnn-test-{uuid.uuid4().hex[:12]}"
    raw = {
        "study": {
            "name": name,
            "trials": 2,
            "population": 2,
            "seed": 5,
            "storage": URL,
            "artifacts": str(tmp_path / "run"),
        },
        "sampler": {"name": "nsga2", "population_size": 2},
        "data": {"dataset": "digits", "train_samples": 100, "test_samples": 60},
        "encoding": {"time_steps": 40},
        "space": {
            "n_neurons": 8,
            "quantize": ["qW", "fp32"],
            "bits": {"weights": {"int": 1, "frac": {"low": 3, "high": 8}}},
        },
        "constraints": {"min_accuracy": 0},  # off: these tiny networks hardly spike
        "checkpoint": {"every": 0},
    }
    try:
        report = run_study(parse_spec(raw), progress=False, log=lambda s: None)
        assert report.complete == 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.load_study(study_name=name, storage=storage)
        assert study.metric_names == METRIC_NAMES
        done = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(done) == 2 and all("memory_bytes_compact" in t.user_attrs for t in done)
        assert select(study, 0.2)[0].number in {t.number for t in done}
        assert run_study(parse_spec(raw), progress=False, log=lambda s: None).told == []  # budget holds
    finally:
        if name in optuna.get_all_study_names(storage):
            optuna.delete_study(study_name=name, storage=storage)
    assert name not in optuna.get_all_study_names(storage)


def test_three_workers_on_postgres_hold_the_budget_without_duplicates(tmp_path: Path) -> None:
    import subprocess
    import sys

    storage = _storage()
    name = f"tinysnn-test-{uuid.uuid4().hex[:12]}"
    spec = f"""
[study]
name = "{name}"
trials = 5
population = 2
seed = 4
storage = "{URL}"
artifacts = "{tmp_path / "run"}"
[data]
dataset = "digits"
train_samples = 100
test_samples = 60
[encoding]
time_steps = 40
[space]
n_neurons = 8
quantize = ["qW"]
scheme = ["ptq", "itq"]
rounding = ["truncate", "nearest", "stochastic"]
[space.bits.weights]
int = 1
frac = {{ low = 2, high = 12 }}
[checkpoint]
every = 0
"""
    (tmp_path / "spec.toml").write_text(spec)
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    cmd = [sys.executable, "-m", "search.cli", "run", "spec.toml", "--no-progress"]
    workers = [
        subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(3)
    ]
    try:
        outs = [w.communicate(timeout=300)[0] for w in workers]
        if [w.returncode for w in workers] != [0, 0, 0]:  # the workers' whole output, untruncated
            pytest.fail(
                "\n\n".join(
                    f"worker {k}, exit {w.returncode}:\n{out}"
                    for k, (w, out) in enumerate(zip(workers, outs))
                )
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == 5
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        params = [tuple(sorted(t.params.items())) for t in complete]
        assert len(set(params)) == len(params)
    finally:
        optuna.delete_study(study_name=name, storage=storage)
