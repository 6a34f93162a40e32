"""Constant sweep as one population run: every grid point is one network of the population.

Chooses unstated constants (w_inh, T_u, N_th, eta_post, normalization total, ...) by accuracy on
a validation split carved from the END of the training set (never the test set).

Example (the tinySNN sweep of issue 4)::

    python bench/sweep.py --data-root ../shared/datasets --dataset mnist --variant tinysnn \\
        --neurons 400 --train-samples 20000 --validation 10000 \\
        --grid w_inh=60,120,200 eta_post=0.001,0.002,0.004 t_update=25 n_th=1,2

``--quant`` trains every grid point under each given quantization (``tinysnn train``'s text, with
``scheme=`` and ``rounding=`` inside it; ``fp32`` for none), so constants can be chosen for an
8-bit ITQ network beside its FP32 twin in one run::

    python bench/sweep.py ... --grid norm_total=45,90 \\
        --quant fp32 weights=UQ0.8,scheme=itq,rounding=truncate
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

import torch

from tinysnn import data as D
from tinysnn.config import EncodingConfig, LearningConfig, NetworkConfig, Variant
from tinysnn.network import build_population
from tinysnn.quant import FP32, parse_quant_arg, quantized_or_none
from tinysnn.train import RunSpec, run

NET_KEYS = {"w_inh", "w_inh_exc", "norm_total", "theta_plus", "one_spike"}
LEARN_KEYS = {"eta_post", "t_update", "n_th", "nu_pre", "nu_post", "eta_p", "eta_d", "x_th"}


def parse_grid(items: List[str]) -> Dict[str, List[float]]:
    grid: Dict[str, List[float]] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"grid item {item!r}: expected key=v1,v2,...")
        key, values = item.split("=", 1)
        if key not in NET_KEYS | LEARN_KEYS:
            raise SystemExit(f"unknown grid key {key!r}: valid keys are {sorted(NET_KEYS | LEARN_KEYS)}")
        grid[key] = [float(v) for v in values.split(",") if v]
    return grid


def _quant_label(q: Any) -> str:
    """``itq truncate weights=UQ0.8``: the scheme, the rounding and the quantized parameters."""
    parts = [item for item in q.to_text().split(",") if "=" in item and not item.endswith("=" + FP32)]
    params = [item for item in parts if not item.startswith(("rounding=", "scheme="))]
    return " ".join([q.scheme.value, q.rounding.value] + params)


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--variant", default="tinysnn")
    p.add_argument("--neurons", type=int, default=400)
    p.add_argument("--train-samples", type=int, default=20000)
    p.add_argument("--validation", type=int, default=10000)
    p.add_argument("--assign-samples", type=int, default=10000)
    p.add_argument("--max-rate", type=float, default=128.0)
    p.add_argument("--time-steps", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", nargs="+", default=["w_inh=120"], help="key=v1,v2,... (cartesian product)")
    p.add_argument(
        "--quant",
        nargs="+",
        default=[FP32],
        help="quantizations to cross with the grid, e.g. fp32 weights=UQ0.8,scheme=itq,rounding=truncate",
    )
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    try:
        specs = [parse_quant_arg(text) for text in args.quant]
    except ValueError as e:
        raise SystemExit(f"--quant: {e}") from None
    from _common import cpu_model, git_revision  # bench/ sibling

    revision = git_revision()
    started = _dt.datetime.now().isoformat(timespec="seconds")
    grid = parse_grid(args.grid)
    keys = list(grid)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    quants = [quantized_or_none(q) for q in specs]
    labels = [FP32 if q is None else _quant_label(q) for q in quants]
    n_points = len(points)
    if args.quant != [FP32]:
        points = [dict(pt, quant=label) for label in labels for pt in points]
    point_quants = [q for q in quants for _ in range(n_points)]
    splits = D.load(args.dataset, args.data_root, validation=args.validation)
    train = splits.train.take(min(args.train_samples, len(splits.train)))
    assert splits.validation is not None
    assign = splits.train.take(min(args.assign_samples, len(splits.train)))
    n_in = train.n_input
    base_net = NetworkConfig(variant=Variant.parse(args.variant), n_neurons=args.neurons, n_input=n_in)
    nets, learns = [], []
    for pt in points:
        net_kw = {k: (bool(v) if k == "one_spike" else v) for k, v in pt.items() if k in NET_KEYS}
        nets.append(replace(base_net, **net_kw))
        lk = {k: (int(v) if k == "t_update" else v) for k, v in pt.items() if k in LEARN_KEYS}
        learns.append(LearningConfig(**lk))
    torch.set_grad_enabled(False)
    pop = build_population(nets, learns, [args.seed] * len(points))
    enc = EncodingConfig(time_steps=args.time_steps, max_rate=args.max_rate)
    print(
        f"sweep: {len(points)} networks of {args.variant} N={args.neurons} on {args.dataset}, "
        f"{len(train)} training samples, validation {len(splits.validation)}; "
        f"quantization: {', '.join(labels)}",
        flush=True,
    )
    quant = point_quants if any(q is not None for q in point_quants) else None
    res = run(
        RunSpec(
            pop,
            enc,
            train,
            splits.validation,
            assign=assign,
            seed=args.seed,
            quant=quant,
            progress=sys.stderr.isatty(),
        )
    )
    rows = []
    for pt, net in zip(points, res.networks):
        rows.append(
            dict(
                pt,
                accuracy=net.accuracy,
                accuracy_proportion=net.accuracy_proportion,
                spikes_per_sample=net.spikes_per_sample_test,
            )
        )
    rows.sort(key=lambda r: -r["accuracy"])
    qcol = args.quant != [FP32]
    head = (f"{'quant':<34} " if qcol else "") + " ".join(f"{k:>10}" for k in keys)
    print(head + f" {'val acc':>8} {'val prop':>8} {'spk/smp':>8}")
    for r in rows:
        print(
            (f"{r['quant']:<34} " if qcol else "")
            + " ".join(f"{r[k]:>10g}" for k in keys)
            + f" {100 * r['accuracy']:>7.2f}% {100 * r['accuracy_proportion']:>7.2f}% {r['spikes_per_sample']:>8.1f}"
        )
    print(
        f"population of {len(points)}: train {res.train_samples_per_s:.1f} samples/s "
        f"({res.aggregate_train_samples_per_s:.0f} network-samples/s), wall {res.wall_seconds:.0f} s"
    )
    out = Path(args.json or f"bench/out/sweep-{args.dataset}-{args.variant}-{args.neurons}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "sweep",
                "args": vars(args),
                "git_revision": revision,
                "started": started,
                "finished": _dt.datetime.now().isoformat(timespec="seconds"),
                "cpu_model": cpu_model(),
                "train_samples_per_s": res.train_samples_per_s,
                "wall_seconds": res.wall_seconds,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
