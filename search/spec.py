"""Study specs: one TOML file per experiment (``studies/*.toml``), parsed and checked before any trial.

Tables (every key optional unless said; ``studies/README.md`` documents them with examples):

* ``[study]`` name (default: the file's stem), trials (the total budget of complete trials),
  population (trials asked and trained together), storage (an Optuna URL, default
  ``sqlite:///runs/<name>.db``), artifacts (folder, default ``runs/<name>``), seed, weight_seed
  (``per_training``, default: trials that train alike share seed and FP32 training; ``per_trial``),
  device (cpu, cuda, auto), backend (auto, numba, torch, torch-compile), group (``size``: a population shares a size; ``variant``: sizes are padded),
  heartbeat_s, stale_after_s.
* ``[sampler]`` name (tpe, nsga2, nsga3, gp, random), startup_trials, population_size (NSGA).
* ``[data]`` dataset (mnist, fashion-mnist, digits; required), root, download, train_samples,
  test_samples, assign_samples, validation, epochs.
* ``[encoding]`` time_steps, dt, max_rate (tinysnn.config.EncodingConfig).
* ``[network]``, ``[learning]``: fixed constants; ``[space]``: the search space (``search.space``).
* ``[objectives]`` energy (``opcount`` or ``meter``), meter (auto, nvml, jetson, rapl,
  estimate[:W]), idle_seconds, solo_samples, memory_convention (compact, as_simulated),
  reference_variant, reference_neurons.
* ``[constraints]`` min_accuracy (default twice chance), max_memory_norm, max_energy_j.
* ``[fidelity]`` train_samples, test_samples, assign_samples: the subset ``run`` trains and scores
  every trial on (``[data]`` is the full fidelity, ``tinysnn-search confirm`` re-trains the front on it).
* ``[checkpoint]`` every (samples between checkpoints; 0 = only after training).

Unknown keys are errors that name the key; so are empty lists, impossible bit widths, numbers that
are not finite or out of range, and fractions where an integer is expected (``t_update = 2.5``). Each
section is a dataclass that checks itself when it is made (``__post_init__``): the types its fields
declare, then its values; so an override (:meth:`StudySpec.replace`) is checked too, and the parser
only matches the tables' keys against the fields.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Union

from tinysnn.config import BACKENDS, ConfigError, EncodingConfig, Variant, from_mapping
from tinysnn.data import DATASETS, N_CLASSES
from tinysnn.energy import EnergySpecError, parse_meter_spec
from tinysnn.quant.formats import DEFAULT_NORMALIZATION, TEXT_NORMALIZATION

from .errors import SpecError
from .space import SearchSpace, parse_space

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11 (Jetson images ship 3.8)
    import tomli as tomllib

__all__ = [
    "SAMPLERS",
    "CheckpointSection",
    "ConstraintSection",
    "DEFAULT_MIN_ACCURACY",
    "DataSection",
    "FidelitySection",
    "ObjectiveSection",
    "SamplerSection",
    "StudySection",
    "StudySpec",
    "check_study_name",
    "load_spec",
    "parse_spec",
]

SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random")
WEIGHT_SEEDS = ("per_training", "per_trial")
ENERGY_OBJECTIVES = ("opcount", "meter")
_TOP_KEYS = (
    "study",
    "sampler",
    "data",
    "encoding",
    "network",
    "learning",
    "space",
    "objectives",
    "constraints",
    "fidelity",
    "checkpoint",
)
_STUDY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
DEFAULT_MIN_ACCURACY = 2 / N_CLASSES
"""Twice chance: a network no better than that says nothing about its size or format (every dataset
here has N_CLASSES classes)."""
MAX_SEED = 2**32 - 1
"""study.seed lies in [0, MAX_SEED]: the range Optuna's seeded samplers (numpy) accept."""
MIN_HEARTBEAT_S = 0.1
MAX_HEARTBEAT_S = 3600.0
MAX_STALE_AFTER_S = 7 * 86400.0
MAX_IDLE_SECONDS = 3600.0


_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
"""The value types a spec's keys take (TOML's integer, float, string and boolean), as errors name them."""


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> Tuple[Tuple[str, type, bool], ...]:
    """(name, type, optional) of each field of the dataclass ``cls``: the type one of :data:`_KINDS`,
    optional when it is declared ``Optional`` (None is a value: a default, no limit)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        optional = typing.get_origin(kind) is Union
        if optional:
            (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        out.append((f.name, kind, optional))
    return tuple(out)


def _check_types(table: str, cls: type, values: Mapping[str, Any]) -> None:
    """:class:`SpecError` naming ``table.key`` for a value in ``values`` of another type than field
    ``key`` of ``cls`` declares: an integer where it says int (not a bool, not 2.5), an integer or a
    finite float where it says float, a string, a bool; None only where it says Optional."""
    for key, kind, optional in _field_types(cls):
        if key not in values or (values[key] is None and optional):
            continue
        value = values[key]
        wanted = (int, float) if kind is float else kind
        if not isinstance(value, wanted) or (isinstance(value, bool) and kind is not bool):
            raise SpecError(f"{table}.{key} must be {_KINDS[kind]}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{table}.{key} must be a finite number, got {value!r}")


def _check_fields(section: Any) -> None:
    """:func:`_check_types` of a spec section on its own values: a dataclass whose ``TABLE`` is the
    name of its table in the TOML file."""
    cls = type(section)
    _check_types(cls.TABLE, cls, {f.name: getattr(section, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class StudySection:
    """``[study]``: name, budget and where the study lives."""

    TABLE: ClassVar[str] = "study"

    name: str
    trials: int = 20
    """Total budget of COMPLETE trials, across restarts (MaxTrialsCallback semantics)."""
    population: int = 4
    """Trials asked at once and trained together (one population per shared size)."""
    storage: Optional[str] = None
    """Optuna storage URL; default ``sqlite:///runs/<name>.db``."""
    artifacts: Optional[str] = None
    """Folder of artifacts and checkpoints; default ``runs/<name>``."""
    seed: int = 0
    """0 to MAX_SEED (2**32 - 1)."""
    weight_seed: str = "per_training"
    """``per_training``: trials that train alike share their weight seed (and PTQ/FP32 trials their
    FP32 training, ``search._trained``); ``per_trial``: each trial is seeded by its draw."""
    device: str = "cpu"
    backend: str = "auto"
    """The simulator (tinysnn.sim.Simulator): auto is numba on CPU and eager torch on CUDA;
    ``torch-compile`` compiles each time step (fused kernels, CUDA graphs on CUDA)."""
    group: str = "size"
    heartbeat_s: float = 30.0
    """Seconds between heartbeats of a running trial, MIN_HEARTBEAT_S to MAX_HEARTBEAT_S."""
    stale_after_s: float = 300.0
    """A running trial of another machine without a heartbeat for this long is failed and re-queued;
    more than heartbeat_s, at most MAX_STALE_AFTER_S (a week)."""

    def __post_init__(self) -> None:
        _check_fields(self)
        check_study_name(self.name)
        _check_number(self.trials, "study.trials", 1, low_open=False)
        _check_number(self.population, "study.population", 1, low_open=False)
        _check_number(self.seed, "study.seed", 0, MAX_SEED, low_open=False)
        _check_number(self.heartbeat_s, "study.heartbeat_s", MIN_HEARTBEAT_S, MAX_HEARTBEAT_S, low_open=False)
        _check_number(
            self.stale_after_s, "study.stale_after_s", MIN_HEARTBEAT_S, MAX_STALE_AFTER_S, low_open=False
        )
        if self.stale_after_s <= self.heartbeat_s:
            raise SpecError(
                f"study.stale_after_s = {self.stale_after_s:g} s must exceed study.heartbeat_s = "
                f"{self.heartbeat_s:g} s, or live trials look stale between two heartbeats"
            )
        for key in ("storage", "artifacts"):
            if getattr(self, key) is not None and not getattr(self, key).strip():
                raise SpecError(f"study.{key} is empty: give a value or leave the key out for the default")
        if self.group not in ("size", "variant"):
            raise SpecError(f"study.group = {self.group!r}: choose size (no padding) or variant (pad sizes)")
        if self.weight_seed not in WEIGHT_SEEDS:
            raise SpecError(f"study.weight_seed = {self.weight_seed!r}: choose {' or '.join(WEIGHT_SEEDS)}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise SpecError(f"study.device = {self.device!r}: choose cpu, cuda or auto")
        if self.backend not in BACKENDS:
            raise SpecError(f"study.backend = {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.backend == "numba" and self.device == "cuda":
            raise SpecError(
                "study.backend = 'numba' runs on CPU only: use torch or torch-compile with device cuda"
            )

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///runs/{self.name}.db"

    @property
    def artifact_dir(self) -> Path:
        return Path(self.artifacts or f"runs/{self.name}")


@dataclass(frozen=True)
class SamplerSection:
    """``[sampler]``: the Optuna sampler, always seeded."""

    TABLE: ClassVar[str] = "sampler"

    name: str = "tpe"
    startup_trials: int = 10
    population_size: Optional[int] = None
    """NSGA-II/III generation size; default max(10, study.population)."""

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.name not in SAMPLERS:
            raise SpecError(f"sampler.name = {self.name!r}: choose one of {', '.join(SAMPLERS)}")
        _check_number(self.startup_trials, "sampler.startup_trials", 0, low_open=False)
        _check_number(self.population_size, "sampler.population_size", 2, low_open=False)


@dataclass(frozen=True)
class DataSection:
    """``[data]``: the dataset and how much of it a trial uses."""

    TABLE: ClassVar[str] = "data"

    dataset: str = "digits"
    root: Optional[str] = None
    download: bool = False
    train_samples: Optional[int] = None
    test_samples: Optional[int] = None
    assign_samples: Optional[int] = None
    validation: int = 0
    """Samples carved from the end of the training set; when > 0 trials are scored on them, not on the test set."""
    epochs: int = 1

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.dataset.lower().replace("_", "-") not in DATASETS + ("fashion",):
            raise SpecError(
                f"data.dataset = {self.dataset!r} is unknown: choose one of {', '.join(DATASETS)}"
            )
        for key in ("train_samples", "test_samples", "assign_samples"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise SpecError(f"data.{key} must be >= 1 (or left out for all samples), got {value}")
        _check_number(self.validation, "data.validation", 0, low_open=False)
        _check_number(self.epochs, "data.epochs", 1, low_open=False)


@dataclass(frozen=True)
class ObjectiveSection:
    """``[objectives]``: how memory and energy are scored."""

    TABLE: ClassVar[str] = "objectives"

    energy: str = "opcount"
    meter: str = "auto"
    idle_seconds: float = 1.0
    solo_samples: int = 200
    """energy = "meter": test samples each network runs alone under the meter."""
    memory_convention: str = "compact"
    reference_variant: str = "diehl_cook"
    reference_neurons: Optional[int] = None
    """Size of the FP32 reference of M_norm; default the largest size in the space."""

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.energy not in ENERGY_OBJECTIVES:
            raise SpecError(f"objectives.energy = {self.energy!r}: choose opcount or meter")
        try:
            parse_meter_spec(self.meter)
        except EnergySpecError as exc:
            raise SpecError(f"objectives.meter: {exc}") from None
        if self.memory_convention not in ("compact", "as_simulated"):
            raise SpecError(
                f"objectives.memory_convention = {self.memory_convention!r}: choose compact or as_simulated"
            )
        if self.reference_variant not in [v.value for v in Variant]:
            raise SpecError(
                f"objectives.reference_variant = {self.reference_variant!r}: choose one of "
                + ", ".join(v.value for v in Variant)
            )
        _check_number(self.reference_neurons, "objectives.reference_neurons", 1, low_open=False)
        _check_number(self.solo_samples, "objectives.solo_samples", 1, low_open=False)
        _check_number(self.idle_seconds, "objectives.idle_seconds", 0, MAX_IDLE_SECONDS, low_open=False)


@dataclass(frozen=True)
class ConstraintSection:
    """``[constraints]``: budgets a feasible trial must meet (None = no budget)."""

    TABLE: ClassVar[str] = "constraints"

    min_accuracy: Optional[float] = DEFAULT_MIN_ACCURACY
    """A fraction; ``min_accuracy = 0`` in the spec turns it off (None)."""
    max_memory_norm: Optional[float] = None
    max_energy_j: Optional[float] = None

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.min_accuracy is not None:
            if not (math.isfinite(self.min_accuracy) and 0 <= self.min_accuracy <= 1):
                raise SpecError(
                    f"constraints.min_accuracy must be a fraction in [0, 1] (0 turns it off; "
                    f"default {DEFAULT_MIN_ACCURACY:g}, twice chance), got {self.min_accuracy}"
                )
            if self.min_accuracy == 0:
                object.__setattr__(self, "min_accuracy", None)
        _check_number(self.max_memory_norm, "constraints.max_memory_norm", 0)
        _check_number(self.max_energy_j, "constraints.max_energy_j", 0)

    @property
    def active(self) -> bool:
        return any(limit is not None for limit in self.limits().values())

    def limits(self) -> Dict[str, Optional[float]]:
        """The budgets by key, as :func:`search.select.limit_violations` and the study record them."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FidelitySection:
    """``[fidelity]``: the sample counts every trial of ``run`` trains and is scored on, at most
    ``[data]``'s (None: ``[data]``'s); ``tinysnn-search confirm`` re-trains the front at ``[data]``'s."""

    TABLE: ClassVar[str] = "fidelity"

    train_samples: Optional[int] = None
    test_samples: Optional[int] = None
    assign_samples: Optional[int] = None

    def __post_init__(self) -> None:
        _check_fields(self)
        for key, count in dataclasses.asdict(self).items():
            _check_number(count, f"fidelity.{key}", 0)

    @property
    def active(self) -> bool:
        return any(count is not None for count in dataclasses.astuple(self))


@dataclass(frozen=True)
class CheckpointSection:
    """``[checkpoint]``: save a running population every ``every`` training samples (0: only after training)."""

    TABLE: ClassVar[str] = "checkpoint"

    every: int = 5000

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_number(self.every, "checkpoint.every", 0, low_open=False)


@dataclass(frozen=True)
class StudySpec:
    """A parsed, checked study spec."""

    study: StudySection
    sampler: SamplerSection
    data: DataSection
    encoding: EncodingConfig
    space: SearchSpace
    objectives: ObjectiveSection
    constraints: ConstraintSection
    fidelity: FidelitySection
    checkpoint: CheckpointSection
    raw: Dict[str, Any] = field(default_factory=dict, compare=False)
    source: Optional[str] = None

    def __post_init__(self) -> None:
        for key, count in dataclasses.asdict(self.fidelity).items():
            full = getattr(self.data, key)
            if count is not None and full is not None and count > full:
                raise SpecError(
                    f"fidelity.{key} must be <= data.{key} ({full}), a subset of [data], got {count}"
                )

    def science(self, named_sum_dropped: bool = True) -> Dict[str, Any]:
        """The part of the spec that decides trial results; a resumed study must keep it.

        ``named_sum_dropped=False`` keeps a space's ``normalization = "sum"`` as written, the
        science of a study made before the default rule changed that named it
        (:meth:`fingerprints`)."""
        keep = {k: v for k, v in self.raw.items() if k not in ("study", "sampler", "checkpoint")}
        data = dict(keep.get("data", {}))
        for k in ("root", "download"):
            data.pop(k, None)
        keep["data"] = data
        # An ITQ space that does not name the normalization rule gets DEFAULT_NORMALIZATION, which was
        # sum before; naming "sum" is what such a study meant, so it is the same science (a study
        # made before resumes once its spec says normalization = "sum").
        space = keep.get("space", {})
        rule, scheme = space.get("normalization"), space.get("scheme", "ptq")
        if rule == TEXT_NORMALIZATION.value and named_sum_dropped:
            keep["space"] = {k: v for k, v in space.items() if k != "normalization"}
        elif rule is None and "itq" in (scheme if isinstance(scheme, list) else [scheme]):
            keep["normalization_default"] = DEFAULT_NORMALIZATION.value
        keep["seed"] = self.study.seed
        if self.study.weight_seed != "per_trial":  # studies made before the setting seeded per trial
            keep["weight_seed"] = self.study.weight_seed
        return json.loads(json.dumps(keep, sort_keys=True, default=str))

    def fingerprint(self) -> str:
        """A short hash of :meth:`science`."""
        return _digest(self.science())

    def fingerprints(self) -> Tuple[str, ...]:
        """Every fingerprint a study resumed with this spec may have recorded: :meth:`fingerprint`,
        and, where the space names ``normalization = "sum"``, that of a study made before the
        default changed whose spec named it too."""
        return tuple(dict.fromkeys([self.fingerprint(), _digest(self.science(named_sum_dropped=False))]))

    def replace(self, **study_fields: Any) -> "StudySpec":
        """A copy with ``[study]`` fields overridden (None values are ignored)."""
        upd = {k: v for k, v in study_fields.items() if v is not None}
        return dataclasses.replace(self, study=dataclasses.replace(self.study, **upd))

    def at_search_fidelity(self) -> "StudySpec":
        """A copy with ``[data]``'s sample counts replaced by ``[fidelity]``'s: what ``run`` trains on."""
        counts = {k: v for k, v in dataclasses.asdict(self.fidelity).items() if v is not None}
        return dataclasses.replace(self, data=dataclasses.replace(self.data, **counts))

    def with_data_root(self, root: Optional[str]) -> "StudySpec":
        """A copy reading the dataset from ``root`` (None keeps the spec's)."""
        if root is None:
            return self
        return dataclasses.replace(self, data=dataclasses.replace(self.data, root=str(root)))


def _digest(science: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(science, sort_keys=True).encode()).hexdigest()[:16]


def check_study_name(name: object, key: str = "study.name") -> str:
    """``name`` if it is a plain study name, else :class:`SpecError` naming ``key``.

    A study name becomes a file name (``runs/<name>.db``) and a folder (``runs/<name>/``), so it is a
    plain identifier: letters, digits, ``-``, ``_`` and ``.``, not starting with ``.`` (so never ``..``,
    an absolute path or a hidden file), at most 128 characters. Every name a user types or a pack
    carries passes here.
    """
    if not isinstance(name, str) or _STUDY_NAME.fullmatch(name) is None:
        raise SpecError(
            f"{key} {name!r} is not a plain name: use letters, digits, '-', '_' and '.', not "
            "starting with '.' (at most 128 characters)"
        )
    return name


def _table(raw: Mapping[str, Any], cls: Any, name: Optional[str] = None) -> Dict[str, Any]:
    """Table ``name`` (default ``cls.TABLE``) of the spec, empty when absent, whose keys must be fields
    of the dataclass ``cls``."""
    name = name or cls.TABLE
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise SpecError(f"[{name}] must be a table")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        keys = ", ".join(f"{name}.{k}" for k in unknown)
        raise SpecError(f"unknown key {keys}: valid keys in [{name}] are {', '.join(names)}")
    return table


def _section(raw: Mapping[str, Any], cls: Any, **defaults: Any) -> Any:
    """The section ``cls`` made from its table (:func:`_table`) over ``defaults``; it checks itself."""
    return cls(**{**defaults, **_table(raw, cls)})


def _check_number(
    value: Optional[float], key: str, low: float, high: Optional[float] = None, low_open: bool = True
) -> None:
    """:class:`SpecError` naming ``key`` unless ``value`` is None or a finite number above ``low`` (at
    least ``low`` when not ``low_open``) and at most ``high``."""
    if value is None:
        return
    above = value > low if low_open else value >= low
    if math.isfinite(value) and above and (high is None or value <= high):
        return
    bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
    if isinstance(value, int):  # bounds of integers exactly (2**32 - 1, not 4.29e+09)
        bound = f"{'>' if low_open else '>='} {int(low)}" + (
            f" and <= {int(high)}" if high is not None else ""
        )
    raise SpecError(
        f"{key} must be {'an integer' if isinstance(value, int) else 'a finite number'} {bound}, "
        f"got {value!r}"
    )


def parse_spec(
    raw: Mapping[str, Any], source: Optional[str] = None, default_name: str = "study"
) -> StudySpec:
    """Check a spec given as a dict (the TOML tables) and build a :class:`StudySpec`.

    Raises:
        SpecError: naming the key, for anything that would fail later.
    """
    if not isinstance(raw, dict):
        raise SpecError("a study spec is a TOML document of tables ([study], [data], [space], ...)")
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise SpecError(f"unknown key(s) {unknown} at the top level: valid tables are {', '.join(_TOP_KEYS)}")
    study = _section(raw, StudySection, name=default_name)
    sampler = _section(raw, SamplerSection)
    if "dataset" not in _table(raw, DataSection):
        raise SpecError(f"data.dataset is missing: choose one of {', '.join(DATASETS)}")
    data = _section(raw, DataSection)
    encoding_table = _table(raw, EncodingConfig, "encoding")
    _check_types("encoding", EncodingConfig, encoding_table)  # tinysnn's own checks name no table
    try:
        encoding = from_mapping(EncodingConfig, encoding_table)
    except (ConfigError, TypeError) as exc:
        raise SpecError(f"[encoding]: {exc}") from None
    space = parse_space(raw.get("space"), raw.get("network"), raw.get("learning"))
    objectives = _section(raw, ObjectiveSection)
    constraints = _section(raw, ConstraintSection)
    fidelity = _section(raw, FidelitySection)
    checkpoint = _section(raw, CheckpointSection)
    return StudySpec(
        study,
        sampler,
        data,
        encoding,
        space,
        objectives,
        constraints,
        fidelity,
        checkpoint,
        json.loads(json.dumps(raw, default=str)),
        source,
    )


def load_spec(path: Union[str, Path]) -> StudySpec:
    """Read and check a study spec (TOML).

    Example:
        >>> spec = load_spec("studies/quickstart.toml")
        >>> spec.study.name, spec.data.dataset
        ('quickstart', 'digits')

    Raises:
        SpecError: if the file is missing, is not TOML, or fails a check (the message names the key).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read study spec {p}: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p} is not valid TOML: {exc}") from None
    return parse_spec(raw, str(p), default_name=p.stem)
