"""Graphs of one stream's energy: its share of the host's power, bits and pixels per joule.

Nothing extra is stored: the share is computed at graph time by rrdtool
CDEFs over the RRD files the host and its sibling streams already have,
with the rules of :func:`kwapi.plugins.streams.shares` (a stream counts as
up where its ``up`` average is at least 0.5; unknown values count as 0).
"""

from __future__ import annotations

import time

from kwapi.plugins.rrd.graphs import (
    Graph,
    Grapher,
    _label,
    _render,
    probe_colour,
    rrd_format,
    rrd_text,
)
from kwapi.plugins.rrd.periods import POWER, Period
from kwapi.plugins.rrd.storage import DS_NAME
from kwapi.plugins.streams import StreamMap

#: What a stream page graphs beside the stream's own bitrate and fps: kind -> (title, unit).
KINDS = {
    "power": ("power share", "W"),
    "bits_per_joule": ("bits per joule", "bit/J"),
    "pixels_per_joule": ("pixels per joule", "px/J"),
}
_SIBLING_METERS = {"u": "up", "b": "bitrate", "f": "fps", "x": "width", "y": "height"}


def _sum(names: list[str]) -> str:
    return names[0] + "".join(f",{name},+" for name in names[1:])


class StreamGrapher:
    """Draws the energy graphs of the streams of *streams*, from *grapher*'s storage."""

    def __init__(self, grapher: Grapher, streams: StreamMap) -> None:
        self.grapher = grapher
        self.storage = grapher.storage
        self.streams = streams

    def can_draw(self, stream: str) -> bool:
        """Whether the host of *stream* has power data and *stream* an ``up`` file."""
        host = self.streams.streams.get(stream)
        return host is not None and self.storage.has(host, POWER) and self.storage.has(stream, "up")

    def definitions(self, stream: str) -> list[str]:
        """DEF and CDEF arguments naming ``hw`` (host watts), ``share``, ``sw``
        (the stream's watts), ``bpj`` and ``ppj`` (bits and pixels per joule)."""
        host = self.streams.streams[stream]
        siblings = self.streams.hosts[host]
        host_path = rrd_text(str(self.storage.path(host, POWER)))
        args = [
            f"DEF:hw={host_path}:{DS_NAME}:AVERAGE",
            f"DEF:hw_lo={host_path}:{DS_NAME}:MIN",
            f"DEF:hw_hi={host_path}:{DS_NAME}:MAX",
        ]
        for n, sibling in enumerate(siblings):
            for prefix, meter in _SIBLING_METERS.items():
                name = f"{prefix}{n}"
                if self.storage.has(sibling, meter):
                    path = rrd_text(str(self.storage.path(sibling, meter)))
                    args.append(f"DEF:{name}={path}:{DS_NAME}:AVERAGE")
                else:
                    args.append(f"CDEF:{name}=hw,POP,UNKN")
            args += [
                f"CDEF:U{n}=u{n},UN,0,u{n},IF,0.5,GE",
                f"CDEF:B{n}=b{n},UN,0,b{n},IF,U{n},*",
                f"CDEF:P{n}=x{n},UN,0,x{n},IF,y{n},UN,0,y{n},IF,*,f{n},UN,0,f{n},IF,*,U{n},*",
            ]
        indexes = range(len(siblings))
        args += [
            f"CDEF:SU={_sum([f'U{n}' for n in indexes])}",
            f"CDEF:SB={_sum([f'B{n}' for n in indexes])}",
            f"CDEF:SP={_sum([f'P{n}' for n in indexes])}",
        ]
        for n in indexes:
            args += [
                f"CDEF:E{n}=SU,0,GT,U{n},SU,/,0,IF",
                f"CDEF:R{n}=SB,0,GT,B{n},SB,/,E{n},IF",
                f"CDEF:V{n}=P{n},0,GT",
                f"CDEF:A{n}=V{n},0,SB,0,GT,B{n},SB,/,0,IF,IF",
            ]
        args.append(f"CDEF:SA={_sum([f'A{n}' for n in indexes])}")
        i = siblings.index(stream)
        chosen = {
            "equal": f"E{i}",
            "bitrate": f"R{i}",
            "pixels": f"SP,0,GT,V{i},1,SA,-,P{i},*,SP,/,A{i},IF,R{i},IF",
        }[self.streams.share]
        args += [
            f"CDEF:share={chosen}",
            "CDEF:sw=hw,share,*",
            "CDEF:sw_lo=sw",
            "CDEF:sw_hi=sw",
            f"CDEF:bpj=sw,0,GT,b{i},sw,/,UNKN,IF",
            f"CDEF:ppj=sw,0,GT,P{i},0,GT,*,P{i},sw,/,UNKN,IF",
        ]
        return args

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
        args = grapher._common(period, f"{stream}: {title}, {period.title}", unit, end)
        args += self.definitions(stream)
        colour = probe_colour(stream, grapher.hue)
        if kind == "power":
            width = min(max(len(stream), len(host), 7), 32)
            args += [
                *grapher._header(width),
                "CDEF:hw_z=hw,UN,0,hw,IF",
                "AREA:hw_z#DDDDDD:" + rrd_text(_label(host, width)),
                *grapher._power_legend("hw", "%8.1lf W"),
                f"AREA:sw#{colour}:" + rrd_text(_label(stream, width)),
                *grapher._power_legend("sw", "%8.1lf W"),
            ]
        else:
            name = "bpj" if kind == "bits_per_joule" else "ppj"
            unit_text = rrd_format(unit)
            args += [
                f"LINE2:{name}#{colour}:" + rrd_text(title) + "\\l",
                f"VDEF:{name}_avg={name},AVERAGE",
                f"VDEF:{name}_min={name},MINIMUM",
                f"VDEF:{name}_max={name},MAXIMUM",
                f"VDEF:{name}_last={name},LAST",
                f"GPRINT:{name}_avg:    average %6.2lf %s{unit_text}",
                f"GPRINT:{name}_min:  minimum %6.2lf %s{unit_text}",
                f"GPRINT:{name}_max:  maximum %6.2lf %s{unit_text}",
                f"GPRINT:{name}_last:  last %6.2lf %s{unit_text}\\l",
            ]
        return _render(args)
