"""tinysnn: small, accurate, energy-efficient spiking networks (the tinySNN method) and their search.

The public face of the core (the Optuna search is the separate package ``search``)::

    from tinysnn import NetworkConfig, EncodingConfig, build_population, load, run, RunSpec

    splits = load("digits")
    pop = build_population(NetworkConfig(variant="tinysnn", n_neurons=50, n_input=64), seeds=[0, 1])
    result = run(RunSpec(pop, EncodingConfig(), splits.train, splits.test))
    print(result.networks[0].accuracy)

Packages: :mod:`tinysnn.quant` (fixed-point formats, rounding, ranges), :mod:`tinysnn.sim` (the
numba and torch simulators), :mod:`tinysnn.energy` (meters and the op-count model),
:mod:`tinysnn.deploy` (the exported model and its numpy runner, which needs numpy alone).

Names are imported on first use, so that ``import tinysnn.deploy`` on a board never imports torch.
"""

import importlib
from typing import Any

_PUBLIC = {
    "EncodingConfig": "config", "LearningConfig": "config", "NetworkConfig": "config", "Variant": "config",
    "Population": "network", "build_population": "network",
    "Split": "data", "load": "data",
    "QuantSpec": "quant", "parse_quant_arg": "quant",
    "Simulator": "sim",
    "RunCallbacks": "train", "RunResult": "train", "RunSpec": "train", "TrainState": "train", "run": "train",
    "memory_breakdown": "memory",
    "export_network": "export",
}  # fmt: skip

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
