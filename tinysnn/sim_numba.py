"""Fast CPU kernels (numba): the same window as :mod:`tinysnn.sim_torch`, element by element.

What makes them fast (each measured by bench/throughput.py):

* Input current by gathering the weight rows of the inputs that fire in a step (about 13 of 784
  for MNIST) instead of a dense product.
* Poisson trains from inter-spike intervals: each input's gaps are Geometric(p), which is exactly
  the distribution of per-step Bernoulli(p) spikes, so a sample costs one random number per
  input spike instead of one per input per step. Each sample's train depends only on
  (seed, stream, sample index), never on P or on threads.
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

import numpy as np

from . import streams as S
from .qformat import LEAK_BITS
from .quant import quantize_scalar

try:
    import numba
    from numba import njit, prange
    from numba.extending import register_jitable

    for _f in (S.fmix64, S.stream_base, S.step_key, S.uniform_bits, S.synapse_index):
        register_jitable(_f)  # the kernels call the stream functions as they are written
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    HAVE_NUMBA = False

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        def wrap(f):
            return f

        return wrap(args[0]) if args and callable(args[0]) else wrap

    prange = range  # type: ignore[assignment]

#: columns of the per-sample statistics (P, B, 3) the kernels write
STAT_INPUT_SPIKES, STAT_INH_SPIKES, STAT_COLUMNS_UPDATED = 0, 1, 2
VARIANT_CODES = {"diehl_cook": 0, "sl_stdp": 1, "tinysnn": 2}
# columns of the per-network float32 parameter matrix fp (P, N_FP)
FP_COLUMNS = (
    "theta_plus", "w_exc_inh", "w_inh_exc", "w_inh", "w_max", "norm_total",
    "nu_pre", "nu_post", "eta_p", "eta_d", "x_th", "eta_post", "n_th", "one_spike", "norm_rule",
)  # fmt: skip
(
    C_THETA_PLUS, C_W_EI, C_W_IE, C_W_INH, C_W_MAX, C_NORM,
    C_NU_PRE, C_NU_POST, C_ETA_P, C_ETA_D, C_X_TH, C_ETA_POST, C_N_TH, C_ONE_SPIKE, C_NORM_RULE,
) = range(len(FP_COLUMNS))  # fmt: skip
# columns of the float32 constants vector k (the leak multipliers are integers < 2^24: exact)
(K_VR_E, K_VRESET_E, K_VTH_E, K_DEC_E, K_VR_I, K_VRESET_I, K_VTH_I, K_DEC_I,
 K_DEC_POST, K_DEC_THETA, K_LEAK_E, K_LEAK_I, K_LEAK_THETA) = range(13)  # fmt: skip


@njit(cache=True)
def encode_isi(prob, T, seed):
    """Poisson trains of one sample as CSR: step t fires inputs idx[ptr[t]:ptr[t+1]] (ascending).

    ``prob`` (n_in,) float32 holds each input's firing probability per step.
    """
    n_in = prob.shape[0]
    cnt = np.zeros(T + 1, np.int64)
    np.random.seed(seed)
    for i in range(n_in):
        p = prob[i]
        if p <= 0.0:
            continue
        t = np.random.geometric(p) - 1
        while t < T:
            cnt[t + 1] += 1
            t += np.random.geometric(p)
    ptr = np.cumsum(cnt)
    fill = ptr[:-1].copy()
    idx = np.empty(ptr[T], np.int32)
    np.random.seed(seed)
    for i in range(n_in):
        p = prob[i]
        if p <= 0.0:
            continue
        t = np.random.geometric(p) - 1
        while t < T:
            idx[fill[t]] = i
            fill[t] += 1
            t += np.random.geometric(p)
    return ptr, idx


def dense_to_csr(train: np.ndarray):
    """CSR (ptr, idx) of a dense bool train (T, n_in) — for running given trains."""
    t_idx, i_idx = np.nonzero(train)
    T = train.shape[0]
    ptr = np.zeros(T + 1, np.int64)
    np.add.at(ptr, t_idx + 1, 1)
    return np.cumsum(ptr), i_idx.astype(np.int32)


_qs = njit(inline="always")(quantize_scalar)


@njit(inline="always")
def _uniform(key, index):
    """The stochastic-rounding draw of element ``index`` under ``key`` (:mod:`tinysnn.streams`)."""
    return np.float32(S.uniform_bits(key, index)) * np.float32(2.0**-S.U_BITS)


@njit(inline="always")
def _q(x, qrow, key, index):
    """Fixed-point quantization of one float32 with qrow = [scale, lo, hi, mode] (tinysnn.quant).

    Stochastic rounding draws element ``index`` of the stream ``key``."""
    mode = qrow[3]
    if mode == 0:
        return x
    u = _uniform(key, index) if mode == 3 else np.float32(0.0)
    return np.float32(_qs(x, qrow[0], qrow[1], qrow[2], mode, u))


@njit(inline="always")
def _fix_w(x, wmax, qrow, key, index):
    return _q(min(max(x, np.float32(0.0)), wmax), qrow, key, index)


@njit(inline="always")
def _decay_toward_zero(u, scale, leak):
    """:func:`tinysnn.rounding.decay_toward_zero` for one float32 on the grid 1/scale."""
    codes = np.int64(abs(u) * scale)
    step = np.float32((codes * np.int64(leak)) >> LEAK_BITS) / scale
    return u - step if u > 0 else u + step


@njit(inline="always")
def _norm_row_q(row, colsum, wmax, qrow, key, i):
    """``row[j] = _fix_w(row[j] * colsum[j], wmax, qrow)`` for every j, in a loop per rounding mode.

    Only the first ``len(colsum)`` entries of ``row`` are touched (the network's own size; a
    population's rows are padded to its widest network). The loops do not check bounds, so
    their length comes from ``colsum``: reading past it gave NaN weights in padded populations.

    Same numbers as :func:`_fix_w` (quantize_scalar) bit for bit: clamp to [0, w_max] and the
    format's range, scale by 2^f (exact), floor, add one by the mode's rule, scale back (exact),
    saturate. Truncation and nearest have no branch per element, so the loop vectorizes; this
    pass touches every weight of every network after every sample, which made ITQ several times
    slower than FP32 with the scalar call.
    """
    scale, lo, hi, mode = qrow[0], qrow[1], qrow[2], qrow[3]
    inv = np.float32(1.0) / scale  # a power of two: exact
    zero = np.float32(0.0)
    half = np.float32(0.5)
    one = np.float32(1.0)
    if mode == 1:
        for j in range(colsum.shape[0]):
            x = min(max(min(max(row[j] * colsum[j], zero), wmax), lo), hi)
            row[j] = np.floor(x * scale) * inv
    elif mode == 2:
        for j in range(colsum.shape[0]):
            x = min(max(min(max(row[j] * colsum[j], zero), wmax), lo), hi)
            y = x * scale
            k = np.floor(y)
            k = k + (one if y - k >= half else zero)
            row[j] = min(k * inv, hi)
    elif mode == 3:
        # Weights are >= 0, so the negative-y case of quantize_scalar does not arise.
        for j in range(colsum.shape[0]):
            x = min(max(min(max(row[j] * colsum[j], zero), wmax), lo), hi)
            y = x * scale
            k = np.floor(y)
            k = k + (one if _uniform(key, S.synapse_index(i, j)) < y - k else zero)
            row[j] = min(k * inv, hi)
    else:
        for j in range(colsum.shape[0]):
            row[j] = _fix_w(row[j] * colsum[j], wmax, qrow, key, S.synapse_index(i, j))


@njit
def _norm_column_sum(W, p, j, n_in, factor, wmax, qrow, target, codes, order_key):
    """Sum-preserving fixed-point normalization of column j of network p (``Normalization.SUM``).

    Scale by ``factor``, floor every weight to the grid, then give one step each to the
    ``target - sum`` weights with the largest remainders (ties: lowest input index), never past
    min(hi, w_max): the numbers of :func:`tinysnn.learning.normalize_sum_preserving`.
    ``codes`` and ``order_key`` are float32 scratch arrays of length n_in.
    """
    scale, lo, hi = qrow[0], qrow[1], qrow[2]
    inv = np.float32(1.0) / scale  # a power of two: exact
    top = min(hi, wmax)
    zero = np.float32(0.0)
    floored = 0
    for i in range(n_in):
        x = min(max(min(max(W[p, i, j] * factor, zero), wmax), lo), hi)
        y = x * scale
        c = np.floor(y)
        r = y - c
        codes[i] = c
        # ascending order of -r puts the largest remainders first; 1 marks a weight that cannot
        # take a step (no remainder, or already at the top)
        order_key[i] = -r if (r > zero and (c + np.float32(1.0)) * inv <= top) else np.float32(1.0)
        floored += np.int64(c)
    missing = target - floored
    if missing > 0:
        order = np.argsort(order_key, kind="mergesort")  # stable: ties keep the lowest index first
        for m in range(min(missing, n_in)):
            i = order[m]
            if order_key[i] > zero:
                break
            codes[i] += np.float32(1.0)
    for i in range(n_in):
        W[p, i, j] = codes[i] * inv


@njit(cache=True)
def _run_one(p, learn, variant, ptr, idx, W, theta, n, fp, t_upd, qw, qv, qth, k, refr_e, refr_i,
             pre_table, T, counts, b, stats, vrange, sample_seed, net_seed):  # fmt: skip
    n_in = W.shape[1]
    v_lo = vrange[p, 0]
    v_hi = vrange[p, 1]
    n_inh_spikes = 0
    n_cols = 0
    vr_e, vres_e, vth_e, dec_e = k[K_VR_E], k[K_VRESET_E], k[K_VTH_E], k[K_DEC_E]
    vr_i, vres_i, vth_i, dec_i = k[K_VR_I], k[K_VRESET_I], k[K_VTH_I], k[K_DEC_I]
    dec_post = k[K_DEC_POST]
    leak_e, leak_i = np.int64(k[K_LEAK_E]), np.int64(k[K_LEAK_I])
    # stochastic-rounding streams of this (sample, network), one per rounded quantity
    base_v = S.stream_base(sample_seed, net_seed, S.STREAM_VMEM)
    base_vi = S.stream_base(sample_seed, net_seed, S.STREAM_VMEM_INH)
    base_th = S.stream_base(sample_seed, net_seed, S.STREAM_VTH)
    base_dep = S.stream_base(sample_seed, net_seed, S.STREAM_W_DEPRESS)
    base_w = S.stream_base(sample_seed, net_seed, S.STREAM_W_LEARN)
    q_vmem = qv[3] != 0
    stochastic = qv[3] == 3 or qth[3] == 3 or qw[3] == 3
    key_v = key_vi = key_th = key_dep = key_w = np.int64(0)
    baseline = variant != 2
    w_lat = fp[p, C_W_IE] if baseline else fp[p, C_W_INH]
    w_ei = fp[p, C_W_EI]
    wmax = fp[p, C_W_MAX]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    v = np.full(n, vr_e, np.float32)
    ref = np.zeros(n, np.int32)
    s = np.zeros(n, np.bool_)
    vi = np.full(n, vr_i, np.float32)
    refi = np.zeros(n, np.int32)
    si = np.zeros(n, np.bool_)
    si_new = np.zeros(n, np.bool_)
    cur = np.zeros(n, np.float32)
    acc = np.zeros(n, np.float64)
    cnt = np.zeros(n, np.int32)
    x_post = np.zeros(n, np.float32)
    spiked = np.zeros(n, np.bool_)
    last_in = np.full(n_in, -1, np.int64)
    spk = np.empty(n, np.int64)
    cross = np.empty(n, np.int64)
    one_spike = fp[p, C_ONE_SPIKE] > zero
    dep = np.empty(n, np.float32)
    plain_w = qw[3] == 0
    thr = np.empty(n, np.float32)
    for j in range(n):
        thr[j] = vth_e + theta[p, j]
    for t in range(T):
        a0, a1 = ptr[t], ptr[t + 1]
        if stochastic:  # the step's stream keys, only where something rounds stochastically
            key_v, key_vi, key_th = S.step_key(base_v, t), S.step_key(base_vi, t), S.step_key(base_th, t)
            key_dep, key_w = S.step_key(base_dep, t), S.step_key(base_w, t)
        for j in range(n):
            acc[j] = 0.0
        for kk in range(a0, a1):
            row = W[p, idx[kk]]
            for j in range(n):
                acc[j] += row[j]
        for j in range(n):
            cur[j] = np.float32(acc[j])
        if baseline:
            for j in range(n):
                if q_vmem:  # fixed-point leak: a decrement rounded toward rest
                    x = vr_i + _decay_toward_zero(vi[j] - vr_i, qv[0], leak_i)
                else:
                    x = vr_i + (vi[j] - vr_i) * dec_i
                if refi[j] <= 0:
                    x = x + w_ei * (one if s[j] else zero)
                x = _q(x, qv, key_vi, j)
                refi[j] -= 1
                sp = x > vth_i
                if sp:
                    refi[j] = refr_i
                    x = vres_i
                    n_inh_spikes += 1
                vi[j] = x
                si_new[j] = sp
            lat = si
        else:
            lat = s
        nlat = 0
        for j in range(n):
            nlat += 1 if lat[j] else 0
        if nlat > 0:
            for j in range(n):
                cur[j] = cur[j] - w_lat * np.float32(nlat - (1 if lat[j] else 0))
        nsp = 0
        ncross = 0
        best = -1
        best_over = zero
        for j in range(n):
            if q_vmem:  # fixed-point leak: a decrement rounded toward rest
                x = vr_e + _decay_toward_zero(v[j] - vr_e, qv[0], leak_e)
            else:
                x = vr_e + (v[j] - vr_e) * dec_e
            if ref[j] <= 0:
                x = x + cur[j]
            x = _q(x, qv, key_v, j)
            if x < v_lo:
                v_lo = x
            if x > v_hi:
                v_hi = x
            ref[j] -= 1
            sp = x > thr[j]
            if sp:
                if one_spike:
                    over = x - thr[j]
                    if best < 0 or over > best_over:
                        best = j
                        best_over = over
                else:
                    cnt[j] += 1
                    spk[nsp] = j
                    nsp += 1
                ref[j] = refr_e
                x = vres_e
                cross[ncross] = j
                ncross += 1
            v[j] = x
            s[j] = sp and not one_spike
        if best >= 0:  # one spike per step: the largest overshoot is the one that fires
            s[best] = True
            cnt[best] += 1
            spk[0] = best
            nsp = 1
        if baseline:
            for j in range(n):
                si[j] = si_new[j]
        if not learn:
            continue
        # adaptive thresholds (every neuron that crossed, as BindsNET) and traces
        for m in range(ncross):
            j = cross[m]
            th = theta[p, j] + fp[p, C_THETA_PLUS]
            if qth[3] != 0:
                th = _q(vth_e + th, qth, key_th, j) - vth_e
            theta[p, j] = th
            thr[j] = vth_e + th
        for kk in range(a0, a1):
            last_in[idx[kk]] = t
        for j in range(n):
            x_post[j] = one if s[j] else x_post[j] * dec_post
        if variant == 0:  # pair-wise STDP: depression rows (clip), then potentiation columns (clip)
            nu_pre = fp[p, C_NU_PRE]
            nu_post = fp[p, C_NU_POST]
            if a1 > a0:
                for j in range(n):
                    dep[j] = nu_pre * x_post[j]
                for kk in range(a0, a1):
                    row = W[p, idx[kk]]
                    if plain_w:
                        for j in range(n):
                            row[j] = max(row[j] - dep[j], zero)
                    else:
                        for j in range(n):
                            row[j] = _fix_w(
                                row[j] - dep[j], wmax, qw, key_dep, S.synapse_index(np.int64(idx[kk]), j)
                            )
            n_cols += nsp
            for m in range(nsp):
                j = spk[m]
                for i in range(n_in):
                    if last_in[i] >= 0:
                        w = W[p, i, j] + nu_post * pre_table[t - last_in[i]]
                        W[p, i, j] = _fix_w(w, wmax, qw, key_w, S.synapse_index(i, j))
        elif variant == 1:  # SL-STDP (approximate baseline)
            eta_p, eta_d, x_th = fp[p, C_ETA_P], fp[p, C_ETA_D], fp[p, C_X_TH]
            n_cols += nsp
            for m in range(nsp):
                j = spk[m]
                for i in range(n_in):
                    xp = pre_table[t - last_in[i]] if last_in[i] >= 0 else zero
                    w = W[p, i, j]
                    if xp > x_th:
                        w = w + eta_p * (wmax - w)
                    else:
                        w = w - eta_d * w
                    W[p, i, j] = _fix_w(w, wmax, qw, key_w, S.synapse_index(i, j))
        else:  # tinySNN: timestep-based adaptive potentiation (Eq. 1, Eq. 2)
            for m in range(nsp):
                spiked[spk[m]] = True
            if (t + 1) % t_upd[p] == 0 or t == T - 1:
                max_n = 0
                for j in range(n):
                    if cnt[j] > max_n:
                        max_n = cnt[j]
                kf = np.float32(math.ceil(np.float32(max_n) / fp[p, C_N_TH]))
                a = kf * fp[p, C_ETA_POST]
                for j in range(n):
                    if not spiked[j]:
                        continue
                    spiked[j] = False
                    n_cols += 1
                    for i in range(n_in):
                        if last_in[i] < 0:
                            continue
                        bi = a * pre_table[t - last_in[i]]
                        w = W[p, i, j]
                        W[p, i, j] = _fix_w(w + bi * (wmax - w), wmax, qw, key_w, S.synapse_index(i, j))
    for j in range(n):
        counts[p, b, j] = cnt[j]
    stats[p, b, 0] = ptr[T] - ptr[0]
    stats[p, b, 1] = n_inh_spikes
    stats[p, b, 2] = n_cols
    if learn:
        vrange[p, 0] = v_lo
        vrange[p, 1] = v_hi
        if qth[3] != 0:  # fixed-point decay of theta toward 0
            leak_th = np.int64(k[K_LEAK_THETA])
            for j in range(n):
                theta[p, j] = _decay_toward_zero(theta[p, j], qth[0], leak_th)
        else:
            dth = k[K_DEC_THETA]
            for j in range(n):
                theta[p, j] = theta[p, j] * dth
        total = fp[p, C_NORM]
        csum = np.zeros(n, np.float64)
        for i in range(n_in):
            row = W[p, i]
            for j in range(n):
                csum[j] += row[j]
        colsum = np.empty(n, np.float32)
        for j in range(n):
            cs = np.float32(csum[j])
            colsum[j] = total / cs if cs > zero else one
        rule = fp[p, C_NORM_RULE]
        if (qw[3] == 1 or qw[3] == 2) and rule == np.float32(2.0):
            # settled rule: silent columns within the rounding slack of the total stay as they are
            # (learning.settled_columns)
            tot = np.float64(total)
            slack = n_in / np.float64(qw[0])
            for j in range(n):
                if cnt[j] > 0:
                    continue
                if qw[3] == 1:
                    settled = csum[j] <= tot and csum[j] > tot - slack
                else:
                    settled = abs(csum[j] - tot) <= slack / 2
                if settled:
                    colsum[j] = one
        if plain_w:
            for i in range(n_in):
                row = W[p, i]
                for j in range(n):
                    row[j] = min(max(row[j] * colsum[j], zero), wmax)
        elif (qw[3] == 1 or qw[3] == 2) and rule == zero:
            # sum-preserving rule; a column whose codes already sum to the target is its own
            # result (scaling by total / sum and flooring gives it back), so it is skipped
            target = np.int64(np.floor(np.float64(total) * np.float64(qw[0])))
            codes = np.empty(n_in, np.float32)
            order_key = np.empty(n_in, np.float32)
            for j in range(n):
                if csum[j] > 0.0 and csum[j] * qw[0] != target:
                    _norm_column_sum(W, p, j, n_in, colsum[j], wmax, qw, target, codes, order_key)
        else:
            key = S.step_key(S.stream_base(sample_seed, net_seed, S.STREAM_W_NORM), T)
            for i in range(n_in):
                _norm_row_q(W[p, i][:n], colsum, wmax, qw, key, i)  # row is padded to the widest network


@njit(cache=True, parallel=True)
def train_kernel(variant, ptr, idx, W, theta, sizes, fp, t_upd, qw, qv, qth, k, refr_e, refr_i,
                 pre_table, T, sample_seed, net_seeds, counts, stats, vrange):  # fmt: skip
    """One training sample for all P networks (in parallel); counts (P, 1, N) is written.

    ``vrange`` (P, 2) holds the running min and max of the excitatory V_mem (range analysis);
    stochastic rounding draws from the streams of (``sample_seed``, ``net_seeds[p]``).
    """
    P = W.shape[0]
    for p in prange(P):
        _run_one(p, True, variant, ptr, idx, W, theta, sizes[p], fp, t_upd, qw[p], qv[p], qth[p],
                 k, refr_e, refr_i, pre_table, T, counts, 0, stats, vrange, sample_seed, net_seeds[p])  # fmt: skip


#: The same kernel without the thread pool: for P = 1, waking worker threads for one network every
#: sample costs more than it saves (measured 2-4x slower on a busy 2-core machine).
train_kernel_serial = njit(cache=True)(train_kernel.py_func) if HAVE_NUMBA else train_kernel


@njit(cache=True, parallel=True)
def infer_kernel(variant, probs, seeds, W, theta, sizes, fp, t_upd, qw, qv, k, refr_e, refr_i,
                 pre_table, T, net_seeds, counts, stats):  # fmt: skip
    """B samples x P networks without learning; each sample encoded from its own seed, which
    also keys its stochastic-rounding streams."""
    P = W.shape[0]
    B = probs.shape[0]
    noq = np.zeros(4, np.float32)
    dummy = np.zeros((P, 2), np.float32)  # V_mem range is tracked while learning only
    for job in prange(P * B):
        p = job // B
        b = job % B
        ptr, idx = encode_isi(probs[b], T, seeds[b])
        _run_one(p, False, variant, ptr, idx, W, theta, sizes[p], fp, t_upd, noq, qv[p], noq,
                 k, refr_e, refr_i, pre_table, T, counts, b, stats, dummy, seeds[b], net_seeds[p])  # fmt: skip


@njit(cache=True, parallel=True)
def infer_trains_kernel(variant, ptrs, idxs, offs, W, theta, sizes, fp, t_upd, qv, k, refr_e,
                        refr_i, pre_table, T, seeds, net_seeds, counts, stats):  # fmt: skip
    """Like infer_kernel on given trains: sample b is ptrs[b], idxs[offs[b]:offs[b+1]]; ``seeds[b]``
    keys its stochastic-rounding streams."""
    P = W.shape[0]
    B = ptrs.shape[0]
    noq = np.zeros(4, np.float32)
    dummy = np.zeros((P, 2), np.float32)  # V_mem range is tracked while learning only
    for job in prange(P * B):
        p = job // B
        b = job % B
        _run_one(p, False, variant, ptrs[b], idxs[offs[b]:offs[b + 1]], W, theta, sizes[p], fp,
                 t_upd, noq, qv[p], noq, k, refr_e, refr_i, pre_table, T, counts, b, stats, dummy,
                 seeds[b], net_seeds[p])  # fmt: skip


def num_threads() -> int:
    return int(numba.get_num_threads()) if HAVE_NUMBA else 1
