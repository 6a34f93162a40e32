"""Why 8-bit ITQ with truncation lost accuracy: normalization variants on a validation split.

NOT part of the library: the variants live in a temporary kernel patch. To reproduce the numbers in
bench/results/quantization.md ("8-bit ITQ with truncation: diagnosis"), check out rev ac208d0, apply
the patch and run the three groups::

    git checkout ac208d0 && git apply bench/experiments/itq_norm_diag.patch
    python bench/experiments/itq_norm_diag.py --group 1 --dataset fashion-mnist --data-root DIR
    python bench/experiments/itq_norm_diag.py --group 2 --dataset fashion-mnist --data-root DIR
    python bench/experiments/itq_norm_diag.py --group 3 --dataset fashion-mnist --data-root DIR
    python bench/experiments/itq_norm_diag.py --group 1 --dataset mnist --data-root DIR

The patch reads a bit mask from the tinysnn networks' unused ``nu_pre`` (a pair-STDP constant):
1 normalization rounds to nearest (updates still truncate), 2 renormalize only the columns of
neurons that learned in the sample, 4 potentiation updates are not quantized (weights are put on
the grid at normalization only), 8 normalization with error feedback along each column
(sigma-delta: the truncation residue carries to the next input), 16 leave a column alone when its
sum lies within n_in q of the total (the rule the library adopted, for silent neurons).

Protocol: one pass over the first 50,000 training images, labels assigned on the first 10,000,
accuracy on the last 10,000 training images (validation split; the test set is not touched);
400 neurons, one spike per step, the per-dataset constants of studies/*.toml, weights UQ0.8,
all networks of a group in one population with the same seed (0) and input trains.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from _constants import tinysnn_400  # bench/experiments sibling

from tinysnn import data
from tinysnn.config import EncodingConfig, LearningConfig
from tinysnn.network import build_population
from tinysnn.quant import parse_quant_arg
from tinysnn.train import RunSpec, run

GROUPS = {  # (label, rounding or None for FP32, patch bit mask, eta_post or None for the default)
    1: [
        ("fp32", None, 0, None),
        ("itq trunc", "truncate", 0, None),
        ("itq trunc norm-nearest", "truncate", 1, None),
        ("itq trunc learned-only", "truncate", 2, None),
        ("itq trunc update-exact", "truncate", 4, None),
        ("itq trunc sigma-delta", "truncate", 8, None),
        ("itq stochastic", "stochastic", 0, None),
        ("itq nearest", "nearest", 0, None),
    ],
    2: [
        ("fp32", None, 0, None),
        ("itq trunc slack", "truncate", 16, None),
        ("itq trunc learned-only", "truncate", 2, None),
        ("itq trunc slack+sigma-delta", "truncate", 24, None),
        ("itq trunc slack+update-exact", "truncate", 20, None),
        ("itq trunc slack+norm-nearest", "truncate", 17, None),
        ("itq stochastic slack", "stochastic", 16, None),
        ("itq nearest slack", "nearest", 16, None),
    ],
    3: [
        ("itq trunc slack eta.003", "truncate", 16, 0.003),
        ("itq trunc slack eta.004", "truncate", 16, 0.004),
        ("itq trunc slack eta.006", "truncate", 16, 0.006),
        ("itq trunc slack+update-exact eta.004", "truncate", 20, 0.004),
        ("itq stochastic eta.004", "stochastic", 0, 0.004),
        ("itq trunc learned-only eta.004", "truncate", 2, 0.004),
        ("fp32 eta.004", None, 0, 0.004),
        ("itq stochastic eta.003", "stochastic", 0, 0.003),
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", type=int, choices=sorted(GROUPS), required=True)
    ap.add_argument("--dataset", choices=("mnist", "fashion-mnist"), required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--train-samples", type=int, default=50000)
    ap.add_argument("--bits", type=int, default=8, help="weight format UQ0.<bits>")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    d = data.load(a.dataset, a.data_root, validation=10000)
    train = d.train.take(a.train_samples)
    assign = d.train.take(10000)
    net, lc = tinysnn_400(a.dataset)
    cfgs = GROUPS[a.group]
    specs = [
        parse_quant_arg(f"weights=UQ0.{a.bits}", rounding=r, scheme="itq") if r else None
        for _, r, _, _ in cfgs
    ]
    learns = [
        LearningConfig(nu_pre=float(m), **dict(lc, eta_post=e or lc["eta_post"])) for _, _, m, e in cfgs
    ]
    pop = build_population([net] * len(cfgs), learns, [0] * len(cfgs))
    t = time.time()
    res = run(RunSpec(pop, EncodingConfig(), train, d.validation, assign=assign, quant=specs, progress=False))
    print(f"{a.dataset} group {a.group}: {a.train_samples} training images, {time.time() - t:.0f} s")
    rows = []
    for k, (label, *_rest) in enumerate(cfgs):
        n = res.networks[k]
        rows.append({"config": label, "accuracy": n.accuracy, "accuracy_proportion": n.accuracy_proportion})
        print(f"  {label:<40} {100 * n.accuracy:6.2f} %  {100 * n.accuracy_proportion:6.2f} %")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {"args": vars(a), "rows": rows, "networks": [dataclasses.asdict(n) for n in res.networks]}, f
            )


if __name__ == "__main__":
    main()
