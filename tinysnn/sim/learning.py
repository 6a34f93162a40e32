"""STDP rules as pure functions of tensors (docs/method.md §1).

Shapes: weights ``W (P, n_in, N)``; presynaptic trace ``x_pre (n_in,)`` (the input trains are
shared by the population); postsynaptic trace ``x_post (P, N)``; spikes ``s_in (n_in,)`` and
``s (P, N)`` as bool; per-network rates ``(P,)``. The torch simulator calls these once per step;
the numba kernels compute the same float32 expressions element by element (same order of
operations) in functions of the same names with a leading underscore
(``numba_kernels._pair_depression``, ...), so both give the same weights.

Traces follow "set to one" semantics: x <- 1 on a spike, else x <- x exp(-dt / tau).
Every rule ends with clipping to [0, w_max]; column normalization (after every sample) is in
:func:`normalize`, and its fixed-point forms that keep the column total in
:func:`normalize_sum_preserving`.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..quant.formats import (
    NEAREST,
    NORM_APPORTION,
    NORM_PROPORTIONAL,
    ROW_HI,
    ROW_LO,
    ROW_MODE,
    ROW_SCALE,
    TRUNCATE,
)


def trace_step(x: torch.Tensor, s: torch.Tensor, decay: float) -> torch.Tensor:
    """x <- 1 where s, else x * decay."""
    return torch.where(s, torch.ones_like(x), x * decay)


def pair_depression(
    w: torch.Tensor, s_in: torch.Tensor, x_post: torch.Tensor, nu_pre: torch.Tensor
) -> torch.Tensor:
    """Pair-wise STDP, presynaptic half: on a spike of input i, w_ij -= nu_pre x_post_j; clip at 0.

    Diehl & Cook's baseline ("PostPre"). The simulators apply depression, clip, then
    :func:`pair_potentiation`, clip (BindsNET clips once after both; they differ only for a
    weight that is pushed below 0 and potentiated in the same step).
    """
    dep = nu_pre[:, None] * x_post  # (P, N)
    w = w - s_in.to(w.dtype)[None, :, None] * dep[:, None, :]
    return w.clamp_min(0.0)


def pair_potentiation(
    w: torch.Tensor, x_pre: torch.Tensor, s: torch.Tensor, nu_post: torch.Tensor, w_max: torch.Tensor
) -> torch.Tensor:
    """Pair-wise STDP, postsynaptic half: on a spike of neuron j, w_ij += nu_post x_pre_i; clip."""
    pot = nu_post[:, None] * x_pre[None, :]  # (P, n_in)
    w = w + pot[:, :, None] * s.to(w.dtype)[:, None, :]
    return torch.minimum(w.clamp_min(0.0), w_max[:, None, None])


def sl_stdp(
    w: torch.Tensor,
    x_pre: torch.Tensor,
    s: torch.Tensor,
    eta_p: torch.Tensor,
    eta_d: torch.Tensor,
    x_th: torch.Tensor,
    w_max: torch.Tensor,
) -> torch.Tensor:
    """SL-STDP (Srinivasan et al. 2017) as we read it — an APPROXIMATE baseline (docs/method.md §1).

    Weights change only on a postsynaptic spike of neuron j: synapses whose presynaptic trace is
    above x_th potentiate, w += eta_p (w_max - w); the others depress, w -= eta_d w.
    """
    wm = w_max[:, None, None]
    pot = w + eta_p[:, None, None] * (wm - w)
    dep = w - eta_d[:, None, None] * w
    new = torch.where(x_pre[None, :, None] > x_th[:, None, None], pot, dep)
    w = torch.where(s[:, None, :], new, w)
    return torch.minimum(w.clamp_min(0.0), wm)


def adaptive_factor(max_count: torch.Tensor, n_th: torch.Tensor) -> torch.Tensor:
    """tinySNN Eq. 1: k = ceil(maxN / N_th), so k = 0 when no neuron spiked.

    ``max_count`` is the largest spike count of any excitatory neuron since the start of the
    sample, shape (P,).
    """
    return torch.ceil(max_count.to(torch.float32) / n_th)


def adaptive_potentiation(
    w: torch.Tensor,
    x_pre: torch.Tensor,
    spiked: torch.Tensor,
    k: torch.Tensor,
    eta_post: torch.Tensor,
    w_max: torch.Tensor,
) -> torch.Tensor:
    """tinySNN Eq. 2 at an update time: dw_ij = k eta_post x_pre_i (w_max - w_ij).

    Applied to the neurons j that spiked since the previous update time (``spiked (P, N)``);
    potentiation only (normalization is the counter-force). Evaluated as
    ``((k eta_post) x_pre_i) (w_max - w_ij)`` in float32.
    """
    a = k * eta_post  # (P,)
    b = a[:, None] * x_pre[None, :]  # (P, n_in)
    wm = w_max[:, None, None]
    new = w + b[:, :, None] * (wm - w)
    w = torch.where(spiked[:, None, :], new, w)
    return torch.minimum(w.clamp_min(0.0), wm)


def normalize(
    w: torch.Tensor, total: torch.Tensor, mask: torch.Tensor, keep: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Scale each existing neuron's input column to sum ``total`` (zero columns stay zero).

    ``keep`` (P, N) bool marks columns left as they are (see :func:`settled_columns`).
    The simulators clip to [0, w_max] right after, so every weight is in range at every step
    (BindsNET clips at the next learning step instead; the difference is that one step).
    """
    colsum = _column_sums(w)  # (P, 1, N)
    scale = (colsum > 0) & mask[:, None, :]
    if keep is not None:
        scale = scale & ~keep[:, None, :]
    factor = torch.where(
        scale, total[:, None, None] / colsum.to(w.dtype), torch.ones_like(colsum, dtype=w.dtype)
    )
    return w * factor


def _column_sums(w: torch.Tensor) -> torch.Tensor:
    """(P, 1, N) column sums, accumulated in float64 on CPU (exact for weights on a grid)."""
    acc = torch.float64 if w.device.type == "cpu" else torch.float32
    return w.sum(dim=1, keepdim=True, dtype=acc)


def normalize_sum_preserving(
    w: torch.Tensor,
    total: torch.Tensor,
    mask: torch.Tensor,
    rows: torch.Tensor,
    w_max: torch.Tensor,
    rule: torch.Tensor,
    u: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Fixed-point column normalization that keeps each column's total (the ``sum``,
    ``proportional`` and ``apportion`` rules of :class:`tinysnn.quant.Normalization`).

    Our decision (the method never normalizes weights, so how normalization rounds is ours):
    scale each column by ``total / sum`` as :func:`normalize`, clip to [0, w_max] and the format's
    range, floor every weight to the grid 2^-f, then give one step each to
    ``D = floor(total 2^f) - sum(codes)`` weights that lost a remainder and are below
    min(hi, w_max). Which ones, by ``rule``:

    - ``sum``: the D largest remainders (ties: the lowest input index);
    - ``proportional``: the D largest scaled weights (ties: the lowest input index), which is
      giving the steps back in proportion to what FP32 takes, w (1 - f), at most one each;
    - ``apportion``: systematic sampling with inclusion probabilities ``pi_i = r_i m / R`` (r_i the
      remainders of the weights that can step, R their sum, m = min(D, R)): with the column's
      draw ``u`` and ``C_i`` the running sum of pi in input order (float64), weight i steps where
      ``n(C_i) > n(C_{i-1})``, ``n(x) = min(ceil(x - u), D)`` (the sample points u, u + 1, ... below
      x). Each r_i < 1, so no weight gets two points, and exactly D weights step when D <= R.
      E[code_i] = floor + pi_i: each weight's expected loss is FP32's (pi_i = r_i when m = R).

    The column then sums to ``floor(total 2^f)`` steps (unless too few weights can take a step).
    A column whose codes already sum to the target is left as it is: scaling it by
    ``total / sum`` and flooring gives it back in exact arithmetic.

    Args:
        w: weights (P, n_in, N) on their grids.
        total: (P,) column total.
        mask: (P, N) bool, the neurons that exist.
        rows: (P, 4) fixed-point rows of the weights [2^f, lo, hi, mode].
        w_max: (P,) upper weight bound.
        rule: (P,) the networks' rule codes (``norm_rule``); networks with another rule get ``sum``.
        u: (P, N) float64 draws in [0, 1), one per column; needed where a network uses ``apportion``.

    Returns:
        The normalized weights on their grids (for every network; the caller picks the networks
        that use these rules).
    """
    scale = rows[:, ROW_SCALE][:, None, None]
    inv = 1.0 / scale
    lo, hi = rows[:, ROW_LO][:, None, None], rows[:, ROW_HI][:, None, None]
    wm = w_max[:, None, None]
    colsum = _column_sums(w)  # (P, 1, N)
    target = torch.floor(total.double() * rows[:, ROW_SCALE].double())[:, None, None]  # (P, 1, 1) steps
    at_target = colsum.double() * scale.double() == target
    scaled = (colsum > 0) & mask[:, None, :] & ~at_target
    factor = torch.where(scaled, total[:, None, None] / colsum.to(w.dtype), torch.ones_like(w[:, :1]))
    x = torch.minimum(torch.maximum(torch.minimum((w * factor).clamp_min(0.0), wm), lo), hi)
    y = x * scale
    codes = torch.floor(y)
    rem = y - codes
    can_step = (rem > 0) & ((codes + 1.0) * inv <= torch.minimum(hi, wm))
    missing = target - codes.sum(dim=1, keepdim=True, dtype=torch.float64)  # (P, 1, N)
    proportional = (rule == NORM_PROPORTIONAL)[:, None, None]
    key = torch.where(proportional, y, rem)
    order = torch.sort(torch.where(can_step, key, -torch.ones_like(key)), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order.indices).scatter_(
        1, order.indices, torch.arange(w.shape[1], device=w.device).view(1, -1, 1).expand_as(order.indices)
    )
    step = can_step & (rank < missing)
    apportion = rule == NORM_APPORTION
    if bool(apportion.any()):
        assert u is not None, "apportion needs one draw per column"
        step = torch.where(apportion[:, None, None], _apportioned(rem, can_step, missing, u), step)
    return (codes + step.to(w.dtype)) * inv


def _apportioned(
    rem: torch.Tensor, can_step: torch.Tensor, missing: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """The weights that get a step under ``apportion`` (see :func:`normalize_sum_preserving`): (P, n_in, N) bool."""
    r = torch.where(can_step, rem.double(), torch.zeros_like(rem, dtype=torch.float64))
    total_r = torch.cumsum(r, dim=1)[:, -1:]  # in input order, as the numba kernel adds
    m = torch.minimum(missing, total_r).clamp_min(0.0)
    pi = r * torch.where(total_r > 0, m / total_r, torch.zeros_like(total_r))
    points = torch.minimum(torch.ceil(torch.cumsum(pi, dim=1) - u[:, None, :]), missing)
    before = torch.cat([torch.zeros_like(points[:, :1]), points[:, :-1]], dim=1)
    return points > before


def settled_columns(
    w: torch.Tensor, total: torch.Tensor, fired: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Columns the ``settled`` normalization rule leaves alone: (P, N) bool.

    A decision of ours (``Normalization.SETTLED``): with quantized weights and a deterministic
    rounding mode, a column whose neuron did not fire in the sample is not renormalized while its
    sum lies within the rounding slack of ``total`` (truncation: ``total - n_in q < sum <= total``;
    nearest: ``|sum - total| <= n_in q / 2``, q = 2^-f). Such a column is unchanged since it was last
    normalized; in fixed point its sum is short of ``total`` by the rounding, the factor slightly
    above 1, and truncating ``w * factor`` would raise only the weights large enough to gain a
    step, every sample, for every silent neuron. Columns that learned, and columns off by more
    than rounding explains (fresh weights), are normalized with the plain rule.

    Args:
        w: weights (P, n_in, N) on their grids.
        total: (P,) column total.
        fired: (P, N) bool, the neurons that fired in the sample.
        rows: (P, 4) fixed-point rows of the weights [2^f, lo, hi, mode].
    """
    colsum = _column_sums(w)[:, 0, :].to(torch.float64 if w.device.type == "cpu" else torch.float32)
    tot = total.to(colsum.dtype)[:, None]
    slack = (w.shape[1] / rows[:, ROW_SCALE].to(colsum.dtype))[:, None]
    mode = rows[:, ROW_MODE][:, None]
    trunc = (mode == TRUNCATE) & (colsum <= tot) & (colsum > tot - slack)
    near = (mode == NEAREST) & ((colsum - tot).abs() <= slack / 2)
    return (trunc | near) & ~fired


__all__ = [
    "adaptive_factor",
    "adaptive_potentiation",
    "normalize",
    "pair_depression",
    "pair_potentiation",
    "normalize_sum_preserving",
    "settled_columns",
    "sl_stdp",
    "trace_step",
]
