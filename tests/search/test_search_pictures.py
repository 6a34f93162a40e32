"""The trial pictures (search._images): what the figures show, that they are written as PNG, and that a
search without matplotlib says so once and still completes its trials."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, List

import numpy as np
import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from search import parse_spec, run_study
from search._images import confusion_figure, missing_note, trial_title, weights_figure, write_pictures

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

ATTRS = {
    "variant": "diehl_cook",
    "n_neurons": 6,
    "quant": "qW",
    "quant_text": "weights=UQ1.7,vmem=fp32,vth=fp32,rounding=nearest,scheme=ptq",
}
CONFUSION = [[5, 1, 0, 2], [0, 7, 1, 0], [1, 0, 9, 0]]  # 3 classes + "no prediction"


def test_title_names_the_trial_and_its_formats() -> None:
    assert trial_title(7, ATTRS) == (
        "trial 7: diehl_cook N=6 qW\nweights=UQ1.7, vmem=fp32, vth=fp32, rounding=nearest, scheme=ptq"
    )
    assert trial_title(3, dict(ATTRS, quant="fp32", quant_text="fp32")) == "trial 3: diehl_cook N=6 fp32"


def test_weights_figure_tiles_each_receptive_field_on_one_colour_scale() -> None:
    weights = np.random.default_rng(0).random((8 * 8, 6))
    fig = weights_figure(weights, (8, 8), trial_title(7, ATTRS))
    grid_ax, bar_ax = fig.axes
    assert not grid_ax.axison  # no per-tile axes
    assert bar_ax.get_ylabel() == "weight"
    title = grid_ax.get_title()
    assert title.startswith(trial_title(7, ATTRS)) and "6 neurons (8 x 8 each)" in title
    (shown,) = grid_ax.images  # one image: one shared colour scale
    grid = np.ma.filled(shown.get_array(), np.nan)
    assert grid.shape == (2 * 9 - 1, 3 * 9 - 1)  # 6 tiles in 2 rows of 3, 1-pixel gaps
    assert np.array_equal(grid[9:17, 18:26], weights[:, 5].reshape(8, 8))  # neuron 5: row 1, column 2
    assert np.isnan(grid[8]).all() and np.isnan(grid[:, 8]).all()
    with pytest.raises(ValueError, match="does not match 64 inputs"):
        weights_figure(weights, (7, 9), "x")


def test_confusion_figure_labels_axes_counts_and_accuracy() -> None:
    fig = confusion_figure(CONFUSION, 0.875, trial_title(7, ATTRS))
    ax, bar_ax = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted label", "true label")
    assert bar_ax.get_ylabel() == "samples"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "none"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert ax.get_title() == trial_title(7, ATTRS) + "\naccuracy 87.5 %"
    assert [t.get_text() for t in ax.texts] == [str(v) for row in CONFUSION for v in row]


def test_pictures_are_written_as_png(tmp_path: Path) -> None:
    weights = np.random.default_rng(1).random((28 * 28, 10))
    files = write_pictures(tmp_path, trial_title(7, ATTRS), weights, (28, 28), CONFUSION, 0.875)
    assert files == {"weights": tmp_path / "weights.png", "confusion": tmp_path / "confusion.png"}
    for path in files.values():
        with Image.open(path) as img:
            assert img.format == "PNG" and img.mode == "RGBA"
            assert min(img.size) >= 300
            img.verify()


SPEC = {
    "study": {"name": "pictures", "trials": 2, "population": 1, "seed": 3},
    "data": {"dataset": "digits", "train_samples": 60, "test_samples": 40},
    "encoding": {"time_steps": 30},
    "space": {"n_neurons": [6, 8], "quantize": "fp32"},
    "checkpoint": {"every": 0},
}


def _run(tmp_path: Path, lines: List[str]) -> optuna.Study:
    raw = dict(SPEC, study=dict(SPEC["study"], storage=f"sqlite:///{tmp_path}/p.db", artifacts=str(tmp_path)))
    run_study(parse_spec(raw), progress=False, log=lines.append)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.load_study(study_name="pictures", storage=f"sqlite:///{tmp_path}/p.db")


def _artifacts(study: optuna.Study) -> List[List[str]]:
    metas = (get_all_artifact_meta(t, storage=study._storage) for t in _complete(study))
    return [sorted(m.filename for m in meta) for meta in metas]


def _complete(study: optuna.Study) -> List[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE,))


def test_without_matplotlib_a_search_says_so_once_and_completes(tmp_path: Path, monkeypatch: Any) -> None:
    drawn: List[str] = []
    with_pictures = _run(tmp_path / "drawn", drawn)
    assert _artifacts(with_pictures) == [["confusion.png", "model.pt", "weights.png"]] * 2
    assert missing_note() is None and not [s for s in drawn if "tinysnn[plots]" in s]

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    lines: List[str] = []
    study = _run(tmp_path / "skipped", lines)
    notes = [s for s in lines if "tinysnn[plots]" in s]
    assert notes == [missing_note()] and "\n" not in notes[0]  # once per run, not per trial (2 populations)
    assert "skipped: matplotlib is not installed" in notes[0] and 'pip install "tinysnn[plots]"' in notes[0]
    assert not any("Traceback" in s for s in lines)
    assert _artifacts(study) == [["model.pt"]] * 2  # both trials complete
    assert [t.values for t in _complete(study)] == [t.values for t in _complete(with_pictures)]
