"""Dummy: simulated watts that look like a real machine's, for demos and tests."""

from __future__ import annotations

import math
import random
import time
import zlib

import pydantic

from kwapi.bus.protocol import POWER_METER
from kwapi.drivers.base import Driver, DriverParameters, Readings


class DummyParameters(DriverParameters):
    """Parameters of the Dummy driver."""

    min: float = pydantic.Field(50.0, ge=0, description="Idle power in watts.")
    max: float = pydantic.Field(150.0, gt=0, description="Full-load power in watts.")
    seed: int | None = pydantic.Field(None, description="Seed for a repeatable profile.")

    @pydantic.model_validator(mode="after")
    def _min_below_max(self) -> DummyParameters:
        if self.min >= self.max:
            raise ValueError("min must be lower than max")
        return self


class LoadProfile:
    """A smooth, plausible CPU-load curve in [0, 1].

    Two slow waves (a ten-minute and a one-and-a-half-minute cycle) give a
    daily-rhythm feel, jobs arrive at random and ramp up and down through a
    first-order lag, and a mean-reverting noise adds jitter.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._phases = (rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi))
        self._job_level = 0.0
        self._job_target = 0.0
        self._job_ends = 0.0
        self._noise = 0.0
        self._last: float | None = None

    def sample(self, now: float) -> float:
        """Return the load at time *now* (seconds), advancing the state."""
        dt = 1.0 if self._last is None else max(0.0, min(now - self._last, 60.0))
        self._last = now
        rng = self._rng
        if now >= self._job_ends:
            self._job_target = 0.0
            if rng.random() < dt / 60.0:  # a job starts about once a minute
                self._job_target = rng.uniform(0.2, 0.5)
                self._job_ends = now + rng.uniform(15.0, 90.0)
        self._job_level += (self._job_target - self._job_level) * (1 - math.exp(-dt / 8.0))
        self._noise += -0.2 * self._noise * dt + rng.gauss(0.0, 0.02) * math.sqrt(dt)
        waves = 0.15 * math.sin(2 * math.pi * now / 600 + self._phases[0]) + 0.07 * math.sin(
            2 * math.pi * now / 97 + self._phases[1]
        )
        return min(1.0, max(0.0, 0.3 + waves + self._job_level + self._noise))


class DummyDriver(Driver):
    """Simulated wattmeter: every probe follows its own :class:`LoadProfile`."""

    Parameters = DummyParameters
    params: DummyParameters

    def setup(self) -> None:
        self._profiles = {}
        for probe_id in self.probe_ids:
            if probe_id is None:
                continue
            seed = (
                None
                if self.params.seed is None
                else self.params.seed ^ zlib.crc32(probe_id.encode())
            )
            self._profiles[probe_id] = LoadProfile(random.Random(seed))

    def read(self) -> Readings:
        now = time.time()
        span = self.params.max - self.params.min
        return {
            probe_id: {POWER_METER: round(self.params.min + span * profile.sample(now), 2)}
            for probe_id, profile in self._profiles.items()
        }
