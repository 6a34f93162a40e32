"""The numba backend: the population's tensors as numpy views, handed to the CPU kernels.

:class:`NumbaBackend` is one of the two implementations of :class:`tinysnn.sim.simulator.SimulatorBackend`;
the kernels themselves are in :mod:`tinysnn.sim.numba_kernels`.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, TypedDict

import numpy as np
import torch

import tinysnn.sim.numba_kernels as K

from ..config import EncodingConfig
from ..encoding import spike_probability
from ..network import FLOAT_PARAMS, INT_PARAMS, Population, constants


def _in_cache(kernel: Any) -> bool:
    """Whether numba's on-disk cache holds ``kernel`` compiled from the current source (an index
    file newer than the kernels' source): then its first call loads it in seconds."""
    folder = Path(kernel.stats.cache_path)
    name = f"{Path(K.__file__).stem}.{kernel.py_func.__name__}-"
    source_time = Path(K.__file__).stat().st_mtime
    return any(p.stat().st_mtime >= source_time for p in folder.glob(f"{name}*.nbi"))


@contextmanager
def _said_if_compiled(kernel: Any) -> Iterator[None]:
    """Around a kernel call: the first call of a kernel that is not cached on disk compiles it,
    which takes a minute or more on a small machine, so say so on stderr, and how long it took."""
    if kernel.overloads or _in_cache(kernel):  # not .signatures: it rebuilds a list, 0.1-0.3 ms a call
        yield
        return
    name = kernel.py_func.__name__
    print(
        f"tinysnn: compiling the numba kernel {name} for this machine, once (cached in "
        f"{kernel.stats.cache_path})...",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    yield
    print(f"tinysnn: {name} compiled in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def _csr_batch(trains: torch.Tensor) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense trains (T, B, n_in) as the kernels' CSR batch (ptrs (B, T + 1), idxs, offs (B + 1))."""
    parts = [K.dense_to_csr(trains[:, b].cpu().numpy()) for b in range(trains.shape[1])]
    ptrs = np.stack([p for p, _ in parts])
    offs = np.cumsum([0] + [len(i) for _, i in parts]).astype(np.int64)
    idxs = np.concatenate([i for _, i in parts]).astype(np.int32) if parts else np.zeros(0, np.int32)
    return ptrs, idxs, offs


class _KernelArgs(TypedDict):
    """The arguments the kernels share (numpy views of the population's tensors)."""

    variant: int
    W: np.ndarray
    theta: np.ndarray
    sizes: np.ndarray
    fp: np.ndarray
    ip: np.ndarray
    t_upd: np.ndarray
    net_seeds: np.ndarray
    q: Dict[str, np.ndarray]
    k: np.ndarray
    refr_e: np.int32
    refr_i: np.int32
    table: np.ndarray
    T: int


class NumbaBackend:
    """Trains and runs a CPU population with the numba kernels (:mod:`tinysnn.sim.numba_kernels`)."""

    name = "numba"

    def __init__(self, pop: Population, enc: EncodingConfig) -> None:
        self.pop, self.enc = pop, enc
        self._consts = constants(pop, enc)
        self._args_key: object = None
        self._args: Optional[_KernelArgs] = None
        self.profile = np.zeros(0, np.int64)
        """Ticks of the time-stamp counter per phase (:data:`numba_kernels.PHASES`) the kernels add
        to when this holds one counter per phase (bench/profile_kernels.py; one thread); empty: none."""

    def _kernel_args(self) -> _KernelArgs:
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
        if self._args is None or self._args_key != key:
            self._args = self._build_kernel_args()
            self._args_key = key
        return self._args

    def _build_kernel_args(self) -> _KernelArgs:
        pop, c = self.pop, self._consts
        fp = np.stack([pop.params[name].cpu().numpy() for name in FLOAT_PARAMS], axis=1)
        fp = np.ascontiguousarray(fp, dtype=np.float32)
        ip = np.stack([pop.params[name].cpu().numpy() for name in INT_PARAMS], axis=1)
        ip = np.ascontiguousarray(ip, dtype=np.int64)
        ex, ih = pop.exc, pop.inh
        k = np.array(
            [
                ex.v_rest,
                ex.v_reset,
                ex.v_th,
                c.dec_exc,
                ih.v_rest,
                ih.v_reset,
                ih.v_th,
                c.dec_inh,
                c.dec_post,
                c.dec_theta_sample,
                c.leak_exc,
                c.leak_inh,
                c.leak_theta_sample,
            ],
            dtype=np.float32,
        )
        T = int(self.enc.time_steps)
        table = np.empty(T + 1, np.float32)
        table[0] = 1.0
        dec = np.float32(c.dec_pre)
        for i in range(1, T + 1):
            table[i] = table[i - 1] * dec
        q = {t: np.ascontiguousarray(pop.quant[t].cpu().numpy(), dtype=np.float32) for t in pop.quant}
        return _KernelArgs(
            variant=pop.variant.code,
            W=pop.weights.numpy(),
            theta=pop.theta.numpy(),
            sizes=pop.sizes.cpu().numpy().astype(np.int64),
            fp=fp,
            ip=ip,
            t_upd=pop.t_update.cpu().numpy().astype(np.int64),
            net_seeds=pop.network_seeds.cpu().numpy(),
            q=q,
            k=k,
            refr_e=np.int32(c.refrac_exc),
            refr_i=np.int32(c.refrac_inh),
            table=table,
            T=T,
        )

    def encode(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        """The dense bool train (T, n_in) of a sample drawn from ``seed`` (inter-spike intervals)."""
        T = int(self.enc.time_steps)
        prob = spike_probability(image.cpu(), self.enc).numpy()
        ptr, idx = K.encode_isi(prob, T, seed)
        dense = np.zeros((T, prob.shape[0]), dtype=bool)
        for t in range(T):
            dense[t, idx[ptr[t] : ptr[t + 1]]] = True
        return torch.from_numpy(dense)

    def train_samples(
        self,
        images: torch.Tensor,
        trains: Optional[torch.Tensor],
        train_seeds: Sequence[int],
        learn_seeds: Sequence[int],
        vmem_range: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Learn from B samples in order, in one kernel call: counts (P, B, N) and kernel statistics
        (P, B, 3). Sample b's train is drawn from ``train_seeds[b]`` unless dense ``trains``
        (T, B, n_in) are given."""
        a = self._kernel_args()
        B = len(learn_seeds)
        if trains is None:
            probs = np.ascontiguousarray(spike_probability(images.cpu(), self.enc).numpy().reshape(B, -1))
            ptrs, idxs, offs = K.encode_batch(probs, a["T"], np.array(train_seeds, dtype=np.int64))
        else:
            ptrs, idxs, offs = _csr_batch(trains)
        counts = np.zeros((self.pop.n_networks, B, self.pop.n_max), np.int32)
        stats = np.zeros((self.pop.n_networks, B, 3), np.int64)
        kernel = K.train_kernel_serial if self.pop.n_networks == 1 else K.train_kernel
        with _said_if_compiled(kernel):
            kernel(
                a["variant"],
                ptrs,
                idxs,
                offs,
                a["W"],
                a["theta"],
                a["sizes"],
                a["fp"],
                a["ip"],
                a["t_upd"],
                a["q"]["weights"],
                a["q"]["vmem"],
                a["q"]["vth"],
                a["k"],
                a["refr_e"],
                a["refr_i"],
                a["table"],
                a["T"],
                np.array(learn_seeds, dtype=np.int64),
                a["net_seeds"],
                counts,
                stats,
                vmem_range.numpy(),
                self.profile,
            )
        return torch.from_numpy(counts), torch.from_numpy(stats)

    def infer(
        self, images: torch.Tensor, trains: Optional[torch.Tensor], seeds: Sequence[int]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Counts (P, B, N) and statistics (P, B, 3) without learning; sample b's train is drawn from
        ``seeds[b]`` unless dense ``trains`` (T, B, n_in) are given."""
        a = self._kernel_args()
        B = len(seeds)
        counts = np.zeros((self.pop.n_networks, B, self.pop.n_max), np.int32)
        stats = np.zeros((self.pop.n_networks, B, 3), np.int64)
        if trains is None:
            probs = np.ascontiguousarray(spike_probability(images.cpu(), self.enc).numpy())
            with _said_if_compiled(K.infer_kernel):
                K.infer_kernel(
                    a["variant"],
                    probs,
                    np.array(seeds, dtype=np.int64),
                    a["W"],
                    a["theta"],
                    a["sizes"],
                    a["fp"],
                    a["ip"],
                    a["t_upd"],
                    a["q"]["weights"],
                    a["q"]["vmem"],
                    a["k"],
                    a["refr_e"],
                    a["refr_i"],
                    a["table"],
                    a["T"],
                    a["net_seeds"],
                    counts,
                    stats,
                    self.profile,
                )
        else:
            ptrs, idxs, offs = _csr_batch(trains)
            with _said_if_compiled(K.infer_trains_kernel):
                K.infer_trains_kernel(
                    a["variant"],
                    ptrs,
                    idxs,
                    offs,
                    a["W"],
                    a["theta"],
                    a["sizes"],
                    a["fp"],
                    a["ip"],
                    a["t_upd"],
                    a["q"]["vmem"],
                    a["k"],
                    a["refr_e"],
                    a["refr_i"],
                    a["table"],
                    a["T"],
                    np.array(seeds, dtype=np.int64),
                    a["net_seeds"],
                    counts,
                    stats,
                    self.profile,
                )
        return torch.from_numpy(counts), torch.from_numpy(stats)
