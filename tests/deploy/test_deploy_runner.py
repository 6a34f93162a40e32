"""The numpy runner's input sums for FP32 weights: BLAS's order, the simulator's float32 result."""

from __future__ import annotations

import numpy as np

from tinysnn.deploy.runner import _fp32_sums, _undecided


def _sums(x: np.ndarray, w: np.ndarray, order: slice = slice(None)) -> np.ndarray:
    """float64 sums of the firing inputs' weights, in input index order (the simulator's) or
    another (``order``: reversed stands for a BLAS that adds in another order)."""
    out = np.zeros(x.shape[:2] + (w.shape[1],), np.float64)
    for k in range(x.shape[0]):
        for b in range(x.shape[1]):
            for j in range(w.shape[1]):
                acc = 0.0
                for i in np.flatnonzero(x[k, b])[order]:
                    acc += float(w[i, j])
                out[k, b, j] = acc
    return out


def _adversarial(signed: bool) -> tuple:
    """Weights whose float64 sums round to float32 differently in different orders: 1 + 2^-24 (a
    float32 midpoint) plus two halves of a float64 step, and random rows with wide exponents."""
    rng = np.random.default_rng(3)
    n_in, n = 40, 12
    w = (rng.random((n_in, n)) * 2.0 ** rng.integers(-40, 1, (n_in, n))).astype(np.float32)
    if signed:
        w *= rng.choice([-1.0, 1.0], (n_in, n)).astype(np.float32)
    w[:4, :3] = np.array([1.0, 2.0**-24, 2.0**-53, 2.0**-53], np.float32)[:, None]
    x = (rng.random((3, 5, n_in)) < 0.3).astype(np.float64)
    x[:, :, :4] = 0.0
    x[0, 0, :] = 0.0
    x[0, 0, :4] = 1.0  # step 0, sample 0: only the midpoint inputs
    return x, w.astype(np.float64)


def test_fp32_sums_equal_the_simulators_index_order_sums() -> None:
    for signed in (False, True):
        x, w = _adversarial(signed)
        want = _sums(x, w).astype(np.float32)
        other_order = _sums(x, w, slice(None, None, -1))
        # the data is order-sensitive: summed backwards, the midpoint entries round up
        assert want[0, 0, 0] == np.float32(1.0) and np.float32(other_order[0, 0, 0]) > 1.0
        for sums in (other_order, x @ w):  # whatever order the float64 sums were formed in
            got = _fp32_sums(sums, x, w)
            assert got.dtype == np.float32 and np.array_equal(got, want)


def test_few_fp32_sums_are_summed_again() -> None:
    # MNIST-like: 784 inputs, 2 % firing, weights in (0, 1): BLAS's sums stand almost everywhere
    rng = np.random.default_rng(5)
    x = (rng.random((4, 64, 784)) < 0.02).astype(np.float64)
    for low in (-20, -60):  # exact float64 sums (ties included), and sums that round
        w = (
            (rng.random((784, 100)) * 2.0 ** rng.integers(low, 1, (784, 100)))
            .astype(np.float32)
            .astype(np.float64)
        )
        sums = x @ w
        assert _undecided(sums, sums, sums.astype(np.float32), w).mean() < 1e-3
    x, w = _adversarial(False)
    sums = x @ w
    assert _undecided(sums, sums, sums.astype(np.float32), w)[0, 0, 0]  # the midpoint entry
