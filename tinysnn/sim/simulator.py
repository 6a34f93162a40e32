"""One interface over the two simulators: numba kernels on CPU, the torch reference elsewhere.

``backend="auto"`` picks numba on CPU when it is installed and torch otherwise (CUDA always uses
torch); ``torch-compile`` is the torch backend with each step compiled (``torch.compile``: fused
kernels, CUDA graphs on CUDA), eager where the installed torch cannot compile. Input trains are
drawn per sample from a seed derived from (seed, stream, sample index), so a sample's train does
not depend on the population size, the batch or the thread count.
The two backends draw trains differently (numba: inter-spike intervals; torch: one uniform per
input per step), with the same distribution; given the same trains they compute the same spikes.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import torch

from ..config import BACKENDS, Backend, EncodingConfig
from ..network import Population
from ..streams import STREAM_ASSIGN, STREAM_LEARN, STREAM_TEST, STREAM_TRAIN, mix_seed
from .numba_backend import NumbaBackend
from .numba_kernels import HAVE_NUMBA
from .torch_backend import TorchBackend


class SimulatorBackend(Protocol):
    """What a simulator backend does; :class:`NumbaBackend` and :class:`TorchBackend` implement it."""

    name: str

    def encode(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        """The dense bool train (T, n_in) this backend presents for a sample drawn from ``seed``."""

    def train_samples(
        self,
        images: torch.Tensor,
        trains: Optional[torch.Tensor],
        train_seeds: Sequence[int],
        learn_seeds: Sequence[int],
        vmem_range: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Learn from B samples in order (from dense ``trains`` (T, B, n_in) when given); counts
        (P, B, N) and statistics (P, B, 3); the V_mem range seen is merged into ``vmem_range`` (P, 2)."""

    def infer(
        self, images: torch.Tensor, trains: Optional[torch.Tensor], seeds: Sequence[int]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Counts (P, B, N) and statistics (P, B, 3) of a batch without learning."""


def default_backend(device: Union[str, torch.device]) -> Backend:
    """numba on CPU where it is installed, torch otherwise (CUDA always uses torch)."""
    return Backend.NUMBA if torch.device(device).type == "cpu" and HAVE_NUMBA else Backend.TORCH


class Simulator:
    """Trains and runs a population on samples, with the backend chosen once for its device.

    Args:
        pop: the population (weights updated in place while training).
        enc: presentation window.
        seed: seed of the input trains and of stochastic rounding (whose streams are keyed by the
            sample and each network's own seed, :mod:`tinysnn.streams`).
        backend: ``auto``, ``numba`` (CPU only), ``torch`` or ``torch-compile``.
    """

    def __init__(
        self, pop: Population, enc: EncodingConfig, seed: int = 0, backend: Union[str, Backend] = Backend.AUTO
    ) -> None:
        chosen = Backend.parse(backend)
        if chosen == Backend.AUTO:
            chosen = default_backend(pop.device)
        if chosen == Backend.NUMBA and pop.device.type != "cpu":
            raise ValueError(
                "the numba backend runs on CPU only: use backend='torch' or 'torch-compile' for cuda"
            )
        if chosen == Backend.NUMBA and not HAVE_NUMBA:
            raise ValueError("backend 'numba' needs numba: pip install numba")
        self.pop, self.enc, self.seed = pop, enc, int(seed)
        self.backend = chosen
        """The backend that runs (``auto`` resolved)."""
        self._impl: SimulatorBackend = (
            NumbaBackend(pop, enc)
            if chosen == Backend.NUMBA
            else TorchBackend(pop, enc, compiled=chosen == Backend.TORCH_COMPILE)
        )
        self.last_stats: Optional[torch.Tensor] = None
        """(P, B, 3) int64 of the last call: input spikes, inhibitory spikes, weight columns
        updated by learning (see :mod:`tinysnn.sim.numba_kernels`); the op-count energy model uses them."""
        self.vmem_range = torch.tensor([[np.inf, -np.inf]] * pop.n_networks, dtype=torch.float32)
        """(P, 2) min and max excitatory V_mem seen while training (mV), for range analysis."""

    def _sample_seed(self, stream: int, index: int) -> int:
        return mix_seed(self.seed, stream, int(index))

    def encode(self, image: torch.Tensor, stream: int, index: int) -> torch.Tensor:
        """The dense bool train (T, n_in) this simulator presents for a sample."""
        return self._impl.encode(image, self._sample_seed(stream, index))

    def train_sample(
        self, image: torch.Tensor, index: int, train: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Learn from one sample (or from a given dense train (T, n_in)); counts (P, N)."""
        trains = None if train is None else train[:, None, :]
        return self.train_samples(image[None], index, trains)[:, 0, :]

    def train_samples(
        self, images: torch.Tensor, first_index: int, trains: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Learn from a batch of images (B, n_in) in order, sample b being sample ``first_index + b``
        of the training stream (or from given dense trains (T, B, n_in)); counts (P, B, N). The
        same numbers as B calls of :meth:`train_sample`, with the per-call work done once."""
        B = int(images.shape[0]) if trains is None else int(trains.shape[1])
        indices = range(first_index, first_index + B)
        counts, self.last_stats = self._impl.train_samples(
            images,
            trains,
            [self._sample_seed(STREAM_TRAIN, i) for i in indices],
            [self._sample_seed(STREAM_LEARN, i) for i in indices],
            self.vmem_range,
        )
        return counts

    def infer(
        self,
        images: torch.Tensor,
        stream: int,
        first_index: int = 0,
        trains: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Spike counts (P, B, N) of a batch of images (B, n_in) without learning.

        Sample b of the batch uses the train of sample ``first_index + b`` in ``stream``, or
        ``trains[:, b]`` when dense trains (T, B, n_in) are given.
        """
        B = int(images.shape[0]) if trains is None else int(trains.shape[1])
        seeds = [self._sample_seed(stream, first_index + b) for b in range(B)]
        counts, self.last_stats = self._impl.infer(images, trains, seeds)
        return counts


__all__ = [
    "BACKENDS",
    "STREAM_ASSIGN",
    "STREAM_LEARN",
    "STREAM_TEST",
    "STREAM_TRAIN",
    "Backend",
    "Simulator",
    "SimulatorBackend",
    "default_backend",
]
