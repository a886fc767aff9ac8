"""Nvml driver on a real NVIDIA GPU, through kwapi-drivers: skipped where there is none.

On a machine with an NVIDIA GPU and its driver, run::

    .venv/bin/python -m pytest -q -rP -p no:cacheprovider tests/drivers/test_nvml_hardware.py

``-rP`` shows what the test read (GPU, driver version, watts published,
the energy counter's own average) so that the figures can be recorded.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pynvml = pytest.importorskip("pynvml")

INTERVAL = 0.5
READINGS = 8


@dataclass
class RealGpu:
    """GPU 0 as the real NVML describes it, with its handle for the test's own reads."""

    handle: Any
    name: str
    driver_version: str
    has_energy: bool

    def energy(self) -> tuple[int, float]:
        """The total energy counter (mJ) and the monotonic time it was read."""
        return pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle), time.monotonic()


@pytest.fixture
def gpu0() -> Iterator[RealGpu]:
    """GPU 0 of the real libnvidia-ml.so.1; skip if NVML does not load or sees no GPU."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no usable NVIDIA driver here: {exc}")
    try:
        # The fake library of test_nvml.py has no such function: only the real one answers.
        driver_version = pynvml.nvmlSystemGetDriverVersion()
        if pynvml.nvmlDeviceGetCount() == 0:
            pytest.skip("NVML sees no GPU")
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            has_energy = True
        except pynvml.NVMLError_NotSupported:
            has_energy = False
    except pynvml.NVMLError as exc:
        pynvml.nvmlShutdown()
        pytest.skip(f"NVML loaded but cannot describe GPU 0: {exc}")
    try:
        yield RealGpu(handle, _text(name), _text(driver_version), has_energy)
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_real_gpu_0_read_through_kwapi_drivers(gpu0, kwapi_drivers):
    process, client = kwapi_drivers(
        f"""
        [GPU server]
        driver = Nvml
        probes = ['gpu-0']
        parameters = {{'indices': [0], 'interval': {INTERVAL}}}
        """
    )
    first = client.receive(timeout=30)  # the driver runs: measure alongside it from now
    start = gpu0.energy() if gpu0.has_energy else None
    measurements = client.collect(READINGS, timeout=30)
    end = gpu0.energy() if gpu0.has_energy else None
    board_watts = pynvml.nvmlDeviceGetPowerUsage(gpu0.handle) / 1000.0
    watts = [m.meters["w"] for m in measurements]
    print(f"GPU 0: {gpu0.name}, NVIDIA driver {gpu0.driver_version}")
    print(f"energy counter: {'yes' if gpu0.has_energy else 'no'}")
    print(f"first reading: {first.meters['w']} W; then every {INTERVAL} s: {watts}")
    print(f"nvmlDeviceGetPowerUsage at the end: {board_watts} W")
    assert {m.probe_id for m in [first, *measurements]} == {"gpu-0"}
    assert all(0 < w < 2000 for w in [first.meters["w"], *watts]), watts
    source = "energy counter" if gpu0.has_energy else "power reading"
    assert f"gpu-0 is GPU 0 ({gpu0.name}, watts from its {source})" in process.output()
    if gpu0.has_energy:
        (start_mj, start_time), (end_mj, end_time) = start, end
        window = (end_mj - start_mj) / 1000.0 / (end_time - start_time)
        print(f"energy counter over the same {end_time - start_time:.2f} s: {window:.3f} W")
        # The published readings cover about the same intervals, give or take
        # one at each end: their mean is the counter's average over the window.
        assert statistics.mean(watts) == pytest.approx(window, rel=0.2, abs=10.0)
    assert process.stop() == 0
