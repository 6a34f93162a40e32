"""The simulators of a population: one :class:`Simulator` over two backends chosen once.

* :mod:`tinysnn.sim.numba_kernels`: the CPU kernels (numba), element by element, fast;
* :mod:`tinysnn.sim.torch_backend`: the reference window on whole tensors (CPU or CUDA), stringing
  together the equations of :mod:`tinysnn.sim.equations`.

Each equation has one function per backend: ``equations.adaptive_potentiation`` and its numba twin
``numba_kernels._adaptive_potentiation``, ... (docs/method.md §1-2 lists them); given the same input
trains the backends compute the same spikes (tests/sim).
"""

from __future__ import annotations

from .simulator import (
    BACKENDS,
    STREAM_ASSIGN,
    STREAM_LEARN,
    STREAM_TEST,
    STREAM_TRAIN,
    Simulator,
    default_backend,
)

__all__ = [
    "BACKENDS",
    "STREAM_ASSIGN",
    "STREAM_LEARN",
    "STREAM_TEST",
    "STREAM_TRAIN",
    "Simulator",
    "default_backend",
]
