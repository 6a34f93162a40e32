"""Range analysis: integer bits from an FP32 run, fractional bits from the precision B (docs/method.md §2).

A format may saturate: a range wider than the format is clamped, not refused (issue 25, decision 1).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple, Union

if TYPE_CHECKING:  # the range helpers take tensors but need no torch function (importable without torch)
    import torch

from .formats import MAX_TOTAL_BITS, PARAM_SIGNED, QFormat, QuantSpec


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


def min_frac_bits_for_step(step: float) -> int:
    """Fewest fractional bits f whose grid step 2^-f is at most ``step`` (> 0)."""
    if not step > 0.0:
        raise ValueError(f"a step must be > 0, got {step}")
    f = 0
    while 2.0**-f > step:
        f += 1
    return f


def vth_increment_problem(fmt: QFormat, theta_plus: float) -> str:
    """Why an ITQ V_th format under truncation or nearest rounding cannot hold the threshold
    increment theta+, or "" when it can.

    Our decision: a format whose step 2^-f exceeds theta+ is refused. With truncation every
    increment would be lost (theta never adapts), with nearest rounding every one would be
    rounded to zero or to a whole step; in both cases the adaptive threshold stops working.
    Stochastic rounding is not bound by it: there an increment below one step is added as a whole
    step with probability theta+ / step (issue 25, decision 3), so theta grows by theta+ on average.
    """
    if fmt.step <= theta_plus:
        return ""
    need = min_frac_bits_for_step(theta_plus)
    return (
        f"V_th format {fmt} has a step of {fmt.step:g} mV, larger than the threshold increment "
        f"theta+ = {theta_plus:g} mV, so in-training quantization with truncation or nearest rounding "
        f"would lose every increment: use at least {need} fractional bits (e.g. Q{fmt.int_bits}.{need}) "
        f"or stochastic rounding"
    )


def itq_problem(spec: Optional[QuantSpec], theta_plus: float) -> str:
    """Why ``spec`` cannot train in-training quantized with this threshold increment, or "".

    An ITQ V_th format under truncation or nearest rounding must hold theta+
    (:func:`vth_increment_problem`); stochastic rounding adds a smaller theta+ stochastically, and
    PTQ quantizes a trained threshold once and never adds theta+ on the grid.
    """
    if spec is None or spec.scheme.value != "itq" or spec.vth is None or spec.rounding.value == "stochastic":
        return ""
    return vth_increment_problem(spec.vth, theta_plus)


def splits_for_total_bits(
    bits: int, lo: float, hi: float, param: Optional[str] = None, min_frac: int = 0, count: int = 1
) -> List[QFormat]:
    """The i.f splits of B bits worth measuring for values in [lo, hi], widest range first (docs/method.md §2).

    A format may saturate (our decision, issue 25): it need not hold the whole observed range. The
    first split is the one that holds [lo, hi] (i from :func:`integer_bits_for`) when B leaves it
    ``min_frac`` fractional bits, else the widest that does, which saturates. Each next split moves
    one bit from i to f (a finer step, a narrower range), down to ``count`` splits or the fewest
    integer bits the signedness allows (1 signed, 0 unsigned). Which one works is measured, not
    derived: a saturating V_mem loses only depths of inhibition that keep a neuron silent anyway,
    a saturating V_th bounds theta.

    Args:
        bits: B = i + f.
        lo: smallest value observed.
        hi: largest value observed.
        param: ``weights``, ``vmem`` or ``vth`` gives its signedness (:data:`PARAM_SIGNED`) and leaves it
            open in the format (``Q1.7``); None or another name: signed iff ``lo < 0``, explicit (``SQ2.6``).
        min_frac: the fewest fractional bits the parameter needs (e.g. 5 for an ITQ V_th under
            truncation, whose step must not exceed theta+).
        count: how many splits at most.

    Raises:
        ValueError: if B is not in 1..32, if no split of B bits keeps ``min_frac`` fractional bits
            (with the sign bit, when signed), or if ``count`` < 1.
    """
    if count < 1:
        raise ValueError(f"count = {count}: expected at least 1 split")
    convention = PARAM_SIGNED.get(param) if param is not None else None
    int_bits, signed = integer_bits_for(lo, hi, True if convention else None)
    fewest = 1 if signed else 0
    widest = min(int_bits, bits - min_frac)
    if not 1 <= bits <= MAX_TOTAL_BITS or widest < fewest:
        parts = ["1 integer bit for the sign"] if signed else []
        parts += [f"{min_frac} fractional bits"] if min_frac else []
        why = f" ({' and '.join(parts)})" if parts else ""
        raise ValueError(
            f"B = {bits} bits has no format for {param or 'values'!r} in [{lo}, {hi}]: it needs "
            f"{max(fewest + min_frac, 1)} <= B <= {MAX_TOTAL_BITS}{why}"
        )
    open_sign = None if convention == signed else signed
    return [QFormat(i, bits - i, open_sign) for i in range(widest, max(fewest, widest - count + 1) - 1, -1)]


def split_candidates(
    total_bits: Union[int, Mapping[str, int]],
    ranges: Mapping[str, Tuple[float, float]],
    min_frac_bits: Optional[Mapping[str, int]] = None,
    count: int = 1,
) -> Dict[str, List[QFormat]]:
    """:func:`splits_for_total_bits` for every parameter of ``ranges``: up to ``count`` splits each.

    Args:
        total_bits: B for every parameter, or a B per parameter (keys of ``ranges``).
        ranges: (min, max) per parameter, e.g. from :func:`range_of` on an FP32 run.
        min_frac_bits: the fewest fractional bits per parameter, e.g. ``{"vth": 5}``.
        count: how many splits at most per parameter.

    Raises:
        ValueError: as :func:`splits_for_total_bits`.
    """
    out: Dict[str, List[QFormat]] = {}
    for param, (lo, hi) in ranges.items():
        bits = total_bits if isinstance(total_bits, int) else total_bits[param]
        need = (min_frac_bits or {}).get(param, 0)
        out[param] = splits_for_total_bits(bits, lo, hi, param, need, count)
    return out


def formats_for_total_bits(
    total_bits: Union[int, Mapping[str, int]],
    ranges: Mapping[str, Tuple[float, float]],
    min_frac_bits: Optional[Mapping[str, int]] = None,
) -> Dict[str, QFormat]:
    """Turn a precision of B bits into a format Qi.f per parameter, with f = B - i (docs/method.md §2).

    i comes from the observed range (:func:`integer_bits_for`), with the signedness of
    :data:`PARAM_SIGNED` for known parameters and ``lo < 0`` otherwise. Where the parameter's
    convention already gives the signedness the format leaves it open (``Q1.7``), else it is
    explicit (``SQ8.0``). Where B is too small to hold the range, the format saturates: it keeps
    the fewest fractional bits and gives the rest to i (the first split of
    :func:`splits_for_total_bits`; a search or :func:`split_candidates` measures the others).

    Args:
        total_bits: B for every parameter, or a B per parameter (keys of ``ranges``).
        ranges: (min, max) per parameter, e.g. from :func:`range_of` on an FP32 run.
        min_frac_bits: the fewest fractional bits a parameter needs, e.g. ``{"vth": 5}`` for ITQ
            under truncation, whose V_th step must not exceed theta+ (:func:`min_frac_bits_for_step`).

    Example:
        >>> {k: str(v) for k, v in formats_for_total_bits(8, {"weights": (0, 1), "vmem": (-80, -52)}).items()}
        {'weights': 'Q1.7', 'vmem': 'Q8.0'}
        >>> str(formats_for_total_bits(6, {"vmem": (-80, -52)})["vmem"])  # saturates at -32..31 mV
        'Q6.0'

    Raises:
        ValueError: as :func:`splits_for_total_bits` (B above 32, or too few bits for the sign and
            the fewest fractional bits).
    """
    return {param: splits[0] for param, splits in split_candidates(total_bits, ranges, min_frac_bits).items()}
