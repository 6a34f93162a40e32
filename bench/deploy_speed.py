"""Deployed inference on one core: the simulator against the numpy runner and the C reference.

For each ``--neurons`` size, trains one tinysnn network per model kind on MNIST (``--train-samples``
images, one spike per step, the MNIST constants; PTQ, so every kind trains in FP32 alike), exports
each kind (FP32, 8-bit qW, 8-bit qWN by default), and runs the same recorded input trains of the
first ``--images`` test images through

* the simulator's inference (numba, one thread, P = 1, trains given),
* the numpy runner (``tinysnn.deploy.run_trains``), in a separate process of ``--python`` (default:
  this interpreter; e.g. a Python 3.8 venv with numpy 1.24, the board's) with one BLAS thread; the
  time of ``run_trains`` alone,
* the C reference (``tinysnn_infer.c`` built with ``cc -std=c99 -O2``; time of the compute loop,
  measured inside the program, reading of the trains excluded),

checks that all three give the same spike counts and predictions, and prints samples/s, the
ratios, and the flash/RAM of the C build (``size``) beside the model's packed bytes::

    python bench/deploy_speed.py --data-root ../shared/datasets --json bench/out/deploy-speed.json
    python bench/deploy_speed.py --data-root ../shared/datasets --python /tmp/v38np/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cpu_model, git_revision, loadavg  # noqa: E402

from tinysnn import data, deploy  # noqa: E402
from tinysnn.config import EncodingConfig, LearningConfig, NetworkConfig  # noqa: E402
from tinysnn.deploy.c import write_c  # noqa: E402
from tinysnn.encoding import poisson  # noqa: E402
from tinysnn.export import export_network  # noqa: E402
from tinysnn.network import build_population  # noqa: E402
from tinysnn.quant import parse_quant_arg, quantized_or_none  # noqa: E402
from tinysnn.sim import STREAM_TEST, Simulator  # noqa: E402
from tinysnn.train import RunSpec, run  # noqa: E402

KINDS = {
    "fp32": "FP32",
    "weights=Q1.7": "8-bit qW",
    "weights=Q1.7,vmem=SQ8.0,vth=Q8.0,rounding=truncate": "8-bit qWN",
}
"""Default model kinds (``--quant`` text: name); the 8-bit qWN formats are RESULTS' issue-25 network."""

ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_RUNNER = """
import sys, time
import numpy as np
from tinysnn import deploy
folder, trains_path, seeds_path, out_path = sys.argv[1:5]
model = deploy.load_model(folder)
trains, seeds = np.load(trains_path), np.load(seeds_path)
net = deploy.prepare(model)
deploy.run_trains(model, trains[:2], seeds[:2], net)
t0 = time.perf_counter()
counts = deploy.run_trains(model, trains, seeds, net)
seconds = time.perf_counter() - t0
np.save(out_path, counts)
print(seconds, np.__version__, sys.version.split()[0])
"""


def _numpy_run(
    python: str, folder: Path, trains: np.ndarray, seeds: np.ndarray
) -> Tuple[np.ndarray, float, str]:
    """(counts, seconds of run_trains, "Python x numpy y") of the numpy runner under ``python``."""
    paths = [folder / name for name in ("trains.npy", "seeds.npy", "counts.npy")]
    np.save(paths[0], trains)
    np.save(paths[1], seeds)
    env = dict(os.environ, PYTHONPATH=str(ROOT), **ONE_THREAD)
    proc = subprocess.run(
        [python, "-c", _RUNNER, str(folder), *map(str, paths)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"the numpy runner failed under {python}:\n{proc.stderr}")
    seconds, np_version, py_version = proc.stdout.split()
    return np.load(paths[2]), float(seconds), f"Python {py_version}, numpy {np_version}"


def _c_run(
    folder: Path, trains: np.ndarray, seeds: np.ndarray, cc: str
) -> Tuple[np.ndarray, np.ndarray, float, Dict[str, int]]:
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


def _measure(
    a: argparse.Namespace, d: data.Splits, n_neurons: int, tmp: Path, cc: Optional[str]
) -> List[dict]:
    enc = EncodingConfig()
    net = NetworkConfig(variant="tinysnn", n_neurons=n_neurons, one_spike=True, w_inh=120.0)
    specs = [quantized_or_none(parse_quant_arg(q, scheme="ptq")) for q in a.quant]
    pop = build_population([net] * len(specs), LearningConfig(eta_post=0.002, n_th=1.0), [0] * len(specs))
    res = run(
        RunSpec(
            pop,
            enc,
            d.train.take(a.train_samples),
            d.test.take(a.images),
            quant=specs,
            progress=False,
            assign=d.train.take(min(a.train_samples, 10000)),
        )
    )
    images = d.test.images[: a.images]
    trains_tbn = poisson(images, enc, torch.Generator().manual_seed(1))
    trains = trains_tbn.permute(1, 0, 2).numpy()
    seeds = deploy.sample_seeds(0, 0, len(images))
    rows = []
    for k, text in enumerate(a.quant):
        one = pop.select(k)
        sim = Simulator(one, enc, seed=0, backend="numba")
        sim.infer(images[:2], STREAM_TEST, 0, trains=trains_tbn[:, :2])  # compile outside the timing
        t0 = time.perf_counter()
        sim_counts = sim.infer(images, STREAM_TEST, 0, trains=trains_tbn)[0].numpy()
        t_sim = time.perf_counter() - t0
        folder = export_network(
            tmp / f"n{n_neurons}-m{k}",
            pop,
            k,
            enc,
            specs[k],
            res.networks[k].assignment,
            10,
            accuracy=res.networks[k].accuracy,
        )
        model = deploy.load_model(folder)
        counts, t_np, runner_env = _numpy_run(a.python, folder, trains, seeds)
        pred = deploy.predict(model, counts)
        row = {
            "kind": KINDS.get(text, text),
            "quant": text,
            "neurons": n_neurons,
            "label": model.meta["label"],
            "images": len(images),
            "payload_bytes": int(model.meta["payload"]["bytes"]),
            "sim_samples_per_s": len(images) / t_sim,
            "numpy_samples_per_s": len(images) / t_np,
            "numpy_runner": runner_env,
            "numpy_equals_simulator": bool(np.array_equal(counts, sim_counts)),
            "accuracy_on_these_trains": float((pred == d.test.labels[: a.images].numpy()).mean()),
        }
        if cc is not None:
            write_c(model, folder)
            c_counts, c_pred, t_c, size = _c_run(folder, trains, seeds, cc)
            row.update(
                c_samples_per_s=len(images) / t_c,
                c_size=size,
                c_equals_numpy=bool(np.array_equal(c_counts, counts) and np.array_equal(c_pred, pred)),
            )
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--train-samples", type=int, default=10000)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--neurons", type=int, nargs="+", default=[100, 400])
    ap.add_argument(
        "--quant", nargs="+", default=list(KINDS), help="model kinds: fp32 or a --quant text each"
    )
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that runs the numpy runner (numpy alone needed), e.g. /tmp/v38np/bin/python",
    )
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    revision = git_revision()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    d = data.load("mnist", a.data_root)
    cc = shutil.which("cc") or shutil.which("gcc")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for n in a.neurons for r in _measure(a, d, n, Path(tmp), cc)]
    print(f"numpy runner: {rows[0]['numpy_runner']}, one BLAS thread; C: {cc} -std=c99 -O2")
    print(
        f"{'model':<10} {'N':>4} {'sim/s':>8} {'numpy/s':>8} {'C/s':>8} {'np/sim':>7} {'C/sim':>7} exact  "
        f"{'payload B':>9} {'flash B':>8} {'RAM B':>7}"
    )
    for r in rows:
        c = r.get("c_samples_per_s", float("nan"))
        size = r.get("c_size", {})
        exact = r["numpy_equals_simulator"] and r.get("c_equals_numpy", True)
        print(
            f"{r['kind']:<10} {r['neurons']:>4} {r['sim_samples_per_s']:>8.1f} {r['numpy_samples_per_s']:>8.1f} "
            f"{c:>8.1f} {r['numpy_samples_per_s'] / r['sim_samples_per_s']:>7.2f} "
            f"{c / r['sim_samples_per_s']:>7.2f} {'yes' if exact else 'NO':<5}  {r['payload_bytes']:>9} "
            f"{size.get('text', 0) + size.get('data', 0):>8} {size.get('bss', 0):>7}"
        )
    if a.json:
        machine = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cc": cc,
            "cpu": cpu_model(),
            "loadavg": loadavg(),
            "revision": revision,
        }
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"args": vars(a), "machine": machine, "rows": rows}, indent=2))
        print(f"wrote {a.json}")
    sys.exit(0 if all(r["numpy_equals_simulator"] and r.get("c_equals_numpy", True) for r in rows) else 1)


if __name__ == "__main__":
    main()
