"""Opening a study: the storage URL, the seeded sampler with its constraints, create-or-resume checks."""

from __future__ import annotations

import errno
import os
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Type

import optuna
from optuna.trial import FrozenTrial

from tinysnn.streams import sampler_seed

from ._constraints import public_constraints
from ._workers import abandoned
from .errors import SpecError, StorageError
from .pack import artifact_ref, sqlite_path
from .select import LIMITS_KEY, limit_violations
from .spec import StudySpec

__all__ = [
    "DrawSeededSampler",
    "constraint_values",
    "draw_index",
    "make_sampler",
    "open_storage",
    "open_study",
    "optuna_version",
    "storage_problem",
]

SQLITE_LOCK_TIMEOUT_S = 60.0
"""How long a SQLite connection waits for another worker's write lock before "database is locked"."""


def optuna_version() -> tuple:
    """(major, minor) of the installed Optuna."""
    parts = optuna.__version__.split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", str(url))


def _with_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, older versions to psycopg2; the dev
    extra installs psycopg2-binary. Pick psycopg2 when psycopg 3 is missing.
    """
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def _fast_sqlite(storage: Any) -> None:
    """WAL journal and ``synchronous = NORMAL`` on SQLite connections.

    Each user attribute is one transaction; with the default rollback journal every commit is an
    fsync (about 20 ms), so that recording a trial took a second. In WAL mode a commit survives the
    death of the process (only a power cut can lose the last ones) and readers (status, the
    dashboard) do not block a writing worker. WAL needs a local disk: across machines use PostgreSQL.
    """
    import sqlalchemy

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        try:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
        except Exception:  # a read-only or exotic file system: keep SQLite's defaults
            pass

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections made before the listener existed


def open_storage(url: str, storage_class: Optional[Type[optuna.storages.RDBStorage]] = None) -> Any:
    """An Optuna RDB storage for ``url`` (SQLite, PostgreSQL, MySQL), with a clear error when it fails.

    SQLite files get their folder created, a 60 s lock timeout and the WAL journal so that several
    workers on one machine can share one file. ``storage_class`` is a subclass of RDBStorage to make
    instead (the dashboard's :class:`search._constraints.ListedConstraintsStorage`).

    Raises:
        StorageError: naming the URL, the problem and the fix.
    """
    hint = "use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname"
    shown = safe_url(url)
    if not isinstance(url, str) or "://" not in url:
        raise StorageError(f"storage {shown!r} is not an Optuna storage URL: {hint}")
    kwargs: Dict[str, Any] = {}
    url = _with_driver(url)
    new_file: Optional[Path] = None  # the SQLite file this call creates, if it creates one
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path or path == ":memory:":
            raise StorageError(f"storage {shown!r}: no file in the URL (a study lives in a file): {hint}")
        try:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"storage {shown}: cannot create the folder of {path} ({exc.strerror})"
            ) from None
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
        new_file = None if Path(path).expanduser().exists() else Path(path).expanduser()
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make = storage_class or optuna.storages.RDBStorage
            storage = _retry_first_start(lambda: make(url, **kwargs))
        if url.startswith("sqlite:"):
            storage.get_all_studies()  # a damaged or locked file fails here, before WAL mode writes to it
            _fast_sqlite(storage)
        return storage
    except ImportError as exc:
        raise StorageError(
            f"storage {shown}: a database driver is missing ({exc}); for PostgreSQL: pip install psycopg2-binary"
        ) from None
    except Exception as exc:  # sqlalchemy ArgumentError, OperationalError, NoSuchModuleError, ...
        problem = storage_problem(exc, url)
        if problem is not None:
            if new_file is not None and problem.disk_full:
                _remove_empty_database(new_file)
            raise problem from None
        first = _root_message(exc)
        raise StorageError(
            f"cannot open storage {shown}: {first[:300]}. Check the URL ({hint}) and that the "
            "database server is running and reachable"
        ) from None


def _remove_empty_database(path: Path) -> None:
    """Remove the SQLite file (and its journals) that a failed first open left empty on a full disk."""
    if path.is_file() and path.stat().st_size == 0:
        for leftover in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
            try:
                leftover.unlink()
            except OSError:
                pass


def _root_message(exc: BaseException) -> str:
    """The first line of the innermost cause of ``exc`` (Optuna wraps the database's message in its own)."""
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: What the database says when its file cannot be used as it is (SQLite's messages), and the fix.
_DATABASE_PROBLEMS = (
    (
        "database disk image is malformed",
        "the file is damaged and was left as it was: restore it from a "
        "copy or a pack (tinysnn-search unpack), or recover it with `sqlite3 {db} .recover`",
    ),
    ("file is not a database", "it is not a SQLite database: check the URL, or move the file away"),
    (
        "database is locked",
        "another process held its write lock for over {timeout:g} s: stop or wait for it "
        "(several workers on one machine share a file; across machines use PostgreSQL) and run again",
    ),
    ("unable to open database file", "check that the file and its folder exist and are readable"),
    ("readonly database", "make the file and its folder writable, or copy the study elsewhere"),
)
_DISK_FULL = "database or disk is full"


def storage_problem(exc: BaseException, url: Optional[str]) -> Optional[StorageError]:
    """One line for an exception whose cause is a known database failure (damaged, locked, full disk,
    ...) under storage ``url`` (None: unknown), naming the cause and the fix; None for other exceptions.

    Optuna reports these as "An exception is raised during the commit ... exceeding max length" and
    SQLAlchemy adds a page of SQL: the database's own message, at the end of the chain, is the cause.
    """
    chain = [exc]
    while len(chain) < 20:
        inner = chain[-1].__cause__ or chain[-1].__context__
        if inner is None:
            break
        chain.append(inner)
    text = " | ".join(str(e) for e in chain)
    db = sqlite_path(url) if url else None
    where = f"storage {safe_url(url)}" if url else "the study database"
    full = [e for e in chain if isinstance(e, OSError) and e.errno == errno.ENOSPC]
    if full or _DISK_FULL in text:
        place = (full[0].filename if full else None) or (db.parent if db else where)
        return StorageError(
            f"no space left on {place}, nothing lost: free space and run again", disk_full=True
        )
    for cause, fix in _DATABASE_PROBLEMS:
        if cause in text:
            return StorageError(
                f"{where}: {cause}: " + fix.format(db=db or "FILE", timeout=SQLITE_LOCK_TIMEOUT_S)
            )
    return None


METRIC_NAMES = ["accuracy", "memory_norm", "energy"]
DIRECTIONS: List[Literal["maximize", "minimize"]] = ["maximize", "minimize", "minimize"]

#: What the database says when two workers create the same fresh storage or study at once: the
#: loser of the race retries and then finds the winner's tables (SQLite, PostgreSQL).
_FIRST_START_RACES = (
    "UNIQUE constraint failed",
    "UniqueViolation",
    "duplicate key value",
    "already exists",
    "database is locked",
)


def _retry_first_start(make: Callable[[], Any], attempts: int = 8) -> Any:
    """``make()``, retried after a short random pause when it loses a first-start race.

    A lock held for the whole SQLite lock timeout is no race but another writer: that is raised at once.
    """
    for attempt in range(attempts):
        start = time.monotonic()
        try:
            return make()
        except Exception as exc:  # sqlalchemy IntegrityError / ProgrammingError / OperationalError
            waited_out = (
                "database is locked" in str(exc) and time.monotonic() - start >= SQLITE_LOCK_TIMEOUT_S
            )
            if attempt == attempts - 1 or waited_out or not any(r in str(exc) for r in _FIRST_START_RACES):
                raise
            time.sleep(0.05 + random.random() * 0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def constraint_values(spec: StudySpec, attrs: Dict[str, Any]) -> List[float]:
    """Constraint values of a trial (feasible when all <= 0) from its user attributes."""
    return limit_violations(spec.constraints.limits(), attrs)


def make_sampler(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded, with the accuracy/memory/energy budgets as its constraints.

    Optuna 5's samplers read the constraints the runner told (``Trial.set_constraint``); Optuna 4's
    take them through ``constraints_func`` (:mod:`search._constraints`).

    Raises:
        SpecError: for a sampler this Optuna cannot provide.
    """
    sm = spec.sampler
    cf: Optional[Callable[[FrozenTrial], Sequence[float]]] = None
    if spec.constraints.active and not public_constraints():

        def cf(trial: FrozenTrial) -> Sequence[float]:  # noqa: E306
            return constraint_values(spec, trial.user_attrs)

    pop = sm.population_size or max(10, spec.study.population)
    S = optuna.samplers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if sm.name == "tpe":
            return S.TPESampler(
                seed=seed,
                n_startup_trials=sm.startup_trials,
                multivariate=True,
                group=True,
                constant_liar=True,
                constraints_func=cf,
            )
        if sm.name == "nsga2":
            return S.NSGAIISampler(population_size=pop, seed=seed, constraints_func=cf)
        if sm.name == "nsga3":
            return S.NSGAIIISampler(population_size=pop, seed=seed, constraints_func=cf)
        if sm.name == "gp":
            constrained = spec.constraints.active
            need = (4, 5) if constrained else (4, 4)
            if optuna_version() < need:
                raise SpecError(
                    f"sampler.name = 'gp': multi-objective{' constrained' if constrained else ''} GPSampler needs "
                    f"Optuna >= {need[0]}.{need[1]} (found {optuna.__version__}); use tpe or nsga2, or upgrade Optuna"
                )
            return S.GPSampler(seed=seed, n_startup_trials=sm.startup_trials, constraints_func=cf)
        return S.RandomSampler(seed=seed)


def draw_index(study: optuna.Study, number: int) -> int:
    """Which fresh draw of the study trial ``number`` is (0 for the first), a retry counting as the
    trial it re-runs.

    Fresh draws are the trials that are not retries, less those abandoned while being sampled
    (:func:`search._workers.abandoned`: a retry would have nothing to re-run, so the next fresh trial
    draws in their place). The index of a draw is then the same whether the study ran in one go or
    was stopped and resumed, since a resumed run adds only retries, so it seeds the draw
    (:class:`DrawSeededSampler`) and the trial's weights; and it differs between trials asked at once
    by several workers.
    """
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    while "retry_of" in by_number[number].user_attrs:
        number = int(by_number[number].user_attrs["retry_of"])
    return sum(1 for t in trials if t.number < number and "retry_of" not in t.user_attrs and not abandoned(t))


class DrawSeededSampler(optuna.samplers.BaseSampler):
    """The spec's sampler, re-created before each trial with a seed derived from the study's seed and
    the trial's :func:`draw_index`.

    A sampler's random stream otherwise lives in the process: a resumed run would start it afresh
    and draw other trials than an uninterrupted one, and workers started together would draw alike.
    Seeded per draw, a trial's parameters depend only on the trials stored before it and its index,
    so a study stopped and resumed any number of times on one worker draws the trials of an
    uninterrupted one, and concurrent workers (different indices) draw apart.
    """

    def __init__(self, spec: StudySpec) -> None:
        self._spec = spec
        self._inner = make_sampler(spec, spec.study.seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        draw = draw_index(study, trial.number)  # a retry's parameters are fixed; its draw is its first's
        self._inner = make_sampler(self._spec, sampler_seed(self._spec.study.seed, draw))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> Dict[str, Any]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: Dict[str, Any]
    ) -> Dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: Any, values: Optional[Sequence[float]]
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def _changed_keys(old: Any, new: Any, prefix: str = "") -> List[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: List[str] = []
        for k in sorted(set(old) | set(new)):
            out += _changed_keys(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if old == new else [prefix or "(root)"]


def _read_only(path: Path) -> bool:
    return not os.access(path, os.W_OK)


def open_study(spec: StudySpec, storage: Any) -> optuna.Study:
    """Create the spec's study, or load it when it exists (``load_if_exists``), and check it.

    A resumed study must come from the same spec (same data, space, objectives and seed); the
    budget, population, device and sampler may change. The sampler is seeded per draw
    (:class:`DrawSeededSampler`): a resumed study draws the trials an uninterrupted one would.

    Raises:
        SpecError: if the study exists with other directions or from another spec.
        StorageError: if the storage refuses the study.
    """
    name = spec.study.name
    db = sqlite_path(spec.study.storage_url)
    for path in [db, db.parent] if db is not None and db.exists() else []:
        if _read_only(path):
            raise StorageError(
                f"{path} is read-only: a study writes to its database and that folder; "
                "make them writable or copy the study elsewhere (tinysnn-search pack/unpack)"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = _retry_first_start(
                lambda: optuna.create_study(
                    storage=storage,
                    study_name=name,
                    directions=DIRECTIONS,
                    sampler=optuna.samplers.RandomSampler(seed=spec.study.seed),
                    load_if_exists=True,
                )
            )
    except Exception as exc:
        problem = storage_problem(exc, spec.study.storage_url)
        if problem is not None:
            raise problem from None
        raise StorageError(f"cannot create or load study {name!r}: {_root_message(exc)[:300]}") from None
    dirs = [d.name.lower() for d in study.directions]
    if dirs != DIRECTIONS:
        raise SpecError(
            f"study {name!r} already exists with directions {dirs}, not {DIRECTIONS}: "
            "give [study] another name"
        )
    stored = study.user_attrs.get("spec_fingerprint")
    science = spec.science()
    if stored is None and study.get_trials(deepcopy=False):
        raise SpecError(
            f"study {name!r} already holds trials that tinysnn-search did not make: give [study] another name"
        )
    if stored is not None and stored not in spec.fingerprints():
        changed = _changed_keys(study.user_attrs.get("spec_science", {}), science)
        raise SpecError(
            f"study {name!r} was created from another spec (changed: {', '.join(changed[:8]) or 'unknown'}); "
            "resume it with the spec it was created from, or give [study] a new name for the new spec"
        )
    if stored is None:
        study.set_user_attr("spec_fingerprint", spec.fingerprint())
        study.set_user_attr("spec_science", science)
        study.set_user_attr("spec_source", spec.source or "")
    study.set_user_attr("trials", spec.study.trials)
    # relative to the SQLite file: the same on every machine the study is unpacked on (search.pack)
    study.set_user_attr(
        "artifact_dir", artifact_ref(spec.study.storage_url, spec.study.artifact_dir / "artifacts")
    )
    study.set_user_attr("energy_objective", spec.objectives.energy)
    study.set_user_attr(LIMITS_KEY, spec.constraints.limits())  # a resumed older study gets the defaults
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.set_metric_names(METRIC_NAMES)
    study.sampler = DrawSeededSampler(spec)
    return study
