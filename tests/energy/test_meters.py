"""Tests of the energy meters (tinysnn.energy): fake sysfs trees, a stub NVML, one options record."""

from __future__ import annotations

import builtins
import dataclasses
import inspect
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from tinysnn.energy import (
    EnergyMeter,
    EnergyMeterError,
    EnergyReading,
    EnergySpecError,
    EstimateMeter,
    JetsonMeter,
    MeterOptions,
    NvmlMeter,
    RaplMeter,
    make_meter,
    parse_meter_spec,
)
from tinysnn.energy.sampling import PowerIntegrator

# -- fakes ------------------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told to; ``sleep`` advances it (and runs a hook first)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t
        self.on_sleep: Optional[Callable[[float], None]] = None
        self.slept: List[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


class StubNVMLError(Exception):
    pass


class StubNotSupportedError(StubNVMLError):
    pass


class StubNvml:
    """Stands in for pynvml: one GPU, an energy counter in mJ (or none), power in mW."""

    NVMLError = StubNVMLError
    NVMLError_NotSupported = StubNotSupportedError

    def __init__(
        self,
        *,
        counter: bool = True,
        power: bool = True,
        fail_init: bool = False,
        power_mw: float = 100_000.0,
    ) -> None:
        self.counter = counter
        self.power = power
        self.fail_init = fail_init
        self.energy_mj = 1_000_000
        self.power_mw = power_mw
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise StubNVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if index != 0:
            raise StubNVMLError("Invalid Argument")
        return "handle0"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"Stub GPU"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.counter:
            raise StubNotSupportedError("Not Supported")
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: str) -> float:
        if not self.power:
            raise StubNotSupportedError("Not Supported")
        return self.power_mw


def _write(path: Path, value: object) -> None:
    """Write a sysfs-like file atomically (a sampling thread may be reading it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / (path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(str(tmp), str(path))


def make_jetson_jp4(root: Path, rails_mw: Dict[str, float]) -> Path:
    """JetPack 4 (Jetson Nano) layout: rail_name_<N>, in_power<N>_input in mW."""
    folder = root / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for i, (name, mw) in enumerate(rails_mw.items()):
        _write(folder / f"rail_name_{i}", name)
        _write(folder / f"in_power{i}_input", mw)
        _write(folder / f"in_voltage{i}_input", 5000)
    return folder


def make_jetson_hwmon(
    root: Path, rails: Dict[str, Tuple[float, float]], device: str = "1-0040", hwmon: str = "hwmon3"
) -> Path:
    """JetPack 5/6 hwmon layout: in<K>_label, in<K>_input (mV), curr<K>_input (mA)."""
    folder = root / f"sys/bus/i2c/drivers/ina3221/{device}/hwmon/{hwmon}"
    for k, (name, (mv, ma)) in enumerate(rails.items(), start=1):
        _write(folder / f"in{k}_label", name)
        _write(folder / f"in{k}_input", mv)
        _write(folder / f"curr{k}_input", ma)
    _write(folder / "in7_label", "sum of shunt voltages")  # no curr7: not a rail
    _write(folder / "in7_input", 40)
    return folder


def make_rapl(root: Path, domains: Dict[str, int], max_uj: int = 262_143_328_850) -> Path:
    base = root / "sys/class/powercap"
    for i, (name, uj) in enumerate(domains.items()):
        _write(base / f"intel-rapl:{i}" / "name", name)
        _write(base / f"intel-rapl:{i}" / "energy_uj", uj)
        _write(base / f"intel-rapl:{i}" / "max_energy_range_uj", max_uj)
    _write(base / "intel-rapl:0:0" / "name", "core")  # a subdomain: must be ignored
    _write(base / "intel-rapl:0:0" / "energy_uj", 123_456_789)
    return base


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


# -- the estimate and the spec ------------------------------------------------------------------


def test_estimate_is_labelled_an_estimate() -> None:
    clock = FakeClock()
    meter = make_meter("estimate:30", MeterOptions(clock=clock, sleep=clock.sleep, idle_seconds=5.0))
    assert isinstance(meter, EstimateMeter)
    with meter:
        clock.advance(2.0)
    reading = meter.reading
    assert reading.meter == "estimate"
    assert reading.is_estimate is True
    assert reading.joules == pytest.approx(60.0) and reading.raw_joules == pytest.approx(60.0)
    assert reading.seconds == pytest.approx(2.0)
    assert "ESTIMATE" in reading.note and "not a measurement" in reading.note and "30 W" in reading.note
    assert reading.idle_power_w is None and reading.idle_subtracted is False
    assert reading.sample_period_s is None
    assert clock.slept == []  # no idle window for an estimate


def test_estimate_default_and_stated_power() -> None:
    clock = FakeClock()
    assert make_meter("estimate", MeterOptions(clock=clock)).power_w == 15.0  # type: ignore[attr-defined]
    assert make_meter("estimate", MeterOptions(clock=clock), estimate_power_w=7.5).power_w == 7.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("auto", ("auto", None)),
        (" NVML ", ("nvml", None)),
        ("Estimate:30W", ("estimate", 30.0)),
        ("estimate:2.5", ("estimate", 2.5)),
    ],
)
def test_parse_meter_spec(spec: str, expected: Tuple[str, Optional[float]]) -> None:
    assert parse_meter_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("foo", "unknown energy meter"),
        ("", "unknown energy meter"),
        ("estimate:abc", "bad power"),
        ("estimate:-5", "bad power"),
        ("estimate:0", "bad power"),
        ("estimate:nan", "bad power"),
        ("estimate:inf", "bad power"),
        ("rapl:3", "takes no argument"),
    ],
)
def test_bad_spec_raises_clear_error(spec: str, words: str) -> None:
    with pytest.raises(EnergySpecError, match=words) as info:
        make_meter(spec)
    assert isinstance(info.value, ValueError) and isinstance(info.value, EnergyMeterError)
    assert "estimate:30" in str(info.value)  # the message shows a valid example


@pytest.mark.parametrize("kwargs", [{"sample_hz": 0.0}, {"sample_hz": 1001.0}, {"estimate_power_w": -3}])
def test_bad_arguments_raise(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(EnergySpecError):
        make_meter("estimate", **kwargs)


@pytest.mark.parametrize("idle_seconds", [-1.0, math.nan, math.inf])
def test_bad_idle_window_raises(idle_seconds: float) -> None:
    with pytest.raises(EnergySpecError, match="idle_seconds"):
        MeterOptions(idle_seconds=idle_seconds)


# -- the meter interface ----------------------------------------------------------------------


def test_start_stop_errors_and_context_manager_on_exception() -> None:
    clock = FakeClock()
    meter = make_meter("estimate:10", MeterOptions(clock=clock))
    with pytest.raises(EnergyMeterError, match="no reading yet"):
        _ = meter.reading
    with pytest.raises(EnergyMeterError, match="not started"):
        meter.stop()
    meter.start()
    with pytest.raises(EnergyMeterError, match="already running"):
        meter.start()
    clock.advance(1.0)
    first = meter.stop()
    assert first.joules == pytest.approx(10.0)
    with pytest.raises(KeyError), meter:
        raise KeyError("the run failed")
    assert not meter.running
    with pytest.raises(EnergyMeterError):
        _ = meter.reading  # a failed run leaves no reading


def test_reading_as_dict_is_json_and_mean_power() -> None:
    reading = EnergyReading(
        joules=3.0, raw_joules=4.0, seconds=2.0, meter="rapl", is_estimate=False, rails={"package-0": 4.0}
    )
    assert json.loads(json.dumps(reading.as_dict()))["rails"] == {"package-0": 4.0}
    assert reading.mean_power_w == pytest.approx(2.0)
    assert hash(reading) == hash(reading)  # frozen and hashable despite the rails dict


# -- the power integrator ---------------------------------------------------------------------


def test_integrator_linear_power_is_exact_and_quadratic_within_trapezoid_bound() -> None:
    clock = FakeClock(t=0.0)
    power = {"linear": lambda t: 10.0 + 4.0 * t, "quadratic": lambda t: 30.0 * t * t}
    integrator = PowerIntegrator(
        lambda: {k: f(clock.t) for k, f in power.items()}, sample_hz=20.0, clock=clock
    )
    for step in range(21):  # t = 0, 0.05, ..., 1.0 s
        clock.t = step * 0.05
        integrator.sample()
    energy = integrator.stop()  # no thread was started: takes one more sample at t = 1.0 (dt = 0)
    assert energy["linear"] == pytest.approx(10.0 + 2.0, abs=1e-12)  # integral of 10 + 4t over [0, 1]
    # Trapezoid error for p = 30 t^2 is exactly (b - a) h^2 / 12 * p'' = 1 * 0.05^2 / 12 * 60 = 0.0125 J.
    assert abs(energy["quadratic"] - 10.0) <= 0.0125 + 1e-9
    assert integrator.n_samples == 22


def test_integrator_thread_on_a_synthetic_trace() -> None:
    """The thread samples a linear trace on a ticking fake clock; trapezoids are exact on it."""

    class TickClock:
        def __init__(self) -> None:
            self.t = 0.0

        def __call__(self) -> float:
            self.t += 0.01  # every sample moves the trace 10 ms on
            return self.t

    clock = TickClock()
    integrator = PowerIntegrator(lambda: {"p": 5.0 + 100.0 * clock.t, "c": 2.0}, sample_hz=50.0, clock=clock)
    integrator.start()
    deadline = time.monotonic() + 2.0
    while integrator.n_samples < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    energy = integrator.stop()
    assert integrator.n_samples >= 5  # start + at least 3 thread samples + stop
    t0 = 0.01
    t1 = t0 + integrator.span_s
    exact = 5.0 * (t1 - t0) + 50.0 * (t1 * t1 - t0 * t0)
    assert energy["p"] == pytest.approx(exact, rel=1e-9)
    assert energy["c"] == pytest.approx(2.0 * integrator.span_s, rel=1e-9)


def test_integrator_thread_error_is_reported() -> None:
    calls = {"n": 0}

    def read() -> Dict[str, float]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("sensor gone")
        return {"p": 1.0}

    integrator = PowerIntegrator(read, sample_hz=200.0)
    integrator.start()
    time.sleep(0.05)
    with pytest.raises(EnergyMeterError, match="sensor gone"):
        integrator.stop()


# -- NVML -------------------------------------------------------------------------------------


def test_nvml_energy_counter_with_idle_subtraction() -> None:
    clock = FakeClock()
    stub = StubNvml()
    syncs: List[float] = []

    def idle_draw(seconds: float) -> None:
        stub.energy_mj += int(50.0 * seconds * 1000)  # 50 W idle

    clock.on_sleep = idle_draw
    options = MeterOptions(
        idle_seconds=1.0, sync=lambda: syncs.append(clock.t), clock=clock, sleep=clock.sleep
    )
    meter = make_meter("nvml", options, nvml_module=stub)
    assert isinstance(meter, NvmlMeter) and meter.mode == "counter"
    meter.start()
    assert meter.idle_power_w == pytest.approx(50.0)
    stub.energy_mj += 500_000  # 500 J during the run
    clock.advance(2.0)
    reading = meter.stop()
    assert reading.meter == "nvml" and not reading.is_estimate
    assert reading.raw_joules == pytest.approx(500.0)
    assert reading.joules == pytest.approx(500.0 - 50.0 * 2.0)
    assert reading.idle_subtracted and reading.sample_period_s is None
    assert "total-energy counter" in reading.note and "Stub GPU" in reading.note
    assert len(syncs) >= 3  # before the idle window, the start and the stop
    assert syncs[-1] == clock.t  # the stop was read after sync
    meter.close()
    assert stub.shutdowns == 1


def test_nvml_falls_back_to_power_integration_when_counter_not_supported() -> None:
    clock = FakeClock()
    stub = StubNvml(counter=False, power_mw=100_000.0)
    options = MeterOptions(idle_seconds=1.0, clock=clock, sleep=clock.sleep)
    meter = make_meter("nvml", options, nvml_module=stub, sample_hz=20.0)
    assert isinstance(meter, NvmlMeter) and meter.mode == "power"
    assert meter.measure_idle() == pytest.approx(100.0)
    stub.power_mw = 250_000.0  # constant during the run: the integral is exact
    with meter:
        clock.advance(2.0)
    reading = meter.reading
    assert reading.raw_joules == pytest.approx(500.0, rel=1e-12)
    assert reading.joules == pytest.approx(500.0 - 200.0, rel=1e-12)
    assert reading.sample_period_s == pytest.approx(0.05)
    assert "Not Supported" in reading.note and "power integrated" in reading.note


def test_nvml_errors() -> None:
    with pytest.raises(EnergyMeterError, match="NVML did not start"):
        NvmlMeter(nvml_module=StubNvml(fail_init=True))
    stub = StubNvml()
    with pytest.raises(EnergyMeterError, match="no GPU 3"):
        NvmlMeter(3, nvml_module=stub)
    assert stub.shutdowns == 1
    with pytest.raises(EnergyMeterError, match="neither energy"):
        NvmlMeter(nvml_module=StubNvml(counter=False, power=False))


def test_nvml_without_nvidia_ml_py_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(EnergyMeterError, match=r'pip install "tinysnn\[nvml\]"'):
        make_meter("nvml")


# -- Jetson -----------------------------------------------------------------------------------


def test_jetson_jetpack4_nano_layout(tmp_path: Path) -> None:
    clock = FakeClock()
    folder = make_jetson_jp4(tmp_path, {"POM_5V_IN": 4000, "POM_5V_GPU": 1000, "POM_5V_CPU": 1500})
    meter = make_meter(
        "jetson", MeterOptions(idle_seconds=1.0, clock=clock, sleep=clock.sleep), sysfs_root=str(tmp_path)
    )
    assert isinstance(meter, JetsonMeter)
    assert meter.total_rail == "POM_5V_IN"
    assert meter.rail_names == ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]
    assert meter.measure_idle() == pytest.approx(4.0)
    _write(folder / "in_power0_input", 7000)
    _write(folder / "in_power1_input", 2500)
    _write(folder / "in_power2_input", 2000)
    with meter:
        clock.advance(2.0)
    reading = meter.reading
    assert reading.meter == "jetson" and not reading.is_estimate
    assert reading.raw_joules == pytest.approx(14.0)
    assert reading.joules == pytest.approx(14.0 - 4.0 * 2.0)
    assert reading.rails == pytest.approx({"POM_5V_IN": 14.0, "POM_5V_GPU": 5.0, "POM_5V_CPU": 4.0})
    assert reading.sample_period_s == pytest.approx(0.05)
    assert "POM_5V_IN" in reading.note


def test_jetson_jetpack5_hwmon_layout(tmp_path: Path) -> None:
    clock = FakeClock()
    rails = {"VDD_IN": (5000, 1200), "VDD_CPU_GPU_CV": (5000, 400), "VDD_SOC": (5000, 300)}
    make_jetson_hwmon(tmp_path, rails)
    make_jetson_hwmon(tmp_path, {"NC": (0, 0)}, device="1-0041", hwmon="hwmon4")  # not connected
    meter = make_meter(
        "jetson", MeterOptions(idle_seconds=0, clock=clock, sleep=clock.sleep), sysfs_root=str(tmp_path)
    )
    assert isinstance(meter, JetsonMeter)
    assert meter.rail_names == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    with meter:
        clock.advance(2.0)
    reading = meter.reading
    assert reading.joules == pytest.approx(12.0)  # 5 V x 1.2 A x 2 s
    assert reading.rails == pytest.approx({"VDD_IN": 12.0, "VDD_CPU_GPU_CV": 4.0, "VDD_SOC": 3.0})
    assert reading.idle_power_w is None and not reading.idle_subtracted
    assert "idle power not measured" in reading.note


def test_jetson_without_total_rail_sums_rails_and_says_so(tmp_path: Path) -> None:
    clock = FakeClock()
    make_jetson_hwmon(tmp_path, {"VDD_GPU_SOC": (5000, 1000), "VDD_CPU_CV": (5000, 600)})
    meter = make_meter(
        "jetson", MeterOptions(idle_seconds=0, clock=clock, sleep=clock.sleep), sysfs_root=str(tmp_path)
    )
    with meter:
        clock.advance(1.0)
    assert meter.reading.joules == pytest.approx(8.0)
    assert "SUM of rails" in meter.reading.note


def test_jetson_rails_with_one_name_on_two_chips_stay_apart(tmp_path: Path) -> None:
    make_jetson_hwmon(tmp_path, {"VDD_IN": (5000, 1000), "VDD_GPU": (5000, 200)})
    make_jetson_hwmon(tmp_path, {"VDD_GPU": (5000, 400)}, device="1-0041", hwmon="hwmon4")
    meter = JetsonMeter(sysfs_root=str(tmp_path), options=MeterOptions(idle_seconds=0))
    assert meter.rail_names == ["VDD_IN", "VDD_GPU", "VDD_GPU@1-0041"]
    assert meter.read_rails() == pytest.approx({"VDD_IN": 5.0, "VDD_GPU": 1.0, "VDD_GPU@1-0041": 2.0})


def test_jetson_missing_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(EnergyMeterError, match="not a Jetson"):
        make_meter("jetson", sysfs_root=str(tmp_path))
    folder = make_jetson_jp4(tmp_path, {"POM_5V_IN": 4000})
    power = folder / "in_power0_input"
    power.unlink()
    power.mkdir()  # a directory in place of the file: unreadable even for root
    with pytest.raises(EnergyMeterError, match="in_power0_input"):
        make_meter("jetson", sysfs_root=str(tmp_path))


def test_jetson_named_total_rail(tmp_path: Path) -> None:
    make_jetson_jp4(tmp_path, {"POM_5V_IN": 4000, "POM_5V_GPU": 1000})
    assert JetsonMeter(sysfs_root=str(tmp_path), total_rail="POM_5V_GPU").total_rail == "POM_5V_GPU"
    with pytest.raises(EnergySpecError, match="POM_5V_GPU"):
        JetsonMeter(sysfs_root=str(tmp_path), total_rail="VDD_GPU")


# -- RAPL -------------------------------------------------------------------------------------


def test_rapl_sums_packages_and_handles_wraparound(tmp_path: Path) -> None:
    clock = FakeClock()
    max_uj = 262_143_328_850
    base = make_rapl(tmp_path, {"package-0": max_uj - 1_000_000, "package-1": 5_000_000, "psys": 7})
    meter = make_meter(
        "rapl", MeterOptions(idle_seconds=0, clock=clock, sleep=clock.sleep), sysfs_root=str(tmp_path)
    )
    assert isinstance(meter, RaplMeter)
    with meter:
        _write(base / "intel-rapl:0" / "energy_uj", 2_000_000)  # wrapped: 1 J before, 2 J after
        _write(base / "intel-rapl:1" / "energy_uj", 9_000_000)  # 4 J
        _write(base / "intel-rapl:2" / "energy_uj", 10**12)  # psys: left out
        _write(base / "intel-rapl:0:0" / "energy_uj", 10**12)  # subdomain: left out
        clock.advance(1.0)
    reading = meter.reading
    assert reading.raw_joules == pytest.approx(7.0)
    assert reading.rails == pytest.approx({"package-0": 3.0, "package-1": 4.0})
    assert reading.sample_period_s is None and reading.meter == "rapl"


def test_rapl_idle_subtraction_and_clamp(tmp_path: Path) -> None:
    clock = FakeClock()
    base = make_rapl(tmp_path, {"package-0": 1_000_000})
    energy = base / "intel-rapl:0" / "energy_uj"

    def idle_draw(seconds: float) -> None:
        _write(energy, _read_int(energy) + int(8.0 * seconds * 1e6))  # 8 W idle

    clock.on_sleep = idle_draw
    meter = make_meter(
        "rapl", MeterOptions(idle_seconds=0.5, clock=clock, sleep=clock.sleep), sysfs_root=str(tmp_path)
    )
    meter.start()
    assert clock.slept == [0.5] and meter.idle_power_w == pytest.approx(8.0)
    _write(energy, _read_int(energy) + 50_000_000)  # 50 J over 2 s
    clock.advance(2.0)
    reading = meter.stop()
    assert reading.joules == pytest.approx(50.0 - 16.0)
    assert reading.idle_subtracted and "idle 8 W (subtracted" in reading.note
    meter.start()  # the idle window is measured once
    _write(energy, _read_int(energy) + 1_000_000)  # 1 J over 1 s: less than idle
    clock.advance(1.0)
    assert meter.stop().joules == 0.0
    assert clock.slept == [0.5]


def test_rapl_idle_recorded_but_not_subtracted(tmp_path: Path) -> None:
    clock = FakeClock()
    base = make_rapl(tmp_path, {"package-0": 0})
    energy = base / "intel-rapl:0" / "energy_uj"
    clock.on_sleep = lambda s: _write(energy, _read_int(energy) + int(10 * s * 1e6))
    options = MeterOptions(idle_seconds=1.0, subtract_idle=False, clock=clock, sleep=clock.sleep)
    meter = make_meter("rapl", options, sysfs_root=str(tmp_path))
    with meter:
        _write(energy, _read_int(energy) + 30_000_000)
        clock.advance(1.0)
    assert meter.reading.joules == pytest.approx(30.0)
    assert meter.reading.idle_power_w == pytest.approx(10.0) and not meter.reading.idle_subtracted


def test_rapl_unreadable_names_the_file_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EnergyMeterError, match="no RAPL package domain"):
        make_meter("rapl", sysfs_root=str(tmp_path))
    base = make_rapl(tmp_path, {"package-0": 1})
    energy = base / "intel-rapl:0" / "energy_uj"
    real_open = builtins.open

    def deny(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(energy):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(EnergyMeterError) as info:
        make_meter("rapl", sysfs_root=str(tmp_path))
    message = str(info.value)
    assert str(energy) in message and "permission denied" in message
    assert "root" in message and "chmod o+r" in message and "udev" in message
    monkeypatch.setattr(builtins, "open", real_open)
    energy.unlink()
    energy.mkdir()  # root can read anything; a directory in place of the file cannot be read
    with pytest.raises(EnergyMeterError, match=r"energy_uj.*chmod"):
        make_meter("rapl", sysfs_root=str(tmp_path))


# -- auto -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu", "jetson", "rapl", "expected"),
    [
        (True, True, True, NvmlMeter),
        (False, True, True, JetsonMeter),
        (False, False, True, RaplMeter),
        (False, False, False, EstimateMeter),
    ],
)
def test_auto_selection_order(tmp_path: Path, gpu: bool, jetson: bool, rapl: bool, expected: type) -> None:
    if jetson:
        make_jetson_jp4(tmp_path, {"POM_5V_IN": 4000})
    if rapl:
        make_rapl(tmp_path, {"package-0": 1})
    options = MeterOptions(idle_seconds=0)
    meter = make_meter("auto", options, sysfs_root=str(tmp_path), nvml_module=StubNvml(fail_init=not gpu))
    assert type(meter) is expected
    if expected is not NvmlMeter:
        assert "nvml: NVML did not start" in meter.selection_note


def test_auto_without_pynvml_and_unreadable_rapl_falls_back_to_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    energy = make_rapl(tmp_path, {"package-0": 1}) / "intel-rapl:0" / "energy_uj"
    energy.unlink()
    energy.mkdir()
    clock = FakeClock()
    options = MeterOptions(clock=clock, sleep=clock.sleep)
    meter = make_meter("auto", options, sysfs_root=str(tmp_path), estimate_power_w=20.0)
    assert isinstance(meter, EstimateMeter) and meter.power_w == 20.0
    with meter:
        clock.advance(1.0)
    note = meter.reading.note
    assert meter.reading.is_estimate and "ESTIMATE" in note
    assert "nvidia-ml-py" in note and "not a Jetson" in note and "energy_uj" in note


def test_meters_share_one_interface() -> None:
    assert all(issubclass(cls, EnergyMeter) for cls in (NvmlMeter, JetsonMeter, RaplMeter, EstimateMeter))


# -- one options record -----------------------------------------------------------------------

COMMON_KEYWORDS = {"idle_seconds", "subtract_idle", "sync", "clock", "sleep"}


def test_meter_options_are_the_one_source_of_the_common_keywords() -> None:
    assert {field.name for field in dataclasses.fields(MeterOptions)} == COMMON_KEYWORDS
    for function in (EnergyMeter, EstimateMeter, NvmlMeter, JetsonMeter, RaplMeter, make_meter):
        parameters = set(inspect.signature(function).parameters)
        assert "options" in parameters and not parameters & COMMON_KEYWORDS, function


def test_options_reach_every_platform_meter(tmp_path: Path) -> None:
    clock = FakeClock()
    syncs: List[float] = []
    options = MeterOptions(
        idle_seconds=0.25,
        subtract_idle=False,
        sync=lambda: syncs.append(clock.t),
        clock=clock,
        sleep=clock.sleep,
    )
    make_jetson_jp4(tmp_path, {"POM_5V_IN": 4000})
    make_rapl(tmp_path, {"package-0": 1})
    meters = [
        make_meter("nvml", options, nvml_module=StubNvml()),
        make_meter("jetson", options, sysfs_root=str(tmp_path)),
        make_meter("rapl", options, sysfs_root=str(tmp_path)),
    ]
    for meter in meters:
        assert meter.idle_seconds == 0.25 and meter.subtract_idle is False
        with meter:
            clock.advance(1.0)
        assert meter.reading.idle_power_w is not None and not meter.reading.idle_subtracted
        meter.close()
    assert clock.slept == [0.25, 0.25, 0.25] and len(syncs) == 9  # idle window, start, stop
    estimate = make_meter("estimate", options)
    assert estimate.idle_seconds == 0 and estimate.subtract_idle is False  # an estimate has no idle window
    with estimate:
        clock.advance(1.0)
    assert clock.slept == [0.25, 0.25, 0.25] and len(syncs) == 11
