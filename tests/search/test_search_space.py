"""The search space samples each parameter's i.f split, saturating splits included (issue 25, decision 1),
and a study made before saturation was allowed still resumes."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import FixedTrial, TrialState, create_trial

from search import load_spec, parse_spec, run_study
from search.space import Rejected

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STUDIES = Path(__file__).resolve().parents[2] / "studies"
SPLITS = """
[study]
name = "splits"
trials = 2
[data]
dataset = "digits"
[space]
n_neurons = 10
quantize = "qWN"
scheme = ["ptq", "itq"]
rounding = "truncate"
[space.bits]
total = [4, 6, 8]
[space.bits.weights]
int = { low = 0, high = 2 }
[space.bits.vmem]
int = { low = 5, high = 9 }
[space.bits.vth]
int = { low = 5, high = 9 }
"""


def _suggest(**params: object):  # type: ignore[no-untyped-def]
    spec = parse_spec(tomllib.loads(SPLITS))
    base = {
        "n_neurons": 10,
        "quantize": "qWN",
        "scheme": "ptq",
        "bits_total": 8,
        "weights_int": 1,
        "vmem_int": 6,
        "vth_int": 7,
    }
    return spec.space.suggest(FixedTrial(dict(base, **params)), n_input=64)


def test_the_space_samples_integer_bits_and_the_fraction_follows_from_b() -> None:
    cfg = _suggest()  # the digits split of issue 25: V_mem Q6.2 and V_th Q7.1, both saturating
    assert cfg.quant is not None
    assert cfg.quant.to_text() == "weights=Q1.7,vmem=Q6.2,vth=Q7.1,rounding=truncate,scheme=ptq"
    assert cfg.quant.range_of("vmem") == (-32.0, 31.75)  # V_mem - v_rest deeper than -32 mV saturates
    mnist = _suggest(vmem_int=8, vth_int=8, weights_int=1)  # the MNIST split: SQ8.0 for both
    assert mnist.quant is not None and (str(mnist.quant.vmem), str(mnist.quant.vth)) == ("Q8.0", "Q8.0")
    six = _suggest(bits_total=6, vmem_int=5, vth_int=6, weights_int=0)
    assert six.quant is not None and six.quant.to_text().startswith("weights=Q0.6,vmem=Q5.1,vth=Q6.0,")


def test_the_space_rejects_only_splits_that_cannot_be_built() -> None:
    with pytest.raises(Rejected, match=r"vmem: 9 integer bits leave no fractional bits in 8 bits \(f = -1\)"):
        _suggest(vmem_int=9)
    with pytest.raises(Rejected, match=r"vth: 5 integer bits leave no fractional bits in 4 bits"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # vmem_int = 4 lies below the space's range: FixedTrial warns
            _suggest(bits_total=4, vmem_int=4, vth_int=5)
    # ITQ under truncation: a V_th step of 0.5 mV would lose every theta+ = 0.05 mV
    with pytest.raises(Rejected, match=r"V_th format Q7.1 has a step of 0.5 mV"):
        _suggest(scheme="itq")


@pytest.mark.parametrize("name", ["quickstart.toml", "size-and-precision.toml"])
def test_shipped_studies_search_qwn_splits_at_8_bits_and_below(name: str) -> None:
    spec = load_spec(STUDIES / name)
    space = spec.space
    assert "qWN" in space.quantize.all_values()
    totals = space.shared_total.numeric_values() if space.shared_total is not None else []
    assert totals and min(totals) <= 8
    for param in ("vmem", "vth"):
        ints = space.bits[param].int_bits.numeric_values()
        assert len(ints) > 1, f"{name}: {param}'s integer bits are searched"
    n_input = 64 if spec.data.dataset == "digits" else 784
    built = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FixedTrial warns about values it was not given a space for
        for total in (b for b in totals if b <= 8):
            for vmem in space.bits["vmem"].int_bits.numeric_values():
                for vth in space.bits["vth"].int_bits.numeric_values():
                    if max(vmem, vth) > total:
                        continue
                    params = {
                        "n_neurons": int(space.n_neurons.bounds()[0]),
                        "quantize": "qWN",
                        "scheme": "ptq",
                        "rounding": "truncate",
                        "bits_total": int(total),
                        "weights_int": 1,
                        "vmem_int": int(vmem),
                        "vth_int": int(vth),
                    }
                    cfg = space.suggest(FixedTrial(params), n_input=n_input)
                    assert cfg.quant is not None and cfg.quant.bits_of("vmem") == total
                    built += 1
    assert built > 0


# A spec of the old space: V_mem's integer bits may be 4, which a format had to exceed to hold v_th
# (13 mV above rest) before saturation was allowed; such trials were rejected, and stay so.
OLD = """
[study]
name = "old"
trials = 1
population = 1
seed = 1
[sampler]
name = "random"
[data]
dataset = "digits"
train_samples = 40
test_samples = 20
[encoding]
time_steps = 20
[space]
n_neurons = 6
quantize = "qWN"
scheme = "ptq"
rounding = "truncate"
[space.bits.weights]
int = 1
frac = 5
[space.bits.vmem]
int = { low = 4, high = 9 }
frac = 3
[space.bits.vth]
int = 8
frac = 2
"""
#: The fingerprint this spec had when the old space recorded studies with it: a resumed study must match.
OLD_FINGERPRINT = "fd749380a7b857ac"


def test_a_study_of_the_old_space_resumes(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text(OLD)
    spec = load_spec(path).replace(storage=f"sqlite:///{tmp_path}/old.db", artifacts=str(tmp_path / "old"))
    assert spec.fingerprint() == OLD_FINGERPRINT
    run_study(spec, progress=False, log=lambda s: None)
    storage = spec.study.storage_url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name="old", storage=storage)
        done = study.get_trials(states=(TrialState.COMPLETE,))[0]
        # what the old space recorded for a V_mem of 4 integer bits
        old_params = dict(done.params, vmem_int=4)
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                params=old_params,
                distributions=done.distributions,
                user_attrs={
                    "rejected": "vmem: Q4.3 cannot hold V_mem - v_rest from 0 (rest) "
                    "to 13 mV (v_th); it needs at least 5 integer bits"
                },
            )
        )
    report = run_study(spec.replace(trials=2), progress=False, log=lambda s: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = optuna.load_study(study_name="old", storage=storage).get_trials()
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert len(complete) == 2 and report.rejected == 0
    assert [t.user_attrs.get("rejected", "")[:5] for t in trials if t.state is TrialState.PRUNED] == ["vmem:"]


def test_an_itq_only_space_with_coarse_vth_is_refused_only_where_every_rounding_binds_the_rule() -> None:
    from search import SpecError
    from tinysnn.quant import QFormat, QuantSpec, itq_problem

    raw = tomllib.loads(SPLITS)
    raw["space"].update(
        scheme="itq",
        bits={"weights": {"int": 1, "frac": 7}, "vmem": {"int": 8, "frac": 0}, "vth": {"int": 8, "frac": 2}},
    )
    with pytest.raises(SpecError, match="space.bits.vth.frac: in-training quantization adds theta"):
        parse_spec(raw)  # truncation: a step of 0.25 mV loses every theta+ = 0.05 mV
    raw["space"]["rounding"] = ["truncate", "stochastic"]
    binds = itq_problem(QuantSpec(vth=QFormat(1, 2), scheme="itq", rounding="stochastic"), 0.05)
    if binds:
        with pytest.raises(SpecError, match="space.bits.vth.frac"):
            parse_spec(raw)
    else:  # stochastic rounding adds a sub-step theta+ stochastically (issue 25, decision 3)
        assert parse_spec(raw).space.bits["vth"].frac_bits is not None
