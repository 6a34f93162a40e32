from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinysnn import data as D
from tinysnn.cli import main
from tinysnn.config import ConfigError, EncodingConfig, NetworkConfig
from tinysnn.network import build_population
from tinysnn.train import run


@pytest.mark.parametrize("variant", ["diehl_cook", "tinysnn"])
def test_digits_trains_clearly_above_chance(variant: str) -> None:
    # 50 neurons, one pass over the 1,437 digits training images. Chance is 10 %; this setup
    # measured 80 % (diehl_cook) and 72-79 % (tinysnn, 4 seeds) when the test was written.
    # 50 % leaves a wide margin for seeds and platforms while failing any broken learning rule
    # (an untrained network of this size scores about 20-40 %).
    s = D.load("digits")
    pop = build_population(NetworkConfig(variant=variant, n_neurons=50, n_input=64, norm_total=6.4), seeds=0)
    res = run(pop, EncodingConfig(), s.train, s.test, progress=False)
    net = res.networks[0]
    assert net.accuracy >= 0.5, net.accuracy
    assert net.accuracy_proportion >= 0.5
    assert res.train_samples == 1437 and res.test_samples == 360
    assert net.spikes_per_sample_test > 0


def test_cli_writes_json_record(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    code = main([
        "train", "--dataset", "digits", "--variant", "diehl_cook", "--neurons", "20",
        "--train-samples", "100", "--test-samples", "50", "--json", str(out), "--no-progress",
    ])  # fmt: skip
    assert code == 0
    rec = json.loads(out.read_text())
    for key in ("accuracy", "accuracy_proportion", "train_samples_per_s", "infer_samples_per_s",
                "wall_seconds", "spikes_per_sample_test", "device", "seed", "energy_meter",
                "energy_train_joules", "energy_infer_joules_per_sample", "op_energy_infer_j_per_sample"):  # fmt: skip
        assert key in rec, key
    assert rec["train_samples"] == 100 and rec["test_samples"] == 50
    assert rec["energy_is_estimate"] is True
    assert "acc(all)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "cifar"], "unknown dataset"),
        (["--variant", "lstm"], "unknown variant"),
        (["--dataset", "mnist", "--data-root", "/nonexistent-tinysnn"], "not found"),
        (["--quant", "weights=Q0.0"], "Q0.0"),
    ],
)
def test_cli_bad_input_is_a_clear_error(argv, message, capsys) -> None:
    base = ["train", "--dataset", "digits", "--neurons", "5", "--train-samples", "5", "--test-samples", "5",
            "--no-progress"]  # fmt: skip
    code = main(base + argv)
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--neurons", "0"], ["--train-samples", "-4"]])
def test_cli_rejects_zero_neurons_and_negative_counts(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "digits"] + argv)
    assert exc.value.code == 2
    assert "expected a" in capsys.readouterr().err


def test_zero_neurons_in_config_is_rejected() -> None:
    with pytest.raises(ConfigError, match="n_neurons must be >= 1"):
        NetworkConfig(n_neurons=0)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "tpu"], "unsupported device 'tpu'"),
        (["--quant", "vmem=Q4.3"], "vmem: Q4.3 cannot hold V_mem - v_rest"),
        (["--neurons", "100000000"], "GB of weights, the machine has"),
        (["--scheme", "itq", "--quant", "weights=Q1.7,vth=Q8.4"], "theta+ = 0.05 mV"),
    ],
)
def test_cli_bad_input_is_one_line(extra, message, capsys) -> None:
    assert main(["train", "--dataset", "digits", "--no-progress"] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_refuses_zero_training_samples(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "digits", "--train-samples", "0"])
    assert exc.value.code == 2 and "expected a positive integer, got 0" in capsys.readouterr().err
