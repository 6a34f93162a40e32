"""Checkpoints of a training population, written atomically every K samples.

A checkpoint holds what a re-queued trial needs to continue exactly where its dead worker stopped:
the population's state (weights, adaptive thresholds, per-network settings), the next sample index,
the spike counts so far, and the trials (numbers, parameters, weight seeds) in population order.
Input trains and stochastic rounding derive from (seed, sample index) in tinysnn, so no other RNG
state is needed: a resumed run gives the same weights and accuracy as an uninterrupted one.

Written to ``<path>.tmp`` then moved over ``<path>`` with ``os.replace``, so a reader sees the old
checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from .errors import CheckpointError

__all__ = ["FORMAT", "Checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT = "tinysnn-search-checkpoint/1"
_KEYS = ("format", "fingerprint", "trials", "params", "seeds", "next_sample", "total_samples", "spikes",
         "energy_train_j", "state", "sums")  # fmt: skip


@dataclass
class Checkpoint:
    """A saved population.

    Attributes:
        fingerprint: the study spec's fingerprint; a checkpoint of another spec is refused.
        trials: trial numbers, in population order.
        params: each trial's Optuna parameters.
        seeds: each network's weight seed.
        next_sample: the global training sample index to continue from.
        total_samples: training samples of the whole run (samples x epochs).
        spikes: excitatory spikes of each network over samples 0 .. next_sample - 1.
        energy_train_j: metered training energy of the population so far, J.
        state: ``Population.state_dict()``.
        sums: tinysnn's running training statistics (P, 4) at ``next_sample`` (``start_sums`` of
            ``tinysnn.train.run``), or None.
    """

    fingerprint: str
    trials: List[int]
    params: List[Dict[str, Any]]
    seeds: List[int]
    next_sample: int
    total_samples: int
    spikes: List[float]
    energy_train_j: float
    state: Dict[str, Any]
    sums: Optional[torch.Tensor] = None


def save_checkpoint(path: Union[str, Path], ckpt: Checkpoint) -> None:
    """Write ``ckpt`` atomically (temp file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    payload = {"format": FORMAT}
    payload.update({k: getattr(ckpt, k) for k in _KEYS if k != "format"})
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fix(path: Path) -> str:
    return (
        f"delete {path} to restart its trials from sample 0 (their parameters are kept), "
        "or restore the file, then run the same command again"
    )


def load_checkpoint(path: Union[str, Path], fingerprint: str) -> Checkpoint:
    """Read and check a checkpoint.

    Raises:
        FileNotFoundError: if the file does not exist.
        CheckpointError: if it is unreadable, truncated, of another format or of another study spec.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(str(path))
    try:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError:  # torch < 1.13 has no weights_only
            payload = torch.load(path, map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError, EOFError, pickle and zip errors
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}): {_fix(path)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tinysnn-search checkpoint ({FORMAT}): {_fix(path)}")
    missing = [k for k in _KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}: {_fix(path)}")
    if payload["fingerprint"] != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was written by a study spec with another fingerprint "
            f"({payload['fingerprint']} != {fingerprint}): {_fix(path)}"
        )
    n = len(payload["trials"])
    state = payload["state"]
    ok = (
        n > 0
        and all(len(payload[k]) == n for k in ("params", "seeds", "spikes"))
        and isinstance(state, dict)
        and isinstance(state.get("weights"), torch.Tensor)
        and int(state["weights"].shape[0]) == n
        and 0 <= int(payload["next_sample"]) <= int(payload["total_samples"])
    )
    if not ok:
        raise CheckpointError(f"checkpoint {path} is inconsistent (sizes or sample index): {_fix(path)}")
    return Checkpoint(**{k: payload[k] for k in _KEYS if k != "format"})
