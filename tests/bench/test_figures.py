"""bench/figures.py on the recorded runs of bench/recorded/: panels, labels, files (not pixels)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import figures as F  # noqa: E402

RECORDED = sorted((BENCH / "recorded").glob("*.json"))
SUPERSEDED_MNIST = BENCH / "recorded" / "superseded" / "paper-quant-mnist-issue13.json"
"""Issue 13's MNIST grid: PTQ and ITQ, the plain rule, and formats the range rule of its time refused."""


@pytest.fixture(scope="module")
def built() -> Dict[str, Any]:
    pytest.importorskip("matplotlib")
    return F.build_figures(F.load(RECORDED))


@pytest.fixture(scope="module")
def superseded() -> Any:
    """Fig. 6 drawn from issue 13's grid, which has every panel and impossible configurations."""
    pytest.importorskip("matplotlib")
    fp32 = BENCH / "recorded" / "paper-fp32-mnist-3seeds.json"
    inputs = F.load([SUPERSEDED_MNIST, fp32])
    return F.accuracy_figure(inputs.grids["mnist"], inputs.sl_stdp.get(("mnist", 0)))


def _panels(fig: Any) -> List[Any]:
    """The figure's plotting axes (not the row that holds the legend)."""
    return [ax for ax in fig.axes if ax.axison]


def _legend_texts(fig: Any) -> List[str]:
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for t in legend.get_texts()]


def test_the_recorded_runs_give_every_figure(built: Dict[str, Any]) -> None:
    assert list(built) == ["accuracy-mnist", "accuracy-fashion-mnist", "memory", "energy"]


def test_accuracy_panels_are_scheme_by_quantized_set(superseded: Any, built: Dict[str, Any]) -> None:
    fig = superseded
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == [
        "PTQ, qW (weights)",
        "PTQ, qWN (weights, V_mem, V_th)",
        "ITQ, qW (weights)",
        "ITQ, qWN (weights, V_mem, V_th)",
    ]
    for ax in panels:
        assert ax.get_xlabel() == "precision (bits per quantized parameter)"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["FP32", "16", "12", "10", "8", "6", "4"]
    assert panels[0].get_ylabel().startswith("test accuracy (%")
    assert (
        "Fig. 6" in fig._suptitle.get_text()
        and "Fig. 7" in built["accuracy-fashion-mnist"]._suptitle.get_text()
    )
    legend = _legend_texts(fig)
    assert "sl_stdp FP32, seed 0 (approximate baseline)" in legend
    assert {
        "truncate",
        "nearest",
        "stochastic",
        "truncate, plain normalization",
        "diehl_cook FP32",
        "tinysnn FP32",
        "impossible: no format of B bits can be built",
    } <= set(legend)


def test_the_record_draws_issue_25s_grids_impossible_only_where_theta_plus_cannot_fit(
    built: Dict[str, Any],
) -> None:
    ptq = ["PTQ, qW (weights)", "PTQ, qWN (weights, V_mem, V_th)"]
    itq = ["ITQ, qW (weights)", "ITQ, qWN (weights, V_mem, V_th)"]
    for stem, titles, qwn_8bit_truncate in (
        ("accuracy-mnist", ptq + itq, 91.26),
        ("accuracy-fashion-mnist", ptq + itq, 71.06),
    ):
        panels = _panels(built[stem])
        assert [ax.get_title() for ax in panels] == titles
        truncate = next(line for line in panels[1].get_lines() if line.get_label() == "truncate")
        assert truncate.get_ydata()[3] == pytest.approx(qwn_8bit_truncate)  # 16, 12, 10, 8 bits
        assert truncate.get_ydata()[5] == 0.0  # 4 bits: V_mem cannot reach v_th, no neuron fires
        crosses = [
            line for ax in panels for line in ax.get_lines() if line.get_label().startswith("impossible")
        ]
        (cross,) = crosses  # ITQ qWN at 4 bits with truncation or nearest: no 5 fractional bits
        assert cross in panels[3].get_lines() and list(cross.get_xdata()) == [6]
        stochastic = next(line for line in panels[3].get_lines() if line.get_label() == "stochastic")
        expected = {
            "accuracy-mnist": [91.01, 90.76, 89.57, 88.36],
            "accuracy-fashion-mnist": [74.15, 74.35, 70.89, 64.70],
        }
        assert list(stochastic.get_ydata()[:4]) == pytest.approx(expected[stem])


def test_accuracy_lines_carry_the_transcribed_numbers_and_gaps(superseded: Any) -> None:
    itq_qw, itq_qwn = _panels(superseded)[2:]
    truncate = next(line for line in itq_qw.get_lines() if line.get_label() == "truncate")
    assert list(truncate.get_ydata()) == pytest.approx([91.47, 90.78, 91.02, 90.75, 82.98, 41.33])
    plain = next(line for line in itq_qw.get_lines() if line.get_label() == "truncate, plain normalization")
    ys = list(plain.get_ydata())
    assert math.isnan(ys[0]) and ys[3:5] == pytest.approx([90.37, 84.76])  # only 8 and 6 bits were run
    stochastic = next(line for line in itq_qwn.get_lines() if line.get_label() == "stochastic")
    assert stochastic.get_ydata()[0] == pytest.approx(87.40)
    assert all(math.isnan(y) for y in stochastic.get_ydata()[1:])  # 12..4 bits: impossible
    impossible = next(line for line in itq_qwn.get_lines() if line.get_label().startswith("impossible"))
    assert list(impossible.get_xdata()) == [2, 3, 4, 5, 6]


def test_memory_panels_are_dataset_by_convention_with_the_papers_saving(built: Dict[str, Any]) -> None:
    fig = built["memory"]
    panels = _panels(fig)
    assert len(panels) == 4
    assert panels[0].get_title() == "MNIST, compact (a layer constant stored once)"
    assert panels[3].get_title() == "Fashion-MNIST, as simulated (dense N x N constant weights)"
    assert panels[0].get_ylabel() == "memory, Eq. 4 (kB)"
    saving = next(line for line in panels[1].get_lines() if line.get_label().startswith("the paper's 3.3x"))
    assert saving.get_ydata()[0] == pytest.approx(2539.240 / 3.3)
    assert "3.97x" in [t.get_text() for t in panels[0].texts]


def test_energy_bars_say_their_kind(built: Dict[str, Any]) -> None:
    fig = built["energy"]
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == [
        "MNIST, training",
        "MNIST, inference",
        "Fashion-MNIST, training",
        "Fashion-MNIST, inference",
    ]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == [
        "diehl_cook FP32",
        "tinysnn FP32",
        "tinysnn 8-bit",
    ]
    legend = _legend_texts(fig)
    assert "estimate (wall time x 15 W)" in legend and "op-count model" in legend
    assert not [t for t in legend if t.startswith("measured")]  # no meter could be read on that machine
    bar_texts = [t.get_text() for t in panels[0].texts]
    assert "estimate: 0.0771 J" in bar_texts and "op-count model: 4.74e-05 J" in bar_texts


def test_a_measured_meter_is_its_own_kind(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    payload = json.loads((BENCH / "recorded" / "energy-issue6.json").read_text())
    for row in payload["rows"]:
        row.update(meter="nvml", is_estimate=False)
    path = tmp_path / "energy-nvml.json"
    path.write_text(json.dumps(payload))
    legend = _legend_texts(F.energy_figure(F.load([path]).energy))
    assert "measured (nvml meter)" in legend and not [t for t in legend if t.startswith("estimate")]


def test_the_cli_writes_png_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("matplotlib")
    files = [
        str(BENCH / "recorded" / "energy-issue6.json"),
        str(SUPERSEDED_MNIST),
    ]
    assert F.main(files + ["--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    for stem in ("accuracy-mnist", "memory", "energy"):
        for ext in ("png", "svg"):
            path = tmp_path / f"{stem}.{ext}"
            assert path.stat().st_size > 1000 and f"wrote {path}" in printed
    assert (tmp_path / "energy.svg").read_text().lstrip().startswith("<?xml")


def test_two_files_that_disagree_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    payload = json.loads(SUPERSEDED_MNIST.read_text())
    payload["rows"][0]["accuracy"] = 0.5
    other = tmp_path / "other.json"
    other.write_text(json.dumps(payload))
    assert F.main([str(SUPERSEDED_MNIST), str(other), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mnist diehl_cook FP32 is also in" in err and len(err.strip().splitlines()) == 1


def test_an_unknown_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"benchmark": "sweep", "rows": []}))
    assert F.main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not the JSON of bench/accuracy.py" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_without_matplotlib_it_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert F.main([str(RECORDED[0]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert 'pip install "tinysnn[plots]"' in err and len(err.strip().splitlines()) == 1
