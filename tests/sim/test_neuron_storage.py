"""How the neuron parameters are stored and rounded (issue 25, decisions 2-4), in both backends.

* A saturating V_mem format clamps at its range (about rest).
* V_th is stored as theta = V_th - v_th >= 0 (unsigned by default).
* Under stochastic rounding theta+ below one step is added stochastically (mean theta+), and the
  decays of V_mem and theta are rounded stochastically (FP32 mean, never across rest); truncation
  and nearest keep the decrement rounded toward zero and the rule that the V_th step hold theta+.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tinysnn import streams as S
from tinysnn.config import EncodingConfig, NetworkConfig
from tinysnn.network import build_population
from tinysnn.quant import STOCHASTIC, TRUNCATE, decay_toward_zero, itq_problem, parse_quant_arg
from tinysnn.quant.formats import LEAK_BITS, PARAM_SIGNED
from tinysnn.sim import Simulator, equations
from tinysnn.sim import numba_kernels as K
from tinysnn.train import apply_quant_rows, quantize_parameters

BACKENDS = ["torch", "numba"] if K.HAVE_NUMBA else ["torch"]


def _int64(x: int) -> np.int64:
    """A Python integer as the int64 the kernels take (two's complement)."""
    return np.array([x & (2**64 - 1)], dtype=np.uint64).view(np.int64)[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_saturating_vmem_format_clamps_at_its_range_about_rest(backend: str) -> None:
    # SQ5.0 about rest holds -16..15 mV. Neuron 0 gets 20 mV at step 0: saturates at +15, above
    # the threshold 13 mV about rest, spikes; its spike takes w_inh = 20 mV from neurons 1 and 2
    # at step 1: they saturate at -16.
    net = NetworkConfig(variant="tinysnn", n_neurons=3, n_input=3, norm_total=1.0, w_inh=20.0)
    pop = build_population(net, seeds=1)
    pop.weights[0] = torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    apply_quant_rows(pop, [parse_quant_arg("vmem=SQ5.0", scheme="itq")], training=True)
    v_rest = pop.exc.v_rest
    train = torch.zeros((20, 3), dtype=torch.bool)
    train[0, 0] = True
    sim = Simulator(pop, EncodingConfig(time_steps=20), seed=1, backend=backend)
    counts = sim.train_sample(torch.zeros(3, dtype=torch.uint8), 0, train=train)
    assert counts[0].tolist() == [1, 0, 0]
    assert sim.vmem_range[0].tolist() == [v_rest - 16.0, v_rest + 15.0]


def test_theta_is_stored_about_v_th_unsigned() -> None:
    assert PARAM_SIGNED["vth"] is False
    spec = parse_quant_arg("vth=Q4.2", scheme="ptq")
    assert spec.range_of("vth") == (0.0, 15.75)  # theta, not V_th: v_th = -52 mV need not fit
    net = NetworkConfig(variant="tinysnn", n_neurons=4, n_input=3, norm_total=1.0)
    pop = build_population(net, seeds=1)
    pop.theta[0] = torch.tensor([0.0, 3.3, 20.0, 0.1])
    apply_quant_rows(pop, [spec], training=False)
    quantize_parameters(pop)
    # truncated on the 0.25 mV grid, saturated at 15.75 mV; the threshold is v_th + theta
    assert pop.theta[0].tolist() == [0.0, 3.25, 15.75, 0.0]


def test_the_theta_plus_rule_binds_truncation_and_nearest_only() -> None:
    for rounding in ("truncate", "nearest"):
        problem = itq_problem(parse_quant_arg("vth=Q8.0", rounding=rounding, scheme="itq"), 0.05)
        assert "step of 1 mV" in problem and "stochastic rounding" in problem
    assert itq_problem(parse_quant_arg("vth=Q8.0", rounding="stochastic", scheme="itq"), 0.05) == ""


def _theta_rows(n_networks: int, frac_bits: int, mode: int) -> equations.Rows:
    rows = torch.tensor([[2.0**frac_bits, 0.0, 255.0]] * n_networks, dtype=torch.float32)
    return equations.Rows(rows, torch.full((n_networks,), mode, dtype=torch.int64), mode == STOCHASTIC)


def test_a_stochastic_theta_increment_has_mean_theta_plus_and_is_deterministic_given_the_stream() -> None:
    # theta+ = 0.05 mV on a 1 mV grid: one step with probability 0.05, in both backends from the
    # stream (sample seed, network seed, STREAM_VTH) at step t, draw j
    n, theta_plus = 20000, 0.05
    net = NetworkConfig(variant="tinysnn", n_neurons=n, n_input=1, norm_total=1.0, theta_plus=theta_plus)
    pop = build_population(net, seeds=3)
    q = _theta_rows(1, 0, STOCHASTIC)
    cross = torch.ones((1, n), dtype=torch.bool)
    base = S.stream_base(torch.tensor([[11]]), pop.network_seeds[:, None], S.STREAM_VTH)
    theta0 = torch.zeros((1, n))

    def torch_step(t: int) -> torch.Tensor:
        return equations.adaptive_threshold(pop, theta0, cross, q, base, torch.tensor(t), torch.arange(n))

    first = torch_step(4)
    assert torch.equal(first, torch_step(4))  # the same stream gives the same steps
    assert not torch.equal(first, torch_step(5))  # another step of the stream, other draws
    assert set(first.unique().tolist()) == {0.0, 1.0}
    means = [float(torch_step(t).mean()) for t in range(5)]
    # 100,000 Bernoulli(0.05) draws: standard error 0.0007
    assert abs(sum(means) / len(means) - theta_plus) < 0.003
    if K.HAVE_NUMBA:
        theta_p = np.zeros(n, np.float32)
        thr = np.zeros(n, np.float32)
        key = _int64(int(S.step_key(base, torch.tensor(4))[0, 0]))
        K._adaptive_threshold(
            theta_p,
            thr,
            np.arange(n),
            n,
            np.float32(theta_plus),
            np.float32(-52.0),
            q.rows[0].numpy(),
            STOCHASTIC,
            key,
        )
        assert np.array_equal(theta_p, first[0].numpy())
        assert np.array_equal(thr, np.float32(-52.0) + theta_p)


def test_truncation_loses_a_sub_step_increment_and_saturates_at_the_top() -> None:
    net = NetworkConfig(variant="tinysnn", n_neurons=3, n_input=1, norm_total=1.0, theta_plus=0.05)
    pop = build_population(net, seeds=3)
    q = _theta_rows(1, 0, TRUNCATE)
    theta = torch.tensor([[0.0, 255.0, 7.0]])
    cross = torch.tensor([[True, True, False]])
    out = equations.adaptive_threshold(pop, theta, cross, q, None, torch.tensor(0), torch.arange(3))
    assert out.tolist() == [[0.0, 255.0, 7.0]]  # issue 25, decision 6: lost under truncation, as expected
    pop.params["theta_plus"][:] = 1.5
    out = equations.adaptive_threshold(pop, theta, cross, q, None, torch.tensor(0), torch.arange(3))
    assert out.tolist() == [[1.0, 255.0, 7.0]]  # floor(1.5) steps; the top saturates


def test_a_stochastic_decay_never_crosses_rest_and_has_the_fp32_mean() -> None:
    assert LEAK_BITS == S.U_BITS == 24  # a decrement's remainder and a draw have the same range
    dec = math.exp(-1 / 100.0)
    leak = round((1 - dec) * 2**24)
    scale = 16.0  # Q.4: step 1/16 mV
    values = torch.tensor([-30.0, 13.0, -0.5, 0.5, 1 / 16, -1 / 16, 0.0])
    draws_n = 4000
    u = values.repeat(draws_n, 1)
    keys = S.step_key(
        S.stream_base(torch.tensor(9), torch.tensor(1), S.STREAM_VMEM_DECAY), torch.arange(draws_n)
    )
    draws = S.uniform_bits(keys[:, None], torch.arange(values.numel())[None, :])
    out = decay_toward_zero(u, scale, leak, draws)
    assert bool((out * u >= 0).all()) and bool((out.abs() <= u.abs()).all())  # toward rest, never across
    assert bool((out[:, -1] == 0).all())
    # each decrement is a whole number of steps: floor or floor + 1 of the exact product
    exact = (values.abs() * scale * leak / 2**24).double()
    steps = ((u - out).abs() * scale).double()
    assert bool((steps >= torch.floor(exact)).all()) and bool((steps <= torch.floor(exact) + 1).all())
    # the mean is the FP32 decay: u * dec (the 24-bit leak is exact to 2^-24)
    mean = out.double().mean(dim=0)
    fp32 = values.double() * dec
    stderr = 1.0 / scale / math.sqrt(draws_n)  # a Bernoulli step of 1/16 mV at most
    assert torch.allclose(mean, fp32, atol=4 * stderr, rtol=0)
    # rounding toward zero (truncation, nearest) decays slower: a sub-step decrement is lost
    toward_zero = decay_toward_zero(values, scale, leak)
    assert toward_zero[3] == 0.5 and toward_zero[4] == 1 / 16
    # a full leak (decay 0) takes a value exactly to rest, never past it
    assert decay_toward_zero(u, scale, 2**24, draws).abs().max() == 0
    if K.HAVE_NUMBA:  # the kernels compute the same integers from the same draws
        for r in range(3):
            key = _int64(int(keys[r]))
            got = [
                float(K._decay_toward_zero(np.float32(x), np.float32(scale), leak, True, key, j))
                for j, x in enumerate(values.tolist())
            ]
            assert got == out[r].tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_stochastic_theta_decay_is_unbiased_in_training(backend: str) -> None:
    # no input, no spike: theta only decays, once per sample, on a 1/32 mV grid
    nets = [NetworkConfig(variant="tinysnn", n_neurons=400, n_input=5, norm_total=1.0, tau_theta=1000.0)]
    pop = build_population(nets * 2, seeds=[1, 2])
    specs = [parse_quant_arg("vth=UQ9.5", rounding="stochastic", scheme="itq"), None]
    apply_quant_rows(pop, specs, training=True)
    start = torch.full((400,), 0.5)  # 16 steps; FP32 loses 0.93 of a step per sample
    pop.theta[:] = start
    sim = Simulator(pop, EncodingConfig(time_steps=60), seed=1, backend=backend)
    for k in range(3):
        sim.train_sample(torch.zeros(5, dtype=torch.uint8), k)
    fixed, fp32 = pop.theta[0].double(), pop.theta[1].double()
    assert bool((fixed >= 0).all()) and bool((fixed * 32 == torch.round(fixed * 32)).all())
    # truncation would keep 0.5 (a sub-step decrement is lost); stochastic decays as FP32 on average
    assert abs(float(fixed.mean()) - float(fp32.mean())) < 0.01
