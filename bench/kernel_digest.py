"""Bit-for-bit identity of the numba kernels across revisions: a digest of every output array.

Trains and runs a fixed set of configurations (every variant; FP32, PTQ qWN under each rounding,
ITQ qW and qWN; P = 1 and a population of two with different sizes; with and without the
one-spike rule; the normalization rules) on synthetic MNIST-like images, and hashes what the
kernels produce: training and inference spike counts, statistics, the learned weights and
thresholds, and the V_mem range. Training runs in chunks of samples where the simulator takes
them (``Simulator.train_samples``), one sample at a time before it did; the digest is the same. Run it at two revisions and compare::

    python bench/kernel_digest.py --json /tmp/before.json            # at the old revision
    python bench/kernel_digest.py --compare /tmp/before.json         # at the new one

``--compare`` prints each configuration whose digest differs and exits 1 if any does. A kernel
change that claims the same numbers must leave every digest as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "out" / "kernel_digest.json"
QUANTS = (
    "fp32",
    "weights=Q1.7,vmem=SQ8.0,vth=Q8.0,rounding=truncate",
    "weights=Q1.7,vmem=SQ8.0,vth=Q8.0,rounding=nearest",
    "weights=Q1.7,vmem=SQ8.0,vth=Q8.0,rounding=stochastic",
    "weights=UQ0.8,rounding=truncate,scheme=itq",
    "weights=UQ0.8,rounding=nearest,scheme=itq,norm=plain",
    "weights=UQ0.8,rounding=truncate,scheme=itq,norm=apportion",
    "weights=UQ0.8,vmem=SQ8.0,vth=Q7.1,rounding=stochastic,scheme=itq",
    "weights=UQ0.10,vmem=SQ8.2,vth=Q7.5,rounding=nearest,scheme=itq,norm=settled",
)
VARIANTS = ("diehl_cook", "sl_stdp", "tinysnn")
CHUNK = 7  # training samples per Simulator.train_samples call
# (neurons of each network, one-spike rule)
SHAPES = (((60,), False), ((60, 40), True))


def synthetic_images(n: int, seed: int):  # type: ignore[no-untyped-def]  # numpy is imported late
    """``n`` (n, 784) uint8 images: ~19 % of the pixels on at U[0.5, 1] (as bench/throughput.py)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    on = rng.random((n, 784)) < 0.19
    return np.round(np.where(on, rng.uniform(0.5, 1.0, (n, 784)), 0.0) * 255.0).astype(np.uint8)


def digest_of(tensors: List[Any]) -> str:
    """The first 16 hex digits of the SHA-256 of the tensors' bytes, in order."""
    h = hashlib.sha256()
    for x in tensors:
        h.update(x.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_config(
    variant: str, quant: str, sizes: Tuple[int, ...], one_spike: bool, n_train: int, n_infer: int
) -> str:
    import torch

    from tinysnn.config import EncodingConfig, NetworkConfig, Variant
    from tinysnn.network import build_population
    from tinysnn.quant import parse_quant_arg, quantized_or_none
    from tinysnn.sim import Simulator
    from tinysnn.train import apply_quant_rows, quantize_parameters

    nets = [NetworkConfig(variant=Variant(variant), n_neurons=n, one_spike=one_spike) for n in sizes]
    pop = build_population(nets, seeds=list(range(len(sizes))))
    qspec = quantized_or_none(parse_quant_arg(quant))
    P = len(sizes)
    if qspec is not None:
        apply_quant_rows(pop, [qspec] * P, training=True)
        quantize_parameters(pop)
    enc = EncodingConfig(time_steps=250, dt=1.0, max_rate=128.0)
    train = torch.from_numpy(synthetic_images(n_train, 0))
    infer = torch.from_numpy(synthetic_images(n_infer, 1))
    sim = Simulator(pop, enc, seed=3, backend="numba")
    out: List[Any] = []
    if hasattr(sim, "train_samples"):  # in chunks of CHUNK, digested sample by sample
        for a in range(0, n_train, CHUNK):
            counts = sim.train_samples(train[a : a + CHUNK], a)
            stats = sim.last_stats
            for b in range(counts.shape[1]):
                out += [counts[:, b, :], stats[:, b : b + 1, :]]
    else:  # revisions before Simulator.train_samples
        for i in range(n_train):
            out += [sim.train_sample(train[i], i), sim.last_stats]
    out += [pop.weights, pop.theta, sim.vmem_range]
    if qspec is not None:
        apply_quant_rows(pop, [qspec] * P, training=False)
        quantize_parameters(pop)
        sim = Simulator(pop, enc, seed=3, backend="numba")
    out += [sim.infer(infer, stream=2, first_index=0), sim.last_stats]
    return digest_of(out)


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--train-samples", type=int, default=40, help="training samples per configuration (default 40)"
    )
    p.add_argument(
        "--infer-samples", type=int, default=60, help="inference samples per configuration (default 60)"
    )
    p.add_argument(
        "--json", default=str(DEFAULT_JSON), help=f"write the digests here (default {DEFAULT_JSON})"
    )
    p.add_argument("--compare", default=None, help="a JSON written at another revision: print what differs")
    args = p.parse_args(argv)
    digests: Dict[str, str] = {}
    for variant in VARIANTS:
        for quant in QUANTS:
            for sizes, one_spike in SHAPES:
                name = f"{variant} {quant} sizes={','.join(map(str, sizes))} one_spike={one_spike}"
                digests[name] = run_config(
                    variant, quant, sizes, one_spike, args.train_samples, args.infer_samples
                )
                print(f"{digests[name]}  {name}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"digests": digests}, indent=1) + "\n")
    print(f"wrote {args.json}")
    if args.compare is None:
        return 0
    before = json.loads(Path(args.compare).read_text())["digests"]
    differ = [name for name in digests if before.get(name) != digests[name]]
    missing = [name for name in before if name not in digests]
    for name in differ:
        print(f"DIFFERS: {name}")
    for name in missing:
        print(f"NOT RUN HERE: {name}")
    print(f"{len(digests) - len(differ)} of {len(digests)} configurations identical to {args.compare}")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
