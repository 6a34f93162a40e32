"""The reference simulator in plain PyTorch: any device, one step at a time, no host sync.

This is the readable definition of what a presentation window computes; the numba kernels in
:mod:`tinysnn.sim.numba_kernels` compute the same thing faster on CPU and are tested against it on the
same input trains. On CUDA this path is the one used (dense products, no ``.item()`` or
``nonzero`` inside the time loop).

One step t of the excitatory layer (docs/method.md §1), for every network p and sample b:

    v   <- v_rest + (v - v_rest) exp(-dt/tau)
    I   <- s_in(t) @ W  -  inhibition from spikes at t - 1
    v   <- v + I            unless refractory;  then quantize v (ITQ, qWN)
    s   <- v > v_th + theta (existing neurons only);  v <- v_reset, refractory, theta += theta_plus
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .. import streams as S
from ..config import EncodingConfig, Variant
from ..encoding import make_generator, poisson
from ..network import Constants, Population, constants
from ..quant import NEAREST, NONE, STOCHASTIC, TRUNCATE, decay_toward_zero, quantize_rows
from ..quant.formats import NORM_SETTLED, NORM_SUM, ROW_MODE, ROW_SCALE
from . import learning as L


class _Rows(NamedTuple):
    """A population's (P, 4) fixed-point rows and whether any network rounds stochastically
    (decided once per window on the host, so the time loop never waits for the device)."""

    rows: torch.Tensor
    stochastic: bool

    @property
    def active(self) -> torch.Tensor:
        """(P,) bool: the networks that quantize this parameter."""
        return self.rows[:, ROW_MODE] != NONE

    def scale(self, dims: int) -> torch.Tensor:
        """2^f per network, viewed (P, 1, ...) with ``dims`` dimensions in all."""
        return self.rows[:, ROW_SCALE].view((-1,) + (1,) * (dims - 1))


def _q(
    x: torch.Tensor, q: _Rows, base: Optional[torch.Tensor], step: int, index: Optional[torch.Tensor]
) -> torch.Tensor:
    """Fake-quantize with per-network rows; stochastic rounding draws element ``index`` of the
    streams ``base`` (P, B) at ``step`` (:mod:`tinysnn.streams`), only if some network needs them."""
    u = None
    if q.stochastic:
        key = S.step_key(base, torch.tensor(step, dtype=torch.int64))  # int64 products wrap
        key = key.view(tuple(key.shape) + (1,) * (x.dim() - key.dim()))
        u = S.uniform_bits(key, index).to(x.dtype) * 2.0**-S.U_BITS
    return quantize_rows(x, q.rows, u=u, any_stochastic=q.stochastic)


def _rows(pop: Population, target: str) -> Optional[_Rows]:
    """The rows of ``target``, or None when every network keeps it in FP32."""
    q = pop.quant.get(target)
    if q is None or not bool((q[:, ROW_MODE] != NONE).any()):
        return None
    return _Rows(q, bool((q[:, ROW_MODE] == STOCHASTIC).any()))


def _decay(u: torch.Tensor, decay: float, q: Optional[_Rows], leak: int) -> torch.Tensor:
    """u decayed toward 0: ``u * decay`` in FP32, one decrement rounded toward zero where the
    network quantizes the value (:func:`tinysnn.quant.rounding.decay_toward_zero`)."""
    plain = u * decay
    if q is None:
        return plain
    fixed = decay_toward_zero(u, q.scale(u.dim()), leak)
    return torch.where(q.active.view((-1,) + (1,) * (u.dim() - 1)), fixed, plain)


def run_window(
    pop: Population,
    trains: torch.Tensor,
    enc: EncodingConfig,
    learn: bool,
    sample_seeds: Optional[Sequence[int]] = None,
    record: Optional[Dict[str, List[torch.Tensor]]] = None,
    vrange: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Present one window of input spikes to every network of the population.

    Args:
        pop: the population; with ``learn`` its weights and thresholds are updated in place.
        trains: bool input spikes ``(T, B, n_in)`` shared by all networks (B must be 1 to learn).
        enc: the time step and presentation length.
        learn: apply the variant's learning rule, threshold adaptation and normalization.
        sample_seeds: the B samples' seeds, which with each network's own seed key the
            stochastic-rounding streams (:mod:`tinysnn.streams`); default 0, 1, ..., B - 1.
        vrange: (P, 2) running min/max of the excitatory V_mem, updated in place while learning.
        record: if given, the excitatory potentials after every step are appended to
            ``record["v"]`` (P, B, N) and, while learning, the weights to ``record["w"]``
            (for tests and inspection; slow).

    Returns:
        Spike counts ``(P, B, N)`` (int32) of the excitatory neurons over the window, and
        statistics ``(P, B, 3)`` int64: input spikes, inhibitory spikes, weight columns updated.
    """
    # Longer than the other functions on purpose: the window's state (potentials, refractory
    # counters, spikes, traces, thresholds, weights) lives in locals for the whole time loop, and each
    # equation is a call to a function named as its numba twin; splitting the loop further would
    # only pass that state back and forth.
    T, B, n_in = trains.shape
    if learn and B != 1:
        raise ValueError("learning is online: present one sample at a time (B = 1)")
    dev = pop.device
    trains = trains.to(dev)
    c = constants(pop, enc)
    P, N = pop.n_networks, pop.n_max
    mask = pop.mask[:, None, :]  # (P, 1, N)
    prm = pop.params
    qv, qth, qw = _rows(pop, "vmem"), _rows(pop, "vth"), _rows(pop, "weights")
    seeds = torch.tensor(list(sample_seeds) if sample_seeds is not None else range(B), dtype=torch.int64)
    # the stochastic-rounding streams, only where some network rounds stochastically (no work otherwise)
    stochastic = any(q is not None and q.stochastic for q in (qv, qth, qw))
    codes = (
        S.STREAM_VMEM,
        S.STREAM_VMEM_INH,
        S.STREAM_VTH,
        S.STREAM_W_DEPRESS,
        S.STREAM_W_LEARN,
        S.STREAM_W_NORM,
    )
    bases = (
        {c: S.stream_base(seeds.to(dev)[None, :], pop.network_seeds[:, None], c) for c in codes}
        if stochastic
        else {}
    )
    neuron_idx = torch.arange(N, device=dev)
    synapse_idx = None
    if qw is not None and qw.stochastic:
        synapse_idx = S.synapse_index(torch.arange(n_in, device=dev)[:, None], neuron_idx[None, :])
    ex, ih = pop.exc, pop.inh
    inhibitory_layer = pop.variant.has_inhibitory_layer
    w_lat = (prm["w_inh_exc"] if inhibitory_layer else prm["w_inh"])[:, None, None]
    one = (prm["one_spike"] > 0) if bool((prm["one_spike"] > 0).any()) else None
    # Input currents are accumulated in float64 on CPU (rounded once to float32), as the numba
    # kernels do, so both give the same spikes; float32 on CUDA for speed.
    acc = torch.float64 if dev.type == "cpu" else torch.float32

    v = torch.full((P, B, N), ex.v_rest, device=dev)
    ref = torch.zeros((P, B, N), dtype=torch.int32, device=dev)
    s = torch.zeros((P, B, N), dtype=torch.bool, device=dev)
    if inhibitory_layer:
        vi = torch.full((P, B, N), ih.v_rest, device=dev)
        refi = torch.zeros_like(ref)
        si = torch.zeros_like(s)
    counts = torch.zeros((P, B, N), dtype=torch.int32, device=dev)
    n_inh = torch.zeros((P, B), dtype=torch.int64, device=dev)
    n_cols = torch.zeros((P,), dtype=torch.int64, device=dev)
    w, theta = pop.weights, pop.theta
    if learn:
        x_pre = torch.zeros((n_in,), device=dev)
        x_post = torch.zeros((P, N), device=dev)
        spiked = torch.zeros((P, N), dtype=torch.bool, device=dev)
        t_upd = pop.t_update
    thr = pop.exc.v_th + theta
    track = learn and vrange is not None
    inf = torch.tensor(float("inf"), device=dev)
    v_lo, v_hi = torch.full((P,), float("inf"), device=dev), torch.full((P,), -float("inf"), device=dev)

    for t in range(T):
        s_in = trains[t]
        cur = torch.einsum("bi,pin->pbn", s_in.to(acc), w.to(acc)).to(torch.float32)
        if inhibitory_layer:
            vi, refi, si_new = _lif_inhibitory_step(
                pop, c, mask, vi, refi, s, qv, bases.get(S.STREAM_VMEM_INH), t, neuron_idx
            )
            n_inh = n_inh + si_new.sum(dim=2)
            cur = _lateral_inhibition(cur, si, w_lat)  # inhibitory spikes of t - 1
        else:
            cur = _lateral_inhibition(cur, s, w_lat)  # excitatory spikes of t - 1
        v_top, v, ref, s, cross = _lif_excitatory_step(
            pop, c, mask, v, ref, cur, thr, one, qv, bases.get(S.STREAM_VMEM), t, neuron_idx
        )
        if track:
            v_lo = torch.minimum(v_lo, torch.where(mask, v_top, inf).flatten(1).amin(1))
            v_hi = torch.maximum(v_hi, torch.where(mask, v_top, -inf).flatten(1).amax(1))
        counts = counts + s.to(torch.int32)
        if record is not None:
            record.setdefault("v", []).append(v.clone())
        if inhibitory_layer:
            si = si_new
        if learn:
            s0 = s[:, 0, :]
            theta = _adaptive_threshold(
                pop, theta, cross[:, 0, :], qth, bases.get(S.STREAM_VTH), t, neuron_idx
            )
            thr = pop.exc.v_th + theta
            x_pre = L.trace_step(x_pre, s_in[0], c.dec_pre)
            x_post = L.trace_step(x_post, s0, c.dec_post)
            depressed = None
            if qw is not None:
                depressed = partial(_q, q=qw, base=bases.get(S.STREAM_W_DEPRESS), step=t, index=synapse_idx)
            w = _learn_step(
                pop, w, s_in[0], x_pre, s0, x_post, counts[:, 0, :], spiked, t, T, t_upd, depressed
            )
            if pop.variant is Variant.TINYSNN:  # columns are updated at the update times only
                upd = ((t + 1) % t_upd == 0) | (t == T - 1)
                n_cols = n_cols + ((spiked | s0) & upd[:, None]).sum(dim=1)
                spiked = (spiked | s0) & ~upd[:, None]
            else:
                n_cols = n_cols + s0.sum(dim=1)
            if qw is not None:
                w = _q(w, qw, bases.get(S.STREAM_W_LEARN), t, synapse_idx)
            if record is not None:
                record.setdefault("w", []).append(w.clone())
    if learn:
        theta = _decay_theta(c, theta, qth)
        w = _normalize(pop, w, counts[:, 0, :], qw, bases.get(S.STREAM_W_NORM), T, synapse_idx)
        pop.weights, pop.theta = w, theta
    if track:
        assert vrange is not None
        vrange[:, 0] = torch.minimum(vrange[:, 0], v_lo.cpu())
        vrange[:, 1] = torch.maximum(vrange[:, 1], v_hi.cpu())
    n_in_spk = trains.sum(dim=(0, 2)).to(torch.int64)  # (B,)
    stats = torch.stack(
        [
            n_in_spk[None, :].expand(P, B),
            n_inh,
            n_cols[:, None].expand(P, B) if learn else torch.zeros_like(n_inh),
        ],
        dim=2,
    )
    return counts, stats


def _lif_inhibitory_step(
    pop: Population,
    c: Constants,
    mask: torch.Tensor,
    vi: torch.Tensor,
    refi: torch.Tensor,
    s: torch.Tensor,
    qv: Optional[_Rows],
    base: Optional[torch.Tensor],
    t: int,
    neuron_idx: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The baselines' inhibitory LIF layer: leak toward rest, add w_exc_inh for the excitatory
    spike of t - 1 unless refractory, quantize (qWN), fire above v_th, reset.

    Returns the new potentials, refractory counters and spikes.
    """
    ih = pop.inh
    vi = ih.v_rest + _decay(vi - ih.v_rest, c.dec_inh, qv, c.leak_inh)
    vi = torch.where(refi <= 0, vi + pop.params["w_exc_inh"][:, None, None] * s.to(torch.float32), vi)
    if qv is not None:
        vi = _q(vi, qv, base, t, neuron_idx)
    refi = refi - 1
    si = (vi > ih.v_th) & mask
    refi = torch.where(si, torch.full_like(refi, c.refrac_inh), refi)
    vi = torch.where(si, torch.full_like(vi, ih.v_reset), vi)
    return vi, refi, si


def _lateral_inhibition(cur: torch.Tensor, lat: torch.Tensor, w_lat: torch.Tensor) -> torch.Tensor:
    """Every spike of ``lat`` (inhibitory layer or excitatory layer at t - 1) takes ``w_lat`` from
    the input current of every other neuron."""
    nlat = lat.sum(dim=2, keepdim=True, dtype=torch.int32)
    return cur - w_lat * (nlat - lat.to(torch.int32)).to(torch.float32)


def _lif_excitatory_step(
    pop: Population,
    c: Constants,
    mask: torch.Tensor,
    v: torch.Tensor,
    ref: torch.Tensor,
    cur: torch.Tensor,
    thr: torch.Tensor,
    one: Optional[torch.Tensor],
    qv: Optional[_Rows],
    base: Optional[torch.Tensor],
    t: int,
    neuron_idx: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The excitatory LIF layer: leak toward rest, add the current ``cur`` unless refractory,
    quantize (qWN); neurons above v_th + theta cross, are reset and become refractory; all of them
    spike, or where ``one`` (P,) is set the largest overshoot only.

    Returns the potentials before the reset (for range analysis), the new potentials, refractory
    counters, spikes and crossings.
    """
    ex = pop.exc
    v = ex.v_rest + _decay(v - ex.v_rest, c.dec_exc, qv, c.leak_exc)
    v = torch.where(ref <= 0, v + cur, v)
    if qv is not None:
        v = _q(v, qv, base, t, neuron_idx)
    top = v
    ref = ref - 1
    cross = (v > thr[:, None, :]) & mask
    s = _one_spike(cross, v - thr[:, None, :], one) if one is not None else cross
    ref = torch.where(cross, torch.full_like(ref, c.refrac_exc), ref)
    v = torch.where(cross, torch.full_like(v, ex.v_reset), v)
    return top, v, ref, s, cross


def _adaptive_threshold(
    pop: Population,
    theta: torch.Tensor,
    cross: torch.Tensor,
    qth: Optional[_Rows],
    base: Optional[torch.Tensor],
    t: int,
    neuron_idx: torch.Tensor,
) -> torch.Tensor:
    """theta += theta_plus for every neuron that crossed (as BindsNET), with V_th = v_th + theta
    kept on its grid (qWN)."""
    theta = theta + pop.params["theta_plus"][:, None] * cross.to(torch.float32)
    if qth is not None:
        theta = _q(pop.exc.v_th + theta, qth, base, t, neuron_idx) - pop.exc.v_th
    return theta


def _decay_theta(c: Constants, theta: torch.Tensor, qth: Optional[_Rows]) -> torch.Tensor:
    """theta decays toward 0 over the sample's span: FP32 multiply, or one decrement rounded toward
    zero on V_th's grid."""
    return _decay(theta, c.dec_theta_sample, qth, c.leak_theta_sample)


def _normalize(
    pop: Population,
    w: torch.Tensor,
    counts: torch.Tensor,
    qw: Optional[_Rows],
    base: Optional[torch.Tensor],
    T: int,
    synapse_idx: Optional[torch.Tensor],
) -> torch.Tensor:
    """Column normalization after the sample (:func:`tinysnn.sim.learning.normalize`), clipped to
    [0, w_max]; ITQ quantizes by each network's rule: ``plain`` rounds every scaled weight,
    ``settled`` first leaves settled silent columns alone (:func:`tinysnn.sim.learning.settled_columns`),
    ``sum`` with truncation or nearest keeps the column total
    (:func:`tinysnn.sim.learning.normalize_sum_preserving`). ``counts`` (P, N) are the sample's spikes.
    """
    prm = pop.params
    rule = prm["norm_rule"]
    mode = qw.rows[:, ROW_MODE] if qw is not None else None
    deterministic = None if mode is None else (mode == TRUNCATE) | (mode == NEAREST)
    keep = None
    if deterministic is not None and bool((rule == NORM_SETTLED).any()):
        settled = L.settled_columns(w, prm["norm_total"], counts > 0, qw.rows)
        keep = settled & (deterministic & (rule == NORM_SETTLED))[:, None]
    scaled = L.normalize(w, prm["norm_total"], pop.mask, keep)
    scaled = torch.minimum(scaled.clamp_min(0.0), prm["w_max"][:, None, None])
    if qw is None:
        return scaled
    scaled = _q(scaled, qw, base, T, synapse_idx)
    keeps_sum = deterministic & (rule == NORM_SUM)
    if bool(keeps_sum.any()):
        summed = L.normalize_sum_preserving(w, prm["norm_total"], pop.mask, qw.rows, prm["w_max"])
        scaled = torch.where(keeps_sum[:, None, None], summed, scaled)
    return scaled


def _one_spike(cross: torch.Tensor, over: torch.Tensor, one: torch.Tensor) -> torch.Tensor:
    """Keep only the largest overshoot's spike (lowest index on ties) where ``one`` (P,) is set."""
    score = torch.where(cross, over, torch.full_like(over, -float("inf")))
    best = score.argmax(dim=-1, keepdim=True)
    win = torch.zeros_like(cross).scatter_(-1, best, True) & cross.any(dim=-1, keepdim=True)
    return torch.where(one[:, None, None], win, cross)


def _learn_step(
    pop: Population,
    w: torch.Tensor,
    s_in: torch.Tensor,
    x_pre: torch.Tensor,
    s: torch.Tensor,
    x_post: torch.Tensor,
    counts: torch.Tensor,
    spiked: torch.Tensor,
    t: int,
    T: int,
    t_upd: torch.Tensor,
    depressed: Optional[Callable[[torch.Tensor], torch.Tensor]],
) -> torch.Tensor:
    """The variant's rule at step t; ``depressed`` re-quantizes the weights between pair-wise
    depression and potentiation (ITQ), as the numba kernel does."""
    prm = pop.params
    if pop.variant is Variant.DIEHL_COOK:
        w = L.pair_depression(w, s_in, x_post, prm["nu_pre"])
        if depressed is not None:
            w = depressed(w)
        return L.pair_potentiation(w, x_pre, s, prm["nu_post"], prm["w_max"])
    if pop.variant is Variant.SL_STDP:
        return L.sl_stdp(w, x_pre, s, prm["eta_p"], prm["eta_d"], prm["x_th"], prm["w_max"])
    upd = ((t + 1) % t_upd == 0) | (t == T - 1)  # (P,)
    k = L.adaptive_factor(counts.max(dim=1).values, prm["n_th"])
    k = torch.where(upd, k, torch.zeros_like(k))
    return L.adaptive_potentiation(w, x_pre, (spiked | s) & upd[:, None], k, prm["eta_post"], prm["w_max"])


def train_sample(
    pop: Population,
    train: torch.Tensor,
    enc: EncodingConfig,
    sample_seed: int = 0,
    vrange: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Learn from one sample's input train ``(T, n_in)``; counts ``(P, N)`` and stats (P, 1, 3)."""
    counts, stats = run_window(pop, train[:, None, :], enc, True, [sample_seed], vrange=vrange)
    return counts[:, 0, :], stats


def infer(
    pop: Population, trains: torch.Tensor, enc: EncodingConfig, sample_seeds: Optional[Sequence[int]] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Counts ``(P, B, N)`` and stats ``(P, B, 3)`` for trains ``(T, B, n_in)`` without learning."""
    with torch.no_grad():
        return run_window(pop, trains, enc, False, sample_seeds)


class TorchBackend:
    """Trains and runs a population on any device with :func:`run_window` (whole tensors)."""

    name = "torch"

    def __init__(self, pop: Population, enc: EncodingConfig) -> None:
        self.pop, self.enc = pop, enc

    def encode(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        """The dense bool train (T, n_in) of a sample drawn from ``seed`` (one uniform per input per step)."""
        return poisson(image.to(self.pop.device), self.enc, make_generator(seed, self.pop.device))

    def train_sample(self, image: torch.Tensor, train: Optional[torch.Tensor], train_seed: int, learn_seed: int,
                     vmem_range: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Learn from one sample: counts (P, N) and statistics (P, 1, 3)."""
        if train is None:
            train = self.encode(image, train_seed)
        return train_sample(self.pop, train, self.enc, learn_seed, vmem_range)

    def infer(self, images: torch.Tensor, trains: Optional[torch.Tensor],
              seeds: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Counts (P, B, N) and statistics (P, B, 3) without learning; the batch's trains are drawn
        from ``seeds[0]`` unless dense ``trains`` (T, B, n_in) are given."""
        if trains is None:
            g = make_generator(seeds[0], self.pop.device)
            trains = poisson(images.to(self.pop.device), self.enc, g)
        return infer(self.pop, trains, self.enc, seeds)


__all__ = ["TorchBackend", "infer", "run_window", "train_sample"]
