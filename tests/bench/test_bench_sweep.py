"""bench/sweep.py crosses its grid with --quant (tiny digits run, a few seconds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
from sweep import main  # noqa: E402

SMALL = [
    "--dataset",
    "digits",
    "--neurons",
    "12",
    "--train-samples",
    "120",
    "--validation",
    "100",
    "--assign-samples",
    "120",
    "--grid",
    "norm_total=6.4,9",
    "one_spike=1",
]


def _rows(tmp_path: Path, name: str, extra):
    out = tmp_path / name
    assert main(SMALL + list(extra) + ["--json", str(out)]) == 0
    return json.loads(out.read_text())["rows"]


def test_quant_crosses_the_grid_and_fp32_twins_match_a_plain_sweep(tmp_path: Path) -> None:
    plain = _rows(tmp_path, "plain.json", [])
    both = _rows(tmp_path, "both.json", ["--quant", "fp32", "weights=UQ0.4,scheme=itq,rounding=truncate"])
    assert len(plain) == 2 and len(both) == 4
    assert sorted(r["quant"] for r in both) == ["fp32", "fp32"] + ["itq truncate weights=UQ0.4"] * 2
    for r in plain:  # training the ITQ twins beside them leaves the FP32 networks bit for bit alone
        twin = [b for b in both if b["quant"] == "fp32" and b["norm_total"] == r["norm_total"]]
        assert twin[0]["accuracy"] == r["accuracy"]
    itq = {b["norm_total"]: b["accuracy"] for b in both if b["quant"] != "fp32"}
    fp32 = {r["norm_total"]: r["accuracy"] for r in plain}
    assert itq != fp32  # a 4-bit ITQ network does learn differently (the quantization reached it)


def test_bad_quant_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"--quant: .*'Q0\.0'"):
        main(SMALL + ["--quant", "weights=Q0.0", "--json", str(tmp_path / "x.json")])
