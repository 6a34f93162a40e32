"""Fixed-point formats Qi.f, rounding and saturation (docs/method.md §2; Q-SpiNN as used by tinySNN).

A value is stored as an integer code k in B = i + f bits and stands for k * 2^-f:

* ``i`` integer bits *including the sign bit* when the value can be negative (two's complement),
  ``f`` fractional bits, step ``q = 2^-f``.
* signed range ``[-2^(i-1), 2^(i-1) - q]``; unsigned range ``[0, 2^i - q]``.

Text forms: ``Q1.7`` (signedness decided by the parameter: the synaptic weights are unsigned since
``w`` lies in ``[0, w_max]``; the membrane potential V_mem, stored as V_mem - v_rest in mV, is
signed; the threshold V_th, stored as theta = V_th - v_th >= 0 in mV, is unsigned),
``UQ0.8`` (unsigned), ``SQ9.7`` (signed) and ``fp32`` (no quantization, represented by ``None``).

Rounding, with ``q = 2^-f`` (docs/method.md §2), then saturation to ``[lo, hi]``:

* truncation: ``q floor(x/q)``
* nearest:    ``q floor(x/q + 1/2)``, computed as ``q (floor(x/q) + [frac(x/q) >= 1/2])``, which is
  the same number but exact in float32 (``x/q + 1/2`` itself can round up when ``|x/q| >= 2^23``);
  ties go up (towards +inf), also for negative values.
* stochastic: ``q floor(x/q) + q [u < frac(x/q)]``, ``u ~ U[0, 1)``, so ``E[Q(x)] = x`` (unbiased) and
  values on the grid stay exact.

Zero is always +0.0 (code 0). In float32 every result is exactly ``k 2^-f`` (a float32 with
``|x/q| >= 2^24`` is already on the grid); for B > 24 only the bounds lo, hi may round to float32.

PTQ (post-training) and ITQ (in-training) call the same :func:`quantize`; only the points in the
training loop differ (docs/method.md §2). Integer-bit analysis (:func:`integer_bits_for`) turns the
value range of an FP32 run into ``i``; the fractional bits are what is left of the precision B.
"""

import importlib
from typing import Any

from .formats import (
    DEFAULT_NORMALIZATION,
    FP32,
    LABELS,
    LEAK_BITS,
    MAX_TOTAL_BITS,
    NEAREST,
    NO_ROUNDING,
    NONE,
    PARAM_SIGNED,
    PARAMS,
    STOCHASTIC,
    TRUNCATE,
    Normalization,
    QFormat,
    QParams,
    QuantSpec,
    RecordFields,
    Rounding,
    Scheme,
    format_text,
    parse_format,
    parse_quant_arg,
    quantized_or_none,
    record_fields,
    rounding_code,
)

_ON_FIRST_USE = {
    **dict.fromkeys(
        [
            "formats_for_total_bits",
            "integer_bits_for",
            "itq_problem",
            "min_frac_bits_for_step",
            "range_of",
            "ranges_per_network",
            "split_candidates",
            "splits_for_total_bits",
            "vth_increment_problem",
        ],
        "ranges",
    ),
    **dict.fromkeys(
        [
            "decay_toward_zero",
            "population_qparams",
            "population_rows",
            "quantize",
            "quantize_",
            "quantize_rows",
            "quantize_scalar",
            "to_codes",
        ],
        "rounding",
    ),
}
"""The names of the modules that need torch (or are typed against it), imported on first use: so
``import tinysnn.quant.formats`` (the deploy side, a board without torch) loads formats.py alone."""


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(f".{_ON_FIRST_USE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FP32",
    "LABELS",
    "LEAK_BITS",
    "MAX_TOTAL_BITS",
    "NEAREST",
    "NONE",
    "NO_ROUNDING",
    "Normalization",
    "DEFAULT_NORMALIZATION",
    "PARAMS",
    "PARAM_SIGNED",
    "STOCHASTIC",
    "TRUNCATE",
    "QFormat",
    "QParams",
    "QuantSpec",
    "RecordFields",
    "Rounding",
    "Scheme",
    "format_text",
    "decay_toward_zero",
    "formats_for_total_bits",
    "integer_bits_for",
    "itq_problem",
    "min_frac_bits_for_step",
    "parse_format",
    "parse_quant_arg",
    "population_qparams",
    "population_rows",
    "quantize",
    "quantize_",
    "quantize_rows",
    "quantize_scalar",
    "quantized_or_none",
    "range_of",
    "record_fields",
    "ranges_per_network",
    "rounding_code",
    "split_candidates",
    "splits_for_total_bits",
    "to_codes",
    "vth_increment_problem",
]
