"""What a paper-* protocol of bench/accuracy.py (and bench/paper_quant.py) trains for one variant on one
dataset: the command line's constants with the ``--override`` items that apply."""

from __future__ import annotations

import argparse
from typing import Dict, List

from tinysnn.cli import TrainChoice


def choice_for(args: argparse.Namespace, given: TrainChoice, dataset: str, variant: str) -> TrainChoice:
    """``variant`` on ``dataset`` with the command line's constants and the ``--override`` items for it."""
    constants = dict(given.constants, **overrides(args.override, variant, dataset))
    return TrainChoice(dataset, variant, constants)


def overrides(items: List[str], variant: str, dataset: str) -> Dict[str, float]:
    """``[DATASET/]VARIANT:key=value,...`` items that apply to ``variant`` on ``dataset``.

    Keys are those of `tinysnn train` (``norm_total``, ``w_inh``, ``n_th``, ...); an item without a
    dataset applies to every dataset. Later items win.
    """
    out: Dict[str, float] = {}
    for item in items or []:
        target, _, assignments = item.partition(":")
        if not assignments or "=" not in assignments:
            raise SystemExit(f"--override {item!r}: expected [DATASET/]VARIANT:key=value[,key=value...]")
        ds, _, name = target.rpartition("/")
        if name != variant or (ds and ds != dataset):
            continue
        for pair in assignments.split(","):
            key, _, value = pair.partition("=")
            out[key.strip().replace("-", "_")] = float(value)
    return out


__all__ = ["choice_for", "overrides"]
