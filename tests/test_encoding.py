from __future__ import annotations

import math

import numpy as np
import torch

from tinysnn.config import EncodingConfig
from tinysnn.encoding import make_generator, poisson, spike_probability
from tinysnn.sim import numba_kernels as K


def _check_rate(counts: np.ndarray, p: float, trials: int) -> None:
    # counts of a Bernoulli(p) process over `trials` steps: mean p*trials, sd sqrt(trials p (1-p))
    mean, sd = p * trials, math.sqrt(trials * p * (1 - p))
    assert abs(counts.sum() - mean) < 5 * sd, (counts.sum(), mean, sd)


def test_poisson_rates_match_pixel_intensity() -> None:
    enc = EncodingConfig(time_steps=2000, max_rate=128.0)
    img = torch.tensor([0, 64, 128, 255], dtype=torch.uint8)
    spikes = poisson(img, enc, make_generator(1)).numpy()
    assert spikes.shape == (2000, 4) and spikes.dtype == bool
    assert spikes[:, 0].sum() == 0
    for k, x in enumerate([64, 128, 255]):
        _check_rate(spikes[:, k + 1], x / 255 * 0.128, 2000)


def test_isi_encoder_has_the_same_distribution() -> None:
    enc = EncodingConfig(time_steps=250)
    img = torch.tensor([0, 30, 128, 255] * 50, dtype=torch.uint8)
    prob = spike_probability(img, enc).numpy()
    counts = np.zeros(img.shape[0])
    per_step = np.zeros(250)
    n = 40
    for s in range(n):
        ptr, idx = K.encode_isi(prob, 250, s)
        assert np.all(np.diff(ptr) >= 0)
        np.add.at(counts, idx, 1)
        per_step += np.diff(ptr)
    assert counts[0::4].sum() == 0
    for k, x in enumerate([30, 128, 255]):
        _check_rate(counts[k + 1 :: 4], x / 255 * 0.128, 250 * n * 50)
    # stationary in time: the first and second halves carry the same number of spikes
    a, b = per_step[:125].sum(), per_step[125:].sum()
    assert abs(a - b) < 5 * math.sqrt(a + b)


def test_encoders_are_deterministic_per_seed() -> None:
    enc = EncodingConfig(time_steps=50)
    img = torch.full((20,), 200, dtype=torch.uint8)
    a = poisson(img, enc, make_generator(3))
    b = poisson(img, enc, make_generator(3))
    c = poisson(img, enc, make_generator(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    prob = spike_probability(img, enc).numpy()
    p1, i1 = K.encode_isi(prob, 50, 9)
    p2, i2 = K.encode_isi(prob, 50, 9)
    assert np.array_equal(p1, p2) and np.array_equal(i1, i2)


def test_batched_encoding_shape() -> None:
    enc = EncodingConfig(time_steps=7)
    out = poisson(torch.zeros((3, 5), dtype=torch.uint8), enc, make_generator(0))
    assert tuple(out.shape) == (7, 3, 5) and not bool(out.any())
