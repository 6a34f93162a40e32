"""Deployable models: the exported format and the integer runner, with numpy alone.

``import tinysnn.deploy`` loads neither torch, numba nor optuna, so a board with numpy runs an
exported model (``tinysnn infer MODEL``). See docs/deploy.md.
"""

from .model import (
    FORMAT,
    FORMAT_VERSION,
    Format,
    Group,
    Model,
    ModelError,
    group_names,
    load_model,
    write_model,
)
from .runner import Network, encode, exactness_problem, predict, prepare, run_trains, sample_seeds

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Format",
    "Group",
    "Model",
    "ModelError",
    "Network",
    "encode",
    "exactness_problem",
    "group_names",
    "load_model",
    "predict",
    "prepare",
    "run_trains",
    "sample_seeds",
    "write_model",
]
