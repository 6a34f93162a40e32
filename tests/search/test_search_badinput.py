"""Bad input to ``tinysnn-search run``: one line, exit 2, before a study, database or folder exists."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, table: str, line: str,
    key: str,
) -> None:  # fmt: skip
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
