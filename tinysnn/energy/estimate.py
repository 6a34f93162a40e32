"""The ``estimate`` meter: wall time x a stated power, for machines without an energy meter.

Never a measurement, and every reading says so (``is_estimate``).
"""

import dataclasses
import math

from .meters import DEFAULT_METER_OPTIONS, EnergyMeter, EnergySpecError, MeterOptions, RawReading

__all__ = ["DEFAULT_ESTIMATE_POWER_W", "EstimateMeter", "check_power_w"]

DEFAULT_ESTIMATE_POWER_W = 15.0
"""Power assumed by the ``estimate`` meter, in W (Jetson-Nano-class board under load)."""


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


class EstimateMeter(EnergyMeter):
    """Time x a stated power: NOT a measurement, and every reading says so (``is_estimate``).

    Args:
        power_w: The stated power, in W.
        options: See :class:`~tinysnn.energy.meters.MeterOptions` (``sync`` so that the wall time
            covers queued device work); its idle window is ignored, as an estimate has none.
    """

    name = "estimate"
    is_estimate = True

    def __init__(
        self,
        power_w: float = DEFAULT_ESTIMATE_POWER_W,
        options: MeterOptions = DEFAULT_METER_OPTIONS,
    ) -> None:
        super().__init__(dataclasses.replace(options, idle_seconds=0.0, subtract_idle=False))
        self.power_w = check_power_w(power_w, "the estimate's power")

    def _begin(self) -> None:
        pass

    def _end(self, seconds: float) -> RawReading:
        note = (
            f"ESTIMATE, not a measurement: wall time x a stated {self.power_w:g} W; "
            "no energy meter was read and no idle power subtracted"
        )
        return RawReading(self.power_w * seconds, {}, None, note)
