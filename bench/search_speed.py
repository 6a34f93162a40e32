"""A study run twice, naive and as shipped: wall time, trials per hour, trainings and the two fronts.

*naive*: one network per trial, nothing shared (``[study] weight_seed = "per_trial"``, so no two
trials share an FP32 training, and no ``[fidelity]`` subset: every trial trains on ``[data]``).
*shipped*: the spec as written (by default PTQ and FP32 trials of one training fingerprint share a
stored FP32 network; a ``[fidelity]`` subset if the spec has one, then ``confirm`` of its front,
timed with the run). Each mode runs on a fresh SQLite storage under ``--out``; the numba cache is
warmed by a first tiny run so that neither mode pays the compile::

    python bench/search_speed.py studies/quickstart.toml --trials 12 --json bench/out/search-quickstart.json
    python bench/search_speed.py studies/mnist-n400.toml --trials 20 --data-root ../shared/datasets

Prints one table (wall time, complete trials, trials per hour, networks trained) and the Pareto
front of each mode; writes the same as JSON. One worker: the wall time is the trial-hours.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Dict

import optuna
from optuna.trial import TrialState

from search import confirm_study, load_spec, pareto_front, parse_spec, run_study


def _raw_for(raw: Dict[str, Any], mode: str, out: Path, trials: int, data_root: str) -> Dict[str, Any]:
    spec = copy.deepcopy(raw)
    study = spec.setdefault("study", {})
    study.update(
        name=f"{study.get('name', 'study')}-{mode}",
        trials=trials,
        storage=f"sqlite:///{out / mode}.db",
        artifacts=str(out / mode),
    )
    if data_root:
        spec.setdefault("data", {})["root"] = data_root
    if mode == "naive":
        study["weight_seed"] = "per_trial"
        spec.pop("fidelity", None)
    return spec


def _summary(spec_raw: Dict[str, Any], seconds: float) -> Dict[str, Any]:
    spec = parse_spec(spec_raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage_url)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    trainers = [t for t in complete if t.user_attrs.get("trained_by", t.number) == t.number]
    front = [
        {
            "trial": t.number,
            "quant": t.user_attrs.get("quant_text", ""),
            "n_neurons": t.user_attrs.get("n_neurons"),
            "accuracy": t.values[0],
            "memory_norm": t.values[1],
            "energy": t.values[2],
            "confirmed_accuracy": (study.user_attrs.get(f"confirmed_trial_{t.number}") or {}).get(
                "confirmed_accuracy"
            ),
        }
        for t in pareto_front(study)
    ]
    return {
        "wall_seconds": seconds,
        "complete": len(complete),
        "trials_per_hour": len(complete) / (seconds / 3600) if seconds > 0 else 0.0,
        "trainings": len(trainers),
        "front": front,
    }


def run_mode(raw: Dict[str, Any], mode: str, out: Path, trials: int, data_root: str) -> Dict[str, Any]:
    spec_raw = _raw_for(raw, mode, out, trials, data_root)
    for leftover in (out / f"{mode}.db", out / mode):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        elif leftover.exists():
            leftover.unlink()
    spec = parse_spec(spec_raw)
    t0 = time.perf_counter()
    run_study(spec, progress=False, log=lambda line: None)
    if mode == "shipped" and spec_raw.get("fidelity"):
        confirm_study(spec, progress=False, log=lambda line: None)
    return _summary(spec_raw, time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", help="a study spec (TOML)")
    ap.add_argument("--trials", type=int, required=True, help="the budget of each mode")
    ap.add_argument("--data-root", default="", help="dataset folder (MNIST / Fashion-MNIST)")
    ap.add_argument("--out", default="bench/out/search", help="folder of the two storages")
    ap.add_argument("--modes", nargs="+", default=["naive", "shipped"], choices=["naive", "shipped"])
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    raw = load_spec(a.spec).raw
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    warm = copy.deepcopy(raw)  # compile the kernels once, outside the timings
    warm["data"] = dict(warm.get("data", {}), train_samples=20, test_samples=20, assign_samples=20)
    warm.pop("fidelity", None)
    run_mode(warm, "warm", out, 1, a.data_root)
    results = {mode: run_mode(raw, mode, out, a.trials, a.data_root) for mode in a.modes}
    print(f"{'mode':<8} {'wall s':>8} {'complete':>8} {'trials/h':>9} {'trainings':>9}")
    for mode, r in results.items():
        print(
            f"{mode:<8} {r['wall_seconds']:>8.0f} {r['complete']:>8} {r['trials_per_hour']:>9.1f} "
            f"{r['trainings']:>9}"
        )
    if len(results) == 2:
        print(
            f"naive / shipped wall time: {results['naive']['wall_seconds'] / results['shipped']['wall_seconds']:.2f}x"
        )
    for mode, r in results.items():
        print(f"\n{mode} front:")
        for f in r["front"]:
            confirmed = (
                f" (confirmed {100 * f['confirmed_accuracy']:.2f} %)"
                if f["confirmed_accuracy"] is not None
                else ""
            )
            print(
                f"  trial {f['trial']:>3} N={f['n_neurons']} {f['quant']}: {100 * f['accuracy']:.2f} %{confirmed}, "
                f"M_norm {f['memory_norm']:.4f}, energy {f['energy']:.3g} J"
            )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"spec": a.spec, "trials": a.trials, "modes": results}, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
