"""Host: estimated watts of this machine from its CPU utilisation.

For machines with no power meter and no RAPL (cloud VMs), the linear model
used by public cloud-carbon methodologies gives an estimate::

    watts = idle_watts + (max_watts - idle_watts) * cpu_utilisation

with the utilisation taken from /proc/stat counter deltas.  By default the
idle and maximum watts are per-vCPU coefficients times the number of vCPUs
(see doc/drivers/host.rst for the source of the figures).  Every measurement
carries the meter ``estimated`` = 1 so that nobody mistakes it for a reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pydantic

from kwapi.bus.protocol import POWER_METER
from kwapi.drivers.base import DeviceError, Driver, DriverParameters, Readings, SectionError

# Cloud Carbon Footprint, methodology appendix I, AWS averages (watts per vCPU).
DEFAULT_IDLE_WATTS_PER_VCPU = 0.74
DEFAULT_MAX_WATTS_PER_VCPU = 3.5


class HostParameters(DriverParameters):
    """Parameters of the Host driver."""

    proc_stat: str = pydantic.Field(
        "/proc/stat", min_length=1, description="File with the kernel's CPU time counters."
    )
    idle_watts: float | None = pydantic.Field(
        None, ge=0, description="Watts at 0 % CPU (default: vcpus x idle_watts_per_vcpu)."
    )
    max_watts: float | None = pydantic.Field(
        None, gt=0, description="Watts at 100 % CPU (default: vcpus x max_watts_per_vcpu)."
    )
    idle_watts_per_vcpu: float = pydantic.Field(
        DEFAULT_IDLE_WATTS_PER_VCPU, ge=0, description="Watts per vCPU at 0 % CPU."
    )
    max_watts_per_vcpu: float = pydantic.Field(
        DEFAULT_MAX_WATTS_PER_VCPU, gt=0, description="Watts per vCPU at 100 % CPU."
    )
    vcpus: int | None = pydantic.Field(
        None, ge=1, description="Number of vCPUs (default: the cpuN lines of proc_stat)."
    )

    @pydantic.field_validator("max_watts", "max_watts_per_vcpu")
    @classmethod
    def _above_idle(cls, value: float | None, info: pydantic.ValidationInfo) -> float | None:
        idle_key = str(info.field_name).replace("max_", "idle_")
        idle = info.data.get(idle_key)
        if value is not None and idle is not None and idle >= value:
            raise ValueError(f"must be greater than {idle_key} ({idle:g})")
        return value


@dataclass(frozen=True)
class CpuTimes:
    """Aggregate CPU time counters (in ticks) from the ``cpu`` line of /proc/stat."""

    busy: int
    total: int


def parse_proc_stat(text: str) -> tuple[CpuTimes, int]:
    """Return the aggregate CPU times and the number of ``cpuN`` lines of *text*.

    Busy time is user + nice + system + irq + softirq; the total adds idle,
    iowait and steal (time the hypervisor gave to others).  guest and
    guest_nice are already inside user and nice.
    """
    aggregate: CpuTimes | None = None
    cpus = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or not fields[0].startswith("cpu"):
            continue
        if fields[0] != "cpu":
            cpus += 1
            continue
        try:
            values = [int(value) for value in fields[1:9]]
        except ValueError:
            raise DeviceError(f"unexpected cpu line in /proc/stat: {line[:80]!r}") from None
        if len(values) < 4:
            raise DeviceError(f"unexpected cpu line in /proc/stat: {line[:80]!r}")
        values += [0] * (8 - len(values))
        user, nice, system, idle, iowait, irq, softirq, steal = values
        busy = user + nice + system + irq + softirq
        aggregate = CpuTimes(busy, busy + idle + iowait + steal)
    if aggregate is None:
        raise DeviceError("no 'cpu' line in /proc/stat")
    return aggregate, cpus


def read_proc_stat(path: str) -> tuple[CpuTimes, int]:
    """Read and parse a /proc/stat file; raise DeviceError if it cannot be read."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError as exc:
        raise DeviceError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_proc_stat(text)


def estimate_bounds(params: HostParameters, cpus: int) -> tuple[float, float, int]:
    """Idle and full-load watts, and the vCPU count they assume.

    *cpus* is the number of CPUs found in /proc/stat, used when the
    parameters do not say how many vCPUs the machine has.
    """
    vcpus = params.vcpus or cpus or 1
    idle = params.idle_watts
    if idle is None:
        idle = vcpus * params.idle_watts_per_vcpu
    maximum = params.max_watts
    if maximum is None:
        maximum = vcpus * params.max_watts_per_vcpu
    return idle, maximum, vcpus


class HostDriver(Driver):
    """This host's estimated power, published for its single probe."""

    Parameters = HostParameters
    params: HostParameters

    @classmethod
    def validate(cls, probe_ids: Sequence[str | None], parameters: DriverParameters) -> None:
        if len(probe_ids) != 1 or probe_ids[0] is None:
            raise SectionError(
                "probes", "the Host driver estimates one machine: give exactly one probe"
            )
        if not isinstance(parameters, HostParameters):
            return
        try:
            _, cpus = read_proc_stat(parameters.proc_stat)
        except DeviceError:
            if parameters.vcpus is None:
                return  # the vCPU count is unknown yet; setup checks again
            cpus = 0
        idle, maximum, vcpus = estimate_bounds(parameters, cpus)
        if idle >= maximum:
            raise ValueError(
                f"idle watts ({idle:g}) must be lower than max watts ({maximum:g}) "
                f"for {vcpus} vCPU(s)"
            )

    def setup(self) -> None:
        times, cpus = read_proc_stat(self.params.proc_stat)
        self.idle_watts, self.max_watts, vcpus = estimate_bounds(self.params, cpus)
        if self.idle_watts >= self.max_watts:
            raise DeviceError(
                f"idle watts ({self.idle_watts:g}) not below max watts ({self.max_watts:g}) "
                f"for {vcpus} vCPU(s)"
            )
        self._previous = times
        model = f"estimating {self.idle_watts:g} W idle to {self.max_watts:g} W busy ({vcpus} vCPU)"
        if model != getattr(self, "_announced", None):  # once, not at every retry
            self._announced = model
            self.log.info("wattmeter %s: %s", self.wattmeter, model)

    def read(self) -> Readings:
        times, _ = read_proc_stat(self.params.proc_stat)
        previous, self._previous = self._previous, times
        elapsed = times.total - previous.total
        busy = times.busy - previous.busy
        if elapsed <= 0 or busy < 0:
            return {}  # no time passed, or the counters went back: nothing to tell
        utilisation = min(1.0, max(0.0, busy / elapsed))
        watts = self.idle_watts + (self.max_watts - self.idle_watts) * utilisation
        return {self.probe_ids[0]: {POWER_METER: round(watts, 3), "estimated": 1}}
