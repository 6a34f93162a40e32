"""Range analysis: integer bits from an FP32 run, fractional bits from the precision B (docs/method.md §2)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, Mapping, Optional, Tuple, Union

if TYPE_CHECKING:  # the range helpers take tensors but need no torch function (importable without torch)
    import torch

from ..config import EXCITATORY
from .formats import MAX_TOTAL_BITS, PARAM_SIGNED, PARAMS, QFormat, QuantSpec


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
    """Integer bits i (and signedness) for values in [lo, hi] (docs/method.md §2).

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
    lo, hi = x.detach().aminmax()
    lo_f, hi_f = float(lo), float(hi)
    if math.isnan(lo_f) or math.isnan(hi_f):
        raise ValueError("cannot take the range of a tensor with NaN")
    return lo_f, hi_f


def ranges_per_network(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over all but dim 0: ``(P,)`` tensors, one range per network of the population."""
    flat = x.detach().reshape(x.shape[0], -1)
    return flat.amin(dim=1), flat.amax(dim=1)


def must_hold(param: str) -> str:
    """What a format of ``param`` must hold, in the words of the error messages."""
    ex = EXCITATORY
    if param == "vmem":
        return f"V_mem - v_rest from 0 (rest) to {ex.v_th - ex.v_rest:g} mV (v_th)"
    return f"v_th = {ex.v_th:g} mV"


def min_integer_bits(param: str) -> int:
    """Integer bits (sign included) a parameter needs to hold its resting values.

    V_mem is stored as V_mem - v_rest and must hold rest, v_reset and v_th (0, 5 and 13 mV about
    rest: 5 bits); V_th must hold v_th (-52 mV: 7 bits); the weights lie in [0, w_max] and may use
    UQ0.f (values up to 1 - 2^-f).
    """
    ex = EXCITATORY
    if param == "vmem":
        lo = min(ex.v_rest, ex.v_reset) - ex.v_rest
        return integer_bits_for(lo, max(ex.v_th, ex.v_reset) - ex.v_rest, signed=True)[0]
    if param == "vth":
        return integer_bits_for(ex.v_th, ex.v_th, signed=True)[0]
    return 0


def format_problem(param: str, fmt: QFormat) -> str:
    """Why ``fmt`` cannot hold ``param``'s resting values, or "" (one rule for train and search)."""
    need = min_integer_bits(param)
    if fmt.int_bits < need:
        return (f"{param}: {fmt} cannot hold {must_hold(param)}; it needs at least {need} integer bits "
                "(sign included)")  # fmt: skip
    return ""


def spec_problem(spec: QuantSpec) -> str:
    """The first reason a spec's formats cannot hold their parameters' resting values, or ""."""
    for param in PARAMS:
        fmt = spec.format_of(param)
        problem = format_problem(param, fmt) if fmt is not None else ""
        if problem:
            return problem
    return ""


def min_frac_bits_for_step(step: float) -> int:
    """Fewest fractional bits f whose grid step 2^-f is at most ``step`` (> 0)."""
    if not step > 0.0:
        raise ValueError(f"a step must be > 0, got {step}")
    f = 0
    while 2.0**-f > step:
        f += 1
    return f


def vth_increment_problem(fmt: QFormat, theta_plus: float) -> str:
    """Why an ITQ V_th format cannot hold the threshold increment theta+, or "" when it can.

    Our decision: a format whose step 2^-f exceeds theta+ is refused. With truncation every
    increment would be lost (theta never adapts), with nearest rounding every one would be
    rounded to zero or to a whole step; in both cases the adaptive threshold stops working.
    """
    if fmt.step <= theta_plus:
        return ""
    need = min_frac_bits_for_step(theta_plus)
    return (
        f"V_th format {fmt} has a step of {fmt.step:g} mV, larger than the threshold increment "
        f"theta+ = {theta_plus:g} mV, so in-training quantization would lose every increment: "
        f"use at least {need} fractional bits (e.g. Q{fmt.int_bits}.{need})"
    )


def itq_problem(spec: Optional[QuantSpec], theta_plus: float) -> str:
    """Why ``spec`` cannot train in-training quantized with this threshold increment, or "".

    An ITQ V_th format must hold theta+ (:func:`vth_increment_problem`); PTQ quantizes a trained
    threshold once and never adds theta+ on the grid.
    """
    if spec is None or spec.scheme.value != "itq" or spec.vth is None:
        return ""
    return vth_increment_problem(spec.vth, theta_plus)


def formats_for_total_bits(
    total_bits: Union[int, Mapping[str, int]],
    ranges: Mapping[str, Tuple[float, float]],
    min_frac_bits: Optional[Mapping[str, int]] = None,
) -> Dict[str, QFormat]:
    """Turn a precision of B bits into a format Qi.f per parameter, with f = B - i (docs/method.md §2).

    i comes from the observed range (:func:`integer_bits_for`), with the signedness of
    :data:`PARAM_SIGNED` for known parameters (V_mem and V_th are always signed) and ``lo < 0``
    otherwise. Where the parameter's convention already gives the signedness the format leaves it
    open (``Q1.7``), else it is explicit (``SQ8.0``).

    Args:
        total_bits: B for every parameter, or a B per parameter (keys of ``ranges``).
        ranges: (min, max) per parameter, e.g. from :func:`range_of` on an FP32 run.
        min_frac_bits: the fewest fractional bits a parameter needs, e.g. ``{"vth": 5}`` for ITQ,
            whose V_th step must not exceed theta+ (:func:`min_frac_bits_for_step`).

    Example:
        >>> {k: str(v) for k, v in formats_for_total_bits(8, {"weights": (0, 1), "vmem": (-80, -52)}).items()}
        {'weights': 'Q1.7', 'vmem': 'Q8.0'}

    Raises:
        ValueError: if B exceeds 32, or is below the i (plus the fewest f) a range needs (the
            message says the minimum B).
    """
    formats: Dict[str, QFormat] = {}
    for param, (lo, hi) in ranges.items():
        bits = total_bits if isinstance(total_bits, int) else total_bits[param]
        convention = PARAM_SIGNED.get(param)
        int_bits, signed = integer_bits_for(lo, hi, True if convention else None)
        need_frac = (min_frac_bits or {}).get(param, 0)
        minimum = max(int_bits + need_frac, 1)
        if bits < minimum or bits > MAX_TOTAL_BITS:
            frac_note = f" and at least {need_frac} fractional bits" if need_frac else ""
            raise ValueError(
                f"B = {bits} bits does not fit {param!r} in [{lo}, {hi}]: it needs i = {int_bits} integer "
                f"bits{' with sign' if signed else ''}{frac_note}, so {minimum} <= B <= {MAX_TOTAL_BITS}"
            )
        formats[param] = QFormat(int_bits, bits - int_bits, None if convention == signed else signed)
    return formats
