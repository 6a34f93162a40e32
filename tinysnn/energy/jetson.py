"""The ``jetson`` meter: board power of an NVIDIA Jetson from its INA3221 rails (JetPack 4 and 5/6).

Every sysfs path is taken under ``sysfs_root`` (default ``/``), so that tests can build a fake tree.
"""

import glob
import os
import re
from typing import Dict, List, NamedTuple, Optional

from .meters import (
    DEFAULT_METER_OPTIONS,
    DEFAULT_SAMPLE_HZ,
    EnergyMeter,
    EnergyMeterError,
    EnergySpecError,
    MeterOptions,
    RawReading,
)
from .sampling import PowerIntegrator
from .sysfs import read_number, read_text

__all__ = ["JetsonMeter", "find_jetson_rails"]

_TOTAL_RAIL_SUFFIX = "_IN"  # VDD_IN (JetPack 5/6 boards, TX2), POM_5V_IN (Jetson Nano)


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
        name = read_text(name_path)
        if name and os.path.exists(power_path):
            rails.append(_Rail(name, power_path, None, None))
    hwmon = os.path.join(sysfs_root, "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label")
    for label_path in sorted(glob.glob(hwmon)):
        match = re.search(r"in(\d+)_label$", label_path)
        name = read_text(label_path)
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
        options: See :class:`~tinysnn.energy.meters.MeterOptions`.

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
        options: MeterOptions = DEFAULT_METER_OPTIONS,
    ) -> None:
        super().__init__(options)
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
        self._integrator = PowerIntegrator(self.read_rails, sample_hz=sample_hz, clock=self._clock)

    @property
    def rail_names(self) -> List[str]:
        """The names of the rails found."""
        return [rail.name for rail in self._rails]

    def read_rails(self) -> Dict[str, float]:
        """Read the power of every rail now, in W."""
        power: Dict[str, float] = {}
        for rail in self._rails:
            if rail.power_path is not None:
                power[rail.name] = read_number(rail.power_path, _JETSON_READ_FIX) / 1000.0
            else:
                volts = read_number(str(rail.volt_path), _JETSON_READ_FIX) / 1000.0
                power[rail.name] = volts * read_number(str(rail.curr_path), _JETSON_READ_FIX) / 1000.0
        return power

    def _begin(self) -> None:
        self._integrator.start()

    def _end(self, seconds: float) -> RawReading:
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
        return RawReading(joules, rails, self._integrator.period_s, note)
