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

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import streams as S
from ..config import Variant
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
"""Samples :func:`run_trains` steps together by default: large enough for fast matrix products,
small enough for a board's memory (about 60 MB of temporaries for MNIST at 400 neurons)."""
LEAK_BITS = 24  # tinysnn.quant.formats.LEAK_BITS (that module imports torch)
TRUNCATE, NEAREST, STOCHASTIC = "truncate", "nearest", "stochastic"
STREAM_TEST = 2  # tinysnn.sim.STREAM_TEST


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
    gemm_weights: np.ndarray
    """(n_in, N) the weights as the input sums' matrix product takes them: codes as float32 where
    any sum of them stays below 2^24 (exact), else as float64 (exact below 2^53); FP32 weights as
    float64."""
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
    exact_in_float32 = wf is not None and model.n_input * (2**wf.bits - 1) < 2**24
    return Network(
        model=model,
        baseline=baseline,
        w_frac=None if wf is None else wf.frac_bits,
        gemm_weights=g["input_weights"].astype(np.float32 if exact_in_float32 else np.float64),
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


def sample_seeds(seed: int, first_index: int, count: int, stream: int = STREAM_TEST) -> np.ndarray:
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
        raise ModelError("images must be finite pixel intensities in 0..255 (uint8), as the model was "
                         "trained on: no nan, inf or negative values")  # fmt: skip
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
_GEOMETRIC_SEARCH = 0.333333333333333333333333  # numba's (and numpy's) switch to the search algorithm


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
        if p >= _GEOMETRIC_SEARCH:
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


def isi_trains(images: np.ndarray, model: Model, seeds: Sequence[int]) -> np.ndarray:
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
        raise ModelError("the test trains were drawn by torch: install torch to draw them again, or "
                         "pass --seed N for the numba encoder's trains") from None  # fmt: skip
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("the test trains were drawn on cuda, and no CUDA device is here: run on one, or "
                         "pass --seed N for the numba encoder's trains")  # fmt: skip
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


def run_trains(model: Model, trains: np.ndarray, seeds: Optional[Sequence[int]] = None,
               net: Optional[Network] = None, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:  # fmt: skip
    """Spike counts (B, N) int32 of the excitatory neurons for input trains (B, T, n_in) bool.

    Args:
        model: the model.
        trains: input spikes; T must be the model's presentation length.
        seeds: per-sample seeds of the stochastic-rounding streams (:func:`sample_seeds`); needed
            only by a model that rounds V_mem stochastically (default 0, 1, ...).
        net: :func:`prepare`'s result, to reuse across batches.
        batch_size: samples stepped together; the runner's temporaries grow with it (about
            batch_size x (STEP_BLOCK x (n_in + 2 N) + 12 N) x 8 bytes), not with B.
    """
    net = net or prepare(model)
    trains = np.asarray(trains, dtype=bool)
    B, T, n_in = trains.shape
    if n_in != model.n_input or T != model.encoding.time_steps:
        raise ModelError(f"trains of shape {trains.shape} do not fit the model: expected (B, "
                         f"{model.meta['encoding']['time_steps']}, {model.n_input})")  # fmt: skip
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


STEP_BLOCK = 16
"""Time steps whose input currents one matrix product computes."""


def _input_sums(net: Network, trains: np.ndarray):  # type: ignore[no-untyped-def]
    """Per block of :data:`STEP_BLOCK` steps, the input currents (k, B, N) of its k steps: the sums
    of the weights of the inputs that fire, as the simulator forms them (a generator).

    The sums are one matrix product of the 0/1 spikes with the weights, over the inputs that fire
    at all in ``trains``. Weight codes give exact integer sums (float32 below 2^24, float64 below
    2^53: :attr:`Network.gemm_dtype`), returned as int64 codes (quantized V_mem) or float32 values
    (qW: code sum x 2^-f, exact). FP32 weights: :func:`_fp32_sums`.
    """
    B, T, _ = trains.shape
    used = np.flatnonzero(trains.any(axis=(0, 1)))
    w = net.gemm_weights[used]
    for t0 in range(0, T, STEP_BLOCK):
        x = np.ascontiguousarray(trains[:, t0 : t0 + STEP_BLOCK, used].transpose(1, 0, 2), dtype=w.dtype)
        k = x.shape[0]  # x: (k, B, n_used); one 2-D product, which numpy hands to BLAS
        sums = (x.reshape(k * B, -1) @ w).reshape(k, B, w.shape[1])
        if net.w_frac is None:
            yield _fp32_sums(sums, x, w)
        elif net.model.format_of("vmem") is not None:
            yield sums.astype(np.int64)
        else:
            yield (sums * w.dtype.type(2.0**-net.w_frac)).astype(np.float32)


def _undecided(sums: np.ndarray, abs_sums: np.ndarray, cur: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Where float64 sums of weights from ``w`` (n_terms, N), formed in two different orders, may
    round to different float32 values: (same shape as ``sums``) bool.

    ``cur`` is ``sums`` rounded to float32 and ``abs_sums`` bounds the sums of the terms'
    magnitudes. Every weight is a multiple of a grid 2^-q (float32 values: 24 bits below their
    leading one), so a sum whose ``abs_sums`` stays below 2^53 2^-q is exact in any order, and the
    two orders give the same float32 (ties too). Elsewhere a midpoint lies at least half the spacing
    below |c| away from c. Any order of m terms errs by at most gamma_(m-1) x that (gamma_k = k u / (1 - k u),
    u = 2^-53: the products are exact, the zeros add nothing), so the two orders lie within twice
    that of each other; where ``sums`` is farther than this from both midpoints beside ``cur``,
    both round to ``cur``.
    """
    nonzero = np.abs(w[w != 0])
    grid = 2.0 ** (int(np.frexp(nonzero)[1].min()) - 24) if nonzero.size else 1.0
    n_terms = w.shape[0]
    gamma = n_terms * 2.0**-53 / (1.0 - n_terms * 2.0**-53)
    distance = np.abs(sums - cur.astype(np.float64))  # exact (Sterbenz)
    size = np.abs(cur)
    spacing = (size - np.nextafter(size, np.float32(0.0))).astype(np.float64)  # below |c|: the smaller side
    margin = (
        spacing * (0.5 - 2.0**-30) - 2.0 * gamma * (1.0 + 2.0**-40) * abs_sums
    )  # 2^-30: this test's rounding
    return (distance > margin) & (abs_sums >= 2.0**53 * grid)


def _fp32_sums(sums: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The simulator's FP32 input currents from BLAS's float64 sums ``sums`` = x @ w: float32.

    The simulator adds the float64 weights of the firing inputs in index order and rounds once
    to float32; BLAS adds them in another order. Both give the same float32 except near a rounding
    midpoint (:func:`_undecided`): those entries, rare on trained weights, are summed again in
    index order.
    """
    abs_sums = sums if w.size == 0 or w.min() >= 0 else x @ np.abs(w)
    cur = sums.astype(np.float32)
    for k, b, j in zip(*np.nonzero(_undecided(sums, abs_sums, cur, w))):
        acc = 0.0  # a Python float: IEEE double, added in index order as the simulator does
        for i in np.flatnonzero(x[k, b]):
            acc += float(w[i, j])
        cur[k, b, j] = np.float32(acc)
    return cur


def _one_spike(cross: np.ndarray, over: np.ndarray) -> np.ndarray:
    """Only the largest overshoot (lowest index on ties) of each sample spikes."""
    score = np.where(cross, over, -np.inf if over.dtype.kind == "f" else np.iinfo(over.dtype).min)
    best = np.argmax(score, axis=1)
    win = np.zeros_like(cross)
    rows = np.flatnonzero(cross.any(axis=1))
    win[rows, best[rows]] = True
    return win


def _lateral(lat: np.ndarray) -> np.ndarray:
    """Per sample and neuron, the spikes of ``lat`` (B, N) at the other neurons."""
    return lat.sum(axis=1, keepdims=True, dtype=np.int64) - lat


def _run_float(net: Network, trains: np.ndarray) -> np.ndarray:
    """FP32 V_mem: the simulator's float32 operations, vectorized over samples and neurons."""
    B = trains.shape[0]
    N = net.gemm_weights.shape[1]
    vr, vres, dec, refr = net.exc
    vr_i, vres_i, vth_i, dec_i, refr_i = net.inh
    f32 = np.float32
    thr = net.vth[None, :]
    v = np.full((B, N), vr, f32)
    x = np.empty((B, N), f32)
    ref = np.zeros((B, N), np.int32)
    is_open = np.empty((B, N), bool)
    cross = np.empty((B, N), bool)
    s = np.zeros((B, N), bool)
    vi = np.full((B, N), vr_i, f32)
    refi = np.zeros((B, N), np.int32)
    si = np.zeros((B, N), bool)
    counts = np.zeros((B, N), np.int32)
    for block in _input_sums(net, trains):
        for cur in block:
            if net.baseline:
                xi = vr_i + (vi - vr_i) * dec_i
                xi = np.where(refi <= 0, xi + net.w_ei * s.astype(f32), xi)
                refi -= 1
                si_new = xi > vth_i
                refi[si_new] = refr_i
                vi = np.where(si_new, vres_i, xi).astype(f32)
                lat = si
            else:
                lat = s
            cur -= net.w_lat * _lateral(lat).astype(f32)
            np.subtract(v, vr, out=x)
            x *= dec
            x += vr
            np.less_equal(ref, 0, out=is_open)
            np.add(x, cur, out=x, where=is_open)
            ref -= 1
            np.greater(x, thr, out=cross)
            s = _one_spike(cross, x - thr) if net.one_spike else cross.copy()
            np.copyto(ref, refr, where=cross)
            np.copyto(x, vres, where=cross)
            v, x = x, v
            counts += s
            if net.baseline:
                si = si_new
    return counts


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

    def at(value: float, f: int) -> int:
        return int(round(float(value) * 2**f))

    lo, hi = vf.code_range()
    return FixedPlan(
        fv=fv, wf=wf.frac_bits, fF=fF, fG=fG, shift=fF - fv, lo=lo, hi=hi,
        k_reset=at(vres - vr, fv), w_lat_F=at(net.w_lat, fF), w_ei_F=at(net.w_ei, fF),
        vr_v=at(vr, fv), vr_G=at(vr, fG), inh_rest=at(vr_i - vr, fv), k_reset_i=at(vres_i - vr, fv),
        vth_i_G=at(vth_i, fG), vth_G=at(net.v_th, fG),
        thr_G=at(net.v_th, fG) + (np.asarray(model.groups["exc_theta"], np.int64) << (fG - tf.frac_bits)),
        leak_exc=int(model.meta["leak"]["exc"]), leak_inh=int(model.meta["leak"]["inh"]),
    )  # fmt: skip


def _run_fixed(net: Network, trains: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Quantized V_mem (qWN): integers alone. Codes are V_mem - v_rest at the V_mem grid."""
    B, T, _ = trains.shape
    N = net.gemm_weights.shape[1]
    _, _, _, refr = net.exc
    _, _, _, _, refr_i = net.inh
    c = fixed_plan(net)
    shift, thr_G = c.shift, c.thr_G[None, :]
    stochastic = net.rounding == STOCHASTIC
    if stochastic:
        net_seed = np.full(1, net.seed, dtype=np.int64)  # arrays: int64 products wrap without a warning
        base_e = S.stream_base(seeds[:, None], net_seed, S.STREAM_VMEM)
        base_i = S.stream_base(seeds[:, None], net_seed, S.STREAM_VMEM_INH)
        # codes as int64 arrays: code x constant passes 2^63 from code 7 on, and arrays wrap
        base_ed = S.stream_base(seeds[:, None], net_seed, np.full(1, S.STREAM_VMEM_DECAY, dtype=np.int64))
        base_id = S.stream_base(seeds[:, None], net_seed, np.full(1, S.STREAM_VMEM_INH_DECAY, dtype=np.int64))
        neuron_idx = np.arange(N, dtype=np.int64)[None, :]

    def decay(u: np.ndarray, leak: int, base: Optional[np.ndarray], t: int) -> np.ndarray:
        product = np.abs(u) * leak
        step = product >> LEAK_BITS
        if base is not None:  # stochastic rounding: up one step with probability remainder / 2^24
            draws = S.uniform_bits(S.step_key(base, np.full(1, t, dtype=np.int64)), neuron_idx)
            step = step + (draws < (product & ((1 << LEAK_BITS) - 1)))
        return np.where(u > 0, u - step, u + step)

    def round_back(x: np.ndarray, base: Optional[np.ndarray], t: int) -> np.ndarray:
        if shift:
            k = x >> shift  # floor
            rem = x - (k << shift)
            if net.rounding == NEAREST:
                k = k + (rem >= (1 << (shift - 1)))
            elif stochastic:
                u = S.uniform_bits(S.step_key(base, np.full(1, t, dtype=np.int64)), neuron_idx)
                k = k + ((u << shift) < (rem << S.U_BITS))
            x = k
        return np.clip(x, c.lo, c.hi)

    u = np.zeros((B, N), np.int64)
    ref = np.zeros((B, N), np.int32)
    s = np.zeros((B, N), bool)
    ui = np.full((B, N), c.inh_rest, np.int64)
    refi = np.zeros((B, N), np.int32)
    si = np.zeros((B, N), bool)
    counts = np.zeros((B, N), np.int32)
    thr_rel = thr_G - c.vr_G  # V_mem crosses where its code, at the grid G, exceeds V_th - v_rest
    t = 0
    for block in _input_sums(net, trains):
        block <<= c.fF - c.wf
        for cur in block:
            if net.baseline:
                x = (
                    decay(ui - c.inh_rest, c.leak_inh, base_id if stochastic else None, t) + c.inh_rest
                ) << shift
                x = np.where(refi <= 0, x + c.w_ei_F * s, x)
                x = round_back(x, base_i if stochastic else None, t)
                refi -= 1
                si_new = ((x + c.vr_v) << (c.fG - c.fv)) > c.vth_i_G
                np.copyto(refi, refr_i, where=si_new)
                ui = np.where(si_new, c.k_reset_i, x)
                lat = si
            else:
                lat = s
            cur -= c.w_lat_F * _lateral(lat)
            x = decay(u, c.leak_exc, base_ed if stochastic else None, t)
            x <<= shift
            np.add(x, cur, out=x, where=ref <= 0)
            x = round_back(x, base_e if stochastic else None, t)
            ref -= 1
            over = x << (c.fG - c.fv)
            over -= thr_rel
            cross = over > 0
            s = _one_spike(cross, over) if net.one_spike else cross
            np.copyto(ref, refr, where=cross)
            np.copyto(x, c.k_reset, where=cross)
            u = x
            counts += s
            if net.baseline:
                si = si_new
            t += 1
    return counts


def predict(model: Model, counts: np.ndarray) -> np.ndarray:
    """All-activity vote: (B,) classes, -1 where no assigned neuron fired."""
    labels = model.labels
    member = (labels[None, :] == np.arange(model.n_classes)[:, None]).astype(np.float32)  # (C, N)
    n_members = np.maximum(member.sum(axis=1), np.float32(1.0))
    scores = (np.asarray(counts, np.float32) @ member.T) / n_members[None, :]
    best = np.argmax(scores, axis=1)
    return np.where(scores.max(axis=1) > 0, best, -1)
