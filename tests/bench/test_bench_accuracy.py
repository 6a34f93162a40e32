"""bench/accuracy.py's per-variant, per-dataset overrides (bench/_choices.py) and paper-quant's grid (no training here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _choices import overrides  # noqa: E402


def test_overrides_pick_the_variant_and_dataset() -> None:
    items = [
        "tinysnn:w_inh=240,n-th=1",
        "fashion-mnist/tinysnn:norm_total=45,w_inh=480",
        "diehl_cook:theta_plus=0.1",
    ]
    assert overrides(items, "tinysnn", "mnist") == {"w_inh": 240.0, "n_th": 1.0}
    assert overrides(items, "tinysnn", "fashion-mnist") == {"w_inh": 480.0, "n_th": 1.0, "norm_total": 45.0}
    assert overrides(items, "diehl_cook", "fashion-mnist") == {"theta_plus": 0.1}
    assert overrides(items, "sl_stdp", "mnist") == {}


def test_overrides_reject_a_malformed_item() -> None:
    with pytest.raises(SystemExit, match=r"expected \[DATASET/\]VARIANT:key=value"):
        overrides(["tinysnn"], "tinysnn", "mnist")


def test_paper_quant_configurations_hold_theta_plus_and_add_plain_rows() -> None:
    from paper_quant import LABELS, configurations

    from tinysnn.quant import Scheme

    ranges = {"weights": (0.0, 0.9), "vmem": (-120.0, 20.0), "vth": (0.0, 75.6)}
    itq, itq_bad = configurations(
        ranges, [16, 12, 8, 4], ["truncate"], LABELS, Scheme.ITQ, 0.05, plain_bits=[8]
    )
    ptq, ptq_bad = configurations(
        ranges, [16, 12, 8, 4], ["truncate"], LABELS, Scheme.PTQ, 0.05, plain_bits=[8]
    )
    names = [(c["bits"], c["label"], c["rounding"]) for c in itq]
    # saturation is allowed: 8-bit ITQ qWN is built, its V_th keeping the 5 fractional bits theta+ needs
    assert (8, "qWN", "truncate") in names and (8, "qW", "truncate plain") in names
    assert (16, "qW", "truncate plain") not in names
    assert all(s.vth is None or s.vth.frac_bits >= 5 for c in itq for s in c["candidates"])
    # only what cannot be built is impossible: 4 bits hold no V_th step of 2^-5 mV
    assert [(b["bits"], b["label"]) for b in itq_bad] == [(4, "qWN")]
    assert "5 fractional bits" in itq_bad[0]["reason"]
    assert ptq_bad == [] and not any("plain" in c["rounding"] for c in ptq)
    assert all(len(c["candidates"]) == 1 for c in ptq + itq)  # split_count = 1: nothing to choose


def test_paper_quant_tries_saturating_splits_and_keeps_the_best_on_validation() -> None:
    from paper_quant import choose, configurations, split_of

    from tinysnn.quant import Scheme

    ranges = {"weights": (0.0, 1.0), "vmem": (-120.0, 20.0), "vth": (0.0, 75.6)}
    (qw, qwn), bad = configurations(ranges, [8], ["truncate"], ["qW", "qWN"], Scheme.PTQ, split_count=3)
    assert bad == []
    assert [split_of(s) for s in qw["candidates"]] == [{"weights": "Q1.7"}, {"weights": "Q0.8"}]
    vmem = sorted({split_of(s)["vmem"] for s in qwn["candidates"]})
    assert vmem == ["Q6.2", "Q7.1", "Q8.0"]  # -120 mV about rest: Q8.0 holds it, Q7.1 and Q6.2 saturate
    assert len(qwn["candidates"]) == 2 * 3 * 3
    accs = [0.5, 0.7] + [0.1] * 17 + [0.9]  # qW's Q0.8 wins; qWN's last candidate wins
    choose([qw, qwn], accs)
    assert split_of(qw["spec"]) == {"weights": "Q0.8"} and qwn["spec"] is qwn["candidates"][-1]
    assert qw["split_candidates"] == [
        {"split": {"weights": "Q1.7"}, "validation_accuracy": 0.5},
        {"split": {"weights": "Q0.8"}, "validation_accuracy": 0.7},
    ]
    choose([qw], [0.6, 0.6])  # a tie keeps the widest range
    assert split_of(qw["spec"]) == {"weights": "Q1.7"}
