"""Checkpoints of a training population, written atomically every K samples.

A checkpoint holds what a re-queued trial needs to continue exactly where its dead worker stopped:
the population's state (weights, adaptive thresholds, per-network settings), the next sample index,
the spike counts so far, and the trials (numbers, parameters, weight seeds) in population order.
Input trains and stochastic rounding derive from (seed, sample index) in tinysnn, so no other RNG
state is needed: a resumed run gives the same weights and accuracy as an uninterrupted one.

Written to ``<path>.tmp`` then moved over ``<path>`` with ``os.replace``, so a reader sees the old
checkpoint or the new one, never half of one. The file is a magic string, the SHA-256 of the
payload and the payload (``torch.save``), so a changed byte is refused on load instead of being
loaded into a trial (:func:`write_verified`, :func:`read_verified`; the trials' stored networks and
models use the same container). The payload is the tensors and a JSON text of everything else, so
torch's weights-only loader reads it on every supported torch (1.13's refuses pickled floats).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from .errors import CheckpointError

__all__ = [
    "FORMAT",
    "Checkpoint",
    "VerifyError",
    "load_checkpoint",
    "read_verified",
    "save_checkpoint",
    "write_verified",
]

FORMAT = "tinysnn-search-checkpoint/1"
_KEYS = (
    "format",
    "fingerprint",
    "trials",
    "params",
    "seeds",
    "next_sample",
    "total_samples",
    "spikes",
    "energy_train_j",
    "state",
    "sums",
)


_MAGIC = b"tinysnn-verified1"
_HEAD = len(_MAGIC) + 32  # the magic string, then the SHA-256 of what follows


def verified_bytes(blob: bytes) -> bytes:
    """The bytes of a checksummed file holding ``blob``: the container :func:`write_verified` writes
    and :func:`read_verified` checks (tools and tests that craft one use this, not the layout)."""
    return _MAGIC + hashlib.sha256(blob).digest() + blob


class VerifyError(ValueError):
    """A verified file is damaged, truncated or not one of ours; the message says which."""


_JSON_KEY = "tinysnn_json"  # payload key of the JSON text; files without it hold a plain torch.save
_TENSOR_KEY = "__tensor__"  # in the JSON text, {_TENSOR_KEY: k} stands for the payload's k-th tensor


def _to_json(obj: Any, tensors: List[torch.Tensor]) -> Any:
    """``obj`` with every tensor replaced by ``{_TENSOR_KEY: its index in tensors}``, for JSON."""
    if isinstance(obj, torch.Tensor):
        tensors.append(obj)
        return {_TENSOR_KEY: len(tensors) - 1}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"write_verified stores dicts with string keys only, not {list(obj)[:3]}")
        return {k: _to_json(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"write_verified cannot store a {type(obj).__name__}")


def _from_json(obj: Any, tensors: List[torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR_KEY}:
            return tensors[obj[_TENSOR_KEY]]
        return {k: _from_json(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v, tensors) for v in obj]
    return obj


def write_verified(path: Union[str, Path], payload: Any) -> None:
    """``payload`` (dicts with string keys, lists, tuples (read back as lists), numbers, strings,
    None and tensors) behind a magic string and its SHA-256, atomically (temp file, fsync,
    ``os.replace``; the temp file is removed when the write fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: List[torch.Tensor] = []
    text = json.dumps(_to_json(payload, tensors))
    buf = io.BytesIO()
    torch.save({_JSON_KEY: text, "tensors": tensors}, buf)
    blob = buf.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(verified_bytes(blob))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, a stop: no partial file stays behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # "No space left on device" says where
        raise


def read_verified(path: Union[str, Path]) -> Any:
    """Load a file of :func:`write_verified` after checking its magic string and checksum.

    Raises:
        VerifyError: for a file that is not one, is truncated, or whose bytes changed.
    """
    data = Path(path).read_bytes()
    if not data.startswith(_MAGIC):
        raise VerifyError(
            "not a checksummed tinysnn-search file (written by an older version, or another file)"
        )
    blob = data[_HEAD:]
    if len(data) < _HEAD or hashlib.sha256(blob).digest() != data[len(_MAGIC) : _HEAD]:
        raise VerifyError("checksum mismatch: the file was truncated or its bytes changed")
    stored = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if isinstance(stored, dict) and _JSON_KEY in stored:
        return _from_json(json.loads(stored[_JSON_KEY]), list(stored["tensors"]))
    return stored  # written before the JSON text: a plain torch.save (torch >= 2 reads it)


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
        sums: tinysnn's running training statistics (P, 4) at ``next_sample`` (``TrainState.sums`` of
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
    """Write ``ckpt`` atomically and checksummed (:func:`write_verified`)."""
    payload = {"format": FORMAT}
    payload.update({k: getattr(ckpt, k) for k in _KEYS if k != "format"})
    write_verified(path, payload)


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
        payload = read_verified(path)
    except VerifyError as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt ({exc}): {_fix(path)}") from None
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
