"""Nvml: power of NVIDIA GPUs through NVML (nvidia-ml-py, extra ``gpu``).

Each probe is one GPU, by index.  Where the GPU has a total energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules, Volta and later) the
published watts are the energy used since the previous sample divided by
the time elapsed: an exact average over the interval, whatever happened
between two readings.  Read faster than the GPU updates its counter, a
reading that finds it unmoved gives no sample (for up to
:data:`~kwapi.drivers.base.COUNTER_HOLD` seconds), so samples come at the
GPU's own update rate and no energy is lost or counted twice.  Otherwise,
and for the first reading, the watts are ``nvmlDeviceGetPowerUsage``
(milliwatts, the board's own recent average, which repeats when read faster
than the GPU refreshes it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic

from kwapi.bus.protocol import POWER_METER
from kwapi.drivers.base import COUNTER_HOLD, DeviceError, Driver, DriverParameters, Readings

INSTALL_HINT = "the Nvml driver needs nvidia-ml-py: pip install 'kwapi[gpu]'"


class NvmlParameters(DriverParameters):
    """Parameters of the Nvml driver."""

    indices: tuple[Annotated[int, pydantic.Field(ge=0)], ...] | None = pydantic.Field(
        None,
        min_length=1,
        description="GPU index of each probe, in order (default: 0, 1, 2...).",
    )

    @pydantic.field_validator("indices")
    @classmethod
    def _distinct(cls, indices: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if indices is not None and len(set(indices)) != len(indices):
            raise ValueError("a GPU index is listed twice")
        return indices


def _pynvml() -> Any:
    """Import pynvml, or explain in one line how to get it."""
    try:
        import pynvml
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    return pynvml


def _explain(pynvml: Any, exc: Exception) -> str:
    """One line saying what an NVMLError means for the operator."""
    if isinstance(exc, pynvml.NVMLError_LibraryNotFound):
        return "libnvidia-ml.so.1 not found: is the NVIDIA driver installed?"
    if isinstance(exc, pynvml.NVMLError_DriverNotLoaded):
        return "the NVIDIA kernel driver is not loaded"
    if isinstance(exc, pynvml.NVMLError_NoPermission):
        return "no permission to use the GPU (is the user in the video group?)"
    return f"NVML error: {exc}"


def _indices(probe_ids: Sequence[str | None], params: NvmlParameters) -> list[int]:
    if params.indices is not None:
        return list(params.indices)
    return list(range(len(probe_ids)))


@dataclass
class Gpu:
    """One GPU being read, the last energy sample taken from it, and its trouble."""

    index: int
    handle: Any = None
    has_energy: bool = False
    last_mj: int | None = None
    last_time: float = 0.0
    error: str | None = None  # why it cannot be read, once logged


class NvmlDriver(Driver):
    """NVIDIA GPUs of this machine; each probe is one GPU."""

    Parameters = NvmlParameters
    params: NvmlParameters

    @classmethod
    def validate(cls, probe_ids: Sequence[str | None], parameters: DriverParameters) -> None:
        if not isinstance(parameters, NvmlParameters):
            return
        if parameters.indices is not None and len(parameters.indices) != len(probe_ids):
            raise ValueError(
                f"{len(probe_ids)} probe(s) but {len(parameters.indices)} GPU index(es)"
            )
        pynvml = _pynvml()
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise ValueError(_explain(pynvml, exc)) from None
        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as exc:
            raise ValueError(_explain(pynvml, exc)) from None
        finally:
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()
        if count == 0:
            raise ValueError("NVML sees no NVIDIA GPU on this machine")
        for probe_id, index in zip(probe_ids, _indices(probe_ids, parameters), strict=True):
            if probe_id is not None and index >= count:
                raise ValueError(
                    f"GPU index {index} (probe {probe_id!r}) does not exist: "
                    f"this machine has {count} GPU(s), 0 to {count - 1}"
                )

    def setup(self) -> None:
        pynvml = self._nvml = _pynvml()
        self._initialised = False
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise DeviceError(_explain(pynvml, exc)) from None
        self._initialised = True
        self._gpus = {
            probe_id: Gpu(index)
            for probe_id, index in zip(
                self.probe_ids, _indices(self.probe_ids, self.params), strict=True
            )
            if probe_id is not None
        }
        described, failures = [], {}
        for probe_id, gpu in self._gpus.items():
            try:
                described.append(f"{probe_id} is {self._open(gpu)}")
            except pynvml.NVMLError as exc:
                failures[probe_id] = exc
        self._report(failures)
        mapping = "; ".join(described)
        if mapping != getattr(self, "_announced", None):  # once, not at every retry
            self._announced = mapping
            self.log.info("wattmeter %s: %s", self.wattmeter, mapping)

    def _open(self, gpu: Gpu) -> str:
        """Get the GPU's handle and see what it can measure; describe it."""
        pynvml = self._nvml
        gpu.handle = None
        handle = pynvml.nvmlDeviceGetHandleByIndex(gpu.index)
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            gpu.has_energy = True
        except pynvml.NVMLError_NotSupported:
            gpu.has_energy = False
            pynvml.nvmlDeviceGetPowerUsage(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        gpu.handle, gpu.last_mj = handle, None
        source = "energy counter" if gpu.has_energy else "power reading"
        return f"GPU {gpu.index} ({name}, watts from its {source})"

    def read(self) -> Readings:
        pynvml = self._nvml
        readings: dict[str | None, dict[str, float]] = {}
        failures = {}
        for probe_id, gpu in self._gpus.items():
            try:
                if gpu.handle is None:
                    self._open(gpu)
                watts = self._watts(gpu)
            except pynvml.NVMLError as exc:
                failures[probe_id] = exc
                continue
            if gpu.error is not None:
                self.log.warning("wattmeter %s: GPU %d is back", self.wattmeter, gpu.index)
                gpu.error = None
            if watts is not None:
                readings[probe_id] = {POWER_METER: watts}
        self._report(failures)
        return readings

    def _report(self, failures: dict[str, Exception]) -> None:
        """Raise if no GPU answers; else log each newly failing GPU once and skip it."""
        if not failures:
            return
        pynvml = self._nvml
        reasons = {
            probe_id: f"GPU {self._gpus[probe_id].index}: {_explain(pynvml, exc)}"
            for probe_id, exc in failures.items()
        }
        if len(failures) == len(self._gpus):
            raise DeviceError("; ".join(dict.fromkeys(reasons.values())))
        for probe_id, reason in reasons.items():
            gpu = self._gpus[probe_id]
            gpu.handle = None  # get a fresh handle at the next reading
            if gpu.error != reason:
                self.log.warning(
                    "wattmeter %s: %s; probe %s skipped until it answers",
                    self.wattmeter,
                    reason,
                    probe_id,
                )
                gpu.error = reason

    def _watts(self, gpu: Gpu) -> float | None:
        """The GPU's watts now; None when its energy counter has not updated yet."""
        pynvml = self._nvml
        if gpu.has_energy:
            try:
                energy = pynvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)
            except pynvml.NVMLError_NotSupported:
                gpu.has_energy = False
            else:
                now = time.monotonic()
                previous, elapsed = gpu.last_mj, now - gpu.last_time
                if previous is not None and energy == previous and elapsed < COUNTER_HOLD:
                    return None  # read faster than the GPU updates: wait for it
                gpu.last_mj, gpu.last_time = energy, now
                if previous is not None and energy > previous and elapsed > 0:
                    return float(round((energy - previous) / 1000.0 / elapsed, 3))
        # First reading, no counter, or a counter that stood still or was reset.
        return float(pynvml.nvmlDeviceGetPowerUsage(gpu.handle)) / 1000.0

    def teardown(self) -> None:
        if getattr(self, "_initialised", False):
            self._initialised = False
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
