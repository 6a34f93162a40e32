"""Tests of the energy per operation (tinysnn.energy.costs): Horowitz's figures, bit widths, hand sums."""

from __future__ import annotations

from typing import Any

import pytest

from tinysnn.energy import OpCounts, OpEnergyCosts, op_energy_breakdown, op_energy_joules

COUNTS = OpCounts(
    synaptic_ops=1000,
    neuron_updates=100,
    weight_updates=10,
    weight_reads=1000,
    weight_writes=10,
    state_reads=200,
    state_writes=200,
)


def test_op_costs_reproduce_horowitz_and_scale() -> None:
    costs = OpEnergyCosts()
    assert costs.int_add_pj(8) == pytest.approx(0.03) and costs.int_add_pj(32) == pytest.approx(0.1)
    assert costs.int_mult_pj(8) == pytest.approx(0.2) and costs.int_mult_pj(32) == pytest.approx(3.1)
    assert costs.add_pj(None) == 0.9 and costs.mult_pj(None) == 3.7
    assert costs.sram_read_pj_per_bit == pytest.approx(10.0 / 64.0)
    assert costs.int_add_pj(16) == pytest.approx(0.03 + 0.07 * 8 / 24)  # linear in bits
    assert costs.int_mult_pj(16) == pytest.approx(0.2 + 2.9 * (256 - 64) / 960)  # quadratic in bits
    assert all(costs.int_add_pj(b) > 0 and costs.int_mult_pj(b) > 0 for b in range(1, 65))


def test_op_energy_hand_computed() -> None:
    # 8-bit weights, 16-bit neurons. pJ: add16 = 0.03 + 0.07 * 8/24 = 0.0533333, mult16 = 0.78,
    # add8 = 0.03, mult8 = 0.2, 0.15625 pJ per SRAM bit.
    synaptic = 1000 * 0.0533333333333  # accumulate at 16 bits
    neuron = 100 * (0.78 + 3 * 0.0533333333333)  # 1 mult + 3 adds at 16 bits
    learning = 10 * (2 * 0.2 + 2 * 0.03)  # 2 mults + 2 adds at 8 bits
    weight_mem = (1000 + 10) * 8 * 0.15625
    state_mem = (200 + 200) * 16 * 0.15625
    expected_pj = synaptic + neuron + learning + weight_mem + state_mem  # 2414.4333 pJ
    assert expected_pj == pytest.approx(2414.4333, abs=1e-3)
    assert op_energy_joules(COUNTS, weight_bits=8, neuron_bits=16) == pytest.approx(
        expected_pj * 1e-12, rel=1e-9
    )
    parts = op_energy_breakdown(COUNTS, weight_bits=8, neuron_bits=16)
    assert parts["weight_memory"] == pytest.approx(weight_mem * 1e-12)
    assert parts["weight_updates"] == pytest.approx(learning * 1e-12)
    # FP32: 1000*0.9 + 100*(3.7 + 3*0.9) + 10*(2*3.7 + 2*0.9) + 1010*32*0.15625 + 400*32*0.15625
    assert op_energy_joules(COUNTS) == pytest.approx((900 + 640 + 92 + 5050 + 2000) * 1e-12, rel=1e-9)


def test_bit_width_matters() -> None:
    e8 = op_energy_joules(COUNTS, weight_bits=8, neuron_bits=8)
    e16 = op_energy_joules(COUNTS, weight_bits=16, neuron_bits=16)
    e32 = op_energy_joules(COUNTS)
    assert e8 < e16 < e32
    assert op_energy_joules(COUNTS, weight_bits=8) < e32  # qW: weights 8-bit, neurons FP32
    assert op_energy_joules(COUNTS, weight_bits=4, neuron_bits=4) < e8


@pytest.mark.parametrize("bits", [0, 65, 8.0, True, -1])
def test_bad_bit_width(bits: Any) -> None:
    with pytest.raises(ValueError, match="weight_bits"):
        op_energy_joules(COUNTS, weight_bits=bits)
