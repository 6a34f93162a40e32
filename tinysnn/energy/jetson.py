"""Energy-meter backends: NVML, Jetson INA3221 rails, RAPL, and time x a stated power.

Every sysfs path is taken under ``sysfs_root`` (default ``/``), so that tests can build a fake
tree; the NVML module is injectable (``nvml_module``) for the same reason.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import re
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from tinysnn._energy_meter import (
    DEFAULT_IDLE_SECONDS,
    DEFAULT_SAMPLE_HZ,
    Clock,
    EnergyMeter,
    EnergyMeterError,
    EnergySpecError,
    PowerIntegrator,
    Sleep,
    _Raw,
)

__all__ = [
    "DEFAULT_ESTIMATE_POWER_W",
    "DEFAULT_RAPL_POLL_S",
    "NVML_INSTALL_HINT",
    "EstimateMeter",
    "JetsonMeter",
    "NvmlMeter",
    "RaplMeter",
]

DEFAULT_ESTIMATE_POWER_W = 15.0
"""Power assumed by the ``estimate`` meter, in W (Jetson-Nano-class board under load)."""

DEFAULT_RAPL_POLL_S = 1.0
"""How often RAPL counters are read during a run, in s, to catch wraparounds."""

NVML_INSTALL_HINT = 'pip install "tinysnn[nvml]" (or: pip install nvidia-ml-py)'

_TOTAL_RAIL_SUFFIX = "_IN"  # VDD_IN (JetPack 5/6 boards, TX2), POM_5V_IN (Jetson Nano)


def check_power_w(power_w: float, what: str = "power") -> float:
    """Validate a stated power.

    Raises:
        EnergySpecError: If it is not a finite number > 0.
    """
    try:
        value = float(power_w)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise EnergySpecError(
            f"{what} must be a finite number of watts > 0, e.g. 15 or 'estimate:30'; got {power_w!r}"
        )
    return value


def _read_number(path: str, fix: str) -> float:
    """Read one number from a sysfs file, with an error that names the file and the fix."""
    try:
        with open(path) as handle:
            text = handle.read()
    except PermissionError as exc:
        raise EnergyMeterError(f"cannot read {path}: permission denied. {fix}") from exc
    except OSError as exc:
        raise EnergyMeterError(f"cannot read {path} ({exc.strerror or exc}). {fix}") from exc
    try:
        return float(text.strip())
    except ValueError as exc:
        raise EnergyMeterError(f"{path} does not hold a number: {text.strip()!r}") from exc


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


class EstimateMeter(EnergyMeter):
    """Time x a stated power: NOT a measurement, and every reading says so (``is_estimate``).

    Args:
        power_w: The stated power, in W.
        sync: See :class:`EnergyMeter` (so that the wall time covers queued device work).
        clock: Monotonic time source in s.
        sleep: Unused (an estimate has no idle window); kept for a uniform signature.
    """

    name = "estimate"
    is_estimate = True

    def __init__(
        self,
        power_w: float = DEFAULT_ESTIMATE_POWER_W,
        *,
        sync: Optional[Callable[[], None]] = None,
        clock: Clock = time.perf_counter,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(idle_seconds=0.0, subtract_idle=False, sync=sync, clock=clock, sleep=sleep)
        self.power_w = check_power_w(power_w, "the estimate's power")

    def _begin(self) -> None:
        pass

    def _end(self, seconds: float) -> _Raw:
        note = (
            f"ESTIMATE, not a measurement: wall time x a stated {self.power_w:g} W; "
            "no energy meter was read and no idle power subtracted"
        )
        return _Raw(self.power_w * seconds, {}, None, note)


def _import_nvml() -> Any:
    try:
        import pynvml  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise EnergyMeterError(
            f"the nvml meter needs nvidia-ml-py, which is not installed: {NVML_INSTALL_HINT}"
        ) from exc
    return pynvml


class NvmlMeter(EnergyMeter):
    """An NVIDIA GPU's energy through NVML (the GPU board only, not the host CPU).

    Volta and newer GPUs have a total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``,
    in mJ), read at start and stop. Older GPUs only report power (``nvmlDeviceGetPowerUsage``,
    in mW, itself averaged by the driver), integrated here in a thread at ``sample_hz``.
    Runs shorter than about a second are poorly resolved either way: measure many samples.

    Args:
        device_index: NVML index of the GPU.
        nvml_module: The ``pynvml`` module, or a stand-in for tests; imported when None.
        sample_hz: Sampling rate of the power fallback, in Hz.
        idle_seconds: See :class:`EnergyMeter`.
        subtract_idle: See :class:`EnergyMeter`.
        sync: See :class:`EnergyMeter`; pass ``torch.cuda.synchronize``.
        clock: See :class:`EnergyMeter`.
        sleep: See :class:`EnergyMeter`.

    Raises:
        EnergyMeterError: If nvidia-ml-py is missing, NVML does not start, there is no such GPU,
            or the GPU reports neither energy nor power.
    """

    name = "nvml"

    def __init__(
        self,
        device_index: int = 0,
        *,
        nvml_module: Optional[Any] = None,
        sample_hz: float = DEFAULT_SAMPLE_HZ,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        subtract_idle: bool = True,
        sync: Optional[Callable[[], None]] = None,
        clock: Clock = time.perf_counter,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(
            idle_seconds=idle_seconds, subtract_idle=subtract_idle, sync=sync, clock=clock, sleep=sleep
        )
        nvml = _import_nvml() if nvml_module is None else nvml_module
        self._nvml = nvml
        self._initialized = False
        error_type = getattr(nvml, "NVMLError", Exception)
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError, or OSError from the library loader
            raise EnergyMeterError(
                f"NVML did not start ({exc}): no NVIDIA GPU or driver here? Use make_meter('auto') "
                "or another meter (jetson, rapl, estimate)"
            ) from exc
        self._initialized = True
        try:
            self._handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
        except error_type as exc:
            count = self._device_count()
            self.close()
            raise EnergyMeterError(
                f"NVML has no GPU {device_index} ({exc}); this machine has {count} GPU(s): pass device_index"
            ) from exc
        self.device_index = device_index
        self.device_name = self._device_name()
        self._integrator: Optional[PowerIntegrator] = None
        self._fallback_reason = ""
        try:
            self._energy_mj()
            self.mode = "counter"
        except (error_type, AttributeError) as exc:
            self._fallback_reason = str(exc) or type(exc).__name__
            try:
                self._power_w()
            except (error_type, AttributeError) as exc2:
                self.close()
                raise EnergyMeterError(
                    f"GPU {device_index} ({self.device_name}) reports neither energy ({exc}) nor power ({exc2}) "
                    "through NVML: use another meter (rapl, estimate)"
                ) from exc2
            self.mode = "power"
            self._integrator = PowerIntegrator(
                lambda: {"gpu": self._power_w()}, sample_hz=sample_hz, clock=clock
            )
        self._e0_mj = 0.0

    def _device_count(self) -> str:
        try:
            return str(int(self._nvml.nvmlDeviceGetCount()))
        except Exception:  # noqa: BLE001 - only for the error message
            return "an unknown number of"

    def _device_name(self) -> str:
        try:
            name = self._nvml.nvmlDeviceGetName(self._handle)
        except Exception:  # noqa: BLE001 - the name is only for the note
            return "GPU"
        return name.decode(errors="replace") if isinstance(name, bytes) else str(name)

    def _energy_mj(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def _power_w(self) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0

    def _begin(self) -> None:
        if self._integrator is not None:
            self._integrator.start()
        else:
            self._e0_mj = self._energy_mj()

    def _end(self, seconds: float) -> _Raw:
        where = f"{self.device_name} (GPU {self.device_index}, GPU board only)"
        if self._integrator is not None:
            joules = self._integrator.stop().get("gpu", 0.0)
            note = (
                f"nvml: {where}, power integrated at {self._integrator.sample_hz:g} Hz "
                f"({self._integrator.n_samples} samples; energy counter unavailable: {self._fallback_reason})"
            )
            return _Raw(joules, {}, self._integrator.period_s, note)
        delta_mj = self._energy_mj() - self._e0_mj
        if delta_mj < 0:
            raise EnergyMeterError("the NVML energy counter went backwards (driver reloaded or GPU reset?)")
        return _Raw(delta_mj / 1000.0, {}, None, f"nvml: {where}, total-energy counter")

    def close(self) -> None:
        """Stop a run in progress and shut NVML down (NVML counts its inits)."""
        super().close()
        if self._initialized:
            self._initialized = False
            with contextlib.suppress(Exception):  # nothing to do about a failed shutdown
                self._nvml.nvmlShutdown()


class _Rail(NamedTuple):
    """One INA3221 channel: power in mW (JetPack 4), or bus voltage in mV and current in mA."""

    name: str
    power_path: Optional[str]
    volt_path: Optional[str]
    curr_path: Optional[str]


_JETSON_READ_FIX = (
    "INA3221 files are world-readable on stock JetPack; run as root or `sudo chmod o+r` that file"
)


def find_jetson_rails(sysfs_root: str = "/") -> List[_Rail]:
    """Find the INA3221 power rails of a Jetson board, both sysfs layouts.

    - JetPack 4 (Jetson Nano, TX1/TX2): ``/sys/bus/i2c/drivers/ina3221x/<bus>-004x/iio:device*/``
      with ``rail_name_<N>`` and ``in_power<N>_input`` (mW).
    - JetPack 5/6 (Xavier, Orin; hwmon): ``/sys/bus/i2c/drivers/ina3221/<bus>-004x/hwmon/hwmon*/``
      with ``in<K>_label``, ``in<K>_input`` (mV) and ``curr<K>_input`` (mA); power = V x I.
      Channels labelled ``NC`` (not connected) or without a current file are skipped.

    Args:
        sysfs_root: Root under which ``sys/`` is looked up.

    Returns:
        The rails, in path order; names made unique with ``@<device>`` where two chips share one.
    """
    rails: List[_Rail] = []
    jp4 = os.path.join(sysfs_root, "sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*")
    for name_path in sorted(glob.glob(jp4)):
        channel = name_path.rsplit("_", 1)[-1]
        power_path = os.path.join(os.path.dirname(name_path), f"in_power{channel}_input")
        name = _read_text(name_path)
        if name and os.path.exists(power_path):
            rails.append(_Rail(name, power_path, None, None))
    hwmon = os.path.join(sysfs_root, "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label")
    for label_path in sorted(glob.glob(hwmon)):
        match = re.search(r"in(\d+)_label$", label_path)
        name = _read_text(label_path)
        if match is None or not name or name.upper() == "NC":
            continue
        folder = os.path.dirname(label_path)
        volt_path = os.path.join(folder, f"in{match.group(1)}_input")
        curr_path = os.path.join(folder, f"curr{match.group(1)}_input")
        if os.path.exists(volt_path) and os.path.exists(curr_path):
            rails.append(_Rail(name, None, volt_path, curr_path))
    seen: Dict[str, int] = {}
    unique: List[_Rail] = []
    for rail in rails:
        seen[rail.name] = seen.get(rail.name, 0) + 1
        if seen[rail.name] == 1:
            unique.append(rail)
            continue
        device = re.search(r"[/\\](\d+-[0-9a-fA-F]{4})[/\\]", rail.power_path or rail.volt_path or "")
        unique.append(rail._replace(name=f"{rail.name}@{device.group(1) if device else seen[rail.name]}"))
    return unique


class JetsonMeter(EnergyMeter):
    """Board power of an NVIDIA Jetson from its INA3221 rails, integrated in a thread.

    The energy is the total board input rail's (a name ending ``_IN``: ``POM_5V_IN`` on the
    Nano, ``VDD_IN`` on Xavier NX / Orin Nano); where a board has none (e.g. AGX Xavier, AGX
    Orin), it is the sum of all rails, and the note says so. Every rail's energy (GPU, CPU, SoC)
    is recorded in ``rails``.

    Args:
        sysfs_root: Root under which ``sys/`` is looked up.
        total_rail: Name of the rail to report as the total; found automatically when None.
        sample_hz: Sampling rate, in Hz (10-50 Hz is sensible; the INA3221 averages internally).
        idle_seconds: See :class:`EnergyMeter`.
        subtract_idle: See :class:`EnergyMeter`.
        sync: See :class:`EnergyMeter`; pass ``torch.cuda.synchronize``.
        clock: See :class:`EnergyMeter`.
        sleep: See :class:`EnergyMeter`.

    Raises:
        EnergyMeterError: If no rail is found or a rail cannot be read.
    """

    name = "jetson"

    def __init__(
        self,
        *,
        sysfs_root: str = "/",
        total_rail: Optional[str] = None,
        sample_hz: float = DEFAULT_SAMPLE_HZ,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        subtract_idle: bool = True,
        sync: Optional[Callable[[], None]] = None,
        clock: Clock = time.perf_counter,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(
            idle_seconds=idle_seconds, subtract_idle=subtract_idle, sync=sync, clock=clock, sleep=sleep
        )
        self._rails = find_jetson_rails(sysfs_root)
        if not self._rails:
            drivers = os.path.join(sysfs_root, "sys/bus/i2c/drivers")
            raise EnergyMeterError(
                f"no INA3221 power rails under {drivers}/ina3221x/*/iio:device* (JetPack 4) or "
                f"{drivers}/ina3221/*/hwmon/hwmon* (JetPack 5/6): not a Jetson board?"
            )
        names = [rail.name for rail in self._rails]
        if total_rail is not None and total_rail not in names:
            raise EnergySpecError(
                f"no rail named {total_rail!r} on this board; its rails: {', '.join(names)}"
            )
        if total_rail is None:
            total_rail = next((n for n in names if n.upper().endswith(_TOTAL_RAIL_SUFFIX)), None)
        self.total_rail = total_rail
        self.read_rails()  # fail now, with the file's name, if a rail is unreadable
        self._integrator = PowerIntegrator(self.read_rails, sample_hz=sample_hz, clock=clock)

    @property
    def rail_names(self) -> List[str]:
        """The names of the rails found."""
        return [rail.name for rail in self._rails]

    def read_rails(self) -> Dict[str, float]:
        """Read the power of every rail now, in W."""
        power: Dict[str, float] = {}
        for rail in self._rails:
            if rail.power_path is not None:
                power[rail.name] = _read_number(rail.power_path, _JETSON_READ_FIX) / 1000.0
            else:
                volts = _read_number(str(rail.volt_path), _JETSON_READ_FIX) / 1000.0
                power[rail.name] = volts * _read_number(str(rail.curr_path), _JETSON_READ_FIX) / 1000.0
        return power

    def _begin(self) -> None:
        self._integrator.start()

    def _end(self, seconds: float) -> _Raw:
        rails = self._integrator.stop()
        samples = f"{self._integrator.n_samples} samples at {self._integrator.sample_hz:g} Hz"
        if self.total_rail is not None:
            joules = rails.get(self.total_rail, 0.0)
            note = f"jetson: INA3221 rail {self.total_rail} (total board input power), {samples}"
        else:
            joules = sum(rails.values())
            note = (
                f"jetson: no total-input rail (like VDD_IN / POM_5V_IN) on this board, so the SUM of rails "
                f"{', '.join(sorted(rails))} (misses regulator losses and unmonitored parts), {samples}"
            )
        return _Raw(joules, rails, self._integrator.period_s, note)


class _RaplDomain(NamedTuple):
    name: str
    energy_path: str
    max_range_uj: Optional[float]


def _rapl_fix(path: str) -> str:
    return (
        "RAPL energy is readable by root only since Linux 5.10: run as root, or `sudo chmod o+r "
        f"{path}` (until reboot), or add a udev rule such as "
        '`SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod o+r /sys%p/energy_uj"` '
        "in /etc/udev/rules.d/; or choose another meter (e.g. 'estimate')"
    )


def find_rapl_domains(sysfs_root: str = "/") -> List[_RaplDomain]:
    """Find the top-level RAPL package domains (``intel-rapl:N``, not ``intel-rapl:N:M``).

    A ``psys`` (platform) domain is left out when package domains exist, as it contains them.

    Args:
        sysfs_root: Root under which ``sys/`` is looked up.
    """
    pattern = os.path.join(sysfs_root, "sys/class/powercap/intel-rapl:*")
    domains: List[_RaplDomain] = []
    for folder in sorted(glob.glob(pattern)):
        if not re.fullmatch(r"intel-rapl:\d+", os.path.basename(folder)):
            continue
        name = _read_text(os.path.join(folder, "name")) or os.path.basename(folder)
        max_text = _read_text(os.path.join(folder, "max_energy_range_uj"))
        try:
            max_range = float(max_text) if max_text else None
        except ValueError:
            max_range = None
        if any(d.name == name for d in domains):
            name = os.path.basename(folder)
        domains.append(_RaplDomain(name, os.path.join(folder, "energy_uj"), max_range))
    packages = [d for d in domains if d.name != "psys"]
    return packages if packages else domains


class RaplMeter(EnergyMeter):
    """CPU package energy from Intel/AMD RAPL through powercap sysfs (packages summed).

    The counters (``energy_uj``, in uJ) wrap at ``max_energy_range_uj``; they are read every
    ``poll_s`` during a run so that a wrap is seen and added back. Package energy covers the CPU
    cores, caches and on-package graphics, not DRAM nor a discrete GPU.

    Args:
        sysfs_root: Root under which ``sys/`` is looked up.
        poll_s: Period of the wraparound poll, in s (well under the counter's wrap time).
        idle_seconds: See :class:`EnergyMeter`.
        subtract_idle: See :class:`EnergyMeter`.
        sync: See :class:`EnergyMeter`.
        clock: See :class:`EnergyMeter`.
        sleep: See :class:`EnergyMeter`.

    Raises:
        EnergyMeterError: If there is no RAPL package domain, or its counter is not readable
            (the message names the file and how to make it readable).
    """

    name = "rapl"

    def __init__(
        self,
        *,
        sysfs_root: str = "/",
        poll_s: float = DEFAULT_RAPL_POLL_S,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        subtract_idle: bool = True,
        sync: Optional[Callable[[], None]] = None,
        clock: Clock = time.perf_counter,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(
            idle_seconds=idle_seconds, subtract_idle=subtract_idle, sync=sync, clock=clock, sleep=sleep
        )
        self._domains = find_rapl_domains(sysfs_root)
        if not self._domains:
            where = os.path.join(sysfs_root, "sys/class/powercap")
            raise EnergyMeterError(
                f"no RAPL package domain (intel-rapl:N) under {where}: not an x86 machine, or the RAPL "
                "driver is not loaded (`sudo modprobe intel_rapl_msr`)"
            )
        self.poll_s = float(poll_s)
        if not math.isfinite(self.poll_s) or self.poll_s <= 0:
            raise EnergySpecError(f"poll_s must be a finite number of seconds > 0, got {poll_s!r}")
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._last = self._read_all()  # fail now, with the file's name and the fix
        self._acc = [0.0] * len(self._domains)

    def _read_all(self) -> List[float]:
        return [_read_number(d.energy_path, _rapl_fix(d.energy_path)) for d in self._domains]

    def _update(self) -> None:
        with self._lock:
            now = self._read_all()
            for i, (domain, value) in enumerate(zip(self._domains, now)):
                delta = value - self._last[i]
                if delta < 0:
                    if domain.max_range_uj is None:
                        raise EnergyMeterError(
                            f"{domain.energy_path} wrapped around and max_energy_range_uj is unreadable"
                        )
                    delta += domain.max_range_uj
                self._acc[i] += delta
                self._last[i] = value

    def _poll(self) -> None:
        while not self._stop_event.wait(self.poll_s):
            try:
                self._update()
            except Exception as exc:  # noqa: BLE001 - reported by _end
                self._error = exc
                return

    def _begin(self) -> None:
        with self._lock:
            self._last = self._read_all()
            self._acc = [0.0] * len(self._domains)
        self._error = None
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._poll, name="tinysnn-rapl-poll", daemon=True)
        self._thread.start()

    def _end(self, seconds: float) -> _Raw:
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise EnergyMeterError(f"reading RAPL failed during the measurement: {error}") from error
        self._update()
        rails = {d.name: acc / 1e6 for d, acc in zip(self._domains, self._acc)}
        note = f"rapl: CPU package energy counters ({', '.join(rails)}; not DRAM, not a discrete GPU)"
        return _Raw(sum(rails.values()), rails, None, note)
