"""Fixed-point formats Qi.f, rounding and saturation (SPEC.md section 2; Q-SpiNN as used by tinySNN).

A value is stored as an integer code k in B = i + f bits and stands for k * 2^-f:

* ``i`` integer bits *including the sign bit* when the value can be negative (two's complement),
  ``f`` fractional bits, step ``q = 2^-f``.
* signed range ``[-2^(i-1), 2^(i-1) - q]``; unsigned range ``[0, 2^i - q]``.

Text forms: ``Q1.7`` (signedness decided by the parameter: the synaptic weights are unsigned since
``w`` lies in ``[0, w_max]``; the membrane potential V_mem and the threshold V_th, in mV, are signed),
``UQ0.8`` (unsigned), ``SQ9.7`` (signed) and ``fp32`` (no quantization, represented by ``None``).

Rounding, with ``q = 2^-f`` (SPEC.md section 2), then saturation to ``[lo, hi]``:

* truncation: ``q floor(x/q)``
* nearest:    ``q floor(x/q + 1/2)``, computed as ``q (floor(x/q) + [frac(x/q) >= 1/2])``, which is
  the same number but exact in float32 (``x/q + 1/2`` itself can round up when ``|x/q| >= 2^23``);
  ties go up (towards +inf), also for negative values.
* stochastic: ``q floor(x/q) + q [u < frac(x/q)]``, ``u ~ U[0, 1)``, so ``E[Q(x)] = x`` (unbiased) and
  values on the grid stay exact.

Zero is always +0.0 (code 0). In float32 every result is exactly ``k 2^-f`` (a float32 with
``|x/q| >= 2^24`` is already on the grid); for B > 24 only the bounds lo, hi may round to float32.

PTQ (post-training) and ITQ (in-training) call the same :func:`quantize`; only the points in the
training loop differ (SPEC.md section 2). Integer-bit analysis (:func:`integer_bits_for`) turns the
value range of an FP32 run into ``i``; the fractional bits are what is left of the precision B.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import Dict, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "MAX_TOTAL_BITS",
    "NEAREST",
    "NONE",
    "PARAMS",
    "PARAM_SIGNED",
    "STOCHASTIC",
    "TRUNCATE",
    "QFormat",
    "QParams",
    "QuantSpec",
    "Rounding",
    "Scheme",
    "format_text",
    "formats_for_total_bits",
    "integer_bits_for",
    "parse_format",
    "parse_quant_arg",
    "population_qparams",
    "population_rows",
    "quantize",
    "quantize_",
    "quantize_rows",
    "quantize_scalar",
    "range_of",
    "ranges_per_network",
    "rounding_code",
    "to_codes",
]

# Integer rounding codes, as the kernels (and per-network ``(P,)`` mode tensors) use them.
NONE = 0  #: fp32 passthrough: the value is left untouched, bit for bit.
TRUNCATE = 1  #: q * floor(x / q)
NEAREST = 2  #: q * floor(x / q + 1/2)
STOCHASTIC = 3  #: q * floor(x / q) + q * [u < frac(x / q)]

MAX_TOTAL_BITS = 32  #: largest B = i + f accepted
PARAMS = ("weights", "vmem", "vth")  #: the quantizable parameters (SPEC.md section 2)
#: Signedness of each parameter, used by formats that leave it open (``Q1.7``): the weights lie in
#: [0, w_max]; V_mem and V_th are in mV and negative at rest.
PARAM_SIGNED: Dict[str, bool] = {"weights": False, "vmem": True, "vth": True}

_FORMAT_RULE = "expected Qi.f, UQi.f, SQi.f or fp32 with 1 <= i+f <= 32, i, f >= 0, and i >= 1 when signed"
_FORMAT_RE = re.compile(r"^([US]?)Q(-?\d+)\.(-?\d+)$", re.IGNORECASE)


class Rounding(str, enum.Enum):
    """Rounding mode of a quantizer (SPEC.md section 2)."""

    TRUNCATE = "truncate"
    NEAREST = "nearest"
    STOCHASTIC = "stochastic"

    @property
    def code(self) -> int:
        """The integer code the kernels use (:data:`TRUNCATE`, :data:`NEAREST`, :data:`STOCHASTIC`)."""
        return _ROUNDING_CODES[self.value]


_ROUNDING_CODES = {"truncate": TRUNCATE, "nearest": NEAREST, "stochastic": STOCHASTIC}


class Scheme(str, enum.Enum):
    """When quantization is applied: after training (PTQ) or during it (ITQ), SPEC.md section 2."""

    PTQ = "ptq"
    ITQ = "itq"


def rounding_code(mode: Union[Rounding, str, int, None]) -> int:
    """The integer code of a rounding mode; ``None``, ``"none"`` and ``"fp32"`` give :data:`NONE`.

    Raises:
        ValueError: for an unknown name or code.
    """
    if mode is None:
        return NONE
    if isinstance(mode, Rounding):
        return mode.code
    if isinstance(mode, str):
        name = mode.strip().lower()
        if name in ("none", "fp32"):
            return NONE
        if name in _ROUNDING_CODES:
            return _ROUNDING_CODES[name]
        raise ValueError(
            f"unknown rounding {mode!r}: expected one of truncate, nearest, stochastic (or none)"
        )
    code = int(mode)
    if code not in (NONE, TRUNCATE, NEAREST, STOCHASTIC):
        raise ValueError(f"unknown rounding code {mode!r}: expected 0 (none), 1, 2 or 3")
    return code


@dataclass(frozen=True)
class QFormat:
    """A fixed-point format Qi.f (SPEC.md section 2).

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

    def resolve(self, signed: Optional[bool]) -> QFormat:
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

    def qparams(self, rounding: Union[Rounding, str], signed: Optional[bool] = None) -> QParams:
        """Scalar arguments for :func:`quantize`: ``quantize(x, *fmt.qparams("nearest", True))``."""
        lo, hi = self.range(signed)
        return QParams(self.frac_bits, lo, hi, rounding_code(rounding))

    def quantize(
        self,
        x: torch.Tensor,
        rounding: Union[Rounding, str] = Rounding.TRUNCATE,
        signed: Optional[bool] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Round ``x`` to this format and saturate it (see :func:`quantize`)."""
        return quantize(x, *self.qparams(rounding, signed), generator=generator)


def _text(fmt: QFormat) -> str:
    prefix = {None: "Q", True: "SQ", False: "UQ"}[fmt.signed]
    return f"{prefix}{fmt.int_bits}.{fmt.frac_bits}"


def format_text(fmt: Optional[QFormat]) -> str:
    """The text of a format, ``"fp32"`` for None; inverse of :func:`parse_format`."""
    return "fp32" if fmt is None else str(fmt)


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
    if stripped.lower() == "fp32":
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

    frac_bits: Union[int, torch.Tensor]
    lo: Union[float, torch.Tensor]
    hi: Union[float, torch.Tensor]
    mode: Union[int, torch.Tensor]


@dataclass(frozen=True)
class QuantSpec:
    """Per-parameter formats of one network, with its rounding mode and scheme (SPEC.md section 2).

    Attributes:
        weights: format of the input synaptic weights (dimensionless, in [0, w_max]); None = fp32.
        vmem: format of the membrane potential V_mem, in mV; None = fp32.
        vth: format of the effective threshold V_th = v_th + theta, in mV; None = fp32.
        rounding: rounding mode for every quantized parameter.
        scheme: PTQ (quantize after training) or ITQ (re-quantize during training).
    """

    weights: Optional[QFormat] = None
    vmem: Optional[QFormat] = None
    vth: Optional[QFormat] = None
    rounding: Rounding = Rounding.TRUNCATE
    scheme: Scheme = Scheme.PTQ

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounding", Rounding(self.rounding))
        object.__setattr__(self, "scheme", Scheme(self.scheme))
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
        """``"fp32"``, ``"qW"`` (weights only), ``"qWN"`` (weights and neurons) or ``"qN"``."""
        if self.is_fp32:
            return "fp32"
        return ("qW" if self.quantizes_weights else "q") + ("N" if self.quantizes_neurons else "")

    def to_text(self) -> str:
        """All fields as ``key=value`` pairs; :func:`parse_quant_arg` reads it back."""
        parts = [f"{param}={format_text(self.format_of(param))}" for param in PARAMS]
        parts += [f"rounding={self.rounding.value}", f"scheme={self.scheme.value}"]
        return ",".join(parts)


_SPEC_KEYS = PARAMS + ("rounding", "scheme")


def parse_quant_arg(
    text: str,
    rounding: Union[Rounding, str] = Rounding.TRUNCATE,
    scheme: Union[Scheme, str] = Scheme.PTQ,
) -> QuantSpec:
    """Parse ``"weights=Q1.7,vmem=Q9.7,vth=Q9.7"`` (any subset, ``fp32`` for none) into a spec.

    The keys ``rounding`` and ``scheme`` may appear in the text too and then override the arguments;
    missing parameters are fp32. ``""`` and ``"fp32"`` give an all-fp32 spec.

    Example:
        >>> parse_quant_arg("weights=Q1.7,rounding=stochastic").label
        'qW'

    Raises:
        ValueError: for an unknown or repeated key (listing the valid keys) or a bad value.
    """
    values: Dict[str, str] = {}
    if text.strip().lower() not in ("", "fp32"):
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
    try:
        mode = Rounding(values.get("rounding", rounding))
    except ValueError:
        raise ValueError(
            f"unknown rounding {values.get('rounding', rounding)!r} in {text!r}: expected one of "
            f"{', '.join(r.value for r in Rounding)}"
        ) from None
    try:
        when = Scheme(values.get("scheme", scheme))
    except ValueError:
        raise ValueError(
            f"unknown scheme {values.get('scheme', scheme)!r} in {text!r}: expected one of "
            f"{', '.join(s.value for s in Scheme)}"
        ) from None
    return QuantSpec(rounding=mode, scheme=when, **formats)


# ----------------------------------------------------------------------------------------------
# Rounding kernels


def quantize_scalar(x: float, scale: float, lo: float, hi: float, mode: int, u: float) -> float:
    """Quantize one value: the scalar twin of :func:`quantize`, numba-compatible (``njit`` it).

    Only ``math.floor``, ``math.isnan``, ``min``/``max`` and comparisons. For float32 inputs (and float32-exact ``lo``, ``hi``) the
    result, cast to float32, equals :func:`quantize` bit for bit given the same ``u``.

    Args:
        x: the value.
        scale: 2^f, a power of two.
        lo: lowest representable value (a multiple of 1/scale).
        hi: highest representable value (a multiple of 1/scale).
        mode: :data:`NONE` (returns ``x`` untouched), :data:`TRUNCATE`, :data:`NEAREST` or
            :data:`STOCHASTIC`; any other code truncates.
        u: a draw from U[0, 1), used only by :data:`STOCHASTIC`.

    Returns:
        The quantized value. NaN stays NaN; +-inf saturate to hi / lo.
    """
    if mode == NONE or math.isnan(x):
        return x
    # Clamping first keeps inf and huge values out of floor(); with lo and hi on the grid it gives
    # the same result as rounding then saturating, since every mode is monotone and fixes the grid.
    x = max(x, lo)
    x = min(x, hi)
    y = x * scale
    k = math.floor(y)
    r = y - k  # frac(x / q); exact unless -1/2 < y < 0
    if mode == NEAREST:
        if r >= 0.5:
            k += 1
    elif mode == STOCHASTIC:
        if -0.5 < y < 0.0:  # 1 + y may round: test the same event exactly, as _stochastic_up
            if u - 1.0 < y:
                k += 1
        elif u < r:
            k += 1
    v = k / scale
    v = max(v, lo)
    v = min(v, hi)
    return v


Number = Union[int, float, torch.Tensor]


def _per_network(value: Number, x: torch.Tensor, dtype: Optional[torch.dtype] = None) -> Number:
    """A ``(P,)`` tensor viewed as ``(P, 1, ..., 1)`` to broadcast along dim 0 of ``x``; scalars pass."""
    if not isinstance(value, torch.Tensor):
        return value
    value = value.to(device=x.device, dtype=dtype if dtype is not None else value.dtype)
    if value.dim() == 1:
        value = value.view((-1,) + (1,) * (x.dim() - 1))
    return value


def _scale(frac_bits: Number, x: torch.Tensor) -> Tuple[Number, Number]:
    """(2^f, 2^-f), exact: for tensors built by an integer shift rather than exp2/pow."""
    if not isinstance(frac_bits, torch.Tensor):
        scale = float(2 ** int(frac_bits))
        return scale, 1.0 / scale
    f = frac_bits.to(device=x.device, dtype=torch.int64).clamp(0, 62)  # NONE entries may hold anything
    scale_t = (torch.ones_like(f) << f).to(x.dtype)
    return _per_network(scale_t, x), _per_network(1.0 / scale_t, x)


def _clamp(x: torch.Tensor, lo: Number, hi: Number) -> torch.Tensor:
    """min(max(x, lo), hi) with scalar or broadcastable tensor bounds (NaN stays NaN)."""
    if not isinstance(lo, torch.Tensor) and not isinstance(hi, torch.Tensor):
        return torch.clamp(x, float(lo), float(hi))
    x = torch.maximum(x, lo) if isinstance(lo, torch.Tensor) else torch.clamp(x, min=float(lo))
    return torch.minimum(x, hi) if isinstance(hi, torch.Tensor) else torch.clamp(x, max=float(hi))


def quantize(
    x: torch.Tensor,
    frac_bits: Union[int, torch.Tensor],
    lo: Union[float, torch.Tensor],
    hi: Union[float, torch.Tensor],
    mode: Union[int, Rounding, str, torch.Tensor],
    generator: Optional[torch.Generator] = None,
    *,
    u: Optional[torch.Tensor] = None,
    any_stochastic: Optional[bool] = None,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Round ``x`` to the grid 2^-f and saturate to [lo, hi] (SPEC.md section 2), for a population.

    ``x`` has shape ``(P, ...)``; ``frac_bits``, ``lo``, ``hi`` and ``mode`` are Python scalars or
    ``(P,)`` tensors (one entry per network, broadcast along dim 0), so one call quantizes P networks
    with P formats and rounding modes. Networks whose mode is :data:`NONE` keep their values bit for
    bit. No host-device synchronization: everything stays on ``x.device``.

    Args:
        x: values (float32 for the bitwise guarantees; other float dtypes work the same way).
        frac_bits: f, fractional bits.
        lo: lowest representable value, a multiple of 2^-f (``QFormat.range`` gives it).
        hi: highest representable value, a multiple of 2^-f.
        mode: rounding code (:data:`NONE`, :data:`TRUNCATE`, :data:`NEAREST`, :data:`STOCHASTIC`) or a
            :class:`Rounding`; a tensor of codes per network. Unknown codes in a tensor truncate.
        generator: source of the stochastic-rounding draws ``u ~ U[0, 1)``, on ``x.device``.
        u: the draws themselves, shape of ``x``, instead of ``generator`` (kernels and tests use it).
        any_stochastic: whether any network rounds stochastically; None = from ``mode`` (a tensor
            ``mode`` is assumed to, so ``u`` is drawn). Pass False to skip the draw when no network
            rounds stochastically (one that does would then truncate).
        out: where to write the result (may be ``x`` itself, see :func:`quantize_`).

    Returns:
        The quantized tensor (``x`` itself when ``mode`` is the scalar NONE and ``out`` is None).

    Example:
        >>> quantize(torch.tensor([[0.30, -0.30, 9.0]]), 2, -2.0, 1.75, "nearest")
        tensor([[ 0.2500, -0.2500,  1.7500]])
    """
    mode_t = mode if isinstance(mode, torch.Tensor) else None
    code = NONE if mode_t is not None else rounding_code(mode)  # type: ignore[arg-type]
    if mode_t is None and code == NONE:
        if out is None:
            return x
        return out.copy_(x) if out is not x else out
    scale, step = _scale(frac_bits, x)
    return _round_saturate(x, scale, step, lo, hi, code, mode_t, generator, u, any_stochastic, out)


def _round_saturate(
    x: torch.Tensor,
    scale: Number,
    step: Number,
    lo: Number,
    hi: Number,
    code: int,
    mode_t: Optional[torch.Tensor],
    generator: Optional[torch.Generator],
    u: Optional[torch.Tensor],
    any_stochastic: Optional[bool],
    out: Optional[torch.Tensor],
) -> torch.Tensor:
    """The kernel shared by :func:`quantize` and :func:`quantize_rows` (scalar ``code`` or ``mode_t``)."""
    lo_b = _per_network(lo, x, x.dtype)
    hi_b = _per_network(hi, x, x.dtype)
    y = _clamp(x, lo_b, hi_b) * scale  # clamp first: see quantize_scalar
    k = torch.floor(y)
    r = y - k  # frac(x / q); exact unless -1/2 < y < 0 (see _stochastic_up)
    stochastic = any_stochastic if any_stochastic is not None else (mode_t is not None or code == STOCHASTIC)
    if stochastic and u is None:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if mode_t is None:
        if code == TRUNCATE:
            k = k + 0.0  # -0.0 -> +0.0: the code of zero is 0, as in quantize_scalar
        elif code == NEAREST:
            k = k + (r >= 0.5).to(x.dtype)
        elif code == STOCHASTIC:
            if u is None:
                raise ValueError("stochastic rounding needs u or a draw (any_stochastic=False was given)")
            k = k + _stochastic_up(u, y, r).to(x.dtype)
    else:
        m = _per_network(mode_t, x)
        bump = (m == NEAREST) & (r >= 0.5)
        if u is not None:
            bump = bump | ((m == STOCHASTIC) & _stochastic_up(u, y, r))
        k = k + bump.to(x.dtype)
    v = _clamp(k * step, lo_b, hi_b)
    if mode_t is not None:
        keep = _per_network(mode_t, x) == NONE
        return torch.where(keep, x, v) if out is None else torch.where(keep, x, v, out=out)
    return v if out is None else out.copy_(v)


def _stochastic_up(u: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """[u < frac(y)], exactly.

    ``r = y - floor(y)`` is exact in floating point except for -1/2 < y < 0, where ``1 + y`` may
    round (up to 1.0 for tiny y). There the test ``u - 1 < y`` is used: the same event, exact for
    u >= 1/2 (Sterbenz) and true either way for u < 1/2. Nearest rounding needs no such care: the
    rounding of r never crosses 1/2.
    """
    return torch.where((y < 0.0) & (y > -0.5), (u - 1.0) < y, u < r)


def quantize_rows(
    x: torch.Tensor,
    rows: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    *,
    u: Optional[torch.Tensor] = None,
    any_stochastic: Optional[bool] = None,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """:func:`quantize` with per-network rows ``(P, 4)`` = ``[scale = 2^f, lo, hi, mode]``.

    The layout the population keeps per quantized parameter (see :func:`population_rows`); the
    scale must be a power of two. Same results, bit for bit, as :func:`quantize`.
    """
    scale = _per_network(rows[:, 0].to(x.dtype), x)
    step = _per_network(1.0 / rows[:, 0].to(x.dtype), x)
    return _round_saturate(
        x, scale, step, rows[:, 1], rows[:, 2], NONE, rows[:, 3], generator, u, any_stochastic, out
    )


def quantize_(
    x: torch.Tensor,
    frac_bits: Union[int, torch.Tensor],
    lo: Union[float, torch.Tensor],
    hi: Union[float, torch.Tensor],
    mode: Union[int, Rounding, str, torch.Tensor],
    generator: Optional[torch.Generator] = None,
    **kwargs: Optional[Union[torch.Tensor, bool]],
) -> torch.Tensor:
    """In-place :func:`quantize`: writes the result into ``x`` and returns it (ITQ re-quantization)."""
    return quantize(x, frac_bits, lo, hi, mode, generator, out=x, **kwargs)  # type: ignore[arg-type]


def to_codes(x: torch.Tensor, frac_bits: Union[int, torch.Tensor]) -> torch.Tensor:
    """Integer codes ``k = x * 2^f`` (int64) of values already on the grid, e.g. for export or packing.

    ``frac_bits`` may be a ``(P,)`` tensor, broadcast along dim 0. Off-grid values are rounded to
    the nearest code (ties to even).
    """
    scale, _ = _scale(frac_bits, x)
    return torch.round(x * scale).to(torch.int64)


def population_qparams(
    formats: Sequence[Optional[QFormat]],
    rounding: Union[Rounding, str, Sequence[Union[Rounding, str]]],
    signed: bool,
    device: Optional[Union[torch.device, str]] = None,
    dtype: torch.dtype = torch.float32,
) -> QParams:
    """``(P,)`` tensors of :func:`quantize` arguments for P networks, one format (None = fp32) each.

    Args:
        formats: the P formats of one parameter.
        rounding: one mode for all, or P modes.
        signed: the parameter's signedness (:data:`PARAM_SIGNED`), for formats that leave it open.
        device: where the tensors live (that of the population's state).
        dtype: dtype of ``lo`` and ``hi``.

    Example:
        >>> p = population_qparams([parse_format("Q1.7"), None], "truncate", signed=False)
        >>> quantize(torch.full((2, 3), 0.3), *p)
        tensor([[0.2969, 0.2969, 0.2969],
                [0.3000, 0.3000, 0.3000]])
    """
    modes = [rounding] * len(formats) if isinstance(rounding, (str, Rounding)) else list(rounding)
    if len(modes) != len(formats):
        raise ValueError(f"got {len(formats)} formats but {len(modes)} rounding modes")
    frac, lo, hi, code = [], [], [], []
    for fmt, m in zip(formats, modes):
        if fmt is None:
            frac.append(0)
            lo.append(-math.inf)
            hi.append(math.inf)
            code.append(NONE)
        else:
            a, b = fmt.range(signed)
            frac.append(fmt.frac_bits)
            lo.append(a)
            hi.append(b)
            code.append(rounding_code(m))
    return QParams(
        torch.tensor(frac, dtype=torch.int64, device=device),
        torch.tensor(lo, dtype=dtype, device=device),
        torch.tensor(hi, dtype=dtype, device=device),
        torch.tensor(code, dtype=torch.int64, device=device),
    )


def population_rows(
    specs: Sequence[QuantSpec],
    param: str,
    device: Optional[Union[torch.device, str]] = None,
) -> torch.Tensor:
    """Rows ``(P, 4)`` float32 ``[2^f, lo, hi, mode]`` of ``param`` for P networks, for :func:`quantize_rows`.

    An fp32 parameter gets ``[1, -inf, inf, NONE]``.

    Example:
        >>> population_rows([parse_quant_arg("weights=Q1.7"), QuantSpec()], "weights")
        tensor([[128.0000,   0.0000,   1.9922,   1.0000],
                [  1.0000,     -inf,      inf,   0.0000]])
    """
    p = population_qparams(
        [spec.format_of(param) for spec in specs],
        [spec.rounding for spec in specs],
        PARAM_SIGNED[param],
        device,
    )
    scale = (torch.ones_like(p.frac_bits) << p.frac_bits).to(torch.float32)  # type: ignore[operator]
    return torch.stack([scale, p.lo, p.hi, p.mode.to(torch.float32)], dim=1)  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------------
# Range analysis: integer bits from an FP32 run, fractional bits from the precision B


def _bits_below(m: float) -> int:
    """Smallest i >= 0 with m < 2^i (m >= 0)."""
    if m <= 0.0:
        return 0
    _, e = math.frexp(m)  # m = mant * 2^e, mant in [0.5, 1), so 2^(e-1) <= m < 2^e
    return max(e, 0)


def _bits_at_most(m: float) -> int:
    """Smallest j >= 0 with m <= 2^j (m >= 0)."""
    if m <= 0.0:
        return 0
    mant, e = math.frexp(m)
    return max(e - 1 if mant == 0.5 else e, 0)


def integer_bits_for(lo: float, hi: float, signed: Optional[bool] = None) -> Tuple[int, bool]:
    """Integer bits i (and signedness) for values in [lo, hi] (SPEC.md section 2).

    i is the fewest bits whose range holds [lo, hi] once f is large: unsigned ``hi < 2^i``; signed
    ``-2^(i-1) <= lo`` and ``hi < 2^(i-1)``. That is "the bits needed for max |x|, plus a sign bit if
    negative", with the power-of-two edges made exact:

    * a maximum of exactly 2^k needs i = k + 1, since the range stops at 2^i - 2^-f: weights in
      [0, 1] need UQ1.f (1.0 representable), not UQ0.f;
    * a minimum of exactly -2^k fits with i = k + 1 (two's complement holds -2^(i-1)), so
      [-64, -52] gives SQ7.f where the plain rule would give SQ8.f;
    * a maximum just below 2^i, within one step of it, saturates to 2^i - 2^-f: the error is
      below one step, as for rounding itself;
    * values in [0, 1) give i = 0 (UQ0.f); a range of zeros gives i = 0 (1 if signed).

    Args:
        lo: smallest value observed.
        hi: largest value observed.
        signed: force the signedness (V_mem and V_th are signed even if never negative);
            None = signed iff ``lo < 0``.

    Returns:
        (int_bits, signed).

    Raises:
        ValueError: for non-finite or reversed bounds, or ``signed=False`` with ``lo < 0``.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"invalid value range [{lo}, {hi}]: expected finite lo <= hi")
    is_signed = lo < 0.0 if signed is None else signed
    if not is_signed:
        if lo < 0.0:
            raise ValueError(f"value range [{lo}, {hi}] has negative values: it needs a signed format")
        return _bits_below(hi), False
    return 1 + max(_bits_at_most(-lo) if lo < 0.0 else 0, _bits_below(hi)), True


def range_of(x: torch.Tensor) -> Tuple[float, float]:
    """(min, max) of a tensor as Python floats (synchronizes; an analysis step, not a kernel).

    Raises:
        ValueError: for an empty tensor or one with NaN.
    """
    if x.numel() == 0:
        raise ValueError("cannot take the range of an empty tensor")
    lo, hi = torch.aminmax(x.detach())
    lo_f, hi_f = float(lo), float(hi)
    if math.isnan(lo_f) or math.isnan(hi_f):
        raise ValueError("cannot take the range of a tensor with NaN")
    return lo_f, hi_f


def ranges_per_network(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over all but dim 0: ``(P,)`` tensors, one range per network of the population."""
    flat = x.detach().reshape(x.shape[0], -1)
    return flat.amin(dim=1), flat.amax(dim=1)


def formats_for_total_bits(
    total_bits: Union[int, Mapping[str, int]],
    ranges: Mapping[str, Tuple[float, float]],
) -> Dict[str, QFormat]:
    """Turn a precision of B bits into a format Qi.f per parameter, with f = B - i (SPEC.md section 2).

    i comes from the observed range (:func:`integer_bits_for`), with the signedness of
    :data:`PARAM_SIGNED` for known parameters (V_mem and V_th are always signed) and ``lo < 0``
    otherwise. Where the parameter's convention already gives the signedness the format leaves it
    open (``Q1.7``), else it is explicit (``SQ8.0``).

    Args:
        total_bits: B for every parameter, or a B per parameter (keys of ``ranges``).
        ranges: (min, max) per parameter, e.g. from :func:`range_of` on an FP32 run.

    Example:
        >>> {k: str(v) for k, v in formats_for_total_bits(8, {"weights": (0, 1), "vmem": (-80, -52)}).items()}
        {'weights': 'Q1.7', 'vmem': 'Q8.0'}

    Raises:
        ValueError: if B exceeds 32, or is below the i a range needs (the message says the minimum B).
    """
    formats: Dict[str, QFormat] = {}
    for param, (lo, hi) in ranges.items():
        bits = total_bits if isinstance(total_bits, int) else total_bits[param]
        convention = PARAM_SIGNED.get(param)
        int_bits, signed = integer_bits_for(lo, hi, True if convention else None)
        minimum = max(int_bits, 1)
        if bits < minimum or bits > MAX_TOTAL_BITS:
            raise ValueError(
                f"B = {bits} bits does not fit {param!r} in [{lo}, {hi}]: it needs i = {int_bits} integer "
                f"bits{' with sign' if signed else ''}, so {minimum} <= B <= {MAX_TOTAL_BITS}"
            )
        formats[param] = QFormat(int_bits, bits - int_bits, None if convention == signed else signed)
    return formats
