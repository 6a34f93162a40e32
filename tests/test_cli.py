"""`tinysnn train`: every bad option is one line and exit 2 before any work; the table shows it all."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import List

import numpy as np
import pytest

import tinysnn.network
import tinysnn.train
from tinysnn.cli import main
from tinysnn.train import steady_rate

TINY = [
    "train",
    "--dataset",
    "digits",
    "--neurons",
    "5",
    "--train-samples",
    "5",
    "--test-samples",
    "5",
    "--time-steps",
    "20",
    "--no-progress",
    "--energy",
    "estimate",
]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a population is built or a run starts."""

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("work started before the bad input was refused")

    monkeypatch.setattr(tinysnn.network, "build_population", refuse)
    monkeypatch.setattr(tinysnn.train, "run", refuse)


def _refused(argv: List[str], capsys: pytest.CaptureFixture) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinysnn: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "option, value, field",
    [
        ("--max-rate", "nan", "max_rate"),
        ("--max-rate", "inf", "max_rate"),
        ("--max-rate", "-1", "max_rate"),
        ("--max-rate", "1001", "max_rate"),
        ("--w-inh", "nan", "w_inh"),
        ("--w-inh-exc", "-inf", "w_inh_exc"),
        ("--norm-total", "0", "norm_total"),
        ("--theta-plus", "nan", "theta_plus"),
        ("--eta-post", "nan", "eta_post"),
        ("--t-update", "2.5", "t_update"),
        ("--t-update", "nan", "t_update"),
        ("--n-th", "0", "n_th"),
        ("--nu-pre", "nan", "nu_pre"),
        ("--nu-post", "-1", "nu_post"),
        ("--eta-p", "inf", "eta_p"),
        ("--eta-d", "nan", "eta_d"),
        ("--time-steps", "1000000000", "time_steps"),
    ],
)
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_every_bad_number_is_one_line_naming_the_option(
    option: str, value: str, field: str, backend: str, capsys: pytest.CaptureFixture, no_work: None
) -> None:
    line = _refused(TINY + ["--backend", backend, f"{option}={value}"], capsys)
    assert line.startswith(f"tinysnn: error: {option}: {field} = "), line
    assert "expected" in line


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", "-1"], "--seed = -1: expected an integer in [0, 9223372036854775807]"),
        (["--seed", str(2**63 - 1), "--population", "2"], "its 2 networks take the seeds --seed + 0 .. 1"),
        (["--quant", ""], "--quant: empty quantization text '': give fp32 for none"),
        (["--population", "100000000", "--neurons", "1000"], "use fewer neurons or a smaller population"),
        (
            ["--time-steps", "100000", "--batch-size", "10000000", "--backend", "torch"],
            "use fewer time steps or a smaller batch",
        ),
    ],
)
def test_seeds_quant_and_sizes_are_refused_before_anything_is_built(
    argv: List[str], message: str, capsys: pytest.CaptureFixture, no_work: None
) -> None:
    assert message in _refused(TINY + argv, capsys)


def _idx(path: Path, arr: np.ndarray) -> None:
    path.write_bytes(
        bytes([0, 0, 0x08, arr.ndim])
        + struct.pack(">" + "I" * arr.ndim, *arr.shape)
        + arr.astype(np.uint8).tobytes()
    )


def test_test_images_of_another_shape_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_work: None
) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _idx(raw / "train-images-idx3-ubyte", np.zeros((20, 28, 28)))
    _idx(raw / "train-labels-idx1-ubyte", np.zeros(20))
    _idx(raw / "t10k-images-idx3-ubyte", np.zeros((10, 7, 9)))
    _idx(raw / "t10k-labels-idx1-ubyte", np.zeros(10))
    line = _refused(["train", "--dataset", "mnist", "--data-root", str(tmp_path), "--no-progress"], capsys)
    assert "holds 7x9 images but" in line and "holds 28x28" in line


def test_the_table_shows_the_quantization_whole_and_the_compile_apart(capsys: pytest.CaptureFixture) -> None:
    quant = "weights=Q1.7,vmem=Q9.4,vth=Q9.7,rounding=stochastic,scheme=itq,norm=plain"
    assert main(TINY + ["--quant", quant]) == 0
    out = capsys.readouterr().out
    assert f" {quant} " in out
    assert "samples/s after the first" in out
    assert "not in the speeds above: compiling the numba kernels" in out
    assert "in training (the first sample's" in out and "in a one-sample inference warm-up" in out


def test_steady_rate_leaves_out_the_first_sample() -> None:
    assert steady_rate(11, 12.0, 10.0) == 5.0  # 10 samples in the 2 s after a 10 s first one
    assert steady_rate(1, 4.0, 4.0) == 0.25  # one sample: its own rate
    assert steady_rate(0, 0.0, 0.0) == 0.0
