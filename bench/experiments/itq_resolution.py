"""Does finer weight resolution close the 8-bit ITQ truncation gap on Fashion-MNIST? (validation split)

Fashion's trained weights peak near 0.26, so UQ0.8 leaves its top bits unused. UQ0.9 and UQ0.10
stand in for an 8-bit format fitted to [0, 0.5) or [0, 0.25) (not implemented: integer bits below
zero). Same protocol as itq_norm_diag.py, on the library as it is (settled-columns rule included)::

    python bench/experiments/itq_resolution.py --data-root DIR
"""

from __future__ import annotations

import argparse
import time

from _constants import tinysnn_400  # bench/experiments sibling

from tinysnn import data
from tinysnn.config import EncodingConfig, LearningConfig
from tinysnn.network import build_population
from tinysnn.quant import parse_quant_arg
from tinysnn.train import RunSpec, run

CONFIGS = [
    ("fp32", None),
    ("itq truncate UQ0.8", "UQ0.8"),
    ("itq truncate UQ0.9", "UQ0.9"),
    ("itq truncate UQ0.10", "UQ0.10"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--train-samples", type=int, default=50000)
    a = ap.parse_args()
    d = data.load("fashion-mnist", a.data_root, validation=10000)
    net, learn_kw = tinysnn_400("fashion-mnist")
    learn = LearningConfig(**learn_kw)
    specs = [
        parse_quant_arg(f"weights={f}", rounding="truncate", scheme="itq") if f else None for _, f in CONFIGS
    ]
    pop = build_population([net] * len(CONFIGS), learn, [0] * len(CONFIGS))
    t = time.time()
    res = run(
        RunSpec(
            pop,
            EncodingConfig(),
            d.train.take(a.train_samples),
            d.validation,
            assign=d.train.take(10000),
            quant=specs,
            progress=False,
        )
    )
    print(f"fashion-mnist: {a.train_samples} training images, {time.time() - t:.0f} s")
    for k, (label, _) in enumerate(CONFIGS):
        n = res.networks[k]
        print(f"  {label:<24} {100 * n.accuracy:6.2f} %  {100 * n.accuracy_proportion:6.2f} %")


if __name__ == "__main__":
    main()
