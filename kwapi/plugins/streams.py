"""Streams and their hosts: which power probe feeds which streams, and how its watts split.

Shared by kwapi-api and kwapi-rrd (kwapi-api's energy per stream is in
:mod:`kwapi.plugins.api.stream_energy`).  ``stream_power`` maps a power
probe (a host measured by Rapl, Host, Ipmi...) to the stream probes
(Ffprobe) it serves; ``stream_share`` says how the host's watts are split
among its streams that are up:

* ``pixels``: in proportion to each stream's pixel rate (width * height *
  fps); a stream without one (audio only, or no size measured) first takes
  its bitrate share of the whole, and the video streams split the rest;
* ``bitrate``: in proportion to each stream's bitrate;
* ``equal``: the same share for every stream that is up.

When the chosen weights are all zero the split falls back to bitrate, then
to equal shares, so the shares of the streams that are up always add up to 1.

A stream counts as up when its last measurement says ``up`` = 1 and is no
older than ``max_gap`` seconds.  The price options (``kwh_price``,
``currency``) are defined here too: both daemons price energy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from oslo_config import cfg

from kwapi.bus.protocol import is_valid_probe_id
from kwapi.config import ConfigError

SHARE_MODES = ("pixels", "bitrate", "equal")
#: Stream meters published by the Ffprobe driver.
STREAM_METERS = ("up", "bitrate", "fps", "width", "height")

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

#: Price of energy: kwapi-api prices the streaming energy, kwapi-rrd its graphs' energy.
kwh_price_opt = cfg.FloatOpt(
    "kwh_price", default=0.125, min=0.0, help="Price of one kWh, in currency."
)
currency_opt = cfg.StrOpt("currency", default="€", help="Currency shown beside energy costs.")
#: The price options, in kwapi-api's order (kwapi-rrd lists them among its graph options).
price_opts = [kwh_price_opt, currency_opt]


class Reading(Protocol):
    """What is known of a probe: its last meters and the time of its last measurement.

    Read-only, so that a named tuple (the collector's record) is one.
    """

    @property
    def timestamp(self) -> float: ...

    @property
    def meters(self) -> Mapping[str, float]: ...


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
