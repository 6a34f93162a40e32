from __future__ import annotations

import pytest
import torch

from tinysnn import evaluate as E


def test_label_assignment_on_constructed_counts() -> None:
    # 3 neurons, 2 classes, 4 samples (labels 0, 0, 1, 1)
    counts = torch.tensor([[[4, 0, 0], [2, 1, 0], [0, 3, 0], [1, 5, 0]]])  # (P=1, S=4, N=3)
    labels = torch.tensor([0, 0, 1, 1])
    a = E.assign_labels(counts, labels, 2)
    # neuron 0: class means 3.0 vs 0.5 -> 0; neuron 1: 0.5 vs 4.0 -> 1; neuron 2 silent -> -1
    assert a.labels.tolist() == [[0, 1, -1]]
    assert torch.allclose(a.rates[0, :, 0], torch.tensor([3.0, 0.5]))
    assert torch.allclose(a.proportions[0, :, 1], torch.tensor([0.5 / 4.5, 4.0 / 4.5]))
    assert a.proportions[0, :, 2].tolist() == [0.0, 0.0]


def test_voting_schemes_and_accuracy() -> None:
    counts = torch.tensor([[[4, 0, 0], [2, 1, 0], [0, 3, 0], [1, 5, 0]]])
    labels = torch.tensor([0, 0, 1, 1])
    a = E.assign_labels(counts, labels, 2)
    test = torch.tensor([[[3, 1, 9], [0, 2, 0], [0, 0, 7]]])  # neuron 2 is unassigned
    pred = E.predict_all_activity(test, a)
    assert pred.tolist() == [[0, 1, -1]]  # no assigned neuron fired in the third sample
    prop = E.predict_proportion(test, a)
    assert prop.tolist() == [[0, 1, -1]]
    acc = E.accuracy(pred, torch.tensor([0, 1, 1]))
    assert acc.tolist() == [pytest.approx(2 / 3)]


def test_all_activity_averages_over_class_members() -> None:
    # class 0 has two neurons, class 1 one: the mean decides, not the sum
    labels_n = E.Assignment(torch.tensor([[0, 0, 1]]), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
    test = torch.tensor([[[3, 0, 2]]])  # class 0 mean 1.5 < class 1 mean 2
    assert E.predict_all_activity(test, labels_n).tolist() == [[1]]


def test_confusion_matrix_counts_no_prediction_column() -> None:
    cm = E.confusion_matrix(torch.tensor([0, 1, -1, 1]), torch.tensor([0, 0, 1, 1]), 2)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 1]]
