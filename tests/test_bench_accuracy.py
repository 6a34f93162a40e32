"""bench/accuracy.py's per-variant, per-dataset overrides (no training here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
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
