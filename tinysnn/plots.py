"""The matplotlib helpers every figure of the project is drawn with: ``tinysnn-search report``
(:mod:`search.plots`) and the paper's figures (bench/figures.py).

matplotlib is optional (the ``plots`` extra) and imported only when a figure is made; figures are
built with the object-oriented API (a ``Figure`` on an Agg canvas, no pyplot state) and saved as
PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PLOTS_HINT", "PlotsUnavailable", "new_figure", "require_plots", "save_figure"]

PLOTS_HINT = 'figures need matplotlib: pip install "tinysnn[plots]"'


class PlotsUnavailable(ImportError):
    """matplotlib cannot be imported; the message is :data:`PLOTS_HINT`."""


def require_plots() -> None:
    """Import matplotlib's figure and Agg canvas.

    Raises:
        PlotsUnavailable: without matplotlib, with the install line.
    """
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise PlotsUnavailable(PLOTS_HINT) from None


def new_figure(width: float, height: float) -> Figure:
    """A ``Figure`` with an Agg canvas and constrained layout (see :func:`require_plots`)."""
    require_plots()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_dir: Path, stem: str) -> List[Path]:
    """Write ``out_dir/stem.png`` and ``out_dir/stem.svg`` (no date in the SVG, so reruns compare)."""
    import matplotlib

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    with matplotlib.rc_context({"svg.hashsalt": stem}):
        fig.savefig(paths[0], dpi=150)
        fig.savefig(paths[1], metadata={"Date": None})
    return paths
