"""Studies that move whole: ``tinysnn-search pack`` and ``unpack``.

A pack is one ``.tar.gz`` file: ``manifest.json`` (format, study, tinysnn and optuna versions, the
SHA-256 of every file), ``study.db`` (the study as a SQLite database: a SQLite study is copied with
SQLite's backup API, so a study being written is copied consistently; any other storage through
``optuna.copy_study``), ``artifacts/`` (the trials' models and pictures) and, with
``--checkpoints``, ``checkpoints/`` (so that an interrupted population resumes where it stopped).

``unpack`` verifies the manifest and every checksum before it writes anything, then lays the study
out as a spec's defaults expect it: ``DEST/<study>.db`` beside ``DEST/<study>/artifacts`` (and
``checkpoints``), so ``tinysnn-search run SPEC`` resumes it there and ``select``, ``export`` and the
dashboard find the artifacts. The study records its artifact folder relative to its SQLite file
(:func:`artifact_ref`), so the same study works on every machine it is unpacked on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, Optional, Union

import optuna

from .errors import SearchError

__all__ = ["PACK_FORMAT", "artifact_ref", "pack_study", "resolve_artifacts", "sqlite_path", "unpack_study"]

PACK_FORMAT = "tinysnn-study-pack"
PACK_VERSION = 1


def sqlite_path(url: str) -> Optional[Path]:
    """The database file of a SQLite storage URL, None for other storages."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return None if path in ("", ":memory:") else Path(path).expanduser()


def artifact_ref(url: str, folder: Union[str, Path]) -> str:
    """How a study records its artifact folder: relative to its SQLite file's folder, else absolute."""
    db = sqlite_path(url)
    folder = Path(folder).resolve()
    if db is not None:
        return os.path.relpath(folder, db.resolve().parent)
    return str(folder)


def resolve_artifacts(url: str, recorded: Optional[str]) -> Optional[str]:
    """The artifact folder a study recorded, on this machine (relative paths from the SQLite file)."""
    if not recorded:
        return None
    db = sqlite_path(url)
    if db is not None and not Path(recorded).is_absolute():
        return str((db.resolve().parent / recorded).resolve())
    return recorded


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_database(url: str, name: str, target: Path) -> None:
    db = sqlite_path(url)
    if db is not None:
        if not db.is_file():
            raise SearchError(f"{db} does not exist: pass the spec or --storage of the study to pack")
        src, dst = sqlite3.connect(str(db)), sqlite3.connect(str(target))
        try:
            src.backup(dst)  # a consistent copy, even while workers write
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file (the source may use WAL)
        finally:
            dst.close()
            src.close()
        return
    optuna.copy_study(from_study_name=name, from_storage=url, to_storage=f"sqlite:///{target}")


def pack_study(url: str, name: str, artifacts: Optional[str], out: Path, checkpoints: bool = False) -> Path:
    """Write the pack of study ``name`` (storage ``url``, artifacts in ``artifacts``) to ``out``.

    Raises:
        SearchError: if the artifact folder is missing, or ``out`` exists.
    """
    from tinysnn.deploy.model import tinysnn_version

    if out.exists():
        raise SearchError(f"{out} already exists: choose another file name")
    folder = Path(artifacts) if artifacts else None
    if folder is None or not folder.is_dir():
        raise SearchError(f"the artifact folder {artifacts} of study {name!r} is not here: pack on the machine "
                          "that trained the study")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "study.db"
        _copy_database(url, name, db)
        files: Dict[str, Path] = {"study.db": db}
        files.update({f"artifacts/{p.name}": p for p in sorted(folder.iterdir()) if p.is_file()})
        if checkpoints:
            ck = folder.parent / "checkpoints"
            files.update({f"checkpoints/{p.name}": p for p in sorted(ck.glob("*.pt"))} if ck.is_dir() else {})
        manifest = {
            "format": PACK_FORMAT, "version": PACK_VERSION, "study": name,
            "tinysnn_version": tinysnn_version(), "optuna_version": optuna.__version__,
            "files": {arc: _sha256(p) for arc, p in files.items()},
        }  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        try:
            with tarfile.open(partial, "w:gz") as tar:
                blob = json.dumps(manifest, indent=1).encode()
                info = tarfile.TarInfo("manifest.json")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
                for arc, p in files.items():
                    tar.add(str(p), arcname=arc, recursive=False)
            os.replace(partial, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return out


def unpack_study(pack: Path, dest: Path) -> Dict[str, str]:
    """Restore a pack under ``dest``; returns the study name, its storage URL and artifact folder.

    Raises:
        SearchError: for a file that is not a pack, a damaged one (checksums), or a study that
            already exists under ``dest`` (nothing is written then).
    """
    try:
        tar = tarfile.open(pack, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise SearchError(
            f"{pack} is not a tinysnn study pack ({exc}): make one with tinysnn-search pack"
        ) from None
    with tar, tempfile.TemporaryDirectory() as tmp:
        try:
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        except (KeyError, AttributeError, ValueError, tarfile.TarError):
            raise SearchError(
                f"{pack} is not a tinysnn study pack (no manifest): make one with tinysnn-search pack"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
            raise SearchError(f"{pack} is not a tinysnn study pack")
        if manifest.get("version") != PACK_VERSION:
            raise SearchError(
                f"{pack} is pack version {manifest.get('version')!r}; this tinysnn reads {PACK_VERSION}"
            )
        name, expected = str(manifest["study"]), dict(manifest["files"])
        for member in tar.getmembers():
            if member.name == "manifest.json":
                continue
            if member.name not in expected or not member.isfile():
                raise SearchError(f"{pack}: unexpected entry {member.name!r}: the pack was changed")
            target = Path(tmp) / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                shutil.copyfileobj(src, dst)
        for arc, digest in expected.items():
            got = Path(tmp) / arc
            if not got.is_file() or _sha256(got) != digest:
                raise SearchError(f"{pack}: {arc} is missing or damaged (checksum): copy the pack again")
        db, home = dest / f"{name}.db", dest / name
        if db.exists() or (home / "artifacts").exists():
            raise SearchError(f"{db} or {home / 'artifacts'} already exists: unpack into another --dest, or "
                              "remove the old copy first")  # fmt: skip
        home.mkdir(parents=True, exist_ok=True)
        for sub in ("artifacts", "checkpoints"):
            if (Path(tmp) / sub).is_dir():
                shutil.move(str(Path(tmp) / sub), str(home / sub))
        (home / "artifacts").mkdir(exist_ok=True)
        shutil.move(str(Path(tmp) / "study.db"), str(db))
    url = f"sqlite:///{db}"
    from ._study import open_storage

    study = optuna.load_study(study_name=name, storage=open_storage(url))
    study.set_user_attr("artifact_dir", artifact_ref(url, home / "artifacts"))  # packs of older studies
    return {"study": name, "storage": url, "artifacts": str(home / "artifacts")}
