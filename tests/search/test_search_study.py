"""A real study on digits, end to end on SQLite: objectives, user attributes, artifacts, selection,
constraints, the budget across runs, the CLI tables and optuna-dashboard's WSGI app."""

from __future__ import annotations

import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Tuple

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from search import METRIC_NAMES, load_spec, mu_sweep, reward, run_study, select
from search._constraints import CONSTRAINTS_KEY, public_constraints, told_constraints
from search._study import open_storage
from search.cli import dashboard_app, main
from tinysnn import deploy

from ._wsgi import wsgi_get

TINY = """
[study]
name = "tiny"
trials = 4
population = 2
seed = 1
storage = "sqlite:///{root}/tiny.db"
artifacts = "{root}/run"

[sampler]
name = "tpe"
startup_trials = 4

[data]
dataset = "digits"
train_samples = 150
test_samples = 100

[encoding]
time_steps = 50

[space]
n_neurons = [8, 12]
quantize = ["fp32", "qW", "qWN"]
scheme = ["ptq", "itq"]
rounding = ["truncate", "nearest"]

[space.bits.weights]
int = 1
frac = {{ low = 3, high = 8 }}

[space.bits.vmem]
int = 9
frac = {{ low = 0, high = 4 }}

[space.bits.vth]
int = 8
frac = {{ low = 0, high = 4 }}

[constraints]
max_memory_norm = 0.5
min_accuracy = 0          # off: these tiny networks hardly spike (tests/search/test_search_fidelity.py tests it)

[checkpoint]
every = 0
"""
ATTRS = [
    "variant",
    "n_neurons",
    "quant",
    "scheme",
    "rounding",
    "quant_text",
    "weights_format",
    "vmem_format",
    "vth_format",
    "accuracy",
    "accuracy_proportion",
    "memory_norm",
    "memory_bytes_compact",
    "memory_bytes_as_simulated",
    "energy",
    "energy_objective",
    "energy_meter",
    "energy_is_estimate",
    "energy_train_j",
    "energy_infer_j_per_sample",
    "energy_opcount_train_j_per_sample",
    "energy_opcount_infer_j_per_sample",
    "wall_seconds",
    "train_samples_per_s",
    "infer_samples_per_s",
    "spikes_per_sample_train",
    "spikes_per_sample_test",
    "device",
    "weight_seed",
    "feasible",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Path, Any, optuna.Study]]:
    root = tmp_path_factory.mktemp("study")
    path = root / "tiny.toml"
    path.write_text(TINY.format(root=root))
    spec = load_spec(path)
    report = run_study(spec, progress=False, log=lambda s: None)
    assert report.complete == 4 and len(report.told) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="tiny", storage=spec.study.storage_url)
    yield path, spec, study


def test_three_named_objectives(tiny: Tuple[Path, Any, optuna.Study]) -> None:
    _, _, study = tiny
    assert study.metric_names == METRIC_NAMES == ["accuracy", "memory_norm", "energy"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    for t in complete:
        acc, mem, energy = t.values
        assert 0 <= acc <= 1 and mem > 0 and energy > 0
        assert acc == pytest.approx(t.user_attrs["accuracy"]) and mem == pytest.approx(
            t.user_attrs["memory_norm"]
        )


def test_user_attrs_and_artifacts(tiny: Tuple[Path, Any, optuna.Study]) -> None:
    _, spec, study = tiny
    store = spec.study.artifact_dir / "artifacts"
    storage = open_storage(spec.study.storage_url)
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        missing = [k for k in ATTRS if k not in t.user_attrs]
        assert not missing, (t.number, missing)
        a = t.user_attrs
        assert a["energy_is_estimate"] is True and a["device"] == "cpu"
        assert a["memory_bytes_as_simulated"] >= a["memory_bytes_compact"] > 0
        if a["quant"] != "fp32":
            assert a["weights_format"].startswith("Q1.")
        metas = {m.filename: m for m in get_all_artifact_meta(t, storage=storage)}
        assert set(metas) == {"weights.png", "confusion.png", "model.pt"}
        for m in metas.values():
            assert (store / m.artifact_id).is_file()
        assert (store / metas["weights.png"].artifact_id).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert metas["model.pt"].mimetype == "application/octet-stream"  # not mimetypes' SNES guess


def test_constraints_are_recorded_and_the_front_is_feasible(tiny: Tuple[Path, Any, optuna.Study]) -> None:
    _, _, study = tiny
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        (value,) = told_constraints(t)
        assert (CONSTRAINTS_KEY in t.system_attrs) is not public_constraints()  # one record, never both
        assert value == pytest.approx(t.values[1] - 0.5)
        assert t.user_attrs["feasible"] is (value <= 0)
    assert all(t.user_attrs["feasible"] for t in study.best_trials)


@pytest.mark.parametrize("mu", [0.0, 0.2, 1.0, 5.0])
def test_selection_is_the_argmax_of_the_reward(tiny: Tuple[Path, Any, optuna.Study], mu: float) -> None:
    _, _, study = tiny
    front = study.best_trials
    assert front, "the tiny study (seeded) must have a feasible Pareto front to select from"
    best, ranked = select(study, mu)
    top = max(reward(t.values[0], t.values[1], mu) for t in front)
    assert best.reward == pytest.approx(top)
    assert reward(best.accuracy, best.memory_norm, mu) == pytest.approx(top)
    assert {c.number for c in ranked} == {t.number for t in front}
    assert [m for m, _ in mu_sweep(study)] == [0.0, 0.05, 0.1, 0.2, 0.5, 1.0]


def test_budget_holds_when_run_again(tiny: Tuple[Path, Any, optuna.Study]) -> None:
    path, spec, study = tiny
    report = run_study(spec, progress=False, log=lambda s: None)
    assert report.told == [] and report.complete == 4
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4


def test_cli_status_and_select(
    tiny: Tuple[Path, Any, optuna.Study], capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    path, spec, study = tiny
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 complete of 4" in out and "Pareto front" in out
    if not study.best_trials:
        return
    out_json = tmp_path / "sel.json"
    assert (
        main(
            [
                "select",
                "--storage",
                spec.study.storage_url,
                "--mu",
                "0.2",
                "--sweep",
                "--json",
                str(out_json),
                "--export",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "selected: trial" in out and "R(mu=0.2)" in out
    chosen = json.loads(out_json.read_text())["selected"]
    assert chosen == select(study, 0.2)[0].number
    model = deploy.load_model(tmp_path / f"tiny-trial{chosen}")
    assert model.meta["provenance"]["study"] == "tiny" and model.meta["provenance"]["trial"] == chosen


def test_cli_export_writes_a_model_the_runner_reproduces(
    tiny: Tuple[Path, Any, optuna.Study], capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    import numpy as np

    path, spec, study = tiny
    done = study.get_trials(states=(TrialState.COMPLETE,))
    trial = done[0]
    out = tmp_path / "model"
    assert main(["export", str(path), "--trial", str(trial.number), "--out", str(out)]) == 0
    assert f"wrote {out} (trial {trial.number})" in capsys.readouterr().out
    model = deploy.load_model(out)
    assert model.meta["accuracy"] == pytest.approx(trial.user_attrs["accuracy"])
    assert model.meta["provenance"]["spec_fingerprint"] == study.user_attrs["spec_fingerprint"]
    assert (
        model.meta["label"] == trial.user_attrs["quant"] and model.n_neurons == trial.user_attrs["n_neurons"]
    )
    trains = np.random.default_rng(0).random((20, model.meta["encoding"]["time_steps"], model.n_input)) < 0.1
    assert deploy.run_trains(model, trains).shape == (20, model.n_neurons)
    # bad input: one line each, nothing written
    assert main(["export", str(path), "--trial", str(trial.number), "--out", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    pruned = [t for t in study.trials if t.state != TrialState.COMPLETE]
    if pruned:
        assert (
            main(["export", str(path), "--trial", str(pruned[0].number), "--out", str(tmp_path / "p")]) == 2
        )
        assert "not COMPLETE" in capsys.readouterr().err
    assert main(["export", str(path), "--trial", "999", "--out", str(tmp_path / "none")]) == 2
    assert "has no trial 999" in capsys.readouterr().err
    elsewhere = tmp_path / "empty"  # the artifacts stayed on the machine that trained the study
    elsewhere.mkdir()
    args = ["export", str(path), "--trial", str(trial.number), "--out", str(tmp_path / "gone")]
    assert main(args + ["--artifacts", str(elsewhere)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"trial {trial.number}" in err[0] and "tinysnn-search pack" in err[0]
    assert not (tmp_path / "gone").exists()
    damaged = tmp_path / "damaged"  # a copy of the artifacts with one byte of every file flipped
    damaged.mkdir()
    for f in Path(spec.study.artifact_dir / "artifacts").iterdir():
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x01
        (damaged / f.name).write_bytes(bytes(data))
    assert main(args + ["--artifacts", str(damaged)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stored network is damaged" in err[0] and "checksum mismatch" in err[0]
    assert not (tmp_path / "gone").exists()


def test_dashboard_serves_the_study(tiny: Tuple[Path, Any, optuna.Study]) -> None:
    pytest.importorskip("optuna_dashboard")
    _, spec, study = tiny
    app, _ = dashboard_app(
        spec.study.storage_url, str(spec.study.artifact_dir / "artifacts")
    )  # as the command
    listed = wsgi_get(app, "/api/studies")["study_summaries"]
    ids = {s["study_name"]: s["study_id"] for s in listed}
    assert "tiny" in ids
    detail = wsgi_get(app, f"/api/studies/{ids['tiny']}")
    assert detail["objective_names"] == METRIC_NAMES
    assert len(detail["trials"]) == len(study.trials)
    done = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert all(len(t["artifacts"]) == 3 and t["constraints"] for t in done)  # infeasible ones shown so
    assert [t["constraints"] for t in done] == [
        told_constraints(t) for t in study.get_trials(states=(TrialState.COMPLETE,))
    ]


def test_pack_unpack_moves_the_study_whole(
    tiny: Tuple[Path, Any, optuna.Study], capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    path, spec, study = tiny
    pack = tmp_path / "machine-a" / "tiny.tar.gz"
    assert main(["pack", str(path), "--out", str(pack), "--checkpoints"]) == 0
    assert "wrote" in capsys.readouterr().out
    dest = tmp_path / "machine-b" / "runs"  # the second machine: nothing of machine A's paths
    assert main(["unpack", str(pack), "--dest", str(dest)]) == 0
    url = f"sqlite:///{dest / 'tiny.db'}"
    assert "restored study 'tiny'" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moved = optuna.load_study(study_name="tiny", storage=url)
    assert moved.user_attrs["artifact_dir"] == "tiny/artifacts"  # relative to the database file
    assert len(moved.get_trials(states=(TrialState.COMPLETE,))) == 4
    # the shared FP32 trainings came along, so that a resumed study does not train them again
    trained = sorted(p.name for p in (spec.study.artifact_dir / "trained").glob("*.pt"))
    assert trained and sorted(p.name for p in (dest / "tiny" / "trained").iterdir()) == trained
    best = select(moved, 0.2)[0].number
    assert main(["export", "--storage", url, "--trial", str(best), "--out", str(tmp_path / "m")]) == 0
    assert deploy.load_model(tmp_path / "m").meta["provenance"]["trial"] == best
    # the dashboard there serves the trials' pictures from the unpacked artifacts
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

    app = wsgi(url, artifact_store=FileSystemArtifactStore(str(dest / "tiny" / "artifacts")))
    (study_id,) = [x["study_id"] for x in wsgi_get(app, "/api/studies")["study_summaries"]]
    done = [t for t in wsgi_get(app, f"/api/studies/{study_id}")["trials"] if t["state"] == "Complete"]
    art = [a for a in done[0]["artifacts"] if a["filename"] == "weights.png"][0]
    status = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/artifacts/{study_id}/{done[0]['trial_id']}/{art['artifact_id']}",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
    }
    body = b"".join(app(environ, lambda st, h, *rest: status.append(st)))
    assert status[0].startswith("200") and body[:8] == b"\x89PNG\r\n\x1a\n"
    # resume there: the spec's layout on machine B (storage and artifacts under DEST)
    resumed = spec.replace(storage=url, trials=5, artifacts=str(dest / "tiny"))
    report = run_study(resumed, progress=False, log=lambda s: None)
    assert report.complete == 5 and len(report.told) == 1
    # bad input: one line each, nothing written
    assert main(["unpack", str(pack), "--dest", str(dest)]) == 2
    assert "already exists" in capsys.readouterr().err
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a pack at all")
    assert main(["unpack", str(junk), "--dest", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a tinysnn study pack" in err[0] and not (tmp_path / "c").exists()
    assert main(["pack", str(path), "--out", str(pack)]) == 2
    assert "already exists" in capsys.readouterr().err
