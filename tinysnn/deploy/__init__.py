"""Deployable models: the exported format and the integer runner, with numpy alone.

``import tinysnn.deploy`` loads neither torch, numba nor optuna, so a board with numpy runs an
exported model (``tinysnn infer MODEL``). See docs/deploy.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Union

from .model import (
    FORMAT,
    FORMAT_VERSION,
    Format,
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
    "Format",
    "Group",
    "Model",
    "ModelError",
    "Network",
    "TestTrains",
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


def write_extra(folder: Union[str, Path], fmt: str) -> List[Path]:
    """Add the files of export format ``fmt`` to the model folder ``folder``; returns them.

    Raises:
        ModelError: for an unknown format, a model that does not load, or a folder that cannot be
            written (read-only, full): nothing half-written is left behind.
    """
    if fmt not in EXPORT_FORMATS:
        raise ModelError(f"unknown export format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "model":
        return []
    model = load_model(folder)
    if fmt == "c":
        from .c import write_c

        return write_c(model, folder)
    from .nir_export import write_nir

    return [write_nir(model, folder)]
