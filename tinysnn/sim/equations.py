"""The torch backend's equations (docs/method.md §1-2) as pure functions of tensors, in one place.

Each function is one equation (or one rule) of a step of the excitatory layer, of learning or of
normalization; :mod:`tinysnn.sim.torch_backend` only strings them together over a window. Their
numba twins in :mod:`tinysnn.sim.numba_kernels` carry the same name with a leading underscore
(``lif_excitatory_step`` and ``numba_kernels._lif_excitatory_step``, ...) and compute the same float32
expressions element by element, in the same order, so both backends give the same spikes and
weights (tests/sim). Where the kernel has no function of its own the docstring says where it
computes the equation.

Shapes: weights ``W (P, n_in, N)``; potentials, refractory counters and spikes ``(P, B, N)``;
presynaptic trace ``x_pre (n_in,)`` (the input trains are shared by the population); postsynaptic
trace ``x_post (P, N)``; learning spikes ``s_in (n_in,)`` and ``s (P, N)`` as bool; per-network
parameters ``(P,)``. Fixed-point parameters come as :class:`Rows`; stochastic rounding draws element
``index`` of the streams ``base`` (P, B) at ``step`` (:mod:`tinysnn.streams`).

Traces follow "set to one" semantics: x <- 1 on a spike, else x <- x exp(-dt / tau). Every
learning rule ends with clipping to [0, w_max]; column normalization after every sample is
:func:`normalize`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Tuple, Union, overload

import torch

from .. import streams as S
from ..config import Variant
from ..network import Constants, Population
from ..quant import NONE, STOCHASTIC, decay_toward_zero, quantize_rows
from ..quant.formats import (
    NEAREST,
    NORM_APPORTION,
    NORM_PROPORTIONAL,
    NORM_SETTLED,
    NORM_SUM,
    ROW_HI,
    ROW_LO,
    ROW_SCALE,
    TRUNCATE,
)

IntOrTensor = Union[int, torch.Tensor]

# -- fixed point --------------------------------------------------------------------------------------


class Rows(NamedTuple):
    """A population's (P, 3) fixed-point rows [2^f, lo, hi] of one parameter, their (P,) int64
    rounding codes, and whether any network rounds stochastically (decided once per window on the
    host, so the time loop never waits for the device)."""

    rows: torch.Tensor
    modes: torch.Tensor
    stochastic: bool

    @property
    def active(self) -> torch.Tensor:
        """(P,) bool: the networks that quantize this parameter."""
        return self.modes != NONE

    def scale(self, dims: int) -> torch.Tensor:
        """2^f per network, viewed (P, 1, ...) with ``dims`` dimensions in all."""
        return self.rows[:, ROW_SCALE].view((-1,) + (1,) * (dims - 1))


def quantize(
    x: torch.Tensor, q: Rows, base: Optional[torch.Tensor], step: torch.Tensor, index: Optional[torch.Tensor]
) -> torch.Tensor:
    """Fake-quantize with per-network rows (numba: ``_q``); stochastic rounding draws element ``index``
    of the streams ``base`` (P, B) at ``step`` (an int64 tensor, so products wrap; :mod:`tinysnn.streams`),
    only if some network needs them."""
    u = None
    if q.stochastic:
        key = S.step_key(base, step)
        key = key.view(tuple(key.shape) + (1,) * (x.dim() - key.dim()))
        u = S.uniform_bits(key, index).to(x.dtype) * 2.0**-S.U_BITS
    return quantize_rows(x, q.rows, q.modes, u=u, any_stochastic=q.stochastic)


def decay(
    u: torch.Tensor,
    factor: float,
    q: Optional[Rows],
    leak: int,
    base: Optional[torch.Tensor] = None,
    step: Optional[torch.Tensor] = None,
    index: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """u decayed toward 0: ``u * factor`` in FP32, one decrement of whole steps where the network
    quantizes the value (:func:`tinysnn.quant.rounding.decay_toward_zero`): rounded stochastically
    by draw ``index`` of the streams ``base`` (P, B) at ``step`` where the network rounds
    stochastically, else toward zero."""
    plain = u * factor
    if q is None:
        return plain
    draws = None
    if q.stochastic:
        assert base is not None and step is not None and index is not None
        key = S.step_key(base, step)
        key = key.view(tuple(key.shape) + (1,) * (u.dim() - key.dim()))
        draws = S.uniform_bits(key, index)
        rounds_up = (q.modes == STOCHASTIC).view((-1,) + (1,) * (u.dim() - 1))
        draws = torch.where(rounds_up, draws, torch.full_like(draws, 1 << S.U_BITS))
    fixed = decay_toward_zero(u, q.scale(u.dim()), leak, draws)
    return torch.where(q.active.view((-1,) + (1,) * (u.dim() - 1)), fixed, plain)


# -- neurons ------------------------------------------------------------------------------------------
def input_current(s_in: torch.Tensor, w: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """I = s_in(t) @ W: each network's input current (P, B, N) from the shared input spikes (B, n_in),
    accumulated in ``acc`` (float64 on CPU, as the numba kernels add, so both give the same spikes)
    and rounded once to float32."""
    return torch.einsum("bi,pin->pbn", s_in.to(acc), w.to(acc)).to(torch.float32)


def lif_inhibitory_step(
    pop: Population,
    c: Constants,
    mask: torch.Tensor,
    vi: torch.Tensor,
    refi: torch.Tensor,
    s: torch.Tensor,
    qv: Optional[Rows],
    base: Optional[torch.Tensor],
    base_decay: Optional[torch.Tensor],
    t: torch.Tensor,
    neuron_idx: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The baselines' inhibitory LIF layer: leak toward rest, add w_exc_inh for the excitatory
    spike of t - 1 unless refractory, quantize (qWN), fire above v_th, reset.

    Returns the new potentials, refractory counters and spikes.
    """
    ih = pop.inh
    vi = ih.v_rest + decay(vi - ih.v_rest, c.dec_inh, qv, c.leak_inh, base_decay, t, neuron_idx)
    vi = torch.where(refi <= 0, vi + pop.params["w_exc_inh"][:, None, None] * s.to(torch.float32), vi)
    if qv is not None:
        vi = quantize(vi, qv, base, t, neuron_idx)
    refi = refi - 1
    si = (vi > ih.v_th) & mask
    refi = torch.where(si, torch.full_like(refi, c.refrac_inh), refi)
    vi = torch.where(si, torch.full_like(vi, ih.v_reset), vi)
    return vi, refi, si


def lateral_inhibition(cur: torch.Tensor, lat: torch.Tensor, w_lat: torch.Tensor) -> torch.Tensor:
    """Every spike of ``lat`` (inhibitory layer or excitatory layer at t - 1) takes ``w_lat`` from
    the input current of every other neuron."""
    nlat = lat.sum(dim=2, keepdim=True, dtype=torch.int32)
    return cur - w_lat * (nlat - lat.to(torch.int32)).to(torch.float32)


def lif_excitatory_step(
    pop: Population,
    c: Constants,
    mask: torch.Tensor,
    v: torch.Tensor,
    ref: torch.Tensor,
    cur: torch.Tensor,
    thr: torch.Tensor,
    one: Optional[torch.Tensor],
    qv: Optional[Rows],
    base: Optional[torch.Tensor],
    base_decay: Optional[torch.Tensor],
    t: torch.Tensor,
    neuron_idx: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The excitatory LIF layer: leak toward rest, add the current ``cur`` unless refractory,
    quantize (qWN); neurons above v_th + theta cross, are reset and become refractory; all of them
    spike, or where ``one`` (P,) is set the largest overshoot only (:func:`one_spike`).

    Returns the potentials before the reset (for range analysis), the new potentials, refractory
    counters, spikes and crossings.
    """
    ex = pop.exc
    v = ex.v_rest + decay(v - ex.v_rest, c.dec_exc, qv, c.leak_exc, base_decay, t, neuron_idx)
    v = torch.where(ref <= 0, v + cur, v)
    if qv is not None:
        v = quantize(v, qv, base, t, neuron_idx)
    top = v
    ref = ref - 1
    cross = (v > thr[:, None, :]) & mask
    s = one_spike(cross, v - thr[:, None, :], one) if one is not None else cross
    ref = torch.where(cross, torch.full_like(ref, c.refrac_exc), ref)
    v = torch.where(cross, torch.full_like(v, ex.v_reset), v)
    return top, v, ref, s, cross


def one_spike(cross: torch.Tensor, over: torch.Tensor, one: torch.Tensor) -> torch.Tensor:
    """Keep only the largest overshoot's spike (lowest index on ties) where ``one`` (P,) is set
    (numba: inside ``_lif_excitatory_step``)."""
    score = torch.where(cross, over, torch.full_like(over, -float("inf")))
    best = score.argmax(dim=-1, keepdim=True)
    win = torch.zeros_like(cross).scatter_(-1, best, True) & cross.any(dim=-1, keepdim=True)
    return torch.where(one[:, None, None], win, cross)


def adaptive_threshold(
    pop: Population,
    theta: torch.Tensor,
    cross: torch.Tensor,
    qth: Optional[Rows],
    base: Optional[torch.Tensor],
    t: torch.Tensor,
    neuron_idx: torch.Tensor,
) -> torch.Tensor:
    """theta += theta_plus for every neuron that crossed (as BindsNET), with theta = V_th - v_th
    kept on its grid (qWN): the increment is theta+ rounded by the format's mode (under stochastic
    rounding up one step with probability frac(theta+ / q), draw j of the stream, so its mean is
    theta+), and the sum saturates at the format's top."""
    theta_plus = pop.params["theta_plus"][:, None]
    if qth is None:
        return theta + theta_plus * cross.to(torch.float32)
    raised = theta + quantize(theta_plus.expand_as(theta).contiguous(), qth, base, t, neuron_idx)
    raised = torch.where(qth.active[:, None], torch.minimum(raised, qth.rows[:, ROW_HI][:, None]), raised)
    return torch.where(cross, raised, theta)


def decay_theta(
    c: Constants,
    theta: torch.Tensor,
    qth: Optional[Rows],
    base: Optional[torch.Tensor],
    step: torch.Tensor,
    neuron_idx: torch.Tensor,
) -> torch.Tensor:
    """theta decays toward 0 over the sample's span: FP32 multiply, or one decrement on theta's grid
    (stochastic under stochastic rounding, draw j at step T of the stream ``base``; else toward zero)."""
    return decay(theta, c.dec_theta_sample, qth, c.leak_theta_sample, base, step, neuron_idx)


# -- learning -----------------------------------------------------------------------------------------


def trace_step(x: torch.Tensor, s: torch.Tensor, factor: float) -> torch.Tensor:
    """x <- 1 where s, else x * factor (the trace's decay over one step)."""
    return torch.where(s, torch.ones_like(x), x * factor)


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


@overload
def update_times(t: int, T: int, t_update: int) -> bool: ...
@overload
def update_times(t: torch.Tensor, T: int, t_update: IntOrTensor) -> torch.Tensor: ...
@overload
def update_times(t: IntOrTensor, T: int, t_update: torch.Tensor) -> torch.Tensor: ...
def update_times(t: IntOrTensor, T: int, t_update: IntOrTensor) -> Union[bool, torch.Tensor]:
    """tinySNN's update times: step t is one where t + 1 is a multiple of T_u, and the window's last
    step T - 1 (numba: in ``_run_one``). For ints, or per network with tensors of steps or periods."""
    return ((t + 1) % t_update == 0) | (t == T - 1)


def learning_rule(
    pop: Population,
    w: torch.Tensor,
    s_in: torch.Tensor,
    x_pre: torch.Tensor,
    s: torch.Tensor,
    x_post: torch.Tensor,
    counts: torch.Tensor,
    spiked: torch.Tensor,
    upd: Optional[torch.Tensor],
    depressed: Optional[Callable[[torch.Tensor], torch.Tensor]],
) -> torch.Tensor:
    """The variant's rule at one step (numba: in ``_run_one``): pair-wise STDP, SL-STDP, or tinySNN's
    adaptive potentiation of the neurons that spiked since the last update time (``spiked`` or
    ``s``), in the networks where ``upd`` (P,) marks one (:func:`update_times`; tinySNN only).
    ``depressed`` re-quantizes the weights between pair-wise depression and potentiation (ITQ), as
    the numba kernel does."""
    prm = pop.params
    if pop.variant is Variant.DIEHL_COOK:
        w = pair_depression(w, s_in, x_post, prm["nu_pre"])
        if depressed is not None:
            w = depressed(w)
        return pair_potentiation(w, x_pre, s, prm["nu_post"], prm["w_max"])
    if pop.variant is Variant.SL_STDP:
        return sl_stdp(w, x_pre, s, prm["eta_p"], prm["eta_d"], prm["x_th"], prm["w_max"])
    assert upd is not None, "tinySNN learns at its update times"
    k = adaptive_factor(counts.max(dim=1).values, prm["n_th"])
    k = torch.where(upd, k, torch.zeros_like(k))
    return adaptive_potentiation(w, x_pre, (spiked | s) & upd[:, None], k, prm["eta_post"], prm["w_max"])


# -- normalization ------------------------------------------------------------------------------------


def normalize(
    pop: Population,
    w: torch.Tensor,
    counts: torch.Tensor,
    qw: Optional[Rows],
    base: Optional[torch.Tensor],
    step: torch.Tensor,
    synapse_idx: Optional[torch.Tensor],
    neuron_idx: torch.Tensor,
) -> torch.Tensor:
    """Column normalization after the sample (:func:`scale_columns`), clipped to [0, w_max]; ITQ
    quantizes by each network's rule: ``plain`` rounds every scaled weight, ``settled`` first leaves
    settled silent columns alone (:func:`settled_columns`), ``sum``, ``proportional`` and ``apportion``
    with truncation or nearest keep the column total (:func:`normalize_sum_preserving`; ``apportion``
    draws column j's u from element j of the W_NORM stream ``base``). ``counts`` (P, N) are the
    sample's spikes; ``step`` is the end-of-sample step T.
    """
    if qw is None:
        return _scaled_and_clipped(pop, w, None)
    prm = pop.params
    rule = prm["norm_rule"]
    mode = qw.modes
    deterministic = (mode == TRUNCATE) | (mode == NEAREST)
    keep = None
    if bool((rule == NORM_SETTLED).any()):
        settled = settled_columns(w, prm["norm_total"], counts > 0, qw.rows, mode)
        keep = settled & (deterministic & (rule == NORM_SETTLED))[:, None]
    scaled = quantize(_scaled_and_clipped(pop, w, keep), qw, base, step, synapse_idx)
    keeps_sum = deterministic & ((rule == NORM_SUM) | (rule == NORM_PROPORTIONAL) | (rule == NORM_APPORTION))
    if bool(keeps_sum.any()):
        u = None
        if bool((keeps_sum & (rule == NORM_APPORTION)).any()):
            assert base is not None
            key = S.step_key(base[:, :1], step)  # (P, 1): a learning window holds one sample
            u = S.uniform_bits(key, neuron_idx[None, :]).to(torch.float64) * 2.0**-S.U_BITS
        summed = normalize_sum_preserving(w, prm["norm_total"], pop.mask, qw.rows, prm["w_max"], rule, u)
        scaled = torch.where(keeps_sum[:, None, None], summed, scaled)
    return scaled


def _scaled_and_clipped(pop: Population, w: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    """:func:`scale_columns`, clipped to [0, w_max]."""
    scaled = scale_columns(w, pop.params["norm_total"], pop.mask, keep)
    return torch.minimum(scaled.clamp_min(0.0), pop.params["w_max"][:, None, None])


def scale_columns(
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
    scale each column by ``total / sum`` as :func:`scale_columns`, clip to [0, w_max] and the format's
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
        rows: (P, 3) fixed-point rows of the weights [2^f, lo, hi].
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
    apportioning = rule == NORM_APPORTION
    if bool(apportioning.any()):
        assert u is not None, "apportion needs one draw per column"
        step = torch.where(apportioning[:, None, None], apportion(rem, can_step, missing, u), step)
    return (codes + step.to(w.dtype)) * inv


def apportion(
    rem: torch.Tensor, can_step: torch.Tensor, missing: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """The weights that get a step under ``apportion`` (see :func:`normalize_sum_preserving`): (P, n_in, N)
    bool."""
    r = torch.where(can_step, rem.double(), torch.zeros_like(rem, dtype=torch.float64))
    total_r = torch.cumsum(r, dim=1)[:, -1:]  # in input order, as the numba kernel adds
    m = torch.minimum(missing, total_r).clamp_min(0.0)
    pi = r * torch.where(total_r > 0, m / total_r, torch.zeros_like(total_r))
    points = torch.minimum(torch.ceil(torch.cumsum(pi, dim=1) - u[:, None, :]), missing)
    before = torch.cat([torch.zeros_like(points[:, :1]), points[:, :-1]], dim=1)
    return points > before


def settled_columns(
    w: torch.Tensor, total: torch.Tensor, fired: torch.Tensor, rows: torch.Tensor, modes: torch.Tensor
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
        rows: (P, 3) fixed-point rows of the weights [2^f, lo, hi].
        modes: (P,) rounding codes of the weights.
    """
    colsum = _column_sums(w)[:, 0, :].to(torch.float64 if w.device.type == "cpu" else torch.float32)
    tot = total.to(colsum.dtype)[:, None]
    slack = (w.shape[1] / rows[:, ROW_SCALE].to(colsum.dtype))[:, None]
    mode = modes[:, None]
    trunc = (mode == TRUNCATE) & (colsum <= tot) & (colsum > tot - slack)
    near = (mode == NEAREST) & ((colsum - tot).abs() <= slack / 2)
    return (trunc | near) & ~fired
