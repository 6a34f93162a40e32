"""Energy: measured joules with the best meter the machine has, and an op-count model.

docs/method.md §4. The paper measures energy as simulation time x operational power on an RTX
2080 Ti and a Jetson Nano. We read joules from a meter, subtract the idle power, and record the
meter used. Every meter has the one interface of :mod:`tinysnn.energy.meters` and takes the same
:class:`MeterOptions`; one module per platform:

- ``nvml`` (:mod:`~tinysnn.energy.nvml`): NVIDIA GPUs, the total-energy counter (Volta and
  newer) or integrated power;
- ``jetson`` (:mod:`~tinysnn.energy.jetson`): the INA3221 power rails of Jetson boards
  (JetPack 4 and 5/6 sysfs layouts);
- ``rapl`` (:mod:`~tinysnn.energy.rapl`): x86 CPU packages through powercap sysfs, where
  readable;
- ``estimate[:WATTS]`` (:mod:`~tinysnn.energy.estimate`): wall time x a stated power, always
  labelled an estimate, never a measurement.

``make_meter("auto")`` (:mod:`~tinysnn.energy.selection`) takes the first of nvml, jetson, rapl
that works, else the estimate. Beside the meters, the op-count model
(:mod:`~tinysnn.energy.opcount`) counts the operations of a sample and
:func:`op_energy_joules` (:mod:`~tinysnn.energy.costs`) gives their hardware-independent energy,
in which the bit width matters.

Example:
    >>> from tinysnn.energy import MeterOptions, make_meter
    >>> meter = make_meter("estimate:30", MeterOptions(idle_seconds=0))
    >>> with meter:
    ...     pass  # run the network here
    >>> meter.reading.meter, meter.reading.is_estimate
    ('estimate', True)

On a GPU pass ``MeterOptions(sync=torch.cuda.synchronize)`` so that queued kernels are counted
in the run; this package does not import torch.
"""

from .costs import DEFAULT_OP_COSTS, OpEnergyCosts, op_energy_breakdown, op_energy_joules
from .estimate import DEFAULT_ESTIMATE_POWER_W, EstimateMeter
from .jetson import JetsonMeter
from .meters import (
    DEFAULT_IDLE_SECONDS,
    DEFAULT_SAMPLE_HZ,
    EnergyMeter,
    EnergyMeterError,
    EnergyReading,
    EnergySpecError,
    MeterOptions,
)
from .nvml import NvmlMeter
from .opcount import OpCounts, layer_op_counts, sample_op_counts
from .rapl import RaplMeter
from .selection import METER_NAMES, make_meter, parse_meter_spec

__all__ = [
    "DEFAULT_ESTIMATE_POWER_W",
    "DEFAULT_IDLE_SECONDS",
    "DEFAULT_OP_COSTS",
    "DEFAULT_SAMPLE_HZ",
    "METER_NAMES",
    "EnergyMeter",
    "EnergyMeterError",
    "EnergyReading",
    "EnergySpecError",
    "EstimateMeter",
    "JetsonMeter",
    "MeterOptions",
    "NvmlMeter",
    "OpCounts",
    "OpEnergyCosts",
    "RaplMeter",
    "layer_op_counts",
    "make_meter",
    "op_energy_breakdown",
    "op_energy_joules",
    "parse_meter_spec",
    "sample_op_counts",
]
