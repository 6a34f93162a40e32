"""8-bit ITQ against FP32 over several seeds, on the paper-quant protocol's data (test set).

paper-quant trains one seed, and the seed spread of FP32 tinysnn (sd 0.3 points on MNIST, 0.7 on
Fashion-MNIST, bench/results/accuracy.md) is as large as the 0.5-point target. This trains tinysnn FP32
and 8-bit ITQ (weights UQ0.8; truncation with the sum-preserving and the plain normalization rule, and
stochastic rounding) for each seed in one population, as paper-quant does (one pass over the 60,000
training images, labels from the first 10,000, the full test set, one spike per step, the
per-dataset constants)::

    python bench/experiments/itq_seeds.py --dataset fashion-mnist --data-root DIR --seeds 0 1 2

``--dataset digits`` runs the quick-start regime instead (scikit-learn's digits, all 1,437 training
and 360 test images, labels from the training images, the library's default constants, weights
Q1.7, 50 neurons unless ``--neurons`` says otherwise); it needs no data root.

``--weights`` takes several formats and ``--quant`` several quantization texts (what follows the
weight format: rounding, normalization rule, neuron formats; a text with its own ``weights=`` is run
as it is); the population then holds FP32 and every (weights, quant) pair for every seed, e.g. the
normalization rules at 8 and 6 bits::

    python bench/experiments/itq_seeds.py --dataset mnist --data-root DIR --weights UQ0.8 UQ0.6 \
        --quant rounding=truncate,norm=sum rounding=nearest,norm=apportion ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _constants import tinysnn_400  # bench/experiments sibling

from tinysnn import data
from tinysnn.config import EncodingConfig, LearningConfig, NetworkConfig
from tinysnn.network import build_population
from tinysnn.quant import parse_quant_arg
from tinysnn.train import RunSpec, run

#: The quantization texts run by default (after the weight format): the issue-13 comparison
DEFAULT_QUANT = [
    "rounding=truncate",
    "rounding=truncate,norm=plain",
    "rounding=truncate,norm=settled",
    "rounding=stochastic",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("mnist", "fashion-mnist", "digits"), required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--neurons", type=int, default=None, help="default 400 (digits: 50)")
    ap.add_argument("--weights", nargs="+", default=None, help="weight formats (default UQ0.8; digits Q1.7)")
    ap.add_argument(
        "--quant", nargs="+", default=DEFAULT_QUANT, help="quantization texts after the weight format"
    )
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    d = data.load(a.dataset, a.data_root)
    if a.dataset == "digits":
        net = NetworkConfig(variant="tinysnn", n_neurons=a.neurons or 50, n_input=d.train.n_input)
        learn, default_weights, assign = LearningConfig(), "Q1.7", d.train
    else:
        net, learn_kw = tinysnn_400(a.dataset)
        if a.neurons:
            net = NetworkConfig(**{**net.__dict__, "n_neurons": a.neurons})
        learn, default_weights, assign = LearningConfig(**learn_kw), "UQ0.8", d.train.take(10000)
    weights = a.weights or [default_weights]
    configs = [("tinysnn FP32", None)]
    for q in a.quant:  # a text that names its own weight format is run as it is
        configs += (
            [(f"ITQ {q}", q)] if "weights=" in q else [(f"ITQ {w} {q}", f"weights={w},{q}") for w in weights]
        )
    plan = [(label, q, s) for label, q in configs for s in a.seeds]
    specs = [parse_quant_arg(q, scheme="itq") if q else None for _, q, _ in plan]
    pop = build_population([net] * len(plan), learn, [s for _, _, s in plan])
    t = time.time()
    res = run(RunSpec(pop, EncodingConfig(), d.train, d.test, assign=assign, quant=specs, progress=False))
    print(f"{a.dataset}: {len(configs)} configurations, seeds {a.seeds}, {time.time() - t:.0f} s")
    rows = []
    for k, (label, _, seed) in enumerate(plan):
        n = res.networks[k]
        rows.append(
            {
                "config": label,
                "seed": seed,
                "accuracy": n.accuracy,
                "accuracy_proportion": n.accuracy_proportion,
            }
        )
        print(f"  {label:<50} seed {seed}  {100 * n.accuracy:6.2f} %  {100 * n.accuracy_proportion:6.2f} %")
    for label, _ in configs:
        acc = [100 * r["accuracy"] for r in rows if r["config"] == label]
        sd = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        print(f"  {label:<50} mean {statistics.mean(acc):6.2f} %  sd {sd:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f)


if __name__ == "__main__":
    main()
