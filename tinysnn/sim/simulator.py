"""One interface over the two simulators: numba kernels on CPU, the torch reference elsewhere.

``backend="auto"`` picks numba on CPU when it is installed and torch otherwise (CUDA always uses
torch). Input trains are drawn per sample from a seed derived from (seed, stream, sample index),
so a sample's train does not depend on the population size, the batch or the thread count.
The two backends draw trains differently (numba: inter-spike intervals; torch: one uniform per
input per step), with the same distribution; given the same trains they compute the same spikes.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from . import sim_numba as K
from . import sim_torch
from .config import EncodingConfig
from .encoding import make_generator, poisson, spike_probability
from .network import Population, constants
from .streams import mix_seed

STREAM_TRAIN, STREAM_ASSIGN, STREAM_TEST = 0, 1, 2
STREAM_LEARN = 7  #: seeds the stochastic-rounding streams of training sample i (tinysnn.streams)
BACKENDS = ("auto", "numba", "torch")


class Simulator:
    """Trains and runs a population on samples, with the fastest backend for its device.

    Args:
        pop: the population (weights updated in place while training).
        enc: presentation window.
        seed: seed of the input trains and of stochastic rounding (whose streams are keyed by the
            sample and each network's own seed, :mod:`tinysnn.streams`).
        backend: ``auto``, ``numba`` (CPU only) or ``torch``.
    """

    def __init__(self, pop: Population, enc: EncodingConfig, seed: int = 0, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        on_cpu = pop.device.type == "cpu"
        if backend == "auto":
            backend = "numba" if (on_cpu and K.HAVE_NUMBA) else "torch"
        if backend == "numba" and not on_cpu:
            raise ValueError("the numba backend runs on CPU only: use backend='torch' for cuda")
        if backend == "numba" and not K.HAVE_NUMBA:
            raise ValueError("backend 'numba' needs numba: pip install numba")
        self.pop, self.enc, self.seed, self.backend = pop, enc, int(seed), backend
        self._consts = constants(pop, enc)
        self.last_stats: Optional[torch.Tensor] = None
        """(P, B, 3) int64 of the last call: input spikes, inhibitory spikes, weight columns
        updated by learning (see :mod:`tinysnn.sim_numba`); the op-count energy model uses them."""
        self.vmem_range = torch.tensor([[np.inf, -np.inf]] * pop.n_networks, dtype=torch.float32)
        """(P, 2) min and max excitatory V_mem seen while training (mV), for range analysis."""
        self._args_key: object = None
        self._args: dict = {}

    # -- helpers -------------------------------------------------------------------------------
    def _sample_seed(self, stream: int, index: int) -> int:
        return mix_seed(self.seed, stream, int(index))

    def _numba_args(self):
        """Kernel arguments (numpy views of the population's tensors), cached while unchanged."""
        pop = self.pop
        if pop.weights.dtype != torch.float32 or not pop.weights.is_contiguous():
            pop.weights = pop.weights.to(torch.float32).contiguous()
        if not pop.theta.is_contiguous():
            pop.theta = pop.theta.contiguous()
        tensors = [pop.weights, pop.theta, pop.sizes, pop.t_update]
        tensors += list(pop.params.values()) + list(pop.quant.values())
        key = (
            tuple((id(x), x.data_ptr(), x._version) for x in tensors[2:])
            + tuple((id(x), x.data_ptr()) for x in tensors[:2])
            + tuple(pop.seeds)
        )
        if self._args_key != key:
            self._args = self._build_numba_args()
            self._args_key = key
        return self._args

    def _build_numba_args(self):
        pop, c = self.pop, self._consts
        fp = np.stack([pop.params[name].cpu().numpy() for name in K.FP_COLUMNS], axis=1)
        fp = np.ascontiguousarray(fp, dtype=np.float32)
        ex, ih = pop.exc, pop.inh
        k = np.array(
            [ex.v_rest, ex.v_reset, ex.v_th, c.dec_exc, ih.v_rest, ih.v_reset, ih.v_th, c.dec_inh,
             c.dec_post, c.dec_theta_sample, c.leak_exc, c.leak_inh, c.leak_theta_sample],
            dtype=np.float32,
        )  # fmt: skip
        T = int(self.enc.time_steps)
        table = np.empty(T + 1, np.float32)
        table[0] = 1.0
        dec = np.float32(c.dec_pre)
        for i in range(1, T + 1):
            table[i] = table[i - 1] * dec
        q = {t: np.ascontiguousarray(pop.quant[t].cpu().numpy(), dtype=np.float32) for t in pop.quant}
        return dict(
            variant=pop.variant.code,
            W=pop.weights.numpy(),
            theta=pop.theta.numpy(),
            sizes=pop.sizes.cpu().numpy().astype(np.int64),
            fp=fp,
            t_upd=pop.t_update.cpu().numpy().astype(np.int64),
            net_seeds=pop.network_seeds.cpu().numpy(),
            q=q,
            k=k,
            refr_e=np.int32(c.refrac_exc),
            refr_i=np.int32(c.refrac_inh),
            table=table,
            T=T,
        )

    def _vrange_np(self) -> np.ndarray:
        return self.vmem_range.numpy()

    def encode(self, image: torch.Tensor, stream: int, index: int) -> torch.Tensor:
        """The dense bool train (T, n_in) this simulator presents for a sample."""
        T = int(self.enc.time_steps)
        if self.backend == "numba":
            prob = spike_probability(image.cpu(), self.enc).numpy()
            ptr, idx = K.encode_isi(prob, T, self._sample_seed(stream, index))
            dense = np.zeros((T, prob.shape[0]), dtype=bool)
            for t in range(T):
                dense[t, idx[ptr[t] : ptr[t + 1]]] = True
            return torch.from_numpy(dense)
        g = make_generator(self._sample_seed(stream, index), self.pop.device)
        return poisson(image.to(self.pop.device), self.enc, g)

    # -- training ------------------------------------------------------------------------------
    def train_sample(
        self, image: torch.Tensor, index: int, train: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Learn from one sample (or from a given dense train (T, n_in)); counts (P, N)."""
        if self.backend == "torch":
            if train is None:
                train = self.encode(image, STREAM_TRAIN, index)
            counts, self.last_stats = sim_torch.train_sample(
                self.pop, train, self.enc, self._sample_seed(STREAM_LEARN, index), self.vmem_range
            )
            return counts
        a = self._numba_args()
        if train is None:
            prob = spike_probability(image.cpu(), self.enc).numpy()
            ptr, idx = K.encode_isi(prob, a["T"], self._sample_seed(STREAM_TRAIN, index))
        else:
            ptr, idx = K.dense_to_csr(train.cpu().numpy())
        counts = np.zeros((self.pop.n_networks, 1, self.pop.n_max), np.int32)
        stats = np.zeros((self.pop.n_networks, 1, 3), np.int64)
        kernel = K.train_kernel_serial if self.pop.n_networks == 1 else K.train_kernel
        kernel(
            a["variant"], ptr, idx, a["W"], a["theta"], a["sizes"], a["fp"], a["t_upd"],
            a["q"]["weights"], a["q"]["vmem"], a["q"]["vth"], a["k"], a["refr_e"], a["refr_i"],
            a["table"], a["T"], self._sample_seed(STREAM_LEARN, index), a["net_seeds"], counts, stats,
            self._vrange_np(),
        )  # fmt: skip
        self.last_stats = torch.from_numpy(stats)
        return torch.from_numpy(counts[:, 0, :])

    # -- inference -----------------------------------------------------------------------------
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
        if self.backend == "torch":
            with torch.no_grad():
                if trains is None:
                    g = make_generator(self._sample_seed(stream, first_index), self.pop.device)
                    trains = poisson(images.to(self.pop.device), self.enc, g)
                counts, self.last_stats = sim_torch.infer(self.pop, trains, self.enc, seeds)
                return counts
        a = self._numba_args()
        counts = np.zeros((self.pop.n_networks, B, self.pop.n_max), np.int32)
        stats = np.zeros((self.pop.n_networks, B, 3), np.int64)
        if trains is None:
            probs = np.ascontiguousarray(spike_probability(images.cpu(), self.enc).numpy())
            K.infer_kernel(
                a["variant"], probs, np.array(seeds, dtype=np.int64), a["W"], a["theta"], a["sizes"],
                a["fp"], a["t_upd"], a["q"]["weights"], a["q"]["vmem"], a["k"], a["refr_e"], a["refr_i"],
                a["table"], a["T"], a["net_seeds"], counts, stats,
            )  # fmt: skip
        else:
            parts = [K.dense_to_csr(trains[:, b].cpu().numpy()) for b in range(B)]
            ptrs = np.stack([p for p, _ in parts])
            offs = np.cumsum([0] + [len(i) for _, i in parts]).astype(np.int64)
            idxs = np.concatenate([i for _, i in parts]) if parts else np.zeros(0, np.int32)
            K.infer_trains_kernel(
                a["variant"], ptrs, idxs.astype(np.int32), offs, a["W"], a["theta"], a["sizes"],
                a["fp"], a["t_upd"], a["q"]["vmem"], a["k"], a["refr_e"], a["refr_i"], a["table"],
                a["T"], np.array(seeds, dtype=np.int64), a["net_seeds"], counts, stats,
            )  # fmt: skip
        self.last_stats = torch.from_numpy(stats)
        return torch.from_numpy(counts)


def default_backend(device: Union[str, torch.device]) -> str:
    return "numba" if torch.device(device).type == "cpu" and K.HAVE_NUMBA else "torch"


__all__ = ["BACKENDS", "STREAM_ASSIGN", "STREAM_TEST", "STREAM_TRAIN", "Simulator", "default_backend"]
