"""tinysnn at 400 neurons with the per-dataset constants chosen on validation splits (one spike per
step; the same as studies/*.toml and README's paper commands), shared by the experiment scripts."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from tinysnn.config import NetworkConfig

#: (NetworkConfig keywords, LearningConfig keywords) per dataset
CONSTANTS: Dict[str, Tuple[Dict[str, Any], Dict[str, float]]] = {
    "mnist": ({"w_inh": 120.0}, {"eta_post": 0.002, "n_th": 1.0}),
    "fashion-mnist": ({"norm_total": 45.0, "w_inh": 240.0}, {"eta_post": 0.002, "n_th": 2.0}),
}


def tinysnn_400(dataset: str) -> Tuple[NetworkConfig, Dict[str, float]]:
    """The network config and the learning keywords (to pass to LearningConfig) for ``dataset``."""
    net_kw, learn_kw = CONSTANTS[dataset]
    return NetworkConfig(variant="tinysnn", n_neurons=400, one_spike=True, **net_kw), dict(learn_kw)
