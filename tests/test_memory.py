"""Tests of tinysnn.memory: Eq. 4 (docs/method.md §3) by hand, and real packing of integer codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinysnn.memory import (
    BitWidths,
    Convention,
    fp32_codes,
    memory_bits,
    memory_breakdown,
    memory_bytes,
    memory_norm,
    pack_codes,
    packed_size_bytes,
    reference_memory,
    unpack_codes,
)
from tinysnn.quant import PARAM_SIGNED, QuantSpec, parse_quant_arg, quantize, to_codes

# Layer constants counted once at 32 bits: exc v_rest, v_reset, v_th (theta's base), decay, refractory (5);
# inh v_rest, v_reset, v_th, decay, refractory (5); compact connection constants 22.5 and 120 (2),
# or tinySNN's w_inh (1).


def test_spec_scale_numbers_are_dense_weights_at_fp32() -> None:
    # (784 N + 2 N^2) x 32 bits / 8 = bytes:
    #   N = 100:  (78,400 + 20,000) x 4 = 393,600 B = 0.39 MB
    #   N = 400:  (313,600 + 320,000) x 4 = 2,534,400 B = 2.53 MB
    #   N = 4900: (3,841,600 + 48,020,000) x 4 = 207,446,400 B = 207 MB
    for n, expected, mb in [(100, 393_600, "0.39"), (400, 2_534_400, "2.53"), (4900, 207_446_400, "207")]:
        dense = reference_memory(n, convention="as_simulated")
        assert dense.weight_bytes == expected
        assert f"{dense.weight_bytes / 1e6:.{len(mb.split('.')[1]) if '.' in mb else 0}f}" == mb
        # The neuron terms add 3 N values (exc V_mem, exc theta, inh V_mem) and 10 constants at 32 bits.
        assert dense.bits == expected * 8 + 3 * n * 32 + 10 * 32


def test_diehl_cook_fp32_by_hand() -> None:
    compact = memory_breakdown("diehl_cook", 100)
    # input weights 784 x 100 x 32 = 2,508,800; two constant weights 2 x 32 = 64;
    # exc V_mem, exc theta, inh V_mem: 3 x 100 x 32 = 9,600; 10 neuron constants x 32 = 320
    assert compact.weight_bits == 2_508_800 + 64
    assert compact.neuron_bits == 9_600 + 320
    assert compact.bits == 2_518_784 and compact.bytes == 314_848
    assert memory_bits("diehl_cook", 100) == 2_518_784 and memory_bytes("diehl_cook", 100) == 314_848
    dense = memory_breakdown("diehl_cook", 100, convention=Convention.AS_SIMULATED)
    # dense exc->inh and inh->exc: 2 x 100 x 100 x 32 = 640,000 replace the two constants
    assert dense.bits == 2_508_800 + 640_000 + 9_600 + 320 == 3_158_720
    assert {g.name for g in dense.groups} >= {"exc_to_inh_weights", "inh_to_exc_weights", "inh_vmem"}


def test_sl_stdp_has_the_diehl_cook_topology() -> None:
    for conv in Convention:
        a = memory_breakdown("sl_stdp", 225, 64, BitWidths(6, 10, 12), conv)
        b = memory_breakdown("diehl_cook", 225, 64, BitWidths(6, 10, 12), conv)
        assert a.groups == b.groups and a.variant == "sl_stdp"


def test_tinysnn_quantized_by_hand() -> None:
    qw = parse_quant_arg("weights=Q1.7")
    qwn = parse_quant_arg("weights=Q1.7,vmem=Q9.7,vth=Q9.7")
    # qW, compact: 784 x 100 x 8 = 627,200; w_inh 32; V_mem + theta 2 x 100 x 32 = 6,400; 5 x 32 = 160
    assert memory_bits("tinysnn", 100, widths=qw) == 627_200 + 32 + 6_400 + 160 == 633_792
    # qWN, compact: V_mem and theta at 16 bits: 2 x 100 x 16 = 3,200
    assert memory_bits("tinysnn", 100, widths=qwn) == 627_200 + 32 + 3_200 + 160 == 630_592
    # qW, as simulated: dense lateral inhibition 100 x 100 x 32 = 320,000 replaces w_inh
    assert (
        memory_bits("tinysnn", 100, widths=qw, convention="as_simulated") == 627_200 + 320_000 + 6_400 + 160
    )
    # ... or at 8 bits when stated
    widths = BitWidths.from_spec(qw, fixed_weights=8)
    assert (
        memory_bits("tinysnn", 100, widths=widths, convention="as_simulated")
        == 627_200 + 80_000 + 6_400 + 160
    )
    b = memory_breakdown("tinysnn", 100, widths=qw)
    assert not any(g.name.startswith("inh") for g in b.groups)
    assert b.as_dict()["input_weights_bits"] == 627_200 and b.as_dict()["convention"] == "compact"


def test_memory_norm_and_savings_at_400_neurons() -> None:
    # M_0 = Diehl & Cook FP32, N = 400, compact: 313,600 x 32 + 2 x 32 + 1,200 x 32 + 10 x 32 = 10,073,984
    ref = reference_memory(400)
    assert ref.bits == 10_035_200 + 64 + 38_400 + 320 == 10_073_984
    qw = memory_breakdown("tinysnn", 400, widths=BitWidths(weights=8))
    # 313,600 x 8 + 32 + 800 x 32 + 160 = 2,534,592
    assert qw.bits == 2_508_800 + 32 + 25_600 + 160 == 2_534_592
    assert memory_norm(qw, ref) == pytest.approx(2_534_592 / 10_073_984)
    assert 1 / memory_norm(qw, ref) == pytest.approx(3.9746, abs=1e-4)
    qwn = memory_breakdown("tinysnn", 400, widths=BitWidths(8, 8, 8))
    assert 1 / memory_norm(qwn, ref) == pytest.approx(10_073_984 / (2_508_800 + 32 + 6_400 + 160))
    # As simulated, with the dense inhibition at 32 bits:
    # M_0 = 633,600 x 32 + 1,200 x 32 + 10 x 32 = 20,313,920; tinySNN qW = 2,508,800 + 160,000 x 32 + 25,760
    ref_d = reference_memory(400, convention="as_simulated")
    qw_d = memory_breakdown("tinysnn", 400, widths=BitWidths(weights=8), convention="as_simulated")
    assert ref_d.bits == 20_313_920 and qw_d.bits == 2_508_800 + 5_120_000 + 25_600 + 160
    assert 1 / memory_norm(qw_d, ref_d) == pytest.approx(2.6538, abs=1e-4)
    assert memory_norm(ref, ref) == 1.0 and memory_norm(100, 400) == 0.25
    with pytest.raises(ValueError, match="compact with as_simulated"):
        memory_norm(ref, ref_d)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="diehl_cook, sl_stdp, tinysnn"):
        memory_breakdown("lenet", 100)
    with pytest.raises(ValueError):
        memory_breakdown("tinysnn", 0)
    with pytest.raises(ValueError):
        memory_breakdown("tinysnn", 10, convention="sparse")
    with pytest.raises(ValueError, match="bits"):
        BitWidths(weights=0)


# ---- real packing ------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 3, 5, 7, 8, 12, 16, 23, 32, 33])
@pytest.mark.parametrize("signed", [False, True])
def test_pack_round_trip(bits: int, signed: bool) -> None:
    rng = np.random.default_rng(bits)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    codes = rng.integers(lo, hi, size=37, endpoint=True)
    codes[:2] = [lo, hi]
    data = pack_codes(codes, bits, signed)
    assert len(data) == -(-37 * bits // 8)
    assert np.array_equal(unpack_codes(data, bits, 37, signed), codes)


def test_pack_layout_and_range_checks() -> None:
    assert pack_codes([1, 0, 1, 1, 0, 0, 0, 0, 1], 1) == bytes([0b10110000, 0b10000000])
    assert pack_codes([-1, 1], 4, signed=True) == bytes([0xF1])
    assert pack_codes(torch.tensor([258]), 16) == bytes([1, 2])  # big-endian, torch input
    with pytest.raises(ValueError, match="do not fit 4 bits"):
        pack_codes([16], 4)
    with pytest.raises(ValueError, match="do not fit"):
        pack_codes([8], 4, signed=True)
    with pytest.raises(ValueError, match="integer codes"):
        pack_codes(np.array([0.5]), 8)


def _quantized_codes(spec: QuantSpec, n_input: int, n: int, variant: str) -> dict:
    """Integer codes of every stored value of a compact-convention network, quantized with ``spec``."""
    gen = torch.Generator().manual_seed(0)
    values = {
        "weights": torch.rand((1, n_input, n), generator=gen),
        "vmem": -65 + 10 * torch.randn((1, n), generator=gen),
        "vth": 4 * torch.rand((1, n), generator=gen),  # theta = V_th - v_th
    }
    arrays = {}
    for param, x in values.items():
        fmt = spec.format_of(param)
        if fmt is None:
            arrays[param] = (fp32_codes(x.numpy()), 32)
        else:
            xq = quantize(x, *fmt.qparams(spec.rounding, PARAM_SIGNED[param]))
            arrays[param] = (to_codes(xq, fmt.frac_bits), fmt.total_bits)
    if variant != "tinysnn":
        arrays["inh_vmem"] = (
            (fp32_codes(np.full(n, -60.0)), 32)
            if spec.vmem is None
            else (
                to_codes(
                    quantize(torch.full((1, n), -60.0), *spec.vmem.qparams(spec.rounding, True)),
                    spec.vmem.frac_bits,
                ),
                spec.vmem.total_bits,
            )
        )
        arrays["inh_constants"] = (fp32_codes([-60.0, -45.0, -40.0, 0.905, 2.0]), 32)
        arrays["connection_constants"] = (fp32_codes([22.5, 120.0]), 32)
    else:
        arrays["w_inh"] = (fp32_codes([120.0]), 32)
    arrays["exc_constants"] = (fp32_codes([-65.0, -60.0, -52.0, 0.99, 5.0]), 32)
    return arrays


@pytest.mark.parametrize(
    ("variant", "text", "n_input", "n"),
    [
        ("tinysnn", "weights=Q1.7,vmem=Q9.7,vth=Q9.7", 784, 16),  # every array byte-aligned
        ("tinysnn", "weights=Q1.7", 784, 16),
        ("diehl_cook", "weights=Q2.6,vmem=Q8.8,vth=Q8.8", 64, 10),
        ("diehl_cook", "fp32", 64, 10),  # FP32
    ],
)
def test_packed_size_equals_eq4_when_aligned(variant: str, text: str, n_input: int, n: int) -> None:
    spec = parse_quant_arg(text)
    arrays = _quantized_codes(spec, n_input, n, variant)
    breakdown = memory_breakdown(variant, n, n_input, spec)
    assert packed_size_bytes(arrays) == breakdown.bytes == breakdown.packed_bytes


@pytest.mark.parametrize(
    ("variant", "text", "n_input", "n"),
    [
        ("tinysnn", "weights=Q1.4,vmem=Q8.3,vth=Q7.2,rounding=stochastic", 9, 11),
        ("diehl_cook", "weights=Q0.5,vmem=Q8.1", 13, 5),
    ],
)
def test_packed_size_pads_each_array_to_a_byte(variant: str, text: str, n_input: int, n: int) -> None:
    spec = parse_quant_arg(text)
    arrays = _quantized_codes(spec, n_input, n, variant)
    breakdown = memory_breakdown(variant, n, n_input, spec)
    packed = packed_size_bytes(list(arrays.values()))
    # sum_k ceil(N_k B_k / 8): Eq. 4's ceil(M / 8) plus under one byte of padding per extra array
    assert (
        packed == breakdown.packed_bytes == sum(-(-np.asarray(c).size * b // 8) for c, b in arrays.values())
    )
    assert breakdown.bytes <= packed <= breakdown.bytes + len(arrays) - 1
    assert packed > breakdown.bytes  # these shapes do leave padding
