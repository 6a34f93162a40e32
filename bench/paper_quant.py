"""The paper-quant protocol of bench/accuracy.py (tinySNN Fig. 6 and 7): precision x scheme x
rounding x quantized parameters, for tinysnn at 400 neurons, with memory under both conventions.

Per dataset:

1. diehl_cook FP32 (the reference of the memory saving and of the accuracy claim) and tinysnn
   FP32 are trained once each.
2. Integer bits per parameter come from the tinysnn FP32 run's observed ranges (range analysis,
   docs/method.md §2). V_mem is stored as V_mem - v_rest (tinysnn.train.vmem_rows_about_rest), so its
   range is taken about rest; its lower bound is max(observed min, v_rest - w_inh): deeper
   inhibition saturates there, which keeps the neuron just as silent (our decision; the observed
   minimum under direct inhibition can be below -1000 mV and would eat every bit).
3. PTQ: the trained FP32 network is replicated into one population, one copy per configuration,
   quantized and tested (no retraining).
4. ITQ: one population of networks, one per configuration, trained from scratch with the same
   seed and the same sample stream. V_th gets at least the fractional bits that hold theta+
   (tinysnn.quant.vth_increment_problem); ITQ qW with truncation also runs with the plain
   normalization rule at ``--plain-bits`` precisions, to show what the sum-preserving rule does.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any, Dict, List, Optional, Tuple

import torch

from tinysnn import data as D
from tinysnn.cli import TrainChoice, build_configs
from tinysnn.config import EncodingConfig
from tinysnn.network import Population, build_population
from tinysnn.quant import (
    Normalization,
    QuantSpec,
    Rounding,
    Scheme,
    formats_for_total_bits,
    min_frac_bits_for_step,
)
from tinysnn.train import RunResult, RunSpec, TrainState, run

PRECISIONS = (16, 12, 10, 8, 6, 4)
ROUNDINGS = ("truncate", "nearest", "stochastic")
LABELS = ("qW", "qWN")


def replicate(pop: Population, k: int) -> Population:
    """A population of k copies of network 0 of ``pop`` (trained weights and thresholds)."""
    one = pop.select(0)
    out = copy.copy(one)
    out.sizes = one.sizes.repeat(k)
    out.weights = one.weights.repeat(k, 1, 1).contiguous()
    out.theta = one.theta.repeat(k, 1).contiguous()
    out.params = {n: v.repeat(k) for n, v in one.params.items()}
    out.t_update = one.t_update.repeat(k)
    out.quant = {n: v.repeat(k, 1) for n, v in one.quant.items()}
    out.seeds = one.seeds * k
    return out


def format_ranges(
    ranges: Dict[str, List[float]], v_floor: float, v_rest: float
) -> Dict[str, Tuple[float, float]]:
    """Ranges the formats must hold: V_mem about rest (V_mem - v_rest, as stored), floored at v_floor."""
    w_lo, w_hi = ranges["weights"]
    v_lo, v_hi = ranges["vmem"]
    t_lo, t_hi = ranges["vth"]
    vmem = (max(v_lo, v_floor) - v_rest, v_hi - v_rest)
    return {"weights": (0.0, w_hi), "vmem": vmem, "vth": (t_lo, t_hi)}


def configurations(
    ranges: Dict[str, Tuple[float, float]], precisions, roundings, labels, scheme: Scheme,
    theta_plus: float = 0.05, plain_bits=(),
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:  # fmt: skip
    """(valid configs with their QuantSpec, impossible ones with the reason).

    ITQ V_th formats keep the fractional bits that hold ``theta_plus``; ITQ qW truncation at the
    precisions ``plain_bits`` is also configured with the plain normalization rule.
    """
    ok, bad = [], []
    min_frac = {"vth": min_frac_bits_for_step(theta_plus)} if scheme is Scheme.ITQ else {}
    for bits in precisions:
        for label in labels:
            params = ["weights"] if label == "qW" else ["weights", "vmem", "vth"]
            try:
                fmts = formats_for_total_bits(int(bits), {p: ranges[p] for p in params}, min_frac)
            except ValueError as exc:
                bad.append({"bits": bits, "label": label, "scheme": scheme.value, "reason": str(exc)})
                continue
            for rnd in roundings:
                rules = [Normalization.SUM]
                if scheme is Scheme.ITQ and label == "qW" and rnd == "truncate" and bits in plain_bits:
                    rules.append(Normalization.PLAIN)
                for rule in rules:
                    spec = QuantSpec(rounding=Rounding(rnd), scheme=scheme, normalization=rule, **fmts)
                    name = rnd if rule is Normalization.SUM else f"{rnd} plain"
                    ok.append(
                        {"bits": bits, "label": label, "rounding": name, "scheme": scheme.value, "spec": spec}
                    )
    return ok, bad


def _train(ctx: Dict[str, Any], variant: str, specs: Optional[List[QuantSpec]], pop: Optional[Population],
           resume: Optional[TrainState] = None) -> Tuple[RunResult, Population]:  # fmt: skip
    from accuracy import choice_for  # bench/ sibling

    args = ctx["args"]
    choice = choice_for(args, TrainChoice.from_args(args), ctx["ds"], variant)
    nets, learn, seeds = build_configs(args, choice, ctx["train"].n_input)
    k = len(specs or [None])
    p = pop if pop is not None else build_population(nets * k, learn, seeds * k)
    spec = RunSpec(p, ctx["enc"], ctx["train"], ctx["test"], assign=ctx["assign"], epochs=args.epochs,
                   seed=args.seed, backend=args.backend, quant=specs, batch_size=args.batch_size,
                   progress=not args.no_progress, resume=resume)  # fmt: skip
    return run(spec), p


def run_paper_quant(args: argparse.Namespace, row_of, on_rows=None) -> List[Dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Run the protocol for every dataset in ``args.datasets``; returns table rows.

    ``on_rows(rows)``, if given, is called after every training run with the rows so far, so that
    a long run that is stopped leaves the phases it finished.
    """

    def done() -> None:
        if on_rows is not None:
            on_rows(rows)

    rows: List[Dict[str, Any]] = []
    for ds in args.datasets:
        splits = D.load(ds, args.data_root, download=args.download)
        train = splits.train.take(args.train_samples)
        test = splits.test.take(args.test_samples) if args.test_samples is not None else splits.test
        assign = splits.train.take(args.assign_samples) if args.assign_samples is not None else train
        enc = EncodingConfig(time_steps=args.time_steps, max_rate=args.max_rate)

        ctx = dict(args=args, ds=ds, train=train, test=test, assign=assign, enc=enc)

        print(f"== {ds}: diehl_cook FP32", flush=True)
        res, _ = _train(ctx, "diehl_cook", None, None)
        rows.append(dict(row_of(res), config="diehl_cook FP32"))
        done()
        print(f"== {ds}: tinysnn FP32", flush=True)
        res, fp32_pop = _train(ctx, "tinysnn", None, None)
        base = dict(row_of(res), config="tinysnn FP32")
        rows.append(base)
        done()
        w_inh = float(fp32_pop.params["w_inh"][0])
        ranges = format_ranges(base["ranges"], fp32_pop.exc.v_rest - w_inh, fp32_pop.exc.v_rest)
        for scheme in (Scheme.PTQ, Scheme.ITQ):
            ok, bad = configurations(ranges, args.precisions, args.roundings, LABELS, scheme,
                                     float(fp32_pop.params["theta_plus"][0]), args.plain_bits)  # fmt: skip
            for b in bad:
                rows.append({"dataset": ds, "config": f"tinysnn {b['label']} {b['bits']}b {scheme.value}",
                             "impossible": b["reason"]})  # fmt: skip
            if not ok:
                continue
            specs = [c["spec"] for c in ok]
            print(f"== {ds}: tinysnn {scheme.value.upper()} x {len(specs)} configurations", flush=True)
            if scheme is Scheme.PTQ:
                pop = replicate(fp32_pop, len(specs))
                trained = TrainState(next_sample=len(train) * args.epochs)  # the FP32 run's training
                res, _ = _train(ctx, "tinysnn", specs, pop, trained)
            else:
                res, _ = _train(ctx, "tinysnn", specs, None)
            for k, c in enumerate(ok):
                r = res.record(k)
                r["config"] = f"tinysnn {c['label']} {c['bits']}b {scheme.value} {c['rounding']}"
                r.update({"bits": c["bits"], "label": c["label"]})
                if scheme is Scheme.PTQ:  # training was the FP32 run's
                    r["train_samples_per_s"] = base["train_samples_per_s"]
                rows.append(r)
            done()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return rows


def print_quant_rows(rows: List[Dict[str, Any]]) -> None:
    print(f"{'dataset':<14} {'configuration':<40} {'acc all':>8} {'acc prop':>8} {'compact B':>10} "
          f"{'as-sim B':>10} {'Mnorm c':>8} {'saving c':>9} {'saving as':>9}")  # fmt: skip
    for r in rows:
        if "impossible" in r:
            print(f"{r['dataset']:<14} {r['config']:<40} impossible: {r['impossible'][:80]}")
            continue
        m = r["memory"]
        c, a = m["compact"], m["as_simulated"]
        print(
            f"{r['dataset']:<14} {r['config']:<40} {100 * r['accuracy']:>7.2f}% {100 * r['accuracy_proportion']:>7.2f}% "
            f"{c['bytes']:>10} {a['bytes']:>10} {c['m_norm']:>8.3f} {1 / c['m_norm']:>8.2f}x {1 / a['m_norm']:>8.2f}x"
        )
    print("saving = M(diehl_cook FP32, same N) / M(network); paper: 3.3x (8-bit qW), 3.32x (8-bit qWN)")
