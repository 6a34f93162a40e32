"""Energy: measured joules with the best meter the machine has, and an op-count model.

docs/method.md §4. The paper measures energy as simulation time x operational power on an RTX
2080 Ti and a Jetson Nano. We read joules from a meter, subtract the idle power, and record the
meter used:

- ``nvml``: NVIDIA GPUs, the total-energy counter (Volta and newer) or integrated power;
- ``jetson``: the INA3221 power rails of Jetson boards (JetPack 4 and 5/6 sysfs layouts);
- ``rapl``: x86 CPU packages through powercap sysfs, where readable;
- ``estimate[:WATTS]``: wall time x a stated power, always labelled an estimate, never a
  measurement.

``make_meter("auto")`` takes the first of nvml, jetson, rapl that works, else the estimate.
Beside the meters, :func:`op_energy_joules` gives a hardware-independent figure from operation
counts in which the bit width matters (``tinysnn._energy_ops``).

Example:
    >>> from tinysnn.energy import make_meter
    >>> meter = make_meter("estimate:30")
    >>> with meter:
    ...     pass  # run the network here
    >>> meter.reading.meter, meter.reading.is_estimate
    ('estimate', True)

On a GPU pass ``sync=torch.cuda.synchronize`` so that queued kernels are counted in the run;
this module does not import torch.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from tinysnn._energy_backends import (
    DEFAULT_ESTIMATE_POWER_W,
    DEFAULT_RAPL_POLL_S,
    NVML_INSTALL_HINT,
    EstimateMeter,
    JetsonMeter,
    NvmlMeter,
    RaplMeter,
    check_power_w,
    find_jetson_rails,
    find_rapl_domains,
)
from tinysnn._energy_meter import (
    DEFAULT_IDLE_SECONDS,
    DEFAULT_SAMPLE_HZ,
    Clock,
    EnergyMeter,
    EnergyMeterError,
    EnergyReading,
    EnergySpecError,
    PowerIntegrator,
    Sleep,
    check_idle_seconds,
)
from tinysnn._energy_ops import (
    DEFAULT_OP_COSTS,
    OpCounts,
    OpEnergyCosts,
    layer_op_counts,
    op_energy_breakdown,
    op_energy_joules,
)

__all__ = [
    "DEFAULT_ESTIMATE_POWER_W",
    "DEFAULT_IDLE_SECONDS",
    "DEFAULT_OP_COSTS",
    "DEFAULT_RAPL_POLL_S",
    "DEFAULT_SAMPLE_HZ",
    "METER_NAMES",
    "NVML_INSTALL_HINT",
    "EnergyMeter",
    "EnergyMeterError",
    "EnergyReading",
    "EnergySpecError",
    "EstimateMeter",
    "JetsonMeter",
    "NvmlMeter",
    "OpCounts",
    "OpEnergyCosts",
    "PowerIntegrator",
    "RaplMeter",
    "find_jetson_rails",
    "find_rapl_domains",
    "layer_op_counts",
    "make_meter",
    "op_energy_breakdown",
    "op_energy_joules",
    "parse_meter_spec",
]

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
    *,
    device_index: int = 0,
    idle_seconds: float = DEFAULT_IDLE_SECONDS,
    subtract_idle: bool = True,
    sync: Optional[Callable[[], None]] = None,
    sysfs_root: str = "/",
    sample_hz: float = DEFAULT_SAMPLE_HZ,
    estimate_power_w: float = DEFAULT_ESTIMATE_POWER_W,
    nvml_module: Optional[Any] = None,
    clock: Clock = time.perf_counter,
    sleep: Sleep = time.sleep,
) -> EnergyMeter:
    """Make an energy meter by name, or the best one this machine has (``auto``).

    ``auto`` tries, in order: nvml (pynvml importable and the GPU answers), jetson (INA3221
    sysfs found), rapl (counters readable), and falls back to the estimate; the reading's note
    says why each earlier meter was skipped.

    Args:
        spec: ``auto``, ``nvml``, ``jetson``, ``rapl``, ``estimate`` or ``estimate:WATTS``.
        device_index: NVML index of the GPU to measure.
        idle_seconds: Quiet window before the first run whose mean power is subtracted, in s;
            0 disables it. Not used by the estimate.
        subtract_idle: Subtract the idle power (it is recorded either way).
        sync: Called before the start and stop readings, e.g. ``torch.cuda.synchronize``.
        sysfs_root: Root of the sysfs tree (``/``; a fake tree in tests).
        sample_hz: Sampling rate of integrated power sensors (jetson, nvml without a counter).
        estimate_power_w: Power of ``estimate`` without ``:WATTS``, and of auto's fallback, in W.
        nvml_module: The ``pynvml`` module or a stand-in; imported when None.
        clock: Monotonic time source in s.
        sleep: Sleep function for the idle window.

    Returns:
        A meter, not yet started.

    Raises:
        EnergySpecError: For a bad spec or argument.
        EnergyMeterError: If the named meter is not available here (the message says why and
            how to fix it, e.g. ``pip install "tinysnn[nvml]"``).
    """
    name, watts = parse_meter_spec(spec)
    check_idle_seconds(idle_seconds)
    fallback_w = check_power_w(estimate_power_w, "estimate_power_w")
    rate = float(sample_hz)
    if not math.isfinite(rate) or rate <= 0 or rate > 1000:
        raise EnergySpecError(f"sample_hz must be in (0, 1000] Hz (10-50 Hz is sensible), got {sample_hz!r}")
    common: Dict[str, Any] = {
        "idle_seconds": idle_seconds,
        "subtract_idle": subtract_idle,
        "sync": sync,
        "clock": clock,
        "sleep": sleep,
    }
    builders: List[Tuple[str, Callable[[], EnergyMeter]]] = [
        ("nvml", lambda: NvmlMeter(device_index, nvml_module=nvml_module, sample_hz=sample_hz, **common)),
        ("jetson", lambda: JetsonMeter(sysfs_root=sysfs_root, sample_hz=sample_hz, **common)),
        ("rapl", lambda: RaplMeter(sysfs_root=sysfs_root, **common)),
    ]
    if name == "estimate":
        return EstimateMeter(fallback_w if watts is None else watts, sync=sync, clock=clock, sleep=sleep)
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
    meter = EstimateMeter(fallback_w, sync=sync, clock=clock, sleep=sleep)
    meter.selection_note = f"auto found no meter: {' | '.join(skipped)}"
    return meter
