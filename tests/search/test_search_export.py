"""`tinysnn-search export`: the model records the trial's test trains, so `tinysnn infer` gives the
trial's accuracy back exactly; several --format values; a pickled model file is one line."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any, Tuple

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search import load_spec, run_study, verified_bytes
from search.cli import main
from search.errors import SearchError
from search.export import _load_network
from tinysnn import deploy
from tinysnn.cli import main as tinysnn_main

SPEC = """
[study]
name = "exp"
trials = 2
population = 2
seed = 3
storage = "sqlite:///{root}/exp.db"
artifacts = "{root}/run"

[sampler]
name = "random"

[data]
dataset = "digits"
train_samples = 80
test_samples = 120

[encoding]
time_steps = 40

[space]
n_neurons = [8, 10]
quantize = ["qWN"]
scheme = ["itq"]
rounding = ["stochastic"]

[space.bits.weights]
int = 1
frac = 7

[space.bits.vmem]
int = 9
frac = 4

[space.bits.vth]
int = 8
frac = 5

[constraints]
min_accuracy = 0

[checkpoint]
every = 0
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, optuna.Study]:
    root = tmp_path_factory.mktemp("exp")
    path = root / "exp.toml"
    path.write_text(SPEC.format(root=root))
    spec = load_spec(path)
    run_study(spec, progress=False, log=lambda s: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return path, optuna.load_study(study_name="exp", storage=spec.study.storage_url)


def test_infer_gives_the_trials_accuracy_back(
    study: Tuple[Path, optuna.Study], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path, st = study
    trial = st.get_trials(states=(TrialState.COMPLETE,))[0]
    out = tmp_path / "model"
    assert (
        main(["export", str(path), "--trial", str(trial.number), "--out", str(out), "--format", "c", "nir"])
        == 0
    )
    assert f"tinysnn infer {out} --dataset digits" in capsys.readouterr().out
    assert all((out / name).is_file() for name in ("model.json", "model.h", "tinysnn_infer.c", "model.nir"))
    trains = deploy.load_model(out).test_trains
    assert trains is not None and trains.seed == 3 and trains.samples == 120 and trains.encoder == "isi"
    assert tinysnn_main(["infer", str(out), "--dataset", "digits", "--json", str(tmp_path / "r.json")]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["samples"] == 120 and record["accuracy"] == trial.user_attrs["accuracy"]


class _Anything:
    """Any object torch would have to unpickle (and so run code for)."""


def test_a_pickled_model_file_is_one_line(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"format": "tinysnn-search-model/1", "thing": _Anything()}, buffer)
    blob = buffer.getvalue()
    path = tmp_path / "model.pt"
    path.write_bytes(verified_bytes(blob))  # a re-signed file passes the checksum
    with pytest.raises(SearchError) as info:
        _load_network(path, 4)
    message = str(info.value)
    assert "\n" not in message and "weights_only" not in message and "pickled object" in message
    assert message.startswith("trial 4: ")


def test_a_model_file_that_describes_no_network_is_one_line(tmp_path: Path, study: Any) -> None:
    from search._checkpoint import write_verified
    from search.export import export_trial

    path, st = study
    trial = st.get_trials(states=(TrialState.COMPLETE,))[0]
    spec = load_spec(path)
    store = spec.study.artifact_dir / "artifacts"
    from optuna.artifacts import get_all_artifact_meta

    from search._study import open_storage

    storage = open_storage(spec.study.storage_url)
    meta = [m for m in get_all_artifact_meta(trial, storage=storage) if m.filename == "model.pt"][0]
    artifact = store / meta.artifact_id
    saved = artifact.read_bytes()
    try:
        write_verified(artifact, {"format": "tinysnn-search-model/1", "network": {"n_neurons": float("nan")}})
        with pytest.raises(SearchError, match="does not describe a network") as info:
            export_trial(st, storage, trial.number, str(store), tmp_path / "m")
        assert "\n" not in str(info.value) and not (tmp_path / "m").exists()
    finally:
        artifact.write_bytes(saved)
