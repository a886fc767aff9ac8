"""Energy per stream: which power probe feeds which streams, and what each stream costs.

Shared by kwapi-api and kwapi-rrd.  ``stream_power`` maps a power probe (a
host measured by Rapl, Host, Ipmi...) to the stream probes (Ffprobe) it
serves; ``stream_share`` says how the host's watts are split among its
streams that are up:

* ``pixels``: in proportion to each stream's pixel rate (width * height *
  fps); a stream without one (audio only, or no size measured) first takes
  its bitrate share of the whole, and the video streams split the rest;
* ``bitrate``: in proportion to each stream's bitrate;
* ``equal``: the same share for every stream that is up.

When the chosen weights are all zero the split falls back to bitrate, then
to equal shares, so the shares of the streams that are up always add up to 1.

A stream counts as up when its last measurement says ``up`` = 1 and is no
older than ``max_gap`` seconds.  :class:`StreamEnergy` integrates each
stream's share of the host's power on every power measurement (trapezoidal
rule, intervals longer than ``max_gap`` skipped), and the host's streaming
energy (its power while at least one stream is up), with checkpoints that
answer "how much over the last N seconds".
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from oslo_config import cfg

from kwapi.bus.protocol import Measurement, is_valid_probe_id
from kwapi.config import ConfigError
from kwapi.plugins.energy import JOULES_PER_KWH, POWER_METER, integrate

SHARE_MODES = ("pixels", "bitrate", "equal")
#: Stream meters published by the Ffprobe driver.
STREAM_METERS = ("up", "bitrate", "fps", "width", "height")

#: Checkpoints of a host's streaming energy: every CHECKPOINT_STEP seconds for a
#: day, then one an hour, kept for RETENTION seconds (the longest period asked).
CHECKPOINT_STEP = 60.0
FINE_SPAN = 86400.0
COARSE_STEP = 3600.0
RETENTION = 31 * 86400.0

stream_opts = [
    cfg.MultiStrOpt(
        "stream_power",
        default=[],
        help="Which power probe feeds which streams, as 'POWER_PROBE = STREAM, STREAM'; "
        "repeat the option for each host. The power probe's watts are split among "
        "its streams that are up (see stream_share).",
    ),
    cfg.StrOpt(
        "stream_share",
        default="pixels",
        choices=[
            ("pixels", "in proportion to width x height x fps; streams without video by bitrate"),
            ("bitrate", "in proportion to bitrate"),
            ("equal", "the same share for every stream that is up"),
        ],
        help="How a host's watts are split among its streams that are up.",
    ),
]

#: Options kwapi-api adds to price the streaming energy (kwapi-rrd has its own).
price_opts = [
    cfg.FloatOpt("kwh_price", default=0.125, min=0.0, help="Price of one kWh, in currency."),
    cfg.StrOpt("currency", default="€", help="Currency shown beside energy costs."),
]


class Reading(Protocol):
    """What is known of a probe: its last meters and the time of its last measurement."""

    timestamp: float
    meters: Mapping[str, float]


Lookup = Callable[[str], Reading | None]


@dataclass(frozen=True)
class StreamMap:
    """The parsed ``stream_power`` option: power probe -> its streams, in order."""

    hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    share: str = "pixels"

    @property
    def streams(self) -> dict[str, str]:
        """Every stream and its power probe, in configuration order."""
        return {stream: host for host, streams in self.hosts.items() for stream in streams}

    def __bool__(self) -> bool:
        return bool(self.hosts)


def parse_stream_power(values: Iterable[str], share: str = "pixels") -> StreamMap:
    """Parse ``stream_power`` lines; ConfigError naming the key for any mistake."""

    def fail(message: str) -> ConfigError:
        return ConfigError(message, section="DEFAULT", key="stream_power")

    if share not in SHARE_MODES:
        raise ConfigError(
            f"{share!r} is not one of {', '.join(SHARE_MODES)}",
            section="DEFAULT",
            key="stream_share",
        )
    hosts: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for line in values:
        power, sep, rest = line.partition("=")
        power = power.strip()
        if not sep:
            raise fail(f"{line!r} is not 'POWER_PROBE = STREAM, STREAM'")
        if not is_valid_probe_id(power):
            raise fail(f"{power!r:.80} is not a valid probe id (power probe of {line!r:.80})")
        streams = [s.strip() for s in rest.split(",") if s.strip()]
        if not streams:
            raise fail(f"power probe {power!r} is given no stream")
        for stream in streams:
            if not is_valid_probe_id(stream):
                raise fail(f"{stream!r:.80} is not a valid probe id (stream of {power!r})")
            if stream in owner:
                where = "twice" if owner[stream] == power else f"under {owner[stream]!r} too"
                raise fail(f"stream {stream!r} is listed {where}: a stream has one power probe")
            owner[stream] = power
            hosts.setdefault(power, []).append(stream)
    for power in hosts:
        if power in owner:
            raise fail(f"{power!r} is both a power probe and a stream of {owner[power]!r}")
    return StreamMap({host: tuple(streams) for host, streams in hosts.items()}, share)


def stream_map_from_conf(conf: cfg.ConfigOpts) -> StreamMap:
    """The :class:`StreamMap` of a daemon's configuration (both options registered)."""
    return parse_stream_power(conf.stream_power, conf.stream_share)


# -- one stream at one time ---------------------------------------------------


@dataclass(frozen=True)
class StreamSample:
    """A stream as seen at one time: up or not, and what it delivers when up."""

    up: bool
    bitrate: float | None = None
    fps: float | None = None
    width: float | None = None
    height: float | None = None

    @property
    def pixel_rate(self) -> float | None:
        """Pixels per second (width * height * fps), None without a full measure."""
        if self.width and self.height and self.fps and min(self.width, self.height, self.fps) > 0:
            return self.width * self.height * self.fps
        return None


DOWN = StreamSample(up=False)


def sample(reading: Reading | None, at: float, max_gap: float) -> StreamSample:
    """The stream of *reading* as seen at time *at*: up only if ``up`` = 1 and fresh."""
    if reading is None or at - reading.timestamp > max_gap:
        return DOWN
    meters = reading.meters
    if meters.get("up") != 1:
        return DOWN

    def positive(name: str) -> float | None:
        value = meters.get(name)
        return float(value) if value is not None and value >= 0 else None

    return StreamSample(
        True, positive("bitrate"), positive("fps"), positive("width"), positive("height")
    )


def shares(samples: Mapping[str, StreamSample], mode: str) -> dict[str, float]:
    """Each stream's share (0 to 1) of its host's watts; streams that are down get 0."""
    result = dict.fromkeys(samples, 0.0)
    up = [name for name, s in samples.items() if s.up]
    if not up:
        return result
    bitrates = {name: samples[name].bitrate or 0.0 for name in up}
    total_bitrate = sum(bitrates.values())
    if mode == "pixels":
        pixels = {name: samples[name].pixel_rate or 0.0 for name in up}
        total_pixels = sum(pixels.values())
        if total_pixels > 0:
            audio = {
                name: (bitrates[name] / total_bitrate if total_bitrate > 0 else 0.0)
                for name in up
                if pixels[name] == 0
            }
            rest = 1.0 - sum(audio.values())
            for name in up:
                result[name] = audio[name] if name in audio else rest * pixels[name] / total_pixels
            return result
    if mode in ("pixels", "bitrate") and total_bitrate > 0:
        for name in up:
            result[name] = bitrates[name] / total_bitrate
        return result
    for name in up:
        result[name] = 1.0 / len(up)
    return result


@dataclass(frozen=True)
class StreamFigures:
    """What a stream costs and delivers per joule, at one time."""

    share: float
    w: float | None  # watts share; also joules per second of video
    bits_per_joule: float | None
    pixels_per_joule: float | None


def figures(stream: StreamSample, share: float, host_w: float | None) -> StreamFigures:
    """A stream's watts (host watts * share) and its bits and pixels per joule."""
    if host_w is None:
        return StreamFigures(share, None, None, None)
    w = host_w * share
    if not stream.up or w <= 0:
        return StreamFigures(share, w, None, None)
    bits = stream.bitrate / w if stream.bitrate is not None else None
    pixel_rate = stream.pixel_rate
    return StreamFigures(share, w, bits, pixel_rate / w if pixel_rate is not None else None)


# -- energy over time ---------------------------------------------------------


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
                total = host.kwh + integrate(host.streaming_w, streaming_w, seconds)
                # An interval whose energy would overflow is skipped like a gap:
                # the counter stays finite, and so do the streams' (each share
                # is at most the host's).
                if seconds > self.max_gap or not math.isfinite(total * JOULES_PER_KWH):
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
