"""What kwapi-api serves about streams: per-stream figures and per-host streaming energy.

Figures are computed at request time: a stream is up if its last measurement
says ``up`` = 1 and is at most ``max_gap`` seconds old (by this host's
clock), and the host's watts are its last power reading if that is at most
``max_gap`` seconds old.  Energies come from :class:`StreamEnergy`, which
integrated them on the power measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypedDict

from kwapi.bus.protocol import POWER_METER
from kwapi.plugins.api.collector import Collector
from kwapi.plugins.api.stream_energy import StreamEnergy
from kwapi.plugins.streams import StreamMap, StreamSample, figures, sample, shares

#: Longest period the host route accepts, in seconds (the checkpoints' retention).
MAX_PERIOD = 31 * 86400
DEFAULT_PERIOD = 3600


class StreamBody(TypedDict):
    """One stream in /v1/streams/ (``w`` is :data:`~kwapi.bus.protocol.POWER_METER`)."""

    host: str
    up: bool
    timestamp: float | None
    bitrate: float | None
    fps: float | None
    width: float | None
    height: float | None
    share: float
    w: float | None
    joules_per_video_second: float | None
    bits_per_joule: float | None
    pixels_per_joule: float | None
    kwh: float


class PeriodBody(TypedDict):
    """A host's streaming energy over the period asked for."""

    seconds: float
    since: float | None
    kwh: float
    cost: float


class HostBody(TypedDict):
    """One power probe in /v1/stream-hosts/ (``w`` is :data:`~kwapi.bus.protocol.POWER_METER`)."""

    streams: list[str]
    streams_up: list[str]
    w: float | None
    streaming_w: float | None
    kwh: float
    cost: float
    gaps: int
    period: PeriodBody
    kwh_price: float
    currency: str


class StreamViews:
    """Builds the JSON objects of /v1/streams/ and /v1/stream-hosts/."""

    def __init__(
        self,
        energy: StreamEnergy,
        collector: Collector,
        *,
        kwh_price: float = 0.125,
        currency: str = "€",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.energy = energy
        self.collector = collector
        self.kwh_price = kwh_price
        self.currency = currency
        self._clock = clock

    @property
    def map(self) -> StreamMap:
        """The parsed ``stream_power`` option."""
        return self.energy.map

    def _host_now(
        self, power_probe: str, now: float
    ) -> tuple[float | None, dict[str, StreamSample]]:
        """(host watts or None, {stream: sample}) of one host at *now*."""
        host = self.energy.host(power_probe)
        w = None
        stamp = host.power_timestamp if host is not None else None
        if host is not None and stamp is not None and now - stamp <= self.energy.max_gap:
            w = host.w
        samples = {
            stream: sample(self.collector.latest(stream), now, self.energy.max_gap)
            for stream in self.map.hosts[power_probe]
        }
        return w, samples

    def _stream_body(
        self, stream: str, power_probe: str, seen: StreamSample, share: float, w: float | None
    ) -> StreamBody:
        record = self.collector.latest(stream)
        result = figures(seen, share, w)
        return {
            "host": power_probe,
            "up": seen.up,
            "timestamp": record.timestamp if record is not None else None,
            "bitrate": seen.bitrate,
            "fps": seen.fps,
            "width": seen.width,
            "height": seen.height,
            "share": result.share,
            POWER_METER: result.w,
            "joules_per_video_second": result.w if seen.up else None,
            "bits_per_joule": result.bits_per_joule,
            "pixels_per_joule": result.pixels_per_joule,
            "kwh": self.energy.stream_kwh(stream),
        }

    def streams(self) -> dict[str, StreamBody]:
        """Every configured stream, in configuration order."""
        now = self._clock()
        body: dict[str, StreamBody] = {}
        for power_probe in self.map.hosts:
            w, samples = self._host_now(power_probe, now)
            split = shares(samples, self.map.share)
            for stream, seen in samples.items():
                body[stream] = self._stream_body(stream, power_probe, seen, split[stream], w)
        return body

    def stream(self, stream: str) -> StreamBody | None:
        """One configured stream, or None."""
        power_probe = self.map.streams.get(stream)
        if power_probe is None:
            return None
        now = self._clock()
        w, samples = self._host_now(power_probe, now)
        split = shares(samples, self.map.share)
        return self._stream_body(stream, power_probe, samples[stream], split[stream], w)

    def host(self, power_probe: str, period: float) -> HostBody | None:
        """One power probe's streaming figures, with the energy over the last *period* s."""
        if power_probe not in self.map.hosts:
            return None
        return self._host_body(power_probe, period)

    def _host_body(self, power_probe: str, period: float) -> HostBody:
        now = self._clock()
        w, samples = self._host_now(power_probe, now)
        up = [stream for stream, seen in samples.items() if seen.up]
        known = self.energy.host(power_probe)
        kwh, since = self.energy.host_energy_since(power_probe, now - period)
        return {
            "streams": list(samples),
            "streams_up": up,
            POWER_METER: w,
            "streaming_w": (w if up else 0.0) if w is not None else None,
            "kwh": known.kwh if known else 0.0,
            "cost": (known.kwh if known else 0.0) * self.kwh_price,
            "gaps": known.gaps if known else 0,
            "period": {
                "seconds": period,
                "since": since,
                "kwh": kwh,
                "cost": kwh * self.kwh_price,
            },
            "kwh_price": self.kwh_price,
            "currency": self.currency,
        }

    def hosts(self, period: float) -> dict[str, HostBody]:
        """Every configured power probe."""
        return {name: self._host_body(name, period) for name in self.map.hosts}
