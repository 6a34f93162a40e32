"""The ``nvml`` meter: an NVIDIA GPU's energy through NVML (nvidia-ml-py), the GPU board only.

The NVML module is injectable (``nvml_module``) so that tests can use a stand-in.
"""

import contextlib
from typing import Any, Optional

from .meters import (
    DEFAULT_METER_OPTIONS,
    DEFAULT_SAMPLE_HZ,
    EnergyMeter,
    EnergyMeterError,
    MeterOptions,
    RawReading,
)
from .sampling import PowerIntegrator

__all__ = ["NVML_INSTALL_HINT", "NvmlMeter"]

NVML_INSTALL_HINT = 'pip install "tinysnn[nvml]" (or: pip install nvidia-ml-py)'


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
        options: See :class:`~tinysnn.energy.meters.MeterOptions`.

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
        options: MeterOptions = DEFAULT_METER_OPTIONS,
    ) -> None:
        super().__init__(options)
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
                lambda: {"gpu": self._power_w()}, sample_hz=sample_hz, clock=self._clock
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

    def _end(self, seconds: float) -> RawReading:
        where = f"{self.device_name} (GPU {self.device_index}, GPU board only)"
        if self._integrator is not None:
            joules = self._integrator.stop().get("gpu", 0.0)
            note = (
                f"nvml: {where}, power integrated at {self._integrator.sample_hz:g} Hz "
                f"({self._integrator.n_samples} samples; energy counter unavailable: {self._fallback_reason})"
            )
            return RawReading(joules, {}, self._integrator.period_s, note)
        delta_mj = self._energy_mj() - self._e0_mj
        if delta_mj < 0:
            raise EnergyMeterError("the NVML energy counter went backwards (driver reloaded or GPU reset?)")
        return RawReading(delta_mj / 1000.0, {}, None, f"nvml: {where}, total-energy counter")

    def close(self) -> None:
        """Stop a run in progress and shut NVML down (NVML counts its inits)."""
        super().close()
        if self._initialized:
            self._initialized = False
            with contextlib.suppress(Exception):  # nothing to do about a failed shutdown
                self._nvml.nvmlShutdown()
