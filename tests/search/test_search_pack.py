"""``tinysnn-search pack`` / ``unpack``: a study moves whole, and a pack from someone else writes
nothing outside ``--dest``, replaces no study without ``--force``, and a bad one is refused with one
line before anything is written. The crafted packs carry valid checksums and sizes, so what refuses
them is the check under test, not the checksum."""

from __future__ import annotations

import errno
import gc
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import optuna
import pytest

import search.pack
from search.cli import main
from search.pack import PACK_FORMAT, PACK_VERSION, artifact_ref, resolve_artifacts

Member = Union[Tuple[str, bytes], tarfile.TarInfo]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listing(root: Path) -> Dict[str, Tuple[str, str]]:
    """Every entry under ``root`` (links not followed): its kind and, for a file, its SHA-256."""
    seen: Dict[str, Tuple[str, str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                seen[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[rel] = ("dir", "")
            else:
                seen[rel] = ("file", _sha(path.read_bytes()))
    return seen


def _make_study(root: Path, name: str = "tiny", marker: bytes = b"a") -> str:
    """A small SQLite study under ``root`` with the layout of a spec's defaults: ``root/<name>.db`` and
    ``root/<name>/{artifacts,trained,checkpoints}``, one file each; its storage URL."""
    url = f"sqlite:///{root / f'{name}.db'}"
    root.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(url)
        study = optuna.create_study(study_name=name, storage=storage)
        study.tell(study.ask(), 1.0)
        study.set_user_attr("artifact_dir", artifact_ref(url, root / name / "artifacts"))
        storage.engine.dispose()
    for sub, file in (
        ("artifacts", "0b1c2d3e-model"),
        ("trained", "ab12cd34.pt"),
        ("checkpoints", "pop-1.pt"),
    ):
        (root / name / sub).mkdir(parents=True, exist_ok=True)
        (root / name / sub / file).write_bytes(marker * 100 + sub.encode())
    return url


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a SQLite database holding an Optuna study ``tiny`` (the payload of crafted packs)."""
    root = tmp_path_factory.mktemp("source")
    _make_study(root)
    con = sqlite3.connect(str(root / "tiny.db"))
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    return (root / "tiny.db").read_bytes()


def _craft(
    path: Path, members: Iterable[Member], manifest: Optional[Dict[str, Any]] = None, **fields: Any
) -> Path:
    """A pack of ``members`` (name, bytes) or bare TarInfo, with a manifest that lists each (name,
    bytes) member with its true SHA-256 and size (``manifest`` replaces it; ``fields`` update it)."""
    members = list(members)
    files = {m[0]: {"sha256": _sha(m[1]), "size": len(m[1])} for m in members if isinstance(m, tuple)}
    if manifest is None:
        manifest = {"format": PACK_FORMAT, "version": PACK_VERSION, "study": "tiny", "files": files}
    manifest.update(fields)
    blob = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        for m in [*members, ("manifest.json", blob)]:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    return path


def _refused(capsys: pytest.CaptureFixture, argv: List[str], root: Path, *needles: str) -> str:
    """Run ``argv``: exit 2, one error line holding ``needles``, and nothing under ``root`` changed."""
    gc.collect()  # an earlier command's storage closing now would rewrite its SQLite files mid-check
    before = _listing(root)
    assert main(argv) == 2
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinysnn-search: error: "), out.err
    assert "Traceback" not in out.err and out.out == ""
    for needle in needles:
        assert needle in err[0], err[0]
    assert _listing(root) == before
    return err[0]


def _unpack(pack: Path, dest: Path, *extra: str) -> List[str]:
    return ["unpack", str(pack), "--dest", str(dest), *extra]


# -- the normal way ---------------------------------------------------------------------------------


def test_round_trip_restores_study_artifacts_trained_and_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a = tmp_path / "machine-a"
    url = _make_study(a)
    pack = tmp_path / "out" / "tiny.tar.gz"
    assert main(["pack", "--storage", url, "--out", str(pack), "--checkpoints"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "out")) == ["tiny.tar.gz"]  # its staging folder is gone
    dest = tmp_path / "machine-b" / "runs"
    assert main(_unpack(pack, dest)) == 0
    assert "restored study 'tiny'" in capsys.readouterr().out
    assert sorted(os.listdir(dest)) == ["tiny", "tiny.db"]  # no staging folder, no journal left
    for sub in ("artifacts", "trained", "checkpoints"):
        assert _listing(dest / "tiny" / sub) == _listing(a / "tiny" / sub)
    moved_url = f"sqlite:///{dest / 'tiny.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moved = optuna.load_study(study_name="tiny", storage=moved_url)
    assert moved.user_attrs["artifact_dir"] == "tiny/artifacts"  # relative to the database file
    assert resolve_artifacts(moved_url, moved.user_attrs["artifact_dir"]) == str(
        (dest / "tiny" / "artifacts").resolve()
    )
    assert len(moved.trials) == 1 and moved.trials[0].value == 1.0


def test_pack_carries_trained_without_checkpoints_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = _make_study(tmp_path / "a")
    pack = tmp_path / "tiny.tar.gz"
    assert main(["pack", "--storage", url, "--out", str(pack)]) == 0
    with tarfile.open(pack) as tar:
        names = tar.getnames()
    assert names == ["study.db", "artifacts/0b1c2d3e-model", "trained/ab12cd34.pt", "manifest.json"]
    with tarfile.open(pack) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["version"] == PACK_VERSION == 2 and manifest["study"] == "tiny"
    assert manifest["files"]["trained/ab12cd34.pt"] == {"sha256": _sha(b"a" * 100 + b"trained"), "size": 107}


def test_pack_refuses_an_existing_or_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url, here = _make_study(tmp_path / "a"), tmp_path / "o"  # opening the study writes its WAL: look at o/
    here.mkdir()
    (here / "a-file").write_text("x")
    _refused(capsys, ["pack", "--storage", url, "--out", str(here / "a-file")], here, "already exists")
    out = here / "a-file" / "sub" / "tiny.tar.gz"  # a folder under a file: not writable
    _refused(capsys, ["pack", "--storage", url, "--out", str(out)], here, "cannot write", "--out")


def test_pack_says_no_space_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, here = _make_study(tmp_path / "a"), tmp_path / "o"
    here.mkdir()
    real_add = search.pack._add

    def add(tar: tarfile.TarFile, arc: str, path: Path) -> Dict[str, Any]:
        if arc.startswith("trained/"):  # the study's database and artifacts are in the pack by then
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(tar, arc, path)

    monkeypatch.setattr(search.pack, "_add", add)
    out = here / "new" / "p.tar.gz"
    _refused(
        capsys,
        ["pack", "--storage", url, "--out", str(out)],
        here,
        f"no space left on {out.parent}: free space and run again",
    )


def test_pack_refuses_a_file_name_a_pack_cannot_carry(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = _make_study(tmp_path / "a")
    (tmp_path / "a" / "tiny" / "artifacts" / ".hidden").write_text("x")
    (tmp_path / "o").mkdir()
    _refused(
        capsys,
        ["pack", "--storage", url, "--out", str(tmp_path / "o" / "p.tar.gz")],
        tmp_path / "o",
        ".hidden",
        "plain file names",
    )


# -- paths from the pack ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "ABSOLUTE",
        "../x",
        "artifacts/../../../x",
        "artifacts/sub/x",
        "./study.db",
        "trained/.hidden",
        "other/x",
        "artifacts/",
        "artifacts/a\\..\\..\\x",
    ],
)
def test_unpack_refuses_a_member_outside_the_layout(
    name: str, study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    if name == "ABSOLUTE":
        name = str(tmp_path / "victim.txt")
        (tmp_path / "victim.txt").write_text("mine")
    pack = _craft(tmp_path / "p.tar.gz", [("study.db", study_db), (name, b"evil")])
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "not a name of a study's layout")


def test_unpack_refuses_a_member_not_in_the_manifest(
    study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pack = tmp_path / "p.tar.gz"
    files = {"study.db": {"sha256": _sha(study_db), "size": len(study_db)}}
    manifest = {"format": PACK_FORMAT, "version": PACK_VERSION, "study": "tiny", "files": files}
    _craft(pack, [("study.db", study_db), ("../x", b"evil")], manifest)
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "unexpected entry '../x'")


@pytest.mark.parametrize("study", ["../escaped", "ABSOLUTE", "x/../tiny", "..", ".", "", "a b", 7, None])
def test_unpack_refuses_a_study_name_that_is_not_plain(
    study: Any, study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    if study == "ABSOLUTE":
        study = str(tmp_path / "abs" / "study")
    dest = tmp_path / "dest"
    _make_study(dest)  # the study `x/../tiny` would have replaced
    pack = _craft(tmp_path / "p.tar.gz", [("study.db", study_db)], study=study)
    _refused(capsys, _unpack(pack, dest, "--force"), tmp_path, "the manifest's study", "is not a plain name")


@pytest.mark.parametrize(
    "kind",
    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.DIRTYPE],
)
def test_unpack_refuses_links_devices_fifos_and_folders(
    kind: bytes, study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "victim.txt").write_text("mine")
    odd = tarfile.TarInfo("artifacts/x")
    odd.type, odd.linkname = kind, str(tmp_path / "victim.txt")
    files = {
        "study.db": {"sha256": _sha(study_db), "size": len(study_db)},
        "artifacts/x": {"sha256": _sha(b""), "size": 0},
    }
    manifest = {"format": PACK_FORMAT, "version": PACK_VERSION, "study": "tiny", "files": files}
    pack = _craft(tmp_path / "p.tar.gz", [("study.db", study_db), odd], manifest)
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "'artifacts/x' is not a regular file")


def test_unpack_refuses_a_member_twice(
    study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pack = _craft(
        tmp_path / "p.tar.gz", [("study.db", study_db), ("artifacts/a", b"x"), ("artifacts/a", b"x")]
    )
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "'artifacts/a' is in it twice")


# -- sizes and checksums ----------------------------------------------------------------------------


def test_unpack_refuses_a_member_larger_than_its_manifest_size(
    study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    big = b"x" * 100_000
    files = {
        "study.db": {"sha256": _sha(study_db), "size": len(study_db)},
        "artifacts/a": {"sha256": _sha(big[:10]), "size": 10},
    }
    manifest = {"format": PACK_FORMAT, "version": PACK_VERSION, "study": "tiny", "files": files}
    pack = _craft(tmp_path / "p.tar.gz", [("study.db", study_db), ("artifacts/a", big)], manifest)
    _refused(
        capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "'artifacts/a' holds 100000 bytes", "says 10"
    )


def test_unpack_stops_a_stream_at_its_manifest_size(
    study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member that yields more bytes than its size (header and manifest agree) is cut at the cap."""
    pack = _craft(tmp_path / "p.tar.gz", [("study.db", study_db), ("artifacts/a", b"y" * 10)])
    real = tarfile.TarFile.extractfile

    def longer(self: tarfile.TarFile, member: Any) -> Any:
        f = real(self, member)
        return io.BytesIO(b"y" * 10_000_000) if getattr(member, "name", member) == "artifacts/a" else f

    written: Dict[str, int] = {}
    real_open = open

    class Counting:
        def __init__(self, f: Any, name: str) -> None:
            self._f, self._name = f, name

        def write(self, data: bytes) -> int:
            written[self._name] = written.get(self._name, 0) + len(data)
            return self._f.write(data)

        def __enter__(self) -> "Counting":
            return self

        def __exit__(self, *exc: Any) -> None:
            self._f.close()

    monkeypatch.setattr(tarfile.TarFile, "extractfile", longer)
    monkeypatch.setattr(
        search.pack, "open", lambda p, m="r": Counting(real_open(p, m), Path(p).name), raising=False
    )
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "'artifacts/a' is larger than", "10 bytes")
    assert written.get("a", 0) <= 10


def test_unpack_refuses_a_damaged_or_missing_member(
    study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    files = {
        "study.db": {"sha256": _sha(study_db), "size": len(study_db)},
        "artifacts/a": {"sha256": _sha(b"good"), "size": 4},
    }
    manifest = {"format": PACK_FORMAT, "version": PACK_VERSION, "study": "tiny", "files": files}
    pack = _craft(tmp_path / "p.tar.gz", [("study.db", study_db), ("artifacts/a", b"evil")], manifest)
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "artifacts/a is damaged (checksum)")
    pack = _craft(tmp_path / "q.tar.gz", [("study.db", study_db)], dict(manifest))
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "artifacts/a is missing")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, -1])
def test_unpack_refuses_a_truncated_pack(cut: float, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pack = tmp_path / "p.tar.gz"
    assert main(["pack", "--storage", _make_study(tmp_path / "a"), "--out", str(pack)]) == 0
    capsys.readouterr()
    blob = pack.read_bytes()
    pack.write_bytes(blob[: len(blob) - 1 if cut == -1 else int(len(blob) * cut)])
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "truncated or damaged", "copy it again")


# -- the manifest -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"study": None}, "has no 'study'"),
        ({"files": None}, "has no 'files'"),
        ({"study": None, "files": None}, "has no 'study' or 'files'"),
        ({"version": 1}, "pack version 1"),
        ({"format": "zip"}, "is not a tinysnn study pack"),
        ({"extra": 1}, "unknown keys 'extra'"),
        ({"optuna_version": 4}, "versions are not strings"),
        ({"files": []}, "do not list study.db"),
        ({"files": {}}, "do not list study.db"),
        ({"files": "STR"}, "is not {sha256"),  # a version-1 manifest: checksums only
        ({"files": "NOSIZE"}, "is not {sha256"),
        ({"files": "NEGATIVE"}, "is not {sha256"),
        ({"files": "FLOAT"}, "is not {sha256"),
        ({"files": "SHORTSHA"}, "is not {sha256"),
    ],
)
def test_unpack_checks_the_manifest_schema(
    change: Dict[str, Any], needle: str, study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    entry = {"sha256": _sha(study_db), "size": len(study_db)}
    entries = {
        "STR": entry["sha256"],
        "NOSIZE": {"sha256": entry["sha256"]},
        "NEGATIVE": dict(entry, size=-1),
        "FLOAT": dict(entry, size=float(len(study_db))),
        "SHORTSHA": dict(entry, sha256="ab"),
    }
    manifest: Dict[str, Any] = {
        "format": PACK_FORMAT,
        "version": PACK_VERSION,
        "study": "tiny",
        "files": {"study.db": entry},
    }
    for key, value in change.items():
        if value is None:
            del manifest[key]
        elif isinstance(value, str) and value in entries:
            manifest[key] = {"study.db": entries[value]}
        else:
            manifest[key] = value
    pack = _craft(tmp_path / "p.tar.gz", [("study.db", study_db)], manifest)
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, needle)


def test_unpack_refuses_what_is_not_a_pack(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a pack at all")
    _refused(capsys, _unpack(junk, tmp_path / "dest"), tmp_path, "is not a tinysnn study pack")
    _refused(capsys, _unpack(tmp_path / "absent.tar.gz", tmp_path / "dest"), tmp_path, "is not a file")
    no_manifest = tmp_path / "plain.tar.gz"
    with tarfile.open(no_manifest, "w:gz") as tar:
        info = tarfile.TarInfo("study.db")
        tar.addfile(info, io.BytesIO(b""))
    _refused(capsys, _unpack(no_manifest, tmp_path / "dest"), tmp_path, "no manifest")


# -- the database -----------------------------------------------------------------------------------


def test_unpack_refuses_a_database_without_the_study(
    study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dest = tmp_path / "dest"
    _make_study(dest, "other")  # an existing study of the manifest's name, which --force must not touch
    pack = _craft(tmp_path / "p.tar.gz", [("study.db", study_db)], study="other")
    _refused(capsys, _unpack(pack, dest, "--force"), tmp_path, "holds no study 'other'", "it holds: tiny")
    pack = _craft(
        tmp_path / "q.tar.gz", [("study.db", study_db)], study="fresh"
    )  # dest/sub is made, then removed
    _refused(capsys, _unpack(pack, dest / "sub" / "runs"), tmp_path, "holds no study 'fresh'")


def test_unpack_refuses_a_database_with_triggers_or_not_sqlite(
    study_db: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "t.db"
    db.write_bytes(study_db)
    con = sqlite3.connect(str(db))
    con.execute("CREATE TRIGGER t AFTER INSERT ON study_user_attributes BEGIN DELETE FROM trials; END")
    con.commit()
    con.close()
    pack = _craft(tmp_path / "p.tar.gz", [("study.db", db.read_bytes())])
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "holds triggers")
    pack = _craft(tmp_path / "q.tar.gz", [("study.db", b"not sqlite" * 100)])
    _refused(capsys, _unpack(pack, tmp_path / "dest"), tmp_path, "study.db is not a SQLite database")


# -- where it is written ----------------------------------------------------------------------------


def test_unpack_never_replaces_a_study_without_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pack = tmp_path / "p.tar.gz"
    assert main(["pack", "--storage", _make_study(tmp_path / "a", marker=b"n"), "--out", str(pack)]) == 0
    capsys.readouterr()
    dest = tmp_path / "dest"
    for old in ("tiny.db", "tiny.db-wal", "tiny"):  # any one of them is a study there
        dest.mkdir()
        (dest / old).mkdir() if old == "tiny" else (dest / old).write_bytes(b"old")
        _refused(capsys, _unpack(pack, dest), tmp_path, "study 'tiny' already exists", "--force")
        (dest / old).rmdir() if old == "tiny" else (dest / old).unlink()
        dest.rmdir()
    _make_study(dest, marker=b"o")
    (dest / "tiny.db-journal").write_bytes(b"a stale journal")
    _refused(capsys, _unpack(pack, dest), tmp_path, "already exists")
    assert main(_unpack(pack, dest, "--force")) == 0
    capsys.readouterr()
    assert sorted(os.listdir(dest)) == ["tiny", "tiny.db"]  # the old one's journal went with it
    assert (dest / "tiny" / "artifacts" / "0b1c2d3e-model").read_bytes().startswith(b"n")
    assert not (dest / "tiny" / "checkpoints").exists() or not os.listdir(dest / "tiny" / "checkpoints")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(optuna.load_study(study_name="tiny", storage=f"sqlite:///{dest / 'tiny.db'}").trials) == 1


def test_unpack_refuses_a_dest_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pack = tmp_path / "p.tar.gz"
    assert main(["pack", "--storage", _make_study(tmp_path / "a"), "--out", str(pack)]) == 0
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    _refused(capsys, _unpack(pack, tmp_path / "file"), tmp_path, "is not a folder")
    _refused(capsys, _unpack(pack, tmp_path / "file" / "runs"), tmp_path, "is not a folder")


def test_unpack_says_no_space_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = tmp_path / "p.tar.gz"
    assert main(["pack", "--storage", _make_study(tmp_path / "a"), "--out", str(pack)]) == 0
    capsys.readouterr()
    dest = tmp_path / "new" / "runs"
    real_usage = search.pack.shutil.disk_usage
    monkeypatch.setattr(search.pack.shutil, "disk_usage", lambda p: real_usage(p)._replace(free=1000))
    _refused(capsys, _unpack(pack, dest), tmp_path, f"no space left on {dest}", "free space and run again")
    monkeypatch.setattr(search.pack.shutil, "disk_usage", real_usage)
    real_open = open

    class Full:
        def __init__(self, f: Any) -> None:
            self._f = f

        def write(self, data: bytes) -> int:
            self._f.write(data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self) -> "Full":
            return self

        def __exit__(self, *exc: Any) -> None:
            self._f.close()

    monkeypatch.setattr(search.pack, "open", lambda p, m="r": Full(real_open(p, m)), raising=False)
    err = _refused(
        capsys, _unpack(pack, dest), tmp_path, f"no space left on {dest}: free space and run again"
    )
    assert not (tmp_path / "new").exists() and "MB" not in err
