"""The paper-quant protocol of bench/accuracy.py (tinySNN Fig. 6 and 7): precision x scheme x
rounding x quantized parameters, for tinysnn at 400 neurons, with memory under both conventions.

Per dataset:

1. diehl_cook FP32 (the reference of the memory saving and of the accuracy claim) and tinysnn
   FP32 are trained once each.
2. The i.f split of each parameter at B bits is chosen by measurement (issue 25, decision 1): a
   format may saturate, so no precision is refused because an observed range is wider. The
   candidates (tinysnn.quant.split_candidates) start at the split that holds the tinysnn FP32
   run's observed range (range analysis, docs/method.md §2), or the widest split B allows, and
   give one integer bit at a time to the fraction, ``--split-count`` splits per parameter; qWN
   tries every combination. V_mem is stored as V_mem - v_rest (tinysnn.train.vmem_rows_about_rest),
   so its range is taken about rest; its lower bound is max(observed min, v_rest - w_inh): deeper
   inhibition saturates there, which keeps the neuron just as silent (the observed minimum under
   direct inhibition can be below -1000 mV and would eat every bit).
3. Choice, as bench/sweep.py chooses constants: the last ``--validation`` training images are held
   out; a tinysnn FP32 network trained on the rest is quantized with every PTQ candidate, and every
   ITQ candidate trains on the rest; all are tested on the held-out images, never on the test set.
   Each configuration keeps the candidate with the best validation accuracy (ties: the widest
   range). With one candidate per configuration there is nothing to choose and no validation run.
4. PTQ: the full-data FP32 network is replicated into one population, one copy per configuration
   at its chosen split, quantized and tested (no retraining).
5. ITQ: one population of networks, one per configuration at its chosen split, trained from
   scratch on all the training images with the same seed and the same sample stream. Where the
   rule binds (tinysnn.quant.itq_problem: truncation and nearest rounding), V_th keeps the
   fractional bits that hold theta+; ITQ qW with truncation also runs with the plain normalization
   rule at ``--plain-bits`` precisions, to show what the sum-preserving rule does.

Each row records its chosen ``split`` (format per parameter), ``split_candidates`` (each
candidate's split and validation accuracy) and ``split_chosen_on`` (the image counts of the choice;
None where no candidate had a rival, so nothing was measured). A configuration is "impossible" only where no format of
B bits can be built (the sign bit and the fractional bits theta+ needs do not fit).
"""

from __future__ import annotations

import argparse
import copy
import itertools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from _choices import choice_for  # bench/ sibling (on sys.path: bench/accuracy.py runs from bench/)

from tinysnn import data as D
from tinysnn.cli import TrainChoice, build_configs
from tinysnn.config import EncodingConfig
from tinysnn.network import Population, build_population
from tinysnn.quant import (
    DEFAULT_NORMALIZATION,
    PARAMS,
    Normalization,
    QFormat,
    QuantSpec,
    Rounding,
    Scheme,
    itq_problem,
    min_frac_bits_for_step,
    split_candidates,
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


def vth_min_frac(rounding: str, scheme: Scheme, theta_plus: float) -> int:
    """The fewest fractional bits V_th needs: those whose step holds theta+ where ITQ's rule binds, else 0.

    The rule itself is :func:`tinysnn.quant.itq_problem`'s; a V_th format one bit coarser than
    theta+ needs asks it whether the rule applies to this scheme and rounding.
    """
    need = min_frac_bits_for_step(theta_plus)
    if need == 0:
        return 0
    coarser = QuantSpec(vth=QFormat(1, need - 1), rounding=Rounding(rounding), scheme=scheme)
    return need if itq_problem(coarser, theta_plus) else 0


def configurations(
    ranges: Dict[str, Tuple[float, float]],
    precisions,
    roundings,
    labels,
    scheme: Scheme,
    theta_plus: float = 0.05,
    plain_bits=(),
    split_count: int = 1,
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(configs with their candidate QuantSpecs, impossible ones with the reason).

    Each config holds ``candidates``: one QuantSpec per combination of the parameters' splits
    (:func:`tinysnn.quant.split_candidates`, up to ``split_count`` per parameter), the split that
    holds the observed range first; ``spec`` is the first until :func:`choose` measures them. A
    precision is impossible only where no split of B bits can be built. ITQ V_th splits keep the
    fractional bits that hold ``theta_plus`` where the rule binds (:func:`vth_min_frac`); ITQ qW
    truncation at the precisions ``plain_bits`` is also configured with the plain normalization rule.
    """
    ok, bad = [], []
    for bits in precisions:
        for label in labels:
            params = ["weights"] if label == "qW" else list(PARAMS)
            for rnd in roundings:
                need = {"vth": vth_min_frac(rnd, scheme, theta_plus)}
                try:
                    splits = split_candidates(int(bits), {p: ranges[p] for p in params}, need, split_count)
                except ValueError as exc:
                    bad.append(
                        {
                            "bits": bits,
                            "label": label,
                            "scheme": scheme.value,
                            "rounding": rnd,
                            "reason": str(exc),
                        }
                    )
                    continue
                rules = [DEFAULT_NORMALIZATION]
                if scheme is Scheme.ITQ and label == "qW" and rnd == "truncate" and bits in plain_bits:
                    rules.append(Normalization.PLAIN)
                for rule in rules:
                    cands = [
                        QuantSpec(
                            rounding=Rounding(rnd),
                            scheme=scheme,
                            normalization=rule,
                            **dict(zip(params, combo)),
                        )
                        for combo in itertools.product(*(splits[p] for p in params))
                    ]
                    name = rnd if rule is DEFAULT_NORMALIZATION else f"{rnd} plain"
                    ok.append(
                        {
                            "bits": bits,
                            "label": label,
                            "rounding": name,
                            "scheme": scheme.value,
                            "candidates": cands,
                            "spec": cands[0],
                        }
                    )
    return ok, bad


def split_of(spec: QuantSpec) -> Dict[str, str]:
    """The format of each quantized parameter of ``spec``: ``{"weights": "Q1.7", ...}``."""
    return {p: str(spec.format_of(p)) for p in PARAMS if spec.format_of(p) is not None}


def choose(configs: List[Dict[str, Any]], accuracies: Sequence[float]) -> None:
    """Give each config the candidate with the best validation accuracy (ties: the earliest, the widest range).

    ``accuracies`` lists every config's candidates in order; each config gets ``spec`` and
    ``split_candidates`` (split and validation accuracy of each candidate).
    """
    it = iter(accuracies)
    for c in configs:
        accs = [next(it) for _ in c["candidates"]]
        best = max(range(len(accs)), key=lambda k: (accs[k], -k))
        c["spec"] = c["candidates"][best]
        c["split_candidates"] = [
            {"split": split_of(s), "validation_accuracy": a} for s, a in zip(c["candidates"], accs)
        ]


def _train(
    ctx: Dict[str, Any],
    variant: str,
    specs: Optional[List[QuantSpec]],
    pop: Optional[Population],
    resume: Optional[TrainState] = None,
) -> Tuple[RunResult, Population]:
    args = ctx["args"]
    choice = choice_for(args, TrainChoice.from_args(args), ctx["ds"], variant)
    nets, learn, seeds = build_configs(args, choice, ctx["train"].n_input)
    k = len(specs or [None])
    p = pop if pop is not None else build_population(nets * k, learn, seeds * k)
    spec = RunSpec(
        p,
        ctx["enc"],
        ctx["train"],
        ctx["test"],
        assign=ctx["assign"],
        epochs=args.epochs,
        seed=args.seed,
        backend=args.backend,
        quant=specs,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        resume=resume,
    )
    return run(spec), p


def _held_out(args: argparse.Namespace, ds: str, n_train: int) -> Dict[str, Any]:
    """The choice's data: the last ``--validation`` training images held out (0: a sixth of them)."""
    n_val = args.validation or n_train // 6
    splits = D.load(ds, args.data_root, download=args.download, validation=n_val)
    n = min(args.train_samples or len(splits.train), len(splits.train))
    train = splits.train.take(n)
    assign = train.take(min(args.assign_samples, n)) if args.assign_samples is not None else train
    return {"train": train, "test": splits.validation, "assign": assign}


def _choose_splits(ctx: Dict[str, Any], scheme: Scheme, configs: List[Dict[str, Any]]) -> None:
    """Measure every candidate of ``configs`` on the held-out images and keep each config's best."""
    if all(len(c["candidates"]) == 1 for c in configs):
        return
    args = ctx["args"]
    held = dict(ctx, **_held_out(args, ctx["ds"], len(ctx["train"])))
    specs = [s for c in configs for s in c["candidates"]]
    print(
        f"== {ctx['ds']}: {scheme.value.upper()} split choice: {len(specs)} candidates for "
        f"{len(configs)} configurations, {len(held['train'])} training and {len(held['test'])} "
        "held-out images",
        flush=True,
    )
    if scheme is Scheme.PTQ:
        _, fp32 = _train(held, "tinysnn", None, None)
        trained = TrainState(next_sample=len(held["train"]) * args.epochs)
        res, _ = _train(held, "tinysnn", specs, replicate(fp32, len(specs)), trained)
    else:
        res, _ = _train(held, "tinysnn", specs, None)
    choose(configs, [net.accuracy for net in res.networks])
    for c in configs:
        c["split_chosen_on"] = {"train_images": len(held["train"]), "held_out_images": len(held["test"])}
        best = max(x["validation_accuracy"] for x in c["split_candidates"])
        print(
            f"   {c['label']} {c['bits']}b {c['rounding']}: {' '.join(f'{k}={v}' for k, v in split_of(c['spec']).items())} "
            f"(validation {100 * best:.2f} %, {len(c['candidates'])} candidates)",
            flush=True,
        )


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
        for scheme in [Scheme(x) for x in args.schemes]:
            ok, bad = configurations(
                ranges,
                args.precisions,
                args.roundings,
                LABELS,
                scheme,
                float(fp32_pop.params["theta_plus"][0]),
                args.plain_bits,
                args.split_count,
            )
            for b in bad:
                rows.append(
                    {
                        "dataset": ds,
                        "config": f"tinysnn {b['label']} {b['bits']}b {scheme.value} {b['rounding']}",
                        "impossible": b["reason"],
                    }
                )
            if not ok:
                continue
            _choose_splits(ctx, scheme, ok)
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
                r.update(
                    {
                        "bits": c["bits"],
                        "label": c["label"],
                        "split": split_of(c["spec"]),
                        "split_candidates": c.get("split_candidates", []),
                        "split_chosen_on": c.get("split_chosen_on"),
                    }
                )
                if scheme is Scheme.PTQ:  # training was the FP32 run's
                    r["train_samples_per_s"] = base["train_samples_per_s"]
                rows.append(r)
            done()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return rows


def print_quant_rows(rows: List[Dict[str, Any]]) -> None:
    print(
        f"{'dataset':<14} {'configuration':<40} {'split W/Vmem/Vth':<18} {'acc all':>8} {'acc prop':>8} "
        f"{'compact B':>10} {'as-sim B':>10} {'Mnorm c':>8} {'saving c':>9} {'saving as':>9}"
    )
    for r in rows:
        if "impossible" in r:
            print(f"{r['dataset']:<14} {r['config']:<40} impossible: {r['impossible'][:80]}")
            continue
        m = r["memory"]
        c, a = m["compact"], m["as_simulated"]
        split = "/".join(r.get("split", {}).values()) or "-"
        print(
            f"{r['dataset']:<14} {r['config']:<40} {split:<18} {100 * r['accuracy']:>7.2f}% {100 * r['accuracy_proportion']:>7.2f}% "
            f"{c['bytes']:>10} {a['bytes']:>10} {c['m_norm']:>8.3f} {1 / c['m_norm']:>8.2f}x {1 / a['m_norm']:>8.2f}x"
        )
    print("saving = M(diehl_cook FP32, same N) / M(network); paper: 3.3x (8-bit qW), 3.32x (8-bit qWN)")
