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
from tinysnn.network import Population, build_population
from tinysnn.quant import NEAREST, NONE, STOCHASTIC, TRUNCATE, parse_quant_arg
from tinysnn.quant.formats import NORM_APPORTION, NORM_PROPORTIONAL, NORM_SUM
from tinysnn.sim import Simulator
from tinysnn.train import RunCallbacks, RunSpec, apply_quant_rows, quantize_parameters, run

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
    texts = ["weights=UQ0.6", "weights=UQ0.5,vmem=Q9.3,vth=Q8.5", "weights=UQ0.7"]
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
        assert _on_grid(vth + pop.theta[1], 5), f"V_th left its grid at sample {k}"
    assert spikes > 20  # learning ran
    assert not torch.equal(start, pop.weights)  # and changed the weights


@pytest.mark.parametrize("variant", ["diehl_cook", "tinysnn"])
def test_itq_weights_are_on_the_grid_after_every_step_of_a_sample(variant: str) -> None:
    from tinysnn.encoding import make_generator, poisson
    from tinysnn.sim import torch_backend

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
        torch_backend.run_window(pop, trains, ENC, learn=True, sample_seeds=[k], record=rec)
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

    class Keep(RunCallbacks):
        def __init__(self, name: str) -> None:
            self.name = name

        def after_train(self, pop: Population) -> None:
            trained[self.name] = (pop.weights.clone(), pop.theta.clone())

    pops = {name: _population("tinysnn", 1) for name in ("fp32", "ptq")}
    run(RunSpec(pops["fp32"], ENC, train, test, quant=[None], progress=False, n_classes=4), Keep("fp32"))
    run(RunSpec(pops["ptq"], ENC, train, test, quant=[ptq], progress=False, n_classes=4), Keep("ptq"))
    # training itself is untouched: the same weights and thresholds bit for bit
    assert torch.equal(trained["fp32"][0], trained["ptq"][0])
    assert torch.equal(trained["fp32"][1], trained["ptq"][1])
    assert not _on_grid(trained["ptq"][0], 4)  # FP32 weights are off the 4-bit grid ...
    w = trained["fp32"][0]
    assert torch.equal(pops["ptq"].weights, torch.floor(w * 16) / 16)  # ... and truncated once after
    assert torch.equal(pops["fp32"].weights, w)


# ---- decision 1: ITQ normalization keeps the column sum -------------------------------------------

# Hand columns (one network, n_in inputs x 1 neuron) and what the sum-preserving rule gives.
# q = 1/4 (f = 2). Each case: (weights of the column, total, w_max, format's hi, expected).
_SUM_CASES = [
    # sum 2.25 -> 2: scaled codes 1.78 x 3, 2.67 floor to 1, 1, 1, 2 (5 steps of the 8 wanted);
    # the three largest remainders (.78) take the missing 3 steps. Plain truncation: 1.25.
    ([0.5, 0.5, 0.5, 0.75], 2.0, 1.0, 0.75, [0.5, 0.5, 0.5, 0.5]),
    # four equal remainders (.75) for 3 missing steps: the lowest indices take them
    ([0.25, 0.25, 0.25, 0.25, 1.0], 1.5, 2.0, 1.75, [0.25, 0.25, 0.25, 0.0, 0.75]),
    # the largest remainder (.2) belongs to a weight at w_max = 0.8 (a step would pass it): the
    # next (.19, tied with the third: lowest index) takes the step
    ([0.8, 0.25, 0.25], 1.55, 0.8, 1.75, [0.75, 0.5, 0.25]),
    # already at the total on the grid: left exactly as it is
    ([0.5, 0.25, 0.75, 0.5], 2.0, 1.0, 0.75, [0.5, 0.25, 0.75, 0.5]),
]


def _sum_preserving_torch(col, total, wmax, hi, rule=NORM_SUM, u=0.0):
    from tinysnn.sim.equations import normalize_sum_preserving

    w = torch.tensor(col, dtype=torch.float32).view(1, -1, 1)
    rows = torch.tensor([[4.0, 0.0, hi]])
    out = normalize_sum_preserving(
        w,
        torch.tensor([total]),
        torch.ones((1, 1), dtype=torch.bool),
        rows,
        torch.tensor([wmax]),
        torch.tensor([float(rule)]),
        torch.tensor([[u]], dtype=torch.float64),
    )
    return out.view(-1).tolist()


def _sum_preserving_numba(col, total, wmax, hi, rule=NORM_SUM, u=0.0):
    from tinysnn.sim import numba_kernels as K

    w = np.array(col, np.float32).reshape(1, -1, 1)
    n_in = w.shape[1]
    target = int(np.floor(np.float64(np.float32(total)) * 4.0))
    if float(w.astype(np.float64).sum()) * 4.0 != target:  # the kernel skips columns at the target
        factor = np.float32(total) / np.float32(w.astype(np.float64).sum())
        qrow = np.array([4.0, 0.0, hi], np.float32)
        K._normalize_sum_preserving(
            w[0],
            0,
            n_in,
            factor,
            np.float32(wmax),
            qrow,
            target,
            np.float32(rule),
            u,
            np.empty(n_in, np.float32),
            np.empty(n_in, np.float32),
        )
    return w.reshape(-1).tolist()


@pytest.mark.parametrize("case", range(len(_SUM_CASES)))
@pytest.mark.parametrize("impl", [_sum_preserving_torch, _sum_preserving_numba])
def test_sum_preserving_normalization_by_hand(case: int, impl) -> None:
    col, total, wmax, hi, expected = _SUM_CASES[case]
    out = impl(col, total, wmax, hi)
    assert out == expected
    assert sum(out) == pytest.approx(min(total, sum(expected)))
    assert all(v * 4 == int(v * 4) for v in out) and max(out) <= min(wmax, hi)


# One column, three rules (q = 1/4): codes 1, 2, 4 (1.75) scaled to 1.5 give 0.857, 1.714, 3.429 steps,
# floored 0, 1, 3: two steps are missing. ``sum`` gives them to the largest remainders (.857, .714);
# ``proportional`` to the largest weights (3.429, 1.714); ``apportion`` by where the draw's points
# u, u + 1 fall on the running remainders .857, 1.571, 2.0.
_RULE_COL = ([0.25, 0.5, 1.0], 1.5, 2.0, 1.75)
_RULE_CASES = [
    (NORM_SUM, 0.0, [0.25, 0.5, 0.75]),
    (NORM_PROPORTIONAL, 0.0, [0.0, 0.5, 1.0]),
    (NORM_APPORTION, 0.0, [0.25, 0.5, 0.75]),  # points 0, 1: in the first two intervals
    (NORM_APPORTION, 0.5, [0.25, 0.5, 0.75]),  # points 0.5, 1.5
    (NORM_APPORTION, 0.9, [0.0, 0.5, 1.0]),  # points 0.9, 1.9: past .857
]


@pytest.mark.parametrize("case", range(len(_RULE_CASES)))
@pytest.mark.parametrize("impl", [_sum_preserving_torch, _sum_preserving_numba])
def test_column_keeping_rules_by_hand(case: int, impl) -> None:
    rule, u, expected = _RULE_CASES[case]
    assert impl(*_RULE_COL, rule=rule, u=u) == pytest.approx(expected)


def test_apportion_is_unbiased_and_keeps_the_total() -> None:
    # over draws spread evenly on [0, 1), each weight steps with probability remainder x m / R:
    # the mean code is FP32's scaled weight, and every draw gives exactly the missing steps
    rng = np.random.default_rng(3)
    col = (rng.integers(0, 12, size=40) / 4.0).tolist()
    total = math.floor(0.9 * sum(col) * 4) / 4  # a whole number of steps: R = D, so pi = remainder
    fp32 = np.array(col) * total / sum(col)
    draws = np.array(
        [_sum_preserving_torch(col, total, 4.0, 3.75, NORM_APPORTION, k / 512) for k in range(512)]
    )
    assert np.all(draws.sum(axis=1) == total)
    assert np.allclose(draws.mean(axis=0), fp32, atol=1e-3)
    assert len({tuple(d) for d in draws}) > 10  # the draw decides
    again = _sum_preserving_torch(col, total, 4.0, 3.75, NORM_APPORTION, 77 / 512)
    assert again == draws[77].tolist()  # and nothing else does


@pytest.mark.parametrize("rule", [NORM_SUM, NORM_PROPORTIONAL, NORM_APPORTION])
def test_column_keeping_rules_agree_between_backends(rule: int) -> None:
    rng = np.random.default_rng(11)
    for trial in range(25):
        col = (rng.integers(0, 16, size=30) / 4.0).tolist()
        total = float(rng.uniform(0.5, 1.2) * sum(col))
        u = float(rng.integers(0, 1 << 24)) * 2.0**-24
        torch_out = _sum_preserving_torch(col, total, 3.0, 3.75, rule, u)
        assert torch_out == _sum_preserving_numba(col, total, 3.0, 3.75, rule, u), trial


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("rounding", ["truncate", "nearest"])
def test_itq_columns_keep_their_total_on_the_grid(backend: str, rounding: str) -> None:
    # after every sample every column of a network under a column-keeping rule (sum,
    # proportional, apportion) sums to floor(total 2^f) steps; the plain rule's truncated columns
    # fall short of it
    keeping = ("sum", "proportional", "apportion")
    pop = _population("tinysnn", len(keeping) + 1)
    specs = [
        parse_quant_arg("weights=UQ0.6", rounding=rounding, scheme="itq", normalization=n)
        for n in keeping + ("plain",)
    ]
    apply_quant_rows(pop, specs, training=True)
    quantize_parameters(pop)
    sim = Simulator(pop, ENC, seed=5, backend=backend)
    imgs = _images(10, 50, seed=4)
    short = 0
    for k in range(10):
        sim.train_sample(imgs[k], k)
        steps = pop.weights.double().sum(dim=1) * 64  # (P, N) column sums in steps
        for p in range(len(keeping)):
            assert torch.equal(steps[p], torch.full_like(steps[p], 320.0)), (
                f"{keeping[p]}, sample {k}"
            )  # 5.0 x 64
        short += int((steps[-1] < 320).sum())
    if rounding == "truncate":
        assert short > 0


def test_plain_normalization_is_selectable_and_named() -> None:
    spec = parse_quant_arg("weights=UQ0.8,scheme=itq,norm=plain")
    assert spec.normalization.value == "plain"
    assert spec.to_text().endswith(",norm=plain")
    assert "norm" not in parse_quant_arg("weights=UQ0.8,scheme=itq").to_text()  # default: texts unchanged
    assert parse_quant_arg(spec.to_text()) == spec


def test_the_default_rule_is_proportional_and_texts_keep_their_meaning() -> None:
    from tinysnn.quant import DEFAULT_NORMALIZATION, Normalization, QFormat, QuantSpec

    assert DEFAULT_NORMALIZATION is Normalization.PROPORTIONAL
    new = QuantSpec(weights=QFormat(0, 8), rounding="truncate", scheme="itq")
    assert new.normalization is Normalization.PROPORTIONAL and new.to_text().endswith(",norm=proportional")
    assert parse_quant_arg(new.to_text()) == new
    # a text without norm= was written under sum, and still means sum
    assert parse_quant_arg("weights=UQ0.8,scheme=itq").normalization is Normalization.SUM
    # PTQ never normalizes quantized weights: its specs all carry sum, and their texts never name a rule
    ptq = QuantSpec(weights=QFormat(0, 8, False), normalization="plain")
    assert ptq.normalization is Normalization.SUM and ptq == parse_quant_arg("weights=UQ0.8")
    assert "norm" not in QuantSpec(weights=QFormat(0, 8)).to_text()
    with pytest.raises(ValueError, match="unknown normalization 'floor'"):
        parse_quant_arg("weights=UQ0.8,norm=floor")


def test_settled_columns_by_hand() -> None:
    from tinysnn.sim.equations import settled_columns

    q = 0.25  # f = 2; four inputs, so the slack is n_in q = 1.0 around a total of 2.0
    w = torch.tensor([[[0.50, 0.50, 0.25, 0.75],
                       [0.50, 0.50, 0.25, 0.75],
                       [0.25, 0.25, 0.25, 0.50],
                       [0.25, 0.25, 0.00, 0.75]]])  # column sums 1.5, 1.5, 0.75, 2.75  # fmt: skip
    total = torch.tensor([2.0])
    fired = torch.tensor([[False, True, False, False]])

    rows = torch.tensor([[1 / q, 0.0, 1 - q]])

    def modes(mode: int) -> torch.Tensor:
        return torch.tensor([mode])

    # truncation: silent and total - 1 < sum <= total -> settled; fired, far below, or above -> not
    assert settled_columns(w, total, fired, rows, modes(TRUNCATE)).tolist() == [[True, False, False, False]]
    # nearest: |sum - total| <= 0.5
    assert settled_columns(w, total, fired, rows, modes(NEAREST)).tolist() == [[True, False, False, False]]
    w2 = w.clone()
    w2[0, 3, 3] = 0.25  # column 3 sums to 2.25: within nearest's slack, above truncation's
    assert settled_columns(w2, total, fired, rows, modes(NEAREST)).tolist() == [[True, False, False, True]]
    assert settled_columns(w2, total, fired, rows, modes(TRUNCATE)).tolist() == [[True, False, False, False]]
    # stochastic rounding and FP32 normalize every column
    assert not settled_columns(w, total, fired, rows, modes(STOCHASTIC)).any()
    assert not settled_columns(w, total, fired, rows, modes(NONE)).any()


@pytest.mark.parametrize("backend", _backends())
def test_settled_rule_leaves_settled_silent_columns_alone(backend: str) -> None:
    pop = _population("tinysnn", 2)
    specs = [
        parse_quant_arg("weights=UQ0.6", rounding=m, scheme="itq", normalization="settled")
        for m in ("truncate", "nearest")
    ]
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


# ---- decision 2: decays are decrements rounded toward zero -----------------------------------------


def _decay_both(values, frac: int, leak: int):
    from tinysnn.quant import decay_toward_zero
    from tinysnn.sim import numba_kernels as K

    u = torch.tensor(values, dtype=torch.float32)
    a = decay_toward_zero(u, float(2**frac), leak).tolist()
    b = [
        float(K._decay_toward_zero(np.float32(x), np.float32(2**frac), leak, False, np.int64(0), 0))
        for x in values
    ]
    assert a == b  # the two backends compute the same integers
    return a


def test_decay_is_a_decrement_rounded_toward_zero_on_hand_values() -> None:
    from tinysnn.config import EncodingConfig as Enc
    from tinysnn.network import constants

    pop = _population("tinysnn", 1)
    c = constants(pop, Enc(time_steps=60))
    dec = math.exp(-1 / pop.exc.tau)
    assert c.leak_exc == round((1 - dec) * 2**24)
    # V_mem - v_rest at Q9.4 (step 1/16): -30 mV leaks 4.78 steps -> 4; 13 mV 2.07 -> 2;
    # half a mV either side of rest would leak 0.08 of a step -> nothing (never faster than FP32)
    out = _decay_both([-30.0, 13.0, -0.5, 0.5, 0.0], 4, c.leak_exc)
    assert out == [-30.0 + 4 / 16, 13.0 - 2 / 16, -0.5, 0.5, 0.0]
    for x, y in zip([-30.0, 13.0, -0.5, 0.5], out):
        assert abs(y) <= abs(x) and y * x >= 0  # toward rest, never across it
        assert abs(y) >= abs(x * dec) - 1e-6  # never faster than FP32
    # truncation (floor) of the FP32 decay moves -30 the same way but +13 by two steps, and the
    # plain floor of -0.5 * dec stays at -0.5 while that of +0.5 drops a whole step: not symmetric
    assert math.floor(0.5 * dec * 16) / 16 == 0.4375


@pytest.mark.parametrize("backend", _backends())
def test_quantized_theta_decays_toward_zero_and_never_faster_than_fp32(backend: str) -> None:
    nets = [NetworkConfig(variant="tinysnn", n_neurons=4, n_input=50, norm_total=5.0, tau_theta=1000.0)]
    pop = build_population(nets * 2, seeds=[1, 2])
    specs = [parse_quant_arg("weights=UQ0.6,vth=Q9.5", scheme="itq"), None]
    apply_quant_rows(pop, specs, training=True)
    pop.theta[:] = torch.tensor([2.0, 0.5, 0.0, 31.0])
    sim = Simulator(pop, ENC, seed=1, backend=backend)
    sim.train_sample(torch.zeros(50, dtype=torch.uint8), 0)  # no input: no spike, only the decay
    dec = math.exp(-60 / 1000.0)
    leak = round((1 - dec) * 2**24)
    expected = [(x - (int(x * 32) * leak >> 24) / 32) for x in (2.0, 0.5, 0.0, 31.0)]
    assert pop.theta[0].tolist() == expected
    # 2 mV (64 steps) loses 3.7 -> 3 steps; 0.5 mV would lose 0.93 of a step -> nothing
    assert expected[0] == 2.0 - 3 / 32 and expected[1] == 0.5 and expected[3] == 31.0 - 57 / 32
    fp32 = pop.theta[1]
    assert torch.all(pop.theta[0] >= fp32 - 1e-6) and torch.all(pop.theta[0] >= 0)


def test_inhibited_membrane_leaks_back_to_rest_without_crossing() -> None:
    from tinysnn.sim import torch_backend

    # neuron 0 fires at step 0 and inhibits the others by w_inh = 20 mV at step 1; after that no input
    net = NetworkConfig(variant="tinysnn", n_neurons=3, n_input=3, norm_total=1.0, w_inh=20.0)
    pop = build_population(net, seeds=1)
    pop.weights[0] = torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    for rounding in ("truncate", "nearest"):
        apply_quant_rows(pop, [parse_quant_arg("vmem=Q9.4", rounding=rounding, scheme="itq")], training=True)
        trains = torch.zeros((200, 1, 3), dtype=torch.bool)
        trains[0, 0, 0] = True
        rec: dict = {}
        torch_backend.run_window(pop, trains, EncodingConfig(time_steps=200), learn=False, record=rec)
        u = torch.stack(rec["v"])[:, 0, 0, 1].double() + 65.0  # neuron 1, V_mem - v_rest
        assert float(u[1]) == -20.0
        assert bool((u[2:] >= u[1:-1]).all()) and bool((u[1:] <= 0).all())  # back toward rest, never past
        # it leaks back until the decrement falls below one step: 100 steps x 0.00995 < 1 at -6.25 mV
        assert float(u[-1]) == -6.25 and float(u[-2]) == -6.25


# ---- decision 3: a V_th format must hold theta+ -----------------------------------------------------


def test_itq_vth_format_coarser_than_theta_plus_is_refused_with_the_fix() -> None:
    pop = _population("tinysnn", 1)
    spec = parse_quant_arg("weights=Q1.7,vmem=Q9.4,vth=Q9.4", scheme="itq")
    with pytest.raises(ValueError) as err:
        apply_quant_rows(pop, [spec], training=True)
    msg = str(err.value)
    assert (
        "theta+ = 0.05 mV" in msg and "0.0625 mV" in msg and "at least 5 fractional bits (e.g. Q9.5)" in msg
    )
    apply_quant_rows(pop, [parse_quant_arg("weights=Q1.7,vmem=Q9.4,vth=Q9.5", scheme="itq")], training=True)
    # PTQ never adds theta+ on the grid: a coarse V_th is allowed there
    apply_quant_rows(pop, [parse_quant_arg("weights=Q1.7,vmem=Q9.4,vth=Q9.4", scheme="ptq")], training=False)


def test_cli_refuses_the_vth_format_before_loading_data(capsys) -> None:
    from tinysnn.cli import main

    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--data-root",
            "/nonexistent",
            "--scheme",
            "itq",
            "--quant",
            "weights=Q1.7,vth=Q9.3",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "theta+ = 0.05 mV" in err[0] and "Q9.5" in err[0]


def test_range_helper_derives_vth_fraction_bits_from_theta_plus() -> None:
    from tinysnn.quant import formats_for_total_bits, min_frac_bits_for_step

    assert min_frac_bits_for_step(0.05) == 5 and min_frac_bits_for_step(0.0625) == 4
    assert min_frac_bits_for_step(1.0) == 0
    ranges = {"vth": (0.0, 75.6)}  # theta = V_th - v_th, 7 integer bits
    assert str(formats_for_total_bits(12, ranges, {"vth": 5})["vth"]) == "Q7.5"
    assert str(formats_for_total_bits(10, ranges, {"vth": 5})["vth"]) == "Q5.5"  # saturates theta at 32 mV


# ---- decision 4: a network's stochastic stream is its own --------------------------------------------


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("variant", ["diehl_cook", "tinysnn"])
def test_stochastic_itq_network_trains_the_same_alone_and_in_a_population(backend: str, variant: str) -> None:
    spec = parse_quant_arg("weights=UQ0.6,vmem=Q9.5,vth=Q9.6", rounding="stochastic", scheme="itq")
    other = parse_quant_arg("weights=UQ0.4", rounding="stochastic", scheme="itq")
    net = NetworkConfig(variant=variant, n_neurons=20, n_input=50, norm_total=5.0, one_spike=True)
    pops = {
        "alone": build_population(net, seeds=7),
        "population": build_population([net] * 4, seeds=[7, 1, 2, 7]),  # our network at 0 and 3
    }
    layouts = {"alone": [spec], "population": [spec, other, None, spec]}
    imgs = _images(8, 50, seed=6)
    for name, pop in pops.items():
        apply_quant_rows(pop, layouts[name], training=True)
        quantize_parameters(pop)
        sim = Simulator(pop, ENC, seed=3, backend=backend)
        for k in range(8):
            sim.train_sample(imgs[k], k)
    alone, popn = pops["alone"], pops["population"]
    assert not _on_grid(alone.weights, 5)  # the draws moved weights to their own 6-bit grid values
    for pos in (0, 3):
        assert torch.equal(popn.weights[pos], alone.weights[0]), pos
        assert torch.equal(popn.theta[pos], alone.theta[0]), pos


# ---- the numba normalization pass --------------------------------------------------------------

numba = pytest.importorskip("numba")


def _kernels():
    from tinysnn.sim import numba_kernels as K

    @numba.njit
    def norm_rows(w, colsum, wmax, qrow, mode, seed):
        for i in range(w.shape[0]):
            K._scale_row_quantized(w[i], colsum, wmax, qrow, mode, seed, i)

    @numba.njit
    def fix_rows(w, colsum, wmax, qrow, mode):
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                w[i, j] = K._fix_w(w[i, j] * colsum[j], wmax, qrow, mode, 0, 0)

    return norm_rows, fix_rows


def _qrow(frac: int, hi: float = None) -> np.ndarray:
    top = (1 - 2.0**-frac) if hi is None else hi
    return np.array([2.0**frac, 0.0, top], np.float32)


def _cases(rng: np.random.Generator, frac: int) -> np.ndarray:
    w = rng.uniform(-0.2, 1.3, size=(64, 40)).astype(np.float32)
    w[0] = (rng.integers(0, 2**frac, size=40) / 2.0**frac).astype(np.float32)  # on the grid
    w[1] = ((rng.integers(0, 2**frac, size=40) + 0.5) / 2.0**frac).astype(np.float32)  # exact ties
    w[2, :4] = [0.0, 1.0, 5.0, -1.0]
    return w


@pytest.mark.parametrize("mode", [TRUNCATE, NEAREST])
@pytest.mark.parametrize("frac", [3, 8, 16])
def test_normalization_pass_equals_the_scalar_quantizer_bit_for_bit(mode: int, frac: int) -> None:
    norm_rows, fix_rows = _kernels()
    rng = np.random.default_rng(frac)
    w = _cases(rng, frac)
    colsum = rng.uniform(0.5, 1.5, size=40).astype(np.float32)
    colsum[:8] = 1.0
    for wmax in (np.float32(1.0), np.float32(0.75)):
        a, b = w.copy(), w.copy()
        norm_rows(a, colsum, wmax, _qrow(frac), mode, 0)
        fix_rows(b, colsum, wmax, _qrow(frac), mode)
        assert np.array_equal(a.view(np.int32), b.view(np.int32))


def test_stochastic_normalization_is_on_the_grid_exact_on_the_grid_and_unbiased() -> None:
    norm_rows, _ = _kernels()
    frac = 6
    q = 2.0**-frac
    rng = np.random.default_rng(0)
    ones = np.ones(256, np.float32)
    grid = (rng.integers(0, 2**frac, size=(4, 256)) * q).astype(np.float32)
    out = grid.copy()
    norm_rows(out, ones, np.float32(1.0), _qrow(frac), STOCHASTIC, 1)
    assert np.array_equal(out, grid)  # values on the grid stay exact
    x = rng.uniform(0.0, 1.0 - q, size=(400, 256)).astype(np.float32)
    out = x.copy()
    norm_rows(out, ones, np.float32(1.0), _qrow(frac), STOCHASTIC, 2)
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
    norm_rows(again, ones, np.float32(1.0), _qrow(frac), STOCHASTIC, 2)
    assert np.array_equal(again, out)  # seeded


@pytest.mark.parametrize("mode", [NONE, TRUNCATE, NEAREST, STOCHASTIC])
def test_normalization_pass_touches_only_the_networks_own_columns(mode: int) -> None:
    # A padded population row is wider than a small network's column sums; reading past the
    # sums gave NaN weights in CI (uninitialized memory), so the pass takes its length from them.
    norm_rows, _ = _kernels()
    w = np.full((2, 8), 0.3, np.float32)
    norm_rows(w, np.full(5, 1.5, np.float32), np.float32(1.0), _qrow(6, hi=1.0), mode, 0)
    assert (w[:, 5:] == np.float32(0.3)).all()  # off the 6-bit grid: any pass would have moved it
    assert np.isfinite(w[:, :5]).all() and (w[:, :5] > 0.4).all()


@pytest.mark.parametrize("rounding", ["truncate", "nearest", "stochastic"])
def test_itq_mixed_sizes_keep_padding_zero_and_weights_finite(rounding: str) -> None:
    nets = [
        NetworkConfig(variant="tinysnn", n_neurons=n, n_input=50, norm_total=5.0, one_spike=True)
        for n in (30, 12)
    ]
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
