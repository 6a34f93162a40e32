"""CUDA (the torch backend, eager or compiled) against the numba CPU kernels on the same input trains: spikes and weights.

Trains P networks of N neurons on ``--samples`` random 784-pixel images with both backends, each
sample's Poisson train drawn once and given to both, and reports per population size: samples
whose spike counts differ (the first one), the largest weight and threshold difference after
training, and whether inference on shared trains gives the same counts. Float32 sums of weights
(the input current, column sums) may be accumulated in another order on a GPU, which can move a
value by one unit in the last place and, rarely, a spike; the report says how often::

    python bench/cuda_equivalence.py --populations 1,16 --json OUT/cuda_equivalence.json
    python bench/cuda_equivalence.py --backend torch-compile --populations 16 --samples 30

Without CUDA it compares torch on the CPU instead (``--device cpu``), which checks the script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

import torch

from tinysnn.config import BACKENDS, EncodingConfig, NetworkConfig
from tinysnn.encoding import make_generator, poisson
from tinysnn.network import build_population
from tinysnn.sim import Simulator


def compare(
    variant: str,
    neurons: int,
    population: int,
    samples: int,
    time_steps: int,
    device: str,
    backend: str = "torch",
) -> Dict[str, Any]:
    """Train the same population on the numba backend and on ``backend`` on ``device``; what differs."""
    nets = [NetworkConfig(variant=variant, n_neurons=neurons, n_input=784, one_spike=True)] * population
    seeds = list(range(1, population + 1))
    cpu = build_population(nets, seeds=seeds)
    other = build_population(nets, seeds=seeds, device=device)
    enc = EncodingConfig(time_steps=time_steps)
    reference = Simulator(cpu, enc, backend="numba")
    tested = Simulator(other, enc, backend=backend)
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(samples, 784, generator=g) * 600).clamp(max=255).to(torch.uint8)
    trains_g = make_generator(0)
    differing: List[int] = []
    spikes = 0
    for k in range(samples):
        train = poisson(images[k], enc, trains_g)
        a = reference.train_sample(images[k], k, train=train)
        b = tested.train_sample(images[k].to(device), k, train=train.to(device)).cpu()
        spikes += int(a.sum())
        if not torch.equal(a, b):
            differing.append(k)
    trains = poisson(images[:20], enc, trains_g)
    infer_same = torch.equal(
        reference.infer(images[:20], 2, trains=trains),
        tested.infer(images[:20].to(device), 2, trains=trains.to(device)).cpu(),
    )
    return {
        "variant": variant,
        "neurons": neurons,
        "population": population,
        "samples": samples,
        "device": device,
        "backend": backend,
        "spikes": spikes,
        "samples_with_different_spikes": len(differing),
        "first_different_sample": differing[0] if differing else None,
        "max_weight_difference": float((cpu.weights - other.weights.cpu()).abs().max()),
        "max_theta_difference": float((cpu.theta - other.theta.cpu()).abs().max()),
        "inference_identical": infer_same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--populations", default="1,16", help="comma list of P (default 1,16)")
    ap.add_argument("--neurons", type=int, default=400)
    ap.add_argument("--variant", default="tinysnn")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--time-steps", type=int, default=250)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default="torch", choices=[b for b in BACKENDS if b.startswith("torch")])
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = [
        compare(a.variant, a.neurons, int(p), a.samples, a.time_steps, a.device, a.backend)
        for p in a.populations.split(",")
    ]
    print(
        f"{'device':<6} {'backend':<13} {'P':>4} {'samples':>7} {'spikes':>8} {'differ':>6} {'first':>5} "
        f"{'max |dw|':>10} {'max |dtheta|':>12} {'infer same':>10}"
    )
    for r in rows:
        first = "-" if r["first_different_sample"] is None else r["first_different_sample"]
        print(
            f"{r['device']:<6} {r['backend']:<13} {r['population']:>4} {r['samples']:>7} {r['spikes']:>8} "
            f"{r['samples_with_different_spikes']:>6} {first:>5} {r['max_weight_difference']:>10.3g} "
            f"{r['max_theta_difference']:>12.3g} {str(r['inference_identical']):>10}"
        )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
