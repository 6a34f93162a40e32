"""Worker liveness for ask-and-tell: heartbeats, stale trials, and re-queueing their parameters.

Optuna's heartbeat only runs inside ``study.optimize`` (and only on RDB storages), so the runner does
its own: every running trial carries its worker (host, pid, pid namespace) and a heartbeat time in
its system attributes. A RUNNING trial is stale when

* its worker ran on this machine (same host and pid namespace) and that process is gone, or
* its heartbeat is older than ``stale_after_s`` (a worker on another machine, or a hung one).

A stale trial is failed with ``storage.set_trial_state_values(FAIL)``, which raises for a trial that
is already finished, so when two workers see the same stale trial only one wins, and only the
winner re-queues it: ``study.enqueue_trial(params, user_attrs={"retry_of": n, ...})`` with the
trial's weight seed and checkpoint, so that the retry continues where the dead worker stopped.
A worker that dies between the two steps leaves a failed trial without a retry; the next run finds
it (``fail_reason`` set, no trial with ``retry_of`` = its number) and re-queues it. A trial whose
worker died while its parameters were being drawn (no ``sampled`` mark) is failed and not
re-queued: it holds no complete configuration, and the next fresh trial draws in its place
(``search._study.draw_index`` does not count it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Union

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "CARRIED_ATTRS",
    "SAMPLED",
    "Heartbeat",
    "StopSignals",
    "Stopped",
    "abandoned",
    "fail_and_requeue",
    "identity",
    "make_work_dir",
    "note_requeued",
    "pid_alive",
    "raise_if_stopped",
    "reap",
    "remove_dead_work_dirs",
    "remove_work_dir",
    "requeued_by",
    "signals_deferred",
    "stale_reason",
    "trial_id",
    "trial_worker",
]

WORKER_KEY = "tinysnn:worker"
BEAT_KEY = "tinysnn:heartbeat"
CARRIED_ATTRS = (
    "weight_seed",
    "checkpoint",
    "checkpoint_position",
    "variant",
    "n_neurons",
    "quant",
    "scheme",
    "rounding",
    "quant_text",
    "weights_format",
    "vmem_format",
    "vth_format",
)
"""User attributes a retry inherits from the trial it replaces (its seed, checkpoint and what it trains)."""
ORPHAN_GRACE_S = 60.0
SAMPLED = "sampled"
"""User attribute: all of the trial's parameters are drawn (set by the runner before it trains)."""


def abandoned(trial: FrozenTrial) -> bool:
    """A fresh trial that failed before its parameters were all drawn: no configuration to retry."""
    return (
        trial.state == TrialState.FAIL
        and SAMPLED not in trial.user_attrs
        and "retry_of" not in trial.user_attrs
    )


def trial_id(trial: Union[optuna.Trial, FrozenTrial]) -> int:
    """The storage's id of ``trial``, which the storage methods the runner needs take (heartbeats and
    the worker stamp in system attributes, failing a stale trial with ``set_trial_state_values``, the
    constraints attribute): Optuna (4.0 to 5.0) has no public accessor, ``_trial_id`` is the one
    private attribute read, here only."""
    return int(trial._trial_id)


def trial_worker(trial: FrozenTrial) -> Optional[Dict[str, Any]]:
    """The worker that claimed ``trial`` (:func:`identity` of its process: ``host``, ``pid``, ``ns``),
    or None for a trial no worker of this package has claimed.

    Example:
        >>> running = study.get_trials(states=(TrialState.RUNNING,))  # doctest: +SKIP
        >>> holders = {(trial_worker(t) or {}).get("pid") for t in running}  # doctest: +SKIP
    """
    worker = trial.system_attrs.get(WORKER_KEY)
    return worker if isinstance(worker, dict) else None


def identity() -> Dict[str, Any]:
    """This process: host name, pid and pid namespace (containers on one host have their own pids)."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return {"host": socket.gethostname(), "pid": os.getpid(), "ns": ns}


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is alive (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent) is dead for us
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def stale_reason(
    trial: FrozenTrial, stale_after_s: float, me: Optional[Dict[str, Any]] = None, now: Optional[float] = None
) -> Optional[str]:
    """Why a RUNNING trial is stale, or None when its worker may still be alive."""
    me = me or identity()
    now = time.time() if now is None else now
    worker = trial_worker(trial)
    beat = trial.system_attrs.get(BEAT_KEY)
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()
    age = now - float(beat) if beat is not None else float("inf")
    if worker is not None and worker.get("host") == me["host"] and worker.get("ns") == me["ns"]:
        pid = int(worker.get("pid", -1))
        if pid == me["pid"]:
            return None
        if not pid_alive(pid):
            return f"its worker (pid {pid} on {worker['host']}) is gone"
    if age > stale_after_s:
        who = f"{worker.get('host')} pid {worker.get('pid')}" if worker is not None else "an unknown worker"
        return f"no heartbeat from {who} for {age:.0f} s (stale after {stale_after_s:.0f} s)"
    return None


def fail_and_requeue(study: optuna.Study, storage: Any, trial: FrozenTrial, reason: str) -> Optional[int]:
    """Fail ``trial`` and enqueue its parameters again; returns None when another worker got there
    first, or when the trial was still being sampled (failed only: see the module docstring)."""
    try:
        storage.set_trial_user_attr(trial_id(trial), "fail_reason", reason)
        if not storage.set_trial_state_values(trial_id(trial), TrialState.FAIL):
            return None
    except (RuntimeError, optuna.exceptions.OptunaError):  # UpdateFinishedTrialError (Optuna >= 4.x)
        return None
    if SAMPLED not in trial.user_attrs and "retry_of" not in trial.user_attrs:
        return None
    return _enqueue_retry(study, trial, reason)


def _enqueue_retry(study: optuna.Study, trial: FrozenTrial, reason: str) -> int:
    attrs = {k: trial.user_attrs[k] for k in CARRIED_ATTRS if k in trial.user_attrs}
    attrs["retry_of"] = trial.number
    attrs["retry_reason"] = reason
    study.enqueue_trial(dict(trial.params), user_attrs=attrs)
    return trial.number


def reap(study: optuna.Study, storage: Any, stale_after_s: float, log: Callable[[str], None]) -> List[int]:
    """Fail and re-queue the stale RUNNING trials of ``study``, and re-queue orphaned failures.

    Returns:
        The numbers of the trials re-queued.
    """
    me = identity()
    done: List[int] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(t, stale_after_s, me)
        if reason is not None and fail_and_requeue(study, storage, t, reason) is not None:
            log(f"trial {t.number} was running but {reason}: failed and re-queued with its parameters")
            done.append(t.number)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    now = time.time()
    for t in trials:
        if (
            t.state != TrialState.FAIL
            or "fail_reason" not in t.user_attrs
            or t.number in retried
            or abandoned(t)
        ):
            continue
        if t.datetime_complete is not None and now - t.datetime_complete.timestamp() < ORPHAN_GRACE_S:
            continue
        _enqueue_retry(study, t, str(t.user_attrs["fail_reason"]))
        log(f"trial {t.number} failed without a retry: re-queued with its parameters")
        done.append(t.number)
    return done


class Heartbeat:
    """A daemon thread that stamps the running trials of this worker every ``interval_s`` seconds."""

    def __init__(self, storage: Any, interval_s: float) -> None:
        self._storage = storage
        self._interval = float(interval_s)
        self._ids: Set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._me = identity()
        self._thread = threading.Thread(target=self._loop, name="tinysnn-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def add(self, trial_ids: Iterable[int]) -> None:
        """Claim trials: record this worker on them and start beating."""
        ids = list(trial_ids)
        for tid in ids:
            self._storage.set_trial_system_attr(tid, WORKER_KEY, self._me)
            self._storage.set_trial_system_attr(tid, BEAT_KEY, time.time())
        with self._lock:
            self._ids.update(ids)

    def discard(self, trial_id: int) -> None:
        """Stop beating for a finished trial."""
        with self._lock:
            self._ids.discard(trial_id)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = list(self._ids)
            for tid in ids:
                try:
                    self._storage.set_trial_system_attr(tid, BEAT_KEY, time.time())
                except Exception:  # finished meanwhile, or the storage is briefly busy: next beat
                    pass


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: the run stops as on Ctrl-C and re-queues the trials it holds.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way up keeps it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_REQUEUED = "tinysnn_requeued"  # attribute of the exception that stopped a run: the trials re-queued


def note_requeued(exc: BaseException, numbers: List[int]) -> None:
    """Record on ``exc`` (the exception that stopped the run) the trials re-queued because of it."""
    setattr(exc, _REQUEUED, requeued_by(exc) + list(numbers))


def requeued_by(exc: BaseException) -> List[int]:
    """The trials re-queued because ``exc`` stopped the run (:func:`note_requeued`)."""
    return list(getattr(exc, _REQUEUED, []))


class StopSignals:
    """While active (a ``with`` block in the main thread), SIGTERM and SIGHUP raise :class:`Stopped` and
    SIGINT raises KeyboardInterrupt, and the first such signal is kept in :attr:`signum`.

    The runner re-queues its trials on any exception, and the caller reports the stop from
    :attr:`signum`, not from the exception's type: a KeyboardInterrupt raised while numba's dispatcher
    was calling back into Python comes up as ``SystemError: CPUDispatcher(...) returned a result with
    an exception set``, so the type of what arrives says nothing reliable. Inside
    :func:`signals_deferred` a signal is only recorded, and raised when the block ends, so that asking,
    telling and re-queueing a trial are never cut in half; and a signal whose exception something
    swallowed (Python prints "Exception ignored in ..." for one raised inside a finalizer) is raised
    again at the runner's next :func:`raise_if_stopped`. The previous handlers are restored on exit.
    """

    SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
    )

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        global _active_stops
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        _active_stops = self
        return self

    def __exit__(self, *exc: Any) -> None:
        global _active_stops
        _active_stops = None
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        if _deferring == 0:
            self.raise_stop()

    def raise_stop(self) -> None:
        """Raise what the recorded signal stands for (KeyboardInterrupt for SIGINT, else :class:`Stopped`)."""
        if self.signum is None:
            raise RuntimeError("StopSignals.raise_stop: no signal was recorded (a bug: call it after one)")
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(int(self.signum))


_active_stops: Optional[StopSignals] = None
_deferring = 0  # depth of signals_deferred blocks (main thread only: signal handlers run there)


def raise_if_stopped() -> None:
    """Raise the stop a signal asked for, where one was recorded and no :func:`signals_deferred` block is open."""
    if _active_stops is not None and _active_stops.signum is not None and _deferring == 0:
        _active_stops.raise_stop()


@contextlib.contextmanager
def signals_deferred(raise_after: bool = True) -> Iterator[None]:
    """A block that a stop signal does not cut: the signal is recorded and raised when the block ends
    (not at all with ``raise_after=False``, for a block that runs while a stop is already on its way up)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if raise_after:
        raise_if_stopped()


WORK_DIR_KEY = "tinysnn:work_dir:"
"""Study system attribute ``WORK_DIR_KEY + <folder name>``: a worker's work folder, its worker, or None
once removed. Cleanup deletes only folders recorded here, never folders it infers from a name."""


def _study_id(study: optuna.Study, storage: Any) -> int:
    return int(storage.get_study_id_from_name(study.study_name))


def make_work_dir(study: optuna.Study, storage: Any, parent: Path) -> Path:
    """A new work folder for this worker under ``parent``, recorded in the study (for
    :func:`remove_dead_work_dirs`)."""
    path = Path(tempfile.mkdtemp(prefix=f"tmp-{os.getpid()}-", dir=parent))
    storage.set_study_system_attr(
        _study_id(study, storage), WORK_DIR_KEY + path.name, dict(identity(), path=str(path))
    )
    return path


def remove_work_dir(study: optuna.Study, storage: Any, path: Path) -> None:
    """Delete this worker's work folder and mark its record done."""
    shutil.rmtree(path, ignore_errors=True)
    try:
        storage.set_study_system_attr(_study_id(study, storage), WORK_DIR_KEY + path.name, None)
    except Exception:  # the storage fails (the error that stopped the run): the next run marks it
        pass


def remove_dead_work_dirs(study: optuna.Study, storage: Any) -> List[Path]:
    """Delete the recorded work folders of this study's workers on this machine that are gone (kill -9).

    Returns:
        The folders deleted.
    """
    me = identity()
    sid = _study_id(study, storage)
    gone = []
    for key, rec in storage.get_study_system_attrs(sid).items():
        if not key.startswith(WORK_DIR_KEY) or not isinstance(rec, dict):
            continue
        if rec.get("host") != me["host"] or rec.get("ns") != me["ns"] or rec.get("pid") == me["pid"]:
            continue
        if pid_alive(int(rec.get("pid", -1))):
            continue
        path = Path(str(rec.get("path")))
        if path.name == key[len(WORK_DIR_KEY) :]:  # the record names its own folder
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
        storage.set_study_system_attr(sid, key, None)
    return gone
