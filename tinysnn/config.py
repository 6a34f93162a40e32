"""Configuration of the SNN core: frozen dataclasses with units and the paper's symbols.

Defaults follow docs/method.md §1 (BindsNET's Diehl & Cook example: dt = 1 ms, 250 ms presentation,
128 Hz maximum input rate). Every field can be set by keyword, so any search tool can set it.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

BACKENDS = ("auto", "numba", "torch", "torch-compile")  #: simulator backends (tinysnn.sim.Simulator)

# Integer codes of the variants, as the numba kernels read them (:attr:`Variant.code`).
VARIANT_DIEHL_COOK = 0
VARIANT_SL_STDP = 1
VARIANT_TINYSNN = 2


def variant_has_inhibitory_layer(code: int) -> bool:
    """Whether the variant of ``code`` drives lateral inhibition through an inhibitory LIF layer
    (the baselines) rather than directly from the excitatory spikes (tinysnn). The numba kernels
    call it too."""
    return code != VARIANT_TINYSNN


class Variant(str, enum.Enum):
    """Network topology and learning rule."""

    DIEHL_COOK = "diehl_cook"
    """Excitatory + inhibitory LIF populations, pair-wise STDP (Diehl & Cook 2015)."""
    SL_STDP = "sl_stdp"
    """Same topology as diehl_cook, SL-STDP rule (Srinivasan et al. 2017). APPROXIMATE baseline."""
    TINYSNN = "tinysnn"
    """Direct lateral inhibition, timestep-based adaptive potentiation (Putra & Shafique 2022)."""

    @classmethod
    def parse(cls, value: "str | Variant") -> "Variant":
        if isinstance(value, Variant):
            return value
        try:
            return cls(str(value).replace("-", "_").lower())
        except ValueError:
            names = ", ".join(v.value for v in cls)
            raise ValueError(f"unknown variant {value!r}: choose one of {names}") from None

    @property
    def code(self) -> int:
        """The integer code the kernels use (:data:`VARIANT_DIEHL_COOK`, ...)."""
        return _VARIANT_CODES[self.value]

    @property
    def has_inhibitory_layer(self) -> bool:
        """True for the baselines (an inhibitory LIF layer), False for tinysnn (direct inhibition)."""
        return variant_has_inhibitory_layer(self.code)


_VARIANT_CODES = {"diehl_cook": VARIANT_DIEHL_COOK, "sl_stdp": VARIANT_SL_STDP, "tinysnn": VARIANT_TINYSNN}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""


@dataclass(frozen=True)
class LIFParams:
    """Current-based leaky integrate-and-fire neuron (docs/method.md §1).

    v <- v_rest + (v - v_rest) exp(-dt/tau) + input; spike when v > v_th + theta;
    then v <- v_reset and the neuron ignores input for ``refractory`` ms.
    """

    v_rest: float = -65.0
    """Resting potential, mV."""
    v_reset: float = -60.0
    """Reset potential after a spike, mV."""
    v_th: float = -52.0
    """Firing threshold without adaptation, mV."""
    tau: float = 100.0
    """Membrane time constant, ms."""
    refractory: float = 5.0
    """Refractory period, ms."""


EXCITATORY = LIFParams()
INHIBITORY = LIFParams(v_rest=-60.0, v_reset=-45.0, v_th=-40.0, tau=10.0, refractory=2.0)


def default_norm_total(n_input: int) -> float:
    """The column normalization total when none is given: 0.1 per input (78.4 for MNIST's 784, as
    BindsNET's Diehl & Cook example; 6.4 for digits' 64), rounded to 6 decimals."""
    return round(0.1 * int(n_input), 6)


@dataclass(frozen=True)
class NetworkConfig:
    """Topology and neuron parameters of one network (docs/method.md §1)."""

    variant: Variant = Variant.TINYSNN
    n_neurons: int = 100
    """Number of excitatory neurons N."""
    n_input: int = 784
    """Number of input spike trains (one per pixel)."""
    exc: LIFParams = EXCITATORY
    inh: LIFParams = INHIBITORY
    theta_plus: float = 0.05
    """Adaptive threshold increment per spike, mV."""
    tau_theta: float = 1e7
    """Adaptive threshold decay time constant, ms (frozen at test time)."""
    w_exc_inh: float = 22.5
    """Baselines: excitatory -> inhibitory one-to-one weight, mV."""
    w_inh_exc: float = 120.0
    """Baselines: inhibitory -> excitatory all-but-self weight, mV."""
    w_inh: float = 120.0
    """tinysnn: direct lateral inhibition strength w_inh, mV (one scalar)."""
    w_max: float = 1.0
    """Upper weight bound w_max."""
    w_init_max: float = 0.3
    """Initial weights are drawn from U[0, w_init_max)."""
    norm_total: Optional[float] = None
    """Each neuron's input-weight column is scaled to this sum after every sample; None (the default):
    :func:`default_norm_total` of ``n_input`` (78.4 for 784 inputs)."""
    one_spike: bool = False
    """At most one excitatory spike per step, as BindsNET's DiehlAndCookNodes (default there):
    every neuron that crosses its threshold is reset, becomes refractory and raises theta, but
    only one emits a spike (drives inhibition, learning and the counts). BindsNET picks it at
    random; we pick the largest overshoot v - threshold (lowest index on ties), so both of our
    backends agree. Not in the method; off by default (docs/method.md §1)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", Variant.parse(self.variant))
        if int(self.n_neurons) < 1:
            raise ConfigError(f"n_neurons must be >= 1, got {self.n_neurons}")
        if int(self.n_input) < 1:
            raise ConfigError(f"n_input must be >= 1, got {self.n_input}")
        if not 0 < self.w_init_max <= self.w_max:
            raise ConfigError("w_init_max must lie in (0, w_max]")
        if self.norm_total is None:
            object.__setattr__(self, "norm_total", default_norm_total(int(self.n_input)))
        if self.norm_total <= 0:
            raise ConfigError(f"norm_total must be > 0, got {self.norm_total}")


@dataclass(frozen=True)
class LearningConfig:
    """Learning-rule constants for all variants (docs/method.md §1)."""

    tau_pre: float = 20.0
    """Presynaptic trace time constant, ms."""
    tau_post: float = 20.0
    """Postsynaptic trace time constant, ms."""
    nu_pre: float = 1e-4
    """Pair-wise STDP: depression rate on a presynaptic spike (w -= nu_pre x_post)."""
    nu_post: float = 1e-2
    """Pair-wise STDP: potentiation rate on a postsynaptic spike (w += nu_post x_pre)."""
    eta_p: float = 1e-2
    """SL-STDP: potentiation rate eta_p (w += eta_p (w_max - w)). Approximate baseline."""
    eta_d: float = 3e-3
    """SL-STDP: depression rate eta_d (w -= eta_d w). Approximate baseline."""
    x_th: float = 0.3
    """SL-STDP: presynaptic trace threshold separating potentiation from depression."""
    eta_post: float = 0.002
    """tinysnn: potentiation rate eta_post (Eq. 2)."""
    t_update: int = 25
    """tinysnn: update period T_u in steps (timestep-based update)."""
    n_th: float = 2.0
    """tinysnn: spike-count divisor N_th of the adaptive potentiation factor k (Eq. 1)."""

    def __post_init__(self) -> None:
        if int(self.t_update) < 1:
            raise ConfigError(f"t_update (T_u) must be >= 1 step, got {self.t_update}")
        if self.n_th <= 0:
            raise ConfigError(f"n_th (N_th) must be > 0, got {self.n_th}")
        if self.tau_pre <= 0 or self.tau_post <= 0:
            raise ConfigError("trace time constants tau_pre and tau_post must be > 0 ms")


@dataclass(frozen=True)
class EncodingConfig:
    """Poisson rate coding of a presentation window (docs/method.md §1)."""

    time_steps: int = 250
    """Presentation length T in steps of dt."""
    dt: float = 1.0
    """Simulation step, ms."""
    max_rate: float = 128.0
    """Rate of a full-intensity pixel, Hz."""

    def __post_init__(self) -> None:
        if int(self.time_steps) < 1:
            raise ConfigError(f"time_steps must be >= 1, got {self.time_steps}")
        if self.dt <= 0:
            raise ConfigError(f"dt must be > 0 ms, got {self.dt}")
        if self.max_rate < 0 or self.max_rate * self.dt / 1000.0 > 1.0:
            raise ConfigError("max_rate must be >= 0 Hz and max_rate * dt <= 1000 (one spike per step)")


_T = TypeVar("_T")


def from_mapping(cls: Type[_T], values: Mapping[str, Any]) -> _T:
    """Build a config dataclass from a mapping, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}: valid keys are {sorted(names)}")
    return cls(**dict(values))


def to_dict(obj: Any) -> Dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (enums as their values)."""
    out = dataclasses.asdict(obj)

    def fix(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    return {k: fix(v) for k, v in out.items()}


__all__ = [
    "ConfigError",
    "EncodingConfig",
    "LIFParams",
    "LearningConfig",
    "NetworkConfig",
    "VARIANT_DIEHL_COOK",
    "VARIANT_SL_STDP",
    "VARIANT_TINYSNN",
    "Variant",
    "default_norm_total",
    "from_mapping",
    "to_dict",
    "variant_has_inhibitory_layer",
]
