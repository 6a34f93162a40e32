"""Label assignment and voting (Diehl & Cook 2015; docs/method.md §1).

After training, with learning off, training samples are presented; each neuron is assigned the
class for which its mean spike count is highest. A neuron that never fired during assignment
gets no class (-1) and does not vote (BindsNET would give it class 0).

Prediction for a test sample:

* all-activity: for each class, the mean spike count of the neurons assigned to it; argmax.
* proportion weighting: for each class, the sum over its neurons of count_j x p_cj, where p_cj is
  neuron j's share of its responses that went to class c during assignment; argmax.

A test sample that makes no assigned neuron fire has no prediction (-1) and counts as wrong.
All functions work on populations: counts are ``(P, S, N)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

NO_CLASS = -1


class Assignment(NamedTuple):
    labels: torch.Tensor
    """(P, N) int64 class of each neuron, -1 for neurons that never fired."""
    rates: torch.Tensor
    """(P, C, N) float32 mean spike count of each neuron per class."""
    proportions: torch.Tensor
    """(P, C, N) float32 rates normalized over classes (0 for silent neurons)."""


def assign_labels(counts: torch.Tensor, labels: torch.Tensor, n_classes: int) -> Assignment:
    """Assign each neuron the class with its highest mean spike count.

    Args:
        counts: (P, S, N) spike counts of S labelled samples.
        labels: (S,) class of each sample.
        n_classes: number of classes C.
    """
    counts = counts.to(torch.float32)
    P, S, N = counts.shape
    if labels.shape != (S,):
        raise ValueError(f"labels must have shape ({S},), got {tuple(labels.shape)}")
    onehot = torch.nn.functional.one_hot(labels.to(torch.int64).cpu(), n_classes).to(torch.float32)
    onehot = onehot.to(counts.device)  # (S, C)
    per_class = onehot.sum(0).clamp_min(1.0)  # (C,)
    rates = torch.einsum("psn,sc->pcn", counts, onehot) / per_class[None, :, None]
    best = rates.argmax(dim=1)
    total = rates.sum(dim=1)  # (P, N)
    silent = total <= 0
    best = torch.where(silent, torch.full_like(best, NO_CLASS), best)
    proportions = torch.where(
        silent[:, None, :], torch.zeros_like(rates), rates / total.clamp_min(1e-12)[:, None, :]
    )
    return Assignment(best, rates, proportions)


def predict_all_activity(counts: torch.Tensor, assignment: Assignment) -> torch.Tensor:
    """All-activity voting: (P, B) predicted classes (-1 where no assigned neuron fired)."""
    counts = counts.to(torch.float32)
    C = assignment.rates.shape[1]
    member = _membership(assignment.labels, C)  # (P, C, N)
    n_members = member.sum(-1).clamp_min(1.0)  # (P, C)
    scores = torch.einsum("pbn,pcn->pbc", counts, member) / n_members[:, None, :]
    return _argmax_or_none(scores)


def predict_proportion(counts: torch.Tensor, assignment: Assignment) -> torch.Tensor:
    """Proportion-weighting voting: (P, B) predicted classes (-1 where nothing fired)."""
    counts = counts.to(torch.float32)
    C = assignment.rates.shape[1]
    member = _membership(assignment.labels, C)
    scores = torch.einsum("pbn,pcn->pbc", counts, member * assignment.proportions)
    return _argmax_or_none(scores)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(P,) fraction of correct predictions (a -1 prediction is wrong)."""
    return (predictions == labels.to(predictions.device)[None, :]).to(torch.float32).mean(dim=-1)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(C, C + 1) counts: row = true class, column = predicted class; the last column counts
    samples without a prediction (-1). ``predictions`` is (B,) for one network."""
    pred = predictions.to(torch.int64).cpu().clone()
    pred[pred < 0] = n_classes
    idx = labels.to(torch.int64).cpu() * (n_classes + 1) + pred
    return torch.bincount(idx, minlength=n_classes * (n_classes + 1)).reshape(n_classes, n_classes + 1)


def _membership(neuron_labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    classes = torch.arange(n_classes, device=neuron_labels.device)
    return (neuron_labels[:, None, :] == classes[None, :, None]).to(torch.float32)


def _argmax_or_none(scores: torch.Tensor) -> torch.Tensor:
    best = scores.argmax(dim=-1)
    return torch.where(scores.amax(dim=-1) > 0, best, torch.full_like(best, NO_CLASS))


__all__ = [
    "NO_CLASS",
    "Assignment",
    "accuracy",
    "assign_labels",
    "confusion_matrix",
    "predict_all_activity",
    "predict_proportion",
]
