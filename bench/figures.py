# Regenerate bench/figures/: python bench/figures.py bench/recorded/*.json --out bench/figures
"""Figures of the tinySNN paper from the benchmarks' JSON: accuracy and memory against precision
(Fig. 6 and 7) and energy (Fig. 8).

Input: the JSON of bench/accuracy.py (``--protocol paper-quant``, the grid of bench/paper_quant.py;
``--protocol paper-fp32``, for the sl_stdp baseline) and of bench/energy.py. bench/recorded/ holds the
recorded runs, transcribed from bench/RESULTS.md in the same schema. Rows of several files are merged;
one configuration with two different results is an error. Writes one PNG and one SVG per figure:

* ``accuracy-<dataset>``: test accuracy against precision, one panel per scheme (PTQ, ITQ) x quantized
  set (qW, qWN), one line per rounding; tinysnn FP32 at "FP32", diehl_cook FP32 and sl_stdp FP32 (an
  approximate baseline) as horizontal lines. A configuration no format of B bits can build (the sign
  bit and the fractional bits theta+ needs do not fit; its row's ``impossible`` says why) is an x on
  the axis; one that was not run is a gap.
* ``memory``: Eq. 4 memory against precision, per dataset x convention (compact, as simulated), with
  the diehl_cook FP32 reference, each point's saving against it and the paper's 3.3x saving.
* ``energy``: training and inference energy per sample relative to diehl_cook FP32, per kind of
  number (measured by a meter, estimated as time x a stated power, the op-count model), with the
  paper's ratios.

Example::

    python bench/figures.py bench/out/accuracy-paper-quant.json bench/out/energy.json --out bench/figures
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from tinysnn.plots import PlotsUnavailable, new_figure, require_plots, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SCHEMES = ("ptq", "itq")
LABELS = ("qW", "qWN")
QUANTIZED_SET = {"qW": "qW (weights)", "qWN": "qWN (weights, V_mem, V_th)"}
ROUNDING_STYLE = {
    "truncate": {"color": "C0", "marker": "o"},
    "nearest": {"color": "C1", "marker": "s"},
    "stochastic": {"color": "C2", "marker": "^"},
    "truncate plain": {"color": "C0", "marker": "o", "ls": "--", "mfc": "none"},
}
ROUNDING_TEXT = {"truncate plain": "truncate, plain normalization"}
CONVENTIONS = {
    "compact": "compact (a layer constant stored once)",
    "as_simulated": "as simulated (dense N x N constant weights)",
}
DATASET_TEXT = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "digits": "digits"}
PAPER_FIGURE = {"mnist": " (the paper's Fig. 6)", "fashion-mnist": " (the paper's Fig. 7)"}
PAPER_SAVING = 3.3
"""The paper's memory saving of 8-bit tinySNN against FP32 Diehl & Cook."""
ENERGY_CONFIGS = ("diehl_cook FP32", "tinysnn FP32", "tinysnn 8-bit")
PAPER_RATIO_KEY = {"tinysnn FP32": "fp32", "tinysnn 8-bit": "8bit"}
PHASES = {"train": "training", "infer": "inference"}
OP_COUNT = "op-count model"

_QUANT_CONFIG = re.compile(r"^tinysnn (qWN?) (\d+)b (ptq|itq)(?: (.+))?$", re.IGNORECASE)


class InputError(ValueError):
    """A JSON file this script cannot use, or two files that disagree."""


@dataclass
class Grid:
    """The paper-quant rows of one dataset."""

    dataset: str
    fp32: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    """Variant ("diehl_cook", "tinysnn") -> its FP32 row."""
    points: Dict[Tuple[str, str, str], Dict[int, Dict[str, Any]]] = field(default_factory=dict)
    """(scheme, quantized set, rounding) -> bits -> row."""
    impossible: Dict[Tuple[str, str], Dict[int, str]] = field(default_factory=dict)
    """(scheme, quantized set) -> bits -> why no format fits."""
    sources: List[str] = field(default_factory=list)

    def precisions(self) -> List[int]:
        """Every precision of the grid, high to low."""
        found = {b for by_bits in self.points.values() for b in by_bits}
        found |= {b for by_bits in self.impossible.values() for b in by_bits}
        return sorted(found, reverse=True)


@dataclass
class Baseline:
    """An sl_stdp FP32 row of a paper-fp32 run and where it comes from."""

    row: Dict[str, Any]
    source: str


@dataclass
class Energy:
    """Joules per sample by dataset, configuration and kind of number, and the paper's ratios."""

    joules: Dict[Tuple[str, str, str], Dict[str, float]] = field(default_factory=dict)
    """(dataset, configuration, kind) -> {"train": J, "infer": J}."""
    paper_ratios: Dict[str, float] = field(default_factory=dict)
    sources: List[str] = field(default_factory=list)


@dataclass
class Inputs:
    """Everything read from the JSON files, merged."""

    grids: Dict[str, Grid] = field(default_factory=dict)
    sl_stdp: Dict[Tuple[str, int], Baseline] = field(default_factory=dict)
    """(dataset, seed) -> the sl_stdp FP32 row."""
    energy: Energy = field(default_factory=Energy)
    seen: Dict[Tuple[Any, ...], Tuple[Any, str]] = field(default_factory=dict)
    """Every result read, with its file: for the rule that two files may not disagree."""

    def take(self, key: Tuple[Any, ...], result: Any, path: Path) -> bool:
        """Record ``result`` under ``key``; False if the same result was already read (skip it).

        Raises:
            InputError: if another file gave another result for ``key``.
        """
        if key in self.seen:
            earlier, where = self.seen[key]
            if earlier != result:
                raise InputError(
                    f"{path}: {' '.join(map(str, key))} is also in {where} with another result "
                    f"({earlier} against {result}): give one run of it"
                )
            return False
        self.seen[key] = (result, str(path))
        return True


def provenance(path: Path, payload: Dict[str, Any]) -> str:
    """What a figure says about one input: file, revision, date, and whether it was transcribed."""
    date = str(payload.get("started") or payload.get("date") or "?")[:10]
    text = f"{path.name} (rev {payload.get('git_revision', '?')}, {date}"
    source = payload.get("source")
    if source:
        text += f", transcribed from {source.get('transcribed_from', '?')}"
    if payload.get("partial"):
        text += ", PARTIAL: the run had not finished"
    return text + ")"


def load(paths: Sequence[Path]) -> Inputs:
    """Read and merge the JSON files.

    Raises:
        InputError: for a file that is missing, not JSON, or not one of the schemas above.
    """
    inputs = Inputs()
    for path in paths:
        try:
            payload = json.loads(path.read_text())
        except OSError as exc:
            raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
        except ValueError:
            raise InputError(f"{path}: not JSON") from None
        kind = (payload.get("benchmark"), payload.get("protocol")) if isinstance(payload, dict) else None
        if kind == ("accuracy", "paper-quant"):
            _add_grid_rows(inputs, path, payload)
        elif kind == ("accuracy", "paper-fp32"):
            _add_baselines(inputs, path, payload)
        elif kind is not None and kind[0] == "energy":
            _add_energy(inputs, path, payload)
        else:
            raise InputError(
                f"{path}: not the JSON of bench/accuracy.py --protocol paper-quant or paper-fp32, "
                "or of bench/energy.py"
            )
    return inputs


def _add_grid_rows(inputs: Inputs, path: Path, payload: Dict[str, Any]) -> None:
    for row in payload["rows"]:
        ds, config = row["dataset"], row["config"]
        grid = inputs.grids.setdefault(ds, Grid(ds))
        if not inputs.take((ds, config), row.get("impossible", row.get("accuracy")), path):
            continue
        if provenance(path, payload) not in grid.sources:
            grid.sources.append(provenance(path, payload))
        if config.endswith(" FP32"):
            grid.fp32[config.split()[0]] = row
            continue
        m = _QUANT_CONFIG.match(config)
        if m is None:
            raise InputError(
                f"{path}: configuration {config!r} is not 'tinysnn qW|qWN <bits>b ptq|itq [rounding]'"
            )
        label, bits, scheme, rounding = m.group(1), int(m.group(2)), m.group(3).lower(), m.group(4)
        if "impossible" in row:
            grid.impossible.setdefault((scheme, label), {})[bits] = row["impossible"]
        else:
            grid.points.setdefault((scheme, label, rounding), {})[bits] = row


def _add_baselines(inputs: Inputs, path: Path, payload: Dict[str, Any]) -> None:
    for row in payload["rows"]:
        if row["variant"] != "sl_stdp":
            continue
        key = (row["dataset"], int(row["seed"]))
        if inputs.take(("sl_stdp FP32",) + key, row["accuracy"], path):
            inputs.sl_stdp[key] = Baseline(row, provenance(path, payload))


def energy_kind(row: Dict[str, Any], payload: Dict[str, Any]) -> str:
    """How a row's joules were obtained: measured by a named meter, or time x the stated power; the
    words before the parenthesis label the bars."""
    if row["is_estimate"]:
        return f"estimate (wall time x {payload['args']['estimate_watts']:g} W)"
    return f"measured ({row['meter']} meter)"


def _add_energy(inputs: Inputs, path: Path, payload: Dict[str, Any]) -> None:
    energy = inputs.energy
    for row in payload["rows"]:
        kinds = {
            energy_kind(row, payload): (row["train_j_per_sample"], row["infer_j_per_sample"]),
            OP_COUNT: (row["op_train_j_per_sample"], row["op_infer_j_per_sample"]),
        }
        for kind, (train, infer) in kinds.items():
            key = (row["dataset"], row["config"], kind)
            if inputs.take(key, (train, infer), path):
                energy.joules[key] = {"train": train, "infer": infer}
    energy.paper_ratios.update(payload.get("paper_ratios", {}))
    energy.sources.append(provenance(path, payload))


def _dataset_text(ds: str) -> str:
    return DATASET_TEXT.get(ds, ds)


def _dataset_order(ds: str) -> Tuple[int, str]:
    """MNIST, then Fashion-MNIST, then the others by name."""
    known = list(DATASET_TEXT)
    return (known.index(ds) if ds in known else len(known), ds)


def _footnote(fig: Figure, sources: Sequence[str], note: str = "") -> None:
    fig.supxlabel("\n".join(["data: " + s for s in sources] + ([note] if note else [])), fontsize=6)


def _panels(fig: Figure, rows: int, cols: int) -> Tuple[List[List[Axes]], Axes]:
    """``rows`` x ``cols`` panels, and below them a row, without axes, for the figure's legend."""
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1.0] * rows + [0.22])
    panels = [[fig.add_subplot(grid[r, c]) for c in range(cols)] for r in range(rows)]
    legend_row = fig.add_subplot(grid[rows, :])
    legend_row.axis("off")
    return panels, legend_row


def _legend(legend_row: Axes, panels: Sequence[Sequence[Axes]], columns: int) -> None:
    """One legend of every label the panels carry, in the legend row."""
    handles: Dict[str, Any] = {}
    for ax in (ax for row in panels for ax in row):
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    legend_row.legend(list(handles.values()), list(handles), loc="center", ncols=columns, fontsize=7)


def _precision_axis(ax: Axes, precisions: Sequence[int]) -> None:
    ax.set_xticks(range(len(precisions) + 1), ["FP32"] + [str(b) for b in precisions])
    ax.set_xlabel("precision (bits per quantized parameter)")
    ax.grid(alpha=0.3)


def accuracy_figure(grid: Grid, sl_stdp: Optional[Baseline] = None) -> Figure:
    """Accuracy against precision for one dataset: rows = schemes, columns = quantized sets present."""
    schemes = [s for s in SCHEMES if any(k[0] == s for k in list(grid.points) + list(grid.impossible))]
    labels = [q for q in LABELS if any(k[1] == q for k in list(grid.points) + list(grid.impossible))]
    precisions = grid.precisions()
    fig = new_figure(4.4 * len(labels), 3.4 * len(schemes) + 2.2)
    axes, legend_row = _panels(fig, len(schemes), len(labels))
    x_of = {b: i + 1 for i, b in enumerate(precisions)}
    for r, scheme in enumerate(schemes):
        for c, label in enumerate(labels):
            ax = axes[r][c]
            for rounding in ROUNDING_STYLE:
                by_bits = grid.points.get((scheme, label, rounding))
                if by_bits:
                    ys = [100 * by_bits[b]["accuracy"] if b in by_bits else math.nan for b in precisions]
                    ax.plot(
                        range(1, len(precisions) + 1),
                        ys,
                        lw=1.2,
                        ms=4,
                        label=ROUNDING_TEXT.get(rounding, rounding),
                        **ROUNDING_STYLE[rounding],
                    )
            impossible = grid.impossible.get((scheme, label), {})
            if impossible:
                ax.plot(
                    [x_of[b] for b in impossible],
                    [0.03] * len(impossible),
                    "x",
                    color="C3",
                    ms=7,
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                    label="impossible: no format of B bits can be built",
                )
            if "tinysnn" in grid.fp32:
                ax.plot(
                    [0], [100 * grid.fp32["tinysnn"]["accuracy"]], "*", color="k", ms=10, label="tinysnn FP32"
                )
            if "diehl_cook" in grid.fp32:
                ax.axhline(
                    100 * grid.fp32["diehl_cook"]["accuracy"],
                    color="0.35",
                    ls="--",
                    lw=1,
                    label="diehl_cook FP32",
                )
            if sl_stdp is not None:
                ax.axhline(
                    100 * sl_stdp.row["accuracy"],
                    color="0.55",
                    ls=":",
                    lw=1.2,
                    label=f"sl_stdp FP32, seed {sl_stdp.row['seed']} (approximate baseline)",
                )
            _precision_axis(ax, precisions)
            ax.set_title(f"{scheme.upper()}, {QUANTIZED_SET[label]}", fontsize=9)
            if c == 0:
                ax.set_ylabel("test accuracy (%, all-activity voting)")
    _legend(legend_row, axes, 3)
    ref = grid.fp32.get("tinysnn", {})
    size = f", N = {ref['n_neurons']}" if "n_neurons" in ref else ""
    seed = f", seed {ref['seed']}" if "seed" in ref else ""
    fig.suptitle(
        f"{_dataset_text(grid.dataset)}: tinySNN accuracy against precision{size}{seed}"
        f"{PAPER_FIGURE.get(grid.dataset, '')}",
        fontsize=10,
    )
    sources = grid.sources + ([sl_stdp.source] if sl_stdp is not None else [])
    _footnote(fig, sources)
    return fig


def memory_bytes(row: Dict[str, Any], convention: str) -> Optional[int]:
    """The row's Eq. 4 bytes under ``convention``, None if it does not say."""
    return row.get("memory", {}).get(convention, {}).get("bytes")


def memory_figure(grids: Sequence[Grid]) -> Figure:
    """Memory against precision: rows = datasets, columns = the conventions the rows hold."""
    rows_of = {
        g.dataset: [r for by_bits in g.points.values() for r in by_bits.values()] + list(g.fp32.values())
        for g in grids
    }
    conventions = [c for c in CONVENTIONS if any(memory_bytes(r, c) for rs in rows_of.values() for r in rs)]
    fig = new_figure(4.8 * len(conventions), 3.2 * len(grids) + 2.0)
    axes, legend_row = _panels(fig, len(grids), len(conventions))
    for r, grid in enumerate(grids):
        precisions = grid.precisions()
        for c, conv in enumerate(conventions):
            ax = axes[r][c]
            ref = memory_bytes(grid.fp32.get("diehl_cook", {}), conv)
            for k, label in enumerate(LABELS):
                by_bits: Dict[int, int] = {}
                for (_, set_label, _), rows in grid.points.items():
                    for b, row in rows.items():
                        if set_label == label and memory_bytes(row, conv) is not None:
                            by_bits.setdefault(b, memory_bytes(row, conv))
                if not by_bits:
                    continue
                xs = [i + 1 for i, b in enumerate(precisions)]
                ys = [by_bits[b] / 1e3 if b in by_bits else math.nan for b in precisions]
                ax.plot(xs, ys, marker="os"[k], color=f"C{k}", lw=1.2, ms=4, label=f"tinysnn {label}")
                if ref:
                    for x, b in zip(xs, precisions):
                        if b in by_bits:
                            ax.annotate(
                                f"{ref / by_bits[b]:.2f}x",
                                (x, by_bits[b] / 1e3),
                                fontsize=6,
                                textcoords="offset points",
                                xytext=(3, 5 if k == 0 else -10),
                            )
            tiny = memory_bytes(grid.fp32.get("tinysnn", {}), conv)
            if tiny:
                ax.plot([0], [tiny / 1e3], "*", color="k", ms=10, label="tinysnn FP32")
            if ref:
                ax.axhline(ref / 1e3, color="0.35", ls="--", lw=1, label="diehl_cook FP32 (the reference)")
                ax.axhline(
                    ref / PAPER_SAVING / 1e3,
                    color="C3",
                    ls=":",
                    lw=1.2,
                    label=f"the paper's {PAPER_SAVING:g}x saving (reference / {PAPER_SAVING:g})",
                )
            _precision_axis(ax, precisions)
            ax.set_ylim(bottom=0)
            ax.set_title(f"{_dataset_text(grid.dataset)}, {CONVENTIONS[conv]}", fontsize=9)
            if c == 0:
                ax.set_ylabel("memory, Eq. 4 (kB)")
    _legend(legend_row, axes, 3)
    fig.suptitle(
        "Memory against precision; each point's saving against diehl_cook FP32 written beside it", fontsize=10
    )
    _footnote(fig, [s for g in grids for s in g.sources])
    return fig


def energy_figure(energy: Energy) -> Figure:
    """Energy per sample relative to diehl_cook FP32 of the same kind: rows = datasets, columns = phases."""
    datasets = sorted({ds for ds, _, _ in energy.joules}, key=_dataset_order)
    kinds = sorted({kind for _, _, kind in energy.joules}, key=lambda k: (k == OP_COUNT, k))
    configs = [c for c in ENERGY_CONFIGS if any(cfg == c for _, cfg, _ in energy.joules)]
    fig = new_figure(5.2 * len(PHASES), 3.4 * len(datasets) + 2.2)
    axes, legend_row = _panels(fig, len(datasets), len(PHASES))
    width = 0.8 / len(kinds)
    for r, ds in enumerate(datasets):
        for c, (phase, phase_text) in enumerate(PHASES.items()):
            ax = axes[r][c]
            for k, kind in enumerate(kinds):
                ref = energy.joules.get((ds, "diehl_cook FP32", kind))
                if ref is None:
                    continue
                present = [
                    (i, energy.joules[(ds, cfg, kind)][phase])
                    for i, cfg in enumerate(configs)
                    if (ds, cfg, kind) in energy.joules
                ]
                bars = ax.bar(
                    [i - 0.4 + width * (k + 0.5) for i, _ in present],
                    [j / ref[phase] for _, j in present],
                    width,
                    color=f"C{k}",
                    label=kind,
                )
                tag = kind.split(" (")[0]
                ax.bar_label(
                    bars, [f"{tag}: {j:.3g} J" for _, j in present], fontsize=5, rotation=90, padding=2
                )
            for i, cfg in enumerate(configs):
                ratio = energy.paper_ratios.get(f"{phase}_{PAPER_RATIO_KEY.get(cfg, '')}")
                if ratio:
                    ax.hlines(
                        1 / ratio,
                        i - 0.45,
                        i + 0.45,
                        color="k",
                        lw=2,
                        label="the paper: 1 / its diehl_cook-to-tinysnn ratio (time x power on GPUs)",
                    )
            ax.set_xticks(range(len(configs)), configs, fontsize=7)
            ax.set_ylim(0, 1.5)
            ax.set_ylabel("energy per sample / diehl_cook FP32's")
            ax.set_title(f"{_dataset_text(ds)}, {phase_text}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    _legend(legend_row, axes, 2)
    fig.suptitle(
        "Energy per sample relative to diehl_cook FP32, by kind of number (the paper's Fig. 8); "
        "bars labelled with their kind and J per sample",
        fontsize=10,
    )
    _footnote(
        fig,
        energy.sources,
        "estimate: wall time x a stated power, not a measurement; op-count model: "
        "the operations of the spikes that happened x energy per operation at the network's bit width",
    )
    return fig


def build_figures(inputs: Inputs) -> Dict[str, Figure]:
    """Every figure the inputs allow, by file stem.

    Raises:
        InputError: if they allow none.
    """
    figures: Dict[str, Figure] = {}
    grids = sorted(
        (g for g in inputs.grids.values() if g.points or g.impossible),
        key=lambda g: _dataset_order(g.dataset),
    )
    for grid in grids:
        ref = grid.fp32.get("diehl_cook", grid.fp32.get("tinysnn", {}))
        figures[f"accuracy-{grid.dataset}"] = accuracy_figure(
            grid, inputs.sl_stdp.get((grid.dataset, int(ref.get("seed", 0))))
        )
    if any(
        memory_bytes(r, c)
        for g in grids
        for rs in g.points.values()
        for r in rs.values()
        for c in CONVENTIONS
    ):
        figures["memory"] = memory_figure(grids)
    if inputs.energy.joules:
        figures["energy"] = energy_figure(inputs.energy)
    if not figures:
        raise InputError(
            "nothing to draw: give a paper-quant JSON of bench/accuracy.py or bench/energy.py's JSON"
        )
    return figures


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "json", nargs="+", help="JSON of bench/accuracy.py (paper-quant, paper-fp32) or bench/energy.py"
    )
    p.add_argument(
        "--out", default="bench/figures", help="folder for the PNG and SVG files (default bench/figures)"
    )
    args = p.parse_args(argv)
    try:
        require_plots()
        figures = build_figures(load([Path(x) for x in args.json]))
    except (PlotsUnavailable, InputError) as exc:
        print(f"figures.py: error: {exc}", file=sys.stderr)
        return 2
    for stem, fig in figures.items():
        for path in save_figure(fig, Path(args.out), stem):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
