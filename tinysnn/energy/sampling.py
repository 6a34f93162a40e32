"""Power sensors sampled in a background thread and integrated into energy: :class:`PowerIntegrator`.

Used by the meters whose platform reports power, not energy: the Jetson INA3221 rails, and NVML
on GPUs older than Volta.
"""

import threading
import time
from typing import Callable, Dict, Mapping, Optional

from .meters import DEFAULT_SAMPLE_HZ, Clock, EnergyMeterError, check_sample_hz

__all__ = ["PowerIntegrator"]

PowerReader = Callable[[], Mapping[str, float]]


class PowerIntegrator:
    """Trapezoidal integral of sampled power readings, sampled in a background thread.

    With samples (t_k, p_k), k = 0..n-1, taken at ``start``, every ``1/sample_hz`` s in the
    thread, and at ``stop``, the energy of each channel is

        E = sum_k (p_k + p_{k+1}) / 2 * (t_{k+1} - t_k),

    exact for power that is linear between samples; for smooth power the error is at most
    (t_n - t_0) h^2 / 12 max|p''| with h the sample period.

    Args:
        read: Returns the power of each channel in W, e.g. ``{"VDD_IN": 4.2, "VDD_GPU": 1.1}``.
        sample_hz: Sampling rate of the thread, in Hz.
        clock: Monotonic time source in s.
    """

    def __init__(
        self, read: PowerReader, *, sample_hz: float = DEFAULT_SAMPLE_HZ, clock: Clock = time.perf_counter
    ) -> None:
        rate = check_sample_hz(sample_hz)
        self.sample_hz = rate
        self.period_s = 1.0 / rate
        self._read = read
        self._clock = clock
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._reset()

    def _reset(self) -> None:
        self._energy: Dict[str, float] = {}
        self._last_p: Dict[str, float] = {}
        self._first_t: Optional[float] = None
        self._last_t: Optional[float] = None
        self.n_samples = 0

    @property
    def span_s(self) -> float:
        """Time from the first to the last sample, in s."""
        if self._first_t is None or self._last_t is None:
            return 0.0
        return self._last_t - self._first_t

    def sample(self) -> None:
        """Take one sample and add the trapezoid since the previous one."""
        with self._lock:
            t = self._clock()
            p = {name: float(value) for name, value in self._read().items()}
            if self._last_t is not None:
                dt = t - self._last_t
                for name, value in p.items():
                    if name in self._last_p:
                        self._energy[name] = (
                            self._energy.get(name, 0.0) + 0.5 * (value + self._last_p[name]) * dt
                        )
            else:
                self._first_t = t
            for name in p:
                self._energy.setdefault(name, 0.0)
            self._last_t = t
            self._last_p = p
            self.n_samples += 1

    def start(self) -> None:
        """Reset, take the first sample and start the sampling thread."""
        if self._thread is not None:
            raise EnergyMeterError("the power integrator is already running")
        self._reset()
        self._error = None
        self._stop_event.clear()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="tinysnn-power-integrator", daemon=True)
        self._thread.start()

    def stop(self) -> Dict[str, float]:
        """Stop the thread, take the last sample and return the energy of each channel in J.

        Raises:
            EnergyMeterError: If a reading failed in the thread or fails now.
        """
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, EnergyMeterError):
                raise error
            raise EnergyMeterError(f"reading power failed during the measurement: {error!r}") from error
        self.sample()
        with self._lock:
            return dict(self._energy)

    def _run(self) -> None:
        while not self._stop_event.wait(self.period_s):
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - reported by stop()
                self._error = exc
                return
