"""Studies that move whole: ``tinysnn-search pack`` and ``unpack``.

A pack is one ``.tar.gz`` file: ``study.db`` (the study as a SQLite database: a SQLite study is
copied with SQLite's backup API, so a study being written is copied consistently; any other storage
through ``optuna.copy_study``), ``artifacts/`` (the trials' models and pictures), ``trained/`` (the
FP32 networks that PTQ and FP32 trials share, ``search._trained``, so a resumed study does not train
them again), with ``--checkpoints`` also ``checkpoints/`` (so that an interrupted population resumes
where it stopped), and last ``manifest.json`` (format, version, study, tinysnn and optuna versions,
and the SHA-256 and size of every file).

A pack comes from someone else, so ``unpack`` takes no path from it. Every member must be one of
the layout's names (``study.db``, or ``artifacts/``, ``checkpoints/`` or ``trained/`` and a plain
file name), a regular file, listed once in the manifest with its size; the study name passes
:func:`search.spec.check_study_name`. Only when all of that holds does it write: into a temporary
folder inside ``--dest``, streaming each member with its manifest size as a cap and its checksum
checked, then it opens the staged database with Optuna (the study must be in it) and only then moves
the study into place, as a spec's defaults expect it: ``DEST/<study>.db`` beside
``DEST/<study>/artifacts`` (``trained``, ``checkpoints``), so ``tinysnn-search run SPEC`` resumes it
there and ``select``, ``export`` and the dashboard find the artifacts. An existing study is replaced
only with ``force``, after everything is verified; on any failure nothing is left behind. The study
records its artifact folder relative to its SQLite file (:func:`artifact_ref`), so the same study
works on every machine it is unpacked on.

Version 1 packs (checksums without sizes) are not read: pack the study again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import time
import warnings
import zlib
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple, Union

import optuna

from .errors import SearchError
from .spec import check_study_name

__all__ = [
    "PACK_FORMAT",
    "PACK_VERSION",
    "artifact_ref",
    "pack_study",
    "resolve_artifacts",
    "sqlite_path",
    "unpack_study",
]

PACK_FORMAT = "tinysnn-study-pack"
PACK_VERSION = 2
"""2: the manifest records each file's size as well as its SHA-256, and comes last."""
MANIFEST = "manifest.json"
FOLDERS = ("artifacts", "checkpoints", "trained")
"""The folders of a study's artifact folder that a pack carries (checkpoints only on request)."""
_PLAIN_FILE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MANIFEST_KEYS = {"format", "version", "study", "files", "tinysnn_version", "optuna_version"}
_MANIFEST_MAX = 64 << 20
_CHUNK = 1 << 20
_DAMAGED = (OSError, EOFError, tarfile.TarError, zlib.error)
"""What reading a truncated or damaged ``.tar.gz`` raises."""


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


def _layout_place(arc: object) -> Optional[Tuple[str, ...]]:
    """Where pack member ``arc`` lies in a study's layout: ``("study.db",)`` or ``(folder, file)`` with
    ``folder`` one of :data:`FOLDERS` and ``file`` a plain file name (no separator, not starting with
    ``.``); None for any other name."""
    if arc == "study.db":
        return ("study.db",)
    if not isinstance(arc, str):
        return None
    folder, _, file = arc.partition("/")
    return (folder, file) if folder in FOLDERS and _PLAIN_FILE.fullmatch(file) else None


def _no_space(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in str(exc)


def _full(where: Path, detail: str = "") -> SearchError:
    return SearchError(f"no space left on {where}{detail}: free space and run again")


def _write_error(exc: BaseException, where: Path, fix: str) -> SearchError:
    """One line for a failed write under ``where``: no space left, or the system's reason."""
    if _no_space(exc):
        return _full(where)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return SearchError(f"cannot write {getattr(exc, 'filename', None) or where} ({reason}): {fix}")


def _copy_database(url: str, name: str, target: Path) -> None:
    db = sqlite_path(url)
    if db is not None:
        if not db.is_file():
            raise SearchError(f"{db} does not exist: pass the spec or --storage of the study to pack")
        try:
            src, dst = sqlite3.connect(str(db)), sqlite3.connect(str(target))
            try:
                src.backup(dst)  # a consistent copy, even while workers write
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file (the source may use WAL)
            finally:
                dst.close()
                src.close()
        except sqlite3.Error as exc:
            if _no_space(exc):
                raise  # pack_study names the folder
            raise SearchError(f"cannot copy the study database {db} ({exc}): run pack again") from None
        return
    optuna.copy_study(from_study_name=name, from_storage=url, to_storage=f"sqlite:///{target}")


def _study_files(artifacts: Path, checkpoints: bool) -> Dict[str, Path]:
    """The files a pack carries, by member name: every artifact, the stored FP32 trainings
    (``trained/*.pt``) and, with ``checkpoints``, ``checkpoints/*.pt``, from the folders beside
    ``artifacts``."""
    files = {f"artifacts/{p.name}": p for p in sorted(artifacts.iterdir()) if p.is_file()}
    for sub in ("trained", "checkpoints") if checkpoints else ("trained",):
        folder = artifacts.parent / sub
        if folder.is_dir():
            files.update({f"{sub}/{p.name}": p for p in sorted(folder.glob("*.pt")) if p.is_file()})
    for arc, path in files.items():
        if _layout_place(arc) is None:
            raise SearchError(
                f"{path}: a pack carries plain file names only (letters, digits, '-', '_' and "
                f"'.', not starting with '.'): move it out of {artifacts.parent}"
            )
    return files


class _Hashing:
    """A binary file whose reads update a SHA-256."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f, self.sha256 = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        return data


def _add(tar: tarfile.TarFile, arc: str, path: Path) -> Dict[str, Any]:
    """Add ``path`` as the regular file ``arc``, read once through one descriptor (a file replaced
    meanwhile is packed as it was when opened); its manifest entry."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise SearchError(
            f"cannot read {path} ({exc.strerror}): pack as a user who can read the study"
        ) from None
    with f:
        st = os.fstat(f.fileno())
        info = tarfile.TarInfo(arc)
        info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
        src = _Hashing(f)
        tar.addfile(info, src)
    return {"sha256": src.sha256.hexdigest(), "size": st.st_size}


def _replace(moves: List[Tuple[Path, Path]]) -> None:
    """Rename each (from, to) in order, all in one folder's file system; on failure undo those done."""
    done: List[Tuple[Path, Path]] = []
    try:
        for src, dst in moves:
            os.replace(src, dst)
            done.append((src, dst))
    except OSError:
        for src, dst in reversed(done):
            os.replace(dst, src)
        raise


@contextlib.contextmanager
def _staging_in(where: Path, fix: str) -> Iterator[Path]:
    """A hidden temporary folder inside ``where`` (made with its parents if missing, else one line
    ending in ``fix``), removed at the end; on failure the folders of ``where`` made here too."""
    made = []  # deepest first
    folder = where
    while not os.path.lexists(folder):
        made.append(folder)
        folder = folder.parent
    try:
        try:
            where.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".tinysnn-staging-", dir=where))
        except OSError as exc:
            raise _write_error(exc, where, fix) from None
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                pass
        raise


def pack_study(url: str, name: str, artifacts: Optional[str], out: Path, checkpoints: bool = False) -> Path:
    """Write the pack of study ``name`` (storage ``url``, artifacts in ``artifacts``) to ``out``.

    Everything is staged in a temporary folder beside ``out`` (not in ``$TMPDIR``) and moved to
    ``out`` when complete; a failed pack leaves nothing.

    Raises:
        SearchError: if the study name is not a plain name, the artifact folder is missing, ``out``
            exists, or ``out`` cannot be written (no space left, not writable).
    """
    from tinysnn.deploy.model import tinysnn_version

    check_study_name(name, "study")
    if os.path.lexists(out):
        raise SearchError(f"{out} already exists: choose another file name")
    folder = Path(artifacts) if artifacts else None
    if folder is None or not folder.is_dir():
        raise SearchError(
            f"the artifact folder {artifacts} of study {name!r} is not here: pack on the machine "
            "that trained the study"
        )
    files = _study_files(folder, checkpoints)
    fix = "pass --out in a folder you can write"
    with _staging_in(out.parent, fix) as staging:  # the database copy: beside out, not in $TMPDIR
        partial = staging / "pack.tar.gz"
        try:
            db = staging / "study.db"
            _copy_database(url, name, db)
            listed: Dict[str, Dict[str, Any]] = {}
            with tarfile.open(partial, "w:gz") as tar:
                for arc, path in [("study.db", db), *files.items()]:
                    listed[arc] = _add(tar, arc, path)
                manifest = {
                    "format": PACK_FORMAT,
                    "version": PACK_VERSION,
                    "study": name,
                    "tinysnn_version": tinysnn_version(),
                    "optuna_version": optuna.__version__,
                    "files": listed,
                }
                blob = json.dumps(manifest, indent=1).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = len(blob), int(time.time()), 0o644
                tar.addfile(info, io.BytesIO(blob))
            os.replace(partial, out)
        except (OSError, sqlite3.Error) as exc:
            raise _write_error(exc, out.parent, fix) from None
    return out


def _damaged(pack: Path, exc: BaseException) -> SearchError:
    return SearchError(
        f"{pack} is not a tinysnn study pack, or it is truncated or damaged ({exc}): copy it "
        "again, or make it with tinysnn-search pack"
    )


def _changed(pack: Path, what: str) -> SearchError:
    return SearchError(
        f"{pack}: {what}: the pack was changed or was not made by tinysnn-search pack; "
        "make it again on the machine that trained the study"
    )


def _check_manifest(pack: Path, manifest: Any) -> Tuple[str, Dict[str, Dict[str, Any]]]:
    """The study name and the ``files`` table of a manifest, every field checked against its schema."""
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise SearchError(f"{pack} is not a tinysnn study pack: make one with tinysnn-search pack")
    if manifest.get("version") != PACK_VERSION:
        raise SearchError(
            f"{pack} is pack version {manifest.get('version')!r}; this tinysnn reads version "
            f"{PACK_VERSION} only: pack the study again with this tinysnn"
        )
    missing = [k for k in ("study", "files") if k not in manifest]
    if missing:
        raise _changed(pack, f"its manifest has no {' or '.join(repr(k) for k in missing)}")
    unknown = sorted(set(manifest) - _MANIFEST_KEYS)
    if unknown:
        raise _changed(pack, f"its manifest has unknown keys {', '.join(map(repr, unknown))}")
    if any(not isinstance(manifest.get(k, ""), str) for k in ("tinysnn_version", "optuna_version")):
        raise _changed(pack, "its manifest's versions are not strings")
    name = check_study_name(manifest["study"], f"{pack}: the manifest's study")
    files = manifest["files"]
    if not isinstance(files, dict) or "study.db" not in files:
        raise _changed(pack, "its manifest's files do not list study.db")
    for arc, entry in files.items():
        if _layout_place(arc) is None:
            raise _changed(
                pack,
                f"its manifest lists {arc!r}, not a name of a study's layout (study.db, or "
                f"{' or '.join(f + '/' for f in FOLDERS)} and a plain file name)",
            )
        ok = (
            isinstance(entry, dict)
            and set(entry) == {"sha256", "size"}
            and isinstance(entry["sha256"], str)
            and _SHA256.fullmatch(entry["sha256"]) is not None
            and type(entry["size"]) is int
            and entry["size"] >= 0
        )
        if not ok:
            raise _changed(
                pack, f"its manifest's entry for {arc!r} is not {{sha256: 64 hex digits, size: bytes >= 0}}"
            )
    return name, files


def _read_pack(
    pack: Path, tar: tarfile.TarFile
) -> Tuple[str, Dict[str, Dict[str, Any]], Dict[str, tarfile.TarInfo]]:
    """The study name, the manifest's files and the members by name, once all of it is verified."""
    members = tar.getmembers()  # reads every header: a truncated pack fails here, before any write
    while tar.fileobj.read(_CHUNK):  # to gzip's end: its length and CRC
        pass
    found = [m for m in members if m.name == MANIFEST]
    if len(found) != 1 or not found[0].isfile() or found[0].issparse() or found[0].size > _MANIFEST_MAX:
        raise SearchError(
            f"{pack} is not a tinysnn study pack (no manifest): make one with tinysnn-search pack"
        )
    try:
        stream = tar.extractfile(found[0])
        assert stream is not None  # found[0] is a regular file (checked above)
        manifest = json.loads(stream.read())
    except ValueError:
        raise SearchError(
            f"{pack} is not a tinysnn study pack (its manifest is not JSON): make one with "
            "tinysnn-search pack"
        ) from None
    name, files = _check_manifest(pack, manifest)
    by_name: Dict[str, tarfile.TarInfo] = {}
    for m in members:
        if m is found[0]:
            continue
        if m.name not in files:
            raise _changed(pack, f"unexpected entry {m.name!r} (not in its manifest)")
        if m.name in by_name:
            raise _changed(pack, f"{m.name!r} is in it twice")
        if not m.isfile() or m.issparse():
            raise _changed(
                pack, f"{m.name!r} is not a regular file (a link, device, FIFO, folder or sparse file)"
            )
        if m.size != files[m.name]["size"]:
            raise _changed(
                pack, f"{m.name!r} holds {m.size} bytes, its manifest says {files[m.name]['size']}"
            )
        by_name[m.name] = m
    lacking = sorted(set(files) - set(by_name))
    if lacking:
        raise SearchError(f"{pack}: {lacking[0]} is missing (its manifest lists it): copy the pack again")
    return name, files, by_name


def _existing_base(dest: Path) -> Path:
    """The deepest folder of ``dest`` that exists, refusing ``dest`` or a parent that is not a folder."""
    base = dest
    while not os.path.lexists(base):
        base = base.parent
    if not base.is_dir():
        raise SearchError(f"--dest {dest}: {base} is not a folder: pass a folder to restore the study into")
    return base


def _stage(
    pack: Path,
    tar: tarfile.TarFile,
    members: Dict[str, tarfile.TarInfo],
    files: Dict[str, Dict[str, Any]],
    staging: Path,
) -> None:
    """Stream each member to ``staging/study.db`` or ``staging/home/<folder>/<file>``, refusing one
    that grows past its manifest size before writing past it, then checking its SHA-256."""
    for folder in FOLDERS:
        (staging / "home" / folder).mkdir(parents=True)
    for arc, member in members.items():
        place = _layout_place(arc)
        assert place is not None  # checked with the manifest
        target = staging.joinpath(*place) if place == ("study.db",) else staging.joinpath("home", *place)
        size, want, sha = 0, files[arc], hashlib.sha256()
        src = tar.extractfile(member)
        assert src is not None  # a regular file
        with open(target, "xb") as dst:
            while True:
                try:
                    chunk = src.read(_CHUNK)
                except _DAMAGED as exc:
                    raise _damaged(pack, exc) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > want["size"]:
                    raise _changed(pack, f"{arc!r} is larger than its manifest's {want['size']} bytes")
                sha.update(chunk)
                dst.write(chunk)
        if size != want["size"] or sha.hexdigest() != want["sha256"]:
            raise SearchError(f"{pack}: {arc} is damaged (checksum): copy the pack again")


def _check_database(pack: Path, staging: Path, name: str, artifact_dir: str) -> None:
    """Open the staged ``staging/study.db`` with Optuna: it must hold study ``name``; record
    ``artifact_dir`` in it."""
    db = staging / "study.db"
    try:
        con = sqlite3.connect(str(db))
        try:
            kinds = {row[0] for row in con.execute("SELECT type FROM sqlite_master")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise _changed(pack, f"its study.db is not a SQLite database ({exc})") from None
    if kinds - {"table", "index"}:
        raise _changed(
            pack,
            f"its study.db holds {' and '.join(sorted(kinds - {'table', 'index'}))}s, which an "
            "Optuna study does not",
        )
    storage = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
            names = optuna.get_all_study_names(storage)
            if name not in names:
                raise _changed(
                    pack, f"its study.db holds no study {name!r} (it holds: {', '.join(names) or 'none'})"
                )
            optuna.load_study(study_name=name, storage=storage).set_user_attr("artifact_dir", artifact_dir)
    except SearchError:
        raise
    except Exception as exc:  # sqlalchemy and optuna errors (schema versions, a damaged file)
        if _no_space(exc):
            raise _full(staging.parent) from None  # staging lies in --dest
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise SearchError(
            f"{pack}: Optuna {optuna.__version__} cannot open its study.db ({first}): pack the "
            "study with the same Optuna version, or copy the pack again"
        ) from None
    finally:
        if storage is not None:
            storage.engine.dispose()


def unpack_study(pack: Path, dest: Path, force: bool = False) -> Dict[str, str]:
    """Restore a pack under ``dest``; returns the study name, its storage URL and artifact folder.

    Args:
        force: replace a study of the same name under ``dest`` (once the pack is verified).

    Raises:
        SearchError: for a file that is not a pack, a truncated, damaged or changed one (names,
            sizes, checksums, the study missing from its database), a study already under ``dest``
            without ``force``, ``dest`` not a folder, or no space left; nothing is left behind then.
    """
    base = _existing_base(dest)
    if not pack.is_file():
        raise SearchError(f"{pack} is not a file: pass the .tar.gz that tinysnn-search pack wrote")
    try:
        tar = tarfile.open(pack, "r:gz")
    except _DAMAGED as exc:
        raise _damaged(pack, exc) from None
    with tar:
        try:
            name, files, members = _read_pack(pack, tar)
        except _DAMAGED as exc:
            raise _damaged(pack, exc) from None
        db, home = dest / f"{name}.db", dest / name
        sidecars = [db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal")]  # SQLite's, of that db
        # the study there, its folder first: a folder that cannot move fails before anything moved
        old = [p for p in (home, db, *sidecars) if os.path.lexists(p)]
        if old and not force:
            raise SearchError(
                f"study {name!r} already exists in {dest} ({old[0]}): unpack into another --dest, "
                "or pass --force to replace it"
            )
        need, free = sum(f["size"] for f in files.values()), shutil.disk_usage(str(base)).free
        if need + _CHUNK > free:
            raise _full(dest, f" (the pack needs {need / 1e6:.1f} MB, {free / 1e6:.1f} MB are free)")
        fix = "pass a --dest you can write"
        with _staging_in(dest, fix) as staging:
            try:
                _stage(pack, tar, members, files, staging)
                _check_database(pack, staging, name, artifact_ref(f"sqlite:///{db}", home / "artifacts"))
                (staging / "replaced").mkdir()
                replaced = [(p, staging / "replaced" / p.name) for p in old]
                _replace(replaced + [(staging / "home", home), (staging / "study.db", db)])
            except OSError as exc:
                raise _write_error(exc, dest, fix) from None
    return {"study": name, "storage": f"sqlite:///{db}", "artifacts": str(home / "artifacts")}
