"""Deployed inference on one core: the simulator against the numpy runner and the C reference.

Trains a tinysnn network on MNIST (``--train-samples`` images, one spike per step, the MNIST
constants), exports it at each ``--quant`` (PTQ: one training, several exports), and runs the
same recorded input trains of the first ``--images`` test images through

* the simulator's inference (numba, one thread, P = 1),
* the numpy integer runner (``tinysnn.deploy``),
* the C reference (``tinysnn_infer.c`` built with ``cc -std=c99 -O2``; time of the compute loop,
  measured inside the program, reading of the trains excluded),

checks that all three give the same spike counts and predictions, and prints samples/s, the
ratios, and the flash/RAM of the C build (``size``) beside the model's packed bytes::

    python bench/deploy_speed.py --data-root ../shared/datasets --json bench/out/deploy-speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch

from tinysnn import data, deploy
from tinysnn.config import EncodingConfig, LearningConfig, NetworkConfig
from tinysnn.deploy.c import write_c
from tinysnn.encoding import poisson
from tinysnn.export import export_network
from tinysnn.network import build_population
from tinysnn.quant import parse_quant_arg
from tinysnn.sim import STREAM_TEST, Simulator
from tinysnn.train import RunSpec, run

DEFAULT_QUANTS = ["weights=UQ0.8", "weights=Q1.11,vmem=Q9.3,vth=Q7.5,rounding=nearest"]


def _c_run(folder: Path, trains: np.ndarray, seeds: np.ndarray, cc: str) -> tuple:
    source = folder / "tinysnn_infer.c"
    exe, obj = folder / "infer", folder / "tinysnn_infer.o"
    flags = ["-std=c99", "-O2"]
    subprocess.run([cc, *flags, "-c", "-o", str(obj), str(source)], check=True)
    sizes = subprocess.run(["size", str(obj)], capture_output=True, text=True).stdout.splitlines()[-1].split()
    subprocess.run(
        [cc, *flags, "-DTINYSNN_MAIN", "-DTINYSNN_TIMING", "-o", str(exe), str(source)], check=True
    )
    stdin = f"{len(trains)}\n".encode() + b"".join(
        struct.pack("<q", int(s)) + trains[b].astype(np.uint8).tobytes() for b, s in enumerate(seeds)
    )
    proc = subprocess.run([str(exe)], input=stdin, capture_output=True, check=True)
    rows = np.array([[int(x) for x in line.split()] for line in proc.stdout.decode().splitlines()])
    seconds = float(proc.stderr.decode().split()[-1])
    return (
        rows[:, 1:],
        rows[:, 0],
        seconds,
        {"text": int(sizes[0]), "data": int(sizes[1]), "bss": int(sizes[2])},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--train-samples", type=int, default=10000)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--neurons", type=int, default=400)
    ap.add_argument("--quant", nargs="+", default=DEFAULT_QUANTS)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    d = data.load("mnist", a.data_root)
    enc = EncodingConfig()
    net = NetworkConfig(variant="tinysnn", n_neurons=a.neurons, one_spike=True, w_inh=120.0)
    specs = [parse_quant_arg(q, scheme="ptq") for q in a.quant]
    pop = build_population([net] * len(specs), LearningConfig(eta_post=0.002, n_th=1.0), [0] * len(specs))
    res = run(RunSpec(pop, enc, d.train.take(a.train_samples), d.test.take(a.images), quant=specs,
                      progress=False, assign=d.train.take(min(a.train_samples, 10000))))  # fmt: skip
    images = d.test.images[: a.images]
    trains_tbn = poisson(images, enc, torch.Generator().manual_seed(1))
    trains = trains_tbn.permute(1, 0, 2).numpy()
    seeds = deploy.sample_seeds(0, 0, len(images))
    cc = shutil.which("cc") or shutil.which("gcc")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, text in enumerate(a.quant):
            one = pop.select(k)
            sim = Simulator(one, enc, seed=0, backend="numba")
            sim.infer(images[:2], STREAM_TEST, 0, trains=trains_tbn[:, :2])  # compile outside the timing
            t0 = time.perf_counter()
            sim_counts = sim.infer(images, STREAM_TEST, 0, trains=trains_tbn)[0].numpy()
            t_sim = time.perf_counter() - t0
            folder = export_network(Path(tmp) / f"m{k}", pop, k, enc, specs[k], res.networks[k].assignment, 10,
                                    accuracy=res.networks[k].accuracy)  # fmt: skip
            model = deploy.load_model(folder)
            t0 = time.perf_counter()
            counts = deploy.run_trains(model, trains, seeds)
            t_np = time.perf_counter() - t0
            pred = deploy.predict(model, counts)
            row = {
                "quant": text, "label": model.meta["label"], "images": len(images),
                "payload_bytes": int(model.meta["payload"]["bytes"]),
                "sim_samples_per_s": len(images) / t_sim, "numpy_samples_per_s": len(images) / t_np,
                "numpy_equals_simulator": bool(np.array_equal(counts, sim_counts)),
                "accuracy_on_these_trains": float((pred == d.test.labels[: a.images].numpy()).mean()),
            }  # fmt: skip
            if cc is not None:
                write_c(model, folder)
                c_counts, c_pred, t_c, size = _c_run(folder, trains, seeds, cc)
                row.update(c_samples_per_s=len(images) / t_c, c_size=size,
                           c_equals_numpy=bool(np.array_equal(c_counts, counts) and np.array_equal(c_pred, pred)))  # fmt: skip
            rows.append(row)
    print(f"{'model':<52} {'sim/s':>8} {'numpy/s':>8} {'C/s':>8} {'np/sim':>7} {'C/sim':>7} exact  "
          f"{'payload B':>9} {'flash B':>8} {'RAM B':>6}")  # fmt: skip
    for r in rows:
        c = r.get("c_samples_per_s", float("nan"))
        size = r.get("c_size", {})
        exact = r["numpy_equals_simulator"] and r.get("c_equals_numpy", True)
        print(f"{r['quant']:<52} {r['sim_samples_per_s']:>8.1f} {r['numpy_samples_per_s']:>8.1f} {c:>8.1f} "
              f"{r['numpy_samples_per_s'] / r['sim_samples_per_s']:>7.2f} {c / r['sim_samples_per_s']:>7.2f} "
              f"{'yes' if exact else 'NO':<5}  {r['payload_bytes']:>9} "
              f"{size.get('text', 0) + size.get('data', 0):>8} {size.get('bss', 0):>6}")  # fmt: skip
    if a.json:
        machine = {"python": platform.python_version(), "platform": platform.platform(), "cc": cc}
        Path(a.json).write_text(json.dumps({"args": vars(a), "machine": machine, "rows": rows}, indent=2))
        print(f"wrote {a.json}")
    sys.exit(0 if all(r["numpy_equals_simulator"] and r.get("c_equals_numpy", True) for r in rows) else 1)


if __name__ == "__main__":
    main()
