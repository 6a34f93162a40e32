"""The one energy-meter interface: :class:`EnergyMeter`, its :class:`MeterOptions`, its readings and errors.

A meter measures the energy of one run between :meth:`EnergyMeter.start` and
:meth:`EnergyMeter.stop` (or a ``with`` block). The platform meters (``nvml``, ``jetson``,
``rapl`` and ``estimate`` modules of this package) read either a cumulative energy counter
(NVML's total-energy counter, RAPL) or a power sensor that
:class:`~tinysnn.energy.sampling.PowerIntegrator` integrates in a background thread (Jetson
INA3221 rails, NVML power on GPUs older than Volta). Every meter takes the same
:class:`MeterOptions`.

Idle subtraction (docs/method.md §4, "subtract idle power where measured"): before its first run
a meter measures the mean power P_idle of a quiet window of ``idle_seconds``, and reports

    joules = max(0, raw_joules - P_idle * seconds),

the energy the run added on top of what the idle machine draws anyway. The idle power is
recorded on every reading, whether subtracted or not; an estimate never subtracts it.
"""

import abc
import contextlib
import dataclasses
import math
import time
from types import TracebackType
from typing import Callable, Dict, NamedTuple, Optional, Type

__all__ = [
    "DEFAULT_IDLE_SECONDS",
    "DEFAULT_METER_OPTIONS",
    "DEFAULT_SAMPLE_HZ",
    "EnergyMeter",
    "EnergyMeterError",
    "EnergyReading",
    "EnergySpecError",
    "MeterOptions",
    "RawReading",
    "check_sample_hz",
]

DEFAULT_IDLE_SECONDS = 1.0
"""Length of the quiet window whose mean power is subtracted, in s (0 disables it)."""

DEFAULT_SAMPLE_HZ = 20.0
"""Sampling rate of power sensors that are integrated in a thread, in Hz."""

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class EnergyMeterError(RuntimeError):
    """A meter cannot be made, started or read; the message names the problem and the fix."""


class EnergySpecError(EnergyMeterError, ValueError):
    """A bad meter spec or argument: unknown meter name, bad watts, bad idle window."""


@dataclasses.dataclass(frozen=True)
class EnergyReading:
    """The energy of one measured run.

    Attributes:
        joules: Energy of the run in J, after idle subtraction (``raw_joules`` when none was
            subtracted), clamped at >= 0.
        raw_joules: Energy the meter read over the run, in J, idle included.
        seconds: Wall time of the run, in s.
        meter: Name of the meter: ``"nvml"``, ``"jetson"``, ``"rapl"`` or ``"estimate"``.
        is_estimate: True when no meter was read (time x a stated power); never call such a
            value measured.
        sample_period_s: Period at which a power sensor was sampled and integrated, in s;
            None for energy counters and estimates.
        idle_power_w: Mean power of the idle window, in W; None when not measured.
        idle_subtracted: Whether ``idle_power_w * seconds`` was subtracted from ``raw_joules``.
        rails: Energy per power rail or domain, in J, raw (idle not subtracted): the INA3221
            rails on Jetson (e.g. ``POM_5V_GPU``, ``POM_5V_CPU``), the RAPL packages.
        note: What was measured and how, in words, for the record.
    """

    joules: float
    raw_joules: float
    seconds: float
    meter: str
    is_estimate: bool
    sample_period_s: Optional[float] = None
    idle_power_w: Optional[float] = None
    idle_subtracted: bool = False
    rails: Dict[str, float] = dataclasses.field(default_factory=dict, hash=False)
    note: str = ""

    @property
    def mean_power_w(self) -> float:
        """Mean power over the run, ``raw_joules / seconds``, in W (NaN for a zero-length run)."""
        return self.raw_joules / self.seconds if self.seconds > 0 else math.nan

    def as_dict(self) -> Dict[str, object]:
        """Return the reading as a JSON-friendly dict (e.g. for Optuna user attributes)."""
        return dataclasses.asdict(self)


class RawReading(NamedTuple):
    """What a platform meter read over one window, before idle subtraction."""

    joules: float
    rails: Dict[str, float]
    sample_period_s: Optional[float]
    note: str


def check_idle_seconds(idle_seconds: float) -> float:
    """Validate an idle window length.

    Args:
        idle_seconds: Length in s; 0 disables idle measurement.

    Returns:
        The value as a float.

    Raises:
        EnergySpecError: If it is negative or not finite.
    """
    value = float(idle_seconds)
    if not math.isfinite(value) or value < 0:
        raise EnergySpecError(
            f"idle_seconds must be a finite number >= 0 (0 disables idle subtraction), got {idle_seconds!r}"
        )
    return value


def check_sample_hz(sample_hz: float) -> float:
    """Validate the sampling rate of a power sensor.

    Returns:
        The rate in Hz as a float.

    Raises:
        EnergySpecError: If it is not in (0, 1000] Hz.
    """
    rate = float(sample_hz)
    if not math.isfinite(rate) or rate <= 0 or rate > 1000:
        raise EnergySpecError(f"sample_hz must be in (0, 1000] Hz (10-50 Hz is sensible), got {sample_hz!r}")
    return rate


@dataclasses.dataclass(frozen=True)
class MeterOptions:
    """What every meter is configured with, whatever its platform.

    Attributes:
        idle_seconds: Length of the quiet window before the first run, in s; 0 disables it. An
            estimate measures no idle window.
        subtract_idle: Subtract the idle power from the run's energy (it is recorded either way).
        sync: Called before the start and the stop are read, and before the idle window, so that
            queued device work is counted in the right window (e.g. ``torch.cuda.synchronize``).
        clock: Monotonic time source in s (injectable for tests).
        sleep: Sleep function used for the idle window (injectable for tests).

    Raises:
        EnergySpecError: If ``idle_seconds`` is negative or not finite.
    """

    idle_seconds: float = DEFAULT_IDLE_SECONDS
    subtract_idle: bool = True
    sync: Optional[Callable[[], None]] = None
    clock: Clock = time.perf_counter
    sleep: Sleep = time.sleep

    def __post_init__(self) -> None:
        object.__setattr__(self, "idle_seconds", check_idle_seconds(self.idle_seconds))
        object.__setattr__(self, "subtract_idle", bool(self.subtract_idle))


DEFAULT_METER_OPTIONS = MeterOptions()
"""The options of a meter made without any: a 1 s idle window, subtracted, no sync, real time."""


class EnergyMeter(abc.ABC):
    """Base class of energy meters: use as a context manager or with start/stop.

    Example:
        >>> from tinysnn.energy import make_meter
        >>> meter = make_meter("estimate:30")
        >>> with meter:
        ...     pass  # the run to measure
        >>> meter.reading.is_estimate
        True

    A meter can measure many runs one after another. The idle window is measured once, at the
    first start (call :meth:`measure_idle` to measure it again).

    Args:
        options: Idle window, idle subtraction, sync, clock and sleep.
    """

    name: str = "meter"
    is_estimate: bool = False

    def __init__(self, options: MeterOptions = DEFAULT_METER_OPTIONS) -> None:
        self.idle_seconds = options.idle_seconds
        self.subtract_idle = options.subtract_idle
        self.selection_note = ""
        self._sync = options.sync
        self._clock = options.clock
        self._sleep = options.sleep
        self._idle_power_w: Optional[float] = None
        self._t0: Optional[float] = None
        self._reading: Optional[EnergyReading] = None

    # -- public interface -------------------------------------------------------------------

    @property
    def idle_power_w(self) -> Optional[float]:
        """The measured idle power in W, or None when not (yet) measured."""
        return self._idle_power_w

    @property
    def running(self) -> bool:
        """Whether a run is being measured (started and not stopped)."""
        return self._t0 is not None

    @property
    def reading(self) -> EnergyReading:
        """The reading of the last finished run.

        Raises:
            EnergyMeterError: If no run has finished yet.
        """
        if self._reading is None:
            raise EnergyMeterError(
                f"the {self.name} meter has no reading yet: measure a run first (with meter: ... or start()/stop())"
            )
        return self._reading

    def measure_idle(self, seconds: Optional[float] = None) -> Optional[float]:
        """Measure the mean power of a quiet window and keep it for idle subtraction.

        Args:
            seconds: Window length in s; defaults to ``idle_seconds``. 0 measures nothing.

        Returns:
            The idle power in W, or None for an estimate or a zero-length window.

        Raises:
            EnergyMeterError: If a run is being measured, or the meter cannot be read.
        """
        if self.running:
            raise EnergyMeterError("cannot measure idle power while a run is being measured: stop() first")
        window = self.idle_seconds if seconds is None else check_idle_seconds(seconds)
        if self.is_estimate or window <= 0:
            return None
        self._call_sync()
        t0 = self._clock()
        self._begin()
        try:
            self._sleep(window)
        except BaseException:
            self._abort()
            raise
        elapsed = self._clock() - t0
        raw = self._end(elapsed)
        self._idle_power_w = raw.joules / elapsed if elapsed > 0 else 0.0
        return self._idle_power_w

    def start(self) -> None:
        """Start measuring a run (measures the idle window first if it was not yet measured).

        Raises:
            EnergyMeterError: If already started, or the meter cannot be read.
        """
        if self.running:
            raise EnergyMeterError(f"the {self.name} meter is already running: stop() it first")
        if self._idle_power_w is None and self.idle_seconds > 0 and not self.is_estimate:
            self.measure_idle()
        self._reading = None
        self._call_sync()
        self._t0 = self._clock()
        try:
            self._begin()
        except BaseException:
            self._t0 = None
            raise

    def stop(self) -> EnergyReading:
        """Stop measuring and return the run's reading (also kept as :attr:`reading`).

        Raises:
            EnergyMeterError: If not started, or the meter could not be read.
        """
        if self._t0 is None:
            raise EnergyMeterError(f"the {self.name} meter was not started: call start() first")
        self._call_sync()
        seconds = max(0.0, self._clock() - self._t0)
        self._t0 = None
        raw = self._end(seconds)
        idle = self._idle_power_w
        subtract = self.subtract_idle and idle is not None and not self.is_estimate
        joules = max(0.0, raw.joules - idle * seconds) if subtract and idle is not None else raw.joules
        self._reading = EnergyReading(
            joules=joules,
            raw_joules=raw.joules,
            seconds=seconds,
            meter=self.name,
            is_estimate=self.is_estimate,
            sample_period_s=raw.sample_period_s,
            idle_power_w=idle,
            idle_subtracted=subtract,
            rails=dict(raw.rails),
            note=self._compose_note(raw.note, idle, subtract),
        )
        return self._reading

    def close(self) -> None:
        """Stop a run in progress without a reading and release the meter's resources."""
        if self.running:
            self._t0 = None
            self._abort()

    def __enter__(self) -> "EnergyMeter":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if not self.running:
            return
        if exc_type is None:
            self.stop()
        else:  # do not mask the block's own exception; stop threads, keep no reading
            self._t0 = None
            self._abort()

    # -- what a backend implements ----------------------------------------------------------

    @abc.abstractmethod
    def _begin(self) -> None:
        """Take the start reading (and start a sampling thread if the backend has one)."""

    @abc.abstractmethod
    def _end(self, seconds: float) -> RawReading:
        """Take the stop reading and return the energy since :meth:`_begin`."""

    def _abort(self) -> None:
        """Stop sampling after :meth:`_begin` without a reading, ignoring read errors."""
        with contextlib.suppress(Exception):  # aborting: the caller's error matters more
            self._end(0.0)

    # -- helpers ----------------------------------------------------------------------------

    def _call_sync(self) -> None:
        if self._sync is not None:
            self._sync()

    def _compose_note(self, backend_note: str, idle: Optional[float], subtracted: bool) -> str:
        parts = [backend_note] if backend_note else []
        if idle is not None:
            verb = "subtracted" if subtracted else "recorded, not subtracted"
            parts.append(f"idle {idle:.3g} W ({verb}; rails are raw)")
        elif not self.is_estimate:
            parts.append("idle power not measured (idle_seconds=0): joules include idle power")
        if self.selection_note:
            parts.append(self.selection_note)
        return "; ".join(parts)
