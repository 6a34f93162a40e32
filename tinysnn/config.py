"""Configuration of the SNN core: frozen dataclasses with units and the paper's symbols.

Defaults follow docs/method.md §1 (BindsNET's Diehl & Cook example: dt = 1 ms, 250 ms presentation,
128 Hz maximum input rate). Every field can be set by keyword, so any search tool can set it.
"""

import dataclasses
import enum
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Type, TypeVar

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


class Backend(str, enum.Enum):
    """The simulator backends (:class:`tinysnn.sim.Simulator`), by the names the CLI and specs take."""

    AUTO = "auto"
    """numba on CPU where it is installed, torch otherwise (:func:`tinysnn.sim.default_backend`)."""
    NUMBA = "numba"
    """The CPU kernels (:mod:`tinysnn.sim.numba_kernels`)."""
    TORCH = "torch"
    """The torch reference (CPU or CUDA)."""
    TORCH_COMPILE = "torch-compile"
    """The torch reference with each step compiled (``torch.compile``)."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: "str | Backend") -> "Backend":
        if isinstance(value, Backend):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown backend {value!r}: choose one of {', '.join(BACKENDS)}") from None


BACKENDS = tuple(b.value for b in Backend)  #: the backends' names (command-line choices)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix.

    ``field`` is the name of the offending field where one is known (a command line maps it to its
    option), else None.
    """

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


MAX_TIME_STEPS = 100_000
"""Largest presentation length T in steps (our choice): 100 s of simulated time per sample at
dt = 1 ms, 400 times the method's 250 steps. Time grows linearly with T and a batch's spike trains
take T x batch x inputs bytes or more, so a larger T is almost surely a typo (``1e9``) rather than
an experiment; :func:`tinysnn.network.check_memory` also refuses what would not fit."""
MAX_SEED = 2**63 - 1
"""Largest seed: seeds are stored and mixed as signed 64-bit integers (torch, numba, the C runner)."""
FLOAT32_MAX = 3.4028234663852886e38
"""Largest float32 magnitude: the simulators compute in float32, so a larger value becomes inf there."""


def _interval(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    """The text of a range: ``> 0``, ``>= 0``, ``<= 1``, ``in (0, 1]``, or ``""`` (no bound)."""

    def text(x: float) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{text(low)}, {text(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {text(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {text(high)}"
    return ""


def check_finite(
    name: str,
    value: Any,
    low: Optional[float] = None,
    high: Optional[float] = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float, if it is a finite number (within float32's range) in the given range.

    NaN and inf fail (unlike ``x <= 0`` style checks, which NaN passes), and so do bools and text.
    ``low_open`` / ``high_open`` exclude the bound itself.

    Raises:
        ConfigError: "``name`` = ``value``: expected a finite number ``range``", with ``field=name``.
    """
    rule = _interval(low, high, low_open, high_open)
    expected = f"expected a finite number {rule}".rstrip()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} = {value!r}: {expected}", name)
    try:
        x = float(value)
    except OverflowError:  # an int beyond float's range
        x = math.inf
    if not math.isfinite(x) or abs(x) > FLOAT32_MAX:
        limit = "" if not math.isfinite(x) else f" (float32: |x| <= {FLOAT32_MAX:.3g})"
        raise ConfigError(f"{name} = {value!r}: {expected}{limit}", name)
    below = low is not None and (x <= low if low_open else x < low)
    above = high is not None and (x >= high if high_open else x > high)
    if below or above:
        raise ConfigError(f"{name} = {value!r}: {expected}", name)
    return x


def check_int(name: str, value: Any, low: Optional[int] = None, high: Optional[int] = None) -> int:
    """``value`` as an int, if it is a whole number in ``[low, high]``: ``2.5`` is refused, not
    truncated, and so are bools, NaN and text; ``25.0`` gives 25.

    Raises:
        ConfigError: "``name`` = ``value``: expected an integer ``range``", with ``field=name``.
    """
    expected = f"expected an integer {_interval(low, high, False, False)}".rstrip()
    if isinstance(value, bool):
        raise ConfigError(f"{name} = {value!r}: {expected}", name)
    if isinstance(value, numbers.Integral):
        n = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
        n = int(float(value))
    else:
        raise ConfigError(f"{name} = {value!r}: {expected}", name)
    if (low is not None and n < low) or (high is not None and n > high):
        raise ConfigError(f"{name} = {value!r}: {expected}", name)
    return n


def check_seed(name: str, value: Any, count: int = 1) -> int:
    """A seed in ``[0, MAX_SEED]`` from which ``count`` consecutive seeds (value .. value + count - 1,
    one per network) all stay in range.

    Raises:
        ConfigError: naming ``name``, the value and the valid range.
    """
    try:
        return check_int(name, value, 0, MAX_SEED - (int(count) - 1))
    except ConfigError as exc:
        if count <= 1:
            raise
        raise ConfigError(
            f"{exc} (its {count} networks take the seeds {name} + 0 .. {count - 1})", name
        ) from None


def _set_int(obj: Any, name: str, low: Optional[int] = None, high: Optional[int] = None) -> None:
    """Check the integer field ``name`` of the frozen dataclass ``obj`` and store it as an int."""
    object.__setattr__(obj, name, check_int(name, getattr(obj, name), low, high))


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

    def __post_init__(self) -> None:
        for name in ("v_rest", "v_reset", "v_th"):
            check_finite(name, getattr(self, name))
        check_finite("tau", self.tau, 0, low_open=True)
        check_finite("refractory", self.refractory, 0)
        if self.v_reset >= self.v_th:
            raise ConfigError(
                f"v_reset = {self.v_reset!r} mV is not below v_th = {self.v_th!r} mV: a neuron reset at or "
                "above its threshold fires again at once; give v_reset < v_th",
                "v_reset",
            )


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
        _set_int(self, "n_neurons", 1)
        _set_int(self, "n_input", 1)
        for name in ("exc", "inh"):
            if not isinstance(getattr(self, name), LIFParams):
                raise ConfigError(f"{name} = {getattr(self, name)!r}: expected LIFParams(...)", name)
        if self.one_spike not in (True, False):
            raise ConfigError(f"one_spike = {self.one_spike!r}: expected true or false", "one_spike")
        object.__setattr__(self, "one_spike", bool(self.one_spike))
        for name in ("theta_plus", "w_exc_inh", "w_inh_exc", "w_inh"):
            check_finite(name, getattr(self, name), 0)
        check_finite("tau_theta", self.tau_theta, 0, low_open=True)
        w_max = check_finite("w_max", self.w_max, 0, low_open=True)
        check_finite("w_init_max", self.w_init_max, 0, w_max, low_open=True)
        if self.norm_total is None:
            object.__setattr__(self, "norm_total", default_norm_total(self.n_input))
        check_finite("norm_total", self.norm_total, 0, low_open=True)


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
        for name in ("tau_pre", "tau_post", "n_th"):
            check_finite(name, getattr(self, name), 0, low_open=True)
        for name in ("nu_pre", "nu_post", "eta_p", "eta_d", "x_th", "eta_post"):
            check_finite(name, getattr(self, name), 0)
        _set_int(self, "t_update", 1, MAX_TIME_STEPS)


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
        _set_int(self, "time_steps", 1, MAX_TIME_STEPS)
        dt = check_finite("dt", self.dt, 0, low_open=True)
        try:  # at most one spike per step: max_rate * dt <= 1000 Hz ms
            check_finite("max_rate", self.max_rate, 0, 1000.0 / dt)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc} Hz (at most one spike per step of dt = {dt:g} ms)", "max_rate"
            ) from None


if TYPE_CHECKING:
    from _typeshed import DataclassInstance  # what dataclasses.fields takes: a type for checkers only

_T = TypeVar("_T", bound="DataclassInstance")


def from_mapping(cls: Type[_T], values: Mapping[str, Any]) -> _T:
    """Build a config dataclass from a mapping, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
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
    "BACKENDS",
    "Backend",
    "ConfigError",
    "EncodingConfig",
    "FLOAT32_MAX",
    "LIFParams",
    "LearningConfig",
    "MAX_SEED",
    "MAX_TIME_STEPS",
    "NetworkConfig",
    "VARIANT_DIEHL_COOK",
    "VARIANT_SL_STDP",
    "VARIANT_TINYSNN",
    "Variant",
    "check_finite",
    "check_int",
    "check_seed",
    "default_norm_total",
    "from_mapping",
    "to_dict",
    "variant_has_inhibitory_layer",
]
