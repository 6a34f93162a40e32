"""Tests of study specs, the search space and bad input (search.spec, search.space): no training here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
import torch
from optuna.trial import FixedTrial

from search import SpecError, load_spec, parse_spec, reward
from search._checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from search._study import open_storage
from search.cli import main
from search.errors import CheckpointError, StorageError
from search.runner import run_study
from search.select import rank
from search.space import Rejected

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STUDIES = Path(__file__).resolve().parents[2] / "studies"
BASE = """
[study]
name = "t"
trials = 2
[data]
dataset = "digits"
[space]
n_neurons = [10, 20]
quantize = ["fp32", "qW", "qWN"]
scheme = ["ptq", "itq"]
[space.bits.weights]
int = 1
frac = { low = 2, high = 8 }
[space.bits.vmem]
int = { low = 7, high = 9 }
frac = { low = 0, high = 6 }
[space.bits.vth]
int = 8
total = [8, 12]
"""


def _raw(**patch: Any) -> Dict[str, Any]:
    """The BASE spec with tables patched: _raw(space={"n_neurons": []}) merges into [space]."""
    raw = tomllib.loads(BASE)
    for table, values in patch.items():
        if values is None:
            raw.pop(table, None)
        elif isinstance(values, dict) and isinstance(raw.get(table), dict):
            raw[table].update(values)
        else:
            raw[table] = values
    return raw


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_studies_load(path: Path) -> None:
    spec = load_spec(path)
    assert spec.study.name == path.stem
    assert spec.study.trials >= 1 and spec.space.max_neurons >= 1


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"studyy": {"name": "x"}}, "studyy"),
        ({"study": {"trails": 3}}, "study.trails"),
        ({"space": {"neurons": [10]}}, "space.neurons"),
        ({"space": {"bits": {"weights": {"int": 1, "fracc": 3}}}}, "space.bits.weights.fracc"),
        ({"learning": {"eta_postt": 0.1}}, "learning.eta_postt"),
        ({"space": {"n_neurons": []}}, "space.n_neurons"),
        ({"space": None}, "[space]"),
        ({"space": {"quantize": []}}, "space.quantize"),
        (
            {"space": {"bits": {"weights": {"int": 1, "frac": {"low": 30, "high": 40}}}}},
            "space.bits.weights.frac",
        ),
        (
            {
                "space": {
                    "bits": {
                        "weights": {"int": 1, "frac": 4},
                        "vmem": {"int": 0, "frac": 2},
                        "vth": {"int": 8, "frac": 2},
                    }
                }
            },
            "space.bits.vmem.int: vmem is signed and needs at least 1 integer bit",
        ),
        (
            {"space": {"bits": {"weights": {"int": 20, "frac": {"low": 20, "high": 25}}}}},
            "space.bits.weights",
        ),
        ({"space": {"bits": {"weights": {"int": 1, "frac": 3}}}}, "space.bits.vmem"),
        ({"space": {"variant": ["tinysnn", "lstm"]}}, "space.variant"),
        ({"space": {"n_neurons": {"low": 10, "high": 5}}}, "space.n_neurons"),
        ({"data": {"dataset": "cifar"}}, "data.dataset"),
        ({"objectives": {"energy": "joules"}}, "objectives.energy"),
        ({"objectives": {"meter": "estimate:-3"}}, "objectives.meter"),
        ({"sampler": {"name": "cmaes"}}, "sampler.name"),
        ({"encoding": {"time_stepz": 10}}, "time_stepz"),
        ({"study": {"trials": 0}}, "study.trials"),
        (
            {"study": {"backend": "jax"}},
            "study.backend = 'jax': choose one of auto, numba, torch, torch-compile",
        ),
        ({"study": {"backend": "numba", "device": "cuda"}}, "study.backend = 'numba' runs on CPU only"),
        ({"network": {"one_spike": 1}}, "network.one_spike: expected true or false"),
        ({"network": {"w_inh": True}}, "network.w_inh: expected a number"),
        ({"space": {"normalization": "floor"}}, "space.normalization"),
        ({"encoding": {"time_steps": "250"}}, "encoding.time_steps must be an integer"),
        (
            {"space": {"bits": {"weights": {"int": 0, "frac": 0}}}},
            "space.bits.weights: every format here is Q0.0",
        ),
        (
            {
                "space": {
                    "scheme": "itq",
                    "bits": {
                        "weights": {"int": 1, "frac": 4},
                        "vmem": {"int": 9, "frac": 2},
                        "vth": {"int": 8, "frac": {"low": 1, "high": 4}},
                    },
                }
            },
            "space.bits.vth.frac: in-training quantization adds theta+ = 0.05 mV",
        ),
    ],
)
def test_bad_spec_names_the_key(patch: Dict[str, Any], key: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(_raw(**patch))
    assert key in str(exc.value)


WRONG_TYPES = [
    ({"study": {"trials": 2.5}}, "study.trials must be an integer, got 2.5"),
    ({"study": {"trials": True}}, "study.trials must be an integer, got True"),
    ({"study": {"name": 3}}, "study.name must be a string, got 3"),
    ({"study": {"heartbeat_s": "30"}}, "study.heartbeat_s must be a number, got '30'"),
    ({"study": {"heartbeat_s": float("nan")}}, "study.heartbeat_s must be a finite number, got nan"),
    ({"sampler": {"startup_trials": 1.5}}, "sampler.startup_trials must be an integer, got 1.5"),
    ({"data": {"download": "yes"}}, "data.download must be true or false, got 'yes'"),
    ({"data": {"root": 1}}, "data.root must be a string, got 1"),
    ({"encoding": {"max_rate": True}}, "encoding.max_rate must be a number, got True"),
    ({"encoding": {"dt": float("inf")}}, "encoding.dt must be a finite number, got inf"),
    ({"objectives": {"reference_neurons": 1.5}}, "objectives.reference_neurons must be an integer, got 1.5"),
    ({"constraints": {"max_energy_j": True}}, "constraints.max_energy_j must be a number, got True"),
    ({"constraints": {"min_accuracy": "0.2"}}, "constraints.min_accuracy must be a number, got '0.2'"),
    ({"fidelity": {"train_samples": 2.5}}, "fidelity.train_samples must be an integer, got 2.5"),
    ({"checkpoint": {"every": "5"}}, "checkpoint.every must be an integer, got '5'"),
    ({"checkpoint": {"every": None}}, "checkpoint.every must be an integer, got None"),  # not Optional
]


@pytest.mark.parametrize("patch,message", WRONG_TYPES, ids=[m for _, m in WRONG_TYPES])
def test_a_value_of_the_wrong_type_is_named_by_its_section(patch: Dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(_raw(**patch))
    assert str(exc.value) == message


def test_the_sections_check_their_types_when_made_not_only_when_parsed() -> None:
    spec = parse_spec(_raw())
    with pytest.raises(SpecError, match=r"^study.trials must be an integer, got '4'$"):
        spec.replace(trials="4")  # an override: no parser in between
    with pytest.raises(SpecError, match=r"^data.root must be a string, got \w*Path\('x'\)$"):
        dataclasses.replace(spec.data, root=Path("x"))
    assert (
        parse_spec(_raw(constraints={"max_memory_norm": None})).constraints.max_memory_norm is None
    )  # Optional


def test_normalization_rule_is_a_spec_key_for_itq_trials() -> None:
    spec = parse_spec(_raw(space={"normalization": ["sum", "plain"]}))
    params = {"n_neurons": 10, "quantize": "qW", "scheme": "itq", "weights_int": 1, "weights_frac": 7}
    cfg = spec.space.suggest(FixedTrial(dict(params, normalization="plain")), n_input=64)
    assert cfg.quant is not None and cfg.quant.normalization.value == "plain"
    assert cfg.quant.to_text().endswith("norm=plain")
    ptq = spec.space.suggest(FixedTrial(dict(params, scheme="ptq")), n_input=64)  # PTQ: not asked
    assert ptq.quant is not None and ptq.quant.normalization.value == "sum"


def test_fixed_flags_reach_the_network() -> None:
    spec = parse_spec(_raw(network={"one_spike": True, "w_inh": 240.0}))
    cfg = spec.space.suggest(FixedTrial({"n_neurons": 10, "quantize": "fp32"}), n_input=64)
    assert cfg.network.one_spike is True and cfg.network.w_inh == 240.0


def test_a_population_larger_than_the_machine_is_refused_before_the_study(tmp_path: Path) -> None:
    raw = _raw(
        space={"n_neurons": [100000000]},
        study={"storage": f"sqlite:///{tmp_path}/s.db", "artifacts": str(tmp_path / "a")},
    )
    with pytest.raises(
        ValueError, match=r"need about [0-9.]+ GB \([a-z ]+ [0-9.]+ GB\), the machine has [0-9.]+ GB"
    ):
        run_study(parse_spec(raw), progress=False)
    assert not (tmp_path / "s.db").exists()


def test_spike_counts_beyond_the_machine_are_refused_before_the_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinysnn.network as network

    raw = _raw(study={"storage": f"sqlite:///{tmp_path}/s.db", "artifacts": str(tmp_path / "a")})
    spec = parse_spec(raw)
    need = network.run_memory(spec.study.population, 64, spec.space.max_neurons, eval_samples=1)
    monkeypatch.setattr(network, "memory_available", lambda device=None: sum(need.values()))
    with pytest.raises(ValueError, match=r"\(spike counts [0-9.]+ GB\).*fewer assignment/test samples"):
        run_study(spec, progress=False)
    assert not (tmp_path / "s.db").exists()


def test_read_only_database_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import search._study as study_module

    raw = _raw(study={"storage": f"sqlite:///{tmp_path}/s.db", "artifacts": str(tmp_path / "a")})
    run = parse_spec(raw)
    open_storage(run.study.storage_url)  # creates the file
    # the machine's tests run as root, which file modes do not stop: deny write access in the check
    monkeypatch.setattr(study_module, "_read_only", lambda path: True)
    with pytest.raises(StorageError, match=r"s\.db is read-only: .*make them writable"):
        run_study(run, progress=False)


def test_missing_dataset_fails_before_any_trial(tmp_path: Path) -> None:
    raw = _raw(
        data={"dataset": "mnist", "root": str(tmp_path / "nowhere")},
        study={"storage": f"sqlite:///{tmp_path}/s.db", "artifacts": str(tmp_path / "a")},
    )
    with pytest.raises(SpecError) as exc:
        run_study(parse_spec(raw), progress=False)
    assert "data.dataset" in str(exc.value) and "not found" in str(exc.value)
    assert not (tmp_path / "s.db").exists()  # no study, let alone a trial


def test_cli_bad_spec_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE.replace("n_neurons = [10, 20]", "n_neurons = []"))
    assert main(["run", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinysnn-search: error:") and "space.n_neurons" in err and "Traceback" not in err
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read study spec" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["runs/study.db", "nosuchdb://x/y", "postgresql://nobody@127.0.0.1:1/none"])
def test_unreadable_storage_url(url: str) -> None:
    with pytest.raises(StorageError) as exc:
        open_storage(url)
    assert url in str(exc.value) and "sqlite:///" in str(exc.value)


# FixedTrial warns that vmem_int=4 and 0 lie outside the space: feeding them is the point of the test.
@pytest.mark.filterwarnings("ignore:The value [04] of the parameter 'vmem_int':UserWarning")
def test_space_suggests_configs_and_rejects_only_impossible_formats() -> None:
    spec = parse_spec(_raw())
    params = {
        "n_neurons": 20,
        "quantize": "qWN",
        "scheme": "itq",
        "weights_int": 1,
        "weights_frac": 7,
        "vmem_int": 9,
        "vmem_frac": 5,
        "vth_int": 8,
        "vth_total": 12,
    }
    with pytest.raises(Rejected, match=r"V_th format Q8.4 has a step of 0.0625 mV, larger than .* theta\+"):
        spec.space.suggest(FixedTrial(params), n_input=64)  # ITQ would lose every threshold increment
    params["scheme"] = "ptq"  # PTQ never adds theta+ on the grid
    cfg = spec.space.suggest(FixedTrial(params), n_input=64)
    assert cfg.quant is not None and cfg.label == "qWN"
    assert cfg.quant.to_text() == "weights=Q1.7,vmem=Q9.5,vth=Q8.4,rounding=truncate,scheme=ptq"
    assert cfg.network.n_neurons == 20 and cfg.network.norm_total == pytest.approx(6.4)
    saturating = spec.space.suggest(FixedTrial(dict(params, vmem_int=4)), n_input=64)  # -8..7.97 mV: allowed
    assert saturating.quant is not None and str(saturating.quant.vmem) == "Q4.5"
    with pytest.raises(Rejected, match=r"format Q0.5 has i = 0, so it cannot hold a signed value"):
        spec.space.suggest(FixedTrial(dict(params, vmem_int=0)), n_input=64)
    fp32 = spec.space.suggest(FixedTrial({"n_neurons": 10, "quantize": "fp32"}), n_input=64)
    assert fp32.quant is None and fp32.label == "fp32"
    assert cfg.group_key("size") != fp32.group_key("size") and cfg.group_key("variant") == fp32.group_key(
        "variant"
    )


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pop-0.pt"
    ckpt = Checkpoint(
        "abc", [0], [{"n_neurons": 4}], [1], 5, 10, [3.0], 0.0, {"weights": torch.zeros(1, 2, 4)}
    )
    save_checkpoint(path, ckpt)
    assert load_checkpoint(path, "abc").next_sample == 5
    with pytest.raises(CheckpointError, match="another fingerprint"):
        load_checkpoint(path, "xyz")
    good = path.read_bytes()
    for k in (100, len(good) // 2, len(good) - 5):  # one flipped byte anywhere is refused, never loaded
        bad = bytearray(good)
        bad[k] ^= 0x40
        path.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError, match=r"checksum mismatch.*delete .* to restart"):
            load_checkpoint(path, "abc")
    path.write_bytes(good[:40])
    with pytest.raises(CheckpointError, match=r"delete"):
        load_checkpoint(path, "abc")
    torch.save({"format": "tinysnn-search-checkpoint/1"}, path)  # an unchecked file of an older version
    with pytest.raises(CheckpointError, match="not a checksummed tinysnn-search file"):
        load_checkpoint(path, "abc")


def test_verified_files_hold_only_tensors_and_text_for_the_weights_only_loader(tmp_path: Path) -> None:
    import io

    from search._checkpoint import read_verified, verified_bytes, write_verified

    payload = {
        "a": 1.5,
        "b": [1, 2.25, None, True, "x"],
        "t": torch.arange(3),
        "nested": {"w": torch.ones(2, 2)},
        "nan": float("nan"),
        "pair": (1, 2),
    }
    path = tmp_path / "f.pt"
    write_verified(path, payload)
    # torch 1.13's weights-only loader refuses pickled floats: the pickle holds text and tensors only
    blob = path.read_bytes()[len(verified_bytes(b"")) :]  # behind the magic string and checksum
    stored = torch.load(io.BytesIO(blob), weights_only=True)
    assert set(stored) == {"tinysnn_json", "tensors"} and isinstance(stored["tinysnn_json"], str)
    assert all(isinstance(t, torch.Tensor) for t in stored["tensors"])
    back = read_verified(path)
    assert back["a"] == 1.5 and back["b"] == [1, 2.25, None, True, "x"] and back["pair"] == [1, 2]
    assert torch.equal(back["t"], payload["t"]) and torch.equal(back["nested"]["w"], payload["nested"]["w"])
    assert back["nan"] != back["nan"]
    # a file written before the JSON text (a plain torch.save behind the checksum) still reads
    buf = io.BytesIO()
    torch.save({"format": "old", "t": torch.zeros(2)}, buf)
    path.write_bytes(verified_bytes(buf.getvalue()))
    assert read_verified(path)["format"] == "old"
    with pytest.raises(TypeError, match="cannot store a bytes"):
        write_verified(path, {"raw": b"x"})


def test_reward_and_tie_breaks() -> None:
    assert reward(0.9, 0.25, 0.2) == pytest.approx(0.85)
    with pytest.raises(ValueError):
        reward(0.9, 0.1, -1)

    class T:  # the FrozenTrial fields rank() reads
        def __init__(self, number: int, values: Any) -> None:
            self.number, self.values, self.user_attrs = number, values, {}

    trials = [T(0, [0.8, 0.5, 1.0]), T(1, [0.9, 1.0, 2.0]), T(2, [0.8, 0.5, 1.0]), T(3, [0.7, 0.0, 4.0])]
    assert rank(trials, 0.0)[0].number == 1  # mu = 0: the most accurate
    assert rank(trials, 0.2)[0].number == 0  # 0.8 - 0.1 = 0.70 beats 0.70 - 0 on accuracy, 0 before 2
    assert rank(trials, 1.0)[0].number == 3  # a large mu: the smallest
    assert rank(trials, 0.2, nu=1.0)[0].number == 0  # E_norm = E / 4


def test_an_itq_space_without_a_normalization_rule_is_new_science_and_naming_sum_is_the_old() -> None:
    # the default rule changed from sum to proportional: a study made before (no rule named) must not
    # resume under the new rule, and resumes once its spec names the rule it ran
    base = {
        "study": {"name": "n"},
        "data": {"dataset": "digits"},
        "space": {
            "n_neurons": 20,
            "quantize": "qW",
            "scheme": ["ptq", "itq"],
            "bits": {"weights": {"int": 0, "frac": 8}},
        },
    }
    implicit = parse_spec(base).science()
    named_sum = parse_spec(dict(base, space=dict(base["space"], normalization="sum"))).science()
    assert implicit["normalization_default"] == "proportional"
    assert "normalization_default" not in named_sum and "normalization" not in named_sum["space"]
    # a study made before whose spec named sum keeps its fingerprint among the accepted ones
    named = parse_spec(dict(base, space=dict(base["space"], normalization="sum")))
    before = dict(named.science(), space=dict(named.science()["space"], normalization="sum"))
    assert named.fingerprints()[0] == named.fingerprint() and len(named.fingerprints()) == 2
    assert (
        named.fingerprints()[1]
        == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    )
    assert parse_spec(base).fingerprints() == (parse_spec(base).fingerprint(),)
    ptq_only = parse_spec(dict(base, space=dict(base["space"], scheme="ptq"))).science()
    assert "normalization_default" not in ptq_only  # the rule never acts there
