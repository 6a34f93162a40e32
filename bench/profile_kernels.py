"""Where a sample's time goes in the numba kernels: encode, input current, neuron update,
inhibition, learning, normalization, label assignment; per phase and per sample.

How the phases are timed: a phase inside one njit kernel cannot be clocked with a Python timer,
so the kernels read the CPU's time-stamp counter (``llvm.readcyclecounter``) at each phase
boundary of every step and add the ticks to one counter per phase
(:data:`tinysnn.sim.numba_kernels.PHASES`) when the backend is given a profile array
(``NumbaBackend.profile``); without one they read nothing. Ticks become seconds by a calibration
of the counter against ``time.perf_counter`` (0.2 s). The counters are shared by all jobs, so
everything runs on one numba thread. "other" is the wall time of the calls less the phases:
Python and kernel-call overhead, state set-up, and the counter reads themselves (each row also
gives the rate of the same samples run without the profile, so the cost of the reads shows).

Phases: ``encode`` (inter-spike-interval trains; in training drawn for a chunk of samples
before the kernel call, so timed apart with a wall clock on the same images and counted out of
"other"), ``input_current`` (the weight rows of the inputs that fire), ``neuron_update`` (the excitatory LIF step), ``inhibition`` (the inhibitory
layer and the lateral inhibition), ``learning`` (thresholds, traces and the learning rule, every
step), ``normalization`` (theta decay and column normalization after the sample), and
``label_assignment`` (``tinysnn.evaluate.assign_labels`` on the inference counts, wall clock,
added to the inference time).

Each ``--quant`` row trains and infers with that spec as bench/throughput.py does (training in
chunks of ``tinysnn.train.TRAIN_CHUNK`` samples per call): ITQ specs are active while training;
every network infers with its quantized values (PTQ too).

Example::

    python bench/profile_kernels.py                       # 400 neurons, P = 1 and 16, three specs
    python bench/profile_kernels.py --data-root ../shared/datasets --populations 1
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

os.environ["NUMBA_NUM_THREADS"] = "1"  # one thread: the phase counters are shared by the jobs

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "out" / "profile_kernels.json"
DEFAULT_QUANTS = (
    "fp32",
    "weights=UQ0.8,rounding=truncate,scheme=itq",  # ITQ qW: quantized while training
    "weights=Q1.7,vmem=SQ8.0,vth=Q8.0,rounding=truncate",  # PTQ qWN: quantized inference
)
from _common import check_quant_args, cpu_model, git_revision, loadavg  # noqa: E402  (bench/ sibling)
from throughput import DT, MAX_RATE, STREAM_INFER, TIME_STEPS, synthetic_images  # noqa: E402


def ticks_per_second() -> float:
    """The time-stamp counter's rate, against ``time.perf_counter`` over 0.2 s."""
    from tinysnn.sim.numba_kernels import cycle_counter

    cycle_counter()  # compile
    t0, c0 = time.perf_counter(), cycle_counter()
    while time.perf_counter() - t0 < 0.2:
        pass
    return (cycle_counter() - c0) / (time.perf_counter() - t0)


def images_and_labels(data_root: Optional[str], n: int) -> Any:
    """``n`` training images (uint8 (n, 784)) and labels: MNIST's first, or synthetic ones."""
    import numpy as np
    import torch

    if data_root:
        from tinysnn.data import load

        split = load("mnist", data_root).train
        return split.images[:n], split.labels[:n], "mnist"
    labels = torch.from_numpy(np.random.default_rng(2).integers(0, 10, n))
    return torch.from_numpy(synthetic_images(n, 0)), labels, "synthetic"


def profile_row(
    variant: str,
    qtext: str,
    neurons: int,
    population: int,
    n_train: int,
    n_infer: int,
    batch: int,
    images: Any,
    labels: Any,
    tps: float,
) -> Dict[str, Any]:
    """Train ``n_train`` and infer ``n_infer`` samples of one configuration, with and without the
    profile; per-sample seconds of each phase."""
    import numpy as np
    import torch

    from tinysnn.config import EncodingConfig, NetworkConfig
    from tinysnn.encoding import spike_probability
    from tinysnn.evaluate import assign_labels
    from tinysnn.network import build_population
    from tinysnn.quant import parse_quant_arg, quantized_or_none
    from tinysnn.sim import Simulator
    from tinysnn.sim import numba_kernels as K
    from tinysnn.train import TRAIN_CHUNK, apply_quant_rows, quantize_parameters

    enc = EncodingConfig(time_steps=TIME_STEPS, dt=DT, max_rate=MAX_RATE)
    spec = quantized_or_none(parse_quant_arg(qtext))
    row: Dict[str, Any] = {"variant": variant, "quant": qtext, "neurons": neurons, "population": population}
    for mode in ("train", "infer"):
        timings = {}
        for profiled in (False, True):
            # a fresh population each time, so both runs compute the same samples
            pop = build_population(
                NetworkConfig(variant=variant, n_neurons=neurons), seeds=list(range(population))
            )
            if spec is not None:
                apply_quant_rows(pop, [spec] * population, training=mode == "train")
                quantize_parameters(pop)
            sim = Simulator(pop, enc, seed=0, backend="numba")
            sim.train_sample(images[0], 0) if mode == "train" else sim.infer(images[:2], STREAM_INFER)  # warm
            if profiled:
                sim._impl.profile = np.zeros(len(K.PHASES), np.int64)
            t0 = time.perf_counter()
            if mode == "train":
                for a in range(1, 1 + n_train, TRAIN_CHUNK):  # in chunks, as the training loop
                    sim.train_samples(images[a : min(a + TRAIN_CHUNK, 1 + n_train)], a)
                samples = n_train
            else:
                counts = [
                    sim.infer(images[a : a + batch], STREAM_INFER, first_index=a)
                    for a in range(0, n_infer, batch)
                ]
                samples = n_infer
            wall = time.perf_counter() - t0
            timings[profiled] = wall
            if not profiled:
                continue
            phases = {name: float(c) / tps / samples for name, c in zip(K.PHASES, sim._impl.profile)}
            if mode == "train":  # drawn before the kernel call (inside the wall time): timed apart
                probs = spike_probability(images[1 : 1 + n_train], enc).numpy()
                t1 = time.perf_counter()
                K.encode_batch(probs, TIME_STEPS, np.arange(n_train, dtype=np.int64))
                phases["encode"] = (time.perf_counter() - t1) / n_train
            else:  # after the inference calls: added to their wall time
                all_counts = torch.cat(counts, dim=1)
                t1 = time.perf_counter()
                assign_labels(all_counts, labels[:n_infer], 10)
                phases["label_assignment"] = (time.perf_counter() - t1) / n_infer
                wall += time.perf_counter() - t1
            phases["other"] = max(wall / samples - sum(phases.values()), 0.0)
            row[mode] = {
                "samples": samples,
                "seconds_per_sample": phases,
                "rate_profiled": samples / timings[True],
                "rate_unprofiled": samples / timings[False],
            }
    return row


PHASE_ORDER = (
    "encode",
    "input_current",
    "neuron_update",
    "inhibition",
    "learning",
    "normalization",
    "label_assignment",
    "other",
)


def print_table(rows: List[Dict[str, Any]]) -> None:
    short = {
        "encode": "encode",
        "input_current": "input",
        "neuron_update": "neuron",
        "inhibition": "inhib",
        "learning": "learn",
        "normalization": "norm",
        "label_assignment": "assign",
        "other": "other",
    }
    hdr = f"{'variant':<10} {'P':>3} {'mode':<5} " + " ".join(f"{short[p]:>7}" for p in PHASE_ORDER)
    hdr += f" {'total':>7} {'rate/s':>7} {'no prof':>7}  quant"
    print("microseconds per sample and network (P networks: per sample of the population / P)")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        for mode in ("train", "infer"):
            m = r[mode]
            ph = m["seconds_per_sample"]
            cells = " ".join(
                f"{ph[p] * 1e6 / r['population']:>7.1f}" if p in ph else f"{'-':>7}" for p in PHASE_ORDER
            )
            total = sum(ph.values()) * 1e6 / r["population"]
            print(
                f"{r['variant']:<10} {r['population']:>3} {mode:<5} {cells} {total:>7.1f} "
                f"{m['rate_profiled'] * r['population']:>7.0f} {m['rate_unprofiled'] * r['population']:>7.0f}"
                f"  {r['quant']}"
            )


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--variants", default="diehl_cook,tinysnn", help="comma list (default: diehl_cook,tinysnn)"
    )
    p.add_argument("--neurons", type=int, default=400, help="excitatory neurons (default 400)")
    p.add_argument("--populations", default="1,16", help="comma list of population sizes P (default: 1,16)")
    p.add_argument(
        "--quant",
        action="append",
        default=None,
        help="a spec as bench/throughput.py's --quant, or fp32; repeatable (default: fp32, ITQ "
        "weights=UQ0.8 truncate, PTQ weights=Q1.7,vmem=SQ8.0,vth=Q8.0 truncate)",
    )
    p.add_argument(
        "--train-samples", type=int, default=30, help="training samples at P = 1 (default 30; / P)"
    )
    p.add_argument(
        "--infer-samples", type=int, default=200, help="inference samples at P = 1 (default 200; / P)"
    )
    p.add_argument("--batch", type=int, default=100, help="inference batch (default 100)")
    p.add_argument("--data-root", default=None, help="MNIST root (tinysnn.data.load); else synthetic images")
    p.add_argument("--json", default=str(DEFAULT_JSON), help=f"write results here (default {DEFAULT_JSON})")
    args = p.parse_args(argv)
    quants = args.quant or list(DEFAULT_QUANTS)
    check_quant_args(quants)
    pops = [int(x) for x in args.populations.split(",") if x.strip()]
    if min(pops + [args.train_samples, args.infer_samples, args.batch, args.neurons]) < 1:
        raise SystemExit(
            "--populations, --train-samples, --infer-samples, --batch and --neurons must be >= 1"
        )
    revision, started, load_start = (
        git_revision(),
        _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        loadavg(),
    )
    images, labels, source = images_and_labels(
        args.data_root, 1 + max(args.train_samples, args.infer_samples)
    )
    tps = ticks_per_second()
    rows = []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        for q in quants:
            for pp in pops:
                n_train = max(2, args.train_samples // pp)
                n_infer = max(2, args.infer_samples // pp)
                print(
                    f"{variant} P={pp} {q}: {n_train} train, {n_infer} infer ...", file=sys.stderr, flush=True
                )
                rows.append(
                    profile_row(
                        variant,
                        q,
                        args.neurons,
                        pp,
                        n_train,
                        n_infer,
                        min(args.batch, n_infer),
                        images,
                        labels,
                        tps,
                    )
                )
    print_table(rows)
    print(
        f"\n{source} images, {TIME_STEPS} steps, 1 numba thread; rate/s: network-samples/s with the profile "
        "counters on; no prof: the same samples without them; revision "
        f"{revision}; load average {load_start} -> {loadavg()}"
    )
    payload = {
        "benchmark": "profile_kernels",
        "date": started,
        "git_revision": revision,
        "cpu_model": cpu_model(),
        "command": [sys.executable, *sys.argv] if argv is None else ["profile_kernels.py", *argv],
        "images": source,
        "time_steps": TIME_STEPS,
        "ticks_per_second": tps,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "rows": rows,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
