"""Fast CPU kernels (numba): the same window as :mod:`tinysnn.sim.torch_backend`, element by element.

What makes them fast (each measured by bench/throughput.py):

* Input current by gathering the weight rows of the inputs that fire in a step (about 13 of 784
  for MNIST) instead of a dense product.
* Poisson trains from inter-spike intervals: each input's gaps are Geometric(p), which is exactly
  the distribution of per-step Bernoulli(p) spikes, so a sample costs one random number per
  input spike instead of one per input per step. Each sample's train depends only on
  (seed, stream, sample index), never on P or on threads. The uniforms are numba's own, drawn a
  Mersenne Twister block at a time with their logs (half the encoder's time of one at a time).
* The baselines' inhibitory layer on a grid (qWN) steps only the neurons that are not resting at
  a fixed point: those whose excitatory partner fired, until they settle.
* The presynaptic trace is evaluated lazily from the time of the last input spike with a float32
  table built by repeated multiplication, which equals the step-by-step decay bit for bit.
* Weights change only in the rows of inputs that fired and the columns of neurons that spiked;
  only those entries are clipped and (ITQ) re-quantized (the rest are already on the grid).
* The P networks of a population run in parallel (prange), sharing one encoded train.
* Stochastic rounding draws counter-based uniforms (:mod:`tinysnn.streams`) only for the values
  it rounds, keyed by the sample, the network's own seed, the quantity, the step and the element,
  so the draws are those of the torch reference, which rounds whole tensors.

All arithmetic is float32 in the same order as the torch reference; sums of weights (input
current, column sums) are accumulated in index order, so they can differ from torch's in the
last bit. Tests compare spikes exactly and weights to a stated tolerance.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from .. import streams as S
from ..config import VARIANT_DIEHL_COOK, VARIANT_SL_STDP, variant_has_inhibitory_layer
from ..network import FLOAT_PARAMS, INT_PARAMS, QUANT_TARGETS, rounding_field
from ..quant import quantize_scalar
from ..quant.formats import (
    LEAK_BITS,
    NEAREST,
    NONE,
    NORM_APPORTION,
    NORM_PROPORTIONAL,
    NORM_SETTLED,
    NORM_SUM,
    ROW_HI,
    ROW_LO,
    ROW_SCALE,
    ROW_WIDTH,
    STOCHASTIC,
    TRUNCATE,
)

try:
    import numba
    from llvmlite import ir
    from numba import njit, prange
    from numba.core import cgutils, types
    from numba.extending import intrinsic, register_jitable

    for _f in (S.fmix64, S.stream_base, S.step_key, S.uniform_bits, S.synapse_index):
        register_jitable(_f)  # the kernels call the stream functions as they are written
    HAVE_NUMBA = True

    @intrinsic
    def _cycles(typingctx):
        """The CPU's time-stamp counter (``llvm.readcyclecounter``), for the phase profile."""

        def codegen(context, builder, signature, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter"
            )
            return builder.call(fn, [])

        return types.int64(), codegen

except ImportError:  # pragma: no cover - exercised only where numba is absent
    HAVE_NUMBA = False

    def njit(*args, **kwargs):  # type: ignore[no-redef]  # the stand-in where numba is absent
        def wrap(f):
            return f

        return wrap(args[0]) if args and callable(args[0]) else wrap

    prange = range  # type: ignore[misc]  # numba declares prange a class; without numba it is range

#: phases of a sample whose time-stamp counter ticks the kernels add up when given a profile array
#: of this length (bench/profile_kernels.py); an empty array (the default) clocks nothing
PHASES = ("encode", "input_current", "neuron_update", "inhibition", "learning", "normalization")
PH_ENCODE, PH_INPUT, PH_NEURON, PH_INHIBITION, PH_LEARN, PH_NORM = range(len(PHASES))
#: columns of the per-sample statistics (P, B, 3) the kernels write
STAT_INPUT_SPIKES, STAT_INH_SPIKES, STAT_COLUMNS_UPDATED = 0, 1, 2
# columns of the per-network float32 matrix fp (P, len(FLOAT_PARAMS)) and int64 matrix ip
# (P, len(INT_PARAMS)), looked up in the one layout tinysnn.network declares (PARAM_LAYOUT)
(
    C_THETA_PLUS, C_W_EI, C_W_IE, C_W_INH, C_W_MAX, C_NORM,
    C_NU_PRE, C_NU_POST, C_ETA_P, C_ETA_D, C_X_TH, C_ETA_POST, C_N_TH,
) = (FLOAT_PARAMS.index(name) for name in (
    "theta_plus", "w_exc_inh", "w_inh_exc", "w_inh", "w_max", "norm_total",
    "nu_pre", "nu_post", "eta_p", "eta_d", "x_th", "eta_post", "n_th",
))  # fmt: skip
I_ONE_SPIKE, I_NORM_RULE = (INT_PARAMS.index(name) for name in ("one_spike", "norm_rule"))
# the rounding codes of the quantized targets, beside their (P, ROW_WIDTH) float32 rows qw, qv, qth
I_ROUND_WEIGHTS, I_ROUND_VMEM, I_ROUND_VTH = (
    INT_PARAMS.index(rounding_field(target)) for target in QUANT_TARGETS
)
# columns of the float32 constants vector k (the leak multipliers are integers < 2^24: exact)
(
    K_VR_E,
    K_VRESET_E,
    K_VTH_E,
    K_DEC_E,
    K_VR_I,
    K_VRESET_I,
    K_VTH_I,
    K_DEC_I,
    K_DEC_POST,
    K_DEC_THETA,
    K_LEAK_E,
    K_LEAK_I,
    K_LEAK_THETA,
) = range(13)


# numba's Mersenne Twister (MT19937, as numpy's legacy RandomState): words per block, the twist's
# offset and masks; 312 uniforms of 53 bits per block, two words each
_MT_N, _MT_M = 624, 397
_MT_UPPER, _MT_LOWER, _MT_MATRIX_A = np.uint64(0x80000000), np.uint64(0x7FFFFFFF), np.uint64(0x9908B0DF)
_MT_WORD = np.uint64(0xFFFFFFFF)
_MT_UNIFORMS = _MT_N // 2


@njit(inline="always")
def _mt_seed(mt, seed):
    """``np.random.seed(seed)`` of numba into the state ``mt`` (624 uint32): the seed's low 32 bits
    through Knuth's initialization of the reference Mersenne Twister."""
    x = np.uint64(seed) & _MT_WORD
    for pos in range(_MT_N):
        mt[pos] = np.uint32(x)
        x = (np.uint64(1812433253) * (x ^ (x >> np.uint64(30))) + np.uint64(pos + 1)) & _MT_WORD


@njit(inline="always")
def _mt_mix(mt, i, j, k):
    """Word i of the next block from words i and j (its successor) and k (397 ahead)."""
    y = (np.uint64(mt[i]) & _MT_UPPER) | (np.uint64(mt[j]) & _MT_LOWER)
    return np.uint32(np.uint64(mt[k]) ^ (y >> np.uint64(1)) ^ ((y & np.uint64(1)) * _MT_MATRIX_A))


@njit(inline="always")
def _mt_temper(w):
    y = np.uint64(w)
    y ^= y >> np.uint64(11)
    y ^= (y << np.uint64(7)) & np.uint64(0x9D2C5680)
    y ^= (y << np.uint64(15)) & np.uint64(0xEFC60000)
    return (y ^ (y >> np.uint64(18))) & _MT_WORD


@njit
def _mt_block(mt, u, log1m):
    """The next block of numba's generator: twist the state ``mt`` and turn its 624 words into the
    312 uniforms ``u`` that 312 calls of ``np.random.random()`` return (two words each, 27 + 26
    bits, (a 2^26 + b) / 2^53), and ``log1m`` = log(1 - u) (the C library's log, as numba's).

    A whole block at a time, in loops with no call and no state outside the arrays: drawn one by
    one, each draw goes through numba's global generator state, which stores to memory the
    compiler must assume the encoder's own arrays may alias."""
    for i in range(_MT_N - _MT_M):
        mt[i] = _mt_mix(mt, i, i + 1, i + _MT_M)
    for i in range(_MT_N - _MT_M, _MT_N - 1):
        mt[i] = _mt_mix(mt, i, i + 1, i + _MT_M - _MT_N)
    mt[_MT_N - 1] = _mt_mix(mt, _MT_N - 1, 0, _MT_M - 1)
    for m in range(_MT_UNIFORMS):
        a = _mt_temper(mt[2 * m]) >> np.uint64(5)
        b = _mt_temper(mt[2 * m + 1]) >> np.uint64(6)
        u[m] = (np.float64(b) + np.float64(a) * 67108864.0) / 9007199254740992.0
    for m in range(_MT_UNIFORMS):
        log1m[m] = math.log(1.0 - u[m])


@njit
def _draw_events(prob, T, mt, u, log1m, k, i, t, ev_t, ev_i, m, cnt):
    """Draw the spikes of inputs i, i + 1, ... into the event list (ev_t, ev_i)[m:] and count them
    per step (``cnt[t + 1]``), input i's last spike being at step t (-1: none yet), uniform k of the
    block ``u`` / ``log1m`` next. Stops before a draw when the list is full; returns (k, i, t, m),
    i = n_in when every input is done.

    A function of its own so that its arrays are never reassigned: where the list grows, in the
    same loop, the loop ran about twice as slowly."""
    n_in, cap = prob.shape[0], ev_t.shape[0]
    while i < n_in:
        p = np.float64(prob[i])
        if p > 1.0:
            raise ValueError("geometric(): p outside of (0, 1]")
        log_q = math.log(1.0 - p) if p > 0.0 else 0.0
        while p > 0.0:
            if m == cap:
                return k, i, t, m
            if k == _MT_UNIFORMS:
                _mt_block(mt, u, log1m)
                k = 0
            if p >= S.GEOMETRIC_SEARCH:
                x = 1
                total = prod = p
                while u[k] > total:
                    prod *= 1.0 - p
                    total += prod
                    x += 1
                t += x
            else:
                t += math.ceil(log1m[k] / log_q)
            k += 1
            if t >= T:
                break
            ev_t[m] = t
            ev_i[m] = i
            m += 1
            cnt[t + 1] += 1
        i += 1
        t = -1
    return k, i, t, m


@njit(cache=True)
def encode_isi(prob, T, seed):
    """Poisson trains of one sample as CSR: step t fires inputs idx[ptr[t]:ptr[t+1]] (ascending).

    ``prob`` (n_in,) float32 holds each input's firing probability per step. Each input's spike
    times are drawn once, input by input, into an event list (:func:`_draw_events`), then sorted by
    step (a counting sort, which keeps the inputs of a step ascending). The gaps are numba's
    ``np.random.geometric(p)`` after ``np.random.seed(seed)``, draw for draw: the same uniforms
    (:func:`_mt_block`) and the same arithmetic (inversion, ceil(log(1 - u) / log(1 - p)), below
    p = 1/3; a search over the cumulative probabilities above).
    """
    n_in = prob.shape[0]
    cnt = np.zeros(T + 1, np.int64)
    expected = 0.0
    for i in range(n_in):
        expected += max(np.float64(prob[i]), 0.0)
    ev_t = np.empty(64 + int(1.25 * expected * T), np.int32)
    ev_i = np.empty(ev_t.shape[0], np.int32)
    mt = np.empty(_MT_N, np.uint32)
    _mt_seed(mt, seed)
    u = np.empty(_MT_UNIFORMS, np.float64)
    log1m = np.empty(_MT_UNIFORMS, np.float64)
    k, i, t, m = _MT_UNIFORMS, 0, -1, 0  # no uniform drawn yet
    while True:
        k, i, t, m = _draw_events(prob, T, mt, u, log1m, k, i, t, ev_t, ev_i, m, cnt)
        if i == n_in:
            break
        ev_t = np.concatenate((ev_t, np.empty(m, np.int32)))  # more spikes than expected: grow
        ev_i = np.concatenate((ev_i, np.empty(m, np.int32)))
    ptr = np.cumsum(cnt)
    fill = ptr[:-1].copy()
    idx = np.empty(m, np.int32)
    for e in range(m):
        t = ev_t[e]
        idx[fill[t]] = ev_i[e]
        fill[t] += 1
    return ptr, idx


@njit(cache=True)
def encode_batch(probs, T, seeds):
    """:func:`encode_isi` of B samples (``probs`` (B, n_in), ``seeds`` (B,)) in one call: sample b is
    ptrs[b], idxs[offs[b]:offs[b + 1]]."""
    B = probs.shape[0]
    ptrs = np.empty((B, T + 1), np.int64)
    offs = np.zeros(B + 1, np.int64)
    idxs = np.empty(max(1, B * 64), np.int32)
    for b in range(B):
        ptr, idx = encode_isi(probs[b], T, seeds[b])
        ptrs[b] = ptr
        m = idx.shape[0]
        while offs[b] + m > idxs.shape[0]:
            idxs = np.concatenate((idxs, np.empty(idxs.shape[0], np.int32)))
        idxs[offs[b] : offs[b] + m] = idx
        offs[b + 1] = offs[b] + m
    return ptrs, idxs[: offs[B]], offs


def dense_to_csr(train: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """CSR (ptr, idx) of a dense bool train (T, n_in) — for running given trains."""
    t_idx, i_idx = np.nonzero(train)
    T = train.shape[0]
    ptr = np.zeros(T + 1, np.int64)
    np.add.at(ptr, t_idx + 1, 1)
    return np.cumsum(ptr), i_idx.astype(np.int32)


_qs = njit(inline="always")(quantize_scalar)
_LEAK_MASK = (1 << LEAK_BITS) - 1  # the remainder of a decrement, compared with a 24-bit draw
_has_inhibitory_layer = njit(inline="always")(variant_has_inhibitory_layer)


@njit(inline="always")
def _lap(prof, phase, since):
    """With a profile array: add the ticks since ``since`` to ``prof[phase]`` (none for phase -1)
    and return the counter now. Without one (empty): nothing, 0."""
    if prof.shape[0] == 0:
        return np.int64(0)
    now: int = _cycles()  # type: ignore[call-arg]  # numba's stub keeps typingctx, which nopython calls drop
    if phase >= 0:
        prof[phase] += now - since
    return now


@njit
def cycle_counter():
    """The time-stamp counter :func:`_lap` reads, for calibrating it against a clock."""
    return _cycles()  # type: ignore[call-arg]  # as in _lap


@njit(inline="always")
def _uniform(key, index):
    """The stochastic-rounding draw of element ``index`` under ``key`` (:mod:`tinysnn.streams`)."""
    return np.float32(S.uniform_bits(key, index)) * np.float32(2.0**-S.U_BITS)


@njit(inline="always")
def _q(x, qrow, mode, key, index):
    """Fixed-point quantization of one float32 with qrow = [scale, lo, hi] and the rounding code
    ``mode`` (tinysnn.quant).

    Stochastic rounding draws element ``index`` of the stream ``key``."""
    if mode == NONE:
        return x
    u = _uniform(key, index) if mode == STOCHASTIC else np.float32(0.0)
    return np.float32(_qs(x, qrow[ROW_SCALE], qrow[ROW_LO], qrow[ROW_HI], mode, u))


@njit(inline="always")
def _fix_w(x, wmax, qrow, mode, key, index):
    """A weight clipped to [0, w_max] and quantized (every learning rule ends with it)."""
    return _q(min(max(x, np.float32(0.0)), wmax), qrow, mode, key, index)


@njit(inline="always")
def _decay_toward_zero(u, scale, leak, stochastic, key, index):
    """:func:`tinysnn.quant.rounding.decay_toward_zero` for one float32 on the grid 1/scale: the
    decrement rounded toward zero, or (``stochastic``) up one step with probability remainder /
    2^24, from draw ``index`` of ``key``."""
    product = np.int64(abs(u) * scale) * np.int64(leak)
    steps = product >> LEAK_BITS
    if stochastic and S.uniform_bits(key, index) < (product & _LEAK_MASK):
        steps += 1
    step = np.float32(steps) / scale
    return u - step if u > 0 else u + step


@njit(inline="always")
def _decay(u, decay, quantized, scale, leak, stochastic, key, index):
    """u decayed toward 0 (``equations.decay``): ``u * decay`` in FP32, one decrement of whole
    steps on the grid 1/scale where the value is ``quantized`` (rounded stochastically under
    stochastic rounding, else toward zero).

    The callers read ``scale`` from the row once, outside their loops (and pass ``quantized`` and
    ``stochastic``, from the rounding code): a read of the row inside a loop that stores to float32
    arrays is repeated every iteration (the row may alias them), which slowed the neuron loops
    measurably."""
    if quantized:
        return _decay_toward_zero(u, scale, leak, stochastic, key, index)
    return u * decay


# -- one time step -------------------------------------------------------------------------------
# The step functions are plain @njit functions: with a cold numba cache they compile about 18 %
# faster than the former single-function kernel, where inline="always" (numba inlining its IR)
# compiled about 10 % slower; making the per-step functions inline="always" measured no faster.


@njit
def _input_current(Wp, idx, a0, a1, n, acc, cur):
    """cur = s_in(t) @ W: the weight rows of the inputs idx[a0:a1] that fire, summed in float64
    in index order (:func:`_sum_rows`) and rounded once to float32."""
    _sum_rows(Wp, idx, a0, a1, n, acc)
    for j in range(n):
        cur[j] = np.float32(acc[j])


@njit
def _sum_rows(Wp, idx, a0, a1, n, acc):
    """acc[:n] = the sum of the rows idx[a0:a1] of ``Wp`` in float64, row after row in index order.

    Up to eight rows are added in one pass over the columns, each column's sum still taken row
    after row (the same float64 numbers): a pass loads and stores ``acc`` once for eight rows
    instead of once per row."""
    for j in range(n):
        acc[j] = 0.0
    kk = a0
    while kk + 8 <= a1:
        r0, r1, r2, r3 = Wp[idx[kk]], Wp[idx[kk + 1]], Wp[idx[kk + 2]], Wp[idx[kk + 3]]
        r4, r5, r6, r7 = Wp[idx[kk + 4]], Wp[idx[kk + 5]], Wp[idx[kk + 6]], Wp[idx[kk + 7]]
        for j in range(n):
            a = ((((acc[j] + r0[j]) + r1[j]) + r2[j]) + r3[j]) + r4[j]
            acc[j] = ((a + r5[j]) + r6[j]) + r7[j]
        kk += 8
    if kk + 4 <= a1:
        r0, r1, r2, r3 = Wp[idx[kk]], Wp[idx[kk + 1]], Wp[idx[kk + 2]], Wp[idx[kk + 3]]
        for j in range(n):
            acc[j] = (((acc[j] + r0[j]) + r1[j]) + r2[j]) + r3[j]
        kk += 4
    while kk < a1:
        r0 = Wp[idx[kk]]
        for j in range(n):
            acc[j] += r0[j]
        kk += 1


@njit
def _input_current_codes(C, idx, a0, a1, n, iacc, cur, inv):
    """:func:`_input_current` from the weights' integer codes ``C`` (int16, weight = code x ``inv``,
    ``inv`` = 2^-f): the same numbers, since every float64 partial sum of such weights is exact
    (|sum| < 784 x 2^15 codes), so the integer sum x 2^-f is the float64 sum, rounded once to
    float32. Integer sums may be grouped freely: four rows per pass, 2 bytes a weight."""
    for j in range(n):
        iacc[j] = 0
    kk = a0
    while kk + 4 <= a1:
        r0, r1, r2, r3 = C[idx[kk]], C[idx[kk + 1]], C[idx[kk + 2]], C[idx[kk + 3]]
        for j in range(n):
            iacc[j] += (np.int32(r0[j]) + np.int32(r1[j])) + (np.int32(r2[j]) + np.int32(r3[j]))
        kk += 4
    while kk < a1:
        r0 = C[idx[kk]]
        for j in range(n):
            iacc[j] += np.int32(r0[j])
        kk += 1
    for j in range(n):
        cur[j] = np.float32(np.float64(iacc[j]) * inv)


@njit
def _weight_codes(W, sizes, qw, modes):
    """The integer codes (P, n_in, n_max) int16 of networks whose weights all lie on their format's
    grid with codes below 2^15, and each network's 2^-f (float64), 0 for the others (FP32 weights,
    whose rounding code in ``modes`` is NONE, or weights off the grid: their inference sums the
    float32 weights)."""
    P, n_in, n_max = W.shape
    codes = np.zeros((P, n_in, n_max), np.int16)
    inv = np.zeros(P, np.float64)
    for p in range(P):
        scale = qw[p, ROW_SCALE]
        on_grid = modes[p] != NONE
        for i in range(n_in):
            for j in range(sizes[p]):
                y = W[p, i, j] * scale  # exact: a power of two
                on_grid = on_grid and y == np.floor(y) and abs(y) < np.float32(2.0**15)
                codes[p, i, j] = np.int16(y) if on_grid else 0
            if not on_grid:
                break
        if on_grid:
            inv[p] = 1.0 / np.float64(scale)
    return codes, inv


# How a layer's V_mem is leaked and quantized, chosen once per sample (:func:`_vmem_kind`): FP32;
# on the grid of a truncating or nearest format in arithmetic that vectorizes, int32 (8 lanes) or
# float64 (4 lanes) for the decrement; or element by element with the scalar functions (stochastic
# rounding, or formats too wide for either).
VMEM_FP32, VMEM_GRID32, VMEM_GRID, VMEM_SCALAR = 0, 1, 2, 3


@njit
def _vmem_kind(qv, mode, leak, v_rest, v_reset):
    """The V_mem arithmetic of a layer (``VMEM_*``) under the row ``qv`` and rounding code ``mode``.

    The decrement of :func:`_decay_toward_zero` is exact in int32 while code x leak < 2^31
    (``VMEM_GRID32``), in float64 while it is < 2^53 (``VMEM_GRID``); V_mem - v_rest is at most
    the largest of |lo - v_rest|, |hi - v_rest| and |v_reset - v_rest| (V_mem is quantized into
    [lo, hi], or v_reset, or v_rest)."""
    if mode == NONE:
        return VMEM_FP32
    if mode != TRUNCATE and mode != NEAREST:
        return VMEM_SCALAR
    vr = np.float64(v_rest)
    reach = max(
        abs(np.float64(qv[ROW_LO]) - vr), abs(np.float64(qv[ROW_HI]) - vr), abs(np.float64(v_reset) - vr)
    )
    product = (2.0 * reach * np.float64(qv[ROW_SCALE]) + 1.0) * leak
    return VMEM_GRID32 if product < 2.0**31 else VMEM_GRID if product < 2.0**53 else VMEM_SCALAR


@njit(inline="always")
def _decay_on_grid(u, scale, inv, leak):
    """:func:`_decay_toward_zero` without stochastic rounding, in float64 (``leak`` float64): the
    same numbers while code x leak < 2^53 (:func:`_vmem_kind`), and no int64 conversions, which
    AVX2 lacks, so the neuron loops vectorize."""
    product = np.floor(np.float64(abs(u) * scale)) * leak
    step = np.float32(np.floor(product * 2.0**-LEAK_BITS)) * inv  # = / scale: a power of two
    return u - step if u > 0 else u + step


@njit(inline="always")
def _decay_on_grid32(u, scale, inv, leak):
    """:func:`_decay_on_grid` in int32 (``leak`` int32): the same numbers while code x leak < 2^31."""
    product = np.int32(np.int32(abs(u) * scale) * leak)
    step = np.float32(np.int32(product >> LEAK_BITS)) * inv
    return u - step if u > 0 else u + step


@njit(inline="always")
def _quantize_on_grid(x, scale, inv, lo, hi, nearest):
    """``quantize_scalar`` under truncation or (``nearest``) round-to-nearest in float32: clamp,
    scale by 2^f (exact), floor, one up at a remainder >= 1/2, scale back (exact), saturate; the
    same numbers (as :func:`_scale_row_quantized`)."""
    y = min(max(x, lo), hi) * scale
    c = np.floor(y) + np.float32(0.0)  # + 0: the code is an integer, whose zero has no sign
    if nearest:
        c = c + (np.float32(1.0) if y - c >= np.float32(0.5) else np.float32(0.0))
    return min(max(c * inv, lo), hi)


@njit(inline="always")
def _vmem_step(
    kind, v, add, takes, vr, dec, scale, inv, lo, hi, nearest, leak, stochastic, key, key_decay, j
):
    """V_mem after one step: ``v`` leaked toward ``vr``, ``add`` added where ``takes`` (not
    refractory), quantized by the format (``scale``, ``lo``, ``hi``) with its rounding (``nearest``,
    ``stochastic``, else truncation) (``equations.lif_*_step``).
    ``kind`` is a constant at every call, so each call site compiles to the arithmetic of one kind.
    Scalars only: an array handed to an inlined function brings reference counting into the loop,
    which then does not vectorize. The rounding comes as the two flags, not as the int64 code: one
    more integer live in the scalar loop, beside the stream hashing, made the stochastic neuron
    loops about 10 % slower."""
    if kind == VMEM_FP32:
        x = vr + (v - vr) * dec
        return x + add if takes else x
    if kind == VMEM_GRID32 or kind == VMEM_GRID:
        if kind == VMEM_GRID32:
            x = vr + _decay_on_grid32(v - vr, scale, inv, np.int32(leak))
        else:
            x = vr + _decay_on_grid(v - vr, scale, inv, np.float64(leak))
        x = x + add if takes else x
        return _quantize_on_grid(x, scale, inv, lo, hi, nearest)
    x = vr + _decay(v - vr, dec, True, scale, leak, stochastic, key_decay, j)
    x = x + add if takes else x
    u = _uniform(key, j) if stochastic else np.float32(0.0)  # _q on a quantized row
    mode = STOCHASTIC if stochastic else NEAREST if nearest else TRUNCATE
    return np.float32(_qs(x, scale, lo, hi, mode, u))


@njit
def _rest_is_fixed(kind, qv, mode, vr, vth, dec, leak):
    """Whether a neuron at rest with no input stays at rest, exactly, without firing: then a layer
    needs no work for its neurons at rest (:func:`_lif_inhibitory_step`). FP32 leaves rest where it
    is (vr + 0 x decay); on a grid, rest must be a grid value inside the format's range (the leak's
    decrement of 0 is 0, and rounding a grid value draws nothing)."""
    if vr > vth:
        return False
    scale, lo, hi = qv[ROW_SCALE], qv[ROW_LO], qv[ROW_HI]
    if kind != VMEM_FP32 and not (lo <= vr <= hi and np.floor(vr * scale) == vr * scale):
        return False
    inv = np.float32(1.0) / max(scale, np.float32(1.0))
    x = _vmem_step(
        kind, vr, np.float32(0.0), True, vr, dec, scale, inv, lo, hi, mode == NEAREST, leak,
        mode == STOCHASTIC, np.int64(0), np.int64(0), 0,
    )  # fmt: skip
    return x == vr


@njit
def _lif_inhibitory_step(
    vi, refi, si, si_new, spk, nsp, s, active, listed, n_active, k, w_ei, qv, mode, key, key_decay,
    refr_i, kind, rest_fixed,
):  # fmt: skip
    """The baselines' inhibitory LIF layer (``equations.lif_inhibitory_step``): leak toward rest,
    add w_exc_inh for the excitatory spike of t - 1 unless refractory, quantize (qWN), fire above
    v_th, reset. Writes the spikes to ``si_new``; returns their number and the new ``n_active``.
    ``kind``: :func:`_vmem_kind`.

    FP32 steps every neuron: its V_mem comes back to a fixed point only some 160 steps after a
    spike (15 mV decaying to one float32 step), so most neurons that fired in a sample stay busy,
    and a vectorized pass over all of them is faster than a list.

    On a grid (qWN), event-driven: only the neurons listed in ``active[:n_active]`` (flagged in ``listed``) are
    stepped, and the partners of the excitatory spikes ``spk[:nsp]`` of t - 1 join them. A neuron
    leaves the list when a step without input left its V_mem as it was, it is not refractory and it
    was silent at t - 1 and t (``si``, ``si_new``): its V_mem is then a fixed point of the step (in
    FP32 often one float32 step above rest, where the decay rounds back up), so further steps
    would leave everything as it is, and the numbers are those of stepping every neuron (its
    refractory count, already <= 0, is read only as <= 0). Under stochastic rounding a step draws,
    so only rest itself is a fixed point, where ``rest_fixed`` (:func:`_rest_is_fixed`). The decay
    on a grid moves V_mem by whole steps, so a neuron reaches rest a few steps after its spike."""
    vr, vres, vth, dec, leak = k[K_VR_I], k[K_VRESET_I], k[K_VTH_I], k[K_DEC_I], np.int64(k[K_LEAK_I])
    stochastic, scale, lo, hi = mode == STOCHASTIC, qv[ROW_SCALE], qv[ROW_LO], qv[ROW_HI]
    inv, nearest = np.float32(1.0) / max(scale, np.float32(1.0)), mode == NEAREST  # FP32: scale 0
    if kind == VMEM_FP32:  # every neuron, in a loop that vectorizes (the list is not kept)
        for j in range(si_new.shape[0]):
            x = _vmem_step(
                VMEM_FP32, vi[j], w_ei * (np.float32(1.0) if s[j] else np.float32(0.0)), refi[j] <= 0, vr,
                dec, scale, inv, lo, hi, nearest, leak, stochastic, key, key_decay, j,
            )  # fmt: skip
            sp = x > vth
            refi[j] = refr_i if sp else refi[j] - 1
            vi[j] = vres if sp else x
            si_new[j] = sp
        fired = np.int32(0)  # counted apart: a count in the loop above held it to four lanes
        for j in range(si_new.shape[0]):
            fired += np.int32(si_new[j])
        return np.int64(fired), n_active
    for m in range(nsp):
        j = spk[m]
        if not listed[j]:
            listed[j] = True
            active[n_active] = j
            n_active += 1
    fired = 0
    kept = 0
    for q in range(n_active):
        j = active[q]
        v_old = vi[j]
        x = _vmem_step(
            kind, vi[j], w_ei * (np.float32(1.0) if s[j] else np.float32(0.0)), refi[j] <= 0, vr, dec,
            scale, inv, lo, hi, nearest, leak, stochastic, key, key_decay, j,
        )  # fmt: skip
        sp = x > vth
        refi[j] = refr_i if sp else refi[j] - 1
        vi[j] = vres if sp else x
        si_new[j] = sp
        fired += 1 if sp else 0
        settled = (x == vr and rest_fixed) if stochastic else x == v_old
        if settled and not s[j] and not sp and not si[j] and refi[j] <= 0:
            listed[j] = False
        else:
            active[kept] = j
            kept += 1
    return fired, kept


@njit
def _lateral_inhibition(cur, lat, nlat, n, w_lat):
    """Every spike of ``lat`` (inhibitory layer or excitatory layer at t - 1; ``nlat`` of them)
    takes ``w_lat`` from the input current of every other neuron (``equations.lateral_inhibition``)."""
    if nlat > 0:
        for j in range(n):
            cur[j] = cur[j] - w_lat * np.float32(nlat - (1 if lat[j] else 0))


@njit
def _lif_excitatory_step(
    v,
    ref,
    s,
    thr,
    cur,
    cnt,
    spk,
    cross,
    v_lo,
    v_hi,
    n,
    k,
    qv,
    mode,
    key,
    key_decay,
    refr_e,
    one_spike,
    kind,
    track_range,
):
    """The excitatory LIF layer (``equations.lif_excitatory_step``): leak toward rest, add the
    current unless refractory, quantize (qWN), cross above v_th + theta, reset and refractory.

    Every neuron that crosses is listed in ``cross``; the ones that spike (all of them, or with
    ``one_spike`` the largest overshoot, lowest index on ties) are set in ``s``, listed in ``spk``
    and counted in ``cnt``. Returns (number of spikes, number of crossings, running min and max of
    V_mem from ``v_lo``, ``v_hi``, updated only with ``track_range``). ``kind``: :func:`_vmem_kind`.

    The new V_mem of every neuron is computed first, in a branch-free loop that vectorizes, which
    marks the neurons that cross in ``s``; the few that cross are then handled in index order.
    The loop stores the marks rather than counting them: a count (int64) is a reduction that held
    the loop to four float32 lanes, and the neuron update took twice as long.
    """
    vr, vres, dec, leak = k[K_VR_E], k[K_VRESET_E], k[K_DEC_E], np.int64(k[K_LEAK_E])
    stochastic, scale, lo, hi = mode == STOCHASTIC, qv[ROW_SCALE], qv[ROW_LO], qv[ROW_HI]
    inv, nearest = np.float32(1.0) / max(scale, np.float32(1.0)), mode == NEAREST  # FP32: scale 0
    # one loop per kind, each the same branch-free body (a constant kind), so that each vectorizes
    if kind == VMEM_FP32:
        for j in range(n):
            x = _vmem_step(
                VMEM_FP32,
                v[j],
                cur[j],
                ref[j] <= 0,
                vr,
                dec,
                scale,
                inv,
                lo,
                hi,
                nearest,
                leak,
                stochastic,
                key,
                key_decay,
                j,
            )
            v[j] = x
            ref[j] -= 1
            s[j] = x > thr[j]
    elif kind == VMEM_GRID32:
        for j in range(n):
            x = _vmem_step(
                VMEM_GRID32,
                v[j],
                cur[j],
                ref[j] <= 0,
                vr,
                dec,
                scale,
                inv,
                lo,
                hi,
                nearest,
                leak,
                stochastic,
                key,
                key_decay,
                j,
            )
            v[j] = x
            ref[j] -= 1
            s[j] = x > thr[j]
    elif kind == VMEM_GRID:
        for j in range(n):
            x = _vmem_step(
                VMEM_GRID,
                v[j],
                cur[j],
                ref[j] <= 0,
                vr,
                dec,
                scale,
                inv,
                lo,
                hi,
                nearest,
                leak,
                stochastic,
                key,
                key_decay,
                j,
            )
            v[j] = x
            ref[j] -= 1
            s[j] = x > thr[j]
    else:
        for j in range(n):
            x = _vmem_step(
                VMEM_SCALAR,
                v[j],
                cur[j],
                ref[j] <= 0,
                vr,
                dec,
                scale,
                inv,
                lo,
                hi,
                nearest,
                leak,
                stochastic,
                key,
                key_decay,
                j,
            )
            v[j] = x
            ref[j] -= 1
            s[j] = x > thr[j]
    if track_range:  # a pass that vectorizes finds whether any V_mem lies outside the range so far
        outside = False
        for j in range(n):
            outside |= v[j] < v_lo or v[j] > v_hi
        for j in range(n if outside else 0):
            if v[j] < v_lo:
                v_lo = v[j]
            if v[j] > v_hi:
                v_hi = v[j]
    crossing = False
    for j in range(n):
        crossing |= s[j]
    if not crossing:
        return 0, 0, v_lo, v_hi
    nsp = 0
    ncross = 0
    best = -1
    best_over = np.float32(0.0)
    for j in range(n):
        if not s[j]:
            continue
        if one_spike:
            s[j] = False
            over = v[j] - thr[j]
            if best < 0 or over > best_over:
                best = j
                best_over = over
        else:
            cnt[j] += 1
            spk[nsp] = j
            nsp += 1
        ref[j] = refr_e
        v[j] = vres
        cross[ncross] = j
        ncross += 1
    if best >= 0:
        s[best] = True
        cnt[best] += 1
        spk[0] = best
        nsp = 1
    return nsp, ncross, v_lo, v_hi


@njit
def _adaptive_threshold(theta_p, thr, cross, ncross, theta_plus, vth_e, qth, mode, key):
    """theta += theta_plus for every neuron that crossed (as BindsNET), with theta = V_th - v_th
    kept on its grid (qWN) (``equations.adaptive_threshold``); ``thr`` follows.

    On the grid the increment is theta+ rounded by the format's mode and then saturated: under
    stochastic rounding it is floor(theta+ / q) steps plus one with probability frac(theta+ / q),
    from draw j of ``key``, so its mean is theta+ even when theta+ is below one step q."""
    quantized, hi = mode != NONE, qth[ROW_HI]
    for m in range(ncross):
        j = cross[m]
        th = theta_p[j] + _q(theta_plus, qth, mode, key, j)
        if quantized:
            th = min(th, hi)
        theta_p[j] = th
        thr[j] = vth_e + th


@njit
def _trace_step(x, s, decay, n):
    """x <- 1 where s, else x * decay (:func:`tinysnn.sim.equations.trace_step`).

    Only the postsynaptic trace is stepped; the presynaptic one is read lazily as
    ``pre_table[t - last_in[i]]``, the same float32 number."""
    for j in range(n):
        x[j] = np.float32(1.0) if s[j] else x[j] * decay


# -- learning rules (tinysnn.sim.equations) -----------------------------------------------------------


@njit
def _pair_depression(Wp, idx, a0, a1, x_post, dep, n, nu_pre, wmax, qw, mode, key, post, n_post):
    """Pair-wise STDP, presynaptic half (:func:`tinysnn.sim.equations.pair_depression`): on a spike of
    input i, w_ij -= nu_pre x_post_j; clip at 0 (ITQ: clip to [0, w_max] and quantize; truncation
    and nearest in a loop that vectorizes, :func:`_quantize_on_grid`).

    ``post[:n_post]`` lists the neurons that have spiked in this sample: every other x_post_j is 0,
    and in FP32 w - 0 clipped at 0 is w (weights are >= 0: every rule keeps them in [0, w_max], and
    ``Population.load_state_dict`` refuses a state with a negative one), so while they are few (a
    quarter of the neurons or fewer) only their columns are updated: the same numbers, a fraction
    of the work."""
    for j in range(n):
        dep[j] = nu_pre * x_post[j]
    scale, lo, hi = qw[ROW_SCALE], qw[ROW_LO], qw[ROW_HI]
    inv, nearest, zero = np.float32(1.0) / max(scale, np.float32(1.0)), mode == NEAREST, np.float32(0.0)
    # one loop nest per rounding, chosen once: the loops of FP32, truncation and nearest then keep
    # no register for stochastic rounding's integers (chosen per row, the int64 code made
    # diehl_cook's training about 4 % slower)
    if mode == NONE and 4 * n_post <= n:
        for kk in range(a0, a1):
            row = Wp[idx[kk]]
            for q in range(n_post):
                j = post[q]
                row[j] = max(row[j] - dep[j], zero)
    elif mode == NONE:
        for kk in range(a0, a1):
            row = Wp[idx[kk]]
            for j in range(n):
                row[j] = max(row[j] - dep[j], zero)
    elif mode == TRUNCATE or mode == NEAREST:
        for kk in range(a0, a1):
            row = Wp[idx[kk]]
            for j in range(n):
                row[j] = _quantize_on_grid(min(max(row[j] - dep[j], zero), wmax), scale, inv, lo, hi, nearest)
    else:
        for kk in range(a0, a1):
            row = Wp[idx[kk]]
            for j in range(n):
                row[j] = _fix_w(row[j] - dep[j], wmax, qw, mode, key, S.synapse_index(np.int64(idx[kk]), j))


@njit
def _pair_potentiation(Wp, spk, nsp, seen, n_seen, last_in, pre_table, t, nu_post, wmax, qw, mode, key):
    """Pair-wise STDP, postsynaptic half (:func:`tinysnn.sim.equations.pair_potentiation`): on a spike
    of neuron j, w_ij += nu_post x_pre_i for the inputs that have fired (``seen[:n_seen]``, in the
    order of their first spike: each weight is updated on its own, so the order does not matter);
    clip (and quantize)."""
    for m in range(nsp):
        j = spk[m]
        for q in range(n_seen):
            i = seen[q]
            w = Wp[i, j] + nu_post * pre_table[t - last_in[i]]
            Wp[i, j] = _fix_w(w, wmax, qw, mode, key, S.synapse_index(i, j))


@njit
def _sl_stdp(Wp, spk, nsp, last_in, pre_table, t, eta_p, eta_d, x_th, wmax, qw, mode, key):
    """SL-STDP, approximate baseline (:func:`tinysnn.sim.equations.sl_stdp`): on a spike of neuron j,
    w += eta_p (w_max - w) where x_pre > x_th, else w -= eta_d w; clip (and quantize)."""
    for m in range(nsp):
        j = spk[m]
        for i in range(Wp.shape[0]):
            xp = pre_table[t - last_in[i]] if last_in[i] >= 0 else np.float32(0.0)
            w = Wp[i, j]
            if xp > x_th:
                w = w + eta_p * (wmax - w)
            else:
                w = w - eta_d * w
            Wp[i, j] = _fix_w(w, wmax, qw, mode, key, S.synapse_index(i, j))


@njit
def _adaptive_factor(cnt, n, n_th):
    """tinySNN Eq. 1 (:func:`tinysnn.sim.equations.adaptive_factor`): k = ceil(max_j N_j / N_th)."""
    max_n = 0
    for j in range(n):
        if cnt[j] > max_n:
            max_n = cnt[j]
    return np.float32(math.ceil(np.float32(max_n) / n_th))


@njit
def _adaptive_potentiation(Wp, spiked, n, seen, n_seen, last_in, pre_table, t, a, wmax, qw, mode, key):
    """tinySNN Eq. 2 at an update time (:func:`tinysnn.sim.equations.adaptive_potentiation`): for each
    neuron j that spiked since the last update, w_ij += (a x_pre_i) (w_max - w_ij) with
    a = k eta_post, for the inputs that have fired (``seen[:n_seen]``, as :func:`_pair_potentiation`);
    clip (and quantize). Clears ``spiked``; returns the number of columns updated."""
    cols = 0
    for j in range(n):
        if not spiked[j]:
            continue
        spiked[j] = False
        cols += 1
        for q in range(n_seen):
            i = seen[q]
            bi = a * pre_table[t - last_in[i]]
            w = Wp[i, j]
            Wp[i, j] = _fix_w(w + bi * (wmax - w), wmax, qw, mode, key, S.synapse_index(i, j))
    return cols


# -- after the sample ----------------------------------------------------------------------------


@njit
def _decay_theta(theta_p, n, k, qth, mode, key):
    """theta decays toward 0 over the sample's span (``equations.decay_theta``): FP32 multiply,
    or one decrement on theta's grid (stochastic under stochastic rounding, from draw j of ``key``,
    else toward zero)."""
    decay, leak = k[K_DEC_THETA], np.int64(k[K_LEAK_THETA])
    quantized, stochastic, scale = mode != NONE, mode == STOCHASTIC, qth[ROW_SCALE]
    for j in range(n):
        theta_p[j] = _decay(theta_p[j], decay, quantized, scale, leak, stochastic, key, j)


@njit
def _settled_columns(colsum, csum, cnt, n, n_in, total, qw, mode):
    """The ``settled`` rule (:func:`tinysnn.sim.equations.settled_columns`): a silent column whose sum
    lies within the rounding slack of ``total`` keeps its weights (its factor becomes 1)."""
    tot = np.float64(total)
    slack = n_in / np.float64(qw[ROW_SCALE])
    for j in range(n):
        if cnt[j] > 0:
            continue
        if mode == TRUNCATE:
            settled = csum[j] <= tot and csum[j] > tot - slack
        else:
            settled = abs(csum[j] - tot) <= slack / 2
        if settled:
            colsum[j] = np.float32(1.0)


@njit
def _scale_row_quantized(row, colsum, wmax, qrow, mode, key, i):
    """``row[j] = _fix_w(row[j] * colsum[j], wmax, qrow, mode)`` for every j, in a loop per rounding mode.

    Only the first ``len(colsum)`` entries of ``row`` are touched (the network's own size; a
    population's rows are padded to its widest network). The loops do not check bounds, so
    their length comes from ``colsum``: reading past it gave NaN weights in padded populations.

    Same numbers as :func:`_fix_w` (quantize_scalar) bit for bit: clamp to [0, w_max] and the
    format's range, scale by 2^f (exact), floor, add one by the mode's rule, scale back (exact),
    saturate. Truncation and nearest have no branch per element, so the loop vectorizes; this
    pass touches every weight of every network after every sample, which made ITQ several times
    slower than FP32 with the scalar call.
    """
    scale, lo, hi = qrow[ROW_SCALE], qrow[ROW_LO], qrow[ROW_HI]
    inv = np.float32(1.0) / scale  # a power of two: exact
    zero = np.float32(0.0)
    half = np.float32(0.5)
    one = np.float32(1.0)
    if mode == TRUNCATE:
        for j in range(colsum.shape[0]):
            x = min(max(min(max(row[j] * colsum[j], zero), wmax), lo), hi)
            row[j] = np.floor(x * scale) * inv
    elif mode == NEAREST:
        for j in range(colsum.shape[0]):
            x = min(max(min(max(row[j] * colsum[j], zero), wmax), lo), hi)
            y = x * scale
            k = np.floor(y)
            k = k + (one if y - k >= half else zero)
            row[j] = min(k * inv, hi)
    elif mode == STOCHASTIC:
        # Weights are >= 0, so the negative-y case of quantize_scalar does not arise.
        for j in range(colsum.shape[0]):
            x = min(max(min(max(row[j] * colsum[j], zero), wmax), lo), hi)
            y = x * scale
            k = np.floor(y)
            k = k + (one if _uniform(key, S.synapse_index(i, j)) < y - k else zero)
            row[j] = min(k * inv, hi)
    else:
        for j in range(colsum.shape[0]):
            row[j] = _fix_w(row[j] * colsum[j], wmax, qrow, mode, key, S.synapse_index(i, j))


@njit
def _normalize_sum_preserving(Wp, j, n_in, factor, wmax, qrow, target, rule, u, codes, order_key):
    """Fixed-point normalization of column j that keeps its total (``sum``, ``proportional`` and
    ``apportion``): the numbers of :func:`tinysnn.sim.equations.normalize_sum_preserving`.

    Scale by ``factor``, floor every weight to the grid, then give one step each to ``target - sum``
    weights that lost a remainder, never past min(hi, w_max): the largest remainders (``sum``), the
    largest scaled weights (``proportional``), ties to the lowest input index, or by systematic
    sampling with the column's draw ``u`` (``apportion``). ``codes`` and ``order_key`` are float32
    scratch arrays of length n_in.
    """
    scale, lo, hi = qrow[ROW_SCALE], qrow[ROW_LO], qrow[ROW_HI]
    inv = np.float32(1.0) / scale  # a power of two: exact
    top = min(hi, wmax)
    zero = np.float32(0.0)
    floored = np.int64(0)
    for i in range(n_in):
        x = min(max(min(max(Wp[i, j] * factor, zero), wmax), lo), hi)
        y = x * scale
        c = np.floor(y)
        r = y - c
        codes[i] = c
        # ascending order of -key puts the largest first; 1 marks a weight that cannot take a step
        # (no remainder, or already at the top); apportion reads the remainder itself (or -1)
        can_step = r > zero and (c + np.float32(1.0)) * inv <= top
        if rule == NORM_APPORTION:
            order_key[i] = r if can_step else np.float32(-1.0)
        else:
            order_key[i] = -(y if rule == NORM_PROPORTIONAL else r) if can_step else np.float32(1.0)
        floored += np.int64(c)
    missing = target - floored
    if missing > 0 and rule == NORM_APPORTION:
        _apportion(codes, order_key, n_in, missing, u)
    elif missing > 0:
        # The first m weights in the stable ascending order of their keys (ties: lowest index first)
        # take a step, up to the first key > 0 (those cannot step): the keys below the m-th
        # smallest, and the first of its ties by index; a selection, not a sort.
        m = min(missing, n_in)
        kth = np.partition(order_key, m - 1)[m - 1]
        ties = m
        for i in range(n_in):
            ties -= 1 if order_key[i] < kth else 0
        for i in range(n_in):
            key = order_key[i]
            tie = key == kth and ties > 0
            ties -= 1 if tie else 0
            if (key < kth or tie) and not key > zero:
                codes[i] += np.float32(1.0)
    for i in range(n_in):
        Wp[i, j] = codes[i] * inv


@njit
def _apportion(codes, rem, n_in, missing, u):
    """Systematic sampling of ``missing`` steps over the weights with remainder ``rem[i] >= 0``
    (-1: cannot step), probabilities ``rem m / R`` (:func:`tinysnn.sim.equations.apportion`)."""
    total_r = 0.0
    for i in range(n_in):
        if rem[i] >= np.float32(0.0):
            total_r += np.float64(rem[i])
    m = max(min(np.float64(missing), total_r), 0.0)
    ratio = m / total_r if total_r > 0.0 else 0.0
    upper = 0.0
    before = 0.0
    for i in range(n_in):
        if rem[i] >= np.float32(0.0):
            upper += np.float64(rem[i]) * ratio
        points = min(np.ceil(upper - u), np.float64(missing))
        if points > before:
            codes[i] += np.float32(1.0)
        before = points


@njit
def _normalize(Wp, n, cnt, total, wmax, rule, qw, mode, key):
    """Column normalization after the sample (:func:`tinysnn.sim.equations.normalize`): scale each
    column to sum ``total``, clip to [0, w_max]; ITQ quantizes by the rule: ``plain`` rounds every
    scaled weight, ``settled`` leaves settled silent columns alone first, ``sum``, ``proportional``
    and ``apportion`` (truncation and nearest) keep the column total
    (:func:`_normalize_sum_preserving`; ``apportion`` draws column j's u from element j of ``key``)."""
    n_in = Wp.shape[0]
    csum = np.empty(n, np.float64)
    _sum_rows(Wp, np.arange(n_in).astype(np.int32), 0, n_in, n, csum)
    colsum = np.empty(n, np.float32)
    for j in range(n):
        cs = np.float32(csum[j])
        colsum[j] = total / cs if cs > np.float32(0.0) else np.float32(1.0)
    deterministic = mode == TRUNCATE or mode == NEAREST
    if deterministic and rule == NORM_SETTLED:
        _settled_columns(colsum, csum, cnt, n, n_in, total, qw, mode)
    if mode == NONE:
        for i in range(n_in):
            row = Wp[i]
            for j in range(n):
                row[j] = min(max(row[j] * colsum[j], np.float32(0.0)), wmax)
    elif deterministic and (rule == NORM_SUM or rule == NORM_PROPORTIONAL or rule == NORM_APPORTION):
        # a column whose codes already sum to the target is its own result (scaling by
        # total / sum and flooring gives it back), so it is skipped
        target = np.int64(np.floor(np.float64(total) * np.float64(qw[ROW_SCALE])))
        codes = np.empty(n_in, np.float32)
        order_key = np.empty(n_in, np.float32)
        for j in range(n):
            if csum[j] > 0.0 and csum[j] * qw[ROW_SCALE] != target:
                u = np.float64(S.uniform_bits(key, j)) * 2.0**-S.U_BITS if rule == NORM_APPORTION else 0.0
                _normalize_sum_preserving(Wp, j, n_in, colsum[j], wmax, qw, target, rule, u, codes, order_key)
    else:
        for i in range(n_in):  # a row is padded to the widest network
            _scale_row_quantized(Wp[i][:n], colsum, wmax, qw, mode, key, i)


# -- one sample ----------------------------------------------------------------------------------


@njit(cache=True)
def _run_one(
    p,
    learn,
    variant,
    ptr,
    idx,
    W,
    theta,
    n,
    fp,
    ip,
    t_upd,
    qw,
    qv,
    qth,
    k,
    refr_e,
    refr_i,
    pre_table,
    T,
    counts,
    b,
    stats,
    vrange,
    sample_seed,
    net_seed,
    codes,
    w_inv,
    prof,
    clock,
):
    """One sample through network p: the time loop of ``torch_backend.run_window``, step by step.

    Longer than the other functions because it owns the window's state (the arrays below) and
    hands it to the step functions in the order of the equations. ``qw``, ``qv`` and ``qth`` are
    the network's fixed-point rows; their rounding codes are read here from ``ip``, once per sample
    (inference takes the weights and thresholds as they are: the infer kernels pass no rows for
    them). With ``w_inv`` > 0 the input current is summed from the integer weight codes ``codes``
    (n_in, n_max) (:func:`_weight_codes`; inference only: learning changes the float weights).
    ``prof`` and ``clock`` (the counter at the start) profile its phases (:func:`_lap`).
    """
    Wp, theta_p, prm, iprm = W[p], theta[p], fp[p], ip[p]
    n_in = Wp.shape[0]
    inhibitory_layer = _has_inhibitory_layer(variant)
    w_lat = prm[C_W_IE] if inhibitory_layer else prm[C_W_INH]
    wmax = prm[C_W_MAX]
    vth_e = k[K_VTH_E]
    mode_v = iprm[I_ROUND_VMEM]
    mode_w = iprm[I_ROUND_WEIGHTS] if learn else NONE
    mode_th = iprm[I_ROUND_VTH] if learn else NONE
    # stochastic-rounding streams of this (sample, network), one per rounded quantity; the keys of
    # a step are derived only where something rounds stochastically
    stochastic = mode_v == STOCHASTIC or mode_th == STOCHASTIC or mode_w == STOCHASTIC
    base_v = S.stream_base(sample_seed, net_seed, S.STREAM_VMEM)
    base_vi = S.stream_base(sample_seed, net_seed, S.STREAM_VMEM_INH)
    base_th = S.stream_base(sample_seed, net_seed, S.STREAM_VTH)
    base_dep = S.stream_base(sample_seed, net_seed, S.STREAM_W_DEPRESS)
    base_w = S.stream_base(sample_seed, net_seed, S.STREAM_W_LEARN)
    base_vd = S.stream_base(sample_seed, net_seed, S.STREAM_VMEM_DECAY)
    base_vid = S.stream_base(sample_seed, net_seed, S.STREAM_VMEM_INH_DECAY)
    key_v = key_vi = key_th = key_dep = key_w = key_vd = key_vid = np.int64(0)
    v = np.full(n, k[K_VR_E], np.float32)
    ref = np.zeros(n, np.int32)
    s = np.zeros(n, np.bool_)
    vi = np.full(n, k[K_VR_I], np.float32)
    refi = np.zeros(n, np.int32)
    si = np.zeros(n, np.bool_)
    si_new = np.zeros(n, np.bool_)
    cur = np.zeros(n, np.float32)
    acc = np.zeros(n, np.float64)
    iacc = np.zeros(n, np.int32)
    cnt = np.zeros(n, np.int32)
    x_post = np.zeros(n, np.float32)
    post = np.empty(n, np.int64)  # the neurons that have spiked in this sample (x_post != 0 only there)
    in_post = np.zeros(n, np.bool_)
    n_post = 0
    spiked = np.zeros(n, np.bool_)
    last_in = np.full(n_in, -1, np.int64)  # step of each input's last spike: x_pre = pre_table[t - last_in]
    seen = np.empty(n_in, np.int64)  # the inputs that have fired, in the order of their first spike
    n_seen = 0
    spk = np.empty(n, np.int64)
    cross = np.empty(n, np.int64)
    dep = np.empty(n, np.float32)
    v_lo, v_hi = vrange[p, 0], vrange[p, 1]
    one_spike = iprm[I_ONE_SPIKE] != 0
    thr = np.empty(n, np.float32)
    for j in range(n):
        thr[j] = vth_e + theta_p[j]
    kind_e = _vmem_kind(qv, mode_v, k[K_LEAK_E], k[K_VR_E], k[K_VRESET_E])
    kind_i = _vmem_kind(qv, mode_v, k[K_LEAK_I], k[K_VR_I], k[K_VRESET_I])
    inh_rest_fixed = inhibitory_layer and _rest_is_fixed(
        kind_i, qv, mode_v, k[K_VR_I], k[K_VTH_I], k[K_DEC_I], np.int64(k[K_LEAK_I])
    )
    # the inhibitory neurons that are stepped (:func:`_lif_inhibitory_step`): all when rest is not a
    # fixed point, else none until their excitatory partner fires
    inh_active = np.arange(n)
    n_inh_active = 0 if inh_rest_fixed else n
    inh_listed = np.full(n, not inh_rest_fixed, np.bool_)
    nsp = 0  # excitatory spikes of t - 1
    n_si = 0  # inhibitory spikes of t - 1
    n_inh_spikes = 0
    n_cols = 0
    for t in range(T):
        a0, a1 = ptr[t], ptr[t + 1]
        if stochastic:
            key_v, key_vi, key_th = S.step_key(base_v, t), S.step_key(base_vi, t), S.step_key(base_th, t)
            key_dep, key_w = S.step_key(base_dep, t), S.step_key(base_w, t)
            key_vd, key_vid = S.step_key(base_vd, t), S.step_key(base_vid, t)
        if w_inv > 0.0:
            _input_current_codes(codes, idx, a0, a1, n, iacc, cur, w_inv)
        else:
            _input_current(Wp, idx, a0, a1, n, acc, cur)
        clock = _lap(prof, PH_INPUT, clock)
        if inhibitory_layer:
            fired, n_inh_active = _lif_inhibitory_step(
                vi, refi, si, si_new, spk, nsp, s, inh_active, inh_listed, n_inh_active, k, prm[C_W_EI], qv,
                mode_v, key_vi, key_vid, refr_i, kind_i, inh_rest_fixed,
            )  # fmt: skip
            _lateral_inhibition(cur, si, n_si, n, w_lat)  # inhibitory spikes of t - 1
            si, si_new, n_si = si_new, si, fired  # this step's spikes act at t + 1
            n_inh_spikes += fired
        else:
            _lateral_inhibition(cur, s, nsp, n, w_lat)  # excitatory spikes of t - 1
        clock = _lap(prof, PH_INHIBITION, clock)
        nsp, ncross, v_lo, v_hi = _lif_excitatory_step(
            v,
            ref,
            s,
            thr,
            cur,
            cnt,
            spk,
            cross,
            v_lo,
            v_hi,
            n,
            k,
            qv,
            mode_v,
            key_v,
            key_vd,
            refr_e,
            one_spike,
            kind_e,
            learn,
        )
        clock = _lap(prof, PH_NEURON, clock)
        if not learn:
            continue
        _adaptive_threshold(theta_p, thr, cross, ncross, prm[C_THETA_PLUS], vth_e, qth, mode_th, key_th)
        for kk in range(a0, a1):
            i = idx[kk]
            if last_in[i] < 0:
                seen[n_seen] = i
                n_seen += 1
            last_in[i] = t
        _trace_step(x_post, s, k[K_DEC_POST], n)
        if variant == VARIANT_DIEHL_COOK:  # depression rows (clip), then potentiation columns (clip)
            for m in range(nsp):  # the neurons that have spiked in this sample, each listed once
                if not in_post[spk[m]]:
                    in_post[spk[m]] = True
                    post[n_post] = spk[m]
                    n_post += 1
            if a1 > a0:
                _pair_depression(
                    Wp, idx, a0, a1, x_post, dep, n, prm[C_NU_PRE], wmax, qw, mode_w, key_dep, post, n_post
                )
            _pair_potentiation(
                Wp, spk, nsp, seen, n_seen, last_in, pre_table, t, prm[C_NU_POST], wmax, qw, mode_w, key_w
            )
            n_cols += nsp
        elif variant == VARIANT_SL_STDP:
            _sl_stdp(
                Wp,
                spk,
                nsp,
                last_in,
                pre_table,
                t,
                prm[C_ETA_P],
                prm[C_ETA_D],
                prm[C_X_TH],
                wmax,
                qw,
                mode_w,
                key_w,
            )
            n_cols += nsp
        else:  # tinySNN: timestep-based adaptive potentiation at every T_u steps and at the end
            for m in range(nsp):
                spiked[spk[m]] = True
            if (t + 1) % t_upd[p] == 0 or t == T - 1:
                a = _adaptive_factor(cnt, n, prm[C_N_TH]) * prm[C_ETA_POST]
                n_cols += _adaptive_potentiation(
                    Wp, spiked, n, seen, n_seen, last_in, pre_table, t, a, wmax, qw, mode_w, key_w
                )
        clock = _lap(prof, PH_LEARN, clock)
    for j in range(n):
        counts[p, b, j] = cnt[j]
    stats[p, b, STAT_INPUT_SPIKES] = ptr[T] - ptr[0]
    stats[p, b, STAT_INH_SPIKES] = n_inh_spikes
    stats[p, b, STAT_COLUMNS_UPDATED] = n_cols
    if learn:
        vrange[p, 0] = v_lo
        vrange[p, 1] = v_hi
        key_theta = S.step_key(S.stream_base(sample_seed, net_seed, S.STREAM_THETA_DECAY), T)
        _decay_theta(theta_p, n, k, qth, mode_th, key_theta)
        key_norm = S.step_key(S.stream_base(sample_seed, net_seed, S.STREAM_W_NORM), T)
        _normalize(Wp, n, cnt, prm[C_NORM], wmax, iprm[I_NORM_RULE], qw, mode_w, key_norm)
        _lap(prof, PH_NORM, clock)


@njit(cache=True, parallel=True)
def train_kernel(
    variant,
    ptrs,
    idxs,
    offs,
    W,
    theta,
    sizes,
    fp,
    ip,
    t_upd,
    qw,
    qv,
    qth,
    k,
    refr_e,
    refr_i,
    pre_table,
    T,
    sample_seeds,
    net_seeds,
    counts,
    stats,
    vrange,
    prof,
):
    """B training samples, one after the other, each for all P networks (in parallel); sample b's
    train is ptrs[b], idxs[offs[b]:offs[b + 1]] (:func:`encode_batch`); counts (P, B, N) and stats
    (P, B, 3) are written.

    ``vrange`` (P, 2) holds the running min and max of the excitatory V_mem (range analysis);
    stochastic rounding draws from the streams of (``sample_seeds[b]``, ``net_seeds[p]``).
    """
    P = W.shape[0]
    no_codes = np.zeros((1, 1), np.int16)
    for b in range(ptrs.shape[0]):
        for p in prange(P):
            _run_one(
                p,
                True,
                variant,
                ptrs[b],
                idxs[offs[b] : offs[b + 1]],
                W,
                theta,
                sizes[p],
                fp,
                ip,
                t_upd,
                qw[p],
                qv[p],
                qth[p],
                k,
                refr_e,
                refr_i,
                pre_table,
                T,
                counts,
                b,
                stats,
                vrange,
                sample_seeds[b],
                net_seeds[p],
                no_codes,
                0.0,
                prof,
                _lap(prof, -1, 0),
            )


@njit(cache=True)
def train_kernel_serial(
    variant,
    ptrs,
    idxs,
    offs,
    W,
    theta,
    sizes,
    fp,
    ip,
    t_upd,
    qw,
    qv,
    qth,
    k,
    refr_e,
    refr_i,
    pre_table,
    T,
    sample_seeds,
    net_seeds,
    counts,
    stats,
    vrange,
    prof,
):
    """:func:`train_kernel` without the thread pool: for P = 1, waking worker threads for one network
    every sample costs more than it saves (measured 2-4x slower on a busy 2-core machine).

    A function of its own, not ``njit(train_kernel.py_func)``: numba's cache keys a compiled kernel
    by its function, so the two shared one cache entry and a run loaded whichever was compiled first.
    """
    no_codes = np.zeros((1, 1), np.int16)
    for b in range(ptrs.shape[0]):
        for p in range(W.shape[0]):
            _run_one(
                p,
                True,
                variant,
                ptrs[b],
                idxs[offs[b] : offs[b + 1]],
                W,
                theta,
                sizes[p],
                fp,
                ip,
                t_upd,
                qw[p],
                qv[p],
                qth[p],
                k,
                refr_e,
                refr_i,
                pre_table,
                T,
                counts,
                b,
                stats,
                vrange,
                sample_seeds[b],
                net_seeds[p],
                no_codes,
                0.0,
                prof,
                _lap(prof, -1, 0),
            )


@njit(cache=True, parallel=True)
def infer_kernel(
    variant,
    probs,
    seeds,
    W,
    theta,
    sizes,
    fp,
    ip,
    t_upd,
    qw,
    qv,
    k,
    refr_e,
    refr_i,
    pre_table,
    T,
    net_seeds,
    counts,
    stats,
    prof,
):
    """B samples x P networks without learning; each sample encoded from its own seed, which
    also keys its stochastic-rounding streams. Networks whose weights lie on their grid sum
    integer codes (:func:`_weight_codes`). A ``prof`` array is shared by the jobs: profile with
    one thread."""
    P = W.shape[0]
    B = probs.shape[0]
    noq = np.zeros(ROW_WIDTH, np.float32)
    dummy = np.zeros((P, 2), np.float32)  # V_mem range is tracked while learning only
    codes, w_inv = _weight_codes(W, sizes, qw, ip[:, I_ROUND_WEIGHTS])
    for job in prange(P * B):
        p = job // B
        b = job % B
        clock = _lap(prof, -1, 0)
        ptr, idx = encode_isi(probs[b], T, seeds[b])
        clock = _lap(prof, PH_ENCODE, clock)
        _run_one(
            p,
            False,
            variant,
            ptr,
            idx,
            W,
            theta,
            sizes[p],
            fp,
            ip,
            t_upd,
            noq,
            qv[p],
            noq,
            k,
            refr_e,
            refr_i,
            pre_table,
            T,
            counts,
            b,
            stats,
            dummy,
            seeds[b],
            net_seeds[p],
            codes[p],
            w_inv[p],
            prof,
            clock,
        )


@njit(cache=True, parallel=True)
def infer_trains_kernel(
    variant,
    ptrs,
    idxs,
    offs,
    W,
    theta,
    sizes,
    fp,
    ip,
    t_upd,
    qv,
    k,
    refr_e,
    refr_i,
    pre_table,
    T,
    seeds,
    net_seeds,
    counts,
    stats,
    prof,
):
    """Like infer_kernel on given trains: sample b is ptrs[b], idxs[offs[b]:offs[b+1]]; ``seeds[b]``
    keys its stochastic-rounding streams."""
    P = W.shape[0]
    B = ptrs.shape[0]
    noq = np.zeros(ROW_WIDTH, np.float32)
    dummy = np.zeros((P, 2), np.float32)  # V_mem range is tracked while learning only
    no_codes = np.zeros((1, 1), np.int16)
    for job in prange(P * B):
        p = job // B
        b = job % B
        _run_one(
            p,
            False,
            variant,
            ptrs[b],
            idxs[offs[b] : offs[b + 1]],
            W,
            theta,
            sizes[p],
            fp,
            ip,
            t_upd,
            noq,
            qv[p],
            noq,
            k,
            refr_e,
            refr_i,
            pre_table,
            T,
            counts,
            b,
            stats,
            dummy,
            seeds[b],
            net_seeds[p],
            no_codes,
            0.0,
            prof,
            _lap(prof, -1, 0),
        )


def num_threads() -> int:
    return int(numba.get_num_threads()) if HAVE_NUMBA else 1
