"""The numba kernels' fast paths give the numbers of their element-by-element forms (issue 26).

Each fast path (vectorizing V_mem arithmetic on the grid, integer weight codes, several rows per
pass, the one-pass encoder) is compared with the scalar function it replaces on values that reach
its edges; the phase profile must not change what a kernel computes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinysnn.config import EncodingConfig, NetworkConfig
from tinysnn.network import build_population
from tinysnn.quant import parse_quant_arg
from tinysnn.quant.formats import NEAREST, NONE, STOCHASTIC, TRUNCATE
from tinysnn.sim import Simulator
from tinysnn.sim import numba_kernels as K
from tinysnn.train import apply_quant_rows, quantize_parameters

pytest.importorskip("numba")


def _grid_values(scale: float, lo: float, hi: float, n: int = 4000) -> np.ndarray:
    """float32 values on and off the grid 1/scale, inside and outside [lo, hi], halves included."""
    rng = np.random.default_rng(0)
    on = np.round(rng.uniform(lo, hi, n) * scale) / scale
    halves = on + 0.5 / scale
    off = rng.uniform(2 * lo - 1, 2 * hi + 1, n)
    return np.concatenate([on, halves, off, [lo, hi, 0.0, -0.0, lo - 1, hi + 1]]).astype(np.float32)


@pytest.mark.parametrize("mode", [TRUNCATE, NEAREST])
@pytest.mark.parametrize(
    "scale, lo, hi", [(1.0, -128.0, 127.0), (4.0, -64.0, 63.75), (256.0, 0.0, 255 / 256)]
)
def test_quantize_on_grid_is_quantize_scalar(mode: int, scale: float, lo: float, hi: float) -> None:
    s, lo32, hi32 = np.float32(scale), np.float32(lo), np.float32(hi)
    inv = np.float32(1.0) / s
    for x in _grid_values(scale, lo, hi):
        want = np.float32(K._qs(x, s, lo32, hi32, mode, np.float32(0.0)))
        got = K._quantize_on_grid(x, s, inv, lo32, hi32, mode == NEAREST)
        assert np.float32(got).tobytes() == want.tobytes(), (x, got, want)


@pytest.mark.parametrize("scale, leak", [(1.0, 167_000), (4.0, (1 << 24) - 1), (64.0, 1), (1.0, 4_000_000)])
def test_decay_on_grid_is_decay_toward_zero(scale: float, leak: int) -> None:
    s = np.float32(scale)
    for u in _grid_values(scale, -300.0, 300.0):
        want = K._decay_toward_zero(u, s, np.int64(leak), False, 0, 0)
        got = K._decay_on_grid(u, s, np.float32(1.0) / s, np.float64(leak))
        assert np.float32(got).tobytes() == np.float32(want).tobytes(), (u, got, want)
        if abs(u) * scale * leak < 2**31:
            got32 = K._decay_on_grid32(u, s, np.float32(1.0) / s, np.int32(leak))
            assert np.float32(got32).tobytes() == np.float32(want).tobytes(), (u, got32, want)


def test_vmem_kind_keeps_the_scalar_path_where_float64_is_not_exact() -> None:
    fp32 = np.zeros(3, np.float32)
    q = np.array([64.0, -512.0, 511.984375], np.float32)  # products past 2^31: float64
    assert K._vmem_kind(fp32, NONE, 167_000.0, -65.0, -60.0) == K.VMEM_FP32
    assert K._vmem_kind(q, TRUNCATE, 167_000.0, -65.0, -60.0) == K.VMEM_GRID
    sq8 = np.array([1.0, -193.0, 62.0], np.float32)  # 8-bit V_mem about rest: int32 products
    assert K._vmem_kind(sq8, NEAREST, 167_000.0, -65.0, -60.0) == K.VMEM_GRID32
    wide = np.array([2.0**20, -(2.0**11), 2.0**11], np.float32)  # codes of 2^32: product > 2^53
    assert K._vmem_kind(wide, TRUNCATE, float((1 << 24) - 1), 0.0, 0.0) == K.VMEM_SCALAR
    assert K._vmem_kind(q, STOCHASTIC, 167_000.0, -65.0, -60.0) == K.VMEM_SCALAR


@pytest.mark.parametrize("active", [0, 1, 3, 4, 7, 8, 9, 13, 17, 40])
def test_input_current_sums_rows_in_index_order(active: int) -> None:
    # weights spanning many binades, so a float64 sum in another order would differ in some entry
    rng = np.random.default_rng(active)
    W = (rng.random((60, 33)) * 10.0 ** rng.integers(-30, 3, (60, 33))).astype(np.float32)
    idx = np.sort(rng.choice(60, active, replace=False)).astype(np.int32)
    acc, cur = np.zeros(33), np.zeros(33, np.float32)
    K._input_current(W, idx, 0, active, 33, acc, cur)
    want = np.zeros(33)
    for i in idx:
        want += W[i].astype(np.float64)
    assert cur.tobytes() == want.astype(np.float32).tobytes()


@pytest.mark.parametrize("active", [0, 1, 3, 4, 5, 9, 40])
def test_input_current_from_codes_equals_the_float_sum(active: int) -> None:
    rng = np.random.default_rng(active)
    codes = rng.integers(0, 2**15, (60, 33)).astype(np.int16)
    scale = np.float32(128.0)
    W = (codes.astype(np.float32) / scale)[None]
    rows = np.array([[scale, 0.0, 512.0]], np.float32)
    got_codes, inv = K._weight_codes(W, np.array([33]), rows, np.array([TRUNCATE]))
    assert inv[0] == 1 / 128 and np.array_equal(got_codes[0], codes)
    idx = np.sort(rng.choice(60, active, replace=False)).astype(np.int32)
    a, b = np.zeros(33, np.float32), np.zeros(33, np.float32)
    K._input_current(W[0], idx, 0, active, 33, np.zeros(33), a)
    K._input_current_codes(codes, idx, 0, active, 33, np.zeros(33, np.int32), b, inv[0])
    assert a.tobytes() == b.tobytes()


def test_weight_codes_refuse_weights_off_the_grid() -> None:
    q = np.array([[128.0, 0.0, 2.0]] * 3, np.float32)
    W = np.full((3, 4, 5), 0.5, np.float32)
    W[1, 3, 2] = 0.5 + 2.0**-9  # off the grid
    W[2, 0, 0] = 300.0  # code 38400 does not fit int16
    _, inv = K._weight_codes(W, np.array([5, 5, 5]), q, np.full(3, TRUNCATE))
    assert list(inv) == [1 / 128, 0.0, 0.0]
    fp32 = np.zeros((3, 3), np.float32)
    assert list(K._weight_codes(W, np.array([5, 5, 5]), fp32, np.full(3, NONE))[1]) == [0.0, 0.0, 0.0]
    # rows on the grid, but the network keeps its weights in FP32: no codes
    W[1:] = 0.5
    _, inv = K._weight_codes(W, np.array([5, 5, 5]), q, np.array([NONE, TRUNCATE, NONE]))
    assert list(inv) == [0.0, 1 / 128, 0.0]


def test_encoder_draws_the_geometric_gaps_of_numba() -> None:
    # the one-pass encoder against numba's np.random.geometric, drawn in the two-pass order
    import numba

    @numba.njit
    def reference(prob, T, seed):
        np.random.seed(seed)
        steps, inputs = [], []
        for i in range(prob.shape[0]):
            p = prob[i]
            if p <= 0.0:
                continue
            t = np.random.geometric(p) - 1
            while t < T:
                steps.append(t)
                inputs.append(i)
                t += np.random.geometric(p)
        return steps, inputs

    rng = np.random.default_rng(3)
    # several Mersenne Twister blocks (312 uniforms each); seeds as numba takes them (low 32 bits)
    for seed, prob in zip(
        [0, 1, 2, 3, 2**32 + 7, 2**40 - 1],
        [
            rng.random(300).astype(np.float32) * 0.13,
            rng.random(50).astype(np.float32),
            np.zeros(5, np.float32),
            np.ones(4, np.float32),
            rng.random(784).astype(np.float32) * 0.13,
            rng.random(200).astype(np.float32) * 0.5,
        ],
    ):
        ptr, idx = K.encode_isi(prob, 60, seed)
        steps, inputs = reference(prob, 60, seed)
        dense = np.zeros((60, prob.shape[0]), bool)
        dense[np.array(steps, np.int64), np.array(inputs, np.int64)] = True
        want_ptr, want_idx = K.dense_to_csr(dense)
        assert np.array_equal(ptr, want_ptr) and np.array_equal(idx, want_idx)


def test_the_encoder_resumes_where_its_event_list_filled_up() -> None:
    # drawn into lists of 7 events, grown and resumed, the events are those of one large list
    prob = np.random.default_rng(5).random(100).astype(np.float32) * 0.4
    T, n_uni = 50, K._MT_UNIFORMS

    def draw(capacity: int):
        mt = np.empty(K._MT_N, np.uint32)
        K._mt_seed(mt, 11)
        u, log1m = np.empty(n_uni), np.empty(n_uni)
        cnt = np.zeros(T + 1, np.int64)
        ev_t, ev_i = np.empty(capacity, np.int32), np.empty(capacity, np.int32)
        k, i, t, m = n_uni, 0, -1, 0
        calls = 0
        while i < prob.shape[0]:
            k, i, t, m = K._draw_events(prob, T, mt, u, log1m, k, i, t, ev_t, ev_i, m, cnt)
            calls += 1
            ev_t = np.concatenate((ev_t, np.empty(7, np.int32)))
            ev_i = np.concatenate((ev_i, np.empty(7, np.int32)))
        return ev_t[:m], ev_i[:m], cnt, calls

    t_small, i_small, cnt_small, calls = draw(7)
    t_big, i_big, cnt_big, _ = draw(100_000)
    assert calls > 100  # it did fill up, many times
    assert np.array_equal(t_small, t_big) and np.array_equal(i_small, i_big)
    assert np.array_equal(cnt_small, cnt_big)


@pytest.mark.parametrize("quant", [None, "weights=Q1.7,vmem=SQ6.2,vth=Q7.1,rounding=truncate"])
def test_the_phase_profile_counts_and_changes_nothing(quant) -> None:
    enc = EncodingConfig(time_steps=40)
    imgs = (torch.rand(4, 30, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    results = []
    for profiled in (False, True):
        pop = build_population(NetworkConfig(variant="diehl_cook", n_neurons=12, n_input=30), seeds=[4])
        if quant:
            apply_quant_rows(pop, [parse_quant_arg(quant)], training=False)
            quantize_parameters(pop)
        sim = Simulator(pop, enc, seed=1, backend="numba")
        if profiled:
            sim._impl.profile = np.zeros(len(K.PHASES), np.int64)
        counts = [sim.train_sample(imgs[k], k) for k in range(3)] + [sim.infer(imgs, 2)]
        results.append((counts, pop.weights.clone(), pop.theta.clone(), sim._impl.profile.copy()))
    (c0, w0, th0, p0), (c1, w1, th1, p1) = results
    assert all(torch.equal(a, b) for a, b in zip(c0, c1))
    assert torch.equal(w0, w1) and torch.equal(th0, th1)
    assert p0.size == 0 and (p1 > 0).all(), dict(zip(K.PHASES, p1))


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("variant", ["diehl_cook", "tinysnn"])
def test_a_chunk_of_samples_learns_as_the_samples_one_by_one(backend, variant) -> None:
    # Simulator.train_samples (the training loop's chunks) against train_sample sample by sample:
    # the same counts, statistics, weights, thresholds and V_mem range, stochastic rounding included
    enc = EncodingConfig(time_steps=30)
    imgs = (torch.rand(7, 40, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    spec = parse_quant_arg("weights=UQ0.8,vmem=SQ8.0,vth=Q7.1,rounding=stochastic,scheme=itq")
    results = []
    for chunked in (False, True):
        nets = [NetworkConfig(variant=variant, n_neurons=n, n_input=40) for n in (6, 9)]
        pop = build_population(nets, seeds=[1, 2])
        apply_quant_rows(pop, [spec, spec], training=True)
        quantize_parameters(pop)
        sim = Simulator(pop, enc, seed=4, backend=backend)
        counts, stats = [], []
        for first, last in [(0, 3), (3, 7)] if chunked else [(k, k + 1) for k in range(7)]:
            counts.append(sim.train_samples(imgs[first:last], first))
            stats.append(sim.last_stats)
        results.append(
            (torch.cat(counts, dim=1), torch.cat(stats, dim=1), pop.weights, pop.theta, sim.vmem_range)
        )
    assert results[0][0].shape == (2, 7, 9)
    for one_by_one, chunk in zip(*results):
        assert torch.equal(one_by_one, chunk)
