"""The memory model of docs/method.md §3, Eq. 4, and the real size of packed integer codes.

Eq. 4 (tinySNN paper)::

    M = M_w + M_n = N_w B_w + sum_k N_nk B_nk

with N_w stored weights of B_w bits and N_nk values of neuron parameter k (V_mem, V_th) of B_nk bits.
What is a "stored value" is a convention; two are given (:class:`Convention`):

* ``compact``: a value that is one constant for a whole layer is stored once, at 32 bits unless
  stated (:attr:`BitWidths.constants`): the fixed exc -> inh weight (22.5), the inh -> exc weight
  (120), tinySNN's lateral-inhibition strength w_inh, and the neuron constants (v_rest, v_reset,
  the decay exp(-dt/tau), the refractory period, and v_th of each layer).
  Per-synapse and per-neuron values are counted per element: the n_input x N input weights (B_w),
  V_mem (B_vmem) and the threshold of each excitatory neuron, stored as theta = V_th - v_th
  (B_vth bits; the base v_th is one of the constants), and V_mem (B_vmem) of each inhibitory neuron
  of the baselines.
* ``as_simulated``: the same, except that constant-weight connections are dense N x N matrices, as
  BindsNET stores them: exc -> inh (22.5 on the diagonal) and inh -> exc (120 off the diagonal) for
  the baselines; for tinySNN its lateral inhibition as a dense N x N exc -> exc matrix (-w_inh off the
  diagonal), as a BindsNET implementation would hold it (our simulator keeps one scalar). The entries
  are :attr:`BitWidths.fixed_weights` bits, 32 unless stated: they are not the learned weights, and
  w_inh (about 120) would not fit the weights' format anyway.

The method's scale numbers ("Diehl & Cook FP32, dense storage: N100 0.39 MB, N400 2.53 MB,
N4900 207 MB", decimal MB) are M_w of ``as_simulated`` alone, (784 N + 2 N^2) x 32 bits:
393,600 / 2,534,400 / 207,446,400 bytes. The full M adds the neuron terms, 3 N x 32 bits (+0.2 % at
N = 400, which would print as 2.54 MB): :attr:`MemoryBreakdown.weight_bytes` reproduces the scale.

Not counted, as in the paper's Eq. 4: state that is not a parameter the paper quantizes (refractory
counters, the spike traces that only learning reads), learning constants (eta, theta_plus, tau_theta)
and the neuron labels of the readout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

from tinysnn.config import Variant
from tinysnn.deploy.packing import fp32_codes, pack_codes, unpack_codes
from tinysnn.quant import QuantSpec

__all__ = [
    "FP32_BITS",
    "VARIANTS",
    "BitWidths",
    "Convention",
    "MemoryBreakdown",
    "MemoryReference",
    "ParamGroup",
    "default_reference",
    "fp32_codes",
    "memory_bits",
    "memory_breakdown",
    "memory_bytes",
    "memory_norm",
    "pack_codes",
    "packed_size_bytes",
    "reference_memory",
    "unpack_codes",
]

FP32_BITS = 32
VARIANTS = tuple(v.value for v in Variant)  #: sl_stdp has the topology of diehl_cook

# Layer constants counted once each (compact and as_simulated alike).
_EXC_CONSTANTS = 5  # v_rest, v_reset, v_th (the base of theta), decay exp(-dt/tau), refractory period
_INH_CONSTANTS = 5  # v_rest, v_reset, v_th, decay, refractory period


class Convention(str, enum.Enum):
    """How constant-weight connections are stored (see the module docstring)."""

    COMPACT = "compact"
    AS_SIMULATED = "as_simulated"


@dataclass(frozen=True)
class BitWidths:
    """Bits per stored value of each parameter group (the B of Eq. 4); 32 = FP32.

    Attributes:
        weights: B_w, bits per input synaptic weight.
        vmem: B_vmem, bits per membrane potential V_mem (mV).
        vth: B_vth, bits per threshold, stored as theta = V_th - v_th (mV).
        constants: bits per layer constant (v_rest, w_inh, ...).
        fixed_weights: bits per entry of the dense constant-weight matrices (``as_simulated`` only).
    """

    weights: int = FP32_BITS
    vmem: int = FP32_BITS
    vth: int = FP32_BITS
    constants: int = FP32_BITS
    fixed_weights: int = FP32_BITS

    def __post_init__(self) -> None:
        for name in ("weights", "vmem", "vth", "constants", "fixed_weights"):
            bits = getattr(self, name)
            if not 1 <= bits <= 64:
                raise ValueError(f"bit width {name}={bits} out of range: expected 1 <= bits <= 64")

    @classmethod
    def from_spec(
        cls, spec: QuantSpec, constants: int = FP32_BITS, fixed_weights: int = FP32_BITS
    ) -> BitWidths:
        """The widths of a quantization spec: B of each format, 32 for fp32 parameters."""
        return cls(
            spec.bits_of("weights"), spec.bits_of("vmem"), spec.bits_of("vth"), constants, fixed_weights
        )


@dataclass(frozen=True)
class ParamGroup:
    """One group of stored values in Eq. 4.

    Attributes:
        name: what is stored, e.g. ``"input_weights"``, ``"exc_vmem"``.
        term: ``"w"`` (counted in M_w) or ``"n"`` (in M_n).
        count: number of stored values (N_w or N_nk).
        bits: bits per value (B_w or B_nk).
    """

    name: str
    term: str
    count: int
    bits: int

    @property
    def total_bits(self) -> int:
        """count x bits."""
        return self.count * self.bits

    @property
    def packed_bytes(self) -> int:
        """Bytes of this group packed on its own: ceil(count x bits / 8)."""
        return -(-self.total_bits // 8)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Eq. 4 for one network: its stored parameter groups and their sums.

    Attributes:
        variant: ``"diehl_cook"``, ``"sl_stdp"`` or ``"tinysnn"``.
        convention: compact or as_simulated.
        n_input: input neurons (784 for MNIST).
        n_neurons: N, excitatory neurons.
        groups: the stored parameter groups.
    """

    variant: str
    convention: Convention
    n_input: int
    n_neurons: int
    groups: Tuple[ParamGroup, ...]

    @property
    def bits(self) -> int:
        """M = M_w + M_n, in bits."""
        return sum(g.total_bits for g in self.groups)

    @property
    def bytes(self) -> int:
        """ceil(M / 8)."""
        return -(-self.bits // 8)

    @property
    def megabytes(self) -> float:
        """M in decimal megabytes (10^6 bytes), as the method quotes sizes."""
        return self.bytes / 1e6

    @property
    def weight_bits(self) -> int:
        """M_w = N_w B_w, in bits (includes constant weights)."""
        return sum(g.total_bits for g in self.groups if g.term == "w")

    @property
    def weight_bytes(self) -> int:
        """ceil(M_w / 8)."""
        return -(-self.weight_bits // 8)

    @property
    def neuron_bits(self) -> int:
        """M_n = sum_k N_nk B_nk, in bits (includes neuron constants)."""
        return sum(g.total_bits for g in self.groups if g.term == "n")

    @property
    def packed_bytes(self) -> int:
        """Bytes when each group is packed on its own and padded to a byte (what
        :func:`packed_size_bytes` returns): between ``bytes`` and ``bytes + len(groups) - 1``."""
        return sum(g.packed_bytes for g in self.groups)

    def as_dict(self) -> Dict[str, Union[int, float, str]]:
        """Flat summary (for a trial's user attributes or a table row)."""
        summary: Dict[str, Union[int, float, str]] = {
            "variant": self.variant,
            "convention": self.convention.value,
            "n_input": self.n_input,
            "n_neurons": self.n_neurons,
            "bits": self.bits,
            "bytes": self.bytes,
            "weight_bits": self.weight_bits,
            "neuron_bits": self.neuron_bits,
        }
        summary.update({f"{g.name}_bits": g.total_bits for g in self.groups})
        return summary


def _variant_of(variant: object) -> Variant:
    name = str(getattr(variant, "value", variant))
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    return Variant(name)


def memory_breakdown(
    variant: str,
    n_neurons: int,
    n_input: int = 784,
    widths: Optional[Union[BitWidths, QuantSpec]] = None,
    convention: Union[Convention, str] = Convention.COMPACT,
) -> MemoryBreakdown:
    """The stored parameters of a network and their bits, Eq. 4 (docs/method.md §3).

    Args:
        variant: ``"diehl_cook"``, ``"sl_stdp"`` (same topology) or ``"tinysnn"`` (or an enum of them).
        n_neurons: N, excitatory neurons (the baselines have as many inhibitory ones).
        n_input: input neurons.
        widths: bits per group, or a :class:`QuantSpec` to take them from; None = all FP32.
        convention: ``"compact"`` or ``"as_simulated"`` (module docstring).

    Example:
        >>> memory_breakdown("diehl_cook", 400, convention="as_simulated").weight_bytes  # 2.53 MB
        2534400
    """
    kind = _variant_of(variant)
    inhibitory_layer = kind.has_inhibitory_layer
    conv = Convention(convention)
    if n_neurons < 1 or n_input < 1:
        raise ValueError(f"need n_neurons >= 1 and n_input >= 1, got {n_neurons} and {n_input}")
    if widths is None:
        widths = BitWidths()
    elif isinstance(widths, QuantSpec):
        widths = BitWidths.from_spec(widths)
    n = n_neurons
    dense = conv is Convention.AS_SIMULATED
    groups = [ParamGroup("input_weights", "w", n_input * n, widths.weights)]
    if not inhibitory_layer:
        groups.append(
            ParamGroup("lateral_inhibition", "w", n * n, widths.fixed_weights)
            if dense
            else ParamGroup("lateral_inhibition", "w", 1, widths.constants)
        )
    else:
        for conn in ("exc_to_inh", "inh_to_exc"):
            groups.append(
                ParamGroup(f"{conn}_weights", "w", n * n, widths.fixed_weights)
                if dense
                else ParamGroup(f"{conn}_weight", "w", 1, widths.constants)
            )
    groups += [
        ParamGroup("exc_vmem", "n", n, widths.vmem),
        ParamGroup("exc_theta", "n", n, widths.vth),
        ParamGroup("exc_constants", "n", _EXC_CONSTANTS, widths.constants),
    ]
    if inhibitory_layer:
        groups += [
            ParamGroup("inh_vmem", "n", n, widths.vmem),
            ParamGroup("inh_constants", "n", _INH_CONSTANTS, widths.constants),
        ]
    return MemoryBreakdown(kind.value, conv, n_input, n_neurons, tuple(groups))


def memory_bits(
    variant: str,
    n_neurons: int,
    n_input: int = 784,
    widths: Optional[Union[BitWidths, QuantSpec]] = None,
    convention: Union[Convention, str] = Convention.COMPACT,
) -> int:
    """M of Eq. 4 in bits (see :func:`memory_breakdown`)."""
    return memory_breakdown(variant, n_neurons, n_input, widths, convention).bits


def memory_bytes(
    variant: str,
    n_neurons: int,
    n_input: int = 784,
    widths: Optional[Union[BitWidths, QuantSpec]] = None,
    convention: Union[Convention, str] = Convention.COMPACT,
) -> int:
    """M of Eq. 4 in bytes, ceil(bits / 8) (see :func:`memory_breakdown`)."""
    return memory_breakdown(variant, n_neurons, n_input, widths, convention).bytes


@dataclass(frozen=True)
class MemoryReference:
    """Which network is M_0 of M_norm: the FP32 ``variant`` with ``n_neurons`` excitatory neurons."""

    n_neurons: int
    variant: str = "diehl_cook"


def default_reference(
    sizes: Iterable[int], n_neurons: Optional[int] = None, variant: str = "diehl_cook"
) -> MemoryReference:
    """M_0's network: the FP32 ``variant`` (diehl_cook) at ``n_neurons``, by default the largest of
    ``sizes``, the network sizes the caller considers (a run: its population; a study: its space).

    One rule for `tinysnn train` and the search, so that a network gets one M_norm (docs/method.md §3).
    """
    return MemoryReference(int(n_neurons) if n_neurons is not None else max(int(n) for n in sizes), variant)


def reference_memory(
    n_neurons: int,
    n_input: int = 784,
    convention: Union[Convention, str] = Convention.COMPACT,
    variant: str = "diehl_cook",
) -> MemoryBreakdown:
    """M_0: the FP32 reference network, by default the Diehl & Cook baseline (docs/method.md §3)."""
    return memory_breakdown(variant, n_neurons, n_input, BitWidths(), convention)


def memory_norm(model: Union[MemoryBreakdown, int], reference: Union[MemoryBreakdown, int]) -> float:
    """M_norm = M_q / M_0 (docs/method.md §3), from breakdowns or bit counts.

    Raises:
        ValueError: if the two breakdowns use different conventions.
    """
    if isinstance(model, MemoryBreakdown) and isinstance(reference, MemoryBreakdown):
        if model.convention is not reference.convention:
            raise ValueError(
                f"cannot compare memory counted {model.convention.value} with {reference.convention.value}"
            )
    m_q = model.bits if isinstance(model, MemoryBreakdown) else int(model)
    m_0 = reference.bits if isinstance(reference, MemoryBreakdown) else int(reference)
    if m_0 <= 0:
        raise ValueError(f"reference memory must be positive, got {m_0} bits")
    return m_q / m_0


def packed_size_bytes(arrays: Union[Mapping[str, Tuple[object, int]], Sequence[Tuple[object, int]]]) -> int:
    """Pack each array of integer codes at its bit width and return the total length in bytes.

    Each array is packed on its own and padded to a whole byte, so for K arrays the result is
    ``sum_k ceil(N_k B_k / 8)``: Eq. 4's ``ceil(M / 8)`` plus at most K - 1 bytes of padding, and
    exactly Eq. 4 when every ``N_k B_k`` is a multiple of 8 (:attr:`MemoryBreakdown.packed_bytes`).

    Args:
        arrays: ``{name: (codes, bits)}`` or a sequence of ``(codes, bits)``; fp32 values enter as
            ``(fp32_codes(values), 32)``.

    Example:
        >>> packed_size_bytes({"w": (np.arange(10) % 16, 4), "theta": (fp32_codes([0.5]), 32)})
        9
    """
    items = arrays.values() if isinstance(arrays, Mapping) else arrays
    return sum(len(pack_codes(codes, bits)) for codes, bits in items)
