"""The ``rapl`` meter: x86 CPU package energy from Intel/AMD RAPL through powercap sysfs.

Every sysfs path is taken under ``sysfs_root`` (default ``/``), so that tests can build a fake tree.
"""

import glob
import math
import os
import re
import threading
from typing import List, NamedTuple, Optional

from .meters import (
    DEFAULT_METER_OPTIONS,
    EnergyMeter,
    EnergyMeterError,
    EnergySpecError,
    MeterOptions,
    RawReading,
)
from .sysfs import read_number, read_text

__all__ = ["DEFAULT_RAPL_POLL_S", "RaplMeter", "find_rapl_domains"]

DEFAULT_RAPL_POLL_S = 1.0
"""How often RAPL counters are read during a run, in s, to catch wraparounds."""


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
        name = read_text(os.path.join(folder, "name")) or os.path.basename(folder)
        max_text = read_text(os.path.join(folder, "max_energy_range_uj"))
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
        options: See :class:`~tinysnn.energy.meters.MeterOptions`.

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
        options: MeterOptions = DEFAULT_METER_OPTIONS,
    ) -> None:
        super().__init__(options)
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
        return [read_number(d.energy_path, _rapl_fix(d.energy_path)) for d in self._domains]

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

    def _end(self, seconds: float) -> RawReading:
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
        return RawReading(sum(rails.values()), rails, None, note)
