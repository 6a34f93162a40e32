"""The tinySNN mechanisms (docs/method.md §1): direct lateral inhibition, timestep-based adaptive
potentiation (Eq. 1, Eq. 2), and the SL-STDP baseline's sign (APPROXIMATE baseline)."""

from __future__ import annotations

import math

import pytest
import torch

from tinysnn.config import EncodingConfig, LearningConfig, NetworkConfig
from tinysnn.network import build_population
from tinysnn.sim import equations as L
from tinysnn.sim import torch_backend


def _three_neurons(w_inh: float):
    net = NetworkConfig(variant="tinysnn", n_neurons=3, n_input=3, w_inh=w_inh, norm_total=100.0, w_max=100.0)
    pop = build_population(net, seeds=0)
    # input 0 drives neuron 0 hard (fires at step 0), inputs 1 and 2 drive neurons 1 and 2 gently
    pop.weights[0] = torch.tensor([[20.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return pop


def test_lateral_inhibition_hits_every_other_neuron_one_step_later() -> None:
    trains = torch.zeros((4, 1, 3), dtype=torch.bool)
    trains[0, 0, 0] = True  # neuron 0 spikes at step 0
    trains[:, 0, 1:] = True  # neurons 1 and 2 get 1 mV every step
    runs = {}
    for w_inh in (0.0, 7.5):
        rec: dict = {}
        torch_backend.run_window(
            _three_neurons(w_inh), trains, EncodingConfig(time_steps=4), learn=False, record=rec
        )
        runs[w_inh] = torch.stack(rec["v"])[:, 0, 0, :]  # (T, N)
    v0, v1 = runs[0.0], runs[7.5]
    assert float(v1[0, 0]) == -60.0  # neuron 0 spiked at step 0 and was reset
    assert torch.equal(v0[0], v1[0])  # nothing changes in the spike's own step
    diff = v0[1] - v1[1]  # one step later every OTHER neuron is 7.5 mV lower
    assert diff.tolist() == [pytest.approx(0.0), pytest.approx(7.5), pytest.approx(7.5)]
    # afterwards the difference only decays with the membrane (no new inhibition)
    dec = math.exp(-1 / 100.0)
    assert float((v0[2] - v1[2])[1]) == pytest.approx(7.5 * dec, rel=1e-5)


@pytest.mark.parametrize(
    "max_n, n_th, k",
    [
        (0, 2.0, 0.0),
        (1, 2.0, 1.0),
        (2, 2.0, 1.0),
        (3, 2.0, 2.0),
        (7, 3.0, 3.0),
        (5, 1.0, 5.0),
    ],
)
def test_adaptive_factor_follows_eq1(max_n: int, n_th: float, k: float) -> None:
    out = L.adaptive_factor(torch.tensor([max_n]), torch.tensor([n_th]))
    assert out.tolist() == [k]


def test_adaptive_potentiation_follows_eq2_exactly() -> None:
    w = torch.tensor([[[0.2, 0.5], [0.9, 0.0], [0.4, 1.0]]])  # (P=1, n_in=3, N=2)
    x_pre = torch.tensor([1.0, 0.5, 0.0])
    spiked = torch.tensor([[True, False]])
    k, eta, wmax = torch.tensor([3.0]), torch.tensor([0.1]), torch.tensor([1.0])
    out = L.adaptive_potentiation(w, x_pre, spiked, k, eta, wmax)
    expected = w.clone()
    for i in range(3):
        expected[0, i, 0] = w[0, i, 0] + 3.0 * 0.1 * x_pre[i] * (1.0 - w[0, i, 0])
    assert torch.allclose(out, expected, atol=1e-7, rtol=0)
    assert torch.equal(out[0, :, 1], w[0, :, 1])  # neuron 1 did not spike: untouched
    assert float(out[0, 2, 0]) == pytest.approx(0.4)  # x_pre = 0: no change


def test_weights_change_only_at_update_times() -> None:
    net = NetworkConfig(variant="tinysnn", n_neurons=4, n_input=10, norm_total=1.0)
    pop = build_population(net, LearningConfig(t_update=10, eta_post=0.05), seeds=1)
    pop.theta[:] = -10.0  # easy firing
    g = torch.Generator().manual_seed(0)
    trains = torch.rand((35, 1, 10), generator=g) < 0.5
    rec: dict = {}
    before = pop.weights.clone()
    torch_backend.run_window(pop, trains, EncodingConfig(time_steps=35), learn=True, record=rec)
    ws = [before] + rec["w"]
    changed = [t for t in range(35) if not torch.equal(ws[t + 1], ws[t])]
    assert changed, "no update at all: the test drove too little activity"
    assert set(changed) <= {9, 19, 29, 34}  # (t + 1) % T_u == 0, and the end of the sample


def test_sl_stdp_signs_on_constructed_traces() -> None:
    w = torch.full((1, 3, 2), 0.5)
    x_pre = torch.tensor([0.9, 0.1, 0.0])  # above, below and at zero vs x_th = 0.3
    s = torch.tensor([[True, False]])
    out = L.sl_stdp(
        w, x_pre, s, torch.tensor([0.1]), torch.tensor([0.2]), torch.tensor([0.3]), torch.tensor([1.0])
    )
    assert float(out[0, 0, 0]) == pytest.approx(0.5 + 0.1 * 0.5)  # potentiated toward w_max
    assert float(out[0, 1, 0]) == pytest.approx(0.5 - 0.2 * 0.5)  # depressed
    assert float(out[0, 2, 0]) == pytest.approx(0.4)
    assert torch.equal(out[:, :, 1], w[:, :, 1])  # no postsynaptic spike: unchanged


def test_update_times_are_every_t_update_steps_and_the_last_step() -> None:
    assert [t for t in range(10) if L.update_times(t, 10, 3)] == [2, 5, 8, 9]
    per_network = L.update_times(torch.tensor(5), 10, torch.tensor([3, 4, 6]))  # (P,) periods
    assert per_network.tolist() == [True, False, True]
    assert L.update_times(torch.tensor(9), 10, torch.tensor([4, 7])).tolist() == [True, True]  # the last step
