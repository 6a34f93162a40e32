"""Energy benchmark: the tinySNN paper's Fig. 8 comparison with every meter this machine has.

diehl_cook FP32, tinysnn FP32 and tinysnn 8-bit (PTQ, weights UQ1.7, truncation), training and
inference energy per sample, on MNIST and Fashion-MNIST, measured by each available meter
(nvml, jetson, rapl; the time x power estimate where none can be read, labelled an estimate)
plus the op-count model. Prints the ratios next to the paper's (training 1.9x FP32 / 2.7x 8-bit,
inference 1.9x / 2.9x; the paper measures simulation time x operational power on GPUs).

Example::

    python bench/energy.py --data-root ../shared/datasets --neurons 400 --train-samples 5000
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import torch

from tinysnn import data as D
from tinysnn.config import EncodingConfig, NetworkConfig
from tinysnn.energy import EnergyMeterError, MeterOptions, make_meter
from tinysnn.network import build_population, resolve_device
from tinysnn.quant import parse_quant_arg
from tinysnn.train import RunSpec, run

PAPER = {"train_fp32": 1.9, "train_8bit": 2.7, "infer_fp32": 1.9, "infer_8bit": 2.9}
CONFIGS = [
    ("diehl_cook FP32", "diehl_cook", None),
    ("tinysnn FP32", "tinysnn", None),
    ("tinysnn 8-bit", "tinysnn", "weights=Q1.7"),
]


def available_meters(device: torch.device) -> List[str]:
    """Names of the meters that can be read here, 'estimate' when none can."""
    out = []
    for name in ("nvml", "jetson", "rapl"):
        if name == "nvml" and device.type != "cuda":
            continue
        try:
            make_meter(name, MeterOptions(idle_seconds=0)).close()
            out.append(name)
        except EnergyMeterError:
            pass
    return out or ["estimate"]


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None)
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    p.add_argument("--neurons", type=int, default=400)
    p.add_argument("--train-samples", type=int, default=5000)
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--idle-seconds", type=float, default=2.0)
    p.add_argument("--estimate-watts", type=float, default=15.0)
    p.add_argument("--json", default="bench/out/energy.json")
    args = p.parse_args(argv)
    from _common import cpu_model, git_revision  # bench/ sibling

    revision = git_revision()
    device = resolve_device(args.device)
    meters = available_meters(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    torch.set_grad_enabled(False)
    rows: List[Dict[str, Any]] = []
    for ds in args.datasets:
        s = D.load(ds, args.data_root)
        train, test = s.train.take(args.train_samples), s.test.take(args.test_samples)
        for label, variant, quant in CONFIGS:
            for meter_name in meters:
                spec = f"estimate:{args.estimate_watts}" if meter_name == "estimate" else meter_name
                meter = make_meter(spec, MeterOptions(idle_seconds=args.idle_seconds, sync=sync))
                net = NetworkConfig(variant=variant, n_neurons=args.neurons, n_input=train.n_input)
                pop = build_population(net, seeds=0, device=device)
                q = [parse_quant_arg(quant, scheme="ptq")] if quant else None
                print(f"== {ds} {label} [{meter_name}]", flush=True)
                try:
                    res = run(
                        RunSpec(
                            pop,
                            EncodingConfig(),
                            train,
                            test,
                            quant=q,
                            meter=meter,
                            progress=False,
                            assign=train,
                        )
                    )
                finally:
                    meter.close()
                r, ex = res.record(0), res.extra
                rows.append(
                    {
                        "dataset": ds,
                        "config": label,
                        "meter": ex["energy_meter"],
                        "is_estimate": ex["energy_is_estimate"],
                        "idle_power_w": ex["idle_power_w"],
                        "train_j_per_sample": ex["energy_train_joules_per_sample"],
                        "infer_j_per_sample": ex["energy_infer_joules_per_sample"],
                        "op_train_j_per_sample": r["op_energy_train_j_per_sample"],
                        "op_infer_j_per_sample": r["op_energy_infer_j_per_sample"],
                        "train_samples_per_s": r["train_samples_per_s"],
                        "infer_samples_per_s": r["infer_samples_per_s"],
                        "accuracy": r["accuracy"],
                    }
                )
    print_table(rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "energy",
                "args": vars(args),
                "git_revision": revision,
                "date": _dt.datetime.now().isoformat(timespec="seconds"),
                "cpu_model": cpu_model(),
                "meters": meters,
                "paper_ratios": PAPER,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")
    return 0


def print_table(rows: List[Dict[str, Any]]) -> None:
    print(
        f"{'dataset':<14} {'config':<16} {'meter':<10} {'train J/smp':>12} {'infer J/smp':>12} "
        f"{'op train J':>11} {'op infer J':>11} {'acc':>7}"
    )
    for r in rows:
        tag = r["meter"] + ("*" if r["is_estimate"] else "")
        print(
            f"{r['dataset']:<14} {r['config']:<16} {tag:<10} {r['train_j_per_sample']:>12.4g} "
            f"{r['infer_j_per_sample']:>12.4g} {r['op_train_j_per_sample']:>11.3g} "
            f"{r['op_infer_j_per_sample']:>11.3g} {100 * r['accuracy']:>6.2f}%"
        )
    print("* estimate: wall time x a stated power, not a measurement")
    print(
        f"\n{'dataset':<14} {'meter':<10} {'ratio (diehl_cook / x)':<26} {'ours':>7} {'op-count':>9} {'paper':>6}"
    )
    for ds in sorted({r["dataset"] for r in rows}):
        for meter in sorted({r["meter"] for r in rows}):
            sel = {r["config"]: r for r in rows if r["dataset"] == ds and r["meter"] == meter}
            if len(sel) < 3:
                continue
            dc = sel["diehl_cook FP32"]
            for phase in ("train", "infer"):
                for cfg, key in (("tinysnn FP32", "fp32"), ("tinysnn 8-bit", "8bit")):
                    ours = dc[f"{phase}_j_per_sample"] / sel[cfg][f"{phase}_j_per_sample"]
                    op = dc[f"op_{phase}_j_per_sample"] / sel[cfg][f"op_{phase}_j_per_sample"]
                    print(
                        f"{ds:<14} {meter:<10} {phase + ' vs ' + cfg:<26} {ours:>6.2f}x {op:>8.2f}x "
                        f"{PAPER[phase + '_' + key]:>5.1f}x"
                    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
