"""bench/accuracy.py's per-variant, per-dataset overrides (no training here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from accuracy import overrides  # noqa: E402


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

    ranges = {"weights": (0.0, 0.9), "vmem": (-120.0, 20.0), "vth": (-52.0, -30.0)}
    itq, itq_bad = configurations(ranges, [16, 12, 8], ["truncate"], LABELS, Scheme.ITQ, 0.05, plain_bits=[8])
    ptq, _ = configurations(ranges, [16, 12, 8], ["truncate"], LABELS, Scheme.PTQ, 0.05, plain_bits=[8])
    names = [(c["bits"], c["label"], c["rounding"]) for c in itq]
    # 12-bit qWN: V_mem needs 9 integer bits (3 fractional) and V_th 7 (5 fractional): it fits
    assert (12, "qWN", "truncate") in names and (8, "qW", "truncate plain") in names
    assert (16, "qW", "truncate plain") not in names
    assert all(c["spec"].vth is None or c["spec"].vth.frac_bits >= 5 for c in itq)
    # 8-bit qWN: V_th would keep 1 fractional bit, a step of 0.5 mV > theta+: impossible under ITQ only
    assert any(b["bits"] == 8 and "at least 5 fractional bits" in b["reason"] for b in itq_bad)
    assert not any("plain" in c["rounding"] for c in ptq)
