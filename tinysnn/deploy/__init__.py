"""Deployable models: the exported format and the integer runner, with numpy alone.

``import tinysnn.deploy`` loads neither torch, numba nor optuna, so a board with numpy runs an
exported model (``tinysnn infer MODEL``). See docs/deploy.md.
"""

import importlib.util
from pathlib import Path
from typing import List, Sequence, Union

from .model import (
    FORMAT,
    FORMAT_VERSION,
    Group,
    Model,
    ModelError,
    TestTrains,
    group_names,
    load_model,
    write_model,
)
from .runner import (
    Network,
    encode,
    exactness_problem,
    isi_trains,
    predict,
    prepare,
    run_trains,
    runner_kind,
    sample_seeds,
    trial_trains,
)

__all__ = [
    "EXPORT_FORMATS",
    "FORMAT",
    "FORMAT_VERSION",
    "Group",
    "Model",
    "ModelError",
    "Network",
    "TestTrains",
    "check_formats",
    "encode",
    "exactness_problem",
    "group_names",
    "isi_trains",
    "load_model",
    "predict",
    "prepare",
    "run_trains",
    "runner_kind",
    "sample_seeds",
    "trial_trains",
    "write_extra",
    "write_model",
]

#: What an export writes: ``model`` (the model folder), ``c`` (also model.h and tinysnn_infer.c),
#: ``nir`` (also model.nir; extra ``nir``).
EXPORT_FORMATS = ("model", "c", "nir")


def check_formats(formats: Sequence[str]) -> None:
    """Refuse, before anything is written, an unknown export format or ``nir`` without its package.

    Raises:
        ModelError: naming the format and the fix.
    """
    for fmt in formats:
        if fmt not in EXPORT_FORMATS:
            raise ModelError(f"unknown export format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if "nir" in formats and importlib.util.find_spec("nir") is None:
        raise ModelError('--format nir needs the nir package: pip install "tinysnn[nir]"')


def write_extra(folder: Union[str, Path], *formats: str) -> List[Path]:
    """Add the files of each export format in ``formats`` (once each, in order) to the model folder
    ``folder``; returns them.

    Raises:
        ModelError: for an unknown format (checked first), a model that does not load, or a folder
            that cannot be written (read-only, full): nothing half-written is left behind.
    """
    check_formats(formats)
    written: List[Path] = []
    for fmt in dict.fromkeys(formats):
        if fmt == "c":
            from .c import write_c

            written += write_c(load_model(folder), folder)
        elif fmt == "nir":
            from .nir_export import write_nir

            written.append(write_nir(load_model(folder), folder))
    return written
