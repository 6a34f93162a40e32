"""Rounding and saturation of tensors and scalars to fixed-point grids (docs/method.md §2).

The kernels behind PTQ and ITQ, vectorized over a population (per-network formats as ``(P,)``
tensors or ``(P, 3)`` rows, rounding modes as ``(P,)`` int64 codes); see :mod:`tinysnn.quant` for the
conventions.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union, overload

import torch

from .formats import (
    LEAK_BITS,
    NEAREST,
    NONE,
    PARAM_SIGNED,
    ROW_HI,
    ROW_LO,
    ROW_SCALE,
    STOCHASTIC,
    TRUNCATE,
    QFormat,
    QParams,
    QuantSpec,
    Rounding,
    rounding_code,
)


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


@overload
def _per_network(
    value: torch.Tensor, x: torch.Tensor, dtype: Optional[torch.dtype] = None
) -> torch.Tensor: ...
@overload
def _per_network(value: Number, x: torch.Tensor, dtype: Optional[torch.dtype] = None) -> Number: ...
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
    """Round ``x`` to the grid 2^-f and saturate to [lo, hi] (docs/method.md §2), for a population.

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
    mode_t: Optional[torch.Tensor] = None
    if isinstance(mode, torch.Tensor):
        mode_t, code = mode, NONE
    else:
        code = rounding_code(mode)
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
    modes: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    *,
    u: Optional[torch.Tensor] = None,
    any_stochastic: Optional[bool] = None,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """:func:`quantize` with per-network rows ``(P, 3)`` = ``[scale = 2^f, lo, hi]`` and rounding
    codes ``modes`` ``(P,)`` int64.

    The layout the population keeps per quantized parameter (see :func:`population_rows`); the
    scale must be a power of two. Same results, bit for bit, as :func:`quantize`.
    """
    scale = _per_network(rows[:, ROW_SCALE].to(x.dtype), x)
    step = _per_network(1.0 / rows[:, ROW_SCALE].to(x.dtype), x)
    lo, hi = rows[:, ROW_LO], rows[:, ROW_HI]
    return _round_saturate(x, scale, step, lo, hi, NONE, modes, generator, u, any_stochastic, out)


def quantize_(
    x: torch.Tensor,
    frac_bits: Union[int, torch.Tensor],
    lo: Union[float, torch.Tensor],
    hi: Union[float, torch.Tensor],
    mode: Union[int, Rounding, str, torch.Tensor],
    generator: Optional[torch.Generator] = None,
    *,
    u: Optional[torch.Tensor] = None,
    any_stochastic: Optional[bool] = None,
) -> torch.Tensor:
    """In-place :func:`quantize`: writes the result into ``x`` and returns it (ITQ re-quantization)."""
    return quantize(x, frac_bits, lo, hi, mode, generator, u=u, any_stochastic=any_stochastic, out=x)


def decay_toward_zero(
    u: torch.Tensor, scale: Number, leak: int, draws: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """The fixed-point decay of values ``u`` on the grid 2^-f: one decrement of whole steps.

    The decrement is ``(|u| 2^f leak) / 2^LEAK_BITS`` steps with ``leak = (1 - decay) 2^LEAK_BITS``
    (:class:`tinysnn.network.Constants`), computed on the integer codes, as a fixed-point leak
    ``V - (V >> k)`` is. Without ``draws`` it is rounded toward zero (truncation and nearest; issue
    13's decision): a decay never decays faster than FP32, and a decrement below one step is 0.
    With ``draws`` (stochastic rounding, docs/method.md §2) the decrement goes up one step where
    the draw is below the product's remainder: with probability remainder / 2^LEAK_BITS, so its
    mean is the exact product and the decay is unbiased. Either way the decrement is at most
    ``|u|``: a value never crosses its rest point (0).

    Args:
        u: the values, on the grid 2^-f.
        scale: 2^f, scalar or broadcastable to ``u``.
        leak: the fixed-point multiplier.
        draws: the 24-bit integer draws (int64, shape of ``u``) of :func:`tinysnn.streams.uniform_bits`;
            a draw of 2^24 or more never rounds up (for networks that do not round stochastically).

    The numba kernels compute the same integers (``tinysnn.sim.numba_kernels._decay_toward_zero``).
    """
    product = (u.abs() * scale).to(torch.int64) * int(leak)
    steps = product >> LEAK_BITS
    if draws is not None:
        steps = steps + (draws < (product & (_LEAK_ONE - 1))).to(torch.int64)
    step = steps.to(u.dtype) / scale
    return torch.where(u > 0, u - step, u + step)


# A remainder below 2^LEAK_BITS is compared with a draw below 2^U_BITS: the two are equal (24, tested).
_LEAK_ONE = 1 << LEAK_BITS


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
    return QParams(*_population_tensors(formats, rounding, signed, device, dtype))


def _population_tensors(
    formats: Sequence[Optional[QFormat]],
    rounding: Union[Rounding, str, Sequence[Union[Rounding, str]]],
    signed: bool,
    device: Optional[Union[torch.device, str]],
    dtype: torch.dtype,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(frac_bits, lo, hi, mode) of :func:`population_qparams`, typed as the tensors they always are."""
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
    return (
        torch.tensor(frac, dtype=torch.int64, device=device),
        torch.tensor(lo, dtype=dtype, device=device),
        torch.tensor(hi, dtype=dtype, device=device),
        torch.tensor(code, dtype=torch.int64, device=device),
    )


def population_rows(
    specs: Sequence[QuantSpec],
    param: str,
    device: Optional[Union[torch.device, str]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows ``(P, 3)`` float32 ``[2^f, lo, hi]`` of ``param`` for P networks and their rounding codes
    ``(P,)`` int64, for :func:`quantize_rows`.

    An fp32 parameter gets the row ``[1, -inf, inf]`` and the code :data:`NONE`.

    Example:
        >>> rows, modes = population_rows([parse_quant_arg("weights=Q1.7"), QuantSpec()], "weights")
        >>> rows
        tensor([[128.0000,   0.0000,   1.9922],
                [  1.0000,     -inf,      inf]])
        >>> modes
        tensor([1, 0])
    """
    frac_bits, lo, hi, mode = _population_tensors(
        [spec.format_of(param) for spec in specs],
        [spec.rounding for spec in specs],
        PARAM_SIGNED[param],
        device,
        torch.float32,
    )
    scale = (torch.ones_like(frac_bits) << frac_bits).to(torch.float32)
    return torch.stack([scale, lo, hi], dim=1), mode
