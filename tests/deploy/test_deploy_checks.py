"""Issue 24, the board side: model folders checked field by field, the trial's own test trains
drawn again (so `tinysnn infer` gives the recorded accuracy back), and one line for every bad input."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch

from tinysnn import data, deploy
from tinysnn.cli import main
from tinysnn.config import EncodingConfig, LearningConfig, NetworkConfig
from tinysnn.deploy.model import _checksum
from tinysnn.network import build_population
from tinysnn.sim import STREAM_TEST, Simulator

QWN = ["--quant", "weights=Q1.7,vmem=Q9.4,vth=Q8.5", "--scheme", "itq", "--rounding", "stochastic"]
TRAIN = [
    "train",
    "--dataset",
    "digits",
    "--neurons",
    "12",
    "--train-samples",
    "100",
    "--test-samples",
    "150",
    "--time-steps",
    "40",
    "--no-progress",
    "--energy",
    "estimate",
    "--batch-size",
    "64",
    "--seed",
    "7",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Three exported digits models: qWN stochastic on numba, qW on numba, FP32 on torch (CPU)."""
    root = tmp_path_factory.mktemp("models")
    kinds = {
        "qwn": QWN,
        "qw": ["--quant", "weights=Q1.6", "--format", "c", "c", "model"],
        "torch": ["--backend", "torch"],
    }
    for name, extra in kinds.items():
        assert main(TRAIN + extra + ["--export", str(root / name)]) == 0
    assert (root / "qw" / "tinysnn_infer.c").is_file() and not (root / "qwn" / "tinysnn_infer.c").exists()
    return {name: root / name for name in kinds}


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinysnn: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


# ---- the trial's own trains ------------------------------------------------------------------------


@pytest.mark.parametrize("max_rate", [128.0, 600.0, 1000.0])  # 600 and 1000 Hz take numba's search branch
def test_isi_trains_are_the_numba_simulators_bit_for_bit(max_rate: float) -> None:
    enc = EncodingConfig(time_steps=60, max_rate=max_rate)
    pop = build_population([NetworkConfig(n_neurons=4, n_input=64)], LearningConfig(), [0])
    sim = Simulator(pop, enc, seed=11, backend="numba")
    images = data.load_arrays("digits")["test"][0][:40]
    model = deploy.Model({"n_input": 64, "encoding": {"time_steps": 60, "dt": 1.0, "max_rate": max_rate}}, {})
    ours = deploy.isi_trains(images, model, deploy.sample_seeds(11, 5, len(images)))
    theirs = np.stack(
        [sim.encode(torch.from_numpy(images[b]), STREAM_TEST, 5 + b).numpy() for b in range(40)]
    )
    assert ours.sum() > 1000 and np.array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["qwn", "qw", "torch"])
def test_infer_gives_the_recorded_accuracy_back(
    models: Dict[str, Path], name: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = deploy.load_model(models[name])
    trains = model.test_trains
    assert trains is not None and trains.seed == 7 and trains.samples == 150 and trains.dataset == "digits"
    assert trains.encoder == ("torch" if name == "torch" else "isi")
    capsys.readouterr()
    assert main(["infer", str(models[name]), "--dataset", "digits", "--json", str(tmp_path / "r.json")]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["samples"] == 150 and record["trains"]["recorded"] is True
    assert record["accuracy"] == model.meta["accuracy"]  # exactly: the same trains, bit-exact runner
    out = capsys.readouterr().out
    assert (
        "the trial's own test trains" in out
        and f"recorded accuracy {100 * model.meta['accuracy']:.2f} %" in out
    )
    kind = {
        "qwn": "numpy integer runner",
        "qw": "integer weight sums, float32 V_mem",
        "torch": "runner: float32",
    }
    assert kind[name] in out


def test_save_trains_feeds_the_c_reference(models: Dict[str, Path], tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler (cc or gcc) on PATH")
    folder = tmp_path / "m"
    shutil.copytree(models["qwn"], folder)
    assert main(["export", str(folder), "--format", "c"]) == 0
    exe = tmp_path / "infer"
    subprocess.run(
        [cc, "-std=c99", "-O2", "-DTINYSNN_MAIN", "-o", str(exe), str(folder / "tinysnn_infer.c")], check=True
    )
    trains = tmp_path / "trains.bin"
    assert (
        main(
            [
                "infer",
                str(folder),
                "--dataset",
                "digits",
                "--save-trains",
                str(trains),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    out = subprocess.run([str(exe)], stdin=trains.open("rb"), capture_output=True, check=True).stdout.decode()
    predictions = np.array([int(line.split()[0]) for line in out.splitlines()])
    labels = data.load_arrays("digits")["test"][1][:150]
    assert len(predictions) == 150
    assert float((predictions == labels).mean()) == json.loads((tmp_path / "r.json").read_text())["accuracy"]
    # an existing file is not replaced
    assert main(["infer", str(folder), "--dataset", "digits", "--save-trains", str(trains)]) == 2


def test_other_seeds_draw_other_trains(models: Dict[str, Path], tmp_path: Path) -> None:
    assert (
        main(
            [
                "infer",
                str(models["qwn"]),
                "--dataset",
                "digits",
                "--seed",
                "8",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["trains"]["seed"] == 8 and record["trains"]["recorded"] is False
    assert record["samples"] == len(data.load_arrays("digits")["test"][1])  # all: not the trial's test


# ---- model.json, field by field ---------------------------------------------------------------------


def _resigned(src: Path, dst: Path, edit: Callable[[Dict[str, Any]], Any]) -> Path:
    """A copy of a model whose model.json was edited and its checksum recomputed, as an attacker would."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    edit(meta)
    meta["checksum"] = _checksum(meta)
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def edit(meta: Dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = meta
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


EDITS = {
    "no payload": (lambda m: m.pop("payload"), "lacks 'payload'"),
    "no formats": (lambda m: m.pop("formats"), "lacks 'formats'"),
    "unknown field": (_set("extra", 1), "unknown fields 'extra'"),
    "rounding name": (_set("rounding", "sideways"), 'rounding is "sideways"'),
    "zero bits": (
        _set("formats.weights", {"int_bits": 0, "frac_bits": 0, "signed": False}),
        "formats.weights",
    ),
    "too many bits": (_set("formats.vmem.frac_bits", 60), "formats.vmem.frac_bits = 60 is out of range"),
    "format vs payload": (
        _set("formats.weights", {"int_bits": 1, "frac_bits": 6, "signed": False}),
        "payload.groups[0].bits = 8, but the description implies 7",
    ),
    "label past the classes": (_set("labels.0", 10), "labels holds 10"),
    "label below -1": (_set("labels.0", -2), "labels holds -2"),
    "labels too few": (lambda m: m["labels"].pop(), "a list of 12 neuron classes"),
    "time steps 1e9": (_set("encoding.time_steps", 10**9), "59.6 GiB"),
    "time steps 0": (_set("encoding.time_steps", 0), "encoding.time_steps = 0 is out of range"),
    "time steps 2.5": (_set("encoding.time_steps", 2.5), "encoding.time_steps is 2.5, not an integer"),
    "negative dt": (_set("encoding.dt", -1.0), "dt"),
    "max rate past one spike a step": (_set("encoding.max_rate", 5000.0), "max_rate"),
    "old layout (V_th, version 1)": (_set("format_version", 1), "format version 1, which stores V_th"),
    "seed -1": (_set("seed", -1), "seed = -1 is out of range"),
    "seed 2^64": (_set("seed", 2**64), "seed = 18446744073709551616 is out of range"),
    "accuracy 1.5": (_set("accuracy", 1.5), "accuracy = 1.5 is out of range"),
    "accuracy text": (_set("accuracy", "high"), 'accuracy is "high", not a finite number'),
    "payload path": (_set("payload.file", "../../etc/passwd"), "payload.file"),
    "payload count": (_set("payload.groups.0.count", 5), "payload.groups[0].count"),
    "n_classes 0": (_set("n_classes", 0), "n_classes = 0 is out of range"),
    "variant": (_set("variant", "resnet"), 'variant is "resnet"'),
    "one_spike text": (_set("one_spike", "yes"), 'one_spike is "yes", not true or false'),
    "leak": (_set("leak.exc", 2**30), "leak.exc"),
    "trains encoder": (_set("test_trains.encoder", "dice"), "test_trains.encoder"),
    "trains seed": (_set("test_trains.seed", -5), "test_trains.seed"),
    "provenance object": (_set("provenance.study", {"a": [1, {"b": {"c": {"d": 1}}}]}), "deeper"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_a_resigned_model_json_is_checked_field_by_field(
    models: Dict[str, Path], tmp_path: Path, case: str, capsys: pytest.CaptureFixture
) -> None:
    edit, words = EDITS[case]
    folder = _resigned(models["qwn"], tmp_path / "m", edit)
    with pytest.raises(deploy.ModelError) as info:
        deploy.load_model(folder)
    message = str(info.value)
    assert words in message and "\n" not in message and "model.json" in message
    assert main(["infer", str(folder), "--dataset", "digits"]) == 2
    assert words in _one_line(capsys)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_are_refused(models: Dict[str, Path], tmp_path: Path, literal: str) -> None:
    folder = tmp_path / "m"
    shutil.copytree(models["qwn"], folder)
    text = (folder / "model.json").read_text()
    (folder / "model.json").write_text(text.replace('"max_rate": 128.0', f'"max_rate": {literal}'))
    with pytest.raises(deploy.ModelError, match=f"{literal} is not a number JSON allows"):
        deploy.load_model(folder)


def _with_payload_value(src: Path, dst: Path, group: str, index: int, word: bytes) -> Path:
    """A copy whose payload has one 32-bit word of ``group`` replaced, re-hashed and re-signed."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    g = next(g for g in meta["payload"]["groups"] if g["name"] == group)
    payload = bytearray((dst / "payload.bin").read_bytes())
    payload[g["offset"] + 4 * index : g["offset"] + 4 * index + 4] = word
    (dst / "payload.bin").write_bytes(bytes(payload))
    meta["payload"]["sha256"] = hashlib.sha256(bytes(payload)).hexdigest()
    meta["checksum"] = _checksum(meta)
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.parametrize(
    "group, index, word, words",
    [
        ("exc_constants", 3, struct.pack(">f", float("nan")), "not finite"),
        ("exc_constants", 3, struct.pack(">f", 1.5), "decay 1.5 is not in (0, 1]"),
        ("exc_constants", 4, struct.pack(">f", 2.5), "refractory period 2.5"),
        ("input_weights", 0, struct.pack(">f", float("inf")), "not finite"),
        ("exc_vmem", 0, struct.pack(">f", 3.0), "not at rest"),
        ("exc_theta", 0, struct.pack(">f", -1.0), "negative theta"),
    ],
)
def test_payload_values_are_checked(
    models: Dict[str, Path], tmp_path: Path, group: str, index: int, word: bytes, words: str
) -> None:
    folder = _with_payload_value(models["torch"], tmp_path / "m", group, index, word)  # FP32: float32 groups
    with pytest.raises(deploy.ModelError, match=re.escape(words)):
        deploy.load_model(folder)


def test_encode_refuses_nan_inf_and_out_of_range_images(models: Dict[str, Path]) -> None:
    model = deploy.load_model(models["qwn"])
    rng = np.random.default_rng(0)
    for bad in (np.nan, np.inf, -1.0, 256.0):
        images = np.zeros((2, 64))
        images[1, 3] = bad
        with pytest.raises(deploy.ModelError, match="finite pixel intensities in 0..255"):
            deploy.encode(images, model, rng)
        with pytest.raises(deploy.ModelError, match="finite pixel intensities in 0..255"):
            deploy.isi_trains(images, model, [0, 1])


# ---- the command line: one line each ---------------------------------------------------------------


def test_infer_seed_must_be_non_negative(models: Dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["infer", str(models["qwn"]), "--dataset", "digits", "--seed", "-1"]) == 2
    assert "--seed = -1" in _one_line(capsys)


def test_export_into_a_folder_that_cannot_be_written(
    models: Dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(models["qwn"], folder)
    before = sorted(p.name for p in folder.iterdir())
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        folder.chmod(0o500)
        try:
            assert main(["export", str(folder), "--format", "c"]) == 2
            assert "cannot write into" in _one_line(capsys)
        finally:
            folder.chmod(0o700)

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_text", read_only)
    assert main(["export", str(folder), "--format", "c"]) == 2
    line = _one_line(capsys)
    assert "cannot write into" in line and "Read-only file system" in line
    assert sorted(p.name for p in folder.iterdir()) == before


def test_model_folders_get_the_umask_permissions(models: Dict[str, Path]) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    assert models["qwn"].stat().st_mode & 0o777 == 0o777 & ~mask
    assert (models["qwn"] / "model.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_digits_without_scikit_learn_is_one_line(models: Dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'numba', 'optuna', 'sklearn'):\n"
        "    sys.modules[name] = None  # import fails\n"
        "from tinysnn.cli import main\n"
        f"sys.exit(main(['infer', {str(models['qwn'])!r}, '--dataset', 'digits']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "pip install scikit-learn" in err[0], proc.stderr


def test_torch_trains_need_torch(models: Dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "class NoTorch:  # torch is not installed (scipy, under scikit-learn, must not see it either)\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from tinysnn.cli import main\n"
        f"sys.exit(main(['infer', {str(models['torch'])!r}, '--dataset', 'digits']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "install torch" in err[0] and "--seed" in err[0], (
        proc.stderr
    )


def test_export_formats_are_checked_before_anything_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    deploy.check_formats(["model", "c", "c"])
    with pytest.raises(deploy.ModelError, match="unknown export format 'onnx'"):
        deploy.check_formats(["c", "onnx"])
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nir" else real(name, *a)
    )
    with pytest.raises(deploy.ModelError, match=r'needs the nir package: pip install "tinysnn\[nir\]"'):
        deploy.check_formats(["c", "nir"])
