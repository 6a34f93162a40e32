"""The reference simulator in plain PyTorch: any device, one step at a time, no host sync.

This is the readable definition of what a presentation window computes; the numba kernels in
:mod:`tinysnn.sim.numba_kernels` compute the same thing faster on CPU and are tested against it on the
same input trains. On CUDA this path is the one used (dense products, no ``.item()`` or
``nonzero`` inside the time loop). The equations themselves are the functions of
:mod:`tinysnn.sim.equations`; this module strings them together over a window.

One step t of the excitatory layer (docs/method.md §1), for every network p and sample b:

    v   <- v_rest + (v - v_rest) exp(-dt/tau)
    I   <- s_in(t) @ W  -  inhibition from spikes at t - 1
    v   <- v + I            unless refractory;  then quantize v (ITQ, qWN)
    s   <- v > v_th + theta (existing neurons only);  v <- v_reset, refractory, theta += theta_plus
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .. import streams as S
from ..config import EncodingConfig, Variant
from ..encoding import make_generator, poisson
from ..network import Constants, Population, constants
from ..quant import NONE, STOCHASTIC
from ..quant.formats import NORM_APPORTION
from .equations import (
    Rows,
    adaptive_threshold,
    decay_theta,
    input_current,
    lateral_inhibition,
    learning_rule,
    lif_excitatory_step,
    lif_inhibitory_step,
    normalize,
    quantize,
    trace_step,
    update_times,
)


def _rows(pop: Population, target: str) -> Optional[Rows]:
    """The rows and rounding codes of ``target``, or None when every network keeps it in FP32."""
    q = pop.quant.get(target)
    modes = pop.rounding(target)
    if q is None or not bool((modes != NONE).any()):
        return None
    return Rows(q, modes, bool((modes == STOCHASTIC).any()))


class _Window(NamedTuple):
    """What stays fixed while one window's time loop runs: the population and its constants, the
    fixed-point rows, the stochastic-rounding stream bases and the index tensors."""

    pop: Population
    c: Constants
    mask: torch.Tensor  # (P, 1, N) bool: the neurons each network has
    qv: Optional[Rows]
    qth: Optional[Rows]
    qw: Optional[Rows]
    # stream code -> (P, B) int64 base keys; empty unless some network rounds stochastically
    bases: Dict[int, torch.Tensor]
    neuron_idx: torch.Tensor
    synapse_idx: Optional[torch.Tensor]
    w_lat: torch.Tensor  # (P, 1, 1) the lateral inhibition weight
    one: Optional[torch.Tensor]  # (P,) bool: the networks that keep one spike per step
    acc: torch.dtype  # accumulation dtype of the input currents
    learn: bool
    track: bool  # record the V_mem range seen
    T: int


class _State(NamedTuple):
    """What the time loop carries from step to step (None where the variant or mode has no such state)."""

    v: torch.Tensor
    ref: torch.Tensor
    s: torch.Tensor
    vi: Optional[torch.Tensor]
    refi: Optional[torch.Tensor]
    si: Optional[torch.Tensor]
    counts: torch.Tensor
    n_inh: torch.Tensor
    n_cols: torch.Tensor
    w: torch.Tensor
    theta: torch.Tensor
    thr: torch.Tensor
    x_pre: Optional[torch.Tensor]
    x_post: Optional[torch.Tensor]
    spiked: Optional[torch.Tensor]
    v_lo: torch.Tensor
    v_hi: torch.Tensor


@torch.no_grad()
def run_window(
    pop: Population,
    trains: torch.Tensor,
    enc: EncodingConfig,
    learn: bool,
    sample_seeds: Optional[Sequence[int]] = None,
    record: Optional[Dict[str, List[torch.Tensor]]] = None,
    vrange: Optional[torch.Tensor] = None,
    compiled: bool = False,
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
        compiled: run each step through ``torch.compile`` (:func:`compiled_step`: fused
            elementwise kernels, CUDA graphs on CUDA); eager where this torch cannot compile.

    Returns:
        Spike counts ``(P, B, N)`` (int32) of the excitatory neurons over the window, and
        statistics ``(P, B, 3)`` int64: input spikes, inhibitory spikes, weight columns updated.
    """
    T, B, n_in = trains.shape
    if learn and B != 1:
        raise ValueError("learning is online: present one sample at a time (B = 1)")
    dev = pop.device
    trains = trains.to(dev)
    win = _window(pop, enc, n_in, B, learn, vrange is not None, sample_seeds)
    st = _initial_state(win, B)
    # Decided on the host before the loop, so the loop never waits for the device: the steps at
    # which some network's weights can change (every step, but only at update times for tinySNN).
    changes = _weight_change_steps(pop, T) if learn else [False] * T
    steps = torch.arange(T + 1, dtype=torch.int64, device=dev)  # step t as a tensor: one graph for every t
    step = compiled_step(dev.type) if compiled else None
    for t in range(T):
        st, step = _run_step(step, win, st, trains[t], steps[t], changes[t])
        if record is not None:
            record.setdefault("v", []).append(st.v.clone())
            if learn:
                record.setdefault("w", []).append(st.w.clone())
    if step is not None and dev.type == "cuda":  # CUDA graphs overwrite their outputs on the next replay
        st = _State._make(None if x is None else x.clone() for x in st)
    if learn:
        pop.theta = decay_theta(
            win.c, st.theta, win.qth, win.bases.get(S.STREAM_THETA_DECAY), steps[T], win.neuron_idx
        )
        pop.weights = normalize(
            pop,
            st.w,
            st.counts[:, 0, :],
            win.qw,
            win.bases.get(S.STREAM_W_NORM),
            steps[T],
            win.synapse_idx,
            win.neuron_idx,
        )
    if win.track:
        assert vrange is not None
        vrange[:, 0] = torch.minimum(vrange[:, 0], st.v_lo.cpu())
        vrange[:, 1] = torch.maximum(vrange[:, 1], st.v_hi.cpu())
    n_in_spk = trains.sum(dim=(0, 2)).to(torch.int64)  # (B,)
    P = pop.n_networks
    stats = torch.stack(
        [
            n_in_spk[None, :].expand(P, B),
            st.n_inh,
            st.n_cols[:, None].expand(P, B) if learn else torch.zeros_like(st.n_inh),
        ],
        dim=2,
    )
    return st.counts, stats


def _window(
    pop: Population,
    enc: EncodingConfig,
    n_in: int,
    B: int,
    learn: bool,
    track: bool,
    sample_seeds: Optional[Sequence[int]],
) -> _Window:
    """The fixed part of a window (the few questions it asks the device are asked here, once)."""
    dev = pop.device
    qv, qth, qw = _rows(pop, "vmem"), _rows(pop, "vth"), _rows(pop, "weights")
    seeds = torch.tensor(list(sample_seeds) if sample_seeds is not None else range(B), dtype=torch.int64)
    codes = (
        S.STREAM_VMEM,
        S.STREAM_VMEM_INH,
        S.STREAM_VTH,
        S.STREAM_W_DEPRESS,
        S.STREAM_W_LEARN,
        S.STREAM_W_NORM,
        S.STREAM_VMEM_DECAY,
        S.STREAM_VMEM_INH_DECAY,
        S.STREAM_THETA_DECAY,
    )
    # apportion (normalization under truncation or nearest) draws from the W_NORM stream too
    apportion = learn and qw is not None and bool((pop.params["norm_rule"] == NORM_APPORTION).any())
    stochastic = apportion or any(q is not None and q.stochastic for q in (qv, qth, qw))
    bases = (
        {c: S.stream_base(seeds.to(dev)[None, :], pop.network_seeds[:, None], c) for c in codes}
        if stochastic
        else {}
    )
    neuron_idx = torch.arange(pop.n_max, device=dev)
    synapse_idx = None
    if qw is not None and qw.stochastic:
        synapse_idx = S.synapse_index(torch.arange(n_in, device=dev)[:, None], neuron_idx[None, :])
    prm = pop.params
    w_lat = (prm["w_inh_exc"] if pop.variant.has_inhibitory_layer else prm["w_inh"])[:, None, None]
    one = (prm["one_spike"] > 0) if bool((prm["one_spike"] > 0).any()) else None
    # Input currents are accumulated in float64 on CPU (rounded once to float32), as the numba
    # kernels do, so both give the same spikes; float32 on CUDA for speed.
    acc = torch.float64 if dev.type == "cpu" else torch.float32
    return _Window(
        pop,
        constants(pop, enc),
        pop.mask[:, None, :],
        qv,
        qth,
        qw,
        bases,
        neuron_idx,
        synapse_idx,
        w_lat,
        one,
        acc,
        learn,
        learn and track,
        int(enc.time_steps),
    )


def _initial_state(win: _Window, B: int) -> _State:
    """Every network at rest: no spikes, no refractory neurons, zero traces."""
    pop = win.pop
    dev, P, N = pop.device, pop.n_networks, pop.n_max
    ex, ih = pop.exc, pop.inh
    ref = torch.zeros((P, B, N), dtype=torch.int32, device=dev)
    s = torch.zeros((P, B, N), dtype=torch.bool, device=dev)
    layer = pop.variant.has_inhibitory_layer
    n_in = pop.weights.shape[1]
    return _State(
        v=torch.full((P, B, N), ex.v_rest, device=dev),
        ref=ref,
        s=s,
        vi=torch.full((P, B, N), ih.v_rest, device=dev) if layer else None,
        refi=torch.zeros_like(ref) if layer else None,
        si=torch.zeros_like(s) if layer else None,
        counts=torch.zeros((P, B, N), dtype=torch.int32, device=dev),
        n_inh=torch.zeros((P, B), dtype=torch.int64, device=dev),
        n_cols=torch.zeros((P,), dtype=torch.int64, device=dev),
        w=pop.weights,
        theta=pop.theta,
        thr=ex.v_th + pop.theta,
        x_pre=torch.zeros((n_in,), device=dev) if win.learn else None,
        x_post=torch.zeros((P, N), device=dev) if win.learn else None,
        spiked=torch.zeros((P, N), dtype=torch.bool, device=dev) if win.learn else None,
        v_lo=torch.full((P,), float("inf"), device=dev),
        v_hi=torch.full((P,), -float("inf"), device=dev),
    )


def _weight_change_steps(pop: Population, T: int) -> List[bool]:
    """For each step, whether some network's weights can change: every step for the pair-wise
    rules; for tinySNN only at the update times (every T_u steps and the window's last step),
    where between them its weights stay as they are (already on their grid under ITQ)."""
    if pop.variant is not Variant.TINYSNN:
        return [True] * T
    periods = sorted(set(int(p) for p in pop.t_update.tolist()))
    return [any(update_times(t, T, p) for p in periods) for t in range(T)]


def _run_step(
    step: Optional[Callable[..., _State]],
    win: _Window,
    st: _State,
    s_in: torch.Tensor,
    t: torch.Tensor,
    weights_change: bool,
) -> Tuple[_State, Optional[Callable[..., _State]]]:
    """One step, through the compiled function where there is one, and the function for the next
    step: a compilation that fails is said once and the steps run eagerly from then on."""
    if step is None:
        return _step(win, st, s_in, t, weights_change), None
    if _CUDA_GRAPHS_MARK is not None and win.pop.device.type == "cuda":
        _CUDA_GRAPHS_MARK()
    try:
        return step(win, st, s_in, t, weights_change), step
    except Exception as err:  # noqa: BLE001 - torch.compile reports a failed compile as any exception
        _give_up_compiling(err)
        return _step(win, st, s_in, t, weights_change), None


def _step(win: _Window, st: _State, s_in: torch.Tensor, t: torch.Tensor, weights_change: bool) -> _State:
    """One time step t (a 0-dim tensor) of every network and sample: the loop body of
    :func:`run_window`, each equation a call to :mod:`tinysnn.sim.equations`.
    ``weights_change`` (decided on the host) says whether some network's weights can change now."""
    pop, c = win.pop, win.c
    cur = input_current(s_in, st.w, win.acc)
    vi, refi, si, n_inh = st.vi, st.refi, st.si, st.n_inh
    if vi is not None:
        assert refi is not None and si is not None  # the inhibitory layer's state comes whole
        vi, refi, si_new = lif_inhibitory_step(
            pop,
            c,
            win.mask,
            vi,
            refi,
            st.s,
            win.qv,
            win.bases.get(S.STREAM_VMEM_INH),
            win.bases.get(S.STREAM_VMEM_INH_DECAY),
            t,
            win.neuron_idx,
        )
        n_inh = n_inh + si_new.sum(dim=2)
        cur = lateral_inhibition(cur, si, win.w_lat)  # inhibitory spikes of t - 1
        si = si_new
    else:
        cur = lateral_inhibition(cur, st.s, win.w_lat)  # excitatory spikes of t - 1
    v_top, v, ref, s, cross = lif_excitatory_step(
        pop,
        c,
        win.mask,
        st.v,
        st.ref,
        cur,
        st.thr,
        win.one,
        win.qv,
        win.bases.get(S.STREAM_VMEM),
        win.bases.get(S.STREAM_VMEM_DECAY),
        t,
        win.neuron_idx,
    )
    v_lo, v_hi = st.v_lo, st.v_hi
    if win.track:
        v_lo = torch.minimum(v_lo, v_top.masked_fill(~win.mask, float("inf")).flatten(1).amin(1))
        v_hi = torch.maximum(v_hi, v_top.masked_fill(~win.mask, -float("inf")).flatten(1).amax(1))
    st = st._replace(
        v=v,
        ref=ref,
        s=s,
        vi=vi,
        refi=refi,
        si=si,
        counts=st.counts + s.to(torch.int32),
        n_inh=n_inh,
        v_lo=v_lo,
        v_hi=v_hi,
    )
    return _learn(win, st, s_in[0], cross[:, 0, :], t, weights_change) if win.learn else st


def _learn(
    win: _Window, st: _State, s_in: torch.Tensor, cross: torch.Tensor, t: torch.Tensor, weights_change: bool
) -> _State:
    """Threshold adaptation, traces and the variant's learning rule after step t (B = 1)."""
    pop, qw = win.pop, win.qw
    assert st.x_pre is not None and st.x_post is not None and st.spiked is not None
    s0 = st.s[:, 0, :]
    theta = adaptive_threshold(pop, st.theta, cross, win.qth, win.bases.get(S.STREAM_VTH), t, win.neuron_idx)
    x_pre = trace_step(st.x_pre, s_in, win.c.dec_pre)
    x_post = trace_step(st.x_post, s0, win.c.dec_post)
    w, spiked = st.w, st.spiked
    # tinySNN learns and counts its updated columns at the update times only
    upd = update_times(t, win.T, pop.t_update) if pop.variant is Variant.TINYSNN else None
    if weights_change:
        depressed = None
        if qw is not None:
            depressed = partial(
                quantize, q=qw, base=win.bases.get(S.STREAM_W_DEPRESS), step=t, index=win.synapse_idx
            )
        w = learning_rule(pop, w, s_in, x_pre, s0, x_post, st.counts[:, 0, :], spiked, upd, depressed)
        if qw is not None:
            w = quantize(w, qw, win.bases.get(S.STREAM_W_LEARN), t, win.synapse_idx)
    if upd is not None:
        n_cols = st.n_cols + ((spiked | s0) & upd[:, None]).sum(dim=1)
        spiked = (spiked | s0) & ~upd[:, None]
    else:
        n_cols = st.n_cols + s0.sum(dim=1)
    return st._replace(
        w=w, theta=theta, thr=pop.exc.v_th + theta, x_pre=x_pre, x_post=x_post, spiked=spiked, n_cols=n_cols
    )


_CUDA_GRAPHS_MARK: Optional[Callable[[], None]] = getattr(
    getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None
)
_compiled: Dict[str, Optional[Callable[..., _State]]] = {}


def compiled_step(device_type: str) -> Optional[Callable[..., _State]]:
    """:func:`_step` through ``torch.compile``, made once per device type and process: fused
    elementwise kernels, and on CUDA ``mode="reduce-overhead"`` (CUDA graphs: one launch per step).
    None, said once on stderr, where this torch has no ``torch.compile`` (torch 1.13) or a
    compilation failed: the steps then run eagerly, with the same results."""
    if device_type not in _compiled:
        if not hasattr(torch, "compile"):
            _say(f"torch {torch.__version__} has no torch.compile: the torch backend runs uncompiled")
            _compiled[device_type] = None
        else:
            mode = "reduce-overhead" if device_type == "cuda" else None
            _compiled[device_type] = torch.compile(_step, mode=mode)
    return _compiled[device_type]


def _give_up_compiling(err: BaseException) -> None:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    _say(f"torch.compile failed ({type(err).__name__}: {first[:200]}); the torch backend runs uncompiled")
    for key in _compiled:
        _compiled[key] = None


def _say(message: str) -> None:
    print(f"tinysnn: {message}", file=sys.stderr, flush=True)


def train_sample(
    pop: Population,
    train: torch.Tensor,
    enc: EncodingConfig,
    sample_seed: int = 0,
    vrange: Optional[torch.Tensor] = None,
    compiled: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Learn from one sample's input train ``(T, n_in)``; counts ``(P, N)`` and stats (P, 1, 3)."""
    counts, stats = run_window(
        pop, train[:, None, :], enc, True, [sample_seed], vrange=vrange, compiled=compiled
    )
    return counts[:, 0, :], stats


def infer(
    pop: Population,
    trains: torch.Tensor,
    enc: EncodingConfig,
    sample_seeds: Optional[Sequence[int]] = None,
    compiled: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Counts ``(P, B, N)`` and stats ``(P, B, 3)`` for trains ``(T, B, n_in)`` without learning."""
    return run_window(pop, trains, enc, False, sample_seeds, compiled=compiled)


class TorchBackend:
    """Trains and runs a population on any device with :func:`run_window` (whole tensors);
    ``compiled`` runs each step through ``torch.compile`` (:func:`compiled_step`)."""

    def __init__(self, pop: Population, enc: EncodingConfig, compiled: bool = False) -> None:
        self.pop, self.enc, self.compiled = pop, enc, compiled
        self.name = "torch-compile" if compiled else "torch"

    def encode(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        """The dense bool train (T, n_in) of a sample drawn from ``seed`` (one uniform per input per step)."""
        return poisson(image.to(self.pop.device), self.enc, make_generator(seed, self.pop.device))

    def train_samples(
        self,
        images: torch.Tensor,
        trains: Optional[torch.Tensor],
        train_seeds: Sequence[int],
        learn_seeds: Sequence[int],
        vmem_range: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Learn from B samples in order: counts (P, B, N) and statistics (P, B, 3); sample b's train
        is drawn from ``train_seeds[b]`` unless dense ``trains`` (T, B, n_in) are given."""
        counts, stats = [], []
        for b, learn_seed in enumerate(learn_seeds):
            train = self.encode(images[b], train_seeds[b]) if trains is None else trains[:, b]
            c, st = train_sample(self.pop, train, self.enc, learn_seed, vmem_range, self.compiled)
            counts.append(c)
            stats.append(st)
        return torch.stack(counts, dim=1), torch.cat(stats, dim=1)

    def infer(
        self, images: torch.Tensor, trains: Optional[torch.Tensor], seeds: Sequence[int]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Counts (P, B, N) and statistics (P, B, 3) without learning; the batch's trains are drawn
        from ``seeds[0]`` unless dense ``trains`` (T, B, n_in) are given."""
        if trains is None:
            g = make_generator(seeds[0], self.pop.device)
            trains = poisson(images.to(self.pop.device), self.enc, g)
        return infer(self.pop, trains, self.enc, seeds, self.compiled)


__all__ = ["TorchBackend", "compiled_step", "infer", "run_window", "train_sample"]
