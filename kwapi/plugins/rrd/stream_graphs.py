"""Graphs of one stream's energy: its share of the host's power, bits and pixels per joule.

Nothing extra is stored: the share is computed at graph time by rrdtool
CDEFs over the RRD files the host and its sibling streams already have,
with the rules of :func:`kwapi.plugins.streams.shares` (a stream counts as
up where its ``up`` average is at least 0.5; unknown values count as 0).
"""

from __future__ import annotations

import time

from kwapi.bus.protocol import POWER_METER
from kwapi.plugins.rrd.graphs import (
    Graph,
    Grapher,
    legend_label,
    probe_colour,
    render,
    rrd_text,
    value_legend,
)
from kwapi.plugins.rrd.periods import Period
from kwapi.plugins.rrd.storage import DS_NAME
from kwapi.plugins.streams import StreamMap

#: What a stream page graphs beside the stream's own bitrate and fps: kind -> (title, unit).
KINDS = {
    "power": ("power share", "W"),
    "bits_per_joule": ("bits per joule", "bit/J"),
    "pixels_per_joule": ("pixels per joule", "px/J"),
}
#: The meters of each sibling stream that the shares are computed from.
_SIBLING_METERS = ("up", "bitrate", "fps", "width", "height")

#: What :meth:`StreamGrapher.definitions` names (for graph elements or XPORT):
#: the host's watts (with its MIN and MAX as ``hw_lo`` and ``hw_hi``) ...
HOST_WATTS = "hw"
#: ... the stream's share of them (0 to 1) and the stream's watts ...
SHARE = "share"
STREAM_WATTS = "sw"
#: ... and what the stream delivers per joule.
BITS_PER_JOULE = "bpj"
PIXELS_PER_JOULE = "ppj"


def _sum(names: list[str]) -> str:
    """RPN adding the series *names*."""
    return names[0] + "".join(f",{name},+" for name in names[1:])


def _sibling_definitions(n: int, path_of: dict[str, str | None]) -> list[str]:
    """DEFs of sibling *n*'s meters and CDEFs of what it weighs while up (0 while down).

    *path_of* gives each meter's escaped RRD path, None for a meter never
    recorded (then unknown throughout, like a gap).
    """
    args = []
    for meter in _SIBLING_METERS:
        path = path_of[meter]
        if path is not None:
            args.append(f"DEF:{meter}{n}={path}:{DS_NAME}:AVERAGE")
        else:
            args.append(f"CDEF:{meter}{n}={HOST_WATTS},POP,UNKN")
    known = {meter: f"{meter}{n},UN,0,{meter}{n},IF" for meter in _SIBLING_METERS}
    return [
        *args,
        f"CDEF:is_up{n}={known['up']},0.5,GE",
        f"CDEF:up_bitrate{n}={known['bitrate']},is_up{n},*",
        f"CDEF:up_pixel_rate{n}={known['width']},{known['height']},*,{known['fps']},*,is_up{n},*",
    ]


def _share_definitions(count: int) -> list[str]:
    """CDEFs of each of *count* siblings' share by each rule, from their weights."""
    indexes = range(count)
    args = [
        f"CDEF:streams_up={_sum([f'is_up{n}' for n in indexes])}",
        f"CDEF:total_bitrate={_sum([f'up_bitrate{n}' for n in indexes])}",
        f"CDEF:total_pixel_rate={_sum([f'up_pixel_rate{n}' for n in indexes])}",
    ]
    for n in indexes:
        args += [
            f"CDEF:equal_share{n}=streams_up,0,GT,is_up{n},streams_up,/,0,IF",
            f"CDEF:bitrate_share{n}=total_bitrate,0,GT,"
            f"up_bitrate{n},total_bitrate,/,equal_share{n},IF",
            f"CDEF:has_video{n}=up_pixel_rate{n},0,GT",
            # A stream without video takes its bitrate share first (see shares()).
            f"CDEF:audio_share{n}=has_video{n},0,"
            f"total_bitrate,0,GT,up_bitrate{n},total_bitrate,/,0,IF,IF",
        ]
    args.append(f"CDEF:audio_shares={_sum([f'audio_share{n}' for n in indexes])}")
    return args


def _chosen_share(mode: str, n: int) -> str:
    """RPN of sibling *n*'s share under ``stream_share`` *mode*."""
    return {
        "equal": f"equal_share{n}",
        "bitrate": f"bitrate_share{n}",
        "pixels": f"total_pixel_rate,0,GT,"
        f"has_video{n},1,audio_shares,-,up_pixel_rate{n},*,total_pixel_rate,/,audio_share{n},IF,"
        f"bitrate_share{n},IF",
    }[mode]


class StreamGrapher:
    """Draws the energy graphs of the streams of *streams*, from *grapher*'s storage."""

    def __init__(self, grapher: Grapher, streams: StreamMap) -> None:
        self.grapher = grapher
        self.storage = grapher.storage
        self.streams = streams

    def can_draw(self, stream: str) -> bool:
        """Whether the host of *stream* has power data and *stream* an ``up`` file."""
        host = self.streams.streams.get(stream)
        return (
            host is not None
            and self.storage.has(host, POWER_METER)
            and self.storage.has(stream, "up")
        )

    def _path(self, probe_id: str, meter: str) -> str | None:
        """The escaped RRD path of *meter* of *probe_id*, None if it has no file."""
        if not self.storage.has(probe_id, meter):
            return None
        return rrd_text(str(self.storage.path(probe_id, meter)))

    def definitions(self, stream: str) -> list[str]:
        """DEF and CDEF arguments that give *stream*'s series their names.

        The series are HOST_WATTS, SHARE, STREAM_WATTS, BITS_PER_JOULE and
        PIXELS_PER_JOULE (``hw``, ``share``, ``sw``, ``bpj`` and ``ppj``),
        each computed row by row from the host's and sibling streams' files.
        """
        host = self.streams.streams[stream]
        siblings = self.streams.hosts[host]
        host_path = rrd_text(str(self.storage.path(host, POWER_METER)))
        low, high = self.storage.extremes(host, POWER_METER)
        args = [
            f"DEF:{HOST_WATTS}={host_path}:{DS_NAME}:AVERAGE",
            f"DEF:{HOST_WATTS}_lo={host_path}:{low}:MIN",
            f"DEF:{HOST_WATTS}_hi={host_path}:{high}:MAX",
        ]
        for n, sibling in enumerate(siblings):
            paths = {meter: self._path(sibling, meter) for meter in _SIBLING_METERS}
            args += _sibling_definitions(n, paths)
        args += _share_definitions(len(siblings))
        n = siblings.index(stream)
        return [
            *args,
            f"CDEF:{SHARE}={_chosen_share(self.streams.share, n)}",
            f"CDEF:{STREAM_WATTS}={HOST_WATTS},{SHARE},*",
            f"CDEF:{STREAM_WATTS}_lo={STREAM_WATTS}",
            f"CDEF:{STREAM_WATTS}_hi={STREAM_WATTS}",
            f"CDEF:{BITS_PER_JOULE}={STREAM_WATTS},0,GT,bitrate{n},{STREAM_WATTS},/,UNKN,IF",
            f"CDEF:{PIXELS_PER_JOULE}={STREAM_WATTS},0,GT,up_pixel_rate{n},0,GT,*,"
            f"up_pixel_rate{n},{STREAM_WATTS},/,UNKN,IF",
        ]

    def graph(self, period: Period, stream: str, kind: str) -> Graph:
        """One graph of *stream* (cached like the others)."""
        return self.grapher.cache.get(
            ("stream", period.name, stream, kind, self.streams.share),
            period.resolution,
            lambda: self.draw(period, stream, kind),
        )

    def draw(self, period: Period, stream: str, kind: str, end: int | None = None) -> Graph:
        """Draw one graph of *stream*: ``power``, ``bits_per_joule`` or ``pixels_per_joule``."""
        title, unit = KINDS[kind]
        host = self.streams.streams[stream]
        end = int(time.time()) if end is None else end
        grapher = self.grapher
        args = grapher.common_args(period, f"{stream}: {title}, {period.title}", unit, end)
        args += self.definitions(stream)
        colour = probe_colour(stream, grapher.hue)
        if kind == "power":
            width = min(max(len(stream), len(host), 7), 32)
            args += [
                *grapher.legend_header(width),
                f"CDEF:{HOST_WATTS}_or_zero={HOST_WATTS},UN,0,{HOST_WATTS},IF",
                f"AREA:{HOST_WATTS}_or_zero#DDDDDD:" + rrd_text(legend_label(host, width)),
                *grapher.power_legend(HOST_WATTS, "%8.1lf W"),
                f"AREA:{STREAM_WATTS}#{colour}:" + rrd_text(legend_label(stream, width)),
                *grapher.power_legend(STREAM_WATTS, "%8.1lf W"),
            ]
        else:
            name = BITS_PER_JOULE if kind == "bits_per_joule" else PIXELS_PER_JOULE
            args += [
                f"LINE2:{name}#{colour}:" + rrd_text(title) + "\\l",
                *value_legend(name, unit, low=name, high=name, average="    average "),
            ]
        return render(args)
