"""The per-network constants have one declared layout (tinysnn.network.PARAM_LAYOUT) that the
population, the numba kernels' matrices and saved states all follow; backends are an enum."""

from __future__ import annotations

import pytest
import torch

from tinysnn.config import BACKENDS, Backend, EncodingConfig, LearningConfig, NetworkConfig
from tinysnn.network import FLOAT_PARAMS, INT_PARAMS, PARAM_LAYOUT, build_population
from tinysnn.quant import Normalization, parse_quant_arg
from tinysnn.quant.formats import NORM_APPORTION
from tinysnn.sim import Simulator
from tinysnn.sim import numba_kernels as K
from tinysnn.sim.numba_backend import NumbaBackend
from tinysnn.train import apply_quant_rows


def _pop(one_spike: bool = True):
    nets = [NetworkConfig(variant="tinysnn", n_neurons=n, n_input=12, one_spike=one_spike) for n in (3, 5)]
    return build_population(nets, LearningConfig(), seeds=[4, 9])


def test_the_population_holds_each_declared_constant_with_its_dtype() -> None:
    pop = _pop()
    assert list(pop.params) == [f.name for f in PARAM_LAYOUT]
    for f in PARAM_LAYOUT:
        assert pop.params[f.name].dtype == (torch.int64 if f.integer else torch.float32), f.name
        assert pop.params[f.name].shape == (2,)
    assert set(INT_PARAMS) == {"one_spike", "norm_rule"}  # codes and flags are no float32 columns
    assert pop.params["one_spike"].tolist() == [1, 1] and pop.params["norm_rule"].tolist() == [0, 0]
    spec = parse_quant_arg("weights=Q1.7", rounding="nearest", scheme="itq", normalization="apportion")
    apply_quant_rows(pop, [spec, None], training=True)
    assert pop.params["norm_rule"].dtype == torch.int64
    assert pop.params["norm_rule"].tolist() == [NORM_APPORTION, Normalization.SUM.code]


@pytest.mark.skipif(not K.HAVE_NUMBA, reason="needs numba")
def test_each_kernel_column_reads_the_constant_of_its_name() -> None:
    pop = _pop(one_spike=False)
    for k, name in enumerate(FLOAT_PARAMS):  # a distinct value per constant and network
        pop.params[name] = torch.tensor([k + 0.25, k + 0.5], dtype=torch.float32)
    pop.params["one_spike"] = torch.tensor([0, 1])
    pop.params["norm_rule"] = torch.tensor([NORM_APPORTION, 0])
    args = NumbaBackend(pop, EncodingConfig(time_steps=5))._build_kernel_args()
    fp, ip = args["fp"], args["ip"]
    assert fp.dtype.name == "float32" and ip.dtype.name == "int64"
    columns = {
        "theta_plus": K.C_THETA_PLUS,
        "w_exc_inh": K.C_W_EI,
        "w_inh_exc": K.C_W_IE,
        "w_inh": K.C_W_INH,
        "w_max": K.C_W_MAX,
        "norm_total": K.C_NORM,
        "nu_pre": K.C_NU_PRE,
        "nu_post": K.C_NU_POST,
        "eta_p": K.C_ETA_P,
        "eta_d": K.C_ETA_D,
        "x_th": K.C_X_TH,
        "eta_post": K.C_ETA_POST,
        "n_th": K.C_N_TH,
    }
    assert set(columns) == set(FLOAT_PARAMS)
    for name, col in columns.items():
        assert fp[:, col].tolist() == pop.params[name].tolist(), name
    assert ip[:, K.I_ONE_SPIKE].tolist() == [0, 1] and ip[:, K.I_NORM_RULE].tolist() == [NORM_APPORTION, 0]


def test_a_state_saved_with_float_codes_or_without_norm_rule_loads_as_ints() -> None:
    pop = _pop()
    state = pop.state_dict()
    params = dict(state["params"])  # type: ignore[call-overload]
    params["one_spike"] = torch.tensor([1.0, 0.0])  # as states saved before issue 27 hold them
    del params["norm_rule"]  # as states saved before the setting existed
    state["params"] = params
    fresh = _pop(one_spike=False)
    fresh.load_state_dict(state)
    assert fresh.params["one_spike"].dtype == torch.int64 and fresh.params["one_spike"].tolist() == [1, 0]
    assert fresh.params["norm_rule"].dtype == torch.int64 and fresh.params["norm_rule"].tolist() == [0, 0]
    assert list(fresh.params) == [f.name for f in PARAM_LAYOUT]


def test_backends_are_an_enum_named_as_the_command_line_spells_them() -> None:
    assert BACKENDS == ("auto", "numba", "torch", "torch-compile")
    assert (
        Backend.parse("torch-compile") is Backend.TORCH_COMPILE
        and Backend.parse(Backend.NUMBA) is Backend.NUMBA
    )
    assert f"{Backend.TORCH_COMPILE}" == str(Backend.TORCH_COMPILE) == "torch-compile"
    with pytest.raises(
        ValueError, match="unknown backend 'gpu': choose one of auto, numba, torch, torch-compile"
    ):
        Backend.parse("gpu")
    sim = Simulator(_pop(), EncodingConfig(time_steps=5), backend="torch")
    assert sim.backend is Backend.TORCH
    assert Simulator(_pop(), EncodingConfig(time_steps=5)).backend in (
        Backend.NUMBA,
        Backend.TORCH,
    )  # auto resolved
