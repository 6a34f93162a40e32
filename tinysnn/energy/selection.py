"""Choosing a meter: by name, or the best one this machine has (:func:`make_meter`).

A meter spec is ``auto``, ``nvml``, ``jetson``, ``rapl``, ``estimate`` or ``estimate:WATTS``
(:func:`parse_meter_spec`); ``auto`` takes the first of nvml, jetson, rapl that works, else the
estimate.
"""

import math
from typing import Any, Callable, List, Optional, Tuple

from .estimate import DEFAULT_ESTIMATE_POWER_W, EstimateMeter, check_power_w
from .jetson import JetsonMeter
from .meters import (
    DEFAULT_METER_OPTIONS,
    DEFAULT_SAMPLE_HZ,
    EnergyMeter,
    EnergyMeterError,
    EnergySpecError,
    MeterOptions,
    check_sample_hz,
)
from .nvml import NvmlMeter
from .rapl import RaplMeter

__all__ = ["METER_NAMES", "make_meter", "parse_meter_spec"]

METER_NAMES: Tuple[str, ...] = ("auto", "nvml", "jetson", "rapl", "estimate")
"""The meter names a spec may start with."""

_SPEC_HELP = "expected one of auto, nvml, jetson, rapl, estimate[:WATTS] (e.g. 'estimate:30')"


def parse_meter_spec(spec: str) -> Tuple[str, Optional[float]]:
    """Split a meter spec into its name and, for ``estimate:WATTS``, the power.

    Args:
        spec: ``auto``, ``nvml``, ``jetson``, ``rapl``, ``estimate`` or ``estimate:WATTS``
            (case-insensitive; a trailing ``W`` is allowed, as in ``estimate:30W``).

    Returns:
        ``(name, watts)``; watts is None unless given.

    Raises:
        EnergySpecError: For an unknown name, an argument to a meter that takes none, or watts
            that are not a positive finite number.
    """
    if not isinstance(spec, str):
        raise EnergySpecError(f"energy meter spec must be a string, {_SPEC_HELP}; got {spec!r}")
    name, sep, arg = spec.strip().lower().partition(":")
    if name not in METER_NAMES:
        raise EnergySpecError(f"unknown energy meter {spec!r}: {_SPEC_HELP}")
    if not sep:
        return name, None
    if name != "estimate":
        raise EnergySpecError(f"energy meter {name!r} takes no argument, got {spec!r}: {_SPEC_HELP}")
    text = arg.strip()
    if text.endswith("w"):
        text = text[:-1].strip()
    try:
        watts = float(text)
    except ValueError:
        watts = math.nan
    if not math.isfinite(watts) or watts <= 0:
        raise EnergySpecError(
            f"bad power in energy meter spec {spec!r}: WATTS must be a finite number > 0, e.g. 'estimate:30'"
        )
    return name, watts


def make_meter(
    spec: str = "auto",
    options: MeterOptions = DEFAULT_METER_OPTIONS,
    *,
    device_index: int = 0,
    sysfs_root: str = "/",
    sample_hz: float = DEFAULT_SAMPLE_HZ,
    estimate_power_w: float = DEFAULT_ESTIMATE_POWER_W,
    nvml_module: Optional[Any] = None,
) -> EnergyMeter:
    """Make an energy meter by name, or the best one this machine has (``auto``).

    ``auto`` tries, in order: nvml (pynvml importable and the GPU answers), jetson (INA3221
    sysfs found), rapl (counters readable), and falls back to the estimate; the reading's note
    says why each earlier meter was skipped.

    Args:
        spec: ``auto``, ``nvml``, ``jetson``, ``rapl``, ``estimate`` or ``estimate:WATTS``.
        options: Idle window, idle subtraction, sync, clock and sleep of the meter
            (:class:`~tinysnn.energy.meters.MeterOptions`).
        device_index: NVML index of the GPU to measure.
        sysfs_root: Root of the sysfs tree (``/``; a fake tree in tests).
        sample_hz: Sampling rate of integrated power sensors (jetson, nvml without a counter).
        estimate_power_w: Power of ``estimate`` without ``:WATTS``, and of auto's fallback, in W.
        nvml_module: The ``pynvml`` module or a stand-in; imported when None.

    Returns:
        A meter, not yet started.

    Raises:
        EnergySpecError: For a bad spec or argument.
        EnergyMeterError: If the named meter is not available here (the message says why and
            how to fix it, e.g. ``pip install "tinysnn[nvml]"``).
    """
    name, watts = parse_meter_spec(spec)
    fallback_w = check_power_w(estimate_power_w, "estimate_power_w")
    check_sample_hz(sample_hz)
    builders: List[Tuple[str, Callable[[], EnergyMeter]]] = [
        (
            "nvml",
            lambda: NvmlMeter(device_index, nvml_module=nvml_module, sample_hz=sample_hz, options=options),
        ),
        ("jetson", lambda: JetsonMeter(sysfs_root=sysfs_root, sample_hz=sample_hz, options=options)),
        ("rapl", lambda: RaplMeter(sysfs_root=sysfs_root, options=options)),
    ]
    if name == "estimate":
        return EstimateMeter(fallback_w if watts is None else watts, options)
    if name != "auto":
        return dict(builders)[name]()
    skipped: List[str] = []
    for candidate, build in builders:
        try:
            meter = build()
        except EnergySpecError:
            raise
        except EnergyMeterError as exc:
            skipped.append(f"{candidate}: {exc}")
            continue
        if skipped:
            meter.selection_note = f"auto chose {candidate}; skipped {' | '.join(skipped)}"
        return meter
    meter = EstimateMeter(fallback_w, options)
    meter.selection_note = f"auto found no meter: {' | '.join(skipped)}"
    return meter
