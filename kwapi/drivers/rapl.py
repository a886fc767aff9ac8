"""Rapl: CPU and memory power from the Linux powercap tree (Intel/AMD RAPL).

Every zone of /sys/class/powercap counts the energy it used in
``energy_uj`` (microjoules), a counter that wraps at ``max_energy_range_uj``.
The driver reads the counters every interval and publishes the energy used
since the previous reading divided by the time elapsed on its own monotonic
clock.  The hardware updates a counter about every millisecond: read faster
than it moves, a counter that has not moved since the previous sample gives
no sample (for up to :data:`COUNTER_HOLD` seconds, then 0 W), and the next
sample spans the whole time since the previous one, so that no energy is
lost or counted twice at any rate.  ``intel-rapl-mmio`` zones repeat the
package counters through another interface and are ignored.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pydantic

from kwapi.bus.protocol import POWER_METER
from kwapi.drivers.base import (
    AUTHENTICATION,
    COUNTER_HOLD,
    DEVICE_GONE,
    DeviceError,
    Driver,
    DriverParameters,
    Readings,
)

ZoneKind = Literal["package", "core", "uncore", "dram", "psys"]
# Control types that duplicate the MSR counters: same energy, read another way.
DUPLICATE_PREFIXES = ("intel-rapl-mmio",)
ZONE_DIR = re.compile(r"(?P<type>[a-z][a-z0-9-]*):(?P<path>\d+(?::\d+)*)")
PERMISSION_HINT = (
    "energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694): "
    "run kwapi-drivers as root or install the udev rule of doc/drivers/rapl.rst"
)


class RaplParameters(DriverParameters):
    """Parameters of the Rapl driver."""

    powercap_path: str = pydantic.Field(
        "/sys/class/powercap", min_length=1, description="Root of the powercap tree."
    )
    zones: tuple[ZoneKind, ...] = pydantic.Field(
        ("package",),
        min_length=1,
        description="Kinds of zone the probes map to, in order within each package.",
    )

    @pydantic.field_validator("zones")
    @classmethod
    def _distinct(cls, zones: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(zones)) != len(zones):
            raise ValueError("a zone kind is listed twice")
        return zones


@dataclass
class Zone:
    """One powercap zone with an energy counter."""

    label: str
    path: str
    max_range_uj: int
    last_uj: int | None = None
    last_time: float = 0.0

    def watts(self, counter: int, now: float) -> float | None:
        """Power since the previous sample, from *counter* read at *now*; None for no sample.

        The first reading only sets the baseline; a counter that has not
        moved for less than :data:`COUNTER_HOLD` gives no sample and keeps it.
        """
        previous, elapsed = self.last_uj, now - self.last_time
        if previous is not None and (
            elapsed <= 0 or (counter == previous and elapsed < COUNTER_HOLD)
        ):
            return None
        self.last_uj, self.last_time = counter, now
        if previous is None:
            return None
        delta = energy_delta(previous, counter, self.max_range_uj)
        return round(delta / 1e6 / elapsed, 3)


def discover_zones(root: str, kinds: Sequence[str]) -> list[Zone]:
    """List the zones of *kinds* under *root*, package by package.

    Packages come in the order of their zone number; within a package the
    zones follow *kinds*.  A ``psys`` zone (platform-wide) comes where its
    own zone number puts it.
    """
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        raise DeviceError(
            f"no powercap tree at {root} (is the intel_rapl_common or rapl module loaded?)"
        ) from None
    tops: list[tuple[tuple[int, ...], str, str]] = []
    subs: dict[tuple[str, int], list[tuple[tuple[int, ...], str, str]]] = {}
    for entry in entries:
        match = ZONE_DIR.fullmatch(entry)
        if match is None or match["type"].startswith(DUPLICATE_PREFIXES):
            continue
        path = os.path.join(root, entry)
        if not os.path.exists(os.path.join(path, "energy_uj")):
            continue
        numbers = tuple(int(part) for part in match["path"].split(":"))
        name = _read_text(os.path.join(path, "name"))
        if len(numbers) == 1:
            tops.append((numbers, name, path))
        else:
            subs.setdefault((match["type"], numbers[0]), []).append((numbers, name, path))
    zones: list[Zone] = []
    for numbers, name, path in sorted(tops):
        if name == "psys":
            if "psys" in kinds:
                zones.append(_zone(name, path))
            continue
        if not name.startswith("package"):
            continue
        control_type = os.path.basename(path).split(":", 1)[0]
        children = sorted(subs.get((control_type, numbers[0]), []))
        for kind in kinds:
            if kind == "package":
                zones.append(_zone(name, path))
            elif kind != "psys":
                zones.extend(
                    _zone(f"{name}/{child}", child_path)
                    for _, child, child_path in children
                    if child == kind
                )
    return zones


def _zone(label: str, path: str) -> Zone:
    max_range = _read_int(os.path.join(path, "max_energy_range_uj"))
    if max_range <= 0:
        raise DeviceError(f"{path}/max_energy_range_uj is {max_range}")
    return Zone(label, path, max_range)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except PermissionError:
        raise DeviceError(
            f"permission denied reading {path}: {PERMISSION_HINT}", AUTHENTICATION
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENODATA:  # a zone the firmware disabled
            raise DeviceError(f"{path}: no data (zone disabled by the firmware?)") from None
        raise DeviceError(f"cannot read {path}: {exc.strerror or exc}", DEVICE_GONE) from None


def _read_int(path: str) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        raise DeviceError(f"{path} holds {text[:40]!r}, not an integer") from None


def energy_delta(previous: int, current: int, max_range: int) -> int:
    """Microjoules used between two counter values, allowing one wraparound."""
    if current >= previous:
        return current - previous
    return current + max_range - previous


class RaplDriver(Driver):
    """RAPL zones of this machine; each probe is one zone (package by default)."""

    Parameters = RaplParameters
    params: RaplParameters

    def setup(self) -> None:
        self._zones = self._discover()
        mapping = ", ".join(f"{probe_id} is {zone.label}" for probe_id, zone in self._zones.items())
        if mapping != getattr(self, "_announced", None):  # once, not at every retry
            self._announced = mapping
            self.log.info("wattmeter %s: %s", self.wattmeter, mapping)

    def read(self) -> Readings:
        readings: dict[str | None, dict[str, float]] = {}
        for probe_id, zone in self._zones.items():
            try:
                counter = _read_int(os.path.join(zone.path, "energy_uj"))
            except DeviceError:
                # A zone gone (module unloaded, package offline) fails the
                # next setup too: raise what setup will say, so that the
                # outage is logged once.
                self._discover()
                raise
            now = time.monotonic()
            watts = zone.watts(counter, now)
            if watts is not None:
                readings[probe_id] = {POWER_METER: watts}
        return readings

    def teardown(self) -> None:
        self._zones = {}

    def _discover(self) -> dict[str, Zone]:
        """Map the probes to the zones found; raise DeviceError if there are too few."""
        zones = discover_zones(self.params.powercap_path, self.params.zones)
        wanted = max(i for i, probe_id in enumerate(self.probe_ids) if probe_id is not None) + 1
        if len(zones) < wanted:
            found = ", ".join(zone.label for zone in zones) or "none"
            raise DeviceError(
                f"{wanted} probe(s) but {len(zones)} RAPL zone(s) of kinds "
                f"{', '.join(self.params.zones)} under {self.params.powercap_path} ({found})"
            )
        return {
            probe_id: zone
            for probe_id, zone in zip(self.probe_ids, zones, strict=False)
            if probe_id is not None
        }
