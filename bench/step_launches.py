"""Work the host issues per simulated time step, eager against compiled (issue 19).

    python bench/step_launches.py                       # CPU: operator calls per step
    python bench/step_launches.py --device cuda         # CUDA: kernel and graph launches per step

The torch backend's speed on a GPU is bounded by what the host launches every step, not by the
arithmetic (a 400-neuron network is small). This counts it with torch.profiler over one training
sample and one inference batch, after a warmup that compiles: on CUDA the runtime's launch calls
(``cudaLaunchKernel`` and kin, ``cudaGraphLaunch``), on CPU the top-level operator calls (the
inductor's fused C++ kernels count once per call). A count, not a time: it does not depend on
what else the machine runs. Prints a table and writes JSON (default bench/out/step_launches.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_JSON = REPO / "bench" / "out" / "step_launches.json"
LAUNCH_CALLS = (
    "cudaLaunchKernel",
    "cuLaunchKernel",
    "cudaLaunchKernelExC",
    "cudaGraphLaunch",
    "cudaMemcpyAsync",
    "cudaMemsetAsync",
)


def _count(prof: Any, device: str) -> int:
    events = prof.events()
    if device == "cuda":
        return sum(1 for e in events if e.name in LAUNCH_CALLS)
    return sum(1 for e in events if e.cpu_parent is None and not e.name.startswith("ProfilerStep"))


def measure(
    backend: str,
    device: str,
    variant: str,
    neurons: int,
    population: int,
    quant: Optional[str],
    time_steps: int,
    batch: int,
) -> Dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tinysnn.config import EncodingConfig, NetworkConfig
    from tinysnn.network import build_population
    from tinysnn.quant import parse_quant_arg
    from tinysnn.sim import Simulator
    from tinysnn.train import apply_quant_rows, quantize_parameters

    pop = build_population(
        NetworkConfig(variant=variant, n_neurons=neurons), seeds=list(range(population)), device=device
    )
    if quant:
        apply_quant_rows(pop, [parse_quant_arg(quant)] * population, training=True)
        quantize_parameters(pop)
    enc = EncodingConfig(time_steps=time_steps)
    sim = Simulator(pop, enc, seed=0, backend=backend)
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(batch + 2, 784, generator=g) * 255).to(torch.uint8).to(device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for i in range(2):  # warmup: compilation, caches, CUDA start
        sim.train_sample(images[i], i)
    sim.infer(images[:batch], 2)
    sim.infer(images[: batch // 2], 2)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        sim.train_sample(images[2], 2)
        sync()
    train = _count(prof, device)
    with profile(activities=activities) as prof:
        sim.infer(images[:batch], 2)
        sync()
    infer = _count(prof, device)
    return {
        "backend": sim.backend,
        "device": device,
        "variant": variant,
        "neurons": neurons,
        "population": population,
        "quant": quant or "fp32",
        "time_steps": time_steps,
        "infer_batch": batch,
        "counted": "CUDA launch calls" if device == "cuda" else "top-level operator calls",
        "train_per_step": train / time_steps,
        "infer_per_step": infer / time_steps,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--backends", default="torch,torch-compile", help="comma list (default torch,torch-compile)"
    )
    p.add_argument("--variant", default="tinysnn")
    p.add_argument("--neurons", type=int, default=400)
    p.add_argument("--population", type=int, default=16)
    p.add_argument(
        "--quant", default=None, help="an ITQ spec as bench/throughput.py's --quant (default FP32)"
    )
    p.add_argument("--time-steps", type=int, default=250)
    p.add_argument("--batch", type=int, default=32, help="inference batch (default 32)")
    p.add_argument("--json", default=str(DEFAULT_JSON))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("step_launches: --device cuda needs a CUDA GPU; torch sees none", file=sys.stderr)
        return 2
    rows: List[Dict[str, Any]] = []
    for backend in args.backends.split(","):
        rows.append(
            measure(
                backend,
                args.device,
                args.variant,
                args.neurons,
                args.population,
                args.quant,
                args.time_steps,
                args.batch,
            )
        )
    print(f"{'backend':14} {'device':6} {'counted':26} {'train/step':>10} {'infer/step':>10}")
    for r in rows:
        print(
            f"{r['backend']:14} {r['device']:6} {r['counted']:26} {r['train_per_step']:10.1f} "
            f"{r['infer_per_step']:10.1f}"
        )
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    out = {
        "revision": revision.stdout.strip(),
        "machine": platform.node(),
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
