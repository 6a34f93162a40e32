"""BindsNET reference timing for the throughput benchmark.

Run by a BindsNET venv's python (a subprocess of bench/throughput.py); it calls bindsnet
only as a library and imports only bindsnet, torch, numpy and the standard library.

The loop follows BindsNET's examples/mnist/eth_mnist.py: DiehlAndCook2015 on CPU, batch
1, Poisson input with a full pixel at 128 Hz (``intensity=128``), then per sample
``network.run(inputs={"X": spikes}, time=250)`` and
``network.reset_state_variables()``; learning on for training, ``train(False)`` for
inference. The example's monitors (spikes of every layer, voltages of Ae and Ai) are
attached by default (``--monitors example``): they are part of what that loop costs.

Images are synthetic MNIST-like 28x28 pictures (about 19 % of the pixels on, intensity
U[0.5, 1]), deterministic with ``--seed``. Per-sample times include Poisson encoding,
which the example's data loader also does inside the loop; warmup samples are excluded.
Prints one line of JSON and writes it to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import bindsnet
import numpy as np
import torch
from bindsnet.encoding import poisson
from bindsnet.models import DiehlAndCook2015
from bindsnet.network.monitors import Monitor

INTENSITY = 128.0  # Hz for a full pixel, as eth_mnist.py's ``intensity``.
ON_FRACTION = 0.19


def make_images(n: int, seed: int) -> torch.Tensor:
    """``n`` synthetic 1x28x28 images in [0, 1]: ~19 % of pixels on at U[0.5, 1]."""
    rng = np.random.default_rng(seed)
    on = rng.random((n, 1, 28, 28)) < ON_FRACTION
    val = rng.uniform(0.5, 1.0, size=(n, 1, 28, 28))
    return torch.from_numpy(np.where(on, val, 0.0).astype(np.float32))


def build(n_neurons: int, dt: float, time_ms: int, monitors: str) -> DiehlAndCook2015:
    net = DiehlAndCook2015(
        n_inpt=784,
        n_neurons=n_neurons,
        exc=22.5,
        inh=120.0,
        dt=dt,
        norm=78.4,
        theta_plus=0.05,
        inpt_shape=(1, 28, 28),
    )
    steps = int(time_ms / dt)
    if monitors == "example":
        for name in ("Ae", "Ai"):
            net.add_monitor(Monitor(net.layers[name], ["v"], time=steps), name=f"{name}_voltages")
    if monitors in ("example", "spikes"):
        for name in set(net.layers):
            net.add_monitor(Monitor(net.layers[name], ["s"], time=steps), name=f"{name}_spikes")
    return net


def run_phase(
    net: DiehlAndCook2015, images: torch.Tensor, time_ms: int, dt: float, warmup: int
) -> dict[str, float]:
    """Present every image once; return timing stats over the non-warmup samples."""
    steps = int(time_ms / dt)
    times: list[float] = []
    cpu = 0.0
    spikes_out = 0.0
    for i in range(images.shape[0]):
        c0, t0 = time.process_time(), time.perf_counter()
        enc = poisson(datum=images[i] * INTENSITY, time=time_ms, dt=dt)
        net.run(inputs={"X": enc.view(steps, 1, 1, 28, 28)}, time=time_ms)
        t1, c1 = time.perf_counter(), time.process_time()
        if "Ae_spikes" in net.monitors:
            spikes_out += float(net.monitors["Ae_spikes"].get("s").sum())
        net.reset_state_variables()
        if i >= warmup:
            times.append(t1 - t0)
            cpu += c1 - c0
    if not times:
        return {"samples": 0}
    med = statistics.median(times)
    return {
        "samples": len(times),
        "median_s_per_sample": med,
        "median_rate": 1.0 / med,
        "total_s": sum(times),
        "total_rate": len(times) / sum(times),
        "cpu_s": cpu,  # process CPU time; >> total_s * threads hints at contention
        "loadavg_1min_end": os.getloadavg()[0],
        "mean_exc_spikes_per_sample": spikes_out / max(images.shape[0], 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--neurons", type=int, default=100)
    p.add_argument("--train-samples", type=int, default=20)
    p.add_argument("--infer-samples", type=int, default=20)
    p.add_argument("--time", type=int, default=250)
    p.add_argument("--dt", type=float, default=1.0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--monitors", choices=("example", "spikes", "none"), default="example")
    p.add_argument("--json", default=None, help="write the result here as well")
    a = p.parse_args(argv)

    load0 = os.getloadavg()[0]
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    net = build(a.neurons, a.dt, a.time, a.monitors)
    w = a.warmup
    train_imgs = make_images(a.train_samples + w, a.seed)
    infer_imgs = make_images(a.infer_samples + w, a.seed + 1)

    net.train(True)
    train = run_phase(net, train_imgs, a.time, a.dt, w)
    net.train(False)
    infer = run_phase(net, infer_imgs, a.time, a.dt, w)

    result = {
        "simulator": "bindsnet",
        "bindsnet_version": getattr(bindsnet, "__version__", None) or _dist_version("bindsnet"),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "loadavg_1min_start": load0,
        "threads": torch.get_num_threads(),
        "neurons": a.neurons,
        "time_ms": a.time,
        "dt": a.dt,
        "warmup": w,
        "seed": a.seed,
        "monitors": a.monitors,
        "max_rate_hz": INTENSITY,
        "batch_size": 1,
        "train": train,
        "infer": infer,
    }
    line = json.dumps(result, sort_keys=True)
    if a.json:
        with open(a.json, "w") as f:
            f.write(line + "\n")
    sys.stdout.write(line + "\n")
    return 0


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - version is informational only
        return None


if __name__ == "__main__":
    sys.exit(main())
