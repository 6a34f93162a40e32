"""The search space of a study: a trial's parameters -> tinysnn configs (network, learning, quantization).

Declared in the ``[space]`` table of a study spec (see ``studies/README.md``)::

    [space]
    variant = "tinysnn"                  # or a list: ["tinysnn", "diehl_cook", "sl_stdp"]
    n_neurons = [100, 400, 900]          # or { low = 100, high = 900, step = 100 }
    quantize = ["fp32", "qW", "qWN"]     # which parameters are quantized (docs/method.md §2)
    scheme = ["ptq", "itq"]
    rounding = ["truncate", "nearest", "stochastic"]
    normalization = "proportional"       # ITQ column normalization: proportional, sum, apportion, plain or settled

    [space.bits.weights]                 # Qi.f of each quantized parameter
    int = 1
    frac = { low = 3, high = 15 }        # or total = [4, 8, 16]: f = total - int
    [space.bits.vmem]                    # V_mem - v_rest in mV (0 at rest, 13 at v_th)
    int = { low = 5, high = 9 }          # the i.f split is searched: f = total - i
    total = [6, 8]

    [space.learning]                     # optional: searched learning constants
    eta_post = { low = 5e-4, high = 5e-3, log = true }

A shared precision ``[space.bits] total = [4, 8, 16]`` gives every quantized parameter B bits,
with its own ``int``. A format may saturate (docs/method.md §2): a split with few integer bits clamps the
values beyond its range, and the trial's accuracy says what that costs. A combination that cannot
be built (more than 32 bits, fewer than 0 fractional bits, no sign bit for V_mem or V_th, an ITQ
V_th step coarser than the threshold increment theta+) is rejected before training: :class:`Rejected`
carries the reason, which the runner records on the trial (state PRUNED, user attribute ``rejected``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from tinysnn.config import ConfigError, LearningConfig, NetworkConfig, Variant
from tinysnn.quant.formats import (
    DEFAULT_NORMALIZATION,
    FP32,
    LABELS,
    MAX_TOTAL_BITS,
    PARAM_SIGNED,
    PARAMS,
    Normalization,
    QFormat,
    QuantSpec,
    Rounding,
    Scheme,
    record_fields,
)
from tinysnn.quant.ranges import itq_problem, min_frac_bits_for_step

from ._domain import Domain, parse_domain
from .errors import SpecError

__all__ = [
    "QUANT_LABELS",
    "BitsDomain",
    "Rejected",
    "SearchSpace",
    "TrialConfig",
    "parse_space",
]

QUANT_LABELS = LABELS[:3]
"""The :data:`~tinysnn.quant.LABELS` a search draws (not ``qN``): ``fp32``: nothing quantized; ``qW``: the
weights; ``qWN``: weights, V_mem and V_th (docs/method.md §2)."""
_QUANTIZED = {FP32: (), "qW": ("weights",), "qWN": PARAMS}
_SPACE_KEYS = (
    "variant",
    "n_neurons",
    "quantize",
    "scheme",
    "rounding",
    "normalization",
    "bits",
    "learning",
    "network",
)
_BITS_KEYS = ("int", "frac", "total")
#: Network fields a spec may not set: the search or the dataset decides them, or TOML cannot express them.
_NETWORK_RESERVED = ("variant", "n_neurons", "n_input", "exc", "inh")


class Rejected(Exception):
    """A sampled combination cannot be trained; ``str(exc)`` is the reason recorded on the trial."""


@dataclass(frozen=True)
class BitsDomain:
    """Integer bits and fractional bits (or total bits) of one parameter's format Qi.f."""

    param: str
    int_bits: Domain
    frac_bits: Optional[Domain] = None
    total_bits: Optional[Domain] = None


@dataclass(frozen=True)
class TrialConfig:
    """Everything a trial trains: its network, learning constants and quantization (None = FP32)."""

    network: NetworkConfig
    learning: LearningConfig
    quant: Optional[QuantSpec]

    @property
    def label(self) -> str:
        """``fp32``, ``qW`` or ``qWN``."""
        return record_fields(self.quant).label

    def group_key(self, by: str = "size") -> Tuple[Any, ...]:
        """Trials with equal keys train together as one population.

        ``size``: same variant and size (no padding); ``variant``: same variant (smaller networks
        are padded). Constants a population must share (trace and threshold time constants) are
        always part of the key.
        """
        shared = (
            self.network.variant.value,
            self.network.tau_theta,
            self.learning.tau_pre,
            self.learning.tau_post,
        )
        return shared + ((self.network.n_neurons,) if by == "size" else ())


@dataclass(frozen=True)
class SearchSpace:
    """The parsed ``[space]`` table plus the fixed ``[network]`` and ``[learning]`` values."""

    variant: Domain
    n_neurons: Domain
    quantize: Domain
    scheme: Domain
    rounding: Domain
    normalization: Domain
    bits: Dict[str, BitsDomain]
    shared_total: Optional[Domain]
    learning: Dict[str, Domain]
    network: Dict[str, Domain]
    fixed_learning: Dict[str, Any]
    fixed_network: Dict[str, Any]

    @property
    def max_neurons(self) -> int:
        """The largest network the space holds (the default memory reference size)."""
        return int(self.n_neurons.bounds()[1])

    @property
    def variants(self) -> List[str]:
        """Every variant the space may sample."""
        return [str(v) for v in self.variant.all_values()]

    def suggest(self, trial: Any, n_input: int) -> TrialConfig:
        """Sample (or, for a ``FixedTrial``, read back) one trial's configs.

        Args:
            trial: an Optuna ``Trial`` or ``optuna.trial.FixedTrial``.
            n_input: inputs of the dataset (64 for digits, 784 for MNIST).

        Raises:
            Rejected: for a combination that cannot be trained, with the reason.
        """
        variant = Variant.parse(self.variant.suggest(trial))
        n_neurons = int(self.n_neurons.suggest(trial))
        label = self.quantize.suggest(trial)
        quant = None
        if label != FP32:
            scheme = self.scheme.suggest(trial)
            rounding = self.rounding.suggest(trial)
            shared = self.shared_total.suggest(trial) if self.shared_total is not None else None
            formats = {p: self._format(trial, p, shared) for p in _QUANTIZED[label]}
            normalization = self.normalization.suggest(trial) if scheme == "itq" else DEFAULT_NORMALIZATION
            try:
                quant = QuantSpec(rounding=rounding, scheme=scheme, normalization=normalization, **formats)
            except ValueError as exc:
                raise Rejected(str(exc)) from None
        learn_kw = dict(self.fixed_learning)
        learn_kw.update({k: d.suggest(trial) for k, d in self.learning.items()})
        net_kw = dict(self.fixed_network)
        net_kw.update({k: d.suggest(trial) for k, d in self.network.items()})
        try:
            network = NetworkConfig(variant=variant, n_neurons=n_neurons, n_input=n_input, **net_kw)
            learning = LearningConfig(**learn_kw)
        except (ConfigError, TypeError, ValueError) as exc:
            raise Rejected(f"invalid constants: {exc}") from None
        problem = itq_problem(quant, network.theta_plus)
        if problem:
            raise Rejected(problem)
        return TrialConfig(network, learning, quant)

    def _format(self, trial: Any, param: str, shared: Optional[int]) -> QFormat:
        dom = self.bits[param]
        i = int(dom.int_bits.suggest(trial))
        if dom.frac_bits is not None:
            f = int(dom.frac_bits.suggest(trial))
            total = i + f
        else:
            total = int(dom.total_bits.suggest(trial)) if dom.total_bits is not None else int(shared or 0)
            f = total - i
        if f < 0:
            raise Rejected(f"{param}: {i} integer bits leave no fractional bits in {total} bits (f = {f})")
        try:
            return QFormat(i, f, None)  # a signed parameter's sign bit is checked by QuantSpec
        except ValueError as exc:
            raise Rejected(f"{param}: {exc}") from None


def _dataclass_keys(cls: Any) -> List[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _check_keys(table: Mapping[str, Any], path: str, allowed: List[str]) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        names = ", ".join(f"{path}.{k}" for k in unknown)
        raise SpecError(f"unknown key {names}: valid keys in [{path}] are {', '.join(allowed)}")


def _parse_constants(table: Any, path: str, cls: Any, exclude: Tuple[str, ...]) -> Dict[str, Any]:
    if not isinstance(table, dict):
        raise SpecError(f"[{path}] must be a table of constants")
    allowed = [k for k in _dataclass_keys(cls) if k not in exclude]
    _check_keys(table, path, allowed)
    flags = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, bool)}
    out = {}
    for k, v in table.items():
        if k in flags:
            if not isinstance(v, bool):
                raise SpecError(f"{path}.{k}: expected true or false, got {v!r}")
            out[k] = v
        elif isinstance(v, (list, dict)):
            raise SpecError(
                f"{path}.{k} = {v!r}: fixed constants take one number; search it in [space.*] instead"
            )
        else:  # a finite number, an integer where the config holds one (t_update = 2.5 is refused)
            out[k] = parse_domain(v, f"{path}.{k}", k, _number_kind(cls, k)).values[0]
    return out


def _number_kind(cls: Any, key: str) -> str:
    """``int`` for a config field that holds an integer (``t_update``), else ``number``."""
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[key]
    return "int" if kind in ("int", int) else "number"


def _parse_bits(table: Any, labels: List[str]) -> Tuple[Dict[str, BitsDomain], Optional[Domain]]:
    if not isinstance(table, dict):
        raise SpecError(
            "[space.bits] must be a table: [space.bits.weights] int = 1, frac = { low = 3, high = 15 }"
        )
    _check_keys(table, "space.bits", ["total"] + list(PARAMS))
    shared = (
        parse_domain(table["total"], "space.bits.total", "bits_total", "int") if "total" in table else None
    )
    if shared is not None:
        _check_range(shared, 1, MAX_TOTAL_BITS)
    needed = sorted({p for lab in labels for p in _QUANTIZED[lab]}, key=PARAMS.index)
    out: Dict[str, BitsDomain] = {}
    for param in PARAMS:
        path = f"space.bits.{param}"
        sub = table.get(param)
        if sub is None:
            if param in needed:
                raise SpecError(
                    f"{path} is missing but space.quantize includes {'qWN' if param != 'weights' else 'qW'}: "
                    f"add [{path}] with int = ... and frac = ... (or total = ...)"
                )
            continue
        if not isinstance(sub, dict):
            raise SpecError(f"[{path}] must be a table with int and frac (or total)")
        _check_keys(sub, path, list(_BITS_KEYS))
        if "int" not in sub:
            raise SpecError(
                f"{path}.int is missing: give the integer bits i of Q{{i}}.{{f}} (sign bit included)"
            )
        if "frac" in sub and "total" in sub:
            raise SpecError(f"{path}: give frac or total, not both")
        if "frac" not in sub and "total" not in sub and shared is None:
            raise SpecError(f"{path}: give frac = ... (fractional bits) or total = ... (B = int + frac)")
        ints = parse_domain(sub["int"], f"{path}.int", f"{param}_int", "int")
        frac = parse_domain(sub["frac"], f"{path}.frac", f"{param}_frac", "int") if "frac" in sub else None
        tot = parse_domain(sub["total"], f"{path}.total", f"{param}_total", "int") if "total" in sub else None
        _check_range(ints, 0, MAX_TOTAL_BITS)
        if frac is not None:
            _check_range(frac, 0, MAX_TOTAL_BITS - 1)
        if tot is not None:
            _check_range(tot, 1, MAX_TOTAL_BITS)
        dom = BitsDomain(param, ints, frac, tot)
        if param in needed:
            _check_feasible(dom, tot if tot is not None else shared)
        out[param] = dom
    return out, shared


def _check_range(dom: Domain, lo: int, hi: int) -> None:
    a, b = dom.bounds()
    if a < lo or b > hi:
        raise SpecError(
            f"{dom.path}: bits must lie in [{lo}, {hi}] (a fixed-point format has 1 to {MAX_TOTAL_BITS} "
            f"bits), got values from {a:g} to {b:g}"
        )


def _check_feasible(dom: BitsDomain, total: Optional[Domain]) -> None:
    """A bits table none of whose formats can be built is a spec error (a saturating one is not)."""
    fewest = 1 if PARAM_SIGNED[dom.param] else 0
    ints = [int(i) for i in dom.int_bits.numeric_values() if i >= fewest]
    if not ints:
        raise SpecError(
            f"{dom.int_bits.path}: {dom.param} is signed and needs at least 1 integer bit (the sign); "
            f"the largest value here is {int(dom.int_bits.bounds()[1])}"
        )
    if dom.frac_bits is not None:
        if max(ints) + int(dom.frac_bits.bounds()[1]) < 1:
            raise SpecError(
                f"space.bits.{dom.param}: every format here is Q{max(ints)}.{int(dom.frac_bits.bounds()[1])} "
                "or smaller, which holds no bit: give int + frac >= 1"
            )
        fmin = int(dom.frac_bits.bounds()[0])
        if min(ints) + fmin > MAX_TOTAL_BITS:
            raise SpecError(
                f"space.bits.{dom.param}: int + frac is at least {min(ints) + fmin} bits; a format has "
                f"at most {MAX_TOTAL_BITS}: lower {dom.frac_bits.path}"
            )
    elif total is not None and int(total.bounds()[1]) < min(ints):
        raise SpecError(
            f"{total.path}: at most {int(total.bounds()[1])} bits cannot hold {dom.param}'s {min(ints)} "
            f"integer bits ({dom.int_bits.path}): raise the total or lower int"
        )


def parse_space(space: Any, network: Any = None, learning: Any = None) -> SearchSpace:
    """Parse the ``[space]``, ``[network]`` and ``[learning]`` tables of a spec.

    Raises:
        SpecError: naming the key for unknown keys, empty lists, impossible bits or bad values.
    """
    if not isinstance(space, dict) or not space:
        raise SpecError("[space] is missing or empty: declare at least n_neurons (see studies/README.md)")
    _check_keys(space, "space", list(_SPACE_KEYS))
    if "n_neurons" not in space:
        raise SpecError(
            "space.n_neurons is missing: e.g. n_neurons = [100, 400] or { low = 100, high = 900 }"
        )
    variant = parse_domain(
        space.get("variant", "tinysnn"), "space.variant", "variant", "str", [v.value for v in Variant]
    )
    n_neurons = parse_domain(space["n_neurons"], "space.n_neurons", "n_neurons", "int")
    if n_neurons.bounds()[0] < 1:
        raise SpecError(f"space.n_neurons: networks need at least 1 neuron, got {n_neurons.bounds()[0]:g}")
    quantize = parse_domain(space.get("quantize", FP32), "space.quantize", "quantize", "str", QUANT_LABELS)
    scheme = parse_domain(space.get("scheme", "ptq"), "space.scheme", "scheme", "str", ["ptq", "itq"])
    rounding = parse_domain(
        space.get("rounding", "truncate"),
        "space.rounding",
        "rounding",
        "str",
        ["truncate", "nearest", "stochastic"],
    )
    normalization = parse_domain(
        space.get("normalization", DEFAULT_NORMALIZATION.value),
        "space.normalization",
        "normalization",
        "str",
        [n.value for n in Normalization],
    )
    labels = [str(v) for v in quantize.all_values()]
    bits, shared = _parse_bits(space.get("bits", {}), labels)
    fixed_net = _parse_constants(network or {}, "network", NetworkConfig, _NETWORK_RESERVED)
    fixed_learn = _parse_constants(learning or {}, "learning", LearningConfig, ())
    searched: Dict[str, Dict[str, Domain]] = {}
    for section, cls, excl, fixed in (
        ("learning", LearningConfig, (), fixed_learn),
        ("network", NetworkConfig, _NETWORK_RESERVED, fixed_net),
    ):
        table = space.get(section, {})
        path = f"space.{section}"
        if not isinstance(table, dict):
            raise SpecError(f"[{path}] must be a table of searched constants")
        _check_keys(table, path, [k for k in _dataclass_keys(cls) if k not in excl])
        both = sorted(set(table) & set(fixed))
        if both:
            raise SpecError(f"{path}.{both[0]} is also fixed in [{section}]: keep one of them")
        searched[section] = {
            k: parse_domain(v, f"{path}.{k}", k, _number_kind(cls, k)) for k, v in table.items()
        }
    try:
        NetworkConfig(**fixed_net)
        LearningConfig(**fixed_learn)
    except (ConfigError, ValueError, TypeError) as exc:
        raise SpecError(f"[network] / [learning]: {exc}") from None
    if "vth" in bits and scheme.all_values() == ["itq"] and "theta_plus" not in searched["network"]:
        _check_vth_holds_increment(
            bits["vth"],
            float(fixed_net.get("theta_plus", NetworkConfig.theta_plus)),
            [str(r) for r in rounding.all_values()],
        )
    return SearchSpace(
        variant,
        n_neurons,
        quantize,
        scheme,
        rounding,
        normalization,
        bits,
        shared,
        searched["learning"],
        searched["network"],
        fixed_learn,
        fixed_net,
    )


def _check_vth_holds_increment(dom: BitsDomain, theta_plus: float, roundings: List[str]) -> None:
    """An ITQ-only space whose every V_th format is coarser than theta+, under every rounding the rule
    binds (:func:`tinysnn.quant.ranges.itq_problem`), could train no qWN network."""
    need = min_frac_bits_for_step(theta_plus)
    if dom.frac_bits is not None:
        most, where = int(dom.frac_bits.bounds()[1]), dom.frac_bits.path
    else:
        return  # V_th's fraction follows a searched total: trials that cannot hold theta+ are rejected
    finest = QFormat(1, most)  # the step is all the rule reads
    if most < need and all(
        itq_problem(QuantSpec(vth=finest, scheme=Scheme.ITQ, rounding=Rounding(r)), theta_plus)
        for r in roundings
    ):
        raise SpecError(
            f"{where}: in-training quantization adds theta+ = {theta_plus:g} mV to V_th, which needs at "
            f"least {need} fractional bits (a step of at most theta+); the largest value here is {most}"
        )
