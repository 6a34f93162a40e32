"""Throughput benchmark: training and inference samples/s of diehl_cook and tinysnn, against BindsNET.

Protocol (docs/method.md §1): 250 steps of dt = 1 ms, 128 Hz for a full pixel, state reset between
samples. For every configuration (variant x neurons x population size P x device) a fresh child
process (this script with ``--worker``) builds P networks with ``build_population`` and times

* training: ``Simulator(pop, EncodingConfig(), seed=0).train_samples(images, first_index)`` on
  chunks of ``tinysnn.train.TRAIN_CHUNK`` samples, as the training loop (``tinysnn.train``) calls
  it (Poisson encoding included, as BindsNET's timing includes its encoding; the samples of a
  chunk are learned one after the other, each from the weights the one before left);
* inference: ``sim.infer(batch, stream=2, first_index=offset)`` on batches (default 500 images),
  learning off, after the training phase (as BindsNET's inference follows its training).

A few warmup samples and a small inference batch run first (numba JIT / cache load, CUDA start)
and are not timed. Rates are TOTAL rates: timed samples / summed seconds of the timed samples
(median per-chunk and per-batch rates are in the JSON too). "per net" is the rate of the
population loop (each of the P networks sees every sample); "aggregate" is P x that, in
network-samples/s. Each child reports its peak RSS (``ru_maxrss``), so memory is per
configuration. On CUDA the torch backend runs and the clock is read after a synchronize.

Images: the first training images of MNIST (``tinysnn.data.load("mnist", DIR)``) with
``--data-root DIR``; otherwise synthetic MNIST-like images made as BindsNET's timing script makes
them (about 19 % of the pixels on at U[0.5, 1], numpy ``default_rng``, seed 0 for training and
1 for inference), stored as 0..255. Inference uses a disjoint set of images (the next training
images of MNIST). Both sides get exactly the same images: they are written once to .npy files,
tinysnn's workers load them, and BindsNET's script ``bench/_bindsnet_timing.py`` is run with its
``make_images`` replaced by a loader of the same files (intensity / 255).

BindsNET: with ``--bindsnet-python PATH`` (a Python that has bindsnet, e.g. its own venv), or
when ``bindsnet`` is importable here (then this interpreter runs it, still as a child process),
``_bindsnet_timing.py`` times DiehlAndCook2015 (batch 1, ``--threads 1`` by default, the example
loop's monitors) on the same samples at each neuron count. Its run is placed between tinysnn's
P = 1 and P > 1 configurations of the same neuron count, so both are measured close in time.
Ratio columns are tinysnn / BindsNET: aggregate training rate (for P = 1 the plain rate) and
aggregate inference rate, against BindsNET at the same N.

Examples::

    python bench/throughput.py --quick
    python bench/throughput.py --data-root /work/shared/datasets \\
        --bindsnet-python /work/bindsnet-venv/bin/python
    python bench/throughput.py --variants tinysnn --neurons 400 --populations 64 --devices cuda
    python bench/throughput.py --variants tinysnn --neurons 400 --populations 8 --no-bindsnet \
        --quant fp32 --quant weights=UQ0.8,rounding=truncate,scheme=itq

``--quant`` (repeatable) times quantized networks: ITQ rows are active while training, and every
network infers with its quantized values. The targets are checked on the FP32 rows only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BINDSNET_SCRIPT = HERE / "_bindsnet_timing.py"
DEFAULT_JSON = HERE / "out" / "throughput.json"

TIME_STEPS = 250
DT = 1.0
MAX_RATE = 128.0
WARMUP = 2
STREAM_INFER = 2
ON_FRACTION = 0.19  # as in _bindsnet_timing.make_images

#: Targets the benchmark is checked against (SPEC issue; 400 neurons, this machine).
TARGETS = {
    "train_p1_x_bindsnet": 50.0,
    "train_agg_p16_x_bindsnet": 150.0,
    "infer_x_bindsnet": 100.0,
    "infer_x_bindsnet_aim": 300.0,
    "cuda_p64_agg_train": 5000.0,
    "rss_p16_n400_mb": 2048.0,
}


# -- machine and repository ---------------------------------------------------------------------
from _common import check_quant_args, cpu_model, git_revision, loadavg  # noqa: E402  (bench/ sibling)


def machine_info() -> Dict[str, Any]:
    import numba
    import numpy as np
    import torch

    try:
        cores: Optional[int] = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cores_available": cores,
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "numba_threads": int(numba.config.NUMBA_NUM_THREADS),
        "cuda_available": bool(torch.cuda.is_available()),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MB (ru_maxrss is in KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024.0 * 1024.0) if sys.platform == "darwin" else kib / 1024.0


# -- images -------------------------------------------------------------------------------------
def synthetic_images(n: int, seed: int) -> Any:
    """``n`` MNIST-like (n, 784) uint8 images, made as ``_bindsnet_timing.make_images`` makes them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    on = rng.random((n, 1, 28, 28)) < ON_FRACTION
    val = rng.uniform(0.5, 1.0, size=(n, 1, 28, 28))
    x = np.where(on, val, 0.0).reshape(n, 784)
    return np.round(x * 255.0).astype(np.uint8)


def prepare_images(data_root: Optional[str], n_train: int, n_infer: int, folder: Path) -> Dict[str, str]:
    """Write the training and inference images (uint8, (n, 784)) to ``folder``; describe them."""
    import numpy as np

    if data_root:
        from tinysnn.data import load

        split = load("mnist", data_root).train
        if n_train + n_infer > len(split):
            raise SystemExit(f"MNIST has {len(split)} training images; {n_train + n_infer} needed")
        allx = split.images.numpy()
        train, infer = allx[:n_train], allx[n_train : n_train + n_infer]
        desc = (
            f"MNIST training images from {data_root}: training uses images 0..{n_train - 1}, "
            f"inference images {n_train}..{n_train + n_infer - 1} (the first {WARMUP} of each "
            "are warmup)"
        )
        source = "mnist"
    else:
        train, infer = synthetic_images(n_train, 0), synthetic_images(n_infer, 1)
        desc = (
            "synthetic MNIST-like images (as _bindsnet_timing.make_images: ~19 % pixels on at "
            "U[0.5, 1]; seed 0 training, seed 1 inference), stored as uint8 0..255"
        )
        source = "synthetic"
    tr_path, in_path = folder / "train_images.npy", folder / "infer_images.npy"
    np.save(tr_path, np.ascontiguousarray(train, dtype=np.uint8))
    np.save(in_path, np.ascontiguousarray(infer, dtype=np.uint8))
    return {
        "source": source,
        "description": desc,
        "train_file": str(tr_path),
        "infer_file": str(in_path),
        "mean_intensity_train": float(train.mean()),
        "mean_intensity_infer": float(infer.mean()),
    }


# -- worker (one configuration, in its own process) ---------------------------------------------
def run_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Time one configuration; returns a row."""
    import numba
    import numpy as np
    import torch

    from tinysnn.config import EncodingConfig, NetworkConfig
    from tinysnn.network import build_population
    from tinysnn.quant import parse_quant_arg, quantized_or_none
    from tinysnn.sim import Simulator
    from tinysnn.train import TRAIN_CHUNK, apply_quant_rows, quantize_parameters

    rss_imports = peak_rss_mb()
    load_start = loadavg()
    device = torch.device(spec["device"])
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    n_train, n_infer, batch, warmup = spec["train_samples"], spec["infer_samples"], spec["batch"], WARMUP
    train_imgs = torch.from_numpy(np.load(spec["train_file"])[: warmup + n_train])
    infer_imgs = torch.from_numpy(np.load(spec["infer_file"])[: warmup + n_infer])
    if cuda:
        train_imgs, infer_imgs = train_imgs.to(device), infer_imgs.to(device)
    P = int(spec["population"])
    net = NetworkConfig(variant=spec["variant"], n_neurons=int(spec["neurons"]))
    pop = build_population(net, seeds=list(range(P)), device=device)
    qtext = spec.get("quant") or "fp32"
    qspec = quantized_or_none(parse_quant_arg(qtext))
    if qspec is not None:  # ITQ rows are active while training; PTQ trains in FP32
        apply_quant_rows(pop, [qspec] * P, training=True)
        quantize_parameters(pop)
    enc = EncodingConfig(time_steps=TIME_STEPS, dt=DT, max_rate=MAX_RATE)
    backend = spec.get("cuda_backend", "torch") if cuda else spec.get("cpu_backend", "auto")
    sim = Simulator(pop, enc, seed=0, backend=backend)

    numba_default = int(numba.config.NUMBA_NUM_THREADS)
    train_threads = int(spec.get("train_threads") or 0)
    if sim.backend == "numba" and train_threads:
        numba.set_num_threads(min(train_threads, numba_default))
    threads_train = int(numba.get_num_threads()) if sim.backend == "numba" else torch.get_num_threads()

    # Warmup: JIT compile or cache load, thread pool and CUDA start; not timed.
    for i in range(warmup):
        sim.train_sample(train_imgs[i], i).cpu()
    sync()

    t_train: List[float] = []  # seconds per sample: each chunk's time over its samples
    spikes_train = 0.0
    for a in range(warmup, warmup + n_train, TRAIN_CHUNK):
        chunk = train_imgs[a : min(a + TRAIN_CHUNK, warmup + n_train)]
        t0 = time.perf_counter()
        counts = sim.train_samples(chunk, a).cpu()  # .cpu() as the training loop does
        sync()
        t_train += [(time.perf_counter() - t0) / len(chunk)] * len(chunk)
        spikes_train += float(counts.sum())

    if qspec is not None:  # inference with the quantized values (V_mem rows for PTQ too)
        apply_quant_rows(pop, [qspec] * P, training=False)
        quantize_parameters(pop)
        sim = Simulator(pop, enc, seed=0, backend=backend)
    if sim.backend == "numba":
        numba.set_num_threads(numba_default)
    threads_infer = int(numba.get_num_threads()) if sim.backend == "numba" else torch.get_num_threads()
    sim.infer(infer_imgs[:warmup], STREAM_INFER, first_index=0).cpu()  # warmup, not timed
    if sim.backend == "torch-compile":  # and the compilation for a batch of another size, not timed
        sim.infer(infer_imgs[: min(batch, warmup + n_infer)], STREAM_INFER, first_index=0).cpu()
    sync()
    t_infer: List[float] = []
    sizes: List[int] = []
    spikes_infer = 0.0
    for a in range(warmup, warmup + n_infer, batch):
        chunk = infer_imgs[a : min(a + batch, warmup + n_infer)]
        sync()
        t0 = time.perf_counter()
        counts = sim.infer(chunk, STREAM_INFER, first_index=a).cpu()
        sync()
        t_infer.append(time.perf_counter() - t0)
        sizes.append(int(chunk.shape[0]))
        spikes_infer += float(counts.sum())

    train_rate = n_train / sum(t_train) if t_train else float("nan")
    infer_rate = sum(sizes) / sum(t_infer) if t_infer else float("nan")
    row: Dict[str, Any] = {
        "simulator": "tinysnn",
        "variant": spec["variant"],
        "quant": qtext,
        "neurons": int(spec["neurons"]),
        "population": P,
        "device": str(device),
        "backend": sim.backend,
        "threads": threads_infer,
        "train_threads": threads_train,
        "train_samples": n_train,
        "train_seconds": sum(t_train),
        "train_rate": train_rate,
        "train_rate_median": 1.0 / statistics.median(t_train) if t_train else float("nan"),
        "train_agg_rate": train_rate * P,
        "infer_samples": sum(sizes),
        "infer_batch": batch,
        "infer_batches": len(sizes),
        "infer_seconds": sum(t_infer),
        "infer_rate": infer_rate,
        "infer_rate_median": statistics.median([s / t for s, t in zip(sizes, t_infer)]) if t_infer else None,
        "infer_agg_rate": infer_rate * P,
        "spikes_per_net_sample_train": spikes_train / max(n_train * P, 1),
        "spikes_per_net_sample_infer": spikes_infer / max(sum(sizes) * P, 1),
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_imports_mb": rss_imports,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    }
    if cuda:
        row["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


# -- BindsNET -------------------------------------------------------------------------------------
#: Runs _bindsnet_timing.py with its make_images replaced by a loader of our image files, then
#: prints the child's peak RSS. argv: script folder, seed, train file, infer file, script args...
_BINDSNET_BOOT = """
import json, resource, sys
import numpy as np, torch
folder, seed, tr, inf = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sys.path.insert(0, folder)
import _bindsnet_timing as B
files = {seed: tr, seed + 1: inf}
def make_images(n, s):
    a = np.load(files[s])
    if a.shape[0] < n:
        raise SystemExit("image file %s has %d images, %d needed" % (files[s], a.shape[0], n))
    return torch.from_numpy((a[:n].astype(np.float32) / 255.0).reshape(n, 1, 28, 28))
B.make_images = make_images
rc = B.main(sys.argv[5:])
sys.stdout.write(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}) + "\\n")
sys.exit(rc)
"""


def bindsnet_python(arg: Optional[str]) -> Optional[str]:
    """The Python that runs BindsNET: the one named, or this one if it has bindsnet."""
    if arg:
        return arg
    import importlib.util

    return sys.executable if importlib.util.find_spec("bindsnet") is not None else None


def run_bindsnet(
    python: str,
    neurons: int,
    n_train: int,
    n_infer: int,
    images: Dict[str, str],
    threads: int,
    monitors: str,
    timeout: float,
) -> Dict[str, Any]:
    """Time BindsNET's DiehlAndCook2015 at ``neurons`` on our images; a row (or an error row)."""
    args = [
        python,
        "-c",
        _BINDSNET_BOOT,
        str(HERE),
        "0",
        images["train_file"],
        images["infer_file"],
        "--neurons",
        str(neurons),
        "--train-samples",
        str(n_train),
        "--infer-samples",
        str(n_infer),
        "--time",
        str(TIME_STEPS),
        "--dt",
        str(DT),
        "--warmup",
        str(WARMUP),
        "--seed",
        "0",
        "--threads",
        str(threads),
        "--monitors",
        monitors,
    ]
    row: Dict[str, Any] = {
        "simulator": "bindsnet",
        "variant": "DiehlAndCook2015",
        "neurons": neurons,
        "population": 1,
        "device": "cpu",
        "backend": "bindsnet",
        "threads": threads,
        "train_threads": threads,
        "monitors": monitors,
        "python": python,
        "loadavg_start": loadavg(),
    }
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=str(HERE))
    except (OSError, subprocess.TimeoutExpired) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    row["wall_seconds"] = time.perf_counter() - t0
    row["loadavg_end"] = loadavg()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or len(lines) < 2:
        row["error"] = f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        return row
    res, rss = json.loads(lines[-2]), json.loads(lines[-1])
    tr, inf = res["train"], res["infer"]
    row.update(
        {
            "bindsnet_version": res.get("bindsnet_version"),
            "torch_version": res.get("torch_version"),
            "train_samples": tr.get("samples", 0),
            "train_seconds": tr.get("total_s"),
            "train_rate": tr.get("total_rate"),
            "train_rate_median": tr.get("median_rate"),
            "train_agg_rate": tr.get("total_rate"),
            "infer_samples": inf.get("samples", 0),
            "infer_batch": 1,
            "infer_seconds": inf.get("total_s"),
            "infer_rate": inf.get("total_rate"),
            "infer_rate_median": inf.get("median_rate"),
            "infer_agg_rate": inf.get("total_rate"),
            "spikes_per_net_sample_train": tr.get("mean_exc_spikes_per_sample"),
            "spikes_per_net_sample_infer": inf.get("mean_exc_spikes_per_sample"),
            "peak_rss_mb": rss["peak_rss_mb"],
            "raw": res,
        }
    )
    return row


# -- orchestration ------------------------------------------------------------------------------
def samples_for(base: int, population: int, floor: int) -> int:
    """Scale a P = 1 sample count down for larger populations (x 16 / P beyond P = 16), never above it."""
    return max(min(floor, base), int(math.ceil(base * min(1.0, 16.0 / max(population, 1)))))


def run_config(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Run one configuration in a fresh child process of this Python."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as f:
        out_path = f.name
    try:
        args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            json.dumps(spec),
            "--worker-out",
            out_path,
        ]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return dict(spec, simulator="tinysnn", error=f"timed out after {timeout:.0f} s")
        if proc.returncode != 0:
            return dict(
                spec, simulator="tinysnn", error=f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"
            )
        with open(out_path) as fh:
            return json.load(fh)
    finally:
        os.unlink(out_path)


def fmt_rate(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def fmt_ratio(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:,.0f}x" if x >= 10 else f"{x:,.1f}x"


def add_ratios(rows: List[Dict[str, Any]]) -> None:
    """tinysnn / BindsNET at the same N: aggregate training and aggregate inference rates."""
    ref = {r["neurons"]: r for r in rows if r.get("simulator") == "bindsnet" and "error" not in r}
    for r in rows:
        b = ref.get(r.get("neurons"))
        if r.get("simulator") != "tinysnn" or "error" in r or b is None:
            continue
        if b.get("train_rate"):
            r["train_agg_x_bindsnet"] = r["train_agg_rate"] / b["train_rate"]
        if b.get("infer_rate"):
            r["infer_agg_x_bindsnet"] = r["infer_agg_rate"] / b["infer_rate"]


def print_table(rows: List[Dict[str, Any]]) -> None:
    hdr = (
        f"{'simulator':<9} {'variant':<16} {'N':>4} {'P':>3} {'device':<6} {'thr t/i':>7} "
        f"{'train/s/net':>11} {'train agg/s':>11} {'infer/s/net':>11} {'infer agg/s':>11} "
        f"{'peakRSS MB':>10} {'train x BN':>10} {'infer x BN':>10}  quant"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        head = (
            f"{r.get('simulator', '?'):<9} {r.get('variant', '?'):<16} {r.get('neurons', 0):>4} "
            f"{r.get('population', 0):>3} {r.get('device', '?'):<6} "
        )
        if "error" in r:
            print(head + f"ERROR: {r['error'].splitlines()[-1] if r['error'] else ''}")
            continue
        print(
            head
            + f"{str(r.get('train_threads', r.get('threads'))) + '/' + str(r.get('threads')):>7} {fmt_rate(r.get('train_rate')):>11} {fmt_rate(r.get('train_agg_rate')):>11} "
            f"{fmt_rate(r.get('infer_rate')):>11} {fmt_rate(r.get('infer_agg_rate')):>11} "
            f"{r.get('peak_rss_mb', 0):>10,.0f} {fmt_ratio(r.get('train_agg_x_bindsnet')):>10} "
            f"{fmt_ratio(r.get('infer_agg_x_bindsnet')):>10}  {r.get('quant', '')}"
        )


def target_check(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The issue's targets at 400 neurons, where this run measured what they need."""

    def find(variant: str, p: int, device: str) -> Optional[Dict[str, Any]]:
        for r in rows:
            if (
                r.get("simulator"),
                r.get("variant"),
                r.get("neurons"),
                r.get("population"),
                r.get("device"),
                "error" in r,
                r.get("quant", "fp32"),
            ) == ("tinysnn", variant, 400, p, device, False, "fp32"):
                return r
        return None

    out = []
    for variant in ("diehl_cook", "tinysnn"):
        checks = [
            ("P=1 training x BindsNET", find(variant, 1, "cpu"), "train_agg_x_bindsnet", ">=", TARGETS["train_p1_x_bindsnet"]),
            ("P=16 aggregate training x BindsNET", find(variant, 16, "cpu"), "train_agg_x_bindsnet", ">=",
             TARGETS["train_agg_p16_x_bindsnet"]),
            ("P=1 inference x BindsNET", find(variant, 1, "cpu"), "infer_agg_x_bindsnet", ">=", TARGETS["infer_x_bindsnet"]),
            ("CUDA P=64 aggregate training /s", find(variant, 64, "cuda"), "train_agg_rate", ">=",
             TARGETS["cuda_p64_agg_train"]),
            ("P=16 peak RSS MB (CPU)", find(variant, 16, "cpu"), "peak_rss_mb", "<", TARGETS["rss_p16_n400_mb"]),
        ]  # fmt: skip
        for name, row, key, op, goal in checks:
            value = None if row is None else row.get(key)
            ok = None if value is None else (value >= goal if op == ">=" else value < goal)
            out.append(
                {"variant": variant, "check": name, "value": value, "target": f"{op} {goal:g}", "ok": ok}
            )
    return out


def print_targets(checks: List[Dict[str, Any]]) -> None:
    print("\ntargets at N=400 (ratios against BindsNET DiehlAndCook2015 measured in this run):")
    for c in checks:
        v = c["value"]
        shown = "not measured" if v is None else f"{v:,.1f}"
        verdict = "" if c["ok"] is None else ("  ok" if c["ok"] else "  MISSED")
        print(f"  {c['variant']:<11} {c['check']:<36} {shown:>12}  target {c['target']}{verdict}")


def parse_list(text: str, kind: Any = str) -> List[Any]:
    return [kind(x.strip()) for x in str(text).split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    from tinysnn.config import BACKENDS

    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--variants", default="diehl_cook,tinysnn", help="comma list (default: diehl_cook,tinysnn)"
    )
    p.add_argument(
        "--neurons", default="100,400", help="comma list of excitatory neuron counts (default: 100,400)"
    )
    p.add_argument(
        "--populations", default="1,16,64", help="comma list of population sizes P (default: 1,16,64)"
    )
    p.add_argument("--devices", default="cpu,cuda", help="comma list; cuda rows only when torch sees a GPU")
    p.add_argument(
        "--train-samples",
        type=int,
        default=None,
        help="timed training samples at P<=16 (default 200; quick 20); x 16/P beyond P=16",
    )
    p.add_argument(
        "--infer-samples",
        type=int,
        default=None,
        help="timed inference samples per network at P<=16 (default 1000; quick 100); x 16/P beyond",
    )
    p.add_argument(
        "--quant",
        action="append",
        default=None,
        help="a quantization spec as tinysnn train's --quant plus rounding and scheme, e.g. "
        "'weights=UQ0.8,rounding=truncate,scheme=itq'; repeat for several (default: fp32 only; "
        "give 'fp32' to include it)",
    )
    p.add_argument("--batch", type=int, default=500, help="inference batch size (default 500)")
    p.add_argument("--data-root", default=None, help="MNIST root (tinysnn.data.load); else synthetic images")
    p.add_argument(
        "--bindsnet-python",
        default=None,
        help="a Python with bindsnet (e.g. /work/bindsnet-venv/bin/python); default: this one if it has it",
    )
    p.add_argument("--bindsnet-train-samples", type=int, default=None, help="default: --train-samples")
    p.add_argument(
        "--bindsnet-infer-samples",
        type=int,
        default=None,
        help="BindsNET timed inference samples (batch 1; default: --train-samples)",
    )
    p.add_argument("--bindsnet-threads", type=int, default=1, help="torch threads for BindsNET (default 1)")
    p.add_argument(
        "--bindsnet-monitors",
        choices=("example", "spikes", "none"),
        default="example",
        help="monitors attached to BindsNET's network (default: example, as eth_mnist.py)",
    )
    p.add_argument("--no-bindsnet", action="store_true", help="skip BindsNET even when available")
    p.add_argument("--quick", action="store_true", help="small sample counts: a smoke run")
    p.add_argument(
        "--cpu-backend",
        choices=BACKENDS,
        default="auto",
        help="simulator backend on CPU (default auto = numba)",
    )
    p.add_argument(
        "--cuda-backend",
        choices=[b for b in BACKENDS if b.startswith("torch")],
        default="torch",
        help="simulator backend on CUDA (default torch; torch-compile: steps compiled, CUDA graphs)",
    )
    p.add_argument(
        "--train-threads",
        type=int,
        default=0,
        help="numba threads while training on CPU (default 0: the library's default, all cores)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per child process")
    p.add_argument("--json", default=str(DEFAULT_JSON), help=f"write results here (default {DEFAULT_JSON})")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker is not None:
        row = run_worker(json.loads(args.worker))
        with open(args.worker_out, "w") as f:
            json.dump(row, f)
        return 0

    import torch

    t_start = time.perf_counter()
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    load_start = loadavg()
    variants = parse_list(args.variants)
    neurons = parse_list(args.neurons, int)
    pops = sorted(parse_list(args.populations, int))
    quants = args.quant or ["fp32"]
    check_quant_args(quants)
    devices = parse_list(args.devices)
    skipped: List[str] = []
    if "cuda" in devices and not torch.cuda.is_available():
        devices = [d for d in devices if d != "cuda"]
        skipped.append("cuda: torch.cuda.is_available() is False")
    n_train = args.train_samples if args.train_samples is not None else (20 if args.quick else 200)
    n_infer = args.infer_samples if args.infer_samples is not None else (100 if args.quick else 1000)
    batch = min(args.batch, 50) if args.quick else args.batch
    bn_train = args.bindsnet_train_samples if args.bindsnet_train_samples is not None else n_train
    bn_infer = args.bindsnet_infer_samples if args.bindsnet_infer_samples is not None else n_train
    floor = 4 if args.quick else 10
    bn_python = None if args.no_bindsnet else bindsnet_python(args.bindsnet_python)
    if bn_python is None and not args.no_bindsnet:
        skipped.append("bindsnet: not importable here and no --bindsnet-python given")

    folder = Path(tempfile.mkdtemp(prefix="tinysnn-throughput-"))
    need_train = WARMUP + max([n_train, bn_train if bn_python else 0])
    need_infer = WARMUP + max([n_infer, bn_infer if bn_python else 0])
    images = prepare_images(args.data_root, need_train, need_infer, folder)
    print(
        f"images: {images['description']}; BindsNET gets the same images"
        + ("" if bn_python else " (not run)")
    )
    print(f"load average at start: {load_start}")

    plan: List[Dict[str, Any]] = []  # per N: tinysnn P=1, BindsNET, tinysnn P>1 (close in time)
    for n in neurons:
        for dev in devices:
            for pp in pops:
                for v, q in [(v, q) for v in variants for q in quants]:
                    plan.append(
                        {
                            "kind": "tinysnn",
                            "variant": v,
                            "quant": q,
                            "neurons": n,
                            "population": pp,
                            "device": dev,
                            "train_samples": samples_for(n_train, pp, floor),
                            "infer_samples": samples_for(n_infer, pp, floor),
                            "batch": batch,
                            "train_file": images["train_file"],
                            "infer_file": images["infer_file"],
                            "cpu_backend": args.cpu_backend,
                            "cuda_backend": args.cuda_backend,
                            "train_threads": args.train_threads,
                        }
                    )
        if bn_python:
            first_big = next(
                (i for i, s in enumerate(plan) if s["neurons"] == n and s["population"] > 1), len(plan)
            )
            plan.insert(first_big, {"kind": "bindsnet", "neurons": n})

    rows: List[Dict[str, Any]] = []
    for k, spec in enumerate(plan, 1):
        if spec["kind"] == "bindsnet":
            label = f"bindsnet DiehlAndCook2015 N={spec['neurons']} ({bn_train} train, {bn_infer} infer)"
            print(f"[{k}/{len(plan)}] {label} ...", flush=True)
            row = run_bindsnet(
                bn_python,  # type: ignore[arg-type]
                spec["neurons"],
                bn_train,
                bn_infer,
                images,
                args.bindsnet_threads,
                args.bindsnet_monitors,
                args.timeout,
            )
        else:
            label = (
                f"tinysnn {spec['variant']} {spec['quant']} N={spec['neurons']} P={spec['population']} {spec['device']} "
                f"({spec['train_samples']} train, {spec['infer_samples']} infer)"
            )
            print(f"[{k}/{len(plan)}] {label} ...", flush=True)
            row = run_config({key: v for key, v in spec.items() if key != "kind"}, args.timeout)
        if "error" in row:
            print(f"    error: {row['error'][-500:]}", flush=True)
        else:
            print(
                f"    train {fmt_rate(row.get('train_agg_rate'))}/s agg, infer {fmt_rate(row.get('infer_agg_rate'))}"
                f"/s agg, peak RSS {row.get('peak_rss_mb', 0):,.0f} MB",
                flush=True,
            )
        rows.append(row)

    add_ratios(rows)
    load_end = loadavg()
    print()
    print_table(rows)
    print(
        "\nrates: TOTAL rate = timed samples / summed time of the timed samples (warmup excluded; "
        "medians in the JSON); agg = P x per-net, network-samples/s; tinysnn inference in batches of "
        f"{batch}; thr t/i = threads training/inference; BindsNET batch 1, {args.bindsnet_threads} torch thread(s), monitors "
        f"'{args.bindsnet_monitors}'; x BN = tinysnn agg / BindsNET at the same N (like for like: diehl_cook)"
    )
    for s in skipped:
        print(f"skipped {s}")
    checks = target_check(rows)
    print_targets(checks)
    print(f"\nload average: start {load_start}, end {load_end}")

    payload = {
        "benchmark": "throughput",
        "date": started,
        "git_revision": git_revision(),
        "command": [sys.executable, *sys.argv] if argv is None else ["throughput.py", *argv],
        "machine": machine_info(),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "wall_seconds": time.perf_counter() - t_start,
        "settings": {
            "time_steps": TIME_STEPS,
            "dt_ms": DT,
            "max_rate_hz": MAX_RATE,
            "warmup_samples": WARMUP,
            "variants": variants,
            "quant": quants,
            "neurons": neurons,
            "populations": pops,
            "devices": devices,
            "train_samples_p1": n_train,
            "infer_samples_p1": n_infer,
            "sample_scaling": f"count x min(1, 16/P), at least {floor}",
            "infer_batch": batch,
            "cpu_backend": args.cpu_backend,
            "cuda_backend": args.cuda_backend,
            "train_threads": args.train_threads or "library default (all cores)",
            "quick": bool(args.quick),
            "rate": "total: timed samples / summed seconds of timed samples; *_median: median per sample/batch",
            "images": {k: v for k, v in images.items() if not k.endswith("_file")},
            "bindsnet": None
            if bn_python is None
            else {
                "python": bn_python,
                "script": str(BINDSNET_SCRIPT),
                "train_samples": bn_train,
                "infer_samples": bn_infer,
                "threads": args.bindsnet_threads,
                "monitors": args.bindsnet_monitors,
                "images": "the same .npy files as tinysnn, via a make_images replacement (intensity / 255)",
            },
            "skipped": skipped,
        },
        "rows": rows,
        "targets": checks,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {out}")
    for name in ("train_images.npy", "infer_images.npy"):
        (folder / name).unlink()
    folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
