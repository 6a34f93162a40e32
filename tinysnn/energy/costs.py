"""Energy per operation at a bit width, and the energy of op counts: :func:`op_energy_joules`.

docs/method.md §4: beside the measured joules, "an op-count model (synaptic operations and
memory accesses x energy per op at a given bit width) gives a hardware-independent figure in
which bit width matters, as it does on a fixed-point chip". On a GPU an 8-bit network simulated
with fake quantization costs what an FP32 one does; on a fixed-point chip it does not.

    E = N_syn e_add(b_acc) + N_neu (m_n e_mult(b_n) + a_n e_add(b_n))
        + N_wu (m_w e_mult(b_w) + a_w e_add(b_w))
        + (R_w + W_w) b_w e_bit + (R_n + W_n) b_n e_bit

with N, R, W the counts of :class:`~tinysnn.energy.opcount.OpCounts`, b_w, b_n the weight and
neuron-state widths (32-bit float when None), b_acc the accumulator width (the wider of the two;
float if either is float), e_bit the SRAM energy per bit, and the op mixes m, a of
:class:`OpEnergyCosts`. Our interpretation, not the paper's: the paper measures time x power
only.
"""

import dataclasses
from typing import Dict, Optional

from .opcount import OpCounts

__all__ = ["DEFAULT_OP_COSTS", "OpEnergyCosts", "op_energy_breakdown", "op_energy_joules"]

_PJ = 1e-12


@dataclasses.dataclass(frozen=True)
class OpEnergyCosts:
    """Energy per operation, in pJ, at 45 nm and 0.9 V.

    Source: M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
    Fig. 1.1.9: integer add 0.03 pJ (8 bit) and 0.1 pJ (32 bit); integer multiply 0.2 pJ (8 bit)
    and 3.1 pJ (32 bit); float add 0.4 pJ (16 bit) and 0.9 pJ (32 bit); float multiply 1.1 pJ
    (16 bit) and 3.7 pJ (32 bit); a 64-bit read from an 8 KB SRAM 10 pJ (32 KB: 20 pJ, 1 MB:
    100 pJ; DRAM 1.3-2.6 nJ).

    Scaling to other integer widths b (our rule, stated): through the two measured points,
    adders are linear in b and multipliers quadratic in b (an array multiplier has b^2 cells):

        e(b) = e8 + (e32 - e8) (b^k - 8^k) / (32^k - 8^k),  k = 1 (add), k = 2 (multiply);

    memory is linear in b (a per-bit cost: 10 pJ / 64 bit). Only FP32 is modelled for floats.

    Attributes:
        int8_add_pj: 8-bit integer add, pJ (Horowitz 2014).
        int32_add_pj: 32-bit integer add, pJ (Horowitz 2014).
        int8_mult_pj: 8-bit integer multiply, pJ (Horowitz 2014).
        int32_mult_pj: 32-bit integer multiply, pJ (Horowitz 2014).
        fp32_add_pj: 32-bit float add, pJ (Horowitz 2014).
        fp32_mult_pj: 32-bit float multiply, pJ (Horowitz 2014).
        sram_read_pj_per_bit: SRAM read per bit, pJ: 10 pJ per 64-bit word of an 8 KB array
            (Horowitz 2014), i.e. 0.15625 pJ/bit. Use 100 / 64 for a 1 MB array.
        sram_write_pj_per_bit: SRAM write per bit, pJ; assumed equal to a read (our assumption).
        adds_per_neuron_update: Adds (or compares) per LIF step: v - v_rest, + v_rest, the
            threshold test; the input current is counted in the synaptic ops (our op mix).
        mults_per_neuron_update: Multiplies per LIF step: the leak factor (our op mix).
        adds_per_weight_update: Adds per weight update: w_max - w and w + dw (Eq. 2, docs/method.md §1).
        mults_per_weight_update: Multiplies per weight update: eta x_pre and x (w_max - w).
    """

    int8_add_pj: float = 0.03
    int32_add_pj: float = 0.1
    int8_mult_pj: float = 0.2
    int32_mult_pj: float = 3.1
    fp32_add_pj: float = 0.9
    fp32_mult_pj: float = 3.7
    sram_read_pj_per_bit: float = 10.0 / 64.0
    sram_write_pj_per_bit: float = 10.0 / 64.0
    adds_per_neuron_update: float = 3
    mults_per_neuron_update: float = 1
    adds_per_weight_update: float = 2
    mults_per_weight_update: float = 2

    def int_add_pj(self, bits: int) -> float:
        """Energy of a ``bits``-wide integer add, pJ (linear in bits)."""
        b = _check_bits(bits, "bits")
        return self.int8_add_pj + (self.int32_add_pj - self.int8_add_pj) * (b - 8) / (32 - 8)

    def int_mult_pj(self, bits: int) -> float:
        """Energy of a ``bits``-wide integer multiply, pJ (quadratic in bits)."""
        b = _check_bits(bits, "bits")
        return self.int8_mult_pj + (self.int32_mult_pj - self.int8_mult_pj) * (b * b - 64) / (1024 - 64)

    def add_pj(self, bits: Optional[int]) -> float:
        """Energy of an add at ``bits`` (None: 32-bit float), pJ."""
        return self.fp32_add_pj if bits is None else self.int_add_pj(bits)

    def mult_pj(self, bits: Optional[int]) -> float:
        """Energy of a multiply at ``bits`` (None: 32-bit float), pJ."""
        return self.fp32_mult_pj if bits is None else self.int_mult_pj(bits)


DEFAULT_OP_COSTS = OpEnergyCosts()
"""Horowitz (ISSCC 2014) 45 nm costs with tinysnn's op mixes."""


def _check_bits(bits: Optional[int], what: str) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 64:
        raise ValueError(f"{what} must be an int in [1, 64] (or None for FP32), got {bits!r}")
    return bits


def op_energy_breakdown(
    counts: OpCounts,
    *,
    weight_bits: Optional[int] = None,
    neuron_bits: Optional[int] = None,
    costs: OpEnergyCosts = DEFAULT_OP_COSTS,
) -> Dict[str, float]:
    """Energy of each kind of operation, in J (see the module docstring for the equation).

    Args:
        counts: The operation counts.
        weight_bits: Weight width B_w in bits (fixed point), or None for FP32 weights.
        neuron_bits: Neuron-state width B_n in bits (fixed point), or None for FP32 state.
        costs: Energy per operation.

    Returns:
        ``synaptic_ops``, ``neuron_updates``, ``weight_updates``, ``weight_memory`` and
        ``state_memory``, in J.

    Raises:
        ValueError: If a width is not None nor an int in [1, 64].
    """
    if weight_bits is not None:
        _check_bits(weight_bits, "weight_bits")
    if neuron_bits is not None:
        _check_bits(neuron_bits, "neuron_bits")
    acc_bits = None if weight_bits is None or neuron_bits is None else max(weight_bits, neuron_bits)
    w_word = 32 if weight_bits is None else weight_bits
    n_word = 32 if neuron_bits is None else neuron_bits
    neuron_op = costs.mults_per_neuron_update * costs.mult_pj(
        neuron_bits
    ) + costs.adds_per_neuron_update * costs.add_pj(neuron_bits)
    weight_op = costs.mults_per_weight_update * costs.mult_pj(
        weight_bits
    ) + costs.adds_per_weight_update * costs.add_pj(weight_bits)
    read, write = costs.sram_read_pj_per_bit, costs.sram_write_pj_per_bit
    return {
        "synaptic_ops": counts.synaptic_ops * costs.add_pj(acc_bits) * _PJ,
        "neuron_updates": counts.neuron_updates * neuron_op * _PJ,
        "weight_updates": counts.weight_updates * weight_op * _PJ,
        "weight_memory": (counts.weight_reads * read + counts.weight_writes * write) * w_word * _PJ,
        "state_memory": (counts.state_reads * read + counts.state_writes * write) * n_word * _PJ,
    }


def op_energy_joules(
    counts: OpCounts,
    *,
    weight_bits: Optional[int] = None,
    neuron_bits: Optional[int] = None,
    costs: OpEnergyCosts = DEFAULT_OP_COSTS,
) -> float:
    """Total modelled energy of ``counts`` at the given widths, in J.

    FP32 (None) uses the float costs; a fixed-point width uses integer costs at that width, so
    for the same counts 8-bit < 16-bit < FP32.

    Example:
        >>> counts = OpCounts(synaptic_ops=1000, weight_reads=1000)
        >>> op_energy_joules(counts, weight_bits=8, neuron_bits=8) < op_energy_joules(counts)
        True

    Args:
        counts: The operation counts.
        weight_bits: Weight width in bits, or None for FP32.
        neuron_bits: Neuron-state width in bits, or None for FP32.
        costs: Energy per operation.
    """
    parts = op_energy_breakdown(counts, weight_bits=weight_bits, neuron_bits=neuron_bits, costs=costs)
    return sum(parts.values())
