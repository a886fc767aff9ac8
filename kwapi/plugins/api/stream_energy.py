"""kwapi-api's energy per stream: each stream's share of its host's power, integrated.

:class:`StreamEnergy` integrates each stream's share of the host's power
(see :func:`kwapi.plugins.streams.shares`) on every power measurement
(trapezoidal rule, intervals longer than ``max_gap`` skipped, the rule of
:func:`kwapi.plugins.energy.energy_step`), and the host's streaming energy
(its power while at least one stream is up), with checkpoints that answer
"how much over the last N seconds".
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kwapi.bus.protocol import POWER_METER, Measurement
from kwapi.plugins.energy import energy_step, integrate
from kwapi.plugins.streams import Reading, StreamMap, sample, shares

#: Checkpoints of a host's streaming energy: every CHECKPOINT_STEP seconds for a
#: day, then one an hour, kept for RETENTION seconds (the longest period asked).
CHECKPOINT_STEP = 60.0
FINE_SPAN = 86400.0
COARSE_STEP = 3600.0
RETENTION = 31 * 86400.0

#: How :class:`StreamEnergy` reads a stream's last measurement (the collector's ``latest``).
Lookup = Callable[[str], Reading | None]


@dataclass
class HostEnergy:
    """What :class:`StreamEnergy` keeps of one power probe (a copy when handed out)."""

    power_timestamp: float | None = None
    w: float | None = None  # the host's last power reading
    streaming_w: float = 0.0  # the same while a stream was up, else 0
    kwh: float = 0.0  # streaming energy since first seen
    gaps: int = 0
    stream_w: dict[str, float] = field(default_factory=dict)
    history: list[tuple[float, float]] = field(default_factory=list)  # (time, kwh)


class _History:
    """Checkpoints (time, cumulative kWh): fine for a day, hourly up to RETENTION."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.fine: deque[tuple[float, float]] = deque()
        self.coarse: deque[tuple[float, float]] = deque()

    def add(self, timestamp: float, kwh: float, *, force: bool = False) -> None:
        if not force and self.fine and timestamp - self.fine[-1][0] < self.step:
            return
        self.fine.append((timestamp, kwh))
        while self.fine[0][0] < timestamp - FINE_SPAN:
            point = self.fine.popleft()
            if not self.coarse or point[0] - self.coarse[-1][0] >= COARSE_STEP:
                self.coarse.append(point)
        while self.coarse and self.coarse[0][0] < timestamp - RETENTION:
            self.coarse.popleft()

    def points(self) -> list[tuple[float, float]]:
        return [*self.coarse, *self.fine]


def energy_since(
    points: list[tuple[float, float]], now_point: tuple[float, float], start: float
) -> tuple[float, float | None]:
    """kWh between *start* and *now_point* from cumulative checkpoints, and from when.

    The cumulative energy is interpolated linearly between checkpoints; a
    *start* before the first checkpoint counts from that checkpoint.
    """
    series = [*points, now_point] if not points or points[-1] != now_point else points
    times = [t for t, _ in series]
    if start >= times[-1]:
        return 0.0, start
    if start <= times[0]:
        return series[-1][1] - series[0][1], times[0]
    index = bisect.bisect_right(times, start)
    (t0, e0), (t1, e1) = series[index - 1], series[index]
    at_start = e0 + (e1 - e0) * (start - t0) / (t1 - t0) if t1 > t0 else e1
    return series[-1][1] - at_start, start


class StreamEnergy:
    """Integrates each stream's share of its host's power, measurement by measurement.

    Call :meth:`observe` from the one thread that receives measurements,
    after the collector has folded them in (*lookup* reads the collector);
    any thread may read.  :meth:`export` and the *state* argument carry the
    counters across restarts.
    """

    def __init__(
        self,
        streams: StreamMap,
        lookup: Lookup,
        *,
        max_gap: float = 120.0,
        state: Mapping[str, Any] | None = None,
        checkpoint_step: float = CHECKPOINT_STEP,
    ) -> None:
        self.map = streams
        self.max_gap = max_gap
        self._lookup = lookup
        self._step = checkpoint_step
        self._lock = threading.Lock()
        self._hosts: dict[str, HostEnergy] = {}
        self._history: dict[str, _History] = {}
        self._stream_kwh: dict[str, float] = {}
        if state:
            self._restore(state)

    # -- writing ----------------------------------------------------------

    def observe(self, measurement: Measurement) -> None:
        """Integrate *measurement* if it is a power reading of a configured host."""
        streams = self.map.hosts.get(measurement.probe_id)
        w = measurement.meters.get(POWER_METER)
        if streams is None or w is None:
            return
        at = measurement.timestamp
        samples = {s: sample(self._lookup(s), at, self.max_gap) for s in streams}
        split = shares(samples, self.map.share)
        new_w = {s: w * split[s] for s in streams}
        streaming_w = w if any(s.up for s in samples.values()) else 0.0
        with self._lock:
            host = self._hosts.get(measurement.probe_id)
            history = self._history.get(measurement.probe_id)
            if host is None or history is None:
                host = self._hosts[measurement.probe_id] = HostEnergy()
                history = self._history[measurement.probe_id] = _History(self._step)
            elif host.power_timestamp is not None:
                seconds = at - host.power_timestamp
                if seconds <= 0:
                    return
                total = energy_step(host.kwh, host.streaming_w, streaming_w, seconds, self.max_gap)
                # When the host's counter stays finite, so do the streams' (each
                # share is at most the host's).
                if total is None:
                    host.gaps += 1
                else:
                    host.kwh = total
                    for stream in streams:
                        added = integrate(host.stream_w.get(stream, 0.0), new_w[stream], seconds)
                        self._stream_kwh[stream] = self._stream_kwh.get(stream, 0.0) + added
            host.power_timestamp = at
            host.w = w
            host.streaming_w = streaming_w
            host.stream_w = new_w
            history.add(at, host.kwh)
            for stream in streams:
                self._stream_kwh.setdefault(stream, 0.0)

    # -- reading ----------------------------------------------------------

    def host(self, power_probe: str) -> HostEnergy | None:
        """A copy of what is known of *power_probe* (None before its first reading)."""
        with self._lock:
            host = self._hosts.get(power_probe)
            if host is None:
                return None
            history = self._history[power_probe].points()
            return HostEnergy(
                host.power_timestamp,
                host.w,
                host.streaming_w,
                host.kwh,
                host.gaps,
                dict(host.stream_w),
                history,
            )

    def stream_kwh(self, stream: str) -> float:
        """Energy attributed to *stream* since it was first seen, in kWh."""
        with self._lock:
            return self._stream_kwh.get(stream, 0.0)

    def host_energy_since(self, power_probe: str, start: float) -> tuple[float, float | None]:
        """Streaming kWh of *power_probe* since *start*, and the time it counts from."""
        host = self.host(power_probe)
        if host is None or host.power_timestamp is None:
            return 0.0, None
        return energy_since(host.history, (host.power_timestamp, host.kwh), start)

    # -- persistence ------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """The counters as plain JSON-able data, for the state file."""
        with self._lock:
            hosts = {
                name: {
                    "power_timestamp": host.power_timestamp,
                    "w": host.w,
                    "streaming_w": host.streaming_w,
                    "kwh": host.kwh,
                    "gaps": host.gaps,
                    "stream_w": dict(host.stream_w),
                    "history": [list(point) for point in self._history[name].points()],
                }
                for name, host in self._hosts.items()
            }
            return {"hosts": hosts, "streams": dict(self._stream_kwh)}

    def _restore(self, state: Mapping[str, Any]) -> None:
        for name, saved in (state.get("hosts") or {}).items():
            history = _History(self._step)
            for timestamp, kwh in saved.get("history") or ():
                history.add(float(timestamp), float(kwh), force=True)
            self._history[name] = history
            self._hosts[name] = HostEnergy(
                saved.get("power_timestamp"),
                saved.get("w"),
                float(saved.get("streaming_w") or 0.0),
                float(saved.get("kwh") or 0.0),
                int(saved.get("gaps") or 0),
                {k: float(v) for k, v in (saved.get("stream_w") or {}).items()},
            )
        self._stream_kwh = {k: float(v) for k, v in (state.get("streams") or {}).items()}
