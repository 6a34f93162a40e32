"""Tests of the op-count model (tinysnn.energy.opcount): counts by hand, layers, and their sum."""

from __future__ import annotations

import pytest

from tinysnn.config import Variant
from tinysnn.energy import OpCounts, layer_op_counts, op_energy_joules, sample_op_counts

from .test_costs import COUNTS  # the counts the energy tests share


def test_op_counts_by_hand() -> None:
    # tinysnn, N = 10, 20 inputs, T = 5: 7 input spikes, 3 excitatory spikes, learning updated
    # 2 columns at update times
    c = sample_op_counts(
        Variant.TINYSNN,
        10,
        20,
        5,
        exc_spikes=3,
        input_spikes=7,
        inh_spikes=0,
        columns_updated=2,
        learning=True,
    )
    assert c.synaptic_ops == 7 * 10 + 3 * 9
    assert c.neuron_updates == 50
    assert c.weight_updates == 2 * 20 + 20 * 10  # learning + normalization
    assert c.weight_reads == 70 + 240 and c.weight_writes == 240
    # the baseline with the same spikes plus 3 inhibitory ones and pair-STDP depression
    b = sample_op_counts(
        Variant.DIEHL_COOK,
        10,
        20,
        5,
        exc_spikes=3,
        input_spikes=7,
        inh_spikes=3,
        columns_updated=3,
        learning=True,
    )
    assert b.synaptic_ops == 70 + 3 + 3 * 9
    assert b.neuron_updates == 100
    assert b.weight_updates == 3 * 20 + 200 + 7 * 10


def test_inference_counts_no_learning_and_bits_matter() -> None:
    c = sample_op_counts(Variant.TINYSNN, 100, 784, 250, 20, 3000, 0, 0, learning=False)
    assert c.weight_updates == 0 and c.weight_writes == 0
    e32 = op_energy_joules(c)
    e8 = op_energy_joules(c, weight_bits=8, neuron_bits=16)
    assert 0 < e8 < e32
    with pytest.raises((ValueError, TypeError)):
        op_energy_joules(c, weight_bits=0)


def test_op_counts_arithmetic_and_layer_counts() -> None:
    total = COUNTS + COUNTS
    assert total.synaptic_ops == 2000 and total.scaled(0.5) == COUNTS
    with pytest.raises(ValueError, match="synaptic_ops"):
        OpCounts(synaptic_ops=-1)
    counts = layer_op_counts(n_neurons=100, timesteps=250, input_spikes=2000, weight_updates=500)
    assert counts == OpCounts(
        synaptic_ops=200_000,
        neuron_updates=25_000,
        weight_updates=500,
        weight_reads=200_500,
        weight_writes=500,
        state_reads=50_000,
        state_writes=50_000,
    )


def test_state_words_per_neuron_update() -> None:
    # tinysnn: v, refractory counter and theta per excitatory update; the baselines add an inhibitory
    # layer with v and its refractory counter
    c = sample_op_counts(Variant.TINYSNN, 10, 20, 5, 0, 0, 0, 0, learning=False)
    assert c.state_reads == c.state_writes == 3 * 50
    b = sample_op_counts(Variant.SL_STDP, 10, 20, 5, 0, 0, 0, 0, learning=False)
    assert b.neuron_updates == 100 and b.state_reads == b.state_writes == 3 * 50 + 2 * 50
