"""bench/faults.py's instrument: crafted packs, the sandbox snapshot and the classification (no training)."""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
from faults import Case, Special, _classify, _error_lines, craft_pack, run_case  # noqa: E402

TEMPLATE = {
    "format": "tinysnn-study-pack",
    "version": 2,
    "study": "tiny",
    "tinysnn_version": "0",
    "optuna_version": "0",
    "files": {"study.db": {"sha256": "0" * 64, "size": 1}},
}


def test_craft_pack_lists_members_in_the_templates_entry_shape(tmp_path: Path) -> None:
    members = {
        "study.db": b"db",
        "../x": b"escape",
        "artifacts/big": 3000,
        "artifacts/l": Special(tarfile.SYMTYPE),
    }
    craft_pack(
        tmp_path / "p.tar.gz",
        TEMPLATE,
        members,
        listed={"study.db": b"db", "artifacts/big": b"small"},
        study="x/../tiny",
        optuna_version=None,
    )
    with tarfile.open(tmp_path / "p.tar.gz") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        big = tar.getmember("artifacts/big")
        assert tar.extractfile("../x").read() == b"escape"  # type: ignore[union-attr]
        assert big.size == 3000 and tar.extractfile(big).read() == b"\0" * 3000  # type: ignore[union-attr]
        assert tar.getmember("artifacts/l").issym()
    assert names[-1] == "manifest.json"
    assert manifest["study"] == "x/../tiny" and "optuna_version" not in manifest
    assert manifest["files"] == {
        "study.db": {"sha256": hashlib.sha256(b"db").hexdigest(), "size": 2},
        "artifacts/big": {"sha256": hashlib.sha256(b"small").hexdigest(), "size": 5},
    }


def test_version_1_entries_are_bare_checksums(tmp_path: Path) -> None:
    v1 = dict(TEMPLATE, version=1, files={"study.db": "0" * 64})
    craft_pack(tmp_path / "p.tar.gz", v1, {"study.db": b"db"})
    with tarfile.open(tmp_path / "p.tar.gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["files"] == {"study.db": hashlib.sha256(b"db").hexdigest()}


def test_classification() -> None:
    case = Case("g", "n", lambda ctx: [])
    usage = "usage: tinysnn-search run [-h]\n                          spec\ntinysnn-search: error: bad\n"
    assert _error_lines(usage) == ["tinysnn-search: error: bad"]
    assert _classify(case, 2, "", usage, False, []) == "clear"
    assert _classify(case, 2, "", "stopped\ntinysnn-search: error: bad\n", False, []) == "noisy"
    assert _classify(case, 2, "", "tinysnn: error: bad\n", False, ["runs/x.db"]) == "left"
    assert (
        _classify(case, 1, "", "Traceback (most recent call last):\nKeyError: 1\n", False, []) == "traceback"
    )
    assert _classify(case, -11, "", "", False, []) == "crash"
    assert _classify(case, 139, "", "", False, []) == "crash"
    assert _classify(case, 0, "", "", False, []) == "accepted"
    assert _classify(Case("g", "n", lambda ctx: [], either=True), 0, "", "", False, []) == "ok"
    assert _classify(case, -9, "", "", True, []) == "hung"
    control = Case("g", "n", lambda ctx: [], control=True)
    assert _classify(control, 0, "", "", False, []) == "ok"
    assert _classify(control, 2, "", "tinysnn: error: bad\n", False, []) == "broken"


def test_a_write_outside_the_allowed_folder_and_a_changed_guard_are_counted(tmp_path: Path) -> None:
    def setup(ctx):  # type: ignore[no-untyped-def]
        ctx.guard(ctx.work / "mine.txt", "user").write_text("mine\n")
        ctx.guard(ctx.work / "s.db", "study").write_text("study\n")
        code = "open('../escaped.txt', 'w').write('x'); open('s.db', 'a').write('y')"
        return [sys.executable, "-c", code]

    row = run_case(Case("g", "writes above its folder", setup), tmp_path)
    assert row["result"] == "accepted" and row["rc"] == 0
    assert row["outside"] == ["escaped.txt"]
    assert row["replaced"] == ["work/s.db"] and row["user_files"] == []
