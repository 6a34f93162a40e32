"""The two pictures a trial uploads as Optuna artifacts, drawn with matplotlib (the ``plots`` extra).

* ``weights.png``: each neuron's input weights as an image of the input (its receptive field), the
  neurons tiled in a grid on one shared colour scale with a colour bar.
* ``confusion.png``: true label x predicted label (the last column: no prediction), counts written
  in, accuracy in the title.

matplotlib (3.5 or later) is imported only here and only when a picture is drawn, through the
object-oriented ``Figure`` + ``FigureCanvasAgg`` API (no pyplot, no global backend). Without
matplotlib a search still runs: :func:`missing_note` is the one line a run says, and
:func:`write_pictures` writes nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["confusion_figure", "missing_note", "trial_title", "weights_figure", "write_pictures"]

_NO_PREDICTION = "none"  # tick label of the confusion matrix's last column
_DPI = 100


def _matplotlib_installed() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def missing_note() -> Optional[str]:
    """The line a run says once when it cannot draw pictures (matplotlib missing), else None."""
    if _matplotlib_installed():
        return None
    return 'trial pictures skipped: matplotlib is not installed (pip install "tinysnn[plots]" adds them)'


def trial_title(number: int, attrs: Mapping[str, Any]) -> str:
    """A trial's number, variant, size and formats (its ``quant_text``, rounding and scheme included),
    from its user attributes, as picture titles show them."""
    head = f"trial {number}: {attrs['variant']} N={attrs['n_neurons']} {attrs['quant']}"
    formats = str(attrs["quant_text"]).replace(",", ", ")
    return head if formats == attrs["quant"] else f"{head}\n{formats}"


def _tiles(weights: np.ndarray, image_shape: Tuple[int, int]) -> np.ndarray:
    """The (n_input, N) weights as one image: each column reshaped to ``image_shape``, the tiles in a
    near-square grid, separated (and the unused cells filled) by NaN."""
    h, w = image_shape
    n_in, n = weights.shape
    if h * w != n_in:
        raise ValueError(f"image shape {image_shape} does not match {n_in} inputs")
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for j in range(n):
        r, c = divmod(j, cols)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = weights[:, j].reshape(h, w)
    return grid


def weights_figure(weights: np.ndarray, image_shape: Tuple[int, int], title: str) -> Figure:
    """Each neuron's receptive field (its input weights as an ``image_shape`` image), tiled in a grid.

    Args:
        weights: (n_input, N) weights of one network.
        image_shape: (h, w) of an input image (h * w = n_input).
        title: what the picture shows, e.g. :func:`trial_title`.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    grid = _tiles(np.asarray(weights, dtype=np.float64), image_shape)
    cmap = colormaps["viridis"].with_extremes(bad="white")  # bad: the NaN gaps between tiles
    n = weights.shape[1]
    side = min(14.0, max(5.0, 2 * max(grid.shape) / _DPI))  # inches: ~2 screen pixels per weight
    fig = Figure(figsize=(side + 1.2, side), dpi=_DPI)
    ax = fig.add_subplot()
    shown = ax.imshow(grid, cmap=cmap, interpolation="nearest")
    ax.set_axis_off()
    bar = fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("weight")
    h, w = image_shape
    ax.set_title(f"{title}\ninput weights of {n} neurons ({h} x {w} each)")
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], accuracy: float, title: str) -> Figure:
    """The (C, C + 1) confusion matrix (rows: true label; columns: predicted label, the last one for
    no prediction) with the counts written in, and the accuracy (in [0, 1]) in the title."""
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=np.int64)
    n_true, n_pred = counts.shape
    fig = Figure(figsize=(1.6 + 0.55 * n_pred, 1.6 + 0.5 * n_true), dpi=_DPI)
    ax = fig.add_subplot()
    shown = ax.imshow(counts, cmap="Blues", vmin=0)
    bar = fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("samples")
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_xticks(range(n_pred))
    ax.set_xticklabels([str(c) for c in range(n_pred - 1)] + [_NO_PREDICTION])
    ax.set_yticks(range(n_true))
    ax.set_yticklabels([str(r) for r in range(n_true)])
    dark = 0.5 * max(int(counts.max()), 1)
    for r in range(n_true):
        for c in range(n_pred):
            value = int(counts[r, c])
            color = "white" if value > dark else "black"
            ax.text(c, r, str(value), ha="center", va="center", fontsize=8, color=color)
    ax.set_title(f"{title}\naccuracy {100 * accuracy:.1f} %")
    return fig


def _save(fig: Figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # a Figure outside pyplot: nothing to close, freed with its last reference
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def write_pictures(
    folder: Path,
    title: str,
    weights: np.ndarray,
    image_shape: Tuple[int, int],
    confusion: Sequence[Sequence[int]],
    accuracy: float,
) -> Dict[str, Path]:
    """Write ``weights.png`` and ``confusion.png`` into ``folder``; returns them by name (``weights``,
    ``confusion``), or nothing where matplotlib is missing (:func:`missing_note`)."""
    if not _matplotlib_installed():
        return {}
    return {
        "weights": _save(weights_figure(weights, image_shape, title), folder / "weights.png"),
        "confusion": _save(confusion_figure(confusion, accuracy, title), folder / "confusion.png"),
    }
