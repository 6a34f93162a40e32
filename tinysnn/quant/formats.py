"""Fixed-point formats Qi.f, rounding modes and per-parameter quantization specs (docs/method.md §2).

The text forms, ranges and conventions are described in :mod:`tinysnn.quant`, which re-exports
everything public here. This module needs the standard library alone (no torch, no numpy), so the
deploy side (:mod:`tinysnn.deploy`, on Python 3.6 too) reads its formats, codes and constants from
here: no future imports, and annotations that name torch are strings.
"""

import enum
import math
import numbers
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Mapping, NamedTuple, Optional, Tuple, Type, TypeVar, Union

if TYPE_CHECKING:  # torch is needed only by QFormat.quantize, which imports it through rounding
    import torch

#: The text of "not quantized" wherever it is written or read: a parameter's format
#: (:func:`format_text`, :func:`parse_format`), a spec's label, quantization text and scheme in
#: records (:func:`record_fields`). In memory "not quantized" is None: a format, or a spec
#: (:func:`quantized_or_none`).
FP32 = "fp32"
#: The rounding an FP32 network records (model.json, result rows, trial attributes): no rounding,
#: code :data:`NONE`. Result rows and trial attributes written before it said "" instead.
NO_ROUNDING = "none"

# Integer rounding codes, as the kernels (and per-network ``(P,)`` int64 mode tensors: the
# ``round_<target>`` fields of ``tinysnn.network.PARAM_LAYOUT``) use them.
NONE = 0  #: fp32 passthrough: the value is left untouched, bit for bit.
TRUNCATE = 1  #: q * floor(x / q)
NEAREST = 2  #: q * floor(x / q + 1/2)
STOCHASTIC = 3  #: q * floor(x / q) + q * [u < frac(x / q)]
# Columns of a fixed-point row ``[2^f, lo, hi]``, the per-network (P, ROW_WIDTH) float32 layout of
# :func:`tinysnn.quant.rounding.population_rows` that the kernels read; the target's rounding code
# is no column of it but an integer beside it (``round_<target>``).
ROW_WIDTH = 3
ROW_SCALE, ROW_LO, ROW_HI = range(ROW_WIDTH)
# Integer codes of the ITQ normalization rules (:attr:`Normalization.code`, the ``norm_rule`` column).
NORM_SUM = 0
NORM_PLAIN = 1
NORM_SETTLED = 2
NORM_PROPORTIONAL = 3
NORM_APPORTION = 4

MAX_TOTAL_BITS = 32  #: largest B = i + f accepted
#: Fractional bits of the fixed-point decay multipliers: a quantized value u decays by
#: ``(|u| 2^f leak) >> LEAK_BITS`` steps toward zero, ``leak = (1 - decay) 2^LEAK_BITS``
#: (:func:`tinysnn.quant.rounding.decay_toward_zero`, :class:`tinysnn.network.Constants`).
LEAK_BITS = 24
PARAMS = ("weights", "vmem", "vth")  #: the quantizable parameters (docs/method.md §2)
LABELS = (FP32, "qW", "qWN", "qN")  #: what a spec quantizes (:attr:`QuantSpec.label`)
#: Signedness of each parameter, used by formats that leave it open (``Q1.7``): the weights lie in
#: [0, w_max]; V_mem (stored as V_mem - v_rest, in mV) may be negative; V_th is stored as
#: theta = V_th - v_th >= 0 (in mV, about its own base as V_mem is about rest), so it is unsigned.
PARAM_SIGNED: Dict[str, bool] = {"weights": False, "vmem": True, "vth": False}

_FORMAT_RULE = f"expected Qi.f, UQi.f, SQi.f or {FP32} with 1 <= i+f <= 32, i, f >= 0, and i >= 1 when signed"
_FORMAT_RE = re.compile(r"^([US]?)Q(-?\d+)\.(-?\d+)$", re.IGNORECASE)


class Rounding(str, enum.Enum):
    """Rounding mode of a quantizer (docs/method.md §2)."""

    TRUNCATE = "truncate"
    NEAREST = "nearest"
    STOCHASTIC = "stochastic"

    @property
    def code(self) -> int:
        """The integer code the kernels use (:data:`TRUNCATE`, :data:`NEAREST`, :data:`STOCHASTIC`)."""
        return _ROUNDING_CODES[self.value]


_ROUNDING_CODES = {"truncate": TRUNCATE, "nearest": NEAREST, "stochastic": STOCHASTIC}


class Normalization(str, enum.Enum):
    """How ITQ re-quantizes a column after normalization with truncation or nearest rounding.

    Three rules keep the column total: scale, floor every weight to the grid, then give the
    column's missing whole steps (its total in steps minus the floored sum) one each to weights
    that lost a remainder, never past the format's maximum or w_max. They differ in which weights
    get the steps:

    ``sum``: the largest remainders (ties to the lowest input index).
    ``proportional``: in proportion to what FP32 normalization takes from each weight, w (1 - f),
    at most one step each; so the largest weights (ties to the lowest input index).
    ``apportion``: drawn from the network's stream, weight i with probability proportional to its
    remainder (systematic sampling over the column, one draw per column), so each weight's
    expected loss is FP32's and the column still gets exactly its missing steps.

    Two rules round every weight on its own:

    ``plain``: the method's literal reading, the rounding mode applied to every scaled weight;
    truncation then takes a whole step from every small weight of every normalized column.
    ``settled``: ``plain``, except that a column whose neuron did not fire and whose sum lies
    within the rounding slack of the total is left alone (``tinysnn.sim.equations.settled_columns``).

    docs/method.md has the measurements that chose the default. Stochastic rounding (unbiased)
    and FP32 weights are not affected by the choice.
    """

    SUM = "sum"
    PLAIN = "plain"
    SETTLED = "settled"
    PROPORTIONAL = "proportional"
    APPORTION = "apportion"

    @property
    def code(self) -> int:
        """The code the kernels read (``norm_rule``, the ``NORM_*`` constants)."""
        return _NORMALIZATION_CODES[self.value]


#: The rule of new ITQ specs: ``proportional`` measured best (docs/method.md, "ITQ normalization").
DEFAULT_NORMALIZATION = Normalization.PROPORTIONAL
#: What a quantization text without ``norm=`` means: ``sum``, the rule of every text written before
#: the default changed, so recorded texts keep their meaning. PTQ and FP32 specs, which never
#: normalize quantized weights, all carry this rule.
TEXT_NORMALIZATION = Normalization.SUM

_NORMALIZATION_CODES = {
    "sum": NORM_SUM,
    "plain": NORM_PLAIN,
    "settled": NORM_SETTLED,
    "proportional": NORM_PROPORTIONAL,
    "apportion": NORM_APPORTION,
}


class Scheme(str, enum.Enum):
    """When quantization is applied: after training (PTQ) or during it (ITQ), docs/method.md §2."""

    PTQ = "ptq"
    ITQ = "itq"


def rounding_code(mode: Union[Rounding, str, int, None]) -> int:
    """The integer code of a rounding mode: a :class:`Rounding`, its name or its code; None (an FP32
    network in memory) and :data:`NO_ROUNDING` (``"none"``, as model.json records it) give :data:`NONE`.

    Raises:
        ValueError: for an unknown name or code.
    """
    if mode is None:
        return NONE
    if isinstance(mode, Rounding):
        return mode.code
    if isinstance(mode, str):
        name = mode.strip().lower()
        if name == NO_ROUNDING:
            return NONE
        if name in _ROUNDING_CODES:
            return _ROUNDING_CODES[name]
        raise ValueError(
            f"unknown rounding {mode!r}: expected one of truncate, nearest, stochastic (or none)"
        )
    code = int(mode)
    if code != NONE and code not in _ROUNDING_CODES.values():
        raise ValueError(f"unknown rounding code {mode!r}: expected 0 (none), 1, 2 or 3")
    return code


@dataclass(frozen=True)
class QFormat:
    """A fixed-point format Qi.f (docs/method.md §2).

    Attributes:
        int_bits: i, integer bits, including the sign bit when signed.
        frac_bits: f, fractional bits; the step is 2^-f.
        signed: True (two's complement, ``SQ``), False (``UQ``) or None: decided by the parameter
            the format is applied to (:data:`PARAM_SIGNED`), written ``Q``.
    """

    int_bits: int
    frac_bits: int
    signed: Optional[bool] = None

    def __post_init__(self) -> None:
        bits = (self.int_bits, self.frac_bits)
        if any(isinstance(b, bool) or not isinstance(b, numbers.Integral) for b in bits):
            raise ValueError(
                f"invalid fixed-point format: i = {bits[0]!r} and f = {bits[1]!r} must be "
                f"integers; {_FORMAT_RULE}"
            )
        object.__setattr__(self, "int_bits", int(self.int_bits))  # numpy integers become ints
        object.__setattr__(self, "frac_bits", int(self.frac_bits))
        problem = None
        if self.int_bits < 0 or self.frac_bits < 0:
            problem = "negative bit counts"
        elif not 1 <= self.int_bits + self.frac_bits <= MAX_TOTAL_BITS:
            problem = f"i+f = {self.int_bits + self.frac_bits}"
        elif self.signed and self.int_bits == 0:
            problem = "a signed format needs i >= 1 for the sign bit"
        if problem is not None:
            raise ValueError(f"invalid fixed-point format {_text(self)!r} ({problem}): {_FORMAT_RULE}")

    def __str__(self) -> str:
        return _text(self)

    @property
    def text(self) -> str:
        """The format's text (``SQ8.0``, ``UQ1.7``, ``Q1.7``), as :func:`parse_format` reads it."""
        return _text(self)

    def as_dict(self) -> Dict[str, Any]:
        """The format as an exported model's ``model.json`` stores it (the text is for people)."""
        return {
            "int_bits": self.int_bits,
            "frac_bits": self.frac_bits,
            "signed": self.signed,
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> Optional["QFormat"]:
        """The format of a checked :meth:`as_dict` entry; None (FP32) for None."""
        return None if d is None else cls(int(d["int_bits"]), int(d["frac_bits"]), d["signed"])

    @property
    def total_bits(self) -> int:
        """B = i + f, bits per stored value."""
        return self.int_bits + self.frac_bits

    @property
    def step(self) -> float:
        """q = 2^-f, the value of one unit of the integer code."""
        return 2.0**-self.frac_bits

    @property
    def scale(self) -> float:
        """2^f = 1 / step, the factor from a value to its integer code."""
        return float(2**self.frac_bits)

    def is_signed(self, default: Optional[bool] = None) -> bool:
        """Whether the format is signed: its own ``signed`` if set, else ``default`` (the parameter's).

        Raises:
            ValueError: if neither says, or if ``default`` is signed and ``i = 0``.
        """
        if self.signed is not None:
            return self.signed
        if default is None:
            raise ValueError(f"format {self} leaves the sign to the parameter: pass signed=True or False")
        if default and self.int_bits == 0:
            raise ValueError(f"format {self} has i = 0, so it cannot hold a signed value: {_FORMAT_RULE}")
        return default

    def resolve(self, signed: Optional[bool]) -> "QFormat":
        """This format with the signedness made explicit (see :meth:`is_signed`)."""
        return QFormat(self.int_bits, self.frac_bits, self.is_signed(signed))

    def range(self, signed: Optional[bool] = None) -> Tuple[float, float]:
        """(lo, hi): signed ``[-2^(i-1), 2^(i-1) - 2^-f]``, unsigned ``[0, 2^i - 2^-f]``.

        Args:
            signed: the parameter's signedness, used when the format's own ``signed`` is None.
        """
        q = self.step
        if self.is_signed(signed):
            half = 2.0 ** (self.int_bits - 1)
            return -half, half - q
        return 0.0, 2.0**self.int_bits - q

    def code_range(self, signed: Optional[bool] = None) -> Tuple[int, int]:
        """(k_lo, k_hi), the integer codes of :meth:`range`."""
        if self.is_signed(signed):
            return -(2 ** (self.total_bits - 1)), 2 ** (self.total_bits - 1) - 1
        return 0, 2**self.total_bits - 1

    def qparams(self, rounding: Union[Rounding, str], signed: Optional[bool] = None) -> "QParams":
        """Scalar arguments for :func:`quantize`: ``quantize(x, *fmt.qparams("nearest", True))``."""
        lo, hi = self.range(signed)
        return QParams(self.frac_bits, lo, hi, rounding_code(rounding))


def _text(fmt: QFormat) -> str:
    prefix = {None: "Q", True: "SQ", False: "UQ"}[fmt.signed]
    return f"{prefix}{fmt.int_bits}.{fmt.frac_bits}"


def format_text(fmt: Optional[QFormat]) -> str:
    """The text of a format, :data:`FP32` (``"fp32"``) for None; inverse of :func:`parse_format`."""
    return FP32 if fmt is None else str(fmt)


def parse_format(text: str) -> Optional[QFormat]:
    """Parse ``Qi.f``, ``UQi.f``, ``SQi.f`` or ``fp32`` (None) into a format.

    Example:
        >>> parse_format("UQ0.8").range()
        (0.0, 0.99609375)

    Raises:
        ValueError: naming the text and the rule, for anything else (``Q0.0``, ``Q-1.8``, ``Q20.20``,
            ``SQ0.8``, ``Q1``, ``int8``).
    """
    stripped = text.strip()
    if stripped.lower() == FP32:
        return None
    match = _FORMAT_RE.match(stripped)
    if match is None:
        raise ValueError(f"invalid fixed-point format {text!r}: {_FORMAT_RULE}")
    prefix = match.group(1).upper()
    signed = {"": None, "S": True, "U": False}[prefix]
    return QFormat(int(match.group(2)), int(match.group(3)), signed)


class QParams(NamedTuple):
    """The arguments of :func:`quantize` after ``x``: Python scalars, or ``(P,)`` tensors for a population.

    Attributes:
        frac_bits: f, fractional bits (int or int64 tensor).
        lo: lowest representable value (float or tensor), in the parameter's unit (mV for V_mem).
        hi: highest representable value.
        mode: rounding code, :data:`NONE` for fp32 (int or int64 tensor).
    """

    frac_bits: Union[int, "torch.Tensor"]
    lo: Union[float, "torch.Tensor"]
    hi: Union[float, "torch.Tensor"]
    mode: Union[int, "torch.Tensor"]


@dataclass(frozen=True)
class QuantSpec:
    """Per-parameter formats of one network, with its rounding mode and scheme (docs/method.md §2).

    Attributes:
        weights: format of the input synaptic weights (dimensionless, in [0, w_max]); None = fp32.
        vmem: format of the membrane potential, stored as V_mem - v_rest in mV (0 at rest, 13 mV at
            the base threshold, negative under inhibition); None = fp32. The population applies the
            offset (:func:`tinysnn.train.vmem_rows_about_rest`); :meth:`range_of` gives the
            format's range about rest.
        vth: format of the threshold V_th, stored as theta = V_th - v_th >= 0 in mV (0 at the base
            threshold v_th, unsigned unless the format says ``SQ``); None = fp32.
        rounding: rounding mode for every quantized parameter.
        scheme: PTQ (quantize after training) or ITQ (re-quantize during training).
        normalization: how ITQ rounds the weights after column normalization (:class:`Normalization`).
    """

    weights: Optional[QFormat] = None
    vmem: Optional[QFormat] = None
    vth: Optional[QFormat] = None
    rounding: Rounding = Rounding.TRUNCATE
    scheme: Scheme = Scheme.PTQ
    normalization: Normalization = DEFAULT_NORMALIZATION

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounding", Rounding(self.rounding))
        object.__setattr__(self, "scheme", Scheme(self.scheme))
        # the rule acts on ITQ only: other schemes carry TEXT_NORMALIZATION, so equal specs are equal
        rule = Normalization(self.normalization)
        object.__setattr__(self, "normalization", rule if self.scheme is Scheme.ITQ else TEXT_NORMALIZATION)
        for param in PARAMS:
            fmt = self.format_of(param)
            if fmt is not None:
                fmt.is_signed(PARAM_SIGNED[param])  # rejects Q0.f for a signed parameter

    def format_of(self, param: str) -> Optional[QFormat]:
        """The format of ``param`` (one of :data:`PARAMS`), None for fp32."""
        if param not in PARAMS:
            raise ValueError(f"unknown parameter {param!r}: expected one of {', '.join(PARAMS)}")
        fmt: Optional[QFormat] = getattr(self, param)
        return fmt

    def bits_of(self, param: str) -> int:
        """B of ``param``'s format, 32 for fp32 (the bit width in Eq. 4)."""
        fmt = self.format_of(param)
        return 32 if fmt is None else fmt.total_bits

    def range_of(self, param: str) -> Tuple[float, float]:
        """(lo, hi) of ``param``'s format, with the parameter's signedness; (-inf, inf) for fp32."""
        fmt = self.format_of(param)
        return (-math.inf, math.inf) if fmt is None else fmt.range(PARAM_SIGNED[param])

    def qparams(self, param: str) -> QParams:
        """Scalar :func:`quantize` arguments for ``param``: ``quantize(x, *spec.qparams("vmem"))``."""
        fmt = self.format_of(param)
        if fmt is None:
            return QParams(0, -math.inf, math.inf, NONE)
        return fmt.qparams(self.rounding, PARAM_SIGNED[param])

    @property
    def quantizes_weights(self) -> bool:
        """True when the weights are quantized (qW and qWN)."""
        return self.weights is not None

    @property
    def quantizes_neurons(self) -> bool:
        """True when V_mem or V_th is quantized (qWN rather than qW)."""
        return self.vmem is not None or self.vth is not None

    @property
    def is_fp32(self) -> bool:
        """True when nothing is quantized."""
        return not (self.quantizes_weights or self.quantizes_neurons)

    @property
    def label(self) -> str:
        """One of :data:`LABELS`: ``"fp32"``, ``"qW"`` (weights only), ``"qWN"`` (weights and
        neurons) or ``"qN"``."""
        if self.is_fp32:
            return FP32
        return ("qW" if self.quantizes_weights else "q") + ("N" if self.quantizes_neurons else "")

    def to_text(self) -> str:
        """All fields as ``key=value`` pairs; :func:`parse_quant_arg` reads it back.

        The normalization rule appears only where it is not :data:`TEXT_NORMALIZATION` (``sum``:
        ``norm=plain``), so the texts of networks recorded before the rules existed stay as they were.
        """
        parts = [f"{param}={format_text(self.format_of(param))}" for param in PARAMS]
        parts += [f"rounding={self.rounding.value}", f"scheme={self.scheme.value}"]
        if self.normalization is not TEXT_NORMALIZATION:
            parts.append(f"norm={self.normalization.value}")
        return ",".join(parts)


def quantized_or_none(spec: Optional[QuantSpec]) -> Optional[QuantSpec]:
    """``spec``, or None (the one in-memory value of "not quantized") when it quantizes nothing.

    Example:
        >>> quantized_or_none(parse_quant_arg("fp32")) is None
        True
    """
    return None if spec is None or spec.is_fp32 else spec


class RecordFields(NamedTuple):
    """How records write a network's quantization: an exported model's model.json (``label``,
    ``rounding``, ``scheme``), a run's result rows (``quant`` = ``text``, ``scheme``, ``rounding``)
    and a search trial's user attributes (``quant`` = ``label``, ``quant_text`` = ``text``,
    ``scheme``, ``rounding``). An FP32 network writes :data:`FP32` and :data:`NO_ROUNDING`."""

    label: str
    """One of :data:`LABELS`."""
    text: str
    """:meth:`QuantSpec.to_text`, or :data:`FP32`."""
    scheme: str
    """A :class:`Scheme` value, or :data:`FP32`."""
    rounding: str
    """A :class:`Rounding` value, or :data:`NO_ROUNDING`."""


def record_fields(spec: Optional[QuantSpec]) -> RecordFields:
    """The record fields of a network quantized by ``spec`` (None or a spec that quantizes nothing: FP32).

    Example:
        >>> record_fields(None)
        RecordFields(label='fp32', text='fp32', scheme='fp32', rounding='none')
    """
    q = quantized_or_none(spec)
    if q is None:
        return RecordFields(FP32, FP32, FP32, NO_ROUNDING)
    return RecordFields(q.label, q.to_text(), q.scheme.value, q.rounding.value)


_SPEC_KEYS = PARAMS + ("rounding", "scheme", "norm")

_E = TypeVar("_E", bound=enum.Enum)


def _choice(enum_cls: Type[_E], value: object, what: str, text: str) -> _E:
    """``enum_cls(value)``, or a ValueError naming the bad value and the choices."""
    try:
        return enum_cls(value)
    except ValueError:
        raise ValueError(
            f"unknown {what} {value!r} in {text!r}: expected one of {', '.join(e.value for e in enum_cls)}"
        ) from None


def parse_quant_arg(
    text: str,
    rounding: Union[Rounding, str] = Rounding.TRUNCATE,
    scheme: Union[Scheme, str] = Scheme.PTQ,
    normalization: Union[Normalization, str] = TEXT_NORMALIZATION,
) -> QuantSpec:
    """Parse ``"weights=Q1.7,vmem=Q9.7,vth=Q9.7"`` (any subset, ``fp32`` for none) into a spec.

    The keys ``rounding``, ``scheme`` and ``norm`` may appear in the text too and then override the arguments;
    missing parameters are fp32. ``"fp32"`` gives an all-fp32 spec. A text without ``norm=`` has the
    rule ``normalization``, by default :data:`TEXT_NORMALIZATION` (what such texts always meant); the
    CLI and the search pass :data:`DEFAULT_NORMALIZATION`.

    Example:
        >>> parse_quant_arg("weights=Q1.7,rounding=stochastic").label
        'qW'

    Raises:
        ValueError: for an empty text (write ``fp32`` for none), an unknown or repeated key (listing the
            valid keys) or a bad value.
    """
    if not text.strip():
        raise ValueError(
            f"empty quantization text {text!r}: give {FP32} for none, or formats such as weights=Q1.7,vmem=Q9.7"
        )
    values: Dict[str, str] = {}
    if text.strip().lower() != FP32:
        for item in text.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not sep or key not in _SPEC_KEYS:
                raise ValueError(
                    f"invalid quantization item {item.strip()!r} in {text!r}: expected key=value "
                    f"with key one of {', '.join(_SPEC_KEYS)}"
                )
            if key in values:
                raise ValueError(f"quantization key {key!r} given twice in {text!r}")
            values[key] = value.strip()
    formats = {param: parse_format(values[param]) for param in PARAMS if param in values}
    mode = _choice(Rounding, values.get("rounding", rounding), "rounding", text)
    when = _choice(Scheme, values.get("scheme", scheme), "scheme", text)
    norm = _choice(Normalization, values.get("norm", normalization), "normalization", text)
    return QuantSpec(rounding=mode, scheme=when, normalization=norm, **formats)
