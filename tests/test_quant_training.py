"""Quantization inside training (issue 5): ITQ keeps values on their grids, PTQ leaves training alone.

Also checks the numba kernels' vectorized normalization pass against the scalar quantizer it
replaces (truncation and nearest: bit for bit; stochastic: on the grid, exact values exact, and
unbiased within a bound from the sample size).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tinysnn.config import EncodingConfig, NetworkConfig
from tinysnn.data import Split
from tinysnn.network import build_population
from tinysnn.quant import parse_quant_arg
from tinysnn.simulate import Simulator
from tinysnn.train import apply_quant_rows, quantize_parameters, run

ENC = EncodingConfig(time_steps=60)


def _images(n: int, n_in: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, n_in, generator=g) * 600).clamp(max=255).to(torch.uint8)


def _population(variant: str, n_networks: int = 3):
    nets = [NetworkConfig(variant=variant, n_neurons=20, n_input=50, norm_total=5.0, one_spike=True)]
    return build_population(nets * n_networks, seeds=list(range(1, n_networks + 1)))


def _on_grid(x: torch.Tensor, frac_bits: int) -> bool:
    y = x.double() * 2.0**frac_bits
    return bool(torch.equal(y, torch.floor(y)))


def _backends():
    out = ["torch"]
    try:
        import numba  # noqa: F401

        out.append("numba")
    except ImportError:  # pragma: no cover
        pass
    return out


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("variant", ["diehl_cook", "tinysnn"])
def test_itq_keeps_weights_and_thresholds_on_the_grid_after_every_sample(backend: str, variant: str) -> None:
    pop = _population(variant)
    texts = ["weights=UQ0.6", "weights=UQ0.5,vmem=Q9.3,vth=Q8.4", "weights=UQ0.7"]
    modes = ["truncate", "nearest", "stochastic"]
    specs = [parse_quant_arg(t, rounding=m, scheme="itq") for t, m in zip(texts, modes)]
    apply_quant_rows(pop, specs, training=True)
    quantize_parameters(pop)
    start = pop.weights.clone()
    sim = Simulator(pop, ENC, seed=3, backend=backend)
    imgs = _images(12, 50)
    spikes = 0
    vth = pop.exc.v_th
    for k in range(12):
        spikes += int(sim.train_sample(imgs[k], k).sum())
        for p, frac in enumerate((6, 5, 7)):
            assert _on_grid(pop.weights[p], frac), f"network {p} left the weight grid at sample {k}"
            assert float(pop.weights[p].min()) >= 0.0 and float(pop.weights[p].max()) <= 1.0
        assert _on_grid(vth + pop.theta[1], 4), f"V_th left its grid at sample {k}"
    assert spikes > 20  # learning ran
    assert not torch.equal(start, pop.weights)  # and changed the weights


@pytest.mark.parametrize("variant", ["diehl_cook", "tinysnn"])
def test_itq_weights_are_on_the_grid_after_every_step_of_a_sample(variant: str) -> None:
    from tinysnn import sim_torch
    from tinysnn.encoding import make_generator, poisson

    pop = _population(variant)
    specs = [
        parse_quant_arg("weights=UQ0.6", rounding=m, scheme="itq")
        for m in ("truncate", "nearest", "stochastic")
    ]
    apply_quant_rows(pop, specs, training=True)
    quantize_parameters(pop)
    g = make_generator(1)
    imgs = _images(4, 50, seed=2)
    changed = 0
    for k in range(4):
        rec: dict = {}
        before = pop.weights.clone()
        trains = poisson(imgs[k], ENC, g)[:, None, :]
        sim_torch.run_window(pop, trains, ENC, learn=True, gen=make_generator(k), record=rec)
        assert len(rec["w"]) == ENC.time_steps
        for t, w in enumerate(rec["w"]):
            assert _on_grid(w, 6), f"sample {k}: a weight left the grid at step {t}"
        changed += int(sum(not torch.equal(a, b) for a, b in zip([before] + rec["w"][:-1], rec["w"])))
        assert _on_grid(pop.weights, 6)
    assert changed > 5  # the steps did update weights


def test_ptq_trains_exactly_as_fp32_and_quantizes_once_after() -> None:
    n_in = 50
    imgs = _images(40, n_in, seed=1)
    labels = torch.arange(40) % 4
    train = Split(imgs[:30], labels[:30], (5, 10), "toy:train")
    test = Split(imgs[30:], labels[30:], (5, 10), "toy:test")
    ptq = parse_quant_arg("weights=UQ0.4,vth=Q8.2", rounding="truncate", scheme="ptq")
    trained = {}

    def keep(name):
        return lambda pop: trained.__setitem__(name, (pop.weights.clone(), pop.theta.clone()))

    pops = {name: _population("tinysnn", 1) for name in ("fp32", "ptq")}
    run(pops["fp32"], ENC, train, test, quant=[None], progress=False, n_classes=4, after_train=keep("fp32"))
    run(pops["ptq"], ENC, train, test, quant=[ptq], progress=False, n_classes=4, after_train=keep("ptq"))
    # training itself is untouched: the same weights and thresholds bit for bit
    assert torch.equal(trained["fp32"][0], trained["ptq"][0])
    assert torch.equal(trained["fp32"][1], trained["ptq"][1])
    assert not _on_grid(trained["ptq"][0], 4)  # FP32 weights are off the 4-bit grid ...
    w = trained["fp32"][0]
    assert torch.equal(pops["ptq"].weights, torch.floor(w * 16) / 16)  # ... and truncated once after
    assert torch.equal(pops["fp32"].weights, w)


def test_settled_columns_by_hand() -> None:
    from tinysnn.learning import settled_columns

    q = 0.25  # f = 2; four inputs, so the slack is n_in q = 1.0 around a total of 2.0
    w = torch.tensor([[[0.5, 0.5, 0.25, 0.75], [0.5, 0.5, 0.25, 0.75], [0.25, 0.25, 0.25, 0.5],
                       [0.25, 0.25, 0.0, 0.75]]])  # column sums 1.5, 1.5, 0.75, 2.75  # fmt: skip
    total = torch.tensor([2.0])
    fired = torch.tensor([[False, True, False, False]])

    def rows(mode: int) -> torch.Tensor:
        return torch.tensor([[1 / q, 0.0, 1 - q, float(mode)]])

    # truncation: silent and total - 1 < sum <= total -> settled; fired, far below, or above -> not
    assert settled_columns(w, total, fired, rows(1)).tolist() == [[True, False, False, False]]
    # nearest: |sum - total| <= 0.5
    assert settled_columns(w, total, fired, rows(2)).tolist() == [[True, False, False, False]]
    w2 = w.clone()
    w2[0, 3, 3] = 0.25  # column 3 sums to 2.25: within nearest's slack, above truncation's
    assert settled_columns(w2, total, fired, rows(2)).tolist() == [[True, False, False, True]]
    assert settled_columns(w2, total, fired, rows(1)).tolist() == [[True, False, False, False]]
    # stochastic rounding and FP32 normalize every column
    assert not settled_columns(w, total, fired, rows(3)).any()
    assert not settled_columns(w, total, fired, rows(0)).any()


@pytest.mark.parametrize("backend", _backends())
def test_itq_truncation_leaves_settled_silent_columns_alone(backend: str) -> None:
    pop = _population("tinysnn", 2)
    specs = [parse_quant_arg("weights=UQ0.6", rounding=m, scheme="itq") for m in ("truncate", "nearest")]
    apply_quant_rows(pop, specs, training=True)
    quantize_parameters(pop)
    sim = Simulator(pop, ENC, seed=5, backend=backend)
    imgs = _images(12, 50, seed=4)
    left_alone = renormalized = 0
    for k in range(12):
        before = pop.weights.clone()
        counts = sim.train_sample(imgs[k], k).reshape(2, -1)
        sums = before.double().sum(dim=1)
        for p, half in ((0, 1.0), (1, 0.5)):
            slack = 50 * 2.0**-6
            for j in range(pop.weights.shape[2]):
                gap = sums[p, j].item() - 5.0
                settled = (-slack < gap <= 0.0) if half == 1.0 else abs(gap) <= slack / 2
                if int(counts[p, j]) == 0 and settled:
                    assert torch.equal(pop.weights[p, :, j], before[p, :, j]), (k, p, j)
                    left_alone += 1
                elif abs(gap) > 1e-9 and int(counts[p, j]) == 0:
                    assert not torch.equal(pop.weights[p, :, j], before[p, :, j]), (k, p, j)
                    renormalized += 1
    assert left_alone > 50 and renormalized > 0  # both branches ran (fresh columns are renormalized)


# ---- the numba normalization pass --------------------------------------------------------------

numba = pytest.importorskip("numba")


def _kernels():
    from tinysnn import sim_numba as K

    @numba.njit
    def norm_rows(w, colsum, wmax, qrow, seed):
        np.random.seed(seed)
        for i in range(w.shape[0]):
            K._norm_row_q(w[i], colsum, wmax, qrow)

    @numba.njit
    def fix_rows(w, colsum, wmax, qrow):
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                w[i, j] = K._fix_w(w[i, j] * colsum[j], wmax, qrow)

    return norm_rows, fix_rows


def _qrow(frac: int, mode: int, hi: float = None) -> np.ndarray:
    top = (1 - 2.0**-frac) if hi is None else hi
    return np.array([2.0**frac, 0.0, top, mode], np.float32)


def _cases(rng: np.random.Generator, frac: int) -> np.ndarray:
    w = rng.uniform(-0.2, 1.3, size=(64, 40)).astype(np.float32)
    w[0] = (rng.integers(0, 2**frac, size=40) / 2.0**frac).astype(np.float32)  # on the grid
    w[1] = ((rng.integers(0, 2**frac, size=40) + 0.5) / 2.0**frac).astype(np.float32)  # exact ties
    w[2, :4] = [0.0, 1.0, 5.0, -1.0]
    return w


@pytest.mark.parametrize("mode", [1, 2])  # truncation, nearest
@pytest.mark.parametrize("frac", [3, 8, 16])
def test_normalization_pass_equals_the_scalar_quantizer_bit_for_bit(mode: int, frac: int) -> None:
    norm_rows, fix_rows = _kernels()
    rng = np.random.default_rng(frac)
    w = _cases(rng, frac)
    colsum = rng.uniform(0.5, 1.5, size=40).astype(np.float32)
    colsum[:8] = 1.0
    for wmax in (np.float32(1.0), np.float32(0.75)):
        a, b = w.copy(), w.copy()
        norm_rows(a, colsum, wmax, _qrow(frac, mode), 0)
        fix_rows(b, colsum, wmax, _qrow(frac, mode))
        assert np.array_equal(a.view(np.int32), b.view(np.int32))


def test_stochastic_normalization_is_on_the_grid_exact_on_the_grid_and_unbiased() -> None:
    norm_rows, _ = _kernels()
    frac = 6
    q = 2.0**-frac
    rng = np.random.default_rng(0)
    ones = np.ones(256, np.float32)
    grid = (rng.integers(0, 2**frac, size=(4, 256)) * q).astype(np.float32)
    out = grid.copy()
    norm_rows(out, ones, np.float32(1.0), _qrow(frac, 3), 1)
    assert np.array_equal(out, grid)  # values on the grid stay exact
    x = rng.uniform(0.0, 1.0 - q, size=(400, 256)).astype(np.float32)
    out = x.copy()
    norm_rows(out, ones, np.float32(1.0), _qrow(frac, 3), 2)
    assert np.array_equal(out * 2**frac, np.floor(out * 2**frac))
    assert np.all(out >= np.floor(x / q) * q) and np.all(out <= np.floor(x / q) * q + q)
    err = (out.astype(np.float64) - x).ravel()
    # each error lies in (-q, q) with mean 0 when unbiased: 5 standard errors of the mean
    bound = 5 * q / math.sqrt(err.size)
    assert abs(err.mean()) < bound, (err.mean(), bound)
    # and truncation of the same values is biased by about -q/2, far outside that bound
    trunc = (np.floor(x / q) * q - x).ravel()
    assert trunc.mean() < -10 * bound
    again = x.copy()
    norm_rows(again, ones, np.float32(1.0), _qrow(frac, 3), 2)
    assert np.array_equal(again, out)  # seeded


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_normalization_pass_touches_only_the_networks_own_columns(mode: int) -> None:
    # A padded population row is wider than a small network's column sums; reading past the
    # sums gave NaN weights in CI (uninitialized memory), so the pass takes its length from them.
    norm_rows, _ = _kernels()
    w = np.full((2, 8), 0.3, np.float32)
    norm_rows(w, np.full(5, 1.5, np.float32), np.float32(1.0), _qrow(6, mode, hi=1.0), 0)
    assert (w[:, 5:] == np.float32(0.3)).all()  # off the 6-bit grid: any pass would have moved it
    assert np.isfinite(w[:, :5]).all() and (w[:, :5] > 0.4).all()


@pytest.mark.parametrize("rounding", ["truncate", "nearest", "stochastic"])
def test_itq_mixed_sizes_keep_padding_zero_and_weights_finite(rounding: str) -> None:
    nets = [NetworkConfig(variant="tinysnn", n_neurons=n, n_input=50, norm_total=5.0, one_spike=True)
            for n in (30, 12)]  # fmt: skip
    pop = build_population(nets, seeds=[1, 2])
    specs = [parse_quant_arg("weights=UQ0.7", rounding=rounding, scheme="itq")] * 2
    apply_quant_rows(pop, specs, training=True)
    quantize_parameters(pop)
    sim = Simulator(pop, ENC, seed=4, backend="numba")
    imgs = _images(8, 50)
    for k in range(8):
        sim.train_sample(imgs[k], k)
        assert bool(torch.isfinite(pop.weights).all()), f"non-finite weight after sample {k}"
        assert float(pop.weights[1, :, 12:].abs().max()) == 0.0, f"padding changed after sample {k}"
    assert _on_grid(pop.weights, 7)
