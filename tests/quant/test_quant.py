"""Tests of tinysnn.quant: formats, rounding, saturation, populations, range analysis (docs/method.md §2)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytest
import torch

from tinysnn.quant import (
    FP32,
    LABELS,
    NEAREST,
    NO_ROUNDING,
    NONE,
    STOCHASTIC,
    TRUNCATE,
    QFormat,
    QuantSpec,
    Rounding,
    Scheme,
    format_text,
    formats_for_total_bits,
    integer_bits_for,
    parse_format,
    parse_quant_arg,
    population_qparams,
    population_rows,
    quantize,
    quantize_,
    quantize_rows,
    quantize_scalar,
    quantized_or_none,
    range_of,
    ranges_per_network,
    record_fields,
    rounding_code,
    split_candidates,
    splits_for_total_bits,
    to_codes,
)

INF = math.inf
NAN = math.nan


def bits_of(t: torch.Tensor) -> torch.Tensor:
    """The raw float32 bit patterns, so that equality is bitwise (-0.0 != 0.0, NaN payloads count)."""
    return t.contiguous().view(torch.int32)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality of float32 tensors, any NaN equal to any NaN (payloads vary between ops)."""
    nan = torch.tensor(NAN)
    return torch.equal(bits_of(torch.where(a.isnan(), nan, a)), bits_of(torch.where(b.isnan(), nan, b)))


# ---- rounding on hand-picked values ------------------------------------------------------------
# SQ2.2: q = 0.25, range [-2, 1.75]. x / q in the comments.
X = [0.30, -0.30, 0.125, 0.375, -0.125, -0.375, 0.5, 1.75, 1.8, 1.9, 100.0, -2.0, -2.1, -100.0, INF, -INF]
#      1.2   -1.2  0.5    1.5    -0.5    -1.5   2     7     7.2  7.6  sat    -8    sat   sat    sat   sat
TRUNC = [0.25, -0.5, 0.0, 0.25, -0.25, -0.5, 0.5, 1.75, 1.75, 1.75, 1.75, -2.0, -2.0, -2.0, 1.75, -2.0]
# nearest: floor(x/q + 1/2), ties up (+0.5 -> 1, -0.5 -> 0, -1.5 -> -1); 1.9 -> 2.0 saturates to 1.75
NEAR = [0.25, -0.25, 0.25, 0.5, 0.0, -0.25, 0.5, 1.75, 1.75, 1.75, 1.75, -2.0, -2.0, -2.0, 1.75, -2.0]


@pytest.mark.parametrize(("mode", "expected"), [("truncate", TRUNC), ("nearest", NEAR)])
def test_deterministic_rounding_hand_values(mode: str, expected: list) -> None:
    x = torch.tensor([X])
    fmt = parse_format("SQ2.2")
    assert fmt is not None and fmt.range() == (-2.0, 1.75)
    assert quantize(x, *fmt.qparams(mode)).tolist() == [expected]
    assert quantize(x, *fmt.qparams(mode)).tolist() == [expected]


def test_stochastic_rounding_hand_values() -> None:
    # x = 0.3: x/q = 1.2, floor 1, frac 0.2 -> up iff u < 0.2.  x = -0.3: floor -2, frac 0.8.
    x = torch.tensor([[0.3, 0.3, -0.3, -0.3, 0.5, 0.5, 9.0, -9.0]])
    u = torch.tensor([[0.1, 0.5, 0.5, 0.9, 0.0, 0.999, 0.0, 0.0]])
    out = quantize(x, 2, -2.0, 1.75, "stochastic", u=u)
    assert out.tolist() == [[0.5, 0.25, -0.25, -0.5, 0.5, 0.5, 1.75, -2.0]]


def test_unsigned_saturation_all_modes() -> None:
    fmt = parse_format("UQ1.7")
    assert fmt is not None and fmt.range() == (0.0, 2 - 2**-7)
    x = torch.tensor([[-0.5, -1e-6, 0.0, 1.0, 1.99, 2.0, 2.5, 1e30, INF]])
    for mode in Rounding:
        out = quantize(x, *fmt.qparams(mode), generator=torch.Generator().manual_seed(0))
        assert out.min() >= 0.0 and out.max() <= 2 - 2**-7
        assert out[0, [0, 1, 2]].tolist() == [0.0, 0.0, 0.0]
        assert out[0, 3] == 1.0  # on the grid: exact
        assert out[0, 5:].tolist() == [2 - 2**-7] * 4


def test_fp32_passthrough_is_bitwise() -> None:
    x = torch.tensor([[0.1, -0.0, 1e-40, INF, -INF, NAN, 3.14159, -65.123]])
    same = quantize(x, 7, 0.0, 1.0, NONE)
    assert same is x
    assert torch.equal(bits_of(quantize(x, 7, 0.0, 1.0, "none")), bits_of(x))
    out = torch.empty_like(x)
    quantize(x, 7, 0.0, 1.0, None, out=out)  # type: ignore[arg-type]
    assert torch.equal(bits_of(out), bits_of(x))


def test_nan_stays_nan_and_grid_values_are_fixed_points() -> None:
    fmt = parse_format("SQ9.7")
    assert fmt is not None
    grid = torch.arange(-256 * 128, 256 * 128, 97, dtype=torch.float32).unsqueeze(0) / 128  # exact
    for mode in Rounding:
        assert torch.equal(
            quantize(grid, *fmt.qparams(mode), generator=torch.Generator().manual_seed(1)), grid
        )
    assert torch.isnan(quantize(torch.tensor([[NAN]]), 7, -1.0, 1.0, TRUNCATE)).all()


def test_nearest_is_exact_where_x_over_q_plus_half_would_round() -> None:
    # UQ24.0: x = 2^23 + 1 is an integer; in float32 x + 0.5 rounds to 2^23 + 2 (ties to even).
    x = torch.tensor([[2.0**23 + 1]])
    assert quantize(x, 0, 0.0, 2.0**24 - 1, NEAREST).item() == 2.0**23 + 1
    assert quantize_scalar(2.0**23 + 1, 1.0, 0.0, 2.0**24 - 1, NEAREST, 0.0) == 2.0**23 + 1


# ---- stochastic rounding is unbiased -----------------------------------------------------------
# For a fixed x with r = frac(x/q): Q(x) = q (floor(x/q) + b), b ~ Bernoulli(r), so E[Q(x)] = x and
# Var[Q(x)] = q^2 r (1 - r); the mean of n independent roundings has sd q sqrt(r (1 - r) / n).
# For x uniform over a cell, the error e = Q(x) - x has Var = q^2 E[r (1 - r)] = q^2 (1/2 - 1/3)
# = q^2 / 6 (not the q^2 / 12 of nearest rounding's error), so sd(mean e) = q / sqrt(6 n).
# Bounds are 5 sd (two-sided false-alarm rate 6e-7). u is float32 on a 2^-24 grid, a bias below
# q 2^-24, far under the bounds.
N_DRAWS = 200_000


@pytest.mark.parametrize("r", [0.1, 0.5, 0.9])
def test_stochastic_rounding_is_unbiased_for_fixed_x(r: float) -> None:
    q = 2.0**-4
    x32 = float(np.float32(3 * q + r * q))
    r_exact = x32 / q - math.floor(x32 / q)
    x = torch.full((1, N_DRAWS), x32)
    out = quantize(x, 4, 0.0, 16.0 - q, STOCHASTIC, generator=torch.Generator().manual_seed(123))
    assert set(out.unique().tolist()) == {3 * q, 4 * q}
    err = out.double().mean().item() - x32
    assert abs(err) < 5 * q * math.sqrt(r_exact * (1 - r_exact) / N_DRAWS)


def test_stochastic_rounding_is_unbiased_for_uniform_x_and_truncation_is_not() -> None:
    q = 2.0**-3
    gen = torch.Generator().manual_seed(7)
    x = torch.rand((1, N_DRAWS), generator=gen) * 4 - 2  # inside SQ3.3 = [-4, 3.875]
    stochastic = quantize(x, 3, -4.0, 4.0 - q, STOCHASTIC, generator=gen)
    bound = 5 * q / math.sqrt(6 * N_DRAWS)
    assert abs((stochastic.double() - x.double()).mean().item()) < bound
    # Truncation errs by -q/2 on average (error uniform on (-q, 0], sd q / sqrt(12)): the test sees it.
    trunc_bias = (quantize(x, 3, -4.0, 4.0 - q, TRUNCATE).double() - x.double()).mean().item()
    assert abs(trunc_bias + q / 2) < 5 * q / math.sqrt(12 * N_DRAWS)
    assert abs(trunc_bias) > 100 * bound


def test_stochastic_rounding_is_seeded() -> None:
    x = torch.rand((3, 50), generator=torch.Generator().manual_seed(0))
    a = quantize(x, 3, 0.0, 1.0, "stochastic", torch.Generator().manual_seed(5))
    b = quantize(x, 3, 0.0, 1.0, "stochastic", torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


# ---- populations: per-network formats and modes in one call ------------------------------------


def test_per_network_formats_and_modes_in_one_call() -> None:
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn((5, 4, 6), generator=gen) * 3).contiguous()
    x[0, 0, 0] = NAN
    u = torch.rand(x.shape, generator=gen)
    frac = torch.tensor([7, 4, 2, 0, 3])
    lo = torch.tensor([0.0, -8.0, -2.0, -INF, -4.0])
    hi = torch.tensor([2 - 2**-7, 8 - 2**-4, 2 - 2**-2, INF, 4 - 2**-3])
    mode = torch.tensor([TRUNCATE, NEAREST, STOCHASTIC, NONE, NEAREST])
    out = quantize(x, frac, lo, hi, mode, u=u)
    for p in range(5):
        alone = quantize(x[p : p + 1], int(frac[p]), float(lo[p]), float(hi[p]), int(mode[p]), u=u[p : p + 1])
        assert same(out[p : p + 1], alone), p
    assert torch.equal(bits_of(out[3]), bits_of(x[3]))  # fp32 network untouched, bit for bit
    assert torch.isnan(out[0, 0, 0])


def test_population_helpers_and_rows_agree_with_quantize() -> None:
    specs = [
        parse_quant_arg("weights=Q1.7,vmem=Q9.7,vth=Q9.7"),
        parse_quant_arg("weights=Q2.2,vmem=Q8.0", rounding="nearest"),
        parse_quant_arg("weights=Q1.3,vmem=Q7.1,rounding=stochastic"),
        QuantSpec(),
    ]
    gen = torch.Generator().manual_seed(11)
    v = torch.randn((4, 1, 30), generator=gen) * 20 - 60  # mV
    u = torch.rand(v.shape, generator=gen)
    rows, modes = population_rows(specs, "vmem")
    assert rows.shape == (4, 3) and rows[0].tolist() == [128.0, -256.0, 256 - 2**-7]
    assert modes.dtype == torch.int64 and modes.tolist() == [TRUNCATE, NEAREST, STOCHASTIC, NONE]
    qp = population_qparams([s.vmem for s in specs], [s.rounding for s in specs], signed=True)
    by_rows = quantize_rows(v, rows, modes, u=u)
    by_params = quantize(v, *qp, u=u)
    assert same(by_rows, by_params)
    for p, spec in enumerate(specs):
        alone = quantize(v[p : p + 1], *spec.qparams("vmem"), u=u[p : p + 1])
        assert same(by_rows[p : p + 1], alone)


def test_in_place_and_out() -> None:
    x = torch.tensor([[0.3, 0.7], [1.3, -0.2]])
    expected = quantize(x, torch.tensor([1, 2]), 0.0, 1.5, torch.tensor([TRUNCATE, NONE]))
    assert expected.tolist() == [[0.0, 0.5], [1.3, -0.2]] or torch.allclose(
        expected, torch.tensor([[0.0, 0.5], [1.3, -0.2]])
    )
    y = x.clone()
    assert quantize_(y, torch.tensor([1, 2]), 0.0, 1.5, torch.tensor([TRUNCATE, NONE])) is y
    assert torch.equal(y, expected)
    z = x.clone()
    quantize_(z, 2, 0.0, 1.5, "nearest")
    assert z.tolist() == [[0.25, 0.75], [1.25, 0.0]]


def test_to_codes() -> None:
    fmt = parse_format("SQ2.6")
    assert fmt is not None
    x = quantize(torch.linspace(-3, 3, 101).unsqueeze(0), *fmt.qparams("nearest"))
    codes = to_codes(x, fmt.frac_bits)
    lo, hi = fmt.code_range()
    assert codes.dtype == torch.int64 and codes.min() == lo and codes.max() == hi
    assert torch.equal(codes.float() / 64, x)
    per_net = to_codes(torch.tensor([[0.5], [0.5]]), torch.tensor([1, 3]))
    assert per_net.tolist() == [[1], [4]]


# ---- the scalar kernel agrees with the tensor path ---------------------------------------------


def _scalar_cases() -> tuple:
    gen = torch.Generator().manual_seed(42)
    formats = ["UQ1.7", "SQ9.7", "SQ8.0", "UQ0.4", "SQ2.2", "UQ16.16", "SQ1.23", "UQ24.0"]
    x = torch.cat(
        [torch.randn(400, generator=gen) * s for s in (1e-3, 0.5, 4, 100, 1e5)]
    )  # 1e-3: -q/2 < x < 0 cases
    x = torch.cat([x, torch.tensor([0.0, -0.0, INF, -INF, NAN, 1e-40, 0.5, -0.5, 2.0**23 + 1])])
    u = torch.rand(x.shape, generator=gen)
    return formats, x, u


def test_quantize_scalar_agrees_bitwise_with_quantize() -> None:
    formats, x, u = _scalar_cases()
    for text in formats:
        fmt = parse_format(text)
        assert fmt is not None
        lo, hi = fmt.range()
        for code in (NONE, TRUNCATE, NEAREST, STOCHASTIC):
            ref = quantize(x.unsqueeze(0), fmt.frac_bits, lo, hi, code, u=u.unsqueeze(0))[0]
            got = torch.tensor(
                [quantize_scalar(float(a), fmt.scale, lo, hi, code, float(b)) for a, b in zip(x, u)],
                dtype=torch.float32,
            )
            assert same(got, ref), (text, code)


def test_quantize_scalar_compiles_with_numba() -> None:
    numba = pytest.importorskip("numba")
    kernel = numba.njit(quantize_scalar)
    _, x, u = _scalar_cases()
    fmt = QFormat(9, 7, True)
    lo, hi = fmt.range()
    for code in (NONE, TRUNCATE, NEAREST, STOCHASTIC):
        ref = quantize(x.unsqueeze(0), 7, lo, hi, code, u=u.unsqueeze(0))[0]
        got = torch.tensor([kernel(float(a), 128.0, lo, hi, code, float(b)) for a, b in zip(x, u)])
        assert same(got.float(), ref), code


# ---- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "i", "f", "signed", "lo", "hi"),
    [
        ("UQ0.8", 0, 8, False, 0.0, 1 - 2**-8),
        ("UQ1.7", 1, 7, False, 0.0, 2 - 2**-7),
        ("SQ9.7", 9, 7, True, -256.0, 256 - 2**-7),
        ("SQ1.0", 1, 0, True, -1.0, 0.0),
        ("UQ32.0", 32, 0, False, 0.0, 2.0**32 - 1),
        ("SQ1.31", 1, 31, True, -1.0, 1 - 2**-31),
    ],
)
def test_format_parse_range_and_round_trip(
    text: str, i: int, f: int, signed: bool, lo: float, hi: float
) -> None:
    fmt = parse_format(text)
    assert fmt == QFormat(i, f, signed)
    assert str(fmt) == text and format_text(fmt) == text
    assert fmt.total_bits == i + f and fmt.step == 2.0**-f and fmt.scale == 2.0**f
    assert fmt.range() == (lo, hi)
    assert fmt.code_range() == (
        (-(2 ** (i + f - 1)), 2 ** (i + f - 1) - 1) if signed else (0, 2 ** (i + f) - 1)
    )


def test_open_signedness_is_decided_by_the_parameter() -> None:
    fmt = parse_format("Q1.7")
    assert fmt == QFormat(1, 7, None) and str(fmt) == "Q1.7"
    assert fmt.range(False) == (0.0, 2 - 2**-7)  # weights
    assert fmt.range(True) == (-1.0, 1 - 2**-7)  # V_mem, V_th
    assert fmt.resolve(False) == QFormat(1, 7, False)
    assert parse_format("uq1.7") == QFormat(1, 7, False)  # case-insensitive
    assert parse_format("FP32") is None and format_text(None) == "fp32"
    with pytest.raises(ValueError, match="pass signed"):
        fmt.range()
    with pytest.raises(ValueError, match="i = 0"):
        QFormat(0, 8).range(True)
    assert QFormat(0, 8, None).range(False) == (0.0, 1 - 2**-8)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Q0.0", "i\\+f = 0"),
        ("Q-1.8", "negative"),
        ("Q4.-2", "negative"),
        ("Q20.20", "i\\+f = 40"),
        ("UQ33.0", "i\\+f = 33"),
        ("SQ0.8", "sign bit"),
        ("Q1", ""),
        ("Qa.b", ""),
        ("int8", ""),
        ("Q1.7.1", ""),
        ("", ""),
    ],
)
def test_format_rejects_nonsense_with_a_clear_message(text: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_format(text)
    message = str(info.value)
    assert repr(text) in message
    assert "expected Qi.f, UQi.f, SQi.f or fp32 with 1 <= i+f <= 32" in message
    assert why == "" or __import__("re").search(why, message)


def test_qformat_constructor_validates() -> None:
    with pytest.raises(ValueError, match="negative"):
        QFormat(-1, 8)
    with pytest.raises(ValueError, match="i\\+f = 0"):
        QFormat(0, 0)
    with pytest.raises(ValueError, match="sign bit"):
        QFormat(0, 4, True)


def test_rounding_codes() -> None:
    assert (NONE, TRUNCATE, NEAREST, STOCHASTIC) == (0, 1, 2, 3)
    assert [r.code for r in Rounding] == [TRUNCATE, NEAREST, STOCHASTIC]
    assert rounding_code("Stochastic") == STOCHASTIC and rounding_code(None) == NONE and rounding_code(2) == 2
    # FP32 has no rounding: None in memory, "none" as model.json records it (NO_ROUNDING)
    assert NO_ROUNDING == "none" and rounding_code(NO_ROUNDING) == rounding_code(" None ") == NONE
    for bad in ("round", FP32, ""):  # "fp32" is a format's and a label's text, not a rounding's
        with pytest.raises(ValueError, match="truncate, nearest, stochastic"):
            rounding_code(bad)
    with pytest.raises(ValueError):
        rounding_code(7)


# ---- QuantSpec ---------------------------------------------------------------------------------


def test_parse_quant_arg() -> None:
    spec = parse_quant_arg("weights=Q1.7,vmem=Q9.7,vth=Q9.7")
    assert spec.weights == QFormat(1, 7) and spec.vmem == QFormat(9, 7) and spec.vth == QFormat(9, 7)
    assert spec.rounding is Rounding.TRUNCATE and spec.scheme is Scheme.PTQ
    assert spec.quantizes_weights and spec.quantizes_neurons and spec.label == "qWN"
    assert spec.bits_of("weights") == 8 and spec.bits_of("vmem") == 16
    assert spec.range_of("weights") == (0.0, 2 - 2**-7) and spec.range_of("vmem") == (-256.0, 256 - 2**-7)
    assert parse_quant_arg(spec.to_text()) == spec
    assert spec.to_text() == "weights=Q1.7,vmem=Q9.7,vth=Q9.7,rounding=truncate,scheme=ptq"

    qw = parse_quant_arg(" weights = UQ0.8 , vmem=fp32 ", rounding="stochastic", scheme="itq")
    assert qw.label == "qW" and not qw.quantizes_neurons and qw.vmem is None and qw.vth is None
    assert qw.rounding is Rounding.STOCHASTIC and qw.scheme is Scheme.ITQ
    assert qw.bits_of("vmem") == 32 and qw.range_of("vth") == (-INF, INF)
    assert qw.qparams("vth") == (0, -INF, INF, NONE)
    assert parse_quant_arg("weights=Q1.7,rounding=nearest,scheme=itq").rounding is Rounding.NEAREST
    assert parse_quant_arg("vth=Q8.8").label == "qN"
    for empty in ("fp32", " FP32 "):  # "" is refused (tests/test_config.py)
        assert parse_quant_arg(empty) == QuantSpec() and QuantSpec().is_fp32 and QuantSpec().label == "fp32"


def test_fp32_is_none_in_memory_and_one_text_in_records() -> None:
    assert FP32 == "fp32" == LABELS[0] == format_text(None) and parse_format(FP32) is None
    itq_fp32 = QuantSpec(scheme="itq", rounding="stochastic")  # quantizes nothing: FP32 all the same
    assert quantized_or_none(None) is None and quantized_or_none(itq_fp32) is None
    qw = parse_quant_arg("weights=UQ1.7", rounding="nearest", scheme="itq")
    assert quantized_or_none(qw) is qw
    fp32 = ("fp32", "fp32", "fp32", "none")
    assert record_fields(None) == record_fields(QuantSpec()) == record_fields(itq_fp32) == fp32
    assert record_fields(qw) == ("qW", qw.to_text(), "itq", "nearest")
    assert record_fields(qw).text == "weights=UQ1.7,vmem=fp32,vth=fp32,rounding=nearest,scheme=itq"
    assert rounding_code(record_fields(None).rounding) == NONE  # what a record says reads back as no rounding


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("w=Q1.7", "weights, vmem, vth, rounding, scheme"),
        ("weights", "key=value"),
        ("weights=Q1.7,weights=Q2.6", "twice"),
        ("weights=Q0.0", "i\\+f = 0"),
        ("vmem=Q0.8", "i = 0"),  # V_mem is signed: no room for the sign bit
        ("rounding=round", "truncate, nearest, stochastic"),
        ("scheme=qat", "ptq, itq"),
    ],
)
def test_parse_quant_arg_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_quant_arg(text)


# ---- range analysis ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lo", "hi", "signed", "expected"),
    [
        (0.0, 1.0, None, (1, False)),  # max exactly 2^0: 1.0 must be representable -> UQ1.f
        (0.0, 0.99, None, (0, False)),  # UQ0.f covers [0, 1)
        (0.0, 0.3, None, (0, False)),
        (0.0, 1.5, None, (1, False)),
        (0.0, 2.0, None, (2, False)),  # max exactly 2^1
        (0.0, 0.0, None, (0, False)),
        (-64.0, -52.0, None, (7, True)),  # min exactly -2^6 fits SQ7.f = [-64, 64)
        (-65.0, -52.0, None, (8, True)),
        (-80.0, 10.0, None, (8, True)),
        (-1.0, 0.5, None, (1, True)),  # SQ1.f = [-1, 1)
        (-0.5, 1.0, None, (2, True)),  # 1.0 needs SQ2.f
        (-0.25, 0.25, None, (1, True)),
        (0.0, 1.0, True, (2, True)),  # forced sign bit
        (-52.0, -52.0, True, (7, True)),
    ],
)
def test_integer_bits_for(lo: float, hi: float, signed: Optional[bool], expected: tuple) -> None:
    assert integer_bits_for(lo, hi, signed) == expected


def test_integer_bits_for_is_the_fewest_that_fit() -> None:
    def fits(i: int, signed: bool, a: float, b: float) -> bool:  # as f grows: [-2^(i-1), 2^(i-1)) or [0, 2^i)
        return (-(2.0 ** (i - 1)) <= a and b < 2.0 ** (i - 1)) if signed else (0 <= a and b < 2.0**i)

    rng = np.random.default_rng(0)
    for _ in range(500):
        a, b = sorted(rng.normal(scale=10.0 ** rng.integers(-2, 4), size=2).tolist())
        i, signed = integer_bits_for(a, b)
        assert signed == (a < 0) and fits(i, signed, a, b)
        assert i == (1 if signed else 0) or not fits(i - 1, signed, a, b)


def test_integer_bits_for_rejects_bad_ranges() -> None:
    for lo, hi in [(1.0, 0.0), (NAN, 1.0), (0.0, INF)]:
        with pytest.raises(ValueError, match="expected finite lo <= hi"):
            integer_bits_for(lo, hi)
    with pytest.raises(ValueError, match="signed"):
        integer_bits_for(-1.0, 1.0, signed=False)


def test_formats_for_total_bits() -> None:
    ranges = {"weights": (0.0, 1.0), "vmem": (-80.0, -52.0), "other": (-1.0, 1.0), "neg": (-64.0, -52.0)}
    formats = formats_for_total_bits(8, ranges)
    assert {k: str(v) for k, v in formats.items()} == {
        "weights": "Q1.7",  # unsigned by convention: open
        "vmem": "Q8.0",  # 80 < 2^7, plus sign
        "other": "SQ2.6",  # no convention: explicit
        "neg": "SQ7.1",  # -64 >= -2^6
    }
    assert formats["vmem"].range(True) == (-128.0, 127.0)
    assert str(formats_for_total_bits(16, {"vmem": (-70.0, -40.0)})["vmem"]) == "Q8.8"
    per_param = formats_for_total_bits({"weights": 4, "vmem": 12}, {"weights": (0, 0.3), "vmem": (-70, -40)})
    assert {k: str(v) for k, v in per_param.items()} == {"weights": "Q0.4", "vmem": "Q8.4"}
    spec = QuantSpec(weights=formats["weights"], vmem=formats["vmem"])
    assert spec.bits_of("vmem") == 8 and parse_quant_arg(spec.to_text()) == spec
    with pytest.raises(ValueError, match="1 <= B <= 32"):
        formats_for_total_bits(40, {"weights": (0.0, 1.0)})


def test_a_format_too_narrow_for_the_range_saturates_instead_of_raising() -> None:
    # issue 25, decision 1: V_mem about rest spans -80..-52 mV (8 integer bits with the sign); 4 bits keep
    # the sign and 3 more, and clamp the rest at -8..7 mV
    fmt = formats_for_total_bits(4, {"vmem": (-80.0, -52.0)})["vmem"]
    assert str(fmt) == "Q4.0" and fmt.range(True) == (-8.0, 7.0)
    # the fewest fractional bits come first, the integer bits take what is left
    assert str(formats_for_total_bits(8, {"weights": (0.0, 3.0)}, {"weights": 7})["weights"]) == "Q1.7"
    assert str(formats_for_total_bits(6, {"other": (-200.0, 100.0)})["other"]) == "SQ6.0"
    # what cannot be built still raises: no room for the sign bit plus the fewest fractional bits
    with pytest.raises(ValueError, match=r"6 <= B <= 32 \(1 integer bit for the sign and 5 fractional"):
        formats_for_total_bits(5, {"vmem": (-80.0, 20.0)}, {"vmem": 5})
    with pytest.raises(ValueError, match="B = 0 bits"):
        formats_for_total_bits(0, {"weights": (0.0, 1.0)})


def test_split_candidates_trade_integer_bits_for_fractional_bits() -> None:
    cands = split_candidates(8, {"weights": (0.0, 1.0), "vmem": (-120.0, 20.0), "other": (0.0, 3.0)}, count=3)
    assert {k: [str(f) for f in v] for k, v in cands.items()} == {
        "weights": ["Q1.7", "Q0.8"],  # UQ0.f is the narrowest unsigned split
        "vmem": ["Q8.0", "Q7.1", "Q6.2"],  # the range holder first, then saturating ones
        "other": ["UQ2.6", "UQ1.7", "UQ0.8"],
    }
    # the range needs 9 integer bits: at 8 bits the widest split saturates already
    assert [str(f) for f in splits_for_total_bits(8, -300.0, 20.0, "vmem", 0, 2)] == ["Q8.0", "Q7.1"]
    assert [str(f) for f in splits_for_total_bits(8, -10.0, 10.0, "vmem", 5, 4)] == ["Q3.5", "Q2.6", "Q1.7"]
    assert [str(f) for f in splits_for_total_bits(4, -300.0, 20.0, "vmem")] == ["Q4.0"]
    with pytest.raises(ValueError, match="count = 0: expected at least 1 split"):
        splits_for_total_bits(8, 0.0, 1.0, "weights", 0, 0)


def test_range_of() -> None:
    x = torch.tensor([[0.5, -2.0], [3.0, 1.0]])
    assert range_of(x) == (-2.0, 3.0)
    lo, hi = ranges_per_network(x)
    assert lo.tolist() == [-2.0, 1.0] and hi.tolist() == [0.5, 3.0]
    with pytest.raises(ValueError, match="empty"):
        range_of(torch.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        range_of(torch.tensor([1.0, NAN]))


def test_negative_zero_becomes_code_zero() -> None:
    x = torch.tensor([[-0.0]])
    for mode in Rounding:
        assert bits_of(quantize(x, 4, -8.0, 8.0 - 2**-4, mode, u=torch.full_like(x, 0.5))).item() == 0
        assert math.copysign(1.0, quantize_scalar(-0.0, 16.0, -8.0, 8.0 - 2**-4, mode.code, 0.5)) == 1.0


def test_stochastic_decision_is_exact_for_small_negative_values() -> None:
    # y = x/q = -(1/4 + 3 2^-25), so frac(y) = 3/4 - 1.5 2^-24, which float32 rounds down to
    # 3/4 - 2^-23. With u = 3/4 - 2^-23 < frac(y) the value must round up, to 0.
    y = -(0.25 + 3 * 2.0**-25)
    u = 0.75 - 2.0**-23
    assert float(np.float32(y)) == y and float(np.float32(1 + np.float32(y))) == u  # the trap is real
    out = quantize(torch.tensor([[y]]), 0, -4.0, 3.0, STOCHASTIC, u=torch.tensor([[u]]))
    assert out.item() == 0.0
    assert quantize_scalar(y, 1.0, -4.0, 3.0, STOCHASTIC, u) == 0.0
    assert quantize(torch.tensor([[y]]), 0, -4.0, 3.0, STOCHASTIC, u=torch.tensor([[0.75]])).item() == -1.0


@pytest.mark.skipif(
    not torch.cuda.is_available() or not hasattr(torch.cuda, "set_sync_debug_mode"), reason="needs CUDA"
)
def test_cuda_matches_cpu_without_host_sync() -> None:
    gen = torch.Generator().manual_seed(9)
    x = torch.randn((4, 3, 1000), generator=gen) * 50
    u = torch.rand(x.shape, generator=gen)
    args = (torch.tensor([7, 4, 0, 2]), torch.tensor([-256.0, -8.0, -INF, -2.0]))
    hi, mode = torch.tensor([256 - 2**-7, 8 - 2**-4, INF, 2 - 2**-2]), torch.tensor([1, 2, 0, 3])
    ref = quantize(x, *args, hi, mode, u=u)
    dev = torch.device("cuda")
    on_dev = [t.to(dev) for t in (x, *args, hi, mode, u)]
    cuda_gen = torch.Generator(device=dev).manual_seed(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = quantize(*on_dev[:5], u=on_dev[5])
        quantize(on_dev[0], *on_dev[1:5], cuda_gen)  # draws u on the device
        quantize(on_dev[0], 7, -256.0, 256 - 2**-7, "stochastic", cuda_gen)
        quantize_(on_dev[0].clone(), *on_dev[1:3], 4.0, on_dev[4], any_stochastic=False)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert same(out.cpu(), ref)
