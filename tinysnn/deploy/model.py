"""The exported model: a folder with ``model.json`` and the packed codes in ``payload.bin``.

``model.json`` says what the network is (variant, sizes, encoding, the Qi.f of every parameter,
rounding, scheme, label assignment, accuracy, memory, provenance) and how ``payload.bin`` is laid
out. The payload holds the stored parameter groups of the memory model (Eq. 4, compact
convention), in its order, each packed at its bit width and padded to a byte, so its length is the
memory model's packed-bytes figure for the network:

* ``input_weights``: n_input x N codes of the weight format (unsigned), row-major (input i,
  neuron j), or float32 bit patterns for an FP32 model;
* ``lateral_inhibition`` (tinysnn) or ``exc_to_inh_weight`` and ``inh_to_exc_weight`` (the
  baselines): one float32 constant each, in mV;
* ``exc_vmem``: the N membrane potentials at rest, V_mem - v_rest (codes of the V_mem format, or
  float32): the state buffer a device holds;
* ``exc_vth``: the N frozen thresholds V_th = v_th + theta (codes of the V_th format, or float32);
* ``exc_constants``: float32 v_rest, v_reset, decay exp(-dt/tau), refractory period in steps;
* baselines only: ``inh_vmem`` (N, as ``exc_vmem``) and ``inh_constants`` (float32 v_rest,
  v_reset, v_th, decay, refractory steps).

Both files are checked on load: the payload's SHA-256 and length, and a SHA-256 of the JSON's
own content, so that a truncated or edited model is refused with one line. This module imports
numpy and :mod:`tinysnn.config` (standard library only) alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import Variant
from .packing import pack_codes, unpack_codes

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Format",
    "Group",
    "Model",
    "ModelError",
    "group_names",
    "load_model",
    "tinysnn_version",
    "write_model",
]

FORMAT = "tinysnn-model"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
PAYLOAD = "payload.bin"
FP32 = "fp32"


class ModelError(ValueError):
    """A model folder cannot be written or read; the message names the file and the fix."""


@dataclass(frozen=True)
class Format:
    """A fixed-point format Qi.f of an exported parameter (i includes the sign bit when signed)."""

    int_bits: int
    frac_bits: int
    signed: bool

    @property
    def bits(self) -> int:
        return self.int_bits + self.frac_bits

    @property
    def text(self) -> str:
        return f"{'S' if self.signed else 'U'}Q{self.int_bits}.{self.frac_bits}"

    def code_range(self) -> Tuple[int, int]:
        """(k_lo, k_hi), the integer codes the format holds."""
        if self.signed:
            return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        return 0, 2**self.bits - 1

    def as_dict(self) -> Dict[str, Any]:
        return {
            "int_bits": self.int_bits,
            "frac_bits": self.frac_bits,
            "signed": self.signed,
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> Optional["Format"]:
        return None if d is None else cls(int(d["int_bits"]), int(d["frac_bits"]), bool(d["signed"]))


@dataclass(frozen=True)
class Group:
    """One stored parameter group of the payload: its values and how they are packed.

    ``values`` are integer codes for a quantized group (``fmt`` set) or float32 values (``fmt``
    None, packed as their 32-bit patterns).
    """

    name: str
    values: np.ndarray
    fmt: Optional[Format] = None

    @property
    def bits(self) -> int:
        return 32 if self.fmt is None else self.fmt.bits

    def packed(self) -> bytes:
        if self.fmt is None:
            patterns = np.ascontiguousarray(np.asarray(self.values, dtype=np.float32)).view(np.uint32)
            return pack_codes(patterns, 32, signed=False)
        return pack_codes(np.asarray(self.values, dtype=np.int64), self.fmt.bits, self.fmt.signed)


def group_names(variant: str) -> List[str]:
    """The payload's groups for a variant, in the memory model's order (compact convention)."""
    try:
        inhibitory_layer = Variant(variant).has_inhibitory_layer
    except ValueError:
        names = ", ".join(v.value for v in Variant)
        raise ModelError(f"unknown variant {variant!r}: expected one of {names}") from None
    if inhibitory_layer:
        return ["input_weights", "exc_to_inh_weight", "inh_to_exc_weight", "exc_vmem", "exc_vth",
                "exc_constants", "inh_vmem", "inh_constants"]  # fmt: skip
    return ["input_weights", "lateral_inhibition", "exc_vmem", "exc_vth", "exc_constants"]


@dataclass
class Model:
    """A loaded model: its description (``model.json``) and its decoded parameter groups."""

    meta: Dict[str, Any]
    groups: Dict[str, np.ndarray]
    """Per group: int64 codes for quantized groups, float32 values for FP32 ones."""
    path: Optional[Path] = None

    @property
    def variant(self) -> str:
        return str(self.meta["variant"])

    @property
    def n_input(self) -> int:
        return int(self.meta["n_input"])

    @property
    def n_neurons(self) -> int:
        return int(self.meta["n_neurons"])

    @property
    def n_classes(self) -> int:
        return int(self.meta["n_classes"])

    def format_of(self, param: str) -> Optional[Format]:
        """The format of ``weights``, ``vmem`` or ``vth``; None for FP32."""
        return Format.from_dict(self.meta["formats"][param])

    @property
    def labels(self) -> np.ndarray:
        """(N,) class of each neuron, -1 for a neuron that does not vote."""
        return np.asarray(self.meta["labels"], dtype=np.int64)


def tinysnn_version() -> str:
    """The installed tinysnn's version, "unknown" in a source checkout that is not installed."""
    try:
        from importlib.metadata import version

        return version("tinysnn")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def _checksum(meta: Dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_model(folder: Union[str, Path], meta: Dict[str, Any], groups: Sequence[Group]) -> Path:
    """Write a model folder atomically: a temporary sibling folder, renamed into place at the end.

    Args:
        folder: the model folder to create; it must not exist yet (or be empty).
        meta: the description; ``format``, ``format_version``, ``payload`` and ``checksum`` are added.
        groups: the payload's groups, in :func:`group_names` order for ``meta["variant"]``.

    Raises:
        ModelError: if the folder exists with files in it, or the groups are not the variant's.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ModelError(f"{folder} already exists and is not empty: choose a new folder or delete it")
    names = [g.name for g in groups]
    if names != group_names(str(meta["variant"])):
        raise ModelError(f"payload groups {names} are not those of a {meta['variant']} model")
    blobs = [g.packed() for g in groups]
    payload = b"".join(blobs)
    layout, offset = [], 0
    for g, blob in zip(groups, blobs):
        count = int(np.asarray(g.values).size)
        layout.append({"name": g.name, "count": count, "bits": g.bits, "offset": offset, "bytes": len(blob),
                       "format": None if g.fmt is None else g.fmt.as_dict()})  # fmt: skip
        offset += len(blob)
    full = dict(meta, format=FORMAT, format_version=FORMAT_VERSION)
    full["payload"] = {"file": PAYLOAD, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                       "groups": layout}  # fmt: skip
    full["checksum"] = _checksum(full)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        (tmp / PAYLOAD).write_bytes(payload)
        (tmp / MODEL_JSON).write_text(json.dumps(full, indent=1) + "\n")
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_model(folder: Union[str, Path]) -> Model:
    """Read and verify a model folder (or its ``model.json``).

    Raises:
        ModelError: one line naming the file and what is wrong: missing, not JSON, another format
            or version, edited (checksum), truncated or changed payload, groups that do not fit.
    """
    path = Path(folder)
    if path.is_file() and path.name == MODEL_JSON:
        path = path.parent
    meta_path = path / MODEL_JSON
    if not meta_path.is_file():
        raise ModelError(f"{path} is not a model folder: {MODEL_JSON} is missing (export one with tinysnn "
                         "train --export or tinysnn-search export)")  # fmt: skip
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{meta_path} is not readable JSON ({exc}): export the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path} is not a {FORMAT} description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{meta_path} has format version {meta.get('format_version')!r}; this tinysnn "
                         f"reads version {FORMAT_VERSION}: export the model with this version")  # fmt: skip
    if meta.get("checksum") != _checksum(meta):
        raise ModelError(f"{meta_path} was edited after export (checksum mismatch): export the model again")
    info = meta["payload"]
    payload_path = path / str(info["file"])
    try:
        payload = payload_path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"cannot read {payload_path} ({exc.strerror}): copy the whole model folder"
        ) from None
    if len(payload) != int(info["bytes"]) or hashlib.sha256(payload).hexdigest() != info["sha256"]:
        raise ModelError(
            f"{payload_path} is truncated or changed ({len(payload)} bytes, expected {info['bytes']} with "
            "the recorded SHA-256): copy the model folder again"
        )
    groups: Dict[str, np.ndarray] = {}
    for g in info["groups"]:
        blob = payload[int(g["offset"]) : int(g["offset"]) + int(g["bytes"])]
        fmt = Format.from_dict(g["format"])
        if fmt is None:
            codes = unpack_codes(blob, 32, int(g["count"]), signed=False)
            groups[g["name"]] = codes.astype(np.uint32).view(np.float32)
        else:
            groups[g["name"]] = unpack_codes(blob, fmt.bits, int(g["count"]), fmt.signed)
    names = group_names(str(meta["variant"]))
    if list(groups) != names:
        raise ModelError(
            f"{payload_path} holds groups {list(groups)}, not those of a {meta['variant']} model"
        )
    n_in, n = int(meta["n_input"]), int(meta["n_neurons"])
    if groups["input_weights"].size != n_in * n or groups["exc_vth"].size != n or len(meta["labels"]) != n:
        raise ModelError(
            f"{meta_path}: the groups do not fit {n_in} inputs x {n} neurons: export the model again"
        )
    groups["input_weights"] = groups["input_weights"].reshape(n_in, n)
    return Model(meta, groups, path)
