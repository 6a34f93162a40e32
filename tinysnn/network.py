"""A population of P spiking networks simulated together.

All P networks share the variant, the input size and the LIF constants; each has its own size
(masking pads smaller networks to the largest N), seed, learning constants, inhibition strength,
normalization total and fixed-point formats, stored as ``(P,)`` tensors. One network is P = 1.

Learned state that persists across samples: weights ``(P, n_in, N)`` and adaptive thresholds theta
``(P, N)``. The per-sample state (membrane potentials, refractory counters, traces) is reset at
the start of every sample (docs/method.md §1) and lives inside the simulation kernels.

Topologies (docs/method.md §1):

* ``diehl_cook`` / ``sl_stdp``: N excitatory and N inhibitory neurons; exc -> inh one-to-one
  (w_exc_inh), inh -> exc all-but-self (w_inh_exc). A spike of an excitatory neuron at step t
  drives its inhibitory partner at t + 1, whose spike inhibits the other excitatory neurons at t + 2.
* ``tinysnn``: no inhibitory neurons; a spike of excitatory neuron j at step t lowers v of every
  other excitatory neuron by w_inh at step t + 1 (direct lateral inhibition, one scalar).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import torch

from .config import ConfigError, EncodingConfig, LearningConfig, LIFParams, NetworkConfig, Variant
from .quant.formats import LEAK_BITS, PARAMS, ROW_WIDTH


class ParamField(NamedTuple):
    """One per-network constant of a population: a (P,) tensor in :attr:`Population.params`."""

    name: str
    """Its key, and the attribute of its source config."""
    source: str
    """``network`` (:class:`NetworkConfig`), ``learning`` (:class:`LearningConfig`) or ``quant``
    (set by :func:`tinysnn.quant_setup.apply_quant_rows`; 0 until then)."""
    integer: bool
    """int64 (a flag or a code) rather than float32."""


#: The quantized parameters (:data:`tinysnn.quant.PARAMS`); each has a (P, 3) float32 row [scale = 2^f, lo, hi] in
#: :attr:`Population.quant` and its rounding code in the integer field :func:`rounding_field` of
#: :attr:`Population.params`.
QUANT_TARGETS = PARAMS


def rounding_field(target: str) -> str:
    """The key in :attr:`Population.params` of a quantized target's rounding code (``round_vmem``)."""
    return f"round_{target}"


#: The per-network constants, declared once: their keys and dtypes in :attr:`Population.params`,
#: and, in this order, the columns of the kernels' float32 matrix (the float fields,
#: :data:`FLOAT_PARAMS`) and int64 matrix (the integer fields, :data:`INT_PARAMS`). ``one_spike`` is
#: 0 or 1; ``norm_rule`` is the code of the ITQ normalization rule
#: (:attr:`tinysnn.quant.Normalization.code`; 0 = sum); ``round_weights``, ``round_vmem`` and
#: ``round_vth`` are the rounding codes of the quantized targets (:attr:`tinysnn.quant.Rounding.code`;
#: 0 = :data:`tinysnn.quant.NONE`, FP32).
PARAM_LAYOUT = (
    ParamField("theta_plus", "network", False),
    ParamField("w_exc_inh", "network", False),
    ParamField("w_inh_exc", "network", False),
    ParamField("w_inh", "network", False),
    ParamField("w_max", "network", False),
    ParamField("norm_total", "network", False),
    ParamField("nu_pre", "learning", False),
    ParamField("nu_post", "learning", False),
    ParamField("eta_p", "learning", False),
    ParamField("eta_d", "learning", False),
    ParamField("x_th", "learning", False),
    ParamField("eta_post", "learning", False),
    ParamField("n_th", "learning", False),
    ParamField("one_spike", "network", True),
    ParamField("norm_rule", "quant", True),
    *(ParamField(rounding_field(target), "quant", True) for target in QUANT_TARGETS),
)
FLOAT_PARAMS = tuple(f.name for f in PARAM_LAYOUT if not f.integer)  #: columns of the kernels' float32 matrix
INT_PARAMS = tuple(f.name for f in PARAM_LAYOUT if f.integer)  #: columns of the kernels' int64 matrix
#: Where the rows of states saved before the rounding codes became integer fields kept each
#: target's code: a 4th, float32 column, [2^f, lo, hi, mode].
_LEGACY_MODE_COLUMN = 3


def param_dtype(field: ParamField) -> torch.dtype:
    """The dtype of a per-network constant's (P,) tensor."""
    return torch.int64 if field.integer else torch.float32


@dataclass
class Population:
    """P networks of one variant, with per-network settings as (P,) tensors."""

    variant: Variant
    n_input: int
    sizes: torch.Tensor
    """(P,) int64: excitatory neurons of each network."""
    weights: torch.Tensor
    """(P, n_in, N) float32 input weights, N = max(sizes); padded columns are 0."""
    theta: torch.Tensor
    """(P, N) float32 adaptive threshold increments, mV."""
    exc: LIFParams
    inh: LIFParams
    tau_theta: float
    tau_pre: float
    tau_post: float
    params: Dict[str, torch.Tensor]
    """Per-network constants, each (P,), keyed and typed as :data:`PARAM_LAYOUT` declares."""
    t_update: torch.Tensor
    """(P,) int64 tinysnn update period T_u in steps."""
    quant: Dict[str, torch.Tensor] = field(default_factory=dict)
    """Per-target (P, 3) float32 fixed-point rows [scale, lo, hi]; the rounding codes are
    :meth:`rounding` (:data:`tinysnn.quant.NONE`, 0, means FP32: no quantization)."""
    seeds: List[int] = field(default_factory=list)
    """Weight-initialization seed of each network; it also keys the network's stochastic-rounding
    stream (:mod:`tinysnn.streams`), so that stream never depends on the network's position."""

    @property
    def n_networks(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_max(self) -> int:
        return int(self.weights.shape[2])

    @property
    def device(self) -> torch.device:
        return self.weights.device

    @property
    def mask(self) -> torch.Tensor:
        """(P, N) bool: True for neurons that exist."""
        idx = torch.arange(self.n_max, device=self.device)
        return idx[None, :] < self.sizes.to(self.device)[:, None]

    def rounding(self, target: str) -> torch.Tensor:
        """(P,) int64 rounding codes of a quantized target (:data:`QUANT_TARGETS`)."""
        return self.params[rounding_field(target)]

    @property
    def network_seeds(self) -> torch.Tensor:
        """(P,) int64 seeds of the networks, on the population's device."""
        if len(self.seeds) != self.n_networks:
            raise ValueError(f"the population holds {self.n_networks} networks but {len(self.seeds)} seeds")
        return torch.tensor(self.seeds, dtype=torch.int64, device=self.device)

    def to(self, device: Union[str, torch.device]) -> "Population":
        dev = torch.device(device)
        self.weights = self.weights.to(dev)
        self.theta = self.theta.to(dev)
        self.sizes = self.sizes.to(dev)
        self.t_update = self.t_update.to(dev)
        self.params = {k: v.to(dev) for k, v in self.params.items()}
        self.quant = {k: v.to(dev) for k, v in self.quant.items()}
        return self

    def select(self, index: int) -> "Population":
        """Network ``index`` as a population of one (tensors copied)."""
        sl = slice(index, index + 1)
        n = int(self.sizes[index])
        return Population(
            variant=self.variant,
            n_input=self.n_input,
            sizes=self.sizes[sl].clone(),
            weights=self.weights[sl, :, :n].clone(),
            theta=self.theta[sl, :n].clone(),
            exc=self.exc,
            inh=self.inh,
            tau_theta=self.tau_theta,
            tau_pre=self.tau_pre,
            tau_post=self.tau_post,
            params={k: v[sl].clone() for k, v in self.params.items()},
            t_update=self.t_update[sl].clone(),
            quant={k: v[sl].clone() for k, v in self.quant.items()},
            seeds=self.seeds[index : index + 1],
        )

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to restore the population (tensors on CPU)."""
        return {
            "variant": self.variant.value,
            "n_input": self.n_input,
            "sizes": self.sizes.cpu(),
            "weights": self.weights.cpu(),
            "theta": self.theta.cpu(),
            "params": {k: v.cpu() for k, v in self.params.items()},
            "t_update": self.t_update.cpu(),
            "quant": {k: v.cpu() for k, v in self.quant.items()},
            "seeds": list(self.seeds),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore weights, thresholds and settings saved by :meth:`state_dict` (a record of tensors, lists
        and numbers, typed as ``torch.load`` gives it back). States saved with (P, 4) rows
        [2^f, lo, hi, mode] (before the rounding codes became the ``round_*`` fields) load too: the
        rows' first three columns, and the codes from the fourth."""
        w = state["weights"]
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(self.weights.shape):
            raise ValueError(
                f"state has weights of shape {getattr(w, 'shape', None)}, the population has "
                f"{tuple(self.weights.shape)}: it belongs to another configuration"
            )
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            # every rule keeps weights in [0, w_max]; the kernels rely on it (a weight 0 - 0 is 0)
            raise ValueError(
                "state has negative or non-finite weights: it is damaged; use another saved state"
            )
        dev = self.device
        self.weights = w.to(dev).clone()
        self.theta = state["theta"].to(dev).clone()
        self.sizes = state["sizes"].to(dev).clone()
        self.t_update = state["t_update"].to(dev).clone()
        saved: Dict[str, torch.Tensor] = state["params"]
        rows: Dict[str, torch.Tensor] = state["quant"]
        legacy = {  # the rounding codes of states that kept them in the rows (see _LEGACY_MODE_COLUMN)
            rounding_field(target): r[:, _LEGACY_MODE_COLUMN]
            for target, r in rows.items()
            if r.shape[1] > _LEGACY_MODE_COLUMN
        }
        self.params = {}
        for f in PARAM_LAYOUT:  # states saved before a quant setting existed hold its default, 0;
            # older states kept the integer settings as float32 columns
            if f.source == "quant":
                value = saved.get(f.name, legacy.get(f.name, torch.zeros(self.n_networks)))
            else:
                value = saved[f.name]
            self.params[f.name] = value.to(device=dev, dtype=param_dtype(f)).clone()
        self.quant = {k: v[:, :ROW_WIDTH].to(dev).clone() for k, v in rows.items()}
        if "seeds" in state:
            self.seeds = [int(s) for s in state["seeds"]]


def build_population(
    networks: Union[NetworkConfig, Sequence[NetworkConfig]],
    learning: Union[LearningConfig, Sequence[LearningConfig], None] = None,
    seeds: Union[int, Sequence[int]] = 0,
    device: Union[str, torch.device] = "cpu",
) -> Population:
    """Create P networks with fresh weights U[0, w_init_max) and zero thresholds.

    Args:
        networks: one config (P = 1, or broadcast to ``len(seeds)``) or one per network. All must
            share variant, input size and LIF constants; sizes may differ (padded and masked).
        learning: learning constants, one or one per network.
        seeds: weight-initialization seed of each network. A network's weights depend only on its
            own seed and size, so a network trained in a population equals the same network alone.
        device: ``cpu`` or ``cuda``.
    """
    seed_list = [int(seeds)] if isinstance(seeds, int) else [int(s) for s in seeds]
    nets = [networks] if isinstance(networks, NetworkConfig) else list(networks)
    if learning is None:
        learning = LearningConfig()
    learns = [learning] if isinstance(learning, LearningConfig) else list(learning)
    p = max(len(seed_list), len(nets), len(learns))
    for name, seq in (("seeds", seed_list), ("networks", nets), ("learning", learns)):
        if len(seq) not in (1, p):
            raise ConfigError(f"{name} has {len(seq)} entries; expected 1 or {p} (one per network)")
    seed_list = seed_list * p if len(seed_list) == 1 else seed_list
    nets = nets * p if len(nets) == 1 else nets
    learns = learns * p if len(learns) == 1 else learns
    first = nets[0]
    for c in nets[1:]:
        if (c.variant, c.n_input, c.exc, c.inh, c.tau_theta) != (
            first.variant,
            first.n_input,
            first.exc,
            first.inh,
            first.tau_theta,
        ):
            raise ConfigError("networks of one population must share variant, n_input and LIF constants")
    for lc in learns[1:]:
        if (lc.tau_pre, lc.tau_post) != (learns[0].tau_pre, learns[0].tau_post):
            raise ConfigError("networks of one population must share the trace time constants")
    n_max = max(c.n_neurons for c in nets)
    check_memory(p, first.n_input, n_max)
    dev = torch.device(device)
    w = torch.zeros((p, first.n_input, n_max), dtype=torch.float32)
    for k, (c, s) in enumerate(zip(nets, seed_list)):
        g = torch.Generator().manual_seed(s)
        w[k, :, : c.n_neurons] = torch.rand((first.n_input, c.n_neurons), generator=g) * c.w_init_max

    def column(f: ParamField) -> torch.Tensor:
        configs = learns if f.source == "learning" else nets
        values = [0 if f.source == "quant" else getattr(c, f.name) for c in configs]
        return torch.tensor(values, dtype=param_dtype(f), device=dev)

    params = {f.name: column(f) for f in PARAM_LAYOUT}
    quant = {t: torch.zeros((p, ROW_WIDTH), dtype=torch.float32, device=dev) for t in QUANT_TARGETS}
    return Population(
        variant=first.variant,
        n_input=first.n_input,
        sizes=torch.tensor([c.n_neurons for c in nets], dtype=torch.int64, device=dev),
        weights=w.to(dev),
        theta=torch.zeros((p, n_max), dtype=torch.float32, device=dev),
        exc=first.exc,
        inh=first.inh,
        tau_theta=first.tau_theta,
        tau_pre=learns[0].tau_pre,
        tau_post=learns[0].tau_post,
        params=params,
        t_update=torch.tensor([int(lc.t_update) for lc in learns], dtype=torch.int64, device=dev),
        quant=quant,
        seeds=seed_list,
    )


@dataclass(frozen=True)
class Constants:
    """Per-step constants derived from dt (float32-rounded exactly as the kernels use them)."""

    dec_exc: float
    dec_inh: float
    dec_pre: float
    dec_post: float
    dec_theta_sample: float
    """exp(-T dt / tau_theta): theta decays once per sample (equal to T per-step decays)."""
    refrac_exc: int
    refrac_inh: int
    leak_exc: int
    """Fixed-point decay of the excitatory V_mem: (1 - exp(-dt/tau)) in units of 2^-LEAK_BITS."""
    leak_inh: int
    """The same for the inhibitory V_mem (baselines)."""
    leak_theta_sample: int
    """The same for theta's once-per-sample decay, (1 - exp(-T dt / tau_theta)) 2^LEAK_BITS."""


def constants(pop: Population, enc: EncodingConfig) -> Constants:
    """Decay factors and refractory periods in steps for a population and time step."""
    dt = float(enc.dt)

    def f32(x: float) -> float:
        return float(torch.tensor(x, dtype=torch.float32))

    def leak(span: float, tau: float) -> int:
        return int(round(-math.expm1(-span / tau) * 2**LEAK_BITS))

    return Constants(
        dec_exc=f32(math.exp(-dt / pop.exc.tau)),
        dec_inh=f32(math.exp(-dt / pop.inh.tau)),
        dec_pre=f32(math.exp(-dt / pop.tau_pre)),
        dec_post=f32(math.exp(-dt / pop.tau_post)),
        dec_theta_sample=f32(math.exp(-dt * enc.time_steps / pop.tau_theta)),
        refrac_exc=int(round(pop.exc.refractory / dt)),
        refrac_inh=int(round(pop.inh.refractory / dt)),
        leak_exc=leak(dt, pop.exc.tau),
        leak_inh=leak(dt, pop.inh.tau),
        leak_theta_sample=leak(dt * enc.time_steps, pop.tau_theta),
    )


def population_bytes(n_networks: int, n_input: int, n_neurons: int) -> int:
    """Bytes a population's weights take (float32, P x n_input x N): the bulk of its memory."""
    return 4 * int(n_networks) * int(n_input) * int(n_neurons)


#: Python bookkeeping per network (configs, seeds, per-network settings and results), bytes: a
#: generous round figure (about 300 B were measured for a population sharing one config).
NETWORK_OVERHEAD_BYTES = 2048


def run_memory(
    n_networks: int,
    n_input: int,
    n_neurons: int,
    *,
    time_steps: int = 0,
    batch_size: int = 1,
    eval_samples: int = 0,
    backend: str = "numba",
) -> Dict[str, int]:
    """An estimate, from the sizes alone, of the bytes a run needs, by part (nothing is allocated).

    It counts the big arrays, rounded up, not everything: ``weights`` (the population and one
    working copy, float32, 2 x 4 x P x n_input x N), ``spike trains`` (the torch backends draw a
    whole batch's trains at once, a float32 uniform and a bool spike per input per step:
    5 x T x batch x n_input; numba draws one sample's at a time, at most 12 x T x n_input),
    ``spike counts`` (int32 counts of every network for every assignment and test sample, 4 x P x
    eval_samples x N) and ``bookkeeping`` (:data:`NETWORK_OVERHEAD_BYTES` and 8 B per neuron of
    every network, for its Python objects and results).
    """
    p, n_in, n = int(n_networks), int(n_input), int(n_neurons)
    t, b = int(time_steps), max(int(batch_size), 1)
    trains = 12 * t * n_in if backend == "numba" else 5 * t * b * n_in
    return {
        "weights": 2 * population_bytes(p, n_in, n),
        "spike trains": trains,
        "spike counts": 4 * p * int(eval_samples) * n,
        "bookkeeping": p * (NETWORK_OVERHEAD_BYTES + 8 * n),
    }


_MEMORY_FIXES = {
    "weights": "use fewer neurons or a smaller population",
    "spike trains": "use fewer time steps or a smaller batch",
    "spike counts": "use fewer assignment/test samples, fewer neurons or a smaller population",
    "bookkeeping": "use a smaller population",
}


def memory_available(device: Optional[Union[str, torch.device]] = None) -> Optional[int]:
    """Total bytes of the machine's memory, or of the GPU's for a CUDA ``device``; None where unknown."""
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # not a POSIX system: nothing to check against
        return None


def check_memory(
    n_networks: int,
    n_input: int,
    n_neurons: int,
    *,
    time_steps: int = 0,
    batch_size: int = 1,
    eval_samples: int = 0,
    backend: str = "numba",
    device: Optional[Union[str, torch.device]] = None,
) -> None:
    """Refuse, from the sizes alone and before anything is built, a run whose estimate
    (:func:`run_memory`) exceeds the machine's memory (the GPU's for a CUDA ``device``).

    Call it first: with only the population's sizes it checks the weights; given ``time_steps``,
    ``batch_size``, ``eval_samples`` and the resolved ``backend`` it checks the spike trains and
    counts too.

    Raises:
        ConfigError: "... need about N GB (largest part ...), the machine has M GB", with the fix for
            the largest part.
    """
    total = memory_available(device)
    if total is None:
        return
    parts = run_memory(
        n_networks,
        n_input,
        n_neurons,
        time_steps=time_steps,
        batch_size=batch_size,
        eval_samples=eval_samples,
        backend=backend,
    )
    need = sum(parts.values())
    if need > total:
        largest = max(parts, key=lambda k: parts[k])
        where = "the GPU" if device is not None and torch.device(device).type == "cuda" else "the machine"
        steps = f" over {int(time_steps)} steps" if time_steps else ""
        raise ConfigError(
            f"{n_networks} network(s) of {n_neurons} neurons x {n_input} inputs{steps} need about "
            f"{need / 1e9:.1f} GB ({largest} {parts[largest] / 1e9:.1f} GB), {where} has {total / 1e9:.1f} GB: "
            f"{_MEMORY_FIXES[largest]}"
        )


def resolve_device(device: Optional[Union[str, torch.device]]) -> torch.device:
    """``cpu``, ``cuda`` or ``auto``; a clear error where CUDA is asked for but absent."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise ConfigError(f"unsupported device {str(device)!r}: use cpu, cuda, cuda:N or auto")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU: use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {device!r}: use cpu or cuda")
    return dev


__all__ = [
    "FLOAT_PARAMS",
    "INT_PARAMS",
    "PARAM_LAYOUT",
    "QUANT_TARGETS",
    "Constants",
    "ParamField",
    "Population",
    "build_population",
    "NETWORK_OVERHEAD_BYTES",
    "check_memory",
    "constants",
    "memory_available",
    "param_dtype",
    "population_bytes",
    "resolve_device",
    "rounding_field",
    "run_memory",
]
