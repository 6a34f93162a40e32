"""Figures of a study for ``tinysnn-search report``, drawn with the helpers of :mod:`tinysnn.plots`
(matplotlib, the ``plots`` extra, imported only when a figure is made)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from tinysnn import plots
from tinysnn.plots import new_figure, save_figure
from tinysnn.quant.formats import FP32, parse_format

from .errors import SearchError
from .report import APPROX_NOTE
from .select import Candidate, pareto_front, rank

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PlotsUnavailable",
    "new_figure",
    "pareto_figure",
    "require_plots",
    "reward_figure",
    "save_figure",
    "size_precision_figure",
    "study_figures",
    "weight_bits",
]


class PlotsUnavailable(SearchError, plots.PlotsUnavailable):
    """matplotlib cannot be imported: a search error too, so ``tinysnn-search`` says it in one line."""


def require_plots() -> None:
    """:func:`tinysnn.plots.require_plots`, failing with the search's error.

    Raises:
        PlotsUnavailable: without matplotlib, with the install line.
    """
    try:
        plots.require_plots()
    except plots.PlotsUnavailable as exc:
        raise PlotsUnavailable(str(exc)) from None


def _complete(study: optuna.Study) -> List[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _with_approx_note(title: str, trials: Sequence[FrozenTrial]) -> str:
    """``title``, and a second line saying sl_stdp is approximate when a trial is sl_stdp."""
    if any(t.user_attrs.get("variant") == "sl_stdp" for t in trials):
        return title + "\n" + APPROX_NOTE.lstrip("* ")
    return title


def _selected_by_trial(sweep: Sequence[Tuple[float, Candidate]]) -> Dict[int, List[float]]:
    out: Dict[int, List[float]] = {}
    for mu, c in sweep:
        out.setdefault(c.number, []).append(mu)
    return out


def _mu_text(mus: Sequence[float]) -> str:
    return "mu = " + ", ".join(f"{m:g}" for m in mus)


def pareto_figure(study: optuna.Study, sweep: Sequence[Tuple[float, Candidate]]) -> Figure:
    """Accuracy against M_norm of every complete trial, feasible and infeasible apart, the Pareto front
    and the trial the reward selects for each mu of ``sweep`` (from :func:`search.select.mu_sweep`)."""
    trials = _complete(study)
    fig = new_figure(7.0, 5.0)
    ax = fig.add_subplot()
    feasible = [t for t in trials if t.user_attrs.get("feasible") is not False]
    infeasible = [t for t in trials if t.user_attrs.get("feasible") is False]
    constrained = any("feasible" in t.user_attrs for t in trials)
    ax.scatter(
        [t.values[1] for t in feasible],
        [100 * t.values[0] for t in feasible],
        s=18,
        color="C0",
        alpha=0.6,
        label="feasible trials" if constrained else "complete trials",
    )
    if infeasible:
        ax.scatter(
            [t.values[1] for t in infeasible],
            [100 * t.values[0] for t in infeasible],
            s=22,
            marker="x",
            color="0.5",
            label="infeasible (over a [constraints] budget)",
        )
    front = pareto_front(study)
    ax.scatter(
        [t.values[1] for t in front],
        [100 * t.values[0] for t in front],
        s=26,
        color="C3",
        label="Pareto front (of accuracy, M_norm and energy)",
    )
    by_number = {t.number: t for t in trials}
    for number, mus in _selected_by_trial(sweep).items():
        t = by_number[number]
        ax.scatter([t.values[1]], [100 * t.values[0]], s=140, facecolors="none", edgecolors="k", lw=1.5)
        ax.annotate(
            f"#{number} ({_mu_text(mus)})",
            (t.values[1], 100 * t.values[0]),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=7,
        )
    ax.scatter([], [], s=140, facecolors="none", edgecolors="k", label="selected by R = acc - mu M_norm")
    ax.set_xlabel("M_norm (memory / FP32 reference memory, Eq. 4)")
    ax.set_ylabel("accuracy (%, all-activity voting)")
    ax.set_title(
        _with_approx_note(f"study {study.study_name}: {len(trials)} complete trials", trials), fontsize=9
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def weight_bits(trial: FrozenTrial) -> int:
    """B = i + f of the trial's weight format, 32 for FP32 (the precision axis of the paper's Fig. 9)."""
    fmt = parse_format(str(trial.user_attrs.get("weights_format", FP32)))
    return 32 if fmt is None else fmt.total_bits


def size_precision_figure(study: optuna.Study) -> Figure:
    """Accuracy and M_norm over n_neurons x weight bits (the paper's Fig. 9): in each cell the complete
    trial with the best accuracy, its number written in the cell."""
    trials = _complete(study)
    best: Dict[Tuple[int, int], FrozenTrial] = {}
    for t in trials:
        n_neurons = t.user_attrs.get("n_neurons", t.params.get("n_neurons"))
        if n_neurons is None:
            continue
        cell = (int(n_neurons), weight_bits(t))
        if cell not in best or t.values[0] > best[cell].values[0]:
            best[cell] = t
    sizes = sorted({n for n, _ in best})
    bits = sorted({b for _, b in best})
    fig = new_figure(max(6.0, 1.2 * len(sizes) + 3.0), 0.45 * len(bits) * 2 + 3.0)
    panels = (
        ("accuracy (%)", lambda t: 100 * t.values[0], "{:.1f}", "viridis"),
        ("M_norm", lambda t: t.values[1], "{:.3f}", "magma_r"),
    )
    axes = fig.subplots(2, 1)
    for ax, (name, value, fmt, cmap) in zip(axes, panels):
        grid = np.full((len(bits), len(sizes)), np.nan)
        for (n, b), t in best.items():
            grid[bits.index(b), sizes.index(n)] = value(t)
        image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=cmap)
        for (n, b), t in best.items():
            ax.text(
                sizes.index(n),
                bits.index(b),
                fmt.format(value(t)) + f"\n#{t.number}",
                ha="center",
                va="center",
                fontsize=6,
                bbox={"facecolor": "w", "alpha": 0.7, "lw": 0, "pad": 1},
            )
        ax.set_xticks(range(len(sizes)), [str(n) for n in sizes])
        ax.set_yticks(range(len(bits)), ["FP32" if b == 32 else str(b) for b in bits])
        ax.set_xlabel("excitatory neurons N")
        ax.set_ylabel("weight precision B (bits)")
        ax.set_title(f"{name}: best-accuracy complete trial per cell (empty: none)", fontsize=9)
        fig.colorbar(image, ax=ax, label=name)
    fig.suptitle(
        _with_approx_note(f"study {study.study_name}: size x precision (the paper's Fig. 9)", trials),
        fontsize=9,
    )
    return fig


def reward_figure(
    study: optuna.Study, sweep: Sequence[Tuple[float, Candidate]], nu: float = 0.0, points: int = 101
) -> Figure:
    """R of every Pareto-front trial against mu, with the trial selected at each mu of ``sweep``."""
    front = pareto_front(study)
    mus = [mu for mu, _ in sweep]
    grid = np.linspace(0.0, max(max(mus), 1e-9), points)
    curves: Dict[int, List[float]] = {}
    for mu in grid:
        for c in rank(front, float(mu), nu):
            curves.setdefault(c.number, []).append(c.reward)
    selected = _selected_by_trial(sweep)
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    for number, rewards in curves.items():
        if number in selected:
            ax.plot(grid, rewards, lw=1.5, label=f"trial #{number}")
        else:
            ax.plot(grid, rewards, lw=0.6, color="0.75")
    ax.plot([], [], lw=0.6, color="0.75", label="other Pareto-front trials")
    for mu, c in sweep:
        ax.scatter([mu], [c.reward], color="k", zorder=3, s=20)
        ax.annotate(f"#{c.number}", (mu, c.reward), textcoords="offset points", xytext=(3, 4), fontsize=7)
    ax.set_xlabel("mu (memory weight)")
    ax.set_ylabel("R = acc - mu M_norm" + (f" - {nu:g} E/E_max" if nu else ""))
    ax.set_title(f"study {study.study_name}: reward against mu\ndots: the selected trial at each mu")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def study_figures(
    study: optuna.Study, sweep: Sequence[Tuple[float, Candidate]], nu: float = 0.0
) -> Dict[str, Figure]:
    """The report's figures by file stem."""
    return {
        "pareto": pareto_figure(study, sweep),
        "size-precision": size_precision_figure(study),
        "reward-mu": reward_figure(study, sweep, nu),
    }
