"""Run a study: create or resume it, ask a population of trials, train them together, tell each.

The loop (batched ask-and-tell):

1. Load the data first (a missing dataset fails before anything is created), open the storage,
   create or resume the study (``search._study``).
2. Fail and re-queue the trials left RUNNING by dead workers (``search._workers``).
3. While complete trials + trials running elsewhere < the budget: ask up to ``population`` trials
   (a re-queued trial comes back first, with its parameters), reject impossible combinations
   (PRUNED, reason in ``rejected``), group the rest into populations (re-queued trials with their
   checkpoint's population; new trials by size), train each population, upload artifacts and tell.
   A PTQ or FP32 trial whose FP32 training is stored, or trained by an earlier trial of the batch,
   is evaluated from the stored network instead (``search._trained``: train once, quantize many).
4. Anything that stops the run (an error, Ctrl-C, SIGTERM, SIGHUP) fails and re-queues the trials it
   held, so that no trial is lost; the same command resumes the study.
5. Cleanup deletes only what the study recorded: the work folders of its dead workers on this machine
   (``search._workers.make_work_dir``) and the checkpoints its trials point at once no trial needs them.

The budget is the study's total of COMPLETE trials (``MaxTrialsCallback`` semantics), so running
the command again after a crash, or on a second machine, never overshoots it.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import secrets
import shutil
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FixedTrial, TrialState

from tinysnn.network import check_memory
from tinysnn.sim import default_backend
from tinysnn.streams import per_trial_weight_seed
from tinysnn.train import RunSpec

from . import _workers as W
from ._checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ._constraints import tell_constraints
from ._images import missing_note
from ._study import (
    constraint_values,
    draw_index,
    open_storage,
    open_study,
    storage_problem,
)
from ._trained import TrainedNetworks, shares_training, training_fingerprint, training_seed
from .errors import CheckpointError, SearchError, SpecError
from .objective import (
    CheckpointHook,
    Context,
    Member,
    Outcome,
    config_attrs,
    evaluate_population,
    load_context,
)
from .space import Rejected, TrialConfig
from .spec import StudySpec

__all__ = ["RunReport", "run_study"]

_SURVIVOR_POLL_S = 5.0  # how often a worker whose budget is held by others checks on them
_MAX_DUPLICATES = 20  # consecutive duplicate draws after which the space counts as exhausted
_SAMPLING_WAIT_S = 5.0  # how long a new trial waits for an earlier one to finish sampling
_LEFTOVER_AGE_S = 60.0  # a temporary checkpoint older than this belongs to a dead worker
_ARTIFACT_TYPES = {".pt": "application/octet-stream"}  # mimetypes guesses a SNES page table for .pt


@dataclass
class RunReport:
    """What one run of a study did."""

    study_name: str
    storage_url: str
    artifact_dir: str
    budget: int
    complete: int = 0
    told: List[int] = field(default_factory=list)
    rejected: int = 0
    requeued: List[int] = field(default_factory=list)


class _AtomicArtifactStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store, writing each artifact to a temporary name that is renamed
    when complete and removed when the write fails (a full disk leaves no partial artifact)."""

    def __init__(self, base_path: str) -> None:
        super().__init__(base_path)
        self._root = Path(base_path)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store ``content_body`` as ``artifact_id`` (a name Optuna makes), whole or not at all."""
        path = self._root / Path(artifact_id).name
        tmp = path.with_name(path.name + ".partial")
        try:
            with open(tmp, "wb") as f:
                shutil.copyfileobj(content_body, f)
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename is None:
                exc.filename = str(path)
            raise


@dataclass
class _Held:
    trial: optuna.Trial
    member: Member


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _bar_safe(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


def _count(study: optuna.Study) -> Dict[TrialState, int]:
    out: Dict[TrialState, int] = {s: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state] += 1
    return out


def run_study(
    spec: StudySpec,
    *,
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
    on_checkpoint: Optional[CheckpointHook] = None,
) -> RunReport:
    """Run ``spec``'s study until it holds ``spec.study.trials`` complete trials.

    ``on_checkpoint(path, next_sample)`` is called after each population checkpoint is written
    (e.g. to watch progress, or in tests to stop a worker mid-trial).

    Example:
        >>> from search import load_spec, run_study
        >>> report = run_study(load_spec("studies/quickstart.toml").replace(trials=4))  # doctest: +SKIP

    Raises:
        SpecError: bad spec or data, an artifact folder that cannot be made (before the study exists).
        StorageError: the storage cannot be opened, or fails (damaged, locked, a full disk: the
            database's own cause); a full disk under the artifacts ("no space left on PATH").
        CheckpointError: a re-queued trial's checkpoint is corrupt (its trials are re-queued again).
    """
    log = log or (_bar_safe if progress else _stderr)
    folder = spec.study.artifact_dir.resolve()
    try:
        return _run(spec, folder, progress, log, on_checkpoint)
    except SearchError:
        raise
    except Exception as exc:  # a full disk, a damaged or locked database: one line with the cause
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and exc.filename is None:
            exc.filename = str(folder)
        problem = storage_problem(exc, spec.study.storage_url)
        if problem is not None:
            raise problem from None
        raise


def _check_run_memory(spec: StudySpec, ctx: Context) -> None:
    """Refuse, from the sizes alone, a run whose population, spike trains or spike counts would not
    fit (:func:`tinysnn.network.check_memory`), before a study exists."""
    assign = ctx.assign if ctx.assign is not None else ctx.train
    backend = default_backend(ctx.device) if spec.study.backend == "auto" else spec.study.backend
    check_memory(
        spec.study.population,
        ctx.n_input,
        spec.space.max_neurons,
        time_steps=spec.encoding.time_steps,
        batch_size=RunSpec.batch_size,
        eval_samples=len(assign) + len(ctx.test),
        backend=backend,
        device=ctx.device,
    )


def _run(
    spec: StudySpec,
    folder: Path,
    progress: bool,
    log: Callable[[str], None],
    on_checkpoint: Optional[CheckpointHook],
) -> RunReport:
    # data first: a missing dataset creates nothing; [fidelity]'s subset when the spec has one
    ctx = load_context(spec.at_search_fidelity(), folder, progress)
    _check_run_memory(spec, ctx)  # before a study exists
    _check_folder(folder)
    url = spec.study.storage_url
    storage = open_storage(url)
    study = open_study(spec, storage)
    store = _AtomicArtifactStore(str(_mkdir(folder / "artifacts")))
    report = RunReport(spec.study.name, url, str(folder), spec.study.trials)
    report.requeued = W.reap(study, storage, spec.study.stale_after_s, log)
    note = missing_note()
    if note is not None:
        log(note)
    _collect_garbage(study, folder / "checkpoints")
    W.remove_dead_work_dirs(study, storage)
    bar = _bar(spec, study, progress)
    ctx.work_dir = W.make_work_dir(study, storage, folder)  # one per worker, recorded in the study
    try:
        with W.Heartbeat(storage, spec.study.heartbeat_s) as beat:
            while True:
                W.raise_if_stopped()  # a stop whose exception something swallowed: here at the latest
                counts = _count(study)
                remaining = spec.study.trials - counts[TrialState.COMPLETE] - counts[TrialState.RUNNING]
                if remaining <= 0:
                    if counts[TrialState.RUNNING] == 0:
                        break
                    # other workers hold the rest of the budget: stay until they finish, and re-queue
                    # (then run) the trials of any of them that dies meanwhile
                    time.sleep(min(spec.study.heartbeat_s, _SURVIVOR_POLL_S))
                    report.requeued += W.reap(study, storage, spec.study.stale_after_s, log)
                    continue
                n = min(spec.study.population, remaining)
                held = _ask(study, storage, spec, ctx, n, beat, report, log)
                _train_and_tell(study, storage, spec, ctx, held, beat, store, report, bar, log, on_checkpoint)
    finally:
        if bar is not None:
            bar.close()
        W.remove_work_dir(study, storage, ctx.work_dir)
    _collect_garbage(study, folder / "checkpoints")
    report.complete = _count(study)[TrialState.COMPLETE]
    return report


def _check_folder(folder: Path) -> None:
    """:class:`SpecError` when the artifact folder cannot be made: it, or a folder above it, is a file."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise SpecError(
                    f"study.artifacts: {path} is a file, so the folder {folder} cannot be made there: "
                    "choose another [study] artifacts folder or move the file"
                )
            if not os.access(path, os.W_OK | os.X_OK):
                raise SpecError(
                    f"study.artifacts: {path} is not writable, so {folder} cannot be made or "
                    "written: make it writable or choose another [study] artifacts folder"
                )
            return


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _bar(spec: StudySpec, study: optuna.Study, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    done = _count(study)[TrialState.COMPLETE]
    return tqdm(
        total=spec.study.trials,
        initial=min(done, spec.study.trials),
        desc=spec.study.name,
        unit="trial",
        dynamic_ncols=True,
    )


def _over_budget(study: optuna.Study, number: int, budget: int) -> bool:
    """Whether trial ``number``, just asked, would pass the budget.

    The COMPLETE trials and the RUNNING ones asked before it (lower numbers) are the claims on the
    budget. Trial numbers are unique and increasing, so of workers that counted the same room and
    asked at once, the later trials yield and the budget holds exactly.
    """
    live = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    return sum(1 for t in live if t.state == TrialState.COMPLETE or t.number < number) >= budget


def _duplicate_of(study: optuna.Study, number: int, params: Dict[str, Any]) -> Optional[int]:
    """A trial asked before ``number`` (lower number) that trains the same parameters, if any.

    Workers started together may draw the same configuration; the later trial yields, as for the
    budget, and its worker asks again. An earlier trial still being sampled (no ``sampled`` mark
    yet) is waited for, up to a few seconds, so that its parameters are complete when compared.
    """
    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    deadline = time.time() + _SAMPLING_WAIT_S
    while True:
        earlier = [t for t in study.get_trials(deepcopy=False, states=states) if t.number < number]
        pending = [t for t in earlier if t.state == TrialState.RUNNING and W.SAMPLED not in t.user_attrs]
        if not pending or time.time() > deadline:
            break
        time.sleep(0.05)
    for t in earlier:
        if t.params == params:
            return t.number
    return None


def _tell_pruned(study: optuna.Study, storage: Any, spec: StudySpec, trial: optuna.Trial) -> None:
    """Tell ``trial`` PRUNED. Under ``[constraints]`` it is infeasible first: its values break every limit
    (it has no objectives, :func:`search.select.limit_violations`), as Optuna 4's ``constraints_func``
    recorded them for a pruned trial, so that the samplers see the study as they always did."""
    if spec.constraints.active:
        tell_constraints(trial, storage, constraint_values(spec, trial.user_attrs))
    study.tell(trial, state=TrialState.PRUNED)


def _ask(
    study: optuna.Study,
    storage: Any,
    spec: StudySpec,
    ctx: Context,
    n: int,
    beat: W.Heartbeat,
    report: RunReport,
    log: Callable[[str], None],
) -> List[_Held]:
    """Ask trials until ``n`` trainable ones are held; impossible combinations are told PRUNED."""
    held: List[_Held] = []
    limit = 100 + 20 * spec.study.trials
    duplicates = 0
    try:
        while len(held) < n:
            with W.signals_deferred():  # a trial asked is held or told before a stop can land
                trial = study.ask()
                beat.add([W.trial_id(trial)])
                if _over_budget(study, trial.number, spec.study.trials):
                    trial.set_user_attr("released", "over budget: workers asking at once; the others hold it")
                    _tell_pruned(study, storage, spec, trial)
                    beat.discard(W.trial_id(trial))
                    break
                try:
                    config = spec.space.suggest(trial, ctx.n_input)
                except Rejected as exc:
                    trial.set_user_attr("rejected", str(exc))
                    _tell_pruned(study, storage, spec, trial)
                    beat.discard(W.trial_id(trial))
                    report.rejected += 1
                    log(f"trial {trial.number} rejected before training: {exc}")
                    if report.rejected > limit:
                        raise SearchError(
                            f"{report.rejected} sampled combinations were impossible (last: {exc}): "
                            "narrow [space.bits] so that most formats are valid"
                        ) from None
                    continue
                trial.set_user_attr(W.SAMPLED, True)
                fresh = "retry_of" not in trial.user_attrs and duplicates < _MAX_DUPLICATES
                twin = _duplicate_of(study, trial.number, trial.params) if fresh else None
                if twin is not None:
                    trial.set_user_attr("released", f"same configuration as trial {twin}")
                    _tell_pruned(study, storage, spec, trial)
                    beat.discard(W.trial_id(trial))
                    duplicates += 1  # the sampler's stream has moved on: the next ask draws anew
                    continue
                for key, value in config_attrs(config).items():
                    trial.set_user_attr(key, value)
                seed = trial.user_attrs.get("weight_seed")
                if seed is None:
                    seed = _weight_seed(study, spec, config, trial.number)
                    trial.set_user_attr("weight_seed", seed)
                fingerprint = training_fingerprint(spec, config, seed) if shares_training(config) else None
                if fingerprint is not None:
                    trial.set_user_attr("training_fingerprint", fingerprint)
                held.append(
                    _Held(
                        trial,
                        Member(trial.number, dict(trial.params), config, int(seed), fingerprint=fingerprint),
                    )
                )
    except BaseException as exc:
        _requeue(study, storage, [h.trial for h in held], exc, beat, report, log)
        raise
    return held


def _weight_seed(study: optuna.Study, spec: StudySpec, config: TrialConfig, number: int) -> int:
    """A new trial's weight seed: its training's (common random numbers) or, per trial, its draw's."""
    if spec.study.weight_seed == "per_trial":  # by draw, not trial number: a resumed study seeds alike
        return per_trial_weight_seed(spec.study.seed, draw_index(study, number))
    return training_seed(spec, config)


_Plan = Tuple[List[Member], Path, Optional[Checkpoint]]


def _plan(
    study: optuna.Study,
    spec: StudySpec,
    ctx: Context,
    held: List[_Held],
    folder: Path,
    networks: TrainedNetworks,
    log: Callable[[str], None],
) -> Tuple[List[_Plan], "OrderedDict[str, List[Member]]"]:
    """Populations to train, and the trials to evaluate from a stored network, by training fingerprint.

    Populations: re-queued trials with their checkpoint's population, new ones by group key. A new
    trial that trains in FP32 waits for the stored network of its fingerprint when one is stored or
    an earlier trial of this batch trains it.
    """
    plans: List[_Plan] = []
    fresh: List[_Held] = []
    by_ckpt: "OrderedDict[str, List[_Held]]" = OrderedDict()
    for h in held:
        path = h.trial.user_attrs.get("checkpoint")
        if path and Path(path).is_file():
            by_ckpt.setdefault(path, []).append(h)
        else:
            if path:
                log(f"trial {h.trial.number}: checkpoint {path} is gone; training from sample 0")
            fresh.append(h)
    for path, group in by_ckpt.items():
        ckpt = load_checkpoint(path, spec.fingerprint())
        slots: Dict[int, _Held] = {}
        for h in group:
            pos = h.trial.user_attrs.get("checkpoint_position")
            if (
                isinstance(pos, int)
                and 0 <= pos < len(ckpt.trials)
                and pos not in slots
                and ckpt.params[pos] == h.member.params
            ):
                slots[pos] = h
            else:
                fresh.append(h)
        if not slots:
            continue
        members = []
        for pos, (num, params, seed) in enumerate(zip(ckpt.trials, ckpt.params, ckpt.seeds)):
            if pos in slots:
                members.append(dataclasses.replace(slots[pos].member, seed=int(seed)))
            else:  # a ghost: trained along so that every network sees the same population, never told
                try:
                    cfg = spec.space.suggest(FixedTrial(params), ctx.n_input)
                except (Rejected, ValueError) as exc:
                    raise CheckpointError(
                        f"checkpoint {path}: trial {num}'s parameters no longer fit the "
                        f"space ({exc}): delete the file to restart its trials"
                    ) from None
                members.append(Member(num, params, cfg, int(seed), live=False))
        log(
            f"trials {[m.number for m in members if m.live]} continue from {path} at sample {ckpt.next_sample}"
        )
        plans.append((members, _checkpoint_path(folder, min(slots[p].trial.number for p in slots)), ckpt))
    trained = {m.fingerprint for members, _, _ in plans for m in members if m.fingerprint is not None}
    waiting: "OrderedDict[str, List[Member]]" = OrderedDict()
    groups: "OrderedDict[Tuple[Any, ...], List[_Held]]" = OrderedDict()
    for h in fresh:
        fp = h.member.fingerprint
        if fp is not None:
            if fp in trained or networks.path(fp).is_file():
                waiting.setdefault(fp, []).append(h.member)
                continue
            trained.add(fp)
        groups.setdefault(h.member.config.group_key(spec.study.group), []).append(h)
    for group in groups.values():
        plans.append(([h.member for h in group], _checkpoint_path(folder, group[0].trial.number), None))
    return plans, waiting


def _train_and_tell(
    study: optuna.Study,
    storage: Any,
    spec: StudySpec,
    ctx: Context,
    held: List[_Held],
    beat: W.Heartbeat,
    store: Any,
    report: RunReport,
    bar: Any,
    log: Callable[[str], None],
    on_checkpoint: Optional[CheckpointHook],
) -> None:
    by_number = {h.trial.number: h for h in held}
    pending = set(by_number)
    folder = _mkdir(spec.study.artifact_dir.resolve() / "checkpoints")
    networks = TrainedNetworks(spec.study.artifact_dir.resolve() / "trained", log)

    def tell(outcomes: List[Outcome]) -> None:
        for o in outcomes:
            with W.signals_deferred():  # told and no longer pending, or neither
                _tell(study, storage, spec, by_number[o.number].trial, o, store, log)
                beat.discard(W.trial_id(by_number[o.number].trial))
                pending.discard(o.number)
                report.told.append(o.number)
            if bar is not None:
                bar.update(1)

    def train(members: List[Member], path: Path, resume: Optional[Checkpoint]) -> None:
        if resume is not None:  # a copy under this population's name before the retries point at it
            save_checkpoint(path, dataclasses.replace(resume, trials=[m.number for m in members]))
        for pos, m in enumerate(members):
            if m.live:
                by_number[m.number].trial.set_user_attr("checkpoint", str(path))
                by_number[m.number].trial.set_user_attr("checkpoint_position", pos)
        tell(evaluate_population(ctx, members, path, resume, log, on_checkpoint, networks))
        if not any(m.number in pending for m in members):
            path.unlink(missing_ok=True)

    try:
        plans, waiting = _plan(study, spec, ctx, held, folder, networks, log)
        for members, path, resume in plans:
            train(members, path, resume)
        for fp, members in waiting.items():
            stored = networks.load(fp)
            if stored is None:  # gone or damaged: the first trial trains it afresh
                train(members[:1], _checkpoint_path(folder, members[0].number), None)
                members = members[1:]
                if not members:
                    continue
                stored = networks.load(fp)
                if stored is None:
                    raise SearchError(f"{networks.path(fp)} was stored but cannot be read back")
            numbers, params = [m.number for m in members], [m.params for m in members]
            ckpt = stored.checkpoint(spec.fingerprint(), numbers, params)
            log(
                f"trials {numbers} evaluate the network trial {stored.trained_by} "
                f"trained ({networks.path(fp).name})"
            )
            tell(evaluate_population(ctx, members, None, ckpt, log, trained_by=stored.trained_by))
    except BaseException as exc:
        _requeue(study, storage, [by_number[n].trial for n in sorted(pending)], exc, beat, report, log)
        raise


def _requeue(
    study: optuna.Study,
    storage: Any,
    trials: List[optuna.Trial],
    exc: BaseException,
    beat: W.Heartbeat,
    report: RunReport,
    log: Callable[[str], None],
) -> None:
    """Fail the trials this worker holds and enqueue their parameters again: a stopped run loses none."""
    reason = f"worker stopped ({type(exc).__name__}: {str(exc)[:200]})"
    done = []
    with W.signals_deferred(raise_after=False):  # a second signal does not cut the re-queue short
        for trial in trials:
            beat.discard(W.trial_id(trial))
            try:
                frozen = storage.get_trial(W.trial_id(trial))
                if W.fail_and_requeue(study, storage, frozen, reason) is not None:
                    done.append(trial.number)
            except (
                Exception
            ) as err:  # the storage fails too (a full disk): the next run reaps it (dead worker)
                log(
                    f"trial {trial.number} could not be re-queued now ({type(err).__name__}); it stays RUNNING "
                    "until the next run, which re-queues it"
                )
    report.requeued += done
    W.note_requeued(exc, done)
    if trials:
        log(
            f"stopped: trials {[t.number for t in trials]} failed and re-queued with their parameters; "
            "run the same command to continue"
        )


def _tell(
    study: optuna.Study,
    storage: Any,
    spec: StudySpec,
    trial: optuna.Trial,
    o: Outcome,
    store: Any,
    log: Callable[[str], None],
) -> None:
    attrs = dict(o.attrs)
    attrs["energy"] = o.values[2]
    if spec.constraints.active:
        values = constraint_values(spec, attrs)
        attrs["feasible"] = all(v <= 0 for v in values)
        tell_constraints(trial, storage, values)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    for path in o.files.values():
        upload_artifact(
            artifact_store=store,
            file_path=str(path),
            study_or_trial=trial,
            mimetype=_ARTIFACT_TYPES.get(path.suffix),
        )
    for path in o.files.values():
        path.unlink(missing_ok=True)
    frozen = study.tell(trial, list(o.values), skip_if_finished=True)
    if frozen.state != TrialState.COMPLETE:
        log(
            f"trial {trial.number} had been failed by another worker (it looked stale); its result is dropped"
        )
        return
    acc, mem, energy = o.values
    log(
        f"trial {trial.number}: {attrs['variant']} N={attrs['n_neurons']} {attrs['quant']} "
        f"({attrs['quant_text']}): accuracy {100 * acc:.1f} %, M_norm {mem:.4f}, energy {energy:.3g} J/sample"
    )


def _collect_garbage(study: optuna.Study, folder: Path) -> None:
    """Delete the checkpoints of ``folder`` that this study wrote and no waiting or running trial needs.

    Only files a trial of the study records (its ``checkpoint`` attribute, set as the file is written)
    are candidates: other files in the folder, whatever their names, are never touched.
    """
    trials = study.get_trials(deepcopy=False)
    recorded = {t.user_attrs["checkpoint"] for t in trials if isinstance(t.user_attrs.get("checkpoint"), str)}
    live = {
        t.user_attrs.get("checkpoint") for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)
    }
    now = time.time()
    for name in recorded:
        path = Path(name)
        if path.parent != folder:  # written on another machine (an unpacked study): not this folder's
            continue
        if name not in live:
            path.unlink(missing_ok=True)
        partial = path.with_name(path.name + ".tmp")  # a killed worker was writing it (a write takes ms)
        if partial.is_file() and now - partial.stat().st_mtime > _LEFTOVER_AGE_S:
            partial.unlink(missing_ok=True)


def _checkpoint_path(folder: Path, number: int) -> Path:
    """A new checkpoint file for the population of trial ``number``: a name no file in ``folder`` has."""
    while True:
        path = folder / f"pop-{number}-{secrets.token_hex(4)}.pt"
        if not path.exists():
            return path
