"""Accuracy benchmark: train and test named configurations on the full datasets.

Protocols:

* ``single`` (default): one configuration given by the same options as ``tinysnn train``.
* ``paper-fp32``: diehl_cook, sl_stdp (APPROXIMATE) and tinysnn at ``--neurons`` (default 400)
  on MNIST and Fashion-MNIST, one pass over the training images (``--epochs`` for more);
  ``--population P`` trains P seeds of each variant in one run and adds mean +- sd per variant.
* ``paper-quant``: tinysnn at 400 neurons, precisions x {PTQ, ITQ} x roundings x {qW, qWN},
  each parameter's i.f split chosen on held-out training images (``--split-count``, ``--validation``),
  with memory under both conventions (see bench/paper_quant.py).

Prints a table and writes JSON (``--json``, default bench/out/accuracy-<protocol>.json) with the
accuracy under both voting schemes, training and inference samples/s, spikes and synaptic
operations per sample, wall time, the machine and the git revision.

Example::

    python bench/accuracy.py --data-root ../shared/datasets --dataset mnist --variant diehl_cook \\
        --neurons 100
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List

from tinysnn.cli import TrainChoice, add_train_arguments, machine_info, run_from_args
from tinysnn.config import Variant

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _choices import choice_for  # noqa: E402  (bench/ siblings)
from _common import cpu_model, git_revision  # noqa: E402
from paper_quant import print_quant_rows, run_paper_quant  # noqa: E402


def runs_for(args: argparse.Namespace) -> List[TrainChoice]:
    """What each run of the protocol trains (dataset, variant, constants) over the shared options."""
    given = TrainChoice.from_args(args)
    if args.protocol == "single":
        return [given]
    if args.protocol == "paper-fp32":
        return [
            choice_for(args, given, ds, variant)
            for ds in args.datasets
            for variant in [v.value for v in Variant]
        ]
    raise SystemExit(f"unknown protocol {args.protocol!r}: single, paper-fp32 or paper-quant")


def row_of(result: Any, k: int = 0) -> Dict[str, Any]:
    rec = result.record(k)
    rec["variant_label"] = rec["variant"] + (" (approx.)" if rec["variant"] == "sl_stdp" else "")
    return rec


def seed_summary(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Mean and sample standard deviation of the accuracy over seeds, per (dataset, variant)."""
    groups: Dict[Any, List[Dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["variant_label"]), []).append(r)
    out = []
    for (ds, label), rs in groups.items():
        out.append(
            {
                "dataset": ds,
                "variant_label": label,
                "seeds": [r["seed"] for r in rs],
                **{
                    f"{key}_mean": statistics.mean(r[key] for r in rs)
                    for key in ("accuracy", "accuracy_proportion")
                },
                **{
                    f"{key}_sd": statistics.stdev(r[key] for r in rs) if len(rs) > 1 else float("nan")
                    for key in ("accuracy", "accuracy_proportion")
                },
            }
        )
    return out


def print_summary(summary: List[Dict[str, Any]]) -> None:
    print(
        f"{'dataset':<14} {'variant':<20} {'seeds':>5} {'acc all (mean +- sd)':>22} {'acc prop (mean +- sd)':>22}"
    )
    for s in summary:
        print(
            f"{s['dataset']:<14} {s['variant_label']:<20} {len(s['seeds']):>5} "
            f"{100 * s['accuracy_mean']:>13.2f} +- {100 * s['accuracy_sd']:.2f}% "
            f"{100 * s['accuracy_proportion_mean']:>13.2f} +- {100 * s['accuracy_proportion_sd']:.2f}%"
        )


def print_rows(rows: List[Dict[str, Any]]) -> None:
    hdr = (
        f"{'dataset':<14} {'variant':<20} {'N':>5} {'seed':>4} {'train':>6} {'ep':>3} {'acc all':>8} {'acc prop':>8} "
        f"{'train/s':>8} {'infer/s':>8} {'spk/smp':>8} {'synops/smp':>11} {'wall s':>8}"
    )
    print(hdr)
    for r in rows:
        print(
            f"{r['dataset']:<14} {r['variant_label']:<20} {r['n_neurons']:>5} {r['seed']:>4} {r['train_samples']:>6} "
            f"{r['epochs']:>3} {100 * r['accuracy']:>7.2f}% {100 * r['accuracy_proportion']:>7.2f}% "
            f"{r['train_samples_per_s']:>8.1f} {r['infer_samples_per_s']:>8.1f} "
            f"{r['spikes_per_sample_test']:>8.1f} {r.get('synops_per_sample_test', float('nan')):>11.0f} "
            f"{r['wall_seconds']:>8.1f}"
        )
    if any(r["variant"] == "sl_stdp" for r in rows):
        print("sl_stdp is an APPROXIMATE baseline (our reading of SL-STDP, not checked against the paper)")


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(p)
    p.add_argument("--protocol", default="single", help="single, paper-fp32 or paper-quant")
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"], help="for paper-* protocols")
    p.add_argument(
        "--override",
        nargs="*",
        default=[],
        help="paper-* protocols: per-variant settings, optionally per dataset, e.g. "
        "fashion-mnist/tinysnn:norm_total=45,w_inh=240",
    )
    p.add_argument("--json", default=None, help="output JSON (default bench/out/accuracy-<protocol>.json)")
    p.add_argument(
        "--precisions", type=int, nargs="+", default=[16, 12, 10, 8, 6, 4], help="paper-quant bits"
    )
    p.add_argument(
        "--roundings", nargs="+", default=["truncate", "nearest", "stochastic"], help="paper-quant"
    )
    p.add_argument(
        "--schemes",
        nargs="+",
        default=["ptq", "itq"],
        choices=["ptq", "itq"],
        help="paper-quant: the quantization schemes to run (PTQ's split choice and grid reuse "
        "one FP32 training; each ITQ candidate trains a network)",
    )
    p.add_argument(
        "--split-count",
        type=int,
        default=3,
        choices=range(1, 10),
        metavar="N",
        help="paper-quant: i.f splits tried per parameter at each precision, chosen on the held-out "
        "images (--validation, default a sixth of the training set); qWN tries every "
        "combination (up to 2 x N x N), so ITQ trains that many networks per configuration; "
        "1: the split that holds the observed range, or the widest B allows",
    )
    p.add_argument(
        "--plain-bits",
        type=int,
        nargs="*",
        default=[8, 6],
        help="paper-quant: precisions at which ITQ qW truncation also runs with the plain normalization rule",
    )
    args = p.parse_args(argv)
    if args.protocol != "single" and args.neurons == [100]:
        args.neurons = [400]
    rows: List[Dict[str, Any]] = []
    started = _dt.datetime.now().isoformat(timespec="seconds")
    revision = git_revision()  # of the code that runs, before anything else changes
    out = Path(args.json or f"bench/out/accuracy-{args.protocol}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(so_far: List[Dict[str, Any]], partial: bool) -> None:
        payload = {
            "benchmark": "accuracy",
            "protocol": args.protocol,
            "command": " ".join([Path(sys.argv[0]).name] + (list(argv) if argv else sys.argv[1:])),
            "started": started,
            "finished": _dt.datetime.now().isoformat(timespec="seconds"),
            "partial": partial,  # True while a long run is still going (or was stopped)
            "git_revision": revision,
            "machine": dict(machine_info(), cpu_model=cpu_model()),
            "rows": so_far,
            "summary": seed_summary(so_far) if args.protocol != "paper-quant" else [],
        }
        out.write_text(json.dumps(payload, indent=1, default=str))

    if args.protocol == "paper-quant":
        rows = run_paper_quant(args, row_of, on_rows=lambda so_far: write(so_far, partial=True))
        print()
        print_quant_rows(rows)
    else:
        for choice in runs_for(args):
            print(f"== {choice.dataset} {choice.variant} N={args.neurons}", flush=True)
            result, _ = run_from_args(args, choice)
            new = [row_of(result, k) for k in range(len(result.networks))]
            rows.extend(new)
            print_rows(new)
        print()
        print_rows(rows)
        summary = seed_summary(rows)
        if any(len(s["seeds"]) > 1 for s in summary):
            print()
            print_summary(summary)
    write(rows, partial=False)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
