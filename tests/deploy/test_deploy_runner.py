"""The numpy runner's input sums: the simulator's numbers, in the order and type it forms them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from tinysnn.deploy.runner import _block_sums, _narrowest_type


def _sums(x: np.ndarray, w: np.ndarray, order: slice = slice(None)) -> np.ndarray:
    """float64 sums (k, B, N) of the firing inputs' weights for spikes ``x`` (B, k, n_in), in input
    index order (the simulator's) or another (``order``: reversed)."""
    out = np.zeros((x.shape[1], x.shape[0], w.shape[1]), np.float64)
    for b in range(x.shape[0]):
        for k in range(x.shape[1]):
            for j in range(w.shape[1]):
                acc = 0.0
                for i in np.flatnonzero(x[b, k])[order]:
                    acc += float(w[i, j])
                out[k, b, j] = acc
    return out


def _net(w: np.ndarray) -> SimpleNamespace:
    """The fields of a runner Network that the input sums read, for weights ``w`` (codes: int64)."""
    if w.dtype.kind == "f":
        return SimpleNamespace(weights=w.astype(np.float32), w_frac=None, code_range=(0, 0))
    lo, hi = int(w.min()), int(w.max())
    return SimpleNamespace(weights=w.astype(_narrowest_type(lo, hi)), w_frac=7, code_range=(lo, hi))


def test_fp32_sums_are_the_simulators_index_order_sums() -> None:
    # 1 + 2^-24 (a float32 midpoint) plus two halves of a float64 step, and random rows with wide
    # exponents: sums that round to float32 differently in different orders
    rng = np.random.default_rng(3)
    n_in, n = 40, 12
    for signed in (False, True):
        w = (rng.random((n_in, n)) * 2.0 ** rng.integers(-40, 1, (n_in, n))).astype(np.float32)
        if signed:
            w *= rng.choice([-1.0, 1.0], (n_in, n)).astype(np.float32)
        w[:4, :3] = np.array([1.0, 2.0**-24, 2.0**-53, 2.0**-53], np.float32)[:, None]
        w = w.astype(np.float64)
        x = rng.random((5, 3, n_in)) < 0.3
        x[:, :, :4] = False
        x[0, 0, :] = False
        x[0, 0, :4] = True  # sample 0, step 0: only the midpoint inputs
        want = _sums(x, w).astype(np.float32)
        # the data is order-sensitive: summed backwards, the midpoint entries round up
        assert (
            want[0, 0, 0] == np.float32(1.0) and np.float32(_sums(x, w, slice(None, None, -1))[0, 0, 0]) > 1.0
        )
        got = _block_sums(_net(w), x)
        assert got.dtype == np.float64 and np.array_equal(got.astype(np.float32), want)


def test_code_sums_are_exact_in_a_type_they_cannot_overflow() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (784, 30)).astype(np.int64)
    codes[:300] = 255
    x = rng.random((6, 4, 784)) < 0.02
    got = _block_sums(_net(codes), x)
    assert got.dtype == np.uint16  # MNIST-like spikes: sums of a few 8-bit codes
    assert np.array_equal(got.astype(np.int64), _sums(x, codes.astype(np.float64)))
    x[2, 1, :300] = True  # 300 x 255 > 2^16 - 1: uint16 would wrap
    got = _block_sums(_net(codes), x)
    assert got.dtype == np.int32 and np.array_equal(got.astype(np.int64), _sums(x, codes.astype(np.float64)))
    signed = codes - 128  # signed codes never use uint16
    assert _block_sums(_net(signed), x[:, :, :200]).dtype == np.int16
    assert np.array_equal(_block_sums(_net(signed), x), _sums(x, signed.astype(np.float64)))
