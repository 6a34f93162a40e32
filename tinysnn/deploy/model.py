"""The exported model: a folder with ``model.json`` and the packed codes in ``payload.bin``.

``model.json`` says what the network is (variant, sizes, encoding, the Qi.f of every parameter,
rounding, scheme, label assignment, accuracy, memory, provenance), which spike trains its test
accuracy was measured on (``test_trains``, :class:`TestTrains`) and how ``payload.bin`` is laid
out. The payload holds the stored parameter groups of the memory model (Eq. 4, compact
convention), in its order, each packed at its bit width and padded to a byte, so its length is the
memory model's packed-bytes figure for the network:

* ``input_weights``: n_input x N codes of the weight format (unsigned), row-major (input i,
  neuron j), or float32 bit patterns for an FP32 model;
* ``lateral_inhibition`` (tinysnn) or ``exc_to_inh_weight`` and ``inh_to_exc_weight`` (the
  baselines): one float32 constant each, in mV;
* ``exc_vmem``: the N membrane potentials at rest, V_mem - v_rest (codes of the V_mem format, or
  float32): the state buffer a device holds;
* ``exc_theta``: the N frozen thresholds, stored as theta = V_th - v_th >= 0 about the base v_th
  (codes of the V_th format, or float32); a neuron's threshold is v_th + theta;
* ``exc_constants``: float32 v_rest, v_reset, v_th, decay exp(-dt/tau), refractory period in steps;
* baselines only: ``inh_vmem`` (N, as ``exc_vmem``) and ``inh_constants`` (float32 v_rest,
  v_reset, v_th, decay, refractory steps).

A model folder is something people hand each other, so loading trusts nothing in it: the
payload's SHA-256 and length and a SHA-256 of the JSON's own content are checked (a truncated or
edited copy), and then, because a re-signed file passes those, every field of ``model.json``
against its type and range (finite numbers only) and against the payload's groups (names,
counts, bit widths, formats, offsets), and every decoded value (finite constants, decays in
(0, 1], the state buffers at rest). The payload is always ``payload.bin`` beside ``model.json``:
no path is taken from the file. Any problem is one line naming the file, the field and the fix.
This module imports numpy, :mod:`tinysnn.config` and :mod:`tinysnn.quant.formats` (the formats,
rounding modes and constants; both standard library only) alone.
"""

import hashlib
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import MAX_SEED, MAX_TIME_STEPS, EncodingConfig, Variant
from ..quant.formats import (
    FP32,
    LABELS,
    LEAK_BITS,
    MAX_TOTAL_BITS,
    NO_ROUNDING,
    PARAMS,
    Normalization,
    QFormat,
    Rounding,
    Scheme,
)
from .packing import pack_codes, unpack_codes

__all__ = [
    "ENCODERS",
    "FORMAT",
    "FORMAT_VERSION",
    "Group",
    "Model",
    "ModelError",
    "TestTrains",
    "add_files",
    "group_names",
    "load_model",
    "tinysnn_version",
    "write_model",
]

FORMAT = "tinysnn-model"
FORMAT_VERSION = 2
"""Version 2 stores the thresholds as theta = V_th - v_th (``exc_theta``, v_th in ``exc_constants``);
version 1 stored V_th itself (``exc_vth``) and is refused with the fix (export the model again)."""
MODEL_JSON = "model.json"
PAYLOAD = "payload.bin"

MAX_UNITS = 1 << 20  #: most inputs, neurons or classes a model may declare
ENCODERS = ("isi", "torch")
"""How the simulator drew the input trains: ``isi`` (the numba backend: inter-spike intervals
from numpy's legacy Mersenne Twister seeded per sample) or ``torch`` (a ``torch.Generator`` per
batch on the recorded device)."""


class ModelError(ValueError):
    """A model folder cannot be written or read; the message names the file and the fix."""


@dataclass(frozen=True)
class TestTrains:
    """Where the simulator's test spike trains came from, so that a runner can draw them again.

    Sample ``first_index + b`` of the evaluated split was encoded from the seed
    ``mix_seed(seed, stream, first_index + b)`` (:func:`tinysnn.streams.mix_seed`); with the
    ``torch`` encoder a whole batch of ``batch_size`` samples from the seed of its first sample.
    """

    seed: int
    stream: int
    encoder: str
    device: str
    batch_size: int
    dataset: Optional[str]
    split: str
    samples: int

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Group:
    """One stored parameter group of the payload: its values and how they are packed.

    ``values`` are integer codes for a quantized group (``fmt`` set) or float32 values (``fmt``
    None, packed as their 32-bit patterns).
    """

    name: str
    values: np.ndarray
    fmt: Optional[QFormat] = None
    """The format, its signedness explicit; None for float32 values."""

    @property
    def bits(self) -> int:
        return 32 if self.fmt is None else self.fmt.total_bits

    def decoded(self) -> np.ndarray:
        """The flat values as :func:`load_model` decodes them: int64 codes or float32."""
        if self.fmt is None:
            return np.asarray(self.values, dtype=np.float32).ravel()
        return np.asarray(self.values, dtype=np.int64).ravel()

    def packed(self) -> bytes:
        if self.fmt is None:
            patterns = np.ascontiguousarray(np.asarray(self.values, dtype=np.float32)).view(np.uint32)
            return pack_codes(patterns, 32, signed=False)
        return pack_codes(np.asarray(self.values, dtype=np.int64), self.fmt.total_bits, bool(self.fmt.signed))


def group_names(variant: str) -> List[str]:
    """The payload's groups for a variant, in the memory model's order (compact convention)."""
    try:
        inhibitory_layer = Variant(variant).has_inhibitory_layer
    except ValueError:
        names = ", ".join(v.value for v in Variant)
        raise ModelError(f"unknown variant {variant!r}: expected one of {names}") from None
    if inhibitory_layer:
        return [
            "input_weights",
            "exc_to_inh_weight",
            "inh_to_exc_weight",
            "exc_vmem",
            "exc_theta",
            "exc_constants",
            "inh_vmem",
            "inh_constants",
        ]
    return ["input_weights", "lateral_inhibition", "exc_vmem", "exc_theta", "exc_constants"]


@dataclass
class Model:
    """A loaded model: its description (``model.json``, checked) and its decoded parameter groups."""

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

    @property
    def encoding(self) -> EncodingConfig:
        """The presentation window the network was trained and tested with."""
        return EncodingConfig(**self.meta["encoding"])

    @property
    def test_trains(self) -> Optional[TestTrains]:
        """Where the recorded accuracy's test trains came from; None for a model exported before
        models recorded it."""
        t = self.meta.get("test_trains")
        return None if t is None else TestTrains(**t)

    def format_of(self, param: str) -> Optional[QFormat]:
        """The format of ``weights``, ``vmem`` or ``vth``, its signedness explicit; None for FP32."""
        return QFormat.from_dict(self.meta["formats"][param])

    @property
    def labels(self) -> np.ndarray:
        """(N,) class of each neuron, -1 for a neuron that does not vote."""
        return np.asarray(self.meta["labels"], dtype=np.int64)


def tinysnn_version() -> str:
    """The installed tinysnn's version, "unknown" in a source checkout that is not installed."""
    try:
        from importlib.metadata import version  # novermin: 3.8+, and a 3.6 board says "unknown"

        return version("tinysnn")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def _checksum(meta: Dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# ---- the schema of model.json ----------------------------------------------------------------------


class _Fields:
    """Typed reads of one JSON object; a wrong field raises one line naming it (``where.key``)."""

    def __init__(self, where: str, value: Any, required: Sequence[str], optional: Sequence[str] = ()) -> None:
        self.where = where
        if not isinstance(value, dict):
            raise self.error("", f"is {_show(value)}, not an object")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.error("", f"lacks {', '.join(repr(k) for k in missing)}")
        unknown = sorted(set(value) - set(required) - set(optional))
        if unknown:
            raise self.error("", f"has unknown fields {', '.join(repr(k) for k in unknown[:5])}")
        self.d = value

    def error(self, key: str, problem: str) -> ModelError:
        name = f"{self.where}.{key}" if key and self.where else key or self.where or "the description"
        return ModelError(f"{name} {problem}")

    def integer(self, key: str, lo: int, hi: int) -> int:
        v = self.d.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(key, f"is {_show(v)}, not an integer")
        if not lo <= v <= hi:
            raise self.error(
                key,
                f"= {v} is out of range: expected {lo}..{hi}"
                if hi < 2**62
                else f"= {v} is out of range: expected >= {lo}",
            )
        return v

    def exactly(self, key: str, want: int) -> None:
        """An integer field whose value the rest of the description fixes."""
        v = self.integer(key, 0, 2**63 - 1)
        if v != want:
            raise self.error(key, f"= {v}, but the description implies {want}")

    def number(
        self, key: str, lo: float = -math.inf, hi: float = math.inf, optional: bool = False
    ) -> Optional[float]:
        v = self.d.get(key)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.error(key, f"is {_show(v)}, not a finite number")
        if not lo <= v <= hi:
            raise self.error(key, f"= {v} is out of range: expected {lo}..{hi}")
        return float(v)

    def choice(self, key: str, choices: Sequence[Any]) -> Any:
        v = self.d.get(key)
        if isinstance(v, bool) or v not in choices:
            raise self.error(key, f"is {_show(v)}: expected one of {', '.join(repr(c) for c in choices)}")
        return v

    def flag(self, key: str) -> bool:
        v = self.d.get(key)
        if not isinstance(v, bool):
            raise self.error(key, f"is {_show(v)}, not true or false")
        return v

    def text(self, key: str, optional: bool = False) -> Optional[str]:
        v = self.d.get(key)
        if v is None and optional:
            return None
        if not isinstance(v, str) or len(v) > 200:
            raise self.error(key, f"is {_show(v)}, not a short string")
        return v


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _format(fields: _Fields, key: str) -> Optional[QFormat]:
    if fields.d.get(key) is None:
        return None
    f = _Fields(f"{fields.where}.{key}", fields.d[key], ("int_bits", "frac_bits", "signed"), ("text",))
    int_bits = f.integer("int_bits", 0, MAX_TOTAL_BITS)
    frac_bits = f.integer("frac_bits", 0, MAX_TOTAL_BITS)
    try:
        fmt = QFormat(int_bits, frac_bits, f.flag("signed"))
    except ValueError as exc:  # i + f out of range, or a signed format without a sign bit
        raise f.error("", str(exc)) from None
    if "text" in f.d and f.d["text"] != fmt.text:
        raise f.error("text", f"is {_show(f.d['text'])} but the bits say {fmt.text}")
    return fmt


def _record(fields: _Fields, key: str) -> None:
    """A field kept for the record only (memory, provenance): null or an object of JSON values,
    finite numbers only, at most 4 levels deep and 1,000 entries in all."""
    budget = [1000]

    def check(where: str, x: Any, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0 or depth > 4:
            raise fields.error(key, "is larger or deeper than a record of a model")
        if isinstance(x, dict):
            for k, v in x.items():
                check(f"{where}.{k}", v, depth + 1)
        elif isinstance(x, list):
            for k, v in enumerate(x):
                check(f"{where}[{k}]", v, depth + 1)
        elif isinstance(x, float) and not math.isfinite(x):
            raise fields.error(where, f"is {_show(x)}, not a finite number")
        elif not (x is None or isinstance(x, (str, int, float, bool))) or len(str(x)) > 500:
            raise fields.error(where, f"is {_show(x)}: expected a number, a string or null")

    value = fields.d.get(key)
    if value is not None and not isinstance(value, dict):
        raise fields.error(key, f"is {_show(value)}, not an object")
    check(key, value, 0)


def _test_trains(fields: _Fields) -> None:
    if fields.d.get("test_trains") is None:
        return
    t = _Fields("test_trains", fields.d["test_trains"], list(TestTrains.__dataclass_fields__))
    t.integer("seed", 0, MAX_SEED)
    t.integer("stream", 0, 2**31 - 1)
    t.choice("encoder", ENCODERS)
    t.choice("device", ("cpu", "cuda"))
    t.integer("batch_size", 1, 1 << 24)
    t.text("dataset", optional=True)
    t.choice("split", ("test", "validation"))
    t.integer("samples", 0, 1 << 31)


def check_description(meta: Any) -> None:
    """Check every field of a ``model.json`` against its type and range.

    Raises:
        ModelError: one line naming the first field that is missing, unknown, of the wrong type,
            not finite or out of range, or that disagrees with another field.
    """
    top = _Fields(
        "",
        meta,
        (
            "format",
            "format_version",
            "variant",
            "n_input",
            "n_neurons",
            "n_classes",
            "encoding",
            "one_spike",
            "formats",
            "label",
            "rounding",
            "scheme",
            "normalization",
            "leak",
            "seed",
            "labels",
            "payload",
            "checksum",
        ),
        ("image_shape", "accuracy", "memory", "provenance", "test_trains"),
    )
    top.choice("variant", [v.value for v in Variant])
    n_in = top.integer("n_input", 1, MAX_UNITS)
    n = top.integer("n_neurons", 1, MAX_UNITS)
    n_classes = top.integer("n_classes", 1, MAX_UNITS)
    shape = meta.get("image_shape")
    if shape is not None and (
        not isinstance(shape, list)
        or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_UNITS for s in shape)
        or int(np.prod(shape)) != n_in
    ):
        raise top.error(
            "image_shape", f"is {_show(shape)}: expected null or positive sizes whose product is {n_in}"
        )
    enc = _Fields("encoding", meta["encoding"], ("time_steps", "dt", "max_rate"))
    steps = enc.integer("time_steps", 1, 2**63 - 1)
    if steps > MAX_TIME_STEPS:
        gib = steps * n_in / 2**30
        raise enc.error(
            "time_steps",
            f"= {steps} is more than {MAX_TIME_STEPS} steps: one image's spike train "
            f"alone would take {gib:,.1f} GiB",
        )
    enc.number("dt", 0.0)
    enc.number("max_rate", 0.0)
    try:
        EncodingConfig(**meta["encoding"])
    except ValueError as exc:
        raise enc.error("", str(exc)) from None
    top.flag("one_spike")
    fm = _Fields("formats", meta["formats"], PARAMS)
    formats = {p: _format(fm, p) for p in PARAMS}
    fp32 = all(f is None for f in formats.values())
    top.choice("label", (FP32,) if fp32 else LABELS[1:])
    top.choice("rounding", (NO_ROUNDING,) if fp32 else tuple(r.value for r in Rounding))
    top.choice("scheme", (FP32,) if fp32 else tuple(s.value for s in Scheme))
    top.choice("normalization", tuple(n.value for n in Normalization))
    leak = _Fields("leak", meta["leak"], ("exc", "inh"))
    leak.integer("exc", 0, 1 << LEAK_BITS)
    leak.integer("inh", 0, 1 << LEAK_BITS)
    top.integer("seed", 0, MAX_SEED)
    labels = meta["labels"]
    if not isinstance(labels, list) or len(labels) != n:
        raise top.error("labels", f"is {_show(labels)}: expected a list of {n} neuron classes")
    bad = [x for x in labels if isinstance(x, bool) or not isinstance(x, int) or not -1 <= x < n_classes]
    if bad:
        raise top.error(
            "labels", f"holds {_show(bad[0])}: a neuron's class is -1 (does not vote) .. {n_classes - 1}"
        )
    top.number("accuracy", 0.0, 1.0, optional=True)
    _record(top, "memory")
    _record(top, "provenance")
    _test_trains(top)


def _group_plan(meta: Dict[str, Any]) -> List[Tuple[str, int, Optional[QFormat]]]:
    """(name, count, format) of each payload group the description implies, in payload order."""
    n, n_in = int(meta["n_neurons"]), int(meta["n_input"])
    f = {p: QFormat.from_dict(meta["formats"][p]) for p in PARAMS}
    plan = {
        "input_weights": (n_in * n, f["weights"]),
        "lateral_inhibition": (1, None),
        "exc_to_inh_weight": (1, None),
        "inh_to_exc_weight": (1, None),
        "exc_vmem": (n, f["vmem"]),
        "exc_theta": (n, f["vth"]),
        "exc_constants": (5, None),
        "inh_vmem": (n, f["vmem"]),
        "inh_constants": (5, None),
    }
    return [(name,) + plan[name] for name in group_names(str(meta["variant"]))]


def check_layout(meta: Dict[str, Any]) -> None:
    """Check ``meta["payload"]`` (a checked description's) against the groups its fields imply.

    Raises:
        ModelError: for another file name, a malformed digest, or groups whose names, counts, bit
            widths, formats, offsets or sizes are not those of the described network.
    """
    info = _Fields("payload", meta["payload"], ("file", "bytes", "sha256", "groups"))
    info.choice("file", (PAYLOAD,))
    total = info.integer("bytes", 0, 2**62)
    sha = info.d["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise info.error("sha256", f"is {_show(sha)}, not a SHA-256 hex digest")
    groups = info.d["groups"]
    plan = _group_plan(meta)
    if not isinstance(groups, list) or len(groups) != len(plan):
        raise info.error(
            "groups",
            f"are not the {len(plan)} groups of a {meta['variant']} model: {', '.join(p[0] for p in plan)}",
        )
    offset = 0
    for k, (g, (name, count, fmt)) in enumerate(zip(groups, plan)):
        gf = _Fields(f"payload.groups[{k}]", g, ("name", "count", "bits", "offset", "bytes", "format"))
        gf.choice("name", (name,))
        gf.exactly("count", count)
        bits = 32 if fmt is None else fmt.total_bits
        gf.exactly("bits", bits)
        gf.exactly("offset", offset)
        size = -(-count * bits // 8)
        gf.exactly("bytes", size)
        if _format(gf, "format") != fmt:
            want = f"{FP32} (null)" if fmt is None else fmt.text
            raise gf.error("format", f"is {_show(g['format'])}, but the model's formats say {want}")
        offset += size
    if offset != total:
        raise info.error("bytes", f"= {total}, but the groups take {offset} bytes")


def check_values(groups: Mapping[str, np.ndarray]) -> None:
    """Check decoded groups: finite float32 values, decays in (0, 1], whole non-negative refractory
    steps, the V_mem state buffers at rest (all zero, as the runner starts) and thresholds theta >= 0."""
    for name, values in groups.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ModelError(f"payload group {name} holds a value that is not finite (nan or inf)")
    for name, decay_at, refr_at in (("exc_constants", 3, 4), ("inh_constants", 3, 4)):
        if name not in groups:
            continue
        c = groups[name]
        if not 0.0 < float(c[decay_at]) <= 1.0:
            raise ModelError(f"payload group {name}: decay {float(c[decay_at])} is not in (0, 1]")
        refr = float(c[refr_at])
        if refr != int(refr) or not 0 <= refr <= MAX_TIME_STEPS:
            raise ModelError(
                f"payload group {name}: refractory period {refr} is not a whole number of "
                f"steps in 0..{MAX_TIME_STEPS}"
            )
    for name in ("exc_vmem", "inh_vmem"):
        if name in groups and np.any(groups[name] != 0):
            raise ModelError(f"payload group {name} is not at rest (V_mem - v_rest = 0 everywhere)")
    if "exc_theta" in groups and np.any(groups["exc_theta"] < 0):
        raise ModelError("payload group exc_theta holds a negative theta: thresholds lie at or above v_th")


# ---- writing and reading ---------------------------------------------------------------------------


def write_model(folder: Union[str, Path], meta: Dict[str, Any], groups: Sequence[Group]) -> Path:
    """Write a model folder atomically: a temporary sibling folder, renamed into place at the end.

    The description and the values go through the same checks as :func:`load_model` first; the
    folder gets the permissions of the umask, like any folder the user makes.

    Args:
        folder: the model folder to create; it must not exist yet (or be empty).
        meta: the description; ``format``, ``format_version``, ``payload`` and ``checksum`` are added.
        groups: the payload's groups, in :func:`group_names` order for ``meta["variant"]``.

    Raises:
        ModelError: if the folder exists with files in it, cannot be written, or the description or
            groups are not those of a valid model.
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
        layout.append(
            {
                "name": g.name,
                "count": count,
                "bits": g.bits,
                "offset": offset,
                "bytes": len(blob),
                "format": None if g.fmt is None else g.fmt.as_dict(),
            }
        )
        offset += len(blob)
    full = dict(meta, format=FORMAT, format_version=FORMAT_VERSION)
    full["payload"] = {
        "file": PAYLOAD,
        "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "groups": layout,
    }
    full["checksum"] = _checksum(full)
    try:
        _verify(full, {g.name: g.decoded() for g in groups})
    except ModelError as exc:
        raise ModelError(f"cannot export this network: {exc}") from None
    tmp = folder.parent / f".{folder.name}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()  # mode 0777 & ~umask, as any folder the user makes
        (tmp / PAYLOAD).write_bytes(payload)
        (tmp / MODEL_JSON).write_text(json.dumps(full, indent=1) + "\n")
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(
            f"cannot write the model folder {folder} ({exc.strerror or exc}): choose a folder "
            "you can write to, with free space"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def add_files(folder: Union[str, Path], writers: Mapping[str, Callable[[Path], object]]) -> List[Path]:
    """Add files to a model folder: ``writers[name](path)`` writes each to a temporary name (what it
    returns is ignored), and all are renamed into place once every one is written.

    Raises:
        ModelError: when the folder cannot be written (read-only, full); no file is left behind.
    """
    folder = Path(folder)
    tag = uuid.uuid4().hex[:8]
    temps = {name: folder / f".{name}-{tag}.tmp" for name in writers}
    try:
        for name, write in writers.items():
            write(temps[name])
        for name, tmp in temps.items():
            os.replace(tmp, folder / name)
    except OSError as exc:
        for tmp in temps.values():
            if tmp.exists():
                tmp.unlink()
        raise ModelError(
            f"cannot write into {folder} ({exc.strerror or exc}): make the folder writable "
            "(or copy the model folder somewhere you can write) and free space"
        ) from None
    return [folder / name for name in writers]


def _verify(meta: Any, groups: Optional[Mapping[str, np.ndarray]] = None) -> None:
    check_description(meta)
    check_layout(meta)
    if groups is not None:
        check_values(groups)


def load_model(folder: Union[str, Path]) -> Model:
    """Read and verify a model folder (or its ``model.json``).

    Raises:
        ModelError: one line naming the file and what is wrong: missing, not JSON, another format
            or version, edited (checksum), a field out of its schema or range, a truncated or
            changed payload, groups or values that do not fit the description.
    """
    path = Path(folder)
    if path.is_file() and path.name == MODEL_JSON:
        path = path.parent
    meta_path = path / MODEL_JSON
    if not meta_path.is_file():
        raise ModelError(
            f"{path} is not a model folder: {MODEL_JSON} is missing (export one with tinysnn "
            "train --export or tinysnn-search export)"
        )
    try:
        meta = json.loads(meta_path.read_text(), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{meta_path} is not readable JSON ({exc}): export the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path} is not a {FORMAT} description")
    if meta.get("format_version") == 1:
        raise ModelError(
            f"{meta_path} has format version 1, which stores V_th; this tinysnn reads version "
            f"{FORMAT_VERSION}, which stores theta = V_th - v_th: export the model again"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{meta_path} has format version {_show(meta.get('format_version'))}; this tinysnn "
            f"reads version {FORMAT_VERSION}: export the model with this version"
        )
    if meta.get("checksum") != _checksum(meta):
        raise ModelError(f"{meta_path} was edited after export (checksum mismatch): export the model again")
    try:
        _verify(meta)
    except ModelError as exc:
        raise ModelError(f"{meta_path}: {exc}: export the model again") from None
    info = meta["payload"]
    payload_path = path / PAYLOAD
    try:
        payload = payload_path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"cannot read {payload_path} ({exc.strerror}): copy the whole model folder"
        ) from None
    if len(payload) != info["bytes"] or hashlib.sha256(payload).hexdigest() != info["sha256"]:
        raise ModelError(
            f"{payload_path} is truncated or changed ({len(payload)} bytes, expected {info['bytes']} with "
            "the recorded SHA-256): copy the model folder again"
        )
    groups: Dict[str, np.ndarray] = {}
    for g in info["groups"]:
        blob = payload[g["offset"] : g["offset"] + g["bytes"]]
        fmt = QFormat.from_dict(g["format"])
        if fmt is None:
            codes = unpack_codes(blob, 32, g["count"], signed=False)
            groups[g["name"]] = codes.astype(np.uint32).view(np.float32)
        else:
            groups[g["name"]] = unpack_codes(blob, fmt.total_bits, g["count"], bool(fmt.signed))
    try:
        check_values(groups)
    except ModelError as exc:
        raise ModelError(f"{payload_path}: {exc}: export the model again") from None
    groups["input_weights"] = groups["input_weights"].reshape(meta["n_input"], meta["n_neurons"])
    return Model(meta, groups, path)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
