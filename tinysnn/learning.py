"""STDP rules as pure functions of tensors (SPEC.md §1).

Shapes: weights ``W (P, n_in, N)``; presynaptic trace ``x_pre (n_in,)`` (the input trains are
shared by the population); postsynaptic trace ``x_post (P, N)``; spikes ``s_in (n_in,)`` and
``s (P, N)`` as bool; per-network rates ``(P,)``. The torch simulator calls these once per step;
the numba kernels compute the same float32 expressions element by element (same order of
operations), so both give the same weights.

Traces follow "set to one" semantics: x <- 1 on a spike, else x <- x exp(-dt / tau).
Every rule ends with clipping to [0, w_max]; column normalization (after every sample) is in
:func:`normalize`.
"""

from __future__ import annotations

from typing import Optional

import torch

from .qformat import NEAREST, TRUNCATE


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
    """SL-STDP (Srinivasan et al. 2017) as we read it — an APPROXIMATE baseline (SPEC.md §1).

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


def tinysnn_update(
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
    acc = torch.float64 if w.device.type == "cpu" else torch.float32
    colsum = w.sum(dim=1, keepdim=True, dtype=acc).to(w.dtype)  # (P, 1, N)
    scale = (colsum > 0) & mask[:, None, :]
    if keep is not None:
        scale = scale & ~keep[:, None, :]
    factor = torch.where(scale, total[:, None, None] / colsum, torch.ones_like(colsum))
    return w * factor


def settled_columns(
    w: torch.Tensor, total: torch.Tensor, fired: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Columns that fixed-point normalization must leave alone: (P, N) bool.

    Our decision (SPEC.md section 2 says only "re-quantized after normalization"): with
    quantized weights and a deterministic rounding mode, a column whose neuron did not fire in
    the sample is not renormalized while its sum lies within the rounding slack of ``total``
    (truncation: ``total - n_in q < sum <= total``; nearest: ``|sum - total| <= n_in q / 2``,
    q = 2^-f). Such a column is unchanged since it was last normalized, so in FP32 the factor
    would be 1 up to rounding; in fixed point its sum is short of ``total`` by the rounding, the
    factor is slightly above 1, and truncating ``w * factor`` raises only the weights large
    enough to gain a step, every sample, for every silent neuron: a drift towards a few large
    weights (on Fashion-MNIST at 8 bits it cost most of ITQ's loss, bench/RESULTS.md). Columns that
    learned, and columns off by more than rounding explains (fresh weights), are normalized as
    before. Stochastic rounding is unbiased and FP32 has no slack: both normalize every column.

    Args:
        w: weights (P, n_in, N) on their grids.
        total: (P,) column total.
        fired: (P, N) bool, the neurons that fired in the sample.
        rows: (P, 4) fixed-point rows of the weights [2^f, lo, hi, mode].
    """
    acc = torch.float64 if w.device.type == "cpu" else torch.float32
    colsum = w.sum(dim=1, dtype=acc)  # (P, N)
    tot = total.to(acc)[:, None]
    slack = (w.shape[1] / rows[:, 0].to(acc))[:, None]
    mode = rows[:, 3][:, None]
    trunc = (mode == TRUNCATE) & (colsum <= tot) & (colsum > tot - slack)
    near = (mode == NEAREST) & ((colsum - tot).abs() <= slack / 2)
    return (trunc | near) & ~fired


__all__ = [
    "adaptive_factor",
    "normalize",
    "pair_depression",
    "pair_potentiation",
    "settled_columns",
    "sl_stdp",
    "tinysnn_update",
    "trace_step",
]
