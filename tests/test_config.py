"""The config dataclasses refuse every non-finite, out-of-range or non-integer value, once, by name."""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict

import numpy as np
import pytest

from tinysnn.config import (
    MAX_SEED,
    MAX_TIME_STEPS,
    ConfigError,
    EncodingConfig,
    LearningConfig,
    LIFParams,
    NetworkConfig,
    check_finite,
    check_int,
    check_seed,
)
from tinysnn.network import check_memory, run_memory
from tinysnn.quant import QFormat, parse_quant_arg

NAN, INF = math.nan, math.inf

#: (config class, field, a value inside the range, its range as the message writes it)
FLOAT_FIELDS = [
    (LIFParams, "v_rest", -65.0, "a finite number"),
    (LIFParams, "v_reset", -60.0, "a finite number"),
    (LIFParams, "v_th", -52.0, "a finite number"),
    (LIFParams, "tau", 100.0, "> 0"),
    (LIFParams, "refractory", 0.0, ">= 0"),
    (NetworkConfig, "theta_plus", 0.0, ">= 0"),
    (NetworkConfig, "tau_theta", 1e7, "> 0"),
    (NetworkConfig, "w_exc_inh", 22.5, ">= 0"),
    (NetworkConfig, "w_inh_exc", 120.0, ">= 0"),
    (NetworkConfig, "w_inh", 0.0, ">= 0"),
    (NetworkConfig, "w_max", 1.0, "> 0"),
    (NetworkConfig, "w_init_max", 1.0, "in (0, 1]"),
    (NetworkConfig, "norm_total", 78.4, "> 0"),
    (LearningConfig, "tau_pre", 20.0, "> 0"),
    (LearningConfig, "tau_post", 20.0, "> 0"),
    (LearningConfig, "nu_pre", 0.0, ">= 0"),
    (LearningConfig, "nu_post", 1e-2, ">= 0"),
    (LearningConfig, "eta_p", 1e-2, ">= 0"),
    (LearningConfig, "eta_d", 3e-3, ">= 0"),
    (LearningConfig, "x_th", 0.3, ">= 0"),
    (LearningConfig, "eta_post", 0.002, ">= 0"),
    (LearningConfig, "n_th", 2.0, "> 0"),
    (EncodingConfig, "dt", 1.0, "> 0"),
    (EncodingConfig, "max_rate", 1000.0, "in [0, 1000]"),
]


def _make(cls: Callable[..., Any], field: str, value: Any) -> Any:
    return cls(**{field: value})


@pytest.mark.parametrize("cls, field, good, rule", FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [NAN, INF, -INF, "1.0", True, None, 1e39])
def test_every_float_field_refuses_nan_inf_text_and_bools(
    cls, field: str, good: float, rule: str, bad: Any
) -> None:
    if bad is None and field == "norm_total":  # None means the default, 0.1 per input
        assert NetworkConfig(norm_total=None).norm_total == 78.4
        return
    with pytest.raises(ConfigError) as err:
        _make(cls, field, bad)
    msg = str(err.value)
    assert msg.startswith(f"{field} = {bad!r}: expected a finite number"), msg
    assert rule in msg and "\n" not in msg
    assert err.value.field == field
    _make(cls, field, good)  # the edge of the range is accepted


#: values just outside each range of FLOAT_FIELDS
OUTSIDE = {
    "> 0": (0.0, -1.0),
    ">= 0": (-1e-9,),
    "in (0, 1]": (0.0, 1.0 + 1e-9),
    "in [0, 1000]": (-1e-9, 1000.001),
}


@pytest.mark.parametrize("cls, field, good, rule", [f for f in FLOAT_FIELDS if f[3] in OUTSIDE])
def test_every_float_field_refuses_values_outside_its_range(cls, field: str, good: float, rule: str) -> None:
    for bad in OUTSIDE[rule]:
        with pytest.raises(
            ConfigError, match=rf"^{field} = {bad!r}: expected a finite number {re.escape(rule)}"
        ):
            _make(cls, field, bad)


@pytest.mark.parametrize(
    "cls, field, low, high",
    [
        (NetworkConfig, "n_neurons", 1, None),
        (NetworkConfig, "n_input", 1, None),
        (LearningConfig, "t_update", 1, MAX_TIME_STEPS),
        (EncodingConfig, "time_steps", 1, MAX_TIME_STEPS),
    ],
)
def test_integer_fields_refuse_fractions_bools_and_nan_instead_of_truncating(
    cls, field: str, low: int, high
) -> None:
    for bad in (2.5, True, NAN, "25", low - 1) + ((high + 1, 1e9) if high else ()):
        with pytest.raises(ConfigError, match=rf"^{field} = .*: expected an integer"):
            _make(cls, field, bad)
    whole = _make(cls, field, 25.0)  # a whole float (TOML 25.0, --t-update 25) is the integer
    assert getattr(whole, field) == 25 and type(getattr(whole, field)) is int
    assert getattr(_make(cls, field, np.int64(7)), field) == 7


def test_max_rate_range_follows_dt_and_names_the_reason() -> None:
    EncodingConfig(dt=0.5, max_rate=2000.0)
    with pytest.raises(
        ConfigError,
        match=r"max_rate = 2001.0: expected a finite number in \[0, 2000\] Hz "
        r"\(at most one spike per step of dt = 0.5 ms\)",
    ):
        EncodingConfig(dt=0.5, max_rate=2001.0)


def test_reset_at_or_above_threshold_is_refused_and_relations_hold() -> None:
    with pytest.raises(ConfigError, match="v_reset = -52.0 mV is not below v_th = -52.0 mV"):
        LIFParams(v_reset=-52.0)
    with pytest.raises(ConfigError, match=r"w_init_max = 0.5: expected a finite number in \(0, 0.2\]"):
        NetworkConfig(w_max=0.2, w_init_max=0.5)
    with pytest.raises(ConfigError, match="exc = "):
        NetworkConfig(exc={"v_rest": -65.0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one_spike = 'yes'"):
        NetworkConfig(one_spike="yes")  # type: ignore[arg-type]


def test_defaults_are_valid_and_stored_unchanged() -> None:
    net, learn, enc = NetworkConfig(), LearningConfig(), EncodingConfig()
    assert (net.w_inh, net.norm_total, learn.t_update, enc.max_rate) == (120.0, 78.4, 25, 128.0)
    assert NetworkConfig(w_inh=120).w_inh == 120 and type(NetworkConfig(w_inh=120).w_inh) is int


def test_config_error_is_a_value_error_with_the_field() -> None:
    err = ConfigError("x = 1: bad", "x")
    assert isinstance(err, ValueError) and err.field == "x" and ConfigError("no field").field is None


def test_helpers_name_the_value_and_range() -> None:
    assert check_finite("a", 0.5, 0, 1, low_open=True) == 0.5
    with pytest.raises(ConfigError, match=r"^a = 0: expected a finite number in \(0, 1\]$"):
        check_finite("a", 0, 0, 1, low_open=True)
    with pytest.raises(ConfigError, match=r"^a = 1000000000000.*: expected a finite number$"):
        check_finite("a", 10**400)
    with pytest.raises(ConfigError, match=r"^n = 3.5: expected an integer in \[1, 9\]$"):
        check_int("n", 3.5, 1, 9)


def test_seeds_are_non_negative_and_leave_room_for_every_network() -> None:
    assert check_seed("--seed", 0) == 0 and check_seed("--seed", MAX_SEED) == MAX_SEED
    with pytest.raises(
        ConfigError, match=r"^--seed = -1: expected an integer in \[0, 9223372036854775807\]$"
    ):
        check_seed("--seed", -1)
    with pytest.raises(
        ConfigError, match=r"--seed = 9223372036854775807: .* \(its 2 networks take the seeds"
    ):
        check_seed("--seed", MAX_SEED, 2)
    with pytest.raises(ConfigError, match="--seed = 1.5"):
        check_seed("--seed", 1.5)


def test_fixed_point_bit_counts_are_integers_and_empty_quant_text_is_refused() -> None:
    with pytest.raises(ValueError, match="i = 2.5 and f = 1 must be integers"):
        QFormat(2.5, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be integers"):
        QFormat(True, 7)
    assert type(QFormat(np.int64(1), 7).int_bits) is int
    for text in ("", "  "):
        with pytest.raises(ValueError, match="empty quantization text .*: give fp32 for none"):
            parse_quant_arg(text)
    assert parse_quant_arg("fp32").is_fp32


def test_memory_estimate_counts_weights_trains_and_counts_by_part() -> None:
    parts = run_memory(2, 784, 100, time_steps=250, batch_size=500, eval_samples=1000, backend="torch")
    assert parts["weights"] == 2 * 4 * 2 * 784 * 100
    assert parts["spike trains"] == 5 * 250 * 500 * 784
    assert parts["spike counts"] == 4 * 2 * 1000 * 100
    assert run_memory(1, 784, 100, time_steps=250, backend="numba")["spike trains"] == 12 * 250 * 784


@pytest.mark.parametrize("kwargs, part, fix", [
    (dict(n_networks=10**8, n_input=784, n_neurons=1000), "weights", "use fewer neurons or a smaller population"),
    (dict(n_networks=1, n_input=784, n_neurons=10, time_steps=MAX_TIME_STEPS, batch_size=10**6, backend="torch"),
     "spike trains", "use fewer time steps or a smaller batch"),
])  # fmt: skip
def test_memory_check_refuses_with_the_figure_and_the_fix(
    kwargs: Dict[str, Any], part: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as err:
        check_memory(**kwargs)
    msg = str(err.value)
    assert "need about" in msg and f"({part} " in msg and "GB" in msg and msg.endswith(fix)
    check_memory(1, 64, 10, time_steps=250, batch_size=500, eval_samples=400)
