"""Short text tables of trials, Pareto fronts and mu sweeps for the terminal; the trials as a data frame."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Dict, List, Optional, Sequence, Tuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from tinysnn.quant.formats import FP32, NO_ROUNDING

from ._constraints import told_constraints
from .errors import SearchError
from .select import (
    LIMITS_KEY,
    Candidate,
    complete_trials,
    pareto_front,
    ranked_values,
    violated_limits,
)

if TYPE_CHECKING:
    import pandas

__all__ = [
    "APPROX_NOTE",
    "PRUNED_REASONS",
    "candidates_table",
    "check_output_folder",
    "confirm_lines",
    "format_table",
    "plural",
    "pruned_reason",
    "status_lines",
    "sweep_table",
    "trials_frame",
    "trials_so_far",
    "trials_table",
]

APPROX_NOTE = "* sl_stdp is an APPROXIMATE baseline (our reading of SL-STDP, not checked against the paper)"


def plural(count: int, noun: str, nouns: Optional[str] = None) -> str:
    """``count`` and the noun in its number: ``plural(1, "trial")`` is "1 trial", ``plural(2, "trial")``
    "2 trials" (``nouns``: an irregular plural)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned text columns, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_num(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))]
    lines = []
    for r in cells:
        lines.append(
            "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)).rstrip()
        )
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_num(text: str) -> bool:
    try:
        float(text.rstrip("%*"))
        return True
    except ValueError:
        return text == ""


def _variant(attrs: Dict[str, Any]) -> str:
    v = str(attrs.get("variant", "?"))
    return v + "*" if v == "sl_stdp" else v


def _formats(attrs: Dict[str, Any]) -> str:
    fm = [str(attrs.get(f"{p}_format", "")) for p in ("weights", "vmem", "vth")]
    return "/".join(fm) if any(f and f != FP32 for f in fm) else FP32


def _row(t: FrozenTrial) -> List[Any]:
    a = dict(t.user_attrs)
    if "quant" not in a:  # not trained (yet): what its parameters say
        a.setdefault("variant", t.params.get("variant", ""))
        a["quant"] = t.params.get("quantize", "")
        for p in ("weights", "vmem", "vth"):
            if f"{p}_int" in t.params and f"{p}_frac" in t.params:
                a[f"{p}_format"] = f"Q{t.params[f'{p}_int']}.{t.params[f'{p}_frac']}"
        a["scheme"], a["rounding"] = t.params.get("scheme", ""), t.params.get("rounding", "")
    vals = t.values if t.values is not None else [None, None, None]
    acc = f"{100 * vals[0]:.2f}" if vals[0] is not None else ""
    mem = f"{vals[1]:.4f}" if vals[1] is not None else ""
    energy = f"{vals[2]:.3g}" if vals[2] is not None else ""
    rounding = a.get("rounding", "")
    rounding = "" if rounding == NO_ROUNDING else rounding  # FP32 (trials before it wrote "")
    scheme = f"{a.get('scheme', '')} {rounding}".strip()
    trained_by = a.get("trained_by")
    trained = "" if trained_by is None else "itself" if trained_by == t.number else f"by #{trained_by}"
    return [
        t.number,
        _variant(a),
        a.get("n_neurons", t.params.get("n_neurons", "")),
        a.get("quant", ""),
        _formats(a),
        scheme,
        acc,
        mem,
        energy,
        trained,
        t.state.name,
    ]


TRIAL_HEADERS = [
    "#",
    "variant",
    "N",
    "quant",
    "W/Vmem/Vth",
    "scheme",
    "acc %",
    "M_norm",
    "E J/smp",
    "trained",
    "state",
]


def trials_table(trials: Sequence[FrozenTrial], front: Optional[Collection[int]] = None) -> str:
    """One row per trial: size, formats, objectives, state; with ``front`` (trial numbers), a first
    column ``front`` that marks those on the Pareto front."""
    rows = [_row(t) for t in trials]
    if front is None:
        text = format_table(TRIAL_HEADERS, rows)
    else:
        marks = ["yes" if t.number in front else "" for t in trials]
        text = format_table(["front"] + TRIAL_HEADERS, [[m] + r for m, r in zip(marks, rows)])
    if any(t.user_attrs.get("variant") == "sl_stdp" for t in trials):
        text += "\n" + APPROX_NOTE
    return text


def _candidate_cells(c: Candidate) -> List[Any]:
    """A ranked trial's cells: number, variant, N, quant, formats, accuracy, M_norm, energy, reward."""
    a = c.attrs
    return [
        c.number,
        _variant(a),
        a.get("n_neurons", ""),
        a.get("quant", ""),
        _formats(a),
        f"{100 * c.accuracy:.2f}",
        f"{c.memory_norm:.4f}",
        f"{c.energy:.3g}",
        f"{c.reward:.4f}",
    ]


def candidates_table(
    cands: Sequence[Candidate],
    mu: float,
    nu: float = 0.0,
    selected: Optional[int] = None,
    fidelity: bool = True,
) -> str:
    """The ranked front with each trial's reward, and its fidelity (``cheap`` / ``confirmed``) where
    ``fidelity`` (:func:`search.select.has_fidelity`: a study without ``[fidelity]`` has one only)."""
    head = [
        "",
        "#",
        "variant",
        "N",
        "quant",
        "W/Vmem/Vth",
        "acc %",
        "M_norm",
        "E J/smp",
        f"R(mu={mu:g}" + (f",nu={nu:g})" if nu else ")"),
    ] + (["fidelity"] if fidelity else [])
    rows = [
        [">" if c.number == selected else ""] + _candidate_cells(c) + ([c.fidelity] if fidelity else [])
        for c in cands
    ]
    text = format_table(head, rows)
    if any(c.attrs.get("variant") == "sl_stdp" for c in cands):
        text += "\n" + APPROX_NOTE
    return text


def sweep_table(sweep: Sequence[Tuple[float, Candidate]]) -> str:
    """The selected trial for each mu."""
    rows = [[f"{mu:g}"] + _candidate_cells(c) for mu, c in sweep]
    return format_table(
        ["mu", "#", "variant", "N", "quant", "W/Vmem/Vth", "acc %", "M_norm", "E J/smp", "R"], rows
    )


def confirm_lines(
    study: optuna.Study, chosen: Sequence[int], trained: Sequence[int], agreement: Dict[str, Any]
) -> List[str]:
    """The trials ``tinysnn-search confirm`` chose, cheap and confirmed values side by side, and how well
    the cheap front agreed with the confirmed values (:func:`search.confirm.agreement`)."""
    by_number = {t.number: t for t in complete_trials(study)}
    rows = []
    for number in chosen:
        t = by_number[number]
        (acc, mem, energy), fidelity = ranked_values(t)
        full = fidelity == "confirmed"
        a = t.user_attrs
        rows.append(
            [
                number,
                _variant(a),
                a.get("n_neurons", ""),
                _formats(a),
                f"{100 * t.values[0]:.2f}",
                f"{100 * acc:.2f}" if full else "",
                f"{mem:.4f}",
                f"{t.values[2]:.3g}",
                f"{energy:.3g}" if full else "",
                "this run" if number in trained else ("before" if full else ""),
            ]
        )
    head = [
        "#",
        "variant",
        "N",
        "W/Vmem/Vth",
        "cheap acc %",
        "full acc %",
        "M_norm",
        "cheap E J/smp",
        "full E J/smp",
        "confirmed",
    ]
    lines = [format_table(head, rows)] if rows else ["no complete feasible trial to confirm"]
    rho = agreement.get("accuracy_rank_correlation")
    lines.append(
        f"agreement: {agreement.get('cheap_front_kept', 0)} of the {agreement.get('cheap_front_confirmed', 0)} "
        "confirmed trials of the cheap front stay on the front of confirmed values; accuracy rank correlation "
        f"(Spearman, cheap vs full) {'n/a' if rho is None else f'{rho:.2f}'} over "
        f"{agreement.get('confirmed_trials', 0)} confirmed trials"
    )
    return lines


PRUNED_REASONS = {
    "impossible": ("impossible combination", "impossible combinations", "rejected before training"),
    "duplicate": ("duplicate", "duplicates", "an earlier trial's configuration"),
    "over_budget": ("over the budget", "over the budget", "workers asking at once"),
    "other": ("other", "other", "no reason recorded"),
}
"""Why a trial is PRUNED (:func:`pruned_reason`): (singular, plural, what it means)."""


def pruned_reason(trial: FrozenTrial) -> str:
    """Why the runner told a trial PRUNED, a key of :data:`PRUNED_REASONS`, read from what it recorded:
    ``rejected`` (an impossible combination of formats, before training) or ``released`` ("same
    configuration as trial N": a duplicate; "over budget: ...": asked past the budget)."""
    attrs = trial.user_attrs
    released = str(attrs.get("released", ""))
    if "rejected" in attrs:
        return "impossible"
    if released.startswith("same configuration"):
        return "duplicate"
    if released.startswith("over budget"):
        return "over_budget"
    return "other"


def _pruned_line(trials: Sequence[FrozenTrial]) -> Optional[str]:
    reasons = Counter(pruned_reason(t) for t in trials if t.state == TrialState.PRUNED)
    if not reasons:
        return None
    parts = []
    for key, (one, many, meaning) in PRUNED_REASONS.items():
        if reasons[key]:
            parts.append(f"{plural(reasons[key], one, many)} ({meaning})")
    return "  pruned: " + ", ".join(parts)


def _infeasible_line(study: optuna.Study, trials: Sequence[FrozenTrial]) -> Optional[str]:
    """How many complete trials a ``[constraints]`` limit keeps off the front, by limit."""
    limits = study.user_attrs.get(LIMITS_KEY)
    if limits is None:  # a study not opened since its limits were recorded: what its trials were told
        off = [t for t in trials if any(v > 0 for v in told_constraints(t))]
        return (
            f"  infeasible: {plural(len(off), 'complete trial')} over a [constraints] limit" if off else None
        )
    broken: Counter = Counter()
    off_front = 0
    for t in trials:
        named = dict(zip(("accuracy", "memory_norm", "energy"), ranked_values(t)[0]))
        keys = violated_limits(limits, named)
        off_front += bool(keys)
        broken.update(keys)
    if not off_front:
        return None
    words = {"min_accuracy": "below", "max_memory_norm": "over", "max_energy_j": "over"}
    parts = [f"{broken[key]} {word} {key} {limits[key]:g}" for key, word in words.items() if broken[key]]
    return f"  infeasible (kept off the front): {plural(off_front, 'complete trial')}; " + ", ".join(parts)


def status_lines(study: optuna.Study, storage_url: str) -> List[str]:
    """A summary of a study: trial states against the budget, why trials were pruned and which limits
    keep complete ones off the front, the front, the best accuracy."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    budget = study.user_attrs.get("trials")
    complete = states[TrialState.COMPLETE]
    lines = [
        f"study {study.study_name} in {storage_url}",
        f"  trials: {complete} complete"
        + (f" of {budget}" if budget is not None else "")
        + "".join(
            f", {states[s]} {s.name.lower()}"
            for s in (TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED, TrialState.FAIL)
            if states[s]
        ),
    ]
    done = complete_trials(study)
    lines += [line for line in (_pruned_line(trials), _infeasible_line(study, done)) if line]
    lines.append(
        f"  objectives: {', '.join(study.metric_names or [])} "
        f"(energy: {study.user_attrs.get('energy_objective', '?')} J per inference sample)"
    )
    if complete:
        front = pareto_front(study)
        best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.values[0])
        lines.append(
            f"  Pareto front: {plural(len(front), 'trial')}; best accuracy {100 * best.values[0]:.2f} % "
            f"(trial {best.number})"
        )
    return lines


def trials_so_far(study: optuna.Study, last: int) -> str:
    """The table of ``tinysnn-search status``: the last ``last`` trials that were not pruned (pruned
    ones are counted by reason in :func:`status_lines`) and every Pareto-front trial, by number, the
    front marked."""
    kept = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.PRUNED]
    front = {t.number for t in pareto_front(study)}
    recent = kept[-last:] if last > 0 else []
    shown = sorted(
        {t.number: t for t in recent + [t for t in kept if t.number in front]}.values(),
        key=lambda t: t.number,
    )
    if not shown:
        return "trials so far: none (pruned ones are counted above)"
    what = f"the last {len(recent)} of {plural(len(kept), 'trial')}" if len(recent) < len(kept) else "all"
    if len(shown) > len(recent):
        what += ", and older ones on the front"
    return f"trials so far ({what}; pruned ones are counted above):\n" + trials_table(shown, front)


def check_output_folder(path: Path, option: str = "--out") -> None:
    """Refuse, before anything is written, a folder that cannot be written into: ``path`` is a file,
    lies under a file, or its nearest existing folder is not writable. A missing folder is fine (the
    caller creates it), and so is an existing one (written into).

    Raises:
        SearchError: with the fix.
    """
    if path.exists() and not path.is_dir():
        raise SearchError(
            f"{option} {path} is a file: pass a folder (created if missing, written into if it exists)"
        )
    above = path
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise SearchError(f"{option} {path} lies under the file {above}: pass a folder path outside it")
    if not os.access(above, os.W_OK | os.X_OK):
        raise SearchError(f"{option} {path}: {above} is not writable: pass a folder you can write into")


def trials_frame(study: optuna.Study) -> pandas.DataFrame:
    """Every trial, one row each: ``study.trials_dataframe()`` (objectives ``values_accuracy``,
    ``values_memory_norm``, ``values_energy``; parameters ``params_*``; the user attributes the runner
    records, ``user_attrs_*``) plus ``on_pareto_front``. Accuracies are fractions in [0, 1], as stored."""
    frame = study.trials_dataframe()
    if not frame.empty:
        frame["on_pareto_front"] = frame["number"].isin({t.number for t in pareto_front(study)})
    return frame
