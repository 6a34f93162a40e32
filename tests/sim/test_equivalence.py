"""The numba kernels and the torch reference compute the same window (issue 3).

Tolerance: spikes must be identical; weights and thresholds are compared with atol 1e-6 (both
backends use float32 in the same order of operations and accumulate sums in float64, so in
practice they agree bit for bit; the tolerance covers a last-bit difference of a float64 sum).
"""

from __future__ import annotations

import pytest
import torch

from tinysnn.config import EncodingConfig, NetworkConfig, Variant
from tinysnn.encoding import make_generator, poisson
from tinysnn.network import build_population
from tinysnn.quant import Normalization, parse_quant_arg
from tinysnn.quant.formats import ROW_HI, ROW_LO
from tinysnn.sim import Simulator
from tinysnn.train import apply_quant_rows, quantize_parameters

ATOL = 1e-6
VARIANTS = [v.value for v in Variant]


def _images(n: int, n_in: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, n_in, generator=g) * 600).clamp(max=255).to(torch.uint8)


def _pair(
    variant: str, sizes, quant=None, one_spike: bool = False, rounding=("truncate", "nearest"), norm="sum"
):
    nets = [
        NetworkConfig(variant=variant, n_neurons=n, n_input=50, norm_total=5.0, one_spike=one_spike)
        for n in sizes
    ]
    seeds = list(range(1, len(sizes) + 1))
    pops = [build_population(nets, seeds=seeds) for _ in range(2)]
    if quant is not None:  # network k rounds with rounding[k % len(rounding)]
        specs = [
            parse_quant_arg(quant, rounding=rounding[k % len(rounding)], scheme="itq", normalization=norm)
            for k in range(len(sizes))
        ]
        for p in pops:
            apply_quant_rows(p, specs, training=True)
            quantize_parameters(p)
    return pops


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("sizes", [[30], [30, 20]])
@pytest.mark.parametrize(
    "quant, rounding",
    [
        (None, ()),
        ("weights=Q1.7,vmem=Q9.6,vth=Q9.6", ("truncate", "nearest")),
        ("weights=Q1.7,vmem=Q9.6,vth=Q9.6", ("stochastic",)),
    ],
)
def test_training_is_identical_on_the_same_trains(variant, sizes, quant, rounding) -> None:
    # stochastic rounding too: both backends draw the counter-based streams of tinysnn.streams
    _check_training_is_identical(*_pair(variant, sizes, quant, rounding=rounding))


@pytest.mark.parametrize("norm", [n.value for n in Normalization])
def test_training_is_identical_under_every_normalization_rule(norm: str) -> None:
    # apportion draws its columns' points from the W_NORM stream under truncation and nearest
    _check_training_is_identical(*_pair("tinysnn", [30, 20], "weights=Q1.7,vmem=Q9.6,vth=Q9.6", norm=norm))


def _check_training_is_identical(a, b) -> None:
    enc = EncodingConfig(time_steps=60)
    sa, sb = Simulator(a, enc, backend="torch"), Simulator(b, enc, backend="numba")
    g = make_generator(0)
    imgs = _images(10, 50)
    total = 0
    for k in range(10):
        tr = poisson(imgs[k], enc, g)
        ca = sa.train_sample(imgs[k], k, train=tr)
        cb = sb.train_sample(imgs[k], k, train=tr)
        assert torch.equal(ca, cb), f"spike counts differ at sample {k}"
        assert torch.equal(sa.last_stats, sb.last_stats), f"kernel statistics differ at sample {k}"
        total += int(ca.sum())
    assert total > 20  # the comparison exercised learning
    assert torch.allclose(a.weights, b.weights, atol=ATOL, rtol=0)
    assert torch.allclose(a.theta, b.theta, atol=ATOL, rtol=0)
    trains = poisson(imgs[:6], enc, g)
    ia = sa.infer(imgs[:6], 2, trains=trains)
    ib = sb.infer(imgs[:6], 2, trains=trains)
    assert torch.equal(ia, ib)
    assert torch.equal(sa.last_stats, sb.last_stats)


@pytest.mark.parametrize("variant", ["diehl_cook", "tinysnn"])
def test_one_spike_per_step_is_identical_and_limits_spikes(variant: str) -> None:
    a, b = _pair(variant, [30, 20], one_spike=True)
    enc = EncodingConfig(time_steps=60)
    sa, sb = Simulator(a, enc, backend="torch"), Simulator(b, enc, backend="numba")
    g = make_generator(2)
    imgs = _images(6, 50)
    for k in range(6):
        tr = poisson(imgs[k], enc, g)
        ca, cb = sa.train_sample(imgs[k], k, train=tr), sb.train_sample(imgs[k], k, train=tr)
        assert torch.equal(ca, cb)
        assert int(ca.sum(dim=1).max()) <= 60  # at most one spike per step per network
    assert torch.allclose(a.weights, b.weights, atol=ATOL, rtol=0)
    assert torch.allclose(a.theta, b.theta, atol=ATOL, rtol=0)
    trains = poisson(imgs[:2], enc, g)
    assert torch.equal(sb.infer(imgs[:2], 2, trains=trains), sa.infer(imgs[:2], 2, trains=trains))


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_network_in_population_equals_network_alone(backend: str) -> None:
    enc = EncodingConfig(time_steps=60)
    nets = [NetworkConfig(variant="tinysnn", n_neurons=n, n_input=50, norm_total=5.0) for n in (12, 20, 7)]
    pop = build_population(nets, seeds=[5, 6, 7])
    alone = build_population(nets[1], seeds=6)
    assert torch.equal(pop.weights[1, :, :20], alone.weights[0])
    s_pop, s_alone = (
        Simulator(pop, enc, seed=3, backend=backend),
        Simulator(alone, enc, seed=3, backend=backend),
    )
    imgs = _images(8, 50, seed=1)
    for k in range(8):
        c_pop = s_pop.train_sample(imgs[k], k)
        c_alone = s_alone.train_sample(imgs[k], k)
        assert torch.equal(c_pop[1, :20], c_alone[0])
        assert int(c_pop[0, 12:].sum()) == 0 and int(c_pop[2, 7:].sum()) == 0  # masked neurons
    assert torch.allclose(pop.weights[1, :, :20], alone.weights[0], atol=ATOL, rtol=0)
    assert float(pop.weights[0, :, 12:].abs().sum()) == 0.0


def test_population_shapes_and_device() -> None:
    nets = [NetworkConfig(variant="diehl_cook", n_neurons=n, n_input=10, norm_total=1.0) for n in (4, 9)]
    pop = build_population(nets, seeds=[0, 1])
    assert tuple(pop.weights.shape) == (2, 10, 9)
    assert tuple(pop.theta.shape) == (2, 9)
    assert pop.mask.tolist()[0] == [True] * 4 + [False] * 5
    assert all(v.shape == (2,) for v in pop.params.values())
    assert pop.device.type == "cpu"
    one = pop.select(1)
    assert tuple(one.weights.shape) == (1, 10, 9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_spikes() -> None:
    enc = EncodingConfig(time_steps=50)
    nets = [NetworkConfig(variant="tinysnn", n_neurons=16, n_input=50, norm_total=5.0)]
    cpu = build_population(nets, seeds=[1])
    gpu = build_population(nets, seeds=[1], device="cuda")
    imgs = _images(4, 50)
    trains = poisson(imgs, enc, make_generator(0))
    c1 = Simulator(cpu, enc, backend="torch").infer(imgs, 2, trains=trains)
    c2 = Simulator(gpu, enc, backend="torch").infer(imgs, 2, trains=trains.cuda()).cpu()
    assert (c1 != c2).float().mean() < 0.02  # float32 sums on the GPU may flip a rare spike


def test_vmem_range_is_tracked_identically() -> None:
    a, b = _pair("tinysnn", [10, 6])
    enc = EncodingConfig(time_steps=40)
    sa, sb = Simulator(a, enc, backend="torch"), Simulator(b, enc, backend="numba")
    g = make_generator(1)
    for k, img in enumerate(_images(3, 50)):
        tr = poisson(img, enc, g)
        sa.train_sample(img, k, train=tr)
        sb.train_sample(img, k, train=tr)
    assert torch.equal(sa.vmem_range, sb.vmem_range)
    lo, hi = sa.vmem_range[0].tolist()
    assert lo < -65.0 < hi  # lateral inhibition pushes v below rest; input lifts it above


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_vmem_format_is_about_rest(backend) -> None:
    """V_mem is stored as V_mem - v_rest: SQ5.2 saturates at v_rest - 16 and v_rest + 16 - 1/4 mV."""
    pops = _pair("tinysnn", [10], quant="vmem=SQ5.2")
    pop = pops[0]
    lo, hi = pop.quant["vmem"][0, ROW_LO].item(), pop.quant["vmem"][0, ROW_HI].item()
    assert (lo, hi) == (-65.0 - 16.0, -65.0 + 16.0 - 0.25)
    enc = EncodingConfig(time_steps=40)
    sim = Simulator(pop, enc, backend=backend)
    g = make_generator(1)
    for k, img in enumerate(_images(4, 50)):
        sim.train_sample(img, k, train=poisson(img, enc, g))
    v_lo, v_hi = sim.vmem_range[0].tolist()
    # without the format, w_inh = 120 mV of inhibition drives V_mem far below -81 mV (previous test)
    assert v_lo == -81.0 and -65.0 < v_hi <= -49.25


def test_vmem_rest_must_lie_on_the_grid() -> None:
    from tinysnn.quant import population_rows
    from tinysnn.train import vmem_rows_about_rest

    rows, modes = population_rows([parse_quant_arg("vmem=Q8.0"), parse_quant_arg("vmem=Q8.1")], "vmem")
    assert vmem_rows_about_rest(rows, modes, -65.0)[:, ROW_LO].tolist() == [-193.0, -193.0]
    assert vmem_rows_about_rest(rows[1:], modes[1:], -65.5)[0, ROW_HI].item() == 128 - 0.5 - 65.5
    with pytest.raises(
        ValueError, match="v_rest = -65.5 mV is not a multiple of the V_mem format's step 1 mV"
    ):
        vmem_rows_about_rest(rows, modes, -65.5)
    fp32 = torch.zeros_like(modes)  # an FP32 network's row has no grid to check
    assert vmem_rows_about_rest(rows, fp32, -65.5)[:, ROW_LO].tolist() == [-193.5, -193.5]
