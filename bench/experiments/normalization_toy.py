"""Why the sum-preserving normalization flattens receptive fields: a toy column, no simulation.

A peaky 784-input column at UQ0.8 (60 large weights, the rest small, sum 45 as Fashion-MNIST's
total) receives 200 learning events; each adds one step to 30 random inputs (an Eq. 2 update that
survives truncation), then the column is renormalized by FP32 normalization, the sum-preserving
rule (``tinysnn.sim.equations.normalize_sum_preserving``) or the plain rule (truncation). Printed: the
mass of the 60 large weights, the column total, the small weights at zero, and the ratio of the
large weights' mean to the small ones'::

    python bench/experiments/normalization_toy.py
"""

from __future__ import annotations

import torch

from tinysnn.quant.formats import NORM_SUM
from tinysnn.sim.equations import normalize_sum_preserving, scale_columns

N_IN, TOTAL, FRAC, EVENTS = 784, 45.0, 8, 200
Q = 2.0**-FRAC


def column() -> torch.Tensor:
    torch.manual_seed(0)
    w = torch.zeros(N_IN)
    w[:60] = torch.rand(60) * 0.5 + 0.25
    w[60:] = torch.rand(N_IN - 60) * 0.03
    w = w * TOTAL / w.sum()
    return torch.floor(w / Q) * Q


def run(rule: str, w0: torch.Tensor) -> torch.Tensor:
    x = w0.clone().view(1, -1, 1)
    total, mask = torch.tensor([TOTAL]), torch.ones(1, 1, dtype=torch.bool)
    rows = torch.tensor([[2.0**FRAC, 0.0, 1 - Q]])  # [2^f, lo, hi] of UQ0.FRAC
    g = torch.Generator().manual_seed(1)
    for _ in range(EVENTS):
        idx = torch.randperm(N_IN, generator=g)[:30]
        x[0, idx, 0] = torch.clamp(x[0, idx, 0] + Q, max=1 - Q)
        if rule == "sum":
            x = normalize_sum_preserving(x, total, mask, rows, torch.tensor([1.0]), torch.tensor([NORM_SUM]))
        elif rule == "plain":
            x = torch.floor(scale_columns(x, total, mask) / Q) * Q
        else:
            x = scale_columns(x, total, mask)
    return x.view(-1)


def main() -> None:
    w0 = column()
    print(f"{'rule':<8} {'top-60 mass':>11} {'total':>8} {'small at 0':>10} {'peak/background':>15}")
    for rule, v in [("start", w0)] + [(r, run(r, w0)) for r in ("fp32", "sum", "plain")]:
        ratio = float(v[:60].mean() / v[60:].mean())
        print(
            f"{rule:<8} {float(v[:60].sum()):>11.3f} {float(v.sum()):>8.3f} {int((v[60:] == 0).sum()):>10} {ratio:>15.1f}"
        )


if __name__ == "__main__":
    main()
