"""The integer runner: inference of an exported model with numpy alone, bit-exact with the simulator.

Given the same input spike trains, every output spike is the one the simulator's inference
(:mod:`tinysnn.sim.numba_kernels`) produces, for FP32, qW and qWN models and every rounding mode:

* The input current is the sum of the weights of the inputs that fire in the step. Quantized
  weights are summed as integer codes (exact in any order); FP32 weights in float64 in input order,
  as the simulator does, then rounded once to float32.
* Where V_mem is quantized (qWN) the neuron runs on integers alone: V_mem - v_rest as a code of
  its format, the leak as one decrement with the fixed-point multiplier of ``model.json``
  (``(|u| leak) >> 24``, rounded toward zero; under stochastic rounding up one step where the
  decay's own draw is below the remainder ``(|u| leak) mod 2^24``), the input added at the finer
  of the two grids and
  rounded back with the model's rounding mode (truncation: an arithmetic shift; nearest: add half,
  shift; stochastic: the counter-based draw of :mod:`tinysnn.streams`, compared as integers),
  saturated to the format, and compared with the integer threshold v_th + theta. This is the simulator's
  arithmetic exactly, because the simulator's float32 values all lie on these grids (formats up to
  16 fractional bits; :func:`exactness_problem` says when a model is too wide for that).
* Where V_mem is FP32 (FP32 and qW models) the runner keeps it in float32 and performs the
  simulator's float32 operations in its order.

The input trains can be the simulator's own: :func:`isi_trains` draws, in numpy, exactly the
trains of the numba backend's encoder (numpy's legacy Mersenne Twister seeded per sample,
Geometric inter-spike intervals), so :func:`trial_trains` gives back the trains a model's recorded
test accuracy was measured on (``model.json``'s ``test_trains``), and with them the recorded
accuracy. Trains of the torch backend come from a ``torch.Generator`` and are drawn again with
torch where it is installed (on the recorded device). :func:`encode` is a faster encoder with
the same distribution and other draws.

Label assignment is frozen in the model; a prediction is the class whose assigned neurons have
the highest mean spike count (all-activity), -1 when no assigned neuron fired.
"""

import collections
import math
from dataclasses import dataclass
from typing import Deque, List, Optional, Sequence, SupportsFloat, Tuple, Union

import numpy as np

from .. import streams as S
from ..config import Variant
from ..quant.formats import LEAK_BITS, Rounding
from .model import Model, ModelError, TestTrains

__all__ = [
    "FixedPlan",
    "Network",
    "encode",
    "exactness_problem",
    "fixed_plan",
    "predict",
    "isi_trains",
    "prepare",
    "run_trains",
    "runner_kind",
    "sample_seeds",
    "trial_trains",
]

DEFAULT_BATCH_SIZE = 256
"""Samples :func:`run_trains` steps together by default: enough to spread numpy's cost per call,
few enough for a board's memory (7-16 MB of temporaries for MNIST at 400 neurons, measured)."""
_LEAK_LOW = (1 << LEAK_BITS) - 1
Seeds = Union[Sequence[int], np.ndarray]
"""Per-sample seeds: a list of ints or :func:`sample_seeds`' int64 array."""


def _frac_bits_of(value: float, most: int = 24) -> Optional[int]:
    """Fewest fractional bits f with value 2^f an integer, None if more than ``most``."""
    for f in range(most + 1):
        scaled = value * 2.0**f
        if scaled == int(scaled):
            return f
    return None


@dataclass
class Network:
    """A model unpacked into the arrays the runner computes with."""

    model: Model
    baseline: bool
    w_frac: Optional[int]
    """Fractional bits of the weights, None for FP32 weights."""
    weights: np.ndarray
    """(n_in, N) the input weights as the input sums gather them: integer codes in the narrowest
    type that holds them all (uint8 for 8-bit codes), or the FP32 weights (float32, added in
    float64)."""
    code_range: Tuple[int, int]
    """The least and greatest weight code ((0, 0) for FP32 weights)."""
    w_lat: np.float32
    """Lateral inhibition (tinysnn) or inh -> exc weight (baselines), mV."""
    w_ei: np.float32
    vth: np.ndarray
    """(N,) float32 thresholds v_th + theta, mV, added in float32 as the simulator does."""
    v_th: np.float32
    """The base threshold v_th of the excitatory neurons (theta is stored about it), mV."""
    exc: Tuple[np.float32, np.float32, np.float32, int]
    """v_rest, v_reset, decay, refractory steps."""
    inh: Tuple[np.float32, np.float32, np.float32, np.float32, int]
    """v_rest, v_reset, v_th, decay, refractory steps (baselines)."""
    one_spike: bool
    rounding: str
    seed: int


def prepare(model: Model) -> Network:
    """The runner's arrays for ``model`` (checks that it can run bit-exactly)."""
    problem = exactness_problem(model)
    if problem:
        raise ModelError(problem)
    g = model.groups
    wf, tf = model.format_of("weights"), model.format_of("vth")
    ec, ic = g["exc_constants"], g.get("inh_constants")
    baseline = Variant(model.variant).has_inhibitory_layer
    theta = (
        g["exc_theta"].astype(np.float32)
        if tf is None
        else (g["exc_theta"] * 2.0**-tf.frac_bits).astype(np.float32)
    )
    v_th = np.float32(ec[2])
    codes = g["input_weights"]
    code_range = (0, 0) if wf is None or not codes.size else (int(codes.min()), int(codes.max()))
    return Network(
        model=model,
        baseline=baseline,
        w_frac=None if wf is None else wf.frac_bits,
        weights=codes.astype(np.float32 if wf is None else _narrowest_type(*code_range)),
        code_range=code_range,
        w_lat=np.float32(g["inh_to_exc_weight"][0] if baseline else g["lateral_inhibition"][0]),
        w_ei=np.float32(g["exc_to_inh_weight"][0]) if baseline else np.float32(0.0),
        vth=(v_th + theta).astype(np.float32),
        v_th=v_th,
        exc=(np.float32(ec[0]), np.float32(ec[1]), np.float32(ec[3]), int(ec[4])),
        inh=(np.float32(ic[0]), np.float32(ic[1]), np.float32(ic[2]), np.float32(ic[3]), int(ic[4]))
        if ic is not None
        else (np.float32(0), np.float32(0), np.float32(0), np.float32(0), 0),
        one_spike=bool(model.meta["one_spike"]),
        rounding=str(model.meta["rounding"]),
        seed=int(model.meta["seed"]),
    )


def exactness_problem(model: Model) -> str:
    """Why the integer runner could not reproduce the simulator's float32 arithmetic, or "".

    With V_mem quantized, every value the simulator holds in float32 must lie on the runner's
    grid and fit float32's 24-bit significand: the constants (rests, resets, w_inh, ...) must be
    multiples of a power of two, and V_mem's format at most 16 fractional bits.
    """
    vf = model.format_of("vmem")
    if vf is None:
        return ""
    g = model.groups
    consts = list(g["exc_constants"][:3]) + (
        list(g["inh_constants"][:3]) + [g["inh_to_exc_weight"][0], g["exc_to_inh_weight"][0]]
        if model.variant != "tinysnn"
        else [g["lateral_inhibition"][0]]
    )
    for c in consts:
        if _frac_bits_of(float(c), 16) is None:
            return f"constant {float(c)} mV is not a multiple of 2^-16: an integer-only qWN model needs dyadic constants"
    wf, tf = model.format_of("weights"), model.format_of("vth")
    widest = max(vf.frac_bits, wf.frac_bits if wf else 0, tf.frac_bits if tf else 0)
    if widest > 16 or vf.int_bits > 16:
        return f"formats with up to {widest} fractional bits are wider than the simulator's float32 holds exactly"
    if wf is None or tf is None:
        return "a model with quantized V_mem needs quantized weights and V_th (qWN)"
    return ""


def sample_seeds(seed: int, first_index: int, count: int, stream: int = S.STREAM_TEST) -> np.ndarray:
    """The simulator's per-sample seeds (they key stochastic rounding): test stream by default."""
    return np.array([S.mix_seed(seed, stream, first_index + b) for b in range(count)], dtype=np.int64)


def spike_probability(images: np.ndarray, model: Model) -> np.ndarray:
    """Per-step firing probability (B, n_in) float32 of checked images, as the simulator computes it:
    p = pixel x (max_rate x dt / 1000 / 255), in float32 (:func:`tinysnn.encoding.spike_probability`).

    Raises:
        ModelError: for images that are not (B, n_input) finite intensities in 0..255.
    """
    images = np.asarray(images)
    if images.ndim != 2 or images.shape[1] != model.n_input:
        raise ModelError(
            f"images of shape {images.shape} do not fit the model: expected (B, {model.n_input})"
        )
    if images.dtype.kind not in "uif" or (
        images.size and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 255)
    ):
        raise ModelError(
            "images must be finite pixel intensities in 0..255 (uint8), as the model was "
            "trained on: no nan, inf or negative values"
        )
    enc = model.encoding
    return images.astype(np.float32) * np.float32(enc.max_rate * enc.dt / 1000.0 / 255.0)


def encode(images: np.ndarray, model: Model, rng: np.random.Generator) -> np.ndarray:
    """Poisson spike trains (B, T, n_in) bool: p = pixel / 255 x max_rate x dt / 1000 per step.

    The same distribution as the simulator's encoders, not the same draws (:func:`isi_trains`
    draws those); vectorized, so faster.

    Raises:
        ModelError: for images that are not (B, n_input) finite intensities in 0..255.
    """
    p = spike_probability(images, model)
    T = model.encoding.time_steps
    return rng.random((p.shape[0], T, p.shape[1]), dtype=np.float32) < p[:, None, :]


_ISI_CHUNK = 4096  # uniforms drawn at a time: the same stream as one draw per call


def _isi_sample(prob: List[float], T: int, seed: int) -> Tuple[List[int], List[int]]:
    """(steps, inputs) of the spikes :func:`tinysnn.sim.numba_kernels.encode_isi` draws from ``seed``.

    numba seeds its Mersenne Twister as numpy's legacy ``RandomState(seed)`` does and turns two
    32-bit words into a double the same way, so ``random_sample`` gives its uniforms; the
    Geometric draws are numba's ``np.random.geometric`` written out (search below p = 1/3, else
    inversion with ``math.log``, the C library's log, which numba calls too).
    """
    rs = np.random.RandomState(seed)
    buf = rs.random_sample(_ISI_CHUNK).tolist()
    k, n = 0, len(buf)
    steps: List[int] = []
    inputs: List[int] = []
    log, ceil = math.log, math.ceil
    for i, p in enumerate(prob):
        if p <= 0.0:
            continue
        q = 1.0 - p
        t = -1
        if p >= S.GEOMETRIC_SEARCH:
            while True:
                x, total, prod = 1, p, p
                if k == n:
                    buf, k = rs.random_sample(_ISI_CHUNK).tolist(), 0
                u = buf[k]
                k += 1
                while u > total:
                    prod *= q
                    total += prod
                    x += 1
                t += x
                if t >= T:
                    break
                steps.append(t)
                inputs.append(i)
        else:
            log_q = log(q)
            while True:
                if k == n:
                    buf, k = rs.random_sample(_ISI_CHUNK).tolist(), 0
                t += ceil(log(1.0 - buf[k]) / log_q)
                k += 1
                if t >= T:
                    break
                steps.append(t)
                inputs.append(i)
    return steps, inputs


def isi_trains(images: np.ndarray, model: Model, seeds: Seeds) -> np.ndarray:
    """The numba simulator's input trains (B, T, n_in) bool: image b encoded from ``seeds[b]``.

    Bit for bit the trains of :func:`tinysnn.sim.numba_kernels.encode_isi` (seeds as
    :func:`sample_seeds` makes them), drawn with numpy alone.

    Raises:
        ModelError: for images that do not fit the model, or seeds outside 0..2^32 - 1.
    """
    p = spike_probability(images, model)
    if len(seeds) != p.shape[0] or any(not 0 <= int(s) < 2**32 for s in seeds):
        raise ModelError(
            f"{len(seeds)} seeds for {p.shape[0]} images: expected one seed in 0..2^32-1 per image"
        )
    T = model.encoding.time_steps
    trains = np.zeros((p.shape[0], T, p.shape[1]), dtype=bool)
    for b in range(p.shape[0]):
        steps, inputs = _isi_sample(p[b].astype(np.float64).tolist(), T, int(seeds[b]))
        trains[b, steps, inputs] = True
    return trains


def _torch_trains(images: np.ndarray, model: Model, seed: int, batch: int, device: str) -> np.ndarray:
    """The torch simulator's trains of the first len(images) samples of a batch of ``batch``, drawn
    from ``seed`` on ``device`` (a whole batch's uniforms come from one generator)."""
    p = spike_probability(images, model)
    try:
        import torch

        from ..encoding import make_generator, poisson
    except ImportError:
        raise ModelError(
            "the test trains were drawn by torch: install torch to draw them again, or "
            "pass --seed N for the numba encoder's trains"
        ) from None
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            "the test trains were drawn on cuda, and no CUDA device is here: run on one, or "
            "pass --seed N for the numba encoder's trains"
        )
    padded = np.zeros((batch, p.shape[1]), np.uint8)  # the uniforms depend on the batch's shape only
    padded[: len(images)] = np.asarray(images)
    trains = poisson(torch.from_numpy(padded).to(device), model.encoding, make_generator(seed, device))
    return trains[:, : len(images)].permute(1, 0, 2).cpu().numpy()


def trial_trains(model: Model, images: np.ndarray, first_index: int, source: TestTrains) -> np.ndarray:
    """The trains (B, T, n_in) the simulator drew for samples ``first_index``.. of ``source``'s split.

    With the recorded :attr:`Model.test_trains` they are the trains of the recorded accuracy.
    The ``isi`` encoder draws per sample (any batching); the ``torch`` encoder per batch of
    ``source.batch_size``, so ``first_index`` must start a batch and ``images`` lie within it.

    Raises:
        ModelError: for images that do not fit, or torch trains that cannot be drawn here.
    """
    if source.encoder == "isi":
        return isi_trains(images, model, sample_seeds(source.seed, first_index, len(images), source.stream))
    size = source.batch_size
    if first_index % size or len(images) > size:
        raise ModelError(f"torch trains come in batches of {size}: samples {first_index}.. do not start one")
    batch = min(size, max(source.samples - first_index, len(images)))
    seed = S.mix_seed(source.seed, source.stream, first_index)
    return _torch_trains(images, model, seed, batch, source.device)


def runner_kind(model: Model) -> str:
    """What arithmetic the runner does for ``model``, in words."""
    if model.format_of("vmem") is not None:
        return "numpy integer runner"
    if model.format_of("weights") is not None:
        return "numpy runner: integer weight sums, float32 V_mem"
    return "numpy runner: float32"


def run_trains(
    model: Model,
    trains: np.ndarray,
    seeds: Optional[Seeds] = None,
    net: Optional[Network] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Spike counts (B, N) int32 of the excitatory neurons for input trains (B, T, n_in) bool.

    Args:
        model: the model.
        trains: input spikes; T must be the model's presentation length.
        seeds: per-sample seeds of the stochastic-rounding streams (:func:`sample_seeds`); needed
            only by a model that rounds V_mem stochastically (default 0, 1, ...).
        net: :func:`prepare`'s result, to reuse across batches.
        batch_size: samples stepped together; the runner's temporaries grow with it (about
            batch_size x (3 STEP_BLOCK + 12) x N x 8 bytes at most), not with B.
    """
    net = net or prepare(model)
    trains = np.asarray(trains, dtype=bool)
    B, T, n_in = trains.shape
    if n_in != model.n_input or T != model.encoding.time_steps:
        raise ModelError(
            f"trains of shape {trains.shape} do not fit the model: expected (B, "
            f"{model.meta['encoding']['time_steps']}, {model.n_input})"
        )
    if batch_size < 1:
        raise ModelError(f"batch_size = {batch_size}: expected at least 1 sample")
    seeds_arr = np.arange(B, dtype=np.int64) if seeds is None else np.asarray(seeds, dtype=np.int64)
    fixed = model.format_of("vmem") is not None
    counts = np.zeros((B, model.n_neurons), np.int32)
    for a in range(0, B, batch_size):
        chunk = trains[a : a + batch_size]
        counts[a : a + batch_size] = (
            _run_fixed(net, chunk, seeds_arr[a : a + batch_size]) if fixed else _run_float(net, chunk)
        )
    return counts


STEP_BLOCK = 4
"""Time steps whose input sums are formed together (one pass over their input spikes): few, so
that the sums of a batch stay in the core's cache."""
_INTEGER_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64)


def _narrowest_type(lo: int, hi: int, at_least: type = np.uint8) -> type:
    """The narrowest integer type, as wide as ``at_least`` or wider, that holds lo..hi."""
    return next(
        t
        for t in _INTEGER_TYPES
        if np.can_cast(at_least, t) and np.iinfo(t).min <= lo and hi <= np.iinfo(t).max
    )


def _sum_type(net: Network, most: int) -> type:
    """The type to add up to ``most`` weight rows in: float64 for FP32 weights; for codes, the
    narrowest integer type that no such sum overflows (at least 16 bits; exact in int64, as
    n_in < 2^20 codes lie below 2^32)."""
    if net.w_frac is None:
        return np.float64
    lo, hi = net.code_range
    return _narrowest_type(most * min(lo, 0), most * max(hi, 0), np.uint16 if lo >= 0 else np.int16)


def _block_sums(net: Network, block: np.ndarray) -> np.ndarray:
    """The input sums (k, B, N) of the k steps of ``block`` (B, k, n_in) bool: per step and sample,
    the weight rows of the inputs that fire, added in input order from zero.

    The spikes are laid out in slots: slot j holds the j-th firing input of every (sample, step)
    with more than j of them, these ordered by decreasing spike count, so that a slot adds its rows
    to a prefix of the sums: one row gather and one add per slot, about as many element operations
    as there are synaptic events. Codes are added in the narrowest exact integer type
    (:func:`_sum_type`); FP32 weights in float64 row after row in input order, the simulator's
    float64 numbers exactly, rounded to float32 by the caller.
    """
    B, k, n_in = block.shape
    groups = B * k  # group g = b k + t
    group, inputs = np.divmod(np.flatnonzero(block), n_in)
    count = np.bincount(group, minlength=groups)
    order = np.argsort(-count, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(groups)
    most = int(count[order[0]])
    in_slot = groups - np.cumsum(np.bincount(count, minlength=most + 1))[:most]  # groups with > j spikes
    slot_start = np.zeros(most, np.int64)
    slot_start[1:] = np.cumsum(in_slot)[:-1]
    position = np.arange(group.size) - (np.cumsum(count) - count)[group]  # j: the j-th spike of its group
    rows = np.empty_like(inputs)
    rows[slot_start[position] + rank[group]] = inputs
    w = net.weights
    sums = np.zeros((groups, w.shape[1]), _sum_type(net, most))
    gathered = np.empty(sums.shape, w.dtype)
    at = 0
    for m in in_slot.tolist():
        np.take(w, rows[at : at + m], axis=0, out=gathered[:m], mode="clip")  # clip: not buffered
        np.add(sums[:m], gathered[:m], out=sums[:m])
        at += m
    return sums.take(rank.reshape(B, k).T.ravel(), axis=0).reshape(k, B, -1)


def _step_blocks(trains: np.ndarray) -> List[slice]:
    """The blocks of :data:`STEP_BLOCK` steps of ``trains`` (B, T, n_in)."""
    T = trains.shape[1]
    return [slice(t0, min(t0 + STEP_BLOCK, T)) for t0 in range(0, T, STEP_BLOCK)]


_NONE = np.zeros(0, np.int64)


class _Closed:
    """The flat indices (b N + j) of the neurons in their refractory period: those that crossed
    in the last ``steps`` steps, whose V_mem takes no input."""

    def __init__(self, steps: int) -> None:
        self.recent: Deque[np.ndarray] = collections.deque(maxlen=steps)

    def indices(self) -> np.ndarray:
        return np.concatenate(self.recent) if self.recent else _NONE

    def add(self, crossed: np.ndarray) -> None:
        self.recent.append(crossed)


def _winners(crossed: np.ndarray, over: np.ndarray, N: int) -> np.ndarray:
    """The neurons (flat indices) that spike under the one-spike rule: per sample, of those
    that crossed, the largest overshoot ``over``, the lowest index on ties."""
    sample = crossed // N
    order = np.lexsort((-over, sample))  # stable: ascending index among equal overshoots
    first = np.ones(order.size, bool)
    first[1:] = sample[order[1:]] != sample[order[:-1]]
    return crossed[order[first]]


def _lateral_rows(spikes: np.ndarray, N: int) -> Tuple[np.ndarray, np.ndarray]:
    """(samples, counts): the samples with spikes in ``spikes`` (flat indices) and, per such sample
    and neuron, the spikes at the other neurons (len(samples), N) int64."""
    sample, col = np.divmod(spikes, N)
    rows, where, n = np.unique(sample, return_inverse=True, return_counts=True)
    other = np.repeat(n[:, None], N, axis=1).astype(np.int64)
    other[where, col] -= 1  # each (sample, neuron) spikes once
    return rows, other


def _spike_counts(spikes: List[np.ndarray], B: int, N: int) -> np.ndarray:
    """Spike counts (B, N) int32 from the flat indices of every step's spikes."""
    flat = np.concatenate(spikes) if spikes else _NONE
    return np.bincount(flat, minlength=B * N).astype(np.int32).reshape(B, N)


def _run_float(net: Network, trains: np.ndarray) -> np.ndarray:
    """FP32 V_mem: the simulator's float32 operations, vectorized over samples and neurons; the
    inhibition, refractory periods, resets and spikes touch only the neurons concerned."""
    B = trains.shape[0]
    N = net.weights.shape[1]
    vr, vres, dec, refr = net.exc
    vr_i, vres_i, vth_i, dec_i, refr_i = net.inh
    f32 = np.float32
    scale = f32(1.0 if net.w_frac is None else 2.0**-net.w_frac)
    thr = net.vth
    v = np.full((B, N), vr, f32)
    vi = np.full((B, N), vr_i, f32)
    d = np.empty((B, N), f32)
    currents = np.empty((STEP_BLOCK, B, N), f32)
    cross = np.empty((B, N), bool)
    closed, closed_i = _Closed(refr), _Closed(refr_i)
    s = si = _NONE  # flat indices of the last step's excitatory and inhibitory spikes
    spikes: List[np.ndarray] = []
    for steps in _step_blocks(trains):
        sums = _block_sums(net, trains[:, steps])
        block = currents[: len(sums)]
        np.copyto(block, sums, casting="unsafe")  # rounded once to float32
        block *= scale  # code sums: exact (a power of two)
        for cur in block:
            if net.baseline:
                di = vr_i + (vi - vr_i) * dec_i
                xi = di.copy()
                xi.flat[s] += net.w_ei
                shut = closed_i.indices()
                xi.flat[shut] = di.flat[shut]
                si_new = np.flatnonzero(xi > vth_i)
                xi.flat[si_new] = vres_i
                closed_i.add(si_new)
                vi = xi
            lat = si if net.baseline else s
            if lat.size:
                rows, other = _lateral_rows(lat, N)
                cur[rows] -= net.w_lat * other.astype(f32)
            np.subtract(v, vr, out=d)
            d *= dec
            d += vr
            np.add(d, cur, out=v)
            shut = closed.indices()
            v.flat[shut] = d.flat[shut]
            np.greater(v, thr, out=cross)
            crossed = np.flatnonzero(cross)
            s = _winners(crossed, v.flat[crossed] - thr[crossed % N], N) if net.one_spike else crossed
            v.flat[crossed] = vres
            closed.add(crossed)
            spikes.append(s)
            if net.baseline:
                si = si_new
    return _spike_counts(spikes, B, N)


@dataclass(frozen=True)
class FixedPlan:
    """The integer constants of a qWN model: grids, shifts and constants as codes.

    V_mem is held as V_mem - v_rest at the V_mem grid (f_v); the input is summed at the working
    grid F (the finest of V_mem, the weights and the constants) and rounded back by ``shift`` =
    F - f_v bits; thresholds v_th + theta are compared in absolute mV at the grid G, the finest of
    V_mem's, theta's and v_th's.
    """

    fv: int
    wf: int
    fF: int
    fG: int
    shift: int
    lo: int
    hi: int
    k_reset: int
    w_lat_F: int
    w_ei_F: int
    vr_v: int
    vr_G: int
    inh_rest: int
    k_reset_i: int
    vth_i_G: int
    vth_G: int
    thr_G: np.ndarray
    leak_exc: int
    leak_inh: int


def fixed_plan(net: Network) -> FixedPlan:
    """The integer constants the runner (and the C reference) compute a qWN model with."""
    model = net.model
    vf, wf, tf = model.format_of("vmem"), model.format_of("weights"), model.format_of("vth")
    assert vf is not None and wf is not None and tf is not None
    vr, vres, _, _ = net.exc
    vr_i, vres_i, vth_i, _, _ = net.inh
    consts = [vr, vres, vr_i, vres_i, vth_i, net.w_lat, net.w_ei]
    fv = vf.frac_bits
    fF = max([fv, wf.frac_bits] + [_frac_bits_of(float(c), 16) or 0 for c in consts])
    fG = max(fv, tf.frac_bits, _frac_bits_of(float(net.v_th), 16) or 0)

    def at(value: SupportsFloat, f: int) -> int:
        return int(round(float(value) * 2**f))

    lo, hi = vf.code_range()
    return FixedPlan(
        fv=fv,
        wf=wf.frac_bits,
        fF=fF,
        fG=fG,
        shift=fF - fv,
        lo=lo,
        hi=hi,
        k_reset=at(vres - vr, fv),
        w_lat_F=at(net.w_lat, fF),
        w_ei_F=at(net.w_ei, fF),
        vr_v=at(vr, fv),
        vr_G=at(vr, fG),
        inh_rest=at(vr_i - vr, fv),
        k_reset_i=at(vres_i - vr, fv),
        vth_i_G=at(vth_i, fG),
        vth_G=at(net.v_th, fG),
        thr_G=at(net.v_th, fG) + (np.asarray(model.groups["exc_theta"], np.int64) << (fG - tf.frac_bits)),
        leak_exc=int(model.meta["leak"]["exc"]),
        leak_inh=int(model.meta["leak"]["inh"]),
    )


class _IntegerSteps:
    """The integer arithmetic of a qWN model's neurons (:func:`_run_fixed`): rounding, decay and
    stochastic rounding's draws, on codes of V_mem - v_rest at the V_mem grid."""

    def __init__(self, net: Network, seeds: np.ndarray, B: int) -> None:
        c = self.plan = fixed_plan(net)
        N = net.weights.shape[1]
        self.shift, self.lift = c.shift, c.fF - c.wf
        self.half = 1 << (c.shift - 1) if c.shift and net.rounding == Rounding.NEAREST else 0
        self.low = (1 << c.shift) - 1
        self.stochastic = net.rounding == Rounding.STOCHASTIC
        reach = max(
            abs(c.lo), abs(c.hi), abs(c.k_reset), abs(c.k_reset_i), abs(c.inh_rest)
        )  # |decayed V_mem|
        self.x_lo, self.x_hi = (
            c.lo - reach - 1,
            c.hi + reach + 1,
        )  # rounded inputs beyond these saturate alike
        fits32 = (
            2 * reach + 1 + max(abs(c.lo), abs(c.hi)) < 2**31
            and 2 * reach * max(c.leak_exc, c.leak_inh) < 2**31
        )
        self.work = np.int32 if fits32 else np.int64
        self.neuron_idx = np.arange(N, dtype=np.int64)
        net_seed = np.full(1, net.seed, dtype=np.int64)  # arrays: int64 products wrap without a warning
        self.bases = (
            {
                # codes as int64 arrays: code x constant passes 2^63 from code 7 on, and arrays wrap
                stream: S.stream_base(seeds[:, None], net_seed, np.full(1, stream, dtype=np.int64))
                for stream in (S.STREAM_VMEM, S.STREAM_VMEM_INH, S.STREAM_VMEM_DECAY, S.STREAM_VMEM_INH_DECAY)
            }
            if self.stochastic
            else {}
        )
        self.product = np.empty((B, N), self.work)
        self.sign = np.empty((B, N), self.work)

    def draws(self, stream: int, t: int, samples: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """Stochastic rounding's uniform bits of step t, (B, N) or of the rows ``samples``; None
        under deterministic rounding."""
        if not self.stochastic:
            return None
        return self.bits(stream, t, samples)

    def bits(self, stream: int, t: int, samples: Optional[np.ndarray] = None) -> np.ndarray:
        """:meth:`draws` of a model that rounds stochastically (the streams exist for it alone)."""
        base = self.bases[stream] if samples is None else self.bases[stream][samples]
        return S.uniform_bits(S.step_key(base, np.full(1, t, dtype=np.int64)), self.neuron_idx[None, :])

    def inputs(self, x: np.ndarray, u: Optional[np.ndarray]) -> np.ndarray:
        """Inputs ``x`` at the working grid rounded to the V_mem grid with the model's rounding (draws
        ``u`` where stochastic) and clipped to the reach of saturation, in place; in the working type."""
        if self.shift:
            rem = None if u is None else (x & self.low).astype(np.int64) << S.U_BITS
            if self.half:  # nearest: floor(x / 2^shift + 1/2)
                x += self.half
            x >>= self.shift  # floor
            if u is not None and rem is not None:  # stochastic: up one step where the draw < remainder
                x += (u << self.shift) < rem
        np.clip(x, self.x_lo, self.x_hi, out=x)
        return x.astype(self.work, copy=False)

    def decay(
        self, u: np.ndarray, leak: int, rest: int, bits: Optional[np.ndarray], out: np.ndarray
    ) -> np.ndarray:
        """V_mem codes ``u`` decayed toward ``rest`` into ``out``: (|u - rest| leak) >> 24 steps toward
        it (rounded toward zero; stochastic: up one step where ``bits`` lie below the remainder)."""
        p, sign = self.product, self.sign
        if bits is None:  # p + (2^24 - 1 where p < 0), shifted: the quotient rounded toward zero
            np.multiply(u - rest if rest else u, leak, out=p)
            np.right_shift(p, 8 * p.itemsize - 1, out=sign)
            sign &= _LEAK_LOW
            p += sign
            p >>= LEAK_BITS
            return np.subtract(u, p, out=out)
        np.subtract(u, rest, out=p)
        np.sign(p, out=sign)
        np.abs(p, out=p)
        p *= leak
        step = (p >> LEAK_BITS) + (bits < (p & _LEAK_LOW))
        return np.subtract(u, sign * step, out=out, casting="unsafe")


def _run_fixed(net: Network, trains: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Quantized V_mem (qWN): integers alone. Codes are V_mem - v_rest at the V_mem grid.

    The input x at the working grid F is rounded back to the V_mem grid with V_mem's decayed code d:
    (d 2^shift + x) rounded = d + (x rounded), as d 2^shift lies on the coarse grid, and the draws
    of stochastic rounding compare with x's remainder alone. So a block's input sums are rounded
    together, and only the samples that the last step's spikes inhibit are rounded again. Rounded
    inputs beyond the reach of saturation are clipped to it (the same saturated V_mem), so that
    V_mem is stepped in int32 where its codes allow.
    """
    B = trains.shape[0]
    N = net.weights.shape[1]
    _, _, _, refr = net.exc
    _, _, _, _, refr_i = net.inh
    q = _IntegerSteps(net, seeds, B)
    c = q.plan
    dG = c.fG - c.fv
    thr_rel = c.thr_G - c.vr_G  # at the grid G: V_mem - v_rest crosses where its code exceeds it
    thr = np.clip(thr_rel >> dG, c.lo - 1, c.hi).astype(q.work)  # the same test at the V_mem grid
    thr_i = int(np.clip((c.vth_i_G >> dG) - c.vr_v, c.lo - 1, c.hi))
    u = np.zeros((B, N), q.work)
    x = np.empty((B, N), q.work)
    d = np.empty((B, N), q.work)
    ui = np.full((B, N), c.inh_rest, q.work)
    di = np.empty((B, N), q.work)
    cross = np.empty((B, N), bool)
    block_inputs = np.empty((STEP_BLOCK, B, N), q.work)
    closed, closed_i = _Closed(refr), _Closed(refr_i)
    s = si = _NONE
    spikes: List[np.ndarray] = []
    t = 0
    for steps in _step_blocks(trains):
        sums = _block_sums(net, trains[:, steps])
        if max(int(sums.max()), -int(sums.min())) << q.lift < 2**31 - q.half:
            raw = block_inputs[: len(sums)]
            np.copyto(raw, sums)
        else:
            raw = sums.astype(np.int64)
        if q.lift:
            raw <<= q.lift  # at the working grid
        u_in = np.stack([q.bits(S.STREAM_VMEM, t + j) for j in range(len(raw))]) if q.stochastic else None
        for j, cur in enumerate(q.inputs(raw, u_in)):
            if net.baseline:
                q.decay(ui, c.leak_inh, c.inh_rest, q.draws(S.STREAM_VMEM_INH_DECAY, t), out=di)
                np.copyto(ui, di)
                if s.size:
                    rows, cols = np.divmod(s, N)
                    u_s = q.draws(S.STREAM_VMEM_INH, t, rows)
                    ui.flat[s] += q.inputs(
                        np.full(s.size, c.w_ei_F), None if u_s is None else u_s[np.arange(s.size), cols]
                    )
                shut = closed_i.indices()
                ui.flat[shut] = di.flat[shut]
                np.clip(ui, c.lo, c.hi, out=ui)
                si_new = np.flatnonzero(ui > thr_i)
                ui.flat[si_new] = c.k_reset_i
                closed_i.add(si_new)
            lat = si if net.baseline else s
            if lat.size:  # the inhibited samples' inputs, rounded again
                rows, other = _lateral_rows(lat, N)
                x_F = (sums[j, rows].astype(np.int64) << q.lift) - c.w_lat_F * other
                cur[rows] = q.inputs(x_F, q.draws(S.STREAM_VMEM, t, rows))
            q.decay(u, c.leak_exc, 0, q.draws(S.STREAM_VMEM_DECAY, t), out=d)
            np.add(d, cur, out=x)
            shut = closed.indices()
            x.flat[shut] = d.flat[shut]
            np.clip(x, c.lo, c.hi, out=x)
            np.greater(x, thr, out=cross)
            crossed = np.flatnonzero(cross)
            if net.one_spike:
                over = (x.flat[crossed].astype(np.int64) << dG) - thr_rel[crossed % N]
                s = _winners(crossed, over, N)
            else:
                s = crossed
            x.flat[crossed] = c.k_reset
            closed.add(crossed)
            spikes.append(s)
            u, x = x, u
            if net.baseline:
                si = si_new
            t += 1
    return _spike_counts(spikes, B, N)


def predict(model: Model, counts: np.ndarray) -> np.ndarray:
    """All-activity vote: (B,) classes, -1 where no assigned neuron fired."""
    labels = model.labels
    member = (labels[None, :] == np.arange(model.n_classes)[:, None]).astype(np.float32)  # (C, N)
    n_members = np.maximum(member.sum(axis=1), np.float32(1.0))
    scores = (np.asarray(counts, np.float32) @ member.T) / n_members[None, :]
    best = np.argmax(scores, axis=1)
    return np.where(scores.max(axis=1) > 0, best, -1)
