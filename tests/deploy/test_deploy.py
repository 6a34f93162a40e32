"""Exported models and the numpy runner (issue 14): bit-exact with the simulator, verified on load."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import torch

from tinysnn import data, deploy
from tinysnn.config import EncodingConfig, LearningConfig, NetworkConfig
from tinysnn.encoding import poisson
from tinysnn.evaluate import Assignment, predict_all_activity
from tinysnn.export import ExportError, export_network
from tinysnn.memory import memory_breakdown
from tinysnn.network import build_population
from tinysnn.quant import QuantSpec, parse_quant_arg, quantized_or_none
from tinysnn.sim import STREAM_TEST, Simulator
from tinysnn.train import RunSpec, run

ENC = EncodingConfig(time_steps=100)
SEED = 5
KINDS = {
    "tinysnn": [
        "fp32",
        "weights=Q1.7,scheme=ptq",
        "weights=Q1.7,scheme=itq,rounding=nearest",
        "weights=Q1.7,vmem=Q9.4,vth=Q8.5,scheme=itq,rounding=truncate",
        "weights=Q1.7,vmem=Q9.4,vth=Q8.5,scheme=itq,rounding=nearest",
        "weights=Q1.7,vmem=Q9.4,vth=Q8.5,scheme=itq,rounding=stochastic",
        "weights=Q1.6,vmem=Q9.2,vth=Q8.3,scheme=ptq,rounding=stochastic",
        # 8-bit qWN (issue 25): saturating V_mem about rest, theta about v_th; ITQ stochastic adds
        # theta+ = 0.05 mV on a 0.5 mV grid stochastically and decays stochastically
        "weights=Q1.7,vmem=SQ6.2,vth=UQ7.1,scheme=ptq,rounding=truncate",
        "weights=Q1.7,vmem=SQ6.2,vth=UQ7.1,scheme=itq,rounding=stochastic",
    ],
    "diehl_cook": ["fp32", "weights=Q1.7,vmem=Q9.4,vth=Q8.5,scheme=itq,rounding=nearest"],
}


def _spec(text: str) -> Optional[QuantSpec]:
    return quantized_or_none(parse_quant_arg(text))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Dict[str, object]]:
    """Per variant: a population trained on digits, its models exported, 1,000 recorded trains."""
    d = data.load("digits")
    images = torch.cat([d.train.images[:640], d.test.images])  # 1,000 images
    out: Dict[str, Dict[str, object]] = {}
    for variant, texts in KINDS.items():
        net = NetworkConfig(
            variant=variant, n_neurons=24, n_input=64, norm_total=6.4, one_spike=variant == "tinysnn"
        )
        specs = [_spec(t) for t in texts]
        pop = build_population([net] * len(texts), LearningConfig(), list(range(len(texts))))
        res = run(RunSpec(pop, ENC, d.train.take(300), d.test, quant=specs, progress=False, seed=SEED))
        trains = poisson(images, ENC, torch.Generator().manual_seed(1))  # (T, B, n_in)
        counts = Simulator(pop, ENC, seed=SEED).infer(images, STREAM_TEST, 0, trains=trains)
        folders = [
            export_network(
                tmp_path_factory.mktemp(variant) / f"model-{k}",
                pop,
                k,
                ENC,
                specs[k],
                res.networks[k].assignment,
                10,
                accuracy=res.networks[k].accuracy,
            )
            for k in range(len(texts))
        ]
        out[variant] = {
            "pop": pop,
            "res": res,
            "trains": trains.permute(1, 0, 2).numpy(),
            "counts": counts,
            "folders": folders,
            "specs": specs,
        }
    return out


@pytest.mark.parametrize("variant, k", [(v, k) for v, texts in KINDS.items() for k in range(len(texts))])
def test_runner_is_bit_exact_with_the_simulator_on_1000_images(trained, variant: str, k: int) -> None:
    t = trained[variant]
    model = deploy.load_model(t["folders"][k])
    trains = t["trains"]
    counts = deploy.run_trains(model, trains, deploy.sample_seeds(SEED, 0, trains.shape[0]))
    sim_counts = t["counts"][k].numpy()
    assert sim_counts.sum() > 100  # the comparison saw spikes
    assert np.array_equal(counts, sim_counts)
    labels = torch.tensor(model.labels)[None, :]
    assignment = Assignment(labels, torch.zeros(1, 10, labels.shape[1]), torch.zeros(1, 10, labels.shape[1]))
    sim_pred = predict_all_activity(t["counts"][k : k + 1], assignment)[0].numpy()
    assert np.array_equal(deploy.predict(model, counts), sim_pred)


@pytest.mark.parametrize("variant, k", [("tinysnn", 0), ("tinysnn", 5), ("diehl_cook", 1)])
def test_runner_batches_give_the_same_counts(trained, variant: str, k: int) -> None:
    model = deploy.load_model(trained[variant]["folders"][k])
    trains = trained[variant]["trains"][:50]
    seeds = deploy.sample_seeds(SEED, 0, 50)
    whole = deploy.run_trains(model, trains, seeds)
    assert whole.sum() > 0
    assert np.array_equal(deploy.run_trains(model, trains, seeds, batch_size=7), whole)
    with pytest.raises(deploy.ModelError, match="batch_size = 0"):
        deploy.run_trains(model, trains, seeds, batch_size=0)


@pytest.mark.parametrize("variant, k", [(v, k) for v, texts in KINDS.items() for k in range(len(texts))])
def test_payload_bytes_equal_the_memory_models_packed_bytes(trained, variant: str, k: int) -> None:
    folder = trained[variant]["folders"][k]
    spec = trained[variant]["specs"][k]
    expected = memory_breakdown(variant, 24, 64, spec, "compact").packed_bytes
    assert (folder / "payload.bin").stat().st_size == expected
    meta = json.loads((folder / "model.json").read_text())
    assert meta["payload"]["bytes"] == expected and meta["n_neurons"] == 24


def test_model_records_what_the_network_is(trained) -> None:
    meta = deploy.load_model(trained["tinysnn"]["folders"][3]).meta
    assert meta["formats"]["weights"]["text"] == "UQ1.7" and meta["formats"]["vth"]["text"] == "UQ8.5"
    assert meta["rounding"] == "truncate" and meta["scheme"] == "itq" and meta["label"] == "qWN"
    assert meta["encoding"]["time_steps"] == 100 and len(meta["labels"]) == 24
    assert meta["accuracy"] == pytest.approx(trained["tinysnn"]["res"].networks[3].accuracy)
    assert "tinysnn_version" in meta["provenance"]
    fp32 = deploy.load_model(trained["tinysnn"]["folders"][0]).meta  # FP32: the text model.json always had
    assert (fp32["label"], fp32["scheme"], fp32["rounding"]) == ("fp32", "fp32", "none")


def test_deploy_imports_numpy_alone() -> None:
    code = (
        "import sys, tinysnn.deploy; bad = [m for m in ('torch', 'numba', 'optuna') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- bad input: one line each, nothing half-written ----------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_truncated_edited_or_missing_models_are_refused(trained, tmp_path: Path) -> None:
    src = trained["tinysnn"]["folders"][1]
    cut = _copy(src, tmp_path / "cut")
    (cut / "payload.bin").write_bytes((src / "payload.bin").read_bytes()[:-3])
    with pytest.raises(deploy.ModelError, match="truncated or changed"):
        deploy.load_model(cut)
    edited = _copy(src, tmp_path / "edited")
    meta = json.loads((edited / "model.json").read_text())
    meta["labels"][0] = (meta["labels"][0] + 1) % 10
    (edited / "model.json").write_text(json.dumps(meta))
    with pytest.raises(deploy.ModelError, match="edited after export"):
        deploy.load_model(edited)
    with pytest.raises(deploy.ModelError, match="model.json is missing"):
        deploy.load_model(tmp_path / "nothing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.json").write_text("{not json")
    with pytest.raises(deploy.ModelError, match="not readable JSON"):
        deploy.load_model(tmp_path / "junk")


def test_export_refuses_an_occupied_folder_and_off_grid_values(trained, tmp_path: Path) -> None:
    t = trained["tinysnn"]
    res = t["res"]
    with pytest.raises(deploy.ModelError, match="already exists and is not empty"):
        export_network(t["folders"][0], t["pop"], 0, ENC, None, res.networks[0].assignment, 10)
    fp32 = t["pop"]  # network 0 trained in FP32: its weights are off any 7-bit grid
    with pytest.raises(ExportError, match="not on the grid of UQ1.7"):
        export_network(
            tmp_path / "m", fp32, 0, ENC, parse_quant_arg("weights=Q1.7"), res.networks[0].assignment, 10
        )
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".m-*"))


def test_runner_refuses_trains_and_images_that_do_not_fit(trained) -> None:
    model = deploy.load_model(trained["tinysnn"]["folders"][0])
    with pytest.raises(deploy.ModelError, match=r"expected \(B, 100, 64\)"):
        deploy.run_trains(model, np.zeros((2, 100, 784), bool))
    rng = np.random.default_rng(0)
    with pytest.raises(deploy.ModelError, match=r"expected \(B, 64\)"):
        deploy.encode(np.zeros((2, 28, 28), np.uint8), model, rng)
    with pytest.raises(deploy.ModelError, match="intensities in 0..255"):
        deploy.encode(np.full((2, 64), 300.0), model, rng)


def test_train_export_then_infer_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tinysnn.cli import main

    out = tmp_path / "model"
    args = [
        "train",
        "--dataset",
        "digits",
        "--neurons",
        "20",
        "--train-samples",
        "200",
        "--test-samples",
        "100",
        "--time-steps",
        "60",
        "--quant",
        "weights=Q1.7",
        "--no-progress",
        "--energy",
        "estimate",
    ]
    assert main(args + ["--export", str(out)]) == 0
    assert deploy.load_model(out).meta["provenance"]["source"] == "tinysnn train"
    capsys.readouterr()
    assert (
        main(
            [
                "infer",
                str(out),
                "--dataset",
                "digits",
                "--test-samples",
                "50",
                "--seed",
                "3",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["samples"] == 50 and 0.0 <= record["accuracy"] <= 1.0 and record["samples_per_s"] > 0
    assert record["trains"]["seed"] == 3 and record["trains"]["recorded"] is False
    text = capsys.readouterr().out
    assert "integer weight sums, float32 V_mem" in text and "drawn from --seed 3" in text
    # an occupied export folder is refused before any training; a broken model before any data
    assert main(args + ["--export", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["export", str(out), "--format", "c", "nir"]) == 0
    assert all((out / name).is_file() for name in ("model.h", "tinysnn_infer.c", "model.nir"))
    (out / "payload.bin").write_bytes(b"")
    assert main(["infer", str(out), "--dataset", "digits"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated or changed" in err[0]


# ---- the C reference and NIR ------------------------------------------------------------------------

CC = shutil.which("cc") or shutil.which("gcc")


@pytest.mark.skipif(CC is None, reason="needs a C compiler (cc or gcc) on PATH")
@pytest.mark.parametrize("variant, k", [(v, k) for v, texts in KINDS.items() for k in range(len(texts))])
def test_c_reference_equals_the_numpy_runner_on_1000_images(
    trained, variant: str, k: int, tmp_path: Path
) -> None:
    from tinysnn.deploy.c import write_c

    model = deploy.load_model(trained[variant]["folders"][k])
    header, source = write_c(model, tmp_path)
    exe = tmp_path / "infer"
    build = subprocess.run(
        [CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-DTINYSNN_MAIN", "-o", str(exe), str(source)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    trains = trained[variant]["trains"]
    seeds = deploy.sample_seeds(SEED, 0, trains.shape[0])
    stdin = f"{trains.shape[0]}\n".encode() + b"".join(
        struct.pack("<q", int(s)) + trains[b].astype(np.uint8).tobytes() for b, s in enumerate(seeds)
    )
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, check=True).stdout.decode()
    rows = np.array([[int(x) for x in line.split()] for line in out.splitlines()])
    counts = deploy.run_trains(model, trains, seeds)
    assert np.array_equal(rows[:, 1:], counts)
    assert np.array_equal(rows[:, 0], deploy.predict(model, counts))


@pytest.mark.skipif(
    CC is None or shutil.which("size") is None, reason="needs a C compiler and binutils' size"
)
@pytest.mark.parametrize("variant, k", [("tinysnn", 0), ("tinysnn", 1), ("tinysnn", 3), ("diehl_cook", 1)])
def test_c_header_states_the_ram_and_flash_the_build_takes(
    trained, variant: str, k: int, tmp_path: Path
) -> None:
    from tinysnn.deploy.c import write_c

    model = deploy.load_model(trained[variant]["folders"][k])
    header, source = write_c(model, tmp_path)
    obj = tmp_path / "infer.o"
    subprocess.run([CC, "-std=c99", "-O2", "-c", "-o", str(obj), str(source)], check=True)
    text, data_, bss = (
        int(v)
        for v in subprocess.run(["size", str(obj)], capture_output=True, text=True, check=True)
        .stdout.splitlines()[-1]
        .split()[:3]
    )
    macros = {
        f[1]: f[2]
        for f in (line.split() for line in header.read_text().splitlines())
        if f[:1] == ["#define"] and len(f) == 3
    }
    assert int(macros["TINYSNN_RAM_BYTES"]) == bss + data_  # the whole static state, nothing else
    flash = int(macros["TINYSNN_FLASH_BYTES"])
    weights = (
        64 * 24 * (4 if model.format_of("weights") is None else model.format_of("weights").total_bits / 8)
    )
    assert weights < flash <= text <= flash + 8192  # the model's arrays and a few KB of code


# tinysnn_infer.c's FP32 input sums, stepped by a harness that includes it: acc after each step's sums
_SUMS_HARNESS = r"""
#include <stdio.h>
#include "tinysnn_infer.c"
static uint8_t train[TINYSNN_T * N_IN];
int main(void) {
    int64_t t, j;
    uint64_t bits;
    if (fread(train, 1, sizeof train, stdin) != sizeof train) return 1;
    for (t = 0; t < TINYSNN_T; ++t) {
        input_sums(train + t * N_IN);
        for (j = 0; j < N; ++j) {
            memcpy(&bits, &st.acc[j], sizeof bits);
            printf("%016llx%c", (unsigned long long)bits, j + 1 < N ? ' ' : '\n');
        }
    }
    return 0;
}
"""


@pytest.mark.skipif(CC is None, reason="needs a C compiler (cc or gcc) on PATH")
def test_c_fp32_sums_are_the_simulators_float64_sums_in_input_order(tmp_path: Path) -> None:
    """FP32 weights of widely spread magnitudes (so that float64 sums depend on their order), 61
    inputs (not a multiple of the 8-byte scan) and 13 neurons, trains from silent to dense (so that
    every group size of the four-row adds occurs): each step's sums are the float64 sums in input
    order, bit for bit, and the spike counts of whole runs are the simulator's."""
    from tinysnn.deploy.c import write_c

    n_in, n, steps, samples = 61, 13, 100, 12
    rng = np.random.default_rng(3)
    pop = build_population(
        [NetworkConfig(variant="tinysnn", n_neurons=n, n_input=n_in, one_spike=True)], LearningConfig(), [0]
    )
    w = (3 * rng.random((n_in, n)) * np.exp2(-rng.integers(0, 40, (n_in, n)))).astype(np.float32)
    pop.weights[0] = torch.from_numpy(w)
    enc = EncodingConfig(time_steps=steps)
    folder = export_network(tmp_path / "model", pop, 0, enc, None, [j % 10 for j in range(n)], 10)
    model = deploy.load_model(folder)
    _, source = write_c(model, folder)
    density = np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.05, 0.15])
    trains = (rng.random((samples, steps, n_in)) < density[:, None, None]).astype(np.uint8)

    harness = tmp_path / "sums.c"
    harness.write_text(_SUMS_HARNESS)
    exe = tmp_path / "sums"
    build = subprocess.run(
        [CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{folder}", "-o", str(exe), str(harness)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    assert np.array_equal(model.groups["input_weights"], w)
    weights = w.astype(np.float64)
    order_matters = 0
    for b in (3, 9):  # 0.1 and 0.7
        out = subprocess.run([str(exe)], input=trains[b].tobytes(), capture_output=True, check=True).stdout
        got = np.array([[int(x, 16) for x in line.split()] for line in out.decode().splitlines()], np.uint64)
        expected = np.zeros((steps, n))
        backwards = np.zeros((steps, n))
        for t in range(steps):
            firing = np.flatnonzero(trains[b, t])
            for i in firing:
                expected[t] += weights[i]
            for i in firing[::-1]:
                backwards[t] += weights[i]
        assert np.array_equal(got, expected.view(np.uint64))
        order_matters += int((expected != backwards).sum())
    assert order_matters > 100  # another order would have been seen

    stdin = f"{samples}\n".encode() + b"".join(
        struct.pack("<q", 0) + trains[b].tobytes() for b in range(samples)
    )
    exe = tmp_path / "infer"
    subprocess.run([CC, "-std=c99", "-O2", "-DTINYSNN_MAIN", "-o", str(exe), str(source)], check=True)
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, check=True).stdout.decode()
    rows = np.array([[int(x) for x in line.split()] for line in out.splitlines()])
    images = torch.zeros(samples, n_in)
    sim = (
        Simulator(pop, enc, seed=SEED)
        .infer(images, STREAM_TEST, 0, trains=torch.from_numpy(trains).permute(1, 0, 2).contiguous())[0]
        .numpy()
    )
    assert sim.sum() > 50  # the comparison saw spikes
    assert np.array_equal(rows[:, 1:], sim)
    assert np.array_equal(
        rows[:, 1:], deploy.run_trains(model, trains, deploy.sample_seeds(SEED, 0, samples))
    )


def test_nir_graph_reads_back_with_the_dequantized_network(trained, tmp_path: Path) -> None:
    import nir

    for variant, k in (("tinysnn", 3), ("diehl_cook", 1)):
        folder = _copy(trained[variant]["folders"][k], tmp_path / variant)
        (path,) = deploy.write_extra(folder, "nir")
        graph = nir.read(str(path))
        model = deploy.load_model(folder)
        w = model.groups["input_weights"] * 2.0 ** -model.format_of("weights").frac_bits
        assert np.array_equal(graph.nodes["affine"].weight, w.T.astype(np.float32))
        theta = (model.groups["exc_theta"] * 2.0 ** -model.format_of("vth").frac_bits).astype(np.float32)
        v_th = model.groups["exc_constants"][2]  # theta is stored about the base v_th
        assert np.array_equal(graph.nodes["lif"].v_threshold, (v_th + theta).astype(np.float32))
        recurrent = ("lateral", "lif") if variant == "tinysnn" else ("inh_to_exc", "lif")
        assert recurrent in graph.edges and ("input", "affine") in graph.edges
        assert (
            float(graph.nodes[recurrent[0]].weight[0, 1])
            == -model.groups["lateral_inhibition" if variant == "tinysnn" else "inh_to_exc_weight"][0]
        )


def test_unknown_export_format_is_one_line(trained, tmp_path: Path) -> None:
    with pytest.raises(deploy.ModelError, match="unknown export format 'onnx'"):
        deploy.write_extra(trained["tinysnn"]["folders"][0], "onnx")


def test_infer_runs_where_torch_numba_and_optuna_cannot_be_imported(trained, tmp_path: Path) -> None:
    # a board with numpy alone: importing any of the three fails, and `tinysnn infer` still runs (on
    # 8x8 images in IDX files, the model's input size, since scikit-learn's digits would need more)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    d = data.load("digits")
    for split, (x, y) in {
        "train": (d.train.images[:40], d.train.labels[:40]),
        "t10k": (d.test.images[:20], d.test.labels[:20]),
    }.items():
        for kind, arr in (("images-idx3", x.numpy().reshape(-1, 8, 8)), ("labels-idx1", y.numpy())):
            header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
            (raw / f"{split}-{kind}-ubyte").write_bytes(header + arr.astype(np.uint8).tobytes())
    model = trained["tinysnn"]["folders"][3]
    code = (
        "import sys\n"
        "for name in ('torch', 'numba', 'optuna', 'sklearn'):\n"
        "    sys.modules[name] = None  # import fails\n"
        "from tinysnn.cli import main\n"
        f"sys.exit(main(['infer', {str(model)!r}, '--dataset', 'mnist', '--data-root', {str(tmp_path)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "on 20 mnist test images" in proc.stdout and "numpy integer runner" in proc.stdout
