"""Train once, quantize many: the FP32 networks that PTQ and FP32 trials share.

A PTQ or FP32 trial trains in FP32, so its training does not depend on its formats: trials with the
same *training fingerprint* (variant, size, network and learning constants, dataset, training
samples, validation carve-out, epochs, encoding, the seed of the input trains, and the weight seed)
train the same network. The first one trains it and stores it in ``<artifact_dir>/trained/
<fingerprint>.pt``; every other one, in this run, a resumed run or another worker's, quantizes and
evaluates the stored network. ITQ trials train their own (their formats act during training).

By default (``[study] weight_seed = "per_training"``) the weight seed follows the training (a hash
of the fingerprint's other contents), not the trial: common random numbers, so that two PTQ trials
differ by their formats only. ``"per_trial"`` seeds each trial by its draw instead.

A stored file (``search._checkpoint.write_verified``: atomic, checksummed) holds the network's
``Population.state_dict``, its training statistics (the ``TrainState.sums`` row), its share of
the population's metered training energy and the number of training samples. A damaged one is
logged and set aside (``<fingerprint>.pt.damaged``), and the trial trains afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from tinysnn.config import to_dict
from tinysnn.quant import Scheme
from tinysnn.streams import digest_seed

from ._checkpoint import Checkpoint, VerifyError, read_verified, write_verified
from .space import TrialConfig
from .spec import StudySpec

__all__ = ["StoredNetwork", "TrainedNetworks", "shares_training", "training_fingerprint", "training_seed"]

FORMAT = "tinysnn-search-trained/1"


def shares_training(cfg: TrialConfig) -> bool:
    """Whether the trial trains in FP32 (FP32 or PTQ), so that its trained network can be shared."""
    return cfg.quant is None or cfg.quant.scheme == Scheme.PTQ


def _training(spec: StudySpec, cfg: TrialConfig) -> Dict[str, Any]:
    """What decides an FP32 training, but the weight seed (the data of ``run``: ``[fidelity]``'s subset)."""
    dt = spec.at_search_fidelity().data
    return {
        "network": to_dict(cfg.network),
        "learning": to_dict(cfg.learning),
        "data": [dt.dataset, dt.train_samples, dt.validation, dt.epochs],
        "encoding": to_dict(spec.encoding),
        "input_seed": spec.study.seed,
    }


def _digest(content: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def training_seed(spec: StudySpec, cfg: TrialConfig) -> int:
    """The weight seed of ``weight_seed = "per_training"``: the same for every trial that trains alike."""
    return digest_seed(_digest(_training(spec, cfg)))


def training_fingerprint(spec: StudySpec, cfg: TrialConfig, seed: int) -> str:
    """The key of the FP32 network that ``cfg`` trains from weight seed ``seed``."""
    return _digest(dict(_training(spec, cfg), weight_seed=int(seed)))[:20]


@dataclass
class StoredNetwork:
    """One trained FP32 network and what its training measured."""

    fingerprint: str
    trained_by: int
    """The trial that trained it."""
    state: Dict[str, Any]
    """``Population.state_dict()`` of the single network."""
    sums: torch.Tensor
    """(1, 4) ``TrainState.sums`` row of the network at the end of training."""
    energy_train_j: float
    """Its share of its population's metered training energy, J."""
    total_samples: int
    """Training samples over all epochs."""

    def checkpoint(
        self, spec_fingerprint: str, numbers: List[int], params: List[Dict[str, Any]]
    ) -> Checkpoint:
        """A finished checkpoint of a population of copies, one per trial, to evaluate from."""
        k = len(numbers)

        def copies(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return v.repeat(k, *([1] * (v.dim() - 1)))
            if isinstance(v, dict):
                return {name: copies(x) for name, x in v.items()}
            return v

        state = {name: copies(v) for name, v in self.state.items()}
        state["seeds"] = list(self.state["seeds"]) * k
        spikes = [float(self.sums[0, 0])] * k
        total = self.total_samples
        return Checkpoint(
            spec_fingerprint,
            list(numbers),
            list(params),
            state["seeds"],
            total,
            total,
            spikes,
            self.energy_train_j * k,
            state,
            copies(self.sums),
        )


class TrainedNetworks:
    """The study's stored FP32 networks, one file per training fingerprint."""

    def __init__(self, folder: Path, log: Callable[[str], None]) -> None:
        self._folder, self._log = Path(folder), log

    def path(self, fingerprint: str) -> Path:
        return self._folder / f"{fingerprint}.pt"

    def save(self, net: StoredNetwork) -> None:
        write_verified(
            self.path(net.fingerprint),
            {
                "format": FORMAT,
                "fingerprint": net.fingerprint,
                "trained_by": net.trained_by,
                "state": net.state,
                "sums": net.sums,
                "energy_train_j": net.energy_train_j,
                "total_samples": net.total_samples,
            },
        )

    def load(self, fingerprint: str) -> Optional[StoredNetwork]:
        """The stored network, or None when there is none or it is damaged (logged and set aside)."""
        path = self.path(fingerprint)
        if not path.is_file():
            return None
        try:
            payload = read_verified(path)
            ok = (
                isinstance(payload, dict)
                and payload.get("format") == FORMAT
                and payload.get("fingerprint") == fingerprint
                and isinstance(payload.get("total_samples"), int)
                and isinstance(payload.get("sums"), torch.Tensor)
                and tuple(payload["sums"].shape) == (1, 4)
                and isinstance(payload.get("state"), dict)
                and len(payload["state"].get("seeds", [])) == 1
            )
            problem = "" if ok else "not a stored network of this fingerprint"
        except VerifyError as exc:
            problem = str(exc)
        except Exception as exc:  # torch raises RuntimeError, EOFError, pickle and zip errors
            problem = f"unreadable ({type(exc).__name__})"
        if problem:
            aside = path.with_name(path.name + ".damaged")
            try:
                path.replace(aside)
            except FileNotFoundError:  # another worker set it aside first
                pass
            self._log(f"stored network {path} is damaged ({problem}): moved to {aside}; training it afresh")
            return None
        return StoredNetwork(
            fingerprint,
            int(payload["trained_by"]),
            payload["state"],
            payload["sums"],
            float(payload["energy_train_j"]),
            int(payload["total_samples"]),
        )
