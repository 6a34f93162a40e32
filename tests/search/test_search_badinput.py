"""Bad input to ``tinysnn-search run``: one line, exit 2, before a study, database or folder exists."""

from __future__ import annotations

import errno
import os
import sqlite3
import struct
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import search._checkpoint
import search._study
import search.runner
from search import SpecError, parse_spec
from search.cli import main

SPEC = """
[study]
name = "bad"
trials = 2
population = 2
{study}
[data]
dataset = "digits"
train_samples = 40
test_samples = 20
[encoding]
time_steps = 20
{encoding}
[network]
{network}
[learning]
{learning}
[space]
n_neurons = 4
{space}
[constraints]
{constraints}
[objectives]
{objectives}
"""

TABLES = ("study", "encoding", "network", "learning", "space", "constraints", "objectives")


def _spec(tmp_path: Path, table: str, line: str) -> Path:
    text = SPEC.format(**{t: (line if t == table else "") for t in TABLES})
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


BAD_NUMBERS = [
    ("encoding", "max_rate = nan", "encoding.max_rate"),
    ("encoding", "dt = nan", "encoding.dt"),
    ("encoding", "dt = inf", "encoding.dt"),
    ("network", "theta_plus = nan", "network.theta_plus"),
    ("network", "w_inh = -inf", "network.w_inh"),
    ("network", "norm_total = nan", "network.norm_total"),
    ("learning", "eta_post = nan", "learning.eta_post"),
    ("learning", "nu_pre = inf", "learning.nu_pre"),
    ("learning", "n_th = nan", "learning.n_th"),
    ("learning", "t_update = 2.5", "learning.t_update"),
    ("space", "learning = { t_update = [2.5, 3] }", "space.learning.t_update"),
    ("space", "network = { theta_plus = [0.05, nan] }", "space.network.theta_plus"),
    ("space", "learning = { eta_post = { low = 1e-4, high = inf } }", "space.learning.eta_post"),
    ("constraints", "max_memory_norm = nan", "constraints.max_memory_norm"),
    ("constraints", "max_energy_j = nan", "constraints.max_energy_j"),
    ("constraints", "min_accuracy = nan", "constraints.min_accuracy"),
    ("objectives", "idle_seconds = inf", "objectives.idle_seconds"),
    ("study", "heartbeat_s = inf", "study.heartbeat_s"),
    ("study", "heartbeat_s = nan", "study.heartbeat_s"),
    ("study", "heartbeat_s = 1e9", "study.heartbeat_s"),
    ("study", "stale_after_s = nan", "study.stale_after_s"),
    ("study", "stale_after_s = 10", "study.stale_after_s"),  # below the default heartbeat_s = 30
    ("study", "seed = 9223372036854775807", "study.seed"),
    ("study", "seed = -1", "study.seed"),
    ("study", 'storage = ""', "study.storage"),
    ("study", 'artifacts = ""', "study.artifacts"),
]


@pytest.mark.parametrize("table,line,key", BAD_NUMBERS, ids=[c[1] for c in BAD_NUMBERS])
def test_a_bad_number_is_one_line_naming_the_key_and_creates_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    table: str,
    line: str,
    key: str,
) -> None:
    spec = _spec(tmp_path, table, line)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinysnn-search: error: ") and key in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # no runs/, no database


def test_a_spec_checks_its_numbers_once_in_its_sections() -> None:
    raw = {"data": {"dataset": "digits"}, "space": {"n_neurons": 4}}
    spec = parse_spec(raw)
    with pytest.raises(SpecError, match="study.trials"):
        spec.replace(trials=0)  # an override passes the section's checks too
    with pytest.raises(SpecError, match="study.storage is empty"):
        spec.replace(storage=" ")
    assert parse_spec(dict(raw, study={"seed": 2**32 - 1})).study.seed == 2**32 - 1
    assert parse_spec(dict(raw, learning={"t_update": 3.0})).space.fixed_learning == {"t_update": 3}
    assert parse_spec(dict(raw, constraints={"min_accuracy": 0})).constraints.min_accuracy is None


GOOD = """
[study]
name = "good"
trials = 1
population = 1
{study}
[data]
dataset = "digits"
train_samples = 30
test_samples = 20
[encoding]
time_steps = 10
[space]
n_neurons = 4
"""


def _good(tmp_path: Path, study: str = "") -> Path:
    path = tmp_path / "good.toml"
    path.write_text(GOOD.format(study=study))
    return path


def _error(capsys: pytest.CaptureFixture) -> str:
    """The one error line of a run (the lines before it are the run's log)."""
    err = capsys.readouterr().err
    lines = [s for s in err.strip().splitlines() if s.startswith("tinysnn-search:")]
    assert len(lines) == 1 and lines[0].startswith("tinysnn-search: error: ") and "Traceback" not in err, err
    return lines[0]


def _study_db(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.create_study(storage=f"sqlite:///{path}", study_name="good")


def test_a_damaged_database_names_the_cause_and_is_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "s.db"
    _study_db(db)
    data = bytearray(db.read_bytes())
    data[4096 : 3 * 4096] = b"\xab" * (2 * 4096)  # pages 2 and 3
    db.write_bytes(bytes(data))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(_good(tmp_path)), "--storage", f"sqlite:///{db}", "--no-progress"]) == 2
    line = _error(capsys)
    assert "database disk image is malformed" in line and ".recover" in line
    assert db.read_bytes() == bytes(data)
    assert not (tmp_path / "runs").exists()


def test_a_locked_database_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "s.db"
    _study_db(db)
    monkeypatch.setattr(search._study, "SQLITE_LOCK_TIMEOUT_S", 0.05)
    holder = sqlite3.connect(str(db), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than the timeout
    try:
        monkeypatch.chdir(tmp_path)
        assert main(["run", str(_good(tmp_path)), "--storage", f"sqlite:///{db}", "--no-progress"]) == 2
    finally:
        holder.rollback()
        holder.close()
    assert "database is locked" in _error(capsys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="good", storage=f"sqlite:///{db}")
    assert study.trials == [] and study.user_attrs == {}  # left as it was


@pytest.mark.parametrize(
    "url,says",
    [
        ("sqlite:///", "no file in the URL"),
        ("sqlite://", "no file in the URL"),
        ("", "study.storage is empty"),
        ("runs/x.db", "not an Optuna storage URL"),
    ],
)
def test_a_storage_url_without_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, url: str, says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(_good(tmp_path)), "--storage", url, "--no-progress"]) == 2
    assert says in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.toml"]


def test_an_artifact_folder_under_a_file_is_refused_before_a_study_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "afile").write_text("mine")
    spec = _good(tmp_path, f'storage = "sqlite:///{tmp_path}/s.db"\nartifacts = "{tmp_path}/afile/study"')
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec), "--no-progress"]) == 2
    assert "afile is a file" in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "good.toml"]


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["artifact", "checkpoint"])
def test_a_full_disk_is_one_line_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, where: str
) -> None:
    if where == "artifact":  # the copy into artifacts/ fails half-way

        def half_copy(src: BinaryIO, dst: BinaryIO) -> None:
            dst.write(src.read(10))
            _no_space()

        monkeypatch.setattr(search.runner.shutil, "copyfileobj", half_copy)
    else:  # a checksummed file (checkpoint, stored network, model) fails at its fsync
        monkeypatch.setattr(search._checkpoint.os, "fsync", _no_space)
    spec = _good(tmp_path, f'storage = "sqlite:///{tmp_path}/s.db"\nartifacts = "{tmp_path}/a"')
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec), "--no-progress"]) == 2
    line = _error(capsys)
    assert "no space left on" in line and "nothing lost: free space and run again" in line
    left = [p.name for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert not [n for n in left if n.endswith((".partial", ".tmp"))], left
    assert not list((tmp_path / "a" / "artifacts").iterdir())  # no artifact, whole or partial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="good", storage=f"sqlite:///{tmp_path}/s.db")
    states = [t.state for t in study.trials]
    assert TrialState.COMPLETE not in states and TrialState.RUNNING not in states
    assert TrialState.WAITING in states  # re-queued: the next run trains it


def _idx(path: Path, arr: np.ndarray) -> None:
    path.write_bytes(
        bytes([0, 0, 0x08, arr.ndim])
        + struct.pack(">" + "I" * arr.ndim, *arr.shape)
        + arr.astype(np.uint8).tobytes()
    )


def test_test_images_of_another_shape_are_refused_before_a_study_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for split, count, shape in (("train", 40, (28, 28)), ("t10k", 20, (7, 9))):
        _idx(raw / f"{split}-images-idx3-ubyte", rng.randint(0, 256, (count,) + shape))
        _idx(raw / f"{split}-labels-idx1-ubyte", rng.randint(0, 10, (count,)))
    spec = tmp_path / "good.toml"
    spec.write_text(GOOD.format(study="").replace('"digits"', '"mnist"'))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec), "--data-root", str(tmp_path / "data"), "--no-progress"]) == 2
    line = _error(capsys)
    assert "7x9" in line and "28x28" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "good.toml"]  # no study, no runs/


def test_a_database_on_a_full_disk_is_named_by_its_folder() -> None:
    from search._study import storage_problem

    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as exc:
            raise RuntimeError("An exception is raised during the commit ... exceeding max length") from exc
    except RuntimeError as exc:
        problem = storage_problem(exc, "sqlite:///runs/x.db")
    assert str(problem) == "no space left on runs, nothing lost: free space and run again"
    assert storage_problem(RuntimeError("something else"), "sqlite:///runs/x.db") is None


@pytest.mark.parametrize("existed", [False, True])
def test_a_full_disk_leaves_no_empty_database_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existed: bool
) -> None:
    import search._study as study_module
    from search.errors import StorageError

    db = tmp_path / "runs" / "x.db"
    if existed:
        db.parent.mkdir()
        db.touch()

    def full_disk(url: str, **kwargs: Any) -> Any:
        db.touch()  # SQLite creates the file, then cannot write its first page
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(study_module.optuna.storages, "RDBStorage", full_disk)
    with pytest.raises(StorageError, match="no space left on .*nothing lost") as err:
        study_module.open_storage(f"sqlite:///{db}")
    assert err.value.disk_full
    assert db.exists() == existed  # only the file this call created is removed
