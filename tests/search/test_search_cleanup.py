"""A run deletes only what its study recorded creating: other files in its folder survive, whatever their names."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search import parse_spec, run_study
from search._study import open_storage
from search._workers import WORK_DIR_KEY, identity

SPEC = {
    "study": {"name": "clean", "trials": 2, "population": 2, "seed": 1},
    "data": {"dataset": "digits", "train_samples": 60, "test_samples": 20},
    "encoding": {"time_steps": 10},
    "space": {"n_neurons": [4, 6]},
    "checkpoint": {"every": 30},
}


def _spec(tmp_path: Path, folder: Path) -> object:
    raw = dict(SPEC, study=dict(SPEC["study"], storage=f"sqlite:///{tmp_path}/c.db", artifacts=str(folder)))
    return parse_spec(raw)


def test_a_run_leaves_files_it_did_not_create(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    mine = folder / "tmp-999999-myfiles"  # the name of a dead worker's folder, but the user's
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (folder / "checkpoints").mkdir()
    theirs = folder / "checkpoints" / "pop-1.pt"  # the name of a checkpoint, but the user's
    theirs.write_bytes(b"the user's own checkpoint\n")
    report = run_study(_spec(tmp_path, folder), progress=False, log=lambda s: None)
    assert report.complete == 2
    assert (mine / "notes.txt").read_text() == "mine"
    assert theirs.read_bytes() == b"the user's own checkpoint\n"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["pop-1.pt"]  # ours are gone
    assert not [p for p in folder.glob("tmp-*") if p != mine]  # and so is this run's work folder


def test_the_recorded_folder_of_a_dead_worker_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    spec = _spec(tmp_path, folder)
    run_study(spec.replace(trials=1), progress=False, log=lambda s: None)
    dead = folder / "tmp-4194000-abcd"  # a worker of this study on this machine, killed (-9)
    (dead / "trial-3").mkdir(parents=True)
    storage = open_storage(spec.study.storage_url)
    sid = storage.get_study_id_from_name("clean")
    storage.set_study_system_attr(
        sid, WORK_DIR_KEY + dead.name, dict(identity(), pid=4194000, path=str(dead))
    )
    stray = folder / "tmp-4194001-efgh"  # the same kind of name, never recorded
    stray.mkdir()
    run_study(spec, progress=False, log=lambda s: None)
    assert not dead.exists() and stray.is_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="clean", storage=spec.study.storage_url)
    records = {k: v for k, v in storage.get_study_system_attrs(sid).items() if k.startswith(WORK_DIR_KEY)}
    assert len(records) == 3 and all(v is None for v in records.values())  # two runs and the dead one: done
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 2
