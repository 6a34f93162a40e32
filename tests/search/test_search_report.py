"""`tinysnn-search report`: figures and the trials CSV of a study built by hand (no training)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState, create_trial

from search._constraints import CONSTRAINTS_KEY
from search._study import METRIC_NAMES
from search.cli import main
from search.plots import pareto_figure, reward_figure, size_precision_figure
from search.select import mu_sweep

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# (variant, N, weights format, accuracy, M_norm, energy J, feasible)
TRIALS = [
    ("tinysnn", 100, "fp32", 0.80, 0.26, 3e-6, True),
    ("tinysnn", 100, "UQ1.7", 0.79, 0.07, 1e-6, True),
    ("tinysnn", 400, "fp32", 0.91, 1.00, 9e-6, True),
    ("tinysnn", 400, "UQ1.7", 0.90, 0.25, 4e-6, True),
    ("tinysnn", 400, "UQ1.3", 0.60, 0.13, 2e-6, False),
    ("sl_stdp", 400, "fp32", 0.88, 1.40, 1e-5, True),
]


def _attrs(variant: str, n: int, weights: str, acc: float, mem: float, energy: float, feasible: bool):
    quant = "fp32" if weights == "fp32" else "qW"
    return {
        "variant": variant,
        "n_neurons": n,
        "quant": quant,
        "scheme": "fp32" if quant == "fp32" else "ptq",
        "rounding": "" if quant == "fp32" else "truncate",
        "quant_text": "fp32" if quant == "fp32" else f"weights={weights}",
        "weights_format": weights,
        "vmem_format": "fp32",
        "vth_format": "fp32",
        "accuracy": acc,
        "accuracy_proportion": acc,
        "memory_norm": mem,
        "memory_convention": "compact",
        "energy": energy,
        "energy_objective": "opcount",
        "feasible": feasible,
        "weight_seed": 7,
    }


def _study(path: Path) -> optuna.Study:
    storage = f"sqlite:///{path / 'tiny.db'}"
    study = optuna.create_study(
        study_name="tiny", storage=storage, directions=["maximize", "minimize", "minimize"]
    )
    study.set_metric_names(METRIC_NAMES)
    for variant, n, weights, acc, mem, energy, feasible in TRIALS:
        study.add_trial(
            create_trial(
                values=[acc, mem, energy],
                user_attrs=_attrs(variant, n, weights, acc, mem, energy, feasible),
                system_attrs={CONSTRAINTS_KEY: [0.0 if feasible else 0.5]},
            )
        )
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={"rejected": "V_th step too coarse"}))
    return study


@pytest.fixture
def plots() -> None:
    pytest.importorskip("matplotlib")


def test_report_writes_the_csv_and_the_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture, plots: None
) -> None:
    _study(tmp_path)
    out = tmp_path / "report"
    rc = main(
        [
            "report",
            "--storage",
            f"sqlite:///{tmp_path / 'tiny.db'}",
            "--out",
            str(out),
            "--mu",
            "0",
            "0.2",
            "1",
        ]
    )
    assert rc == 0
    frame = pd.read_csv(out / "tiny-trials.csv")
    assert len(frame) == len(TRIALS) + 1
    assert frame["values_accuracy"].max() <= 1.0
    assert {"user_attrs_variant", "user_attrs_n_neurons", "user_attrs_memory_norm", "on_pareto_front"} <= set(
        frame
    )
    assert not [c for c in frame if "pct" in c or "percent" in c]
    assert not frame.loc[frame["user_attrs_feasible"] == False, "on_pareto_front"].any()  # noqa: E712
    printed = capsys.readouterr().out
    for stem in ("pareto", "size-precision", "reward-mu"):
        for ext in ("png", "svg"):
            assert (out / f"tiny-{stem}.{ext}").stat().st_size > 0
            assert f"wrote {out / f'tiny-{stem}.{ext}'}" in printed


def test_figures_carry_their_panels_and_labels(tmp_path: Path, plots: None) -> None:
    study = _study(tmp_path)
    sweep = mu_sweep(study, [0.0, 0.2, 1.0])
    assert [c.number for _, c in sweep] == [2, 3, 1]

    fig = pareto_figure(study, sweep)
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("M_norm") and ax.get_ylabel().startswith("accuracy")
    texts = [t.get_text() for t in ax.texts]
    assert "#3 (mu = 0.2)" in texts and "#1 (mu = 1)" in texts
    labels = ax.get_legend_handles_labels()[1]
    assert "infeasible (over a [constraints] budget)" in labels
    assert "APPROXIMATE" in ax.get_title()

    fig = size_precision_figure(study)
    image_axes = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(image_axes) == 2
    assert [t.get_text() for t in image_axes[0].get_yticklabels()] == ["4", "8", "FP32"]
    assert [t.get_text() for t in image_axes[0].get_xticklabels()] == ["100", "400"]
    assert "Fig. 9" in fig._suptitle.get_text()  # Figure.get_suptitle is matplotlib >= 3.8; py3.8 has 3.7

    fig = reward_figure(study, sweep)
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("mu") and ax.get_ylabel() == "R = acc - mu M_norm"


def test_a_missing_study_is_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "none.db"
    rc = main(["report", "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "no study database" in err
    assert not db.exists() and not (tmp_path / "out").exists()


def test_without_matplotlib_report_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _study(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    rc = main(["report", "--storage", f"sqlite:///{tmp_path / 'tiny.db'}", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and 'pip install "tinysnn[plots]"' in err and len(err.strip().splitlines()) == 1


def test_an_fp32_trial_writes_rounding_none_and_reads_as_one_written_before_it() -> None:
    from search.objective import config_attrs
    from search.report import _row
    from search.space import TrialConfig
    from tinysnn.config import LearningConfig, NetworkConfig

    net = NetworkConfig(variant="tinysnn", n_neurons=6, n_input=64)
    attrs = config_attrs(TrialConfig(net, LearningConfig(), None))
    assert {k: attrs[k] for k in ("quant", "scheme", "rounding", "quant_text", "weights_format")} == {
        "quant": "fp32",
        "scheme": "fp32",
        "rounding": "none",
        "quant_text": "fp32",
        "weights_format": "fp32",
    }
    rows = []
    for rounding in ("none", ""):  # this tinysnn's FP32 trial, and one written before it
        a = dict(_attrs("tinysnn", 6, "fp32", 0.8, 0.3, 1e-6, True), rounding=rounding)
        rows.append(_row(create_trial(values=[0.8, 0.3, 1e-6], user_attrs=a)))
    assert rows[0] == rows[1] and rows[0][5] == "fp32"  # the scheme column: no rounding to show
