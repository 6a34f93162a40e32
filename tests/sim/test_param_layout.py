"""The per-network constants have one declared layout (tinysnn.network.PARAM_LAYOUT) that the
population, the numba kernels' matrices and saved states all follow; backends are an enum."""

from __future__ import annotations

import pytest
import torch

from tinysnn.config import BACKENDS, Backend, EncodingConfig, LearningConfig, NetworkConfig
from tinysnn.network import FLOAT_PARAMS, INT_PARAMS, PARAM_LAYOUT, QUANT_TARGETS, build_population
from tinysnn.quant import NEAREST, NONE, STOCHASTIC, TRUNCATE, Normalization, parse_quant_arg
from tinysnn.quant.formats import NORM_APPORTION, ROW_WIDTH
from tinysnn.sim import STREAM_TEST, Simulator
from tinysnn.sim import numba_kernels as K
from tinysnn.sim.numba_backend import NumbaBackend
from tinysnn.train import apply_quant_rows, quantize_parameters


def _pop(one_spike: bool = True):
    nets = [NetworkConfig(variant="tinysnn", n_neurons=n, n_input=12, one_spike=one_spike) for n in (3, 5)]
    return build_population(nets, LearningConfig(), seeds=[4, 9])


def test_the_population_holds_each_declared_constant_with_its_dtype() -> None:
    pop = _pop()
    assert list(pop.params) == [f.name for f in PARAM_LAYOUT]
    for f in PARAM_LAYOUT:
        assert pop.params[f.name].dtype == (torch.int64 if f.integer else torch.float32), f.name
        assert pop.params[f.name].shape == (2,)
    # codes and flags are no float32 columns
    assert set(INT_PARAMS) == {"one_spike", "norm_rule", "round_weights", "round_vmem", "round_vth"}
    assert pop.params["one_spike"].tolist() == [1, 1] and pop.params["norm_rule"].tolist() == [0, 0]
    assert all(pop.rounding(t).tolist() == [NONE, NONE] for t in QUANT_TARGETS)
    assert all(pop.quant[t].shape == (2, ROW_WIDTH) for t in QUANT_TARGETS)
    spec = parse_quant_arg("weights=Q1.7", rounding="nearest", scheme="itq", normalization="apportion")
    apply_quant_rows(pop, [spec, None], training=True)
    assert pop.params["norm_rule"].dtype == torch.int64
    assert pop.params["norm_rule"].tolist() == [NORM_APPORTION, Normalization.SUM.code]
    assert pop.params["round_weights"].dtype == torch.int64
    assert pop.rounding("weights").tolist() == [NEAREST, NONE]
    assert pop.rounding("vmem").tolist() == [NONE, NONE]
    assert pop.quant["weights"].shape == (2, ROW_WIDTH)
    assert pop.quant["weights"][0].tolist() == [128.0, 0.0, 2 - 2**-7]


@pytest.mark.skipif(not K.HAVE_NUMBA, reason="needs numba")
def test_each_kernel_column_reads_the_constant_of_its_name() -> None:
    pop = _pop(one_spike=False)
    for k, name in enumerate(FLOAT_PARAMS):  # a distinct value per constant and network
        pop.params[name] = torch.tensor([k + 0.25, k + 0.5], dtype=torch.float32)
    pop.params["one_spike"] = torch.tensor([0, 1])
    pop.params["norm_rule"] = torch.tensor([NORM_APPORTION, 0])
    pop.params["round_weights"] = torch.tensor([TRUNCATE, NEAREST])
    pop.params["round_vmem"] = torch.tensor([STOCHASTIC, NONE])
    pop.params["round_vth"] = torch.tensor([NONE, TRUNCATE])
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
    assert ip[:, K.I_ROUND_WEIGHTS].tolist() == [TRUNCATE, NEAREST]
    assert ip[:, K.I_ROUND_VMEM].tolist() == [STOCHASTIC, NONE]
    assert ip[:, K.I_ROUND_VTH].tolist() == [NONE, TRUNCATE]


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf")])
def test_a_state_with_negative_or_non_finite_weights_is_refused(bad) -> None:
    state = _pop().state_dict()
    weights = state["weights"].clone()  # type: ignore[attr-defined]
    weights[1, 2, 0] = bad
    fresh = _pop()
    with pytest.raises(ValueError, match="negative or non-finite weights"):
        fresh.load_state_dict({**state, "weights": weights})
    fresh.load_state_dict(state)  # the state as saved loads


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


def _backends():
    return ["torch", "numba"] if K.HAVE_NUMBA else ["torch"]


@pytest.mark.parametrize("backend", _backends())
def test_a_state_saved_with_the_rounding_modes_in_the_rows_loads_and_runs_as_the_new_layout(backend) -> None:
    # Checkpoints and study packs written before the rounding codes became integer fields hold
    # (P, 4) float32 rows [2^f, lo, hi, mode] and no round_* params.
    nets = [NetworkConfig(variant="diehl_cook", n_neurons=n, n_input=40, norm_total=8.0) for n in (8, 6)]
    specs = [
        parse_quant_arg("weights=UQ0.6,vmem=SQ9.1,vth=UQ8.4", rounding="stochastic", scheme="itq"),
        parse_quant_arg("weights=UQ0.5,vmem=SQ9.0,rounding=nearest,scheme=itq,norm=settled"),
    ]
    new = build_population(nets, LearningConfig(), seeds=[2, 7])
    apply_quant_rows(new, specs, training=True)
    quantize_parameters(new, seed=1)
    state = new.state_dict()
    modes = {"weights": [STOCHASTIC, NEAREST], "vmem": [STOCHASTIC, NEAREST], "vth": [STOCHASTIC, NONE]}
    old_rows = {
        t: torch.cat([state["quant"][t], torch.tensor(modes[t], dtype=torch.float32)[:, None]], dim=1)
        for t in QUANT_TARGETS
    }
    assert all(r.shape == (2, 4) for r in old_rows.values())
    old_params = {k: v for k, v in state["params"].items() if not k.startswith("round_")}
    assert set(state["params"]) - set(old_params) == {"round_weights", "round_vmem", "round_vth"}
    old = build_population(nets, LearningConfig(), seeds=[2, 7])
    old.load_state_dict({**state, "quant": old_rows, "params": old_params})
    assert list(old.params) == [f.name for f in PARAM_LAYOUT]
    for t in QUANT_TARGETS:
        assert old.rounding(t).dtype == torch.int64 and old.rounding(t).tolist() == modes[t], t
        assert old.quant[t].shape == (2, ROW_WIDTH) and torch.equal(old.quant[t], new.quant[t]), t
    enc = EncodingConfig(time_steps=40)
    g = torch.Generator().manual_seed(5)
    images = (torch.rand(6, 40, generator=g) * 600).clamp(max=255).to(torch.uint8)
    counts = []
    for pop in (new, old):
        sim = Simulator(pop, enc, seed=3, backend=backend)
        learned = [sim.train_sample(images[k], k) for k in range(4)]
        counts.append((learned, sim.infer(images[4:], STREAM_TEST)))
    (learned_new, test_new), (learned_old, test_old) = counts
    # both networks spiked while learning and testing
    assert all(n > 0 for n in sum(c.sum(1) for c in learned_new).tolist() + test_new.sum((1, 2)).tolist())
    assert all(torch.equal(a, b) for a, b in zip(learned_new, learned_old))
    assert torch.equal(test_new, test_old)
    assert torch.equal(old.weights, new.weights) and torch.equal(old.theta, new.theta)
    assert not torch.equal(new.weights, build_population(nets, LearningConfig(), seeds=[2, 7]).weights)


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
