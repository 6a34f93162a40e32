"""Input-current layouts for FP32 inference, timed against the kernels' own (issue 26).

The issue proposed serving several steps (or images) with one load of a weight row, on the view
that the input current is bound by memory. This script times, for one synthetic sample (400
neurons, 250 steps, ~19 % of the pixels on), the same sums computed four ways, all giving the
kernels' numbers (each column summed in float64 in input order):

* ``kernel``: :func:`tinysnn.sim.numba_kernels._input_current` step by step (the shipped code);
* ``blocked``: the currents of a window of steps computed column block by column block, so a
  block of the firing rows stays in L1 across the window's steps;
* ``float64 rows``: the weights converted to float64 once, then summed step by step;
* ``active rows``: only the rows of the inputs that fire in the sample converted to float64.

Run: ``python bench/experiments/input_current_layouts.py`` (prints microseconds per sample, and
whether each layout gave the kernel's currents).
On dev-2core (AMD EPYC, AVX2) the shipped code was the fastest: the float32 -> float64
conversion of each added weight, not memory, bounds it, and the other layouts add passes or
bytes.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from tinysnn.sim import numba_kernels as K

N, T, WINDOW = 400, 250, 50


@njit
def _blocked_window(Wp, idx, ptr, t0, t1, n, block, acc, cur):
    for j0 in range(0, n, block):
        j1 = min(j0 + block, n)
        for t in range(t0, t1):
            for j in range(np.uint64(j0), np.uint64(j1)):  # unsigned: no wrap-around check
                acc[j] = 0.0
            for kk in range(ptr[t], ptr[t + 1]):
                row = Wp[idx[kk]]
                for j in range(np.uint64(j0), np.uint64(j1)):
                    acc[j] += row[j]
            out = cur[t]
            for j in range(np.uint64(j0), np.uint64(j1)):
                out[j] = np.float32(acc[j])


@njit
def kernel(Wp, idx, ptr, acc, cur):
    for t in range(T):
        K._input_current(Wp, idx, ptr[t], ptr[t + 1], N, acc, cur[t])


@njit
def blocked(Wp, idx, ptr, acc, cur, block):
    for t0 in range(0, T, WINDOW):
        _blocked_window(Wp, idx, ptr, t0, min(t0 + WINDOW, T), N, block, acc, cur)


@njit
def active_rows(Wp, idx, ptr, acc, cur, slot, W64):
    m = 0
    for i in range(Wp.shape[0]):
        slot[i] = -1
    for kk in range(idx.shape[0]):
        i = idx[kk]
        if slot[i] < 0:
            slot[i] = m
            for j in range(N):
                W64[m, j] = np.float64(Wp[i, j])
            m += 1
    rows = np.empty(idx.shape[0], np.int32)
    for kk in range(idx.shape[0]):
        rows[kk] = slot[idx[kk]]
    for t in range(T):
        K._input_current(W64, rows, ptr[t], ptr[t + 1], N, acc, cur[t])


def best_of(f, cur, reference, *args) -> str:  # type: ignore[no-untyped-def]  # numba dispatchers
    """Microseconds per sample (best of 3 x 200 calls), and whether ``cur`` equals ``reference``."""
    cur[:] = np.nan
    f(*args)  # compile
    same = reference is None or np.array_equal(cur, reference)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(200):
            f(*args)
        times.append((time.perf_counter() - t0) / 200)
    return f"{min(times) * 1e6:8.1f}  {'same currents' if same else 'DIFFERENT currents'}"


def main() -> None:
    rng = np.random.default_rng(0)
    W = rng.random((784, N), dtype=np.float32) * np.float32(0.3)
    prob = ((rng.random(784) < 0.19) * rng.uniform(0.5, 1.0, 784) * 0.128).astype(np.float32)
    ptr, idx = K.encode_isi(prob, T, 0)
    acc = np.zeros(N)
    cur = np.zeros((T, N), np.float32)
    print(f"one sample: {len(idx)} input spikes, {N} neurons, {T} steps; microseconds per sample, best of 3")
    print(f"kernel (step by step)       {best_of(kernel, cur, None, W, idx, ptr, acc, cur)}")
    reference = cur.copy()
    for block in (32, 64, 128, N):
        line = best_of(blocked, cur, reference, W, idx, ptr, acc, cur, block)
        print(f"blocked, {block:3d} columns x {WINDOW} steps {line}")
    W64 = W.astype(np.float64)
    print(f"float64 rows, step by step  {best_of(kernel, cur, reference, W64, idx, ptr, acc, cur)}")
    slot, active = np.empty(784, np.int64), np.empty((784, N))
    print(
        f"active rows in float64      {best_of(active_rows, cur, reference, W, idx, ptr, acc, cur, slot, active)}"
    )


if __name__ == "__main__":
    main()
